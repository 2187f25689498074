from __future__ import annotations

from fastapi import APIRouter

from app.core.deps import TxDep
from app.core.errors import problem_responses
from app.messages import jobs
from app.parameters import service as parameters_service
from app.parameters.schemas import ParametersPublic, ParametersUpdate
from app.users.auth import AdminDep

router = APIRouter(prefix="/parameters", tags=["parameters"], responses=problem_responses(401, 403, 422))


@router.get("", response_model=ParametersPublic, summary="Read the email parameters")
async def get_parameters(tx: TxDep, _: AdminDep) -> ParametersPublic:
    return parameters_service.to_public(await parameters_service.get(tx.session))


@router.put("", response_model=ParametersPublic, summary="Change the email parameters")
async def put_parameters(body: ParametersUpdate, tx: TxDep, _: AdminDep) -> ParametersPublic:
    """Turning batch processing back on releases the waiting messages at once."""
    row = await parameters_service.update(tx.session, body)
    if row.batch_processing_enabled:
        jobs.wake(tx, "params")
    return parameters_service.to_public(row)
