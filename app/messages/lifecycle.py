"""The only code that changes a message's status. Every transition is one statement (or one per batch).

draft -> queued -> sending -> sent
                          \\-> retrying (transient; backoff in the database) -> sending ...
                          \\-> deferred (throttled; <= 1 minute) -> sending ...
                          \\-> held (an admin must fix the provider; released when they do)
                          \\-> failed (permanent, or retries exhausted)
unsent (queued/deferred/retrying/held/draft) -> expired (after the expiration days) | cancelled
draft -> sent, sent_via "email_app" ("Use an email app": handed to the user as an .eml file; `hand_to_user`)

A message handed to the user is final for Outbox: it left through the user's own mail app, so it is `sent`
(with `sent_via` and `provider` "email_app", `handed_to_user_at` set and an attempt with outcome
"handed_to_user"), and history lists it with the other sent mail, filterable by provider=email_app.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.messages.schemas import FINAL_STATUSES, UNSENT_STATUSES, WAITING_STATUSES
from app.models import ATTEMPTS, MESSAGES

M = MESSAGES
A = ATTEMPTS

CLAIM_COLUMNS = (M.c.id, M.c.kind, M.c.provider, M.c.deferrals, M.c.attempts, M.c.uncertain, M.c.sender)


async def insert_messages(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """Insert new messages (status set by the caller: draft or queued); returns their ids in the rows' order.

    One statement per distinct set of columns (normally one); `sort_by_parameter_order` makes RETURNING give
    the ids in parameter order, which callers rely on to attach attachments and answer each request."""
    ids: list[int | None] = [None] * len(rows)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(tuple(sorted(row)), []).append(i)
    for positions in groups.values():
        result = await session.execute(insert(M).returning(M.c.id, sort_by_parameter_order=True),
                                       [rows[i] for i in positions])
        for i, r in zip(positions, result.all(), strict=True):
            ids[i] = r[0]
    return [i for i in ids if i is not None]


async def claim_due(
    session: AsyncSession,
    *,
    worker: str,
    now: datetime,
    limit: int,
    lease_seconds: int,
    batch_enabled: bool,
    postgres: bool,
) -> list[Row[Any]]:
    """Compare-and-set many due rows to `sending` with a lease, in one statement.

    On PostgreSQL the inner SELECT takes `FOR UPDATE SKIP LOCKED`, so concurrent workers claim disjoint
    batches without waiting; SQLite has one writer at a time, which serialises claims by itself.
    """
    cond = and_(M.c.status.in_(WAITING_STATUSES), M.c.next_attempt_at <= now)
    if not batch_enabled:
        # The email distributor batch is off: only interactive mail goes out.
        cond = and_(cond, M.c.kind == "interactive")
    inner = select(M.c.id).where(cond).order_by(M.c.next_attempt_at).limit(limit)
    if postgres:
        inner = inner.with_for_update(skip_locked=True)
    stmt = (
        update(M)
        .where(M.c.id.in_(inner.scalar_subquery()))
        .where(M.c.status.in_(WAITING_STATUSES))
        .values(status="sending", lease_until=now + timedelta(seconds=lease_seconds), claimed_by=worker,
                updated_at=now)
        .returning(*CLAIM_COLUMNS)
    )
    return list((await session.execute(stmt)).all())


@dataclass
class Outcome:
    """What happened to one claimed message; `lifecycle.record` turns a list of these into a few statements."""

    message_id: int
    status: str  # sent | retrying | deferred | held | failed
    provider: str
    sender: str
    attempt_outcome: str  # sent | partial | transient | permanent | throttled | held | deferred
    next_attempt_at: datetime | None = None
    reply_code: int | None = None
    reply_text: str | None = None
    error_type: str | None = None
    explanation: str | None = None
    fix: str | None = None
    recipients: dict[str, Any] = field(default_factory=dict)
    uncertain: bool = False
    counts_as_attempt: bool = True
    duration_ms: int | None = None


async def record(session: AsyncSession, outcomes: list[Outcome], now: datetime, worker: str) -> None:
    """Write the outcomes of one batch: one UPDATE for all plain successes, one INSERT for all attempts."""
    if not outcomes:
        return
    plain_sent = [o for o in outcomes if o.status == "sent" and not o.error_type]
    others = [o for o in outcomes if not (o.status == "sent" and not o.error_type)]
    for prov in sorted({o.provider for o in plain_sent}):
        await session.execute(
            update(M)
            .where(M.c.id.in_([o.message_id for o in plain_sent if o.provider == prov]),
                   M.c.status == "sending", M.c.claimed_by == worker)
            .values(status="sent", attempts=M.c.attempts + 1, sent_at=now, finished_at=now, updated_at=now,
                    lease_until=None, sent_via=prov, last_error_type=None, last_error=None, last_fix=None)
        )
    if others:
        stmt = (
            update(M)
            .where(M.c.id == bindparam("b_id"), M.c.status == "sending", M.c.claimed_by == worker)
            .values(
                status=bindparam("b_status"),
                attempts=M.c.attempts + bindparam("b_inc"),
                deferrals=M.c.deferrals + bindparam("b_def"),
                next_attempt_at=bindparam("b_next"),
                sent_at=bindparam("b_sent_at"),
                finished_at=bindparam("b_finished"),
                sent_via=bindparam("b_via"),
                updated_at=now,
                lease_until=None,
                uncertain=or_(M.c.uncertain, bindparam("b_uncertain")),
                last_error_type=bindparam("b_etype"),
                last_error=bindparam("b_err"),
                last_fix=bindparam("b_fix"),
            )
        )
        await session.execute(stmt, [
            {
                "b_id": o.message_id, "b_status": o.status, "b_inc": 1 if o.counts_as_attempt else 0,
                "b_def": 1 if o.status == "deferred" else 0, "b_next": o.next_attempt_at,
                "b_sent_at": now if o.status == "sent" else None,
                "b_finished": now if o.status in FINAL_STATUSES else None,
                "b_via": o.provider if o.status == "sent" else None,
                "b_uncertain": o.uncertain, "b_etype": o.error_type, "b_err": o.explanation, "b_fix": o.fix,
            }
            for o in others
        ])
    await session.execute(insert(A), [
        {
            "message_id": o.message_id, "at": now, "provider": o.provider, "sender": o.sender,
            "outcome": o.attempt_outcome, "reply_code": o.reply_code, "reply_text": o.reply_text,
            "error_type": o.error_type, "explanation": o.explanation, "fix": o.fix, "recipients": o.recipients,
            "uncertain": o.uncertain, "duration_ms": o.duration_ms,
        }
        for o in outcomes
    ])


def backoff(attempts: int, base: float, cap: float) -> timedelta:
    """Exponential backoff with full jitter between half and the whole step (attempts starts at 1)."""
    step = min(cap, base * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=step * random.uniform(0.5, 1.0))


async def release_stale_leases(session: AsyncSession, now: datetime) -> int:
    """A worker died mid-send: make the message eligible again, flagged as possibly sent (at least once)."""
    res = await session.execute(
        update(M).where(M.c.status == "sending", M.c.lease_until < now)
        .values(status="retrying", uncertain=True, next_attempt_at=now, lease_until=None, updated_at=now,
                last_error_type="worker.lease_expired",
                last_error="A worker stopped while sending this message; it may have reached the server. "
                           "It is sent again with the same Message-ID.",
                last_fix="None needed: delivery is at least once.")
    )
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def expire_due(session: AsyncSession, now: datetime) -> int:
    res = await session.execute(
        update(M).where(M.c.status.in_(UNSENT_STATUSES), M.c.expires_at <= now)
        .values(status="expired", finished_at=now, updated_at=now, last_error_type="message.expired",
                last_error="The message was not sent within the email expiration period.",
                last_fix="Check the failure details of earlier attempts, fix the cause, then send it again "
                         "(POST /messages/{id}/retry).")
    )
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def purge_history(session: AsyncSession, before: datetime) -> int:
    """Delete finished messages older than the retention period. Never touches unsent or sending ones."""
    res = await session.execute(
        delete(M).where(M.c.status.in_(FINAL_STATUSES), M.c.finished_at < before)
    )
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def release_held(session: AsyncSession, provider: str | None, now: datetime) -> int:
    """An admin fixed a provider (e.g. re-entered its secret): held messages go out again at once."""
    cond = M.c.status == "held"
    if provider is not None:
        cond = and_(cond, or_(M.c.provider == provider, M.c.provider.is_(None)))
    res = await session.execute(update(M).where(cond).values(status="queued", next_attempt_at=now, updated_at=now))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def cancel(session: AsyncSession, message_id: int, now: datetime) -> bool:
    res = await session.execute(
        update(M).where(M.c.id == message_id, M.c.status.in_(UNSENT_STATUSES))
        .values(status="cancelled", finished_at=now, updated_at=now)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


async def retry(session: AsyncSession, message_id: int, now: datetime, expires_at: datetime) -> bool:
    """Send a failed or expired message again: a fresh schedule, the same Message-ID."""
    res = await session.execute(
        update(M).where(M.c.id == message_id, M.c.status.in_(("failed", "expired", "held")))
        .values(status="queued", next_attempt_at=now, finished_at=None, updated_at=now, attempts=0, deferrals=0,
                expires_at=expires_at)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


async def queue_draft(
    session: AsyncSession, message_id: int, now: datetime, provider: str | None,
    expires_at: datetime | None = None,
) -> bool:
    """The user sent a draft: it waits for the worker like any queued message (expiry counted from now)."""
    values: dict[str, Any] = {"status": "queued", "next_attempt_at": now, "updated_at": now,
                              "provider": provider}
    if expires_at is not None:
        values["expires_at"] = expires_at
    res = await session.execute(update(M).where(M.c.id == message_id, M.c.status == "draft").values(**values))
    return bool(res.rowcount)  # type: ignore[attr-defined]


async def hand_to_user(session: AsyncSession, message_id: int, now: datetime, sender: str) -> bool:
    """'Use an email app': the draft was handed to the user as an .eml file; Outbox's part is done."""
    res = await session.execute(
        update(M).where(M.c.id == message_id, M.c.status == "draft")
        .values(status="sent", provider="email_app", sent_via="email_app", handed_to_user_at=now, sent_at=now,
                finished_at=now, updated_at=now, next_attempt_at=None, attempts=M.c.attempts + 1,
                last_error_type=None, last_error=None, last_fix=None)
    )
    if not res.rowcount:  # type: ignore[attr-defined]
        return False
    await session.execute(insert(A).values(
        message_id=message_id, at=now, provider="email_app", sender=sender, outcome="handed_to_user",
        explanation="Handed to the user as an .eml file to send from their own email app (X-Unsent: 1). "
                    "Outbox does not see whether or when they send it.",
        recipients={}, uncertain=False))
    return True


async def counts_by_status(session: AsyncSession) -> dict[str, int]:
    rows = (await session.execute(select(M.c.status, func.count()).group_by(M.c.status))).all()
    return {r[0]: int(r[1]) for r in rows}


async def renew_leases(session: AsyncSession, ids: list[int], worker: str, now: datetime, lease_seconds: int) -> int:
    """Keep a claim alive while its batch is still being sent, so the reconciler never hands a message that is
    in flight to another worker (which would send it twice)."""
    res = await session.execute(
        update(M).where(M.c.id.in_(ids), M.c.status == "sending", M.c.claimed_by == worker)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
    )
    return int(res.rowcount or 0)  # type: ignore[attr-defined]
