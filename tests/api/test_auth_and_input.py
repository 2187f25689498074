"""Auth on every endpoint, and bad input answered with problem+json that stores nothing."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import Env

PROBLEM = "application/problem+json"
GOOD = {"to": ["a@example.com"], "from": "s@example.com", "subject": "hi", "body_text": "x"}


async def _count(env: Env) -> int:
    return int((await env.sql("SELECT count(*) FROM message"))[0][0])


async def test_missing_and_wrong_key_401(env: Env) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer obx_wrong"}, {"Authorization": "Basic eA=="}):
        r = await env.client.post("/messages", json=GOOD, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith("/unauthorized")
    assert await _count(env) == 0


async def test_roles_403(env: Env) -> None:
    service = await env.new_key("service")
    h = env.auth(service)
    for method, path in (("GET", "/parameters"), ("PUT", "/providers/smtp"), ("GET", "/history"),
                         ("GET", "/providers")):
        r = await env.client.request(method, path, headers=h, json={} if method == "PUT" else None)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["type"].endswith("/forbidden")
    assert (await env.client.post("/messages", json=GOOD, headers=h)).status_code == 202


async def test_revoked_key_stops_at_once(env: Env) -> None:
    key = await env.new_key("service")
    assert (await env.client.get("/messages", headers=env.auth(key))).status_code == 200  # now cached
    kid = (await env.sql("SELECT max(id) FROM api_key"))[0][0]
    assert (await env.client.delete(f"/api-keys/{kid}")).status_code == 204
    assert (await env.client.get("/messages", headers=env.auth(key))).status_code == 401


async def test_service_sees_only_its_own_messages(env: Env) -> None:
    k1, k2 = await env.new_key("service"), await env.new_key("service")
    mid = (await env.client.post("/messages", json=GOOD, headers=env.auth(k1))).json()["id"]
    assert (await env.client.get(f"/messages/{mid}", headers=env.auth(k2))).status_code == 404
    assert (await env.client.get("/messages", headers=env.auth(k2))).json()["total"] == 0
    assert (await env.client.get(f"/messages/{mid}", headers=env.auth(k1))).status_code == 200


async def test_open_endpoints_need_no_key(env: Env) -> None:
    for path in ("/healthz", "/readyz", "/status", "/metrics"):
        r = await env.client.get(path, headers={"Authorization": ""})
        assert r.status_code == 200, (path, r.text)


@pytest.mark.parametrize(("patch", "field"), [
    ({"subject": "hello\r\nBcc: victim@example.com"}, "subject"),
    ({"subject": "nul\x00byte"}, "subject"),
    ({"from_name": "Eve\nBcc: x@example.com"}, "from_name"),
    ({"from": "x\nDATA@b.example"}, "from"),
    ({"to": ["ok@example.com", "x\r\nRCPT TO:<y@example.com>@example.com"]}, "to[1]"),
    ({"cc": ["not an address"]}, "cc[0]"),
    ({"bcc": ["user@contoso"]}, "bcc[0]"),
    ({"to": ["Name <a@example.com>"]}, "to[0]"),
    ({"reply_to": "bad@@example.com"}, "reply_to[0]"),
    ({"headers": {"Bcc": "x@example.com"}}, "headers"),
    ({"headers": {"X-Tag": "a\r\nBcc: x@example.com"}}, "headers.X-Tag"),
    ({"attachments": [{"filename": "a.txt", "content_type": "text/plain", "content_base64": "%%%notbase64"}]},
     "attachments[0].content_base64"),
    ({"attachments": [{"filename": "a.txt", "content_type": "text/plain\r\nX: y", "content_base64": "eA=="}]},
     "attachments[0].content_type"),
])
async def test_bad_input_refused_and_nothing_stored(env: Env, patch: dict[str, object], field: str) -> None:
    r = await env.client.post("/messages", json={**GOOD, **patch})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["type"].endswith("/invalid-input")
    assert field in body["detail"], body
    assert await _count(env) == 0


async def test_empty_recipients(env: Env) -> None:
    r = await env.client.post("/messages", json={**GOOD, "to": []})
    assert r.status_code == 422
    assert "recipient" in r.json()["detail"]


async def test_unknown_provider(env: Env) -> None:
    r = await env.client.post("/messages", json={**GOOD, "provider": "pigeon"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "provider"
    r = await env.client.get("/providers/pigeon")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM


async def test_oversize_email_413(env: Env) -> None:
    params = (await env.client.get("/parameters")).json()
    params["attachment_size_limit_mb"] = 1
    assert (await env.client.put("/parameters", json=params)).status_code == 200
    big = base64.b64encode(b"x" * 900_000).decode()  # ~1.2 MB once encoded in MIME
    r = await env.client.post("/messages", json={**GOOD, "attachments": [
        {"filename": "big.bin", "content_type": "application/octet-stream", "content_base64": big}]})
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == PROBLEM
    assert "1 MB" in r.json()["detail"]
    assert await _count(env) == 0


async def test_attachment_filename_is_sanitised(env: Env) -> None:
    r = await env.client.post("/messages", json={**GOOD, "attachments": [
        {"filename": "../../etc/passwd\u202e.txt", "content_type": "text/plain", "content_base64": "eA=="}]})
    assert r.status_code == 202
    got = (await env.client.get(f"/messages/{r.json()['id']}")).json()
    assert got["attachments"][0]["filename"] == "passwd.txt"


async def test_parameters_validation(env: Env) -> None:
    params = (await env.client.get("/parameters")).json()
    assert params["effective_email_expiration_days"] == 30
    r = await env.client.put("/parameters", json={**params, "batch_provider": "fax"})
    assert r.status_code == 422
    r = await env.client.put("/parameters", json={**params, "attachment_size_limit_mb": 0})
    assert r.status_code == 422


async def test_smtp_password_is_write_only(env: Env) -> None:
    body = {"host": "smtp.office365.com", "port": 587, "tls": "starttls", "authentication_required": True,
            "username": "batch@example.com", "password": "s3cr3t-Pa55", "from_address": "batch@example.com",
            "from_name": None, "per_minute_limit": None, "validate_certificates": True, "timeout_seconds": 30,
            "auth_method": "password", "auth_mechanism": None, "tenant_id": None, "client_id": None, "cloud": "global",
            "authority_host": None, "token_url": None, "scope": None, "ehlo_name": None}
    r = await env.client.put("/providers/smtp", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert "s3cr3t-Pa55" not in r.text and out["password_set"] is True
    assert out["per_minute_limit_in_force"] == 30 and out["limit_source"].startswith("automatic")
    stored = (await env.sql("SELECT config, secrets_encrypted FROM provider_config"))[0]
    assert "s3cr3t-Pa55" not in str(stored[0]) and "s3cr3t-Pa55" not in stored[1]
    body.pop("password")
    r = await env.client.put("/providers/smtp", json=body)  # omitted: kept
    assert r.json()["password_set"] is True
    r = await env.client.put("/providers/smtp", json={**body, "password": None})  # null: cleared
    assert r.json()["password_set"] is False
    r = await env.client.get("/providers/smtp")
    assert "password" not in r.json()


async def test_too_many_recipients(env: Env) -> None:
    many = [f"r{i}@example.com" for i in range(env.settings.max_recipients + 1)]
    r = await env.client.post("/messages", json={**GOOD, "to": many})
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert await _count(env) == 0


@pytest.mark.parametrize("ctype", ["garbage", "text/", "/plain", "text/plain; name=\"a\nb\"", ""])
async def test_wrong_content_types(env: Env, ctype: str) -> None:
    r = await env.client.post("/messages", json={**GOOD, "attachments": [
        {"filename": "a.txt", "content_type": ctype, "content_base64": "eA=="}]})
    assert r.status_code == 422, (ctype, r.text)
    assert "attachments[0].content_type" in r.json()["detail"]
    assert await _count(env) == 0


@pytest.mark.parametrize("address", ["user@localhost", "user@mail.test", "user@[192.0.2.1]", "\"q\"@example.com"])
async def test_addresses_that_cannot_receive_mail(env: Env, address: str) -> None:
    r = await env.client.post("/messages", json={**GOOD, "to": [address]})
    assert r.status_code == 422, (address, r.text)
    assert r.json()["errors"][0]["field"] == "to[0]"
