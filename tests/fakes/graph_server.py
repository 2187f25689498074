"""A local HTTPS fake of Microsoft Entra ID (the parts MSAL calls) and of Microsoft Graph mail sending.

It serves, on one port with a trustme certificate:

- `GET /{tenant}/v2.0/.well-known/openid-configuration` and `POST /{tenant}/oauth2/v2.0/token` exactly as
  msal 1.39 calls them (PROVIDERS.md §2.4), issuing unsigned JWT-shaped tokens with a `roles` claim;
- `POST /v1.0/users/{u}/sendMail`, draft creation, `/attachments`, `createUploadSession`, the
  pre-authenticated upload URL (chunked PUT with Content-Range; an Authorization header there is refused),
  `/send`, draft DELETE, and `GET /v1.0/users/{u}/mailFolders/inbox` (what `GraphTransport.verify` reads).

Everything received is recorded (`token_requests`, `requests`, `sent` with attachments decoded to bytes,
`upload_chunks`, `drafts`, `deleted_drafts`). Faults are scripted per route with `script(route, *answers)`:
each request to that route takes the next scripted answer, then the fake behaves normally again.

The HTTPS server, the recording and the Entra ID endpoints are shared with the EWS fake (`_https.py`,
`_entra.py`); this module keeps the Graph protocol. In tests use it as a context manager or through the
fixtures in `tests/fakes/fixtures.py`. Standalone:
`python -m tests.fakes.graph_server --port 8443` prints the URLs and the CA file to trust.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import re
import secrets
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes import exo_ndr

# The server, recording and token-endpoint pieces live in _https/_entra (the EWS fake uses them too); they
# are re-exported here, where tests have always imported them from.
from tests.fakes._entra import (
    EntraFake,
    FakeAuthority,
    TokenRequest,
    app_not_found,
    expired_client_secret,
    invalid_client_secret,
    tenant_not_found,
    token_error,
    token_server_error,
)
from tests.fakes._https import (
    BackgroundServer,
    RecordedRequest,
    Scripted,
    ScriptQueues,
    request_headers,
    wait_for_signal,
)

__all__ = [
    "BackgroundServer",
    "FakeAuthority",
    "GraphFake",
    "InboxMessage",
    "ReceivedAttachment",
    "ReceivedMessage",
    "RecordedRequest",
    "ScriptQueues",
    "Scripted",
    "TokenRequest",
    "UploadChunk",
    "access_denied",
    "wait_for_signal",
    "app_not_found",
    "expired_client_secret",
    "gateway_timeout",
    "graph_error",
    "invalid_client_secret",
    "invalid_user",
    "mailbox_full",
    "send_as_denied",
    "slow",
    "tenant_not_found",
    "throttled",
    "token_error",
    "token_server_error",
    "unauthorized",
    "unavailable",
]

MAX_REQUEST_BYTES = 4 * 1024 * 1024  # Graph answers 413 above this (PROVIDERS.md §1.4)
MAX_CHUNK_BYTES = 4 * 1024 * 1024
MIN_UPLOAD_SESSION_BYTES = 3_000_000  # "3 MB": /attachments takes less, createUploadSession this or more

GraphRoute = Literal[
    "sendMail",
    "createDraft",
    "addAttachment",
    "createUploadSession",
    "upload",
    "sendDraft",
    "deleteDraft",
    "verify",
    "listInbox",
    "mime",
    "token",
    "discovery",
]

Handler = Callable[[Request], Awaitable[Response]]


# ---------------------------------------------------------------------- scripted answers


def graph_error(status: int, code: str, message: str, *, retry_after: float | None = None) -> Scripted:
    """A Graph error answer in the documented shape (PROVIDERS.md §1.6)."""
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    body = {"error": {"code": code, "message": message, "innerError": {"request-id": "fake", "date": "now"}}}
    return Scripted(status, body, headers)


def throttled(retry_after: float = 7) -> Scripted:
    return graph_error(
        429,
        "ApplicationThrottled",
        "Application is over its MailboxConcurrency limit.",
        retry_after=retry_after,
    )


def unavailable(retry_after: float | None = 5) -> Scripted:
    return graph_error(503, "ServiceUnavailable", "Service unavailable.", retry_after=retry_after)


def gateway_timeout() -> Scripted:
    return graph_error(504, "GatewayTimeout", "Gateway timeout.")


def unauthorized() -> Scripted:
    return graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")


def send_as_denied() -> Scripted:
    return graph_error(
        403,
        "ErrorSendAsDenied",
        "The user account which was used to submit this request does not have the right to send mail on "
        "behalf of the specified sending account. Cannot submit message.",
    )


def access_denied() -> Scripted:
    return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")


def invalid_user(mailbox: str) -> Scripted:
    return graph_error(404, "ErrorInvalidUser", f"The requested user '{mailbox}' is invalid.")


def mailbox_full() -> Scripted:
    return graph_error(403, "ErrorQuotaExceeded", "Mailbox has exceeded maximum mailbox size.")


def slow(seconds: float) -> Scripted:
    """Answer normally, but only after `seconds` (use with a short client timeout)."""
    return Scripted(None, delay=seconds)


# ---------------------------------------------------------------------- records


@dataclass(frozen=True)
class ReceivedAttachment:
    name: str
    content_type: str
    content: bytes
    via: Literal["inline", "attachments", "upload"]
    is_inline: bool = False


@dataclass
class ReceivedMessage:
    mailbox: str
    via: Literal["sendMail", "draft"]
    subject: str
    body_type: str
    body: str
    from_address: str | None
    from_name: str | None
    to: list[str]
    cc: list[str]
    bcc: list[str]
    reply_to: list[str]
    internet_message_id: str | None
    headers: dict[str, str]
    attachments: list[ReceivedAttachment]
    save_to_sent_items: bool
    raw: dict[str, Any]


@dataclass(frozen=True)
class InboxMessage:
    """A message in a fake mailbox's inbox: what the list and `$value` routes serve."""

    id: str
    received: datetime  # whole seconds, as Graph's receivedDateTime
    message_class: str  # PR_MESSAGE_CLASS: IPM.Note, REPORT.IPM.Note.NDR, ...
    mime: bytes


