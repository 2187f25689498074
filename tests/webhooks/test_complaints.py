"""Feedback-loop complaints: Abuse Reporting Format reports (RFC 5965) fed over SMTP to the bounce listener (a real
aiosmtpd server on loopback): RFC 5965's own sample, reports laid out as Yahoo's and Microsoft's feedback loops
send them (recipient redacted), the recipient marked, the address suppressed, a signed message.complained
webhook verified by a receiver, the next submission refused; forged, foreign and hostile reports change
nothing."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from app.bounces import arf, verp
from app.settings import Settings
from tests.conftest import Env
from tests.console.test_console_http import _client, _sign_in
from tests.support.smtp_server import Received, SmtpServer
from tests.support.webhook_receiver import receiver
from tests.webhooks.conftest import DOMAIN, add_endpoint, deliver_webhooks
from tests.webhooks.test_bounces import deliver_dsn, make_dsn

COMPLAINTS = f"complaints@{DOMAIN}"

# RFC 5965, Appendix B.2 ("A more complete example"), as the RFC prints it.
RFC5965_B2 = (
    b"From: <abusedesk@example.com>\r\nDate: Thu, 8 Mar 2005 17:40:36 EDT\r\nSubject: FW: Earn money\r\n"
    b"To: <abuse@example.net>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/report; report-type=feedback-report;\r\n     boundary=\"part1_13d.2e68ed54_boundary\"\r\n"
    b"\r\n--part1_13d.2e68ed54_boundary\r\nContent-Type: text/plain; charset=\"US-ASCII\"\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n\r\n"
    b"This is an email abuse report for an email message received from IP\r\n192.0.2.1 on Thu, 8 Mar 2005 "
    b"14:00:00 EDT.  For more information\r\nabout this format please see http://www.mipassoc.org/arf/.\r\n\r\n"
    b"--part1_13d.2e68ed54_boundary\r\nContent-Type: message/feedback-report\r\n\r\n"
    b"Feedback-Type: abuse\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n"
    b"Original-Mail-From: <somespammer@example.net>\r\nOriginal-Rcpt-To: <user@example.com>\r\n"
    b"Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\nReporting-MTA: dns; mail.example.com\r\nSource-IP: 192.0.2.1\r\n"
    b"Authentication-Results: mail.example.com;\r\n               spf=fail smtp.mail=somespammer@example.com\r\n"
    b"Reported-Domain: example.net\r\nReported-Uri: http://example.net/earn_money.html\r\n"
    b"Reported-Uri: mailto:user@example.com\r\nRemoval-Recipient: user@example.com\r\n\r\n"
    b"--part1_13d.2e68ed54_boundary\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
    b"From: <somespammer@example.net>\r\nReceived: from mailserver.example.net (mailserver.example.net\r\n"
    b"     [192.0.2.1]) by example.com with ESMTP id M63d4137594e46;\r\n     Thu, 08 Mar 2005 14:00:00 -0400\r\n"
    b"To: <Undisclosed Recipients>\r\nSubject: Earn money\r\nMIME-Version: 1.0\r\nContent-type: text/plain\r\n"
    b"Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net\r\nDate: Thu, 02 Sep 2004 12:31:03 -0500\r\n\r\n"
    b"Spam Spam Spam\r\nSpam Spam Spam\r\nSpam Spam Spam\r\nSpam Spam Spam\r\n"
    b"--part1_13d.2e68ed54_boundary--\r\n")


def as_delivered(got: Received) -> bytes:
    """The message as the recipient's provider stored it: with the Return-Path its final delivery adds."""
    return f"Return-Path: <{got.mail_from}>\r\n".encode() + got.content


