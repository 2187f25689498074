"""Saving settings never silently destroys anything, for every settings resource (parameters, smtp, graph,
exchange): PUT takes the whole representation (422 naming what is missing, nothing changed); PATCH is a JSON
merge patch (omitted fields keep their values); secrets change only when given, through PUT and PATCH alike."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.core.crypto import decrypt_secrets
from scripts.export_openapi import spec_text
from tests.conftest import Env

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


@dataclass
class Resource:
    path: str
    whole: dict[str, Any]  # a complete PUT body, secrets included
    change: dict[str, Any]  # a PATCH of one or two plain fields
    secrets: list[str] = field(default_factory=list)
    nullable: str | None = None  # a plain field that may be null
    not_nullable: str = "timeout_seconds"


RESOURCES = {
    "parameters": Resource(
        "/parameters",
        {"batch_provider": "smtp", "attachment_size_limit_mb": 12, "email_expiration_days": 7,
         "history_retention_days": 90, "batch_processing_enabled": True, "distributor_interval_seconds": 30,
         "interactive_providers": ["email_app", "smtp"]},
        {"batch_provider": "graph"}, not_nullable="attachment_size_limit_mb"),
    "smtp": Resource(
        "/providers/smtp",
        {"host": "smtp.contoso.com", "port": 2525, "tls": "starttls", "auth_method": "password",
         "authentication_required": True, "username": "batch@contoso.com", "password": "Sm7p-Pa55-w0rd",
         "auth_mechanism": "LOGIN", "tenant_id": None, "client_id": None, "cloud": "global", "authority_host": None,
         "token_url": None, "scope": None, "from_address": "batch@contoso.com", "from_name": "Contoso ERP",
         "per_minute_limit": 40, "validate_certificates": True, "timeout_seconds": 12,
         "ehlo_name": "outbox.contoso.com"},
        {"from_name": "Contoso Finance", "per_minute_limit": 10}, ["password", "client_secret"], nullable="from_name"),
    "graph": Resource(
        "/providers/graph",
        {"tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47", "client_id": "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f",
         "client_secret": "Gr4ph~Secret~Value~0123456789", "cloud": "global", "batch_account": "batch@contoso.com",
         "from_name": "Contoso ERP", "per_minute_limit": 0, "authority_host": None, "graph_base": None,
         "timeout_seconds": 9},
        {"batch_account": "erp@contoso.com"}, ["client_secret"], nullable="from_name"),
    "exchange": Resource(
        "/providers/exchange",
        {"ews_url": "https://mail.contoso.com/EWS/Exchange.asmx", "auth": "basic", "username": "svc@contoso.com",
         "password": "Ews-Pa55-w0rd", "tenant_id": None, "client_id": None, "cloud": "global",
         "batch_account": "batch@contoso.com",
         "from_name": "Contoso ERP", "per_minute_limit": 0, "authority_host": None, "timeout_seconds": 11},
        {"from_name": "Contoso Sales"}, ["password", "client_secret"], nullable="from_name"),
}
READ_ONLY = {"warnings", "per_minute_limit_in_force", "limit_source"}


async def _stored_secrets(env: Env, provider: str) -> str | None:
    rows = await env.sql("SELECT secrets_encrypted FROM provider_config WHERE id = :id", id=provider)
    return rows[0][0] if rows else None


def _plain(body: dict[str, Any], r: Resource) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in r.secrets}


async def _get(env: Env, r: Resource) -> dict[str, Any]:
    got = await env.client.get(r.path)
    assert got.status_code == 200, got.text
    out: dict[str, Any] = got.json()
    return out


async def test_smtp_put_needs_the_ehlo_name_like_every_field(env: Env) -> None:
    """A PUT that leaves `ehlo_name` out (a client written before it existed) would have cleared a configured
    name; it is refused like any missing field, and PATCH keeps it."""
    r = RESOURCES["smtp"]
    assert (await env.client.put(r.path, json=r.whole)).status_code == 200
    before = await _get(env, r)
    resp = await env.client.put(r.path, json={k: v for k, v in r.whole.items() if k != "ehlo_name"})
    assert resp.status_code == 422, resp.text
    assert [(e["field"], e["type"]) for e in resp.json()["errors"]] == [("ehlo_name", "missing")], resp.text
    assert await _get(env, r) == before and before["ehlo_name"] == "outbox.contoso.com"
    assert (await env.client.put(r.path, json={**r.whole, "ehlo_name": None})).json()["ehlo_name"] is None


@pytest.mark.parametrize("name", list(RESOURCES))
async def test_put_refuses_a_partial_representation_and_changes_nothing(env: Env, name: str) -> None:
    r = RESOURCES[name]
    assert (await env.client.put(r.path, json=r.whole)).status_code == 200
    before = await _get(env, r)
    secrets_before = await _stored_secrets(env, name)
    left_out = [k for k in r.whole if k not in r.secrets and k not in r.change][1:4]
    partial = {k: v for k, v in r.whole.items() if k not in left_out}
    resp = await env.client.put(r.path, json={**partial, **r.change})
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    named = [e["field"] for e in problem["errors"]]
    assert sorted(named) == sorted(left_out), problem
    assert all(e["type"] == "missing" for e in problem["errors"])
    assert problem["detail"] == "missing fields: " + ", ".join(named)
    assert await _get(env, r) == before and await _stored_secrets(env, name) == secrets_before


@pytest.mark.parametrize("name", list(RESOURCES))
async def test_patch_keeps_every_field_it_does_not_name(env: Env, name: str) -> None:
    r = RESOURCES[name]
    assert (await env.client.put(r.path, json=r.whole)).status_code == 200
    before = await _get(env, r)
    secrets_before = await _stored_secrets(env, name)
    resp = await env.client.patch(r.path, json=r.change, headers=MERGE_PATCH)
    assert resp.status_code == 200, resp.text
    after = await _get(env, r)
    assert resp.json() == after
    for k, v in r.change.items():
        assert after[k] == v
    unchanged = set(before) - set(r.change) - READ_ONLY
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert {k: v for k, v in _plain(r.whole, r).items() if k not in r.change}.items() <= after.items()
    assert await _stored_secrets(env, name) == secrets_before  # the very same ciphertext: secrets untouched
    # Plain application/json is a merge patch too; an empty patch changes nothing.
    assert (await env.client.patch(r.path, json={})).json() == after


@pytest.mark.parametrize("name", list(RESOURCES))
async def test_patch_null_clears_what_may_be_null_and_refuses_the_rest(env: Env, name: str) -> None:
    r = RESOURCES[name]
    assert (await env.client.put(r.path, json=r.whole)).status_code == 200
    before = await _get(env, r)
    resp = await env.client.patch(r.path, json={r.not_nullable: None})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == r.not_nullable, resp.text
    assert await _get(env, r) == before
    if r.nullable:
        resp = await env.client.patch(r.path, json={r.nullable: None})
        assert resp.status_code == 200 and resp.json()[r.nullable] is None, resp.text
    # Invalid values and unknown fields: 422 naming the field, nothing changed.
    resp = await env.client.patch(r.path, json={"no_such_field": 1})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "no_such_field"


@pytest.mark.parametrize("name", ["smtp", "graph", "exchange"])
async def test_secrets_change_only_when_given(env: Env, name: str) -> None:
    r = RESOURCES[name]
    secret = r.secrets[0]
    assert (await env.client.put(r.path, json=r.whole)).status_code == 200
    token = await _stored_secrets(env, name)
    assert decrypt_secrets(token, env.settings) == {secret: r.whole[secret]}
    # PUT without the secret: the whole representation otherwise, the secret kept (the same ciphertext).
    resp = await env.client.put(r.path, json={**_plain(r.whole, r), **r.change})
    assert resp.status_code == 200, resp.text
    assert await _stored_secrets(env, name) == token
    # PATCH of other fields: kept.
    assert (await env.client.patch(r.path, json=r.change)).status_code == 200
    assert await _stored_secrets(env, name) == token
    # PATCH with the secret: replaced; with null: cleared.
    resp = await env.client.patch(r.path, json={secret: "N3w-Secret-Value"}, headers=MERGE_PATCH)
    assert resp.status_code == 200, resp.text
    assert decrypt_secrets(await _stored_secrets(env, name), env.settings) == {secret: "N3w-Secret-Value"}
    assert "N3w-Secret-Value" not in resp.text
    assert (await env.client.patch(r.path, json={secret: None})).status_code == 200
    assert await _stored_secrets(env, name) is None


async def test_patch_on_an_unconfigured_provider_names_what_is_missing(env: Env) -> None:
    resp = await env.client.patch("/providers/graph", json={"from_name": "Contoso"})
    assert resp.status_code == 422, resp.text
    assert sorted(e["field"] for e in resp.json()["errors"]) == ["batch_account", "client_id", "tenant_id"]
    assert (await env.client.get("/providers/graph")).json()["configured"] is False
    # SMTP has defaults for all but the host: a PATCH with the host configures it.
    resp = await env.client.patch("/providers/smtp", json={"host": "smtp.contoso.com"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["port"] == 587 and resp.json()["tls"] == "starttls"


async def test_parameters_warn_when_the_batch_provider_is_not_configured(env: Env) -> None:
    resp = await env.client.patch("/parameters", json={"batch_provider": "graph"})
    assert resp.status_code == 200
    assert any("graph, which is not configured" in w for w in resp.json()["warnings"]), resp.json()
    assert (await env.client.get("/parameters")).json()["warnings"] == resp.json()["warnings"]
    g = RESOURCES["graph"]
    assert (await env.client.put(g.path, json=g.whole)).status_code == 200
    assert (await env.client.get("/parameters")).json()["warnings"] == []
    # A GET -> edit -> PUT round trip works (the read-only fields are ignored).
    params = (await env.client.get("/parameters")).json()
    resp = await env.client.put("/parameters", json={**params, "batch_processing_enabled": False})
    assert resp.status_code == 200 and resp.json()["batch_processing_enabled"] is False
    assert "batch_processing_enabled is off" in " ".join(resp.json()["warnings"])


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


def test_no_secret_in_any_spec_example() -> None:
    """Swagger UI pre-fills request bodies from the examples: pressing Execute must never overwrite a secret."""
    spec = json.loads(spec_text())
    found: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("example", "examples"):
                    for ex in (v if isinstance(v, list) else [v]):
                        if _keys(ex) & {"password", "client_secret", "api_key", "token"}:
                            found.append(f"{where}: {json.dumps(ex)[:120]}")
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(spec, "")
    assert found == []
    schemas = spec["components"]["schemas"]
    for name in ("SmtpSettingsUpdate", "GraphSettingsUpdate", "ExchangeSettingsUpdate"):
        required = set(schemas[name]["required"])
        assert not required & {"password", "client_secret"} and len(required) >= 8, (name, required)
    patch = spec["paths"]["/providers/smtp"]["patch"]["requestBody"]["content"]
    assert list(patch) == ["application/merge-patch+json"]
