"""Input checks done at the API before anything is stored (RELIABILITY.md (c)).

Python 3.11.7 lacks `email.policy.verify_generated_headers` and `getaddresses(strict=)` (the CVE-2024-6923 and
CVE-2023-27043 fixes), and aiosmtplib silently *removes* CR/LF from addresses instead of refusing them, so
every
header value and address is checked here, and refused with a clear reason, before it reaches a builder or a
transport.

Decisions (documented because clients see them):

* **Control characters.** CR, LF, NUL, every other C0 control, DEL, every C1 control (U+0080-U+009F, which
  includes NEL) and the Unicode line/paragraph separators (U+2028, U+2029) are refused in header text, names
  and
  addresses: `str.splitlines()` and some mail software treat them as line breaks. **Tab is accepted in header
  text** (subject, names, custom header values): it is folding white space in RFC 5322, it can neither end a
  header
  nor start a new one, and the builder encodes it safely. Tab is refused in addresses.
* **Special-use domains.** Refused: `localhost`, `*.localhost`, `*.local`, `*.test`, `*.invalid`, `*.onion`,
  `*.arpa` (email-validator's IANA list). Outbox sends real mail; such a domain can never be delivered
  globally
  (`localhost` would even loop to the relay itself), so the client gets a 422 now instead of a bounce later.
  `example.com`, `example.net` and `example.org` are accepted (RFC 6761 says they are not special; tests use
  them).
* **Single-label domains** (`user@contoso`) are refused with the reason Microsoft 365 gives (`501 5.1.6`).
* **IP literals, quoted local parts, display-name forms** (`Name <a@b>`) are refused: names travel in their
  own
  fields, and these forms are where parser differentials (and header injection) live.
* **Normal form.** The domain is returned in its IDNA ASCII form (lower case, `bücher.example` ->
  `xn--bcher-kva.example`), so an address with an ASCII local part never needs SMTPUTF8 and allowlists
  compare on
  the homograph-safe form. A non-ASCII local part is accepted (NFC-normalised); such an address needs a
  server with
  SMTPUTF8 (see `needs_smtputf8`), and the SMTP transport refuses it clearly when the server lacks it.
* **Duplicates** in one list are dropped (first one kept), compared case-insensitively: nobody wants the same
  message twice. Duplicates *across* To/Cc/Bcc are left to the caller.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from app.core.errors import InvalidInput

__all__ = [
    "MailInputError",
    "check_content_type",
    "check_header_text",
    "needs_smtputf8",
    "normalize_address",
    "normalize_addresses",
    "safe_filename",
]

MAX_ADDRESS_LENGTH = 254  # RFC 5321 path limit minus the angle brackets
MAX_LOCAL_PART_OCTETS = 64  # RFC 5321 4.5.3.1.1
MAX_FILENAME_CHARS = 150
MAX_FILENAME_BYTES = 240  # below the 255-byte limit of common file systems, room for a "(1)" suffix
MAX_EXTENSION_CHARS = 16
MAX_CONTENT_TYPE_LENGTH = 255

# C0 controls except tab, DEL, C1 controls, and the Unicode line and paragraph separators.
_HEADER_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_ADDRESS_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Bidi embeddings/overrides/isolates and marks: used to disguise "exe.pdf" as "fdp.exe" (CVE-2021-42574
# style).
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Characters Windows refuses in file names; mail clients would mangle them anyway.
_WINDOWS_RESERVED = re.compile(r'[<>:"|?*]')
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_CONTENT_TYPE = re.compile(
    rf"""\A({_TOKEN})/({_TOKEN})                       # type/subtype
         ((?:[ \t]*;[ \t]*{_TOKEN}[ \t]*=[ \t]*        # ; name=
              (?:{_TOKEN}|"(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*")  # token or quoted-string
         )*)[ \t]*;?[ \t]*\Z""",
    re.VERBOSE,
)
_PARAM_NAME = re.compile(rf";[ \t]*({_TOKEN})[ \t]*=")
_SPECIAL_USE_HINT = "localhost, .local, .test, .invalid, .onion and .arpa"


class MailInputError(InvalidInput, ValueError):
    """A field of a message that cannot be accepted. `field` names it ("to[2]"), `reason` says why, in
    English. It is an `InvalidInput`: raised in a request, the API answers 422 naming the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", errors=[{"field": field, "message": reason}])
        self.field = field
        self.reason = reason


