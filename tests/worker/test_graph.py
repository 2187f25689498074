"""Microsoft Graph end to end: API -> database -> worker drain -> the Graph fake, and back to the API."""

from __future__ import annotations

import os
from datetime import datetime

import pytest

from tests.conftest import Env
from tests.fakes.graph_server import (
    GraphFake,
    Scripted,
    access_denied,
    send_as_denied,
    throttled,
    token_server_error,
    unavailable,
)
from tests.providers.conftest import BATCH, b64, get, make_due, send, submit, use_graph

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\r\n\x00end"


async def test_batch_message_delivered_byte_for_byte(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph)
    big = os.urandom(3 * 1024 * 1024 + 12345)  # >= 3 MB: the draft + upload session flow
    msg = await send(
        menv, to=["a@example.com", "b@example.com"], cc=["c@example.com"], bcc=["d@example.com"],
        subject="Invoice 1042 – ünïcode", body_html="<p>Hello</p>", reply_to="support@contoso.com",
        headers={"X-Tracking": "42"},
        attachments=[{"filename": "invoice.pdf", "content_type": "application/pdf", "content_base64": b64(PDF)},
                     {"filename": "big.bin", "content_type": "application/octet-stream", "content_base64": b64(big)}])
    assert msg["status"] == "sent", msg
    assert msg["sent_via"] == "graph"
    # No `from` given and the batch provider is Graph: the batch account sends it (reference article).
    assert msg["sender"] == BATCH and msg["sender_name"] == "Contoso batch"
    [got] = graph.sent
    assert got.mailbox == BATCH and got.from_address == BATCH and got.from_name == "Contoso batch"
    assert got.subject == "Invoice 1042 – ünïcode"
    assert got.to == ["a@example.com", "b@example.com"] and got.cc == ["c@example.com"]
    assert got.bcc == ["d@example.com"] and got.reply_to == ["support@contoso.com"]
    assert got.body_type == "HTML" and got.body == "<p>Hello</p>"
    assert got.internet_message_id == msg["message_id"]
    assert got.headers == {"X-Tracking": "42"}
    by_name = {a.name: a for a in got.attachments}
    assert by_name["invoice.pdf"].content == PDF and by_name["invoice.pdf"].content_type == "application/pdf"
    assert by_name["big.bin"].content == big and by_name["big.bin"].via == "upload"
    assert graph.drafts == {}  # the draft was sent, nothing left behind
    hist = (await menv.client.get("/history", params={"provider": "graph", "status": "sent"})).json()
    assert [m["id"] for m in hist["items"]] == [msg["id"]]


async def test_explicit_provider_and_sender(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph, batch=False)  # the batch provider stays SMTP
    msg = await send(menv, provider="graph", **{"from": "other@contoso.com"}, body_text="plain")
    assert msg["status"] == "sent", msg
    [got] = graph.sent
    assert got.mailbox == "other@contoso.com" and got.from_address == "other@contoso.com"
    assert got.body_type == "Text" and got.body == "plain" and got.attachments == []
    # One token for the worker's Graph transport, reused for the next message (MSAL's cache).
    msg2 = await send(menv, provider="graph", **{"from": "other@contoso.com"})
    assert msg2["status"] == "sent"
    assert len(graph.token_requests) == 1


@pytest.mark.parametrize(("answer", "retry_after"), [(throttled(7), 7), (unavailable(9), 9)], ids=["429", "503"])
async def test_throttled_is_deferred_not_failed(menv: Env, graph: GraphFake, answer: Scripted,
                                                retry_after: int) -> None:
    await use_graph(menv, graph)
    graph.script("sendMail", answer)
    before = datetime.now().astimezone()
    msg = await send(menv)
    assert msg["status"] == "deferred", msg
    assert msg["attempts"] == 0  # throttling is not a failed attempt
    assert msg["error_type"] == "graph.throttled"
    wait = (datetime.fromisoformat(msg["next_attempt_at"]) - before).total_seconds()
    assert retry_after - 1 <= wait <= retry_after + 5  # at least what Retry-After asked (minus the test's slack)
    [attempt] = msg["attempt_log"]
    assert attempt["outcome"] == "throttled" and attempt["reply_code"] in (429, 503)
    # The whole provider pauses for Retry-After, in Redis, for every worker.
    pause = await menv.redis.pttl("outbox:throttle:graph:pause")
    assert 0 < pause <= retry_after * 1000
    # Nothing is sent while paused, even a message that is due.
    other = await submit(menv)
    await menv.deliver()
    assert (await get(menv, other))["status"] == "deferred"
    await make_due(menv)
    await menv.deliver()
    assert (await get(menv, msg["id"]))["status"] == "sent"
    assert (await get(menv, other))["status"] == "sent"
    assert len(graph.sent) == 2


