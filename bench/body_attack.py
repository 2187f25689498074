"""Issue 12 item 1: the API's peak RSS under hostile bodies (a fresh API process per attack).

    .venv/bin/python bench/body_attack.py            # TEST_REDIS picks the Redis db (default db 15)

Attacks, as in the issue: a chunked 300 MB body without a key; four concurrent 150 MB bodies (Content-Length,
no key); a chunked 220 MB body with an admin key. Prints the API's RSS at rest and its peak (VmHWM) after each.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.live_api import LiveApi, read_response

MB = 1024 * 1024
CHUNK = b"A" * MB


def attack(api: LiveApi, size_mb: int, *, chunked: bool, key: str | None) -> str:
    sock = api.connect()
    head = [b"POST /messages HTTP/1.1", b"Host: outbox", b"Content-Type: application/json"]
    if key:
        head.append(b"Authorization: Bearer " + key.encode())
    prefix = b'{"to": ["a@example.com"], "subject": "x", "body_text": "'
    suffix = b'"}'
    total = size_mb * MB
    if chunked:
        head.append(b"Transfer-Encoding: chunked")
    else:
        head.append(b"Content-Length: " + str(len(prefix) + total + len(suffix)).encode())
    result: list[str] = []

    def reader() -> None:
        try:
            status, headers, _ = read_response(sock, timeout=300)
            result.append(str(status))
        except Exception as exc:
            result.append(type(exc).__name__)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    sent = 0
    try:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n")
        pieces = [prefix] + [CHUNK] * size_mb + [suffix]
        for piece in pieces:
            if result:
                break
            sock.sendall((f"{len(piece):x}\r\n".encode() + piece + b"\r\n") if chunked else piece)
            sent += len(piece)
        if chunked and not result:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    t.join(300)
    sock.close()
    return f"{result[0] if result else 'no answer'} after {sent // MB} MB sent"


def run(label: str, fn: object) -> None:
    with tempfile.TemporaryDirectory() as work, LiveApi(Path(work)) as api:
        time.sleep(1)
        rest = api.rss_mb()
        start = time.monotonic()
        outcome = fn(api)  # type: ignore[operator]
        time.sleep(0.5)
        print(f"{label}: RSS at rest {rest:.0f} MB, peak {api.rss_mb('VmHWM'):.0f} MB; {outcome}; "
              f"{time.monotonic() - start:.1f} s", flush=True)


def four(api: LiveApi) -> str:
    out: list[str] = []
    threads = [threading.Thread(target=lambda: out.append(attack(api, 150, chunked=False, key=None)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return " | ".join(out)


def main() -> None:
    run("chunked 300 MB, no key", lambda api: attack(api, 300, chunked=True, key=None))
    run("4 x 150 MB (Content-Length), no key", four)
    run("chunked 220 MB, admin key", lambda api: attack(api, 220, chunked=True, key=api.key))


if __name__ == "__main__":
    socket.setdefaulttimeout(300)
    main()
