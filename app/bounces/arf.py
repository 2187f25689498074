"""Reading feedback-loop complaints: Abuse Reporting Format reports (RFC 5965; RFC 6650 says what a generator
includes), as Yahoo's CFL, Microsoft's JMRP, Comcast and others send them when a recipient presses "this is
spam".

A report is a message with a `message/feedback-report` part (normally inside `multipart/report;
report-type=feedback-report`): header-style fields, of which Feedback-Type, User-Agent and Version are required
once each, Original-Mail-From / Arrival-Date / Source-IP / Reporting-MTA optional once, Original-Rcpt-To /
Reported-Domain optional any number of times. The complained-of message follows as `message/rfc822` or
`text/rfc822-headers`: its Message-ID and Return-Path (our VERP address) identify it when the provider redacts
the recipient (RFC 6590), and Microsoft's JMRP puts the recipient in the returned message's
X-HmXmrOriginalRecipient header rather than in Original-Rcpt-To.

The standard library's email parser reads it (arf-mime, the one Python package for ARF, is a GPL wrapper of the
same parser with no bounds; nothing maintained does more). Everything here is defensive in the manner of
`dsn.py`: a hostile or malformed message yields None, never an exception, and bounded work."""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import parsedate_to_datetime

log = logging.getLogger("outbox.bounces")
MAX_PARTS = 64
MAX_RECIPIENTS = 100
MAX_FIELD = 1000
_MARKER = re.compile(rb"feedback-report", re.IGNORECASE)
_TOKEN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
_IP = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")

# IANA's MARF feedback types. abuse and fraud are a recipient calling the message spam or phishing; virus comes
# from a scanner; other is anything else (an unregistered type is read as other). not-spam (RFC 6430) says the
# opposite of a complaint, and auth-failure (RFC 6591: SPF/DKIM/DMARC failure reports) is not about the
# recipient at all: neither is recorded.
COMPLAINT_TYPES = ("abuse", "fraud", "virus", "other")
NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})
# What puts the address on the suppression list: the recipient said they do not want this mail.
SUPPRESSING = frozenset({"abuse", "fraud"})


@dataclass
class Complaint:
    feedback_type: str  # abuse | fraud | virus | other | not-spam | auth-failure
    user_agent: str | None = None
    version: str | None = None
    original_mail_from: str | None = None  # the envelope sender of the complained-of message (our VERP address)
    original_rcpt_to: list[str] = field(default_factory=list)  # the addresses the report names, if any
    unreadable_rcpt_to: int = 0  # Original-Rcpt-To fields that are not an address (still: a recipient was named)
    arrival_date: datetime | None = None
    reporting_mta: str | None = None
    source_ip: str | None = None
    reported_domains: list[str] = field(default_factory=list)
    original_message_id: str | None = None
    original_return_path: str | None = None
    original_recipient_hint: str | None = None  # X-HmXmrOriginalRecipient (Microsoft JMRP)

    @property
    def is_complaint(self) -> bool:
        return self.feedback_type not in NOT_COMPLAINTS

    @property
    def suppresses(self) -> bool:
        return self.feedback_type in SUPPRESSING

    @property
    def named_recipients(self) -> list[str]:
        """The recipients the report names: Original-Rcpt-To, else Microsoft's header in the returned message."""
        if self.original_rcpt_to or self.unreadable_rcpt_to:
            return self.original_rcpt_to
        return [self.original_recipient_hint] if self.original_recipient_hint else []

    @property
    def names_recipient(self) -> bool:
        """Whether the report says who complained (even unreadably): if it does, Outbox never falls back to the
        message's only recipient."""
        return bool(self.original_rcpt_to or self.unreadable_rcpt_to or self.original_recipient_hint)

    @property
    def sender_addresses(self) -> list[str]:
        """Where the message's VERP token may be: the report's Original-Mail-From, the returned Return-Path."""
        return [a for a in (self.original_mail_from, self.original_return_path) if a]


def _clip(value: object) -> str:
    return " ".join(str(value).split())[:MAX_FIELD]


def _address(value: object) -> str | None:
    """`<user@example.com>` or `user@example.com` -> the address; anything else (a redacted value, a list, a
    display name, control characters) -> None."""
    if not value:
        return None
    addr = _clip(value).strip()
    if addr.lower().startswith("rfc822;"):
        addr = addr[7:].strip()
    if addr.startswith("<") != addr.endswith(">"):
        return None
    addr = addr.removeprefix("<").removesuffix(">").strip()
    local, at, domain = addr.rpartition("@")
    if (not at or not local or not domain or len(addr) > 320 or "<" in addr or ">" in addr or "," in addr
            or any(c.isspace() or not c.isprintable() for c in addr)):
        return None
    return addr


