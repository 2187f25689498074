"""Verify a provider's connection and credentials, and queue a test email through it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.crypto import SecretUndecryptable
from app.core.errors import Conflict
from app.core.security import Principal
from app.delivery.classify import classify, classify_error
from app.messages import service as message_service
from app.messages.schemas import MessageIn
from app.providers import service as providers_service
from app.providers.schemas import TestEmailAccepted, TestEmailRequest, VerifyResult
from app.settings import Settings
from app.transports.base import Reply, TransportError
from app.transports.smtp import SmtpPool


def _failed(provider: str, err: TransportError) -> VerifyResult:
    v = classify_error(err)
    return VerifyResult(provider=provider, ok=False, detail=f"{v.title}: {err.reply.text}", error_type=v.error_type,
                        explanation=v.explanation, fix=v.fix, reply_code=err.reply.code)


async def verify(session: AsyncSession, provider_id: str, settings: Settings) -> VerifyResult:
    row = await providers_service.get_row(session, provider_id)
    if row is None:
        v = classify(provider_id, "verify", Reply(None, f"{provider_id} is not configured", "not_configured"))
        return VerifyResult(provider=provider_id, ok=False, detail=v.title, error_type=v.error_type,
                            explanation=v.explanation, fix=v.fix)
    try:
        if provider_id == "smtp":
            rt = providers_service.smtp_runtime_from(row, settings)
            pool = SmtpPool(rt.config, 1)
            try:
                reply = await pool.verify()
            finally:
                await pool.aclose()
        else:
            reply = await _verify_microsoft(providers_service.microsoft_runtime_from(row, settings))
    except SecretUndecryptable:
        return _failed(provider_id, TransportError(
            "verify", Reply(None, "the stored secret cannot be decrypted", "secret_undecryptable"),
            provider=provider_id))
    except TransportError as err:
        return _failed(provider_id, err)
    return VerifyResult(provider=provider_id, ok=True, detail=reply.text, reply_code=reply.code)


async def _verify_microsoft(rt: providers_service.MicrosoftRuntime) -> Reply:
    """A token (or the basic credentials) and the batch account's mailbox, with a fresh transport: a verify
    must not be answered from the worker's token cache, nor from MSAL's 60 s replay of a refused request."""
    if not rt.batch_account:
        raise TransportError("verify", Reply(None, "no batch account is configured", "not_configured"),
                             provider=rt.provider)
    transport = providers_service.microsoft_transport(rt)
    try:
        return await transport.verify(rt.batch_account)
    finally:
        await transport.aclose()


async def send_test(session: AsyncSession, principal: Principal, provider_id: str,
                    body: TestEmailRequest) -> TestEmailAccepted:
    if await providers_service.get_row(session, provider_id) is None:
        raise Conflict(f"{provider_id} is not configured yet: PUT /providers/{provider_id} first")
    msg = MessageIn.model_validate({
        "to": [body.to], "subject": body.subject, "provider": provider_id,
        "body_text": f"This is a test email sent by Outbox through the {provider_id} provider.",
    })
    accepted = (await message_service.submit(session, principal, [msg], None, kind="test"))[0]
    return TestEmailAccepted(id=accepted.id, status=accepted.status)
