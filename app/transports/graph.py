"""Microsoft Graph transport: `sendMail` with an app-only token (application permission `Mail.Send`).

A message goes out in one `POST /users/{sender}/sendMail` when its JSON request is under Graph's 4 MiB request
limit and none of its attachments is 3,000,000 bytes or more. Otherwise it takes the draft flow (PROVIDERS.md
§1.4): create a draft, attach what does not fit (files under 3,000,000 bytes through `/attachments`, larger ones
through an upload session, following `nextExpectedRanges`), then send the draft. Every request stays under
4 MiB. The draft flow needs `Mail.ReadWrite` in addition to `Mail.Send` (creating a draft and an upload session
are mailbox writes); without it Graph answers 403 `ErrorAccessDenied` at the draft, classified
`graph.readwrite_missing`. It always saves to Sent Items.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import httpx

from app.transports import netpolicy
from app.transports._msal import TokenSettings, TokenSource, http_failure
from app.transports.base import (
    Attachment,
    InboxItem,
    OutgoingMessage,
    Reply,
    SendResult,
    Stage,
    TransportError,
)
from app.transports.netpolicy import NetworkPolicy

__all__ = [
    "Cloud",
    "GraphConfig",
    "GraphTransport",
    "cloud_hosts",
    "cloud_supports_upload_sessions",
    "needs_draft",
]

Cloud = Literal["global", "usgov_gcch", "usgov_dod", "china"]

PROVIDER = "graph"
# PR_MESSAGE_CLASS as a Graph extended property id ("{type} {proptag}"); Graph answers with "String 0x1a".
MESSAGE_CLASS_PROPERTY = "String 0x001A"

# PROVIDERS.md §1.7. China: MSAL 1.39 calls login.chinacloudapi.cn "DEPRECATED_AZURE_CHINA" and Entra's docs
# now list login.partner.microsoftonline.cn, so the latter is used (both are on MSAL's well-known list).
_CLOUDS: dict[str, tuple[str, str]] = {
    "global": ("https://login.microsoftonline.com", "https://graph.microsoft.com/v1.0"),
    "usgov_gcch": ("https://login.microsoftonline.us", "https://graph.microsoft.us/v1.0"),
    "usgov_dod": ("https://login.microsoftonline.us", "https://dod-graph.microsoft.us/v1.0"),
    "china": ("https://login.partner.microsoftonline.cn", "https://microsoftgraph.chinacloudapi.cn/v1.0"),
}
# createUploadSession is not available in US Gov L4/L5 (PROVIDERS.md §1.4, availability table).
_UPLOAD_SESSION_CLOUDS = frozenset({"global", "china"})

# Graph refuses request bodies over "4MB" with 413 ("The maximum request length supported is 4MB", the
# ASP.NET maxRequestLength default of 4096 KiB). Files of 3,000,000 bytes or more go through an upload session
# (createUploadSession refuses files "under 3 MB"; read as decimal megabytes, so that `/attachments`, limited to
# "under 3 MB", is never given a file it could refuse). A file under 3,000,000 bytes is under 4,000,000 bytes in
# base64, so with its JSON framing it fits in its own request, under 4 MiB.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
UPLOAD_SESSION_MIN_BYTES = 3_000_000
# Upload chunks: at most 4 MB each (§1.4); a multiple of 320 KiB as OneDrive-style sessions require.
UPLOAD_CHUNK_BYTES = 12 * 320 * 1024  # 3,932,160


def cloud_hosts(cloud: Cloud) -> tuple[str, str]:
    """(Entra authority host, Graph base URL including `/v1.0`) for a national cloud."""
    try:
        return _CLOUDS[cloud]
    except KeyError:
        raise ValueError(f"unknown Microsoft cloud {cloud!r}; expected one of {sorted(_CLOUDS)}") from None


def cloud_supports_upload_sessions(cloud: Cloud) -> bool:
    """Whether `createUploadSession` (needed for attachments of 3,000,000 bytes or more) exists in that cloud."""
    cloud_hosts(cloud)  # validates the name
    return cloud in _UPLOAD_SESSION_CLOUDS


@dataclass(frozen=True)
class GraphConfig:
    tenant_id: str
    client_id: str
    client_secret: str
    cloud: Cloud = "global"
    authority_host: str | None = None  # override (tests: "https://127.0.0.1:PORT"); else from the cloud table
    graph_base: str | None = (
        None  # override (tests: "https://127.0.0.1:PORT/v1.0"); else from the cloud table
    )
    ca_bundle: str | None = None  # CA file for tests (trustme)
    timeout: float = 30.0
    # The SSRF guard for Graph and the sign-in host, at connect time (None: transport unit tests only).
    network_policy: NetworkPolicy | None = None

    def __repr__(self) -> str:  # never show the secret
        return (
            f"GraphConfig(tenant_id={self.tenant_id!r}, client_id={self.client_id!r}, cloud={self.cloud!r}, "
            f"authority_host={self.authority_host!r}, graph_base={self.graph_base!r})"
        )


class GraphTransport:
    """Sends through Microsoft Graph as `msg.sender` (the mailbox in the URL).

    Keep one instance per provider configuration for the life of the worker: it owns the MSAL application
    (and so the token cache) and the HTTP connection pool.
    """

    def __init__(self, config: GraphConfig) -> None:
        self._config = config
        default_authority, default_graph = cloud_hosts(config.cloud)
        authority_host = (config.authority_host or default_authority).rstrip("/")
        self._graph = (config.graph_base or default_graph).rstrip("/")
        graph_root = urlsplit(default_graph)
        # The scope always names the cloud's real Graph resource, even when graph_base points elsewhere
        # (a test fake or a proxy): the token's audience must be Graph itself.
        self._tokens = TokenSource(
            TokenSettings(
                authority=f"{authority_host}/{config.tenant_id}",
                client_id=config.client_id,
                client_secret=config.client_secret,
                scope=f"{graph_root.scheme}://{graph_root.netloc}/.default",
                ca_bundle=config.ca_bundle,
                timeout=config.timeout,
                local_authority=config.authority_host is not None and authority_host != default_authority,
                network_policy=config.network_policy,
            ),
            provider=PROVIDER,
        )
        self._http = netpolicy.async_client(
            config.network_policy, ca_bundle=config.ca_bundle, timeout=config.timeout,
            # Graph allows 4 concurrent requests per mailbox and app; the engine enforces that, not the pool.
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    # ------------------------------------------------------------------ public API

    async def send(self, msg: OutgoingMessage) -> SendResult:
        if not needs_draft(msg):
            body = _dumps({"message": _message_json(msg, msg.attachments), "saveToSentItems": True})
            if len(body) < MAX_REQUEST_BYTES:
                response = await self._call(
                    "POST", self._user_url(msg.sender, "sendMail"), "send", body=body, final=True
                )
                return self._accepted(response, "send", final=True)
        return await self._send_via_draft(msg)

    async def verify(self, mailbox: str) -> Reply:
        """Acquire a token and check that `mailbox` resolves, without sending anything.

        Reads `GET /users/{mailbox}/mailFolders/inbox?$select=id`, an Exchange call, so it also catches a
        user without an Exchange Online mailbox. `/users/{mailbox}` was not chosen: it needs `User.Read.All`
        and proves only a directory entry. With only `Mail.Send` (the documented setup) the inbox read is
        answered 403 `ErrorAccessDenied` for an existing mailbox and 404 (`ErrorInvalidUser`,
        `MailboxNotEnabledForRESTAPI`, `ResourceNotFound`) for one that does not resolve, so a 403 is
        returned as a success whose text says what could not be checked. When the token is a readable JWT,
        its `roles` claim must contain `Mail.Send` (catches a delegated permission or missing admin consent).
        """
        token = await self._tokens.token()
        roles = _token_roles(token)
        if roles is not None and "Mail.Send" not in roles:
            granted = ", ".join(sorted(roles)) or "none"
            raise TransportError(
                "verify",
                # 403: what Graph would answer a send with this token; keeps it a permission error downstream.
                Reply(
                    403,
                    "The token has no Mail.Send application permission (granted application permissions: "
                    f"{granted}). Add Mail.Send as an Application permission and grant admin consent.",
                    "MailSendNotGranted",
                ),
                provider=PROVIDER,
            )
        granted_note = " (Mail.Send granted)" if roles is not None else ""
        large = _large_message_note(roles, self._config.cloud)
        url = self._user_url(mailbox, "mailFolders/inbox") + "?$select=id"
        response = await self._call("GET", url, "verify", token=token)
        if response.status_code == 200:
            return Reply(200, f"Token acquired{granted_note}; mailbox {mailbox} is reachable."
                              f"{_mail_read_note(roles, True)}{large}")
        code, message = _graph_error(response)
        if response.status_code == 403 and code == "ErrorAccessDenied":
            return Reply(
                403,
                f"Token acquired{granted_note}; mailbox {mailbox} resolves but the app may not read it, "
                "as expected without Mail.Read. Only a real send proves the right to send from it (an "
                f"application access policy excluding the mailbox answers the same way): {message}."
                f"{_mail_read_note(roles, False)}{large}",
                code,
            )
        raise self._error(response, "verify")

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._tokens.aclose()

    # ------------------------------------------------------------------ reading the inbox for NDRs

    async def inbox_page(
        self, mailbox: str, since: datetime, page_size: int, next_link: str | None = None
    ) -> tuple[list[InboxItem], str | None]:
        """One page of the inbox, oldest first, of messages received at or after `since`, each with its MAPI
        message class; and the `@odata.nextLink` of the next page (None: the last one).

        Request shapes (microsoft-graph-docs-contrib, v1.0): `GET /users/{id}/mailFolders/{id}/messages`
        (mailfolder-list-messages.md; application permission Mail.ReadBasic.All, Mail.Read or Mail.ReadWrite);
        `$filter` + `$orderby` on the same property, first in both (user-list-messages.md: otherwise 400
        `InefficientFilter`); PR_MESSAGE_CLASS through `$expand=singleValueExtendedProperties($filter=id eq
        'String 0x001A')` (singlevaluelegacyextendedproperty-get.md), which Exchange sets to
        `REPORT.IPM.Note.NDR` on a non-delivery report; paging by following `@odata.nextLink` as given
        (paging.md), only on the Graph host itself. Errors raise TransportError (stage "read"; 429/503 carry
        Retry-After).
        """
        if next_link is not None:
            if not next_link.startswith(self._graph + "/"):
                raise TransportError("read", Reply(None, "Graph gave a nextLink to another host; not followed",
                                                   "bad_next_link"), provider=PROVIDER)
            url = next_link
        else:
            query = {
                "$filter": f"receivedDateTime ge {_odata_time(since)}",
                "$orderby": "receivedDateTime asc",
                "$select": "id,receivedDateTime",
                "$expand": f"singleValueExtendedProperties($filter=id eq '{MESSAGE_CLASS_PROPERTY}')",
                "$top": str(page_size),
            }
            url = self._user_url(mailbox, "mailFolders/inbox/messages") + "?" + urlencode(query, quote_via=quote)
        response = await self._call("GET", url, "read")
        if response.status_code != 200:
            raise self._error(response, "read")
        body = _json_object(response)
        items: list[InboxItem] = []
        for value in body.get("value") or []:
            item = _inbox_item(value)
            if item is not None:
                items.append(item)
        link = body.get("@odata.nextLink")
        return items, link if isinstance(link, str) and link else None

    async def message_mime(self, mailbox: str, message_id: str, max_bytes: int) -> bytes:
        """The MIME of one message (`GET /users/{id}/messages/{id}/$value`, message-get.md, Mail.Read), at most
        `max_bytes` of it: an NDR's report parts come before the returned original, so a cut-off copy of a
        huge one still carries them."""
        url = self._user_url(mailbox, f"messages/{quote(message_id, safe='')}/$value")
        token = await self._tokens.token()
        for attempt in (1, 2):
            try:
                async with self._http.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as r:
                    if r.status_code == 401 and attempt == 1:
                        self._tokens.invalidate(token)
                        token = await self._tokens.token()
                        continue
                    if r.status_code != 200:
                        await r.aread()
                        raise self._error(r, "read")
                    out = bytearray()
                    async for chunk in r.aiter_bytes():
                        out.extend(chunk[: max_bytes - len(out)])
                        if len(out) >= max_bytes:
                            break
                    return bytes(out)
            except httpx.HTTPError as exc:
                raise self._network_error(exc, "read", final=False) from exc
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ draft + upload session flow

    async def _send_via_draft(self, msg: OutgoingMessage) -> SendResult:
        large = [a for a in msg.attachments if len(a.content) >= UPLOAD_SESSION_MIN_BYTES]
        small = [a for a in msg.attachments if len(a.content) < UPLOAD_SESSION_MIN_BYTES]
        if large and not cloud_supports_upload_sessions(self._config.cloud):
            names = ", ".join(a.filename for a in large)
            raise TransportError(
                "upload",
                Reply(
                    None,
                    f"Attachments of 3,000,000 bytes or more ({names}) need a Graph upload session, which the "
                    f"{self._config.cloud} cloud does not offer; send them another way or make them smaller.",
                    "upload_sessions_unavailable",
                ),
                provider=PROVIDER,
            )
        # Put as many small files in the draft itself as fit in one request; the rest are added one by one.
        in_draft: list[Attachment] = []
        separate: list[Attachment] = []
        size = len(_dumps(_message_json(msg, []))) + len(',"attachments":[]')
        for attachment in small:
            extra = len(_dumps(_file_attachment(attachment))) + 1  # + the comma between items
            if size + extra < MAX_REQUEST_BYTES:
                in_draft.append(attachment)
                size += extra
            else:
                separate.append(attachment)

        # Stage "upload" until the draft is sent: nothing can have been delivered yet, and a 403 here is the
        # missing Mail.ReadWrite, not a refusal to send (classify: graph.readwrite_missing).
        created = await self._call(
            "POST",
            self._user_url(msg.sender, "messages"),
            "upload",
            body=_dumps(_message_json(msg, in_draft)),
        )
        if created.status_code != 201:
            raise self._error(created, "upload")
        draft_id = _json_object(created).get("id")
        if not isinstance(draft_id, str) or not draft_id:
            raise TransportError(
                "upload", Reply(created.status_code, "draft created without an id"), provider=PROVIDER
            )
        draft_url = self._user_url(msg.sender, f"messages/{quote(draft_id, safe='')}")
        try:
            for attachment in separate:
                added = await self._call(
                    "POST", f"{draft_url}/attachments", "upload", body=_dumps(_file_attachment(attachment))
                )
                if added.status_code != 201:
                    raise self._error(added, "upload")
            for attachment in large:
                await self._upload(draft_url, attachment)
        except Exception:
            await self._delete_draft(draft_url)
            raise
        try:
            sent = await self._call("POST", f"{draft_url}/send", "send", body=b"", final=True)
            return self._accepted(sent, "send", final=True)
        except TransportError as exc:
            # If Graph may have sent it, the draft may already be in Sent Items: leave it alone.
            if not exc.uncertain:
                await self._delete_draft(draft_url)
            raise

    async def _upload(self, draft_url: str, attachment: Attachment) -> None:
        size = len(attachment.content)
        session = await self._call(
            "POST",
            f"{draft_url}/attachments/createUploadSession",
            "upload",
            body=_dumps(
                {
                    "AttachmentItem": {
                        "attachmentType": "file",
                        "name": attachment.filename,
                        "size": size,
                        "contentType": attachment.content_type,
                        "isInline": False,
                    }
                }
            ),
        )
        if session.status_code != 201:
            raise self._error(session, "upload")
        upload_url = _json_object(session).get("uploadUrl")
        if not isinstance(upload_url, str) or not upload_url.startswith("https://"):
            raise TransportError(
                "upload", Reply(201, "upload session without an https uploadUrl"), provider=PROVIDER
            )
        start = 0
        # Each round sends at least one byte the server did not have, unless it asks again for bytes it had:
        # bounded so a server that keeps asking for the same range cannot loop us forever.
        rounds_left = 2 * (size // UPLOAD_CHUNK_BYTES + 1) + 8
        while True:
            rounds_left -= 1
            if rounds_left < 0:
                raise TransportError(
                    "upload", Reply(200, f"upload session of {attachment.filename} makes no progress"),
                    provider=PROVIDER)
            chunk = attachment.content[start : start + UPLOAD_CHUNK_BYTES]
            end = start + len(chunk) - 1
            # The upload URL is pre-authenticated: an Authorization header must not be sent (§1.4).
            try:
                response = await self._http.put(
                    upload_url,
                    content=chunk,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"bytes {start}-{end}/{size}",
                    },
                )
            except httpx.HTTPError as exc:
                raise self._network_error(exc, "upload", final=False) from exc
            if response.status_code == 201:
                return  # the last byte arrived: the attachment is on the draft
            if response.status_code != 200:
                raise self._error(response, "upload")
            # Continue where the server says it expects bytes (it may have kept less than we sent).
            start = _next_expected(_json_object(response).get("nextExpectedRanges"), end + 1, size)
            if start >= size:
                raise TransportError(
                    "upload", Reply(200, f"upload session of {attachment.filename} expects no more bytes but "
                                         "did not confirm the attachment (no 201)"), provider=PROVIDER)

    async def _delete_draft(self, draft_url: str) -> None:
        """Best effort: a failed delete must not hide the error that caused it."""
        try:
            await self._call("DELETE", draft_url, "send")
        except TransportError:
            pass

    # ------------------------------------------------------------------ HTTP plumbing

    def _user_url(self, mailbox: str, rest: str) -> str:
        return f"{self._graph}/users/{quote(mailbox, safe='@')}/{rest}"

    async def _call(
        self,
        method: str,
        url: str,
        stage: Stage,
        *,
        body: bytes | None = None,
        final: bool = False,
        token: str | None = None,
    ) -> httpx.Response:
        """One authenticated Graph request; a 401 drops the token and is retried once with a fresh one."""
        token = token or await self._tokens.token()
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {token}"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            try:
                response = await self._http.request(method, url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise self._network_error(exc, stage, final=final) from exc
            if response.status_code != 401 or attempt == 2:
                return response
            # Expired or revoked before MSAL's cache thought so: 401 means nothing was accepted, so a retry
            # with a token fresh from Entra is safe even for sendMail.
            self._tokens.invalidate(token)
            token = await self._tokens.token()
        raise AssertionError("unreachable")

    def _accepted(self, response: httpx.Response, stage: Stage, *, final: bool) -> SendResult:
        if response.status_code == 202:
            return SendResult(Reply(202, "Accepted"))
        raise self._error(response, stage, final=final)

    def _error(self, response: httpx.Response, stage: Stage, *, final: bool = False) -> TransportError:
        status = response.status_code
        code, message = _graph_error(response)
        retry_after = _retry_after(response.headers) if status in (429, 503) else None
        if status == 401:
            message = (
                f"{message} (Graph rejected a freshly acquired token too: check tenant, client ID and that "
                "the cloud matches the app registration)"
            )
        return TransportError(
            stage,
            Reply(status, message, code),
            provider=PROVIDER,
            retry_after=retry_after,
            # 504 after the message was posted: Graph may still send it (§1.6; RELIABILITY #11).
            uncertain=final and status == 504,
        )

    def _network_error(self, exc: httpx.HTTPError, stage: Stage, *, final: bool) -> TransportError:
        host = urlsplit(str(exc.request.url)).netloc if _has_request(exc) else self._graph
        return http_failure(
            exc, stage, provider=PROVIDER, host=host, timeout=self._config.timeout, final=final
        )


# ---------------------------------------------------------------------- JSON building and parsing


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _address(value: str) -> dict[str, Any]:
    """`{"emailAddress": {...}}`, accepting a bare address or "Name <address>"."""
    name, address = parseaddr(value)
    email: dict[str, str] = {"address": address or value}
    if name:
        email["name"] = name
    return {"emailAddress": email}


def _file_attachment(attachment: Attachment) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": attachment.filename,
        "contentType": attachment.content_type,
        "contentBytes": base64.b64encode(attachment.content).decode("ascii"),
    }


def _message_json(msg: OutgoingMessage, attachments: list[Attachment]) -> dict[str, Any]:
    """The Graph `message` resource (§1.2). Graph takes one body: HTML when there is one, else text."""
    if msg.body_html is not None:
        body = {"contentType": "HTML", "content": msg.body_html}
    else:
        body = {"contentType": "Text", "content": msg.body_text or ""}
    sender: dict[str, str] = {"address": msg.sender}
    if msg.sender_name:
        sender["name"] = msg.sender_name
    message: dict[str, Any] = {
        "subject": msg.subject,
        "body": body,
        "from": {"emailAddress": sender},
        "toRecipients": [_address(a) for a in msg.to],
        "ccRecipients": [_address(a) for a in msg.cc],
        "bccRecipients": [_address(a) for a in msg.bcc],
    }
    if msg.reply_to:
        message["replyTo"] = [_address(a) for a in msg.reply_to]
    # Settable while the message is a draft (message-update docs: "Updatable only if isDraft = true");
    # sendMail creates a draft first, so our Message-ID survives and retries/bounces can be matched to it.
    if msg.message_id:
        message["internetMessageId"] = msg.message_id
    # Graph only accepts custom headers named x-... (§1.2); standard headers come from the fields above.
    custom = [{"name": k, "value": v} for k, v in msg.headers.items() if k.lower().startswith("x-")]
    if custom:
        message["internetMessageHeaders"] = custom
    if attachments:
        message["attachments"] = [_file_attachment(a) for a in attachments]
    return message


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _graph_error(response: httpx.Response) -> tuple[str | None, str]:
    """(`error.code`, `error.message`) from a Graph error body; falls back to the status text."""
    error = _json_object(response).get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        return (str(code) if code else None, str(message) if message else response.reason_phrase)
    text = response.text.strip()[:300] if response.content else ""
    return None, text or response.reason_phrase or f"HTTP {response.status_code}"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (Graph sends seconds; an HTTP date is accepted too)."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _token_roles(token: str) -> set[str] | None:
    """The `roles` claim of a JWT access token, or None when the token is not a readable JWT.

    Microsoft says access tokens are opaque to clients, so this is only a diagnostic for verify(), never a
    condition for sending, and no signature is checked (the token came straight from Entra over TLS).
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(payload, dict) or "aud" not in payload:
        return None
    roles = payload.get("roles", [])
    return {str(r) for r in roles} if isinstance(roles, list) else None


