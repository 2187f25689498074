"""Issue 12 item 8, over real HTTP: a verify against a hanging server holds no database connection while it
waits, and a half-sent body is timed out (408)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.live_api import LiveApi, read_response


class HangingServer:
    """Accepts TCP connections and never says a word (an SMTP server that hangs before its greeting)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.conns.append(conn)

    def __enter__(self) -> HangingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with LiveApi(tmp_path_factory.mktemp("slow"), OUTBOX_BODY_READ_TIMEOUT_SECONDS="1") as live:
        yield live


def test_verifies_against_a_hanging_server_do_not_starve_other_requests(api: LiveApi) -> None:
    auth = {"Authorization": f"Bearer {api.key}"}
    with HangingServer() as hanging, httpx.Client(base_url=api.base, headers=auth, timeout=60) as c:
        r = c.patch("/providers/smtp", json={"host": "127.0.0.1", "port": hanging.port, "tls": "none",
                                           "authentication_required": False, "from_address": "o@example.com",
                                           "timeout_seconds": 8})
        assert r.status_code == 200, r.text
        results: list[int] = []

        def verify() -> None:
            results.append(httpx.post(api.base + "/providers/smtp/verify", headers=auth, timeout=60).status_code)

        # More verifies than the API's database pool has connections (SQLite: 5 + 10 overflow).
        threads = [threading.Thread(target=verify) for _ in range(20)]
        for t in threads:
            t.start()
        time.sleep(1.5)  # every verify is now waiting on the silent server
        start = time.monotonic()
        r = c.get("/parameters")
        waited = time.monotonic() - start
        for t in threads:
            t.join(60)
    assert r.status_code == 200 and waited < 2, waited  # before: it waited for a verify to time out (8 s)
    assert results == [200] * 20  # each verify answered, ok: false, with the timeout explained


def test_half_sent_body_is_timed_out(api: LiveApi) -> None:
    sock = api.connect()
    sock.sendall(b"PUT /parameters HTTP/1.1\r\nHost: outbox\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + api.key.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"batch")
    start = time.monotonic()
    status, headers, body = read_response(sock, timeout=15)
    sock.close()
    assert status == 408 and headers["content-type"] == "application/problem+json", body
    assert time.monotonic() - start < 5
