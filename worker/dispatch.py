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
from typing import Any

from app.bounces import verp
from app.core.clock import utcnow
from app.delivery import throttle
from app.delivery.classify import Verdict, classify_error, classify_recipient
from app.mail.build import build_mime
from app.messages import jobs, lifecycle, repository
from app.messages.lifecycle import Outcome
from app.messages.outgoing import outgoing_from_row
from app.messages.repository import MessageRow
from app.models import ATTACHMENTS, MESSAGES, Parameters
from app.parameters import service as parameters_service
from app.transports.base import Attachment, Reply, SendResult, TransportError
from app.webhooks import events
from app.webhooks import jobs as webhook_jobs
from worker.context import WorkerContext
from worker.routes import Route, route

log = logging.getLogger("outbox.worker")
M = MESSAGES
ATT = ATTACHMENTS
DRAIN_SECONDS = 20.0


def _policy(ctx: WorkerContext) -> lifecycle.RetryPolicy:
    return lifecycle.RetryPolicy.from_settings(ctx["settings"])


async def _attachments(ctx: WorkerContext, message_id: int) -> list[Attachment]:
    # Loaded one message at a time, just before sending: a batch of large attachments never sits in memory.
    async with ctx["sessionmaker"]() as session:
        return await repository.attachments(session, message_id)


def _recipient_details(refused: dict[str, Reply], provider: str) -> dict[str, Any]:
    out = {}
    for addr, r in refused.items():
        v = classify_recipient(provider, r)
        out[addr] = {"code": r.code, "text": r.text, "error_type": v.error_type, "kind": v.kind,
                     "explanation": v.explanation, "fix": v.fix}
    return out


async def _send_one(ctx: WorkerContext, route: Route, row: MessageRow, note: Verdict | None) -> Outcome:
    policy = _policy(ctx)
    started = time.monotonic()
    attachments = await _attachments(ctx, row.id) if row.attachment_count else []
    msg = outgoing_from_row(row, attachments, verp.return_path(row.id, ctx["settings"]))
    msg.mime = build_mime(msg)
    del attachments
    try:
        assert route.transport is not None
        result: SendResult = await route.transport.send(msg)
    except TransportError as err:
        now = utcnow()
        if err.recipients:
            # Every recipient of this try refused, one by one: each gets its own state (see lifecycle.answered),
            # unless the refusals are about us, not the recipients: a configuration problem (not signed in) holds
            # the message; a server that only asked us to slow down pauses the provider.
            details = _recipient_details(err.recipients, route.provider)
            verdicts = [classify_recipient(route.provider, r) for r in err.recipients.values()]
            held = next((v for v in verdicts if v.kind == "held"), None)
            if held is not None or all(v.kind == "throttled" for v in verdicts):
                v = held or verdicts[0]
                if v.kind == "throttled":
                    await throttle.pause(ctx["redis"], route.provider, v.retry_after or policy.max_defer_seconds)
                return lifecycle.decide(row, route.provider, v, policy, now, reply=err.reply, recipients=details)
            return lifecycle.answered(row, route.provider, err.reply, policy, now, envelope=msg.recipients,
                                      refused=details, duration_ms=int((time.monotonic() - started) * 1000))
        v = classify_error(err)
        if v.kind == "throttled" or err.retry_after:
            await throttle.pause(ctx["redis"], route.provider,
                                 v.retry_after or err.retry_after or policy.max_defer_seconds)
        out = lifecycle.decide(row, route.provider, v, policy, now, reply=err.reply, uncertain=err.uncertain)
        out.duration_ms = int((time.monotonic() - started) * 1000)
        return out
    ms = int((time.monotonic() - started) * 1000)
    refused = _recipient_details(result.refused, route.provider) if result.refused else None
    return lifecycle.answered(row, route.provider, result.reply, policy, now=utcnow(), envelope=msg.recipients,
                              refused=refused, note=note, duration_ms=ms)


