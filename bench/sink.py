"""A fast SMTP sink for the benchmark: aiosmtpd with a handler that counts and discards.

Run: python bench/sink.py SMTP_PORT CONTROL_PORT
The control port speaks one line per request: `COUNT` -> `<messages> <connections> <bytes>`, `RESET` -> `OK`.
It runs in its own process (started by bench/run.py) so its CPU is measured apart from the service's.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiosmtpd.smtp import SMTP

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


class Counter:
    def __init__(self) -> None:
        self.messages = 0
        self.connections = 0
        self.bytes = 0

    async def handle_DATA(self, server, session, envelope):
        self.messages += 1
        self.bytes += len(envelope.content or b"")
        envelope.content = None  # discard
        envelope.original_content = None
        return "250 OK"


class CountingSMTP(SMTP):
    def connection_made(self, transport):
        COUNTER.connections += 1
        super().connection_made(transport)


COUNTER = Counter()


async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            cmd = line.strip().upper()
            if cmd == b"COUNT":
                writer.write(f"{COUNTER.messages} {COUNTER.connections} {COUNTER.bytes}\n".encode())
            elif cmd == b"RESET":
                COUNTER.messages = COUNTER.connections = COUNTER.bytes = 0
                writer.write(b"OK\n")
            else:
                writer.write(b"ERR\n")
            await writer.drain()
    finally:
        writer.close()


async def main(smtp_port: int, control_port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    smtp = await loop.create_server(
        lambda: CountingSMTP(COUNTER, hostname="sink.bench", data_size_limit=64 * 1024 * 1024, timeout=600),
        "127.0.0.1", smtp_port, backlog=512)
    ctl = await asyncio.start_server(control, "127.0.0.1", control_port)
    print("ready", flush=True)
    await stop.wait()
    smtp.close()
    ctl.close()


if __name__ == "__main__":
    if uvloop is not None:
        uvloop.install()
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
