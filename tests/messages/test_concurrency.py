"""Many concurrent submissions on PostgreSQL (group commit) with cold caches: all committed, none lost, no
pool exhaustion (a shared pool once deadlocked: requests held connections while waiting for the batch). Workers
claiming at the same time from several keys' backlogs: each message claimed once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from app.core import ttl_cache
from app.messages import lifecycle, repository
from app.users import auth_cache
from tests.conftest import Env
from tests.support.smtp_server import SmtpServer


async def test_concurrent_submissions_with_cold_caches(pg_env: Env, smtp: SmtpServer) -> None:
    await pg_env.use_smtp(smtp)
    auth_cache.forget()
    ttl_cache.clear_all()
    n = 120  # more than the API's pool (20 + 20 overflow)

    async def post(i: int) -> int:
        r = await pg_env.client.post("/messages", json={"to": [f"c{i}@example.com"], "subject": f"c{i}",
                                                        "body_text": "x"})
        assert r.status_code == 202, r.text
        return int(r.json()["id"])

    # The parameters row may be missing (tables are truncated between tests): the requests race to create it.
    await pg_env.sql("DELETE FROM email_parameters")
    results = await asyncio.wait_for(asyncio.gather(*(post(i) for i in range(n)), return_exceptions=True), 60)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    ids = [r for r in results if isinstance(r, int)]
    assert len(set(ids)) == n
    rows = await pg_env.sql("SELECT count(*) FROM message WHERE status = 'queued'")
    assert rows[0][0] == n
    while await pg_env.deliver():
        pass
    assert len(smtp.received) == n
    assert {r.message["Subject"] for r in smtp.received} == {f"c{i}" for i in range(n)}


async def test_concurrent_claims_take_each_message_once(env: Env) -> None:
    """Four workers claim in parallel from three keys' backlogs, each holding its claim open while the others
    claim (PostgreSQL: FOR UPDATE SKIP LOCKED in each key's range; SQLite: one writer at a time): every message
    is claimed exactly once, by the worker whose claim returned it."""
    for key in (1, 2, 3):
        await env.sql(
            "INSERT INTO message (status, kind, sender, to_addrs, cc_addrs, bcc_addrs, reply_to, subject, headers, "
            "message_id_header, size_bytes, attachment_count, attempts, deferrals, uncertain, next_attempt_at, "
            "created_at, updated_at, priority, api_key_id) "
            f"SELECT 'queued', 'batch', 's@example.com', '[]', '[]', '[]', '[]', 'x', '{{}}', '<{key}.' || i "
            f"|| '@x>', 0, 0, 0, 0, false, :at, :at, :at, 2, {key} FROM (WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL "
            "SELECT i + 1 FROM g WHERE i < 400) SELECT i FROM g) AS g", at=datetime.now(UTC))
    postgres = env.worker_ctx["postgres"]

    async def worker(name: str) -> list[int]:
        turns = lifecycle.KeyTurns()
        got: list[int] = []
        for _ in range(200):
            async with env.app.state.sessionmaker() as s:
                now = datetime.now(UTC)
                rows = await lifecycle.claim_due(
                    s, worker=name, now=now, limit=25, lease_seconds=60, lanes=repository.due_lanes(
                        now, batch_enabled=True), keys=repository.due_keys, postgres=postgres, turns=turns)
                await asyncio.sleep(0.001)  # the claim still open: the other workers claim meanwhile
                await s.commit()
            got += [r.id for r in rows]
            if not rows and not (await env.sql("SELECT count(*) FROM message WHERE status = 'queued'"))[0][0]:
                return got
        raise AssertionError(f"{name} did not finish")

    results = await asyncio.wait_for(asyncio.gather(*(worker(f"w{i}") for i in range(4))), 120)
    claimed = [i for r in results for i in r]
    assert len(claimed) == len(set(claimed)) == 1200
    assert sum(1 for r in results if r) >= 2, [len(r) for r in results]
    owner = {int(r[0]): r[1] for r in await env.sql("SELECT id, claimed_by FROM message WHERE status = 'sending'")}
    assert len(owner) == 1200
    for i, ids in enumerate(results):
        assert {owner[m] for m in ids} <= {f"w{i}"}
