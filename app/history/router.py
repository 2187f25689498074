from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from app.core.deps import TxDep
from app.core.errors import NotFound, problem_responses
from app.core.pagination import Cursor, DbId, Limit, Offset, Page
from app.messages import service as message_service
from app.messages.lifecycle import HISTORY_STATUSES
from app.messages.repository import MessageFilter
from app.messages.schemas import AnyProvider, Kind, MessagePublic, MessageSummary
from app.users.auth import AdminDep

router = APIRouter(prefix="/history", tags=["history"], responses=problem_responses(401, 403, 422))


@router.get("", response_model=Page[MessageSummary], summary="Email history")
async def list_history(
    tx: TxDep, principal: AdminDep,
    status: Annotated[list[Literal["sent", "failed", "expired"]] | None, Query()] = None,
    sender: str | None = None, provider: AnyProvider | None = None,
    kind: Kind | None = None,
    since: AwareDatetime | None = None, until: AwareDatetime | None = None,  # with a zone: 2026-01-01T00:00Z
    limit: Limit = 50, offset: Offset = 0, cursor: Cursor = None,
    workflow_event_id: Annotated[str | None, Query(max_length=200, description="Notifications of one workflow "
                                                                                "event")] = None,
) -> Page[MessageSummary]:
    """Every sent, failed and expired email, interactive and batch, newest first. Failed ones carry the error,
    its explanation and the fix; kept for the history retention period. Filter by time finished."""
    f = MessageFilter(statuses=list(status or HISTORY_STATUSES), sender=sender, provider=provider, kind=kind,
                      since=since, until=until, workflow_event_id=workflow_event_id, time_column="finished_at")
    return await message_service.list_messages(tx.session, principal, f, limit=limit, offset=offset,
                                               cursor=cursor)


@router.get("/{message_id}", response_model=MessagePublic, responses=problem_responses(404),
            summary="One history entry with its failure details")
async def get_history(message_id: DbId, tx: TxDep, principal: AdminDep) -> MessagePublic:
    msg = await message_service.get(tx.session, principal, message_id)
    if msg.status not in HISTORY_STATUSES:
        raise NotFound(f"Message {message_id} is {msg.status}, not in history yet; see GET /messages/{message_id}")
    return msg
