"""Building RFC 5322 messages: the bytes sent over SMTP (and to Graph/EWS as MIME) and the `.eml` download.

`email.message.EmailMessage` with the default policy was 38% of a worker's CPU (BENCHMARKS.md), so the
message is
written directly: the structure is fixed (text and/or HTML as multipart/alternative, attachments in
multipart/mixed), and every header is produced by a few small, tested encoders. Correctness is checked by
parsing
the output back with the standard `email` package (tests/mail/test_build.py).

Encoding choices:

* Date: numeric zone `+0000` (RFC 5322 §3.3: `GMT` is obsolete syntax, not to be generated).
* Headers: ASCII text as is (folded at spaces past 78 characters); anything else, or text containing "=?", as
  RFC 2047 UTF-8 "B" encoded words of at most 75 characters, split on character boundaries.
  Addresses are written as given: an address with a non-ASCII local part goes out as UTF-8 (RFC 6532) and the
  message then needs SMTPUTF8 (`app.mail.validate.needs_smtputf8`).
* Bodies: 7bit when ASCII with lines of at most 998 octets, quoted-printable when mostly ASCII, base64
  otherwise.
  Line endings are normalised to CRLF and a final line break is added (as EmailMessage does).
* Attachments: base64 in 76-character lines; file names as quoted strings when ASCII, otherwise RFC 2231
  (`filename*=utf-8''...`, split into `filename*0*`, `filename*1*`... when long), both in Content-Disposition
  `filename` and Content-Type `name`, followed by a plain quoted ASCII fallback (`filename="Ubersicht.pdf"`)
  for readers that do not know RFC 2231. The RFC 2231 form comes first: readers that know both prefer it, and
  Python's `email` takes the first of two values. Composite types (message/*, multipart/*) are sent as
  application/octet-stream: RFC 2046 forbids base64 for them, and we never re-parse user-supplied MIME.

Header values are expected to have passed `app.mail.validate` at the API; the builder still refuses CR, LF and
other control characters with `ValueError` (defence in depth: an injected header must be impossible here).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from binascii import b2a_base64, b2a_qp
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote

from app.mail.validate import MailInputError, safe_filename
from app.transports.base import Attachment, OutgoingMessage

__all__ = ["build_eml", "build_mime", "eml_filename", "make_message_id"]

_CRLF = "\r\n"
_MAX_LINE = 78
_B64_LINE = 76
_B64_CHUNK = 57 * 200  # encode in blocks of whole 76-character lines
_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_HEADER_NAME = re.compile(r"[!-9;-~]+\Z")
_LONG_LINE = re.compile(r"[^\n]{999}")
# An RFC 5322 atom (atext only, ASCII, no "=?" which would read as an encoded word).
_ATOM = re.compile(r"(?!.*=\?)[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+\Z")
# RFC 2231 attribute-char that need no percent-encoding.
_ATTR_SAFE = "!#$&+-.^_`|~"
# Headers the builder writes itself; custom headers may not replace them.
RESERVED_HEADERS = frozenset({
    "bcc", "cc", "content-disposition", "content-transfer-encoding", "content-type", "date", "from",
    "message-id", "mime-version", "reply-to", "resent-bcc", "resent-cc", "resent-from", "resent-to",
    "return-path",
    "sender", "subject", "to", "x-unsent",
})


def make_message_id(domain: str) -> str:
    """A new Message-ID value: "<32 hex digits@domain>" (an IDN domain is written in its ASCII form)."""
    domain = domain.strip().lower()
    if not domain or _FORBIDDEN.search(domain) or any(c in domain for c in "<>@ \t\"\\[]()"):
        raise ValueError(f"not a usable Message-ID domain: {domain!r}")
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    return f"<{uuid.uuid4().hex}@{domain}>"


def _check(name: str, value: str) -> None:
    m = _FORBIDDEN.search(value)
    if m:
        raise ValueError(f"{name} contains the control character U+{ord(m.group()):04X}")


def _encoded_words(text: str, used: int) -> str:
    """`text` as RFC 2047 B-encoded words (UTF-8) of at most 75 characters, the first fitting after `used`
    characters on its line; words are separated by CRLF SP so that no line passes 78 characters."""
    data = text.encode("utf-8")
    n = len(data)
    room = max(3, (_MAX_LINE - used - 12) // 4 * 3)  # bytes in the first word; 12 = len("=?utf-8?b??=")
    words: list[str] = []
    i = 0
    while i < n:
        j = min(i + room, n)
        while j < n and j > i + 1 and (data[j] & 0xC0) == 0x80:  # never split a UTF-8 sequence
            j -= 1
        words.append("=?utf-8?b?" + b2a_base64(data[i:j], newline=False).decode("ascii") + "?=")
        i = j
        room = 45  # 60 base64 characters: 72-character words after the folding space
    return "\r\n ".join(words)


def _fold_ascii(text: str, used: int) -> str | None:
    """Fold ASCII text at single spaces so lines stay within 78 characters; None if a word cannot fit in
    998 characters."""
    if used + len(text) <= _MAX_LINE:
        return text
    out: list[str] = []
    line = ""
    for k, word in enumerate(text.split(" ")):
        if k == 0:
            line = word
        elif used + len(line) + 1 + len(word) > _MAX_LINE and line.strip(" \t"):
            out.append(line)
            line, used = " " + word, 0
        else:
            line = f"{line} {word}"
        if used + len(line) > 998:
            return None
    out.append(line)
    return "\r\n".join(out)


def _unstructured(name: str, value: str) -> str:
    """A complete header line (without CRLF) for free text such as Subject."""
    _check(name, value)
    used = len(name) + 2
    if value.isascii() and "=?" not in value:
        folded = _fold_ascii(value, used)
        if folded is not None:
            return f"{name}: {folded}"
    return f"{name}: {_encoded_words(value, used)}"


def _encode_unit(text: str) -> list[str]:
    """Encoded words for a run of phrase words. Splits fall before a space where possible: the space is
    encoded
    (RFC 2047 parsers drop the white space *between* encoded words, so it must be inside one)."""
    words: list[str] = []
    rest = text
    while rest:
        if len(rest.encode("utf-8")) <= 45:
            chunk, rest = rest, ""
        else:
            cut = 0
            for k, ch in enumerate(rest):
                if len(rest[:k + 1].encode("utf-8")) > 45:
                    break
                if ch == " " and k > 0:
                    cut = k
            if cut == 0:  # one long word: split between characters
                cut = 1
                while len(rest[:cut + 1].encode("utf-8")) <= 45:
                    cut += 1
            chunk, rest = rest[:cut], rest[cut:]
        words.append("=?utf-8?b?" + b2a_base64(chunk.encode("utf-8"), newline=False).decode("ascii") + "?=")
    return words


def _fold_tokens(tokens: list[str], used: int) -> str:
    """Join tokens with single spaces, folding (CRLF before the space) to keep lines within 78 characters."""
    out = ""
    line_len = used
    for k, tok in enumerate(tokens):
        if k == 0:
            out, line_len = tok, used + len(tok)
        elif line_len + 1 + len(tok) > _MAX_LINE:
            out += "\r\n " + tok
            line_len = 1 + len(tok)
        else:
            out += " " + tok
            line_len += 1 + len(tok)
    return out


def _phrase(name: str, used: int) -> str:
    """A display name: atoms as is, ASCII with specials as a quoted string, non-ASCII words as encoded words.
    Like Python's own folder, ASCII atoms stay readable between encoded words."""
    words = name.split(" ")
    if all(_ATOM.match(w) for w in words):
        return _fold_tokens(words, used)
    if name.isascii() and "=?" not in name:
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    tokens: list[str] = []
    run: list[str] = []
    for w in [*words, None]:
        if w is not None and not _ATOM.match(w):
            run.append(w)
            continue
        if run:
            tokens.extend(_encode_unit(" ".join(run)))
            run = []
        if w is not None:
            tokens.append(w)
    return _fold_tokens(tokens, used)


