"""Bounces read from the Graph batch mailbox (issue 16): the time from an NDR appearing in the (fake) inbox to its
signed message.bounced webhook at a receiver, at the configured poll period; and the Graph requests one poll
costs for N NDRs.

Run from the project root:  .venv/bin/python bench/mailbox_bounces.py [--period 10] [--samples 6] [--burst 20]

PostgreSQL: a fresh database on $BENCH_PG (default postgresql://postgres@127.0.0.1:5432), dropped at the end.
Redis: $BENCH_REDIS (default redis://127.0.0.1:6379/9), flushed. The Graph fake (tests/fakes/graph_server.py)
over HTTPS on loopback; one real worker process (`arq worker.main.WorkerSettings`) with
OUTBOX_BOUNCE_POLL_SECONDS=--period sends the messages and polls; the API runs in this process.

1. Latency: one message at a time to an address the fake refuses downstream; t0 when its NDR is in the inbox
   (the fake adds it while answering sendMail), t1 when the webhook arrives. Each send waits a random part of
   a period first, so the latency spreads over [0, period] plus the work.
2. Cost: one message to --burst refused addresses (that many NDRs at once); the Graph requests of the poll that
   reads them (listings + $value reads; token requests counted apart).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.migrate import upgrade  # noqa: E402
from app.core.redis import connect  # noqa: E402
from app.main import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.users import keys as key_service  # noqa: E402
from tests.fakes.graph_server import GraphFake  # noqa: E402
from tests.support.webhook_receiver import receiver  # noqa: E402

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/9")
KEY = "kRYq5XbX7xkq8o2sFZ1S1X3f0pWq0yT8m3vV6cZ9aQk="
BATCH = "sender@contoso.com"


async def _until(check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("gave up waiting")
        await asyncio.sleep(0.01)


async def main(period: int, samples: int, burst: int) -> None:
    name = "outbox_bench_mb_" + uuid.uuid4().hex[:6]
    admin = await asyncpg.connect(PG + "/postgres")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = f"{PG}/{name}"
    worker: subprocess.Popen[bytes] | None = None
    with GraphFake(mailboxes=[BATCH]) as graph:
        graph.authority.roles = ["Mail.Send", "Mail.Read"]
        graph.can_read_mail = True
        env_extra = {"OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS": "true", "OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE": "true",
                     "OUTBOX_MICROSOFT_CA_BUNDLE": graph.ca_path, "OUTBOX_BOUNCE_POLL_SECONDS": str(period)}
        try:
            await asyncio.to_thread(upgrade, url)
            settings = Settings(DATABASE_URL=url, REDIS_URL=REDIS, OUTBOX_SECRET_KEYS=KEY, OUTBOX_TUNE_GC=False,
                                **env_extra)  # type: ignore[arg-type]
            redis = await connect(REDIS)
            await redis.flushdb()
            app = create_app(settings)
            async with app.router.lifespan_context(app), receiver() as hook:
                async with app.state.sessionmaker() as s:
                    key = await key_service.create(s, role="admin", name="bench")
                    await s.commit()
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://o",
                                             headers={"Authorization": f"Bearer {key}"}) as c:
                    r = await c.post("/webhooks", json={"url": hook.url, "events": ["message.bounced"]})
                    hook.secrets.append(r.json()["secret"])
                    r = await c.patch("/providers/graph", json={
                        "tenant_id": graph.tenant_id, "client_id": graph.client_id,
                        "client_secret": graph.client_secret, "batch_account": BATCH,
                        "authority_host": graph.authority_host, "graph_base": graph.graph_base})
                    assert r.status_code == 200, r.text
                    r = await c.patch("/parameters", json={"batch_provider": "graph"})
                    assert r.status_code == 200, r.text
                    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS, "OUTBOX_SECRET_KEYS": KEY,
                           "OUTBOX_LOG_LEVEL": "WARNING", **env_extra}
                    worker = subprocess.Popen([sys.executable, "-m", "arq", "worker.main.WorkerSettings"], env=env,
                                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    await asyncio.sleep(3)
                    inbox = graph.inboxes.setdefault(BATCH, [])
                    latencies = []
                    rng = random.Random(16)
                    for i in range(samples):
                        # A random phase against the poll (else each NDR comes just after the poll that
                        # delivered the previous webhook, and waits a whole period).
                        await asyncio.sleep(rng.uniform(0, period))
                        addr = f"gone{i}@example.com"
                        graph.refuse[addr] = "5.1.10"
                        before_inbox, before_hooks = len(inbox), len(hook.received)
                        r = await c.post("/messages", json={"to": [addr], "subject": f"s{i}", "body_text": "x"})
                        assert r.status_code == 202, r.text
                        await _until(lambda b=before_inbox: len(inbox) > b, 60)
                        t0 = time.monotonic()
                        await hook.wait_for(before_hooks + 1, period + 60)
                        latencies.append(time.monotonic() - t0)
                        print(f"  sample {i + 1}: {latencies[-1]:.1f} s", flush=True)
                    lat = sorted(latencies)
                    print(f"NDR in inbox -> webhook at OUTBOX_BOUNCE_POLL_SECONDS={period}: {samples} NDRs, "
                          f"median {statistics.median(lat):.1f} s, min {lat[0]:.1f} s, max {lat[-1]:.1f} s "
                          "(one worker process, loopback fake and receiver)")
                    # 2. cost of one poll for `burst` NDRs
                    addrs = [f"burst{i}@example.com" for i in range(burst)]
                    graph.refuse |= dict.fromkeys(addrs, "5.1.1")
                    before_hooks = len(hook.received)
                    lists, mimes = len(graph.requests_to("listInbox")), len(graph.requests_to("mime"))
                    tokens = len(graph.token_requests)
                    r = await c.post("/messages", json={"to": addrs, "subject": "burst", "body_text": "x"})
                    assert r.status_code == 202, r.text
                    await hook.wait_for(before_hooks + burst, 2 * period + 60)
                    await asyncio.sleep(0.5)
                    lists = len(graph.requests_to("listInbox")) - lists
                    mimes = len(graph.requests_to("mime")) - mimes
                    print(f"one poll for {burst} NDRs: {lists} listing request(s) + {mimes} $value requests "
                          f"= {lists + mimes} Graph requests ({len(graph.token_requests) - tokens} token requests); "
                          f"{len(hook.received) - before_hooks} webhooks")
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
    p.add_argument("--period", type=int, default=10)
    p.add_argument("--samples", type=int, default=6)
    p.add_argument("--burst", type=int, default=20)
    a = p.parse_args()
    asyncio.run(main(a.period, a.samples, a.burst))
