"""Issue 12 item 3: workflow event ids are scoped to the submitting key, and the same id with another body is
a 422, on PostgreSQL and SQLite (migration 0017)."""

from __future__ import annotations

from tests.conftest import Env
from tests.templates.factories import create_rule, create_template, create_user
from tests.workflow.test_workflow_events import event


async def test_event_ids_are_scoped_to_the_key(env: Env) -> None:
    await create_template(env)
    await create_rule(env)
    ana = await create_user(env, "Ana", "ana@example.com")
    bob = await create_user(env, "Bob", "bob@example.com")
    first, second = await env.new_key("service"), await env.new_key("service")

    r1 = await env.client.post("/workflow-events", json=event("shared-id", assignee_user_ids=[ana]),
                               headers=env.auth(first))
    assert r1.status_code == 202, r1.text
    # Another service reusing the id: its own event, handled; it never sees the first one's recipients.
    r2 = await env.client.post("/workflow-events", json=event("shared-id", assignee_user_ids=[bob]),
                               headers=env.auth(second))
    assert r2.status_code == 202, r2.text
    assert r2.json()["duplicate"] is False
    ids1 = {m["message_id"] for m in r1.json()["messages"]}
    ids2 = {m["message_id"] for m in r2.json()["messages"]}
    assert [m["recipient"] for m in r2.json()["messages"]] == ["bob@example.com"] and not ids1 & ids2
    # The first service repeating itself gets its own first result.
    again = await env.client.post("/workflow-events", json=event("shared-id", assignee_user_ids=[ana]),
                                  headers=env.auth(first))
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert {m["message_id"] for m in again.json()["messages"]} == ids1
    assert (await env.sql("SELECT count(*) FROM message"))[0][0] == 2


async def test_same_id_with_another_body_is_422(env: Env) -> None:
    await create_template(env)
    await create_rule(env)
    ana = await create_user(env, "Ana", "ana@example.com")
    key = await env.new_key("service")
    r = await env.client.post("/workflow-events", json=event("e-1", assignee_user_ids=[ana]), headers=env.auth(key))
    assert r.status_code == 202, r.text
    r = await env.client.post("/workflow-events", headers=env.auth(key),
                              json=event("e-1", assignee_user_ids=[ana], data={"document": "other", "amount": "1"}))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["errors"][0]["field"] == "event_id"
    assert (await env.sql("SELECT count(*) FROM message"))[0][0] == 1
