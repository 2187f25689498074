"""Notification rule CRUD: checked against templates and users when saved."""

from __future__ import annotations

from tests.conftest import Env
from tests.templates.factories import create_rule, create_template, create_user


async def test_crud(env: Env) -> None:
    await create_template(env)
    ana = await create_user(env, "Ana", "ana@example.com")
    rule = await create_rule(
        env, recipients={"user_ids": [ana], "submitter": True}, events=["approved", "approved", "rejected"]
    )
    assert rule["events"] == ["approved", "rejected"]
    assert rule["recipients"] == {"user_ids": [ana], "submitter": True, "assignees": False}
    assert (await env.client.get(f"/notification-rules/{rule['id']}")).json() == rule
    listed = (await env.client.get("/notification-rules", params={"workflow": "ExpenseApproval"})).json()
    assert [r["id"] for r in listed] == [rule["id"]]
    assert (await env.client.get("/notification-rules", params={"workflow": "Other"})).json() == []
    body = {
        **{k: rule[k] for k in ("name", "workflow_type", "events", "template_code")},
        "recipients": {"assignees": True},
        "enabled": False,
    }
    r = await env.client.put(f"/notification-rules/{rule['id']}", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is False
    assert r.json()["recipients"]["assignees"] is True
    assert (await env.client.delete(f"/notification-rules/{rule['id']}")).status_code == 204
    assert (await env.client.get(f"/notification-rules/{rule['id']}")).status_code == 404


async def test_invalid_rules(env: Env) -> None:
    await create_template(env, scope="organization", company="USMF")
    base = {
        "workflow_type": "ExpenseApproval",
        "events": ["submitted"],
        "recipients": {"assignees": True},
        "template_code": "expense-approval",
    }
    cases = [
        {**base, "template_code": "nope"},
        {**base, "company": "DEMF"},  # USMF's template only
        {**base, "workflow_id": "X-1"},  # both id and type
        {**base, "workflow_type": None},  # neither
        {**base, "events": []},
        {**base, "events": ["Work Item Assigned"]},
        {**base, "recipients": {}},
        {**base, "recipients": {"user_ids": [424242]}},
    ]
    for body in cases:
        r = await env.client.post("/notification-rules", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    r = await env.client.post("/notification-rules", json={**base, "company": "USMF"})
    assert r.status_code == 201, r.text
