"""SMTP delivery against a real aiosmtpd server: AUTH, STARTTLS, TLS failures, reply codes, drops, timeouts."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import Env, running_env
from tests.support.smtp_server import SmtpServer

MSG = {"to": ["a@example.com"], "from": "s@example.com", "subject": "hello", "body_text": "x"}


async def _send(env: Env, **extra: object) -> dict[str, Any]:
    r = await env.client.post("/messages", json={**MSG, **extra})
    assert r.status_code == 202, r.text
    await env.deliver()
    got: dict[str, Any] = (await env.client.get(f"/messages/{r.json()['id']}")).json()
    return got


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture
def auth_smtp() -> Iterator[SmtpServer]:
    with SmtpServer(auth={"batch@example.com": "right-password"}) as s:
        yield s


async def test_auth_ok_and_wrong_password(env: Env, auth_smtp: SmtpServer) -> None:
    await env.use_smtp(auth_smtp, authentication_required=True, username="batch@example.com",
                       password="right-password")
    ok = await _send(env)
    assert ok["status"] == "sent"
    await env.use_smtp(auth_smtp, authentication_required=True, username="batch@example.com",
                       password="wrong-password")
    bad = await _send(env, subject="second")
    # A rejected password stops every message alike: they are held, not failed, until an admin fixes it.
    assert bad["status"] == "held"
    [attempt] = bad["attempt_log"]
    assert attempt["reply_code"] == 535
    assert attempt["error_type"].startswith("smtp.auth")
    assert attempt["explanation"] and attempt["fix"]
    assert len(auth_smtp.received) == 1
    # Re-entering the right password releases it.
    await env.use_smtp(auth_smtp, authentication_required=True, username="batch@example.com",
                       password="right-password")
    await env.deliver()
    again = (await env.client.get(f"/messages/{bad['id']}")).json()
    assert again["status"] == "sent"
    assert len(auth_smtp.received) == 2


async def test_username_for_server_without_auth(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp, authentication_required=True, username="batch@example.com", password="pw")
    msg = await _send(env)
    assert msg["status"] in ("failed", "held")
    text = f"{msg['error']} {msg['fix']}"
    assert "If your SMTP server doesn't support authentication, please clear the SMTP user name and password" in text
    assert smtp.received == []
    # verify says the same without sending anything
    v = (await env.client.post("/providers/smtp/verify")).json()
    assert v["ok"] is False and "clear the SMTP user name and password" in f"{v['detail']} {v['explanation']}"


async def test_starttls_required_with_trusted_certificate(db_url: str, ca: trustme.CA, ca_file: str) -> None:
    with SmtpServer(tls_context=_server_ctx(ca), require_starttls=True,
                    auth={"batch@example.com": "pw"}) as server:
        async with running_env(db_url, OUTBOX_SMTP_CA_BUNDLE=ca_file) as env:
            await env.use_smtp(server, tls="starttls", authentication_required=True, username="batch@example.com",
                               password="pw")
            v = (await env.client.post("/providers/smtp/verify")).json()
            assert v["ok"] is True, v
            msg = await _send(env)
            assert msg["status"] == "sent", msg
            assert len(server.received) == 1


async def test_untrusted_certificate_is_held_not_downgraded(db_url: str, ca: trustme.CA, tmp_path: Path) -> None:
    other = trustme.CA()  # the client trusts a different CA
    with SmtpServer(tls_context=_server_ctx(ca), require_starttls=True, auth={"u@example.com": "pw"}) as server:
        async with running_env(db_url) as env:
            ca_path = tmp_path / "other.pem"
            other.cert_pem.write_to_path(str(ca_path))
            env.worker_ctx["settings"] = env.settings.model_copy(update={"smtp_ca_bundle": str(ca_path)})
            await env.use_smtp(server, tls="starttls", authentication_required=True, username="u@example.com",
                               password="pw")
            msg = await _send(env)
            assert msg["status"] == "held", msg
            assert msg["error_type"] == "smtp.tls_failed"
            assert server.received == []


async def test_starttls_missing_is_held(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp, tls="starttls")
    msg = await _send(env)
    assert msg["status"] == "held"
    assert "STARTTLS" in str(msg["error"]) or "STARTTLS" in str(msg["fix"])
    assert smtp.received == []


@pytest.mark.parametrize(("reply", "status", "fragment"), [
    ("550 5.1.1 User unknown", "failed", None),
    ("554 5.2.2 mailbox full", "failed", "full"),
    ("501 5.1.6 Recipient addresses in single label domains not accepted", "failed", "single"),
    ("452 4.2.2 Mailbox full, try later", "retrying", None),
])
async def test_recipient_refused(env: Env, smtp: SmtpServer, reply: str, status: str, fragment: str | None) -> None:
    await env.use_smtp(smtp)
    smtp.handler.rcpt_replies["a@example.com"] = reply
    msg = await _send(env)
    assert msg["status"] == status
    [attempt] = msg["attempt_log"]
    rec = attempt["recipients"]["a@example.com"]
    assert rec["code"] == int(reply[:3])
    if fragment:
        assert fragment in rec["explanation"].lower()
    if status == "retrying":
        assert msg["next_attempt_at"] is not None


async def test_partial_refusal_recorded_per_recipient(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    smtp.handler.rcpt_replies["b@example.com"] = "550 5.1.1 User unknown"
    msg = await _send(env, to=["a@example.com", "b@example.com"])
    assert msg["status"] == "sent"
    [attempt] = msg["attempt_log"]
    assert attempt["outcome"] == "partial"
    assert list(attempt["recipients"]) == ["b@example.com"]
    assert smtp.received[0].rcpt_tos == ["a@example.com"]


@pytest.mark.parametrize(("reply", "status"), [
    ("451 4.7.0 Temporary server error. Please try again later.", "retrying"),
    ("421 4.4.2 Message submission rate for this client has exceeded the configured limit", None),
    ("550 5.7.60 SMTP; Client does not have permissions to send as this sender", "failed"),
    ("554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied", "failed"),
])
async def test_data_replies(env: Env, smtp: SmtpServer, reply: str, status: str | None) -> None:
    await env.use_smtp(smtp)
    smtp.handler.data_script.append(reply)
    msg = await _send(env)
    if status:
        assert msg["status"] == status, msg
    else:  # Microsoft 365 throttling: not a failed attempt; the provider is paused
        assert msg["status"] in ("deferred", "retrying")
        assert msg["attempts"] == 0
        assert await env.redis.pttl("outbox:throttle:smtp:pause") > 0
    assert msg["error"] and msg["fix"]


async def test_send_as_denied_explained(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    smtp.handler.mail_script.append("550 5.7.60 SMTP; Client does not have permissions to send as this sender")
    msg = await _send(env)
    assert msg["status"] == "failed"
    assert "send as" in str(msg["error"]).lower() or "send as" in str(msg["fix"]).lower()


async def test_dropped_after_data_is_retried_with_same_message_id(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    smtp.handler.drop_after_data = 1
    msg = await _send(env)
    assert msg["status"] == "retrying"
    assert msg["uncertain"] is True
    await env.sql("UPDATE message SET next_attempt_at = created_at")
    await env.deliver()
    msg = (await env.client.get(f"/messages/{msg['id']}")).json()
    assert msg["status"] == "sent"
    ids = {r.message["Message-ID"] for r in smtp.received}
    assert len(smtp.received) == 2 and ids == {msg["message_id"]}


async def test_slow_server_times_out_and_retries(db_url: str, smtp: SmtpServer) -> None:
    async with running_env(db_url) as env:
        await env.use_smtp(smtp, timeout_seconds=1)
        smtp.handler.data_delay = 2.5
        msg = await _send(env)
        assert msg["status"] == "retrying"
        assert msg["error_type"] == "smtp.timeout"


async def test_internationalised_address_uses_smtputf8(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    msg = await _send(env, to=["用户@example.com", "josé@bücher.example"])
    assert msg["status"] == "sent", msg
    [got] = smtp.received
    assert sorted(got.rcpt_tos) == sorted(["用户@example.com", "josé@xn--bcher-kva.example"])


async def test_internationalised_address_refused_clearly_without_smtputf8(env: Env) -> None:
    with SmtpServer(smtputf8=False) as server:
        await env.use_smtp(server)
        msg = await _send(env, to=["用户@example.com"])
        assert msg["status"] == "failed", msg
        assert "SMTPUTF8" in f"{msg['error']} {msg['fix']}"
        assert server.received == []


async def test_implicit_tls(db_url: str, ca: trustme.CA, ca_file: str) -> None:
    with SmtpServer(tls_context=_server_ctx(ca), implicit_tls=True) as server:
        async with running_env(db_url, OUTBOX_SMTP_CA_BUNDLE=ca_file) as env:
            await env.use_smtp(server, tls="tls")
            msg = await _send(env)
            assert msg["status"] == "sent", msg
            assert len(server.received) == 1


async def test_temporarily_refused_recipient_is_sent_later_and_alone(env: Env, smtp: SmtpServer) -> None:
    await env.use_smtp(smtp)
    smtp.handler.rcpt_once["b@example.com"] = "450 4.2.1 Mailbox busy"
    msg = await _send(env, to=["a@example.com", "b@example.com"])
    assert msg["status"] == "retrying"
    assert [(r["address"], r["state"]) for r in msg["recipients"]] == [
        ("a@example.com", "accepted"), ("b@example.com", "pending")]
    await env.sql("UPDATE message SET next_attempt_at = created_at WHERE status = 'retrying'")
    await env.deliver()
    got = (await env.client.get(f"/messages/{msg['id']}")).json()
    assert got["status"] == "sent" and got["attempts"] == 2
    assert {r["state"] for r in got["recipients"]} == {"accepted"}
    assert [r.rcpt_tos for r in smtp.received] == [["a@example.com"], ["b@example.com"]]
    assert smtp.received[0].message["Message-ID"] == smtp.received[1].message["Message-ID"]
    assert smtp.received[1].message["To"] == "a@example.com, b@example.com"  # the headers still name everyone
