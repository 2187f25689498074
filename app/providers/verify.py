"""Verify a provider's connection and credentials without sending, and queue a test email through it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict
from app.core.security import Principal
from app.delivery.classify import classify_error
from app.messages import service as message_service
from app.messages.schemas import MessageIn
from app.providers import runtime
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
    """A fresh transport (one connection): a verify must not be answered from the worker's pooled connections or
    token cache, nor from MSAL's 60 s replay of a refused request."""
    try:
        rt = runtime.load(await providers_service.get_row(session, provider_id), provider_id, settings)
        reply = await _check(rt)
    except TransportError as err:
        return _failed(provider_id, err)
    return VerifyResult(provider=provider_id, ok=True, detail=reply.text, reply_code=reply.code)


async def _check(rt: runtime.Runtime) -> Reply:
    """SMTP: connect, TLS and sign in. Graph and EWS: a token (or the basic credentials) and the batch account's
    mailbox."""
    if rt.provider != "smtp" and not rt.account:
        raise TransportError("verify", Reply(None, "no batch account is configured", "not_configured"),
                             provider=rt.provider)
    transport = rt.open()
    try:
        if isinstance(transport, SmtpPool):
            return await transport.verify()
        assert rt.account is not None
        return await transport.verify(rt.account)
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
