"""A message accepted over HTTP is delivered over SMTP by the worker and recorded (PostgreSQL and SQLite)."""

from __future__ import annotations

import base64

from tests.conftest import Env, running_env
from tests.support.smtp_server import SmtpServer


async def test_submit_deliver_record(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    payload = b"%PDF-1.4 invoice bytes \x00\x01\x02"
    r = await env.client.post("/messages", json={
        "to": ["customer@example.com"], "cc": ["cc@example.org"], "bcc": ["hidden@example.net"],
        "from": "billing@example.com", "subject": "Invoice 1042 – Grüße", "body_text": "Hello",
        "body_html": "<p>Hello</p>",
        "attachments": [{"filename": "invoice.pdf", "content_type": "application/pdf",
                         "content_base64": base64.b64encode(payload).decode()}]})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status"] == "queued"
    # 202 means committed: the row is there before any worker ran.
    rows = await env.sql("SELECT status FROM message WHERE id = :i", i=accepted["id"])
    assert rows[0][0] == "queued"

    assert await env.deliver() == 1
    msg = (await env.client.get(f"/messages/{accepted['id']}")).json()
    assert msg["status"] == "sent"
    assert msg["attempts"] == 1
    assert msg["sent_via"] == "smtp"
    [attempt] = msg["attempt_log"]
    assert attempt["outcome"] == "sent" and attempt["reply_code"] == 250 and attempt["sender"] == "billing@example.com"

    [got] = smtp.received
    assert got.mail_from == "billing@example.com"
    assert sorted(got.rcpt_tos) == ["cc@example.org", "customer@example.com", "hidden@example.net"]
    m = got.message
    assert m["Subject"] == "Invoice 1042 – Grüße"
    assert m["Message-ID"] == accepted["message_id"]
    assert m["Bcc"] is None
    [att] = list(m.iter_attachments())
    assert att.get_filename() == "invoice.pdf"
    assert att.get_content() == payload

    hist = (await env.client.get("/history", params={"status": "sent"})).json()
    assert [h["id"] for h in hist["items"]] == [accepted["id"]]


async def test_idempotency_key_returns_first_result(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    body = {"to": ["a@example.com"], "subject": "once", "body_text": "x"}
    h = {"Idempotency-Key": "order-77-confirmation"}
    first = await env.client.post("/messages", json=body, headers=h)
    second = await env.client.post("/messages", json=body, headers=h)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    other = await env.client.post("/messages", json={**body, "subject": "different"}, headers=h)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert (await env.sql("SELECT count(*) FROM message"))[0][0] == 1


async def test_default_sender_is_the_batch_account(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp, from_address="erp-batch@example.com", from_name="Contoso ERP")
    r = await env.client.post("/messages", json={"to": ["a@example.com"], "subject": "s", "body_text": "x"})
    assert r.status_code == 202
    await env.deliver()
    [got] = smtp.received
    assert got.mail_from == "erp-batch@example.com"
    assert "Contoso ERP" in got.message["From"]


async def test_bulk_submit(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    msgs = [{"to": [f"r{i}@example.com"], "subject": f"bulk {i}", "body_text": "x"} for i in range(50)]
    r = await env.client.post("/messages/bulk", json={"messages": msgs})
    assert r.status_code == 202, r.text
    assert len(r.json()["accepted"]) == 50
    await env.deliver()
    assert len(smtp.received) == 50
    page = (await env.client.get("/messages", params={"status": "sent", "limit": 100})).json()
    assert page["total"] == 50


async def test_bulk_is_all_or_nothing(env: Env) -> None:
    msgs = [{"to": ["ok@example.com"], "subject": "a", "from": "s@example.com"},
            {"to": ["not-an-address"], "subject": "b", "from": "s@example.com"}]
    r = await env.client.post("/messages/bulk", json={"messages": msgs})
    assert r.status_code == 422
    assert "messages[1].to" in r.json()["detail"]
    assert (await env.sql("SELECT count(*) FROM message"))[0][0] == 0


async def test_bulk_limit(db_url: str) -> None:
    """OUTBOX_MAX_BULK: the limit itself is accepted, one more is refused naming `messages`, nothing stored."""
    async with running_env(db_url, OUTBOX_MAX_BULK=3) as env:
        msgs = [{"to": [f"r{i}@example.com"], "subject": f"bulk {i}", "from": "s@example.com"} for i in range(4)]
        r = await env.client.post("/messages/bulk", json={"messages": msgs})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"].endswith("/invalid-input")
        assert [e["field"] for e in problem["errors"]] == ["messages"]
        assert "at most 3" in problem["detail"]
        assert (await env.sql("SELECT count(*) FROM message"))[0][0] == 0
        r = await env.client.post("/messages/bulk", json={"messages": msgs[:3]})
        assert r.status_code == 202, r.text
        assert (await env.sql("SELECT count(*) FROM message"))[0][0] == 3
