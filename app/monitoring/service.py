"""What monitoring sees: dependencies, workers, queue depth, throttle state, recent failures. No secrets."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.delivery import throttle
from app.messages import repository
from app.messages.lifecycle import WAITING_STATUSES
from app.parameters import service as parameters_service
from app.settings import Settings

WORKER_KEY_PREFIX = "outbox:worker:"
HEARTBEAT_SECONDS = 2  # a worker writes its key this often...
HEARTBEAT_TTL_SECONDS = 10  # ...and the key lives this long: gone means the worker stopped (or Redis lost it)


async def db_ok(session: AsyncSession) -> tuple[bool, str | None]:
    try:
        await session.execute(text("SELECT 1"))
        return True, None
    except Exception as exc:
        # Leave the session usable: the request's transaction ends (commit) after this answer.
        with contextlib.suppress(Exception):
            await session.rollback()
        return False, type(exc).__name__


async def redis_ok(redis: ArqRedis | None) -> tuple[bool, str | None]:
    if redis is None:
        return False, "not configured"
    try:
        await redis.ping()
        return True, None
    except Exception as exc:
        return False, type(exc).__name__


async def workers(redis: ArqRedis) -> list[dict[str, Any]]:
    out = []
    now = time.time()
    async for key in redis.scan_iter(match=WORKER_KEY_PREFIX + "*", count=100):
        raw = await redis.get(key)
        if raw is None:
            continue
        info = json.loads(raw)
        info["heartbeat_age_seconds"] = round(now - float(info.get("at", now)), 1)
        out.append(info)
    return sorted(out, key=lambda w: str(w.get("id")))


# The chart's outcomes: an attempt's outcome -> what an administrator reads.
CHART_OUTCOMES: dict[str, str] = {"sent": "sent", "partial": "sent", "transient": "retrying", "permanent": "failed",
                                  "held": "held", "throttled": "deferred", "deferred": "deferred"}


async def throughput(session: AsyncSession, minutes: int) -> dict[str, Any]:
    """Messages per minute by outcome over the last `minutes` (attempts and deferrals, from delivery_attempt):
    `start` (the first minute), and per outcome (sent, retrying, failed, held, deferred) one count per minute."""
    end = utcnow().replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    series: dict[str, list[int]] = {name: [0] * minutes for name in dict.fromkeys(CHART_OUTCOMES.values())}
    for at, outcome, n in await repository.attempts_per_minute(session, start):
        i = int((at - start).total_seconds() // 60)
        if 0 <= i < minutes:
            series[CHART_OUTCOMES.get(outcome, "failed")][i] += n
    return {"start": start, "minutes": minutes, "series": series}


async def _bounce_polling(session: AsyncSession, settings: Settings, providers: list[dict[str, Any]]) -> dict[str, Any]:
    """Reading NDRs from the Graph / Exchange batch mailboxes: the period, each mailbox's state; a mailbox the
    app may not read also becomes a warning of its provider (where an administrator looks first)."""
    from app.bounces import mailbox

    states = await mailbox.states(session)
    if settings.bounce_poll_seconds > 0:
        for st in states:
            if st["error_code"] != mailbox.PERMISSION_MISSING:
                continue
            for p in providers:
                if p["id"] == st["provider"]:
                    p["warnings"] = [*p.get("warnings", []), f"Bounce polling is on but {st['error']}"]
    return {"every_seconds": settings.bounce_poll_seconds, "mailboxes": states}


async def status(session: AsyncSession, redis: ArqRedis | None, settings: Settings) -> dict[str, Any]:
    from app.providers import senders
    from app.providers import service as providers_service

    db, db_err = await db_ok(session)
    rd, rd_err = await redis_ok(redis)
    out: dict[str, Any] = {
        "status": "ok" if db and rd else "degraded",
        "database": {"ok": db, "error": db_err},
        "redis": {"ok": rd, "error": rd_err},
        "time": utcnow().isoformat(),
    }
    if db:
        params = await parameters_service.get(session)
        lanes = await repository.counts_by_status_and_kind(session)
        counts = {s: sum(by_kind.values()) for s, by_kind in lanes.items()}
        now = utcnow()
        oldest = await repository.oldest_due(session, now)
        failures = await repository.recent_failures(session)
        providers = await providers_service.summaries(session, settings)
        out.update({
            "batch_processing_enabled": params.batch_processing_enabled,
            "batch_provider": params.batch_provider,
            "queue": {"by_status": counts, "by_status_and_kind": lanes,
                      "waiting_by_lane": await repository.waiting_by_lane(session),
                      "waiting": sum(counts.get(s, 0) for s in WAITING_STATUSES),
                      "oldest_waiting_age_seconds": round((now - oldest).total_seconds(), 1) if oldest else None},
            "providers": [p.model_dump() for p in providers],
            "senders": (await senders.counts(session, settings)).model_dump(),
            "recent_failures": [
                {"id": f.id, "at": f.finished_at.isoformat() if f.finished_at else None,
                 "error_type": f.last_error_type, "error": f.last_error, "provider": f.sent_via or f.provider}
                for f in failures],
        })
        out["bounce_polling"] = await _bounce_polling(session, settings, out["providers"])
        if rd and redis is not None:
            out["throttle"] = await throttle.state(
                redis, {p.id: p.per_minute_limit_in_force for p in providers if p.id != "email_app"},
                settings.throttle_window_seconds)
    if rd and redis is not None:
        ws = await workers(redis)
        out["workers"] = {"alive": len(ws), "items": ws}
        if not ws:
            out["status"] = "degraded"
    return out
