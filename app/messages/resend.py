"""Resend, and correct and resend, a finished message (reference article, "Review any errors on the Email
history page": "use an alternate address for the recipient … before you try again").

The original keeps its record. The resend is a new message with its own id, Message-ID, attempts and history,
linked to the original by `resent_from` (and listed in the original's `resent_as`). Corrections (recipients,
sender, subject, bodies) are merged into the original's content and validated by `service.prepare`, exactly
as a submission is; the attachments are copied. Who may resend: whoever may see the message (an administrator
any message, a user key its user's mail, a service key what it submitted), so owners resend their own.

The new message belongs to the original's owner (user and API key), keeps its kind, template, language and
workflow event, and goes out through the same provider: the batch provider for batch mail, the provider chosen
for interactive mail (checked again against what may be used now). Mail that was handed to the user as an .eml
file ("Use an email app") comes back as a draft for the send email dialog.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import Conflict, NotFound
from app.core.security import Principal
from app.mail.validate import check_header_text
from app.messages import choice, lifecycle, repository
from app.messages import service as message_service
from app.messages.ingest import insert_prepared
from app.messages.schemas import MessageIn, MessagePublic, ResendRequest
from app.messages.senders import ResolvedSender, SenderRules, acting_user, resolve_sender
from app.models import User
from app.parameters import service as parameters_service
from app.suppressions import service as suppressions

__all__ = ["resend"]

_CONTENT = ("to", "cc", "bcc", "reply_to", "subject", "body_text", "body_html")


def _merged(row: repository.MessageRow, changes: ResendRequest, fields: set[str]) -> dict[str, Any]:
    merged: dict[str, Any] = {"to": list(row.to_addrs), "cc": list(row.cc_addrs), "bcc": list(row.bcc_addrs),
                              "reply_to": list(row.reply_to), "subject": row.subject, "body_text": row.body_text,
                              "body_html": row.body_html, "headers": dict(row.headers or {})}
    for key in _CONTENT:
        if key in fields:
            value = getattr(changes, key)
            if value is None and key in ("to", "cc", "bcc", "reply_to"):
                value = []
            merged[key] = "" if value is None and key == "subject" else value
    return merged


async def resend(
    session: AsyncSession, principal: Principal, message_id: int, changes: ResendRequest | None
) -> MessagePublic:
    """Create the new message (flushes only); the caller wakes the worker when it is queued."""
    row = await repository.get(session, principal, message_id)
    if row is None:
        raise NotFound(f"No message {message_id} visible to this key")
    if row.status not in lifecycle.FINAL_STATUSES:
        raise Conflict(f"Message {message_id} is {row.status}: only a finished message (sent, failed, expired or "
                       "cancelled) can be resent. A held message is sent again by POST /messages/{id}/retry "
                       "(or once its provider is fixed); a waiting one is still being sent.")
    changes = changes or ResendRequest()
    fields = set(changes.model_fields_set)
    user: User | None = None
    if row.kind == "interactive" and row.user_id is not None:
        user = await acting_user(session, principal, row.user_id)
    handed_over = row.provider == "email_app" or row.sent_via == "email_app"
    if handed_over and user is None:
        raise Conflict(f"Message {message_id} was handed to a user as an .eml file, and that user no longer "
                       "exists: there is nobody to hand it to again")
    provider = None if handed_over else row.provider
    if user is not None and provider is not None:
        provider = await choice.decide_provider(session, user, provider, remember=False)
    if "from_" in fields:
        batch_account: tuple[str | None, str | None] = (None, None)
        batch_provider: str | None = None
        if user is None:
            params = await parameters_service.cached(session)
            batch_provider = provider or params.batch_provider
            batch_account = await message_service.default_sender(session, batch_provider)
        name = changes.from_name if "from_name" in fields else None
        kind = "interactive" if user is not None else row.kind
        sender = resolve_sender(changes.from_, name, SenderRules(kind=kind, caller_role=principal.role, user=user,
                                                                 batch_account=batch_account,
                                                                 batch_provider=batch_provider))
    else:
        name = row.sender_name
        if "from_name" in fields:
            name = check_header_text("from_name", changes.from_name) if changes.from_name else None
        sender = ResolvedSender(row.sender, name, "unchanged")
    originals = await repository.attachments(session, message_id)
    body = MessageIn.model_construct(**_merged(row, changes, fields), from_=sender.address, from_name=sender.name,
                                     attachments=[], provider=None, user_id=row.user_id, draft=handed_over)
    params = await parameters_service.get(session)
    now = utcnow()
    prepared = message_service.prepare(body, message_service.SubmitContext(principal, params, now, row.kind),
                                       sender, draft=handed_over,
                                       kept_attachment_sizes=[len(a.content) for a in originals])
    new = prepared.row
    # The batch account as From pins its provider (senders.py, rule 3), as on submission.
    new.update(provider=provider or sender.provider, user_id=row.user_id, api_key_id=row.api_key_id,
               resent_from=message_id, priority=row.priority,
               workflow_event_id=row.workflow_event_id, template_id=row.template_id, language=row.language,
               attachment_count=len(originals))
    attachments = [{"position": i, "filename": a.filename, "content_type": a.content_type,
                    "size": len(a.content), "content": a.content} for i, a in enumerate(originals)]
    await suppressions.apply(session, [new], ["refuse"], [""])  # a suppressed recipient: 422 naming the field
    [new_id] = await insert_prepared(session, [new], [attachments])
    return await message_service.get(session, principal, new_id)
