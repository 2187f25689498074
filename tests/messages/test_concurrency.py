"""Many concurrent submissions on PostgreSQL (group commit) with cold caches: all committed, none lost, no
pool exhaustion (a shared pool once deadlocked: requests held connections while waiting for the batch)."""

from __future__ import annotations

import asyncio

from app.core import ttl_cache
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
