from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query, status

from app.core.deps import SettingsDep, Tx, TxDep
from app.core.errors import problem_responses
from app.core.merge_patch import MEDIA_TYPE as MERGE_PATCH
from app.delivery.classify import all_error_types
from app.messages import jobs
from app.providers import senders as provider_senders
from app.providers import service as providers_service
from app.providers import verify as provider_verify
from app.providers.schemas import (
    ErrorType,
    ExchangeSettingsPatch,
    ExchangeSettingsPublic,
    ExchangeSettingsUpdate,
    GraphSettingsPatch,
    GraphSettingsPublic,
    GraphSettingsUpdate,
    ProviderSummary,
    SendersReport,
    SmtpSettingsPatch,
    SmtpSettingsPublic,
    SmtpSettingsUpdate,
    TestEmailAccepted,
    TestEmailRequest,
    VerifyRequest,
    VerifyResult,
)
from app.users.auth import AdminDep

router = APIRouter(prefix="/providers", tags=["providers"], responses=problem_responses(401, 403, 422))
ProviderPath = Annotated[Literal["smtp", "graph", "exchange"], Path(description="smtp | graph | exchange")]


@router.get("", response_model=list[ProviderSummary], summary="Every provider, its state and its limit in force")
async def list_providers(tx: TxDep, settings: SettingsDep, _: AdminDep) -> list[ProviderSummary]:
    return await providers_service.summaries(tx.session, settings)


@router.get("/errors", response_model=list[ErrorType], summary="Every failure Outbox recognises, with its fix")
async def list_error_types(_: AdminDep) -> list[ErrorType]:
    """The classification table behind failure details: each `error_type`, whether it is retried (transient),
    failed (permanent), throttled or held for an administrator, and the explanation and fix history shows."""
    return [ErrorType(**row) for row in all_error_types()]


def _release(tx: Tx, released: int) -> None:
    if released:
        jobs.wake(tx, "released")


@router.get("/smtp", response_model=SmtpSettingsPublic, summary="SMTP settings (the password is never returned)")
async def get_smtp(tx: TxDep, settings: SettingsDep, _: AdminDep) -> SmtpSettingsPublic:
    return providers_service.smtp_public(await providers_service.get_row(tx.session, "smtp"), settings)


@router.put("/smtp", response_model=SmtpSettingsPublic, summary="Replace the SMTP settings (every field)")
async def put_smtp(body: SmtpSettingsUpdate, tx: TxDep, settings: SettingsDep, _: AdminDep) -> SmtpSettingsPublic:
    """The whole representation: a field left out is refused (422 naming it), never reset to a default. The
    exception is `password`, which is write-only: left out, the stored one is kept; null clears it. To change
    some fields only, use PATCH. Saving releases messages held for this provider (for example after re-entering
    a password). Changing the host requires entering the password again."""
    saved = await providers_service.save_smtp(tx.session, body, settings)
    _release(tx, saved.released)
    return saved.public


@router.patch("/smtp", response_model=SmtpSettingsPublic, summary="Change some SMTP settings (JSON merge patch)")
async def patch_smtp(body: Annotated[SmtpSettingsPatch, Body(media_type=MERGE_PATCH)], tx: TxDep,
                     settings: SettingsDep, _: AdminDep) -> SmtpSettingsPublic:
    """RFC 7396: the fields given replace the stored ones, the others keep their values; null clears a field
    that may be null. `password`: left out, kept; null, cleared. The result is checked as a PUT would be.
    Send it as `application/merge-patch+json` (or `application/json`)."""
    saved = await providers_service.patch_smtp(tx.session, body, settings)
    _release(tx, saved.released)
    return saved.public


@router.get("/graph", response_model=GraphSettingsPublic,
            summary="Microsoft Graph settings (the application key is never returned)")
async def get_graph(tx: TxDep, settings: SettingsDep, _: AdminDep) -> GraphSettingsPublic:
    return providers_service.graph_public(await providers_service.get_row(tx.session, "graph"), settings)


@router.put("/graph", response_model=GraphSettingsPublic, summary="Replace the Microsoft Graph settings (every field)")
async def put_graph(body: GraphSettingsUpdate, tx: TxDep, settings: SettingsDep,
                    _: AdminDep) -> GraphSettingsPublic:
    """The recommended provider for Microsoft 365: app-only `sendMail` with the Mail.Send application
    permission. The whole representation: a field left out is refused (422 naming it); `client_secret` is
    write-only (left out: kept; null: cleared). To change some fields only, use PATCH. Saving releases messages
    held for Graph (for example after re-entering the application key). A nonzero `per_minute_limit` is saved
    with a warning: Graph throttles by itself."""
    saved = await providers_service.save_graph(tx.session, body, settings)
    _release(tx, saved.released)
    return saved.public


@router.patch("/graph", response_model=GraphSettingsPublic,
              summary="Change some Microsoft Graph settings (JSON merge patch)")
