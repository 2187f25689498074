"""The name Outbox greets an SMTP server with (EHLO/HELO, RFC 5321 §4.1.1.1 and §4.1.4).

RFC 5321: the client's fully qualified domain name, or, when it has none, an address literal of the connection's
local address (``[192.0.2.10]``, ``[IPv6:2001:db8::1]``). Servers enforce it: Postfix's
``reject_non_fqdn_helo_hostname`` refuses every recipient of a client greeting with ``localhost`` (504 5.5.2), and
``socket.getfqdn()``, aiosmtplib's default, is ``localhost`` on many containers and cloud machines.

The settings may name it (`ehlo_name`); otherwise `default_ehlo_name` chooses the machine's FQDN when it is one,
else the address literal of the local address a connection to the server leaves from.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket

__all__ = ["check_ehlo_name", "default_ehlo_name", "ehlo_warning", "is_fqdn"]

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_NOT_GLOBAL = {"localhost", "localdomain", "local", "internal", "lan", "home", "invalid", "test", "example"}
_fqdn_cache: list[str] = []


def _literal_ip(name: str) -> str | None:
    """The address inside an address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]"), or None."""
    if not (name.startswith("[") and name.endswith("]")):
        return None
    inner = name[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return str(ipaddress.IPv6Address(inner[5:]))
        return str(ipaddress.IPv4Address(inner))
    except ValueError:
        return None


def _host_syntax(name: str) -> bool:
    name = name[:-1] if name.endswith(".") else name
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def is_fqdn(name: str) -> bool:
    """A fully qualified domain name: at least two labels, a top label that is not numeric nor a local-only name
    (``localhost``, ``localdomain``, ``local``, ``internal``...)."""
    if not _host_syntax(name):
        return False
    labels = name.rstrip(".").lower().split(".")
    return len(labels) >= 2 and not labels[-1].isdigit() and labels[-1] not in _NOT_GLOBAL


def check_ehlo_name(value: str) -> str:
    """The settings' value, stripped; ValueError unless it is a host name or an address literal."""
    v = value.strip()
    if _literal_ip(v) is not None or (_host_syntax(v) and not v.replace(".", "").isdigit()):
        return v
    raise ValueError("must be a host name (letters, digits, hyphens and dots, e.g. outbox.contoso.com) or an "
                     "address literal such as [192.0.2.10] or [IPv6:2001:db8::1]")


def ehlo_warning(name: str | None) -> str | None:
    """The settings warning for a configured EHLO name that is not fully qualified, else None."""
    if name is None or is_fqdn(name):
        return None
    if _literal_ip(name) is not None:
        return (f"The EHLO name {name} is an address literal: RFC 5321 allows it for a client without a DNS name, "
                "but some spam filters score it; a fully qualified name (the machine's DNS name) is better.")
    return (f"The EHLO name {name!r} is not a fully qualified domain name: servers that require one (Postfix "
            "reject_non_fqdn_helo_hostname, many spam filters) refuse every message (504 5.5.2 Helo command "
            "rejected). Use this machine's DNS name, e.g. outbox.contoso.com, or clear it for the default.")


def _machine_fqdn() -> str:
    if not _fqdn_cache:
        _fqdn_cache.append(socket.getfqdn())  # may ask DNS: once per process, off the event loop
    return _fqdn_cache[0]


def _local_address(host: str, port: int) -> str:
    """The local address a connection to host:port leaves from (a UDP connect sends nothing)."""
    for family, _, _, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect(addr)
                return str(s.getsockname()[0])
        except OSError:
            continue
    raise OSError(f"no route to {host}")


async def default_ehlo_name(host: str, port: int) -> str:
    """The machine's FQDN when it is one, else the address literal of the local address towards host:port."""
    loop = asyncio.get_running_loop()
    fqdn = await loop.run_in_executor(None, _machine_fqdn)
    if is_fqdn(fqdn):
        return fqdn.rstrip(".")
    try:
        local = await loop.run_in_executor(None, _local_address, host, port)
    except OSError:
        local = "127.0.0.1"  # the connection will fail anyway and say why
    ip = ipaddress.ip_address(local.split("%", 1)[0])
    return f"[IPv6:{ip}]" if ip.version == 6 else f"[{ip}]"
