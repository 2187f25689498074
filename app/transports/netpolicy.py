"""Where providers may connect: the SSRF guard, checked on the resolved address at connect time.

An administrator can point a provider at any host (the SMTP server, the EWS URL, an OAuth token URL, and where
overrides are allowed the Graph endpoint and the Entra ID sign-in host); without this, that is a way to reach the
database, the metadata service (169.254.169.254) or any internal service from the worker, with a password or a
client secret. Every provider connection is made here: `connect` (SMTP) and the HTTP clients at the end.

Addresses that are not globally routable (private, loopback, link-local with the cloud metadata address,
carrier-grade NAT, unspecified, reserved) and multicast addresses are refused unless
`OUTBOX_PROVIDER_ALLOWED_NETWORKS` names a network that contains them (an internal relay: `10.0.0.25/32`). The
name is resolved here and the connection made to the address that was checked, so a DNS answer that changes
between check and connect (rebinding) cannot slip through.
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


def allowed(host: str, infos: Iterable[tuple[Any, ...]], policy: NetworkPolicy) -> list[tuple[Any, ...]]:
    """The `getaddrinfo` entries of `host` the policy allows, in order. Raises AddressNotAllowed (with the
    addresses, what kind they are and the setting that would allow them) when it allows none."""
    ok: list[tuple[Any, ...]] = []
    refused: list[str] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if policy.allows(ip):
            ok.append(info)
        else:
            refused.append(f"{ip} ({_kind(ip)})")
    if not ok:
        raise AddressNotAllowed(
            f"{host} resolves to {', '.join(dict.fromkeys(refused)) or 'no address'}: providers may not connect "
            f"there unless OUTBOX_PROVIDER_ALLOWED_NETWORKS includes it (allowed now: {policy.describe()})")
    return ok


def refusal(exc: BaseException) -> str | None:
    """The policy's refusal text when `exc` is (or was caused by) one, else None: an httpx error keeps the
    backend's exception as its cause."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain; bounded in case of a cycle
        if seen is None:
            return None
        if isinstance(seen, AddressNotAllowed | _Refused):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


async def connect(host: str, port: int, timeout: float, policy: NetworkPolicy) -> socket.socket:
    """A connected, non-blocking TCP socket to the first allowed address of `host` that answers (SMTP). Raises
    AddressNotAllowed when every address is refused, TimeoutError or OSError when none answers."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    error: OSError | None = None
    for family, type_, proto, _, addr in allowed(host, infos, policy):
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
    assert error is not None  # allowed() returns at least one address
    raise error


class _Refused(httpcore.ConnectError):
    """Raised by the HTTP backends below; httpx turns it into an `httpx.ConnectError` caused by it."""


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy applied at connect time: the host is resolved here and the
    connection made to a checked address (TLS still uses the URL's host name for SNI and the certificate)."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
            ok = allowed(host, infos, self._policy)
        except AddressNotAllowed as exc:
            raise _Refused(str(exc)) from exc
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:  # a name that does not resolve, reported as httpcore's own backend would
            raise httpcore.ConnectError(str(exc)) from exc
        for n, info in enumerate(ok):
            try:
                return await self._inner.connect_tcp(str(info[4][0]), port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                if n == len(ok) - 1:
                    raise
        raise AssertionError("unreachable")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _CheckedSyncBackend(httpcore.NetworkBackend):
    """The same for blocking clients (MSAL runs in a worker thread)."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        try:
            ok = allowed(host, socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), self._policy)
        except AddressNotAllowed as exc:
            raise _Refused(str(exc)) from exc
        except OSError as exc:  # a name that does not resolve, as httpcore reports it
            raise httpcore.ConnectError(str(exc)) from exc
        for n, info in enumerate(ok):
            try:
                return self._inner.connect_tcp(str(info[4][0]), port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                if n == len(ok) - 1:
                    raise
        raise AssertionError("unreachable")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# ---------------------------------------------------------------- the HTTP clients of every provider
# Graph, the Entra ID sign-in (MSAL), an OAuth token endpoint (SMTP XOAUTH2) and EWS are all built here, so
# that no provider request leaves without the check. No proxy from the environment (a proxy would resolve and
# connect for us, past the check) and no redirects (each hop would need the check, and a token request must
# not be replayed elsewhere).

def _verify(ca_bundle: str | None) -> ssl.SSLContext | bool:
    # httpx 0.28 deprecates verify=<path>; an SSLContext is the supported form.
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True


def async_client(policy: NetworkPolicy | None, *, ca_bundle: str | None, timeout: float,
                 limits: httpx.Limits | None = None) -> httpx.AsyncClient:
    """The HTTP client of an async provider transport (Graph, EWS, a token endpoint). `policy` None: no check
    (only transport unit tests build configurations without one; `providers.runtime` always passes it)."""
    transport = httpx.AsyncHTTPTransport(verify=_verify(ca_bundle), limits=limits or httpx.Limits())
    if policy is not None:
        transport._pool._network_backend = _CheckedBackend(policy)  # httpx has no public hook
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeout), follow_redirects=False,
                             trust_env=False)


def sync_client(policy: NetworkPolicy | None, *, ca_bundle: str | None, timeout: float) -> httpx.Client:
    """The blocking HTTP client MSAL uses (tenant discovery and the token request). A failed connection is
    tried once more, as MSAL's own default session does (never a request that was sent)."""
    transport = httpx.HTTPTransport(verify=_verify(ca_bundle), retries=1)
    if policy is not None:
        transport._pool._network_backend = _CheckedSyncBackend(policy)
    return httpx.Client(transport=transport, timeout=httpx.Timeout(timeout), follow_redirects=False,
                        trust_env=False)
