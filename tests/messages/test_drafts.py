"""The send email dialog: drafts pre-filled, edited (attachments added and removed), then sent with the
provider chosen in 'How would you like to send email'."""

from __future__ import annotations

from typing import Any

from tests.conftest import Env
from tests.messages.helpers import PROBLEM, b64, configure, draft, make_user, set_options, user_key


class TestCreateDraft:
    async def test_service_on_behalf_of_user_prefills_everything(self, env: Env) -> None:
        alice = await make_user(env)
        svc = env.auth(await env.new_key("service"))
        d = await draft(env, svc, user_id=alice["id"], cc=["cc@example.org"], bcc=["audit@example.net"],
                        body_html="<p>Hello</p>",
                        attachments=[{"filename": "statement.pdf", "content_type": "application/pdf",
                                      "content_base64": b64(b"%PDF statement")}])
        assert d["status"] == "draft"
        assert d["kind"] == "interactive"
        assert d["user_id"] == alice["id"]
        assert d["provider"] is None
        assert d["sender"] == "alice@contoso.com"
        assert (d["to"], d["cc"], d["bcc"]) == (["customer@example.com"], ["cc@example.org"], ["audit@example.net"])
        assert (d["subject"], d["body_text"], d["body_html"]) == ("Statement", "Hello", "<p>Hello</p>")
        assert [(a["filename"], a["size"]) for a in d["attachments"]] == [("statement.pdf", 14)]
        assert d["next_attempt_at"] is None
        # The user sees the draft made for them; the worker leaves it alone.
        mine = (await env.client.get("/messages", headers=await user_key(env, alice))).json()
        assert [m["id"] for m in mine["items"]] == [d["id"]]
        assert await env.deliver() == 0

    async def test_draft_may_start_without_recipients(self, env: Env) -> None:
        alice = await make_user(env)
        d = await draft(env, await user_key(env, alice), to=[])
        assert d["to"] == []

    async def test_refusals(self, env: Env) -> None:
        alice = await make_user(env)
        svc = env.auth(await env.new_key("service"))
        cases = [
            ({"draft": True, "to": ["c@example.com"]}, 422, "user_id"),  # a draft needs a user
            ({"draft": True, "to": ["c@example.com"], "user_id": 999}, 422, "no user 999"),
            ({"draft": True, "to": ["c@example.com"], "user_id": alice["id"], "provider": "smtp"}, 422, "provider"),
            ({"to": ["c@example.com"], "from": "s@example.com", "provider": "email_app"}, 422, "email_app"),
        ]
        for body, code, text in cases:
            r = await env.client.post("/messages", json=body, headers=svc)
            assert r.status_code == code, (body, r.text)
            assert r.headers["content-type"] == PROBLEM
            assert text in r.json()["detail"]
        huge = 2**63
        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("PATCH", f"/messages/{huge}", {}), ("POST", f"/messages/{huge}/send", {}),
            ("GET", f"/messages/{huge}/eml", None), ("POST", "/messages", {"draft": True, "to": [], "user_id": huge})]
        for method, path, call_body in calls:
            r = await env.client.request(method, path, json=call_body, headers=svc)
            assert r.status_code == 422, (method, path, r.text)
        await env.client.patch(f"/users/{alice['id']}", json={"enabled": False})
        r = await env.client.post("/messages", json={"draft": True, "to": ["c@example.com"], "user_id": alice["id"]},
                                  headers=svc)
        assert r.status_code == 409
        assert r.json()["type"].endswith("/user-disabled")
        assert (await env.sql("SELECT count(*) FROM message"))[0][0] == 0


