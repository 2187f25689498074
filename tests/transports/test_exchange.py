"""ExchangeTransport (EWS) against the local EWS + Entra ID fake."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from app.transports.base import Attachment, OutgoingMessage, Reply, TransportError
from app.transports.exchange import DEPRECATION_NOTE, ExchangeConfig, ExchangeTransport
from tests.fakes.ews_server import (
    NS,
    EwsFake,
    http_error,
    quota_exceeded,
    send_as_denied,
    server_busy,
    slow,
)

SENDER = "sender@contoso.com"
MIME = (
    b"From: Billing <sender@contoso.com>\r\nTo: alice@example.com\r\nSubject: Invoice 42\r\n"
    b"Message-ID: <42@outbox.contoso.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\nHello \xc3\xa9\r\n"
)


def message(**overrides: object) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "message_id": "<42@outbox.contoso.com>",
        "sender": SENDER,
        "to": ["alice@example.com"],
        "bcc": ["audit@example.com"],
        "subject": "Invoice 42",
        "body_text": "Hello é",
        "mime": MIME,
    }
    fields.update(overrides)
    return OutgoingMessage(**fields)


async def send_error(transport: ExchangeTransport, msg: OutgoingMessage) -> TransportError:
    with pytest.raises(TransportError) as info:
        await transport.send(msg)
    return info.value


def test_deprecation_note() -> None:
    assert "2026-10-01" in DEPRECATION_NOTE
    assert "2027-04-01" in DEPRECATION_NOTE
    assert "on-premises" in DEPRECATION_NOTE


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        ExchangeTransport(ExchangeConfig(ews_url="https://ex.contoso.com/EWS/Exchange.asmx", auth="oauth"))
    with pytest.raises(ValueError, match="username"):
        ExchangeTransport(ExchangeConfig(ews_url="https://ex.contoso.com/EWS/Exchange.asmx", auth="basic"))


def test_repr_hides_secrets() -> None:
    config = ExchangeConfig(
        ews_url="https://ex/EWS/Exchange.asmx",
        auth="basic",
        username="u",
        password="hunter2",
        client_secret="very-secret-value",
    )
    assert "hunter2" not in repr(config)
    assert "very-secret-value" not in repr(config)


class TestOAuth:
    async def test_send_with_impersonation(self, ews_fake: EwsFake, ews_oauth: ExchangeTransport) -> None:
        result = await ews_oauth.send(message())

        assert result.reply == Reply(200, "NoError")
        [sent] = ews_fake.sent
        assert sent.auth == "bearer"
        assert sent.mailbox == SENDER
        assert sent.mime == MIME  # byte for byte
        assert sent.bcc == ["audit@example.com"]  # Bcc is not in the MIME headers
        assert sent.saved_to == "sentitems"
        [request] = ews_fake.requests
        assert request.headers["x-anchormailbox"] == SENDER
        assert request.headers["content-type"] == "text/xml; charset=utf-8"
        root = ET.fromstring(request.body)
        assert (
            root.findtext(
                "soap:Header/t:ExchangeImpersonation/t:ConnectingSID/t:PrimarySmtpAddress", None, NS
            )
            == SENDER
        )
        create = root.find("soap:Body/m:CreateItem", NS)
        assert create is not None
        assert create.get("MessageDisposition") == "SendAndSaveCopy"
        [token_request] = ews_fake.authority.token_requests
        assert token_request.form["scope"] == f"{ews_fake.url}/.default"

    async def test_token_reused(self, ews_fake: EwsFake, ews_oauth: ExchangeTransport) -> None:
        await ews_oauth.send(message())
        await ews_oauth.send(message())
        assert len(ews_fake.sent) == 2
        assert len(ews_fake.authority.token_requests) == 1

    async def test_401_once_then_fresh_token(self, ews_fake: EwsFake, ews_oauth: ExchangeTransport) -> None:
        await ews_oauth.send(message())
        ews_fake.revoke_tokens()
        assert (await ews_oauth.send(message())).reply.code == 200
        assert len(ews_fake.authority.token_requests) == 2

    async def test_401_twice(self, ews_fake: EwsFake, ews_oauth: ExchangeTransport) -> None:
        ews_fake.script(http_error(401), http_error(401))
        exc = await send_error(ews_oauth, message())
        assert (exc.stage, exc.reply.code) == ("auth", 401)
        assert ews_fake.sent == []

    async def test_bad_secret(self, ews_fake: EwsFake, ews_oauth_config: ExchangeConfig) -> None:
        transport = ExchangeTransport(dataclasses.replace(ews_oauth_config, client_secret="nope"))
        try:
            exc = await send_error(transport, message())
        finally:
            await transport.aclose()
        assert (exc.stage, exc.reply.code, exc.reply.error_code) == ("token", 401, "AADSTS7000215")
        assert ews_fake.requests == []

    @pytest.mark.usefixtures("ews_fake")
    async def test_unknown_mailbox(self, ews_oauth: ExchangeTransport) -> None:
        exc = await send_error(ews_oauth, message(sender="ghost@contoso.com"))
        assert (exc.stage, exc.reply.code, exc.reply.error_code) == ("send", 200, "ErrorNonExistentMailbox")

    async def test_verify(self, ews_fake: EwsFake, ews_oauth: ExchangeTransport) -> None:
        assert (await ews_oauth.verify(SENDER)).code == 200
        root = ET.fromstring(ews_fake.requests[0].body)
        assert root.find("soap:Body/m:GetFolder", NS) is not None
        assert ews_fake.sent == []
        with pytest.raises(TransportError) as info:
            await ews_oauth.verify("ghost@contoso.com")
        assert (info.value.stage, info.value.reply.error_code) == ("verify", "ErrorNonExistentMailbox")


class TestBasic:
    async def test_send(self, ews_fake: EwsFake, ews_basic: ExchangeTransport) -> None:
        assert (await ews_basic.send(message())).reply.code == 200
        [sent] = ews_fake.sent
        assert (sent.auth, sent.mailbox, sent.mime) == ("basic", ews_fake.username, MIME)
        [request] = ews_fake.requests
        assert request.headers["authorization"].startswith("Basic ")
        assert "x-anchormailbox" not in request.headers
        assert b"ExchangeImpersonation" not in request.body

    async def test_xml_fields_when_no_mime(self, ews_fake: EwsFake, ews_basic: ExchangeTransport) -> None:
        data = bytes(range(256)) * 10
        msg = message(
            mime=None, cc=["bob@example.com"], attachments=[Attachment("a.bin", "application/x-a", data)]
        )
        await ews_basic.send(msg)
        [sent] = ews_fake.sent
        assert sent.mime is None
        assert (sent.subject, sent.body) == ("Invoice 42", "Hello é")
        assert (sent.to, sent.cc, sent.bcc) == (
            ["alice@example.com"],
            ["bob@example.com"],
            ["audit@example.com"],
        )
        assert sent.attachments == [("a.bin", "application/x-a", data)]

    async def test_wrong_password(self, ews_fake: EwsFake, ews_basic_config: ExchangeConfig) -> None:
        transport = ExchangeTransport(dataclasses.replace(ews_basic_config, password="wrong"))
        try:
            exc = await send_error(transport, message())
        finally:
            await transport.aclose()
        assert (exc.stage, exc.reply.code) == ("auth", 401)
        assert "wrong" not in str(exc)
        assert ews_fake.sent == []

    async def test_plain_http_refused_for_basic(self) -> None:
        transport = ExchangeTransport(
            ExchangeConfig(
                ews_url="http://mail.contoso.com/EWS/Exchange.asmx", auth="basic", username="u", password="p"
            )
        )
        try:
            exc = await send_error(transport, message())
        finally:
            await transport.aclose()
        assert (exc.stage, exc.reply.error_code) == ("tls", "tls_failed")
        assert "plain http" in exc.reply.text

    async def test_verify(self, ews_fake: EwsFake, ews_basic: ExchangeTransport) -> None:
        assert (await ews_basic.verify(SENDER)).code == 200
        with pytest.raises(TransportError) as info:
            await ews_basic.verify("ghost@contoso.com")
        assert (info.value.stage, info.value.reply.error_code) == ("verify", "ErrorNameResolutionNoResults")
        assert ews_fake.sent == []


class TestFaults:
    async def test_send_as_denied(self, ews_fake: EwsFake, ews_basic: ExchangeTransport) -> None:
        ews_fake.script(send_as_denied())
        exc = await send_error(ews_basic, message())
        assert exc.stage == "send"
        assert (exc.reply.code, exc.reply.error_code) == (200, "ErrorSendAsDenied")
        assert exc.reply.text.startswith("The user account which was used to submit")
        assert (exc.retry_after, exc.uncertain) == (None, False)

    async def test_quota_exceeded(self, ews_fake: EwsFake, ews_oauth: ExchangeTransport) -> None:
        ews_fake.script(quota_exceeded())
        exc = await send_error(ews_oauth, message())
        assert exc.reply == Reply(200, "Mailbox has exceeded maximum mailbox size.", "ErrorQuotaExceeded")

    async def test_server_busy_fault(self, ews_fake: EwsFake, ews_oauth: ExchangeTransport) -> None:
        ews_fake.script(server_busy(30000))
        exc = await send_error(ews_oauth, message())
        assert (exc.stage, exc.reply.code, exc.reply.error_code) == ("send", 500, "ErrorServerBusy")
        assert exc.retry_after == 30.0

    async def test_server_busy_response_message(
        self, ews_fake: EwsFake, ews_basic: ExchangeTransport
    ) -> None:
        ews_fake.script(server_busy(1500, as_fault=False))
        exc = await send_error(ews_basic, message())
        assert (exc.reply.code, exc.reply.error_code, exc.retry_after) == (200, "ErrorServerBusy", 1.5)

    async def test_server_busy_without_hint(self, ews_fake: EwsFake, ews_basic: ExchangeTransport) -> None:
        ews_fake.script(http_error(503, headers={"Retry-After": "4"}))
        exc = await send_error(ews_basic, message())
        assert (exc.reply.code, exc.retry_after) == (503, 4.0)

    async def test_read_timeout_is_uncertain(
        self, ews_fake: EwsFake, ews_basic_config: ExchangeConfig
    ) -> None:
        ews_fake.script(slow(3))
        transport = ExchangeTransport(dataclasses.replace(ews_basic_config, timeout=0.5))
        try:
            exc = await send_error(transport, message())
        finally:
            await transport.aclose()
        assert (exc.stage, exc.reply.error_code, exc.uncertain) == ("send", "timeout", True)
