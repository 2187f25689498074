"""Exchange Online non-delivery reports (NDRs), as the Graph and EWS fakes put them in the sender's inbox.

Where the samples come from (Microsoft's documentation, MicrosoftDocs/OfficeDocs-Exchange):

- `Exchange/ExchangeOnline/mail-flow-best-practices/non-delivery-reports-in-exchange-online/
  non-delivery-reports-in-exchange-online.md` ("Email non-delivery reports in Exchange Online"): the table of NDR
  codes with their descriptions (4.4.7 `Message expired`, 5.1.1 `Bad destination mailbox address`, 5.1.10
  `Recipient not found`, 5.4.1 `Relay Access Denied` / `Recipient address rejected: Access denied`, 5.7.1
  `Delivery not authorized`), and the layout of the "Diagnostic information for administrators" section
  (Generating server, rejected recipient, remote server, enhanced status code, SMTP response, original message
  headers), with its example `#5.7.1 smtp;530 5.7.1 Client was not authenticated`.
- `.../fix-error-code-550-5-1-10-in-exchange-online.md`: the 5.1.10 reply
  `550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup`.
- `.../fix-error-code-550-4-4-7-in-exchange-online.md`: 4.4.7 is the message expiring in the queue
  (`550 4.4.7 QUEUE.Expired; message expired`): a final failure after retrying, with a 4.x.x status (a soft
  bounce for us: not suppressed).

The MIME frame is the one Exchange gives an NDR when it is read as MIME (Graph `$value`, EWS MimeContent): a
`multipart/report; report-type=delivery-status` with the user text (plain and HTML), the RFC 3464
`message/delivery-status` part (Reporting-MTA, per recipient Final-Recipient, Action, Status, Diagnostic-Code,
Remote-MTA when another server refused it, X-Display-Name), and the original as `message/rfc822` or, for a
large one, its headers only (`text/rfc822-headers`). Host names are Exchange Online's form
(`*.prod.outlook.com`); addresses are the test's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

__all__ = ["SAMPLES", "NdrSample", "build"]


@dataclass(frozen=True)
class NdrSample:
    status: str  # RFC 3463 enhanced status
    reply: str  # the SMTP reply in the Diagnostic-Code
    user_text: str  # the "cause" line of the user section (the doc's description)
    remote_mta: str | None = None  # another organization's server refused it after Exchange Online accepted it
    source: str = "non-delivery-reports-in-exchange-online.md"


SAMPLES: dict[str, NdrSample] = {
    "5.1.10": NdrSample("5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address "
                                  "lookup", "Recipient not found",
                        source="fix-error-code-550-5-1-10-in-exchange-online.md"),
    "5.1.1": NdrSample("5.1.1", "550 5.1.1 <{recipient}>: Recipient address rejected: User unknown",
                       "Bad destination mailbox address", remote_mta="mx.example.org"),
    "5.4.1": NdrSample("5.4.1", "550 5.4.1 Recipient address rejected: Access denied",
                       "Recipient address rejected: Access denied", remote_mta="mx.example.org"),
    "5.7.1": NdrSample("5.7.1", "530 5.7.1 Client was not authenticated", "Delivery not authorized",
                       remote_mta="mail.contoso.com"),
    "4.4.7": NdrSample("4.4.7", "550 4.4.7 QUEUE.Expired; message expired", "Message expired",
                       source="fix-error-code-550-4-4-7-in-exchange-online.md"),
}

_SERVER = "AM0PR01MB6273.eurprd01.prod.outlook.com"


def build(sample: NdrSample, *, sender: str, recipient: str, original: bytes, subject: str,
          headers_only: bool = False, when: datetime | None = None) -> bytes:
    """The NDR Exchange Online would leave in `sender`'s inbox for `original` refused for `recipient`."""
    when = when or datetime.now(UTC)
    reply = sample.reply.format(recipient=recipient)
    boundary = "NDR_" + uuid.uuid4().hex
    alt = "ALT_" + uuid.uuid4().hex
    domain = sender.rpartition("@")[2]
    head, _, _ = original.partition(b"\r\n\r\n")
    if head == original:
        head, _, _ = original.partition(b"\n\n")
    remote = f"Remote-MTA: dns;{sample.remote_mta}\r\n" if sample.remote_mta else ""
    user = (f"Your message to {recipient} couldn't be delivered.\r\n\r\n{sample.user_text}\r\n\r\n"
            f"Diagnostic information for administrators:\r\n\r\nGenerating server: {_SERVER}\r\n\r\n{recipient}\r\n"
            f"{sample.remote_mta or 'Remote Server'} returned '{reply}'\r\n\r\nOriginal message headers:\r\n\r\n")
    parts = [
        f"Content-Type: multipart/alternative; boundary=\"{alt}\"\r\n\r\n"
        f"--{alt}\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\n\r\n{user}"
        + head.decode("utf-8", "replace").replace("\n", "\r\n").replace("\r\r\n", "\r\n") + "\r\n"
        f"--{alt}\r\nContent-Type: text/html; charset=\"us-ascii\"\r\n\r\n<html><body><p>Your message to "
        f"{recipient} couldn't be delivered.</p><p>{sample.user_text}</p></body></html>\r\n--{alt}--\r\n",
        "Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns;{_SERVER}\r\nReceived-From-MTA: dns;{_SERVER}\r\n"
        f"Arrival-Date: {format_datetime(when)}\r\n\r\n"
        f"Final-Recipient: rfc822;{recipient}\r\nAction: failed\r\nStatus: {sample.status}\r\n"
        f"Diagnostic-Code: smtp;{reply}\r\n{remote}X-Display-Name: {recipient}\r\n",
    ]
    if headers_only:
        parts.append("Content-Type: text/rfc822-headers\r\n\r\n" + head.decode("utf-8", "replace") + "\r\n")
    else:
        parts.append("Content-Type: message/rfc822\r\n\r\n" + original.decode("utf-8", "replace"))
    body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    top = (f"From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@{domain}>\r\n"
           f"To: <{sender}>\r\nDate: {format_datetime(when)}\r\n"
           f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n"
           "X-MS-Exchange-Message-Is-Ndr:\r\nContent-Language: en-US\r\n"
           f"Message-ID: <{uuid.uuid4()}@{_SERVER}>\r\nSubject: Undeliverable: {subject}\r\n"
           "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\r\n")
    return (top + body).encode("utf-8")
