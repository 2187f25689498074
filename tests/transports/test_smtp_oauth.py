"""SMTP sign-in against a local Exchange Online stand-in (tests/support/exo_smtp.py): AUTH XOAUTH2 with tokens from
the local Entra ID fake through MSAL, one token shared by a pool's connections, refreshed before expiry, and one
password mechanism tried once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import trustme

from app.delivery.classify import classify_error
from app.transports.base import OutgoingMessage, TransportError
from app.transports.oauth import SmtpOAuthConfig
from app.transports.smtp import SmtpConfig, SmtpPool
from tests.support.exo_smtp import ExoSmtpServer, exo_smtp
from tests.support.smtp_server import SmtpServer


@pytest.fixture
def exo(tmp_path: Path) -> Iterator[ExoSmtpServer]:
    with exo_smtp(tmp_path) as server:
        yield server


def _oauth_config(exo: ExoSmtpServer, **overrides: object) -> SmtpConfig:
    oauth = SmtpOAuthConfig(
        kind="oauth2_client_credentials", tenant_id=exo.entra.tenant_id, client_id=exo.entra.client_id,
        client_secret=str(overrides.pop("client_secret", exo.entra.client_secret)),
        client_certificate=overrides.pop("client_certificate", None),  # type: ignore[arg-type]
        authority_host=exo.entra.authority_host, ca_bundle=exo.ca_path, timeout=10)
    fields: dict[str, Any] = {"host": "127.0.0.1", "port": exo.port, "tls": "starttls",
                                 "username": exo.mailbox, "oauth": oauth, "ca_bundle": exo.ca_path, "timeout": 10}
    fields.update(overrides)
    return SmtpConfig(**fields)


def _msg(n: int, sender: str = "batch@contoso.com") -> OutgoingMessage:
    mime = (f"From: {sender}\r\nTo: a@example.com\r\nSubject: m{n}\r\nMessage-ID: <m{n}@test>\r\n\r\nbody {n}\r\n")
    return OutgoingMessage(message_id=f"<m{n}@test>", sender=sender, to=["a@example.com"], subject=f"m{n}",
                           mime=mime.encode())


async def test_one_token_for_many_messages_over_several_connections(exo: ExoSmtpServer) -> None:
    pool = SmtpPool(_oauth_config(exo), size=3)
    try:
        await asyncio.gather(*(pool.send(_msg(i)) for i in range(30)))
    finally:
        await pool.aclose()
    assert len(exo.received) == 30
    assert pool.connections_opened == 3
    # Every connection signed in with XOAUTH2, all with the same token, fetched once.
    assert [a.reason for a in exo.handler.auths] == ["ok"] * 3
    assert {a.mechanism for a in exo.handler.auths} == {"XOAUTH2"}
    assert len({a.jti for a in exo.handler.auths}) == 1
    assert exo.token_requests == 1
    [request] = exo.entra.token_requests
    assert request.form["scope"] == "https://outlook.office365.com/.default"
    assert request.form["grant_type"] == "client_credentials"


async def test_pooled_connection_is_replaced_before_its_token_expires(exo: ExoSmtpServer) -> None:
    # 302 s: MSAL caches it (it needs more than 300 s), and both MSAL and the pool treat it as due for renewal
    # once less than 300 s are left, i.e. after 2 s.
    exo.entra.authority.expires_in = 302
    pool = SmtpPool(_oauth_config(exo), size=1)
    try:
        await pool.send(_msg(1))
        await pool.send(_msg(2))  # same connection, same token
        assert pool.connections_opened == 1 and exo.token_requests == 1
        await asyncio.sleep(2.2)
        await pool.send(_msg(3))  # the connection's token is near expiry: a new connection with a new token
    finally:
        await pool.aclose()
    assert len(exo.received) == 3
    assert pool.connections_opened == 2
    assert exo.token_requests == 2
    jtis = [a.jti for a in exo.handler.auths]
    assert len(jtis) == 2 and jtis[0] != jtis[1]
    assert exo.handler.expired_sessions_used == 0


async def test_server_refuses_an_expired_token_and_a_session_outliving_it(exo: ExoSmtpServer) -> None:
    """What the pool's renewal avoids: the fake refuses expired tokens at AUTH, and MAIL on a session whose token
    has expired (checked here with tokens that live 2 s and a client that ignores expiry)."""
    import aiosmtplib

    exo.entra.authority.expires_in = 2
    pool = SmtpPool(_oauth_config(exo), size=1)
    assert pool.tokens is not None
    token = (await pool.tokens.access_token()).token
    await pool.aclose()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=exo.port, start_tls=True, cert_bundle=exo.ca_path)
    await client.connect()
    await client.auth_xoauth2(exo.mailbox, token)
    await asyncio.sleep(2.1)
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await client.sendmail(exo.mailbox, ["a@example.com"], b"Subject: x\r\n\r\nx\r\n")
    assert refused.value.code == 451
    client.close()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=exo.port, start_tls=True, cert_bundle=exo.ca_path)
    await client.connect()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as auth:
        await client.auth_xoauth2(exo.mailbox, token)
    client.close()
    assert auth.value.code == 535 and auth.value.message.startswith("5.7.3 Authentication unsuccessful")
    assert exo.handler.refusals == ["expired"]


async def test_token_revoked_early_is_replaced_once(exo: ExoSmtpServer) -> None:
    pool = SmtpPool(_oauth_config(exo), size=1)
    try:
        await pool.send(_msg(1))
        # The server stops accepting the cached token (revoked before its expiry): refused once.
        real_decode = exo.entra.authority.decode
        refused = {"n": 0}

        def decode_once(token: str, *, audience: str) -> dict[str, object]:
            if refused["n"] == 0:
                refused["n"] += 1
                raise jwt.InvalidSignatureError("revoked")
            return real_decode(token, audience=audience)

        exo.entra.authority.decode = decode_once  # type: ignore[method-assign]
        for client in list(pool._all):
            client.close()
        await pool.send(_msg(2))
    finally:
        await pool.aclose()
    assert len(exo.received) == 2
    assert exo.handler.refusals == ["signature"]
    assert exo.token_requests == 2  # the refused cached token was dropped and a new one fetched, once


@pytest.mark.parametrize(
    ("setup", "reason", "code", "error_type", "fix_words"),
    [
        (lambda e: e.entra.authority.roles.clear(), "role", 535, "smtp.oauth.refused", "SMTP.SendAsApp"),
        (lambda e: e.handler.service_principals.clear(), "service_principal", 535, "smtp.oauth.refused",
         "New-ServicePrincipal"),
        (lambda e: e.handler.mailbox_permissions.clear(), "mailbox_permission", 535, "smtp.oauth.refused",
         "Add-MailboxPermission"),
        (lambda e: setattr(e.handler, "smtp_auth_disabled_tenant", True), "smtp_auth_disabled_tenant", 535,
         "smtp.auth.smtp_disabled_tenant", "SmtpClientAuthenticationDisabled"),
        (lambda e: e.handler.smtp_auth_disabled_mailboxes.add(e.mailbox), "smtp_auth_disabled_mailbox", 535,
         "smtp.auth.smtp_disabled_mailbox", "Set-CASMailbox"),
    ],
)
async def test_refusals_are_held_with_the_fix(exo: ExoSmtpServer, setup: Callable[[ExoSmtpServer], object],
                                              reason: str, code: int,
                                              error_type: str, fix_words: str) -> None:
    setup(exo)
    pool = SmtpPool(_oauth_config(exo), size=1)
    try:
        with pytest.raises(TransportError) as raised:
            await pool.send(_msg(1))
    finally:
        await pool.aclose()
    assert exo.handler.refusals == [reason]  # one sign-in, not retried with a fresh token (it was not cached)
    err = raised.value
    assert err.stage == "auth" and err.reply.code == code and err.reply.error_code == "XOAUTH2"
    verdict = classify_error(err)
    assert verdict.kind == "held"
    assert verdict.error_type == error_type
    assert fix_words in verdict.fix
    assert exo.received == []


async def test_wrong_client_secret_is_a_token_failure(exo: ExoSmtpServer) -> None:
    pool = SmtpPool(_oauth_config(exo, client_secret="not-the-secret"), size=1)
    try:
        with pytest.raises(TransportError) as raised:
            await pool.send(_msg(1))
    finally:
        await pool.aclose()
    assert raised.value.stage == "token"
    verdict = classify_error(raised.value)
    assert (verdict.kind, verdict.error_type) == ("held", "entra.invalid_client_secret")
    assert "not-the-secret" not in str(raised.value)
    assert exo.handler.auths == []  # no sign-in attempted without a token


@pytest.mark.parametrize(("mode", "code", "error_type"), [
    ("disabled", 535, "smtp.auth.basic_disabled"),
    ("retired", 550, "smtp.auth.basic_disabled"),
])
async def test_password_refused_because_basic_auth_is_off(exo: ExoSmtpServer, mode: str, code: int,
                                                          error_type: str) -> None:
    exo.handler.basic_auth = mode  # type: ignore[assignment]
    pool = SmtpPool(SmtpConfig(host="127.0.0.1", port=exo.port, username=exo.mailbox, password="pw",
                               ca_bundle=exo.ca_path, timeout=10), size=1)
    try:
        with pytest.raises(TransportError) as raised:
            await pool.send(_msg(1))
    finally:
        await pool.aclose()
    assert raised.value.reply.code == code
    verdict = classify_error(raised.value)
    assert (verdict.kind, verdict.error_type) == ("held", error_type)
    assert "OAuth" in verdict.fix and "Microsoft Graph" in verdict.fix
    assert len(exo.handler.auths) == 1


async def test_wrong_password_is_one_sign_in_with_the_servers_first_mechanism() -> None:
    """aiosmtplib's login() would try PLAIN and then LOGIN: two failed sign-ins for one wrong password."""
    with SmtpServer(auth={"batch@example.com": "right"}) as server:
        pool = SmtpPool(SmtpConfig(host="127.0.0.1", port=server.port, tls="none", username="batch@example.com",
                                   password="wrong", timeout=10), size=1)
        try:
            with pytest.raises(TransportError) as raised:
                await pool.send(_msg(1, "batch@example.com"))
        finally:
            await pool.aclose()
        assert pool.sign_ins == 1
        assert raised.value.reply.code == 535
        # aiosmtpd offers "AUTH LOGIN PLAIN": the server's first one is used.
        assert raised.value.reply.error_code == "LOGIN"
        assert classify_error(raised.value).error_type == "smtp.auth.failed"


