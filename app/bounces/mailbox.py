"""Reading NDRs from the batch mailbox of the Microsoft Graph and Exchange providers.

Graph's `sendMail` and EWS's `CreateItem` answer before delivery: a recipient refused downstream comes back as a
non-delivery report (NDR) in the sender's mailbox, not as an error (PROVIDERS.md §1.2). Batch mail is sent from
the provider's batch account, so its NDRs arrive in that mailbox's inbox. The worker polls that inbox every
OUTBOX_BOUNCE_POLL_SECONDS (worker/bounces.py), parses each NDR with `app.bounces.dsn` and records it with
`app.bounces.service.record`, matched by the returned original's Message-ID (the Graph transport sets
`internetMessageId`, the EWS transport sends our MIME with its Message-ID).

Choices, and why:

- **Least permission: read only.** Nothing is marked read, moved or deleted, so Graph needs `Mail.Read`, not
  `Mail.ReadWrite` (EWS: read access to the mailbox). What has been read is remembered here instead: a watermark
  (the arrival time of the last item handled) and the ids of the items that arrived exactly at it, per provider
  and mailbox (table `bounce_mailbox`). A listing asks for items received at or after the watermark, oldest
  first, and skips those ids. An NDR is recorded and the watermark moved past it in one transaction, so a crash
  in between repeats nothing or loses nothing; `service.record` also ignores a bounce already recorded for that
  message, recipient and kind.
- **One poller per mailbox: a lease in that same row** (compare-and-set on `lease_until` and `next_poll_at`),
  not a Redis lock: the watermark it protects is in the database and moves in the same transactions, a lease
  survives Redis being flushed or restarted (a Redis lock would then let two workers read the same items), and
  it works the same on SQLite and PostgreSQL. A worker that dies leaves a lease that expires (LEASE).
- **Bounded work per poll:** PAGE_SIZE items per listing, MAX_PAGES listings with new items (plus those listing
  only items already handled, at most MAX_SEEN of them), MAX_MIME_BYTES of each NDR (its report parts come
  before the returned original, so a cut copy still carries them), and DEADLINE seconds.
- **Failures stop the poll, never the worker:** a 403 (permission missing), 429/503 (throttled: the next poll
  waits for Retry-After) or any other error ends this poll with the reason stored for /status, logged once per
  poll (not per message). An item that cannot be parsed, is not an NDR, or matches none of our messages is
  passed over and the watermark moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bounces import dsn, service
from app.core.clock import utcnow
from app.models import BOUNCE_MAILBOXES
from app.transports.base import InboxItem, TransportError
from app.transports.exchange import ExchangeTransport
from app.transports.graph import GraphTransport
from app.webhooks import events

log = logging.getLogger("outbox.bounces")
T = BOUNCE_MAILBOXES

PAGE_SIZE = 50
MAX_PAGES = 4
MAX_MIME_BYTES = 1024 * 1024
DEADLINE_SECONDS = 60.0
LEASE = timedelta(seconds=300)
# A mailbox read for the first time: NDRs that arrived in the last two days (an expiry NDR comes up to two days
# after sending), not the mailbox's whole past.
FIRST_LOOKBACK = timedelta(days=2)
MAX_SEEN = 1000
# The next poll is due a period after this one started; a cron tick that comes a little early still takes it
# (else, with the tick equal to the period, every other tick would find it not quite due: two periods apart).
TICK_SLACK = timedelta(seconds=1)

PERMISSION_MISSING = "permission_missing"
THROTTLED = "throttled"


class InboxReader(Protocol):
    """One provider's view of one mailbox's inbox."""

    async def page(self, since: datetime, cursor: Any) -> tuple[list[InboxItem], Any]: ...

    async def mime(self, item_id: str) -> bytes: ...


@dataclass
class GraphReader:
    transport: GraphTransport
    mailbox: str

    async def page(self, since: datetime, cursor: Any) -> tuple[list[InboxItem], Any]:
        return await self.transport.inbox_page(self.mailbox, since, PAGE_SIZE, cursor)

    async def mime(self, item_id: str) -> bytes:
        return await self.transport.message_mime(self.mailbox, item_id, MAX_MIME_BYTES)


@dataclass
class EwsReader:
    transport: ExchangeTransport
    mailbox: str

    async def page(self, since: datetime, cursor: Any) -> tuple[list[InboxItem], Any]:
        return await self.transport.inbox_page(self.mailbox, since, PAGE_SIZE, int(cursor or 0))

    async def mime(self, item_id: str) -> bytes:
        return await self.transport.item_mime(self.mailbox, item_id, MAX_MIME_BYTES)


def reader_for(transport: object, mailbox: str) -> InboxReader | None:
    if isinstance(transport, GraphTransport):
        return GraphReader(transport, mailbox)
    if isinstance(transport, ExchangeTransport):
        return EwsReader(transport, mailbox)
    return None


@dataclass
class PollResult:
    provider: str
    mailbox: str
    listed: int = 0  # items listed (NDRs or not)
    ndrs: int = 0  # NDRs fetched and parsed
    bounced: int = 0  # recipients recorded as bounced
    suppressed: int = 0
    requests: int = 0  # listing and MIME requests (tokens not counted)
    error_code: str | None = None
    error: str | None = None
    emitted: bool = False  # webhook events were committed (wake the webhook drain)
    outcomes: list[str] = field(default_factory=list)


@dataclass
class _Cursor:
    watermark: datetime
    seen: set[str]

    def done(self, item: InboxItem) -> bool:
        return item.received < self.watermark or (item.received == self.watermark and item.id in self.seen)

    def advance(self, item: InboxItem) -> None:
        if item.received > self.watermark:
            self.watermark, self.seen = item.received, {item.id}
        else:
            self.seen.add(item.id)

    def values(self) -> dict[str, Any]:
        return {"watermark": self.watermark, "seen": sorted(self.seen)[:MAX_SEEN]}


async def _acquire(sm: async_sessionmaker[AsyncSession], provider: str, mailbox: str, owner: str,
                   now: datetime) -> _Cursor | None:
    """The mailbox's cursor if this worker may poll it now (the poll is due and no live lease is held)."""
    key = (T.c.provider == provider, T.c.mailbox == mailbox)
    async with sm() as s:
        if (await s.execute(select(T.c.provider).where(*key))).first() is None:
            try:
                await s.execute(insert(T).values(provider=provider, mailbox=mailbox, watermark=now - FIRST_LOOKBACK,
                                                 seen=[], ndrs_recorded=0, created_at=now))
                await s.commit()
            except IntegrityError:  # another worker created it first
                await s.rollback()
        res = await s.execute(update(T).where(
            *key, or_(T.c.lease_until.is_(None), T.c.lease_until < now),
            or_(T.c.next_poll_at.is_(None), T.c.next_poll_at <= now + TICK_SLACK),
        ).values(lease_owner=owner, lease_until=now + LEASE))
        row = (await s.execute(select(T.c.watermark, T.c.seen).where(*key))).first()
        await s.commit()
    if getattr(res, "rowcount", 0) != 1 or row is None:
        return None
    return _Cursor(row.watermark, set(row.seen or []))


