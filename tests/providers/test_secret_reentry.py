"""Issue 12 item 2: a stored secret is only sent where it was entered for. Any change of host, port, TLS mode or
certificate checking (SMTP), or of the endpoint URLs (Graph, Exchange), needs the secret entered again; a
listener on the new port never hears from Outbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Env
from tests.fakes.graph_server import GraphFake
from tests.providers.conftest import graph_body
from tests.support.peer import Peer
from tests.support.smtp_server import SmtpServer

SMTP: dict[str, Any] = {"host": "127.0.0.1", "tls": "starttls", "authentication_required": True,
                        "username": "svc", "from_address": "o@example.com", "validate_certificates": True,
                        "timeout_seconds": 3}


@pytest.fixture
def listener() -> Iterator[Peer]:
    lst = Peer(hold=0)  # the attacker's listener on the 'new port'
    yield lst
    lst.close()


@pytest.mark.parametrize("change", [
    {"port": "LISTENER"}, {"tls": "none"}, {"tls": "tls"}, {"validate_certificates": False},
    {"host": "localhost"},
])
async def test_smtp_secret_needs_reentry_on_any_change_of_destination(
        env: Env, smtp: SmtpServer, listener: Peer, change: dict[str, Any]) -> None:
    r = await env.client.patch("/providers/smtp", json={**SMTP, "port": smtp.port, "password": "s3cret"})
    assert r.status_code == 200, r.text
    change = {k: (listener.port if v == "LISTENER" else v) for k, v in change.items()}
    r = await env.client.patch("/providers/smtp", json=change)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "password", r.text
    stored = (await env.client.get("/providers/smtp")).json()
    assert stored["port"] == smtp.port and stored["tls"] == "starttls" and stored["validate_certificates"] is True
    await env.client.post("/providers/smtp/verify")  # goes where the password was entered for
    assert listener.connections == 0
    # Entered again: accepted.
    r = await env.client.patch("/providers/smtp", json={**change, "password": "s3cret"})
    assert r.status_code == 200, r.text


async def test_smtp_changes_that_do_not_move_the_secret_keep_it(env: Env, smtp: SmtpServer) -> None:
    r = await env.client.patch("/providers/smtp", json={**SMTP, "port": smtp.port, "password": "s3cret"})
    assert r.status_code == 200, r.text
    r = await env.client.patch("/providers/smtp", json={"timeout_seconds": 10, "from_name": "Outbox",
                                                       "host": "127.0.0.1"})
    assert r.status_code == 200 and r.json()["password_set"] is True, r.text


async def test_exchange_secret_needs_reentry_when_the_ews_url_changes(env: Env) -> None:
    body = {"ews_url": "https://mail.example.com/EWS/Exchange.asmx", "auth": "basic", "username": "svc",
            "password": "p", "batch_account": "batch@example.com"}
    assert (await env.client.patch("/providers/exchange", json=body)).status_code == 200
    for url in ("https://mail.example.com:8443/EWS/Exchange.asmx", "https://mail.example.com/other/Exchange.asmx"):
        r = await env.client.patch("/providers/exchange", json={"ews_url": url})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "password", (url, r.text)
    # Case of the host and a trailing slash are the same endpoint.
    r = await env.client.patch("/providers/exchange", json={"ews_url": "https://MAIL.example.com/EWS/Exchange.asmx"})
    assert r.status_code == 200, r.text


async def test_graph_secret_needs_reentry_when_the_graph_endpoint_changes(menv: Env, graph: GraphFake) -> None:
    assert (await menv.client.patch("/providers/graph", json=graph_body(graph))).status_code == 200
    r = await menv.client.patch("/providers/graph", json={"graph_base": graph.graph_base + "/other"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "client_secret", r.text
