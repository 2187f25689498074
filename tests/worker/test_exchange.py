"""Exchange (EWS, deprecated) end to end against the EWS fake: basic (on-premises) and OAuth with impersonation."""

from __future__ import annotations

import email
import email.policy

from app.transports.exchange import DEPRECATION_NOTE
from tests.conftest import Env
from tests.fakes.ews_server import EwsFake, http_error, quota_exceeded, send_as_denied, server_busy
from tests.providers.conftest import BATCH, b64, exchange_body, get, make_due, send, use_exchange

DOC = bytes(range(256)) * 64


async def test_deprecated_in_openapi_and_response(menv: Env, ews: EwsFake) -> None:
    spec = menv.app.openapi()
    assert spec["paths"]["/providers/exchange"]["get"]["deprecated"] is True
    assert spec["paths"]["/providers/exchange"]["put"]["deprecated"] is True
    assert not spec["paths"]["/providers/graph"]["get"].get("deprecated")
    got = (await menv.client.get("/providers/exchange")).json()
    assert got["configured"] is False and got["deprecated"] is True and got["deprecation"] == DEPRECATION_NOTE
    assert "2026-10-01" in got["deprecation"] and "2027-04-01" in got["deprecation"]
    saved = await use_exchange(menv, ews)
    assert saved["deprecation"] == DEPRECATION_NOTE and saved["password_set"] is True and "password" not in saved
    summary = {p["id"]: p for p in (await menv.client.get("/providers")).json()}
    assert summary["exchange"]["deprecated"] is True and summary["exchange"]["configured"] is True
    assert summary["exchange"]["note"] == DEPRECATION_NOTE


async def test_basic_delivers_mime(menv: Env, ews: EwsFake) -> None:
    await use_exchange(menv, ews, from_name="Contoso batch")
    msg = await send(menv, to=["a@example.com"], cc=["c@example.com"], bcc=["hidden@example.com"],
                     subject="Réunion", body_text="texte", body_html="<p>html</p>",
                     attachments=[{"filename": "doc.bin", "content_type": "application/octet-stream",
                                   "content_base64": b64(DOC)}])
    assert msg["status"] == "sent", msg
    assert msg["sent_via"] == "exchange" and msg["sender"] == BATCH
    [got] = ews.sent
    assert got.auth == "basic" and got.saved_to == "sentitems"
    assert got.bcc == ["hidden@example.com"]  # Bcc is not in the MIME headers: given as elements
    assert got.mime is not None
    mime = email.message_from_bytes(got.mime, policy=email.policy.default)
    assert mime["Subject"] == "Réunion" and mime["Message-ID"] == msg["message_id"]
    assert mime["From"].addresses[0].addr_spec == BATCH and mime["From"].addresses[0].display_name == "Contoso batch"
    assert mime["Cc"] == "c@example.com" and mime["Bcc"] is None
    [part] = list(mime.iter_attachments())
    assert part.get_filename() == "doc.bin" and part.get_content() == DOC


async def test_oauth_impersonates_the_batch_account(menv: Env, ews: EwsFake) -> None:
    saved = await use_exchange(menv, ews, auth="oauth")
    assert saved["client_secret_set"] is True and saved["auth"] == "oauth"
    msg = await send(menv)
    assert msg["status"] == "sent", msg
    [got] = ews.sent
    assert got.auth == "bearer" and got.mailbox == BATCH
    [req] = ews.requests
    assert req.headers["x-anchormailbox"] == BATCH
    # One 401 (token revoked early): retried once with a fresh token.
    ews.revoke_tokens()
    assert (await send(menv))["status"] == "sent"
    assert len(ews.token_requests) == 2


async def test_faults(menv: Env, ews: EwsFake) -> None:
    await use_exchange(menv, ews)
    ews.script(send_as_denied())
    m = await send(menv)
    assert m["status"] == "failed" and m["error_type"] == "exchange.send_as_denied", m
    assert "Send As" in m["error"]
    ews.script(quota_exceeded())
    m = await send(menv)
    assert m["status"] == "failed" and m["error_type"] == "exchange.sender_mailbox_full", m
    ews.script(server_busy(30000))
    m = await send(menv)
    assert m["status"] == "deferred" and m["attempts"] == 0, m  # throttling, not a failed attempt
    assert m["error_type"] == "exchange.server_busy"
    assert 25_000 < await menv.redis.pttl("outbox:throttle:exchange:pause") <= 30_000
    await make_due(menv)
    await menv.deliver()
    assert (await get(menv, m["id"]))["status"] == "sent"
    ews.script(http_error(403))
    m = await send(menv)
    assert m["status"] == "failed" and m["error_type"] == "exchange.unauthorized", m
    assert "exists in Office 365 and has appropriate permissions" in m["fix"]  # the seed's (401)/(403) entry


