"""Where providers may connect: the SSRF guard, checked on the resolved address at connect time.

An administrator can point SMTP at any host; without this, that is a way to reach the database, the metadata
service (169.254.169.254) or any internal service from the worker. Addresses that are not globally routable
(private, loopback, link-local with the cloud metadata address, carrier-grade NAT, unspecified, reserved) and
multicast addresses are refused unless `OUTBOX_PROVIDER_ALLOWED_NETWORKS` names a network that contains them
(an internal relay: `10.0.0.25/32`). The name is resolved here and the connection made to the address that was
checked, so a DNS answer that changes between check and connect (rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressNotAllowed(OSError):
    """The host resolves only to addresses providers may not reach."""


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """Comma-separated networks or addresses ("10.0.0.0/8, 192.0.2.7, ::1"); raises ValueError naming the bad one."""
    out = []
    for item in (v.strip() for v in value.split(",")):
        if item:
            try:
                out.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ValueError(f"{item!r} is not a network or address") from exc
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    allowed: tuple[IPNetwork, ...] = ()

    def allows(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allowed):
            return True
        return ip.is_global and not ip.is_multicast

    def describe(self) -> str:
        return ", ".join(map(str, self.allowed)) or "none"


def _kind(ip: IPAddress) -> str:
    for attr, name in (("is_loopback", "loopback"), ("is_link_local", "link-local (cloud metadata)"),
                       ("is_private", "private"), ("is_multicast", "multicast"), ("is_unspecified", "unspecified")):
        if getattr(ip, attr):
            return name
    return "not globally routable"


async def connect(host: str, port: int, timeout: float, policy: NetworkPolicy) -> socket.socket:
    """A connected, non-blocking TCP socket to the first allowed address of `host`. Raises AddressNotAllowed
    when every address is refused, TimeoutError or OSError when none answers."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    refused: list[str] = []
    error: OSError | None = None
    for family, type_, proto, _, addr in infos:
        ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
        if not policy.allows(ip):
            refused.append(f"{ip} ({_kind(ip)})")
            continue
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, addr), timeout)
            return sock
        except (OSError, TimeoutError) as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise
            error = exc
    if error is not None:
        raise error
    raise AddressNotAllowed(
        f"{host} resolves to {', '.join(_unique(refused))}: providers may not connect there unless "
        f"OUTBOX_PROVIDER_ALLOWED_NETWORKS includes it (allowed now: {policy.describe()})")


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy applied at connect time: the host is resolved here and the
    connection made to the checked address (TLS still uses the URL's host name for SNI and the certificate)."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
        refused: list[str] = []
        for *_, addr in infos:
            ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
            if self._policy.allows(ip):
                return await self._inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            refused.append(f"{ip} ({_kind(ip)})")
        raise httpcore.ConnectError(
            f"{host} resolves to {', '.join(_unique(refused))}: providers may not connect there unless "
            f"OUTBOX_PROVIDER_ALLOWED_NETWORKS includes it (allowed now: {self._policy.describe()})")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def http_transport(policy: NetworkPolicy, verify: ssl.SSLContext | bool) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(verify=verify)
    transport._pool._network_backend = _CheckedBackend(policy)  # httpx has no public hook
    return transport
