"""GraphTransport against the local Graph + Entra ID fake (real MSAL, real HTTPS, no mocks of our code)."""

from __future__ import annotations

import dataclasses
import os
import socket
import ssl
import traceback
from typing import Any

import httpx
import pytest

from app.transports.base import Attachment, OutgoingMessage, Reply, TransportError
from app.transports.graph import (
    UPLOAD_CHUNK_BYTES,
    GraphConfig,
    GraphTransport,
    cloud_hosts,
    cloud_supports_upload_sessions,
)
from tests.fakes._https import Scripted
from tests.fakes.ews_server import EwsFake
from tests.fakes.graph_server import (
    GraphFake,
    access_denied,
    gateway_timeout,
    graph_error,
    invalid_user,
    send_as_denied,
    slow,
    throttled,
    token_server_error,
    unauthorized,
    unavailable,
)

SENDER = "sender@contoso.com"
KiB = 1024
MiB = 1024 * 1024


def message(**overrides: object) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "message_id": "<20261101.1234@outbox.contoso.com>",
        "sender": SENDER,
        "to": ["alice@example.com"],
        "subject": "Invoice 42",
        "body_text": "Hello",
    }
    fields.update(overrides)
    return OutgoingMessage(**fields)


def blob(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes covering all 256 values (not valid UTF-8, so decoding errors would show)."""
    return bytes((i * 31 + seed) % 256 for i in range(size))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def assert_no_secret(exc: BaseException, secret: str) -> None:
    text = "".join(traceback.format_exception(exc))
    assert secret not in text


async def send_error(transport: GraphTransport, msg: OutgoingMessage) -> TransportError:
    with pytest.raises(TransportError) as info:
        await transport.send(msg)
    return info.value


class TestCloudTable:
    def test_hosts(self) -> None:
        assert cloud_hosts("global") == (
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com/v1.0",
        )
        assert cloud_hosts("usgov_gcch") == (
            "https://login.microsoftonline.us",
            "https://graph.microsoft.us/v1.0",
        )
        assert cloud_hosts("usgov_dod") == (
            "https://login.microsoftonline.us",
            "https://dod-graph.microsoft.us/v1.0",
        )
        assert cloud_hosts("china")[1] == "https://microsoftgraph.chinacloudapi.cn/v1.0"

    def test_upload_sessions(self) -> None:
        assert cloud_supports_upload_sessions("global")
        assert cloud_supports_upload_sessions("china")
        assert not cloud_supports_upload_sessions("usgov_gcch")
        assert not cloud_supports_upload_sessions("usgov_dod")

    def test_unknown_cloud(self) -> None:
        with pytest.raises(ValueError, match="unknown Microsoft cloud"):
            cloud_hosts("mars")  # type: ignore[arg-type]

    def test_repr_hides_secret(self, graph_config: GraphConfig) -> None:
        assert graph_config.client_secret not in repr(graph_config)


class TestInlineSend:
    async def test_fields_and_attachments_byte_for_byte(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        pdf = blob(200 * KiB, seed=1)
        png = blob(3 * KiB, seed=2)
        msg = message(
            sender_name="Billing Dept",
            cc=["bob@example.com"],
            bcc=["audit@example.com"],
            reply_to=["support@contoso.com"],
            body_html="<p>Hello <b>Alice</b></p>",
            attachments=[
                Attachment("facture-é.pdf", "application/pdf", pdf),
                Attachment("logo.png", "image/png", png),
            ],
            headers={"X-Outbox-Message": "m-42", "Precedence": "bulk"},
        )
        result = await graph_transport.send(msg)

        assert result.reply == Reply(202, "Accepted")
        [sent] = graph_fake.sent
        assert sent.via == "sendMail"
        assert sent.mailbox == SENDER
        assert sent.subject == "Invoice 42"
        assert (sent.body_type, sent.body) == ("HTML", "<p>Hello <b>Alice</b></p>")
        assert (sent.from_address, sent.from_name) == (SENDER, "Billing Dept")
        assert sent.to == ["alice@example.com"]
        assert sent.cc == ["bob@example.com"]
        assert sent.bcc == ["audit@example.com"]
        assert sent.reply_to == ["support@contoso.com"]
        assert sent.internet_message_id == "<20261101.1234@outbox.contoso.com>"
        assert sent.headers == {"X-Outbox-Message": "m-42"}  # only x- headers may go to Graph
        assert sent.save_to_sent_items is True
        assert [(a.name, a.content_type, a.content) for a in sent.attachments] == [
            ("facture-é.pdf", "application/pdf", pdf),
            ("logo.png", "image/png", png),
        ]
        [request] = graph_fake.requests_to("sendMail")
        assert request.headers["content-type"] == "application/json"
        assert request.headers["authorization"].startswith("Bearer ")

    async def test_text_body_when_no_html(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        await graph_transport.send(message(body_text="plain"))
        assert (graph_fake.sent[0].body_type, graph_fake.sent[0].body) == ("Text", "plain")

    async def test_token_request_as_msal_sends_it(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        await graph_transport.send(message())
        [token_request] = graph_fake.token_requests
        assert token_request.tenant == graph_fake.tenant_id
        assert token_request.form["grant_type"] == "client_credentials"
        assert token_request.form["client_id"] == graph_fake.client_id
        assert token_request.form["client_secret"] == graph_fake.client_secret  # client_secret_post
        # The scope names the real Graph resource even though graph_base points at the fake.
        assert token_request.form["scope"] == "https://graph.microsoft.com/.default"

    async def test_token_reused_across_sends(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        for _ in range(3):
            await graph_transport.send(message())
        assert len(graph_fake.sent) == 3
        assert len(graph_fake.token_requests) == 1
        assert graph_fake.authority.discovery_requests == 1  # one MSAL application, built once

    async def test_ca_bundle_wins_over_requests_env(
        self, graph_config: GraphConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # requests lets REQUESTS_CA_BUNDLE override session.verify (TRAPS.md); the system bundle does not
        # contain the fake's trustme CA, so this only passes if our CA file is really used.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        transport = GraphTransport(graph_config)
        try:
            assert (await transport.send(message())).reply.code == 202
        finally:
            await transport.aclose()
        assert os.environ["REQUESTS_CA_BUNDLE"]


class TestLargeMessages:
    async def test_large_attachment_uses_draft_upload_session_and_send(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        big = blob(5 * MiB, seed=3)
        small = blob(10 * KiB, seed=4)
        msg = message(
            attachments=[
                Attachment("big.zip", "application/zip", big),
                Attachment("note.txt", "text/plain", small),
            ]
        )
        result = await graph_transport.send(msg)

        assert result.reply == Reply(202, "Accepted")
        assert graph_fake.requests_to("sendMail") == []
        assert [r.route for r in graph_fake.requests] == [
            "createDraft",
            "createUploadSession",
            "upload",
            "upload",
            "sendDraft",
        ]
        [sent] = graph_fake.sent
        assert sent.via == "draft"
        assert sent.internet_message_id == msg.message_id
        by_name = {a.name: a for a in sent.attachments}
        assert by_name["big.zip"].content == big
        assert by_name["big.zip"].via == "upload"
        assert by_name["note.txt"].content == small
        assert by_name["note.txt"].via == "inline"
        assert graph_fake.drafts == {}

        total = len(big)
        assert [c.content_range for c in graph_fake.upload_chunks] == [
            f"bytes 0-{UPLOAD_CHUNK_BYTES - 1}/{total}",
            f"bytes {UPLOAD_CHUNK_BYTES}-{total - 1}/{total}",
        ]
        for chunk in graph_fake.upload_chunks:
            assert "authorization" not in chunk.headers  # the upload URL is pre-authenticated
            assert chunk.headers["content-type"] == "application/octet-stream"
            assert chunk.length <= 4 * MiB
        assert graph_fake.upload_chunks[0].length % (320 * KiB) == 0
        [send_request] = graph_fake.requests_to("sendDraft")
        assert send_request.body == b""
        assert send_request.headers["content-length"] == "0"

    async def test_many_small_attachments_over_4mb(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        files = [blob(2 * MiB, seed=s) for s in range(3)]  # 8 MB of base64: too much for one request
        msg = message(
            attachments=[
                Attachment(f"part{i}.bin", "application/octet-stream", f) for i, f in enumerate(files)
            ]
        )
        await graph_transport.send(msg)

        [sent] = graph_fake.sent
        assert sent.via == "draft"
        assert [a.content for a in sent.attachments] == files
        assert [a.via for a in sent.attachments] == ["inline", "attachments", "attachments"]
        assert graph_fake.upload_chunks == []
        assert all(len(r.body) <= 4 * MiB for r in graph_fake.requests)

    async def test_failed_upload_deletes_the_draft(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        graph_fake.script("upload", graph_error(500, "InternalServerError", "upload broke"))
        exc = await send_error(
            graph_transport, message(attachments=[Attachment("big.bin", "x/y", blob(4 * MiB))])
        )

        assert exc.stage == "upload"
        assert exc.reply == Reply(500, "upload broke", "InternalServerError")
        assert not exc.uncertain
        assert graph_fake.sent == []
        assert graph_fake.drafts == {}
        assert len(graph_fake.deleted_drafts) == 1
        [delete] = graph_fake.requests_to("deleteDraft")
        assert delete.path.endswith(graph_fake.deleted_drafts[0])

    async def test_refused_draft_send_deletes_the_draft(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        graph_fake.script("sendDraft", send_as_denied())
        exc = await send_error(
            graph_transport, message(attachments=[Attachment("big.bin", "x/y", blob(4 * MiB))])
        )

        assert (exc.stage, exc.reply.code, exc.reply.error_code) == ("send", 403, "ErrorSendAsDenied")
        assert graph_fake.drafts == {}
        assert len(graph_fake.deleted_drafts) == 1

    async def test_draft_send_504_is_uncertain_and_keeps_the_draft(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        graph_fake.script("sendDraft", gateway_timeout())
        exc = await send_error(
            graph_transport, message(attachments=[Attachment("big.bin", "x/y", blob(4 * MiB))])
        )
        assert exc.uncertain
        assert graph_fake.deleted_drafts == []  # it may be on its way: deleting could lose the Sent copy

    async def test_cloud_without_upload_sessions_fails_before_sending(
        self, graph_fake: GraphFake, graph_config: GraphConfig
    ) -> None:
        transport = GraphTransport(dataclasses.replace(graph_config, cloud="usgov_gcch"))
        try:
            exc = await send_error(
                transport, message(attachments=[Attachment("big.bin", "x/y", blob(5 * MiB))])
            )
            assert exc.stage == "upload"
            assert exc.reply.error_code == "upload_sessions_unavailable"
            assert "usgov_gcch" in exc.reply.text
            assert graph_fake.requests == []
            assert graph_fake.token_requests == []

            # A message that fits in one request still works there, with the US Gov Graph scope.
            assert (await transport.send(message())).reply.code == 202
            assert graph_fake.token_requests[0].form["scope"] == "https://graph.microsoft.us/.default"
        finally:
            await transport.aclose()


class TestGraphErrors:
    async def test_429_retry_after(self, graph_fake: GraphFake, graph_transport: GraphTransport) -> None:
        graph_fake.script("sendMail", throttled(retry_after=7))
        exc = await send_error(graph_transport, message())
        assert exc.stage == "send"
        assert exc.reply == Reply(
            429, "Application is over its MailboxConcurrency limit.", "ApplicationThrottled"
        )
        assert exc.retry_after == 7
        assert not exc.uncertain
        assert exc.provider == "graph"

    async def test_503_retry_after(self, graph_fake: GraphFake, graph_transport: GraphTransport) -> None:
        graph_fake.script("sendMail", unavailable(retry_after=12))
        exc = await send_error(graph_transport, message())
        assert (exc.reply.code, exc.retry_after, exc.uncertain) == (503, 12, False)

    async def test_504_is_uncertain(self, graph_fake: GraphFake, graph_transport: GraphTransport) -> None:
        graph_fake.script("sendMail", gateway_timeout())
        exc = await send_error(graph_transport, message())
        assert (exc.reply.code, exc.uncertain) == (504, True)

    async def test_read_timeout_after_post_is_uncertain(
        self, graph_fake: GraphFake, graph_config: GraphConfig
    ) -> None:
        transport = GraphTransport(dataclasses.replace(graph_config, timeout=0.5))
        try:
            await transport.send(message())  # token first, so the timeout hits sendMail itself
            graph_fake.script("sendMail", slow(3))
            exc = await send_error(transport, message())
        finally:
            await transport.aclose()
        assert exc.stage == "send"
        assert exc.reply.error_code == "timeout"
        assert exc.uncertain

    @pytest.mark.parametrize(
        ("answer", "expected"),
        [
            (send_as_denied(), (403, "ErrorSendAsDenied")),
            (access_denied(), (403, "ErrorAccessDenied")),
            (invalid_user(SENDER), (404, "ErrorInvalidUser")),
            (
                graph_error(400, "ErrorInvalidRecipients", "At least one recipient isn't valid."),
                (400, "ErrorInvalidRecipients"),
            ),
        ],
    )
    async def test_other_errors(
        self,
        graph_fake: GraphFake,
        graph_transport: GraphTransport,
        answer: Scripted,
        expected: tuple[int, str],
    ) -> None:
        graph_fake.script("sendMail", answer)
        exc = await send_error(graph_transport, message())
        assert exc.stage == "send"
        assert (exc.reply.code, exc.reply.error_code) == expected
        assert exc.reply.text  # Graph's error.message
        assert (exc.retry_after, exc.uncertain) == (None, False)

    async def test_unknown_sender_mailbox(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        exc = await send_error(graph_transport, message(sender="nobody@contoso.com"))
        assert exc.reply == Reply(
            404, "The requested user 'nobody@contoso.com' is invalid.", "ErrorInvalidUser"
        )
        assert graph_fake.sent == []

    async def test_connection_refused(self, graph_config: GraphConfig) -> None:
        transport = GraphTransport(
            dataclasses.replace(graph_config, graph_base=f"https://127.0.0.1:{free_port()}/v1.0")
        )
        try:
            exc = await send_error(transport, message())
        finally:
            await transport.aclose()
        assert (exc.stage, exc.reply.error_code, exc.uncertain) == ("connect", "connect_failed", False)

    async def test_untrusted_certificate(self, graph_config: GraphConfig, ews_server: EwsFake) -> None:
        # The EWS fake has its own CA, which this config does not trust.
        transport = GraphTransport(dataclasses.replace(graph_config, graph_base=f"{ews_server.url}/v1.0"))
        try:
            exc = await send_error(transport, message())
        finally:
            await transport.aclose()
        assert (exc.stage, exc.reply.error_code, exc.uncertain) == ("tls", "tls_failed", False)


class TestTokenRefresh:
    async def test_401_once_then_fresh_token(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        await graph_transport.send(message())
        graph_fake.revoke_tokens()  # the cached token dies early (as after a secret rotation or revocation)

        assert (await graph_transport.send(message())).reply.code == 202

        assert len(graph_fake.token_requests) == 2
        assert len(graph_fake.sent) == 2
        first, refused, retried = (r.headers["authorization"] for r in graph_fake.requests_to("sendMail"))
        assert first == refused != retried

    async def test_scripted_401_then_success(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        graph_fake.script("sendMail", unauthorized())
        assert (await graph_transport.send(message())).reply.code == 202
        assert len(graph_fake.token_requests) == 2
        assert len(graph_fake.sent) == 1

    async def test_401_twice_raises(self, graph_fake: GraphFake, graph_transport: GraphTransport) -> None:
        graph_fake.script("sendMail", unauthorized(), unauthorized())
        exc = await send_error(graph_transport, message())
        assert (exc.stage, exc.reply.code, exc.reply.error_code) == (
            "send",
            401,
            "InvalidAuthenticationToken",
        )
        assert len(graph_fake.token_requests) == 2
        assert graph_fake.sent == []


class TestTokenErrors:
    async def _token_error(self, config: GraphConfig) -> TransportError:
        transport = GraphTransport(config)
        try:
            return await send_error(transport, message())
        finally:
            await transport.aclose()

    async def test_wrong_secret(self, graph_fake: GraphFake, graph_config: GraphConfig) -> None:
        exc = await self._token_error(
            dataclasses.replace(graph_config, client_secret="the-secret-ID-not-value")
        )
        assert exc.stage == "token"
        assert (exc.reply.code, exc.reply.error_code) == (401, "AADSTS7000215")
        assert exc.reply.text.startswith("AADSTS7000215: Invalid client secret provided.")
        assert_no_secret(exc, "the-secret-ID-not-value")
        assert graph_fake.requests == []  # nothing reached Graph

    async def test_expired_secret(self, graph_fake: GraphFake, graph_config: GraphConfig) -> None:
        graph_fake.authority.expired_secrets.add(graph_config.client_secret)
        exc = await self._token_error(graph_config)
        assert (exc.stage, exc.reply.code, exc.reply.error_code) == ("token", 401, "AADSTS7000222")
        assert_no_secret(exc, graph_config.client_secret)

    async def test_unknown_application(self, graph_config: GraphConfig) -> None:
        exc = await self._token_error(
            dataclasses.replace(graph_config, client_id="00000000-dead-beef-0000-000000000000")
        )
        assert (exc.stage, exc.reply.code, exc.reply.error_code) == ("token", 400, "AADSTS700016")

    async def test_unknown_tenant(self, graph_config: GraphConfig) -> None:
        # MSAL raises ValueError while constructing the application (tenant discovery answers 400).
        exc = await self._token_error(dataclasses.replace(graph_config, tenant_id="no-such-tenant"))
        assert (exc.stage, exc.reply.code, exc.reply.error_code) == ("token", 400, "AADSTS90002")
        assert "no-such-tenant" in exc.reply.text

    async def test_token_endpoint_500(self, graph_fake: GraphFake, graph_config: GraphConfig) -> None:
        graph_fake.script("token", token_server_error())
        exc = await self._token_error(graph_config)
        assert (exc.stage, exc.reply.code, exc.reply.error_code) == ("token", 500, "server_error")

    async def test_token_endpoint_down(self, graph_config: GraphConfig) -> None:
        exc = await self._token_error(
            dataclasses.replace(graph_config, authority_host=f"https://127.0.0.1:{free_port()}")
        )
        assert (exc.stage, exc.reply.code, exc.reply.error_code) == ("token", None, "connect_failed")
        assert_no_secret(exc, graph_config.client_secret)

    async def test_token_endpoint_untrusted_certificate(
        self, graph_config: GraphConfig, ews_server: EwsFake
    ) -> None:
        exc = await self._token_error(dataclasses.replace(graph_config, authority_host=ews_server.url))
        assert (exc.stage, exc.reply.error_code) == ("token", "connect_failed")
        assert "TLS" in exc.reply.text

    async def test_token_endpoint_timeout(self, graph_fake: GraphFake, graph_config: GraphConfig) -> None:
        graph_fake.script("token", slow(3))
        exc = await self._token_error(dataclasses.replace(graph_config, timeout=0.5))
        assert (exc.stage, exc.reply.error_code) == ("token", "timeout")

    async def test_app_built_once_even_after_a_token_error(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        graph_fake.script("token", token_server_error())
        await send_error(graph_transport, message())
        # MSAL holds a 5xx for a few seconds in its own throttle cache; we only check the app was reused.
        assert graph_fake.authority.discovery_requests == 1


class TestVerify:
    async def test_mail_send_only_is_reported_ok(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        reply = await graph_transport.verify(SENDER)
        assert reply.code == 403
        assert reply.error_code == "ErrorAccessDenied"
        assert "Mail.Send granted" in reply.text
        assert graph_fake.sent == []
        assert [r.route for r in graph_fake.requests] == ["verify"]

    async def test_readable_mailbox(self, graph_fake: GraphFake, graph_transport: GraphTransport) -> None:
        graph_fake.can_read_mail = True
        assert (await graph_transport.verify(SENDER)).code == 200

    async def test_unknown_mailbox(self, graph_fake: GraphFake, graph_transport: GraphTransport) -> None:
        with pytest.raises(TransportError) as info:
            await graph_transport.verify("typo@contoso.com")
        assert info.value.stage == "verify"
        assert info.value.reply == Reply(
            404, "The requested user 'typo@contoso.com' is invalid.", "ErrorInvalidUser"
        )
        assert graph_fake.sent == []

    async def test_token_without_mail_send_role(
        self, graph_fake: GraphFake, graph_transport: GraphTransport
    ) -> None:
        graph_fake.authority.roles = ["User.Read.All"]
        with pytest.raises(TransportError) as info:
            await graph_transport.verify(SENDER)
        assert info.value.stage == "verify"
        assert (info.value.reply.code, info.value.reply.error_code) == (403, "MailSendNotGranted")
        assert "User.Read.All" in info.value.reply.text

    async def test_bad_secret(self, graph_config: GraphConfig) -> None:
        transport = GraphTransport(dataclasses.replace(graph_config, client_secret="wrong"))
        try:
            with pytest.raises(TransportError) as info:
                await transport.verify(SENDER)
        finally:
            await transport.aclose()
        assert (info.value.stage, info.value.reply.error_code) == ("token", "AADSTS7000215")


class TestFakeIsStrict:
    """The fake must refuse what real Graph refuses, or the tests above would prove nothing."""

    async def _upload_url(self, graph_fake: GraphFake, client: httpx.AsyncClient, size: int) -> str:
        token = (
            await client.post(
                f"{graph_fake.url}/{graph_fake.tenant_id}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": graph_fake.client_id,
                    "client_secret": graph_fake.client_secret,
                    "scope": "https://graph.microsoft.com/.default",
                },
            )
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        users = f"{graph_fake.graph_base}/users/{SENDER}"
        draft = (await client.post(f"{users}/messages", json={"subject": "x"}, headers=auth)).json()["id"]
        session = await client.post(
            f"{users}/messages/{draft}/attachments/createUploadSession",
            json={"AttachmentItem": {"attachmentType": "file", "name": "a", "size": size}},
            headers=auth,
        )
        assert session.status_code == 201
        url: str = session.json()["uploadUrl"]
        return url

    async def test_upload_rules(self, graph_fake: GraphFake) -> None:
        size = 3 * MiB
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=graph_fake.ca_path)) as client:
            url = await self._upload_url(graph_fake, client, size)
            chunk = b"x" * MiB
            with_auth = await client.put(
                url,
                content=chunk,
                headers={"Content-Range": f"bytes 0-{MiB - 1}/{size}", "Authorization": "Bearer t"},
            )
            assert with_auth.status_code == 401
            wrong_start = await client.put(
                url, content=chunk, headers={"Content-Range": f"bytes 5-{MiB + 4}/{size}"}
            )
            assert wrong_start.status_code == 400
            ok = await client.put(url, content=chunk, headers={"Content-Range": f"bytes 0-{MiB - 1}/{size}"})
            assert ok.status_code == 200
            assert ok.json()["nextExpectedRanges"] == [f"{MiB}-"]

    async def test_rejects_forged_token_and_oversized_body(self, graph_fake: GraphFake) -> None:
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=graph_fake.ca_path)) as client:
            await self._upload_url(graph_fake, client, 3 * MiB)  # gets a token as a side effect
            url = f"{graph_fake.graph_base}/users/{SENDER}/sendMail"
            forged = await client.post(url, json={}, headers={"Authorization": "Bearer forged"})
            assert forged.status_code == 401
            token = graph_fake.requests_to("createDraft")[0].headers["authorization"]
            huge = await client.post(
                url, content=b"{" + b" " * (4 * MiB) + b"}", headers={"Authorization": token}
            )
            assert huge.status_code == 413
        assert graph_fake.sent == []
