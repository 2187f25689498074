"""Issue 12 item 1, over real HTTP against a uvicorn process: the key is checked before the body is read, the
bytes really received are counted (chunked included) against a cap that fits the route, and only a bounded
number of large bodies is read at once."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.live_api import LiveApi, read_response

PROBLEM = "application/problem+json"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with LiveApi(tmp_path_factory.mktemp("guard"), OUTBOX_MAX_BODY_KB="4", OUTBOX_MAX_TEMPLATE_BODY_MB="1",
                 OUTBOX_MAX_BULK_BODY_MB="2", OUTBOX_LARGE_BODIES="1") as live:
        r = httpx.patch(live.base + "/parameters", headers={"Authorization": f"Bearer {live.key}"},
                      json={"attachment_size_limit_mb": 1})
        assert r.status_code == 200, r.text
        yield live


def _start(api: LiveApi, method: str, path: str, *, key: str | None = None, length: int | None = None,
           extra: bytes = b"") -> socket.socket:
    sock = api.connect()
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: outbox", b"Content-Type: application/json"]
    if key is not None:
        head.append(b"Authorization: Bearer " + key.encode())
    head.append(b"Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}".encode())
    sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + extra)
    return sock


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _send_until_answer(sock: socket.socket, total: int, piece: int = 64 * 1024) -> tuple[int, dict[str, str],
                                                                                        dict[str, Any], int]:
    """Sends chunks of `piece` bytes (never the terminating chunk) until the server answers."""
    sent = 0
    sock.setblocking(False)
    answer = b""
    try:
        while sent < total:
            try:
                sock.send(_chunk(b"A" * piece))
                sent += piece
            except BlockingIOError:
                time.sleep(0.01)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if b"\r\n\r\n" in answer:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.setblocking(True)
    status, headers, body = _parse(sock, answer)
    return status, headers, json.loads(body), sent


def _parse(sock: socket.socket, data: bytes) -> tuple[int, dict[str, str], bytes]:
    class Pre:
        def __init__(self) -> None:
            self.buf = data

        def settimeout(self, t: float) -> None:
            sock.settimeout(t)

        def recv(self, n: int) -> bytes:
            if self.buf:
                out, self.buf = self.buf, b""
                return out
            return sock.recv(n)

    return read_response(Pre(), timeout=15)  # type: ignore[arg-type]


def test_no_key_is_refused_before_the_body_is_read(api: LiveApi) -> None:
    # Chunked, and never finished: the 401 must come without the body.
    sock = _start(api, "POST", "/messages", extra=_chunk(b'{"to": ["a@example.com"], "body_text": "'))
    status, headers, body = read_response(sock, timeout=10)
    assert status == 401 and headers["content-type"] == PROBLEM, body
    sock.close()
    # Announced as 150 MB, a kilobyte sent.
    sock = _start(api, "POST", "/messages", key="obx_wrong", length=150 * MB, extra=b"{" * 1024)
    status, headers, body = read_response(sock, timeout=10)
    assert status == 401 and json.loads(body)["type"].endswith("/unauthorized")
    sock.close()


def test_chunked_body_past_the_cap_413_at_once(api: LiveApi) -> None:
    # Message submission: the attachment limit (1 MB here) as base64, plus 1 MB: about 2.4 MB.
    sock = _start(api, "POST", "/messages", key=api.key)
    status, headers, problem, sent = _send_until_answer(sock, 50 * MB)
    sock.close()
    assert status == 413 and headers["content-type"] == PROBLEM, problem
    assert problem["type"].endswith("/request-too-large") and "POST /messages" in str(problem["detail"])
    assert sent < 10 * MB, sent  # answered at the cap, not after the whole body
    # A settings PUT: kilobytes (OUTBOX_MAX_BODY_KB=4).
    sock = _start(api, "PUT", "/parameters", key=api.key)
    status, _, problem, sent = _send_until_answer(sock, 10 * MB, piece=1024)
    sock.close()
    assert status == 413 and "4 KB" in str(problem["detail"]), problem
    assert sent < 4 * MB


@pytest.mark.parametrize(("method", "path", "size", "limit"), [
    ("PUT", "/parameters", 5 * 1024, "4 KB"),  # OUTBOX_MAX_BODY_KB
    ("PUT", "/providers/smtp", 5 * 1024, "4 KB"),
    ("POST", "/templates", int(1.5 * MB), "1 MB"),  # OUTBOX_MAX_TEMPLATE_BODY_MB
    ("POST", "/workflow-events", int(1.5 * MB), "1 MB"),
    ("POST", "/messages/bulk", int(2.5 * MB), "2 MB"),  # OUTBOX_MAX_BULK_BODY_MB
    ("POST", "/messages", 3 * MB, "2 MB"),  # attachment_size_limit_mb=1: 1.33 MB + 1 MB
    ("PATCH", "/messages/1", 3 * MB, "2 MB"),
    ("POST", "/messages/1/resend", 3 * MB, "2 MB"),
    ("POST", "/messages/1/cancel", 5 * 1024, "4 KB"),
])
def test_each_route_has_its_cap(api: LiveApi, method: str, path: str, size: int, limit: str) -> None:
    # Declared too large: refused before anything is read.
    sock = _start(api, method, path, key=api.key, length=size)
    status, headers, body = read_response(sock, timeout=10)
    sock.close()
    assert status == 413 and headers["content-type"] == PROBLEM
    assert limit in json.loads(body)["detail"], body


def test_under_the_cap_still_works(api: LiveApi) -> None:
    auth = {"Authorization": f"Bearer {api.key}"}
    # Chunked (no Content-Length) and within the cap: read whole and handled.
    body = json.dumps({"to": ["a@example.com"], "from": "s@example.com", "subject": "hi",
                       "body_text": "x" * 500_000}).encode()

    def gen() -> Iterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = httpx.post(api.base + "/messages", headers={**auth, "Content-Type": "application/json"}, content=gen())
    assert r.status_code == 202, r.text
    r = httpx.patch(api.base + "/parameters", headers=auth, json={"attachment_size_limit_mb": 1})
    assert r.status_code == 200, r.text


def test_large_bodies_read_at_once_are_bounded(api: LiveApi) -> None:
    # OUTBOX_LARGE_BODIES=1: while one body over 1 MB is being read, another is answered 503 with Retry-After.
    first = _start(api, "POST", "/messages", key=api.key, length=2 * MB, extra=b"{" * 1024)
    time.sleep(0.3)
    try:
        second = _start(api, "POST", "/messages", key=api.key, length=2 * MB)
        status, headers, body = read_response(second, timeout=10)
        second.close()
        assert status == 503 and headers["content-type"] == PROBLEM, body
        assert headers["retry-after"] == "2" and json.loads(body)["type"].endswith("/busy")
        # A chunked one is refused once it passes 1 MB.
        third = _start(api, "POST", "/messages", key=api.key)
        status, _, problem, sent = _send_until_answer(third, 40 * MB)
        third.close()
        assert status == 503 and sent < 20 * MB, problem  # (what the kernel's socket buffers took, at most)
        # Small bodies are not held back.
        r = httpx.get(api.base + "/parameters", headers={"Authorization": f"Bearer {api.key}"})
        assert r.status_code == 200
    finally:
        first.sendall(b"{" * (2 * MB - 1024))
        status, _, _ = read_response(first, timeout=30)
        first.close()
    assert status == 422  # the first one was read whole (and is not JSON)
    # Released: the next large body is read.
    sock = _start(api, "POST", "/messages", key=api.key, length=2 * MB, extra=b"{" * (2 * MB))
    status, _, _ = read_response(sock, timeout=30)
    sock.close()
    assert status == 422


def test_memory_stays_flat_under_the_issues_attack(api: LiveApi) -> None:
    before = api.rss_mb()
    sock = _start(api, "POST", "/messages")  # chunked, no key
    try:
        for _ in range(300):
            sock.sendall(_chunk(b"A" * MB))
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.close()
    assert api.rss_mb("VmHWM") < before + 100, (before, api.rss_mb("VmHWM"))
