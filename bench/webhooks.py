"""Webhook figures (issue 16): events delivered per second by one worker to a local receiver, and the time from
a DSN's (or a complaint's) arrival at the bounce listener to its webhook at the receiver.

Run from the project root:  .venv/bin/python bench/webhooks.py [--events 2000] [--dsns 20] [--complaints 20]

PostgreSQL: a fresh database on $BENCH_PG (default postgresql://postgres@127.0.0.1:5432), dropped at the end.
Redis: $BENCH_REDIS (default redis://127.0.0.1:6379/9), flushed. The receiver is the tests' uvicorn receiver
(verifies every signature with standardwebhooks, answers 204).

1. Throughput: N message.sent events are committed (as lifecycle would, through app.webhooks.events.emit),
   then one worker's drain job (worker.webhooks.deliver_webhooks, in this process) delivers them; events/s =
   N / wall time of the drain until none is due.
2. DSN -> webhook: a real worker process (`arq worker.main.WorkerSettings`) runs; for each DSN, the time from
   starting the SMTP transaction with the listener (aiosmtplib) to the signed message.bounced arriving at the
   receiver (the listener commits, enqueues webhooks.deliver, the worker delivers).
3. Complaint -> webhook: the same for ARF reports (RFC 5965) sent to the complaints address, matched by the VERP
   token in their Original-Mail-From, until the signed message.complained arrives; and how many such reports
   app.bounces.arf parses per second in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiosmtplib
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.bounces import arf, listener, verp  # noqa: E402
from app.core.clock import utcnow  # noqa: E402
from app.core.migrate import upgrade  # noqa: E402
from app.core.redis import connect  # noqa: E402
from app.main import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.users import keys as key_service  # noqa: E402
from app.webhooks import events  # noqa: E402
from tests.support.webhook_receiver import receiver  # noqa: E402

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/9")
KEY = "kRYq5XbX7xkq8o2sFZ1S1X3f0pWq0yT8m3vV6cZ9aQk="


def _dsn(addr: str, message_id_header: str) -> bytes:
    return ("From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
            "--B\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
            "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
            f"Final-Recipient: rfc822; {addr}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 <{addr}>: Recipient address rejected: User unknown\r\n"
            f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id_header}\r\n--B--\r\n").encode()


def _arf(addr: str, mail_from: str, message_id_header: str) -> bytes:
    return ("From: <fbl@provider.example>\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=feedback-report; boundary=B\r\n\r\n"
            "--B\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n"
            "--B\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
            f"User-Agent: Bench/1.0\r\nVersion: 1\r\nOriginal-Mail-From: <{mail_from}>\r\n"
            f"Original-Rcpt-To: <{addr}>\r\nSource-IP: 192.0.2.25\r\n"
            f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id_header}\r\n--B--\r\n").encode()


def _latency_line(what: str, n: int, latencies: list[float]) -> str:
    lat = sorted(latencies)
    return (f"{what}: {n}, median {statistics.median(lat):.0f} ms, p90 {lat[int(len(lat) * 0.9) - 1]:.0f} ms, "
            f"max {lat[-1]:.0f} ms (listener in process, one worker process, loopback receiver)")


async def main(n_events: int, n_dsns: int, n_complaints: int) -> None:
    name = "outbox_bench_wh_" + uuid.uuid4().hex[:6]
    admin = await asyncpg.connect(PG + "/postgres")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = f"{PG}/{name}"
    worker: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.to_thread(upgrade, url)
        settings = Settings(DATABASE_URL=url, REDIS_URL=REDIS, OUTBOX_SECRET_KEYS=KEY,
                            OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS=True, OUTBOX_BOUNCE_DOMAIN="bounce.test",
                            OUTBOX_TUNE_GC=False)
        redis = await connect(REDIS)
        await redis.flushdb()
        app = create_app(settings)
        async with app.router.lifespan_context(app), receiver() as hook:
            import httpx

            from worker.main import build_context
            from worker.webhooks import deliver_webhooks

            async with app.state.sessionmaker() as s:
                key = await key_service.create(s, role="admin", name="bench")
                await s.commit()
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://o",
                                         headers={"Authorization": f"Bearer {key}"}) as c:
                r = await c.post("/webhooks", json={"url": hook.url, "events": [
                    "message.sent", "message.bounced", "message.complained"]})
                hook.secrets.append(r.json()["secret"])
                # Messages to attach the events to (and to bounce).
                r = await c.post("/messages/bulk", json={"messages": [
                    {"to": [f"r{i}@example.com"], "from": "s@example.com", "subject": f"b{i}", "body_text": "x"}
                    for i in range(max(n_dsns, n_complaints, 1))]})
                mids = [a["id"] for a in r.json()["accepted"]]
                headers = [a["message_id"] for a in r.json()["accepted"]]
            await redis.flushdb()
            ctx = await build_context({"redis": redis}, settings)
            # 1. throughput
            async with app.state.sessionmaker() as s:
                for start in range(0, n_events, 500):
                    batch = [events.NewEvent("message.sent", mids[i % len(mids)], {"status": "sent"})
                             for i in range(start, min(n_events, start + 500))]
                    await events.emit(s, batch, utcnow())
                await s.commit()
            t0 = time.monotonic()
            delivered = 0
            while delivered < n_events:
                delivered += await deliver_webhooks(ctx)  # type: ignore[arg-type]
            elapsed = time.monotonic() - t0
            await hook.wait_for(n_events, 30)
            assert all(d.verified for d in hook.received)
            print(f"throughput: {n_events} events in {elapsed:.2f} s = {n_events / elapsed:.0f} events/s "
                  f"(one worker, concurrency {settings.webhook_concurrency}, PostgreSQL, loopback receiver)")
            ctx["heartbeat"].cancel()
            await ctx["engine"].dispose()
            await redis.flushdb()
            # 2. DSN -> webhook through a real worker process
            env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS, "OUTBOX_SECRET_KEYS": KEY,
                   "OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS": "true", "OUTBOX_BOUNCE_DOMAIN": "bounce.test",
                   "OUTBOX_LOG_LEVEL": "WARNING"}
            worker = subprocess.Popen([sys.executable, "-m", "arq", "worker.main.WorkerSettings"], env=env, cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await asyncio.sleep(3)
            server = await listener.start(settings, app.state.sessionmaker, redis, "127.0.0.1:0")
            port = server.sockets[0].getsockname()[1]
            latencies = []
            for i in range(n_dsns):
                before = len(hook.received)
                rcpt = verp.return_path(mids[i], settings)
                t = time.monotonic()
                async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as smtp:
                    await smtp.sendmail("", [str(rcpt)], _dsn(f"r{i}@example.com", headers[i]))
                await hook.wait_for(before + 1, 30)
                latencies.append((time.monotonic() - t) * 1000)
            if latencies:
                print(_latency_line("DSN -> webhook: DSNs", n_dsns, latencies))
            # 3. complaint -> webhook
            latencies = []
            for i in range(n_complaints):
                before = len(hook.received)
                t = time.monotonic()
                async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as smtp:
                    await smtp.sendmail("fbl@provider.example", ["complaints@bounce.test"],
                                        _arf(f"r{i}@example.com", str(verp.return_path(mids[i], settings)), headers[i]))
                await hook.wait_for(before + 1, 30)
                latencies.append((time.monotonic() - t) * 1000)
            server.close()
            if latencies:
                assert hook.received[-1].payload and hook.received[-1].payload["type"] == "message.complained"
                print(_latency_line("complaint -> webhook: reports", n_complaints, latencies))
                sample = _arf("r0@example.com", str(verp.return_path(mids[0], settings)), headers[0])
                t0 = time.monotonic()
                for _ in range(2000):
                    arf.parse(sample)
                print(f"ARF parsing: {2000 / (time.monotonic() - t0):.0f} reports/s (one core, this process)")
        await redis.flushdb()
        await redis.aclose()
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(10)
        admin = await asyncpg.connect(PG + "/postgres")
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--dsns", type=int, default=20)
    p.add_argument("--complaints", type=int, default=20)
    a = p.parse_args()
    asyncio.run(main(a.events, a.dsns, a.complaints))
