"""OAuth 2.0 access tokens for SMTP AUTH XOAUTH2 (client credentials), cached and shared by a pool's connections.

Two sources, one interface (`SmtpTokens.access_token()` -> `AccessToken`):

* `oauth2_client_credentials`: Microsoft Entra ID through MSAL (`_msal.TokenSource`: the application object is
  built off the event loop, its token cache serves a token until 5 minutes before it expires). The scope is the
  cloud's Exchange Online resource, `https://outlook.office365.com/.default` in the global cloud: the app needs
  the application permission `SMTP.SendAsApp` with admin consent, and an Exchange service principal with
  FullAccess on the mailbox (see README "Microsoft 365 over SMTP with OAuth").
* `oauth2_token_endpoint`: any OAuth 2.0 token endpoint (RFC 6749 §4.4, `client_secret_post`) and scope, for
  other servers that accept XOAUTH2. Cached here with the same 5-minute margin.

Neither the client secret nor a token ever appears in a repr, an error text or a log line.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from app.transports import netpolicy
from app.transports._msal import AccessToken, TokenSettings, TokenSource, http_failure
from app.transports.base import Reply, TransportError
from app.transports.graph import Cloud, cloud_hosts
from app.transports.netpolicy import NetworkPolicy

__all__ = [
    "EXCHANGE_ONLINE_RESOURCES",
    "REFRESH_MARGIN",
    "AccessToken",
    "EndpointTokens",
    "EntraTokens",
    "OAuthKind",
    "SmtpOAuthConfig",
    "SmtpTokens",
    "token_claims",
    "token_source",
]

PROVIDER = "smtp"
OAuthKind = Literal["oauth2_client_credentials", "oauth2_token_endpoint"]

# A token with less than this left is not used for a new sign-in (MSAL's own rule, PROVIDERS.md §2.2).
REFRESH_MARGIN = 300.0

# Exchange Online's resource per national cloud: the audience of a token SMTP AUTH accepts. The global value
# is Microsoft's documented scope; the others are the Exchange Online hosts of those clouds (the hosts
# Connect-ExchangeOnline uses there), not confirmed against a real tenant.
EXCHANGE_ONLINE_RESOURCES: dict[str, str] = {
    "global": "https://outlook.office365.com",
    "usgov_gcch": "https://outlook.office365.us",
    "usgov_dod": "https://outlook-dod.office365.us",
    "china": "https://partner.outlook.cn",
}


@dataclass(frozen=True)
class SmtpOAuthConfig:
    """How to get the XOAUTH2 token. `kind` picks the fields that apply:

    * oauth2_client_credentials: tenant_id, client_id, client_secret or client_certificate (PEM: private key
      and certificate), cloud (authority_host: tests only);
    * oauth2_token_endpoint: token_url, client_id, client_secret, scope.
    """

    kind: OAuthKind
    client_id: str
    client_secret: str = field(repr=False)
    tenant_id: str | None = None
    cloud: Cloud = "global"
    authority_host: str | None = None  # testing override of the cloud's Entra ID host
    token_url: str | None = None
    scope: str | None = None
    ca_bundle: str | None = None
    timeout: float = 30.0
    client_certificate: str | None = field(default=None, repr=False)

    @property
    def effective_scope(self) -> str:
        if self.kind == "oauth2_client_credentials":
            return f"{EXCHANGE_ONLINE_RESOURCES[self.cloud]}/.default"
        return self.scope or ""

    @property
    def token_host(self) -> str:
        """Where the client secret is sent (https origin)."""
        if self.kind == "oauth2_client_credentials":
            return (self.authority_host or cloud_hosts(self.cloud)[0]).rstrip("/")
        u = urlsplit(self.token_url or "")
        return f"{u.scheme}://{u.netloc}"


class SmtpTokens(Protocol):
    async def access_token(self) -> AccessToken: ...

    def invalidate(self, token: str) -> None: ...

    async def aclose(self) -> None: ...


class EntraTokens:
    """Client credentials against Microsoft Entra ID through MSAL (one application object, built lazily off
    the loop, so one token cache for every connection of the pool)."""

    def __init__(self, config: SmtpOAuthConfig, policy: NetworkPolicy | None = None) -> None:
        if not (config.tenant_id and config.client_id and (config.client_secret or config.client_certificate)):
            raise ValueError("SMTP OAuth needs tenant_id, client_id and a client secret or certificate")
        default_authority = cloud_hosts(config.cloud)[0]
        authority_host = (config.authority_host or default_authority).rstrip("/")
        self._source = TokenSource(
            TokenSettings(
                authority=f"{authority_host}/{config.tenant_id}",
                client_id=config.client_id,
                client_secret=config.client_secret,
                client_certificate=config.client_certificate,
                scope=config.effective_scope,
                ca_bundle=config.ca_bundle,
                timeout=config.timeout,
                local_authority=authority_host != default_authority,
                network_policy=policy,
            ),
            provider=PROVIDER,
        )
        self.requests = 0  # tokens that did not come from MSAL's cache
        # Single flight: connections opened at once would otherwise all miss MSAL's cache together and each
        # ask Entra ID for a token.
        self._lock = asyncio.Lock()

    async def access_token(self) -> AccessToken:
        async with self._lock:
            token = await self._source.access_token()
        if not token.from_cache:
            self.requests += 1
        return token

    def invalidate(self, token: str) -> None:
        self._source.invalidate(token)

    async def aclose(self) -> None:
        await self._source.aclose()


class EndpointTokens:
    """Client credentials against any OAuth 2.0 token endpoint (form POST, `client_secret_post`)."""

    def __init__(self, config: SmtpOAuthConfig, policy: NetworkPolicy | None = None) -> None:
        if not (config.token_url and config.client_id and config.client_secret and config.scope):
            raise ValueError("SMTP OAuth with a token endpoint needs token_url, client_id, client_secret and scope")
        u = urlsplit(config.token_url)
        if u.scheme != "https" or not u.hostname:
            raise ValueError("token_url must be an https URL (the client secret is sent to it)")
        self._config = config
        self._host = u.netloc
        self._client = netpolicy.async_client(policy, ca_bundle=config.ca_bundle, timeout=config.timeout)
        self._cached: AccessToken | None = None
        self._lock = asyncio.Lock()
        self.requests = 0

    async def access_token(self) -> AccessToken:
        async with self._lock:  # one request even when every connection of the pool signs in at once
            cached = self._cached
            if cached is not None and cached.expires_at - time.time() >= REFRESH_MARGIN:
                return AccessToken(cached.token, cached.expires_at, from_cache=True)
            self._cached = await self._fetch()
            return self._cached

    def invalidate(self, token: str) -> None:
        if self._cached is not None and self._cached.token == token:
            self._cached = None

    async def aclose(self) -> None:
        self._cached = None
        await self._client.aclose()

    async def _fetch(self) -> AccessToken:
        c = self._config
        self.requests += 1
        try:
            response = await self._client.post(
                c.token_url or "",
                data={"grant_type": "client_credentials", "client_id": c.client_id,
                      "client_secret": c.client_secret, "scope": c.scope or ""},
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            err = http_failure(exc, "token", provider=PROVIDER, host=self._host, timeout=c.timeout, final=False)
            raise TransportError("token", err.reply, provider=PROVIDER) from None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self._fail(response.status_code, f"unreadable token endpoint answer (HTTP {response.status_code})",
                             "server_error" if response.status_code >= 500 else None)
        token = body.get("access_token")
        if response.status_code == 200 and isinstance(token, str) and token:
            try:
                lifetime = float(body.get("expires_in", 600))
            except (TypeError, ValueError):
                lifetime = 600.0
            return AccessToken(token, time.time() + lifetime)
        error = body.get("error")
        description = str(body.get("error_description") or error or f"HTTP {response.status_code}")
        code = str(error) if error else ("server_error" if response.status_code >= 500 else None)
        raise self._fail(response.status_code, description, code)

    def _fail(self, status: int | None, text: str, code: str | None) -> TransportError:
        secret = self._config.client_secret
        return TransportError("token", Reply(status, text.replace(secret, "***") if secret else text, code),
                              provider=PROVIDER)


def token_source(config: SmtpOAuthConfig, policy: NetworkPolicy | None) -> EntraTokens | EndpointTokens:
    """A new token source (no network I/O), connecting where the SMTP provider's network `policy` allows.
    Raises ValueError for an unusable configuration."""
    if config.kind == "oauth2_client_credentials":
        return EntraTokens(config, policy)
    return EndpointTokens(config, policy)


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT access token, read without checking its signature: for diagnostics only (which
    audience and roles Entra ID put in the token), never to trust it. {} when it is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
