"""Logs: one format for the API, the worker and `outbox run`; request ids; tracebacks rendered; no idle noise."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from app.core.logging import configure_logging
from app.settings import Settings
from tests.conftest import Env, running_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def logbuf() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    yield buf
    configure_logging(Settings())  # back to stderr for the tests that follow


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _raise(msg: str) -> None:
    raise RuntimeError(msg)


def test_json_lines_render_the_traceback_of_our_and_arqs_errors(logbuf: io.StringIO) -> None:
    configure_logging(Settings(OUTBOX_LOG_FORMAT="json"), stream=logbuf)
    try:
        _raise("kaboom in the worker")
    except RuntimeError:
        logging.getLogger("outbox.worker").exception("delivery failed", extra={"message_id": 7})
        # arq's own failure line for a job (arq/worker.py calls logger.exception like this)
        logging.getLogger("arq.worker").exception("%6.2fs ! %s failed, %s: %s", 0.5, "abc:deliver",
                                                  "RuntimeError", "kaboom", extra={"extra": None})
    ours, arqs = _json_lines(logbuf.getvalue())
    for line in (ours, arqs):
        assert line["level"] == "error"
        assert line["exception"].startswith("Traceback (most recent call last)")
        assert "in _raise" in line["exception"] and "RuntimeError: kaboom in the worker" in line["exception"]
        assert "traceback object" not in json.dumps(line)
    assert ours["event"] == "delivery failed" and ours["message_id"] == 7 and ours["logger"] == "outbox.worker"
    assert arqs["event"] == "  0.50s ! abc:deliver failed, RuntimeError: kaboom" and arqs["logger"] == "arq.worker"


def test_console_lines_are_readable_and_show_the_traceback(logbuf: io.StringIO) -> None:
    configure_logging(Settings(), stream=logbuf)  # the embedded default
    logging.getLogger("outbox.reconcile").info("reconciled", extra={"released": 2, "expired": 0, "purged": 0})
    try:
        _raise("kaboom")
    except RuntimeError:
        logging.getLogger("outbox.api").error("unhandled error on GET /x", exc_info=True)
    lines = logbuf.getvalue().splitlines()
    assert "[info     ] reconciled" in lines[0] and "released=2" in lines[0] and "[outbox.reconcile]" in lines[0]
    assert lines[0][:4].isdigit() and lines[0][10] == "T"  # ISO time first
    assert "[error    ] unhandled error on GET /x" in lines[1]
    text = logbuf.getvalue()
    assert "Traceback (most recent call last)" in text and "RuntimeError: kaboom" in text
    assert not text.lstrip().startswith("{")


def test_secrets_are_redacted_in_both_formats(logbuf: io.StringIO) -> None:
    for fmt in ("json", "console"):
        configure_logging(Settings(OUTBOX_LOG_FORMAT=fmt), stream=logbuf)
        logging.getLogger("outbox.api").warning("sent Bearer obx_abcdef123", extra={"password": "hunter2"})
        structlog.get_logger("outbox.api").warning("x", client_secret="s3cret", note="Bearer obx_zzz")
    text = logbuf.getvalue()
    assert "hunter2" not in text and "s3cret" not in text and "obx_" not in text
    assert text.count("[redacted]") == 8


def test_reconciler_and_health_lines_are_quiet_when_nothing_happened(logbuf: io.StringIO) -> None:
    import worker.main  # noqa: F401  (registers the quiet periodic jobs)

    configure_logging(Settings(OUTBOX_LOG_FORMAT="json"), stream=logbuf)
    arq = logging.getLogger("arq.worker")
    # arq's start and finish lines for the cron job, and its periodic health line: dropped.
    arq.info("%6.2fs → %s(%s)%s", 0.01, "reconcile", "", "")
    arq.info("%6.2fs ← %s ● %s", 0.01, "reconcile", "{'released': 0}")
    arq.info("recording health: %s", "Dec-01 13:00:00 j_complete=12 j_failed=0")
    assert logbuf.getvalue() == ""
    # A delivery job's lines, and a failing reconciler, still show.
    arq.info("%6.2fs → %s(%s)%s", 0.01, "deliver:abc:deliver", "", "")
    arq.error("%6.2fs ! %s failed, %s: %s", 0.1, "reconcile", "OperationalError", "down")
    events = [line["event"] for line in _json_lines(logbuf.getvalue())]
    assert len(events) == 2 and "deliver:abc" in events[0] and "! reconcile failed" in events[1]


async def test_request_lines_carry_the_request_id_and_errors_their_traceback(
        sqlite_env: Env, logbuf: io.StringIO) -> None:
    configure_logging(Settings(OUTBOX_LOG_FORMAT="json"), stream=logbuf)

    async def boom() -> None:
        _raise("handler bug")

    sqlite_env.app.add_api_route("/boom-for-test", boom)
    r = await sqlite_env.client.get("/parameters", headers={"X-Request-ID": "req-given-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-given-1"
    transport = httpx.ASGITransport(app=sqlite_env.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://outbox.test") as c:
        # Every path but the monitoring ones needs a key, checked before the route (core.guard).
        r = await c.get("/boom-for-test",
                        headers={"X-Request-ID": "req-boom-2", **sqlite_env.auth(sqlite_env.admin_key)})
    assert r.status_code == 500 and "handler bug" not in r.text
    lines = _json_lines(logbuf.getvalue())
    req = [x for x in lines if x["event"] == "request"]
    assert {"method": "GET", "path": "/parameters", "status": 200, "request_id": "req-given-1"}.items() \
        <= req[0].items()
    assert req[0]["duration_ms"] >= 0 and req[0]["logger"] == "outbox.request"
    err = next(x for x in lines if x["event"].startswith("unhandled error on GET /boom-for-test"))
    assert err["request_id"] == "req-boom-2" and "RuntimeError: handler bug" in err["exception"]
    assert {"status": 500, "request_id": "req-boom-2"}.items() <= req[1].items()
    assert not any(x.get("path") == "/healthz" for x in lines)


def test_worker_process_logs_json_and_stays_quiet_when_idle(tmp_path: Path, sqlite_template: Path) -> None:
    """A real worker process (`outbox worker`), reconciling every second on an empty queue for 5 s."""
    from tests.support.smtp_server import free_port

    db = tmp_path / "outbox.db"
    db.write_bytes(sqlite_template.read_bytes())
    redis_url = os.environ.get("TEST_REDIS", "redis://127.0.0.1:6379/15")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    env.update(DATABASE_URL=f"sqlite:///{db}", REDIS_URL=redis_url, OUTBOX_LOG_FORMAT="json",
               OUTBOX_RECONCILE_SECONDS="1", OUTBOX_QUEUE=f"outbox:test-log:{free_port()}")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "outbox"), "worker"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    lines = _json_lines(out)  # every line is JSON (json.loads raises otherwise), arq's start-up lines included
    events = " | ".join(x["event"] for x in lines)
    assert "Starting worker for " in events and "messages.deliver" in events, out
    assert "reconcile(" not in events and "← reconcile" not in events and "recording health" not in events, out
    assert "bounces.poll_mailboxes(" not in events and "← bounces.poll_mailboxes" not in events, out  # quiet too
    assert all({"timestamp", "level", "logger"} <= x.keys() for x in lines)
    stopped = next(x["event"] for x in lines if x["event"].startswith("shutdown on SIGTERM"))
    assert int(stopped.split("◆ ")[1].split()[0]) >= 3, stopped  # the reconciler did run, silently


async def test_request_log_errors_only(sqlite_template: Path, tmp_path: Path, logbuf: io.StringIO) -> None:
    """OUTBOX_REQUEST_LOG=errors: answers of 400 and up (and slow requests) get their line, plain successes not."""
    path = tmp_path / "outbox.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with running_env(f"sqlite:///{path}", OUTBOX_REQUEST_LOG="errors") as env:
        configure_logging(Settings(OUTBOX_LOG_FORMAT="json"), stream=logbuf)
        assert (await env.client.get("/parameters")).status_code == 200
        assert (await env.client.get("/messages/999999")).status_code == 404
        assert (await env.client.get("/parameters", headers={"Authorization": "Bearer wrong"})).status_code == 401
    req = [x for x in _json_lines(logbuf.getvalue()) if x["event"] == "request"]
    assert [(x["path"], x["status"]) for x in req] == [("/messages/999999", 404), ("/parameters", 401)]
