from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from pydantic import AwareDatetime

from app.core.deps import TxDep
from app.core.errors import problem_responses
from app.core.pagination import Cursor, DbId, Limit, Offset, Page
from app.messages import drafts as draft_service
from app.messages import jobs
from app.messages import resend as resend_service
from app.messages import service as message_service
from app.messages.lifecycle import Status
from app.messages.outgoing import content_disposition
from app.messages.repository import MessageFilter
from app.messages.schemas import (
    AnyProvider,
    BulkAccepted,
    BulkIn,
    ChooseProviderProblem,
    DraftUpdate,
    Kind,
    MessageAccepted,
    MessageIn,
    MessagePublic,
    MessageSummary,
    ResendRequest,
    SendRequest,
)
from app.users.auth import AnyKeyDep, ServiceOrAdminDep

router = APIRouter(prefix="/messages", tags=["messages"], responses=problem_responses(401, 403, 422))

MessageId = DbId



@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=MessageAccepted,
             responses={**problem_responses(413), 409: {"model": ChooseProviderProblem, "description": (
                 "choose-provider / provider-unavailable (interactive mail: ask the user how to send), "
                 "email-app-needs-draft, user-disabled, or an Idempotency-Key in use")}},
             summary="Submit a message")
async def submit_message(
    body: MessageIn, request: Request, tx: TxDep, principal: AnyKeyDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key",
                                                  description="Retry-safe submission: the same key returns the "
                                                              "first result")] = None,
) -> MessageAccepted:
    """202 means the message is stored; the worker sends it. Follow it with GET /messages/{id}.

    On behalf of a user (a user key, or `user_id` with a service or admin key) the message is interactive:
    its From follows the user's sender email / Email, and it goes out through the provider named here or the
    user's email provider option. With `draft: true` it is stored as a draft for the send email dialog
    instead: edit it with PATCH /messages/{id}, send it with POST /messages/{id}/send."""
    accepted = (await message_service.submit(tx.session, principal, [body], idempotency_key,
                                             batcher=request.app.state.ingest))[0]
    if accepted.status == "queued":
        jobs.wake_for(tx, [accepted.id], high=accepted.priority == "high")
    return accepted


@router.post("/bulk", status_code=status.HTTP_202_ACCEPTED, response_model=BulkAccepted,
             responses=problem_responses(413), summary="Submit many messages in one request")
async def submit_bulk(body: BulkIn, request: Request, tx: TxDep, principal: ServiceOrAdminDep) -> BulkAccepted:
    """All or nothing: one invalid message refuses the whole request, naming the field (messages[i].to[j]).
    At most `OUTBOX_MAX_BULK` messages (default 1000) per request: more is refused with 422 naming `messages`."""
    accepted = await message_service.submit(tx.session, principal, body.messages, None,
                                            batcher=request.app.state.ingest,
                                            max_messages=request.app.state.settings.max_bulk_messages)
    queued = [a for a in accepted if a.status == "queued"]
    jobs.wake_for(tx, [a.id for a in queued], high=any(a.priority == "high" for a in queued))
    return BulkAccepted(accepted=accepted)


@router.get("", response_model=Page[MessageSummary], summary="Batch email sending status")
async def list_messages(
    tx: TxDep, principal: AnyKeyDep,
    status_: Annotated[list[Status] | None, Query(alias="status")] = None,
    sender: str | None = None, provider: AnyProvider | None = None, kind: Kind | None = None,
    since: AwareDatetime | None = None, until: AwareDatetime | None = None,  # with a zone: 2026-01-01T00:00Z
    limit: Limit = 50, offset: Offset = 0, cursor: Cursor = None,
    workflow_event_id: Annotated[str | None, Query(max_length=200, description="Notifications of one workflow "
                                                                                "event")] = None,
) -> Page[MessageSummary]:
    """Every message this key may see, newest first, with status, attempts and next attempt. Page with
    `cursor` (each page's `next_cursor`): every page costs the same; `offset` still works."""
    f = MessageFilter(statuses=list(status_) if status_ else None, sender=sender, provider=provider, kind=kind,
                      since=since, until=until, workflow_event_id=workflow_event_id)
    return await message_service.list_messages(tx.session, principal, f, limit=limit, offset=offset,
                                               cursor=cursor)


@router.get("/{message_id}", response_model=MessagePublic, responses=problem_responses(404),
            summary="One message with every attempt")
async def get_message(message_id: MessageId, tx: TxDep, principal: AnyKeyDep) -> MessagePublic:
    return await message_service.get(tx.session, principal, message_id)


@router.post("/{message_id}/cancel", response_model=MessagePublic, responses=problem_responses(404, 409),
             summary="Cancel an unsent message")
async def cancel_message(message_id: MessageId, tx: TxDep, principal: AnyKeyDep) -> MessagePublic:
    return await message_service.cancel(tx.session, principal, message_id)


@router.post("/{message_id}/retry", response_model=MessagePublic, responses=problem_responses(404, 409),
             summary="Send a failed or expired message again")
async def retry_message(message_id: MessageId, tx: TxDep, principal: AnyKeyDep) -> MessagePublic:
    result = await message_service.retry(tx.session, principal, message_id)
    jobs.wake_for(tx, [message_id], high=result.priority == "high")
    return result


