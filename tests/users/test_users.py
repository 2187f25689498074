"""Users (admin), user options (the user's own key or admin), and API keys."""

from __future__ import annotations

from typing import Any

from tests.conftest import Env

PROBLEM = "application/problem+json"


async def _user(env: Env, **extra: Any) -> dict[str, Any]:
    r = await env.client.post("/users", json={"name": "Alice Martin", "email": "Alice@Contoso.COM", **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


class TestUsers:
    async def test_create_get_patch_list(self, env: Env) -> None:
        alice = await _user(env)
        assert alice["email"] == "Alice@contoso.com"  # domain lower-cased, local part kept
        assert alice["enabled"] is True
        assert alice["external"] is False
        assert alice["language"] == "en"
        got = (await env.client.get(f"/users/{alice['id']}")).json()
        assert got == alice
        r = await env.client.patch(f"/users/{alice['id']}", json={"external": True, "language": "da"})
        assert r.status_code == 200, r.text
        assert r.json()["external"] is True
        assert r.json()["language"] == "da"
        assert r.json()["email"] == "Alice@contoso.com"  # untouched
        r = await env.client.patch(f"/users/{alice['id']}", json={"email": None})
        assert r.json()["email"] is None
        await _user(env, name="Bob", email="bob@contoso.com")
        page = (await env.client.get("/users")).json()
        assert page["total"] == 2
        assert [u["name"] for u in page["items"]] == ["Alice Martin", "Bob"]
        only = (await env.client.get("/users", params={"email": "BOB@contoso.com"})).json()
        assert [u["name"] for u in only["items"]] == ["Bob"]

    async def test_bad_email_is_refused_and_nothing_stored(self, env: Env) -> None:
        for bad in ("not-an-address", "a@localhost", "x@y\r\nBcc: evil@example.com", "A <a@example.com>"):
            r = await env.client.post("/users", json={"name": "X", "email": bad})
            assert r.status_code == 422, bad
            assert r.headers["content-type"] == PROBLEM
            assert r.json()["errors"][0]["field"] == "email"
        for bad_name in ("   ", "Eve\r\nBcc: x@example.com"):
            r = await env.client.post("/users", json={"name": bad_name, "email": "eve@example.com"})
            assert r.status_code == 422, bad_name
        assert (await env.sql("SELECT count(*) FROM app_user"))[0][0] == 0
        alice = await _user(env)
        r = await env.client.patch(f"/users/{alice['id']}", json={"email": "broken@"})
        assert r.status_code == 422
        r = await env.client.patch(f"/users/{alice['id']}", json={"enabled": None})
        assert r.status_code == 422

    async def test_unknown_user_404_and_admin_only(self, env: Env) -> None:
        assert (await env.client.get("/users/999")).status_code == 404
        for method, path in (("GET", f"/users/{2**63}"), ("GET", f"/users/{2**63}/options"),
                             ("DELETE", f"/api-keys/{2**63}")):
            assert (await env.client.request(method, path)).status_code == 422, path
        assert (await env.client.post("/api-keys", json={"role": "user", "user_id": 2**63})).status_code == 422
        assert (await env.client.patch("/users/999", json={"name": "x"})).status_code == 404
        alice = await _user(env)
        for role, uid in (("service", None), ("user", alice["id"])):
            h = env.auth(await env.new_key(role, uid))
            for method, path in (("GET", "/users"), ("POST", "/users"), ("GET", f"/users/{alice['id']}"),
                                 ("PATCH", f"/users/{alice['id']}"), ("GET", "/api-keys")):
                r = await env.client.request(method, path, headers=h, json={"name": "x"} if method != "GET" else None)
                assert r.status_code == 403, (role, method, path)
                assert r.json()["type"].endswith("/forbidden")


class TestOptions:
    async def test_defaults_and_user_changes_own(self, env: Env) -> None:
        alice = await _user(env)
        key = env.auth(await env.new_key("user", alice["id"]))
        url = f"/users/{alice['id']}/options"
        opts = (await env.client.get(url, headers=key)).json()
        assert opts == {"user_id": alice["id"], "email_provider": None, "sender_email": None,
                        "workflow_notifications_by_email": True, "proposed_provider": None,
                        "effective_sender": "Alice@contoso.com"}
        r = await env.client.put(url, json={"email_provider": "email_app", "workflow_notifications_by_email": False},
                                 headers=key)
        assert r.status_code == 200, r.text
        assert r.json()["email_provider"] == "email_app"
        assert r.json()["workflow_notifications_by_email"] is False
        # Blank means "ask me each time".
        r = await env.client.put(url, json={"email_provider": ""}, headers=key)
        assert r.json()["email_provider"] is None
        assert r.json()["workflow_notifications_by_email"] is False  # left out: unchanged
        r = await env.client.put(url, json={"email_provider": "pigeon"}, headers=key)
        assert r.status_code == 422

    async def test_only_admin_sets_sender_email(self, env: Env) -> None:
        alice = await _user(env)
        key = env.auth(await env.new_key("user", alice["id"]))
        url = f"/users/{alice['id']}/options"
        r = await env.client.put(url, json={"sender_email": "ceo@contoso.com"}, headers=key)
        assert r.status_code == 403
        assert r.headers["content-type"] == PROBLEM
        assert "administrator" in r.json()["detail"]
        assert (await env.client.get(url, headers=key)).json()["sender_email"] is None
        r = await env.client.put(url, json={"sender_email": "sales@contoso.com"})  # admin
        assert r.status_code == 200
        assert r.json()["effective_sender"] == "sales@contoso.com"
        # The user may send the unchanged value back (GET, edit, PUT), but not clear or change it.
        opts = (await env.client.get(url, headers=key)).json()
        r = await env.client.put(url, json={"sender_email": opts["sender_email"], "email_provider": "smtp"},
                                 headers=key)
        assert r.status_code == 200, r.text
        assert (await env.client.put(url, json={"sender_email": None}, headers=key)).status_code == 403
        r = await env.client.put(url, json={"sender_email": "bad address"})
        assert r.status_code == 422
        r = await env.client.put(url, json={"sender_email": None})
        assert r.json()["sender_email"] is None
        assert r.json()["effective_sender"] == "Alice@contoso.com"

    async def test_user_key_sees_only_its_own_user(self, env: Env) -> None:
        alice = await _user(env)
        bob = await _user(env, name="Bob", email="bob@contoso.com")
        key = env.auth(await env.new_key("user", alice["id"]))
        for method in ("GET", "PUT"):
            r = await env.client.request(method, f"/users/{bob['id']}/options", headers=key,
                                         json={"email_provider": "smtp"} if method == "PUT" else None)
            assert r.status_code == 403, method
        assert (await env.client.get(f"/users/{bob['id']}/options")).json()["email_provider"] is None
        service = env.auth(await env.new_key("service"))
        assert (await env.client.get(f"/users/{alice['id']}/options", headers=service)).status_code == 403
        assert (await env.client.get("/users/999/options")).status_code == 404

    async def test_exchange_refused_for_external_user(self, env: Env) -> None:
        guest = await _user(env, name="Guest", email="guest@partner.example.org", external=True)
        r = await env.client.put(f"/users/{guest['id']}/options", json={"email_provider": "exchange"})
        assert r.status_code == 422
        assert "outside the organization" in r.json()["detail"]


class TestApiKeys:
    async def test_create_use_list_revoke(self, env: Env) -> None:
        alice = await _user(env)
        r = await env.client.post("/api-keys", json={"role": "user", "user_id": alice["id"], "name": "alice"})
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["key"].startswith("obx_")
        assert created["prefix"] == created["key"][:10]
        h = env.auth(created["key"])
        assert (await env.client.get(f"/users/{alice['id']}/options", headers=h)).status_code == 200
        listed = (await env.client.get("/api-keys")).json()
        assert created["id"] in [k["id"] for k in listed]
        assert all("key" not in k and "key_hash" not in k for k in listed)
        assert (await env.client.delete(f"/api-keys/{created['id']}")).status_code == 204
        assert (await env.client.get(f"/users/{alice['id']}/options", headers=h)).status_code == 401
        assert (await env.client.delete(f"/api-keys/{created['id']}")).status_code == 404

    async def test_bad_key_requests(self, env: Env) -> None:
        alice = await _user(env)
        for body in ({"role": "user"}, {"role": "user", "user_id": 999}, {"role": "service", "user_id": alice["id"]},
                     {"role": "root"}):
            r = await env.client.post("/api-keys", json=body)
            assert r.status_code == 422, body
            assert r.headers["content-type"] == PROBLEM
