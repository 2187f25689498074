"""Interactive mail end to end: a user's draft sent over SMTP by the worker, from the user's address, and
shown in the sending status and history with who sent it and through which provider."""

from __future__ import annotations

from tests.conftest import Env
from tests.messages.helpers import b64, draft, make_user, set_options, user_key
from tests.support.smtp_server import SmtpServer


async def test_draft_sent_over_smtp_from_the_users_address(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp, from_address="erp@contoso.com")
    alice = await make_user(env)
    h = await user_key(env, alice)
    d = await draft(env, h, bcc=["audit@example.net"],
                    attachments=[{"filename": "s.pdf", "content_type": "application/pdf",
                                  "content_base64": b64(b"%PDF-1 s")}])
    await env.client.patch(f"/messages/{d['id']}", headers=h, json={"to": ["me@example.com"], "subject": "Mine"})
    r = await env.client.post(f"/messages/{d['id']}/send", headers=h, json={"provider": "smtp"})
    assert r.status_code == 202, r.text
    assert await env.deliver() == 1
    [got] = smtp.received
    assert got.mail_from == "alice@contoso.com"
    assert sorted(got.rcpt_tos) == ["audit@example.net", "me@example.com"]
    m = got.message
    assert m["From"].addresses[0].addr_spec == "alice@contoso.com"
    assert m["From"].addresses[0].display_name == "Alice Martin"
    assert m["Subject"] == "Mine"
    assert m["Bcc"] is None
    assert m["X-Unsent"] is None
    assert [a.get_payload(decode=True) for a in m.iter_attachments()] == [b"%PDF-1 s"]

    msg = (await env.client.get(f"/messages/{d['id']}", headers=h)).json()
    assert (msg["status"], msg["sent_via"], msg["user_id"], msg["kind"]) == ("sent", "smtp", alice["id"],
                                                                            "interactive")
    hist = (await env.client.get("/history", params={"kind": "interactive"})).json()
    assert [(i["id"], i["user_id"], i["provider"], i["sender"]) for i in hist["items"]] == [
        (d["id"], alice["id"], "smtp", "alice@contoso.com")]


async def test_sender_override_used_over_smtp(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    alice = await make_user(env)
    await set_options(env, alice, sender_email="sales@contoso.com", email_provider="smtp")
    h = await user_key(env, alice)
    r = await env.client.post("/messages", headers=h, json={"to": ["c@example.com"], "subject": "s",
                                                           "body_text": "x"})
    assert r.status_code == 202, r.text
    await env.deliver()
    [got] = smtp.received
    assert got.mail_from == "sales@contoso.com"


async def test_sending_status_lists_own_interactive_mail(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    alice = await make_user(env)
    bob = await make_user(env, name="Bob", email="bob@contoso.com")
    await set_options(env, alice, email_provider="smtp")
    ha, hb = await user_key(env, alice), await user_key(env, bob)
    a = await env.client.post("/messages", headers=ha, json={"to": ["c@example.com"], "subject": "a"})
    b = await draft(env, hb)
    svc = env.auth(await env.new_key("service"))
    batch = await env.client.post("/messages", headers=svc, json={"to": ["c@example.com"], "subject": "batch"})
    assert batch.status_code == 202
    mine = (await env.client.get("/messages", headers=ha)).json()
    assert [(m["id"], m["user_id"], m["provider"]) for m in mine["items"]] == [(a.json()["id"], alice["id"], "smtp")]
    assert [m["id"] for m in (await env.client.get("/messages", headers=hb)).json()["items"]] == [b["id"]]
    assert (await env.client.get(f"/messages/{b['id']}", headers=ha)).status_code == 404
    everything = (await env.client.get("/messages", params={"kind": "interactive"})).json()
    assert everything["total"] == 2
    # The history is an admin view.
    assert (await env.client.get("/history", headers=ha)).status_code == 403
