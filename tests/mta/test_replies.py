"""What Outbox makes of real Postfix replies: held, failed, throttled or retried, and why (issue 11, item 4)."""

from __future__ import annotations

import asyncio

from tests.conftest import Env
from tests.mta.conftest import message, send, submit, use_postfix
from tests.support.postfix import IDLE_TIMEOUT, PASSWORD, RATE_LIMIT, USER, Postfix


async def test_starttls_required_but_not_configured_is_held_with_the_fix(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "submission", tls="none")
    msg = await send(mta_env, subject="no tls")
    assert msg["status"] == "held", msg
    last = msg["attempt_log"][-1]
    assert (last["reply_code"], last["error_type"]) == (530, "smtp.tls.required"), last
    assert "Must issue a STARTTLS command first" in last["reply_text"]
    assert "STARTTLS" in last["fix"]


async def test_not_signed_in_is_held_and_does_not_blame_a_password(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "submission")  # STARTTLS, but no user name
    msg = await send(mta_env, subject="no auth")
    assert msg["status"] == "held", msg
    last = msg["attempt_log"][-1]
    assert last["error_type"] == "smtp.auth.not_signed_in", last
    assert "not logged in" in last["reply_text"]
    assert "password" not in str(msg["error"]).split(".")[0].lower()  # the title: "Server requires sign-in"


async def test_sender_not_owned_gets_send_as_advice(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "submission", authentication_required=True, username=USER,
                      password=PASSWORD)
    msg = await send(mta_env, subject="send as", **{"from": "other@example.com"})
    assert msg["status"] == "failed", msg
    last = msg["attempt_log"][-1]
    assert (last["reply_code"], last["error_type"]) == (553, "smtp.send_as_denied"), last
    assert "not owned by user" in last["reply_text"]
    assert "Send As" in last["fix"]


async def test_greeting_554_is_a_provider_problem(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "blocked")
    first = await submit(mta_env, subject="blocked 1")
    second = await submit(mta_env, subject="blocked 2")
    await mta_env.deliver()
    for mid in (first, second):
        msg = await message(mta_env, mid)
        assert msg["status"] == "held", msg  # waits for the provider to be fixed, not failed one by one
        last = msg["attempt_log"][-1]
        assert (last["reply_code"], last["error_type"]) == (554, "smtp.greeting_rejected"), last


async def test_message_rate_limit_pauses_without_counting_attempts(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "ratelimit")
    ids = [await submit(mta_env, subject=f"rate {i}") for i in range(RATE_LIMIT + 1)]
    await mta_env.deliver()
    got = [await message(mta_env, mid) for mid in ids]
    statuses = sorted(m["status"] for m in got)
    assert statuses == ["deferred"] + ["sent"] * RATE_LIMIT, statuses
    [late] = [m for m in got if m["status"] == "deferred"]
    last = late["attempt_log"][-1]
    assert (last["reply_code"], last["error_type"], last["outcome"]) == (450, "smtp.throttled.rate", "throttled")
    assert "too much mail" in last["reply_text"]
    assert late["attempts"] == 0 and late["next_attempt_at"] is not None


async def test_idle_timeout_closes_pooled_connection_and_the_next_message_goes_out(
        mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "idle")
    first = await send(mta_env, subject="before idle")
    assert first["status"] == "sent", first
    await asyncio.sleep(IDLE_TIMEOUT + 1)  # Postfix: "421 4.4.2 mx.outbox.test Error: timeout exceeded", close
    postfix.wait_log(r"postfix/idle/smtpd.*timeout after")
    second = await send(mta_env, subject="after idle")
    assert second["status"] == "sent", second
    assert second["attempts"] == 1 and not second["uncertain"]
    postfix.wait_delivered("after idle")

