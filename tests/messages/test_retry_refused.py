"""Retrying a message whose every recipient a server refused for good sends it again to them (found by the
console's browser test: the retry had an empty envelope and stayed `retrying`)."""

from __future__ import annotations

from tests.conftest import Env
from tests.support.smtp_server import SmtpServer


async def test_retry_after_every_recipient_was_refused_sends_to_them_again(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    smtp.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 <gone@example.com>: mailbox unavailable"
    mid = (await env.client.post("/messages", json={"to": ["gone@example.com"], "subject": "again",
                                                    "body_text": "x"})).json()["id"]
    await env.deliver()
    got = (await env.client.get(f"/messages/{mid}")).json()
    assert got["status"] == "failed" and got["recipients"][0]["state"] == "failed"
    smtp.handler.rcpt_replies.clear()
    r = await env.client.post(f"/messages/{mid}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["recipients"][0]["state"] == "pending"
    await env.deliver()
    got = (await env.client.get(f"/messages/{mid}")).json()
    assert got["status"] == "sent", got
    assert got["recipients"][0]["state"] == "accepted"
    assert [m.rcpt_tos for m in smtp.received if m.message["Subject"] == "again"] == [["gone@example.com"]]