def _describe(ch: str) -> str:
    names = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\x00": "a NUL character",
             "\t": "a tab"}
    return names.get(ch, f"the control character U+{ord(ch):04X}")


def check_header_text(field: str, value: str, *, max_len: int = 998) -> str:
    """Refuse text that could break out of a header: CR, LF, NUL, other C0/C1 controls, U+2028/U+2029.

    Tab is allowed (see the module docstring). Returns `value` unchanged.
    """
    bad = _HEADER_FORBIDDEN.search(value)
    if bad:
        raise MailInputError(field, f"must not contain {_describe(bad.group())} (header injection)")
    if len(value) > max_len:
        raise MailInputError(field, f"is too long ({len(value)} characters; at most {max_len})")
    return value


# RFC 5322 dot-atom of ASCII characters: what email-validator accepts for a plain local part, unchanged.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_valid_domains: dict[str, str] = {}  # domain as given -> its normal form, for domains that passed in full


def normalize_address(field: str, value: str) -> str:
    """Validate one bare e-mail address and return its normal form (see the module docstring).

    Validation was most of a bulk submission's CPU, so results are memoised: whole addresses (senders and
    regular recipients repeat), and domains already validated in full, for which a plain ASCII local part
    is then checked here by the same dot-atom rule."""
    result = _normalize_cached(value)
    if isinstance(result, _Refusal):
        raise MailInputError(field, result.reason)
    return result


class _Refusal:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


@lru_cache(maxsize=65536)
def _normalize_cached(value: str) -> str | _Refusal:
    local, at, domain = value.rpartition("@")
    known = _valid_domains.get(domain) if at else None
    if known is not None and len(value) <= MAX_ADDRESS_LENGTH and len(local) <= MAX_LOCAL_PART_OCTETS \
            and _PLAIN_LOCAL.match(local):
        return f"{local}@{known}"
    try:
        normal = _normalize_full("value", value)
    except MailInputError as exc:
        return _Refusal(exc.reason)
    if at and len(_valid_domains) < 65536:
        _valid_domains[domain] = normal.rpartition("@")[2]
    return normal


def _normalize_full(field: str, value: str) -> str:
    bad = _ADDRESS_FORBIDDEN.search(value)
    if bad:
        raise MailInputError(field, f"must not contain {_describe(bad.group())}")
    value = value.strip(" ")
    if not value:
        raise MailInputError(field, "is empty")
    if "<" in value or ">" in value:
        raise MailInputError(
            field, "must be a bare address like user@example.com, not 'Name <user@example.com>'; "
                   "names go in their own field")
    if value.startswith('"') or '"@' in value:
        raise MailInputError(field, "quoted local parts (\"...\"@example.com) are not accepted")
    if value.endswith("]") and "@[" in value:
        raise MailInputError(
            field, "IP-address literals (user@[192.0.2.1]) are not accepted; use a domain name")
    if len(value) > MAX_ADDRESS_LENGTH:
        raise MailInputError(field, f"is too long (at most {MAX_ADDRESS_LENGTH} characters)")
    try:
        # globally_deliverable=False only lifts the "needs a period" and "TLD ends with a letter" checks,
        # which we redo below with reasons users understand; special-use names are still refused.
        info = validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
            globally_deliverable=False,
            test_environment=False,
        )
    except EmailNotValidError as exc:
        reason = str(exc)
        if "special-use" in reason:
            reason = (f"the domain is a special-use name that cannot receive mail ({_SPECIAL_USE_HINT} "
                      "are refused)")
        raise MailInputError(field, reason) from exc
    domain = info.ascii_domain.lower()
    if "." not in domain:
        raise MailInputError(
            field, f"'{info.domain}' is a single-label domain (no suffix such as .com); Microsoft 365 "
                   "rejects such recipients with '501 5.1.6 Recipient addresses in single label domains "
                   "not accepted'")
    if not domain[-1].isalpha():
        raise MailInputError(field, f"'{info.domain}' is not a domain name (it does not end in a top-level "
                                    "domain such as .com); IP addresses are not accepted")
    local = info.ascii_local_part if info.ascii_local_part is not None else info.local_part
    if len(local.encode()) > MAX_LOCAL_PART_OCTETS:
        raise MailInputError(
            field, f"the part before the @-sign is longer than {MAX_LOCAL_PART_OCTETS} octets")
    return f"{local}@{domain}"


