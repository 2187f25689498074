"""SMTP with OAuth (XOAUTH2) end to end: settings API, the worker sending through the local Exchange Online stand-in
(tests/support/exo_smtp.py) with tokens from the local Entra ID fake, verify's steps, and the basic-auth warnings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import Env, running_env
from tests.support.exo_smtp import ExoSmtpServer, exo_smtp

SECRET = "smtp-app-secret"


@pytest.fixture
def exo(tmp_path: Path) -> Iterator[ExoSmtpServer]:
    with exo_smtp(tmp_path) as server:
        yield server


@pytest.fixture
async def oenv(db_url: str, exo: ExoSmtpServer) -> AsyncIterator[Env]:
    async with running_env(db_url, OUTBOX_SMTP_CA_BUNDLE=exo.ca_path, OUTBOX_MICROSOFT_CA_BUNDLE=exo.ca_path,
                           OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE=True) as e:
        yield e


# Every field of a PUT (the whole representation), nulls included.
WHOLE: dict[str, Any] = {
    "host": None, "port": 587, "tls": "starttls", "auth_method": "password", "authentication_required": False,
    "username": None, "auth_mechanism": None, "tenant_id": None, "client_id": None, "cloud": "global",
    "authority_host": None, "token_url": None, "scope": None, "from_address": None, "from_name": None,
    "per_minute_limit": None, "validate_certificates": True, "timeout_seconds": 30, "ehlo_name": None}


def oauth_body(exo: ExoSmtpServer, **extra: Any) -> dict[str, Any]:
    return {**WHOLE, "host": "127.0.0.1", "port": exo.port, "tls": "starttls",
            "auth_method": "oauth2_client_credentials", "tenant_id": exo.entra.tenant_id,
            "client_id": exo.entra.client_id, "client_secret": SECRET, "authority_host": exo.entra.authority_host,
            "username": exo.mailbox, "from_address": exo.mailbox, "per_minute_limit": 0, "timeout_seconds": 10,
            **extra}


async def _submit(env: Env, n: int, subject: str = "hello") -> list[int]:
    ids = []
    for i in range(n):
        r = await env.client.post("/messages", json={"to": [f"r{i}@example.com"], "subject": f"{subject} {i}",
                                                     "body_text": "x", "provider": "smtp"})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


async def test_worker_sends_with_xoauth2_and_one_token(oenv: Env, exo: ExoSmtpServer) -> None:
    r = await oenv.client.put("/providers/smtp", json=oauth_body(exo))
    assert r.status_code == 200, r.text
    public = r.json()
    assert public["auth_method"] == "oauth2_client_credentials" and public["client_secret_set"] is True
    assert public["token_scope"] == "https://outlook.office365.com/.default"
    assert SECRET not in r.text and "client_secret" not in {k for k, v in public.items() if isinstance(v, str)}
    assert not any("December 2026" in w for w in public["warnings"])
    ids = await _submit(oenv, 12)
    await oenv.deliver()
    ids += await _submit(oenv, 12, "second batch")
    await oenv.deliver()
    for mid in ids:
        msg = (await oenv.client.get(f"/messages/{mid}")).json()
        assert msg["status"] == "sent", msg
    assert len(exo.received) == 24
    assert {r.mail_from for r in exo.received} == {exo.mailbox}
    # 24 messages, two drains, the worker's pooled connections: one token, every sign-in XOAUTH2 with it.
    assert exo.token_requests == 1
    assert {a.mechanism for a in exo.handler.auths} == {"XOAUTH2"}
    assert all(a.ok for a in exo.handler.auths) and len({a.jti for a in exo.handler.auths}) == 1
    # One sign-in per pooled connection, kept across both drains (not one per batch or per message).
    assert 1 <= len(exo.handler.auths) <= oenv.settings.smtp_connections


async def test_refusal_holds_and_fixing_permissions_releases(oenv: Env, exo: ExoSmtpServer) -> None:
    exo.handler.mailbox_permissions.clear()  # Add-MailboxPermission not run yet
    assert (await oenv.client.put("/providers/smtp", json=oauth_body(exo))).status_code == 200
    [mid] = await _submit(oenv, 1)
    await oenv.deliver()
    msg = (await oenv.client.get(f"/messages/{mid}")).json()
    assert msg["status"] == "held", msg
    [attempt] = msg["attempt_log"]
    assert attempt["error_type"] == "smtp.oauth.refused" and attempt["reply_code"] == 535
    assert "Add-MailboxPermission" in attempt["fix"] and "New-ServicePrincipal" in attempt["fix"]
    # The administrator grants the permission and saves the settings again (secret kept): released and sent.
    exo.handler.mailbox_permissions[exo.mailbox] = {exo.entra.client_id}
    body = oauth_body(exo)
    del body["client_secret"]
    assert (await oenv.client.put("/providers/smtp", json=body)).status_code == 200
    await oenv.deliver()
    assert (await oenv.client.get(f"/messages/{mid}")).json()["status"] == "sent"


async def test_verify_steps_when_all_is_well(oenv: Env, exo: ExoSmtpServer) -> None:
    assert (await oenv.client.put("/providers/smtp", json=oauth_body(exo))).status_code == 200
    v = (await oenv.client.post("/providers/smtp/verify")).json()
    assert v["ok"] is True, v
    assert [(s["step"], s["ok"]) for s in v["steps"]] == [("sign_in", True), ("connect", True),
                                                          ("authenticate", True), ("mail", True),
                                                          ("rcpt", True)]
    assert "SMTP.SendAsApp" in v["steps"][0]["detail"] and "https://outlook.office365.com" in v["steps"][0]["detail"]
    assert "XOAUTH2" in v["steps"][2]["detail"]
    assert exo.handler.received == [] and exo.handler.refusals == []


@pytest.mark.parametrize(("setup", "failed_step", "error_type", "words"), [
    (lambda e: e.entra.authority.roles.clear(), "sign_in", "smtp.oauth.permission_missing", "admin consent"),
    (lambda e: e.handler.service_principals.clear(), "authenticate", "smtp.oauth.refused", "New-ServicePrincipal"),
    (lambda e: e.handler.mailbox_permissions.clear(), "authenticate", "smtp.oauth.refused",
     "Add-MailboxPermission"),
    (lambda e: setattr(e.handler, "smtp_auth_disabled_tenant", True), "authenticate",
     "smtp.auth.smtp_disabled_tenant", "Set-TransportConfig"),
    (lambda e: e.handler.smtp_auth_disabled_mailboxes.add(e.mailbox), "authenticate",
     "smtp.auth.smtp_disabled_mailbox", "Set-CASMailbox"),
    (lambda e: setattr(e.entra.authority, "client_secret", "rotated"), "sign_in", "entra.invalid_client_secret",
     "secret"),
])
async def test_verify_tells_what_is_missing(oenv: Env, exo: ExoSmtpServer, setup: Any, failed_step: str,
                                            error_type: str, words: str) -> None:
    setup(exo)
    assert (await oenv.client.put("/providers/smtp", json=oauth_body(exo))).status_code == 200
    v = (await oenv.client.post("/providers/smtp/verify")).json()
    assert v["ok"] is False
    steps = {s["step"]: s for s in v["steps"]}
    assert list(steps) == ["sign_in", "connect", "authenticate", "mail", "rcpt"]
    failed = steps[failed_step]
    assert failed["ok"] is False and failed["error_type"] == error_type == v["error_type"]
    assert words in f"{failed['explanation']} {failed['fix']}"
    later = list(steps)[list(steps).index(failed_step) + 1:]
    assert all(steps[name]["ok"] is None for name in later)
    if failed_step == "authenticate":
        assert steps["sign_in"]["ok"] is True and steps["connect"]["ok"] is True
    if error_type == "smtp.oauth.refused":
        # The token is right, so verify narrows it down to the Exchange side.
        assert "service principal" in failed["explanation"] and "SMTP.SendAsApp role" in failed["explanation"]


async def test_verify_token_for_the_wrong_resource(oenv: Env, exo: ExoSmtpServer) -> None:
    """A generic token endpoint asked for Graph's scope: Entra issues a token Exchange Online refuses."""
    body = oauth_body(exo, auth_method="oauth2_token_endpoint", tenant_id=None, authority_host=None,
                      token_url=f"{exo.entra.authority_host}/{exo.entra.tenant_id}/oauth2/v2.0/token",
                      scope="https://graph.microsoft.com/.default")
    r = await oenv.client.put("/providers/smtp", json=body)
    assert r.status_code == 200, r.text
    v = (await oenv.client.post("/providers/smtp/verify")).json()
    assert v["ok"] is False and v["error_type"] == "smtp.oauth.wrong_resource", v
    assert "https://graph.microsoft.com" in v["explanation"]
    # The worker meets the server's refusal instead.
    [mid] = await _submit(oenv, 1)
    await oenv.deliver()
    msg = (await oenv.client.get(f"/messages/{mid}")).json()
    assert msg["status"] == "held" and msg["attempt_log"][0]["error_type"] == "smtp.oauth.refused"
    assert exo.handler.refusals == ["audience"]
    # With the right scope the same generic endpoint works.
    body["scope"] = "https://outlook.office365.com/.default"
    assert (await oenv.client.put("/providers/smtp", json=body)).status_code == 200
    await oenv.deliver()
    assert (await oenv.client.get(f"/messages/{mid}")).json()["status"] == "sent"