async def test_oauth_401_is_the_seed_mailbox_entry(menv: Env, ews: EwsFake) -> None:
    await use_exchange(menv, ews, auth="oauth")
    ews.script(http_error(401), http_error(401))  # refused, and refused again with a fresh token
    m = await send(menv)
    assert m["status"] == "failed" and m["error_type"] == "exchange.unauthorized", m
    assert "exists in Office 365 and has appropriate permissions" in m["fix"]


async def test_wrong_service_password_holds_until_fixed(menv: Env, ews: EwsFake) -> None:
    """Issue 15 item 5: like SMTP's 535, a refused Basic password holds the messages with the fix."""
    await use_exchange(menv, ews, password="wrong")
    m = await send(menv)
    assert (m["status"], m["error_type"], m["attempts"]) == ("held", "exchange.password_rejected", 0), m
    assert "sign in to the service account" in m["fix"] and "PUT /providers/exchange" in m["fix"]
    assert ews.sent == []
    hist = (await menv.client.get("/messages", params={"status": "held"})).json()
    assert hist["total"] == 1
    await use_exchange(menv, ews)  # the right password: saving releases the held message
    await menv.deliver()
    m = await get(menv, m["id"])
    assert m["status"] == "sent", m
    assert [a["outcome"] for a in m["attempt_log"]] == ["held", "sent"]
    assert len(ews.sent) == 1


async def test_verify_and_wrong_password(menv: Env, ews: EwsFake) -> None:
    await use_exchange(menv, ews)
    v = (await menv.client.post("/providers/exchange/verify")).json()
    assert v["ok"] is True and BATCH in v["detail"], v
    r = await menv.client.patch("/providers/exchange", json=exchange_body(ews, password="wrong"))
    assert r.status_code == 200
    v = (await menv.client.post("/providers/exchange/verify")).json()
    assert v["ok"] is False and v["reply_code"] == 401 and v["error_type"] == "exchange.password_rejected", v
    assert ews.sent == []


async def test_settings_validation(menv: Env, ews: EwsFake) -> None:
    r = await menv.client.patch("/providers/exchange", json=exchange_body(ews, ews_url="http://mail.contoso.com/EWS"))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == "ews_url"
    r = await menv.client.patch("/providers/exchange", json=exchange_body(ews, username=None))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "username"
    body = exchange_body(ews, auth="oauth")
    del body["client_id"]
    r = await menv.client.patch("/providers/exchange", json=body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "client_id"
    saved = await use_exchange(menv, ews, per_minute_limit=20)
    assert any("isn't recommended" in w for w in saved["warnings"]) and saved["per_minute_limit_in_force"] == 20


async def test_oauth_cloud_setting(menv: Env, ews: EwsFake) -> None:
    """EWS with OAuth at a national cloud: the sign-in host follows the cloud (as for Graph), and changing the cloud
    means entering the client secret again (it would be sent to another sign-in host)."""
    body = exchange_body(ews, "oauth", cloud="usgov_gcch")
    del body["authority_host"]
    r = await menv.client.patch("/providers/exchange", json=body)
    assert r.status_code == 200, r.text
    assert (r.json()["cloud"], r.json()["sign_in_host"]) == ("usgov_gcch", "https://login.microsoftonline.us")
    again = {**body, "cloud": "global"}
    del again["client_secret"]
    r = await menv.client.patch("/providers/exchange", json=again)
    assert r.status_code == 422 and "client_secret" in r.text
    r = await menv.client.patch("/providers/exchange", json={**body, "cloud": "mars"})
    assert r.status_code == 422 and "cloud" in r.text
    # The worker signs in through the configured host (the local fake here) and sends.
    await use_exchange(menv, ews, "oauth", cloud="usgov_gcch")
    msg = await send(menv)
    assert msg["status"] == "sent", msg