def normalize_addresses(field: str, values: list[str], *, max_count: int) -> list[str]:
    """Validate a list of addresses (`field[i]` in errors) and drop case-insensitive duplicates, keeping the
    first."""
    if len(values) > max_count:
        raise MailInputError(field, f"has {len(values)} addresses; at most {max_count} are allowed")
    seen: set[str] = set()
    out: list[str] = []
    for i, raw in enumerate(values):
        addr = normalize_address(f"{field}[{i}]", raw)
        key = addr.casefold()
        if key not in seen:
            seen.add(key)
            out.append(addr)
    return out


def needs_smtputf8(addresses: Iterable[str]) -> bool:
    """True if any (normalised) address has non-ASCII characters, so the server must offer SMTPUTF8."""
    return any(not a.isascii() for a in addresses)


def _cap_filename(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > MAX_EXTENSION_CHARS:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    stem = stem[: MAX_FILENAME_CHARS - len(suffix)]
    while len((stem + suffix).encode()) > MAX_FILENAME_BYTES:
        stem = stem[:-1]
    return (stem.rstrip(" .") or "file") + suffix


def safe_filename(field: str, name: str) -> str:
    """A file name safe to put in a MIME header and to save: the base name only (both / and \\ separators),
    without control or bidi-override characters or Windows-reserved characters (replaced by "_"),
    NFC-normalised,
    capped in length with the extension kept. Refuses a name that ends up empty (or "." / "..")."""
    name = unicodedata.normalize("NFC", name)
    name = _CONTROL.sub("", name)
    name = _BIDI.sub("", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _WINDOWS_RESERVED.sub("_", name)
    # Windows drops trailing dots and spaces, which would change the extension a user sees.
    name = name.strip().rstrip(". ")
    if not name or set(name) <= {"."}:
        raise MailInputError(field, "is empty once path, control and bidi characters are removed")
    if len(name) > MAX_FILENAME_CHARS or len(name.encode()) > MAX_FILENAME_BYTES:
        name = _cap_filename(name)
    return name


def check_content_type(field: str, value: str) -> str:
    """Check a MIME type like "application/pdf" or "text/csv; charset=utf-8"; returns it with the type/subtype
    in lower case and no surrounding white space."""
    bad = _HEADER_FORBIDDEN.search(value)
    if bad:
        raise MailInputError(field, f"must not contain {_describe(bad.group())}")
    value = value.strip()
    if len(value) > MAX_CONTENT_TYPE_LENGTH:
        raise MailInputError(field, f"is too long (at most {MAX_CONTENT_TYPE_LENGTH} characters)")
    if not value.isascii():
        raise MailInputError(field, "must be ASCII (a media type and parameters such as charset=utf-8)")
    m = _CONTENT_TYPE.match(value)
    if m is None:
        raise MailInputError(field, f"'{value}' is not a media type like 'application/pdf'")
    params = m.group(3).strip()
    for param in _PARAM_NAME.findall(params):
        # The file name comes from `filename` (checked by the file-name rules); a second one here would
        # reach the recipient unchecked.
        if param.split("*", 1)[0].lower() in ("name", "filename"):
            raise MailInputError(field, f"must not carry a {param.split('*', 1)[0].lower()} parameter: "
                                        "give the file name in `filename`")
    return f"{m.group(1).lower()}/{m.group(2).lower()}{params}"
