"""The ceiling: the sink fed directly by aiosmtplib over C reused connections, pre-serialised messages, no service.

Run: python bench/ceiling.py SMTP_PORT CONNECTIONS N [TIMEOUT]
Prints one JSON line: messages sent, seconds, msgs_per_s, errors, and this process's own CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from email.utils import formatdate

import aiosmtplib

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


def message(i: int) -> bytes:
    # About the size and shape of what the worker sends for the benchmark's small messages.
    return (
        f"From: bench@example.com\r\nTo: r{i % 97}@example.com\r\nSubject: Benchmark message {i}\r\n"
        f"Date: {formatdate(localtime=False)}\r\nMessage-ID: <{i}.ceiling@bench.local>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        "Hello,\r\n\r\nthis is a small benchmark message.\r\n\r\nRegards\r\n"
    ).encode()


async def main(port: int, conns: int, n: int, timeout: float) -> dict:
    msgs = [message(i) for i in range(256)]
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False, timeout=30)
               for _ in range(conns)]
    await asyncio.gather(*(c.connect() for c in clients))
    counter = iter(range(n))
    errors: list[str] = []
    sent = 0
    deadline = time.monotonic() + timeout

    async def pump(c: aiosmtplib.SMTP) -> None:
        nonlocal sent
        for i in counter:
            if time.monotonic() > deadline:
                errors.append("deadline")
                return
            try:
                await c.sendmail("bench@example.com", [f"r{i % 97}@example.com"], msgs[i % len(msgs)])
                sent += 1
            except Exception as exc:
                errors.append(repr(exc)[:200])
                if not c.is_connected:
                    await c.connect()

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    await asyncio.gather(*(pump(c) for c in clients))
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    for c in clients:
        try:
            await c.quit()
        except Exception:
            c.close()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"connections": conns, "sent": sent, "seconds": elapsed, "msgs_per_s": sent / elapsed if elapsed else 0,
            "errors": errors[:5], "error_count": len(errors), "client_cpu_s": cpu,
            "client_cores": cpu / elapsed if elapsed else 0.0}


if __name__ == "__main__":
    port, conns, n = (int(a) for a in sys.argv[1:4])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 120.0
    # The worker runs on arq's stock asyncio loop: so does the ceiling, unless BENCH_CEILING_UVLOOP=1.
    if uvloop is not None and os.environ.get("BENCH_CEILING_UVLOOP") == "1":
        uvloop.install()
    print(json.dumps(asyncio.run(main(port, conns, n, timeout))), flush=True)
