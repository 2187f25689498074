"""Fairness between submitting keys within a lane (issue 17), on both databases: keys take turns in each claim,
a share a key cannot use goes to the others, the turns go round when more keys wait than a claim serves, and
the claim still reads a few rows per message, not the backlog."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite

from app.messages import lifecycle, repository
from tests.conftest import Env
from tests.support.smtp_server import SmtpServer
from worker.dispatch import drain_once

MSG = {"to": ["a@example.com"], "from": "s@example.com", "body_text": "x"}


async def _key(env: Env) -> dict[str, str]:
    return env.auth(await env.new_key("service"))


async def _bulk(env: Env, auth: dict[str, str], subject: str, n: int, **extra: Any) -> None:
    for start in range(0, n, 1000):
        r = await env.client.post("/messages/bulk", headers=auth, json={"messages": [
            {**MSG, "subject": subject, **extra} for _ in range(min(1000, n - start))]})
        assert r.status_code == 202, r.text


def _sent(smtp: SmtpServer) -> list[str]:
    return [str(r.message["Subject"]) for r in smtp.handler.received]


def _batch(env: Env, n: int) -> None:
    env.worker_ctx["settings"] = env.settings.model_copy(update={"claim_batch_size": n})


async def _waiting(env: Env, subject: str) -> int:
    rows = await env.sql("SELECT count(*) FROM message WHERE subject = :s AND status = 'queued'", s=subject)
    return int(rows[0][0])


async def test_a_small_key_is_not_starved_by_a_bulk_backlog(env: Env, smtp: SmtpServer) -> None:
    """Key A queued 2,000 bulk messages, then key B 20 of the same lane: B's 20 go out in the first batches,
    half of each, while A's backlog still waits."""
    await env.use_smtp(smtp)
    _batch(env, 10)
    await _bulk(env, await _key(env), "A", 2000)
    await _bulk(env, await _key(env), "B", 20)
    for _ in range(10):
        if _sent(smtp).count("B") == 20:
            break
        assert await drain_once(env.worker_ctx, lifecycle.LANES) == 10
    sent = _sent(smtp)
    assert sent.count("B") == 20
    assert sent.count("A") == 20  # 5 of each per batch of 10
    assert await _waiting(env, "A") == 1980
    # B done, A has the whole batch again.
    assert await drain_once(env.worker_ctx, lifecycle.LANES) == 10
    assert _sent(smtp)[40:] == ["A"] * 10


async def test_equal_backlogs_drain_interleaved(env: Env, smtp: SmtpServer) -> None:
    """Two keys with 105 messages each, batches of 21: 11 + 10, then 10 + 11 (the extra message goes round);
    after every batch the keys are at most one message apart, and they finish in the same batch."""
    await env.use_smtp(smtp)
    _batch(env, 21)
    await _bulk(env, await _key(env), "A", 105)
    await _bulk(env, await _key(env), "B", 105)
    firsts: list[str] = []
    for _ in range(12):
        if not await drain_once(env.worker_ctx, lifecycle.LANES):
            break
        counts = Counter(_sent(smtp))
        assert abs(counts["A"] - counts["B"]) <= 1, counts
        batch = Counter(_sent(smtp)[-21:])
        firsts.append(max(batch, key=lambda k: batch[k]))
    assert Counter(_sent(smtp)) == {"A": 105, "B": 105}
    assert set(firsts) == {"A", "B"}  # the extra message went to each in turn


