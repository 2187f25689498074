"""A message's life: its statuses, which transitions are legal, the retry policy, the decision that turns a
send's verdict into the next state, and every write of `message.status`. No other module decides or writes a
status.

draft -> queued -> sending -> sent
                          \\-> retrying (transient; backoff in the database) -> sending ...
                          \\-> deferred (throttled; <= 1 minute) -> sending ...
                          \\-> held (an admin must fix the provider; released when they do)
                          \\-> failed (permanent, or retries exhausted)
unsent (queued/deferred/retrying/held/draft) -> expired (after the expiration days) | cancelled
draft -> sent, sent_via "email_app" ("Use an email app": handed to the user as an .eml file; `hand_to_user`)
failed/expired/held -> queued (an administrator's retry)

A message handed to the user is final for Outbox: it left through the user's own mail app, so it is `sent`
(with `sent_via` and `provider` "email_app", `handed_to_user_at` set and an attempt with outcome
"handed_to_user"), and history lists it with the other sent mail, filterable by provider=email_app.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Delete,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import rowcount
from app.delivery.classify import Verdict
from app.models import ATTEMPTS, MESSAGES
from app.transports.base import Reply
from app.webhooks import events

if TYPE_CHECKING:
    from app.messages.repository import DueLane
    from app.settings import Settings

M = MESSAGES
A = ATTEMPTS

Status = Literal[
    "draft", "queued", "sending", "deferred", "retrying", "held", "sent", "failed", "expired", "cancelled"
]
WAITING_STATUSES: tuple[Status, ...] = ("queued", "deferred", "retrying")  # claimable when due
UNSENT_STATUSES: tuple[Status, ...] = ("draft", "queued", "deferred", "retrying", "held")
FINAL_STATUSES: tuple[Status, ...] = ("sent", "failed", "expired", "cancelled")
HISTORY_STATUSES: tuple[Status, ...] = ("sent", "failed", "expired")

# Priority lanes (message.priority). A claim takes its batch from the highest lane that has due messages, never
# a lower lane's while a higher one has some (see `claim_due`).
Priority = Literal["high", "normal", "low"]
PRIORITIES: dict[Priority, int] = {"high": 0, "normal": 1, "low": 2}
PRIORITY_NAMES: dict[int, Priority] = {v: k for k, v in PRIORITIES.items()}
LANES: tuple[int, ...] = tuple(sorted(PRIORITIES.values()))  # highest first
HIGH_LANE = PRIORITIES["high"]


def default_priority(kind: str, *, bulk: bool) -> Priority:
    """The lane of a message whose submitter did not choose one: a user waiting on it (the send dialog, a test
    email) high, workflow notifications normal, bulk submissions low, a single batch message normal."""
    if kind in ("interactive", "test"):
        return "high"
    if kind == "workflow":
        return "normal"
    return "low" if bulk else "normal"
SEND_OUTCOMES: tuple[Status, ...] = ("sent", "retrying", "deferred", "held", "failed")  # what a send can lead to

TRANSITIONS: dict[Status, frozenset[Status]] = {
    "draft": frozenset({"queued", "sent", "cancelled", "expired"}),
    "queued": frozenset({"sending", "cancelled", "expired"}),
    "sending": frozenset(SEND_OUTCOMES),
    "deferred": frozenset({"sending", "cancelled", "expired"}),
    "retrying": frozenset({"sending", "cancelled", "expired"}),
    "held": frozenset({"queued", "cancelled", "expired"}),
    "failed": frozenset({"queued"}),
    "expired": frozenset({"queued"}),
    "sent": frozenset(),
    "cancelled": frozenset(),
}


class IllegalTransition(RuntimeError):
    """A write asked for a status change the life of a message does not have (a bug, never user input)."""


def _legal(sources: tuple[Status, ...], target: Status) -> tuple[Status, ...]:
    """The statuses a write moves from, checked against the transition table; returns `sources`."""
    bad = [s for s in sources if target not in TRANSITIONS[s]]
    if bad:
        raise IllegalTransition(f"{', '.join(bad)} -> {target} is not a transition of a message")
    return sources


def initial_status(*, draft: bool) -> Status:
    """A submission starts as a draft (the send email dialog) or queued for the worker."""
    return "draft" if draft else "queued"


# ---------------------------------------------------------------------- the retry policy


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait and when to give up; built once from the settings."""

    max_attempts: int = 8
    base_seconds: float = 30.0
    cap_seconds: float = 3600.0
    max_defer_seconds: float = 60.0  # a throttled message waits at most this long as `deferred`
    send_anyway_after: int = 10  # deferrals (reference article: "After ten deferrals, the system will try to send")

    @classmethod
    def from_settings(cls, s: Settings) -> RetryPolicy:
        return cls(max_attempts=s.max_attempts, base_seconds=s.retry_base_seconds, cap_seconds=s.retry_max_seconds)

    def backoff(self, attempts: int) -> timedelta:
        """Exponential backoff with full jitter between half and the whole step (attempts starts at 1)."""
        return backoff(attempts, self.base_seconds, self.cap_seconds)

    def expires_at(self, now: datetime, expiration_days: int) -> datetime:
        """When an unsent message expires, counted from `now` (its submission, or the send of a draft)."""
        return now + timedelta(days=expiration_days)