class TestEditDraft:
    async def test_fields_and_attachments(self, env: Env) -> None:
        alice = await make_user(env)
        await set_options(env, alice, sender_email="sales@contoso.com")
        h = await user_key(env, alice)
        d = await draft(env, h, attachments=[
            {"filename": "a.txt", "content_type": "text/plain", "content_base64": b64(b"first")},
            {"filename": "b.txt", "content_type": "text/plain", "content_base64": b64(b"second")}])
        a_id, b_id = (a["id"] for a in d["attachments"])
        r = await env.client.patch(f"/messages/{d['id']}", headers=h, json={
            "to": ["x@example.com", "y@example.com"], "cc": ["z@example.com"], "subject": "Edited",
            "body_text": None, "body_html": "<p>Edited</p>", "from": "alice@contoso.com",
            "attachments_remove": [a_id],
            "attachments_add": [{"filename": "c.csv", "content_type": "text/csv", "content_base64": b64(b"1,2")}]})
        assert r.status_code == 200, r.text
        e = r.json()
        assert e["status"] == "draft"
        assert (e["to"], e["cc"], e["bcc"]) == (["x@example.com", "y@example.com"], ["z@example.com"], [])
        assert (e["subject"], e["body_text"], e["body_html"]) == ("Edited", None, "<p>Edited</p>")
        assert e["sender"] == "alice@contoso.com"
        assert [a["filename"] for a in e["attachments"]] == ["b.txt", "c.csv"]
        assert e["attachments"][0]["id"] == b_id
        rows = await env.sql("SELECT attachment_count FROM message WHERE id = :i", i=d["id"])
        assert rows[0][0] == 2
        # Only the fields sent change; from: null goes back to the rules (the sender email).
        r = await env.client.patch(f"/messages/{d['id']}", headers=h, json={"from": None, "bcc": ["b@example.com"]})
        assert r.json()["sender"] == "sales@contoso.com"
        assert r.json()["subject"] == "Edited"
        assert r.json()["bcc"] == ["b@example.com"]

    async def test_bad_edits_change_nothing(self, env: Env) -> None:
        alice = await make_user(env)
        h = await user_key(env, alice)
        d = await draft(env, h, attachments=[
            {"filename": "a.txt", "content_type": "text/plain", "content_base64": b64(b"first")}])
        before = (await env.client.get(f"/messages/{d['id']}", headers=h)).json()
        bad = [
            ({"to": ["not an address"]}, 422),
            ({"subject": "a\r\nBcc: evil@example.com"}, 422),
            ({"from": "ceo@contoso.com"}, 403),
            ({"attachments_remove": [999999]}, 422),
            ({"attachments_add": [{"filename": "x", "content_base64": "***"}], "subject": "changed"}, 422),
            ({"provider": "smtp"}, 422),  # not a draft field
        ]
        for body, code in bad:
            r = await env.client.patch(f"/messages/{d['id']}", headers=h, json=body)
            assert r.status_code == code, (body, r.text)
            assert r.headers["content-type"] == PROBLEM
        after = (await env.client.get(f"/messages/{d['id']}", headers=h)).json()
        assert after == before

    async def test_too_large_after_edit(self, env: Env) -> None:
        await env.client.patch("/parameters", json={"attachment_size_limit_mb": 1})
        alice = await make_user(env)
        h = await user_key(env, alice)
        d = await draft(env, h, attachments=[
            {"filename": "a.bin", "content_base64": b64(b"\x00" * 500_000)}])
        r = await env.client.patch(f"/messages/{d['id']}", headers=h, json={
            "attachments_add": [{"filename": "b.bin", "content_base64": b64(b"\x00" * 500_000)}]})
        assert r.status_code == 413
        assert len((await env.client.get(f"/messages/{d['id']}", headers=h)).json()["attachments"]) == 1

    async def test_only_drafts_and_only_visible_ones(self, env: Env) -> None:
        alice = await make_user(env)
        bob = await make_user(env, name="Bob", email="bob@contoso.com")
        await configure(env, "smtp")
        h = await user_key(env, alice)
        d = await draft(env, h)
        r = await env.client.patch(f"/messages/{d['id']}", headers=await user_key(env, bob), json={"subject": "x"})
        assert r.status_code == 404
        assert (await env.client.post(f"/messages/{d['id']}/send", headers=h, json={"provider": "smtp"})).status_code \
            == 202
        r = await env.client.patch(f"/messages/{d['id']}", headers=h, json={"subject": "late"})
        assert r.status_code == 409


