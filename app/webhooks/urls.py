"""Which webhook URLs Outbox will call: http(s) only, no credentials in the URL, and (unless
OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS) only public addresses, checked when the URL is saved and again, on the
resolved addresses, before every delivery (a name may later resolve elsewhere)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL = 2000


class UrlRefused(ValueError):
    """The reason a URL may not be called, for the `url` field or the delivery log."""


def parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL, or UrlRefused."""
    if len(url) > MAX_URL:
        raise UrlRefused(f"at most {MAX_URL} characters")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise UrlRefused("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("must be an http:// or https:// URL")
    if not parts.hostname:
        raise UrlRefused("has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("must not contain a user name or password (the payload is signed instead)")
    if parts.fragment:
        raise UrlRefused("must not contain a #fragment")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UrlRefused(f"its host {host!r} does not resolve ({exc.strerror or exc})") from None
    return sorted({str(i[4][0]) for i in infos})


async def check(url: str, *, allow_private: bool) -> None:
    """UrlRefused unless Outbox may call `url` now."""
    _, host, port = parse(url)
    addresses = await resolve(host, port)
    if not allow_private:
        bad = [a for a in addresses if _private(a)]
        if bad:
            raise UrlRefused(f"its host {host!r} is a private, loopback or link-local address ({bad[0]}); "
                             "set OUTBOX_WEBHOOK_ALLOW_PRIVATE_URLS=true to allow receivers on your own network")
