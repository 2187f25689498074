"""Webhooks with real processes: the worker is killed (SIGKILL) while a delivery is in flight and Redis is
flushed; a new worker delivers every event, duplicates only with the same webhook-id (at least once)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.faults.harness import Live, PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.fault

FAST = {"OUTBOX_RECONCILE_SECONDS": "1", "OUTBOX_WEBHOOK_LEASE_SECONDS": "3",
        "OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS": "true", "OUTBOX_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
        "OUTBOX_WEBHOOK_RETRY_MAX_SECONDS": "1"}


class Hook:
    """A threaded receiver that verifies each delivery with standardwebhooks; slow while `delay` is set."""

    def __init__(self) -> None:
        self.secret = ""
        self.delay = 0.0
        self.ids: Counter[str] = Counter()
        self.bad = 0
        self.truncated = 0
        self.in_flight = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender was killed mid-request: a truncated body, nothing to verify
                    hook.truncated += 1
                    return
                hook.in_flight.set()
                if hook.delay:
                    time.sleep(hook.delay)
                try:
                    Webhook(hook.secret).verify(body, dict(self.headers.items()))
                except WebhookVerificationError:
                    hook.bad += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                hook.ids[self.headers["webhook-id"]] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def test_worker_killed_and_redis_flushed_during_webhook_delivery(
        work: Path, private_redis: PrivateRedis, private_pg: PrivatePostgres, hook: Hook) -> None:
    live = Live(work, private_pg.url, private_redis.url, FAST)
    try:
        live.setup(workers=0)
        with live.client() as c:
            r = c.post("/webhooks", json={"url": hook.url, "events": ["message.sent"]})
            assert r.status_code == 201, r.text
            hook.secret = r.json()["secret"]
        hook.delay = 3.0  # the first deliveries hang, so the worker dies with them in flight
        ids = live.submit(40, "hooked")
        worker = live.start_worker()
        assert hook.in_flight.wait(30), "no webhook delivery started"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(5)
        assert private_redis.cli("FLUSHALL") == "OK"
        hook.delay = 0.0
        live.start_worker()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(hook.ids) < len(ids):
            live.restart_dead_workers()
            time.sleep(0.3)
        assert len(hook.ids) == len(ids), (len(hook.ids), len(ids))  # every event, each with its own id
        assert hook.bad == 0
        assert sum(hook.ids.values()) >= len(ids)  # duplicates possible, always under the same webhook-id
        with live.client() as c:
            assert live.statuses().get("sent") == len(ids)
            items = c.get("/webhooks").json()["items"]
            assert items[0]["pending_deliveries"] == 0 and items[0]["enabled"] is True
    finally:
        live.stop()
