"""Verify a provider's connection and credentials without sending, and queue a test email through it."""

from __future__ import annotations

import dataclasses
import time

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, InvalidInput
from app.core.security import Principal
from app.delivery.classify import classify_error, verdict_for
from app.mail.validate import normalize_address
from app.messages import service as message_service
from app.messages.schemas import MessageIn
from app.providers import runtime, senders
from app.providers import service as providers_service
from app.providers.schemas import TestEmailAccepted, TestEmailRequest, VerifyRequest, VerifyResult, VerifyStep
from app.settings import Settings
from app.transports.base import Reply, TransportError
from app.transports.oauth import EXCHANGE_ONLINE_RESOURCES, SmtpOAuthConfig, token_claims
from app.transports.smtp import SmtpConfig, SmtpPool


def _failed(provider: str, err: TransportError) -> VerifyResult:
    v = classify_error(err)
    return VerifyResult(provider=provider, ok=False, detail=f"{v.title}: {err.reply.text}", error_type=v.error_type,
                        explanation=v.explanation, fix=v.fix, reply_code=err.reply.code)


async def verify(session: AsyncSession, provider_id: str, settings: Settings,
                 sender: str | None = None) -> VerifyResult:
    """A fresh transport (one connection): a verify must not be answered from the worker's pooled connections or
    token cache, nor from MSAL's 60 s replay of a refused request. The provider's settings warnings come along
    (e.g. Basic authentication to Microsoft 365 ending). SMTP goes as far as MAIL FROM and RCPT TO (then RSET)
    for `sender`, else the batch account."""
    row = await providers_service.get_row(session, provider_id)
    warnings = providers_service.provider_warnings(provider_id, row, settings)
    try:
        rt = runtime.load(row, provider_id, settings)
        if sender is not None and provider_id == "smtp":
            rt = dataclasses.replace(rt, account=sender)
        # Everything needed is read: give the database connection back before any network call, so verifies
        # against a hanging server (each up to its timeout) cannot starve other requests of connections.
        await session.commit()
        if isinstance(rt.config, SmtpConfig):
            result = await _check_smtp(rt)
            result.warnings = warnings
            return result
        reply = await _check(rt)
    except TransportError as err:
        failed = _failed(provider_id, err)
        failed.warnings = warnings
        return failed
    return VerifyResult(provider=provider_id, ok=True, detail=reply.text, reply_code=reply.code, warnings=warnings)


# ---------------------------------------------------------------------- SMTP, step by step

_SMTP_STEPS = {"sign_in": "Get an access token", "connect": "Connect and secure the connection (TLS)",
               "authenticate": "Sign in to the SMTP server", "mail": "Sender accepted (MAIL FROM)",
               "rcpt": "Recipient accepted (RCPT TO, then RSET: nothing is sent)"}
_STAGE_STEP = {"token": "sign_in", "connect": "connect", "tls": "connect", "auth": "authenticate"}
SEND_AS_APP = "SMTP.SendAsApp"
# Exchange Online's application id: an app-only token's audience may name it instead of the URL.
_EXCHANGE_ONLINE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"


def _step_failed(step: str, err: TransportError, *, explanation: str | None = None,
                 fix: str | None = None) -> VerifyStep:
    v = classify_error(err)
    return VerifyStep(step=step, ok=False, detail=f"{v.title}: {err.reply.text}", error_type=v.error_type,
                      explanation=explanation or v.explanation, fix=fix or v.fix)


# Resources whose tokens no SMTP server can use: Microsoft Graph in each cloud (by URL and by application id).
_NOT_SMTP_AUDIENCES = {"https://graph.microsoft.com", "https://graph.microsoft.us", "https://dod-graph.microsoft.us",
                       "https://microsoftgraph.chinacloudapi.cn", "00000003-0000-0000-c000-000000000000"}


def _audience_ok(claims: dict[str, object], oauth: SmtpOAuthConfig, host: str) -> bool | None:
    """Whether the token is for the SMTP server's resource (None: cannot tell). Microsoft 365 needs Exchange
    Online's; another server (e.g. Dovecot validating Entra ID tokens) has its own, but never Graph's."""
    aud = claims.get("aud")
    if not isinstance(aud, str):
        return None
    aud = aud.rstrip("/")
    expected: str | None = None
    if oauth.kind == "oauth2_client_credentials":
        expected = EXCHANGE_ONLINE_RESOURCES[oauth.cloud]
    elif providers_service.is_microsoft365_smtp(host):
        expected = EXCHANGE_ONLINE_RESOURCES["global"]
    if expected is None:
        return False if aud in _NOT_SMTP_AUDIENCES else None
    return aud in (expected, expected.replace("office365", "office"), _EXCHANGE_ONLINE_APP_ID)