@dataclass(frozen=True)
class UploadChunk:
    session_id: str
    content_range: str
    length: int
    headers: dict[str, str]


@dataclass
class _Draft:
    mailbox: str
    message: dict[str, Any]
    attachments: list[ReceivedAttachment]


@dataclass
class _UploadSession:
    mailbox: str
    draft_id: str
    name: str
    content_type: str
    size: int
    authtoken: str
    is_inline: bool
    received: bytearray = field(default_factory=bytearray)


# ---------------------------------------------------------------------- Microsoft Graph


class GraphFake(EntraFake):
    """Fake Entra ID + Graph on one HTTPS port. Attributes for a `GraphConfig`:

    `authority_host` (= `url`), `graph_base` (`url + "/v1.0"`), `ca_path`, `tenant_id`, `client_id`,
    `client_secret`. `mailboxes` lists the mailboxes that exist; anything else gets 404 ErrorInvalidUser.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tenant_id: str = "contoso-tenant",
        client_id: str = "11111111-2222-3333-4444-555555555555",
        client_secret: str = "fake-secret-value",
        mailboxes: Iterable[str] = ("sender@contoso.com",),
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            roles=("Mail.Send",),
        )
        self.mailboxes: set[str] = {m.lower() for m in mailboxes}
        self.can_read_mail = False  # Mail.Send only, as documented: verify's inbox read gets 403
        self.can_write_mail = True  # Mail.ReadWrite, needed by the draft flow
        self.sent: list[ReceivedMessage] = []
        self.drafts: dict[str, _Draft] = {}
        self.deleted_drafts: list[str] = []
        self.upload_chunks: list[UploadChunk] = []
        # For the next upload PUTs: keep only this many bytes of the chunk and answer nextExpectedRanges from
        # there (a server that stored less than it was sent; the client must resume where it says).
        self.upload_keep: deque[int] = deque()
        self._uploads: dict[str, _UploadSession] = {}
        self._ids = itertools.count(1)
        # Reading NDRs (issue 16): each mailbox's inbox, and the addresses a downstream server refuses after
        # Graph accepted the message (an NDR from the sample named lands in the sender's inbox, as in Exchange
        # Online).
        self.inboxes: dict[str, list[InboxMessage]] = {}
        self.refuse: dict[str, str] = {}  # address (lower case) -> exo_ndr.SAMPLES key
        self.ndr_headers_only = False

    def reset(self) -> None:
        """Forget records, scripts and issued tokens (between tests sharing one server)."""
        super().reset()
        self.can_read_mail = False
        self.can_write_mail = True
        self.sent.clear()
        self.drafts.clear()
        self.deleted_drafts.clear()
        self.upload_chunks.clear()
        self.upload_keep.clear()
        self._uploads.clear()
        self.inboxes.clear()
        self.refuse.clear()
        self.ndr_headers_only = False

    @property
    def graph_base(self) -> str:
        return f"{self.url}/v1.0"

    # -- faults ----------------------------------------------------------------------------------------

    def script(self, route: GraphRoute, *answers: Scripted) -> None:
        """Queue answers for the next requests to `route` (then normal behaviour resumes)."""
        self._scripts.push(route, answers)

    def requests_to(self, route: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == route]

    # -- the inbox ------------------------------------------------------------------------------------------

    def deliver(self, mailbox: str, mime: bytes, message_class: str = "IPM.Note") -> InboxMessage:
        """Put a message in `mailbox`'s inbox (received now, to the second)."""
        item = InboxMessage(f"AAMkInbox{next(self._ids)}AAA=", datetime.now(UTC).replace(microsecond=0),
                            message_class, mime)
        self.inboxes.setdefault(mailbox.lower(), []).append(item)
        return item

    def _bounce(self, sent: ReceivedMessage) -> None:
        """What Exchange Online does after accepting a message whose recipient is refused downstream: an NDR in
        the sender's mailbox (PROVIDERS.md §1.2)."""
        for rcpt in [*sent.to, *sent.cc, *sent.bcc]:
            key = self.refuse.get(rcpt.lower())
            if key is None:
                continue
            original = _original_mime(sent)
            ndr = exo_ndr.build(exo_ndr.SAMPLES[key], sender=sent.mailbox, recipient=rcpt, original=original,
                                subject=sent.subject, headers_only=self.ndr_headers_only)
            self.deliver(sent.mailbox, ndr, "REPORT.IPM.Note.NDR")

    # -- Graph routes -----------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        u = "/v1.0/users/{user}"
        m = u + "/messages/{mid}"
        return [
            Route(u + "/sendMail", self._wrap("sendMail", self._send_mail), methods=["POST"]),
            Route(u + "/messages", self._wrap("createDraft", self._create_draft), methods=["POST"]),
            Route(m, self._wrap("deleteDraft", self._delete_draft), methods=["DELETE"]),
            Route(m + "/attachments", self._wrap("addAttachment", self._add_attachment), methods=["POST"]),
            Route(
                m + "/attachments/createUploadSession",
                self._wrap("createUploadSession", self._create_upload_session),
                methods=["POST"],
            ),
            Route(m + "/send", self._wrap("sendDraft", self._send_draft), methods=["POST"]),
            Route(u + "/mailFolders/inbox", self._wrap("verify", self._inbox), methods=["GET"]),
            Route(u + "/mailFolders/inbox/messages", self._wrap("listInbox", self._list_inbox), methods=["GET"]),
            Route(m + "/$value", self._wrap("mime", self._mime), methods=["GET"]),
            Route("/upload/{sid}", self._wrap("upload", self._upload, auth=False), methods=["PUT", "DELETE"]),
        ]

    def _wrap(self, route: str, handler: Handler, *, auth: bool = True) -> Handler:
        """Record the request, apply a scripted answer, check the bearer token and the mailbox."""

        async def endpoint(request: Request) -> Response:
            headers, body = await self._record(route, request)
            if (scripted := await self._scripts.play(route, self._server)) is not None:
                return scripted
            if auth:
                bearer = headers.get("authorization", "")
                if not bearer.startswith("Bearer ") or not self.authority.is_valid(
                    bearer.removeprefix("Bearer ")
                ):
                    return unauthorized().response()
                user = request.path_params["user"]
                if user.lower() not in self.mailboxes:
                    return invalid_user(user).response()
            if len(body) > MAX_REQUEST_BYTES:
                return Response("The maximum request length supported is 4MB.", status_code=413)
            return await handler(request)

        return endpoint

    async def _json(self, request: Request) -> dict[str, Any]:
        value = json.loads(await request.body())
        assert isinstance(value, dict)
        return value

    def _check_from(self, mailbox: str, message: dict[str, Any]) -> Response | None:
        sender = (message.get("from") or {}).get("emailAddress", {}).get("address")
        if sender and sender.lower() != mailbox.lower():
            return send_as_denied().response()
        return None

    async def _send_mail(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return graph_error(400, "RequestBodyRead", "expected application/json").response()
        payload = await self._json(request)
        message = payload.get("message")
        if not isinstance(message, dict):
            return graph_error(400, "ErrorInvalidRequest", "message is required").response()
        mailbox = request.path_params["user"]
        if (denied := self._check_from(mailbox, message)) is not None:
            return denied
        save = payload.get("saveToSentItems", True)
        if not isinstance(save, bool):
            return graph_error(400, "RequestBodyRead", "saveToSentItems must be a Boolean").response()
        attachments = [_decode_attachment(a, "inline") for a in message.get("attachments", [])]
        self.sent.append(_received(mailbox, "sendMail", message, attachments, save))
        self._bounce(self.sent[-1])
        return Response(status_code=202)

    async def _create_draft(self, request: Request) -> Response:
        if not self.can_write_mail:
            return access_denied().response()
        message = await self._json(request)
        mailbox = request.path_params["user"]
        if (denied := self._check_from(mailbox, message)) is not None:
            return denied
        draft_id = f"AAMkDraft{next(self._ids)}=="
        attachments = [_decode_attachment(a, "inline") for a in message.get("attachments", [])]
        self.drafts[draft_id] = _Draft(mailbox, message, attachments)
        return JSONResponse({**message, "id": draft_id, "isDraft": True}, status_code=201)

    def _draft(self, request: Request) -> _Draft | None:
        draft = self.drafts.get(request.path_params["mid"])
        if draft is None or draft.mailbox.lower() != request.path_params["user"].lower():
            return None
        return draft

    async def _add_attachment(self, request: Request) -> Response:
        if not self.can_write_mail:
            return access_denied().response()
        draft = self._draft(request)
        if draft is None:
            return _item_not_found()
        attachment = _decode_attachment(await self._json(request), "attachments")
        if len(attachment.content) >= MIN_UPLOAD_SESSION_BYTES:
            return graph_error(
                413, "ErrorRequestEntityTooLarge", "attachments of 3 MB or more need an upload session"
            ).response()
        draft.attachments.append(attachment)
        return JSONResponse({"id": f"att{next(self._ids)}", "name": attachment.name}, status_code=201)

    async def _create_upload_session(self, request: Request) -> Response:
        if not self.can_write_mail:
            return access_denied().response()
        draft = self._draft(request)
        if draft is None:
            return _item_not_found()
        item = (await self._json(request)).get("AttachmentItem") or {}
        if (
            item.get("attachmentType") != "file"
            or not item.get("name")
            or not isinstance(item.get("size"), int)
        ):
            return graph_error(
                400, "ErrorInvalidRequest", "attachmentType, name and size are required"
            ).response()
        if item["size"] < MIN_UPLOAD_SESSION_BYTES:
            return graph_error(
                400,
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                "Attachment size should not be less than the minimum size of 3 MB.",
            ).response()
        sid = f"sess{next(self._ids)}"
        authtoken = secrets.token_urlsafe(12)
        self._uploads[sid] = _UploadSession(
            mailbox=draft.mailbox,
            draft_id=request.path_params["mid"],
            name=item["name"],
            content_type=item.get("contentType") or "application/octet-stream",
            size=item["size"],
            authtoken=authtoken,
            is_inline=bool(item.get("isInline")),
        )
        return JSONResponse(
            {
                "uploadUrl": f"{self.url}/upload/{sid}?authtoken={authtoken}",
                "expirationDateTime": "2099-01-01T00:00:00Z",
                "nextExpectedRanges": ["0-"],
            },
            status_code=201,
        )

    async def _upload(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        session = self._uploads.get(sid)
        if session is None or request.query_params.get("authtoken") != session.authtoken:
            return graph_error(404, "ErrorItemNotFound", "upload session not found").response()
        if "authorization" in request.headers:  # the URL is pre-authenticated (PROVIDERS.md §1.4)
            return graph_error(
                401, "InvalidAuthenticationToken", "Authorization header not allowed here"
            ).response()
        if request.method == "DELETE":
            del self._uploads[sid]
            return Response(status_code=204)
        body = await request.body()
        content_range = request.headers.get("content-range", "")
        self.upload_chunks.append(UploadChunk(sid, content_range, len(body), request_headers(request)))
        start, end, total = _parse_content_range(content_range)
        expected = len(session.received)
        if (
            start != expected
            or total != session.size
            or end - start + 1 != len(body)
            or end >= total
            or len(body) > MAX_CHUNK_BYTES
            or request.headers.get("content-length") != str(len(body))
        ):
            return graph_error(
                400, "InvalidContentRange", f"bad Content-Range {content_range!r}; expected start {expected}"
            ).response()
        keep = self.upload_keep.popleft() if self.upload_keep else len(body)
        session.received.extend(body[:keep])
        if len(session.received) < session.size:
            return JSONResponse(
                {"expirationDateTime": "2099-01-01T00:00:00Z",
                 "nextExpectedRanges": [f"{len(session.received)}-"]}
            )
        del self._uploads[sid]
        draft = self.drafts.get(session.draft_id)
        if draft is None:
            return graph_error(404, "ErrorItemNotFound", "draft gone").response()
        draft.attachments.append(
            ReceivedAttachment(
                session.name, session.content_type, bytes(session.received), "upload", session.is_inline
            )
        )
        location = f"{self.graph_base}/users/{session.mailbox}/messages/{session.draft_id}/attachments/{sid}"
        return Response(status_code=201, headers={"Location": location})

    async def _send_draft(self, request: Request) -> Response:
        draft = self._draft(request)
        if draft is None:
            return _item_not_found()
        if await request.body():
            return graph_error(400, "ErrorInvalidRequest", "send takes no body").response()
        del self.drafts[request.path_params["mid"]]
        self.sent.append(_received(draft.mailbox, "draft", draft.message, draft.attachments, True))
        self._bounce(self.sent[-1])
        return Response(status_code=202)

    async def _delete_draft(self, request: Request) -> Response:
        if self._draft(request) is None:
            return _item_not_found()
        del self.drafts[request.path_params["mid"]]
        self.deleted_drafts.append(request.path_params["mid"])
        return Response(status_code=204)

    async def _list_inbox(self, request: Request) -> Response:
        """`GET /users/{u}/mailFolders/inbox/messages` with the query options the docs allow, checked: $filter and
        $orderby on receivedDateTime (else 400 InefficientFilter, user-list-messages.md), $top up to 1000,
        $skip in nextLink (paging.md), the PR_MESSAGE_CLASS expansion."""
        if not self.can_read_mail:
            return access_denied().response()
        q = request.query_params
        allowed = {"$filter", "$orderby", "$select", "$expand", "$top", "$skip"}
        if set(q.keys()) - allowed:
            return graph_error(400, "BadRequest", f"unknown query options {sorted(set(q.keys()) - allowed)}").response()
        since = None
        if "$filter" in q:
            match = _FILTER.match(q["$filter"])
            if match is None:
                return graph_error(400, "BadRequest", f"unsupported $filter {q['$filter']!r}").response()
            since = datetime.fromisoformat(match.group(1))
        order = q.get("$orderby")
        if order is not None and (order not in ("receivedDateTime asc", "receivedDateTime desc") or since is None):
            return graph_error(400, "InefficientFilter",
                               "The restriction or sort order is too complex for this operation.").response()
        expand = q.get("$expand")
        if expand is not None and expand != _EXPAND_CLASS:
            return graph_error(400, "BadRequest", f"unsupported $expand {expand!r}").response()
        try:
            top = int(q.get("$top", "10"))
            skip = int(q.get("$skip", "0"))
        except ValueError:
            return graph_error(400, "BadRequest", "$top and $skip are integers").response()
        if not 1 <= top <= 1000 or skip < 0:
            return graph_error(400, "BadRequest", "$top must be 1..1000").response()
        items = [m for m in self.inboxes.get(request.path_params["user"].lower(), [])
                 if since is None or m.received >= since]
        items.sort(key=lambda m: m.received, reverse=order == "receivedDateTime desc")
        page = items[skip:skip + top]
        select = set((q.get("$select") or "id,receivedDateTime").split(","))
        value = []
        for m in page:
            item: dict[str, Any] = {"@odata.etag": f'W/"{m.id}"', "id": m.id}
            if "receivedDateTime" in select:
                item["receivedDateTime"] = m.received.strftime("%Y-%m-%dT%H:%M:%SZ")
            if expand is not None:
                # Graph names the property in its own short form.
                item["singleValueExtendedProperties"] = [{"id": "String 0x1a", "value": m.message_class}]
            value.append(item)
        body: dict[str, Any] = {"@odata.context": f"{self.graph_base}/$metadata#users('{request.path_params['user']}')"
                                                  "/mailFolders('inbox')/messages", "value": value}
        if skip + top < len(items):
            rest = [(k, v) for k, v in q.multi_items() if k != "$skip"] + [("$skip", str(skip + top))]
            body["@odata.nextLink"] = (f"{self.graph_base}/users/{request.path_params['user']}/mailFolders/inbox/"
                                       f"messages?{urlencode(rest, quote_via=quote)}")
        return JSONResponse(body)

    async def _mime(self, request: Request) -> Response:
        if not self.can_read_mail:
            return access_denied().response()
        mailbox = request.path_params["user"].lower()
        for m in self.inboxes.get(mailbox, []):
            if m.id == request.path_params["mid"]:
                return Response(m.mime, media_type="text/plain")
        return _item_not_found()

    async def _inbox(self, request: Request) -> Response:
        del request
        if not self.can_read_mail:
            return access_denied().response()
        return JSONResponse({"id": "AAMkInbox=="})


_FILTER = re.compile(r"^receivedDateTime ge (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$")
_EXPAND_CLASS = "singleValueExtendedProperties($filter=id eq 'String 0x001A')"


def _original_mime(sent: ReceivedMessage) -> bytes:
    """The message as Exchange turned the JSON into MIME: the headers an NDR returns (its Message-ID is the
    internetMessageId we set, or one Exchange made up)."""
    mid = sent.internet_message_id or f"<{uuid.uuid4().hex}@fake.prod.outlook.com>"
    to = ", ".join(sent.to)
    return (f"From: {sent.from_address or sent.mailbox}\r\nTo: {to}\r\nSubject: {sent.subject}\r\n"
            f"Message-ID: {mid}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{sent.body}\r\n").encode()


def _item_not_found() -> Response:
    return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.").response()


def _decode_attachment(item: dict[str, Any], via: Literal["inline", "attachments"]) -> ReceivedAttachment:
    assert item.get("@odata.type") == "#microsoft.graph.fileAttachment", item.get("@odata.type")
    return ReceivedAttachment(
        name=item["name"],
        content_type=item.get("contentType", ""),
        content=base64.b64decode(item["contentBytes"], validate=True),
        via=via,
        is_inline=bool(item.get("isInline")),
    )


def _addresses(message: dict[str, Any], key: str) -> list[str]:
    return [r["emailAddress"]["address"] for r in message.get(key) or []]


def _received(
    mailbox: str,
    via: Literal["sendMail", "draft"],
    message: dict[str, Any],
    attachments: list[ReceivedAttachment],
    save: bool,
) -> ReceivedMessage:
    sender = (message.get("from") or {}).get("emailAddress") or {}
    body = message.get("body") or {}
    return ReceivedMessage(
        mailbox=mailbox,
        via=via,
        subject=message.get("subject", ""),
        body_type=body.get("contentType", ""),
        body=body.get("content", ""),
        from_address=sender.get("address"),
        from_name=sender.get("name"),
        to=_addresses(message, "toRecipients"),
        cc=_addresses(message, "ccRecipients"),
        bcc=_addresses(message, "bccRecipients"),
        reply_to=_addresses(message, "replyTo"),
        internet_message_id=message.get("internetMessageId"),
        headers={h["name"]: h["value"] for h in message.get("internetMessageHeaders") or []},
        attachments=list(attachments),
        save_to_sent_items=save,
        raw={k: v for k, v in message.items() if k != "attachments"},
    )


def _parse_content_range(value: str) -> tuple[int, int, int]:
    """`bytes 0-99/1000` -> (0, 99, 1000); (-1, -1, -1) when malformed."""
    try:
        unit, _, rest = value.partition(" ")
        span, _, total = rest.partition("/")
        first, _, last = span.partition("-")
        if unit != "bytes":
            raise ValueError(unit)
        return int(first), int(last), int(total)
    except ValueError:
        return -1, -1, -1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Microsoft Entra ID + Graph sendMail over HTTPS")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--mailbox", action="append", default=None, help="existing mailbox (repeatable)")
    args = parser.parse_args(argv)
    fake = GraphFake(host=args.host, port=args.port, mailboxes=args.mailbox or ["sender@contoso.com"])
    with fake:
        print(f"Graph fake listening on {fake.url}")  # noqa: T201 - a command-line tool
        print(f"  authority_host = {fake.authority_host}")  # noqa: T201
        print(f"  graph_base     = {fake.graph_base}")  # noqa: T201
        print(f"  ca_bundle      = {fake.ca_path}")  # noqa: T201
        print(f"  tenant_id      = {fake.tenant_id}")  # noqa: T201
        print(f"  client_id      = {fake.client_id}")  # noqa: T201
        print(f"  client_secret  = {fake.client_secret}")  # noqa: T201
        print(f"  mailboxes      = {', '.join(sorted(fake.mailboxes))}", flush=True)  # noqa: T201
        wait_for_signal()


if __name__ == "__main__":
    main()
