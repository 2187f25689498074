"""Per-provider sending limits (in-process; the two-process version is in tests/faults)."""

from __future__ import annotations

import asyncio

from app.delivery import throttle
from tests.conftest import Env
from tests.support.smtp_server import SmtpServer


async def _submit(env: Env, n: int) -> list[int]:
    msgs = [{"to": [f"r{i}@example.com"], "subject": f"t{i}", "body_text": "x"} for i in range(n)]
    r = await env.client.post("/messages/bulk", json={"messages": msgs})
    return [a["id"] for a in r.json()["accepted"]]


async def test_limit_defers_without_counting_attempts(env: Env, smtp: SmtpServer) -> None:
    env.worker_ctx["settings"] = env.settings.model_copy(update={"throttle_window_seconds": 1.0})
    await env.use_smtp(smtp, per_minute_limit=3)
    ids = await _submit(env, 7)
    await env.deliver()
    assert len(smtp.received) == 3
    rows = await env.sql("SELECT status, attempts, deferrals FROM message ORDER BY id")
    assert sorted(r[0] for r in rows) == ["deferred"] * 4 + ["sent"] * 3
    assert all(r[1] == 0 and r[2] == 1 for r in rows if r[0] == "deferred")
    deferred = [m for m in ids if (await env.client.get(f"/messages/{m}")).json()["status"] == "deferred"]
    m = (await env.client.get(f"/messages/{deferred[0]}")).json()
    assert m["attempt_log"][-1]["outcome"] == "deferred" and "limit" in m["error"]
    for _ in range(20):
        if len(smtp.received) == 7:
            break
        await asyncio.sleep(0.3)
        await env.deliver()
    assert len(smtp.received) == 7
    st = (await env.client.get("/status")).json()
    assert st["throttle"]["smtp"]["per_minute_limit"] == 3 and st["throttle"]["smtp"]["deferrals_total"] >= 4


async def test_sent_regardless_after_ten_deferrals(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp, per_minute_limit=1)
    [first, second] = await _submit(env, 2)
    await env.sql("UPDATE message SET deferrals = 10 WHERE id = :i", i=second)
    await env.deliver()
    assert len(smtp.received) == 2
    m = (await env.client.get(f"/messages/{second}")).json()
    assert m["status"] == "sent" and m["error_type"] == "throttle.sent_regardless"
    assert "ten" in m["error"]


async def test_provider_pause_blocks_every_worker(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    await throttle.pause(env.redis, "smtp", 30)
    [mid] = await _submit(env, 1)
    await env.deliver()
    assert smtp.received == []
    m = (await env.client.get(f"/messages/{mid}")).json()
    assert m["status"] == "deferred" and m["attempts"] == 0


async def test_window_is_atomic_under_concurrency(env: Env) -> None:
    grants = await asyncio.gather(*(throttle.acquire(env.redis, "x", 30, 4, 60.0) for _ in range(20)))
    assert sum(g for g, _ in grants) == 30
    assert all(w > 0 for g, w in grants if g < 4)


async def test_status_reads_the_configured_window(pg_url: str, smtp: SmtpServer) -> None:
    """/status counts sends in the window the throttle really uses (not a fixed minute)."""
    from tests.conftest import running_env

    async with running_env(pg_url, OUTBOX_THROTTLE_WINDOW_SECONDS=2.0) as env:
        await env.use_smtp(smtp, per_minute_limit=5)
        await _submit(env, 3)
        await env.deliver()
        assert len(smtp.received) == 3
        t = (await env.client.get("/status")).json()["throttle"]["smtp"]
        assert (t["window_seconds"], t["sent_last_minute"], t["tokens_left"]) == (2.0, 3, 2)
        await asyncio.sleep(2.3)
        t = (await env.client.get("/status")).json()["throttle"]["smtp"]
        assert (t["sent_last_minute"], t["tokens_left"]) == (0, 5)


async def test_ten_deferrals_take_ten_windows_and_late_messages_stay_paced(env: Env, smtp: SmtpServer) -> None:
    """Issue 15 item 4: one deferral per window a message was held back (not per re-check), and messages sent
    regardless after ten deferrals go out at the provider's rate, not all at once."""
    from datetime import datetime

    window = 1.0
    env.worker_ctx["settings"] = env.settings.model_copy(update={"throttle_window_seconds": window})
    await env.use_smtp(smtp, per_minute_limit=1)
    ids = await _submit(env, 12)
    deadline = asyncio.get_running_loop().time() + 40
    while len(smtp.received) < 12 and asyncio.get_running_loop().time() < deadline:
        await env.deliver()
        await asyncio.sleep(0.05)
    assert len(smtp.received) == 12
    msgs = [(await env.client.get(f"/messages/{m}")).json() for m in ids]
    sent_at = sorted(datetime.fromisoformat(m["sent_at"]) for m in msgs)
    late = [m for m in msgs if m["error_type"] == "throttle.sent_regardless"]
    assert late, "with 12 messages at 1 per window, the last ones reach ten deferrals"
    for m in late:
        waited = (datetime.fromisoformat(m["sent_at"]) - datetime.fromisoformat(m["created_at"])).total_seconds()
        assert waited >= 9 * window, (waited, m["deferrals"])  # ten deferrals: about ten windows, not a few
    for m in msgs:
        waited = (datetime.fromisoformat(m["sent_at"]) - datetime.fromisoformat(m["created_at"])).total_seconds()
        assert m["deferrals"] <= waited / window + 1.5, (m["deferrals"], waited)
    # Never a burst: in any window, at most the limit plus the paced late ones (1 + 1).
    for i, t in enumerate(sent_at):
        in_window = [u for u in sent_at[i:] if (u - t).total_seconds() < window * 0.95]
        assert len(in_window) <= 2, [str(u) for u in sent_at]
