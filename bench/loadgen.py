"""Load generator for the benchmark: a minimal raw-asyncio HTTP/1.1 client with pre-built request bytes.

Run: python bench/loadgen.py '<json spec>'   (bench/run.py starts it as its own process)
Spec: {"port", "key", "mode": "single"|"bulk"|"attach", "n": measured requests, "warmup": requests,
       "concurrency", "bulk_size" (bulk), "attachment_bytes" (attach), "timeout": seconds for the whole run}
Prints one JSON line: requests, seconds, req_per_s, latency percentiles (ms), status counts, and the load
generator's own CPU (user+system seconds and cores) over the measured phase.

httpx tops out near 430 req/s on this machine (BENCHMARKS.md); this client does not parse more than it must:
status line, Content-Length (or chunked), keep-alive connections, one request in flight per connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import sys
import time

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


def small_message(i: int) -> dict:
    return {"to": [f"r{i % 97}@example.com"], "from": "bench@example.com", "subject": f"Benchmark message {i}",
            "body_text": "Hello,\n\nthis is a small benchmark message.\n\nRegards\n"}


def build_bodies(spec: dict) -> tuple[str, list[bytes]]:
    mode = spec["mode"]
    if mode == "single":
        return "/messages", [json.dumps(small_message(i)).encode() for i in range(64)]
    if mode == "bulk":
        size = int(spec.get("bulk_size", 500))
        return "/messages/bulk", [json.dumps({"messages": [small_message(j * size + i) for i in range(size)]}).encode()
                                  for j in range(4)]
    if mode == "attach":
        blob = base64.b64encode(os.urandom(int(spec["attachment_bytes"]))).decode()
        msg = small_message(0) | {"subject": "Benchmark message with a large attachment", "attachments": [
            {"filename": "big.bin", "content_type": "application/octet-stream", "content_base64": blob}]}
        return "/messages", [json.dumps(msg).encode()]
    raise SystemExit(f"unknown mode {mode!r}")


def request_bytes(port: int, key: str, path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


class Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def ensure(self) -> None:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        await self.ensure()
        assert self.reader is not None and self.writer is not None
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        chunked = close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            parts = []
            for _ in range(1_000_000):
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size + 2))
            body = b"".join(p[:-2] for p in parts)
        else:
            body = await self.reader.readexactly(length or 0)
        if close:
            self.writer.close()
            self.writer = None
        return status, body


async def phase(conns: list[Conn], reqs: list[bytes], n: int, deadline: float) -> tuple[list[float], dict, list]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    counter = iter(range(n))

    async def one(conn: Conn) -> None:
        for i in counter:  # shared iterator: bounded by n in total
            if time.monotonic() > deadline:
                errors.append("deadline")
                return
            data = reqs[i % len(reqs)]
            t = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(conn.request(data), max(1.0, deadline - time.monotonic()))
            except Exception as exc:
                errors.append(repr(exc)[:200])
                conn.writer = None
                continue
            latencies.append(time.perf_counter() - t)
            statuses[status] = statuses.get(status, 0) + 1
            if status >= 300 and len(errors) < 5:
                errors.append(f"{status}: {body[:200]!r}")

    await asyncio.gather(*(one(c) for c in conns))
    return latencies, statuses, errors


def pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


async def main(spec: dict) -> dict:
    path, bodies = build_bodies(spec)
    reqs = [request_bytes(spec["port"], spec["key"], path, b) for b in bodies]
    conns = [Conn(spec["port"]) for _ in range(int(spec["concurrency"]))]
    deadline = time.monotonic() + float(spec.get("timeout", 120))
    warm = int(spec.get("warmup", 0))
    if warm:
        await phase(conns, reqs, warm, deadline)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    latencies, statuses, errors = await phase(conns, reqs, int(spec["n"]), deadline)
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    for c in conns:
        if c.writer is not None:
            c.writer.close()
    lat = sorted(latencies)
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {
        "mode": spec["mode"], "requests": len(latencies), "ok": ok, "warmup": warm, "seconds": elapsed,
        "req_per_s": len(latencies) / elapsed if elapsed else 0.0,
        "msgs_per_s": ok * int(spec.get("bulk_size", 1) if spec["mode"] == "bulk" else 1) / elapsed if elapsed else 0.0,
        "p50_ms": pct(lat, 50) * 1000, "p90_ms": pct(lat, 90) * 1000, "p99_ms": pct(lat, 99) * 1000,
        "max_ms": (lat[-1] * 1000) if lat else float("nan"),
        "statuses": {str(k): v for k, v in statuses.items()}, "errors": errors[:5], "error_count": len(errors),
        "loadgen_cpu_s": cpu, "loadgen_cores": cpu / elapsed if elapsed else 0.0,
        "request_bytes": len(reqs[0]),
    }


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    if uvloop is not None:
        uvloop.install()
    print(json.dumps(asyncio.run(main(spec))), flush=True)