async def test_send_as_denied_fails_with_seed_explanation(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph)
    graph.script("sendMail", send_as_denied())
    msg = await send(menv)
    assert msg["status"] == "failed", msg
    assert msg["error_type"] == "graph.send_as_denied"
    assert "Send As permissions" in msg["error"] and "Send as" in msg["fix"]
    [attempt] = msg["attempt_log"]
    assert attempt["reply_code"] == 403 and "does not have the right to send mail" in attempt["reply_text"]
    hist = (await menv.client.get(f"/history/{msg['id']}")).json()
    assert hist["status"] == "failed" and hist["fix"] == msg["fix"]
    failed = (await menv.client.get("/history", params={"status": "failed"})).json()["items"]
    assert [m["sender"] for m in failed] == [BATCH]  # the seed's fix: "note the Email sender field"


async def test_unknown_mailbox_fails(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph)
    msg = await send(menv, **{"from": "ghost@contoso.com"})  # the fake answers 404 ErrorInvalidUser
    assert msg["status"] == "failed", msg
    assert msg["error_type"] == "graph.mailbox_not_found"
    assert "no mailbox exists for the user account in Exchange" in msg["error"]
    [attempt] = msg["attempt_log"]
    assert attempt["reply_code"] == 404 and "ghost@contoso.com" in attempt["reply_text"]
    assert attempt["sender"] == "ghost@contoso.com"


async def test_access_denied_fails(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph)
    graph.script("sendMail", access_denied())
    msg = await send(menv)
    assert msg["status"] == "failed" and msg["error_type"] == "graph.access_denied"
    assert "Mail.Send" in msg["fix"]


async def test_invalid_secret_holds_and_reentering_releases(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph, client_secret="Xy7~the-secret-id-instead-of-value")
    msg = await send(menv)
    assert msg["status"] == "held", msg  # not failed: an admin must fix the provider
    assert msg["attempts"] == 0
    assert msg["error_type"] == "entra.invalid_client_secret"
    assert "the secret's ID was pasted instead of its value" in msg["error"]
    assert "Value (not the Secret ID)" in msg["fix"]
    [attempt] = msg["attempt_log"]
    assert attempt["outcome"] == "held" and "AADSTS7000215" in attempt["reply_text"]
    v = (await menv.client.post("/providers/graph/verify")).json()
    assert v["ok"] is False and v["error_type"] == "entra.invalid_client_secret"
    assert "pasted instead of its value" in v["explanation"]
    # Re-entering the right value releases the held message.
    await use_graph(menv, graph)
    assert (await get(menv, msg["id"]))["status"] == "queued"
    await menv.deliver()
    assert (await get(menv, msg["id"]))["status"] == "sent"


async def test_token_endpoint_down_is_transient(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph)
    graph.script("token", token_server_error(), token_server_error())
    msg = await send(menv)
    assert msg["status"] == "retrying", msg
    assert msg["attempts"] == 1 and msg["next_attempt_at"] is not None
    assert msg["error_type"] == "entra.unavailable"
    assert graph.sent == []


async def test_token_endpoint_unreachable_is_transient(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph, authority_host="https://127.0.0.1:9")  # nothing listens on port 9
    msg = await send(menv)
    assert msg["status"] == "retrying", msg
    assert msg["error_type"] == "entra.unavailable"


async def test_expired_token_is_refreshed_once(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph)
    assert (await send(menv))["status"] == "sent"
    graph.revoke_tokens()  # the cached token is now refused with 401
    assert (await send(menv))["status"] == "sent"
    assert len(graph.token_requests) == 2
    assert [r.headers.get("authorization", "")[:7] for r in graph.requests_to("sendMail")].count("Bearer ") == 3


async def test_verify(menv: Env, graph: GraphFake) -> None:
    v = (await menv.client.post("/providers/graph/verify")).json()
    assert v["ok"] is False and v["error_type"] == "config.not_configured"
    await use_graph(menv, graph)
    v = (await menv.client.post("/providers/graph/verify")).json()
    assert v["ok"] is True, v
    assert BATCH in v["detail"] and "Mail.Send" in v["detail"]
    assert graph.sent == []  # nothing was sent
    await use_graph(menv, graph, batch_account="ghost@contoso.com")
    v = (await menv.client.post("/providers/graph/verify")).json()
    assert v["ok"] is False and v["error_type"] == "graph.mailbox_not_found" and v["reply_code"] == 404
    graph.authority.roles = ["User.Read.All"]  # a delegated permission instead of Mail.Send
    await use_graph(menv, graph)
    v = (await menv.client.post("/providers/graph/verify")).json()
    assert v["ok"] is False and "Mail.Send" in v["detail"] and v["error_type"] == "graph.forbidden"


async def test_test_email(menv: Env, graph: GraphFake) -> None:
    r = await menv.client.post("/providers/graph/test", json={"to": "admin@example.com"})
    assert r.status_code == 409  # not configured yet
    await use_graph(menv, graph, batch=False)
    r = await menv.client.post("/providers/graph/test", json={"to": "admin@example.com"})
    assert r.status_code == 202, r.text
    await menv.deliver()
    msg = await get(menv, r.json()["id"])
    assert msg["status"] == "sent" and msg["sent_via"] == "graph"
    [got] = graph.sent
    assert got.subject == "Outbox test email" and got.to == ["admin@example.com"] and got.mailbox == BATCH
