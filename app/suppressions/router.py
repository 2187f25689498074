from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.core.deps import TxDep
from app.core.errors import problem_responses
from app.core.pagination import DbId, Limit, Offset, Page
from app.suppressions import service
from app.suppressions.schemas import Reason, SuppressionIn, SuppressionPublic
from app.users.auth import AdminDep

router = APIRouter(prefix="/suppressions", tags=["suppressions"], responses=problem_responses(401, 403, 422))


@router.get("", response_model=Page[SuppressionPublic], summary="The suppression list")
async def list_suppressions(
    tx: TxDep, _admin: AdminDep,
    address: Annotated[str | None, Query(max_length=320, description="Entries whose address contains this")] = None,
    reason: Reason | None = None, limit: Limit = 50, offset: Offset = 0,
) -> Page[SuppressionPublic]:
    """Newest first, with the reason and the message that caused each entry."""
    return await service.list_entries(tx.session, address, reason, limit, offset)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SuppressionPublic,
             responses=problem_responses(409), summary="Suppress an address")
async def add_suppression(body: SuppressionIn, tx: TxDep, _admin: AdminDep) -> SuppressionPublic:
    return await service.create(tx.session, body)


@router.get("/{suppression_id}", response_model=SuppressionPublic, responses=problem_responses(404),
            summary="One suppression entry")
async def get_suppression(suppression_id: DbId, tx: TxDep, _admin: AdminDep) -> SuppressionPublic:
    return await service.get(tx.session, suppression_id)


@router.delete("/{suppression_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses=problem_responses(404), summary="Send to an address again")
async def remove_suppression(suppression_id: DbId, tx: TxDep, _admin: AdminDep) -> Response:
    await service.remove(tx.session, suppression_id)
    return Response(status_code=204)
