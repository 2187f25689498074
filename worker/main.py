"""arq worker settings: `arq worker.main.WorkerSettings`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from typing import Any, cast

from arq import cron, func
from arq.typing import WorkerCoroutine

from app.bounces import jobs as bounce_jobs
from app.core.db import create_engine, is_sqlite, make_sessionmaker
from app.core.logging import configure_logging, quiet_periodic_jobs
from app.core.redis import redis_settings
from app.core.runtime import tune_gc
from app.messages import jobs, lifecycle
from app.monitoring.service import HEARTBEAT_SECONDS, HEARTBEAT_TTL_SECONDS, WORKER_KEY_PREFIX
from app.settings import Settings, get_settings
from app.webhooks import jobs as webhook_jobs
from worker.bounces import poll_mailboxes
from worker.context import WorkerContext
from worker.dispatch import deliver, high_lane
from worker.reconcile import reconcile
from worker.webhooks import deliver_webhooks

# arq creates its event loop after importing this module: make it uvloop's (the worker is mostly socket I/O).
with contextlib.suppress(ImportError):
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _heartbeat(ctx: WorkerContext) -> None:
    key = WORKER_KEY_PREFIX + ctx["worker_id"]
    started = time.time()
    while True:
        with contextlib.suppress(Exception):
            await ctx["redis"].set(key, json.dumps({
                "id": ctx["worker_id"], "host": socket.gethostname(), "pid": os.getpid(), "at": time.time(),
                "started_at": started}), ex=HEARTBEAT_TTL_SECONDS)
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def startup(raw: dict[str, Any]) -> None:
    configure_logging(get_settings())  # again: arq's command line replaced its logger's handler after import
    ctx = await build_context(raw, get_settings())
    raw["high_lane"] = asyncio.create_task(high_lane(ctx))
    if get_settings().tune_gc:
        tune_gc()


async def build_context(raw: dict[str, Any], settings: Settings) -> WorkerContext:
    """Fill an arq context (its `redis` is set by arq) with what the jobs need. Tests call this directly."""
    ctx = cast(WorkerContext, raw)
    engine = create_engine(settings.effective_database_url)
    ctx["settings"] = settings
    ctx["engine"] = engine
    ctx["sessionmaker"] = make_sessionmaker(engine)
    ctx["postgres"] = not is_sqlite(settings.effective_database_url)
    ctx["worker_id"] = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ctx["pools"] = {}
    ctx["inflight"] = asyncio.Semaphore(max(2, settings.smtp_connections * 2))
    ctx["large"] = asyncio.Semaphore(2)
    ctx["inflight_high"] = asyncio.Semaphore(max(2, settings.high_lane_connections * 2))
    ctx["turns"] = lifecycle.KeyTurns()
    ctx["heartbeat"] = asyncio.create_task(_heartbeat(ctx))
    return ctx


async def shutdown(raw: dict[str, Any]) -> None:
    ctx = cast(WorkerContext, raw)
    ctx["heartbeat"].cancel()
    if raw.get("high_lane") is not None:
        raw["high_lane"].cancel()
    with contextlib.suppress(Exception):
        await ctx["redis"].delete(WORKER_KEY_PREFIX + ctx["worker_id"])
    for _, transport in ctx["pools"].values():
        with contextlib.suppress(Exception):
            await transport.aclose()
    await ctx["engine"].dispose()


_settings = get_settings()
configure_logging(_settings)
RECONCILE = "reconcile"
quiet_periodic_jobs(RECONCILE, bounce_jobs.POLL)  # they log what they did; arq's every-tick lines are dropped


class WorkerSettings:
    # arq types a job's ctx as dict[Any, Any]; ours is the WorkerContext that startup() fills, which a
    # TypedDict cannot express to it, so the jobs are handed over as arq's protocol.
    functions = [
        func(cast(WorkerCoroutine, deliver), name=jobs.DELIVER, keep_result=0, timeout=180, max_tries=3),
        func(cast(WorkerCoroutine, deliver_webhooks), name=webhook_jobs.DELIVER, keep_result=0, timeout=180,
             max_tries=3),
    ]
    cron_jobs = [
        cron(cast(WorkerCoroutine, reconcile), name=RECONCILE,
             second=set(range(0, 60, max(1, _settings.reconcile_every_seconds))),
             run_at_startup=True, keep_result=0, timeout=60, unique=True),
    ]
    if _settings.bounce_poll_seconds > 0:
        # Ticks; each mailbox's row says when its poll is due and who holds it (app.bounces.mailbox).
        cron_jobs.append(cron(cast(WorkerCoroutine, poll_mailboxes), name=bounce_jobs.POLL,
                              second=set(range(0, 60, bounce_jobs.tick_seconds(_settings.bounce_poll_seconds))),
                              run_at_startup=True, keep_result=0, timeout=240, unique=True))
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = redis_settings(_settings.effective_redis_url)
    queue_name = _settings.queue_name
    max_jobs = _settings.worker_max_jobs
    poll_delay = 0.05
    keep_result = 0
    job_timeout = 180
    health_check_interval = 30
