"""Workflow events over HTTP become notifications: rules, recipients, skip reasons, template choice,
languages, idempotency, and delivery to a real SMTP server (PostgreSQL and SQLite)."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from typing import Any

from tests.conftest import Env
from tests.support.smtp_server import SmtpServer
from tests.templates.factories import create_rule, create_template, create_user


def event(event_id: str = "wf-1-assigned", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id,
        "workflow_id": "USMF-EXP-001",
        "workflow_type": "ExpenseApproval",
        "company": None,
        "event": "work_item_assigned",
        "submitter_user_id": None,
        "assignee_user_ids": [],
        "data": {"document": "ER-1042", "amount": "12.00 EUR"},
    }
    body.update(over)
    return body


def part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body((subtype,))
    assert body is not None, f"no text/{subtype} part"
    return str(body.get_content())


async def post_event(env: Env, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    r = await env.client.post("/workflow-events", json=body, headers=env.auth(key) if key else None)
    assert r.status_code == 202, r.text
    return dict(r.json())


async def test_event_becomes_delivered_email_in_recipients_language(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp, from_address="batch@example.com")
    await create_template(env, sender="workflow@example.com")
    await create_rule(env, events=["work_item_assigned", "escalated"])
    zoe = await create_user(env, "Zoé Martin", "zoe@example.com", language="fr-CA")
    sam = await create_user(env, "Sam <Lee>", "sam@example.com", language="de")
    service = await env.new_key("service")

    res = await post_event(
        env,
        event(assignee_user_ids=[zoe, sam], data={"document": "ER-1042 <urgent>", "amount": "12.00 EUR"}),
        service,
    )
    assert not res["duplicate"]
    assert res["skipped"] == []
    assert len(res["rules"]) == 1
    by_user = {m["user_id"]: m for m in res["messages"]}
    assert by_user[zoe]["language"] == "fr"
    assert by_user[zoe]["recipient"] == "zoe@example.com"
    assert by_user[sam]["language"] == "en"  # no German: the fallback language
    assert {m["template_scope"] for m in res["messages"]} == {"system"}

    assert await env.deliver() == 2
    got = {r.rcpt_tos[0]: r for r in smtp.received}
    fr = got["zoe@example.com"]
    assert fr.mail_from == "workflow@example.com"  # the template's sender, not the batch account
    assert "Contoso Workflow" in fr.message["From"]
    assert fr.message["Subject"] == "Approuvez ER-1042 <urgent>"
    assert "Bonjour Zoé Martin" in part(fr.message, "plain")
    html = part(got["sam@example.com"].message, "html")
    assert "Hello Sam &lt;Lee&gt;" in html
    assert "<b>ER-1042 &lt;urgent&gt;</b>" in html
    text = part(got["sam@example.com"].message, "plain")
    assert "Hello Sam <Lee>, please approve ER-1042 <urgent> (12.00 EUR)." in text  # derived from the HTML

    # The workflow's messages, found by event id: in history (admin) and in the sending status (the service).
    hist = (await env.client.get("/history", params={"workflow_event_id": "wf-1-assigned"})).json()
    assert sorted(h["id"] for h in hist["items"]) == sorted(m["message_id"] for m in res["messages"])
    assert {h["kind"] for h in hist["items"]} == {"workflow"}
    assert {h["status"] for h in hist["items"]} == {"sent"}
    mine = (
        await env.client.get(
            "/messages", params={"workflow_event_id": "wf-1-assigned"}, headers=env.auth(service)
        )
    ).json()
    assert mine["total"] == 2
    other = (await env.client.get("/history", params={"workflow_event_id": "wf-2"})).json()
    assert other["total"] == 0
    rows = await env.sql("SELECT template_id, language, workflow_event_id FROM message ORDER BY language")
    assert [(r[1], r[2]) for r in rows] == [("en", "wf-1-assigned"), ("fr", "wf-1-assigned")]


async def test_same_event_id_twice_creates_nothing_new(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    await create_template(env)
    await create_rule(env)
    ana = await create_user(env, "Ana", "ana@example.com")
    first = await post_event(env, event(assignee_user_ids=[ana]))
    again = await post_event(env, event(assignee_user_ids=[ana]))  # another body: 422 (tests/security)
    assert again["duplicate"]
    assert not first["duplicate"]
    assert again["messages"] == first["messages"]
    assert again["received_at"] == first["received_at"]
    assert (await env.sql("SELECT count(*) FROM message"))[0][0] == 1
    assert (await env.sql("SELECT count(*) FROM workflow_event"))[0][0] == 1
    await env.deliver()
    assert len(smtp.received) == 1


async def test_skip_reasons(env: Env) -> None:
    await create_template(env)
    await create_rule(env, recipients={"assignees": True, "submitter": True})
    ok = await create_user(env, "Ok", "ok@example.com")
    opted_out = await create_user(env, "Out", "out@example.com", notify=False)
    no_email = await create_user(env, "Nomail", None)
    disabled = await create_user(env, "Off", "off@example.com", enabled=False)
    res = await post_event(
        env, event(submitter_user_id=ok, assignee_user_ids=[opted_out, no_email, disabled, 9999, ok])
    )
    assert [m["user_id"] for m in res["messages"]] == [ok]  # named twice (submitter and assignee): one email
    reasons = {s["user_id"]: s["reason"] for s in res["skipped"]}
    assert reasons == {
        opted_out: "opted_out",
        no_email: "no_email_address",
        disabled: "user_disabled",
        9999: "unknown_user",
    }
    assert all(s["detail"] for s in res["skipped"])


async def test_organization_template_for_company_workflow_system_otherwise(
    env: Env, smtp: SmtpServer
) -> None:
    await env.use_smtp(smtp)
    await create_template(env, sender="system@example.com")
    org = await create_template(env, scope="organization", company="USMF", sender="usmf@example.com")
    await create_rule(env)
    ana = await create_user(env, "Ana", "ana@example.com")
    usmf = await post_event(env, event("e-usmf", company="USMF", assignee_user_ids=[ana]))
    assert usmf["messages"][0]["template_id"] == org["id"]
    assert usmf["messages"][0]["template_scope"] == "organization"
    other = await post_event(
        env, event("e-demf", company="DEMF", assignee_user_ids=[ana])
    )  # no DEMF template
    assert other["messages"][0]["template_scope"] == "system"
    system = await post_event(env, event("e-system", assignee_user_ids=[ana]))
    assert system["messages"][0]["template_scope"] == "system"
    await env.deliver()
    senders = sorted(r.mail_from for r in smtp.received)
    assert senders == ["system@example.com", "system@example.com", "usmf@example.com"]


async def test_rules_match_workflow_company_and_event(env: Env) -> None:
    await create_template(env)
    await create_template(env, code="outcome")
    ana = await create_user(env, "Ana", "ana@example.com")
    bob = await create_user(env, "Bob", "bob@example.com")
    await create_rule(env)  # ExpenseApproval type, assignees
    await create_rule(
        env, workflow_type=None, workflow_id="USMF-EXP-001", company="USMF", recipients={"user_ids": [bob]}
    )
    await create_rule(
        env, events=["approved", "rejected"], recipients={"submitter": True}, template_code="outcome"
    )
    await create_rule(env, recipients={"user_ids": [ana]}, enabled=False)
    await create_rule(env, workflow_type="Purchase", recipients={"user_ids": [ana]})
    res = await post_event(env, event("a", company="USMF", assignee_user_ids=[ana], submitter_user_id=bob))
    assert sorted(m["user_id"] for m in res["messages"]) == [
        ana,
        bob,
    ]  # type rule (assignee) + id/company rule
    res = await post_event(env, event("b", company="DEMF", assignee_user_ids=[ana]))
    assert [m["user_id"] for m in res["messages"]] == [ana]  # the USMF rule does not apply
    res = await post_event(env, event("c", event="approved", submitter_user_id=bob, assignee_user_ids=[ana]))
    assert [(m["user_id"], m["template_id"] is not None) for m in res["messages"]] == [(bob, True)]
    res = await post_event(env, event("d", event="completed", assignee_user_ids=[ana]))
    assert res["messages"] == []
    assert res["rules"] == []


async def test_missing_data_refuses_the_event_naming_the_placeholder(env: Env) -> None:
    await create_template(env)
    await create_rule(env)
    ana = await create_user(env, "Ana", "ana@example.com")
    r = await env.client.post("/workflow-events", json=event(assignee_user_ids=[ana], data={"document": "x"}))
    assert r.status_code == 422, r.text
    assert r.json()["placeholder"] == "amount"
    assert (await env.sql("SELECT count(*) FROM message"))[0][0] == 0
    # Nothing was recorded: the same event id, corrected, is handled.
    res = await post_event(env, event(assignee_user_ids=[ana]))
    assert len(res["messages"]) == 1


async def test_who_may_post_events(env: Env) -> None:
    uid = await create_user(env, "Ana", "ana@example.com")
    user_key = await env.new_key("user", user_id=uid)
    r = await env.client.post("/workflow-events", json=event(), headers=env.auth(user_key))
    assert r.status_code == 403
    r = await env.client.post("/workflow-events", json=event(), headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


async def test_concurrent_duplicates_create_one_set(env: Env) -> None:
    await create_template(env)
    await create_rule(env)
    ana = await create_user(env, "Ana", "ana@example.com")
    body = event("race", assignee_user_ids=[ana])
    responses = await asyncio.gather(*(env.client.post("/workflow-events", json=body) for _ in range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {202, 409}, [r.text for r in responses]
    assert 202 in statuses
    assert (await env.sql("SELECT count(*) FROM message"))[0][0] == 1
    again = await post_event(env, body)  # a 409 caller retries and gets the first result
    assert again["duplicate"]
    assert len(again["messages"]) == 1
