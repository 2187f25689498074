"""Recording a DSN: match it to the message (the VERP token, else the returned Message-ID), record each failed
recipient of that message as bounced (hard or soft, the status and diagnostic code, the classification's
explanation and fix), suppress the address on a hard bounce, and emit `message.bounced` in the same transaction.

Nothing is recorded for an address that is not a recipient of the matched message, nor for a DSN matching no
message: a forged or misrouted report cannot suppress an arbitrary address."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.bounces.dsn import RecipientReport, Report
from app.delivery.classify import classify_recipient
from app.messages.schemas import BounceInfo
from app.models import BOUNCES, MESSAGES
from app.suppressions import service as suppressions
from app.transports.base import Reply
from app.webhooks import events

M = MESSAGES
B = BOUNCES


@dataclass
class Outcome:
    message_id: int | None = None
    matched_by: str | None = None
    bounced: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # failed recipients that are not the message's

    def summary(self) -> str:
        if self.message_id is None:
            return "no message of ours matched"
        return (f"message {self.message_id} ({self.matched_by}): {len(self.bounced)} bounced, "
                f"{len(self.suppressed)} suppressed, {len(self.ignored)} ignored")


def _classify(r: RecipientReport) -> dict[str, Any]:
    text = r.diagnostic_code or f"Status {r.status or 'unknown'}"
    if ";" in text:
        text = text.partition(";")[2].strip()
    code = r.reply_code or (550 if r.kind == "hard" else 450)
    v = classify_recipient("smtp", Reply(code, text))
    kind_words = ("Hard bounce: the receiving system refused this address for good" if r.kind == "hard" else
                  "Soft bounce: the receiving system gave up delivering for now")
    return {"error_type": v.error_type,
            "explanation": f"{kind_words} after accepting the message (status {r.status or 'not given'}). "
                           f"{v.explanation}",
            "fix": v.fix if r.kind == "soft" else f"{v.fix} The address is on the suppression list now; remove "
                                                   "it there (DELETE /suppressions/{id}) once it is fixed."}


@dataclass
class Matched:
    """The message a report is about, how it was found, and its recipients (casefolded -> as written)."""

    id: int
    status: str
    by: str  # token | message_id
    recipients: dict[str, str]


async def match_message(session: AsyncSession, token_message_id: int | None,
                        original_message_id: str | None) -> Matched | None:
    """The message a report is about: by the VERP token, else by the returned message's Message-ID (complaints
    use it too)."""
    cols = (M.c.id, M.c.status, M.c.to_addrs, M.c.cc_addrs, M.c.bcc_addrs)
    queries = []
    if token_message_id is not None:
        queries.append((select(*cols).where(M.c.id == token_message_id), "token"))
    if original_message_id:
        queries.append((select(*cols).where(M.c.message_id_header == original_message_id)
                        .order_by(M.c.id.desc()).limit(1), "message_id"))
    for query, by in queries:
        row = (await session.execute(query)).first()
        if row is not None:
            return Matched(row.id, row.status, by, {a.casefold(): a for a in
                                                    [*row.to_addrs, *row.cc_addrs, *row.bcc_addrs]})
    return None


async def record(session: AsyncSession, report: Report, token_message_id: int | None, now: datetime) -> Outcome:
    out = Outcome()
    failures = report.failures
    if not failures:
        return out
    msg = await match_message(session, token_message_id, report.original_message_id)
    if msg is None:
        return out
    out.message_id, out.matched_by, ours = msg.id, msg.by, msg.recipients
    details: dict[str, Any] = {}
    for r in failures:
        addr = ours.get(r.address.casefold())
        if addr is None:
            out.ignored.append(r.address)
            continue
        exists = (await session.execute(select(B.c.id).where(B.c.message_id == msg.id, B.c.recipient == addr,
                                                             B.c.kind == r.kind))).first()
        if exists is not None or addr in details:
            continue  # the same report again (an MTA retrying its delivery to us): recorded once
        c = _classify(r)
        await session.execute(insert(B).values(
            message_id=msg.id, recipient=addr, kind=r.kind, status=r.status, diagnostic_code=r.diagnostic_code,
            remote_mta=r.remote_mta, matched_by=msg.by, created_at=now, **c))
        details[addr] = {"kind": r.kind, "status_code": r.status, "diagnostic_code": r.diagnostic_code,
                         "remote_mta": r.remote_mta, **c}
        out.bounced.append(addr)
        if r.kind == "hard" and await suppressions.add(session, addr, "hard_bounce", detail=r.diagnostic_code,
                                                       message_id=msg.id, now=now):
            out.suppressed.append(addr)
    if details:
        first = next(iter(details.values()))
        await events.emit(session, [events.NewEvent("message.bounced", msg.id, {
            "status": msg.status, "recipients": details, "error_type": first["error_type"],
            "explanation": first["explanation"], "fix": first["fix"]})], now)
    return out


async def for_message(session: AsyncSession, message_id: int) -> dict[str, BounceInfo]:
    """The bounces of one message by recipient (a hard one wins over a soft one)."""
    rows = (await session.execute(select(B).where(B.c.message_id == message_id).order_by(B.c.id))).all()
    out: dict[str, BounceInfo] = {}
    for r in rows:
        if r.recipient in out and out[r.recipient].kind == "hard":
            continue
        out[r.recipient] = BounceInfo(kind=r.kind, status=r.status, diagnostic_code=r.diagnostic_code,
                                      remote_mta=r.remote_mta, error_type=r.error_type, explanation=r.explanation,
                                      fix=r.fix, at=r.created_at)
    return out
