"""SMTP AUTH XOAUTH2 against a real server: Postfix with Dovecot's `oauth2` passdb validating JWTs locally (the
signing key of the local Entra ID fake), tokens from a standard OAuth 2.0 client-credentials endpoint (the fake's,
through `auth_method: oauth2_token_endpoint`). What Exchange Online's stand-in (tests/support/exo_smtp.py) cannot
prove: that Outbox's XOAUTH2 is what a real SASL implementation accepts, and that its refusals are classified."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, running_env
from tests.mta.conftest import message, submit
from tests.support.exo_smtp import EntraAuthority
from tests.support.postfix import OAUTH2_USERNAME_CLAIM, USER, Postfix, running_postfix

SECRET = "dovecot-app-secret"


@pytest.fixture(scope="module")
def entra() -> Iterator[EntraAuthority]:
    fake = EntraAuthority(tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
                          client_id="0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f", client_secret=SECRET)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def oauth_postfix(entra: EntraAuthority) -> Iterator[Postfix]:
    with running_postfix(oauth2=True) as server:
        server.trust_jwt_key(entra.authority.key_id, entra.authority.public_key_pem)
        yield server


@pytest.fixture
async def xenv(oauth_postfix: Postfix, entra: EntraAuthority, sqlite_template: Path,
               tmp_path: Path) -> AsyncIterator[Env]:
    entra.reset()
    entra.authority.extra_claims[OAUTH2_USERNAME_CLAIM] = USER
    ca = tmp_path / "ca.pem"
    ca.write_text(Path(oauth_postfix.ca_file).read_text() + Path(entra.ca_path).read_text())
    db = tmp_path / "outbox.db"
    db.write_bytes(sqlite_template.read_bytes())
    async with running_env(f"sqlite:///{db}", OUTBOX_SMTP_CA_BUNDLE=str(ca)) as env:
        yield env


def _body(postfix: Postfix, entra: EntraAuthority, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": postfix.ports["submission"], "tls": "starttls",
            "auth_method": "oauth2_token_endpoint", "client_id": entra.client_id, "client_secret": SECRET,
            "token_url": f"{entra.authority_host}/{entra.tenant_id}/oauth2/v2.0/token",
            "scope": "https://mx.outbox.test/.default", "username": USER, "from_address": USER,
            "per_minute_limit": 0, "timeout_seconds": 10, **extra}


async def test_xoauth2_through_postfix_and_dovecot(xenv: Env, oauth_postfix: Postfix,
                                                   entra: EntraAuthority) -> None:
    r = await xenv.client.patch("/providers/smtp", json=_body(oauth_postfix, entra))
    assert r.status_code == 200, r.text
    v = (await xenv.client.post("/providers/smtp/verify")).json()
    assert v["ok"] is True, v
    ids = [await submit(xenv, subject=f"oauth {i}", to=[f"r{i}@example.com"]) for i in range(5)]
    await xenv.deliver()
    for mid in ids:
        got = await message(xenv, mid)
        assert got["status"] == "sent", got
    for i in range(5):
        [delivered] = oauth_postfix.wait_delivered(f"oauth {i}")
        assert delivered.recipient == f"r{i}@example.com"
    # verify's token and the worker's: two token requests for five messages.
    assert len(entra.token_requests) == 2
    log = oauth_postfix.log_text()
    assert "sasl_method=XOAUTH2" in log and f"sasl_username={USER}" in log


@pytest.mark.parametrize(("setup", "reason"), [
    (lambda e: e.authority.extra_claims.__setitem__(OAUTH2_USERNAME_CLAIM, "someone@example.com"), "user"),
    (lambda e: setattr(e.authority, "expires_in", -60), "expired"),
])
async def test_refused_token_holds_with_the_servers_reply(xenv: Env, oauth_postfix: Postfix,
                                                          entra: EntraAuthority, setup: Any, reason: str) -> None:
    setup(entra)
    assert (await xenv.client.patch("/providers/smtp", json=_body(oauth_postfix, entra))).status_code == 200
    mid = await submit(xenv, subject=f"refused {reason}")
    await xenv.deliver()
    got = await message(xenv, mid)
    assert got["status"] == "held", got
    [attempt] = got["attempt_log"]
    assert attempt["reply_code"] == 535 and attempt["error_type"] == "smtp.oauth.refused", attempt
    assert oauth_postfix.delivered() == [] or all(
        d.message["Subject"] != f"refused {reason}" for d in oauth_postfix.delivered())
