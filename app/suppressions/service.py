"""The suppression list: addresses Outbox no longer sends to (a hard bounce, or an administrator's entry).

Submissions are checked in `messages.service.submit`, right after validation: a suppressed recipient is
refused with 422 `recipient-suppressed` naming the field (`to[1]`), or, with `"suppressed": "drop"` on the
message, left out (the answer lists the addresses dropped)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.db import rowcount
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.pagination import Page
from app.core.ttl_cache import TTLCache
from app.mail.validate import normalize_address
from app.models import SUPPRESSIONS
from app.suppressions.schemas import SuppressionIn, SuppressionPublic

S = SUPPRESSIONS
FIELDS = (("to_addrs", "to"), ("cc_addrs", "cc"), ("bcc_addrs", "bcc"))

# Every submission is checked against the list. A query per request cost the submit path its group commit (a
# transaction per request: ingest fell from ~1,500 to ~300 req/s), so each API process keeps the set of
# suppressed addresses for INDEX_TTL seconds (emptied at once by a change made through this process; other
# processes and the bounce listener are seen within the TTL). Beyond INDEX_MAX addresses the list is queried per
# submission instead.
INDEX_TTL = 2.0
INDEX_MAX = 200_000
_index: TTLCache[int, tuple[frozenset[str] | None]] = TTLCache(INDEX_TTL)


async def _suppressed(session: AsyncSession) -> frozenset[str] | None:
    """The suppressed addresses (casefolded), or None when the list is too long to keep in memory."""
    hit = _index.get(0)
    if hit is not None:
        return hit[0]
    total = (await session.execute(select(func.count()).select_from(S))).scalar_one()
    found = None if total > INDEX_MAX else frozenset(
        r[0] for r in (await session.execute(select(S.c.address))).all())
    _index.put(0, (found,))
    return found


class RecipientSuppressed(InvalidInput):
    slug = "recipient-suppressed"
    title = "A recipient is on the suppression list"


def key(address: str) -> str:
    return address.casefold()


async def add(session: AsyncSession, address: str, reason: str, *, detail: str | None = None,
              message_id: int | None = None, now: datetime | None = None) -> bool:
    """Suppress `address` unless it already is; True if it was added (used by bounce processing too)."""
    k = key(address)
    if (await session.execute(select(S.c.id).where(S.c.address == k))).first() is not None:
        return False
    await session.execute(insert(S).values(address=k, reason=reason, detail=detail, message_id=message_id,
                                           created_at=now or utcnow()))
    _index.clear()
    return True


def _public(r: Any) -> SuppressionPublic:
    return SuppressionPublic(id=r.id, address=r.address, reason=r.reason, detail=r.detail, message_id=r.message_id,
                             created_at=r.created_at)


async def create(session: AsyncSession, body: SuppressionIn) -> SuppressionPublic:
    address = normalize_address("address", body.address)
    if not await add(session, address, "manual", detail=body.detail, message_id=body.message_id):
        raise Conflict(f"{key(address)} is already on the suppression list")
    row = (await session.execute(select(S).where(S.c.address == key(address)))).one()
    return _public(row)


async def list_entries(session: AsyncSession, address: str | None, reason: str | None, limit: int,
                       offset: int) -> Page[SuppressionPublic]:
    cond: ColumnElement[bool] = S.c.id.is_not(None)
    if address:
        cond = cond & S.c.address.contains(key(address), autoescape=True)
    if reason:
        cond = cond & (S.c.reason == reason)
    total = (await session.execute(select(func.count()).select_from(S).where(cond))).scalar_one()
    rows = (await session.execute(select(S).where(cond).order_by(S.c.id.desc()).limit(limit).offset(offset))).all()
    return Page[SuppressionPublic](items=[_public(r) for r in rows], total=total, limit=limit, offset=offset)


async def get(session: AsyncSession, entry_id: int) -> SuppressionPublic:
    row = (await session.execute(select(S).where(S.c.id == entry_id))).first()
    if row is None:
        raise NotFound(f"No suppression {entry_id}")
    return _public(row)


async def remove(session: AsyncSession, entry_id: int) -> None:
    res = await session.execute(delete(S).where(S.c.id == entry_id))
    if not rowcount(res):
        raise NotFound(f"No suppression {entry_id}")
    _index.clear()


async def apply(session: AsyncSession, rows: Sequence[dict[str, Any]], modes: Sequence[str],
                prefixes: Sequence[str]) -> list[list[str]]:
    """Check the recipients of rows about to be stored against the list (one query). Refuses with every
    suppressed recipient named, or drops them where the message asks; returns the addresses dropped per row.
    Drafts are not checked (they have no recipients to send to yet)."""
    wanted = {key(a) for r in rows if r["status"] != "draft" for f, _ in FIELDS for a in r[f]}
    dropped: list[list[str]] = [[] for _ in rows]
    if not wanted:
        return dropped
    index = await _suppressed(session)
    if index is not None:
        wanted &= index
        if not wanted:
            return dropped
    found = {r.address: r for r in (await session.execute(select(S).where(S.c.address.in_(sorted(wanted))))).all()}
    if not found:
        return dropped
    errors: list[dict[str, Any]] = []
    for n, (row, mode, p) in enumerate(zip(rows, modes, prefixes, strict=True)):
        if row["status"] == "draft":
            continue
        for column, name in FIELDS:
            kept = []
            for j, a in enumerate(row[column]):
                hit = found.get(key(a))
                if hit is None:
                    kept.append(a)
                elif mode == "drop":
                    dropped[n].append(a)
                else:
                    cause = f" by message {hit.message_id}" if hit.message_id else ""
                    errors.append({"field": f"{p}{name}[{j}]", "suppression_id": hit.id,
                                   "message": f"{a} is on the suppression list ({hit.reason}{cause}, "
                                              f"{hit.created_at:%Y-%m-%d}): remove it with DELETE "
                                              f"/suppressions/{hit.id}, or send with \"suppressed\": \"drop\" "
                                              "to leave it out"})
            row[column] = kept
        if mode == "drop" and not any(row[c] for c, _ in FIELDS):
            errors.append({"field": f"{p}to", "message": "every recipient is on the suppression list; nothing "
                                                         "would be sent"})
    if errors:
        first = errors[0]
        raise RecipientSuppressed(f"{first['field']}: {first['message']}", errors=errors)
    return dropped
