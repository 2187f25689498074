"""Which providers the "How would you like to send email" dialog offers (issue 15 item 2): the email
parameters' interactive providers, applied to the 409 choose-provider choices, to user options and to
submissions; batch mail is not affected."""

from __future__ import annotations

from typing import Any

from tests.conftest import Env
from tests.messages.helpers import PROBLEM, configure, draft, make_user, set_options, user_key
from tests.support.smtp_server import SmtpServer


async def _offer(env: Env, providers: list[str]) -> dict[str, Any]:
    params = (await env.client.get("/parameters")).json()
    r = await env.client.put("/parameters", json={**params, "interactive_providers": providers})
    assert r.status_code == 200, r.text
    got: dict[str, Any] = r.json()
    return got


async def test_only_offered_providers_can_be_chosen(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    await configure(env, "graph", "exchange")
    assert (await env.client.get("/parameters")).json()["interactive_providers"] == [
        "email_app", "exchange", "smtp", "graph"]
    alice = await make_user(env)
    await set_options(env, alice, email_provider="graph")  # chosen while Graph was offered
    h = await user_key(env, alice)
    msg = {"to": ["c@example.com"], "subject": "Hello", "body_text": "x"}

    saved = await _offer(env, ["smtp", "email_app", "smtp"])  # the email app turned off below; duplicates folded
    assert saved["interactive_providers"] == ["email_app", "smtp"]
    saved = await _offer(env, ["smtp"])
    assert saved["interactive_providers"] == ["smtp"]

    # The user's stored option is no longer offered: the dialog is shown with what is.
    r = await env.client.post("/messages", headers=h, json=msg)
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    p = r.json()
    assert (p["type"].rsplit("/", 1)[1], p["provider"], p["reason"]) == ("provider-unavailable", "graph",
                                                                         "not_offered")
    assert p["choices"] == [{"provider": "smtp", "label": "Use the system email client"}]

    # User options: a provider not offered is refused naming the field; an offered one is kept.
    for bad in ("email_app", "exchange", "graph"):
        r = await env.client.put(f"/users/{alice['id']}/options", headers=h, json={"email_provider": bad})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "email_provider", r.text
        assert "not offered" in r.json()["detail"]
    r = await env.client.put(f"/users/{alice['id']}/options", headers=h, json={"email_provider": None})
    assert r.status_code == 200 and r.json()["email_provider"] is None

    r = await env.client.post("/messages", headers=h, json=msg)
    assert r.status_code == 409 and r.json()["type"].endswith("/choose-provider")
    assert [c["provider"] for c in r.json()["choices"]] == ["smtp"]

    # Submissions and the dialog's send: a provider not offered is refused, nothing stored.
    r = await env.client.post("/messages", headers=h, json={**msg, "provider": "exchange"})
    assert r.status_code == 409 and r.json()["reason"] == "not_offered"
    d = await draft(env, h)
    r = await env.client.post(f"/messages/{d['id']}/send", headers=h, json={"provider": "email_app"})
    assert r.status_code == 409 and r.json()["reason"] == "not_offered"
    assert (await env.client.get(f"/messages/{d['id']}", headers=h)).json()["status"] == "draft"
    assert (await env.client.get("/messages", headers=h)).json()["total"] == 1  # only the draft

    # The offered one goes out through the worker.
    r = await env.client.post(f"/messages/{d['id']}/send", headers=h, json={"provider": "smtp",
                                                                          "do_not_ask_again": True})
    assert r.status_code == 202, r.text
    r = await env.client.post("/messages", headers=h, json=msg)
    assert r.status_code == 202, r.text
    assert await env.deliver() == 2
    assert [x.mail_from for x in smtp.received] == ["alice@contoso.com"] * 2

    # Batch mail is not affected: SMTP only for users, still the batch provider.
    await _offer(env, ["email_app"])
    r = await env.client.post("/messages", json={"to": ["b@example.com"], "subject": "batch"})
    assert r.status_code == 202
    assert await env.deliver() == 1 and smtp.received[-1].message["Subject"] == "batch"


async def test_interactive_providers_validated(env: Env) -> None:
    params = (await env.client.get("/parameters")).json()
    for bad in ([], ["fax"], "smtp", None):
        r = await env.client.put("/parameters", json={**params, "interactive_providers": bad})
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
        assert r.json()["errors"][0]["field"].startswith("interactive_providers"), r.json()
    assert (await env.client.get("/parameters")).json() == params
