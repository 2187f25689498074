"""Issue 12 items 8 and 10: wrong keys are cached and rate limited per client; a disabled user's keys stop at
once; /status and /metrics can require a key."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from arq.connections import ArqRedis
from sqlalchemy import event

from app.users import auth_cache
from tests.conftest import REDIS, Env, running_env
from tests.support.live_api import LiveApi
from tests.support.smtp_server import free_port

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with LiveApi(tmp_path_factory.mktemp("auth"), OUTBOX_AUTH_FAILURES_PER_MINUTE="5") as live:
        yield live


def test_failed_authentications_are_rate_limited_per_client(api: LiveApi) -> None:
    _clear_failure_counts()
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


def _clear_failure_counts() -> None:
    """The counters are shared through Redis: start from none (other tests may have failed from 127.0.0.1)."""
    r = redis.Redis.from_url(os.environ.get("TEST_REDIS", "redis://127.0.0.1:6379/15"))
    try:
        for key in r.scan_iter(f"{auth_cache.FAILURE_KEY}:*"):
            r.delete(key)
    finally:
        r.close()


def test_the_limit_holds_for_all_api_processes_together(tmp_path: Path) -> None:
    """Two API processes sharing Redis (uvicorn --workers, or two replicas): guesses spread over both get the
    limit once in total, not once per process. Each process alone has seen only half of them."""
    for attempt in range(3):  # again only when a minute (the counting window) ended during the sequence
        _clear_failure_counts()
        with LiveApi(tmp_path / f"a{attempt}", OUTBOX_AUTH_FAILURES_PER_MINUTE="6") as a, \
                LiveApi(tmp_path / f"b{attempt}", OUTBOX_AUTH_FAILURES_PER_MINUTE="6") as b, \
                httpx.Client() as c:
            good_a = {"Authorization": f"Bearer {a.key}"}
            assert c.get(a.base + "/messages", headers=good_a).status_code == 200  # verified by A: cached
            window = int(time.time() // auth_cache.FAILURE_WINDOW)
            codes = [c.get((a, b)[i % 2].base + "/messages",
                           headers={"Authorization": f"Bearer obx_guess{i}"}).status_code for i in range(10)]
            if int(time.time() // auth_cache.FAILURE_WINDOW) != window:
                continue
            assert codes == [401] * 6 + [429] * 4, codes  # 3 failures seen by each process, 6 in total
            r = c.get(b.base + "/messages", headers={"Authorization": f"Bearer {b.key}"})
            assert r.status_code == 429 and r.headers["content-type"] == PROBLEM, r.text  # B never verified it
            assert 1 <= int(r.headers["retry-after"]) <= 60
            assert c.get(a.base + "/messages", headers=good_a).status_code == 200  # the cached path: no Redis
            return
    pytest.fail("a counting window ended during each of three tries")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_redis_unreachable_falls_back_to_the_per_process_count(db_url: str) -> None:
    """Fails open to the per-process limit: without Redis the count of this process still applies."""
    async with running_env(db_url, OUTBOX_AUTH_FAILURES_PER_MINUTE=3) as env:
        assert (await env.client.get("/messages")).status_code == 200  # the admin key, verified: cached
        shared = env.app.state.redis
        env.app.state.redis = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
        try:
            codes = [(await env.client.get("/messages", headers={"Authorization": f"Bearer obx_g{i}"})).status_code
                     for i in range(5)]
            assert codes == [401, 401, 401, 429, 429], codes
            assert (await env.client.get("/messages")).status_code == 200  # the admin key: verified, cached
        finally:
            await env.app.state.redis.aclose()
            env.app.state.redis = shared
        assert await shared.keys(f"{auth_cache.FAILURE_KEY}:*") == []  # nothing reached Redis


async def _redis_commands(env: Env, requests: int, headers: dict[str, str]) -> list[str]:
    """The Redis commands made on the test database while `requests` GETs are answered (Redis's MONITOR)."""
    watcher = redis.asyncio.Redis.from_url(REDIS)
    seen: list[str] = []
    try:
        async with watcher.monitor() as monitor:
            for _ in range(requests):
                await env.client.get("/messages/999999", headers=headers)
            await env.redis.echo("end-of-requests")
            for _ in range(100_000):  # bounded: other tests' databases share the server
                command = await asyncio.wait_for(monitor.next_command(), 10)
                if command["command"] == "ECHO end-of-requests":
                    break
                if command["db"] == env.redis.connection_pool.connection_kwargs.get("db"):
                    seen.append(command["command"])
    finally:
        await watcher.aclose()
    return seen


async def test_a_verified_key_costs_no_redis_command(env: Env) -> None:
    """The hot path: a key this process verified in the last seconds is served from its cache, with no Redis
    command; the shared failure count is read only before a database lookup, and written on a failure."""
    assert (await env.client.get("/messages")).status_code == 200  # verified: cached
    cached = await _redis_commands(env, 20, {})
    assert not [c for c in cached if auth_cache.FAILURE_KEY in c], cached
    wrong = [c.split(" ")[0] for c in await _redis_commands(env, 1, {"Authorization": "Bearer obx_unknown"})
             if auth_cache.FAILURE_KEY in c]
    assert wrong == ["GET", "INCRBY", "EXPIRE"], wrong  # the INCR and EXPIRE in one MULTI, one round trip