def _mailbox(address: str, display_name: str | None, used: int) -> str:
    _check("address", address)
    if any(c in address for c in " <>,;\"()\\"):
        raise ValueError(f"not a bare address: {address!r}")
    if not display_name:
        return address
    _check("display name", display_name)
    return f"{_phrase(display_name, used)} <{address}>"


def _address_list(name: str, addresses: list[str]) -> str:
    line = f"{name}: "
    out: list[str] = []
    for k, addr in enumerate(addresses):
        item = _mailbox(addr, None, 0) + ("," if k < len(addresses) - 1 else "")
        if k and len(line) + 1 + len(item) > _MAX_LINE:
            out.append(line)
            line = " " + item
        else:
            line = line + (" " if k else "") + item
    out.append(line)
    return "\r\n".join(out)


_FALLBACK_MAX = 60
# Letters that do not decompose into an ASCII letter plus accents (NFKD), spelled the usual way.
_SPELLED = {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "ł": "l", "Ł": "L",
            "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th", "–": "-", "—": "-", "‘": "'", "’": "'", "“": "'",
            "”": "'"}


def ascii_fallback(filename: str, default: str = "attachment") -> str:
    """A plain ASCII stand-in for a file name, for readers that only know a quoted `filename=` (MIME parameters
    here, HTTP Content-Disposition in `app.messages.outgoing`): accents dropped, æ ø ß... spelled out
    ("Übersicht März.pdf" -> "Ubersicht Marz.pdf"), other characters "_" (a lone one dropped), at most 60
    characters with the extension kept, `default` when nothing is left of the name."""
    out = []
    for ch in unicodedata.normalize("NFKD", filename):
        if unicodedata.combining(ch):
            continue
        ch = _SPELLED.get(ch, ch)
        out.append(ch if ch.isascii() and ch.isprintable() and ch not in '"\\;' else "_")
    text = re.sub(r"_+", "_", "".join(out))
    text = re.sub(r"\s*_(?=\s|\.|$)", "", text)  # drop a lone "_" left by an emoji or symbol
    stem, dot, ext = text.rpartition(".")
    if not dot or len(ext) > 10:
        stem, dot, ext = text, "", ""
    stem = stem.strip(" _") or default
    return stem[: _FALLBACK_MAX - len(dot + ext)] + dot + ext


