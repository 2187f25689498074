"""The send email dialog: edit a draft, send it with the chosen provider, or hand it to the user as .eml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.db import rowcount
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.security import Principal
from app.mail.build import build_eml, eml_filename, make_message_id
from app.mail.validate import check_header_text
from app.messages import choice, lifecycle, repository
from app.messages import service as message_service
from app.messages.outgoing import outgoing_from_row
from app.messages.schemas import DraftUpdate, MessageIn, MessagePublic, SendRequest
from app.messages.senders import ResolvedSender, SenderRules, acting_user, resolve_sender
from app.models import ATTACHMENTS, MESSAGES, User
from app.parameters import service as parameters_service
from app.suppressions import service as suppressions

__all__ = ["EmlFile", "SendOutcome", "eml", "send_draft", "update_draft"]

M = MESSAGES
ATT = ATTACHMENTS
MAX_ATTACHMENTS = 100


@dataclass(frozen=True, slots=True)
class EmlFile:
    content: bytes
    filename: str


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What POST /messages/{id}/send did: queued for the worker (`eml` None), or handed over as a file."""

    message: MessagePublic
    eml: EmlFile | None = None


async def _row(session: AsyncSession, principal: Principal, message_id: int) -> repository.MessageRow:
    row = await repository.get(session, principal, message_id)
    if row is None:
        raise NotFound(f"No message {message_id} visible to this key")
    return row


async def _draft(session: AsyncSession, principal: Principal, message_id: int) -> tuple[repository.MessageRow, User]:
    row = await _row(session, principal, message_id)
    if row.status != "draft":
        raise Conflict(f"Message {message_id} is {row.status}, not a draft: only a draft can be edited or "
                       "sent from the send email dialog")
    user = await acting_user(session, principal, row.user_id) if row.user_id is not None else None
    if user is None:
        raise Conflict(f"Draft {message_id} has no user (the user was deleted); cancel it instead")
    return row, user


def _text_fields(row: repository.MessageRow) -> dict[str, Any]:
    return {"to": list(row.to_addrs), "cc": list(row.cc_addrs), "bcc": list(row.bcc_addrs),
            "reply_to": list(row.reply_to), "subject": row.subject, "body_text": row.body_text,
            "body_html": row.body_html, "headers": dict(row.headers or {})}


async def update_draft(
    session: AsyncSession, principal: Principal, message_id: int, patch: DraftUpdate
) -> MessagePublic:
    """Apply a DraftUpdate: every field validated as on submission, the size limit checked, all or nothing."""
    row, user = await _draft(session, principal, message_id)
    fields = patch.model_fields_set
    merged = _text_fields(row)
    for key in ("to", "cc", "bcc", "reply_to", "subject", "body_text", "body_html"):
        if key in fields:
            value = getattr(patch, key)
            if value is None and key in ("to", "cc", "bcc", "reply_to"):
                value = []
            merged[key] = "" if value is None and key == "subject" else value
    current = await repository.attachment_list(session, message_id)
    known = {a.id: a for a in current}
    for i, att_id in enumerate(patch.attachments_remove):
        if att_id not in known:
            raise InvalidInput(f"attachments_remove[{i}]: draft {message_id} has no attachment {att_id}",
                               errors=[{"field": f"attachments_remove[{i}]",
                                        "message": "no such attachment"}])
    removed = set(patch.attachments_remove)
    kept = [a for a in current if a.id not in removed]
    if len(kept) + len(patch.attachments_add) > MAX_ATTACHMENTS:
        raise InvalidInput(f"attachments_add: a message has at most {MAX_ATTACHMENTS} attachments",
                           errors=[{"field": "attachments_add", "message": "too many attachments"}])
    if "from_" in fields:
        # Back to the rules (`from: null`) or a From this caller may use; a user key only its own addresses.
        name: str | None = patch.from_name if "from_name" in fields else None
        sender = resolve_sender(patch.from_, name,
                                SenderRules(kind="interactive", caller_role=principal.role, user=user))
    else:
        # The From stays as it was pre-filled (or last chosen); only the display name may change.
        name = row.sender_name
        if "from_name" in fields:
            name = check_header_text("from_name", patch.from_name) if patch.from_name else None
        sender = ResolvedSender(row.sender, name, "unchanged")
    body = MessageIn.model_construct(**merged, from_=sender.address, from_name=sender.name,
                                     attachments=patch.attachments_add, provider=None, user_id=user.id,
                                     draft=True)
    params = await parameters_service.get(session)
    now = utcnow()
    prepared = message_service.prepare(body, message_service.SubmitContext(principal, params, now, "interactive"),
                                       sender, draft=True, kept_attachment_sizes=[a.size for a in kept])
    r = prepared.row
    scheduled: dict[str, Any] = {}
    if "send_at" in fields:
        scheduled["send_at"] = message_service.check_send_at("send_at", patch.send_at, now)
    res = await session.execute(
        update(M).where(M.c.id == message_id, M.c.status == "draft").values(
            **scheduled, sender=r["sender"], sender_name=r["sender_name"], to_addrs=r["to_addrs"],
            cc_addrs=r["cc_addrs"],
            bcc_addrs=r["bcc_addrs"], reply_to=r["reply_to"], subject=r["subject"], body_text=r["body_text"],
            body_html=r["body_html"], size_bytes=r["size_bytes"],
            attachment_count=len(kept) + len(prepared.attachments), updated_at=now))
    if not rowcount(res):
        raise Conflict(f"Message {message_id} was sent or cancelled meanwhile; it can no longer be edited")
    if removed:
        await session.execute(delete(ATT).where(ATT.c.message_id == message_id, ATT.c.id.in_(removed)))
    if prepared.attachments:
        start = max((a.position for a in current), default=-1) + 1
        await session.execute(insert(ATT), [
            dict(a, message_id=message_id, position=start + k) for k, a in enumerate(prepared.attachments)])
    return await message_service.get(session, principal, message_id)