def _describe(provider: str, err: TransportError) -> tuple[str, str]:
    """(error code for /status, what an administrator reads) for a failed poll."""
    code = err.reply.code
    if code == 403 or err.reply.error_code in ("ErrorAccessDenied", "ErrorImpersonateUserDenied"):
        need = ("the Mail.Read application permission (with admin consent; an application access policy must "
                "include this mailbox)" if provider == "graph" else
                "read access to this mailbox (OAuth: full_access_as_app with impersonation; Basic: FullAccess or "
                "Reviewer on its Inbox)")
        return PERMISSION_MISSING, (f"Reading the batch mailbox for bounces (NDRs) was refused ({code} "
                                    f"{err.reply.error_code or ''}: {err.reply.text}). It needs {need}.")
    if code in (429, 503) or err.retry_after is not None or err.reply.error_code == "ErrorServerBusy":
        wait = f"; the next poll waits {err.retry_after:g} s as asked" if err.retry_after is not None else ""
        return THROTTLED, f"Throttled while reading the batch mailbox ({code} {err.reply.error_code or ''}){wait}."
    if err.stage == "token" or code == 401:
        return "sign_in_failed", f"Could not sign in to read the batch mailbox: {err.reply.text}"
    return "read_failed", f"Reading the batch mailbox failed ({code}): {err.reply.text}"


