"""The command line and the one-command embedded run (SQLite + embedded Valkey under ./var/), as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.smtp_server import SmtpServer, free_port

OUTBOX = str(Path(sys.executable).parent / "outbox")


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "OUTBOX_SECRET_KEYS")}
    env["OUTBOX_EMBEDDED_REDIS_PORT"] = str(free_port())
    env["OUTBOX_VAR_DIR"] = str(tmp_path / "var")
    return env


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OUTBOX, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_db_upgrade_and_api_keys(embedded_env: dict[str, str], tmp_path: Path) -> None:
    r = _cli(embedded_env, tmp_path, "db", "upgrade")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "var" / "outbox.db").exists()
    r = _cli(embedded_env, tmp_path, "api-key", "create", "--role", "admin")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("obx_") and len(key) > 40
    r = _cli(embedded_env, tmp_path, "api-key", "create", "--role", "user")
    assert r.returncode == 2 and "--user" in r.stderr
    r = _cli(embedded_env, tmp_path, "api-key", "create", "--role", "root")
    assert r.returncode == 2


def test_one_command_embedded_run_delivers(embedded_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([OUTBOX, "run", "--port", str(port)], env=embedded_env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("the API did not start")
        assert httpx.get(base + "/docs", timeout=5).status_code == 200
        key = _cli(embedded_env, tmp_path, "api-key", "create", "--role", "admin").stdout.strip().splitlines()[-1]
        h = {"Authorization": f"Bearer {key}"}
        with SmtpServer() as smtp, httpx.Client(base_url=base, headers=h, timeout=10) as c:
            r = c.patch("/providers/smtp", json={"host": "127.0.0.1", "port": smtp.port, "tls": "none",
                                               "from_address": "outbox@example.com"})
            assert r.status_code == 200, r.text
            mid = c.post("/messages", json={"to": ["a@example.com"], "subject": "embedded",
                                            "body_text": "hi"}).json()["id"]
            status = None
            while time.monotonic() < deadline + 30:
                status = c.get(f"/messages/{mid}").json()["status"]
                if status == "sent":
                    break
                time.sleep(0.2)
            assert status == "sent"
            assert smtp.received[0].message["Subject"] == "embedded"
            st = c.get("/status").json()
            assert st["workers"]["alive"] >= 1 and st["redis"]["ok"]
        assert (tmp_path / "var" / "valkey" / "valkey.pid").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()[-2000:]
    assert not (tmp_path / "var" / "valkey" / "valkey.pid").exists()  # the embedded server stopped with the API
    # One readable format for the API, the worker and `outbox run` itself; requests carry their id.
    lines = out.decode().splitlines()
    line_re = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \[(debug|info|warning|error|critical) *\] ")
    assert all(line_re.match(line) for line in lines), "\n".join(x for x in lines if not line_re.match(x))
    text = "\n".join(lines)
    assert "[arq.worker]" in text and "[uvicorn.error]" in text and "[outbox.run]" in text
    assert re.search(r"\] request +\[outbox.request\] method=POST path=/messages status=202 duration_ms=[\d.]+ "
                     r"request_id=[0-9a-f]{32}", text), text
    assert "reconcile(" not in text and "recording health" not in text and "[uvicorn.access]" not in text
