from __future__ import annotations

import pytest

from app.mail.validate import (
    MailInputError,
    check_content_type,
    check_header_text,
    needs_smtputf8,
    normalize_address,
    normalize_addresses,
    safe_filename,
)

INJECTIONS = [
    "hello\r\nBcc: victim@example.com",
    "hello\nBcc: victim@example.com",
    "hello\rBcc: victim@example.com",
    "hello\x00world",
    "hello\x0bworld",
    "hello\x1bworld",
    "hello\x7fworld",
    "hello\x85world",  # NEL
    "hello\u2028world",
    "hello\u2029world",
]


class TestCheckHeaderText:
    @pytest.mark.parametrize("value", INJECTIONS)
    def test_refuses_line_breaks_and_controls_in_subject(self, value: str) -> None:
        with pytest.raises(MailInputError) as exc:
            check_header_text("subject", value)
        assert exc.value.field == "subject"
        assert exc.value.reason

    @pytest.mark.parametrize("value", INJECTIONS)
    def test_refuses_line_breaks_and_controls_in_names(self, value: str) -> None:
        with pytest.raises(MailInputError) as exc:
            check_header_text("sender_name", value)
        assert exc.value.field == "sender_name"

    def test_reason_names_the_character(self) -> None:
        with pytest.raises(MailInputError, match="line feed"):
            check_header_text("subject", "a\nb")
        with pytest.raises(MailInputError, match="carriage return"):
            check_header_text("subject", "a\rb")
        with pytest.raises(MailInputError, match="NUL"):
            check_header_text("subject", "a\x00b")

    @pytest.mark.parametrize("value", ["", "Invoice 42", "Größe – 日本語 😀", "tab\tseparated",
                                       "=?utf-8?q?x?="])
    def test_accepts_normal_text_and_tab(self, value: str) -> None:
        assert check_header_text("subject", value) == value

    def test_length_cap(self) -> None:
        assert check_header_text("subject", "x" * 998) == "x" * 998
        with pytest.raises(MailInputError, match="too long"):
            check_header_text("subject", "x" * 999)
        with pytest.raises(MailInputError):
            check_header_text("subject", "x" * 11, max_len=10)


class TestNormalizeAddress:
    @pytest.mark.parametrize("value", [
        "a@example.com\r\nRCPT TO:<victim@example.com>",
        "x\nDATA@b.example.com",  # aiosmtplib would silently send <xDATA@b.example.com>
        "a\r@example.com",
        "a@example.com\x00",
        "a\t@example.com",
        "a@exa\u2028mple.com",
    ])
    def test_refuses_controls_before_validation(self, value: str) -> None:
        with pytest.raises(MailInputError) as exc:
            normalize_address("to[0]", value)
        assert exc.value.field == "to[0]"
        assert "must not contain" in exc.value.reason

    def test_accepts_example_domains(self) -> None:
        assert normalize_address("to[0]", "user@example.com") == "user@example.com"
        addr = "first.last+tag@sub.example.org"
        assert normalize_address("to[0]", addr) == addr
        assert normalize_address("to[0]", "a@example.net") == "a@example.net"

    def test_domain_lower_cased_local_part_kept(self) -> None:
        assert normalize_address("to[0]", "John.Doe@EXAMPLE.COM") == "John.Doe@example.com"

    def test_strips_surrounding_spaces(self) -> None:
        assert normalize_address("to[0]", "  a@example.com ") == "a@example.com"

    def test_single_label_domain_refused_with_5_1_6_reason(self) -> None:
        with pytest.raises(MailInputError) as exc:
            normalize_address("to[1]", "user@contoso")
        assert "single-label" in exc.value.reason
        assert "5.1.6" in exc.value.reason
        assert exc.value.field == "to[1]"

    def test_display_name_form_refused(self) -> None:
        with pytest.raises(MailInputError, match="bare address"):
            normalize_address("to[0]", "Jane Doe <jane@example.com>")
        with pytest.raises(MailInputError):
            normalize_address("to[0]", "<jane@example.com>")

    def test_ip_literal_refused(self) -> None:
        with pytest.raises(MailInputError, match="IP"):
            normalize_address("to[0]", "user@[192.0.2.1]")
        with pytest.raises(MailInputError, match="IP"):
            normalize_address("to[0]", "user@192.0.2.1")

    def test_quoted_local_part_refused(self) -> None:
        with pytest.raises(MailInputError, match="quoted"):
            normalize_address("to[0]", '"john doe"@example.com')

    @pytest.mark.parametrize("value", [
        "a@localhost", "a@x.localhost", "a@mail.local", "a@b.test", "a@x.invalid", "a@x.onion",
        "a@1.0.0.127.in-addr.arpa",
    ])
    def test_special_use_domains_refused(self, value: str) -> None:
        with pytest.raises(MailInputError):
            normalize_address("to[0]", value)

    @pytest.mark.parametrize("value", ["", "   ", "no-at-sign", "a@", "@example.com", "a@@example.com",
                                       "a b@example.com", "a,b@example.com", "a@exam_ple.com"])
    def test_garbage_refused(self, value: str) -> None:
        with pytest.raises(MailInputError):
            normalize_address("to[0]", value)

    def test_idn_domain_normalised_to_ascii_form(self) -> None:
        assert normalize_address("to[0]", "user@bücher.example") == "user@xn--bcher-kva.example"
        assert normalize_address("to[0]", "user@BÜCHER.example") == "user@xn--bcher-kva.example"
        assert normalize_address("to[0]", "user@xn--bcher-kva.example") == "user@xn--bcher-kva.example"
        assert normalize_address("to[0]", "user@例え。jp") == "user@xn--r8jz45g.jp"

    def test_smtputf8_local_part_allowed_and_nfc_normalised(self) -> None:
        decomposed = "jo\u0308rg@example.com"  # o + combining diaeresis
        out = normalize_address("to[0]", decomposed)
        assert out == "j\u00f6rg@example.com"
        assert needs_smtputf8([out])
        assert normalize_address("to[0]", "jörg@bücher.example") == "jörg@xn--bcher-kva.example"

    def test_too_long_refused(self) -> None:
        with pytest.raises(MailInputError):
            normalize_address("to[0]", "a" * 65 + "@example.com")
        with pytest.raises(MailInputError, match="too long"):
            normalize_address("to[0]", "a@" + "b" * 250 + ".com")


