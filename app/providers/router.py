from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from app.core.deps import AdminDep, TxDep
from app.core.errors import problem_responses
from app.delivery.classify import all_error_types
from app.messages.router import deliver_job_id
from app.models._base import utcnow
from app.providers import service as providers_service
from app.providers import tests as provider_tests
from app.providers.schemas import (
    ErrorType,
    ProviderSummary,
    SmtpSettingsPublic,
    SmtpSettingsUpdate,
    TestEmailAccepted,
    TestEmailRequest,
    VerifyResult,
)

router = APIRouter(prefix="/providers", tags=["providers"], responses=problem_responses(401, 403, 422))
ProviderPath = Annotated[str, Path(pattern="^(smtp|graph|exchange)$", description="smtp | graph | exchange")]


@router.get("", response_model=list[ProviderSummary], summary="Every provider, its state and its limit in force")
async def list_providers(tx: TxDep, _: AdminDep) -> list[ProviderSummary]:
    return await providers_service.summaries(tx.session)


@router.get("/errors", response_model=list[ErrorType], summary="Every failure Outbox recognises, with its fix")
async def list_error_types(_: AdminDep) -> list[ErrorType]:
    """The classification table behind failure details: each `error_type`, whether it is retried (transient),
    failed (permanent), throttled or held for an administrator, and the explanation and fix history shows."""
    return [ErrorType(**row) for row in all_error_types()]


@router.get("/smtp", response_model=SmtpSettingsPublic, summary="SMTP settings (the password is never returned)")
async def get_smtp(tx: TxDep, _: AdminDep) -> SmtpSettingsPublic:
    return providers_service.smtp_public(await providers_service.get_row(tx.session, "smtp"))


@router.put("/smtp", response_model=SmtpSettingsPublic, summary="Change the SMTP settings")
async def put_smtp(body: SmtpSettingsUpdate, tx: TxDep, _: AdminDep) -> SmtpSettingsPublic:
    """Saving releases messages held for this provider (for example after re-entering a password)."""
    row = await providers_service.put_smtp(tx.session, body)
    from app.messages import lifecycle

    if await lifecycle.release_held(tx.session, "smtp", utcnow()):
        tx.enqueue_after_commit("deliver", _job_id="deliver:released")
    return providers_service.smtp_public(row)


@router.post("/{provider_id}/verify", response_model=VerifyResult, responses=problem_responses(404),
             summary="Check connection and credentials without sending")
async def verify_provider(provider_id: ProviderPath, request: Request, tx: TxDep, _: AdminDep) -> VerifyResult:
    """Connects, negotiates TLS and signs in (SMTP), or gets a token and reaches the batch mailbox (Graph), and
    explains what is wrong when that fails. Nothing is sent."""
    return await provider_tests.verify(tx.session, provider_id, request.app.state.settings)


@router.post("/{provider_id}/test", status_code=status.HTTP_202_ACCEPTED, response_model=TestEmailAccepted,
             responses=problem_responses(404, 409), summary="Send a test email through this provider")
async def test_provider(provider_id: ProviderPath, body: TestEmailRequest, tx: TxDep,
                        principal: AdminDep) -> TestEmailAccepted:
    """Queues one test message through this provider and returns its id: follow it with GET /messages/{id}."""
    accepted = await provider_tests.send_test(tx.session, principal, provider_id, body)
    tx.enqueue_after_commit("deliver", _job_id=deliver_job_id(accepted.id))
    return accepted
