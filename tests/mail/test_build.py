from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from email import message_from_bytes, message_from_string, policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

from app.mail.build import build_eml, build_mime, eml_filename, make_message_id
from app.transports.base import Attachment, OutgoingMessage

PDF = bytes(range(256)) * 41 + b"\r\n\n\r.\r\n"  # every byte value, odd length, line-ending look-alikes


def parse(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def make(**kw: Any) -> OutgoingMessage:
    base: dict[str, Any] = {
        "message_id": make_message_id("example.com"),
        "sender": "billing@example.com",
        "to": ["a@example.com"],
    }
    base.update(kw)
    return OutgoingMessage(**base)


def all_defects(msg: Message) -> list[Any]:
    return [d for part in msg.walk() for d in part.defects]


class TestMessageId:
    def test_shape_and_uniqueness(self) -> None:
        ids = {make_message_id("example.com") for _ in range(100)}
        assert len(ids) == 100
        for mid in ids:
            assert re.fullmatch(r"<[0-9a-f]{32}@example\.com>", mid)

    def test_idn_domain(self) -> None:
        assert make_message_id("bücher.example").endswith("@xn--bcher-kva.example>")

    @pytest.mark.parametrize("domain", ["", "a\r\nb.com", "x>y.com", "a b.com", "a@b.com"])
    def test_refuses_bad_domain(self, domain: str) -> None:
        with pytest.raises(ValueError, match="Message-ID"):
            make_message_id(domain)


class TestBuildMime:
    def test_headers_round_trip(self) -> None:
        msg = make(
            sender_name="Billing Dept",
            to=["a@example.com", "b@example.org"],
            cc=["c@example.com"],
            bcc=["secret@example.com"],
            reply_to=["support@example.com"],
            subject="Invoice 42",
            body_text="Hello",
            headers={"X-Campaign": "spring"},
        )
        data = build_mime(msg)
        p = parse(data)
        assert p["From"].addresses[0].display_name == "Billing Dept"
        assert p["From"].addresses[0].addr_spec == "billing@example.com"
        assert [a.addr_spec for a in p["To"].addresses] == ["a@example.com", "b@example.org"]
        assert [a.addr_spec for a in p["Cc"].addresses] == ["c@example.com"]
        assert [a.addr_spec for a in p["Reply-To"].addresses] == ["support@example.com"]
        assert p["Subject"] == "Invoice 42"
        assert p["Message-ID"] == msg.message_id
        assert p["MIME-Version"] == "1.0"
        assert p["X-Campaign"] == "spring"
        assert p["Date"].datetime is not None
        assert p.get_content_type() == "text/plain"
        assert p.get_content().rstrip("\r\n") == "Hello"
        assert not all_defects(p)

    def test_bcc_is_not_in_the_smtp_message(self) -> None:
        data = build_mime(make(bcc=["secret@example.com"], body_text="x"))
        assert b"secret@example.com" not in data
        assert parse(data)["Bcc"] is None

    def test_crlf_line_endings_only(self) -> None:
        data = build_mime(make(subject="S", body_text="a\nb\r\nc\rd", body_html="<p>x</p>\n",
                               attachments=[Attachment("f.bin", "application/octet-stream", PDF)]))
        assert b"\n" not in data.replace(b"\r\n", b"")
        assert b"\r" not in data.replace(b"\r\n", b"")
        assert all(len(line) <= 998 for line in data.split(b"\r\n"))

    def test_non_ascii_subject_and_name_round_trip(self) -> None:
        subject = "Rechnung Nr. 42 – Größe & Übermaß 日本語 😀 " * 3
        msg = make(sender_name="Jürgen Müller", subject=subject, body_text="x")
        data = build_mime(msg)
        head = data.split(b"\r\n\r\n", 1)[0]
        assert head.isascii()
        assert all(len(line) <= 78 for line in head.split(b"\r\n"))
        p = parse(data)
        assert p["Subject"] == subject
        assert p["From"].addresses[0].display_name == "Jürgen Müller"
        assert not all_defects(p)

    def test_long_non_ascii_name_decodes_per_rfc_2047(self) -> None:
        name = "Ωμέγα Αλφάβητο Ελληνικά Γράμματα Και Άλλα Πολλά Ακόμη"
        data = build_mime(make(sender_name=name, body_text="x"))
        raw = data.split(b"\r\nFrom: ", 1)[1].split(b" <billing@", 1)[0].decode()
        assert str(make_header(decode_header(raw))) == name
        # Python 3.11's own address parser keeps the folding space between encoded words (a CPython quirk);
        # the words themselves still round-trip.
        assert parse(data)["From"].addresses[0].display_name.split() == name.split()

    @pytest.mark.parametrize("name", ['A "quoted", name', "Smith, John", "O'Brien (Sales)", "back\\slash",
                                      "=?utf-8?q?spoof?=", "Tab\there"])
    def test_names_with_specials_round_trip(self, name: str) -> None:
        p = parse(build_mime(make(sender_name=name, body_text="x")))
        assert p["From"].addresses[0].display_name == name
        assert p["From"].addresses[0].addr_spec == "billing@example.com"
        assert len(p["To"].addresses) == 1

    @pytest.mark.parametrize("subject", ["", "plain", "two  spaces", "tab\tinside", "=?utf-8?q?not_encoded?=",
                                         "x" * 200, " ".join(["word"] * 60), "a" * 990])
    def test_ascii_subjects_round_trip(self, subject: str) -> None:
        data = build_mime(make(subject=subject, body_text="x"))
        assert parse(data)["Subject"] == subject
        assert all(len(line) <= 998 for line in data.split(b"\r\n"))

    def test_many_recipients_folded(self) -> None:
        to = [f"user{i}@example.com" for i in range(50)]
        data = build_mime(make(to=to, body_text="x"))
        head = data.split(b"\r\n\r\n", 1)[0]
        assert all(len(line) <= 78 for line in head.split(b"\r\n"))
        assert [a.addr_spec for a in parse(data)["To"].addresses] == to

    def test_text_and_html_are_alternative(self) -> None:
        p = parse(build_mime(make(body_text="Hello ünïcode\n", body_html="<p>Hello ünïcode</p>")))
        assert p.get_content_type() == "multipart/alternative"
        parts = list(p.iter_parts())
        assert [x.get_content_type() for x in parts] == ["text/plain", "text/html"]
        assert parts[0].get_content().replace("\r\n", "\n") == "Hello ünïcode\n"
        assert parts[1].get_content().replace("\r\n", "\n") == "<p>Hello ünïcode</p>\n"
        assert all(x.get_content_charset() == "utf-8" for x in parts)

    @pytest.mark.parametrize("body", [
        "ascii only\nsecond line",
        "mostly ascii with one é",
        "日本語のテキスト" * 100,
        "x" * 5000,  # one very long ASCII line: must be encoded
        "line with trailing space \nand tab\t\n",
        ".\n.leading dot\nFrom the start\n",
        "=3D literal equals and =?utf-8?q?x?=",
    ])
    def test_bodies_round_trip_and_are_7bit_safe(self, body: str) -> None:
        data = build_mime(make(body_text=body))
        body_bytes = data.split(b"\r\n\r\n", 1)[1]
        assert body_bytes.isascii()
        assert all(len(line) <= 998 for line in data.split(b"\r\n"))
        p = parse(data)
        assert p.get_content().replace("\r\n", "\n") == body.rstrip("\n") + "\n"

    def test_no_body_gives_empty_text_part(self) -> None:
        p = parse(build_mime(make()))
        assert p.get_content_type() == "text/plain"
        assert p.get_content().strip() == ""

    def test_attachments_round_trip_byte_for_byte(self) -> None:
        atts = [
            Attachment("invoice.pdf", "application/pdf", PDF),
            Attachment("empty.bin", "application/octet-stream", b""),
            Attachment("data.csv", "text/csv; charset=utf-8", "a;b\r\n1;ü\n".encode()),
            Attachment("big.bin", "application/octet-stream", bytes(range(256)) * 4000 + b"x"),
        ]
        msg = make(subject="With files", body_text="See attached.", body_html="<p>See attached.</p>",
                   attachments=atts)
        p = parse(build_mime(msg))
        assert p.get_content_type() == "multipart/mixed"
        first = next(p.iter_parts())
        assert first.get_content_type() == "multipart/alternative"
        got = list(p.iter_attachments())
        assert [a.get_filename() for a in got] == [a.filename for a in atts]
        assert [a.get_content_type() for a in got] == ["application/pdf", "application/octet-stream",
        "text/csv",
                                                       "application/octet-stream"]
        for att, part in zip(atts, got, strict=True):
            assert part.get_payload(decode=True) == att.content
            assert part.get_content_disposition() == "attachment"
            assert part["Content-Transfer-Encoding"] == "base64"
        assert got[2].get_content_charset() == "utf-8"
        assert not all_defects(p)

    @pytest.mark.parametrize("filename", [
        "Überweisung für März.pdf",
        "日本語のファイル名.xlsx",
        "Überweisung für März — ein sehr langer Dateiname mit vielen Zeichen 日本語のファイル名 und mehr.pdf",
        'quote"and\\backslash.txt',
        "semi;colon, comma=equals (paren).txt",
        "percent%20literal.txt",
        "😀.png",
    ])
    def test_filenames_round_trip(self, filename: str) -> None:
        msg = make(body_text="x", attachments=[Attachment(filename, "application/octet-stream", b"data")])
        data = build_mime(msg)
        assert all(len(line) <= 78 for line in data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")[:12])
        part = next(parse(data).iter_attachments())
        assert part.get_filename() == filename
        assert part.get_param("name") is not None
        assert part.get_payload(decode=True) == b"data"

    def test_non_ascii_filename_uses_rfc_2231(self) -> None:
        data = build_mime(make(attachments=[Attachment("März.pdf", "application/pdf", b"x")]))
        assert b"filename*=utf-8''M%C3%A4rz.pdf" in data

    @pytest.mark.parametrize(("filename", "fallback"), [
        ("März.pdf", "Marz.pdf"), ("Übersicht März 2026.xlsx", "Ubersicht Marz 2026.xlsx"),
        ("报告.pdf", "attachment.pdf"), ("Ærø \"quoted\".txt", "AEro _quoted.txt"), ("Straße.pdf", "Strasse.pdf"),
        ("é" * 90 + ".docx", "e" * 55 + ".docx"),
    ])
    def test_non_ascii_filename_has_a_plain_fallback(self, filename: str, fallback: str) -> None:
        """RFC 2231 first (readers that know it prefer it), then a plain ASCII filename= / name= for the rest."""
        data = build_mime(make(body_text="x", attachments=[Attachment(filename, "application/pdf", b"%PDF")]))
        head = data.split(b"Content-Transfer-Encoding: base64", 1)[0].decode("ascii")
        assert f'filename="{fallback}"' in head and f'name="{fallback}"' in head
        assert head.index("filename*") < head.index(f'filename="{fallback}"')
        assert [a.get_filename() for a in parse(data).iter_attachments()] == [filename]

    def test_date_uses_numeric_zone(self) -> None:
        """RFC 5322 §3.3: "+0000", not the obsolete "GMT"."""
        [date] = re.findall(rb"^Date: (.*)\r$", build_mime(make(body_text="x")), re.MULTILINE)
        assert re.fullmatch(rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000", date), date

    def test_composite_attachment_types_sent_as_octet_stream(self) -> None:
        eml = b"Subject: inner\r\n\r\nbody\r\n"
        p = parse(build_mime(make(attachments=[Attachment("fwd.eml", "message/rfc822", eml)])))
        part = next(p.iter_attachments())
        assert part.get_content_type() == "application/octet-stream"
        assert part.get_payload(decode=True) == eml
        assert part.get_filename() == "fwd.eml"

    def test_smtputf8_addresses_written_as_utf8(self) -> None:
        data = build_mime(make(to=["jörg@example.com"], body_text="x"))
        assert "To: jörg@example.com".encode() in data
        p = message_from_string(data.decode("utf-8"), policy=policy.default)
        assert p["To"].addresses[0].addr_spec == "jörg@example.com"

    @pytest.mark.parametrize("field", ["subject", "sender_name"])
    @pytest.mark.parametrize("value", ["x\r\nBcc: victim@example.com", "x\nX-Evil: 1", "x\rY", "x\x00y"])
    def test_refuses_injection_in_header_fields(self, field: str, value: str) -> None:
        with pytest.raises(ValueError, match="control character"):
            build_mime(make(**{field: value}))

    @pytest.mark.parametrize("kw", [
        {"to": ["a@example.com\r\nBcc: victim@example.com"]},
        {"cc": ["a@example.com\nX: y"]},
        {"reply_to": ["Name <a@example.com>"]},
        {"sender": "a@example.com, b@example.com"},
        {"headers": {"X-Ok": "a\r\nBcc: victim@example.com"}},
        {"headers": {"Bad Name": "v"}},
        {"headers": {"X\r\nBcc": "v"}},
        {"headers": {"Bcc": "victim@example.com"}},
        {"headers": {"content-type": "text/html"}},
        {"attachments": [Attachment("a\r\nX-Evil: 1.txt", "text/plain", b"")]},
        {"attachments": [Attachment("a.txt", "text/plain\r\nX-Evil: 1", b"")]},
        {"message_id": "<a@b>\r\nBcc: victim@example.com"},
    ])
    def test_refuses_injection_elsewhere(self, kw: dict[str, Any]) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
            build_mime(make(**kw))

    def test_non_ascii_custom_header_encoded(self) -> None:
        p = parse(build_mime(make(headers={"X-Note": "naïve café"})))
        assert p["X-Note"] == "naïve café"


class TestBuildEml:
    def test_has_bcc_and_x_unsent(self) -> None:
        msg = make(bcc=["secret@example.com", "other@example.com"], subject="Draft", body_text="x",
                   attachments=[Attachment("a.pdf", "application/pdf", PDF)])
        p = parse(build_eml(msg))
        assert [a.addr_spec for a in p["Bcc"].addresses] == ["secret@example.com", "other@example.com"]
        assert p["X-Unsent"] == "1"
        assert p["Subject"] == "Draft"
        assert next(p.iter_attachments()).get_payload(decode=True) == PDF

    def test_smtp_message_has_no_x_unsent(self) -> None:
        assert parse(build_mime(make()))["X-Unsent"] is None

    def test_no_bcc_header_when_no_bcc(self) -> None:
        assert parse(build_eml(make()))["Bcc"] is None


class TestEmlFilename:
    @pytest.mark.parametrize(("subject", "expected"), [
        ("Invoice 42", "Invoice 42.eml"),
        ("", "message.eml"),
        ("   ", "message.eml"),
        ("...", "message.eml"),
        ("Re: Fwd: a/b\\c", "Re_ Fwd_ a-b-c.eml"),
        ("line\r\nbreak", "line break.eml"),
        ("Größe 日本語", "Größe 日本語.eml"),
        ("\u202etxt.exe", "txt.exe.eml"),
    ])
    def test_names(self, subject: str, expected: str) -> None:
        assert eml_filename(subject) == expected

    def test_long_subject_capped(self) -> None:
        name = eml_filename("word " * 100)
        assert name.endswith(".eml")
        assert len(name) <= 90


# --- through a real SMTP conversation
# ------------------------------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: ARG002
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK queued"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[_Sink, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


async def test_build_mime_through_aiosmtplib_and_aiosmtpd(smtp_sink: tuple[_Sink, int]) -> None:
    sink, port = smtp_sink
    subject = "Rechnung März – 42"
    msg = make(
        sender_name="Jürgen Müller",
        to=["a@example.com"],
        cc=["c@example.com"],
        bcc=["hidden@example.com"],
        subject=subject,
        body_text="Hallo,\n.\nanbei die Rechnung.\n",  # a lone "." line exercises dot-stuffing
        body_html="<p>Hallo</p>",
        attachments=[Attachment("Rechnung März.pdf", "application/pdf", PDF)],
    )
    data = build_mime(msg)
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10) as smtp:
        errors, _ = await smtp.sendmail(msg.sender, msg.recipients, data)
    assert errors == {}
    assert len(sink.received) == 1
    mail_from, rcpts, content = sink.received[0]
    assert mail_from == "billing@example.com"
    assert rcpts == ["a@example.com", "c@example.com", "hidden@example.com"]
    p = parse(content)
    assert p["Subject"] == subject
    assert p["Message-ID"] == msg.message_id
    assert p["Bcc"] is None
    assert b"hidden@example.com" not in content
    assert p["From"].addresses[0].display_name == "Jürgen Müller"
    body = p.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == "Hallo,\n.\nanbei die Rechnung.\n"
    att = next(p.iter_attachments())
    assert att.get_filename() == "Rechnung März.pdf"
    assert att.get_payload(decode=True) == PDF
