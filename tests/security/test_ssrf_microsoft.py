"""Issue 12 leftovers: the network policy (OUTBOX_PROVIDER_ALLOWED_NETWORKS) covers every HTTP connection a
provider makes, not only SMTP and EWS: Microsoft Graph, the Entra ID sign-in host (MSAL: tenant discovery and the
token request that carries the client secret) and the token URL of SMTP OAuth. An administrator who may change
these URLs must not reach the internal network with them.

The forbidden listener is a `Peer` on 127.0.0.2 (or on 127.0.0.1 reached as `localhost` when nothing on loopback
is allowed), which counts connections: a refusal means not even a TCP handshake. The fakes that must work sit on
127.0.0.1, which the tests allow explicitly, as a deployment allows an internal relay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, running_env
from tests.fakes import fixtures
from tests.fakes.graph_server import GraphFake
from tests.support.exo_smtp import ExoSmtpServer, exo_smtp
from tests.support.peer import Peer

graph_mailboxes = fixtures.graph_mailboxes
graph_server = fixtures.graph_server
graph_fake = fixtures.graph_fake

BATCH = "sender@contoso.com"
REFUSED = "config.address_not_allowed"


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer(hold=0, host="127.0.0.2")
    yield p
    p.close()


@pytest.fixture
def local_peer() -> Iterator[Peer]:
    p = Peer(hold=0)
    yield p
    p.close()


@pytest.fixture
def exo(tmp_path: Path) -> Iterator[ExoSmtpServer]:
    with exo_smtp(tmp_path) as server:
        yield server


@asynccontextmanager
async def _env(db_url: str, ca: str, allowed: str) -> AsyncIterator[Env]:
    async with running_env(db_url, OUTBOX_MICROSOFT_CA_BUNDLE=ca, OUTBOX_SMTP_CA_BUNDLE=ca,
                           OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE=True, OUTBOX_PROVIDER_ALLOWED_NETWORKS=allowed) as e:
        yield e


def _graph(fake: GraphFake, **extra: Any) -> dict[str, Any]:
    return {"tenant_id": fake.tenant_id, "client_id": fake.client_id, "client_secret": fake.client_secret,
            "batch_account": BATCH, "authority_host": fake.authority_host, "graph_base": fake.graph_base,
            "timeout_seconds": 5, **extra}


async def _held(env: Env, provider: str) -> dict[str, Any]:
    """Submit one message through `provider`, run the worker's drain, return the message."""
    assert (await env.client.patch("/parameters", json={"batch_provider": provider})).status_code == 200
    r = await env.client.post("/messages", json={"to": ["a@example.com"], "subject": "s", "body_text": "b"})
    assert r.status_code == 202, r.text
    await env.deliver()
    msg: dict[str, Any] = (await env.client.get(f"/messages/{r.json()['id']}")).json()
    return msg


def _assert_refused(v: dict[str, Any], host: str) -> None:
    assert v["ok"] is False and v["error_type"] == REFUSED, v
    assert f"{host} resolves to" in v["detail"] and "OUTBOX_PROVIDER_ALLOWED_NETWORKS" in v["detail"], v
    assert "not on the public internet" in v["explanation"] and "OUTBOX_PROVIDER_ALLOWED_NETWORKS" in v["fix"], v


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_graph_endpoint_on_a_forbidden_address(db_url: str, graph_fake: GraphFake, peer: Peer) -> None:
    """Sign-in at the fake (allowed, 127.0.0.1) succeeds; the Graph call to 127.0.0.2 is refused before connecting."""
    evil = f"https://127.0.0.2:{peer.port}/v1.0"
    async with _env(db_url, graph_fake.ca_path, "127.0.0.1/32") as env:
        r = await env.client.patch("/providers/graph", json=_graph(graph_fake, graph_base=evil))
        assert r.status_code == 200, r.text
        v = (await env.client.post("/providers/graph/verify")).json()
        _assert_refused(v, "127.0.0.2")
        assert "127.0.0.2 (loopback)" in v["detail"]
        msg = await _held(env, "graph")
        assert msg["status"] == "held" and msg["error_type"] == REFUSED, msg
        assert graph_fake.sent == []
    assert peer.connections == 0
    async with _env(db_url, graph_fake.ca_path, "127.0.0.0/8") as env:  # allowed: the connection is made
        await env.client.patch("/providers/graph", json=_graph(graph_fake, graph_base=evil))
        v = (await env.client.post("/providers/graph/verify")).json()
        assert v["ok"] is False and v["error_type"] != REFUSED, v
    assert peer.connections >= 1


