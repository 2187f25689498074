"""Workflow notifications set on an approval element (issue 15 item 6): rules and events carry the element;
an element's rules match only its events, the workflow's own rules (no element) match all of its events; the
notifications go out through the worker over SMTP."""

from __future__ import annotations

from tests.conftest import Env
from tests.support.smtp_server import SmtpServer
from tests.templates.factories import create_rule, create_template, create_user
from tests.workflow.test_workflow_events import event, post_event


async def test_rules_on_an_approval_element(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    await create_template(env, sender="workflow@example.com")
    zoe = await create_user(env, "Zoe", "zoe@example.com")
    ctl = await create_user(env, "Controller", "controller@example.com")
    sub = await create_user(env, "Submitter", "submitter@example.com")
    manager = await create_rule(env, name="manager step", element="ManagerApproval",
                                events=["work_item_assigned"], recipients={"assignees": True})
    assert manager["element"] == "ManagerApproval"
    finance = await create_rule(env, name="finance step", element="FinanceApproval",
                                events=["work_item_assigned"], recipients={"user_ids": [ctl]})
    whole = await create_rule(env, name="workflow", events=["completed"], recipients={"submitter": True})
    assert whole["element"] is None

    res = await post_event(env, event("e1", element="ManagerApproval", assignee_user_ids=[zoe]))
    assert res["rules"] == [manager["id"]]
    assert [m["recipient"] for m in res["messages"]] == ["zoe@example.com"]
    res = await post_event(env, event("e2", element="FinanceApproval", assignee_user_ids=[zoe]))
    assert res["rules"] == [finance["id"]]
    assert [m["recipient"] for m in res["messages"]] == ["controller@example.com"]
    res = await post_event(env, event("e3", assignee_user_ids=[zoe]))  # no element: the elements' rules do not
    assert (res["rules"], res["messages"]) == ([], [])
    # The workflow's own rule matches its events whatever the element.
    res = await post_event(env, event("e4", event="completed", element="ManagerApproval", submitter_user_id=sub))
    assert res["rules"] == [whole["id"]]
    res = await post_event(env, event("e5", event="completed", submitter_user_id=sub))
    assert res["rules"] == [whole["id"]]

    assert await env.deliver() == 4
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == [
        "controller@example.com", "submitter@example.com", "submitter@example.com", "zoe@example.com"]
    listed = (await env.client.get("/notification-rules")).json()
    assert [r["element"] for r in listed] == ["ManagerApproval", "FinanceApproval", None]


async def test_element_is_validated(env: Env) -> None:
    await create_template(env)
    r = await env.client.post("/notification-rules", json={
        "workflow_type": "ExpenseApproval", "element": "two words", "events": ["approved"],
        "recipients": {"assignees": True}, "template_code": "expense-approval"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "element", r.text
    r = await env.client.post("/workflow-events", json=event("bad", element="a b"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "element", r.text
    assert (await env.client.get("/notification-rules")).json() == []
