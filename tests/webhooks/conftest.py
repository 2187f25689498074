from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.bounces import listener
from tests.conftest import Env, running_env
from tests.support.webhook_receiver import Receiver, receiver

DOMAIN = "bounce.test"  # OUTBOX_BOUNCE_DOMAIN of `benv`


@pytest.fixture
async def wenv(db_url: str) -> AsyncIterator[Env]:
    # Receivers run on loopback: allowed here explicitly (off by default).
    async with running_env(db_url, OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS=True) as e:
        yield e


@pytest.fixture
async def benv(db_url: str) -> AsyncIterator[Env]:
    async with running_env(db_url, OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS=True, OUTBOX_BOUNCE_DOMAIN=DOMAIN) as e:
        yield e


@pytest.fixture
async def inbound(benv: Env) -> AsyncIterator[int]:
    """The bounce listener (`outbox bounces`) on a free loopback port."""
    server = await listener.start(benv.settings, benv.worker_ctx["sessionmaker"], benv.redis, "127.0.0.1:0")
    port = int(server.sockets[0].getsockname()[1])
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver() as r:
        yield r


async def add_endpoint(env: Env, r: Receiver, events: list[str] | None = None, key: str | None = None,
                       **extra: Any) -> dict[str, Any]:
    headers = env.auth(key) if key else None
    resp = await env.client.post("/webhooks", json={"url": r.url, "events": events or ["message.sent"], **extra},
                                 headers=headers)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    r.secrets.append(body["secret"])
    return body


async def deliver_webhooks(env: Env) -> int:
    from worker.webhooks import deliver_webhooks as job

    return await job(env.worker_ctx)