async def patch_graph(body: Annotated[GraphSettingsPatch, Body(media_type=MERGE_PATCH)], tx: TxDep,
                      settings: SettingsDep, _: AdminDep) -> GraphSettingsPublic:
    """RFC 7396: the fields given replace the stored ones, the others keep their values; null clears a field
    that may be null. `client_secret`: left out, kept; null, cleared. The result is checked as a PUT would be."""
    saved = await providers_service.patch_graph(tx.session, body, settings)
    _release(tx, saved.released)
    return saved.public


@router.get("/exchange", response_model=ExchangeSettingsPublic, deprecated=True,
            summary="Exchange (EWS) settings: deprecated, use Microsoft Graph")
async def get_exchange(tx: TxDep, settings: SettingsDep, _: AdminDep) -> ExchangeSettingsPublic:
    """Deprecated: Microsoft blocks EWS in Exchange Online from 2026-10-01 and retires it on 2027-04-01 (see
    the `deprecation` field). Kept for on-premises Exchange Server."""
    return providers_service.exchange_public(await providers_service.get_row(tx.session, "exchange"), settings)


@router.put("/exchange", response_model=ExchangeSettingsPublic, deprecated=True,
            summary="Replace the Exchange (EWS) settings (every field): deprecated, use Microsoft Graph")
async def put_exchange(body: ExchangeSettingsUpdate, tx: TxDep, settings: SettingsDep,
                       _: AdminDep) -> ExchangeSettingsPublic:
    """Deprecated (see the `deprecation` field). The whole representation: a field left out is refused (422
    naming it); `password` and `client_secret` are write-only (left out: kept; null: cleared). To change some
    fields only, use PATCH. Saving releases messages held for Exchange."""
    saved = await providers_service.save_exchange(tx.session, body, settings)
    _release(tx, saved.released)
    return saved.public


@router.get("/senders", response_model=SendersReport, summary="Every sender in use, checked per provider")
async def list_senders(
    tx: TxDep, settings: SettingsDep, _: AdminDep,
    probe: Annotated[bool, Query(description="Also reach each Graph/Exchange mailbox (one request each, at most "
                                             "100; nothing is sent)")] = False,
) -> SendersReport:
    """The reference article's "Verify that all email accounts have appropriate Send As permissions": enabled
    users' Email and sender email (through the providers each may use), templates' senders and the batch account
    (through the batch provider). Per sender and provider: what is known before sending, what only a send can
    prove (and the test email that proves it), and what the latest send from it showed. `/status` shows the
    counts."""
    return await provider_senders.report(tx.session, settings, probe=probe)


@router.patch("/exchange", response_model=ExchangeSettingsPublic, deprecated=True,
              summary="Change some Exchange (EWS) settings (JSON merge patch): deprecated, use Microsoft Graph")
async def patch_exchange(body: Annotated[ExchangeSettingsPatch, Body(media_type=MERGE_PATCH)], tx: TxDep,
                         settings: SettingsDep, _: AdminDep) -> ExchangeSettingsPublic:
    """RFC 7396: the fields given replace the stored ones, the others keep their values; null clears a field
    that may be null. `password`, `client_secret`: left out, kept; null, cleared."""
    saved = await providers_service.patch_exchange(tx.session, body, settings)
    _release(tx, saved.released)
    return saved.public


@router.post("/{provider_id}/verify", response_model=VerifyResult, responses=problem_responses(404),
             summary="Check connection and credentials without sending")
async def verify_provider(
    provider_id: ProviderPath, tx: TxDep, settings: SettingsDep, _: AdminDep,
    body: Annotated[VerifyRequest | None, Body(openapi_examples={
        "connection": {"summary": "Connection and credentials", "value": {}},
        "sender": {"summary": "And a sender (Send As)", "value": {"from": "sales@contoso.com"}},
        "mailbox": {"summary": "Graph/Exchange: another mailbox", "value": {"mailbox": "alice@contoso.com"}},
    })] = None,
) -> VerifyResult:
    """Connects, negotiates TLS and signs in (SMTP), or gets a token and reaches the batch account's mailbox
    (Graph, Exchange: `mailbox` instead, if given), and explains what is wrong when that fails. With `from` (and
    `mailbox`), `senders` says what is known before sending from it and what only a send can prove (then send a
    test email with that `from`). Nothing is sent."""
    return await provider_verify.verify_with(tx.session, provider_id, settings, body)


@router.post("/{provider_id}/test", status_code=status.HTTP_202_ACCEPTED, response_model=TestEmailAccepted,
             responses=problem_responses(404, 409), summary="Send a test email through this provider")
async def test_provider(provider_id: ProviderPath, body: TestEmailRequest, tx: TxDep,
                        principal: AdminDep) -> TestEmailAccepted:
    """Queues one test message through this provider and returns its id: follow it with GET /messages/{id}.
    With `from`, it goes out from that address: what only a send can prove about a sender (Send As over SMTP, the
    mailbox's own sending for Graph and Exchange); the senders report then shows the result."""
    accepted = await provider_verify.send_test(tx.session, principal, provider_id, body)
    jobs.wake_for(tx, [accepted.id], high=True)  # test emails are in the high lane
    return accepted