@pytest.mark.parametrize(("change", "field"), [
    ({"tenant_id": None}, "tenant_id"),
    ({"username": None}, "username"),
    ({"client_id": "not-a-guid"}, "client_id"),
    ({"password": "pw"}, "password"),
    ({"auth_mechanism": "PLAIN"}, "auth_mechanism"),
    ({"token_url": "https://login.example.com/token"}, "token_url"),
    ({"auth_method": "oauth2_token_endpoint", "tenant_id": None, "authority_host": None,
      "token_url": "http://login.example.com/token", "scope": "x"}, "token_url"),
    ({"auth_method": "oauth2_token_endpoint", "tenant_id": None, "authority_host": None,
      "token_url": "https://login.example.com/token"}, "scope"),
    ({"auth_method": "password", "tenant_id": "contoso.onmicrosoft.com", "client_secret": None,
      "authority_host": None, "client_id": None}, "tenant_id"),
    ({"username": "not an address"}, "username"),
])
async def test_bad_settings_name_the_field_and_change_nothing(oenv: Env, exo: ExoSmtpServer,
                                                              change: dict[str, Any], field: str) -> None:
    assert (await oenv.client.put("/providers/smtp", json=oauth_body(exo))).status_code == 200
    before = (await oenv.client.get("/providers/smtp")).json()
    body = {**oauth_body(exo), **change}
    r = await oenv.client.put("/providers/smtp", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in r.text
    assert (await oenv.client.get("/providers/smtp")).json() == before


async def test_secret_must_be_reentered_when_hosts_change(oenv: Env, exo: ExoSmtpServer) -> None:
    assert (await oenv.client.put("/providers/smtp", json=oauth_body(exo))).status_code == 200
    for change in ({"host": "smtp.evil.example"}, {"cloud": "usgov_gcch", "authority_host": None}):
        body = {**oauth_body(exo), **change}
        del body["client_secret"]
        r = await oenv.client.put("/providers/smtp", json=body)
        assert r.status_code in (400, 422), r.text
        assert "client_secret" in r.text
    # Same hosts, secret left out: kept.
    body = oauth_body(exo, from_name="Contoso ERP")
    del body["client_secret"]
    r = await oenv.client.put("/providers/smtp", json=body)
    assert r.status_code == 200 and r.json()["client_secret_set"] is True


async def test_no_client_secret_holds_without_asking(oenv: Env, exo: ExoSmtpServer) -> None:
    body = oauth_body(exo)
    del body["client_secret"]
    r = await oenv.client.put("/providers/smtp", json=body)
    assert r.status_code == 200
    assert any("No client secret" in w for w in r.json()["warnings"])
    [mid] = await _submit(oenv, 1)
    await oenv.deliver()
    msg = (await oenv.client.get(f"/messages/{mid}")).json()
    assert msg["status"] == "held" and msg["error_type"] == "entra.client_secret_missing"
    assert exo.token_requests == 0


async def test_password_to_microsoft365_warns_in_settings_status_and_verify(oenv: Env) -> None:
    body = {**WHOLE, "host": "smtp.office365.com", "port": 587, "tls": "starttls", "authentication_required": True,
            "username": "batch@contoso.com", "password": "pw", "from_address": "batch@contoso.com"}
    r = await oenv.client.put("/providers/smtp", json=body)
    assert r.status_code == 200
    [warning] = [w for w in r.json()["warnings"] if "December 2026" in w]
    assert "oauth2_client_credentials" in warning and "Microsoft Graph" in warning
    status = (await oenv.client.get("/status")).json()
    [smtp] = [p for p in status["providers"] if p["id"] == "smtp"]
    assert warning in smtp["warnings"]
    # verify says it too; here without touching the network: the stored password cannot be decrypted.
    await oenv.sql("UPDATE provider_config SET secrets_encrypted = 'not-a-fernet-token' WHERE id = 'smtp'")
    v = (await oenv.client.post("/providers/smtp/verify")).json()
    assert v["ok"] is False and v["error_type"] == "secret.undecryptable"
    assert warning in v["warnings"]
    # With OAuth the warning is gone.
    oauth = {**body, "auth_method": "oauth2_client_credentials", "tenant_id": "contoso.onmicrosoft.com",
             "client_id": "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f", "client_secret": "s",
             "authentication_required": False}
    del oauth["password"]
    r = await oenv.client.put("/providers/smtp", json=oauth)
    assert r.status_code == 200, r.text
    assert not any("December 2026" in w for w in r.json()["warnings"])


def _pem(key_type: trustme.KeyType = trustme.KeyType.RSA) -> tuple[str, bytes]:
    leaf = trustme.CA().issue_cert("outbox-smtp-app", key_type=key_type)
    cert = leaf.cert_chain_pems[0].bytes()
    return leaf.private_key_pem.bytes().decode() + cert.decode(), cert


async def test_client_certificate_instead_of_a_secret(oenv: Env, exo: ExoSmtpServer) -> None:
    pem, cert = _pem()
    thumbprint = exo.entra.authority.register_certificate(cert)
    body = oauth_body(exo, client_certificate=pem)
    del body["client_secret"]
    r = await oenv.client.put("/providers/smtp", json=body)
    assert r.status_code == 200, r.text
    public = r.json()
    assert public["client_certificate_set"] is True and public["client_secret_set"] is False
    assert public["client_certificate_thumbprint"] == thumbprint
    assert public["client_certificate_expires"] and "PRIVATE KEY" not in r.text
    assert not any("No client secret" in w for w in public["warnings"])
    v = (await oenv.client.post("/providers/smtp/verify")).json()
    assert v["ok"] is True, v
    [mid] = await _submit(oenv, 1)
    await oenv.deliver()
    assert (await oenv.client.get(f"/messages/{mid}")).json()["status"] == "sent"
    assert all("client_assertion" in t.form and "client_secret" not in t.form for t in exo.entra.token_requests)
    # A certificate the app registration does not know: verify's sign-in step says so.
    other, _ = _pem()
    r = await oenv.client.patch("/providers/smtp", json={"client_certificate": other},
                                headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["client_certificate_thumbprint"] != thumbprint
    v = (await oenv.client.post("/providers/smtp/verify")).json()
    assert v["ok"] is False and v["steps"][0]["step"] == "sign_in"
    assert v["error_type"] == "entra.invalid_client_certificate" and "thumbprint" in v["fix"]


@pytest.mark.parametrize("case", ["garbage", "ec_key", "mismatch", "token_endpoint"])
async def test_bad_client_certificate_is_refused(oenv: Env, exo: ExoSmtpServer, case: str) -> None:
    pem, _ = _pem()
    body = oauth_body(exo)
    if case == "garbage":
        body["client_certificate"] = "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n"
    elif case == "ec_key":
        body["client_certificate"] = _pem(trustme.KeyType.ECDSA)[0]
    elif case == "mismatch":
        key = pem.split("-----BEGIN CERTIFICATE-----")[0]
        body["client_certificate"] = key + _pem()[1].decode()
    else:
        body.update(auth_method="oauth2_token_endpoint", tenant_id=None, authority_host=None, scope="x/.default",
                    token_url="https://login.example.com/token", client_certificate=pem)
    r = await oenv.client.put("/providers/smtp", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "client_certificate"
    assert (await oenv.client.get("/providers/smtp")).json()["configured"] is False
