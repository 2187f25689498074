"""Priority lanes, scheduled sending, keyset pages and the status counters (issue 17), on both databases."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql

from app.messages import repository
from app.parameters.service import effective_days
from tests.conftest import Env
from tests.messages.helpers import PROBLEM, draft, make_user, user_key
from tests.support.smtp_server import SmtpServer

MSG = {"to": ["a@example.com"], "from": "s@example.com", "body_text": "x"}


def _iso(t: datetime) -> str:
    return t.isoformat()


async def _submit(env: Env, subject: str, **extra: Any) -> dict[str, Any]:
    r = await env.client.post("/messages", json={**MSG, "subject": subject, **extra})
    assert r.status_code == 202, r.text
    got: dict[str, Any] = r.json()
    return got


async def _bulk(env: Env, subject: str, n: int, **extra: Any) -> list[dict[str, Any]]:
    r = await env.client.post("/messages/bulk", json={"messages": [
        {**MSG, "subject": subject, **extra} for _ in range(n)]})
    assert r.status_code == 202, r.text
    got: list[dict[str, Any]] = r.json()["accepted"]
    return got


async def _get(env: Env, mid: int) -> dict[str, Any]:
    got: dict[str, Any] = (await env.client.get(f"/messages/{mid}")).json()
    return got


def _subjects(smtp: SmtpServer) -> list[str]:
    return [str(r.message["Subject"]) for r in smtp.handler.received]


async def _exact_counts(env: Env) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in await env.sql("SELECT status, count(*) FROM message GROUP BY status")}


async def _status_counts(env: Env) -> dict[str, int]:
    st = (await env.client.get("/status")).json()
    counts: dict[str, int] = st["queue"]["by_status"]
    return counts


# ---------------------------------------------------------------------- lanes


async def test_default_lanes_and_explicit_priority(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    assert (await _submit(env, "single"))["priority"] == "normal"
    assert {a["priority"] for a in await _bulk(env, "bulk", 3)} == {"low"}
    assert {a["priority"] for a in await _bulk(env, "bulk-high", 2, priority="high")} == {"high"}
    assert (await _submit(env, "urgent", priority="high"))["priority"] == "high"
    alice = await make_user(env)
    interactive = await env.client.post("/messages", headers=await user_key(env, alice),
                                        json={**MSG, "from": None, "subject": "dialog", "provider": "smtp"})
    assert interactive.status_code == 202, interactive.text
    assert interactive.json()["priority"] == "high"
    test = await env.client.post("/providers/smtp/test", json={"to": "t@example.com"})
    assert test.status_code == 202, test.text
    assert (await _get(env, test.json()["id"]))["priority"] == "high"
    bad = await env.client.post("/messages", json={**MSG, "priority": "urgent"})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert "priority" in bad.text
    lanes = {r[0]: r[1] for r in await env.sql("SELECT subject, priority FROM message")}
    assert lanes["single"] == 1 and lanes["bulk"] == 2 and lanes["urgent"] == 0 and lanes["dialog"] == 0


async def test_a_batch_comes_from_the_highest_lane_with_due_messages(env: Env, smtp: SmtpServer) -> None:
    from app.messages import lifecycle
    from worker.dispatch import drain_once

    await env.use_smtp(smtp)
    env.worker_ctx["settings"] = env.settings.model_copy(update={"claim_batch_size": 5})
    await _bulk(env, "low", 12)
    for _ in range(3):
        await _submit(env, "normal")
    for _ in range(2):
        await _submit(env, "high", priority="high")
    # Two high ones only: a batch never mixes in a lower lane, nor starts one while a higher lane has any.
    assert await drain_once(env.worker_ctx, lifecycle.LANES) == 2
    assert _subjects(smtp) == ["high"] * 2
    assert await drain_once(env.worker_ctx, lifecycle.LANES) == 3
    assert _subjects(smtp)[2:] == ["normal"] * 3
    await _submit(env, "high", priority="high")  # arrives while the low lane drains: next batch is it
    assert await drain_once(env.worker_ctx, lifecycle.LANES) == 1
    assert await drain_once(env.worker_ctx, lifecycle.LANES) == 5
    assert _subjects(smtp)[5:] == ["high"] + ["low"] * 5
    assert await env.deliver() == 7
    assert len(smtp.handler.received) == 18


async def test_high_message_is_sent_while_a_bulk_batch_is_in_progress(env: Env, smtp: SmtpServer) -> None:
    """A bulk backlog is being drained (slowly: every DATA takes 50 ms over the worker's 8 connections); a
    high-priority message submitted meanwhile goes out through the high lane's loop and reserved connections
    long before the bulk batch in progress ends."""
    from worker.dispatch import high_lane

    await env.use_smtp(smtp)
    smtp.handler.data_delay = 0.05
    env.worker_ctx["settings"] = env.settings.model_copy(update={"claim_batch_size": 200})
    await _bulk(env, "bulk", 200)
    loop_task = asyncio.create_task(high_lane(env.worker_ctx))
    drain = asyncio.create_task(env.deliver())
    try:
        deadline = time.monotonic() + 30
        while not smtp.handler.received and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        submitted = time.monotonic()
        high = await _submit(env, "high", priority="high")
        while time.monotonic() < deadline:
            if (await _get(env, high["id"]))["status"] == "sent":
                break
            await asyncio.sleep(0.02)
        latency = time.monotonic() - submitted
        assert (await _get(env, high["id"]))["status"] == "sent"
        assert not drain.done(), "the bulk batch should still be in progress"
        bulk_sent = sum(1 for s in _subjects(smtp) if s == "bulk")
        assert bulk_sent < 150, bulk_sent
        assert latency < 2.0, latency
    finally:
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        await drain
    assert len(smtp.handler.received) == 201


# ---------------------------------------------------------------------- scheduled sending


async def test_send_at_waits_shows_and_counts_expiry_from_it(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    now = datetime.now(UTC)
    at = now + timedelta(hours=2)
    m = await _submit(env, "later", send_at=_iso(at))
    got = await _get(env, m["id"])
    assert got["status"] == "queued"
    assert datetime.fromisoformat(got["send_at"]) == at
    assert datetime.fromisoformat(got["next_attempt_at"]) == at
    days = effective_days((await env.client.get("/parameters")).json()["email_expiration_days"])
    assert abs(datetime.fromisoformat(got["expires_at"]) - (at + timedelta(days=days))) < timedelta(seconds=1)
    assert await env.deliver() == 0 and not smtp.handler.received
    assert (await env.reconcile())["due"] == 0
    # Once due, it goes.
    await env.sql("UPDATE message SET next_attempt_at = :t WHERE id = :i", t=now - timedelta(seconds=1), i=m["id"])
    assert await env.deliver() == 1
    assert (await _get(env, m["id"]))["status"] == "sent"


async def test_cancel_before_due_and_it_is_never_sent(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    m = await _submit(env, "cancel me", send_at=_iso(datetime.now(UTC) + timedelta(minutes=30)))
    r = await env.client.post(f"/messages/{m['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    await env.sql("UPDATE message SET next_attempt_at = created_at")
    assert await env.deliver() == 0 and not smtp.handler.received


async def test_scheduled_message_expires_from_send_at_not_submission(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    at = datetime.now(UTC) + timedelta(days=3)
    m = await _submit(env, "far", send_at=_iso(at))
    days = effective_days((await env.client.get("/parameters")).json()["email_expiration_days"])
    got = await _get(env, m["id"])
    assert abs(datetime.fromisoformat(got["expires_at"]) - (at + timedelta(days=days))) < timedelta(seconds=1)
    await env.reconcile()
    assert (await _get(env, m["id"]))["status"] == "queued"
    await env.sql("UPDATE message SET expires_at = :t WHERE id = :i", t=datetime.now(UTC), i=m["id"])
    await env.redis.delete("outbox:reconcile:sweep")
    await env.reconcile()
    assert (await _get(env, m["id"]))["status"] == "expired"


async def test_send_at_bad_values_are_422_naming_the_field(env: Env) -> None:
    now = datetime.now(UTC)
    for value in (_iso(now - timedelta(minutes=10)), _iso(now + timedelta(days=400)), "2030-01-01T00:00:00",
                  "tomorrow"):
        r = await env.client.post("/messages", json={**MSG, "subject": "x", "send_at": value})
        assert r.status_code == 422, (value, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert "send_at" in r.text
    r = await env.client.post("/messages/bulk", json={"messages": [
        {**MSG, "subject": "ok"}, {**MSG, "subject": "x", "send_at": _iso(now - timedelta(hours=1))}]})
    assert r.status_code == 422 and "messages[1].send_at" in r.text
    assert (await env.sql("SELECT count(*) FROM message"))[0][0] == 0
    # A few seconds in the past (clock skew): at once.
    ok = await _submit(env, "skew", send_at=_iso(now - timedelta(seconds=20)))
    got = await _get(env, ok["id"])
    assert got["send_at"] is None and got["status"] == "queued"


async def test_draft_with_send_at_is_queued_for_then(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    alice = await make_user(env)
    h = await user_key(env, alice)
    at = datetime.now(UTC) + timedelta(hours=1)
    d = await draft(env, h, send_at=_iso(at))
    assert datetime.fromisoformat(d["send_at"]) == at and d["next_attempt_at"] is None
    later = at + timedelta(hours=1)
    r = await env.client.patch(f"/messages/{d['id']}", headers=h, json={"send_at": _iso(later)})
    assert r.status_code == 200, r.text
    bad = await env.client.patch(f"/messages/{d['id']}", headers=h,
                                 json={"send_at": _iso(datetime.now(UTC) - timedelta(days=1))})
    assert bad.status_code == 422 and "send_at" in bad.text
    sent = await env.client.post(f"/messages/{d['id']}/send", headers=h, json={"provider": "smtp"})
    assert sent.status_code == 202, sent.text
    got = sent.json()
    assert got["status"] == "queued" and datetime.fromisoformat(got["next_attempt_at"]) == later
    assert got["priority"] == "high"
    assert await env.deliver() == 0


# ---------------------------------------------------------------------- keyset pages


async def test_keyset_pages_and_offset_still_work(env: Env) -> None:
    ids = [(await _submit(env, f"m{i}"))["id"] for i in range(7)]
    seen: list[int] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 3, "status": "queued"}
        if cursor:
            params["cursor"] = cursor
        page = (await env.client.get("/messages", params=params)).json()
        assert page["total"] == 7 + len(seen) // 3
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        await _submit(env, "arrived meanwhile")  # newer: never shifts the pages being read
    assert seen == sorted(ids, reverse=True)
    by_offset = (await env.client.get("/messages", params={"limit": 3, "offset": 3})).json()
    assert [m["id"] for m in by_offset["items"]] == sorted(ids, reverse=True)[1:4]  # 2 newer arrived
    for bad in ("x", "id:abc", "id:-1", "id:²"):
        r = await env.client.get("/messages", params={"cursor": bad})
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
        assert r.json()["errors"][0]["field"] == "cursor"


# ---------------------------------------------------------------------- counters


async def test_counts_follow_every_transition(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    smtp.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 no such user"
    sent = await _bulk(env, "ok", 4)
    await _submit(env, "fails", to=["gone@example.com"])
    cancelled = await _submit(env, "cancel", send_at=_iso(datetime.now(UTC) + timedelta(hours=1)))
    await _submit(env, "scheduled", send_at=_iso(datetime.now(UTC) + timedelta(hours=1)))
    assert await _status_counts(env) == await _exact_counts(env) == {"queued": 7}
    await env.deliver()
    await env.client.post(f"/messages/{cancelled['id']}/cancel")
    exact = await _exact_counts(env)
    assert exact == {"sent": 4, "failed": 1, "cancelled": 1, "queued": 1}
    assert await _status_counts(env) == exact
    failed = (await env.sql("SELECT id FROM message WHERE status = 'failed'"))[0][0]
    assert (await env.client.post(f"/messages/{failed}/retry")).status_code == 200
    await env.sql("UPDATE message SET expires_at = created_at WHERE subject = 'scheduled'")
    await env.redis.delete("outbox:reconcile:sweep")
    await env.reconcile()
    await env.sql("DELETE FROM message WHERE id = :i", i=sent[0]["id"])
    exact = await _exact_counts(env)
    assert exact == {"sent": 3, "queued": 1, "cancelled": 1, "expired": 1}
    assert await _status_counts(env) == exact
    page = (await env.client.get("/messages", params={"status": ["sent", "queued"]})).json()
    assert page["total"] == 4
    assert (await env.client.get("/messages")).json()["total"] == 6
    by_kind: dict[str, dict[str, int]] = {}
    for status, kind, n in await env.sql("SELECT status, kind, count(*) FROM message GROUP BY status, kind"):
        by_kind.setdefault(status, {})[kind] = int(n)
    assert (await env.client.get("/status")).json()["queue"]["by_status_and_kind"] == by_kind
    metrics = (await env.client.get("/metrics")).text
    assert 'outbox_messages{status="sent"} 3.0' in metrics
    assert await _lane_counts(env) == await _exact_lanes(env) == {"high": 0, "normal": 1, "low": 0}
    # A lane change of a waiting message moves its count (priority is part of the counter's key).
    await env.sql("UPDATE message SET priority = 0 WHERE status = 'queued'")
    await _bulk(env, "more", 3)
    assert await _lane_counts(env) == await _exact_lanes(env) == {"high": 1, "normal": 0, "low": 3}


async def _lane_counts(env: Env) -> dict[str, int]:
    lanes: dict[str, int] = (await env.client.get("/status")).json()["queue"]["waiting_by_lane"]
    return lanes


async def _exact_lanes(env: Env) -> dict[str, int]:
    found = {int(p): int(n) for p, n in await env.sql(
        "SELECT priority, count(*) FROM message WHERE status IN ('queued', 'deferred', 'retrying') "
        "GROUP BY priority")}
    return {name: found.get(lane, 0) for lane, name in ((0, "high"), (1, "normal"), (2, "low"))}


async def test_counter_shards_fold_into_one(pg_env: Env, smtp: SmtpServer) -> None:
    from app.messages import lifecycle

    env = pg_env
    await env.use_smtp(smtp)
    await _bulk(env, "ok", 5)
    await env.deliver()
    # Pretend the backends that wrote them have ended: their shards fold into shard 0.
    await env.sql("UPDATE message_count SET shard = shard + 5000000000 WHERE shard <> 0")
    async with env.app.state.sessionmaker() as s:
        folded = await lifecycle.compact_counts(s)
        await s.commit()
    assert folded >= 1
    assert not await env.sql("SELECT 1 FROM message_count WHERE shard > 5000000000")
    assert await _status_counts(env) == await _exact_counts(env) == {"sent": 5}
    assert await _lane_counts(env) == await _exact_lanes(env)


# ---------------------------------------------------------------------- plans


async def test_claim_and_first_page_read_indexes(pg_env: Env) -> None:
    """With 20,000 waiting messages in three lanes, the claim and the first page of ?status=queued are index
    scans (the plan PostgreSQL picks, not a forced one)."""
    env = pg_env
    await env.sql(
        "INSERT INTO message (status, kind, sender, to_addrs, cc_addrs, bcc_addrs, reply_to, subject, headers, "
        "message_id_header, size_bytes, attachment_count, attempts, deferrals, uncertain, next_attempt_at, "
        "created_at, updated_at, priority) "
        "SELECT CASE WHEN g % 4 = 0 THEN 'queued' ELSE 'sent' END, 'batch', 's@example.com', '[]', '[]', '[]', "
        "'[]', 'x', '{}', '<' || g || '@x>', 0, 0, "
        "0, 0, false, now() - interval '1 second' * g, now(), now(), g % 3 FROM generate_series(1, 20000) g")
    await env.sql("ANALYZE message")
    page_plan = "\n".join(r[0] for r in await env.sql(
        "EXPLAIN SELECT id FROM message WHERE status IN ('queued') ORDER BY id DESC LIMIT 50"))
    assert "Index" in page_plan and "Seq Scan" not in page_plan and "Sort" not in page_plan, page_plan
    cond = repository.due_lanes(datetime.now(UTC), batch_enabled=True)[0].due
    q = select(repository.M.c.id).where(cond).order_by(repository.M.c.next_attempt_at).limit(100)
    pg = postgresql.dialect()  # type: ignore[no-untyped-call]
    sql = str(q.compile(dialect=pg, compile_kwargs={"literal_binds": True}))
    claim_plan = "\n".join(r[0] for r in await env.sql("EXPLAIN " + sql))
    assert "ix_message_lane" in claim_plan, claim_plan
    assert (await env.client.get("/status")).json()["queue"]["by_status"] == {"queued": 5000, "sent": 15000}


async def test_reconciler_finds_every_lane_after_a_redis_flush(env: Env) -> None:
    await _bulk(env, "low", 1)
    await env.redis.flushdb()
    assert (await env.reconcile())["due"] == 1
