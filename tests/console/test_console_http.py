"""The console over HTTP (in-process, on PostgreSQL and SQLite): sign-in, the status page's chart from real
attempts, CSRF refusals that change nothing, what a user key can reach, and no secret in any page."""

from __future__ import annotations

import re

import httpx

from tests.conftest import Env
from tests.support.smtp_server import SmtpServer

SECRET = "Pa55-never-in-a-page-7c1e"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _token(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


def _client(env: Env) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=env.app), base_url="http://outbox.test")


async def _sign_in(c: httpx.AsyncClient, key: str) -> str:
    page = await c.get("/console/sign-in")
    assert page.status_code == 200
    r = await c.post("/console/sign-in", data={"key": key, "csrf": _token(page.text)})
    assert r.status_code == 303, r.text
    page = await c.get(r.headers["location"])
    assert page.status_code == 200, page.text
    token = CSRF.search(page.text)
    assert token is not None
    return token.group(1)


async def test_admin_signs_in_and_sees_sending_status_with_the_chart(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    ids = []
    for i in range(3):
        r = await env.client.post("/messages", json={"to": [f"r{i}@example.com"], "subject": f"s{i}",
                                                     "body_text": "x"})
        ids.append(r.json()["id"])
    await env.deliver()
    async with _client(env) as c:
        assert (await c.get("/console/status")).headers["location"] == "/console/sign-in"
        await _sign_in(c, env.admin_key)
        cookie = [h for h in c.cookies.jar if h.name == "outbox_console"][0]
        assert cookie.path == "/console" and cookie.has_nonstandard_attr("HttpOnly")
        page = await c.get("/console/status")
        assert page.status_code == 200
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        html = page.text
        assert '<svg class="chart"' in html and "Messages per minute by outcome" in html
        assert "sent: <strong>3</strong>" in html  # three sent attempts this minute, grouped per minute
        assert re.search(r"UTC: 3 sent</title>", html), html[html.find("<svg"):html.find("<svg") + 800]
        for i in ids:
            assert f'id="m-{i}" class="s-sent"' in html  # recently finished
        assert env.admin_key not in html


async def test_forms_without_the_csrf_token_are_refused_and_change_nothing(env: Env) -> None:
    before = (await env.client.get("/parameters")).json()
    async with _client(env) as c:
        token = await _sign_in(c, env.admin_key)
        form = {"batch_provider": "graph", "attachment_size_limit_mb": "7", "email_expiration_days": "0",
                "history_retention_days": "0", "distributor_interval_seconds": "60",
                "interactive_providers": "smtp"}
        for data, headers in (
            (form, {}),  # no token
            ({**form, "csrf": "x" * 43}, {}),  # a wrong one
            ({**form, "csrf": token}, {"Origin": "http://evil.example"}),  # from another site
        ):
            r = await c.post("/console/parameters", data=data, headers=headers)
            assert r.status_code == 403, r.text
            assert "security token" in r.text or "not from the console" in r.text
        assert (await env.client.get("/parameters")).json() == before
        # Without the session's cookie, a token copied from a page is no good either.
        bare = _client(env)
        async with bare:
            bare.cookies.set("outbox_console", env.admin_key, domain="outbox.test", path="/console")
            r = await bare.post("/console/parameters", data={**form, "csrf": token})
            assert r.status_code == 403
        # With the token: saved, through the same service as PUT /parameters.
        r = await c.post("/console/parameters", data={**form, "csrf": token})
        assert r.status_code == 303, r.text
        after = (await env.client.get("/parameters")).json()
        assert after["batch_provider"] == "graph" and after["attachment_size_limit_mb"] == 7
        assert after["interactive_providers"] == ["smtp"]
        # A bad value is refused naming the field, nothing changed.
        r = await c.post("/console/parameters", data={**form, "attachment_size_limit_mb": "999", "csrf": token})
        assert r.status_code == 422 and "attachment_size_limit_mb" in r.text
        assert (await env.client.get("/parameters")).json() == after


async def test_a_user_key_sees_only_its_options_and_its_own_messages(env: Env) -> None:
    users = []
    for name in ("alice", "bob"):
        r = await env.client.post("/users", json={"name": name, "email": f"{name}@example.com"})
        users.append(r.json()["id"])
    alice_key = await env.new_key("user", users[0])
    bob_key = await env.new_key("user", users[1])
    mine = (await env.client.post("/messages", json={"to": ["x@example.com"], "subject": "alice's", "draft": True},
                                  headers=env.auth(alice_key))).json()["id"]
    theirs = (await env.client.post("/messages", json={"to": ["y@example.com"], "subject": "bob's", "draft": True},
                                    headers=env.auth(bob_key))).json()["id"]
    service_key = await env.new_key("service")
    async with _client(env) as c:
        page = await c.get("/console/sign-in")
        r = await c.post("/console/sign-in", data={"key": service_key, "csrf": _token(page.text)})
        assert r.status_code == 403 and "service key" in r.text
        token = await _sign_in(c, alice_key)
        for path in ("/console/status", "/console/parameters", "/console/parameters?tab=smtp"):
            r = await c.get(path)
            assert r.status_code == 403, path
            assert "for administrators" in r.text
        for path in ("/console/parameters", "/console/providers/smtp", "/console/providers/smtp/verify"):
            assert (await c.post(path, data={"csrf": token})).status_code == 403
        assert (await c.get(f"/console/messages/{theirs}")).status_code == 404
        assert (await c.get(f"/console/messages/{theirs}/eml")).status_code == 404
        r = await c.post(f"/console/messages/{theirs}/cancel", data={"csrf": token})
        assert r.status_code == 303
        assert (await env.client.get(f"/messages/{theirs}")).json()["status"] == "draft"  # untouched
        assert (await c.get(f"/console/messages/{mine}")).status_code == 200
        listing = (await c.get("/console/history")).text
        assert "alice&#39;s" in listing and "bob&#39;s" not in listing
        # Options: its own; another user's is refused.
        assert (await c.get("/console/options")).status_code == 200
        r = await c.post(f"/console/options/{users[1]}", data={"csrf": token, "email_provider": "smtp"})
        assert r.status_code == 303
        assert (await env.client.get(f"/users/{users[1]}/options")).json()["email_provider"] is None
        r = await c.post(f"/console/options/{users[0]}", data={"csrf": token, "email_provider": "email_app",
                                                               "workflow_notifications_by_email": "on"})
        assert r.status_code == 303
        assert (await env.client.get(f"/users/{users[0]}/options")).json()["email_provider"] == "email_app"
        assert alice_key not in (await c.get("/console/options")).text


async def test_no_secret_is_ever_rendered(env: Env) -> None:
    r = await env.client.patch("/providers/smtp", json={
        "host": "127.0.0.1", "port": 2525, "tls": "none", "username": "batch@example.com", "password": SECRET,
        "from_address": "batch@example.com"})
    assert r.status_code == 200, r.text
    r = await env.client.patch("/providers/graph", json={
        "tenant_id": "contoso.onmicrosoft.com", "client_id": "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f",
        "client_secret": SECRET + "-graph", "batch_account": "batch@contoso.com"})
    assert r.status_code == 200, r.text
    async with _client(env) as c:
        token = await _sign_in(c, env.admin_key)
        pages = ["/console/status", "/console/history", "/console/options", "/console/parameters",
                 "/console/parameters?tab=smtp", "/console/parameters?tab=graph", "/console/parameters?tab=exchange"]
        for path in pages:
            r = await c.get(path)
            assert r.status_code == 200, path
            assert SECRET not in r.text and env.admin_key not in r.text, path
        smtp_page = (await c.get("/console/parameters?tab=smtp")).text
        assert 'class="secret-set">set<' in smtp_page
        # Saving the form with the secret left blank keeps it (as leaving it out of a PUT does).
        form = dict(re.findall(r'<input id="f-(\w+)" name="\w+" type="(?:text|number)" value="([^"]*)"', smtp_page))
        base = {**form, "tls": "none", "auth_method": "password", "cloud": "global",
                "authentication_required": "on", "validate_certificates": "on", "csrf": token}
        r = await c.post("/console/providers/smtp", data={**base, "from_name": "Contoso ERP"})
        assert r.status_code == 303, r.text
        got = (await env.client.get("/providers/smtp")).json()
        assert got["from_name"] == "Contoso ERP" and got["password_set"] is True
        assert got["username"] == "batch@example.com" and got["port"] == 2525
        # Another port with the password left blank: refused naming the field (the API's rule), nothing changed.
        r = await c.post("/console/providers/smtp", data={**base, "port": "2526"})
        assert r.status_code == 422 and "password: must be entered again" in r.text
        assert SECRET not in r.text
        assert (await env.client.get("/providers/smtp")).json() == got
        # Verify against nothing listening: an explanation and a fix, still no secret.
        r = await c.post("/console/providers/smtp/verify", data={"csrf": token})
        assert r.status_code == 200 and "Verify smtp: failed" in r.text and "Fix:" in r.text
        assert SECRET not in r.text


async def test_message_actions_and_provider_tabs_go_through_the_api_services(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    waiting = (await env.client.post("/messages", json={"to": ["w@example.com"], "subject": "to cancel",
                                                        "body_text": "x"})).json()["id"]
    async with _client(env) as c:
        token = await _sign_in(c, env.admin_key)
        page = (await c.get("/console/status")).text
        assert f'aria-label="Cancel message {waiting}"' in page
        assert "queued, deferred or retrying: 0 high · 1 normal · 0 low" in page  # per priority lane
        assert '<td class="status">queued</td><td>batch, normal</td>' in page
        r = await c.post(f"/console/messages/{waiting}/cancel", data={"csrf": token, "next": "/console/status"})
        assert r.status_code == 303 and r.headers["location"] == "/console/status"
        assert (await env.client.get(f"/messages/{waiting}")).json()["status"] == "cancelled"
        # Cancelling it again: the service's 409, shown as the flash, nothing changed.
        r = await c.post(f"/console/messages/{waiting}/cancel", data={"csrf": token})
        assert "Refused: Only an unsent message" in (await c.get(r.headers["location"])).text
        # Resend the cancelled one: a new message, linked to it.
        r = await c.post(f"/console/messages/{waiting}/resend", data={"csrf": token})
        flash = (await c.get(r.headers["location"])).text
        new_id = int(re.search(r"resent as message (\d+)", flash).group(1))  # type: ignore[union-attr]
        assert (await env.client.get(f"/messages/{new_id}")).json()["resent_from"] == waiting
        # An off-site `next` is not followed.
        r = await c.post(f"/console/messages/{new_id}/cancel", data={"csrf": token, "next": "//evil.example/x"})
        assert r.headers["location"] == "/console"
        # Microsoft Graph tab: saved through the same service as PUT /providers/graph; the secret write-only.
        r = await c.post("/console/providers/graph", data={
            "csrf": token, "tenant_id": "contoso.onmicrosoft.com", "client_id": "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f",
            "client_secret": SECRET, "cloud": "global", "batch_account": "batch@contoso.com", "per_minute_limit": "",
            "timeout_seconds": "30"})
        assert r.status_code == 303, r.text
        got = (await env.client.get("/providers/graph")).json()
        assert got["configured"] and got["client_secret_set"] and got["per_minute_limit"] == 0
        page = (await c.get("/console/parameters?tab=graph")).text
        assert SECRET not in page and 'class="secret-set">set<' in page
        # A wrong client id is refused naming the field; nothing changed.
        r = await c.post("/console/providers/graph", data={
            "csrf": token, "tenant_id": "contoso.onmicrosoft.com", "client_id": "not-a-guid", "cloud": "global",
            "batch_account": "batch@contoso.com", "timeout_seconds": "30"})
        assert r.status_code == 422 and "client_id" in r.text
        assert (await env.client.get("/providers/graph")).json() == got
        # History filters: by time finished, with or without a zone.
        r = await c.get("/console/history?status=failed&since=2020-01-01T00:00&until=2020-01-02T00:00%2B02:00")
        assert r.status_code == 200 and "No message matches." in r.text
        r = await c.get("/console/history?since=yesterday")
        assert "since: not a date and time" in r.text
