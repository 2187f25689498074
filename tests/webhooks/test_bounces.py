"""Bounces: VERP Return-Path per message, the SMTP bounce listener (a real aiosmtpd server on loopback, fed
over SMTP with aiosmtplib), DSN parsing, per-recipient records, suppression and the message.bounced webhook;
hostile and malformed reports change nothing."""

from __future__ import annotations

import time
from email.message import EmailMessage

import aiosmtplib
import pytest

from app.bounces import dsn, listener, verp
from tests.conftest import Env
from tests.support.smtp_server import SmtpServer
from tests.support.webhook_receiver import receiver
from tests.webhooks.conftest import DOMAIN, add_endpoint, deliver_webhooks


def make_dsn(recipients: list[tuple[str, str, str, str]], original: EmailMessage | None = None,
             headers_only: bool = False, reporting: str = "dns; mx.example.net") -> bytes:
    """An RFC 3464 report laid out as MTAs write it: (address, action, status, diagnostic) per recipient."""
    blocks = [f"Reporting-MTA: {reporting}\r\nArrival-Date: Tue, 1 Dec 2026 14:00:00 +0000\r\n"]
    for addr, action, status, diag in recipients:
        blocks.append(f"Final-Recipient: rfc822; {addr}\r\nOriginal-Recipient: rfc822;{addr}\r\n"
                      f"Action: {action}\r\nStatus: {status}\r\nRemote-MTA: dns; mx.example.org\r\n"
                      f"Diagnostic-Code: smtp; {diag}\r\n")
    parts = [
        "Content-Type: text/plain\r\n\r\nThis is the mail system. Your message could not be delivered.\r\n",
        "Content-Type: message/delivery-status\r\n\r\n" + "\r\n".join(blocks),
    ]
    if original is not None:
        if headers_only:
            parts.append("Content-Type: text/rfc822-headers\r\n\r\n"
                         + "".join(f"{k}: {v}\r\n" for k, v in original.items()))
        else:
            parts.append("Content-Type: message/rfc822\r\n\r\n" + original.as_string().replace("\n", "\r\n"))
    body = "".join(f"--BOUNDARY\r\n{p}\r\n" for p in parts) + "--BOUNDARY--\r\n"
    return ("From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
            "boundary=\"BOUNDARY\"\r\n\r\n" + body).encode("utf-8", "surrogateescape")


async def deliver_dsn(port: int, rcpt: str, raw: bytes) -> tuple[int, str]:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as client:
        await client.mail("")
        code, text = await client.rcpt(rcpt)
        if code != 250:
            return code, text
        try:
            reply = await client.data(raw)
        except aiosmtplib.SMTPDataError as exc:
            return exc.code, exc.message
        return reply.code, reply.message


async def _send(env: Env, smtp: SmtpServer, to: list[str]) -> tuple[int, str, EmailMessage]:
    r = await env.client.post("/messages", json={"to": to, "from": "s@example.com", "subject": "b",
                                                 "body_text": "x"})
    assert r.status_code == 202, r.text
    mid = int(r.json()["id"])
    await env.deliver()
    got = smtp.handler.received[-1]
    return mid, got.mail_from, got.message


def test_verp_tokens() -> None:
    from app.settings import Settings

    s = Settings(OUTBOX_SECRET_KEYS="kRYq5XbX7xkq8o2sFZ1S1X3f0pWq0yT8m3vV6cZ9aQk=", OUTBOX_BOUNCE_DOMAIN=DOMAIN)
    rp = verp.return_path(42, s)
    assert rp is not None and rp.startswith("bounces+42-") and rp.endswith("@" + DOMAIN)
    assert verp.message_of(rp, s) == 42 and verp.message_of(rp.upper().replace(DOMAIN.upper(), DOMAIN), s) == 42
    assert verp.message_of(rp.replace("+42-", "+43-"), s) is None  # another id with this MAC
    assert verp.message_of(rp.replace(DOMAIN, "other.test"), s) is None
    assert verp.message_of("bounces+42-aaaaaaaaaaaaa@" + DOMAIN, s) is None
    # After a key rotation (new key first), old tokens still match.
    rotated = Settings(OUTBOX_SECRET_KEYS="Vq0x3b2bK3S1zE0b8S3f1D1pWq7yT8m3vV6cZ9aQkRg=,"
                                          "kRYq5XbX7xkq8o2sFZ1S1X3f0pWq0yT8m3vV6cZ9aQk=", OUTBOX_BOUNCE_DOMAIN=DOMAIN)
    assert verp.message_of(rp, rotated) == 42
    assert verp.return_path(1, Settings(OUTBOX_SECRET_KEYS="kRYq5XbX7xkq8o2sFZ1S1X3f0pWq0yT8m3vV6cZ9aQk=")) is None


