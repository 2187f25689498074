"""The delivery engine: claim a batch -> group by provider -> throttle -> send -> record outcomes.

One job drains due messages in batches until none are left (or its time slice ends), so arq's per-job cost
is paid per batch, not per message. Claims are compare-and-set with a lease (see `lifecycle.claim_due`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.core.clock import utcnow
from app.delivery import throttle
from app.delivery.classify import Verdict, classify_error, classify_recipient
from app.mail.build import build_mime
from app.messages import jobs, lifecycle
from app.messages.lifecycle import Outcome
from app.messages.outgoing import load_attachments, outgoing_from_row
from app.models import ATTACHMENTS, MESSAGES, Parameters
from app.parameters import service as parameters_service
from app.transports.base import Attachment, Reply, SendResult, TransportError
from worker.context import WorkerContext
from worker.routes import Route, route

log = logging.getLogger("outbox.worker")
M = MESSAGES
ATT = ATTACHMENTS
SEND_ANYWAY_AFTER = 10  # deferrals (reference article: "After ten deferrals, the system will try to send")
MAX_DEFER_SECONDS = 60.0
DRAIN_SECONDS = 20.0


async def _attachments(ctx: WorkerContext, message_id: int) -> list[Attachment]:
    # Loaded one message at a time, just before sending: a batch of large attachments never sits in memory.
    async with ctx["sessionmaker"]() as session:
        return await load_attachments(session, message_id)


def _verdict_outcome(row: Any, route: Route, v: Verdict, now: datetime, max_attempts: int, base: float, cap: float,
                     reply: Reply | None = None, recipients: dict[str, Any] | None = None,
                     uncertain: bool = False) -> Outcome:
    common: dict[str, Any] = {
        "message_id": row.id, "provider": route.provider, "sender": row.sender,
        "reply_code": reply.code if reply else None, "reply_text": reply.text if reply else None,
        "error_type": v.error_type, "explanation": v.explanation, "fix": v.fix, "recipients": recipients or {},
        "uncertain": uncertain or v.uncertain,
    }
    if v.kind == "held":
        return Outcome(status="held", attempt_outcome="held", counts_as_attempt=False, **common)
    if v.kind == "throttled":
        wait = v.retry_after or MAX_DEFER_SECONDS
        return Outcome(status="deferred" if wait <= MAX_DEFER_SECONDS else "retrying", attempt_outcome="throttled",
                       next_attempt_at=now + timedelta(seconds=wait), counts_as_attempt=False, **common)
    if v.kind == "transient":
        attempt_no = row.attempts + 1
        if attempt_no >= max_attempts:
            common["explanation"] = f"{v.explanation} Gave up after {attempt_no} attempts."
            return Outcome(status="failed", attempt_outcome="transient", **common)
        delay = lifecycle.backoff(attempt_no, base, cap)
        if v.retry_after:
            delay = max(delay, timedelta(seconds=v.retry_after))
        return Outcome(status="retrying", attempt_outcome="transient", next_attempt_at=now + delay, **common)
    return Outcome(status="failed", attempt_outcome="permanent", **common)


def _recipient_details(refused: dict[str, Reply], provider: str) -> dict[str, Any]:
    out = {}
    for addr, r in refused.items():
        v = classify_recipient(provider, r)
        out[addr] = {"code": r.code, "text": r.text, "error_type": v.error_type, "kind": v.kind,
                     "explanation": v.explanation, "fix": v.fix}
    return out


async def _send_one(ctx: WorkerContext, route: Route, row: Any, note: Verdict | None) -> Outcome:
    s = ctx["settings"]
    started = time.monotonic()
    attachments = await _attachments(ctx, row.id) if row.attachment_count else []
    msg = outgoing_from_row(row, attachments)
    msg.mime = build_mime(msg)
    del attachments
    try:
        result: SendResult = await route.transport.send(msg)  # type: ignore[union-attr]
    except TransportError as err:
        now = utcnow()
        if err.recipients:
            # Every recipient refused: retry if any refusal is temporary, else fail.
            details = _recipient_details(err.recipients, route.provider)
            verdicts = [classify_recipient(route.provider, r) for r in err.recipients.values()]
            v = next((x for x in verdicts if x.kind in ("transient", "throttled")), verdicts[0])
            return _verdict_outcome(row, route, v, now, s.max_attempts, s.retry_base_seconds, s.retry_max_seconds,
                                    reply=err.reply, recipients=details)
        v = classify_error(err)
        if v.kind == "throttled" or err.retry_after:
            await throttle.pause(ctx["redis"], route.provider, v.retry_after or err.retry_after or MAX_DEFER_SECONDS)
        out = _verdict_outcome(row, route, v, now, s.max_attempts, s.retry_base_seconds, s.retry_max_seconds,
                               reply=err.reply, uncertain=err.uncertain)
        out.duration_ms = int((time.monotonic() - started) * 1000)
        return out
    ms = int((time.monotonic() - started) * 1000)
    if result.refused:
        details = _recipient_details(result.refused, route.provider)
        first = next(iter(details.values()))
        return Outcome(
            message_id=row.id, status="sent", provider=route.provider, sender=row.sender, attempt_outcome="partial",
            reply_code=result.reply.code, reply_text=result.reply.text, error_type=first["error_type"],
            explanation=f"Sent, but {len(details)} recipient(s) were refused: {', '.join(details)}. "
                        f"{first['explanation']}",
            fix=first["fix"], recipients=details, duration_ms=ms)
    if note is not None:
        return Outcome(message_id=row.id, status="sent", provider=route.provider, sender=row.sender,
                       attempt_outcome="sent", reply_code=result.reply.code, reply_text=result.reply.text,
                       error_type=note.error_type, explanation=note.explanation, fix=note.fix, duration_ms=ms)
    return Outcome(message_id=row.id, status="sent", provider=route.provider, sender=row.sender, attempt_outcome="sent",
                   reply_code=result.reply.code, reply_text=result.reply.text, duration_ms=ms)


SENT_ANYWAY = Verdict(
    kind="transient", error_type="throttle.sent_regardless", title="Sent regardless after ten deferrals",
    explanation="The per-minute sending limit deferred this message ten times; as the email throttling rules "
                "say, it was then sent regardless of the limit.",
    fix="If this happens often, raise the provider's per-minute limit or spread the sending.",
)


async def _process_group(ctx: WorkerContext, route: Route, rows: list[Any]) -> list[Outcome]:
    s = ctx["settings"]
    now = utcnow()
    if route.held is not None:
        return [_verdict_outcome(r, route, route.held, now, s.max_attempts, s.retry_base_seconds,
                                 s.retry_max_seconds) for r in rows]
    overdue = [r for r in rows if r.deferrals >= SEND_ANYWAY_AFTER]
    normal = [r for r in rows if r.deferrals < SEND_ANYWAY_AFTER]
    window = s.throttle_window_seconds
    granted, wait = await throttle.acquire(ctx["redis"], route.provider, route.limit, len(normal), window)
    to_send: list[tuple[Any, Verdict | None]] = [(r, None) for r in normal[:granted]]
    if route.limit > 0 and overdue:
        await throttle.record_sent_regardless(ctx["redis"], route.provider, len(overdue), window)
    to_send += [(r, SENT_ANYWAY if route.limit > 0 else None) for r in overdue]
    outcomes: list[Outcome] = []
    deferred = normal[granted:]
    if deferred:
        await throttle.count_deferrals(ctx["redis"], route.provider, len(deferred))
        wait = min(window, max(0.2, wait))
        for r in deferred:
            outcomes.append(Outcome(
                message_id=r.id, status="deferred", provider=route.provider, sender=r.sender,
                attempt_outcome="deferred", next_attempt_at=now + timedelta(seconds=wait), counts_as_attempt=False,
                error_type="throttle.deferred",
                explanation=f"The per-minute sending limit of {route.provider} ({route.limit}/min) was reached; "
                            f"deferred {r.deferrals + 1} time(s), next try in {wait:.1f} s.",
                fix="None needed. To send faster, raise the provider's per-minute limit."))
    if to_send:
        outcomes += await asyncio.gather(*(_send_bounded(ctx, route, r, note) for r, note in to_send))
    return outcomes


LARGE_MESSAGE_BYTES = 4 * 1024 * 1024


async def _send_bounded(ctx: WorkerContext, route: Route, row: Any, note: Verdict | None) -> Outcome:
    """Send one message with its memory and connections bounded, and always come back with an outcome.

    A worker-wide semaphore caps messages being loaded, built or sent at once (so a batch never holds all its
    attachments in memory, nor more database sessions than the pool has), and a tighter one caps large
    messages. Any unexpected error becomes a transient outcome, so the messages of the batch that did go out
    are still recorded (an exception here once lost a whole batch's records, and the expired leases sent it
    again)."""
    large = row.size_bytes > LARGE_MESSAGE_BYTES
    async with ctx["inflight"]:
        async with ctx["large"] if large else contextlib.nullcontext():
            try:
                return await _send_one(ctx, route, row, note)
            except Exception as exc:
                log.exception("unexpected error while sending message %s", row.id)
                s = ctx["settings"]
                v = Verdict(kind="transient", error_type="worker.internal_error", title="Internal error",
                            explanation=f"The worker hit an unexpected {type(exc).__name__} while sending; the "
                                        "message may or may not have reached the server.",
                            fix="It is retried automatically; if this repeats, check the worker's log.",
                            uncertain=True)
                return _verdict_outcome(row, route, v, utcnow(), s.max_attempts, s.retry_base_seconds,
                                        s.retry_max_seconds)


async def _process(ctx: WorkerContext, claimed: list[Any], params: Parameters) -> list[Outcome]:
    ids = [r.id for r in claimed]
    cols = list(M.c)
    async with ctx["sessionmaker"]() as session:
        rows = (await session.execute(select(*cols).where(M.c.id.in_(ids)))).all()
        groups: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            groups[r.provider or params.batch_provider].append(r)
        routes = {p: await route(ctx, session, p) for p in groups}
    results = await asyncio.gather(*(_process_group(ctx, routes[p], rs) for p, rs in groups.items()))
    return [o for group in results for o in group]


async def _renew_leases(ctx: WorkerContext, ids: list[int], stop: asyncio.Event) -> None:
    """While a batch is being sent, extend its lease every third of the lease time."""
    s = ctx["settings"]
    every = max(0.5, s.lease_seconds / 3)
    while True:
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
            return
        except TimeoutError:
            pass
        try:
            async with ctx["sessionmaker"]() as session:
                await lifecycle.renew_leases(session, ids, ctx["worker_id"], utcnow(), s.lease_seconds)
                await session.commit()
        except Exception:
            log.warning("could not renew leases; the batch may be handed to another worker", exc_info=True)


async def _schedule_wakeup(ctx: WorkerContext, outcomes: list[Outcome]) -> None:
    """Deferred and retried messages come due later: enqueue a drain for then (the reconciler is the backstop)."""
    due = [o.next_attempt_at for o in outcomes
           if o.next_attempt_at is not None and o.status in ("deferred", "retrying")]
    if not due:
        return
    at = min(due)
    delay = max(0.0, (at - utcnow()).total_seconds())
    if delay > 600:
        return  # far off: the reconciler will find it
    await jobs.enqueue(ctx["redis"], ctx["settings"].queue_name, "wake", int(at.timestamp() * 10),
                       defer_by=delay + 0.05)


async def deliver(ctx: WorkerContext, *_: Any, **__: Any) -> int:
    """Drain due messages in batches for up to DRAIN_SECONDS; re-enqueue itself if more remain."""
    s = ctx["settings"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_SECONDS
    total = 0
    while True:
        async with ctx["sessionmaker"]() as session:
            params = await parameters_service.get(session)
            claimed = await lifecycle.claim_due(
                session, worker=ctx["worker_id"], now=utcnow(), limit=s.claim_batch_size,
                lease_seconds=s.lease_seconds, batch_enabled=params.batch_processing_enabled,
                postgres=ctx["postgres"])
            await session.commit()
        if not claimed:
            return total
        stop = asyncio.Event()
        renewer = asyncio.create_task(_renew_leases(ctx, [r.id for r in claimed], stop))
        try:
            outcomes = await _process(ctx, claimed, params)
        finally:
            stop.set()
            await renewer
        async with ctx["sessionmaker"]() as session:
            await lifecycle.record(session, outcomes, utcnow(), ctx["worker_id"])
            await session.commit()
        await _schedule_wakeup(ctx, outcomes)
        total += len(claimed)
        if loop.time() > deadline:
            await jobs.enqueue(ctx["redis"], s.queue_name, "more", ctx["worker_id"], int(time.time()))
            return total