class TestHowWouldYouLikeToSend:
    async def test_blank_option_asks_with_available_choices(self, env: Env) -> None:
        alice = await make_user(env)
        h = await user_key(env, alice)
        d = await draft(env, h)
        r = await env.client.post(f"/messages/{d['id']}/send", headers=h)
        assert r.status_code == 409
        assert r.headers["content-type"] == PROBLEM
        p = r.json()
        assert p["type"] == "https://outbox.dev/problems/choose-provider"
        assert [c["provider"] for c in p["choices"]] == ["email_app"]  # nothing else is configured
        assert p["choices"][0]["label"] == "Use an email app, such as Outlook"
        assert p["proposed"] is None
        await configure(env, "smtp", "graph", "exchange")
        p = (await env.client.post(f"/messages/{d['id']}/send", headers=h, json={})).json()
        assert [c["provider"] for c in p["choices"]] == ["email_app", "exchange", "smtp", "graph"]
        assert (await env.client.get(f"/messages/{d['id']}", headers=h)).json()["status"] == "draft"

    async def test_choice_without_do_not_ask_again_is_proposed_next_time(self, env: Env) -> None:
        alice = await make_user(env)
        await configure(env, "smtp")
        h = await user_key(env, alice)
        first = await draft(env, h)
        r = await env.client.post(f"/messages/{first['id']}/send", headers=h, json={"provider": "smtp"})
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "queued"
        assert r.json()["provider"] == "smtp"
        opts = (await env.client.get(f"/users/{alice['id']}/options", headers=h)).json()
        assert (opts["email_provider"], opts["proposed_provider"]) == (None, "smtp")
        second = await draft(env, h)
        p = (await env.client.post(f"/messages/{second['id']}/send", headers=h)).json()
        assert p["type"].endswith("/choose-provider")
        assert p["proposed"] == "smtp"

    async def test_do_not_ask_again_stores_the_option(self, env: Env) -> None:
        alice = await make_user(env)
        await configure(env, "smtp")
        h = await user_key(env, alice)
        first = await draft(env, h)
        r = await env.client.post(f"/messages/{first['id']}/send", headers=h,
                                  json={"provider": "smtp", "do_not_ask_again": True})
        assert r.status_code == 202
        opts = (await env.client.get(f"/users/{alice['id']}/options", headers=h)).json()
        assert opts["email_provider"] == "smtp"
        second = await draft(env, h)
        r = await env.client.post(f"/messages/{second['id']}/send", headers=h)
        assert r.status_code == 202
        assert r.json()["provider"] == "smtp"
        r = await env.client.post(f"/messages/{second['id']}/send", headers=h)
        assert r.status_code == 409  # no longer a draft
        r = await env.client.post(f"/messages/{(await draft(env, h))['id']}/send", headers=h,
                                  json={"do_not_ask_again": True})
        assert r.status_code == 422

    async def test_exchange_refused_for_external_users(self, env: Env) -> None:
        guest = await make_user(env, name="Guest", email="guest@partner.example.org", external=True)
        await configure(env, "exchange", "smtp")
        h = await user_key(env, guest)
        d = await draft(env, h)
        p = (await env.client.post(f"/messages/{d['id']}/send", headers=h)).json()
        assert [c["provider"] for c in p["choices"]] == ["email_app", "smtp"]
        r = await env.client.post(f"/messages/{d['id']}/send", headers=h, json={"provider": "exchange"})
        assert r.status_code == 409
        p = r.json()
        assert p["type"].endswith("/provider-unavailable")
        assert p["reason"] == "external_user"
        assert "outside the organization" in p["detail"]
        assert (await env.client.get(f"/messages/{d['id']}", headers=h)).json()["status"] == "draft"

    async def test_unconfigured_provider_refused(self, env: Env) -> None:
        alice = await make_user(env)
        await set_options(env, alice, email_provider="graph")
        h = await user_key(env, alice)
        d = await draft(env, h)
        r = await env.client.post(f"/messages/{d['id']}/send", headers=h)
        assert r.status_code == 409
        assert r.json()["reason"] == "not_configured"
        assert "email provider option is graph" in r.json()["detail"]

    async def test_send_needs_recipients(self, env: Env) -> None:
        alice = await make_user(env)
        await configure(env, "smtp")
        h = await user_key(env, alice)
        d = await draft(env, h, to=[])
        r = await env.client.post(f"/messages/{d['id']}/send", headers=h, json={"provider": "smtp"})
        assert r.status_code == 422
        assert "no recipients" in r.json()["detail"]

    async def test_direct_interactive_submit_uses_the_option(self, env: Env) -> None:
        alice = await make_user(env)
        await configure(env, "smtp")
        h = await user_key(env, alice)
        body = {"to": ["c@example.com"], "subject": "now", "body_text": "x"}
        r = await env.client.post("/messages", headers=h, json=body)
        assert r.status_code == 409
        assert r.json()["type"].endswith("/choose-provider")
        await set_options(env, alice, email_provider="email_app")
        r = await env.client.post("/messages", headers=h, json=body)
        assert r.status_code == 409
        assert r.json()["type"].endswith("/email-app-needs-draft")
        r = await env.client.post("/messages", headers=h, json={**body, "provider": "smtp"})
        assert r.status_code == 202
        msg = (await env.client.get(f"/messages/{r.json()['id']}", headers=h)).json()
        assert (msg["status"], msg["kind"], msg["provider"], msg["sender"]) == (
            "queued", "interactive", "smtp", "alice@contoso.com")

    async def test_cancel_a_draft(self, env: Env) -> None:
        alice = await make_user(env)
        h = await user_key(env, alice)
        d = await draft(env, h)
        r = await env.client.post(f"/messages/{d['id']}/cancel", headers=h)
        assert r.json()["status"] == "cancelled"
