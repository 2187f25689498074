"""Typed helpers to make templates, users and rules over the API."""

from __future__ import annotations

from typing import Any

from tests.conftest import Env

PLACEHOLDERS = {"document": "Expense report ER-1042", "amount": "1,250.00 EUR"}


def template_body(
    code: str = "expense-approval",
    *,
    scope: str = "system",
    company: str | None = None,
    sender: str | None = "workflow@example.com",
    **over: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "scope": scope,
        "company": company,
        "code": code,
        "sender_email": sender,
        "sender_name": "Contoso Workflow",
        "fallback_language": "en",
        "placeholders": PLACEHOLDERS,
        "contents": [
            {
                "language": "en",
                "subject": "Approve {{ document }}",
                "body_html": "<p>Hello {{ recipient_name }}, please approve <b>{{ document }}</b> "
                "({{ amount }}).</p>",
            },
            {
                "language": "fr",
                "subject": "Approuvez {{ document }}",
                "body_html": "<p>Bonjour {{ recipient_name }}, veuillez approuver <b>{{ document }}</b> "
                "({{ amount }}).</p>",
                "body_text": "Bonjour {{ recipient_name }}, veuillez approuver {{ document }} "
                "({{ amount }}).",
            },
        ],
    }
    body.update(over)
    return body


async def create_template(env: Env, **kw: Any) -> dict[str, Any]:
    r = await env.client.post("/templates", json=template_body(**kw))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def create_user(
    env: Env, name: str, email: str | None, *, language: str = "en", enabled: bool = True, notify: bool = True
) -> int:
    r = await env.client.post(
        "/users", json={"name": name, "email": email, "language": language, "enabled": enabled}
    )
    assert r.status_code == 201, r.text
    uid = int(r.json()["id"])
    if not notify:
        r = await env.client.put(f"/users/{uid}/options", json={"workflow_notifications_by_email": False})
        assert r.status_code == 200, r.text
    return uid


async def create_rule(env: Env, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "approvers",
        "workflow_type": "ExpenseApproval",
        "events": ["work_item_assigned"],
        "recipients": {"assignees": True},
        "template_code": "expense-approval",
    }
    body.update(over)
    r = await env.client.post("/notification-rules", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())
