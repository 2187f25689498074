"""`outbox bounces` as its own process: starts, refuses to start without a bounce domain, records a DSN sent
to it over SMTP, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REDIS
from tests.support.smtp_server import free_port

OUTBOX = str(Path(sys.executable).parent / "outbox")
DSN = (b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
       b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
       b"Final-Recipient: rfc822; x@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n--B--\r\n")


def test_outbox_bounces_process(sqlite_template: Path, tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    db.write_bytes(sqlite_template.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    env.update(DATABASE_URL=f"sqlite:///{db}", REDIS_URL=REDIS, OUTBOX_VAR_DIR=str(tmp_path / "var"),
               OUTBOX_SECRET_KEYS="kRYq5XbX7xkq8o2sFZ1S1X3f0pWq0yT8m3vV6cZ9aQk=")
    r = subprocess.run([OUTBOX, "bounces"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "OUTBOX_BOUNCE_DOMAIN is not set" in r.stderr + r.stdout
    port = free_port()
    env["OUTBOX_BOUNCE_DOMAIN"] = "bounce.test"
    proc = subprocess.Popen([OUTBOX, "bounces", "--listen", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client = smtplib.SMTP("127.0.0.1", port, timeout=10)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the listener did not start"
                time.sleep(0.1)
        with client:
            client.ehlo()
            code, _ = client.mail("<>")
            assert code == 250
            code, _ = client.rcpt("someone@example.com")
            assert code == 550  # not a bounce address: not a relay
            code, _ = client.rcpt("bounces@bounce.test")
            assert code == 250
            code, reply = client.data(DSN)
            assert code == 250 and b"no message of ours matched" in reply
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