async def test_named_mechanism_is_used_or_refused_clearly() -> None:
    with SmtpServer(auth={"batch@example.com": "right"}) as server:
        pool = SmtpPool(SmtpConfig(host="127.0.0.1", port=server.port, tls="none", username="batch@example.com",
                                   password="right", auth_mechanism="PLAIN", timeout=10), size=1)
        try:
            await pool.send(_msg(1, "batch@example.com"))
        finally:
            await pool.aclose()
        assert pool.sign_ins == 1 and len(server.received) == 1
        pool = SmtpPool(SmtpConfig(host="127.0.0.1", port=server.port, tls="none", username="batch@example.com",
                                   password="right", auth_mechanism="CRAM-MD5", timeout=10), size=1)
        try:
            with pytest.raises(TransportError) as raised:
                await pool.send(_msg(2, "batch@example.com"))
        finally:
            await pool.aclose()
        assert pool.sign_ins == 0
        assert "CRAM-MD5" in raised.value.reply.text and "LOGIN PLAIN" in raised.value.reply.text
        assert classify_error(raised.value).error_type == "smtp.auth.no_mechanism"


async def test_oauth_against_a_server_without_xoauth2() -> None:
    with SmtpServer(auth={"batch@example.com": "right"}) as server:
        oauth = SmtpOAuthConfig(kind="oauth2_token_endpoint", client_id="c", client_secret="s",
                                token_url="https://127.0.0.1:1/token", scope="x/.default")
        pool = SmtpPool(SmtpConfig(host="127.0.0.1", port=server.port, tls="none", username="batch@example.com",
                                   oauth=oauth, timeout=10), size=1)
        started = time.monotonic()
        try:
            with pytest.raises(TransportError) as raised:
                await pool.send(_msg(1, "batch@example.com"))
        finally:
            await pool.aclose()
        assert time.monotonic() - started < 5
        assert raised.value.reply.error_code == "auth_no_xoauth2"
        verdict = classify_error(raised.value)
        assert verdict.kind == "held" and "XOAUTH2" in verdict.explanation