def _message_id(value: object) -> str | None:
    """`<id@host>`; a bare `id@host` (RFC 5965's own sample has one) is read as `<id@host>`."""
    if not value:
        return None
    text = _clip(value)
    m = re.search(r"<[^<>\s]{1,250}>", text)
    if m:
        return m.group(0)
    return f"<{text}>" if re.fullmatch(r"[^<>\s@]{1,200}@[^<>\s@]{1,200}", text) else None


def _date(value: object) -> datetime | None:
    if not value:
        return None
    try:
        d = parsedate_to_datetime(_clip(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return d if d.tzinfo is not None else None


def _one(fields: Message, name: str, limit: int = 255) -> str | None:
    v = fields.get(name)
    return _clip(v)[:limit] or None if v else None


def is_report(raw: bytes) -> bool:
    """Cheap test before parsing: only a message that says feedback-report somewhere can be one."""
    return _MARKER.search(raw) is not None


def parse(raw: bytes) -> Complaint | None:
    """The complaint an ARF report carries; None for anything else. Never raises."""
    try:
        return _parse(raw) if is_report(raw) else None
    except Exception:  # a hostile message must not stop the listener; the log tells what happened
        log.warning("could not read a feedback report", exc_info=True)
        return None


def _fields(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list):
        first = payload[0] if payload else None
        return first if isinstance(first, Message) else None
    if isinstance(payload, str):  # an encoded part, or a parser that left it as text: read the fields ourselves
        body = part.get_payload(decode=True)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else payload
        return HeaderParser().parsestr(text[:64 * 1024])
    return None


def _parse(raw: bytes) -> Complaint | None:
    msg = message_from_bytes(raw, policy=policy.compat32)
    report: Complaint | None = None
    original: Message | None = None
    parts = 0
    for part in msg.walk():
        parts += 1
        if parts > MAX_PARTS:
            break
        ctype = part.get_content_type()
        if ctype == "message/feedback-report" and report is None:
            fields = _fields(part)
            if fields is not None:
                report = _from_fields(fields)
        elif ctype == "message/rfc822" and original is None and report is not None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                original = inner[0]
        elif ctype == "text/rfc822-headers" and original is None and report is not None:
            with contextlib.suppress(Exception):
                text = part.get_payload(decode=True)
                if isinstance(text, bytes):
                    original = HeaderParser().parsestr(text[:256 * 1024].decode("utf-8", "replace"))
    if report is None:
        return None
    if original is not None:
        report.original_message_id = _message_id(original.get("Message-ID"))
        report.original_return_path = _address(original.get("Return-Path"))
        report.original_recipient_hint = _address(original.get("X-HmXmrOriginalRecipient"))
    return report


def _from_fields(f: Message) -> Complaint | None:
    raw_type = _clip(f.get("Feedback-Type", "")).lower()
    if not _TOKEN.match(raw_type):
        return None  # the one field a report cannot do without
    kind = raw_type if raw_type in COMPLAINT_TYPES or raw_type in NOT_COMPLAINTS else "other"
    source_ip = _one(f, "Source-IP", 64)
    rcpts: list[str] = []
    unreadable = 0
    for v in (f.get_all("Original-Rcpt-To") or [])[:MAX_RECIPIENTS]:
        a = _address(v)
        if a is None:
            unreadable += 1
        elif a.casefold() not in {r.casefold() for r in rcpts}:
            rcpts.append(a)
    domains = [d for d in (_clip(v)[:255] for v in (f.get_all("Reported-Domain") or [])[:10]) if d]
    return Complaint(
        feedback_type=kind, user_agent=_one(f, "User-Agent"), version=_one(f, "Version", 16),
        original_mail_from=_address(f.get("Original-Mail-From")), original_rcpt_to=rcpts,
        unreadable_rcpt_to=unreadable,
        arrival_date=_date(f.get("Arrival-Date") or f.get("Received-Date")),  # Received-Date: the draft's name
        reporting_mta=_one(f, "Reporting-MTA"), source_ip=source_ip if source_ip and _IP.match(source_ip) else None,
        reported_domains=domains)