@pytest.mark.parametrize("provider", ["graph", "exchange", "smtp"])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_sign_in_host_resolving_to_a_forbidden_address(db_url: str, graph_fake: GraphFake,
                                                             local_peer: Peer, provider: str) -> None:
    """The authority (Entra ID host) of each provider, named by a host name that resolves to loopback: MSAL's
    tenant discovery and token request are refused, so the client secret goes nowhere."""
    authority = f"https://localhost:{local_peer.port}"
    body: dict[str, Any] = {"graph": _graph(graph_fake, authority_host=authority),
                            "exchange": {"ews_url": "https://outlook.office365.com/EWS/Exchange.asmx",
                                         "auth": "oauth", "tenant_id": graph_fake.tenant_id,
                                         "client_id": graph_fake.client_id, "client_secret": "s3cret",
                                         "authority_host": authority, "batch_account": BATCH, "timeout_seconds": 5},
                            "smtp": {"host": "smtp.office365.com", "port": 587, "tls": "starttls",
                                     "auth_method": "oauth2_client_credentials", "tenant_id": graph_fake.tenant_id,
                                     "client_id": graph_fake.client_id, "client_secret": "s3cret",
                                     "authority_host": authority, "username": BATCH, "from_address": BATCH,
                                     "timeout_seconds": 5}}[provider]
    async with _env(db_url, graph_fake.ca_path, "") as env:  # as in production: no loopback
        r = await env.client.patch(f"/providers/{provider}", json=body)
        assert r.status_code == 200, r.text
        v = (await env.client.post(f"/providers/{provider}/verify")).json()
        _assert_refused(v, "localhost")
        assert "127.0.0.1 (loopback)" in v["detail"]
        if provider == "smtp":  # the first step, before the SMTP connection
            assert [s["step"] for s in v["steps"] if s["ok"] is False] == ["sign_in"], v
        if provider != "smtp":  # the worker connects to the SMTP host (a public name) before it signs in
            msg = await _held(env, provider)
            assert msg["status"] == "held" and msg["error_type"] == REFUSED, msg
    assert local_peer.connections == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_smtp_token_url_on_a_forbidden_address(db_url: str, exo: ExoSmtpServer, peer: Peer) -> None:
    """SMTP OAuth with a generic token endpoint: the SMTP server (127.0.0.1) is allowed, the token URL
    (127.0.0.2, or the metadata address) is not. Verify and the worker both refuse before a byte is sent."""
    body = {"host": "127.0.0.1", "port": exo.port, "tls": "starttls", "auth_method": "oauth2_token_endpoint",
            "client_id": exo.entra.client_id, "client_secret": "s3cret", "scope": "https://outlook.office365.com/.default",
            "username": exo.mailbox, "from_address": exo.mailbox, "per_minute_limit": 0, "timeout_seconds": 5}
    async with _env(db_url, exo.ca_path, "127.0.0.1/32") as env:
        for url, host in ((f"https://127.0.0.2:{peer.port}/token", "127.0.0.2"),
                          ("https://169.254.169.254/metadata/identity/oauth2/token", "169.254.169.254")):
            r = await env.client.patch("/providers/smtp", json=body | {"token_url": url})
            assert r.status_code == 200, r.text
            v = (await env.client.post("/providers/smtp/verify")).json()
            _assert_refused(v, host)
        msg = await _held(env, "smtp")  # token_url is still the metadata address
        assert msg["status"] == "held" and msg["error_type"] == REFUSED, msg
        assert "169.254.169.254 (link-local (cloud metadata))" in msg["attempt_log"][-1]["reply_text"], msg
        assert exo.token_requests == 0 and exo.received == []
    assert peer.connections == 0
    async with _env(db_url, exo.ca_path, "127.0.0.0/8") as env:  # allowed: the token request is made
        await env.client.patch("/providers/smtp", json=body | {"token_url": f"https://127.0.0.2:{peer.port}/token"})
        v = (await env.client.post("/providers/smtp/verify")).json()
        assert v["ok"] is False and v["error_type"] != REFUSED, v
    assert peer.connections >= 1
