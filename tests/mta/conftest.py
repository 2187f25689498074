"""Real-MTA fixtures: one Postfix + Dovecot for the whole session (started in about 3 s), an Outbox per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, running_env
from tests.support.postfix import Postfix, running_postfix

TLS_OF = {"plain": "none", "submission": "starttls", "smtps": "tls", "helo": "none", "ratelimit": "none",
          "idle": "none", "blocked": "none"}


@pytest.fixture(scope="session")
def postfix() -> Iterator[Postfix]:
    with running_postfix() as server:
        yield server


@pytest.fixture
async def mta_env(postfix: Postfix, sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Env]:
    """An Outbox (SQLite: the store does not matter here) that trusts the fixture's test CA."""
    db = tmp_path / "outbox.db"
    db.write_bytes(sqlite_template.read_bytes())
    async with running_env(f"sqlite:///{db}", OUTBOX_SMTP_CA_BUNDLE=postfix.ca_file) as env:
        yield env


async def use_postfix(env: Env, postfix: Postfix, listener: str, **extra: Any) -> None:
    """Point Outbox's SMTP provider at one of the fixture's listeners."""
    body = {"host": "127.0.0.1", "port": postfix.ports[listener], "tls": TLS_OF[listener],
            "authentication_required": False, "from_address": "batch@example.com", "per_minute_limit": 0,
            "timeout_seconds": 5, **extra}
    r = await env.client.patch("/providers/smtp", json=body)
    assert r.status_code == 200, r.text


async def submit(env: Env, **fields: Any) -> int:
    body = {"to": ["rcpt@example.com"], "from": "batch@example.com", "subject": "hello", "body_text": "Hello.",
            **fields}
    r = await env.client.post("/messages", json=body)
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


async def message(env: Env, message_id: int) -> dict[str, Any]:
    r = await env.client.get(f"/messages/{message_id}")
    assert r.status_code == 200, r.text
    got: dict[str, Any] = r.json()
    return got


async def send(env: Env, **fields: Any) -> dict[str, Any]:
    """Submit one message, run one delivery pass, return the message as the API shows it."""
    mid = await submit(env, **fields)
    await env.deliver()
    return await message(env, mid)
