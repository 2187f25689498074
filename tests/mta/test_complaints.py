"""A complaint through a real Postfix: Outbox sends through Postfix to a downstream server (the "mailbox
provider"); the provider's feedback loop sends an ARF report about it to the complaints address; Postfix relays it
(transport map) to Outbox's listener. The report names no VERP address in its fields: the token is the Return-Path
of the returned message. The recipient is marked, the address suppressed, a signed message.complained webhook
reaches a receiver that verifies it, and the next submission is refused."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiosmtplib

from app.bounces import listener
from tests.conftest import Env
from tests.mta.test_bounces import BOUNCE_DOMAIN, DOWNSTREAM, OK, benv, relaying_postfix
from tests.support.postfix import skip_if_missing
from tests.support.smtp_server import SmtpServer
from tests.support.webhook_receiver import receiver
from tests.webhooks.conftest import add_endpoint, deliver_webhooks
from tests.webhooks.test_complaints import as_delivered, make_arf

__all__ = ["benv"]  # the fixture, shared with the bounce test
ANNOYED = f"annoyed@{DOWNSTREAM}"


async def test_postfix_relays_a_complaint(benv: Env) -> None:
    skip_if_missing()
    server = await listener.start(benv.settings, benv.worker_ctx["sessionmaker"], benv.redis, "127.0.0.1:0")
    bounce_port = int(server.sockets[0].getsockname()[1])
    try:
        with SmtpServer() as downstream, relaying_postfix(downstream.port, bounce_port) as postfix:
            r = await benv.client.patch("/providers/smtp", json={
                "host": "127.0.0.1", "port": postfix.ports["plain"], "tls": "none",
                "authentication_required": False, "from_address": "batch@example.com", "per_minute_limit": 0,
                "timeout_seconds": 5})
            assert r.status_code == 200, r.text
            async with receiver() as hook:
                await add_endpoint(benv, hook, ["message.complained"])
                r = await benv.client.post("/messages", json={"to": [OK, ANNOYED], "from": "batch@example.com",
                                                              "subject": "newsletter", "body_text": "x"})
                assert r.status_code == 202, r.text
                mid = int(r.json()["id"])
                m: dict[str, Any] = {}
                for _ in range(5):  # a deferral (seen once under load in the bounce test) is sent on a later pass
                    await benv.deliver()
                    m = (await benv.client.get(f"/messages/{mid}")).json()
                    if m["status"] != "deferred":
                        break
                    await benv.sql("UPDATE message SET next_attempt_at = created_at WHERE status = 'deferred'")
                assert m["status"] == "sent", m["attempt_log"]
                deadline = time.monotonic() + 30
                while not downstream.received and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert downstream.received, f"not relayed; Postfix log:\n{postfix.log_text()[-3000:]}"
                original = as_delivered(downstream.received[0])
                report = make_arf(original, rcpt_to=[ANNOYED], sender=f"fbl@{DOWNSTREAM}")
                async with aiosmtplib.SMTP(hostname="127.0.0.1", port=postfix.ports["plain"], timeout=10,
                                          start_tls=False) as c:
                    await c.sendmail(f"fbl@{DOWNSTREAM}", [f"complaints@{BOUNCE_DOMAIN}"], report)
                rows: list[Any] = []
                while time.monotonic() < deadline:
                    rows = await benv.sql("SELECT recipient, feedback_type, matched_by FROM message_complaint")
                    if rows:
                        break
                    await asyncio.sleep(0.1)
                assert rows, f"no complaint recorded; Postfix log:\n{postfix.log_text()[-3000:]}"
                assert [tuple(r) for r in rows] == [(ANNOYED, "abuse", "token")]
                assert await benv.sql("SELECT address, reason FROM suppression") == [(ANNOYED, "complaint")]
                await deliver_webhooks(benv)
                [d] = hook.received
                assert d.verified and d.payload is not None and d.payload["type"] == "message.complained"
                assert d.payload["data"]["message_id"] == mid
                assert [x["address"] for x in d.payload["data"]["recipients"]] == [ANNOYED]
        r = await benv.client.post("/messages", json={"to": [ANNOYED], "from": "batch@example.com",
                                                      "subject": "again", "body_text": "x"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to[0]"
    finally:
        server.close()
        await server.wait_closed()
