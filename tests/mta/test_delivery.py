"""Outbox against a real Postfix: TLS, SASL through Dovecot, what Postfix delivered, recipients refused."""

from __future__ import annotations

import base64
import re
from email.message import EmailMessage

from tests.conftest import Env
from tests.mta.conftest import send, use_postfix
from tests.support.postfix import PASSWORD, PERMFAIL, TEMPFAIL, USER, Postfix

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 20


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_starttls_and_sasl_deliver_a_well_formed_message(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "submission", authentication_required=True, username=USER,
                      password=PASSWORD)
    subject = "Kontoudtog for marts – Grüße"
    msg = await send(
        mta_env, subject=subject, from_name="Søren Ærø", to=["zoë@example.com", "rcpt@example.org"],
        cc=["cc@example.com"], bcc=["audit@example.org"], body_text="Hej Søren,\nsee the statement.\n",
        body_html="<p>Hej Søren, <b>see</b> it.</p>",
        attachments=[{"filename": "statement.pdf", "content_type": "application/pdf", "content_base64": _b64(PDF)},
                     {"filename": "Übersicht März.txt", "content_type": "text/plain",
                      "content_base64": _b64("Noter: æøå\r\n".encode())}])
    assert msg["status"] == "sent", msg
    got = postfix.wait_delivered(subject, count=4)  # one maildir file per envelope recipient
    assert sorted(d.recipient for d in got) == ["audit@example.org", "cc@example.com", "rcpt@example.org",
                                                "zoë@example.com"]  # SMTPUTF8 end to end
    m: EmailMessage = got[0].message
    # Postfix received it over TLS, signed in (its Received header says so).
    received = str(m["Received"])
    assert "SMTPSA" in received and "using TLS" in received, received
    assert m["Message-ID"] == msg["message_id"]
    # The parser normalises Date: read the header as Postfix stored it.
    [date] = re.findall(rb"^Date: (.*?)\r?$", got[0].raw.split(b"\n\n", 1)[0], re.MULTILINE)
    assert re.fullmatch(rb"[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000", date), date
    assert m["From"].addresses[0].display_name == "Søren Ærø"
    assert m["From"].addresses[0].addr_spec == "batch@example.com"
    assert [a.addr_spec for a in m["To"].addresses] == ["zoë@example.com", "rcpt@example.org"]
    assert [a.addr_spec for a in m["Cc"].addresses] == ["cc@example.com"]
    assert m["Bcc"] is None and b"audit@example.org" not in got[0].raw.split(b"\n\n", 1)[0].replace(
        b"X-Original-To: audit@example.org", b"").replace(b"Delivered-To: audit@example.org", b"")
    assert m["Subject"] == subject
    # Structure: mixed( alternative(text, html), pdf, txt )
    assert m.get_content_type() == "multipart/mixed"
    parts = list(m.iter_parts())
    assert [p.get_content_type() for p in parts] == ["multipart/alternative", "application/pdf", "text/plain"]
    assert [p.get_content_type() for p in parts[0].iter_parts()] == ["text/plain", "text/html"]
    plain = parts[0].get_body(("plain",))
    assert plain is not None and "Hej Søren" in plain.get_content()
    assert parts[1].get_content() == PDF
    assert parts[2].get_filename() == "Übersicht März.txt"
    assert parts[2].get_payload(decode=True) == "Noter: æøå\r\n".encode()
    # A plain filename= beside the RFC 2231 filename*= for readers that only know the plain parameter.
    raw = got[0].raw.decode("utf-8")
    dispositions = re.findall(r"^Content-Disposition:.*(?:\r?\n[ \t].*)*", raw, re.MULTILINE)
    [non_ascii] = [d for d in dispositions if "filename*" in d]
    assert re.search(r'[;\s]filename="[ -~]+"', non_ascii), non_ascii


async def test_implicit_tls_with_sasl(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "smtps", authentication_required=True, username=USER, password=PASSWORD)
    msg = await send(mta_env, subject="over smtps")
    assert msg["status"] == "sent", msg
    [d] = postfix.wait_delivered("over smtps")
    assert "ESMTPSA" in str(d.message["Received"]) and "using TLS" in str(d.message["Received"])


async def test_wrong_password_holds_the_message(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "submission", authentication_required=True, username=USER,
                      password="not the password")
    msg = await send(mta_env, subject="wrong password")
    assert msg["status"] == "held", msg
    last = msg["attempt_log"][-1]
    assert (last["reply_code"], last["error_type"]) == (535, "smtp.auth.failed"), last
    assert "5.7.8" in last["reply_text"]


async def test_recipients_refused_temporarily_and_permanently(mta_env: Env, postfix: Postfix) -> None:
    await use_postfix(mta_env, postfix, "plain")
    msg = await send(mta_env, subject="some refused", to=["ok@example.com", TEMPFAIL, PERMFAIL])
    [d] = postfix.wait_delivered("some refused")
    assert d.recipient == "ok@example.com"
    refused = msg["attempt_log"][0]["recipients"]
    assert refused[TEMPFAIL]["code"] == 450 and refused[TEMPFAIL]["kind"] == "transient", refused
    assert refused[PERMFAIL]["code"] == 550 and refused[PERMFAIL]["kind"] == "permanent", refused
    assert refused[PERMFAIL]["error_type"] == "smtp.recipient.unknown"