def backoff(attempts: int, base: float, cap: float) -> timedelta:
    """Exponential backoff with full jitter between half and the whole step (attempts starts at 1)."""
    step = min(cap, base * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=step * random.uniform(0.5, 1.0))


# ---------------------------------------------------------------------- deciding the next state


class SendState(Protocol):
    """What the decision needs to know of a message being sent."""

    @property
    def id(self) -> int: ...
    @property
    def sender(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def deferrals(self) -> int: ...
    @property
    def deferred_since(self) -> datetime | None: ...
    @property
    def recipient_state(self) -> dict[str, Any]: ...


AttemptOutcome = Literal["sent", "partial", "transient", "permanent", "throttled", "held", "deferred"]


@dataclass
class Outcome:
    """What happened to one claimed message and the state it goes to; `record` writes a list of these."""

    message_id: int
    status: Status  # one of SEND_OUTCOMES
    provider: str
    sender: str
    attempt_outcome: AttemptOutcome
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
    recipient_state: dict[str, Any] | None = None  # the message's new per-recipient state (None: unchanged)
    deferrals: int | None = None  # the new deferral count (None: one more if deferred, else unchanged)
    deferred_since: datetime | None = None  # when the message was first held back by the limit


SENT_ANYWAY = Verdict(
    kind="transient", error_type="throttle.sent_regardless", title="Sent regardless after ten deferrals",
    explanation="The per-minute sending limit deferred this message ten times; as the email throttling rules "
                "say, it was then sent regardless of the limit.",
    fix="If this happens often, raise the provider's per-minute limit or spread the sending.",
)


def decide(msg: SendState, provider: str, v: Verdict, policy: RetryPolicy, now: datetime, *,
           reply: Reply | None = None, recipients: dict[str, Any] | None = None,
           uncertain: bool = False) -> Outcome:
    """A failed send (or a provider that cannot be used): the verdict's kind decides the next state."""
    common: dict[str, Any] = {
        "message_id": msg.id, "provider": provider, "sender": msg.sender,
        "reply_code": reply.code if reply else None, "reply_text": reply.text if reply else None,
        "error_type": v.error_type, "explanation": v.explanation, "fix": v.fix, "recipients": recipients or {},
        "uncertain": uncertain or v.uncertain,
    }
    if v.kind == "held":
        return Outcome(status="held", attempt_outcome="held", counts_as_attempt=False, **common)
    if v.kind == "throttled":
        wait = v.retry_after or policy.max_defer_seconds
        return Outcome(status="deferred" if wait <= policy.max_defer_seconds else "retrying",
                       attempt_outcome="throttled", next_attempt_at=now + timedelta(seconds=wait),
                       counts_as_attempt=False, **common)
    if v.kind == "transient":
        attempt_no = msg.attempts + 1
        if attempt_no >= policy.max_attempts:
            common["explanation"] = f"{v.explanation} Gave up after {attempt_no} attempts."
            return Outcome(status="failed", attempt_outcome="transient", **common)
        delay = policy.backoff(attempt_no)
        if v.retry_after:
            delay = max(delay, timedelta(seconds=v.retry_after))
        return Outcome(status="retrying", attempt_outcome="transient", next_attempt_at=now + delay, **common)
    return Outcome(status="failed", attempt_outcome="permanent", **common)


def answered(msg: SendState, provider: str, reply: Reply, policy: RetryPolicy, now: datetime, *,
         envelope: list[str], refused: dict[str, Any] | None = None, note: Verdict | None = None,
         duration_ms: int | None = None) -> Outcome:
    """The server answered the recipients of `envelope`: accepted, or refused one by one (`refused`: address ->
    its reply and classification). Each recipient gets its own state: accepted ones are never sent again,
    temporarily refused ones stay pending and are retried with the message's backoff, permanently refused ones
    failed. The message is `sent` only when no recipient is pending; while some are, it is `retrying`, and
    once its attempts run out they are given up (the message is then `sent` if anyone accepted it, else
    `failed`). `note` says why a plain success is worth a line in history (sent regardless of the limit)."""
    refused = refused or {}
    common: dict[str, Any] = {"message_id": msg.id, "provider": provider, "sender": msg.sender,
                              "reply_code": reply.code, "reply_text": reply.text, "duration_ms": duration_ms}
    if not refused and not msg.recipient_state:
        if note is not None:
            return Outcome(status="sent", attempt_outcome="sent", error_type=note.error_type,
                           explanation=note.explanation, fix=note.fix, **common)
        return Outcome(status="sent", attempt_outcome="sent", **common)
    at = now.isoformat()
    state = {a: dict(v) for a, v in msg.recipient_state.items()}
    for address in envelope:
        if address not in refused:
            state[address] = {"state": "accepted", "code": reply.code, "text": reply.text, "at": at}
    for address, d in refused.items():
        state[address] = {"state": "failed" if d["kind"] == "permanent" else "pending", "code": d["code"],
                          "text": d["text"], "error_type": d["error_type"], "explanation": d["explanation"],
                          "fix": d["fix"], "at": at}
    pending = [a for a, v in state.items() if v["state"] == "pending"]
    accepted = [a for a, v in state.items() if v["state"] == "accepted"]
    failed = [a for a, v in state.items() if v["state"] == "failed"]
    if not refused:  # the last pending recipients were accepted
        return Outcome(status="sent", attempt_outcome="sent", recipient_state=state, **common)
    first = next(iter(refused.values()))
    detail = {"error_type": first["error_type"], "fix": first["fix"], "recipients": refused,
              "recipient_state": state}
    attempt_outcome: AttemptOutcome = "partial" if len(refused) < len(envelope) else (
        "transient" if pending else "permanent")
    if pending and msg.attempts + 1 < policy.max_attempts:
        delay = policy.backoff(msg.attempts + 1)
        return Outcome(status="retrying", attempt_outcome=attempt_outcome, next_attempt_at=now + delay,
                       explanation=f"Accepted for {len(accepted)} recipient(s); {len(pending)} refused "
                                   f"temporarily and retried ({', '.join(pending)})"
                                   + (f"; {len(failed)} refused for good ({', '.join(failed)})" if failed else "")
                                   + f". {first['explanation']}",
                       **detail, **common)
    if pending:  # attempts exhausted: give the pending recipients up
        for a in pending:
            state[a] = {**state[a], "state": "failed"}
        failed += pending
    status: Status = "sent" if accepted else "failed"
    gave_up = f" Gave up after {msg.attempts + 1} attempts." if pending else ""
    explanation = (f"Sent, but {len(failed)} recipient(s) were refused: {', '.join(failed)}. "
                   if accepted else f"Every recipient was refused: {', '.join(failed)}. ")
    return Outcome(status=status, attempt_outcome=attempt_outcome, explanation=explanation + first["explanation"]
                   + gave_up, **detail, **common)


def deferred(msg: SendState, provider: str, limit: int, wait: float, now: datetime, window: float) -> Outcome:
    """No room in the provider's per-minute window: try again when a slot frees (not an attempt).

    A deferral is counted per window the message was held back, not per re-check: a message that waits from
    its first deferral for n whole windows has n + 1 deferrals, so the tenth comes about ten minutes later, as
    the throttling rules say, however often it was looked at in between."""
    since = msg.deferred_since or now
    count = max(msg.deferrals, 1 + int((now - since).total_seconds() // window))
    return Outcome(
        message_id=msg.id, status="deferred", provider=provider, sender=msg.sender, attempt_outcome="deferred",
        next_attempt_at=now + timedelta(seconds=wait), counts_as_attempt=False, error_type="throttle.deferred",
        deferrals=count, deferred_since=since,
        explanation=f"The per-minute sending limit of {provider} ({limit}/min) was reached; deferred "
                    f"{count} time(s), next try in {wait:.1f} s.",
        fix="None needed. To send faster, raise the provider's per-minute limit.")


# ---------------------------------------------------------------------- writes
# Each write moves from statuses checked against TRANSITIONS once, at import (a wrong table entry or a wrong
# write fails every test run, not a request).

_CLAIMABLE = _legal(WAITING_STATUSES, "sending")
_EXPIRABLE = _legal(UNSENT_STATUSES, "expired")
_CANCELLABLE = _legal(UNSENT_STATUSES, "cancelled")
_RETRYABLE = _legal(("failed", "expired", "held"), "queued")
_RELEASABLE = _legal(("held",), "queued")
_DRAFT_TO_QUEUE = _legal(("draft",), "queued")
_DRAFT_TO_USER = _legal(("draft",), "sent")
_LEASE_LOST = _legal(("sending",), "retrying")
_STATE = JSON(none_as_null=True)  # an outcome without a new recipient state binds SQL NULL: keep the stored one


def _status_of_row() -> ColumnElement[str]:
    """`status` in a form no index can serve, for writes that name their rows by id: statistics taken while
    nothing was `sending` make PostgreSQL estimate one such row and read the rows through a status index
    instead of the primary key; with a batch in flight that read every `sending` row for each outcome written
    (18 rows read per delivered message at 10,000, and growing with the batch)."""
    return M.c.status.op("||")(literal_column("''"))


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


# Fairness between submitting keys within a lane (see `claim_due`).
# A message's submitting key as ix_message_key_lane has it (models.SUBMITTER_EXPRESSION): NO_KEY for none. Key
# ids start at 1, so messages without a key (rows older than the column, or written by hand) are a group of their
# own, first in the round.
NO_KEY = 0
SUBMITTER: ColumnElement[int] = func.coalesce(M.c.api_key_id, literal_column(str(NO_KEY)))
MAX_KEYS_PER_CLAIM = 100  # keys served by one claim at most; more take turns over the following claims
CLAIM_ROUNDS = 3  # a claim hands the shares its keys could not use to the others at most this often


@dataclass
class KeyTurns:
    """Where each lane's round over submitting keys resumes: lane -> the key after which the next claim starts.
    One per worker, kept from one claim to the next."""

    after: dict[int, int] = field(default_factory=dict)


class KeyFinder(Protocol):
    """`repository.due_keys`: the keys with due messages in a lane, in turn order after `after`, at most `cap`."""

    def __call__(self, session: AsyncSession, lane: DueLane, *, after: int | None,
                 cap: int) -> Awaitable[list[int]]: ...


def _claim(ids: Select[Any], now: datetime, worker: str, lease_seconds: int) -> Any:
    """The compare-and-set of the rows `ids` selects to `sending` with a lease, returning them whole."""
    return (
        update(M)
        .where(M.c.id.in_(ids.scalar_subquery()))
        .where(_status_of_row().in_(_CLAIMABLE))
        .values(status="sending", lease_until=now + timedelta(seconds=lease_seconds), claimed_by=worker,
                updated_at=now)
        .returning(*M.c)
    )


async def _claim_shares(session: AsyncSession, lane: DueLane, shares: dict[int, int], *, limit: int,
                        postgres: bool, now: datetime, worker: str, lease_seconds: int) -> list[Row[Any]]:
    """Claim up to `shares[key]` of each key's due messages in the lane, each key's oldest first (one range of
    ix_message_key_lane per key). PostgreSQL: one statement (a LATERAL range per key, each `FOR UPDATE SKIP
    LOCKED`); SQLite (one writer at a time): one statement per key."""
    if not postgres:
        out: list[Row[Any]] = []
        for key, n in shares.items():
            inner = select(M.c.id).where(lane.due, SUBMITTER == key).order_by(M.c.next_attempt_at).limit(n)
            out += (await session.execute(_claim(inner, now, worker, lease_seconds))).all()
        return out
    turn = func.unnest(bindparam("fair_keys", list(shares), type_=ARRAY(BigInteger)),
                       bindparam("fair_shares", list(shares.values()), type_=ARRAY(Integer))) \
        .table_valued("key", "share").render_derived(name="turn")
    picked = (select(M.c.id).where(lane.due, SUBMITTER == turn.c.key).order_by(M.c.next_attempt_at)
              .limit(turn.c.share).with_for_update(skip_locked=True).lateral("picked"))
    # The batch size as a literal: with a parameter, a generic plan estimates a tenth of the lane and hashes the
    # whole table instead of fetching the claimed rows by primary key.
    inner = select(picked.c.id).select_from(turn.join(picked, true())).limit(literal_column(str(int(limit))))
    return list((await session.execute(_claim(inner, now, worker, lease_seconds))).all())


def _in_turns(rows: list[Row[Any]], order: list[int]) -> list[Row[Any]]:
    """The batch in turn order: each key's oldest due message in the keys' turn order, then each one's second,
    and so on; a throttled provider's grant (a prefix of the batch) is shared between the keys the same way."""
    pos = {k: i for i, k in enumerate(order)}
    rank: dict[int, int] = {}
    ranked: list[tuple[int, int, Row[Any]]] = []
    for r in sorted(rows, key=lambda r: (r.next_attempt_at, r.id)):
        k = r.api_key_id if r.api_key_id is not None else NO_KEY
        rank[k] = rank.get(k, 0) + 1
        ranked.append((rank[k], pos.get(k, len(pos)), r))
    return [r for _, _, r in sorted(ranked, key=lambda t: (t[0], t[1]))]


async def claim_due(
    session: AsyncSession,
    *,
    worker: str,
    now: datetime,
    limit: int,
    lease_seconds: int,
    lanes: Sequence[DueLane],
    keys: KeyFinder,
    postgres: bool,
    turns: KeyTurns | None = None,
) -> list[Row[Any]]:
    """Compare-and-set up to `limit` due rows to `sending` with a lease, returning the claimed rows whole (what
    the worker sends: no second read), in turn order (`_in_turns`).

    Lanes are strict: `lanes` are highest first (`repository.due_lanes`) and the batch comes from the first lane
    that has due rows, so a lower lane's batch never starts while a higher lane has due messages.

    Within the lane, submitting keys take turns (round robin): the keys with due messages (`keys`, at most
    MAX_KEYS_PER_CLAIM) divide the batch equally, each key's share being its oldest due messages (`limit` // k
    each, one more for the first `limit` % k in turn order); a share a key cannot fill goes to the keys that have
    more (another round, at most CLAIM_ROUNDS). `turns` keeps where the next claim starts: after the last key
    that got one more, so the extra messages, and the turns when more keys wait than a claim serves, go round.
    Reads: a few index probes per key and the claimed rows, whatever the backlog.

    On PostgreSQL the reads of the claimed rows take `FOR UPDATE SKIP LOCKED`, so concurrent workers claim
    disjoint batches without waiting; SQLite has one writer at a time, which serialises claims by itself.
    """
    turns = turns if turns is not None else KeyTurns()
    for lane in lanes:
        claimed: list[Row[Any]] = []
        order: list[int] = []
        for _ in range(CLAIM_ROUNDS):
            want = limit - len(claimed)
            if want <= 0:
                break
            found = await keys(session, lane, after=turns.after.get(lane.lane), cap=min(want, MAX_KEYS_PER_CLAIM))
            if not found:
                break
            base, extra = divmod(want, len(found))
            got = await _claim_shares(session, lane, {k: base + (i < extra) for i, k in enumerate(found)},
                                      limit=limit, postgres=postgres, now=now, worker=worker,
                                      lease_seconds=lease_seconds)
            if not got:
                break  # locked by other workers meanwhile
            turns.after[lane.lane] = found[extra - 1] if extra else found[-1]
            order += [k for k in found if k not in order]
            claimed += got
        if claimed:
            return _in_turns(claimed, order)
    return []


async def compact_counts(session: AsyncSession) -> int:
    """Fold the status counters of PostgreSQL backends that have ended into shard 0 (see models.MessageCount).
    Not a status write; the reconciler calls it. Returns the rows folded."""
    if session.get_bind().dialect.name != "postgresql":
        return 0
    res = await session.execute(text(
        "WITH gone AS (DELETE FROM message_count WHERE shard <> 0 AND shard NOT IN "
        "(SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL) RETURNING status, kind, priority, n), "
        "folded AS (INSERT INTO message_count AS c (status, kind, priority, shard, n) "
        "SELECT status, kind, priority, 0, sum(n) FROM gone GROUP BY status, kind, priority "
        "ORDER BY status, kind, priority "
        "ON CONFLICT (status, kind, priority, shard) DO UPDATE SET n = c.n + EXCLUDED.n RETURNING 1) "
        "SELECT (SELECT count(*) FROM gone)"))
    return int(res.scalar_one())


async def record(session: AsyncSession, outcomes: list[Outcome], now: datetime, worker: str) -> None:
    """Write the outcomes of one batch: one UPDATE for all plain successes, one INSERT for all attempts.
    Only a message still `sending` under this worker's claim changes (a lost lease changes nothing)."""
    if not outcomes:
        return
    illegal = [o for o in outcomes if o.status not in TRANSITIONS["sending"]]
    if illegal:
        raise IllegalTransition(f"sending -> {illegal[0].status} is not a transition of a message")
    plain_sent = [o for o in outcomes if o.status == "sent" and not o.error_type and o.recipient_state is None]
    others = [o for o in outcomes if not (o.status == "sent" and not o.error_type and o.recipient_state is None)]
    for prov in sorted({o.provider for o in plain_sent}):
        await session.execute(
            update(M)
            .where(M.c.id.in_([o.message_id for o in plain_sent if o.provider == prov]),
                   _status_of_row() == "sending", M.c.claimed_by == worker)
            .values(status="sent", attempts=M.c.attempts + 1, sent_at=now, finished_at=now, updated_at=now,
                    lease_until=None, sent_via=prov, last_error_type=None, last_error=None, last_fix=None)
        )
    if others:
        stmt = (
            update(M)
            .where(M.c.id == bindparam("b_id"), _status_of_row() == "sending", M.c.claimed_by == worker)
            .values(
                status=bindparam("b_status"),
                attempts=M.c.attempts + bindparam("b_inc"),
                deferrals=func.coalesce(bindparam("b_deferrals"), M.c.deferrals + bindparam("b_def")),
                deferred_since=func.coalesce(bindparam("b_since"), M.c.deferred_since),
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
                recipient_state=func.coalesce(bindparam("b_rstate", type_=_STATE), M.c.recipient_state),
            )
        )
        await session.execute(stmt, [
            {
                "b_id": o.message_id, "b_status": o.status, "b_inc": 1 if o.counts_as_attempt else 0,
                "b_def": 1 if o.status == "deferred" else 0, "b_next": o.next_attempt_at,
                "b_deferrals": o.deferrals, "b_since": o.deferred_since,
                "b_sent_at": now if o.status == "sent" else None,
                "b_finished": now if o.status in FINAL_STATUSES else None,
                "b_via": o.provider if o.status == "sent" else None,
                "b_uncertain": o.uncertain, "b_etype": o.error_type, "b_err": o.explanation, "b_fix": o.fix,
                "b_rstate": o.recipient_state,
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
    await events.emit_outcomes(session, outcomes, now, worker)  # webhook events, in this same transaction


async def release_stale_leases(session: AsyncSession, now: datetime, dead_workers: Sequence[str] = ()) -> int:
    """A worker died mid-send (its lease ran out, or it is in `dead_workers`): make the message eligible again,
    flagged as possibly sent (at least once)."""
    lost = M.c.lease_until < now
    if dead_workers:
        lost = or_(lost, M.c.claimed_by.in_(list(dead_workers)))
    res = await session.execute(
        update(M).where(M.c.status.in_(_LEASE_LOST), lost)
        .values(status="retrying", uncertain=True, next_attempt_at=now, lease_until=None, updated_at=now,
                last_error_type="worker.lease_expired",
                last_error="A worker stopped while sending this message; it may have reached the server. "
                           "It is sent again with the same Message-ID.",
                last_fix="None needed: delivery is at least once.")
    )
    return rowcount(res)


async def expire_due(session: AsyncSession, now: datetime) -> int:
    res = await session.execute(
        update(M).where(M.c.status.in_([literal_column(f"'{s}'") for s in _EXPIRABLE]), M.c.expires_at <= now)
        .values(status="expired", finished_at=now, updated_at=now, last_error_type="message.expired",
                last_error=_EXPIRED_ERROR, last_fix=_EXPIRED_FIX)
        .returning(M.c.id)
    )
    ids = [r[0] for r in res.all()]
    await events.emit_status(session, ids, "expired", now, error_type="message.expired",
                             explanation=_EXPIRED_ERROR, fix=_EXPIRED_FIX)
    return len(ids)


_EXPIRED_ERROR = "The message was not sent within the email expiration period."
_EXPIRED_FIX = ("Check the failure details of earlier attempts, fix the cause, then send it again "
                "(POST /messages/{id}/retry).")


async def shift_expiry(session: AsyncSession, days: int) -> int:
    """The email expiration days changed by `days`: every message not finished yet keeps its own start (its
    creation, the send of its draft, or an administrator's retry) and expires the new number of days after it.
    Those already past the new limit expire at the reconciler's next sweep. Not a status write."""
    if days == 0:
        return 0
    cond = and_(M.c.status.notin_(FINAL_STATUSES), M.c.expires_at.is_not(None))
    if session.get_bind().dialect.name == "postgresql":
        res = await session.execute(update(M).where(cond).values(expires_at=M.c.expires_at + timedelta(days=days)))
        return rowcount(res)
    # SQLite keeps datetimes as text: shift in Python (embedded deployments hold small queues).
    found = (await session.execute(select(M.c.id, M.c.expires_at).where(cond))).all()
    if found:
        await session.execute(update(M).where(M.c.id == bindparam("b_id"))
                              .values(expires_at=bindparam("b_exp")),
                              [{"b_id": r.id, "b_exp": r.expires_at + timedelta(days=days)} for r in found])
    return len(found)


PURGE_BATCH = 1000
PURGE_BATCHES = 20  # per status and sweep: a sweep deletes at most 80,000; the rest goes at the next sweeps


async def purge_history(session: AsyncSession, before: datetime) -> int:
    """Delete finished messages older than the retention period, oldest first, in batches per final status, each
    read as a range of ix_message_status_finished (status, finished_at): a sweep reads what it deletes, not the
    whole history (one DELETE over every final status let PostgreSQL walk (status, id) through every sent row
    when its statistics were older than the backlog). Never touches unsent or sending ones."""
    total = 0
    for status in FINAL_STATUSES:
        for _ in range(PURGE_BATCHES):
            n = rowcount(await session.execute(purge_batch(status, before)))
            total += n
            if n < PURGE_BATCH:
                break
    return total


def purge_batch(status: Status, before: datetime) -> Delete:
    oldest = (select(M.c.id).where(M.c.status == status, M.c.finished_at < before)
              .order_by(M.c.finished_at).limit(PURGE_BATCH))
    return delete(M).where(M.c.id.in_(oldest.scalar_subquery()))


async def release_held(session: AsyncSession, provider: str | None, now: datetime) -> int:
    """An admin fixed a provider (e.g. re-entered its secret): held messages go out again at once."""
    cond: ColumnElement[bool] = M.c.status.in_(_RELEASABLE)
    if provider is not None:
        cond = and_(cond, or_(M.c.provider == provider, M.c.provider.is_(None)))
    res = await session.execute(update(M).where(cond).values(status="queued", next_attempt_at=now, updated_at=now))
    return rowcount(res)


async def cancel(session: AsyncSession, message_id: int, now: datetime) -> bool:
    res = await session.execute(
        update(M).where(M.c.id == message_id, M.c.status.in_(_CANCELLABLE))
        .values(status="cancelled", finished_at=now, updated_at=now)
    )
    return rowcount(res) > 0


async def retry(session: AsyncSession, message_id: int, now: datetime, expires_at: datetime,
                recipient_state: dict[str, Any] | None = None) -> bool:
    """Send a failed or expired message again: a fresh schedule, the same Message-ID. When a server answered its
    recipients apart, the ones it refused are pending again and the accepted ones are not sent to again
    (`retry_state`)."""
    values: dict[str, Any] = {"status": "queued", "next_attempt_at": now, "finished_at": None, "updated_at": now,
                              "attempts": 0, "deferrals": 0, "deferred_since": None, "expires_at": expires_at}
    if recipient_state:
        values["recipient_state"] = retry_state(recipient_state)
    res = await session.execute(
        update(M).where(M.c.id == message_id, M.c.status.in_(_RETRYABLE)).values(**values))
    return rowcount(res) > 0


def retry_state(state: dict[str, Any]) -> dict[str, Any]:
    """Per-recipient state for a retry: refused recipients pending again (without an envelope of pending ones the
    next try would have no one to send to), accepted ones kept."""
    return {a: ({**v, "state": "pending"} if v.get("state") == "failed" else v) for a, v in state.items()}


async def queue_draft(
    session: AsyncSession, message_id: int, now: datetime, provider: str | None,
    expires_at: datetime | None = None, due_at: datetime | None = None,
) -> bool:
    """The user sent a draft: it waits for the worker like any queued message, from `due_at` (its send_at) or
    now (expiry counted from then)."""
    values: dict[str, Any] = {"status": "queued", "next_attempt_at": due_at or now, "updated_at": now,
                              "provider": provider}
    if expires_at is not None:
        values["expires_at"] = expires_at
    res = await session.execute(
        update(M).where(M.c.id == message_id, M.c.status.in_(_DRAFT_TO_QUEUE)).values(**values))
    return rowcount(res) > 0


async def hand_to_user(session: AsyncSession, message_id: int, now: datetime, sender: str) -> bool:
    """'Use an email app': the draft was handed to the user as an .eml file; Outbox's part is done."""
    res = await session.execute(
        update(M).where(M.c.id == message_id, M.c.status.in_(_DRAFT_TO_USER))
        .values(status="sent", provider="email_app", sent_via="email_app", handed_to_user_at=now, sent_at=now,
                finished_at=now, updated_at=now, next_attempt_at=None, attempts=M.c.attempts + 1,
                last_error_type=None, last_error=None, last_fix=None)
    )
    if not rowcount(res):
        return False
    await session.execute(insert(A).values(
        message_id=message_id, at=now, provider="email_app", sender=sender, outcome="handed_to_user",
        explanation="Handed to the user as an .eml file to send from their own email app (X-Unsent: 1). "
                    "Outbox does not see whether or when they send it.",
        recipients={}, uncertain=False))
    await events.emit_status(session, [message_id], "sent", now, provider="email_app")
    return True


async def renew_leases(session: AsyncSession, ids: list[int], worker: str, now: datetime, lease_seconds: int) -> int:
    """Keep a claim alive while its batch is still being sent, so the reconciler never hands a message that is
    in flight to another worker (which would send it twice)."""
    res = await session.execute(
        update(M).where(M.c.id.in_(ids), _status_of_row() == "sending", M.c.claimed_by == worker)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
    )
    return rowcount(res)