def needs_draft(msg: OutgoingMessage) -> bool:
    """Whether `msg` cannot go in one sendMail request: an attachment of 3,000,000 bytes or more, or a JSON body
    of 4 MiB or more (e.g. several smaller attachments). Such messages need Mail.ReadWrite."""
    if any(len(a.content) >= UPLOAD_SESSION_MIN_BYTES for a in msg.attachments):
        return True
    # base64 grows 3 bytes to 4: a cheap lower bound before building the JSON.
    return sum(len(a.content) for a in msg.attachments) * 4 // 3 >= MAX_REQUEST_BYTES


def _next_expected(ranges: Any, default: int, size: int) -> int:
    """The first byte an upload session still expects, from `nextExpectedRanges` (["12345-"] or
    ["12345-20000", ...]); `default` when the answer has none."""
    if not isinstance(ranges, list) or not ranges:
        return default
    starts = []
    for item in ranges:
        head = str(item).split("-", 1)[0].strip()
        if head.isdigit():
            starts.append(int(head))
    return min(min(starts), size) if starts else default


READ_ROLES = frozenset({"Mail.Read", "Mail.ReadWrite"})


def _mail_read_note(roles: set[str] | None, inbox_readable: bool) -> str:
    """What verify says about reading NDRs from the batch mailbox (Mail.Read, the least permission that can
    fetch a message's MIME; Mail.ReadBasic.All cannot)."""
    if inbox_readable:
        return (" Bounces: the app can read this mailbox (Mail.Read granted), so non-delivery reports (NDRs) "
                "arriving in its inbox are read and recorded.")
    if roles is not None and roles & READ_ROLES:
        return (" Bounces: Mail.Read is granted but this mailbox's inbox could not be read (an application "
                "access policy may exclude it): NDRs arriving there are not read.")
    return (" Bounces: Mail.Read NOT granted: non-delivery reports (NDRs) arriving in the batch mailbox cannot be "
            "read, so bounces after Graph accepted a message are not recorded. Add Mail.Read as an Application "
            "permission and grant admin consent (it lets the app read every mailbox unless an application "
            "access policy limits it).")


