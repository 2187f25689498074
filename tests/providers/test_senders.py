"""Senders really used (issue 15 item 3): verify and the test email take a From (and for Graph/Exchange a
mailbox); GET /providers/senders reports per sender and provider what is known before sending and what only a
send can prove; /status shows the counts. SMTP against a real server with AUTH, Graph against the local fake."""

from __future__ import annotations

from typing import Any

from tests.conftest import Env
from tests.fakes.graph_server import GraphFake
from tests.messages.helpers import make_user, set_options
from tests.providers.conftest import BATCH, get, use_graph
from tests.support.smtp_server import SmtpServer
from tests.templates.factories import create_template

ACCOUNT = "batch@contoso.com"


def by_sender(report: dict[str, Any], provider: str) -> dict[str, dict[str, Any]]:
    return {i["sender"]: i for i in report["items"] if i["provider"] == provider}


async def _test_email(env: Env, provider: str, sender: str) -> dict[str, Any]:
    r = await env.client.post(f"/providers/{provider}/test", json={"to": "admin@example.com", "from": sender})
    assert r.status_code == 202, r.text
    await env.deliver()
    return await get(env, r.json()["id"])


async def test_smtp_senders_send_as_and_status(env: Env) -> None:
    with SmtpServer(auth={ACCOUNT: "pw"}) as smtp:
        r = await env.client.patch("/providers/smtp", json={
            "host": "127.0.0.1", "port": smtp.port, "tls": "none", "authentication_required": True,
            "username": ACCOUNT, "password": "pw", "from_address": ACCOUNT, "per_minute_limit": 0,
            "timeout_seconds": 5})
        assert r.status_code == 200, r.text
        alice = await make_user(env)
        await set_options(env, alice, sender_email="sales@contoso.com")
        await make_user(env, name="Gone", email="gone@contoso.com", enabled=False)
        await create_template(env, sender="workflow@contoso.com")

        report = (await env.client.get("/providers/senders")).json()
        smtp_items = by_sender(report, "smtp")
        assert set(smtp_items) == {ACCOUNT, "alice@contoso.com", "sales@contoso.com", "workflow@contoso.com"}
        assert smtp_items[ACCOUNT]["state"] == "ok" and smtp_items[ACCOUNT]["used_by"] == ["batch account"]
        assert "own address" in smtp_items[ACCOUNT]["before_sending"]
        sales = smtp_items["sales@contoso.com"]
        assert sales["state"] == "unproven" and sales["used_by"] == [f"user {alice['id']} sender email"]
        assert "Send As" in sales["before_sending"] and '"from": "sales@contoso.com"' in sales["only_a_send_proves"]
        assert smtp_items["workflow@contoso.com"]["used_by"] == ["template expense-approval (system)"]
        assert report["counts"] == {"ok": 1, "unproven": 3, "failing": 0}

        # Verify with a From: the connection and sign-in, and what is known about that sender.
        v = (await env.client.post("/providers/smtp/verify", json={"from": "sales@contoso.com"})).json()
        assert v["ok"] is True and [s["step"] for s in v["steps"]] == ["connect", "authenticate", "mail", "rcpt"], v
        assert "MAIL FROM:<sales@contoso.com>" in v["steps"][2]["detail"]
        [s] = v["senders"]
        assert (s["sender"], s["state"], s["used_by"]) == ("sales@contoso.com", "unproven", ["verify"])
        for body, field in (({"mailbox": "a@contoso.com"}, "mailbox"), ({"from": "not-an-address"}, "from")):
            bad = await env.client.post("/providers/smtp/verify", json=body)
            assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == field, bad.text

        # Only a send proves Send As: the server refuses sales@, accepts alice@.
        smtp.handler.mail_script.append("550 5.7.60 SMTP; Client does not have permissions to send as this sender")
        refused = await _test_email(env, "smtp", "sales@contoso.com")
        assert (refused["status"], refused["error_type"]) == ("failed", "smtp.send_as_denied"), refused
        sent = await _test_email(env, "smtp", "alice@contoso.com")
        assert sent["status"] == "sent" and smtp.received[-1].mail_from == "alice@contoso.com"

        report = (await env.client.get("/providers/senders")).json()
        smtp_items = by_sender(report, "smtp")
        sales = smtp_items["sales@contoso.com"]
        assert (sales["state"], sales["error_type"]) == ("failing", "smtp.send_as_denied")
        assert sales["last_send"]["message_id"] == refused["id"] and "Send As" in sales["fix"]
        assert smtp_items["alice@contoso.com"]["state"] == "ok"
        assert smtp_items["alice@contoso.com"]["last_send"]["message_id"] == sent["id"]
        assert report["counts"] == {"ok": 2, "unproven": 1, "failing": 1}
        status = (await env.client.get("/status")).json()
        assert status["senders"] == {"ok": 2, "unproven": 1, "failing": 1}


async def test_graph_mailboxes_probed_and_test_email_from_a_mailbox(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph)
    await make_user(menv, name="Other", email="other@contoso.com")
    await make_user(menv, name="Nobody", email="nobody@contoso.com")

    static = by_sender((await menv.client.get("/providers/senders")).json(), "graph")
    assert {k: v["state"] for k, v in static.items()} == {
        BATCH: "unproven", "other@contoso.com": "unproven", "nobody@contoso.com": "unproven"}
    assert graph.requests_to("verify") == []  # nothing reached without probe

    probed = (await menv.client.get("/providers/senders", params={"probe": "true"})).json()
    assert probed["probed"] is True
    items = by_sender(probed, "graph")
    assert items["nobody@contoso.com"]["state"] == "failing"
    assert items["nobody@contoso.com"]["error_type"] == "graph.mailbox_not_found"
    assert "exists in Office 365" in items["nobody@contoso.com"]["fix"]
    assert items["other@contoso.com"]["state"] == "unproven"  # it resolves; the app may not read it (Mail.Send)
    assert "resolves" in items["other@contoso.com"]["probe"]

    # Verify another mailbox than the batch account, and a From.
    v = (await menv.client.post("/providers/graph/verify", json={"mailbox": "nobody@contoso.com"})).json()
    assert v["ok"] is False and v["error_type"] == "graph.mailbox_not_found", v
    v = (await menv.client.post("/providers/graph/verify", json={"from": "other@contoso.com"})).json()
    assert v["ok"] is True and v["senders"][0]["sender"] == "other@contoso.com", v

    # The test email from other@ goes out from its own mailbox: now proven.
    m = await _test_email(menv, "graph", "other@contoso.com")
    assert m["status"] == "sent", m
    assert graph.sent[-1].mailbox == "other@contoso.com"
    after = by_sender((await menv.client.get("/providers/senders")).json(), "graph")
    assert after["other@contoso.com"]["state"] == "ok"
    # /status counts what is known without reaching mailboxes (nobody@ failed only a probe, not a send).
    assert (await menv.client.get("/status")).json()["senders"] == {"ok": 1, "unproven": 2, "failing": 0}
