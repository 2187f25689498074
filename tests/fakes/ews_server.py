"""A local HTTPS fake of Exchange Web Services (`/EWS/Exchange.asmx`) with its own fake Entra ID authority.

It checks the SOAP it receives: `CreateItem` with `MessageDisposition="SendAndSaveCopy"`, a Bearer token it
issued plus `ExchangeImpersonation` and a matching `X-AnchorMailbox` for OAuth, or a correct Basic header.
It also answers `GetFolder` and `ResolveNames` (what `ExchangeTransport.verify` uses). Faults are scripted
with `script(*answers)`: `ews_error(...)`, `send_as_denied()`, `quota_exceeded()`, `server_busy(ms)`,
`http_error(401)`, `slow(s)`.

The HTTPS server, the recording and the Entra ID endpoints are shared with the Graph fake (`_https.py`,
`_entra.py`); this module keeps the EWS protocol. Standalone: `python -m tests.fakes.ews_server --port 8444`.
"""

from __future__ import annotations

import argparse
import base64
import email
import itertools
import threading
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import getaddresses
from typing import Literal
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes import exo_ndr
from tests.fakes._entra import EntraFake
from tests.fakes._https import wait_for_signal

__all__ = [
    "EwsFake",
    "EwsItem",
    "EwsMessage",
    "EwsScripted",
    "ews_error",
    "http_error",
    "quota_exceeded",
    "send_as_denied",
    "server_busy",
    "slow",
]

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
NS = {"soap": SOAP, "m": M, "t": T}


@dataclass(frozen=True)
class EwsScripted:
    """A scripted EWS answer: an error response message (HTTP 200), a SOAP fault (HTTP 500), a bare HTTP
    status, or (`kind="delay"`) a normal answer after `delay` seconds."""

    kind: Literal["error", "fault", "http", "delay"]
    code: str = ""
    text: str = ""
    status: int = 200
    back_off_ms: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def ews_error(code: str, text: str, *, back_off_ms: int | None = None) -> EwsScripted:
    return EwsScripted("error", code, text, 200, back_off_ms)


def send_as_denied() -> EwsScripted:
    return ews_error(
        "ErrorSendAsDenied",
        "The user account which was used to submit this request does not have the right to send mail on "
        "behalf of the specified sending account., Cannot submit message.",
    )


def quota_exceeded() -> EwsScripted:
    return ews_error("ErrorQuotaExceeded", "Mailbox has exceeded maximum mailbox size.")


def server_busy(back_off_ms: int = 30000, *, as_fault: bool = True) -> EwsScripted:
    """EWS throttling: by default a SOAP fault (HTTP 500) with a BackOffMilliseconds MessageXml value."""
    text = "The server cannot service this request right now. Try again later."
    if as_fault:
        return EwsScripted("fault", "ErrorServerBusy", text, 500, back_off_ms)
    return ews_error("ErrorServerBusy", text, back_off_ms=back_off_ms)


def http_error(status: int, *, headers: dict[str, str] | None = None) -> EwsScripted:
    if status == 401 and headers is None:
        headers = {"WWW-Authenticate": 'Bearer realm="fake", Basic realm="fake"'}
    return EwsScripted("http", status=status, headers=headers or {})


def slow(seconds: float) -> EwsScripted:
    return EwsScripted("delay", delay=seconds)


@dataclass(frozen=True)
class EwsItem:
    """An item in a fake mailbox's inbox (FindItem / GetItem serve it)."""

    id: str
    received: datetime
    item_class: str
    mime: bytes


@dataclass(frozen=True)
class EwsMessage:
    """A message accepted by `CreateItem`/`SendAndSaveCopy`."""

    mailbox: str  # the impersonated mailbox (OAuth) or the Basic user name
    auth: Literal["bearer", "basic"]
    mime: bytes | None  # decoded MimeContent
    subject: str | None  # XML form only
    body: str | None
    to: list[str]
    cc: list[str]
    bcc: list[str]
    attachments: list[tuple[str, str, bytes]]  # XML form only: (name, content type, bytes)
    saved_to: str | None


