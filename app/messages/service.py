"""Submitting, reading and steering messages. Status changes go through `lifecycle`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.bounces import complaints
from app.bounces import service as bounces
from app.core.clock import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound, TooLarge
from app.core.pagination import Page, decode_cursor, encode_cursor
from app.core.security import Principal
from app.core.ttl_cache import TTLCache
from app.mail.build import RESERVED_HEADERS, make_message_id
from app.mail.validate import (
    MailInputError,
    check_content_type,
    check_header_text,
    normalize_addresses,
    safe_filename,
)
from app.messages import choice, lifecycle, repository
from app.messages.ingest import IngestBatcher, insert_prepared
from app.messages.schemas import (
    AttachmentPublic,
    AttemptPublic,
    BounceInfo,
    ComplaintInfo,
    MessageAccepted,
    MessageIn,
    MessagePublic,
    MessageSummary,
    RecipientStatus,
)
from app.messages.senders import EmailAppNeedsDraft, ResolvedSender, SenderRules, acting_user, resolve_sender
from app.models import ATTACHMENTS, MESSAGES, Parameters, User
from app.parameters import service as parameters_service
from app.settings import get_settings
from app.suppressions import service as suppressions

M = MESSAGES
ATT = ATTACHMENTS
HEADER_NAME = re.compile(r"^X-[A-Za-z0-9][A-Za-z0-9-]{0,75}$")
SEND_AT_PAST_TOLERANCE = timedelta(minutes=1)  # clocks differ: a send_at this far in the past means "now"
SEND_AT_HORIZON = timedelta(days=366)


def check_send_at(field: str, send_at: datetime | None, now: datetime) -> datetime | None:
    """A scheduled time, or None for "at once" (also for a send_at at most a minute in the past). Further in the
    past, or more than 366 days ahead, is a 422 naming the field."""
    if send_at is None:
        return None
    if send_at < now - SEND_AT_PAST_TOLERANCE:
        raise InvalidInput.for_field(field, f"is in the past ({send_at.isoformat()}, now is {now.isoformat()}); "
                                            "leave it out to send at once")
    if send_at > now + SEND_AT_HORIZON:
        raise InvalidInput.for_field(field, "is more than 366 days ahead")
    return send_at.astimezone(UTC) if send_at > now else None


@dataclass(frozen=True, slots=True)
class SubmitContext:
    """What every message of one request shares: who submits it, the parameters in force, the time, and the
    kind of mail (batch, workflow, interactive)."""

    principal: Principal
    params: Parameters
    now: datetime
    kind: str = "batch"
    bulk: bool = False  # POST /messages/bulk: its batch mail defaults to the low lane


class PreparedMessage:
    """A validated submission: the row to insert and its decoded attachments."""

    __slots__ = ("row", "attachments")

    def __init__(self, row: dict[str, Any], attachments: list[dict[str, Any]]) -> None:
        self.row = row
        self.attachments = attachments


def _estimated_size(
    body: MessageIn, attachments: list[dict[str, Any]], kept_sizes: Sequence[int] = ()
) -> int:
    """MIME size as sent: base64 grows attachments by 4/3 plus line breaks; bodies may be encoded too."""
    sizes = [len(a["content"]) for a in attachments] + list(kept_sizes)
    att = sum((n + 2) // 3 * 4 * 78 // 76 + 300 for n in sizes)
    text = len((body.body_text or "").encode()) * 4 // 3 + len((body.body_html or "").encode()) * 4 // 3
    return att + text + 2000


def prepare(
    body: MessageIn,
    ctx: SubmitContext,
    sender: ResolvedSender | SenderRules,
    *,
    field_prefix: str = "",
    draft: bool = False,
    kept_attachment_sizes: Sequence[int] = (),
) -> PreparedMessage:
    """Validate everything before anything is stored. Raises InvalidInput / TooLarge / SenderNotAllowed.

    `sender` is the From already decided by `senders.resolve_sender`, or the rules to decide it with (applied
    here, after the content is validated). A draft may have no recipients yet (they are needed to send it);
    `kept_attachment_sizes` are the sizes of a draft's attachments that stay, for the size limit."""
    settings = get_settings()
    params, now, kind = ctx.params, ctx.now, ctx.kind
    p = field_prefix
    # A MailInputError names the field; the API answers it as 422 invalid-input.
    to = normalize_addresses(f"{p}to", body.to, max_count=settings.max_recipients)
    cc = normalize_addresses(f"{p}cc", body.cc, max_count=settings.max_recipients)
    bcc = normalize_addresses(f"{p}bcc", body.bcc, max_count=settings.max_recipients)
    reply_to_in = [body.reply_to] if isinstance(body.reply_to, str) else (body.reply_to or [])
    reply_to = normalize_addresses(f"{p}reply_to", reply_to_in, max_count=10)
    subject = check_header_text(f"{p}subject", body.subject)
    headers: dict[str, str] = {}
    for name, value in body.headers.items():
        if not HEADER_NAME.match(name):
            raise MailInputError(f"{p}headers", f"{name!r} is not allowed: only X- headers of letters, "
                                                "digits and dashes may be added")
        if name.lower() in RESERVED_HEADERS:  # what the builder refuses is refused here, before the 202
            raise MailInputError(f"{p}headers.{name}", "is set by Outbox and cannot be given as a custom header")
        headers[name] = check_header_text(f"{p}headers.{name}", value)
    attachments = []
    for i, a in enumerate(body.attachments):
        fname = safe_filename(f"{p}attachments[{i}].filename", a.filename)
        ctype = check_content_type(f"{p}attachments[{i}].content_type", a.content_type)
        try:
            content = base64.b64decode(a.content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MailInputError(f"{p}attachments[{i}].content_base64", "is not valid base64") from exc
        attachments.append({"position": i, "filename": fname, "content_type": ctype, "size": len(content),
                            "content": content})
    if len(to) + len(cc) + len(bcc) == 0 and not draft:
        raise InvalidInput(f"{p}to: the message has no recipients; give at least one address in to, cc or bcc",
                           errors=[{"field": f"{p}to", "message": "at least one recipient is required"}])
    if len(to) + len(cc) + len(bcc) > settings.max_recipients:
        raise InvalidInput(f"{p}to: more than {settings.max_recipients} recipients in one message",
                           errors=[{"field": f"{p}to", "message": "too many recipients"}])
    if any("\x00" in b for b in (body.body_text, body.body_html) if b is not None):
        raise InvalidInput(f"{p}body: NUL characters are not allowed in a body")
    size = _estimated_size(body, attachments, kept_attachment_sizes)
    limit = params.attachment_size_limit_mb * 1024 * 1024
    if size > limit:
        raise TooLarge(
            f"The email would be about {size / 1048576:.1f} MB once encoded; the attachment size limit (the "
            f"maximum size of one email) is {params.attachment_size_limit_mb} MB.",
        )
    send_at = check_send_at(f"{p}send_at", body.send_at, now)
    priority = body.priority or lifecycle.default_priority(kind, bulk=ctx.bulk)
    if isinstance(sender, SenderRules):
        sender = resolve_sender(body.from_, body.from_name, sender, field=f"{p}from")
    row = {
        # A From taken from a provider's batch account pins that provider (senders.py, rule 3).
        "status": lifecycle.initial_status(draft=draft), "kind": kind, "provider": body.provider or sender.provider,
        "user_id": ctx.principal.user_id, "api_key_id": ctx.principal.key_id, "sender": sender.address,
        "sender_name": sender.name, "to_addrs": to,
        "cc_addrs": cc, "bcc_addrs": bcc, "reply_to": reply_to, "subject": subject, "body_text": body.body_text,
        "body_html": body.body_html, "headers": headers,
        "message_id_header": make_message_id(settings.message_id_domain), "idempotency_key": None,
        "request_hash": None, "size_bytes": size, "attachment_count": len(attachments), "attempts": 0,
        "deferrals": 0, "uncertain": False, "next_attempt_at": None if draft else send_at or now,
        "created_at": now, "updated_at": now, "priority": lifecycle.PRIORITIES[priority], "send_at": send_at,
        # The expiration days count from when it may first be sent.
        "expires_at": parameters_service.expires_at(params, send_at or now),
    }
    return PreparedMessage(row, attachments)


_senders: TTLCache[str, tuple[str | None, str | None]] = TTLCache()


async def default_sender(session: AsyncSession, provider: str) -> tuple[str | None, str | None]:
    """The batch account of a provider: the From of batch email when no other sender applies."""
    from app.providers import service as providers_service

    hit = _senders.get(provider)
    if hit is not None:
        return hit
    row = await providers_service.get_row(session, provider)
    if row is None:
        return None, None
    c = row.config
    found = (c.get("from_address") or c.get("batch_account"), c.get("from_name"))
    _senders.put(provider, found)
    return found


def request_hash(body: MessageIn) -> str:
    # `suppressed` at its default is left out: requests stored before the field existed hash as before.
    # So are `priority` and `send_at` when not given.
    exclude = {"suppressed"} if body.suppressed == "refuse" else set()
    exclude |= {f for f in ("priority", "send_at") if getattr(body, f) is None}
    dump = body.model_dump(mode="json", by_alias=True, exclude=exclude or None)
    return hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()


async def submit(
    session: AsyncSession, principal: Principal, bodies: list[MessageIn], idempotency_key: str | None,
    *, kind: str = "batch", batcher: IngestBatcher | None = None, max_messages: int | None = None,
) -> list[MessageAccepted]:
    """Validate and store messages. With `batcher`, the insert joins other requests' in one group commit
    (committed before this returns); without, it is part of the caller's transaction. More than
    `max_messages` (a bulk request's limit, OUTBOX_MAX_BULK) is refused, naming `messages`."""
    if max_messages is not None and len(bodies) > max_messages:
        raise InvalidInput.for_field("messages", f"{len(bodies)} messages in one request; at most {max_messages} "
                                                 "are accepted (OUTBOX_MAX_BULK): send the rest in further requests")
    now = utcnow()
    params = await parameters_service.cached(session)
    ctx = SubmitContext(principal, params, now, kind, bulk=max_messages is not None)
    senders: dict[str, tuple[str | None, str | None]] = {}
    if idempotency_key is not None:
        if len(idempotency_key) > 255 or not idempotency_key.isprintable():
            raise InvalidInput("Idempotency-Key: at most 255 printable characters")
        if len(bodies) != 1:
            raise InvalidInput("Idempotency-Key applies to single-message submissions; bulk submissions carry one "
                               "per message in a later version")
        digest = request_hash(bodies[0])
        found = await repository.by_idempotency(session, principal.key_id, idempotency_key)
        if found is not None:
            if found.request_hash != digest:
                raise InvalidInput("Idempotency-Key was already used with a different request body")
            return [MessageAccepted(id=found.id, status=found.status, message_id=found.message_id_header,
                                    priority=lifecycle.PRIORITY_NAMES.get(found.priority, "normal"))]
    prepared = []
    for i, body in enumerate(bodies):
        p = f"messages[{i}]." if len(bodies) > 1 else ""
        user = await acting_user(session, principal, body.user_id, field=f"{p}user_id")
        if user is not None:
            prepared.append(await _prepare_for_user(session, ctx, body, user, p))
            continue
        if body.draft:
            raise InvalidInput(f"{p}draft: a draft is created on behalf of a user: give user_id (or use a "
                               "user key)",
                               errors=[{"field": f"{p}user_id", "message": "required for a draft"}])
        if body.provider == "email_app":
            raise InvalidInput(f"{p}provider: email_app hands a message to a user's own mail app: create a "
                               "draft on behalf of a user, then send it with provider email_app",
                               errors=[{"field": f"{p}provider", "message": "needs a user's draft"}])
        provider = body.provider or params.batch_provider
        if provider not in senders:
            senders[provider] = await default_sender(session, provider)
        rules = SenderRules(kind=kind, caller_role=principal.role, batch_account=senders[provider],
                            batch_provider=provider)
        prepared.append(prepare(body, ctx, rules, field_prefix=p))
    dropped = await suppressions.apply(session, [p.row for p in prepared], [b.suppressed for b in bodies],
                                       [f"messages[{i}]." if len(bodies) > 1 else "" for i in range(len(bodies))])
    if idempotency_key is not None:
        prepared[0].row["idempotency_key"] = idempotency_key
        prepared[0].row["request_hash"] = request_hash(bodies[0])
    rows, attachments = [p.row for p in prepared], [p.attachments for p in prepared]
    try:
        if batcher is not None:
            ids = await batcher.insert(rows, attachments)
        else:
            ids = await insert_prepared(session, rows, attachments)
    except IntegrityError as exc:
        raise Conflict("A request with this Idempotency-Key is being processed; retry in a moment") from exc
    return [MessageAccepted(id=mid, status=p.row["status"], message_id=p.row["message_id_header"],
                            dropped_recipients=d, priority=lifecycle.PRIORITY_NAMES[p.row["priority"]])
            for mid, p, d in zip(ids, prepared, dropped, strict=True)]


async def _prepare_for_user(
    session: AsyncSession, ctx: SubmitContext, body: MessageIn, user: User, p: str
) -> PreparedMessage:
    """An interactive message on behalf of `user`: a draft for the send email dialog, or sent at once through
    the provider named on the message or the user's email provider option (409 `choose-provider` if
    neither)."""
    provider: str | None = None
    if body.draft:
        if body.provider is not None:
            raise InvalidInput(f"{p}provider: the provider of a draft is chosen when it is sent "
                               "(POST /messages/{id}/send)",
                               errors=[{"field": f"{p}provider", "message": "not allowed on a draft"}])
    else:
        if body.provider == "email_app":
            raise InvalidInput(f"{p}provider: email_app needs a draft: create it with draft: true, then send "
                               "it with provider email_app to get the .eml file",
                               errors=[{"field": f"{p}provider", "message": "needs a draft"}])
        provider = await choice.decide_provider(session, user, body.provider, remember=False)
        if provider == "email_app":
            raise EmailAppNeedsDraft(
                f"User {user.id} sends email through their own email app (email provider option email_app): "
                "create the message with draft: true, then send it (POST /messages/{id}/send) to get the "
                ".eml file.")
    rules = SenderRules(kind="interactive", caller_role=ctx.principal.role, user=user)
    sender = resolve_sender(body.from_, body.from_name, rules, field=f"{p}from")
    prepared = prepare(body, replace(ctx, kind="interactive"), sender, field_prefix=p, draft=body.draft)
    prepared.row["provider"] = provider
    prepared.row["user_id"] = user.id
    return prepared


def _summary(r: repository.MessageRow) -> dict[str, Any]:
    return {
        "id": r.id, "status": r.status, "kind": r.kind, "provider": r.provider, "sender": r.sender,
        "to": r.to_addrs, "subject": r.subject, "attempts": r.attempts, "deferrals": r.deferrals,
        "next_attempt_at": r.next_attempt_at if r.status in lifecycle.WAITING_STATUSES else None,
        "created_at": r.created_at, "sent_at": r.sent_at, "finished_at": r.finished_at,
        "error_type": r.last_error_type, "error": r.last_error, "fix": r.last_fix, "uncertain": r.uncertain,
        "user_id": r.user_id, "resent_from": r.resent_from,
        "priority": lifecycle.PRIORITY_NAMES.get(r.priority, "normal"), "send_at": r.send_at,
    }


async def get(session: AsyncSession, principal: Principal, message_id: int) -> MessagePublic:
    r = await repository.get(session, principal, message_id)
    if r is None:
        raise NotFound(f"No message {message_id} visible to this key")
    atts = await repository.attachment_list(session, message_id)
    attempts = await repository.attempts(session, message_id)
    return MessagePublic(
        **_summary(r), message_id=r.message_id_header, sender_name=r.sender_name, cc=r.cc_addrs, bcc=r.bcc_addrs,
        reply_to=r.reply_to, body_text=r.body_text, body_html=r.body_html, size_bytes=r.size_bytes,
        sent_via=r.sent_via, expires_at=r.expires_at, handed_to_user_at=r.handed_to_user_at,
        attachments=[AttachmentPublic(id=a.id, filename=a.filename, content_type=a.content_type, size=a.size)
                     for a in atts],
        attempt_log=[AttemptPublic.model_validate(a, from_attributes=True) for a in attempts],
        resent_as=await repository.resends(session, message_id),
        recipients=_recipients(r, await bounces.for_message(session, message_id),
                               await complaints.for_message(session, message_id)),
    )


def _recipients(r: repository.MessageRow, bounced: dict[str, BounceInfo] | None = None,
                complained: dict[str, ComplaintInfo] | None = None) -> list[RecipientStatus]:
    """Every recipient with its state. Until a server answers recipients apart (no per-recipient state), they
    share the message's fate: accepted once it is sent, failed once it failed or expired, else pending."""
    shared = "accepted" if r.status == "sent" else "failed" if r.status in ("failed", "expired") else "pending"
    out = []
    for where, addresses in (("to", r.to_addrs), ("cc", r.cc_addrs), ("bcc", r.bcc_addrs)):
        for a in addresses:
            s = r.recipient_state.get(a) or {}
            bounce = (bounced or {}).get(a)
            out.append(RecipientStatus(
                address=a, field=where, state="bounced" if bounce else s.get("state", shared),
                reply_code=s.get("code"), reply_text=s.get("text"),
                error_type=bounce.error_type if bounce else s.get("error_type"),
                explanation=bounce.explanation if bounce else s.get("explanation"),
                fix=bounce.fix if bounce else s.get("fix"), at=s.get("at"), bounce=bounce,
                complaint=(complained or {}).get(a)))
    return out


async def list_messages(session: AsyncSession, principal: Principal | None, f: repository.MessageFilter, *,
                        limit: int, offset: int, cursor: str | None = None) -> Page[MessageSummary]:
    before = decode_cursor(cursor) if cursor is not None else None
    found, total = await repository.page(session, principal, f, limit=limit, offset=offset, before_id=before)
    return Page[MessageSummary](items=[MessageSummary(**_summary(r)) for r in found], total=total, limit=limit,
                                offset=offset, next_cursor=encode_cursor(found[-1].id) if len(found) == limit
                                else None)


async def cancel(session: AsyncSession, principal: Principal, message_id: int) -> MessagePublic:
    await get(session, principal, message_id)  # visibility
    if not await lifecycle.cancel(session, message_id, utcnow()):
        raise Conflict("Only an unsent message (draft, queued, deferred, retrying or held) can be cancelled")
    return await get(session, principal, message_id)


async def retry(session: AsyncSession, principal: Principal, message_id: int) -> MessagePublic:
    row = await repository.get(session, principal, message_id)
    if row is None:
        raise NotFound(f"No message {message_id} visible to this key")
    params = await parameters_service.get(session)
    now = utcnow()
    if not await lifecycle.retry(session, message_id, now, parameters_service.expires_at(params, now),
                                 row.recipient_state):
        raise Conflict("Only a failed, expired or held message can be sent again")
    return await get(session, principal, message_id)
