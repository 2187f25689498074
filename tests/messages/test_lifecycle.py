"""Retries, expiry, retention, batch processing on/off, the reconciler, and a real arq worker."""

from __future__ import annotations

import asyncio
from typing import Any, get_args

import pytest
from arq.worker import Worker

from tests.conftest import Env
from tests.support.smtp_server import SmtpServer

MSG = {"to": ["a@example.com"], "from": "s@example.com", "subject": "life", "body_text": "x"}


async def _submit(env: Env, **extra: object) -> int:
    r = await env.client.post("/messages", json={**MSG, **extra})
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


async def _get(env: Env, mid: int) -> dict[str, Any]:
    got: dict[str, Any] = (await env.client.get(f"/messages/{mid}")).json()
    return got


async def _make_due(env: Env) -> None:
    await env.sql("UPDATE message SET next_attempt_at = created_at WHERE status IN ('retrying', 'deferred')")


async def test_transient_failure_backs_off_then_sends(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    smtp.handler.data_script.append("451 4.3.0 try again later")
    mid = await _submit(env)
    await env.deliver()
    m = await _get(env, mid)
    assert m["status"] == "retrying" and m["attempts"] == 1 and m["next_attempt_at"] is not None
    assert await env.deliver() == 0  # not due yet: the schedule is in the database
    await _make_due(env)
    await env.deliver()
    m = await _get(env, mid)
    assert m["status"] == "sent" and m["attempts"] == 2
    assert [a["outcome"] for a in m["attempt_log"]] == ["transient", "sent"]


async def test_retries_exhausted_fail(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    env.worker_ctx["settings"] = env.settings.model_copy(update={"max_attempts": 3})
    smtp.handler.data_script.extend(["451 4.3.0 later"] * 3)
    mid = await _submit(env)
    for _ in range(3):
        await env.deliver()
        await _make_due(env)
    m = await _get(env, mid)
    assert m["status"] == "failed" and m["attempts"] == 3
    assert "Gave up after 3 attempts" in str(m["error"])


async def test_unsent_messages_expire_and_are_never_sent(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    mid = await _submit(env)
    await env.sql("UPDATE message SET expires_at = created_at")
    await env.reconcile()
    m = await _get(env, mid)
    assert m["status"] == "expired"
    await env.deliver()
    assert smtp.received == []
    hist = (await env.client.get("/history", params={"status": "expired"})).json()
    assert hist["total"] == 1


async def test_history_purge_keeps_unsent(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    old = await _submit(env)
    await env.deliver()
    params = (await env.client.get("/parameters")).json()
    await env.client.put("/parameters", json={**params, "batch_processing_enabled": False})
    waiting = await _submit(env)
    await env.sql("UPDATE message SET finished_at = '2000-01-01 00:00:00', created_at = '2000-01-01 00:00:00'")
    await env.redis.delete("outbox:reconcile:sweep")
    await env.reconcile()
    assert (await env.client.get(f"/messages/{old}")).status_code == 404
    assert (await _get(env, waiting))["status"] == "queued"


async def test_history_purge_goes_in_batches_oldest_first(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.clock import utcnow
    from app.messages import lifecycle

    monkeypatch.setattr(lifecycle, "PURGE_BATCH", 3)
    monkeypatch.setattr(lifecycle, "PURGE_BATCHES", 2)
    r = await env.client.post("/messages/bulk", json={"messages": [
        {"to": ["a@example.com"], "subject": f"m{i}", "body_text": "x"} for i in range(9)]})
    assert r.status_code == 202, r.text
    # Seven finished long ago (sent or failed), at distinct times; two still waiting.
    await env.sql("UPDATE message SET status = 'sent', finished_at = '2000-01-01 00:00:00' "
                  "WHERE subject IN ('m0', 'm1', 'm2', 'm3', 'm4')")
    await env.sql("UPDATE message SET finished_at = '1999-01-01 00:00:00' WHERE subject = 'm4'")
    await env.sql("UPDATE message SET status = 'failed', finished_at = '2000-01-01 00:00:00' "
                  "WHERE subject IN ('m5', 'm6')")
    before = utcnow()
    async with env.app.state.sessionmaker() as s:
        first = await lifecycle.purge_history(s, before)
        await s.commit()
    # At most 2 batches of 3 per status in one sweep: 5 sent -> 5 (3 + 2), 2 failed -> 2.
    assert first == 7
    left = {row[0] for row in await env.sql("SELECT subject FROM message")}
    assert left == {"m7", "m8"}
    monkeypatch.setattr(lifecycle, "PURGE_BATCHES", 1)
    await env.sql("UPDATE message SET status = 'sent', finished_at = '2000-01-01 00:00:00'")
    await env.sql("UPDATE message SET finished_at = '1999-01-01 00:00:00' WHERE subject = 'm8'")
    async with env.app.state.sessionmaker() as s:
        assert await lifecycle.purge_history(s, before) == 2
        await s.commit()


async def test_history_purge_reads_the_finished_index(pg_env: Env) -> None:
    """Even when PostgreSQL's statistics predate the history (nothing finished when it last analysed), a purge
    batch is a range of ix_message_status_finished, not a walk of every row of the status."""
    from sqlalchemy.dialects import postgresql

    from app.core.clock import utcnow
    from app.messages import lifecycle

    for _ in range(4):
        r = await pg_env.client.post("/messages/bulk", json={"messages": [
            {"to": ["a@example.com"], "subject": "m", "body_text": "x"} for _ in range(500)]})
        assert r.status_code == 202, r.text
    await pg_env.sql("ANALYZE message")  # statistics of a backlog: nothing finished
    await pg_env.sql("UPDATE message SET status = 'sent', finished_at = now() - interval '1 day' * (id % 100)")
    stmt = lifecycle.purge_batch("sent", utcnow()).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})  # type: ignore[no-untyped-call]
    plan = "\n".join(r[0] for r in await pg_env.sql(f"EXPLAIN {stmt}"))
    assert "ix_message_status_finished" in plan, plan


async def test_batch_processing_off_waits_then_sends(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    params = (await env.client.get("/parameters")).json()
    await env.client.put("/parameters", json={**params, "batch_processing_enabled": False})
    mid = await _submit(env)
    assert await env.deliver() == 0
    assert (await _get(env, mid))["status"] == "queued"
    st = (await env.client.get("/status")).json()
    assert st["batch_processing_enabled"] is False and st["queue"]["waiting"] == 1
    await env.client.put("/parameters", json={**params, "batch_processing_enabled": True})
    await env.deliver()
    assert (await _get(env, mid))["status"] == "sent"


async def test_reconciler_recovers_after_redis_flush(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    ids = [await _submit(env, subject=f"r{i}") for i in range(5)]
    await env.redis.flushdb()  # every job is gone; the rows are not
    stats = await env.reconcile()
    assert stats["due"] == 1
    queued = await env.redis.zcard(env.settings.queue_name)
    assert queued >= 1
    await env.deliver()
    assert {(await _get(env, i))["status"] for i in ids} == {"sent"}
    assert len(smtp.received) == 5


async def test_expired_lease_is_sent_again_flagged_uncertain(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    mid = await _submit(env)
    # A worker claimed it and died: status sending, lease in the past.
    await env.sql("UPDATE message SET status = 'sending', claimed_by = 'dead', lease_until = '2000-01-01 00:00:00'")
    assert await env.deliver() == 0  # a live lease-holder would still own it; nobody steals before expiry
    stats = await env.reconcile()
    assert stats["released"] == 1
    await env.deliver()
    m = await _get(env, mid)
    assert m["status"] == "sent" and m["uncertain"] is True


async def test_cancel_and_retry(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    params = (await env.client.get("/parameters")).json()
    await env.client.put("/parameters", json={**params, "batch_processing_enabled": False})
    mid = await _submit(env)
    r = await env.client.post(f"/messages/{mid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (await env.client.post(f"/messages/{mid}/cancel")).status_code == 409
    await env.client.put("/parameters", json={**params, "batch_processing_enabled": True})
    smtp.handler.data_script.append("550 5.7.1 rejected")
    failed = await _submit(env)
    await env.deliver()
    assert (await _get(env, failed))["status"] == "failed"
    r = await env.client.post(f"/messages/{failed}/retry")
    assert r.status_code == 200 and r.json()["status"] == "queued"
    await env.deliver()
    m = await _get(env, failed)
    assert m["status"] == "sent"
    assert len({r.message["Message-ID"] for r in smtp.received}) == 1


async def test_real_arq_worker_picks_up_enqueued_job(env: Env, smtp: SmtpServer) -> None:
    from worker.main import WorkerSettings

    await env.use_smtp(smtp)
    mid = await _submit(env)
    for _ in range(100):  # enqueued after commit, by the API's job flusher a few milliseconds later
        if await env.redis.zcard(env.settings.queue_name) >= 1:
            break
        await asyncio.sleep(0.01)
    assert await env.redis.zcard(env.settings.queue_name) >= 1

    async def on_startup(ctx: dict[str, object]) -> None:
        ctx.update(env.worker_ctx)
        ctx["redis"] = env.redis

    worker = Worker(
        functions=WorkerSettings.functions, redis_pool=env.redis, queue_name=env.settings.queue_name,
        burst=True, poll_delay=0.01, on_startup=on_startup, handle_signals=False, keep_result=0,
    )
    await asyncio.wait_for(worker.async_run(), timeout=30)
    # No worker.close(): it would close the shared pool (env.redis), which the fixture owns.
    assert (await _get(env, mid))["status"] == "sent"


async def test_status_and_metrics(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    await _submit(env)
    st = (await env.client.get("/status", headers={"Authorization": ""})).json()
    assert st["database"]["ok"] and st["redis"]["ok"]
    assert st["queue"]["by_status"] == {"queued": 1}
    assert st["queue"]["oldest_waiting_age_seconds"] is not None
    # The test worker context's heartbeat (a worker process a previous test stopped may still be counted for
    # a moment: its heartbeat outlives it by the TTL, which is what /status is for).
    assert env.worker_ctx["worker_id"] in [w["id"] for w in st["workers"]["items"]]
    assert st["workers"]["alive"] >= 1
    assert "throttle" in st and st["throttle"]["smtp"]["per_minute_limit"] == 0
    text = (await env.client.get("/metrics")).text
    assert 'outbox_messages{status="queued"} 1.0' in text
    alive = next(line for line in text.splitlines() if line.startswith("outbox_workers_alive "))
    assert float(alive.split()[1]) >= 1
    ready = await env.client.get("/readyz")
    assert ready.status_code == 200


class TestTransitions:
    """lifecycle owns the statuses: a write of a transition the table does not have is refused."""

    def test_every_write_moves_along_the_table(self) -> None:
        from app.messages import lifecycle

        for source, targets in lifecycle.TRANSITIONS.items():
            assert source in get_args(lifecycle.Status)
            assert targets <= set(get_args(lifecycle.Status))
        assert lifecycle.TRANSITIONS["sent"] == frozenset() and lifecycle.TRANSITIONS["cancelled"] == frozenset()
        with pytest.raises(lifecycle.IllegalTransition):
            lifecycle._legal(("sent",), "queued")
        with pytest.raises(lifecycle.IllegalTransition):
            lifecycle._legal(("queued",), "sent")

    async def test_record_refuses_an_outcome_that_is_not_a_send_result(self, env: Env, smtp: SmtpServer) -> None:
        from app.core.clock import utcnow
        from app.messages import lifecycle

        await env.use_smtp(smtp)
        mid = await _submit(env)
        bad = lifecycle.Outcome(message_id=mid, status="queued", provider="smtp", sender="a@example.com",
                                attempt_outcome="sent")
        async with env.app.state.sessionmaker() as s:
            with pytest.raises(lifecycle.IllegalTransition):
                await lifecycle.record(s, [bad], utcnow(), "w1")
        assert (await _get(env, mid))["status"] == "queued"
