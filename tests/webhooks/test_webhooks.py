"""Webhooks end to end: real API, real worker functions, a real HTTP receiver on loopback that verifies the
signatures with the `standardwebhooks` library."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import Env, running_env
from tests.support.smtp_server import SmtpServer, free_port
from tests.support.webhook_receiver import Receiver, receiver
from tests.webhooks.conftest import add_endpoint, deliver_webhooks

MSG = {"to": ["a@example.com", "b@example.com"], "from": "s@example.com", "subject": "hook", "body_text": "x"}


async def _submit(env: Env, key: str | None = None, idem: str | None = None, **extra: Any) -> int:
    headers = {**(env.auth(key) if key else {}), **({"Idempotency-Key": idem} if idem else {})}
    r = await env.client.post("/messages", json={**MSG, **extra}, headers=headers or None)
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


async def _deliveries(env: Env, endpoint_id: int) -> list[dict[str, Any]]:
    r = await env.client.get(f"/webhooks/{endpoint_id}/deliveries")
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def _make_due(env: Env) -> None:
    await env.sql("UPDATE webhook_delivery SET next_attempt_at = created_at WHERE state = 'pending'")


async def test_crud_secret_once_and_url_rules(wenv: Env, hook: Receiver) -> None:
    created = await add_endpoint(wenv, hook, ["message.sent", "message.bounced"], description="erp")
    assert created["secret"].startswith("whsec_") and created["enabled"] is True
    assert created["events"] == ["message.bounced", "message.sent"] and created["owner_api_key_id"] is None
    got = (await wenv.client.get(f"/webhooks/{created['id']}")).json()
    assert "secret" not in got and got["url"] == hook.url
    stored = await wenv.sql("SELECT secret_encrypted FROM webhook_endpoint")
    assert created["secret"] not in stored[0][0]  # encrypted at rest
    for url, word in [("ftp://127.0.0.1/x", "http"), ("http://u:p@127.0.0.1/x", "password"),
                      ("http:///nohost", "host"), ("http://127.0.0.1/a b", "spaces")]:
        r = await wenv.client.post("/webhooks", json={"url": url, "events": ["message.sent"]})
        assert r.status_code == 422, (url, r.text)
        assert r.json()["errors"][0]["field"] == "url" and word in r.json()["detail"], r.text
    r = await wenv.client.post("/webhooks", json={"url": hook.url, "events": ["message.nope"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "events.0"
    r = await wenv.client.patch(f"/webhooks/{created['id']}", json={"events": ["message.failed"],
                                                                    "description": "x"})
    assert r.status_code == 200 and r.json()["events"] == ["message.failed"]
    assert (await wenv.client.get("/webhooks")).json()["total"] == 1
    assert (await wenv.client.delete(f"/webhooks/{created['id']}")).status_code == 204
    assert (await wenv.client.get(f"/webhooks/{created['id']}")).status_code == 404


async def test_private_addresses_refused_by_default(env: Env) -> None:
    for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://[::1]/x", "http://169.254.169.254/latest",
                "http://localhost/x", "http://[::ffff:127.0.0.1]/x"):
        r = await env.client.post("/webhooks", json={"url": url, "events": ["message.sent"]})
        assert r.status_code == 422, (url, r.text)
        assert r.json()["errors"][0]["field"] == "url" and "OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS" in r.json()["detail"]
    assert await env.sql("SELECT count(*) FROM webhook_endpoint") == [(0,)]


async def test_roles_service_keys_see_own_endpoints_and_messages(wenv: Env, smtp: SmtpServer) -> None:
    await wenv.use_smtp(smtp)
    svc1, svc2 = await wenv.new_key("service"), await wenv.new_key("service")
    user = (await wenv.client.post("/users", json={"name": "Alice", "email": "alice@example.com"})).json()
    user_key = await wenv.new_key("user", user["id"])
    async with receiver() as r1, receiver() as r2:
        e1 = await add_endpoint(wenv, r1, key=svc1)
        assert e1["owner_api_key_id"] is not None
        await add_endpoint(wenv, r2, key=svc2)
        r = await wenv.client.get("/webhooks", headers=wenv.auth(svc2))
        assert [w["url"] for w in r.json()["items"]] == [r2.url]
        assert (await wenv.client.get(f"/webhooks/{e1['id']}", headers=wenv.auth(svc2))).status_code == 404
        assert (await wenv.client.delete(f"/webhooks/{e1['id']}", headers=wenv.auth(svc2))).status_code == 404
        assert (await wenv.client.get("/webhooks", headers=wenv.auth(user_key))).status_code == 403
        assert (await wenv.client.get("/webhooks")).json()["total"] == 2  # the admin sees both
        m1 = await _submit(wenv, key=svc1)
        await wenv.deliver()
        assert await deliver_webhooks(wenv) == 1
        assert [d.payload["data"]["message_id"] for d in r1.received] == [m1]  # type: ignore[index]
        assert r2.received == []


async def test_sent_event_signed_with_everything(wenv: Env, hook: Receiver, smtp: SmtpServer) -> None:
    await wenv.use_smtp(smtp)
    ep = await add_endpoint(wenv, hook, ["message.sent", "message.failed"])
    mid = await _submit(wenv, idem="order-42")
    await wenv.deliver()
    assert await deliver_webhooks(wenv) == 1
    [d] = hook.received
    assert d.verified  # standardwebhooks.Webhook(secret).verify() accepted it
    p = d.payload
    assert p is not None and p["type"] == "message.sent"
    data = p["data"]
    assert data["event_id"] == d.headers["webhook-id"] and data["event_id"].startswith("evt_")
    assert data["message_id"] == mid and data["idempotency_key"] == "order-42" and data["status"] == "sent"
    assert data["message_id_header"].startswith("<")
    assert [(x["address"], x["field"], x["status"]) for x in data["recipients"]] == [
        ("a@example.com", "to", "accepted"), ("b@example.com", "to", "accepted")]
    # A different secret does not verify; the body is exactly what was signed.
    with pytest.raises(WebhookVerificationError, match="signature"):
        Webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=").verify(d.body, d.headers)
    [log] = await _deliveries(wenv, ep["id"])
    assert log["state"] == "delivered" and log["attempts"] == 1 and log["last_status_code"] == 204
    assert log["event_id"] == data["event_id"] and log["message_id"] == mid


async def test_failed_event_has_classification_and_refused_recipient(wenv: Env, hook: Receiver,
                                                                       smtp: SmtpServer) -> None:
    await wenv.use_smtp(smtp)
    await add_endpoint(wenv, hook, ["message.failed", "message.sent"])
    smtp.handler.rcpt_replies["b@example.com"] = "550 5.1.1 <b@example.com>: Recipient address rejected: unknown"
    mid = await _submit(wenv)
    await wenv.deliver()
    await deliver_webhooks(wenv)
    [d] = hook.received
    data = d.payload["data"]  # type: ignore[index]
    assert data["message_id"] == mid and data["status"] == "sent"
    by = {x["address"]: x for x in data["recipients"]}
    assert by["a@example.com"]["status"] == "accepted"
    assert by["b@example.com"]["status"] == "failed" and by["b@example.com"]["code"] == 550
    assert by["b@example.com"]["error_type"] and by["b@example.com"]["explanation"] and by["b@example.com"]["fix"]
    # Now a message refused outright.
    smtp.handler.data_script.append("554 5.7.1 Message rejected as spam")
    mid2 = await _submit(wenv)
    await wenv.deliver()
    await deliver_webhooks(wenv)
    p = hook.received[-1].payload
    assert p is not None and p["type"] == "message.failed" and p["data"]["message_id"] == mid2
    assert p["data"]["status"] == "failed" and p["data"]["reply_code"] == 554
    assert p["data"]["error_type"] and p["data"]["explanation"] and p["data"]["fix"]
    assert {x["status"] for x in p["data"]["recipients"]} == {"failed"}


async def test_nothing_written_without_endpoints(wenv: Env, smtp: SmtpServer) -> None:
    await wenv.use_smtp(smtp)
    await _submit(wenv)
    await wenv.deliver()
    assert await wenv.sql("SELECT count(*) FROM webhook_event") == [(0,)]


async def test_receiver_500_then_ok_retries_with_same_id(wenv: Env, smtp: SmtpServer) -> None:
    await wenv.use_smtp(smtp)
    async with receiver(answer=lambda n: (500, 0.0) if n == 1 else (200, 0.0)) as hook:
        ep = await add_endpoint(wenv, hook)
        await _submit(wenv)
        await wenv.deliver()
        await deliver_webhooks(wenv)
        [log] = await _deliveries(wenv, ep["id"])
        assert log["state"] == "pending" and log["attempts"] == 1 and log["last_status_code"] == 500
        assert log["last_error"].startswith("HTTP 500") and log["next_attempt_at"] is not None
        assert (await wenv.client.get(f"/webhooks/{ep['id']}")).json()["failing_since"] is not None
        assert await deliver_webhooks(wenv) == 0  # not due yet: the backoff is in the database
        await _make_due(wenv)
        await deliver_webhooks(wenv)
        [log] = await _deliveries(wenv, ep["id"])
        assert log["state"] == "delivered" and log["attempts"] == 2
        assert len(hook.received) == 1 and hook.requests == 2
        got = (await wenv.client.get(f"/webhooks/{ep['id']}")).json()
        assert got["failing_since"] is None and got["last_success_at"] is not None


async def test_slow_and_down_receivers(db_url: str, smtp: SmtpServer) -> None:
    async with running_env(db_url, OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS=True,
                           OUTBOX_WEBHOOK_TIMEOUT_SECONDS=0.5) as env:
        await env.use_smtp(smtp)
        async with receiver(answer=lambda _n: (200, 2.0)) as slow:
            slow_ep = await add_endpoint(env, slow)
            down = Receiver(port=free_port())  # nothing listens there
            r = await env.client.post("/webhooks", json={"url": down.url, "events": ["message.sent"]})
            down_ep = r.json()
            await _submit(env)
            await env.deliver()
            started = asyncio.get_running_loop().time()
            await deliver_webhooks(env)
            assert asyncio.get_running_loop().time() - started < 2.0  # the timeout, not the receiver, decides
            [s] = await _deliveries(env, slow_ep["id"])
            assert s["state"] == "pending" and "timeout" in s["last_error"]
            [d] = await _deliveries(env, down_ep["id"])
            assert d["state"] == "pending" and d["last_status_code"] is None and "Connect" in d["last_error"]


async def test_410_disables_and_reenabling_replays(wenv: Env, smtp: SmtpServer) -> None:
    await wenv.use_smtp(smtp)
    gone = True
    async with receiver(answer=lambda _n: (410, 0.0) if gone else (200, 0.0)) as hook:
        ep = await add_endpoint(wenv, hook)
        await _submit(wenv)
        await wenv.deliver()
        await deliver_webhooks(wenv)
        got = (await wenv.client.get(f"/webhooks/{ep['id']}")).json()
        assert got["enabled"] is False and "410" in got["disabled_reason"] and "re-enable" in got["disabled_reason"]
        # While disabled, events are still recorded for it, and nothing is sent.
        await _submit(wenv)
        await wenv.deliver()
        assert await deliver_webhooks(wenv) == 0
        assert (await wenv.client.get(f"/webhooks/{ep['id']}")).json()["pending_deliveries"] == 2
        gone = False
        r = await wenv.client.patch(f"/webhooks/{ep['id']}", json={"enabled": True})
        assert r.status_code == 200 and r.json()["replayed"] == 2 and r.json()["disabled_reason"] is None
        assert await deliver_webhooks(wenv) == 2
        assert len(hook.received) == 2 and all(d.verified for d in hook.received)


async def test_persistent_failure_gives_up_disables_then_replays(db_url: str, smtp: SmtpServer) -> None:
    # A retry window of 0.5 s stands for the three days.
    async with running_env(db_url, OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS=True, OUTBOX_WEBHOOK_RETRY_HOURS=0.5 / 3600,
                           OUTBOX_WEBHOOK_RETRY_BASE_SECONDS=0.05, OUTBOX_WEBHOOK_RETRY_MAX_SECONDS=0.1) as env:
        await env.use_smtp(smtp)
        failing = True
        async with receiver(answer=lambda _n: (503, 0.0) if failing else (204, 0.0)) as hook:
            ep = await add_endpoint(env, hook)
            await _submit(env)
            await env.deliver()
            for _ in range(40):
                await deliver_webhooks(env)
                got = (await env.client.get(f"/webhooks/{ep['id']}")).json()
                if not got["enabled"]:
                    break
                await asyncio.sleep(0.1)
            assert got["enabled"] is False, got
            assert "No successful delivery since" in got["disabled_reason"] and "HTTP 503" in got["disabled_reason"]
            [log] = await _deliveries(env, ep["id"])
            assert log["attempts"] >= 2 and log["state"] in ("failed", "pending")
            failing = False
            r = await env.client.patch(f"/webhooks/{ep['id']}", json={"enabled": True})
            assert r.json()["replayed"] == 1
            await deliver_webhooks(env)
            [log] = await _deliveries(env, ep["id"])
            assert log["state"] == "delivered" and len(hook.received) == 1


async def test_rotation_overlap_signs_with_both_and_test_ping(wenv: Env, hook: Receiver) -> None:
    ep = await add_endpoint(wenv, hook)
    old = hook.secrets[0]
    r = await wenv.client.post(f"/webhooks/{ep['id']}/secret", json={"overlap_seconds": 3600})
    assert r.status_code == 200 and r.json()["secret"] != old and r.json()["previous_secret_expires_at"]
    new = r.json()["secret"]
    r = await wenv.client.post(f"/webhooks/{ep['id']}/test")
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["status_code"] == 204, r.text
    [d] = hook.received
    assert d.payload is not None and d.payload["type"] == "webhook.test"
    assert len(d.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(d.body, d.headers)  # a receiver still on the old secret
    Webhook(new).verify(d.body, d.headers)  # and one already switched
    # Without overlap, only the new secret signs.
    r = await wenv.client.post(f"/webhooks/{ep['id']}/secret", json={"overlap_seconds": 0})
    newer = r.json()["secret"]
    await wenv.client.post(f"/webhooks/{ep['id']}/test")
    d2 = hook.received[-1]
    assert len(d2.headers["webhook-signature"].split(" ")) == 1
    Webhook(newer).verify(d2.body, d2.headers)
    log = await _deliveries(wenv, ep["id"])
    assert [x["type"] for x in log] == ["webhook.test", "webhook.test"]


async def test_test_ping_reports_failure(wenv: Env) -> None:
    async with receiver(answer=lambda _n: (500, 0.0)) as hook:
        ep = await add_endpoint(wenv, hook)
        r = await wenv.client.post(f"/webhooks/{ep['id']}/test")
        assert r.json()["ok"] is False and r.json()["status_code"] == 500 and r.json()["error"].startswith("HTTP 500")


async def test_redis_flushed_and_worker_dying_lose_no_event(db_url: str, smtp: SmtpServer) -> None:
    async with running_env(db_url, OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS=True) as env:
        await env.use_smtp(smtp)
        async with receiver() as hook:
            await add_endpoint(env, hook)
            for _ in range(3):
                await _submit(env)
            await env.deliver()  # the events are committed with the status changes; their job is enqueued
            assert await env.redis.zcard(env.settings.queue_name) >= 1
            await env.redis.flushdb()  # ... and lost
            # A worker claims the deliveries, then dies before recording anything (its lease is all that is left).
            from app.core.clock import utcnow
            from app.webhooks import delivery

            async with env.worker_ctx["sessionmaker"]() as s:
                claimed = await delivery.claim(s, utcnow(), 100, 4, not db_url.startswith("sqlite"))
                await s.commit()
            assert len(claimed) == 3
            assert (await env.reconcile())["webhooks_due"] == 0  # leased: not due yet
            await asyncio.sleep(4.1)
            assert (await env.reconcile())["webhooks_due"] == 1  # the lease expired: due again, job enqueued
            jobs = await env.redis.queued_jobs(queue_name=env.settings.queue_name)
            assert "webhooks.deliver" in [j.function for j in jobs]
            assert await deliver_webhooks(env) == 3
            assert len(set(hook.ids())) == 3 and all(d.verified for d in hook.received)


async def test_finished_deliveries_purged_with_history(wenv: Env, hook: Receiver, smtp: SmtpServer) -> None:
    await wenv.use_smtp(smtp)
    await add_endpoint(wenv, hook)
    await _submit(wenv)
    await wenv.deliver()
    await deliver_webhooks(wenv)
    async with receiver(answer=lambda _n: (500, 0.0)) as failing:
        await add_endpoint(wenv, failing)
        await _submit(wenv)
        await wenv.deliver()
        await deliver_webhooks(wenv)
    # Everything is older than the retention (30 days) now.
    await wenv.sql("UPDATE webhook_delivery SET created_at = '2020-01-01 00:00:00'")
    await wenv.sql("UPDATE webhook_event SET created_at = '2020-01-01 00:00:00'")
    await wenv.redis.delete("outbox:reconcile:sweep")
    await wenv.reconcile()
    states = sorted(r[0] for r in await wenv.sql("SELECT state FROM webhook_delivery"))
    assert states == ["pending"]  # the delivered ones went; the one still being retried stays
    assert await wenv.sql("SELECT count(*) FROM webhook_event") == [(1,)]