async def test_a_share_a_key_cannot_use_goes_to_the_others(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    _batch(env, 20)
    await _bulk(env, await _key(env), "A", 100)
    await _bulk(env, await _key(env), "B", 3)
    await _bulk(env, await _key(env), "C", 5)
    assert await drain_once(env.worker_ctx, lifecycle.LANES) == 20
    assert Counter(_sent(smtp)) == {"A": 12, "B": 3, "C": 5}


async def test_more_keys_than_a_claim_serves_take_turns(env: Env, smtp: SmtpServer) -> None:
    """Batches of 2 with 5 keys waiting: each claim serves 2 keys, the next claim the next 2, round to the
    first (the keys considered per claim are capped; the turn moves on)."""
    await env.use_smtp(smtp)
    _batch(env, 2)
    for name in "VWXYZ":
        await _bulk(env, await _key(env), name, 3)
    batches = []
    for _ in range(5):
        assert await drain_once(env.worker_ctx, lifecycle.LANES) == 2
        batches.append(sorted(_sent(smtp)[-2:]))
    assert batches == [["V", "W"], ["X", "Y"], ["V", "Z"], ["W", "X"], ["Y", "Z"]]


async def test_messages_without_a_key_are_a_group_of_their_own(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    _batch(env, 10)
    await _bulk(env, await _key(env), "keyless", 30)
    await _bulk(env, await _key(env), "B", 30)
    await env.sql("UPDATE message SET api_key_id = NULL WHERE subject = 'keyless'")
    assert await drain_once(env.worker_ctx, lifecycle.LANES) == 10
    assert Counter(_sent(smtp)) == {"keyless": 5, "B": 5}


async def test_lanes_stay_strict_with_several_keys(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    _batch(env, 10)
    a, b = await _key(env), await _key(env)
    await _bulk(env, a, "low", 30)
    await _bulk(env, b, "normal", 3, priority="normal")
    await _bulk(env, a, "normal", 2, priority="normal")
    assert await drain_once(env.worker_ctx, lifecycle.LANES) == 5
    assert _sent(smtp) == ["normal"] * 5
    assert await drain_once(env.worker_ctx, lifecycle.LANES) == 10
    assert _sent(smtp)[5:] == ["low"] * 10


async def test_a_throttled_provider_shares_its_grant_between_keys(env: Env, smtp: SmtpServer) -> None:
    """The provider allows 4 a minute: the batch of 10 is claimed in turns (A, B, A, B, ...), so the 4 sent are
    2 of each and the other 6 wait for the next window (deferred, not attempts)."""
    await env.use_smtp(smtp, per_minute_limit=4)
    _batch(env, 10)
    await _bulk(env, await _key(env), "A", 20)
    await _bulk(env, await _key(env), "B", 20)
    assert await drain_once(env.worker_ctx, lifecycle.LANES) == 10
    assert Counter(_sent(smtp)) == {"A": 2, "B": 2}
    rows = await env.sql("SELECT subject, count(*) FROM message WHERE status = 'deferred' GROUP BY subject")
    assert dict(rows) == {"A": 3, "B": 3}


async def test_the_reconciler_finds_every_key_after_a_redis_flush(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    await _bulk(env, await _key(env), "A", 5)
    await _bulk(env, await _key(env), "B", 5)
    await env.redis.flushdb()
    assert (await env.reconcile())["due"] == 1
    assert await env.deliver() == 10
    assert Counter(_sent(smtp)) == {"A": 5, "B": 5}


# ---------------------------------------------------------------------- costs on PostgreSQL

_COLUMNS = ("status, kind, sender, to_addrs, cc_addrs, bcc_addrs, reply_to, subject, headers, message_id_header, "
            "size_bytes, attachment_count, attempts, deferrals, uncertain, next_attempt_at, created_at, updated_at, "
            "priority, api_key_id")


async def _fill(env: Env, status: str, key: int | None, n: int, tag: str) -> None:
    await env.sql(
        f"INSERT INTO message ({_COLUMNS}) SELECT :status, 'batch', 's@example.com', '[]', '[]', '[]', '[]', "
        f"'{tag}', '{{}}', '<{tag}' || g || '@x>', 0, 0, 0, 0, false, now() - interval '1 ms' * g, now(), now(), "
        "2, :key FROM generate_series(1, :n) g", status=status, key=key, n=n)


async def _fill_sqlite(env: Env) -> None:
    for key, n in ((1, 3000), (2, 100), (None, 100)):
        await env.sql(
            f"WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < :n) INSERT INTO message "
            f"({_COLUMNS}) SELECT 'queued', 'batch', 's@example.com', '[]', '[]', '[]', '[]', 'x', '{{}}', "
            "'<' || coalesce(:key, 0) || '.' || i || '@x>', 0, 0, 0, 0, 0, datetime('now', '-1 minute'), "
            "datetime('now'), datetime('now'), 2, :key FROM g", key=key, n=n)


async def test_claim_reads_a_few_rows_per_message_whatever_one_keys_backlog(pg_env: Env) -> None:
    """Key 1 has 30,000 messages waiting and 30,000 sent, keys 2-4 and messages without a key 300 waiting each
    (and 30,000 sent without a key): every claim of 100 takes 20 from each and reads about 2 rows of `message`
    per claimed message (the claimed rows through the key index, then by primary key), with no sequential scan,
    also after the statements' plans are cached (more than 5 executions: PostgreSQL's generic plans)."""
    env = pg_env
    await _fill(env, "queued", 1, 30000, "k1")
    await _fill(env, "sent", 1, 30000, "s1")
    for key in (2, 3, 4):
        await _fill(env, "queued", key, 300, f"k{key}")
    await _fill(env, "sent", None, 30000, "s0")  # messages without a key: a group of their own
    await _fill(env, "queued", None, 300, "k0")
    await env.sql("ANALYZE message")
    stats = ("SELECT coalesce(seq_tup_read, 0), coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
             "WHERE relname = 'message'")
    turns = lifecycle.KeyTurns()
    for _ in range(8):
        async with env.app.state.sessionmaker() as s:
            # The transaction's own counts (pg_stat_xact_*): the claim's reads alone, no waiting for the stats.
            seq0, idx0 = (await s.execute(text(stats))).one()
            now = datetime.now(UTC)
            claimed = await lifecycle.claim_due(
                s, worker="w", now=now, limit=100, lease_seconds=60, lanes=repository.due_lanes(
                    now, batch_enabled=True), keys=repository.due_keys, postgres=True, turns=turns)
            seq1, idx1 = (await s.execute(text(stats))).one()
            await s.commit()
        assert Counter(r.api_key_id for r in claimed) == {None: 20, 1: 20, 2: 20, 3: 20, 4: 20}
        assert seq1 - seq0 == 0
        assert (idx1 - idx0) / len(claimed) <= 2.5, idx1 - idx0
    # The walk over keys is a loose scan of the key index (not of the idempotency index on api_key_id, which
    # would read key 1's sent messages).
    lane = repository.due_lanes(datetime.now(UTC), batch_enabled=True)[2]
    q = repository.key_walk(lane, above=-1, upto=None, cap=100)
    pg = postgresql.dialect()  # type: ignore[no-untyped-call]
    sql = str(q.compile(dialect=pg, compile_kwargs={"literal_binds": True}))
    plan = "\n".join(r[0] for r in await env.sql("EXPLAIN " + sql))
    assert "ix_message_key_lane" in plan and "Seq Scan" not in plan and "uq_message_idempotency" not in plan, plan


async def test_batch_off_reads_the_interactive_messages_not_the_backlog(pg_env: Env) -> None:
    """With the email distributor batch off, the reconciler's probe and a claim read the waiting interactive
    messages (ix_message_interactive_lane), not the 30,000 bulk messages waiting in the same lane and keys."""
    env = pg_env
    await _fill(env, "queued", 1, 30000, "bulk")
    await _fill(env, "queued", 2, 300, "bulk2")
    await env.sql("ANALYZE message")
    await env.sql("UPDATE message SET kind = 'interactive' WHERE subject = 'bulk' AND id % 3000 = 0")  # 10
    stats = ("SELECT coalesce(seq_tup_read, 0), coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
             "WHERE relname = 'message'")
    turns = lifecycle.KeyTurns()
    for round_ in range(7):  # past PostgreSQL's first five custom plans: its generic plan too
        async with env.app.state.sessionmaker() as s:
            seq0, idx0 = (await s.execute(text(stats))).one()
            now = datetime.now(UTC)
            due = await repository.any_due(s, now, batch_enabled=False)
            claimed = await lifecycle.claim_due(
                s, worker="w", now=now, limit=4, lease_seconds=60, lanes=repository.due_lanes(
                    now, batch_enabled=False), keys=repository.due_keys, postgres=True, turns=turns)
            seq1, idx1 = (await s.execute(text(stats))).one()
            await s.rollback()  # the same ten interactive messages each round
        assert due and len(claimed) == 4 and {r.kind for r in claimed} == {"interactive"}, round_
        assert seq1 - seq0 == 0
        assert idx1 - idx0 <= 40, (round_, idx1 - idx0)


async def test_sqlite_reads_the_key_index_too(sqlite_env: Env) -> None:
    """The embedded default: the walk over keys and a key's share are searches of ix_message_key_lane (an index
    on an expression: SQLite uses it only when the query has the same expression)."""
    env = sqlite_env
    await _fill_sqlite(env)
    await env.sql("ANALYZE")
    lane = repository.due_lanes(datetime.now(UTC), batch_enabled=True)[2]
    share = select(repository.M.c.id).where(lane.due, lifecycle.SUBMITTER == 2) \
        .order_by(repository.M.c.next_attempt_at).limit(5)
    walk = repository.key_walk(lane, above=-1, upto=None, cap=100)
    for q in (share, walk):
        compiled = q.compile(dialect=sqlite.dialect(paramstyle="named"))
        params = {k: v.isoformat(" ") if isinstance(v, datetime) else v for k, v in compiled.params.items()}
        plan = "\n".join(str(r[-1]) for r in await env.sql("EXPLAIN QUERY PLAN " + str(compiled), **params))
        assert "USING INDEX ix_message_key_lane" in plan or "USING COVERING INDEX ix_message_key_lane" in plan, plan
        assert "SCAN message" not in plan and "TEMP B-TREE" not in plan, plan
