"""Email expiration in days after a parameter change: the expiry follows the parameter, counted from each
message's creation (issue 15 item 7), and the reconciler expires those already past the new limit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.core.clock import utcnow
from tests.conftest import Env
from tests.support.smtp_server import SmtpServer


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _params(env: Env, **changes: Any) -> None:
    params = (await env.client.get("/parameters")).json()
    r = await env.client.put("/parameters", json={**params, **changes})
    assert r.status_code == 200, r.text


async def _msg(env: Env, mid: int) -> dict[str, Any]:
    got: dict[str, Any] = (await env.client.get(f"/messages/{mid}")).json()
    return got


async def test_expiration_follows_the_parameter_for_waiting_messages(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    await _params(env, email_expiration_days=30, batch_processing_enabled=False)  # messages wait
    old = (await env.client.post("/messages", json={"to": ["a@example.com"], "subject": "old"})).json()["id"]
    # It was queued two days ago under "30 days".
    created = utcnow() - timedelta(days=2)
    fmt = "%Y-%m-%d %H:%M:%S" + ("" if env.settings.database_url.startswith("sqlite") else "+00")
    await env.sql(f"UPDATE message SET created_at = '{created:{fmt}}', "
                  f"expires_at = '{created + timedelta(days=30):{fmt}}' WHERE id = {old}")
    m = await _msg(env, old)
    assert abs(_at(m["expires_at"]) - (_at(m["created_at"]) + timedelta(days=30))) < timedelta(seconds=1)

    await _params(env, email_expiration_days=1)
    m = await _msg(env, old)
    assert abs(_at(m["expires_at"]) - (_at(m["created_at"]) + timedelta(days=1))) < timedelta(seconds=1)
    new = (await env.client.post("/messages", json={"to": ["b@example.com"], "subject": "new"})).json()["id"]
    n = await _msg(env, new)
    assert abs(_at(n["expires_at"]) - (_at(n["created_at"]) + timedelta(days=1))) < timedelta(seconds=1)

    await env.redis.delete("outbox:reconcile:sweep")
    await env.reconcile()
    assert (await _msg(env, old))["status"] == "expired"
    assert (await _msg(env, new))["status"] == "queued"

    # Back to the default (0 = 30 days): the waiting message gets its 30 days back; the expired one stays.
    await _params(env, email_expiration_days=0, batch_processing_enabled=True)
    n = await _msg(env, new)
    assert abs(_at(n["expires_at"]) - (_at(n["created_at"]) + timedelta(days=30))) < timedelta(seconds=1)
    await env.deliver()
    assert [r.message["Subject"] for r in smtp.received] == ["new"]
    assert (await _msg(env, old))["status"] == "expired"