class Recorder:
    """Writes outcomes as sends complete, in small groups: whatever finished while the previous write ran. A
    worker killed mid-batch then leaves `sending` (to be sent again, flagged uncertain) only the messages that
    were on the wire and the few finished in the last milliseconds, not the whole batch."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        self._queue: list[Outcome] = []
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self.outcomes: list[Outcome] = []  # everything recorded, for the wake-up schedule

    def add(self, outcomes: list[Outcome]) -> None:
        self._queue += outcomes
        self.outcomes += outcomes
        if self._error is None and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            try:
                async with self._ctx["sessionmaker"]() as session:
                    await lifecycle.record(session, group, utcnow(), self._ctx["worker_id"])
                    await session.commit()
                    webhook_events = events.emitted(session)
                if webhook_events:  # committed with the status changes: wake the webhook drain
                    await webhook_jobs.enqueue(self._ctx["redis"], self._ctx["settings"].queue_name, "events",
                                               self._ctx["worker_id"])
            except BaseException as exc:
                # Not recorded: the messages stay `sending` and are sent again when their lease ends.
                self._error = exc
                self._queue = group + self._queue
                return

    async def close(self) -> None:
        """Wait until everything added is written; raise what a write raised."""
        while self._task is not None and self._error is None:
            task = self._task
            await task
            if self._task is task:
                if not self._queue:
                    break
                self._task = asyncio.create_task(self._write())
        if self._error is not None:
            raise self._error


async def _process_group(ctx: WorkerContext, route: Route, rows: list[MessageRow], rec: Recorder) -> None:
    s = ctx["settings"]
    policy = _policy(ctx)
    now = utcnow()
    if route.held is not None:
        rec.add([lifecycle.decide(r, route.provider, route.held, policy, now) for r in rows])
        return
    # Messages deferred ten times (one per window they were held back) are sent regardless of the limit, but
    # still paced: at most `limit` of them per window on top of it (the article's rule keeps a sender from
    # waiting forever; it is not a licence to burst).
    overdue = [r for r in rows if r.deferrals >= policy.send_anyway_after]
    normal = [r for r in rows if r.deferrals < policy.send_anyway_after]
    window = s.throttle_window_seconds
    granted, wait = await throttle.acquire(ctx["redis"], route.provider, route.limit, len(normal), window)
    to_send: list[tuple[MessageRow, Verdict | None]] = [(r, None) for r in normal[:granted]]
    held_back = normal[granted:]
    if overdue:
        regardless, _ = await throttle.acquire(ctx["redis"], route.provider + throttle.REGARDLESS, route.limit,
                                               len(overdue), window)
        if route.limit > 0 and regardless:
            await throttle.record_sent_regardless(ctx["redis"], route.provider, regardless, window)
        to_send += [(r, lifecycle.SENT_ANYWAY if route.limit > 0 else None) for r in overdue[:regardless]]
        held_back += overdue[regardless:]
    if held_back:
        await throttle.count_deferrals(ctx["redis"], route.provider, len(held_back))
        wait = min(window, max(0.2, wait))
        rec.add([lifecycle.deferred(r, route.provider, route.limit, wait, now, window) for r in held_back])
    if to_send:
        await asyncio.gather(*(_send_bounded(ctx, route, r, note, rec) for r, note in to_send))


LARGE_MESSAGE_BYTES = 4 * 1024 * 1024


async def _send_bounded(ctx: WorkerContext, route: Route, row: MessageRow, note: Verdict | None,
                        rec: Recorder) -> None:
    """Send one message with its memory and connections bounded, and always record an outcome.

    A worker-wide semaphore caps messages being loaded, built or sent at once (so a batch never holds all its
    attachments in memory, nor more database sessions than the pool has), and a tighter one caps large
    messages. Any unexpected error becomes a transient outcome, so the messages of the batch that did go out
    are still recorded (an exception here once lost a whole batch's records, and the expired leases sent it
    again)."""
    large = row.size_bytes > LARGE_MESSAGE_BYTES
    async with route.inflight or ctx["inflight"]:
        async with ctx["large"] if large else contextlib.nullcontext():
            try:
                rec.add([await _send_one(ctx, route, row, note)])
            except Exception as exc:
                log.exception("unexpected error while sending message %s", row.id)
                v = Verdict(kind="transient", error_type="worker.internal_error", title="Internal error",
                            explanation=f"The worker hit an unexpected {type(exc).__name__} while sending; the "
                                        "message may or may not have reached the server.",
                            fix="It is retried automatically; if this repeats, check the worker's log.",
                            uncertain=True)
                rec.add([lifecycle.decide(row, route.provider, v, _policy(ctx), utcnow())])


async def _process(ctx: WorkerContext, claimed: list[MessageRow], params: Parameters, rec: Recorder, *,
                   high: bool = False) -> None:
    groups: dict[str, list[MessageRow]] = defaultdict(list)
    for r in claimed:
        groups[r.provider or params.batch_provider].append(r)
    async with ctx["sessionmaker"]() as session:
        routes = {p: await route(ctx, session, p, high=high) for p in groups}
    await asyncio.gather(*(_process_group(ctx, routes[p], rs, rec) for p, rs in groups.items()))


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


async def drain_once(ctx: WorkerContext, lanes: tuple[int, ...], *, high: bool = False) -> int:
    """Claim one batch from the highest of `lanes` with due messages, send it, record it; returns its size."""
    s = ctx["settings"]
    async with ctx["sessionmaker"]() as session:
        params = await parameters_service.get(session)
        now = utcnow()
        claimed = repository.rows(await lifecycle.claim_due(
            session, worker=ctx["worker_id"], now=now, limit=s.claim_batch_size, lease_seconds=s.lease_seconds,
            lanes=repository.due_lanes(now, batch_enabled=params.batch_processing_enabled, lanes=lanes),
            keys=repository.due_keys, postgres=ctx["postgres"], turns=ctx["turns"]))
        await session.commit()
    if not claimed:
        return 0
    stop = asyncio.Event()
    renewer = asyncio.create_task(_renew_leases(ctx, [r.id for r in claimed], stop))
    rec = Recorder(ctx)
    try:
        await _process(ctx, claimed, params, rec, high=high)
        await rec.close()
    finally:
        stop.set()
        await renewer
    await _schedule_wakeup(ctx, rec.outcomes)
    return len(claimed)


async def deliver(ctx: WorkerContext, *_: Any, **__: Any) -> int:
    """Drain due messages in batches for up to DRAIN_SECONDS, each batch from the highest lane with due
    messages; re-enqueue itself if more remain."""
    s = ctx["settings"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_SECONDS
    total = 0
    while True:
        n = await drain_once(ctx, lifecycle.LANES)
        if not n:
            return total
        total += n
        if loop.time() > deadline:
            await jobs.enqueue(ctx["redis"], s.queue_name, "more", ctx["worker_id"], int(time.time()))
            return total


HIGH_LANE_POLL_SECONDS = 1.0


async def drain_high(ctx: WorkerContext) -> int:
    """Send every due high-priority message, through the high lane's reserved connections and in-flight bound."""
    total = 0
    while n := await drain_once(ctx, (lifecycle.HIGH_LANE,), high=True):
        total += n
    return total


async def high_lane(ctx: WorkerContext) -> None:
    """The worker's high-lane loop, beside arq's jobs (whose slots bulk drains may all hold): woken by the API's
    push on `jobs.high_wake_key` as soon as a high-priority message is committed, and polling the lane (one
    index probe) every second in case a wake-up was lost. Runs until cancelled."""
    key = jobs.high_wake_key(ctx["settings"].queue_name)
    while True:
        try:
            await ctx["redis"].blpop([key], timeout=HIGH_LANE_POLL_SECONDS)  # type: ignore[arg-type, misc]
            await ctx["redis"].delete(key)  # wake-ups that arrive from here on find their rows in this drain
            await drain_high(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("high-lane loop failed; retrying in a second", exc_info=True)
            await asyncio.sleep(HIGH_LANE_POLL_SECONDS)
