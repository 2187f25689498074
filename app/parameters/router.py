from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from app.core.deps import TxDep
from app.core.errors import problem_responses
from app.core.merge_patch import MEDIA_TYPE as MERGE_PATCH
from app.messages import jobs
from app.models import Parameters
from app.parameters import service as parameters_service
from app.parameters.schemas import ParametersPatch, ParametersPublic, ParametersUpdate
from app.users.auth import AdminDep

router = APIRouter(prefix="/parameters", tags=["parameters"], responses=problem_responses(401, 403, 422))


@router.get("", response_model=ParametersPublic, summary="Read the email parameters")
async def get_parameters(tx: TxDep, _: AdminDep) -> ParametersPublic:
    """With `warnings` when something needs attention (a batch provider that is not configured)."""
    return await parameters_service.public(tx.session)


@router.put("", response_model=ParametersPublic, summary="Replace the email parameters (every field)")
async def put_parameters(body: ParametersUpdate, tx: TxDep, _: AdminDep) -> ParametersPublic:
    """The whole representation: a field left out is refused (422 naming it), never reset to a default; the
    read-only fields of GET may be sent back and are ignored. To change some fields only, use PATCH. Turning
    batch processing back on releases the waiting messages at once."""
    row = await parameters_service.update(tx.session, body)
    return await _saved(tx, row)


@router.patch("", response_model=ParametersPublic, summary="Change some email parameters (JSON merge patch)")
async def patch_parameters(body: Annotated[ParametersPatch, Body(media_type=MERGE_PATCH)], tx: TxDep,
                           _: AdminDep) -> ParametersPublic:
    """RFC 7396: the fields given replace the stored ones, the others keep their values. Send it as
    `application/merge-patch+json` (or `application/json`). Turning batch processing back on releases the
    waiting messages at once."""
    row = await parameters_service.patch(tx.session, body)
    return await _saved(tx, row)


async def _saved(tx: TxDep, row: Parameters) -> ParametersPublic:
    if row.batch_processing_enabled:
        jobs.wake(tx, "params")
    return await parameters_service.public(tx.session, row)
