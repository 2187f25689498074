"""A stored message as the transports' `OutgoingMessage`: for the worker (to send it) and the API (.eml)."""

from __future__ import annotations

from urllib.parse import quote

from app.mail.build import ascii_fallback
from app.messages.repository import MessageRow
from app.transports.base import Attachment, OutgoingMessage

__all__ = ["content_disposition", "outgoing_from_row"]

_ATTR_SAFE = "!#$&+-.^_`|~"  # RFC 8187 attr-char besides letters and digits


def outgoing_from_row(row: MessageRow, attachments: list[Attachment],
                      envelope_sender: str | None = None) -> OutgoingMessage:
    """A `message` row and its attachments as what a transport sends (`envelope_sender`: the bounce address)."""
    return OutgoingMessage(
        message_id=row.message_id_header, sender=row.sender, to=list(row.to_addrs), cc=list(row.cc_addrs),
        bcc=list(row.bcc_addrs), reply_to=list(row.reply_to), sender_name=row.sender_name,
        subject=row.subject, body_text=row.body_text, body_html=row.body_html, attachments=attachments,
        headers=dict(row.headers or {}),
        envelope=pending_recipients(row), envelope_sender=envelope_sender,
    )


def pending_recipients(row: MessageRow) -> list[str] | None:
    """The recipients still to deliver to, when a server already answered some of them (None: all)."""
    state = row.recipient_state
    if not state:
        return None
    return [a for a in [*row.to_addrs, *row.cc_addrs, *row.bcc_addrs] if state.get(a, {}).get("state") == "pending"]


def content_disposition(filename: str) -> str:
    """`attachment` with the file name: a quoted ASCII `filename`, plus RFC 6266 `filename*` (UTF-8) when
    the name is not plain ASCII, so that every browser and client gets a sensible name."""
    fallback = ascii_fallback(filename, default="message")
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe=_ATTR_SAFE)}"
