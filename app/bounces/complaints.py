"""Recording a feedback-loop complaint (an ARF report, `arf.py`): match it to the message (a VERP token: the address
the report came to, its Original-Mail-From or the returned message's Return-Path; else the returned Message-ID),
find the complaining recipient, record the complaint, suppress the address for abuse and fraud, and emit
`message.complained` in the same transaction.

The recipient is the one the report names (Original-Rcpt-To, else Microsoft's X-HmXmrOriginalRecipient) when it
is one of the message's recipients; when the provider redacted it, the message's only recipient. Outbox never
guesses among several recipients, and never replaces a named address that is not the message's by another: a
forged or misrouted report cannot suppress an arbitrary address."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.bounces.arf import SUPPRESSING, Complaint
from app.bounces.service import match_message
from app.messages.schemas import ComplaintInfo
from app.models import COMPLAINTS
from app.suppressions import service as suppressions
from app.webhooks import events

C = COMPLAINTS

_WHAT = {
    "abuse": "The recipient marked this message as spam",
    "fraud": "The recipient reported this message as fraud or phishing",
    "virus": "The recipient's provider reported a virus in this message",
    "other": "The recipient's provider reported this message (feedback type other)",
}
_FIX = {
    "abuse": "The address is on the suppression list: Outbox sends it nothing more. Remove the entry "
             "(DELETE /suppressions/{id}) only if the recipient asks for this mail again.",
    "fraud": "The address is on the suppression list. Check that the message cannot pass for phishing: a From "
             "domain the recipient knows, SPF and DKIM aligned with it, links to your own domains.",
    "virus": "Check the message's attachments. The address is not suppressed.",
    "other": "Read the provider's report for what it means. The address is not suppressed.",
}


def explain(feedback_type: str, reported_by: str | None) -> tuple[str, str]:
    who = f" (report from {reported_by})" if reported_by else ""
    return (f"{_WHAT.get(feedback_type, _WHAT['other'])}{who}. Mailbox providers count complaints against the "
            "sender's reputation, and too many get its mail filtered to spam or refused.",
            _FIX.get(feedback_type, _FIX["other"]))


@dataclass
class Outcome:
    feedback_type: str
    message_id: int | None = None
    matched_by: str | None = None
    complained: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # named addresses that are not the message's
    unidentified: int = 0  # the report named no one and the message has this many recipients

    def summary(self) -> str:
        if self.feedback_type not in ("abuse", "fraud", "virus", "other"):
            return f"{self.feedback_type} report: nothing to record"
        if self.message_id is None:
            return f"complaint ({self.feedback_type}): no message of ours matched"
        text = (f"complaint ({self.feedback_type}) on message {self.message_id} ({self.matched_by}): "
                f"{len(self.complained)} recorded, {len(self.suppressed)} suppressed, {len(self.ignored)} ignored")
        if self.unidentified:
            text += f"; recipient not named and the message has {self.unidentified}"
        return text


async def record(session: AsyncSession, c: Complaint, token_message_id: int | None, now: datetime) -> Outcome:
    out = Outcome(c.feedback_type)
    if not c.is_complaint:
        return out
    msg = await match_message(session, token_message_id, c.original_message_id)
    if msg is None:
        return out
    out.message_id, out.matched_by, ours = msg.id, msg.by, msg.recipients
    who: list[str] = []
    if c.names_recipient:
        recipient_by = "report"
        for a in c.named_recipients:
            mine = ours.get(a.casefold())
            if mine is None:
                out.ignored.append(a)
            elif mine not in who:
                who.append(mine)
        out.ignored.extend(["(unreadable)"] * c.unreadable_rcpt_to)
    elif len(ours) == 1:
        recipient_by = "only"
        who = list(ours.values())
    else:
        out.unidentified = len(ours)
        return out
    explanation, fix = explain(c.feedback_type, c.user_agent)
    details: dict[str, Any] = {}
    for addr in who:
        exists = (await session.execute(select(C.c.id).where(
            C.c.message_id == msg.id, C.c.recipient == addr, C.c.feedback_type == c.feedback_type))).first()
        if exists is not None:
            continue  # the same report again (a relay retrying, a provider sending twice): recorded once
        await session.execute(insert(C).values(
            message_id=msg.id, recipient=addr, feedback_type=c.feedback_type, user_agent=c.user_agent,
            source_ip=c.source_ip, arrived_at=c.arrival_date, matched_by=msg.by, recipient_by=recipient_by,
            created_at=now))
        out.complained.append(addr)
        added = c.suppresses and await suppressions.add(
            session, addr, "complaint", detail=f"Feedback-loop complaint ({c.feedback_type})"
            + (f" from {c.user_agent}" if c.user_agent else ""), message_id=msg.id, now=now)
        if added:
            out.suppressed.append(addr)
        details[addr] = {"feedback_type": c.feedback_type, "reported_by": c.user_agent, "source_ip": c.source_ip,
                         "arrived_at": c.arrival_date.isoformat() if c.arrival_date else None,
                         "suppressed": c.suppresses, "identified_by": recipient_by,
                         "explanation": explanation, "fix": fix}
    if details:
        await events.emit(session, [events.NewEvent("message.complained", msg.id, {
            "status": msg.status, "recipients": details, "feedback_type": c.feedback_type, "error_type": None,
            "explanation": explanation, "fix": fix})], now)
    return out


async def for_message(session: AsyncSession, message_id: int) -> dict[str, ComplaintInfo]:
    """The complaints about one message by recipient (one that suppressed wins, else the first received)."""
    rows = (await session.execute(select(C).where(C.c.message_id == message_id).order_by(C.c.id))).all()
    out: dict[str, ComplaintInfo] = {}
    for r in rows:
        if r.recipient in out and (out[r.recipient].suppressed or r.feedback_type not in SUPPRESSING):
            continue
        explanation, fix = explain(r.feedback_type, r.user_agent)
        out[r.recipient] = ComplaintInfo(feedback_type=r.feedback_type, reported_by=r.user_agent,
                                         source_ip=r.source_ip, arrived_at=r.arrived_at,
                                         suppressed=r.feedback_type in SUPPRESSING, explanation=explanation,
                                         fix=fix, at=r.created_at)
    return out