class EwsFake(EntraFake):
    """Fake EWS + Entra ID on one HTTPS port. For an `ExchangeConfig`: `ews_url`, `ca_path`, and either
    `tenant_id`/`client_id`/`client_secret`/`authority_host` (OAuth) or `username`/`password` (Basic)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tenant_id: str = "contoso-tenant",
        client_id: str = "66666666-7777-8888-9999-000000000000",
        client_secret: str = "fake-ews-secret",
        username: str = "svc-outbox@contoso.com",
        password: str = "fake-password",
        mailboxes: Iterable[str] = ("sender@contoso.com", "svc-outbox@contoso.com"),
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            roles=("full_access_as_app",),
        )
        self.username = username
        self.password = password
        self.mailboxes = {m.lower() for m in mailboxes}
        self.sent: list[EwsMessage] = []
        self._ews_scripts: deque[EwsScripted] = deque()
        self._lock = threading.Lock()
        # Reading NDRs (issue 16): each mailbox's inbox; addresses refused downstream after CreateItem (an NDR
        # from the exo_ndr sample named lands in the sender's inbox); whether the caller may read mailboxes.
        self.inboxes: dict[str, list[EwsItem]] = {}
        self.refuse: dict[str, str] = {}
        self.can_read_mail = True
        self._ids = itertools.count(1)

    def _routes(self) -> list[Route]:
        return [Route("/EWS/Exchange.asmx", self._ews, methods=["POST"])]

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._ews_scripts.clear()
        self.sent.clear()
        self.inboxes.clear()
        self.refuse.clear()
        self.can_read_mail = True

    def deliver(self, mailbox: str, mime: bytes, item_class: str = "IPM.Note") -> EwsItem:
        """Put an item in `mailbox`'s inbox (received now, to the second)."""
        item = EwsItem(f"AAMkEws{next(self._ids)}AAA=", datetime.now(UTC).replace(microsecond=0), item_class, mime)
        self.inboxes.setdefault(mailbox.lower(), []).append(item)
        return item

    def _bounce(self, mailbox: str, mime: bytes | None, recipients: list[str]) -> None:
        if mime is None:
            return
        parsed = email.message_from_bytes(mime)
        # With Send As (Basic), the From mailbox is the sender the NDR goes back to.
        sender = next((a for _, a in getaddresses(parsed.get_all("From", []))), None) or mailbox
        for rcpt in dict.fromkeys(recipients):
            key = self.refuse.get(rcpt.lower())
            if key is not None:
                ndr = exo_ndr.build(exo_ndr.SAMPLES[key], sender=sender, recipient=rcpt, original=mime,
                                    subject=str(parsed.get("Subject", "")), headers_only=True)
                self.deliver(sender, ndr, "REPORT.IPM.Note.NDR")

    @property
    def ews_url(self) -> str:
        return f"{self.url}/EWS/Exchange.asmx"

    def script(self, *answers: EwsScripted) -> None:
        with self._lock:
            self._ews_scripts.extend(answers)

    # -- the EWS endpoint ----------------------------------------------------------------------------------

    async def _ews(self, request: Request) -> Response:
        headers, body = await self._record("ews", request)
        with self._lock:
            scripted = self._ews_scripts.popleft() if self._ews_scripts else None
        if scripted is not None and scripted.kind == "http":
            return Response(status_code=scripted.status, headers=scripted.headers)
        if scripted is not None and scripted.delay:
            await self._server.pause(scripted.delay)

        auth_kind, principal = self._authenticate(headers.get("authorization", ""))
        if auth_kind is None:
            return Response(
                status_code=401, headers={"WWW-Authenticate": 'Bearer realm="fake", Basic realm="fake"'}
            )
        if not headers.get("content-type", "").startswith("text/xml"):
            return Response("expected text/xml", status_code=415)
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            return _fault("ErrorSchemaValidation", f"malformed XML: {exc}", 500)
        soap_body = root.find("soap:Body", NS)
        if root.tag != f"{{{SOAP}}}Envelope" or soap_body is None or len(soap_body) == 0:
            return _fault("ErrorSchemaValidation", "not a SOAP 1.1 envelope", 500)
        operation = soap_body[0]
        op_name = operation.tag.removeprefix(f"{{{M}}}")

        impersonated = root.findtext(
            "soap:Header/t:ExchangeImpersonation/t:ConnectingSID/t:PrimarySmtpAddress", None, NS
        )
        if auth_kind == "bearer":
            # App-only tokens have no user: impersonation and a matching anchor are required (§3.3).
            anchor = headers.get("x-anchormailbox", "")
            if not impersonated or anchor.lower() != impersonated.lower():
                return _fault(
                    "ErrorInvalidExchangeImpersonationHeaderData",
                    f"impersonation header {impersonated!r} with X-AnchorMailbox {anchor!r}",
                    500,
                )
            mailbox = impersonated
        else:
            mailbox = impersonated or principal
        if mailbox.lower() not in self.mailboxes:
            return _response(
                op_name, "ErrorNonExistentMailbox", f"The SMTP address {mailbox} has no mailbox."
            )

        if scripted is not None and scripted.kind == "error":
            return _response(op_name, scripted.code, scripted.text, back_off_ms=scripted.back_off_ms)
        if scripted is not None and scripted.kind == "fault":
            return _fault(scripted.code, scripted.text, scripted.status, back_off_ms=scripted.back_off_ms)

        if op_name == "CreateItem":
            return self._create_item(operation, op_name, mailbox, auth_kind)
        if op_name == "FindItem":
            return self._find_item(operation, mailbox)
        if op_name == "GetItem":
            return self._get_item(operation, mailbox)
        if op_name == "GetFolder":
            if not self.can_read_mail:
                return _response(op_name, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            return _response(op_name, "NoError", None)
        if op_name == "ResolveNames":
            entry = (operation.findtext("m:UnresolvedEntry", "", NS) or "").removeprefix("smtp:")
            if entry.lower() not in self.mailboxes:
                return _response(op_name, "ErrorNameResolutionNoResults", "No results were found.")
            return _response(op_name, "NoError", None)
        return _fault("ErrorInvalidRequest", f"unsupported operation {op_name}", 500)

    def _authenticate(self, authorization: str) -> tuple[Literal["bearer", "basic"] | None, str]:
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ")
            return ("bearer", "") if self.authority.is_valid(token) else (None, "")
        if authorization.startswith("Basic "):
            try:
                user, _, password = (
                    base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
                )
            except (ValueError, UnicodeDecodeError):
                return None, ""
            if user == self.username and password == self.password:
                return "basic", user
        return None, ""

    def _create_item(
        self, operation: ET.Element, op_name: str, mailbox: str, auth: Literal["bearer", "basic"]
    ) -> Response:
        if operation.get("MessageDisposition") != "SendAndSaveCopy":
            return _response(op_name, "ErrorInvalidRequest", "expected MessageDisposition=SendAndSaveCopy")
        message = operation.find("m:Items/t:Message", NS)
        if message is None:
            return _response(op_name, "ErrorInvalidRequest", "no t:Message in m:Items")
        mime_text = message.findtext("t:MimeContent", None, NS)
        mime = base64.b64decode(mime_text, validate=True) if mime_text else None
        if (
            mime is None
            and not message.findtext("t:Subject", None, NS)
            and message.find("t:ToRecipients", NS) is None
        ):
            return _response(op_name, "ErrorInvalidRequest", "neither MimeContent nor message fields")

        def addresses(tag: str) -> list[str]:
            return [e.text or "" for e in message.findall(f"t:{tag}/t:Mailbox/t:EmailAddress", NS)]

        attachments = [
            (
                a.findtext("t:Name", "", NS) or "",
                a.findtext("t:ContentType", "", NS) or "",
                base64.b64decode(a.findtext("t:Content", "", NS) or "", validate=True),
            )
            for a in message.findall("t:Attachments/t:FileAttachment", NS)
        ]
        saved = operation.find("m:SavedItemFolderId/t:DistinguishedFolderId", NS)
        mime_rcpts = []
        if mime is not None:
            parsed = email.message_from_bytes(mime)
            mime_rcpts = [a for _, a in getaddresses(parsed.get_all("To", []) + parsed.get_all("Cc", []))]
        self._bounce(mailbox, mime, mime_rcpts + addresses("ToRecipients") + addresses("BccRecipients"))
        self.sent.append(
            EwsMessage(
                mailbox=mailbox,
                auth=auth,
                mime=mime,
                subject=message.findtext("t:Subject", None, NS),
                body=message.findtext("t:Body", None, NS),
                to=addresses("ToRecipients"),
                cc=addresses("CcRecipients"),
                bcc=addresses("BccRecipients"),
                attachments=attachments,
                saved_to=saved.get("Id") if saved is not None else None,
            )
        )
        return _response(op_name, "NoError", None)

    def _find_item(self, operation: ET.Element, caller: str) -> Response:
        names = [c.tag.removeprefix(f"{{{M}}}") for c in operation]
        if names != _FIND_ORDER or operation.get("Traversal") != "Shallow":
            return _fault("ErrorSchemaValidation", f"FindItem children {names} are not in schema order", 500)
        mailbox = _folder_mailbox(operation, "m:ParentFolderIds", caller)
        if mailbox is None:
            return _response("FindItem", "ErrorInvalidRequest", "only the inbox is served")
        if not self.can_read_mail:
            return _response("FindItem", "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        restriction = operation.find("m:Restriction", NS)
        assert restriction is not None
        klass = _constant(restriction, "IsEqualTo", "item:ItemClass")
        since_text = _constant(restriction, "IsGreaterThanOrEqualTo", "item:DateTimeReceived")
        sort = operation.find("m:SortOrder/t:FieldOrder", NS)
        if sort is None or sort.get("Order") != "Ascending":
            return _response("FindItem", "ErrorInvalidRequest", "expected an ascending sort")
        view = operation.find("m:IndexedPageItemView", NS)
        assert view is not None
        size, offset = int(view.get("MaxEntriesReturned", "1000")), int(view.get("Offset", "0"))
        since = datetime.fromisoformat(since_text) if since_text else None
        items = [i for i in self.inboxes.get(mailbox.lower(), [])
                 if (klass is None or i.item_class == klass) and (since is None or i.received >= since)]
        items.sort(key=lambda i: i.received)
        page = items[offset:offset + size]
        last = offset + len(page) >= len(items)
        xml = "".join(
            f'<t:Message><t:ItemId Id="{i.id}" ChangeKey="CQAAAA=="/><t:ItemClass>{escape(i.item_class)}'
            f"</t:ItemClass><t:DateTimeReceived>{i.received.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            "</t:DateTimeReceived></t:Message>" for i in page)
        inner = (f'<m:RootFolder IndexedPagingOffset="{offset + len(page)}" TotalItemsInView="{len(items)}" '
                 f'IncludesLastItemInRange="{"true" if last else "false"}"><t:Items>{xml}</t:Items></m:RootFolder>')
        return _success("FindItem", inner)

    def _get_item(self, operation: ET.Element, caller: str) -> Response:
        if operation.findtext("m:ItemShape/t:IncludeMimeContent", None, NS) != "true":
            return _response("GetItem", "ErrorInvalidRequest", "expected IncludeMimeContent")
        if not self.can_read_mail:
            return _response("GetItem", "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        ids = [e.get("Id") for e in operation.findall("m:ItemIds/t:ItemId", NS)]
        # Basic (delegate): the item may be in any mailbox the caller reads; OAuth: the impersonated one.
        for items in self.inboxes.values():
            for i in items:
                if i.id in ids:
                    mime = base64.b64encode(i.mime).decode()
                    return _success("GetItem", f'<m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">{mime}'
                                               f'</t:MimeContent><t:ItemId Id="{i.id}" ChangeKey="CQAAAA=="/>'
                                               "</t:Message></m:Items>")
        del caller
        return _response("GetItem", "ErrorItemNotFound", "The specified object was not found in the store.")


def _success(op_name: str, inner: str) -> Response:
    xml = _soap(
        f'<m:{op_name}Response xmlns:m="{M}" xmlns:t="{T}"><m:ResponseMessages>'
        f'<m:{op_name}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>{inner}'
        f"</m:{op_name}ResponseMessage></m:ResponseMessages></m:{op_name}Response>"
    )
    return Response(xml, status_code=200, media_type="text/xml; charset=utf-8")


# FindItemType's sequence (Messages.xsd): ItemShape, a paging view, GroupBy, Restriction, SortOrder,
# ParentFolderIds, QueryString.
_FIND_ORDER = ["ItemShape", "IndexedPageItemView", "Restriction", "SortOrder", "ParentFolderIds"]


def _folder_mailbox(operation: ET.Element, folders: str, caller: str) -> str | None:
    """The mailbox whose inbox is meant (the caller's or a delegate's), or None when it is not the inbox."""
    folder = operation.find(f"{folders}/t:DistinguishedFolderId", NS)
    if folder is None or folder.get("Id") != "inbox":
        return None
    return folder.findtext("t:Mailbox/t:EmailAddress", None, NS) or caller


def _constant(restriction: ET.Element, test: str, field_uri: str) -> str | None:
    for element in restriction.iter(f"{{{T}}}{test}"):
        uri = element.find("t:FieldURI", NS)
        const = element.find("t:FieldURIOrConstant/t:Constant", NS)
        if uri is not None and uri.get("FieldURI") == field_uri and const is not None:
            return const.get("Value")
    return None


def _soap(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAP}"><s:Header>'
        f'<h:ServerVersionInfo xmlns:h="{T}" MajorVersion="15" MinorVersion="2" MajorBuildNumber="1544" '
        'MinorBuildNumber="4" Version="V2017_07_11"/></s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )


def _message_xml(back_off_ms: int | None) -> str:
    if back_off_ms is None:
        return ""
    value = f'<t:Value Name="BackOffMilliseconds">{back_off_ms}</t:Value>'
    return f'<t:MessageXml xmlns:t="{T}">{value}</t:MessageXml>'


def _response(op_name: str, code: str, text: str | None, *, back_off_ms: int | None = None) -> Response:
    """An EWS response message (HTTP 200) with ResponseClass Success or Error."""
    success = code == "NoError"
    inner = (
        (f"<m:MessageText>{escape(text)}</m:MessageText>" if text else "")
        + f"<m:ResponseCode>{code}</m:ResponseCode>"
        + ("<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>" if not success else "")
        + _message_xml(back_off_ms)
        + ("<m:Items/>" if success and op_name == "CreateItem" else "")
    )
    xml = _soap(
        f'<m:{op_name}Response xmlns:m="{M}" xmlns:t="{T}"><m:ResponseMessages>'
        f'<m:{op_name}ResponseMessage ResponseClass="{"Success" if success else "Error"}">{inner}'
        f"</m:{op_name}ResponseMessage></m:ResponseMessages></m:{op_name}Response>"
    )
    return Response(xml, status_code=200, media_type="text/xml; charset=utf-8")


def _fault(code: str, text: str, status: int, *, back_off_ms: int | None = None) -> Response:
    xml = _soap(
        f'<s:Fault><faultcode xmlns:a="{T}">a:{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{escape(text)}</faultstring>'
        f'<detail><e:ResponseCode xmlns:e="{E}">{code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{E}">{escape(text)}</e:Message>'
        + _message_xml(back_off_ms)
        + "</detail></s:Fault>"
    )
    return Response(xml, status_code=status, media_type="text/xml; charset=utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Exchange Web Services (+ Entra ID) over HTTPS")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8444)
    args = parser.parse_args(argv)
    with EwsFake(host=args.host, port=args.port) as fake:
        print(f"EWS fake: ews_url = {fake.ews_url}")  # noqa: T201 - a command-line tool
        print(f"  ca_bundle = {fake.ca_path}")  # noqa: T201
        print(f"  basic: username = {fake.username}  password = {fake.password}")  # noqa: T201
        print(  # noqa: T201
            f"  oauth: authority_host = {fake.authority_host}  tenant_id = {fake.tenant_id}  "
            f"client_id = {fake.client_id}  client_secret = {fake.client_secret}",
            flush=True,
        )
        wait_for_signal()


if __name__ == "__main__":
    main()