def _param(name: str, value: str) -> str:
    """One MIME parameter on its own folded line (with the leading ";"): a quoted string when it is ASCII and
    fits in 78 characters, otherwise RFC 2231 (percent-encoded UTF-8, split into numbered sections) followed by
    a plain quoted ASCII fallback."""
    _check(name, value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if value.isascii() and len(name) + len(escaped) + 4 <= _MAX_LINE:
        return f';\r\n {name}="{escaped}"'
    return _rfc2231(name, value) + f';\r\n {name}="{ascii_fallback(value)}"'


def _rfc2231(name: str, value: str) -> str:
    pct = quote(value, safe=_ATTR_SAFE)
    if len(name) + len(pct) + 11 <= _MAX_LINE:
        return f";\r\n {name}*=utf-8''{pct}"
    # Sections end on character boundaries: some readers decode each section on its own.
    chunks: list[str] = []
    room = _MAX_LINE - len(name) - 12  # " name*NN*=" and the ";" ending the line
    current = "utf-8''"
    for ch in value:
        enc = quote(ch, safe=_ATTR_SAFE)
        if len(current) + len(enc) > room:
            chunks.append(current)
            current = ""
        current += enc
    chunks.append(current)
    return "".join(f";\r\n {name}*{k}*={c}" for k, c in enumerate(chunks))


def _text_body(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, encoded body ending in CRLF) for a text part."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    if text.isascii() and not _LONG_LINE.search(text):
        return "7bit", text.replace("\n", "\r\n").encode("ascii")
    data = text.encode("utf-8")
    if (len(data) - len(text)) * 6 > len(text):  # many non-ASCII characters: base64 is shorter
        return "base64", _base64(data)
    return "quoted-printable", b2a_qp(data.replace(b"\n", b"\r\n"), istext=True)


def _base64(data: bytes) -> bytes:
    """Base64 in 76-character lines, each ending in CRLF."""
    out: list[bytes] = []
    for start in range(0, len(data), _B64_CHUNK):
        enc = b2a_base64(data[start:start + _B64_CHUNK], newline=False)
        out.extend(enc[i:i + _B64_LINE] for i in range(0, len(enc), _B64_LINE))
    out.append(b"")
    return b"\r\n".join(out)


def _text_part(subtype: str, text: str) -> list[bytes]:
    cte, body = _text_body(text)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    return [head.encode("ascii"), body]


def _attachment_part(att: Attachment) -> list[bytes]:
    ctype = att.content_type.strip()
    _check("content type", ctype)
    main = ctype.split(";", 1)[0].strip().lower()
    if "/" not in main or main.startswith(("multipart/", "message/")):
        ctype = "application/octet-stream"
    head = (
        f"Content-Type: {ctype}{_param('name', att.filename)}\r\n"
        f"Content-Disposition: attachment{_param('filename', att.filename)}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return [head.encode("ascii"), _base64(att.content)]


def _multipart(subtype: str, parts: list[list[bytes]]) -> list[bytes]:
    boundary = f"=_{uuid.uuid4().hex}"
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode("ascii")]
    delim = f"--{boundary}\r\n".encode("ascii")
    for part in parts:
        out.append(delim)
        out.extend(part)
        # Each part's body ends in CRLF, which is content (a text's final line break); this CRLF belongs to
        # the
        # delimiter that follows (RFC 2046 5.1.1).
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode("ascii"))
    return out


