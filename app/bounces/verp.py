"""The per-message Return-Path (VERP): `bounces+<id>-<mac>@<OUTBOX_BOUNCE_DOMAIN>`, and the complaints address.

The token names the message and carries a MAC (HMAC-SHA256 under a key derived from the secret keys, 65 bits
shown), so a bounce cannot be pinned on another message by guessing ids. Every configured key is tried when
reading a token: tokens made before a key rotation still match."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from app.core.crypto import load_keys
from app.settings import Settings

LOCAL_PART = "bounces"
COMPLAINTS_LOCAL_PART = "complaints"
_TOKEN = re.compile(r"^bounces\+(\d{1,19})-([a-z2-7]{13})@(.+)$", re.IGNORECASE)


def _mac(key: str, message_id: int) -> str:
    derived = hashlib.sha256(b"outbox-verp\0" + key.encode()).digest()
    digest = hmac.new(derived, str(message_id).encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:8]).decode().rstrip("=").lower()


def return_path(message_id: int, settings: Settings) -> str | None:
    """The envelope sender for this message, or None when bounces are not read (no bounce domain)."""
    domain = settings.bounce_domain.strip()
    if not domain:
        return None
    return f"{LOCAL_PART}+{message_id}-{_mac(load_keys(settings)[0], message_id)}@{domain}"


def message_of(address: str, settings: Settings) -> int | None:
    """The message a bounce address names, if its MAC is right and the domain is ours; else None."""
    m = _TOKEN.match(address.strip().strip("<>"))
    if m is None or m.group(3).lower() != settings.bounce_domain.strip().lower():
        return None
    message_id = int(m.group(1))
    mac = m.group(2).lower()
    if any(hmac.compare_digest(mac, _mac(k, message_id)) for k in load_keys(settings)):
        return message_id
    return None


def complaints_address(settings: Settings) -> str | None:
    """Where feedback loops send complaints: OUTBOX_COMPLAINTS_ADDRESS, else complaints@<bounce domain>."""
    configured = settings.complaints_address.strip().strip("<>").strip()
    if configured:
        return configured
    domain = settings.bounce_domain.strip()
    return f"{COMPLAINTS_LOCAL_PART}@{domain}" if domain else None


def is_bounce_address(address: str, settings: Settings) -> bool:
    """`bounces@domain`, `bounces+anything@domain` or the complaints address: what the listener accepts RCPT
    for."""
    bare = address.strip().strip("<>")
    complaints = complaints_address(settings)
    if complaints is not None and bare.casefold() == complaints.casefold():
        return True
    local, _, domain = bare.rpartition("@")
    base = local.split("+", 1)[0].lower()
    return bool(settings.bounce_domain) and base == LOCAL_PART and domain.lower() == settings.bounce_domain.lower()
