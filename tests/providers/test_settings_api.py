"""GET/PUT /providers/graph: write-only secret, warnings, validation, testing-only host overrides."""

from __future__ import annotations

from typing import Any

from app.providers.schemas import THROTTLING_NOT_RECOMMENDED
from tests.conftest import Env
from tests.fakes.graph_server import GraphFake
from tests.providers.conftest import BATCH, graph_body, send, submit, use_graph
from tests.support.smtp_server import SmtpServer


async def _put(env: Env, body: dict[str, Any]) -> Any:
    return await env.client.patch("/providers/graph", json=body)


async def test_secret_is_write_only(menv: Env, graph: GraphFake) -> None:
    assert (await menv.client.get("/providers/graph")).json()["configured"] is False
    saved = await use_graph(menv, graph)
    assert saved["client_secret_set"] is True and saved["secret_status"] == "ok"
    assert "client_secret" not in saved and graph.client_secret not in str(saved)
    assert saved["sign_in_host"] == graph.authority_host and saved["graph_host"] == graph.graph_base
    stored = await menv.sql("SELECT config, secrets_encrypted FROM provider_config WHERE id = 'graph'")
    assert graph.client_secret not in str(stored[0])  # encrypted at rest, not in the JSON config
    # Left out: kept.
    body = graph_body(graph)
    del body["client_secret"]
    kept = (await _put(menv, body)).json()
    assert kept["client_secret_set"] is True and kept["secret_status"] == "ok"
    assert (await send(menv))["status"] == "sent"
    # null: cleared, and said so; messages wait (held) until a secret is entered again.
    cleared = (await _put(menv, graph_body(graph, client_secret=None))).json()
    assert cleared["client_secret_set"] is False and cleared["secret_status"] == "not_set"
    assert any("No application key" in w for w in cleared["warnings"])
    held = await send(menv)
    assert held["status"] == "held" and held["error_type"] == "entra.client_secret_missing", held
    got = (await menv.client.get("/providers/graph")).json()
    assert got == cleared


async def test_warnings(menv: Env, graph: GraphFake) -> None:
    limited = await use_graph(menv, graph, per_minute_limit=30)
    assert limited["per_minute_limit"] == 30 and limited["per_minute_limit_in_force"] == 30
    assert THROTTLING_NOT_RECOMMENDED in limited["warnings"]
    assert any("testing" in w for w in limited["warnings"])  # the host overrides
    summary = {p["id"]: p for p in (await menv.client.get("/providers")).json()}
    assert summary["graph"]["per_minute_limit_in_force"] == 30 and summary["graph"]["limit_source"] == "configured"
    # A GUID where the secret's value belongs: the classic mistake (AADSTS7000215), flagged at once.
    guid = await use_graph(menv, graph, client_secret="3f2b8c1e-9d4a-4e6b-8f7c-1a2b3c4d5e6f")
    assert any("looks like a Secret ID" in w for w in guid["warnings"])
    dod = (await _put(menv, graph_body(graph, cloud="usgov_dod", authority_host=None, graph_base=None))).json()
    assert dod["sign_in_host"] == "https://login.microsoftonline.us"
    assert dod["graph_host"] == "https://dod-graph.microsoft.us/v1.0"
    assert dod["large_attachments"] is False and any("upload sessions" in w for w in dod["warnings"])


async def test_validation_is_problem_json(menv: Env, graph: GraphFake) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tenant_id": "common"}, "tenant_id"), ({"client_id": "not-a-guid"}, "client_id"),
                       ({"cloud": "mars"}, "cloud"), ({"batch_account": "batch"}, "batch_account"),
                       ({"graph_base": "http://127.0.0.1:1/v1.0"}, "graph_base"),
                       ({"authority_host": "https://u:p@127.0.0.1:1"}, "authority_host"),
                       ({"per_minute_limit": -1}, "per_minute_limit")]
    for bad, field in cases:
        r = await _put(menv, graph_body(graph, **bad))
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"].endswith("/invalid-input") and problem["errors"][0]["field"] == field, problem
        assert graph.client_secret not in r.text
    assert (await menv.client.get("/providers/graph")).json()["configured"] is False  # nothing was saved


