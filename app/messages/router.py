from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, status

from app.core.deps import TxDep, require
from app.core.errors import problem_responses
from app.core.security import Principal
from app.messages import service as message_service
from app.messages.schemas import BulkAccepted, BulkIn, MessageAccepted, MessageIn, MessagePublic, MessageSummary, Page, Status

router = APIRouter(prefix="/messages", tags=["messages"], responses=problem_responses(401, 403, 422))

Sender = Annotated[Principal, require("service", "admin")]
Reader = Annotated[Principal, require("service", "admin", "user")]


def deliver_job_id(message_id: int) -> str:
    # A handful of drain slots: a running drain job picks up new rows, so one job per message is not needed.
    from app.settings import get_settings

    return f"deliver:{message_id % max(1, get_settings().drain_slots)}"


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=MessageAccepted,
             responses=problem_responses(409, 413), summary="Submit a message")
async def submit_message(
    body: MessageIn, tx: TxDep, principal: Sender,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key",
                                                  description="Retry-safe submission: the same key returns the "
                                                              "first result")] = None,
) -> MessageAccepted:
    """202 means the message is stored; the worker sends it. Follow it with GET /messages/{id}."""
    accepted = (await message_service.submit(tx.session, principal, [body], idempotency_key))[0]
    tx.enqueue_after_commit("deliver", _job_id=deliver_job_id(accepted.id))
    return accepted


@router.post("/bulk", status_code=status.HTTP_202_ACCEPTED, response_model=BulkAccepted,
             responses=problem_responses(413), summary="Submit many messages in one request")
async def submit_bulk(body: BulkIn, tx: TxDep, principal: Sender) -> BulkAccepted:
    """All or nothing: one invalid message refuses the whole request, naming the field (messages[i].to[j])."""
    accepted = await message_service.submit(tx.session, principal, body.messages, None)
    for slot in sorted({deliver_job_id(a.id) for a in accepted}):
        tx.enqueue_after_commit("deliver", _job_id=slot)
    return BulkAccepted(accepted=accepted)


@router.get("", response_model=Page[MessageSummary], summary="Batch email sending status")
async def list_messages(
    tx: TxDep, principal: Reader,
    status_: Annotated[list[Status] | None, Query(alias="status")] = None,
    sender: str | None = None, provider: str | None = None, kind: str | None = None,
    since: datetime | None = None, until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0)] = 0,
    workflow_event_id: Annotated[str | None, Query(max_length=200, description="Notifications of one workflow "
                                                                                "event")] = None,
) -> Page[MessageSummary]:
    """Every message this key may see, newest first, with status, attempts and next attempt."""
    return await message_service.list_messages(
        tx.session, principal, statuses=list(status_) if status_ else None, sender=sender, provider=provider,
        kind=kind, since=since, until=until, limit=limit, offset=offset, workflow_event_id=workflow_event_id)


@router.get("/{message_id}", response_model=MessagePublic, responses=problem_responses(404),
            summary="One message with every attempt")
async def get_message(message_id: int, tx: TxDep, principal: Reader) -> MessagePublic:
    return await message_service.get(tx.session, principal, message_id)


@router.post("/{message_id}/cancel", response_model=MessagePublic, responses=problem_responses(404, 409),
             summary="Cancel an unsent message")
async def cancel_message(message_id: int, tx: TxDep, principal: Reader) -> MessagePublic:
    return await message_service.cancel(tx.session, principal, message_id)


@router.post("/{message_id}/retry", response_model=MessagePublic, responses=problem_responses(404, 409),
             summary="Send a failed or expired message again")
async def retry_message(message_id: int, tx: TxDep, principal: Reader) -> MessagePublic:
    result = await message_service.retry(tx.session, principal, message_id)
    tx.enqueue_after_commit("deliver", _job_id=deliver_job_id(message_id))
    return result
