"""Every read of `message`, `message_attachment` and `delivery_attempt` rows, and only reads (writes of a
message's status are `lifecycle`'s).

Who may see what (`visible`), pages with a typed filter, the idempotency lookup, the due condition shared by
the worker's claim and the reconciler, the submitting keys with due mail in a lane (the claim's turns), the
attachments the worker sends, and monitoring's counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, cast

from sqlalchemy import ColumnElement, Select, and_, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.security import Principal
from app.messages.lifecycle import LANES, NO_KEY, PRIORITY_NAMES, SUBMITTER, WAITING_STATUSES, SendState, Status
from app.models import ATTACHMENTS, ATTEMPTS, COUNTS, MESSAGES
from app.transports.base import Attachment

M = MESSAGES
ATT = ATTACHMENTS
A = ATTEMPTS


class MessageRow(SendState, Protocol):
    """A `message` row as read here (every column); rows on the send path and in the API are this type."""

    @property
    def status(self) -> Status: ...
    @property
    def kind(self) -> str: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def user_id(self) -> int | None: ...
    @property
    def api_key_id(self) -> int | None: ...
    @property
    def sender_name(self) -> str | None: ...
    @property
    def to_addrs(self) -> list[str]: ...
    @property
    def cc_addrs(self) -> list[str]: ...
    @property
    def bcc_addrs(self) -> list[str]: ...
    @property
    def reply_to(self) -> list[str]: ...
    @property
    def subject(self) -> str: ...
    @property
    def body_text(self) -> str | None: ...
    @property
    def body_html(self) -> str | None: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def message_id_header(self) -> str: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def attachment_count(self) -> int: ...
    @property
    def uncertain(self) -> bool: ...
    @property
    def next_attempt_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def sent_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def last_error_type(self) -> str | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def last_fix(self) -> str | None: ...
    @property
    def sent_via(self) -> str | None: ...
    @property
    def handed_to_user_at(self) -> datetime | None: ...
    @property
    def resent_from(self) -> int | None: ...
    @property
    def workflow_event_id(self) -> str | None: ...
    @property
    def template_id(self) -> int | None: ...
    @property
    def language(self) -> str | None: ...
    @property
    def priority(self) -> int: ...
    @property
    def send_at(self) -> datetime | None: ...


def rows(result: Sequence[Any]) -> list[MessageRow]:
    """Rows of `message` (all columns) as typed rows."""
    return cast(list[MessageRow], list(result))


# ---------------------------------------------------------------------- conditions


def visible(principal: Principal) -> ColumnElement[bool] | None:
    """The condition on `message` rows this key may see (None: all): admin all, a user key its user's
    messages, a service key the ones it submitted."""
    if principal.is_admin:
        return None
    if principal.role == "user":
        return M.c.user_id == principal.user_id
    return M.c.api_key_id == principal.key_id


# The waiting statuses as literals, exactly as ix_message_lane's predicate: with bound parameters the planner
# could not prove a generic plan's rows are in the partial index.
_WAITING = M.c.status.in_([literal_column(f"'{s}'") for s in WAITING_STATUSES])


def waiting_in_lane(lane: int) -> ColumnElement[bool]:
    """The waiting messages of one lane: a range of the partial index ix_message_lane."""
    return and_(_WAITING, M.c.priority == lane)


@dataclass(frozen=True)
class DueLane:
    """One lane as the claim reads it: its waiting set (the ranges of ix_message_lane and ix_message_key_lane) and
    the part of it that is due now."""

    lane: int
    waiting: ColumnElement[bool]
    due: ColumnElement[bool]


def due_lanes(now: datetime, *, batch_enabled: bool, lanes: Sequence[int] = LANES) -> list[DueLane]:
    """Waiting messages whose time has come, one per lane, highest first: what the worker claims and what the
    reconciler wakes it for. With the email distributor batch off, only interactive mail goes out (read through
    the same indexes, filtered by kind)."""
    out = []
    for lane in lanes:
        waiting = waiting_in_lane(lane)
        cond = and_(waiting, M.c.next_attempt_at <= now)
        if not batch_enabled:  # a literal, as ix_message_interactive_lane's predicate (see _WAITING)
            cond = and_(cond, M.c.kind == literal_column("'interactive'"))
        out.append(DueLane(lane, waiting, cond))
    return out


def _next_key(lane: DueLane, above: ColumnElement[Any] | int, upto: int | None) -> ColumnElement[Any]:
    """The first submitting key above `above` (and at most `upto`) with waiting messages in the lane: one probe of
    ix_message_key_lane (ordered as the index is, so that no other index looks cheaper)."""
    q = select(SUBMITTER).where(lane.waiting, SUBMITTER > above)
    if upto is not None:
        q = q.where(SUBMITTER <= upto)
    return q.order_by(SUBMITTER, M.c.next_attempt_at).limit(1).scalar_subquery()


def key_walk(lane: DueLane, *, above: int, upto: int | None, cap: int) -> Select[Any]:
    """The keys in (above, upto] with due messages in the lane, ascending, at most `cap`. A loose index scan: a
    recursive query steps from one key to the next with one probe each, and each key found is checked for a due
    message with one more (the first entry of its range, in index order: an EXISTS lets PostgreSQL read a key's
    rows, sent ones included, through the idempotency index); it stops once `cap` keys are found (PostgreSQL
    evaluates the recursion only as far as the outer LIMIT reads it)."""
    walk = select(_next_key(lane, above, upto).label("key")).cte("key_walk", recursive=True)
    walk = walk.union_all(select(_next_key(lane, walk.c.key, upto)).where(walk.c.key.is_not(None)))
    first_due = select(M.c.next_attempt_at).where(lane.due, SUBMITTER == walk.c.key) \
        .order_by(M.c.next_attempt_at).limit(1).scalar_subquery()
    return select(walk.c.key).where(walk.c.key.is_not(None), first_due.is_not(None)).limit(cap)


async def _walk(session: AsyncSession, lane: DueLane, *, above: int, upto: int | None, cap: int) -> list[int]:
    return [int(r[0]) for r in (await session.execute(key_walk(lane, above=above, upto=upto, cap=cap))).all()]


async def due_keys(session: AsyncSession, lane: DueLane, *, after: int | None, cap: int) -> list[int]:
    """The submitting keys (NO_KEY for messages without one) with due messages in the lane, at most `cap`, in
    turn order: from the first key after `after` (the last one served; None: from the start), round to the
    start. O(keys) index probes, never O(messages); see `lifecycle.claim_due` for the rule."""
    found = await _walk(session, lane, above=NO_KEY - 1, upto=None, cap=cap)
    if after is None:
        return found
    if len(found) < cap:  # every key with due messages: just start after `after`
        return [k for k in found if k > after] + [k for k in found if k <= after]
    # More keys than one claim serves: continue after `after`, then from the start up to it.
    later = await _walk(session, lane, above=after, upto=None, cap=cap)
    if len(later) < cap:
        later += await _walk(session, lane, above=NO_KEY - 1, upto=after, cap=cap - len(later))
    return later


# ---------------------------------------------------------------------- one message


async def get(session: AsyncSession, principal: Principal | None, message_id: int) -> MessageRow | None:
    """The message if this key may see it (`principal` None: no restriction)."""
    cond = M.c.id == message_id
    vis = visible(principal) if principal is not None else None
    if vis is not None:
        cond = and_(cond, vis)
    row = (await session.execute(select(M).where(cond))).first()
    return cast(MessageRow | None, row)


async def attachment_list(session: AsyncSession, message_id: int) -> list[Any]:
    """id, filename, content_type, size and position of each attachment, in order (no content)."""
    return list((await session.execute(
        select(ATT.c.id, ATT.c.filename, ATT.c.content_type, ATT.c.size, ATT.c.position)
        .where(ATT.c.message_id == message_id).order_by(ATT.c.position, ATT.c.id))).all())


async def attachments(session: AsyncSession, message_id: int) -> list[Attachment]:
    """The files themselves, to send or to put in an .eml."""
    found = (await session.execute(
        select(ATT.c.filename, ATT.c.content_type, ATT.c.content).where(ATT.c.message_id == message_id)
        .order_by(ATT.c.position, ATT.c.id))).all()
    return [Attachment(r.filename, r.content_type, bytes(r.content)) for r in found]


async def attempts(session: AsyncSession, message_id: int) -> list[Any]:
    """Every attempt and deferral of a message, oldest first."""
    return list((await session.execute(select(A).where(A.c.message_id == message_id).order_by(A.c.id))).all())


async def resends(session: AsyncSession, message_id: int) -> list[int]:
    """The messages made from this one by resend or correct and resend, oldest first."""
    return [r[0] for r in (await session.execute(
        select(M.c.id).where(M.c.resent_from == message_id).order_by(M.c.id))).all()]


async def by_idempotency(session: AsyncSession, key_id: int, key: str) -> Any:
    """The message this API key already submitted with this Idempotency-Key, if any."""
    return (await session.execute(
        select(M.c.id, M.c.status, M.c.message_id_header, M.c.request_hash, M.c.priority)
        .where(M.c.api_key_id == key_id, M.c.idempotency_key == key)
    )).first()


# ---------------------------------------------------------------------- lists

TimeColumn = Literal["created_at", "finished_at"]


@dataclass(frozen=True)
class MessageFilter:
    """What `GET /messages` and `GET /history` filter on."""

    statuses: Sequence[str] | None = None
    sender: str | None = None
    provider: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    workflow_event_id: str | None = None
    time_column: TimeColumn = "created_at"

    def only_statuses(self) -> bool:
        """Filtered on status alone, or not at all (the total can come from the counters)."""
        return not (self.sender or self.provider or self.kind or self.since or self.until
                                            or self.workflow_event_id)

    def where(self, principal: Principal | None) -> ColumnElement[bool]:
        conds: list[ColumnElement[bool]] = []
        if principal is not None and (vis := visible(principal)) is not None:
            conds.append(vis)
        if self.statuses:
            conds.append(M.c.status.in_(self.statuses))
        if self.sender:
            conds.append(func.lower(M.c.sender) == self.sender.lower())
        if self.provider:
            conds.append(func.coalesce(M.c.sent_via, M.c.provider) == self.provider)
        if self.kind:
            conds.append(M.c.kind == self.kind)
        if self.workflow_event_id:
            conds.append(M.c.workflow_event_id == self.workflow_event_id)
        col = M.c[self.time_column]
        if self.since:
            conds.append(col >= self.since)
        if self.until:
            conds.append(col < self.until)
        return and_(True, *conds)


_SUMMARY_COLUMNS = [c for c in M.c if c.name not in ("body_text", "body_html", "headers")]


async def page(session: AsyncSession, principal: Principal | None, f: MessageFilter, *, limit: int,
               offset: int = 0, before_id: int | None = None) -> tuple[list[MessageRow], int]:
    """One page of messages (newest first, without bodies) and the total that match.

    Keyset paging: `before_id` (the cursor: the last id of the previous page) starts the page after it, read
    from an index whatever the page number; `offset` still works (it reads the rows it skips). The total of a
    status-only filter seen by an administrator comes from the status counters; any other filter counts."""
    where = f.where(principal)
    if f.only_statuses() and (principal is None or visible(principal) is None):
        counts = await counts_by_status(session)
        total = sum(n for s, n in counts.items() if not f.statuses or s in f.statuses)
    else:
        total = (await session.execute(select(func.count()).select_from(M).where(where))).scalar_one()
    q = select(*_SUMMARY_COLUMNS).where(where)
    if before_id is not None:
        q = q.where(M.c.id < before_id)
    found = (await session.execute(q.order_by(M.c.id.desc()).limit(limit).offset(offset))).all()
    return rows(found), int(total)


# ---------------------------------------------------------------------- the worker and the reconciler


async def claimers(session: AsyncSession) -> list[str]:
    """The workers holding messages in `sending`."""
    found = (await session.execute(select(M.c.claimed_by).where(M.c.status == "sending").distinct())).all()
    return [r[0] for r in found if r[0]]


async def any_due(session: AsyncSession, now: datetime, *, batch_enabled: bool) -> bool:
    """Whether any lane has a due message (one index probe per lane)."""
    for lane in due_lanes(now, batch_enabled=batch_enabled):
        cond = lane.due
        # In index order: without it PostgreSQL may pick a sequential scan "until the first match", which reads
        # every row already sent before it finds one still waiting.
        if (await session.execute(select(M.c.id).where(cond).order_by(M.c.next_attempt_at).limit(1))).first() \
                is not None:
            return True
    return False


# ---------------------------------------------------------------------- senders


async def last_sends(session: AsyncSession, senders: Sequence[str], error_types: Sequence[str]) -> dict[
        tuple[str, str], Any]:
    """For each (sender lower-cased, provider): the latest attempt from it that was sent, or that failed with one
    of `error_types` (a sender's problem: Send As denied, mailbox not found, ...). Row: at, outcome,
    error_type, message_id."""
    if not senders:
        return {}
    wanted = and_(func.lower(A.c.sender).in_([s.lower() for s in senders]),
                  (A.c.outcome.in_(("sent", "partial")) | A.c.error_type.in_(list(error_types))))
    latest = (select(func.lower(A.c.sender).label("s"), A.c.provider.label("p"), func.max(A.c.id).label("id"))
              .where(wanted).group_by(func.lower(A.c.sender), A.c.provider).subquery())
    found = (await session.execute(
        select(latest.c.s, latest.c.p, A.c.at, A.c.outcome, A.c.error_type, A.c.message_id)
        .join(A, A.c.id == latest.c.id))).all()
    return {(r.s, r.p): r for r in found}


# ---------------------------------------------------------------------- monitoring


async def counts_by_status(session: AsyncSession) -> dict[str, int]:
    """Messages per status, from the counters (see `counts_by_status_and_kind`)."""
    found = (await session.execute(
        select(COUNTS.c.status, func.sum(COUNTS.c.n)).group_by(COUNTS.c.status))).all()
    return {r[0]: int(r[1]) for r in found if r[1]}


async def oldest_due(session: AsyncSession, now: datetime) -> datetime | None:
    """When the message that has waited longest since it came due came due (a scheduled message waits from its
    send_at, a retry from its next attempt): the first entry of each lane's index range."""
    oldest: datetime | None = None
    for lane in LANES:
        first = (await session.execute(
            select(M.c.next_attempt_at).where(waiting_in_lane(lane), M.c.next_attempt_at <= now)
            .order_by(M.c.next_attempt_at).limit(1))).scalar()
        if first is not None:
            if first.tzinfo is None:
                first = first.replace(tzinfo=UTC)
            oldest = first if oldest is None else min(oldest, first)
    return oldest


async def recent_failures(session: AsyncSession, n: int = 5) -> list[Any]:
    return list((await session.execute(
        select(M.c.id, M.c.finished_at, M.c.last_error_type, M.c.last_error, M.c.sent_via, M.c.provider)
        .where(M.c.status == "failed").order_by(M.c.finished_at.desc()).limit(n))).all())


async def waiting_by_lane(session: AsyncSession) -> dict[str, int]:
    """Waiting messages (queued, deferred, retrying) per priority lane, from the counters the database keeps
    with every write (models.MessageCount): a few rows whatever the backlog."""
    found = dict((await session.execute(
        select(COUNTS.c.priority, func.sum(COUNTS.c.n)).where(COUNTS.c.status.in_(list(WAITING_STATUSES)))
        .group_by(COUNTS.c.priority))).all())
    return {PRIORITY_NAMES[lane]: int(found.get(lane) or 0) for lane in LANES}


async def counts_by_status_and_kind(session: AsyncSession) -> dict[str, dict[str, int]]:
    """Queue depth by status and kind (batch, interactive, workflow, test): status -> kind -> count, from the
    counters the database keeps with every write (models.MessageCount): a few rows whatever the table's size."""
    found = (await session.execute(
        select(COUNTS.c.status, COUNTS.c.kind, func.sum(COUNTS.c.n)).group_by(COUNTS.c.status, COUNTS.c.kind))).all()
    out: dict[str, dict[str, int]] = {}
    for status, kind, n in found:
        if n:
            out.setdefault(status, {})[kind] = int(n)
    return out


async def attempts_per_minute(session: AsyncSession, since: datetime) -> list[tuple[datetime, str, int]]:
    """Delivery attempts (and deferrals) per minute and outcome since `since`, oldest first: (minute, outcome,
    count). Drawn from `delivery_attempt` (indexed on `at`), so it covers every worker and survives restarts."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        minute: ColumnElement[Any] = func.date_trunc("minute", A.c.at)
    else:  # SQLite stores ISO text: the first 16 characters are the minute
        minute = func.substr(A.c.at, 1, 16)
    found = (await session.execute(
        select(minute.label("m"), A.c.outcome, func.count()).where(A.c.at >= since)
        .group_by(minute, A.c.outcome).order_by(minute))).all()
    out: list[tuple[datetime, str, int]] = []
    for m, outcome, n in found:
        if isinstance(m, str):
            at = datetime.fromisoformat(m.replace(" ", "T")).replace(tzinfo=UTC)
        else:
            at = m if m.tzinfo is not None else m.replace(tzinfo=UTC)
        out.append((at, str(outcome), int(n)))
    return out