async def test_host_change_requires_the_secret_again(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph)
    body = graph_body(graph, authority_host="https://127.0.0.1:1")
    del body["client_secret"]
    r = await _put(menv, body)  # would send the stored secret to another server
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "client_secret", r.text
    r = await _put(menv, graph_body(graph, authority_host="https://127.0.0.1:1"))
    assert r.status_code == 200
    # The same rule for SMTP: a new host needs the password again.
    await menv.client.patch("/providers/smtp", json={"host": "smtp.example.com", "authentication_required": True,
                                                   "username": "u", "password": "pw"})
    r = await menv.client.patch("/providers/smtp", json={"host": "evil.example.net", "authentication_required": True,
                                                       "username": "u"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "password"


async def test_overrides_refused_by_default(env: Env, graph: GraphFake) -> None:
    """`env` runs with default settings: OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE is off."""
    r = await env.client.patch("/providers/graph", json=graph_body(graph))
    assert r.status_code == 422
    assert "OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE" in r.json()["detail"]
    ok = await env.client.patch("/providers/graph", json=graph_body(graph, authority_host=None, graph_base=None))
    assert ok.status_code == 200 and ok.json()["sign_in_host"] == "https://login.microsoftonline.com"


async def test_stored_override_not_used_when_no_longer_allowed(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph)
    menv.worker_ctx["settings"] = menv.settings.model_copy(update={"allow_provider_url_override": False})
    msg = await send(menv)
    assert msg["status"] == "held" and msg["error_type"] == "config.not_configured", msg
    assert "does not allow overrides" in msg["error"]
    assert graph.token_requests == []  # the secret never left


async def test_batch_account_is_the_default_sender(menv: Env, graph: GraphFake) -> None:
    await use_graph(menv, graph, batch_account="Other@Contoso.com")
    msg = await send(menv)
    assert msg["sender"] == "Other@contoso.com" or msg["sender"].lower() == "other@contoso.com"
    assert graph.sent[0].mailbox.lower() == "other@contoso.com"
    await use_graph(menv, graph)
    assert (await send(menv))["sender"] == BATCH


async def test_batch_account_pins_its_provider(menv: Env, graph: GraphFake, smtp: SmtpServer) -> None:
    """Issue 10 item 6: a From taken from the batch provider's account at submit time goes out through that
    provider even when an admin changes the batch provider before it is sent; a From given on the message
    follows the batch provider in force at send time."""
    await menv.use_smtp(smtp, from_address="smtp-batch@example.com")
    await use_graph(menv, graph, batch=False)
    assert (await menv.client.patch("/parameters", json={"batch_provider": "smtp"})).status_code == 200
    defaulted = await submit(menv)
    given = await submit(menv, **{"from": BATCH})
    assert (await menv.client.get(f"/messages/{defaulted}")).json()["provider"] == "smtp"
    assert (await menv.client.get(f"/messages/{given}")).json()["provider"] is None
    assert (await menv.client.patch("/parameters", json={"batch_provider": "graph"})).status_code == 200
    await menv.deliver()
    sent = {m: (await menv.client.get(f"/messages/{m}")).json() for m in (defaulted, given)}
    assert sent[defaulted]["status"] == "sent" and sent[defaulted]["attempt_log"][-1]["provider"] == "smtp"
    assert [(r.mail_from, r.rcpt_tos) for r in smtp.received] == [("smtp-batch@example.com", ["a@example.com"])]
    assert sent[given]["status"] == "sent" and sent[given]["attempt_log"][-1]["provider"] == "graph"
    assert [m.mailbox for m in graph.sent] == [BATCH]