def _large_message_note(roles: set[str] | None, cloud: Cloud) -> str:
    """What verify says about messages that need the draft flow (Mail.ReadWrite, upload sessions)."""
    what = ("Messages that do not fit in one 4 MB sendMail request (an attachment of 3,000,000 bytes or more, or "
            "attachments totalling about 3 MB) are sent as a draft")
    if not cloud_supports_upload_sessions(cloud):
        what += f" (attachments of 3,000,000 bytes or more cannot be sent at all: the {cloud} cloud has no upload "
        what += "sessions)"
    if roles is None:
        return f" {what}, which needs the Mail.ReadWrite application permission (not checked: unreadable token)."
    if "Mail.ReadWrite" in roles:
        return f" Mail.ReadWrite granted: {what[0].lower()}{what[1:]}."
    return (f" Mail.ReadWrite NOT granted: {what[0].lower()}{what[1:]}, which needs Mail.ReadWrite; without it "
            "they fail (403 ErrorAccessDenied, graph.readwrite_missing). Add Mail.ReadWrite as an Application "
            "permission and grant admin consent if you send such messages.")


def _odata_time(when: datetime) -> str:
    """An OData DateTimeOffset literal in UTC: 2026-12-01T10:00:00Z."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_ndr_class(value: object) -> bool:
    """Whether a MAPI message class is a non-delivery report: REPORT.IPM.Note.NDR (or REPORT.<other>.NDR)."""
    text = str(value or "").strip().upper()
    return text.startswith("REPORT.") and text.endswith(".NDR")


def _inbox_item(value: Any) -> InboxItem | None:
    """An inbox listing's item, or None when it lacks an id or a readable receivedDateTime."""
    if not isinstance(value, dict):
        return None
    item_id = value.get("id")
    received = value.get("receivedDateTime")
    if not isinstance(item_id, str) or not item_id or len(item_id) > 512 or not isinstance(received, str):
        return None
    try:
        when = datetime.fromisoformat(received)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    message_class = None
    for prop in value.get("singleValueExtendedProperties") or []:
        if not isinstance(prop, dict):
            continue
        kind, _, tag = str(prop.get("id", "")).partition(" ")
        try:
            if kind.lower() == "string" and int(tag, 16) == 0x001A:
                message_class = prop.get("value")
        except ValueError:
            continue
    return InboxItem(item_id, when.astimezone(UTC), is_ndr_class(message_class))


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when the exception carries no request
    except RuntimeError:
        return False
    return True