def make_arf(original: bytes | None, *, feedback_type: str = "abuse", rcpt_to: Sequence[str] = (),
             mail_from: str | None = None, user_agent: str = "SomeGenerator/1.0", version: str = "1",
             headers_only: bool = False, sender: str = "abusedesk@example.com") -> bytes:
    """An ARF report laid out as RFC 5965 section 2 and Appendix B describe: a human-readable part, the
    message/feedback-report fields, the original message (or its header as text/rfc822-headers)."""
    fields = [f"Feedback-Type: {feedback_type}", f"User-Agent: {user_agent}", f"Version: {version}"]
    if mail_from:
        fields.append(f"Original-Mail-From: <{mail_from}>")
    fields += [f"Original-Rcpt-To: <{r}>" for r in rcpt_to]
    fields += ["Arrival-Date: Tue, 1 Dec 2026 14:00:00 +0000", "Reporting-MTA: dns; mx.provider.example",
               "Source-IP: 192.0.2.25", "Reported-Domain: example.com"]
    parts = [b'Content-Type: text/plain; charset="US-ASCII"\r\n\r\nThis is an email abuse report for an email '
             b"message received from IP 192.0.2.25 on Tue, 1 Dec 2026 14:00:00 +0000.\r\n",
             b"Content-Type: message/feedback-report\r\n\r\n" + "\r\n".join(fields).encode() + b"\r\n"]
    if original is not None:
        if headers_only:
            parts.append(b"Content-Type: text/rfc822-headers\r\n\r\n" + original.split(b"\r\n\r\n", 1)[0] + b"\r\n")
        else:
            parts.append(b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n" + original)
    body = b"".join(b"--ARF_BOUNDARY\r\n" + p + b"\r\n" for p in parts) + b"--ARF_BOUNDARY--\r\n"
    return (f"From: <{sender}>\r\nTo: <{COMPLAINTS}>\r\nSubject: FW: complaint\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=feedback-report;\r\n"
            "\tboundary=\"ARF_BOUNDARY\"\r\n\r\n").encode() + body


async def _send(env: Env, smtp: SmtpServer, to: list[str], cc: Sequence[str] = ()) -> tuple[int, Received]:
    r = await env.client.post("/messages", json={"to": to, "cc": list(cc), "from": "s@example.com",
                                                 "subject": "Your invoice", "body_text": "x"})
    assert r.status_code == 202, r.text
    await env.deliver()
    return int(r.json()["id"]), smtp.handler.received[-1]


def test_rfc5965_sample_is_read() -> None:
    c = arf.parse(RFC5965_B2)
    assert c is not None and c.feedback_type == "abuse" and c.is_complaint and c.suppresses
    assert (c.user_agent, c.version, c.source_ip, c.reporting_mta) == ("SomeGenerator/1.0", "1", "192.0.2.1",
                                                                       "dns; mail.example.com")
    assert c.original_rcpt_to == ["user@example.com"] and c.original_mail_from == "somespammer@example.net"
    assert c.reported_domains == ["example.net"] and c.arrival_date is not None and c.arrival_date.year == 2005
    assert c.original_message_id == "<8787KJKJ3K4J3K4J3K4J3.mail@example.net>"  # bare in the sample
    # A DSN is not a complaint, nor is a plain message that mentions the words.
    assert arf.parse(make_dsn([("a@example.com", "failed", "5.1.1", "550 x")])) is None
    assert arf.parse(b"Subject: about feedback-report\r\n\r\nmessage/feedback-report\r\n") is None


async def test_complaint_end_to_end(benv: Env, inbound: int, smtp: SmtpServer) -> None:
    await benv.use_smtp(smtp)
    async with receiver() as hook:
        await add_endpoint(benv, hook, ["message.complained"])
        mid, got = await _send(benv, smtp, ["keep@example.com", "annoyed@example.com"])
        # RFC 5965's layout with our message in it; the feedback loop is registered with the Return-Path.
        raw = make_arf(as_delivered(got), rcpt_to=["Annoyed@Example.com"], mail_from=got.mail_from)
        code, text = await deliver_dsn(inbound, got.mail_from, raw)
        assert code == 250 and f"complaint (abuse) on message {mid} (token): 1 recorded, 1 suppressed" in text, text
        await deliver_webhooks(benv)
        [d] = hook.received
        assert d.verified and d.payload is not None and d.payload["type"] == "message.complained"
        data = d.payload["data"]
        assert data["message_id"] == mid and data["status"] == "sent" and data["feedback_type"] == "abuse"
        [rec] = data["recipients"]
        assert rec["address"] == "annoyed@example.com" and rec["status"] == "complained"
        assert rec["feedback_type"] == "abuse" and rec["suppressed"] is True and rec["identified_by"] == "report"
        assert rec["reported_by"] == "SomeGenerator/1.0" and rec["source_ip"] == "192.0.2.25"
        assert rec["arrived_at"].startswith("2026-12-01T14:00") and "marked this message as spam" in rec["explanation"]
    sup = (await benv.client.get("/suppressions", params={"reason": "complaint"})).json()["items"]
    assert [(s["address"], s["reason"], s["message_id"]) for s in sup] == [("annoyed@example.com", "complaint", mid)]
    m = (await benv.client.get(f"/messages/{mid}")).json()
    by = {x["address"]: x for x in m["recipients"]}
    assert by["keep@example.com"]["complaint"] is None and by["keep@example.com"]["state"] == "accepted"
    annoyed = by["annoyed@example.com"]
    assert annoyed["state"] == "accepted" and annoyed["complaint"]["feedback_type"] == "abuse"
    assert annoyed["complaint"]["suppressed"] is True and "suppression list" in annoyed["complaint"]["fix"]
    rows = await benv.sql("SELECT recipient, feedback_type, matched_by, recipient_by FROM message_complaint")
    assert [tuple(r) for r in rows] == [("annoyed@example.com", "abuse", "token", "report")]
    # The same report again: recorded once, no second event.
    code, text = await deliver_dsn(inbound, COMPLAINTS, raw)
    assert code == 250 and "0 recorded, 0 suppressed" in text, text
    assert await benv.sql("SELECT count(*) FROM message_complaint") == [(1,)]
    assert await benv.sql("SELECT count(*) FROM webhook_event WHERE type = 'message.complained'") == [(1,)]
    # The next submission to that address is refused, naming the field.
    r = await benv.client.post("/messages", json={"to": ["keep@example.com", "annoyed@EXAMPLE.com"],
                                                  "from": "s@example.com", "subject": "again", "body_text": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to[1]", r.text
    # The console's message page shows it.
    async with _client(benv) as c:
        await _sign_in(c, benv.admin_key)
        page = (await c.get(f"/console/messages/{mid}")).text
    assert "Complaint (abuse, suppressed)" in page and "marked this message as spam" in page


async def test_yahoo_style_report_with_the_recipient_redacted(benv: Env, inbound: int, smtp: SmtpServer) -> None:
    """Laid out as Yahoo's Complaint Feedback Loop sends them (written for this test, not copied from a
    mailbox): no Original-Rcpt-To, the recipient redacted in the returned message, the report addressed to the
    complaints address registered with the loop. The token is in Original-Mail-From; the message has one
    recipient, so it is that one."""
    await benv.use_smtp(smtp)
    mid, got = await _send(benv, smtp, ["reader@yahoo.example"])
    original = as_delivered(got).replace(b"reader@yahoo.example", b"redacted@yahoo.example")
    raw = make_arf(original, mail_from=got.mail_from, user_agent="Yahoo!-Mail-Feedback/2.0", version="0.1",
                   sender="feedback@arf.mail.yahoo.example")
    code, text = await deliver_dsn(inbound, COMPLAINTS, raw)
    assert code == 250 and f"message {mid} (token): 1 recorded, 1 suppressed" in text, text
    rows = await benv.sql("SELECT recipient, matched_by, recipient_by, user_agent FROM message_complaint")
    assert [tuple(r) for r in rows] == [("reader@yahoo.example", "token", "only", "Yahoo!-Mail-Feedback/2.0")]
    assert await benv.sql("SELECT address, reason FROM suppression") == [("reader@yahoo.example", "complaint")]


async def test_microsoft_jmrp_style_reports(benv: Env, inbound: int, smtp: SmtpServer) -> None:
    """Laid out as Microsoft's JMRP sends them (written for this test): no recipient in the report's fields;
    the returned message carries it in X-HmXmrOriginalRecipient. Matched here by the returned Message-ID (the
    Return-Path stripped). Without that header, of a message with two recipients, nothing is guessed."""
    await benv.use_smtp(smtp)
    mid, got = await _send(benv, smtp, ["first@outlook.example"], cc=["second@outlook.example"])
    headers, _, body = got.content.partition(b"\r\n\r\n")
    tagged = b"X-HmXmrOriginalRecipient: <second@outlook.example>\r\n" + headers + b"\r\n\r\n" + body
    raw = make_arf(tagged, user_agent="Microsoft JMRP", sender="staff@hotmail.example")
    code, text = await deliver_dsn(inbound, COMPLAINTS, raw)
    assert code == 250 and f"message {mid} (message_id): 1 recorded, 1 suppressed" in text, text
    assert await benv.sql("SELECT recipient, recipient_by FROM message_complaint") == [
        ("second@outlook.example", "report")]
    mid2, got2 = await _send(benv, smtp, ["third@outlook.example", "fourth@outlook.example"])
    code, text = await deliver_dsn(inbound, COMPLAINTS, make_arf(got2.content, headers_only=True))
    assert code == 250 and f"message {mid2} (message_id): 0 recorded" in text, text
    assert "recipient not named and the message has 2" in text
    assert await benv.sql("SELECT count(*) FROM message_complaint WHERE message_id = :m", m=mid2) == [(0,)]
    assert [r[0] for r in await benv.sql("SELECT address FROM suppression")] == ["second@outlook.example"]


async def test_feedback_types(benv: Env, inbound: int, smtp: SmtpServer) -> None:
    """not-spam and auth-failure reports record nothing; virus and other (and an unregistered type) are
    recorded and sent as message.complained but suppress nothing; fraud suppresses like abuse."""
    await benv.use_smtp(smtp)
    async with receiver() as hook:
        await add_endpoint(benv, hook, ["message.complained"])
        mid, got = await _send(benv, smtp, ["x@example.com"])
        for kind, expected in (("not-spam", "not-spam report: nothing to record"),
                               ("auth-failure", "auth-failure report: nothing to record"),
                               ("virus", "complaint (virus)"), ("opt-out", "complaint (other)")):
            code, text = await deliver_dsn(inbound, got.mail_from, make_arf(got.content, feedback_type=kind))
            assert code == 250 and expected in text and "suppressed" not in text.replace("0 suppressed", ""), text
        assert await benv.sql("SELECT count(*) FROM suppression") == [(0,)]
        code, text = await deliver_dsn(inbound, got.mail_from, make_arf(got.content, feedback_type="Fraud"))
        assert code == 250 and "complaint (fraud)" in text and "1 suppressed" in text, text
        await deliver_webhooks(benv)
        kinds = sorted(d.payload["data"]["feedback_type"] for d in hook.received if d.payload and d.verified)
        assert kinds == ["fraud", "other", "virus"]
    m = (await benv.client.get(f"/messages/{mid}")).json()
    assert m["recipients"][0]["complaint"]["feedback_type"] == "fraud"  # the one that suppressed


async def test_forged_foreign_and_hostile_reports_change_nothing(benv: Env, inbound: int, smtp: SmtpServer) -> None:
    await benv.use_smtp(smtp)
    mid, got = await _send(benv, smtp, ["victim-not@example.com"])
    forged = got.mail_from.replace(f"+{mid}-", f"+{mid + 1}-")
    someone_elses = (b"Message-ID: <elsewhere@other.example>\r\nFrom: x@other.example\r\nSubject: x\r\n\r\nx\r\n")
    cases: list[tuple[str, bytes]] = [
        # A recipient named that is not the message's: no fallback to its only recipient.
        (got.mail_from, make_arf(got.content, rcpt_to=["ceo@example.com"])),
        # Named, but unreadable: still named, still no fallback.
        (COMPLAINTS, make_arf(got.content).replace(b"Version: 1\r\n", b"Version: 1\r\nOriginal-Rcpt-To: redacted\r\n")),
        # A token whose MAC does not match, and no returned message.
        (forged, make_arf(None, mail_from=forged)),
        (COMPLAINTS, make_arf(None, mail_from=forged)),
        # Someone else's message: an envelope sender and a Message-ID that are not ours.
        (COMPLAINTS, make_arf(someone_elses, mail_from="bounces@other.example")),
        # No Feedback-Type: not a report.
        (got.mail_from, make_arf(got.content).replace(b"Feedback-Type: abuse\r\n", b"")),
        (got.mail_from, make_arf(got.content, feedback_type="abuse; DROP TABLE suppression")),
        (got.mail_from, b"Content-Type: multipart/report; report-type=feedback-report; boundary=x\r\n\r\n--x\r\n"
                        b"Content-Type: message/feedback-report\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                        b"\xff\xfe!!!\r\n--x--\r\n"),
        (got.mail_from, b"\x00\xff feedback-report \r\n\r\n\xfe"),
        (got.mail_from, make_arf(got.content, rcpt_to=["victim-not@example.com\r\nX: y", "a" * 400 + "@x.example"])),
    ]
    for rcpt, raw in cases:
        code, text = await deliver_dsn(inbound, rcpt, raw)
        assert code == 250, (code, text)
    assert await benv.sql("SELECT count(*) FROM message_complaint") == [(0,)]
    assert await benv.sql("SELECT count(*) FROM suppression") == [(0,)]
    # Mutations of a report about a message with two recipients naming neither: whatever a mutation makes of
    # it, the listener answers and nothing is recorded.
    mid2, got2 = await _send(benv, smtp, ["a@example.com", "b@example.com"])
    base = make_arf(as_delivered(got2), rcpt_to=["c@example.com"], mail_from=got2.mail_from)
    rnd = random.Random(5965)
    for _ in range(40):
        data = bytearray(base)
        for _ in range(rnd.randint(1, 30)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        code, text = await deliver_dsn(inbound, COMPLAINTS, bytes(data))
        assert code == 250, (code, text)
    assert await benv.sql("SELECT count(*) FROM message_complaint") == [(0,)]
    assert await benv.sql("SELECT count(*) FROM suppression") == [(0,)]


def test_parser_never_raises_on_fuzz() -> None:
    rnd = random.Random(6650)
    original = (b"Return-Path: <bounces+1-aaaaaaaaaaaaa@bounce.test>\r\nMessage-ID: <m@x>\r\n"
                b"X-HmXmrOriginalRecipient: <r@example.com>\r\n\r\nbody\r\n")
    bases = [make_arf(original, rcpt_to=["r@example.com"], mail_from="bounces+1-aaaaaaaaaaaaa@bounce.test"),
             make_arf(original, headers_only=True), RFC5965_B2]
    for i in range(300):
        data = bytearray(bases[i % len(bases)])
        for _ in range(rnd.randint(1, 40)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        arf.parse(bytes(data))  # no exception, whatever it finds


def test_complaints_address() -> None:
    keys = "kRYq5XbX7xkq8o2sFZ1S1X3f0pWq0yT8m3vV6cZ9aQk="
    default = Settings(OUTBOX_SECRET_KEYS=keys, OUTBOX_BOUNCE_DOMAIN=DOMAIN)
    assert verp.complaints_address(default) == COMPLAINTS
    assert verp.is_bounce_address(f"<Complaints@{DOMAIN.upper()}>", default)
    assert not verp.is_bounce_address(f"abuse@{DOMAIN}", default)
    own = Settings(OUTBOX_SECRET_KEYS=keys, OUTBOX_BOUNCE_DOMAIN=DOMAIN, OUTBOX_COMPLAINTS_ADDRESS="fbl@example.org")
    assert verp.is_bounce_address("fbl@example.org", own) and not verp.is_bounce_address(COMPLAINTS, own)
    assert verp.is_bounce_address(f"bounces@{DOMAIN}", own)
    assert verp.complaints_address(Settings(OUTBOX_SECRET_KEYS=keys)) is None
    for bad in ("fbl", "fbl@localhost", "a@b.example, c@d.example", "a b@c.example"):
        with pytest.raises(ValidationError):
            Settings(OUTBOX_SECRET_KEYS=keys, OUTBOX_COMPLAINTS_ADDRESS=bad)


async def test_a_dsn_sent_to_the_complaints_address_is_read_as_a_dsn(benv: Env, inbound: int,
                                                                     smtp: SmtpServer) -> None:
    await benv.use_smtp(smtp)
    mid, got = await _send(benv, smtp, ["gone@example.com"])
    raw = make_dsn([("gone@example.com", "failed", "5.1.1", "550 5.1.1 unknown")]).replace(
        b"--BOUNDARY--", b"--BOUNDARY\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        + got.content.split(b"\r\n\r\n", 1)[0] + b"\r\n--BOUNDARY--")
    code, text = await deliver_dsn(inbound, COMPLAINTS, raw)
    assert code == 250 and f"message {mid} (message_id): 1 bounced, 1 suppressed" in text, text