@router.post("/{message_id}/resend", status_code=status.HTTP_202_ACCEPTED, response_model=MessagePublic,
             responses={**problem_responses(404, 413), 409: {"model": ChooseProviderProblem, "description": (
                 "the message is not finished yet; provider-unavailable (interactive mail whose provider can no "
                 "longer be used); user-disabled")}},
             summary="Resend a finished message, or correct and resend it")
async def resend_message(
    message_id: MessageId, tx: TxDep, principal: AnyKeyDep,
    body: Annotated[ResendRequest | None, Body(openapi_examples={
        "resend": {"summary": "Resend unchanged", "value": {}},
        "alternate recipient": {"summary": "Mailbox full: use an alternate address for the recipient",
                                "value": {"to": ["customer.alternate@example.com"]}},
        "sender": {"summary": "Send from another address (Send As)", "value": {"from": "billing@contoso.com"}},
    })] = None,
) -> MessagePublic:
    """A new message, linked to the original (`resent_from`; the original lists it in `resent_as`), with its
    own id, Message-ID and history; the original keeps its record. Any finished message (sent, failed,
    expired, cancelled). The fields given correct it first (recipients, sender, subject, bodies), validated
    exactly as a submission. Administrators may resend any message; users and services their own. Mail once
    handed to the user as an .eml file comes back as a draft for the send email dialog."""
    result = await resend_service.resend(tx.session, principal, message_id, body)
    if result.status == "queued":
        jobs.wake_for(tx, [result.id], high=result.priority == "high")
    return result


EML_RESPONSE: dict[int | str, dict[str, Any]] = {200: {
    "description": "The message as an RFC 5322 file (`X-Unsent: 1`: Outlook opens it as an unsent message, "
                   "ready to send), with every attachment",
    "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}, "example": (
        "X-Unsent: 1\r\nFrom: Anna Berg <anna.berg@contoso.com>\r\nTo: supplier@example.com\r\n"
        "Subject: Invoice INV-1042\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Please find the invoice attached.\r\n")}},
    "headers": {"Content-Disposition": {
        "description": 'attachment; filename="Subject.eml" (and filename* for non-ASCII names, RFC 6266)',
        "schema": {"type": "string"}}},
}}


def _eml_response(file: draft_service.EmlFile) -> Response:
    return Response(file.content, media_type="message/rfc822",
                    headers={"Content-Disposition": content_disposition(file.filename)})


@router.patch("/{message_id}", response_model=MessagePublic, responses=problem_responses(404, 409, 413),
              summary="Edit a draft (the send email dialog)")
async def update_draft(
    message_id: MessageId, tx: TxDep, principal: AnyKeyDep,
    body: Annotated[DraftUpdate, Body(openapi_examples={
        "recipients and text": {"summary": "Change recipients, subject and body", "value": {
            "to": ["customer@example.com"], "cc": ["accounts@example.com"], "subject": "Statement for March",
            "body_text": "Please find your statement attached."}},
        "attachments": {"summary": "Remove attachment 17, add a new one", "value": {
            "attachments_remove": [17], "attachments_add": [{
                "filename": "statement-march.txt", "content_type": "text/plain",
                "content_base64": "U3RhdGVtZW50"}]}},
        "from": {"summary": "Send from the user's other allowed address",
                 "value": {"from": "sales@contoso.com"}},
    })],
) -> MessagePublic:
    """Only the fields sent change; to/cc/bcc/reply_to are replaced whole; `attachments_remove` (attachment
    ids from GET /messages/{id}) is applied before `attachments_add`. Everything is validated as on
    submission; a refused change changes nothing. 409 once the message is no longer a draft."""
    return await draft_service.update_draft(tx.session, principal, message_id, body)


@router.post("/{message_id}/send", status_code=status.HTTP_202_ACCEPTED, response_model=MessagePublic,
             responses={**problem_responses(404, 422), **EML_RESPONSE,
                        409: {"model": ChooseProviderProblem,
                              "description": "choose-provider: the user's email provider option is blank and "
                                             "no provider was named: show the dialog with `choices`; "
                                             "provider-unavailable: that provider cannot be used now; or the "
                                             "message is not a draft"}},
             summary="Send a draft (How would you like to send email)")
async def send_draft(
    message_id: MessageId, tx: TxDep, principal: AnyKeyDep, body: Annotated[SendRequest | None, Body()] = None,
) -> Any:
    """Sends through `provider`, else the user's email provider option. `do_not_ask_again` stores the choice
    as the option; otherwise it is proposed next time. smtp / graph / exchange: 202 and the message, queued
    for the worker. email_app: 200 with the .eml file; the message is then `sent` with `sent_via` email_app
    and `handed_to_user_at` set (history shows it)."""
    outcome = await draft_service.send_draft(tx.session, principal, message_id, body or SendRequest())
    if outcome.eml is not None:
        return _eml_response(outcome.eml)
    jobs.wake_for(tx, [message_id], high=outcome.message.priority == "high")
    return outcome.message


@router.get("/{message_id}/eml", response_class=Response,
            responses={**problem_responses(404), **EML_RESPONSE},
            summary="Use an email app: the message as an .eml file")
async def get_eml(message_id: MessageId, tx: TxDep, principal: AnyKeyDep) -> Response:
    """Read-only: any message this key may see. To record that the user sends a draft from their own email
    app, send it with provider email_app instead."""
    return _eml_response(await draft_service.eml(tx.session, principal, message_id))
