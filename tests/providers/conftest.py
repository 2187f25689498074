"""Outbox end to end (API in-process + the worker's drain) against the local Graph and EWS fakes."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, running_env
from tests.fakes import fixtures
from tests.fakes.ews_server import EwsFake
from tests.fakes.graph_server import GraphFake

BATCH = "sender@contoso.com"  # a mailbox both fakes know

# The fakes' shared fixtures, registered for this directory (one server of each for its tests).
graph_server = fixtures.graph_server
ews_server = fixtures.ews_server
graph_fake = fixtures.graph_fake
ews_fake = fixtures.ews_fake


@pytest.fixture(scope="session")
def graph_mailboxes() -> tuple[str, ...]:
    return (BATCH, "other@contoso.com")


@pytest.fixture
def graph(graph_fake: GraphFake) -> GraphFake:
    return graph_fake


@pytest.fixture
def ews(ews_fake: EwsFake) -> EwsFake:
    return ews_fake


@pytest.fixture(scope="session")
def ms_ca(graph_server: GraphFake, ews_server: EwsFake, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One CA file trusting both fakes (OUTBOX_MICROSOFT_CA_BUNDLE is one file, as in a deployment)."""
    path = tmp_path_factory.mktemp("ms-ca") / "ca.pem"
    path.write_text(Path(graph_server.ca_path).read_text() + Path(ews_server.ca_path).read_text())
    return str(path)


def ms_settings(ca: str) -> dict[str, Any]:
    """What a test deployment sets: the fakes' CA, and host overrides allowed (off by default)."""
    return {"OUTBOX_MICROSOFT_CA_BUNDLE": ca, "OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE": True}


@pytest.fixture
async def menv(db_url: str, ms_ca: str) -> AsyncIterator[Env]:
    async with running_env(db_url, **ms_settings(ms_ca)) as e:
        yield e


def graph_body(fake: GraphFake, **extra: Any) -> dict[str, Any]:
    return {"tenant_id": fake.tenant_id, "client_id": fake.client_id, "client_secret": fake.client_secret,
            "batch_account": BATCH, "from_name": "Contoso batch", "authority_host": fake.authority_host,
            "graph_base": fake.graph_base, "timeout_seconds": 5, **extra}


async def use_graph(env: Env, fake: GraphFake, *, batch: bool = True, **extra: Any) -> dict[str, Any]:
    r = await env.client.patch("/providers/graph", json=graph_body(fake, **extra))
    assert r.status_code == 200, r.text
    if batch:
        p = await env.client.patch("/parameters", json={"batch_provider": "graph"})
        assert p.status_code == 200, p.text
    out: dict[str, Any] = r.json()
    return out


def exchange_body(fake: EwsFake, auth: str = "basic", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ews_url": fake.ews_url, "auth": auth, "batch_account": BATCH, "timeout_seconds": 5}
    if auth == "basic":
        body |= {"username": fake.username, "password": fake.password}
    else:
        body |= {"tenant_id": fake.tenant_id, "client_id": fake.client_id, "client_secret": fake.client_secret,
                 "authority_host": fake.authority_host}
    return body | extra


async def use_exchange(env: Env, fake: EwsFake, auth: str = "basic", **extra: Any) -> dict[str, Any]:
    r = await env.client.patch("/providers/exchange", json=exchange_body(fake, auth, **extra))
    assert r.status_code == 200, r.text
    p = await env.client.patch("/parameters", json={"batch_provider": "exchange"})
    assert p.status_code == 200, p.text
    out: dict[str, Any] = r.json()
    return out


async def submit(env: Env, **msg: Any) -> int:
    body = {"to": ["a@example.com"], "subject": "hello", "body_text": "hi", **msg}
    r = await env.client.post("/messages", json=body)
    assert r.status_code == 202, r.text
    mid: int = r.json()["id"]
    return mid


async def get(env: Env, mid: int) -> dict[str, Any]:
    r = await env.client.get(f"/messages/{mid}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def send(env: Env, **msg: Any) -> dict[str, Any]:
    mid = await submit(env, **msg)
    await env.deliver()
    return await get(env, mid)


async def make_due(env: Env) -> None:
    """Let time pass: every waiting message is due now, and no provider is paused."""
    await env.sql("UPDATE message SET next_attempt_at = created_at")
    for key in await env.redis.keys("outbox:throttle:*:pause"):
        await env.redis.delete(key)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
