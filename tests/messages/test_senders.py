"""Sender resolution: every rule of `resolve_sender`, then the same rules through the API."""

from __future__ import annotations

import pytest

from app.core.errors import InvalidInput
from app.messages.senders import ResolvedSender, SenderNotAllowed, SenderRules, resolve_sender
from app.models import User
from tests.conftest import Env
from tests.messages.helpers import PROBLEM, configure, draft, make_user, set_options, user_key
from tests.support.smtp_server import SmtpServer

ALICE = User(id=7, name="Alice Martin", email="alice@contoso.com")
ALICE_OVERRIDE = User(id=7, name="Alice Martin", email="alice@contoso.com", sender_email="sales@contoso.com")
NO_EMAIL = User(id=8, name="Nobody")
BATCH = ("erp@contoso.com", "Contoso ERP")


class TestResolveSender:
    def test_message_from_any_address_for_admin_and_service(self) -> None:
        for role in ("admin", "service"):
            for kind, user in (("batch", None), ("interactive", ALICE)):
                got = resolve_sender("Billing@Contoso.com", "Billing", SenderRules(kind, role, user,
                                                                                   batch_account=BATCH))
                assert got == ResolvedSender("Billing@contoso.com", "Billing", "message")

    def test_user_key_may_give_own_email_or_override(self) -> None:
        rules = SenderRules("interactive", "user", ALICE_OVERRIDE)
        assert resolve_sender("ALICE@contoso.com", None, rules) == ResolvedSender(
            "alice@contoso.com", "Alice Martin", "message")
        assert resolve_sender("sales@contoso.com", None, rules).address == "sales@contoso.com"

    def test_user_key_other_from_is_refused_not_replaced(self) -> None:
        with pytest.raises(SenderNotAllowed) as exc:
            resolve_sender("ceo@contoso.com", None, SenderRules("interactive", "user", ALICE_OVERRIDE))
        assert exc.value.status_code == 403
        assert exc.value.extra["allowed_senders"] == ["sales@contoso.com", "alice@contoso.com"]
        assert "sales@contoso.com or alice@contoso.com" in exc.value.detail
        with pytest.raises(SenderNotAllowed):
            resolve_sender("x@contoso.com", None, SenderRules("interactive", "user", NO_EMAIL))

    def test_override_then_user_email(self) -> None:
        assert resolve_sender(None, None, SenderRules("interactive", "service", ALICE_OVERRIDE)) == ResolvedSender(
            "sales@contoso.com", "Alice Martin", "sender_override")
        assert resolve_sender(None, "A. M.", SenderRules("interactive", "user", ALICE)) == ResolvedSender(
            "alice@contoso.com", "A. M.", "user_email")

    def test_user_without_address_cannot_send_and_never_gets_the_batch_account(self) -> None:
        with pytest.raises(InvalidInput) as exc:
            resolve_sender(None, None, SenderRules("interactive", "service", NO_EMAIL, batch_account=BATCH))
        assert "has no Email" in exc.value.detail

    def test_template_sender_then_batch_account(self) -> None:
        tpl = ("noreply@contoso.com", "Contoso")
        for kind in ("batch", "workflow"):
            assert resolve_sender(None, None, SenderRules(kind, "service", template_sender=tpl,
                                                          batch_account=BATCH)).source == "template"
            got = resolve_sender(None, None, SenderRules(kind, "service", batch_account=BATCH))
            assert got == ResolvedSender("erp@contoso.com", "Contoso ERP", "batch_account")
        # The user of a workflow message is its recipient, not its sender.
        got = resolve_sender(None, None, SenderRules("workflow", "service", ALICE, batch_account=BATCH))
        assert got.source == "batch_account"

    def test_no_sender_at_all(self) -> None:
        with pytest.raises(InvalidInput):
            resolve_sender(None, None, SenderRules("batch", "service"))

    def test_bad_from_is_invalid_input(self) -> None:
        for bad in ("no-at-sign", "a@b\r\nBcc: x@example.com", "Name <a@example.com>"):
            with pytest.raises(InvalidInput):
                resolve_sender(bad, None, SenderRules("batch", "admin"))
        with pytest.raises(InvalidInput):
            resolve_sender("a@example.com", "Evil\r\nBcc: x@example.com", SenderRules("batch", "admin"))


class TestSenderThroughTheApi:
    async def test_user_key_from_refused_with_allowed_list(self, env: Env) -> None:
        alice = await make_user(env)
        h = await user_key(env, alice)
        r = await env.client.post("/messages", json={"draft": True, "to": ["c@example.com"],
                                                     "from": "ceo@contoso.com"}, headers=h)
        assert r.status_code == 403
        assert r.headers["content-type"] == PROBLEM
        body = r.json()
        assert body["type"].endswith("/sender-not-allowed")
        assert body["allowed_senders"] == ["alice@contoso.com"]
        assert (await env.sql("SELECT count(*) FROM message"))[0][0] == 0

    async def test_draft_from_follows_override_then_email(self, env: Env) -> None:
        alice = await make_user(env)
        h = await user_key(env, alice)
        assert (await draft(env, h))["sender"] == "alice@contoso.com"
        await set_options(env, alice, sender_email="sales@contoso.com")
        d = await draft(env, h)
        assert d["sender"] == "sales@contoso.com"
        assert d["sender_name"] == "Alice Martin"
        # Service on behalf of the user: the same rules; its own From is allowed as given.
        svc = env.auth(await env.new_key("service"))
        assert (await draft(env, svc, user_id=alice["id"]))["sender"] == "sales@contoso.com"
        assert (await draft(env, svc, user_id=alice["id"], **{"from": "any@contoso.com"}))["sender"] == \
            "any@contoso.com"

    async def test_user_without_email_cannot_send(self, env: Env) -> None:
        nobody = await make_user(env, name="Nobody", email=None)
        r = await env.client.post("/messages", json={"draft": True, "to": ["c@example.com"]},
                                  headers=await user_key(env, nobody))
        assert r.status_code == 422
        assert "has no Email" in r.json()["detail"]

    async def test_batch_path_unchanged(self, env: Env, smtp: SmtpServer) -> None:
        await env.use_smtp(smtp, from_address="erp@contoso.com", from_name="Contoso ERP")
        svc = env.auth(await env.new_key("service"))
        r = await env.client.post("/messages", json={"to": ["a@example.com"], "subject": "s"}, headers=svc)
        assert r.status_code == 202
        msg = (await env.client.get(f"/messages/{r.json()['id']}", headers=svc)).json()
        assert (msg["sender"], msg["sender_name"], msg["kind"], msg["user_id"]) == (
            "erp@contoso.com", "Contoso ERP", "batch", None)

    async def test_user_key_cannot_act_for_another_user(self, env: Env) -> None:
        alice = await make_user(env)
        bob = await make_user(env, name="Bob", email="bob@contoso.com")
        await configure(env, "smtp")
        r = await env.client.post("/messages", json={"draft": True, "to": ["c@example.com"], "user_id": bob["id"]},
                                  headers=await user_key(env, alice))
        assert r.status_code == 403
