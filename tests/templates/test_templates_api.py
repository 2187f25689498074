"""Template CRUD and preview over HTTP: checked when saved, the placeholder named (PostgreSQL, SQLite)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Env
from tests.templates.factories import create_rule, create_template, template_body


def _problem(r: Any, status: int = 422) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return dict(r.json())


class TestSave:
    async def test_create_get_list(self, env: Env) -> None:
        t = await create_template(env)
        assert t["scope"] == "system"
        assert t["company"] is None
        assert t["languages"] == ["en", "fr"]
        assert t["sender_email"] == "workflow@example.com"
        got = (await env.client.get(f"/templates/{t['id']}")).json()
        assert got["contents"][1]["body_text"].startswith("Bonjour")
        org = await create_template(env, scope="organization", company="USMF", sender="usmf@example.com")
        page = (await env.client.get("/templates", params={"scope": "organization"})).json()
        assert [i["id"] for i in page["items"]] == [org["id"]]
        assert page["total"] == 1
        page = (await env.client.get("/templates", params={"code": "expense-approval"})).json()
        assert page["total"] == 2

    async def test_same_code_in_same_scope_conflicts(self, env: Env) -> None:
        await create_template(env)
        _problem(await env.client.post("/templates", json=template_body()), 409)
        # The same code for a company is a different template.
        await create_template(env, scope="organization", company="USMF")

    @pytest.mark.parametrize(
        ("source", "needle"),
        [
            ("{{ ''.__class__.__mro__ }}", "__mro__"),
            ("{{ document|attr('format') }}", "No filter named 'attr'"),
            ("{{ document.format }}", "sandbox"),
            ("{{ lipsum() }}", "lipsum"),
        ],
    )
    async def test_sandbox_escape_refused_at_save(self, env: Env, source: str, needle: str) -> None:
        body = template_body()
        body["contents"][0]["body_html"] = source
        p = _problem(await env.client.post("/templates", json=body))
        assert needle in p["detail"]
        assert p["errors"][0]["field"] == "contents[en].body_html"
        assert (await env.client.get("/templates")).json()["total"] == 0

    async def test_missing_placeholder_named_at_save(self, env: Env) -> None:
        body = template_body()
        body["contents"][1]["subject"] = "Approuvez {{ docment }}"
        p = _problem(await env.client.post("/templates", json=body))
        assert p["placeholder"] == "docment"
        assert p["errors"][0] == {
            "field": "contents[fr].subject",
            "placeholder": "docment",
            "message": p["errors"][0]["message"],
        }
        assert "docment" in p["detail"]

    @pytest.mark.parametrize(
        ("over", "field"),
        [
            ({"sender_email": "workflow@localhost"}, "sender_email"),
            ({"sender_email": "Workflow <wf@example.com>"}, "sender_email"),
            ({"sender_name": "Evil\r\nBcc: x@example.com"}, "sender_name"),
            ({"fallback_language": "de"}, "fallback_language"),
            ({"placeholders": {"recipient_name": "x"}}, "placeholders.recipient_name"),
            ({"scope": "organization"}, None),  # no company
            ({"company": "USMF"}, None),  # system template with a company
        ],
    )
    async def test_invalid_fields(self, env: Env, over: dict[str, Any], field: str | None) -> None:
        p = _problem(await env.client.post("/templates", json=template_body(**over)))
        if field:
            assert p["errors"][0]["field"] == field

    async def test_replace_and_delete(self, env: Env) -> None:
        t = await create_template(env)
        body = template_body(sender="other@example.com")
        body["contents"] = body["contents"][:1]
        r = await env.client.put(f"/templates/{t['id']}", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["languages"] == ["en"]
        assert r.json()["sender_email"] == "other@example.com"
        bad = template_body()
        bad["contents"][0]["body_html"] = "{{ nope }}"
        _problem(await env.client.put(f"/templates/{t['id']}", json=bad))
        assert (await env.client.get(f"/templates/{t['id']}")).json()["sender_email"] == "other@example.com"
        assert (await env.client.delete(f"/templates/{t['id']}")).status_code == 204
        _problem(await env.client.get(f"/templates/{t['id']}"), 404)

    async def test_delete_refused_while_a_rule_needs_it(self, env: Env) -> None:
        system = await create_template(env)
        org = await create_template(env, scope="organization", company="USMF")
        rule = await create_rule(env, company="USMF")
        # The company's template may go: its events fall back to the system template.
        assert (await env.client.delete(f"/templates/{org['id']}")).status_code == 204
        p = _problem(await env.client.delete(f"/templates/{system['id']}"), 409)
        assert str(rule["id"]) in p["detail"]

    async def test_admin_only(self, env: Env) -> None:
        key = await env.new_key("service")
        r = await env.client.get("/templates", headers=env.auth(key))
        _problem(r, 403)


class TestPreview:
    async def test_in_language_with_fallback(self, env: Env) -> None:
        t = await create_template(env)
        r = await env.client.post(f"/templates/{t['id']}/render", json={"language": "fr-CA"})
        assert r.status_code == 200, r.text
        fr = r.json()
        assert fr["language"] == "fr"
        assert not fr["fallback_used"]
        assert fr["subject"] == "Approuvez Expense report ER-1042"
        assert fr["body_text"].startswith("Bonjour Ana Silva")
        assert not fr["body_text_derived"]
        de = (await env.client.post(f"/templates/{t['id']}/render", json={"language": "de"})).json()
        assert de["language"] == "en"
        assert de["fallback_used"]
        assert de["requested_language"] == "de"
        assert de["body_text_derived"]
        assert "please approve Expense report ER-1042" in de["body_text"]

    async def test_data_is_escaped_in_html(self, env: Env) -> None:
        t = await create_template(env)
        r = await env.client.post(
            f"/templates/{t['id']}/render",
            json={"data": {"document": "<script>alert(1)</script>", "amount": "5 & 6"}},
        )
        body = r.json()
        assert "<script>" not in body["body_html"]
        assert "&lt;script&gt;" in body["body_html"]
        assert "5 &amp; 6" in body["body_html"]
        assert "<script>alert(1)</script>" in body["body_text"]  # plain text is not HTML

    async def test_missing_placeholder_named_at_preview(self, env: Env) -> None:
        t = await create_template(env)
        p = _problem(
            await env.client.post(
                f"/templates/{t['id']}/render", json={"language": "en", "data": {"document": "x"}}
            )
        )
        assert p["placeholder"] == "amount"
