"""Issue 12 item 7: providers may not reach private, loopback or link-local addresses unless allowed
(OUTBOX_PROVIDER_ALLOWED_NETWORKS, checked on the resolved address at connect time), and a peer that is not an
SMTP server is quoted only as a short, sanitised excerpt."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from app.settings import Settings
from tests.conftest import running_env
from tests.support.peer import Peer
from tests.support.smtp_server import SmtpServer

TOKEN = "AKIA1234567890SECRETTOKEN"


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


def _smtp(port: int, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "tls": "none", "authentication_required": False,
            "from_address": "o@example.com", "per_minute_limit": 0, "timeout_seconds": 3, **extra}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_private_addresses_are_refused_at_connect_time(db_url: str, peer: Peer, smtp: SmtpServer) -> None:
    async with running_env(db_url, OUTBOX_PROVIDER_ALLOWED_NETWORKS="") as env:  # as in production
        for host in ("127.0.0.1", "localhost", "169.254.169.254", "10.1.2.3", "[::1]".strip("[]")):
            r = await env.client.patch("/providers/smtp", json=_smtp(peer.port, host=host))
            assert r.status_code == 200, r.text
            v = (await env.client.post("/providers/smtp/verify")).json()
            failed = next(s for s in v["steps"] if s["ok"] is False)
            assert v["ok"] is False and failed["error_type"] == "config.address_not_allowed", (host, v)
            assert "OUTBOX_PROVIDER_ALLOWED_NETWORKS" in failed["detail"]
        assert peer.connections == 0  # not even a TCP handshake
        # A message is held with the fix, not retried.
        await env.client.patch("/providers/smtp", json=_smtp(smtp.port))
        mid = (await env.client.post("/messages", json={"to": ["a@example.com"], "subject": "s",
                                                        "body_text": "b"})).json()["id"]
        await env.deliver()
        msg = (await env.client.get(f"/messages/{mid}")).json()
        assert msg["status"] == "held" and msg["error_type"] == "config.address_not_allowed", msg
        assert smtp.received == []
    async with running_env(db_url, OUTBOX_PROVIDER_ALLOWED_NETWORKS="127.0.0.1/32") as env:  # allowed explicitly
        await env.client.patch("/providers/smtp", json=_smtp(smtp.port))
        assert (await env.client.post("/providers/smtp/verify")).json()["ok"] is True


def test_the_setting_is_read_and_checked() -> None:
    assert Settings(OUTBOX_ENV="embedded").provider_network_policy.allows(__import__("ipaddress").ip_address("::1"))
    prod = Settings(OUTBOX_ENV="production").provider_network_policy
    ip = __import__("ipaddress").ip_address
    assert not prod.allows(ip("127.0.0.1")) and not prod.allows(ip("169.254.169.254"))
    assert not prod.allows(ip("::ffff:10.0.0.1")) and not prod.allows(ip("100.64.0.1"))
    assert prod.allows(ip("52.96.0.1"))
    relay = Settings(OUTBOX_ENV="production", OUTBOX_PROVIDER_ALLOWED_NETWORKS="10.0.0.25/32").provider_network_policy
    assert relay.allows(ip("10.0.0.25")) and not relay.allows(ip("10.0.0.26"))
    with pytest.raises(ValidationError):
        Settings(OUTBOX_PROVIDER_ALLOWED_NETWORKS="10.0.0.300")


@pytest.mark.parametrize("banner", [b"SSH-2.0-OpenSSH_9.6 token=" + TOKEN.encode() + b"\r\n",
                                    b"HTTP/1.1 400 Bad Request " + TOKEN.encode() + b"\r\n\r\n",
                                    b"\x00\x01\x02binary " + TOKEN.encode() + b"\r\n"])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_non_smtp_peer_is_quoted_short_and_clean(db_url: str, banner: bytes) -> None:
    peer = Peer(banner)
    try:
        async with running_env(db_url) as env:  # embedded default: loopback allowed
            await env.client.patch("/providers/smtp", json=_smtp(peer.port))
            r = await env.client.post("/providers/smtp/verify")
            assert r.status_code == 200 and r.json()["ok"] is False
            assert TOKEN not in r.text and "not answer like an SMTP server" in r.text, r.text
            mid = (await env.client.post("/messages", json={"to": ["a@example.com"], "subject": "s",
                                                            "body_text": "b"})).json()["id"]
            await env.deliver()
            await asyncio.sleep(0)
            msg = await env.client.get(f"/messages/{mid}")
            assert TOKEN not in msg.text and "not answer like an SMTP server" in msg.text, msg.text
            rows = await env.sql("SELECT count(*) FROM delivery_attempt WHERE reply_text LIKE :t", t=f"%{TOKEN}%")
            assert rows[0][0] == 0
    finally:
        peer.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_ews_url_on_a_private_address_is_refused_at_connect_time(db_url: str, peer: Peer) -> None:
    async with running_env(db_url, OUTBOX_PROVIDER_ALLOWED_NETWORKS="") as env:
        for host in ("127.0.0.1", "localhost", "169.254.169.254"):
            r = await env.client.patch("/providers/exchange", json={
                "ews_url": f"https://{host}:{peer.port}/EWS/Exchange.asmx", "auth": "basic", "username": "svc",
                "password": "p", "batch_account": "batch@example.com", "timeout_seconds": 3})
            assert r.status_code == 200, r.text
            v = (await env.client.post("/providers/exchange/verify")).json()
            assert v["ok"] is False and v["error_type"] == "config.address_not_allowed", (host, v)
        assert peer.connections == 0