def _token_problem(token: str, oauth: SmtpOAuthConfig, host: str) -> tuple[str, str, str] | None:
    """(error_type, explanation, fix) when the token cannot work for SMTP AUTH to Microsoft 365: the table's
    row, its explanation made specific with what the token says."""
    claims = token_claims(token)
    if not claims:
        return None
    aud = claims.get("aud")
    if _audience_ok(claims, oauth, host) is False:
        row = verdict_for("smtp.oauth.wrong_resource")
        return (row.error_type, f"{row.explanation} This token is for {aud!r}.", row.fix)
    roles = claims.get("roles")
    if oauth.kind == "oauth2_client_credentials" and isinstance(roles, list) and SEND_AS_APP not in roles:
        granted = ", ".join(str(r) for r in roles) or "none"
        row = verdict_for("smtp.oauth.permission_missing")
        return (row.error_type, f"{row.explanation} Application permissions in the token: {granted}.", row.fix)
    return None


async def _check_smtp(rt: runtime.Runtime) -> VerifyResult:
    """sign_in (OAuth only): a token, and whether it carries what Exchange Online needs; connect; authenticate.
    Each step says what it did, or why it failed and how to fix it."""
    assert isinstance(rt.config, SmtpConfig)
    config = rt.config
    steps: list[VerifyStep] = []
    pool = rt.open()
    assert isinstance(pool, SmtpPool)
    token_ok_detail = ""
    try:
        if pool.tokens is not None and config.oauth is not None:
            try:
                token = await pool.tokens.access_token()
            except TransportError as err:
                steps.append(_step_failed("sign_in", err))
                return _smtp_result(rt, steps)
            problem = _token_problem(token.token, config.oauth, config.host)
            claims = token_claims(token.token)
            minutes = max(0, int((token.expires_at - time.time()) // 60))
            audience = claims.get("aud", config.oauth.effective_scope)
            roles = ", ".join(map(str, claims.get("roles", []))) or "not shown"
            token_ok_detail = (f"token from {config.oauth.token_host} for {audience}, roles {roles}, valid "
                               f"{minutes} more minutes")
            if problem is not None:
                steps.append(VerifyStep(step="sign_in", ok=False, detail=token_ok_detail, error_type=problem[0],
                                        explanation=problem[1], fix=problem[2]))
                return _smtp_result(rt, steps)
            steps.append(VerifyStep(step="sign_in", ok=True, detail=token_ok_detail))
        try:
            reply = await pool.verify(rt.account)
        except TransportError as err:
            step = _STAGE_STEP.get(err.stage, err.stage)
            if step not in ("sign_in", "connect"):  # what came before the failing step worked
                steps.append(VerifyStep(step="connect", ok=True, detail=f"connected to {config.host}:{config.port} "
                                                                       f"({config.tls}) as {pool.ehlo_name}"))
                if step != "authenticate" and config.signs_in:
                    steps.append(VerifyStep(step="authenticate", ok=True, detail=f"signed in as {config.username}"))
                if step == "rcpt":
                    steps.append(VerifyStep(step="mail", ok=True, detail=f"MAIL FROM:<{rt.account}> accepted"))
            explanation: str | None = None
            fix: str | None = None
            entra = config.oauth is not None and config.oauth.kind == "oauth2_client_credentials"
            if classify_error(err).error_type == "smtp.oauth.refused" and token_ok_detail and entra:
                explanation = (
                    "Exchange Online refused the token (535 5.7.3), although it is for Exchange Online and carries "
                    f"the {SEND_AS_APP} role ({token_ok_detail}). What is left: the app's service principal is "
                    "not registered in Exchange Online, or it has no FullAccess permission on the mailbox "
                    f"{config.username}. (Permission changes can take up to an hour to apply.)")
                fix = ("In Exchange Online PowerShell (Connect-ExchangeOnline): New-ServicePrincipal -AppId "
                       f"{config.oauth.client_id if config.oauth else '<application id>'} -ObjectId <object id "
                       "of the Enterprise application, not of the app registration>; then Add-MailboxPermission "
                       f"-Identity {config.username} -User <the service principal's Identity> -AccessRights "
                       "FullAccess. Then verify again.")
            steps.append(_step_failed(step, err, explanation=explanation, fix=fix))
            return _smtp_result(rt, steps, reply_code=err.reply.code)
        steps.append(VerifyStep(step="connect", ok=True, detail=f"{reply.text} (EHLO {pool.ehlo_name})"))
        if config.signs_in:
            how = "AUTH XOAUTH2" if config.oauth else f"AUTH {config.auth_mechanism or 'the server’s first mechanism'}"
            steps.append(VerifyStep(step="authenticate", ok=True, detail=f"signed in as {config.username} ({how})"))
        if rt.account:
            steps.append(VerifyStep(step="mail", ok=True, detail=f"MAIL FROM:<{rt.account}> accepted"))
            steps.append(VerifyStep(step="rcpt", ok=True, detail=f"RCPT TO:<{rt.account}> accepted, then RSET: "
                                                                 "nothing was sent"))
        return _smtp_result(rt, steps, reply_code=reply.code)
    finally:
        await pool.aclose()


def _smtp_result(rt: runtime.Runtime, steps: list[VerifyStep], *, reply_code: int | None = None) -> VerifyResult:
    assert isinstance(rt.config, SmtpConfig)
    wanted = ((["sign_in"] if rt.config.oauth else []) + ["connect"] + (["authenticate"] if rt.config.signs_in else [])
              + (["mail", "rcpt"] if rt.account else []))
    done = {s.step for s in steps}
    steps = steps + [VerifyStep(step=name, ok=None, detail=f"{_SMTP_STEPS[name]}: not run (an earlier step failed)")
                     for name in wanted if name not in done]
    failed = next((s for s in steps if s.ok is False), None)
    if failed is None:
        return VerifyResult(provider="smtp", ok=True, detail="; ".join(s.detail for s in steps), steps=steps,
                            reply_code=reply_code)
    return VerifyResult(provider="smtp", ok=False,
                        detail=f"{_SMTP_STEPS.get(failed.step, failed.step)}: {failed.detail}",
                        error_type=failed.error_type, explanation=failed.explanation, fix=failed.fix,
                        reply_code=reply_code, steps=steps)


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


# ---------------------------------------------------------------------- a From and a mailbox


async def verify_with(session: AsyncSession, provider_id: str, settings: Settings,
                      req: VerifyRequest | None) -> VerifyResult:
    """`verify`, and for a From (and, Graph/Exchange, a mailbox): the mailbox reached instead of the batch
    account, and per address what is known before sending and what only a send can prove (`senders`)."""
    req = req or VerifyRequest()
    sender = normalize_address("from", req.from_) if req.from_ else None
    mailbox = normalize_address("mailbox", req.mailbox) if req.mailbox else None
    if mailbox is not None and provider_id == "smtp":
        raise InvalidInput.for_field("mailbox", "SMTP has no mailbox to reach: give the address to send from as "
                                                "`from`")
    if mailbox is None or provider_id == "smtp":
        result = await verify(session, provider_id, settings, sender if provider_id == "smtp" else None)
    else:
        result = await _verify_mailbox(session, provider_id, settings, mailbox)
    addresses = list(dict.fromkeys(a for a in (sender, mailbox) if a is not None))
    if addresses:
        result.senders = await senders.check(session, settings, [(a, ["verify"], {provider_id}) for a in addresses],
                                             probe=provider_id != "smtp")
    return result


async def _verify_mailbox(session: AsyncSession, provider_id: str, settings: Settings, mailbox: str) -> VerifyResult:
    """Graph/Exchange: credentials, and `mailbox` reached instead of the batch account."""
    row = await providers_service.get_row(session, provider_id)
    warnings = providers_service.provider_warnings(provider_id, row, settings)
    try:
        rt = dataclasses.replace(runtime.load(row, provider_id, settings), account=mailbox)
        reply = await _check(rt)
    except TransportError as err:
        failed = _failed(provider_id, err)
        failed.warnings = warnings
        return failed
    return VerifyResult(provider=provider_id, ok=True, detail=reply.text, reply_code=reply.code, warnings=warnings)


async def send_test(session: AsyncSession, principal: Principal, provider_id: str,
                    body: TestEmailRequest) -> TestEmailAccepted:
    if await providers_service.get_row(session, provider_id) is None:
        raise Conflict(f"{provider_id} is not configured yet: PUT /providers/{provider_id} first")
    msg = MessageIn.model_validate({
        "to": [body.to], "subject": body.subject, "provider": provider_id, "from": body.from_,
        "body_text": f"This is a test email sent by Outbox through the {provider_id} provider.",
    })
    accepted = (await message_service.submit(session, principal, [msg], None, kind="test"))[0]
    return TestEmailAccepted(id=accepted.id, status=accepted.status)
