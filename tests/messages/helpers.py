"""Typed factories for the interactive-mail tests: users, their keys, configured providers, drafts."""

from __future__ import annotations

import base64
from typing import Any

from app.models import ProviderConfig
from tests.conftest import Env

PROBLEM = "application/problem+json"


async def make_user(env: Env, name: str = "Alice Martin", email: str | None = "alice@contoso.com",
                    **extra: Any) -> dict[str, Any]:
    r = await env.client.post("/users", json={"name": name, "email": email, **extra})
    assert r.status_code == 201, r.text
    user: dict[str, Any] = r.json()
    return user


async def user_key(env: Env, user: dict[str, Any]) -> dict[str, str]:
    return env.auth(await env.new_key("user", user["id"]))


async def configure(env: Env, *providers: str) -> None:
    """Mark providers as configured (a provider_config row), without settings: enough for the dialog."""
    async with env.app.state.sessionmaker() as s:
        for p in providers:
            s.add(ProviderConfig(id=p, config={}))
        await s.commit()


async def set_options(env: Env, user: dict[str, Any], **options: Any) -> None:
    r = await env.client.put(f"/users/{user['id']}/options", json=options)
    assert r.status_code == 200, r.text


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def draft(env: Env, auth: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    body = {"draft": True, "to": ["customer@example.com"], "subject": "Statement", "body_text": "Hello", **fields}
    r = await env.client.post("/messages", json=body, headers=auth or {})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "draft"
    got: dict[str, Any] = (await env.client.get(f"/messages/{r.json()['id']}", headers=auth or {})).json()
    return got
