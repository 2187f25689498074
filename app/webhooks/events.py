"""Webhook events, written in the transaction of the change that causes them (durable, at least once).

`lifecycle` calls `emit_outcomes` / `emit_status` inside its writes, and bounce and complaint processing call
`emit`: the event row and one pending delivery per endpoint that wants it are inserted with the status change,
so a commit means the event will be delivered, whatever happens to Redis or the worker afterwards. Nothing is written
when no endpoint (enabled or not: a disabled one gets what it missed when re-enabled) wants the event type.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ttl_cache import TTLCache
from app.models import MESSAGES, WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS, WEBHOOK_EVENTS

M = MESSAGES
EP = WEBHOOK_ENDPOINTS
EV = WEBHOOK_EVENTS
D = WEBHOOK_DELIVERIES

EVENT_TYPES: tuple[str, ...] = ("message.sent", "message.failed", "message.bounced", "message.expired",
                                "message.held", "message.deferred", "message.complained")
TEST_EVENT = "webhook.test"
# The message status a write leads to -> the event it is. `retrying` is a deferral too (a temporary failure).
STATUS_EVENTS: dict[str, str] = {"sent": "message.sent", "failed": "message.failed", "expired": "message.expired",
                                 "held": "message.held", "deferred": "message.deferred",
                                 "retrying": "message.deferred"}
_EMITTED = "outbox.webhook_events"  # session.info counter: the worker wakes the webhook drain after commit


@dataclass
class NewEvent:
    type: str
    message_id: int | None
    data: dict[str, Any]


class OutcomeLike(Protocol):
    """What an event needs of `lifecycle.Outcome` (no import: lifecycle imports this module)."""

    @property
    def message_id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def reply_code(self) -> int | None: ...
    @property
    def reply_text(self) -> str | None: ...
    @property
    def error_type(self) -> str | None: ...
    @property
    def explanation(self) -> str | None: ...
    @property
    def fix(self) -> str | None: ...
    @property
    def recipients(self) -> dict[str, Any]: ...
    @property
    def uncertain(self) -> bool: ...
    @property
    def next_attempt_at(self) -> datetime | None: ...


def new_uid() -> str:
    return f"evt_{uuid.uuid4().hex}"


def emitted(session: AsyncSession) -> int:
    """Events this session wrote since the last call (read after commit to wake the webhook drain)."""
    return int(session.info.pop(_EMITTED, 0))


# Every write of a batch of outcomes asks which endpoints want its events: the worker keeps the list for
# ENDPOINTS_TTL seconds (a change made through this process empties it at once; `forget_endpoints`), so the
# delivery path does not read the endpoint table once per recorded group. An endpoint created in another
# process starts receiving events within the TTL.
ENDPOINTS_TTL = 2.0
_endpoints: TTLCache[int, list[tuple[int, set[str], int | None]]] = TTLCache(ENDPOINTS_TTL)


def forget_endpoints() -> None:
    _endpoints.clear()


async def _endpoints_wanting(session: AsyncSession, types: Iterable[str]) -> list[tuple[int, set[str], int | None]]:
    wanted = set(types)
    every = _endpoints.get(0)
    if every is None:
        rows = (await session.execute(select(EP.c.id, EP.c.events, EP.c.api_key_id))).all()
        every = [(r.id, set(r.events or ()), r.api_key_id) for r in rows]
        _endpoints.put(0, every)
    return [e for e in every if wanted & e[1]]


async def emit(session: AsyncSession, events: Sequence[NewEvent], now: datetime,
               endpoints: list[tuple[int, set[str], int | None]] | None = None) -> int:
    """Insert the events some endpoint wants and one pending delivery per such endpoint; returns how many
    events were written. A service key's endpoint gets only its own messages' events."""
    if not events:
        return 0
    if endpoints is None:
        endpoints = await _endpoints_wanting(session, {e.type for e in events})
    if not endpoints:
        return 0
    owners: dict[int, int | None] = {}
    if any(owner is not None for _, _, owner in endpoints):
        ids = sorted({e.message_id for e in events if e.message_id is not None})
        if ids:
            owners = {r.id: r.api_key_id for r in
                      (await session.execute(select(M.c.id, M.c.api_key_id).where(M.c.id.in_(ids)))).all()}
    plans: list[tuple[NewEvent, list[int]]] = []
    for e in events:
        targets = [eid for eid, types, owner in endpoints
                   if e.type in types and (owner is None or (e.message_id is not None
                                                             and owners.get(e.message_id) == owner))]
        if targets:
            plans.append((e, targets))
    if not plans:
        return 0
    result = await session.execute(
        insert(EV).returning(EV.c.id, sort_by_parameter_order=True),
        [{"uid": new_uid(), "type": e.type, "message_id": e.message_id, "data": e.data, "created_at": now}
         for e, _ in plans])
    event_ids = [r[0] for r in result.all()]
    await session.execute(insert(D), [
        {"endpoint_id": target, "event_id": event_id, "state": "pending", "attempts": 0, "next_attempt_at": now,
         "created_at": now}
        for event_id, (_, targets) in zip(event_ids, plans, strict=True) for target in targets])
    session.info[_EMITTED] = session.info.get(_EMITTED, 0) + len(plans)
    return len(plans)


def outcome_data(o: OutcomeLike) -> dict[str, Any]:
    return {"status": o.status, "provider": o.provider, "reply_code": o.reply_code, "reply_text": o.reply_text,
            "error_type": o.error_type, "explanation": o.explanation, "fix": o.fix,
            "recipients": o.recipients or {}, "uncertain": o.uncertain,
            "next_attempt_at": o.next_attempt_at.isoformat() if o.next_attempt_at else None,
            "recipient_state": getattr(o, "recipient_state", None)}


async def emit_outcomes(session: AsyncSession, outcomes: Sequence[OutcomeLike], now: datetime, worker: str) -> int:
    """Events for the outcomes `lifecycle.record` just wrote: only those it did write (a message whose lease
    was lost is not this worker's to report), recognised by the claim and the write time."""
    types = {STATUS_EVENTS[o.status] for o in outcomes if o.status in STATUS_EVENTS}
    if not types:
        return 0
    endpoints = await _endpoints_wanting(session, types)
    if not endpoints:
        return 0
    ids = [o.message_id for o in outcomes]
    written = {r[0] for r in (await session.execute(
        select(M.c.id).where(M.c.id.in_(ids), M.c.claimed_by == worker, M.c.updated_at == now))).all()}
    return await emit(session, [NewEvent(STATUS_EVENTS[o.status], o.message_id, outcome_data(o))
                                for o in outcomes if o.message_id in written and o.status in STATUS_EVENTS],
                      now, endpoints)


async def emit_status(session: AsyncSession, message_ids: Sequence[int], status: str, now: datetime,
                      **data: Any) -> int:
    """Events for messages a lifecycle write moved to `status` (expired, or sent by hand to the user)."""
    if not message_ids or status not in STATUS_EVENTS:
        return 0
    return await emit(session, [NewEvent(STATUS_EVENTS[status], mid, {"status": status, **data})
                                for mid in message_ids], now)
