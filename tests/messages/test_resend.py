"""Resend and correct-and-resend of finished messages, through the API with the worker sending over SMTP
(reference article: "Use an alternate address for the recipient … before you try again")."""

from __future__ import annotations

from typing import Any

from tests.conftest import Env
from tests.messages.helpers import PROBLEM, b64, draft, make_user, set_options, user_key
from tests.support.smtp_server import SmtpServer


async def _submit(env: Env, headers: dict[str, str] | None = None, **fields: Any) -> int:
    body = {"to": ["full@example.com"], "subject": "Invoice 1042", "body_text": "Attached.",
            "attachments": [{"filename": "i.pdf", "content_type": "application/pdf",
                             "content_base64": b64(b"%PDF-1 invoice")}], **fields}
    r = await env.client.post("/messages", json=body, headers=headers or {})
    assert r.status_code == 202, r.text
    mid: int = r.json()["id"]
    return mid


async def _get(env: Env, mid: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = await env.client.get(f"/messages/{mid}", headers=headers or {})
    assert r.status_code == 200, r.text
    got: dict[str, Any] = r.json()
    return got


async def test_correct_and_resend_a_failed_message_to_an_alternate_address(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp, from_address="erp@contoso.com")
    smtp.handler.rcpt_replies["full@example.com"] = "554 5.2.2 mailbox full"
    mid = await _submit(env)
    await env.deliver()
    original = await _get(env, mid)
    assert original["status"] == "failed"
    assert original["error_type"] == "smtp.recipient.mailbox_full"

    # A corrected recipient that is not an address: 422 naming the field, nothing created.
    bad = await env.client.post(f"/messages/{mid}/resend", json={"to": ["not an address"]})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert bad.json()["errors"][0]["field"].startswith("to")
    assert (await env.client.get("/messages")).json()["total"] == 1

    r = await env.client.post(f"/messages/{mid}/resend",
                              json={"to": ["alternate@example.com"], "subject": "Invoice 1042 (again)"})
    assert r.status_code == 202, r.text
    new = r.json()
    assert new["id"] != mid and new["status"] == "queued" and new["resent_from"] == mid
    assert new["message_id"] != original["message_id"] and new["attempt_log"] == []
    assert [a["filename"] for a in new["attachments"]] == ["i.pdf"]
    assert await env.deliver() == 1
    [got] = smtp.received
    assert got.rcpt_tos == ["alternate@example.com"] and got.mail_from == "erp@contoso.com"
    assert got.message["Subject"] == "Invoice 1042 (again)"
    assert [a.get_payload(decode=True) for a in got.message.iter_attachments()] == [b"%PDF-1 invoice"]

    sent = await _get(env, new["id"])
    assert (sent["status"], sent["resent_from"], sent["to"]) == ("sent", mid, ["alternate@example.com"])
    after = await _get(env, mid)  # the original keeps its record and points to the resend
    assert (after["status"], after["to"], len(after["attempt_log"])) == ("failed", ["full@example.com"], 1)
    assert after["resent_as"] == [new["id"]]


async def test_resend_a_sent_message_unchanged_and_the_rules(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    svc = env.auth(await env.new_key("service"))
    other = env.auth(await env.new_key("service"))
    mid = await _submit(env, svc, to=["c@example.com"])
    # Not finished yet: still waiting for the worker.
    early = await env.client.post(f"/messages/{mid}/resend", headers=svc)
    assert early.status_code == 409 and "finished" in early.json()["detail"]
    await env.deliver()
    assert (await _get(env, mid, svc))["status"] == "sent"

    # Another service key does not see it; its owner resends it (no body at all: unchanged).
    assert (await env.client.post(f"/messages/{mid}/resend", headers=other)).status_code == 404
    r = await env.client.post(f"/messages/{mid}/resend", headers=svc)
    assert r.status_code == 202, r.text
    again = r.json()["id"]
    # The owner's listing has both; the admin resends it with a new sender, checked as on submission.
    assert {m["id"] for m in (await env.client.get("/messages", headers=svc)).json()["items"]} == {mid, again}
    r2 = await env.client.post(f"/messages/{mid}/resend", json={"from": "billing@contoso.com", "cc": ["x@y.org"]})
    assert r2.status_code == 202, r2.text
    assert r2.json()["sender"] == "billing@contoso.com"
    bad = await env.client.post(f"/messages/{mid}/resend", json={"from": "billing@@contoso.com"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "from"
    unknown = await env.client.post(f"/messages/{mid}/resend", json={"sender": "x@y.org"})
    assert unknown.status_code == 422
    assert await env.deliver() == 2
    assert len(smtp.received) == 3
    ids = {r.message["Message-ID"] for r in smtp.received}
    assert len(ids) == 3  # each resend is its own message
    assert smtp.received[-1].mail_from == "billing@contoso.com"
    assert (await _get(env, mid))["resent_as"] == [again, r2.json()["id"]]
    assert (await env.client.post("/messages/999999/resend")).status_code == 404


async def test_user_resends_own_interactive_mail_within_the_sender_rules(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    alice = await make_user(env)
    bob = await make_user(env, name="Bob", email="bob@contoso.com")
    await set_options(env, alice, email_provider="smtp", sender_email="sales@contoso.com")
    ha, hb = await user_key(env, alice), await user_key(env, bob)
    mid = await _submit(env, ha, to=["c@example.com"], attachments=[])
    await env.deliver()
    assert (await env.client.post(f"/messages/{mid}/resend", headers=hb)).status_code == 404
    # A user key may use only its own addresses, as on submission.
    refused = await env.client.post(f"/messages/{mid}/resend", headers=ha, json={"from": "ceo@contoso.com"})
    assert refused.status_code == 403 and refused.json()["allowed_senders"] == ["sales@contoso.com",
                                                                                 "alice@contoso.com"]
    ok = await env.client.post(f"/messages/{mid}/resend", headers=ha,
                               json={"from": "alice@contoso.com", "body_text": "Corrected"})
    assert ok.status_code == 202, ok.text
    assert (ok.json()["user_id"], ok.json()["kind"], ok.json()["provider"]) == (alice["id"], "interactive", "smtp")
    await env.deliver()
    assert [r.mail_from for r in smtp.received] == ["sales@contoso.com", "alice@contoso.com"]
    assert smtp.received[-1].message.get_content().strip() == "Corrected"


async def test_mail_handed_to_the_user_comes_back_as_a_draft(env: Env) -> None:
    alice = await make_user(env)
    h = await user_key(env, alice)
    d = await draft(env, h)
    r = await env.client.post(f"/messages/{d['id']}/send", headers=h, json={"provider": "email_app"})
    assert r.status_code == 200
    again = await env.client.post(f"/messages/{d['id']}/resend", headers=h, json={"subject": "Statement (2)"})
    assert again.status_code == 202, again.text
    assert (again.json()["status"], again.json()["resent_from"], again.json()["subject"]) == (
        "draft", d["id"], "Statement (2)")
    eml = await env.client.post(f"/messages/{again.json()['id']}/send", headers=h, json={"provider": "email_app"})
    assert eml.status_code == 200 and b"Statement (2)" in eml.content
