"""Exchange Web Services (EWS) transport: `CreateItem` with `MessageDisposition="SendAndSaveCopy"`.

Deprecated (see `DEPRECATION_NOTE`): kept for on-premises Exchange Server, where EWS is not being retired.
Authentication is OAuth client credentials (Exchange Online: application permission `full_access_as_app`,
with `ExchangeImpersonation` + `X-AnchorMailbox` for the sender) or Basic over HTTPS (on-premises; the account
needs Send As on other senders). NTLM/Kerberos are not supported (httpx has neither built in).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Literal
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

import httpx

from app.transports import netpolicy
from app.transports._msal import TokenSettings, TokenSource, http_failure
from app.transports.base import InboxItem, OutgoingMessage, Reply, SendResult, Stage, TransportError
from app.transports.graph import Cloud, cloud_hosts
from app.transports.netpolicy import NetworkPolicy
from app.transports.oauth import EXCHANGE_ONLINE_RESOURCES

__all__ = ["DEPRECATION_NOTE", "ExchangeConfig", "ExchangeTransport"]

PROVIDER = "exchange"

DEPRECATION_NOTE = (
    "The Exchange (EWS) provider is deprecated. Microsoft blocks EWS in Exchange Online in phases from "
    "2026-10-01 (only tenants that enable EWS and allow-list this app's ID keep access) and retires it "
    "for good "
    "on 2027-04-01. Use the Microsoft Graph provider for Exchange Online; this provider is kept for "
    "on-premises Exchange Server, which is not affected."
)

_LOG = logging.getLogger(__name__)

_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
_M = "http://schemas.microsoft.com/exchange/services/2006/messages"
_T = "http://schemas.microsoft.com/exchange/services/2006/types"
_EXCHANGE_ONLINE = "outlook.office365.com"
NDR_ITEM_CLASS = "REPORT.IPM.Note.NDR"
_MIME_CONTENT = re.compile(rb"<(?:[A-Za-z0-9_]+:)?MimeContent\b[^>]*>([A-Za-z0-9+/=\s]*)")


@dataclass(frozen=True)
class ExchangeConfig:
    ews_url: str  # e.g. https://outlook.office365.com/EWS/Exchange.asmx or on-prem
    auth: Literal["oauth", "basic"]
    username: str | None = None  # basic (on-prem)
    password: str | None = None
    tenant_id: str | None = None  # oauth client credentials
    client_id: str | None = None
    client_secret: str | None = None
    authority_host: str | None = None  # testing override; else the cloud's Entra ID host
    cloud: Cloud = "global"  # national cloud: its sign-in host, and its Exchange Online resource as the scope
    ca_bundle: str | None = None
    timeout: float = 30.0
    network_policy: NetworkPolicy | None = None  # the SSRF guard at connect time, EWS and sign-in (None: unit tests)

    def __repr__(self) -> str:  # never show the password or the secret
        return (
            f"ExchangeConfig(ews_url={self.ews_url!r}, auth={self.auth!r}, username={self.username!r}, "
            f"tenant_id={self.tenant_id!r}, client_id={self.client_id!r}, "
            f"authority_host={self.authority_host!r}, cloud={self.cloud!r})"
        )


class ExchangeTransport:
    """Sends through EWS as `msg.sender`. Keep one per configuration (token cache, connection pool)."""

    def __init__(self, config: ExchangeConfig) -> None:
        self._config = config
        url = urlsplit(config.ews_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(f"ews_url must be an http(s) URL, got {config.ews_url!r}")
        self._host = url.hostname.lower()
        self._tokens: TokenSource | None = None
        self._basic: str | None = None
        if config.auth == "oauth":
            if not (config.tenant_id and config.client_id and config.client_secret):
                raise ValueError("EWS OAuth needs tenant_id, client_id and client_secret")
            # The cloud's sign-in host, as for Graph (issue 11: EWS always signed in at the public cloud).
            default_authority = cloud_hosts(config.cloud)[0]
            authority_host = (config.authority_host or default_authority).rstrip("/")
            self._tokens = TokenSource(
                TokenSettings(
                    authority=f"{authority_host}/{config.tenant_id}",
                    client_id=config.client_id,
                    client_secret=config.client_secret,
                    scope=_scope(config.ews_url, config.cloud),
                    ca_bundle=config.ca_bundle,
                    timeout=config.timeout,
                    local_authority=authority_host != default_authority,
                    network_policy=config.network_policy,
                ),
                provider=PROVIDER,
            )
        elif config.auth == "basic":
            if config.username is None or config.password is None:
                raise ValueError("EWS Basic authentication needs username and password")
            self._basic = base64.b64encode(f"{config.username}:{config.password}".encode()).decode("ascii")
        else:
            raise ValueError(f"unknown EWS auth {config.auth!r}")
        if self._host == _EXCHANGE_ONLINE:
            _LOG.warning("exchange provider targets Exchange Online: %s", DEPRECATION_NOTE)
        self._http = netpolicy.async_client(config.network_policy, ca_bundle=config.ca_bundle, timeout=config.timeout)

    async def send(self, msg: OutgoingMessage) -> SendResult:
        body = _envelope(_create_item(msg), self._impersonate(msg.sender))
        response = await self._post(body, msg.sender, "send", final=True)
        code, text, backoff = _response_message(response.content)
        if response.status_code == 200 and code == "NoError":
            return SendResult(Reply(200, "NoError"))
        raise self._error(response, "send", code, text, backoff)

    async def verify(self, mailbox: str) -> Reply:
        """Check credentials and the mailbox without sending.

        OAuth: `GetFolder` of the mailbox's inbox while impersonating it, which exercises the same
        impersonation right sending needs. Basic: `ResolveNames` for the address, which any mailbox user may
        call and which proves the credentials and that the address resolves (Send As itself is checked only
        by a real send).
        """
        if self._tokens is not None:
            operation = (
                "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>"
                '<m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder>'
            )
        else:
            operation = (
                '<m:ResolveNames ReturnFullContactData="false">'
                f"<m:UnresolvedEntry>smtp:{escape(mailbox)}</m:UnresolvedEntry></m:ResolveNames>"
            )
        response = await self._post(
            _envelope(operation, self._impersonate(mailbox)), mailbox, "verify", final=False
        )
        code, text, backoff = _response_message(response.content)
        if response.status_code == 200 and code == "NoError":
            return Reply(200, f"Credentials accepted; mailbox {mailbox} is reachable through EWS."
                              f"{await self._read_note(mailbox)}")
        raise self._error(response, "verify", code, text, backoff)

    async def _read_note(self, mailbox: str) -> str:
        """Whether the inbox of `mailbox` can be read, where NDRs for what it sends arrive (GetFolder on it:
        for OAuth the impersonated inbox verify just read; for Basic the delegate access it needs)."""
        if self._tokens is not None:
            return (" Bounces: the app can read this mailbox's inbox (impersonation with full_access_as_app), so "
                    "non-delivery reports (NDRs) arriving there are read and recorded.")
        operation = ("<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>"
                     f"<m:FolderIds>{self._inbox(mailbox)}</m:FolderIds></m:GetFolder>")
        try:
            response = await self._post(_envelope(operation, None), mailbox, "verify", final=False)
        except TransportError as exc:
            return f" Bounces: the inbox of {mailbox} could not be checked ({exc.reply.text})."
        code, text, _ = _response_message(response.content)
        if response.status_code == 200 and code == "NoError":
            return (f" Bounces: {self._config.username} can read the inbox of {mailbox}, so non-delivery reports "
                    "(NDRs) arriving there are read and recorded.")
        return (f" Bounces: {self._config.username} may NOT read the inbox of {mailbox} ({code or response.status_code}"
                f": {text or 'no detail'}): NDRs arriving there are not read. Give the account FullAccess (or at "
                "least Reviewer on the Inbox folder) on that mailbox.")

    # ------------------------------------------------------------------ reading the inbox for NDRs

    async def inbox_page(
        self, mailbox: str, since: datetime, page_size: int, offset: int = 0
    ) -> tuple[list[InboxItem], int | None]:
        """One page of the NDRs in `mailbox`'s inbox received at or after `since`, oldest first; and the offset
        of the next page (None: this was the last).

        `FindItem` (Messages.xsd FindItemType: ItemShape, IndexedPageItemView, Restriction, SortOrder,
        ParentFolderIds, in that order) restricted to `item:ItemClass` = `REPORT.IPM.Note.NDR` and
        `item:DateTimeReceived` >= `since`, sorted by DateTimeReceived. The inbox is the distinguished folder
        `inbox` of the impersonated mailbox (OAuth, as sending does), or of `mailbox` named in the folder id
        (Basic: delegate access, which needs read permission on that mailbox)."""
        view = (f'<m:IndexedPageItemView MaxEntriesReturned="{int(page_size)}" Offset="{int(offset)}" '
                'BasePoint="Beginning"/>')
        operation = (
            '<m:FindItem Traversal="Shallow">'
            "<m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>"
            '<t:FieldURI FieldURI="item:DateTimeReceived"/><t:FieldURI FieldURI="item:ItemClass"/>'
            "</t:AdditionalProperties></m:ItemShape>"
            f"{view}"
            "<m:Restriction><t:And>"
            '<t:IsEqualTo><t:FieldURI FieldURI="item:ItemClass"/><t:FieldURIOrConstant>'
            f'<t:Constant Value="{NDR_ITEM_CLASS}"/></t:FieldURIOrConstant></t:IsEqualTo>'
            '<t:IsGreaterThanOrEqualTo><t:FieldURI FieldURI="item:DateTimeReceived"/><t:FieldURIOrConstant>'
            f'<t:Constant Value="{since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}"/>'
            "</t:FieldURIOrConstant></t:IsGreaterThanOrEqualTo>"
            "</t:And></m:Restriction>"
            '<m:SortOrder><t:FieldOrder Order="Ascending"><t:FieldURI FieldURI="item:DateTimeReceived"/>'
            "</t:FieldOrder></m:SortOrder>"
            f"<m:ParentFolderIds>{self._inbox(mailbox)}</m:ParentFolderIds>"
            "</m:FindItem>"
        )
        response = await self._post(_envelope(operation, self._impersonate(mailbox)), mailbox, "read", final=False)
        code, text, backoff = _response_message(response.content)
        if response.status_code != 200 or code != "NoError":
            raise self._error(response, "read", code, text, backoff)
        return _found_items(response.content, offset)

    async def item_mime(self, mailbox: str, item_id: str, max_bytes: int) -> bytes:
        """One item's MIME (`GetItem` with `IncludeMimeContent`), at most `max_bytes` of it. The answer is read
        only as far as that needs: the base64 of a huge NDR is cut, and what was read is decoded (the report
        parts come before the returned original)."""
        operation = (
            "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>"
            "<t:IncludeMimeContent>true</t:IncludeMimeContent></m:ItemShape>"
            f"<m:ItemIds><t:ItemId Id={quoteattr(item_id)}/></m:ItemIds></m:GetItem>"
        )
        body = _envelope(operation, self._impersonate(mailbox))
        limit = max_bytes * 4 // 3 + 8192  # base64 and the SOAP around it
        raw, complete, status = await self._post_capped(body, mailbox, limit)
        if complete:
            code, text, backoff = _response_message(raw)
            if status != 200 or code != "NoError":
                raise self._error(httpx.Response(status, content=raw), "read", code, text, backoff)
        match = _MIME_CONTENT.search(raw)
        if match is None:
            raise TransportError("read", Reply(status, "GetItem returned no MimeContent", "no_mime"),
                                 provider=PROVIDER)
        b64 = re.sub(rb"\s+", b"", match.group(1))
        b64 = b64[: len(b64) - len(b64) % 4]
        try:
            return base64.b64decode(b64)[:max_bytes]
        except (ValueError, binascii.Error):
            raise TransportError("read", Reply(status, "GetItem returned unreadable MimeContent", "no_mime"),
                                 provider=PROVIDER) from None

    def _inbox(self, mailbox: str) -> str:
        if self._tokens is not None:
            return '<t:DistinguishedFolderId Id="inbox"/>'
        return (f'<t:DistinguishedFolderId Id="inbox"><t:Mailbox><t:EmailAddress>{escape(mailbox)}'
                "</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>")

    async def _post_capped(self, body: bytes, mailbox: str, limit: int) -> tuple[bytes, bool, int]:
        """POST and read at most `limit` bytes of the answer: (bytes, whether that was all of it, status)."""
        headers = {"Content-Type": "text/xml; charset=utf-8", "Accept": "text/xml"}
        for attempt in (1, 2):
            token: str | None = None
            if self._tokens is not None:
                token = await self._tokens.token()
                headers["Authorization"] = f"Bearer {token}"
                headers["X-AnchorMailbox"] = mailbox
            else:
                if not _transport_is_safe(self._config.ews_url):
                    raise TransportError("tls", Reply(None, "refusing to send the Exchange password over plain "
                                                            "http: Basic needs https", "tls_failed"),
                                         provider=PROVIDER)
                headers["Authorization"] = f"Basic {self._basic}"
            try:
                async with self._http.stream("POST", self._config.ews_url, content=body, headers=headers) as r:
                    if r.status_code == 401 and attempt == 1 and token is not None and self._tokens is not None:
                        self._tokens.invalidate(token)
                        continue
                    out = bytearray()
                    complete = True
                    async for chunk in r.aiter_bytes():
                        out.extend(chunk)
                        if len(out) > limit:
                            complete = False
                            break
                    return bytes(out[:limit]), complete, r.status_code
            except httpx.HTTPError as exc:
                raise http_failure(exc, "read", provider=PROVIDER, host=self._host, timeout=self._config.timeout,
                                   final=False) from exc
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._tokens is not None:
            await self._tokens.aclose()

    # ------------------------------------------------------------------ HTTP

    def _impersonate(self, mailbox: str) -> str | None:
        # App-only tokens have no user: EWS must be told whose mailbox to act in (PROVIDERS.md §3.3).
        return mailbox if self._tokens is not None else None

    async def _post(self, body: bytes, mailbox: str, stage: Stage, *, final: bool) -> httpx.Response:
        if self._basic is not None and not _transport_is_safe(self._config.ews_url):
            raise TransportError(
                "tls",
                Reply(
                    None,
                    "refusing to send the Exchange password over plain http: Basic needs https",
                    "tls_failed",
                ),
                provider=PROVIDER,
            )
        headers = {"Content-Type": "text/xml; charset=utf-8", "Accept": "text/xml"}
        token: str | None = None
        for attempt in (1, 2):
            if self._tokens is not None:
                token = await self._tokens.token()
                headers["Authorization"] = f"Bearer {token}"
                # Routes the request to the mailbox's server; required with impersonation (§3.3).
                headers["X-AnchorMailbox"] = mailbox
            else:
                headers["Authorization"] = f"Basic {self._basic}"
            try:
                response = await self._http.post(self._config.ews_url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise http_failure(
                    exc, stage, provider=PROVIDER, host=self._host, timeout=self._config.timeout, final=final
                ) from exc
            if (
                response.status_code == 401
                and attempt == 1
                and self._tokens is not None
                and token is not None
            ):
                # The cached token was refused before MSAL expected; 401 means nothing was done: retry once.
                self._tokens.invalidate(token)
                continue
            return response
        raise AssertionError("unreachable")

    def _error(
        self,
        response: httpx.Response,
        stage: Stage,
        code: str | None,
        text: str | None,
        backoff: float | None,
    ) -> TransportError:
        status = response.status_code
        if status == 401:
            # Basic: the service account's password was refused (the whole provider, held); a token refused
            # after a fresh one: the seed's "(401) Unauthorized" mailbox entry.
            how = "token" if self._tokens is not None else "user name or password"
            fallback = "Unauthorized" if self._tokens is not None else "password_rejected"
            return TransportError(
                "auth",
                Reply(401, f"Exchange rejected the {how} (HTTP 401)", code or fallback),
                provider=PROVIDER,
            )
        retry_after = backoff
        if retry_after is None and status in (429, 503):
            retry_after = _seconds(response.headers.get("retry-after"))
        if text is None:
            text = (response.text.strip()[:300] if response.content else "") or response.reason_phrase
            if status == 403 and self._host == _EXCHANGE_ONLINE:
                text = f"{text} (EWS may be blocked for this tenant or app. {DEPRECATION_NOTE})"
        return TransportError(
            stage,
            Reply(status, text, code),
            provider=PROVIDER,
            retry_after=retry_after,
            # A gateway timeout after CreateItem was posted: Exchange may still send it.
            uncertain=stage == "send" and status == 504,
        )


# ---------------------------------------------------------------------- SOAP building


def _envelope(operation: str, impersonate: str | None) -> bytes:
    impersonation = (
        "<t:ExchangeImpersonation><t:ConnectingSID>"
        f"<t:PrimarySmtpAddress>{escape(impersonate)}</t:PrimarySmtpAddress>"
        "</t:ConnectingSID></t:ExchangeImpersonation>"
        if impersonate
        else ""
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{_SOAP}" xmlns:m="{_M}" xmlns:t="{_T}">'
        f'<soap:Header><t:RequestServerVersion Version="Exchange2013_SP1"/>{impersonation}</soap:Header>'
        f"<soap:Body>{operation}</soap:Body></soap:Envelope>"
    ).encode()


def _mailboxes(tag: str, addresses: list[str]) -> str:
    if not addresses:
        return ""
    items = []
    for value in addresses:
        name, address = parseaddr(value)
        name_xml = f"<t:Name>{escape(name)}</t:Name>" if name else ""
        items.append(
            f"<t:Mailbox>{name_xml}<t:EmailAddress>{escape(address or value)}</t:EmailAddress></t:Mailbox>"
        )
    return f"<t:{tag}>{''.join(items)}</t:{tag}>"


def _create_item(msg: OutgoingMessage) -> str:
    """CreateItem/SendAndSaveCopy. Elements follow the schema order (ItemType, then MessageType fields)."""
    if msg.mime is not None:
        # The built RFC 5322 message carries everything (headers, both bodies, attachments, Message-ID).
        # Bcc is not in the MIME headers, so those recipients are given as elements (§3.2: "optionally with
        # ToRecipients etc. for the envelope").
        mime = base64.b64encode(msg.mime).decode("ascii")
        fields = f'<t:MimeContent CharacterSet="UTF-8">{mime}</t:MimeContent>' + _mailboxes(
            "BccRecipients", msg.bcc
        )
    else:
        if msg.body_html is not None:
            body = f'<t:Body BodyType="HTML">{escape(msg.body_html)}</t:Body>'
        else:
            body = f'<t:Body BodyType="Text">{escape(msg.body_text or "")}</t:Body>'
        attachments = "".join(
            "<t:FileAttachment>"
            f"<t:Name>{escape(a.filename)}</t:Name><t:ContentType>{escape(a.content_type)}</t:ContentType>"
            f"<t:Content>{base64.b64encode(a.content).decode('ascii')}</t:Content>"
            "</t:FileAttachment>"
            for a in msg.attachments
        )
        sender = f"{msg.sender_name} <{msg.sender}>" if msg.sender_name else msg.sender
        fields = (
            f"<t:Subject>{escape(msg.subject)}</t:Subject>{body}"
            + (f"<t:Attachments>{attachments}</t:Attachments>" if attachments else "")
            + _mailboxes("ToRecipients", msg.to)
            + _mailboxes("CcRecipients", msg.cc)
            + _mailboxes("BccRecipients", msg.bcc)
            + _mailboxes("From", [sender])
            + _mailboxes("ReplyTo", msg.reply_to)
        )
    return (
        f"<m:CreateItem MessageDisposition={quoteattr('SendAndSaveCopy')}>"
        '<m:SavedItemFolderId><t:DistinguishedFolderId Id="sentitems"/></m:SavedItemFolderId>'
        f"<m:Items><t:Message>{fields}</t:Message></m:Items></m:CreateItem>"
    )


def _scope(ews_url: str, cloud: Cloud = "global") -> str:
    """The cloud's Exchange Online resource when the EWS URL is an Exchange Online host (any cloud's);
    otherwise the EWS host itself (hybrid, on-premises with OAuth)."""
    url = urlsplit(ews_url)
    host = (url.hostname or "").lower()
    online = {urlsplit(r).hostname for r in EXCHANGE_ONLINE_RESOURCES.values()}
    if host in online or host.endswith(".office365.com") or host.endswith(".office365.us"):
        return f"{EXCHANGE_ONLINE_RESOURCES[cloud]}/.default"
    return f"https://{url.netloc}/.default"


def _transport_is_safe(ews_url: str) -> bool:
    url = urlsplit(ews_url)
    if url.scheme == "https":
        return True
    host = url.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------- SOAP parsing


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _response_message(content: bytes) -> tuple[str | None, str | None, float | None]:
    """(ResponseCode, MessageText, BackOffMilliseconds as seconds) from a response message or a SOAP fault.

    Elements are matched by local name: faults put ResponseCode in the errors namespace, messages in `m:`.
    """
    if not content:
        return None, None, None
    try:
        root = ET.fromstring(content)
    except ET.ParseError:
        return None, None, None
    code: str | None = None
    text: str | None = None
    backoff: float | None = None
    for element in root.iter():
        name = _local(element.tag)
        if name == "ResponseCode" and code is None:
            code = (element.text or "").strip() or None
        elif name in ("MessageText", "Message", "faultstring") and text is None:
            text = (element.text or "").strip() or None
        elif name == "Value" and element.get("Name") == "BackOffMilliseconds":
            seconds = _seconds(element.text, scale=1000)
            backoff = seconds if seconds is not None else backoff
    return code, text, backoff


def _found_items(content: bytes, offset: int) -> tuple[list[InboxItem], int | None]:
    """The items of a FindItem answer (each with ItemId, DateTimeReceived, ItemClass) and the next page's offset
    (None when IncludesLastItemInRange is true or the page was empty)."""
    try:
        root = ET.fromstring(content)
    except ET.ParseError:
        raise TransportError("read", Reply(200, "FindItem answer is not XML", "bad_answer"),
                             provider=PROVIDER) from None
    items: list[InboxItem] = []
    last = True
    next_offset = offset
    for element in root.iter():
        name = _local(element.tag)
        if name == "RootFolder":
            last = element.get("IncludesLastItemInRange", "true").lower() == "true"
            with contextlib.suppress(ValueError):
                next_offset = int(element.get("IndexedPagingOffset", str(offset)))
        elif name == "Items":
            for item in element:
                item_id = when = klass = None
                for child in item:
                    child_name = _local(child.tag)
                    if child_name == "ItemId":
                        item_id = child.get("Id")
                    elif child_name == "DateTimeReceived":
                        when = (child.text or "").strip()
                    elif child_name == "ItemClass":
                        klass = (child.text or "").strip()
                if not item_id or not when or len(item_id) > 512:
                    continue
                try:
                    received = datetime.fromisoformat(when)
                except ValueError:
                    continue
                if received.tzinfo is None:
                    received = received.replace(tzinfo=UTC)
                items.append(InboxItem(item_id, received.astimezone(UTC),
                                       (klass or "").upper().startswith("REPORT.") and
                                       (klass or "").upper().endswith(".NDR")))
    if last or not items:
        return items, None
    return items, max(next_offset, offset + len(items))


def _seconds(value: str | None, *, scale: float = 1.0) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()) / scale)
    except ValueError:
        return None
