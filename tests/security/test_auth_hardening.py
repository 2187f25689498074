"""Issue 12 items 8 and 10: wrong keys are cached and rate limited per client; a disabled user's keys stop at
once; /status and /metrics can require a key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from tests.conftest import Env, running_env
from tests.support.live_api import LiveApi

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with LiveApi(tmp_path_factory.mktemp("auth"), OUTBOX_AUTH_FAILURES_PER_MINUTE="5") as live:
        yield live


def test_failed_authentications_are_rate_limited_per_client(api: LiveApi) -> None:
    with httpx.Client(base_url=api.base) as c:
        good = {"Authorization": f"Bearer {api.key}"}
        assert c.get("/messages", headers=good).status_code == 200  # verified: cached for a few seconds
        for i in range(5):
            r = c.get("/messages", headers={"Authorization": f"Bearer obx_guess{i}"})
            assert r.status_code == 401, r.text
        r = c.get("/messages", headers={"Authorization": "Bearer obx_guess-next"})
        assert r.status_code == 429 and r.headers["content-type"] == PROBLEM, r.text
        assert r.json()["type"].endswith("/too-many-failed-authentications")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        # A key this process verified a moment ago still works; an unverified one is refused without a lookup.
        assert c.get("/messages", headers=good).status_code == 200
        assert c.post("/messages", headers={"Authorization": "Bearer obx_x"}, json={}).status_code == 429


async def test_wrong_key_is_looked_up_once(env: Env) -> None:
    lookups: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "api_key" in statement:
            lookups.append(statement)

    event.listen(env.app.state.engine.sync_engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            r = await env.client.get("/messages", headers={"Authorization": "Bearer obx_same-wrong-guess"})
            assert r.status_code == 401
    finally:
        event.remove(env.app.state.engine.sync_engine, "before_cursor_execute", count)
    assert len(lookups) == 1, lookups


async def test_disabled_users_keys_stop_at_once(env: Env) -> None:
    uid = (await env.client.post("/users", json={"name": "Alice", "email": "alice@example.com"})).json()["id"]
    key = await env.new_key("user", user_id=uid)
    mine = {"Authorization": f"Bearer {key}"}
    assert (await env.client.get("/messages", headers=mine)).status_code == 200  # now cached
    assert (await env.client.patch(f"/users/{uid}", json={"enabled": False})).status_code == 200
    for method, path in (("GET", "/messages"), ("GET", f"/users/{uid}/options"), ("POST", "/messages/1/cancel")):
        r = await env.client.request(method, path, headers=mine)
        assert r.status_code == 401, (path, r.text)
        assert "disabled" in r.json()["detail"]
    assert (await env.client.patch(f"/users/{uid}", json={"enabled": True})).status_code == 200
    assert (await env.client.get("/messages", headers=mine)).status_code == 200


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_status_and_metrics_can_require_a_key(db_url: str) -> None:
    async with running_env(db_url, OUTBOX_STATUS_REQUIRES_KEY=True) as env:
        for path in ("/status", "/metrics"):
            r = await env.client.get(path, headers={"Authorization": ""})
            assert r.status_code == 401 and r.headers["content-type"] == PROBLEM, path
            service = await env.new_key("service")
            assert (await env.client.get(path, headers=env.auth(service))).status_code == 200
        for path in ("/healthz", "/readyz"):
            assert (await env.client.get(path, headers={"Authorization": ""})).status_code == 200
    async with running_env(db_url) as env:  # the default: open, as before
        assert (await env.client.get("/status", headers={"Authorization": ""})).status_code == 200