def _certificate() -> tuple[str, bytes]:
    """A key and certificate as an administrator exports them (one PEM), and the certificate alone."""
    leaf = trustme.CA().issue_cert("outbox-smtp-app", key_type=trustme.KeyType.RSA)
    cert = leaf.cert_chain_pems[0].bytes()
    return leaf.private_key_pem.bytes().decode() + cert.decode(), cert


async def test_client_certificate_instead_of_a_secret(exo: ExoSmtpServer) -> None:
    pem, cert = _certificate()
    exo.entra.authority.register_certificate(cert)
    pool = SmtpPool(_oauth_config(exo, client_secret="", client_certificate=pem), size=1)
    try:
        await pool.send(_msg(1))
    finally:
        await pool.aclose()
    assert len(exo.received) == 1
    [request] = exo.entra.token_requests
    assert "client_secret" not in request.form
    assert request.form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert jwt.get_unverified_header(request.form["client_assertion"])["alg"] == "PS256"


async def test_unregistered_certificate_is_held_with_the_fix(exo: ExoSmtpServer) -> None:
    pem, _ = _certificate()  # never uploaded to the app registration
    pool = SmtpPool(_oauth_config(exo, client_secret="", client_certificate=pem), size=1)
    try:
        with pytest.raises(TransportError) as raised:
            await pool.send(_msg(1))
    finally:
        await pool.aclose()
    verdict = classify_error(raised.value)
    assert (verdict.kind, verdict.error_type) == ("held", "entra.invalid_client_certificate")
    assert "PRIVATE KEY" not in str(raised.value)
