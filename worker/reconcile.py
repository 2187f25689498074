"""The reconciler (arq cron): the database says what is still to do, whatever happened to Redis.

Every few seconds: give back messages whose worker died (expired lease), and enqueue a drain when due
messages, or due webhook deliveries, exist (their job may be gone: Redis flushed or restarted). Once per
distributor interval: expire unsent messages past the expiration days, purge history past the retention
period, and fold the status counters of ended database connections (lifecycle.compact_counts).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.messages import jobs, lifecycle, repository
from app.monitoring.service import HEARTBEAT_TTL_SECONDS, WORKER_KEY_PREFIX
from app.parameters import service as parameters_service
from app.webhooks import delivery as webhook_delivery
from app.webhooks import jobs as webhook_jobs
from worker.context import WorkerContext

log = logging.getLogger("outbox.reconcile")
SWEEP_KEY = "outbox:reconcile:sweep"
SUSPECT_PREFIX = "outbox:reconcile:missing:"  # a worker's heartbeat was first found missing at this time


async def _dead_workers(ctx: WorkerContext, session: AsyncSession) -> list[str]:
    """Workers holding messages whose heartbeat is gone: their messages need not wait for the lease (120 s).

    A missing key is only suspicious the first time it is seen (Redis may have been flushed or restarted: a live
    worker writes its key again within HEARTBEAT_SECONDS); a worker is dead when its key is still missing at a
    later round, at least a heartbeat TTL after it was first missed."""
    redis = ctx["redis"]
    dead = []
    for worker in await repository.claimers(session):
        key = SUSPECT_PREFIX + worker
        if await redis.exists(WORKER_KEY_PREFIX + worker):
            await redis.delete(key)
            continue
        if await redis.set(key, str(time.time()), ex=300, nx=True):
            continue
        first = float(await redis.get(key) or time.time())
        if time.time() - first >= HEARTBEAT_TTL_SECONDS / 2:
            dead.append(worker)
    if dead:
        log.warning("workers stopped without finishing; their messages are sent again",
                    extra={"workers": dead})
    return dead


async def reconcile(ctx: WorkerContext, *_: Any, **__: Any) -> dict[str, int]:
    s = ctx["settings"]
    redis = ctx["redis"]
    now = utcnow()
    async with ctx["sessionmaker"]() as session:
        params = await parameters_service.get(session)
        released = await lifecycle.release_stale_leases(session, now, await _dead_workers(ctx, session))
        expired = purged = 0
        if await redis.set(SWEEP_KEY, "1", px=params.distributor_interval_seconds * 1000, nx=True):
            expired = await lifecycle.expire_due(session, now)
            retention = parameters_service.effective_days(params.history_retention_days)
            purged = await lifecycle.purge_history(session, now - timedelta(days=retention))
            purged += await webhook_delivery.purge(session, now - timedelta(days=retention))
            await lifecycle.compact_counts(session)  # the status counters of ended connections, into one row
        due = await repository.any_due(session, now, batch_enabled=params.batch_processing_enabled)
        webhooks_due = await webhook_delivery.any_due(session, now)
        await session.commit()
    if due:
        # A fresh job id each time: a job id held by a killed job would otherwise block the drain (TRAPS.md).
        stamp = int(time.time())
        for slot in range(max(1, s.drain_slots)):
            await jobs.enqueue(redis, s.queue_name, "reconcile", stamp, slot)
    if webhooks_due:
        await webhook_jobs.enqueue(redis, s.queue_name, "reconcile", int(time.time()))
    if released or expired or purged:
        log.info("reconciled", extra={"released": released, "expired": expired, "purged": purged})
    return {"released": released, "expired": expired, "purged": purged, "due": int(due),
            "webhooks_due": int(webhooks_due)}
