"""Reading delivery status notifications: RFC 3464 `message/delivery-status` with the standard library's email
parser, the returned message's Message-ID (message/rfc822 or text/rfc822-headers), and GNU Mailman's
`flufl.bounce` detectors for bounces in other formats (no status part).

Everything here is defensive: a hostile or malformed message yields an empty report, never an exception, and
bounded work (parts, recipients, header lengths)."""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser

log = logging.getLogger("outbox.bounces")
logging.getLogger("flufl.bounce").setLevel(logging.WARNING)  # it logs every detector it runs at INFO
MAX_PARTS = 64
MAX_RECIPIENTS = 100
MAX_FIELD = 1000
_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_CODE = re.compile(r"^\s*(\d{3})[\s-]")


@dataclass
class RecipientReport:
    address: str
    action: str  # failed | delayed | delivered | relayed | expanded | "" (not RFC 3464)
    status: str | None  # e.g. 5.1.1
    kind: str  # hard | soft
    diagnostic_code: str | None = None
    reply_code: int | None = None
    remote_mta: str | None = None


@dataclass
class Report:
    recipients: list[RecipientReport] = field(default_factory=list)
    original_message_id: str | None = None
    format: str = "none"  # rfc3464 | flufl | none

    @property
    def failures(self) -> list[RecipientReport]:
        return [r for r in self.recipients if r.action == "failed"]


def _clip(value: object) -> str:
    return " ".join(str(value).split())[:MAX_FIELD]


def _address(value: str | None) -> str | None:
    """`rfc822; user@example.com` -> user@example.com (other address types are ignored)."""
    if not value:
        return None
    kind, sep, addr = str(value).partition(";")
    if not sep or kind.strip().lower() != "rfc822":
        return None
    addr = addr.strip().strip("<>").strip()
    if not addr or "@" not in addr or any(c.isspace() or not c.isprintable() for c in addr) or len(addr) > 320:
        return None
    return addr


def _from_blocks(blocks: list[Message]) -> list[RecipientReport]:
    out: list[RecipientReport] = []
    for b in blocks[1:1 + MAX_RECIPIENTS]:  # the first block is per-message (Reporting-MTA, ...)
        addr = _address(b.get("Original-Recipient")) or _address(b.get("Final-Recipient"))
        action = _clip(b.get("Action", "")).lower()
        status_raw = _clip(b.get("Status", "")).split(" ")[0]
        m = _STATUS.match(status_raw)
        status = status_raw if m else None
        if addr is None or not action:
            continue
        diag = b.get("Diagnostic-Code")
        diagnostic = _clip(diag) if diag else None
        reply_code = None
        if diagnostic:
            text = diagnostic.partition(";")[2] if ";" in diagnostic else diagnostic
            cm = _CODE.match(text)
            if cm:
                reply_code = int(cm.group(1))
        remote = b.get("Remote-MTA")
        hard = (m is not None and m.group(1) == "5") or (m is None and reply_code is not None and reply_code >= 500)
        out.append(RecipientReport(address=addr, action=action, status=status, kind="hard" if hard else "soft",
                                   diagnostic_code=diagnostic, reply_code=reply_code,
                                   remote_mta=_clip(remote.partition(";")[2] or remote)[:255] if remote else None))
    return out


def _message_id(value: object) -> str | None:
    if not value:
        return None
    text = _clip(value)
    m = re.search(r"<[^<>\s]{1,250}>", text)
    return m.group(0) if m else None


def parse(raw: bytes) -> Report:
    """The report a DSN carries; an empty one for anything else. Never raises."""
    try:
        return _parse(raw)
    except Exception:  # a hostile message must not stop the listener; the log tells what happened
        log.warning("could not read a bounce message", exc_info=True)
        return Report()


def _parse(raw: bytes) -> Report:
    msg = message_from_bytes(raw, policy=policy.compat32)
    report = Report()
    parts = 0
    saw_status_part = False
    for part in msg.walk():
        parts += 1
        if parts > MAX_PARTS:
            break
        ctype = part.get_content_type()
        if ctype == "message/delivery-status" and report.format != "rfc3464":
            saw_status_part = True
            payload = part.get_payload()
            blocks: list[Message] = []
            if isinstance(payload, list):
                blocks = [b for b in payload if isinstance(b, Message)]
            elif isinstance(payload, str):  # some parsers leave it as text: parse the blocks ourselves
                blocks = [HeaderParser().parsestr(chunk) for chunk in re.split(r"\r?\n\r?\n", payload) if chunk.strip()]
            found = _from_blocks(blocks)
            if found:
                report.recipients = found
                report.format = "rfc3464"
        elif ctype == "message/rfc822" and report.original_message_id is None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                report.original_message_id = _message_id(inner[0].get("Message-ID"))
        elif ctype == "text/rfc822-headers" and report.original_message_id is None:
            with contextlib.suppress(Exception):
                text = part.get_payload(decode=True)
                if isinstance(text, bytes):
                    headers = HeaderParser().parsestr(text.decode("utf-8", "replace"))
                    report.original_message_id = _message_id(headers.get("Message-ID"))
    if report.format == "none" and not saw_status_part:  # an unreadable RFC 3464 report is not guessed at
        report.recipients = _flufl(msg)
        if report.recipients:
            report.format = "flufl"
    return report


def _flufl(msg: Message) -> list[RecipientReport]:
    """Other bounce formats (Exchange, qmail, Lotus, ...): GNU Mailman's detectors say which addresses failed,
    temporarily or permanently; no status code. Each detector runs on its own: one that raises on a malformed
    message (some do) does not stop the others (flufl.bounce's all_failures() would re-raise)."""
    from flufl.bounce import _scan

    temporary: set[bytes] = set()
    permanent: set[bytes] = set()
    for detector in getattr(_scan, "_DETECTORS", ()):
        try:
            t, p = detector().process(msg)
        except Exception:  # a detector's bug on hostile input: try the next one
            continue
        temporary.update(t)
        permanent.update(p)
        if t or p:
            break
    out: list[RecipientReport] = []
    for addrs, kind in ((permanent, "hard"), (temporary - permanent, "soft")):
        for a in sorted(addrs)[:MAX_RECIPIENTS]:
            addr = _address("rfc822;" + a.decode("utf-8", "replace"))
            if addr is not None:
                out.append(RecipientReport(address=addr, action="failed", status=None, kind=kind))
    return out