async def poll(sm: async_sessionmaker[AsyncSession], reader: InboxReader, provider: str, mailbox: str,
               owner: str, period: int) -> PollResult | None:
    """Read the mailbox's new items once (bounded) and record its NDRs. None when another worker holds the
    mailbox or its next poll is not due yet."""
    mailbox = mailbox.lower()
    now = utcnow()
    cursor = await _acquire(sm, provider, mailbox, owner, now)
    if cursor is None:
        return None
    result = PollResult(provider, mailbox)
    since = cursor.watermark
    deadline = time.monotonic() + DEADLINE_SECONDS
    retry_after: float | None = None
    try:
        page_cursor: Any = None
        # Pages of items already handled (those at the watermark's second, listed again) cost no MIME reads and
        # do not count against MAX_PAGES, so a burst within one second cannot pin the poll; they are bounded by
        # the seen set's size.
        worked = listings = 0
        while worked < MAX_PAGES and listings < MAX_PAGES + MAX_SEEN // PAGE_SIZE + 1:
            listings += 1
            result.requests += 1
            items, page_cursor = await reader.page(since, page_cursor)
            result.listed += len(items)
            worked += any(not cursor.done(i) for i in items)
            for item in items:
                if cursor.done(item):
                    continue
                if time.monotonic() > deadline:
                    break
                if not item.is_ndr:
                    cursor.advance(item)
                    continue
                result.requests += 1
                try:
                    raw = await reader.mime(item.id)
                except TransportError as err:
                    if err.reply.code == 404:  # deleted since it was listed: nothing to read
                        cursor.advance(item)
                        continue
                    raise
                report = await asyncio.to_thread(dsn.parse, raw)
                result.ndrs += 1
                # The bounce and the watermark past its NDR in one transaction; the cursor in memory moves only
                # once that committed (else the release would store a watermark past an NDR never recorded).
                after = _Cursor(cursor.watermark, set(cursor.seen))
                after.advance(item)
                async with sm() as s:
                    outcome = await service.record(s, report, None, utcnow())
                    await s.execute(update(T).where(T.c.provider == provider, T.c.mailbox == mailbox,
                                                    T.c.lease_owner == owner)
                                    .values(ndrs_recorded=T.c.ndrs_recorded + 1, **after.values()))
                    await s.commit()
                    result.emitted = result.emitted or bool(events.emitted(s))
                cursor = after
                result.bounced += len(outcome.bounced)
                result.suppressed += len(outcome.suppressed)
                result.outcomes.append(outcome.summary())
            if page_cursor is None or time.monotonic() > deadline:
                break
    except TransportError as err:
        result.error_code, result.error = _describe(provider, err)
        retry_after = err.retry_after
        log.warning("bounce mailbox poll stopped", extra={"provider": provider, "mailbox": mailbox,
                                                          "error_code": result.error_code, "error": result.error})
    except Exception:  # a bug or the database: the worker goes on; the next poll tries again
        log.exception("bounce mailbox poll failed", extra={"provider": provider, "mailbox": mailbox})
        result.error_code, result.error = "internal", "Reading the batch mailbox failed (see the worker's log)."
    finally:
        try:
            await _release(sm, provider, mailbox, owner, cursor, result, now, period, retry_after)
        except Exception:  # the database is gone: the lease runs out (LEASE) and another poll takes over
            log.exception("could not release the bounce mailbox", extra={"provider": provider, "mailbox": mailbox})
    if result.ndrs:
        log.info("bounce mailbox polled", extra={"provider": provider, "mailbox": mailbox, "listed": result.listed,
                                                 "ndrs": result.ndrs, "bounced": result.bounced})
    return result


async def _release(sm: async_sessionmaker[AsyncSession], provider: str, mailbox: str, owner: str, cursor: _Cursor,
                   result: PollResult, started: datetime, period: int, retry_after: float | None) -> None:
    now = utcnow()
    # A period after this poll started; a throttled poll waits at least Retry-After from now.
    due = max(started + timedelta(seconds=period), now + timedelta(seconds=retry_after or 0.0))
    values: dict[str, Any] = {**cursor.values(), "lease_owner": None, "lease_until": None, "last_poll_at": now,
                              "next_poll_at": due}
    if result.error_code is None:
        values |= {"last_ok_at": now, "last_error_code": None, "last_error": None}
    else:
        values |= {"last_error_code": result.error_code, "last_error": result.error, "last_error_at": now}
    async with sm() as s:
        await s.execute(update(T).where(T.c.provider == provider, T.c.mailbox == mailbox, T.c.lease_owner == owner)
                        .values(**values))
        await s.commit()


async def states(session: AsyncSession) -> list[dict[str, Any]]:
    """Each polled mailbox's state, for /status (no secrets: provider, address, times, counts, last error)."""
    rows = (await session.execute(select(T).order_by(T.c.provider, T.c.mailbox))).all()
    return [{"provider": r.provider, "mailbox": r.mailbox, "read_up_to": r.watermark.isoformat(),
             "last_poll_at": r.last_poll_at.isoformat() if r.last_poll_at else None,
             "last_ok_at": r.last_ok_at.isoformat() if r.last_ok_at else None,
             "ndrs_recorded": r.ndrs_recorded, "error_code": r.last_error_code, "error": r.last_error}
            for r in rows]
