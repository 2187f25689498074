"""Per-recipient delivery against Postfix: a recipient refused with a 4xx is tried again on its own (never the
ones already accepted), a 5xx one is given up at once, and the message is `sent` only when none is pending."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Env
from tests.mta.conftest import message, submit, use_postfix
from tests.support.postfix import PERMFAIL, TEMPFAIL, Postfix


def _states(msg: dict[str, Any]) -> dict[str, str]:
    return {r["address"]: r["state"] for r in msg["recipients"]}


async def _retry_now(env: Env) -> None:
    await env.sql("UPDATE message SET next_attempt_at = created_at WHERE status = 'retrying'")


async def test_a_temporarily_refused_recipient_is_retried_alone(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "plain")
    mid = await submit(mta_env, subject="retried alone", to=["ok@example.com", TEMPFAIL], cc=[PERMFAIL])
    await mta_env.deliver()
    msg = await message(mta_env, mid)
    assert msg["status"] == "retrying" and msg["next_attempt_at"] is not None, msg
    assert _states(msg) == {"ok@example.com": "accepted", TEMPFAIL: "pending", PERMFAIL: "failed"}
    assert msg["attempt_log"][0]["outcome"] == "partial"
    assert TEMPFAIL in msg["error"] and "retried" in msg["error"]
    [first] = postfix.wait_delivered("retried alone")
    assert first.recipient == "ok@example.com"
    rcpts_before = postfix.log_text().count(f"<{TEMPFAIL}>")

    await _retry_now(mta_env)
    await mta_env.deliver()
    msg = await message(mta_env, mid)
    assert msg["status"] == "retrying" and msg["attempts"] == 2
    # The server saw a second RCPT for the refused address, and nothing more for the accepted one.
    for _ in range(50):
        if postfix.log_text().count(f"<{TEMPFAIL}>") > rcpts_before:
            break
        await asyncio.sleep(0.1)
    assert postfix.log_text().count(f"<{TEMPFAIL}>") > rcpts_before
    assert len([d for d in postfix.delivered() if d.message["Subject"] == "retried alone"]) == 1

    # Attempts run out: the pending recipient is given up; someone accepted it, so the message is sent.
    mta_env.worker_ctx["settings"] = mta_env.settings.model_copy(update={"max_attempts": 3})
    await _retry_now(mta_env)
    await mta_env.deliver()
    msg = await message(mta_env, mid)
    assert msg["status"] == "sent" and msg["attempts"] == 3, msg
    assert _states(msg) == {"ok@example.com": "accepted", TEMPFAIL: "failed", PERMFAIL: "failed"}
    assert "Gave up after 3 attempts" in msg["error"]
    assert len([d for d in postfix.delivered() if d.message["Subject"] == "retried alone"]) == 1


async def test_every_recipient_refused_for_good_fails_the_message(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "plain")
    mid = await submit(mta_env, subject="nobody", to=[PERMFAIL])
    await mta_env.deliver()
    msg = await message(mta_env, mid)
    assert msg["status"] == "failed" and _states(msg) == {PERMFAIL: "failed"}, msg