class TestNormalizeAddresses:
    def test_field_names_carry_the_index(self) -> None:
        with pytest.raises(MailInputError) as exc:
            normalize_addresses("cc", ["a@example.com", "b@example.com", "bad\n@example.com"], max_count=10)
        assert exc.value.field == "cc[2]"

    def test_dedupes_case_insensitively_keeping_the_first(self) -> None:
        out = normalize_addresses(
            "to", ["A@Example.com", "b@example.com", "a@example.COM", "a@EXAMPLE.com", "b@example.com"],
            max_count=10)
        assert out == ["A@example.com", "b@example.com"]

    def test_idn_duplicates_collapse(self) -> None:
        out = normalize_addresses("to", ["u@bücher.example", "u@xn--bcher-kva.example"], max_count=5)
        assert out == ["u@xn--bcher-kva.example"]

    def test_max_count(self) -> None:
        assert len(normalize_addresses("to", [f"u{i}@example.com" for i in range(3)], max_count=3)) == 3
        with pytest.raises(MailInputError) as exc:
            normalize_addresses("to", [f"u{i}@example.com" for i in range(4)], max_count=3)
        assert exc.value.field == "to"

    def test_empty_list(self) -> None:
        assert normalize_addresses("bcc", [], max_count=3) == []


class TestNeedsSmtputf8:
    def test_ascii_and_punycode_do_not(self) -> None:
        assert not needs_smtputf8(["a@example.com", "u@xn--bcher-kva.example"])
        assert not needs_smtputf8([])

    def test_non_ascii_does(self) -> None:
        assert needs_smtputf8(iter(["a@example.com", "jörg@example.com"]))


class TestSafeFilename:
    @pytest.mark.parametrize(("raw", "expected"), [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\evil.dll", "evil.dll"),
        ("C:\\Users\\me\\Desktop\\Rechnung März.pdf", "Rechnung März.pdf"),
        ("/abs/path/x.txt", "x.txt"),
        ("in\x00voice\r\n.pdf", "invoice.pdf"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),
        ("a\u2066b\u2069c.txt", "abc.txt"),
        ('what?<is>"this"*.txt', "what__is__this__.txt"),
        ("trailing dots. . .", "trailing dots"),
        ("日本語のファイル.xlsx", "日本語のファイル.xlsx"),
        (".bashrc", ".bashrc"),
    ])
    def test_sanitises(self, raw: str, expected: str) -> None:
        assert safe_filename("attachments[0].filename", raw) == expected

    @pytest.mark.parametrize("raw", ["", "   ", "..", ".", "../", "a/b/", "\x00\x01", "\u202e", "dir\\.."])
    def test_refuses_empty_result(self, raw: str) -> None:
        with pytest.raises(MailInputError) as exc:
            safe_filename("attachments[3].filename", raw)
        assert exc.value.field == "attachments[3].filename"

    def test_caps_length_and_keeps_extension(self) -> None:
        out = safe_filename("f", "x" * 500 + ".pdf")
        assert out.endswith(".pdf")
        assert len(out) <= 150
        out = safe_filename("f", "日" * 300 + ".docx")
        assert out.endswith(".docx")
        assert len(out.encode()) <= 240

    def test_nfc(self) -> None:
        assert safe_filename("f", "Mu\u0308ller.txt") == "M\u00fcller.txt"


class TestCheckContentType:
    @pytest.mark.parametrize(("raw", "expected"), [
        ("application/pdf", "application/pdf"),
        ("Application/PDF", "application/pdf"),
        (" text/csv; charset=utf-8 ", "text/csv; charset=utf-8"),
        ('text/plain; charset="utf-8"; format=flowed', 'text/plain; charset="utf-8"; format=flowed'),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("image/svg+xml", "image/svg+xml"),
        ("message/rfc822", "message/rfc822"),
    ])
    def test_accepts(self, raw: str, expected: str) -> None:
        assert check_content_type("attachments[0].content_type", raw) == expected

    @pytest.mark.parametrize("raw", [
        "", "pdf", "application/", "/pdf", "application/pdf\r\nX-Evil: 1", "text/plain\nfoo",
        "text/plain; charset", "text/plain; =x", "app lication/pdf", "text/plain; a=\"unterminated",
        "application/pdf\x00", "a/b/c", "text/plain; a=b c",
    ])
    def test_refuses_garbage(self, raw: str) -> None:
        with pytest.raises(MailInputError) as exc:
            check_content_type("attachments[0].content_type", raw)
        assert exc.value.field == "attachments[0].content_type"