async def test_hard_bounce_end_to_end(benv: Env, inbound: int, smtp: SmtpServer) -> None:
    await benv.use_smtp(smtp)
    async with receiver() as hook:
        await add_endpoint(benv, hook, ["message.bounced"])
        mid, mail_from, original = await _send(benv, smtp, ["ok@example.com", "gone@example.com"])
        assert verp.message_of(mail_from, benv.settings) == mid  # the per-message Return-Path
        raw = make_dsn([("gone@example.com", "failed", "5.1.1",
                         "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown")], original)
        arrived = time.monotonic()
        code, text = await deliver_dsn(inbound, mail_from, raw)
        assert code == 250 and f"message {mid} (token): 1 bounced, 1 suppressed" in text, text
        await deliver_webhooks(benv)
        assert time.monotonic() - arrived < 5
        [d] = hook.received
        assert d.verified and d.payload is not None and d.payload["type"] == "message.bounced"
        data = d.payload["data"]
        assert data["message_id"] == mid and data["status"] == "sent"
        [rec] = data["recipients"]
        assert rec["address"] == "gone@example.com" and rec["status"] == "bounced" and rec["kind"] == "hard"
        assert rec["status_code"] == "5.1.1" and "User unknown" in rec["diagnostic_code"]
        assert rec["error_type"] and "Hard bounce" in rec["explanation"] and "suppression list" in rec["fix"]
    sup = (await benv.client.get("/suppressions")).json()["items"]
    assert [(s["address"], s["reason"], s["message_id"]) for s in sup] == [("gone@example.com", "hard_bounce", mid)]
    m = (await benv.client.get(f"/messages/{mid}")).json()
    assert m["status"] == "sent"
    by = {x["address"]: x for x in m["recipients"]}
    assert by["ok@example.com"]["state"] == "accepted" and by["ok@example.com"]["bounce"] is None
    gone = by["gone@example.com"]
    assert gone["state"] == "bounced" and gone["bounce"]["kind"] == "hard" and gone["bounce"]["status"] == "5.1.1"
    assert "User unknown" in gone["bounce"]["diagnostic_code"] and "Hard bounce" in gone["explanation"]
    rows = await benv.sql("SELECT recipient, kind, status, matched_by FROM message_bounce")
    assert [tuple(r) for r in rows] == [("gone@example.com", "hard", "5.1.1", "token")]
    # The same report again (the relay retried): recorded once.
    code, text = await deliver_dsn(inbound, mail_from, raw)
    assert code == 250 and "0 bounced" in text
    assert await benv.sql("SELECT count(*) FROM message_bounce") == [(1,)]
    # The next submission to that address is refused, naming the field.
    r = await benv.client.post("/messages", json={"to": ["ok@example.com", "Gone@Example.com"], "subject": "again",
                                                  "from": "s@example.com", "body_text": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to[1]"


async def test_soft_bounce_and_delay_do_not_suppress(benv: Env, inbound: int, smtp: SmtpServer) -> None:
    await benv.use_smtp(smtp)
    mid, mail_from, original = await _send(benv, smtp, ["full@example.com", "slow@example.com"])
    raw = make_dsn([("full@example.com", "failed", "4.2.2", "452 4.2.2 Mailbox full"),
                    ("slow@example.com", "delayed", "4.4.1", "Connection timed out")], original)
    code, text = await deliver_dsn(inbound, mail_from, raw)
    assert code == 250 and "1 bounced, 0 suppressed" in text
    assert [tuple(r) for r in await benv.sql("SELECT recipient, kind FROM message_bounce")] == [
        ("full@example.com", "soft")]
    assert await benv.sql("SELECT count(*) FROM suppression") == [(0,)]


async def test_matched_by_message_id_without_token(benv: Env, inbound: int, smtp: SmtpServer) -> None:
    await benv.use_smtp(smtp)
    mid, _, original = await _send(benv, smtp, ["x@example.com"])
    raw = make_dsn([("x@example.com", "failed", "5.2.1", "550 5.2.1 mailbox disabled")], original, headers_only=True)
    code, text = await deliver_dsn(inbound, f"bounces@{DOMAIN}", raw)
    assert code == 250 and f"message {mid} (message_id)" in text, text
    assert await benv.sql("SELECT matched_by FROM message_bounce") == [("message_id",)]


async def test_hostile_and_malformed_reports_change_nothing(benv: Env, inbound: int, smtp: SmtpServer) -> None:
    await benv.use_smtp(smtp)
    mid, mail_from, original = await _send(benv, smtp, ["victim-not@example.com"])
    forged = mail_from.replace(f"+{mid}-", f"+{mid + 1}-")
    cases: list[tuple[str, bytes]] = [
        # A recipient that is not the message's: a forged report must not suppress someone else.
        (mail_from, make_dsn([("ceo@example.com", "failed", "5.1.1", "550 5.1.1 unknown")], original)),
        # A token whose MAC does not match, and no returned message.
        (forged, make_dsn([("victim-not@example.com", "failed", "5.1.1", "550 unknown")])),
        # No token, a Message-ID of nothing we sent.
        (f"bounces@{DOMAIN}", make_dsn([("victim-not@example.com", "failed", "5.1.1", "550 x")],
                                       _msg("<nothing@nowhere>"))),
        (mail_from, b"\x00\xff garbage \r\n\r\n\xfe"),
        (mail_from, b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status"
                    b"\r\n\r\nFinal-Recipient: x400; ; ;\r\nAction: \r\nStatus: 9.9.9.9\r\n--x--\r\n"),
        (mail_from, make_dsn([("victim-not@example.com; DROP TABLE", "failed", "5.1.1", "550 x")])),
        (mail_from, make_dsn([("victim-not@example.com", "failed", "5.1.1" + "1" * 500, "x" * 900)])),
        (mail_from, _deep_nesting()),
        (mail_from, make_dsn([("victim-not@example.com", "delivered", "2.0.0", "250 ok")], original)),
    ]
    for rcpt, raw in cases:
        code, text = await deliver_dsn(inbound, rcpt, raw)
        assert code == 250, (code, text)
    # The over-long status is not a status: recorded (the address is the message's), but as soft, not suppressed.
    assert await benv.sql("SELECT count(*) FROM suppression") == [(0,)]
    kinds = [tuple(r) for r in await benv.sql("SELECT recipient, kind, status FROM message_bounce")]
    assert kinds in ([], [("victim-not@example.com", "soft", None)]), kinds
    # Not a bounce address: refused at RCPT (not an open relay).
    for rcpt in ("someone@example.com", f"bounces@{DOMAIN}.evil.test", f"postmaster@{DOMAIN}"):
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=inbound, timeout=10) as client:
            await client.mail("")
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await client.rcpt(rcpt)
            assert refused.value.code == 550


def _msg(message_id: str) -> EmailMessage:
    m = EmailMessage()
    m["Message-ID"] = message_id
    m["Subject"] = "x"
    m.set_content("x")
    return m


def _deep_nesting() -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\nx\r\n"
    for i in range(200):
        inner = (f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n".encode() + inner
                 + f"\r\n--b{i}--\r\n".encode())
    return inner


def test_parser_never_raises_on_fuzz() -> None:
    import random

    rnd = random.Random(16)
    base = make_dsn([("a@example.com", "failed", "5.1.1", "550 x")], _msg("<m@x>"))
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rnd.randint(1, 40)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        dsn.parse(bytes(data))  # no exception, whatever it finds


def test_non_rfc3464_bounce_read_by_flufl() -> None:
    qmail = (b"From: MAILER-DAEMON@mx.example.net\r\nSubject: failure notice\r\n\r\n"
             b"Hi. This is the qmail-send program at mx.example.net.\r\n"
             b"I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
             b"This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
             b"<nobody@example.com>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
             b"--- Below this line is a copy of the message.\r\n\r\nMessage-ID: <m@x>\r\n")
    report = dsn.parse(qmail)
    assert report.format == "flufl" and [(r.address, r.kind) for r in report.recipients] == [
        ("nobody@example.com", "hard")]


async def test_listener_answers_451_when_the_database_is_down(benv: Env) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from app.core.db import create_engine

    broken = create_engine("postgresql://nobody@127.0.0.1:1/none")
    server = await listener.start(benv.settings, async_sessionmaker(broken), None, "127.0.0.1:0")
    port = int(server.sockets[0].getsockname()[1])
    try:
        code, text = await deliver_dsn(port, f"bounces@{DOMAIN}",
                                       make_dsn([("a@example.com", "failed", "5.1.1", "550 x")], _msg("<m@x>")))
        assert code == 451, text
    finally:
        server.close()
        await server.wait_closed()
        await broken.dispose()




def exchange_online_ndr(recipient: str, message_id: str) -> bytes:
    """An NDR laid out as Exchange Online writes them (its documented structure: a multipart/report whose first
    part is the user-facing text and HTML, an RFC 3464 status part with 5.1.10 RESOLVER.ADR.RecipientNotFound,
    and the original headers as text/rfc822-headers). Written for these tests, not copied from a mailbox."""
    return (
        "From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.onmicrosoft.com>\r\n"
        "To: <bounces@bounce.test>\r\nSubject: Undeliverable: b\r\nContent-Language: en-US\r\n"
        "X-MS-Exchange-Message-Is-Ndr: \r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="_000_NDR_"\r\n\r\n'
        "--_000_NDR_\r\n"
        'Content-Type: multipart/alternative; differentiator=_001_; boundary="_002_ALT_"\r\n\r\n'
        "--_002_ALT_\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\n\r\n"
        "Your message to " + recipient + " couldn't be delivered.\r\n"
        f"{recipient.split('@')[0]} wasn't found at {recipient.split('@')[1]}.\r\n\r\n"
        "Diagnostic information for administrators:\r\nGenerating server: AM0PR01MB1234.eurprd01.prod.outlook.com\r\n"
        f"{recipient}\r\nRemote server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found "
        "by SMTP address lookup'\r\n"
        "--_002_ALT_\r\nContent-Type: text/html; charset=\"us-ascii\"\r\n\r\n"
        f"<html><body><p>Your message to {recipient} couldn't be delivered.</p></body></html>\r\n"
        "--_002_ALT_--\r\n\r\n"
        "--_000_NDR_\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.outlook.com\r\n"
        "Received-From-MTA: dns;mail.example.com\r\nArrival-Date: Tue, 1 Dec 2026 14:00:00 +0000\r\n\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\nFinal-Recipient: rfc822;{recipient}\r\nAction: failed\r\n"
        "Status: 5.1.10\r\nDiagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found "
        "by SMTP address lookup\r\n\r\n"
        "--_000_NDR_\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {message_id}\r\nFrom: s@example.com\r\nTo: {recipient}\r\nSubject: b\r\n\r\n"
        "--_000_NDR_--\r\n").encode()


def test_exchange_online_ndr_layout() -> None:
    report = dsn.parse(exchange_online_ndr("nobody@contoso.com", "<abc@outbox.local>"))
    assert report.format == "rfc3464" and report.original_message_id == "<abc@outbox.local>"
    [r] = report.failures
    assert (r.address, r.kind, r.status, r.reply_code) == ("nobody@contoso.com", "hard", "5.1.10", 550)
    assert "RESOLVER.ADR.RecipientNotFound" in str(r.diagnostic_code)


async def test_exchange_online_ndr_recorded(benv: Env, inbound: int, smtp: SmtpServer) -> None:
    await benv.use_smtp(smtp)
    mid, _, original = await _send(benv, smtp, ["nobody@contoso.com"])
    code, text = await deliver_dsn(inbound, f"bounces@{DOMAIN}",
                                   exchange_online_ndr("nobody@contoso.com", str(original["Message-ID"])))
    assert code == 250 and f"message {mid} (message_id): 1 bounced, 1 suppressed" in text, text
    [(etype, explanation)] = [tuple(r) for r in await benv.sql("SELECT error_type, explanation FROM message_bounce")]
    assert etype and "5.1.10" in str(explanation)
