"""The .eml download of a message a server already has carries a fresh Message-ID (issue 11, item 9): the
user's email app would otherwise send a second, different message under the delivered one's id."""

from __future__ import annotations

from email import message_from_bytes, policy

from tests.conftest import Env
from tests.mta.conftest import message, send, submit, use_postfix
from tests.support.postfix import PERMFAIL, TEMPFAIL, Postfix


async def _eml_message_id(env: Env, message_id: int) -> str:
    r = await env.client.get(f"/messages/{message_id}/eml")
    assert r.status_code == 200, r.text
    parsed = message_from_bytes(r.content, policy=policy.default)
    assert parsed["X-Unsent"] == "1"
    return str(parsed["Message-ID"])


async def test_eml_of_a_delivered_message_has_a_fresh_message_id(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "plain")
    msg = await send(mta_env, subject="delivered then downloaded")
    assert msg["status"] == "sent", msg
    [delivered] = postfix.wait_delivered("delivered then downloaded")
    assert delivered.message["Message-ID"] == msg["message_id"]
    fresh = await _eml_message_id(mta_env, msg["id"])
    assert fresh != msg["message_id"] and fresh.endswith(msg["message_id"].split("@", 1)[1])
    assert await _eml_message_id(mta_env, msg["id"]) != fresh  # a new one per download: each is a new message


async def test_eml_of_a_partly_accepted_message_has_a_fresh_message_id(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "plain")
    msg = await send(mta_env, subject="partly accepted", to=["ok@example.com", TEMPFAIL])
    assert msg["status"] != "sent", msg  # TEMPFAIL is still pending, ok@ already has it
    postfix.wait_delivered("partly accepted")
    assert await _eml_message_id(mta_env, msg["id"]) != msg["message_id"]


async def test_eml_of_a_message_no_server_has_keeps_its_message_id(mta_env: Env, postfix: Postfix) -> None:
    queued = await submit(mta_env, subject="not yet sent")  # no provider configured: it waits
    q = await message(mta_env, queued)
    assert await _eml_message_id(mta_env, queued) == q["message_id"]
    await use_postfix(mta_env, postfix, "plain")
    refused = await send(mta_env, subject="refused by all", to=[PERMFAIL])
    assert refused["status"] == "failed", refused
    assert await _eml_message_id(mta_env, refused["id"]) == refused["message_id"]
