"""The webhook drain job ("webhooks.deliver"): claim due deliveries, POST them concurrently, record each answer;
repeat until none are due or the time slice ends. See app.webhooks.delivery for the policy."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from app.core.clock import utcnow
from app.settings import Settings
from app.webhooks import delivery, jobs
from worker.context import WorkerContext

log = logging.getLogger("outbox.webhooks")
DRAIN_SECONDS = 20.0
BATCH = 100


async def _one(http: Any, gate: asyncio.Semaphore, d: Any, targets: dict[int, delivery.Target],
               evs: dict[int, Any], msgs: dict[int, Any], s: Settings) -> delivery.Result:
    ev = evs[d.event_id]
    body = delivery.body_of(ev, msgs.get(ev.message_id))
    async with gate:
        return await delivery.post(http, targets[d.endpoint_id], ev.uid, body, s, utcnow())


async def deliver_webhooks(ctx: WorkerContext, *_: Any, **__: Any) -> int:
    s = ctx["settings"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_SECONDS
    total = 0
    gate = asyncio.Semaphore(s.webhook_concurrency)
    async with delivery.client() as http:
        while True:
            now = utcnow()
            async with ctx["sessionmaker"]() as session:
                claimed = await delivery.claim(session, now, BATCH, s.webhook_lease_seconds, ctx["postgres"])
                await session.commit()
            if not claimed:
                break
            async with ctx["sessionmaker"]() as session:
                targets, evs, msgs = await delivery.load(session, claimed, s, now)

            results = await asyncio.gather(*(_one(http, gate, d, targets, evs, msgs, s) for d in claimed))
            async with ctx["sessionmaker"]() as session:
                done = utcnow()
                await delivery.record_batch(session, claimed, results, s, done)
                await session.commit()
            total += len(claimed)
            if loop.time() > deadline:
                await jobs.enqueue(ctx["redis"], s.queue_name, "more", ctx["worker_id"], int(time.time()))
                return total
        # Retries come due later: a wake-up for the next one if it is near (else the reconciler finds it).
        async with ctx["sessionmaker"]() as session:
            at = await delivery.next_due_at(session)
        if at is not None:
            delay = (at - utcnow()).total_seconds()
            if 0 < delay <= 600:
                await jobs.enqueue(ctx["redis"], s.queue_name, "retry", int(at.timestamp() * 10),
                                   defer_by=delay + 0.05)
    return total
