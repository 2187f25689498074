"""The contract between the delivery engine and the providers.

A transport sends one built message with one provider's settings and reports per-recipient outcomes.
Transports know nothing about the database or FastAPI: they take plain data and raise `TransportError`
for anything that is not a (possibly partial) success. Classification into transient or permanent, with
the explanation and fix shown in history, is done by `app.delivery.classify`, never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Stage = Literal["connect", "tls", "auth", "token", "mail", "rcpt", "data", "send", "upload", "verify", "read"]


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


@dataclass(slots=True)
class OutgoingMessage:
    """A message ready to send. `mime` is the RFC 5322 serialisation (built once, reused on retries)."""

    message_id: str  # the Message-ID header value, with angle brackets: "<...@...>"
    sender: str  # the From address (also the SMTP envelope sender / Graph mailbox)
    to: list[str]
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    sender_name: str | None = None
    subject: str = ""
    body_text: str | None = None
    body_html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    mime: bytes | None = None
    envelope: list[str] | None = None  # only these recipients (a retry of those still pending); None: all
    # SMTP MAIL FROM when it is not `sender`: the per-message bounce address (app.bounces.verp).
    envelope_sender: str | None = None

    @property
    def recipients(self) -> list[str]:
        """Who this send delivers to (the SMTP envelope); the headers still name everyone."""
        return self.envelope if self.envelope is not None else [*self.to, *self.cc, *self.bcc]


@dataclass(frozen=True, slots=True)
class Reply:
    """A server's answer: an SMTP reply code and text, or an HTTP status with the provider's error code."""

    code: int | None
    text: str
    error_code: str | None = None  # e.g. Graph "ErrorSendAsDenied", EWS "ErrorQuotaExceeded", "AADSTS7000215"


@dataclass(frozen=True, slots=True)
class InboxItem:
    """An item listed in a mailbox's inbox (reading NDRs): its provider id, when it arrived, and whether its
    message class says it is a non-delivery report (`REPORT.IPM.Note.NDR`)."""

    id: str
    received: datetime
    is_ndr: bool


@dataclass(slots=True)
class SendResult:
    """A send the server accepted for at least one recipient. `refused` lists recipients refused individually."""

    reply: Reply
    refused: dict[str, Reply] = field(default_factory=dict)


class TransportError(Exception):
    """Nothing was accepted (or we cannot know). `uncertain` means the server may have accepted the message
    (connection dropped after DATA, Graph 504): the engine must treat a later retry as a possible duplicate."""

    def __init__(
        self,
        stage: Stage,
        reply: Reply,
        *,
        provider: str,
        uncertain: bool = False,
        retry_after: float | None = None,
        recipients: dict[str, Reply] | None = None,
    ) -> None:
        super().__init__(f"{provider} {stage}: {reply.code} {reply.text}")
        self.stage = stage
        self.reply = reply
        self.provider = provider
        self.uncertain = uncertain
        self.retry_after = retry_after
        self.recipients = recipients or {}