def handed_to_server(row: repository.MessageRow) -> bool:
    """Whether a mail server may already have this message: sent through a provider, accepted for some
    recipients, or possibly accepted (a loss after the final "." or a Graph 504)."""
    accepted = any(v.get("state") == "accepted" for v in (row.recipient_state or {}).values())
    return accepted or row.uncertain or (row.sent_at is not None and row.sent_via != "email_app")


async def _eml_file(session: AsyncSession, row: repository.MessageRow) -> EmlFile:
    msg = outgoing_from_row(row, await repository.attachments(session, row.id))
    if handed_to_server(row):
        # The .eml opens as unsent: if the user sends it, it is another message, and two messages must not
        # share one Message-ID (the delivered copy's id is in the message's record).
        msg.message_id = make_message_id(row.message_id_header.rsplit("@", 1)[-1].rstrip(">"))
    return EmlFile(build_eml(msg), eml_filename(row.subject))


async def send_draft(
    session: AsyncSession, principal: Principal, message_id: int, req: SendRequest
) -> SendOutcome:
    """Send a draft through the provider chosen (see `choice.decide_provider`); email_app hands it over."""
    row, user = await _draft(session, principal, message_id)
    if req.do_not_ask_again and req.provider is None:
        raise InvalidInput("do_not_ask_again: name the provider to use from now on",
                           errors=[{"field": "provider", "message": "required with do_not_ask_again"}])
    if not (row.to_addrs or row.cc_addrs or row.bcc_addrs):
        raise InvalidInput("to: the draft has no recipients; add at least one (PATCH /messages/{id}) before "
                           "sending",
                           errors=[{"field": "to", "message": "at least one recipient is required"}])
    provider = await choice.decide_provider(session, user, req.provider,
                                            do_not_ask_again=req.do_not_ask_again)
    now = utcnow()
    if provider == "email_app":
        if not await lifecycle.hand_to_user(session, message_id, now, row.sender):
            raise Conflict(f"Message {message_id} was sent or cancelled meanwhile")
        file = await _eml_file(session, row)
        return SendOutcome(await message_service.get(session, principal, message_id), file)
    # Outbox sends it now: a suppressed recipient is refused, naming the field (the email app is the user's).
    await suppressions.apply(session, [{"status": "queued", "to_addrs": row.to_addrs, "cc_addrs": row.cc_addrs,
                                        "bcc_addrs": row.bcc_addrs}], ["refuse"], [""])
    params = await parameters_service.get(session)
    due = row.send_at if row.send_at is not None and row.send_at > now else now  # scheduled: not before send_at
    if not await lifecycle.queue_draft(session, message_id, now, provider, parameters_service.expires_at(params, due),
                                       due_at=due):
        raise Conflict(f"Message {message_id} was sent or cancelled meanwhile")
    return SendOutcome(await message_service.get(session, principal, message_id))


async def eml(session: AsyncSession, principal: Principal, message_id: int) -> EmlFile:
    """Any message this key may see, as the .eml file the user's email app opens as unsent. Read-only: to
    record that the user sends it themselves, send the draft with provider email_app."""
    return await _eml_file(session, await _row(session, principal, message_id))

