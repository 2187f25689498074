"""The suppression list: CRUD, and submissions to suppressed addresses refused per recipient or dropped."""

from __future__ import annotations

from typing import Any

from tests.conftest import Env
from tests.support.smtp_server import SmtpServer

MSG: dict[str, Any] = {"from": "s@example.com", "subject": "s", "body_text": "x"}


async def _suppress(env: Env, address: str, **extra: Any) -> dict[str, Any]:
    r = await env.client.post("/suppressions", json={"address": address, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_crud_and_roles(env: Env) -> None:
    e = await _suppress(env, "Gone@Example.COM", detail="asked to stop")
    assert e["address"] == "gone@example.com" and e["reason"] == "manual" and e["detail"] == "asked to stop"
    r = await env.client.post("/suppressions", json={"address": "gone@example.com"})
    assert r.status_code == 409
    r = await env.client.post("/suppressions", json={"address": "not an address"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "address"
    await _suppress(env, "other@example.org")
    page = (await env.client.get("/suppressions", params={"address": "example.com"})).json()
    assert page["total"] == 1 and page["items"][0]["id"] == e["id"]
    assert (await env.client.get("/suppressions")).json()["total"] == 2
    svc = await env.new_key("service")
    assert (await env.client.get("/suppressions", headers=env.auth(svc))).status_code == 403
    assert (await env.client.delete(f"/suppressions/{e['id']}")).status_code == 204
    assert (await env.client.delete(f"/suppressions/{e['id']}")).status_code == 404
    assert (await env.client.get(f"/suppressions/{e['id']}")).status_code == 404


async def test_submission_refused_naming_each_field(env: Env) -> None:
    a = await _suppress(env, "bad@example.com")
    await _suppress(env, "worse@example.com")
    before = await env.sql("SELECT count(*) FROM message")
    r = await env.client.post("/messages", json={**MSG, "to": ["ok@example.com", "BAD@example.com"],
                                                 "bcc": ["worse@example.com"]})
    assert r.status_code == 422, r.text
    p = r.json()
    assert p["type"].endswith("/recipient-suppressed")
    assert [e["field"] for e in p["errors"]] == ["to[1]", "bcc[0]"]
    assert p["errors"][0]["suppression_id"] == a["id"] and "suppression list" in p["detail"]
    assert await env.sql("SELECT count(*) FROM message") == before  # nothing stored
    # Bulk: the index of the message is named too, and nothing of the batch is stored.
    r = await env.client.post("/messages/bulk", json={"messages": [
        {**MSG, "to": ["ok@example.com"]}, {**MSG, "to": ["x@example.com"], "cc": ["bad@example.com"]}]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "messages[1].cc[0]"
    assert await env.sql("SELECT count(*) FROM message") == before


async def test_drop_on_request(env: Env) -> None:
    await _suppress(env, "bad@example.com")
    r = await env.client.post("/messages", json={**MSG, "to": ["ok@example.com", "bad@example.com"],
                                                 "suppressed": "drop"})
    assert r.status_code == 202, r.text
    assert r.json()["dropped_recipients"] == ["bad@example.com"]
    m = (await env.client.get(f"/messages/{r.json()['id']}")).json()
    assert m["to"] == ["ok@example.com"]
    r = await env.client.post("/messages", json={**MSG, "to": ["bad@example.com"], "suppressed": "drop"})
    assert r.status_code == 422 and r.json()["errors"][-1]["field"] == "to"
    r = await env.client.post("/messages", json={**MSG, "to": ["ok@example.com"], "suppressed": "maybe"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "suppressed"


async def test_idempotent_retry_still_matches(env: Env) -> None:
    body = {**MSG, "to": ["ok@example.com"]}
    r1 = await env.client.post("/messages", json=body, headers={"Idempotency-Key": "k1"})
    r2 = await env.client.post("/messages", json=body, headers={"Idempotency-Key": "k1"})
    assert r1.json()["id"] == r2.json()["id"]


async def test_draft_send_and_resend_are_checked(env: Env, smtp: SmtpServer) -> None:
    from tests.messages.helpers import configure, draft, make_user, user_key

    alice = await make_user(env)
    await configure(env, "smtp")
    h = await user_key(env, alice)
    d = await draft(env, h, to=["customer@example.com"])  # a draft is not checked: nothing is sent yet
    await _suppress(env, "customer@example.com")
    r = await env.client.post(f"/messages/{d['id']}/send", headers=h, json={"provider": "smtp"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to[0]", r.text
    assert (await env.client.get(f"/messages/{d['id']}", headers=h)).json()["status"] == "draft"
    # Resend of a finished message to an address suppressed since.
    await env.use_smtp(smtp)
    r = await env.client.post("/messages", json={**MSG, "to": ["later@example.com"]})
    mid = r.json()["id"]
    await env.deliver()
    await _suppress(env, "later@example.com")
    r = await env.client.post(f"/messages/{mid}/resend", json={})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to[0]", r.text