def _body(msg: OutgoingMessage) -> list[bytes]:
    texts: list[list[bytes]] = []
    if msg.body_text is not None:
        texts.append(_text_part("plain", msg.body_text))
    if msg.body_html is not None:
        texts.append(_text_part("html", msg.body_html))
    if not texts:
        texts.append(_text_part("plain", ""))
    main = texts[0] if len(texts) == 1 else _multipart("alternative", texts)
    if not msg.attachments:
        return main
    return _multipart("mixed", [main, *(_attachment_part(a) for a in msg.attachments)])


def _headers(msg: OutgoingMessage, *, eml: bool) -> list[str]:
    lines = [
        f"Date: {format_datetime(datetime.now(UTC))}",  # "+0000", not the obsolete "GMT"
        "From: " + _mailbox(msg.sender, msg.sender_name, 6),
    ]
    if msg.to:
        lines.append(_address_list("To", msg.to))
    if msg.cc:
        lines.append(_address_list("Cc", msg.cc))
    if eml and msg.bcc:
        lines.append(_address_list("Bcc", msg.bcc))
    if msg.reply_to:
        lines.append(_address_list("Reply-To", msg.reply_to))
    lines.append(_unstructured("Subject", msg.subject))
    _check("Message-ID", msg.message_id)
    lines.append(f"Message-ID: {msg.message_id}")
    lines.append("MIME-Version: 1.0")
    for name, value in msg.headers.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"invalid header name: {name!r}")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name} is set by Outbox and cannot be given as a custom header")
        lines.append(_unstructured(name, value))
    if eml:
        lines.append("X-Unsent: 1")
    return lines


def _build(msg: OutgoingMessage, *, eml: bool) -> bytes:
    head = "\r\n".join(_headers(msg, eml=eml)) + "\r\n"
    return b"".join([head.encode("utf-8"), *_body(msg)])


def build_mime(msg: OutgoingMessage) -> bytes:
    """The message as RFC 5322 bytes with CRLF line endings, for SMTP (Bcc recipients are not in the
    headers)."""
    return _build(msg, eml=False)


def build_eml(msg: OutgoingMessage) -> bytes:
    """The message as a `.eml` file for the user's own mail app: with the Bcc header, and `X-Unsent: 1` so
    that
    Outlook opens it as an unsent draft the user can review and send."""
    return _build(msg, eml=True)


def eml_filename(subject: str) -> str:
    """A file name for the `.eml` download, made from the subject: "Invoice 42.eml", or "message.eml"."""
    stem = " ".join(subject.replace("/", "-").replace("\\", "-").split())[:80]
    try:
        stem = safe_filename("subject", stem)
    except MailInputError:
        stem = "message"
    stem = stem.strip(" .") or "message"
    return f"{stem}.eml"
