"""Shared by the Microsoft transports (Graph, EWS): app-only tokens through MSAL, and httpx failure mapping.

MSAL is synchronous and its `ConfidentialClientApplication` constructor does network I/O (tenant discovery),
so both the constructor and `acquire_token_for_client` run in a worker thread. One application object is kept
per `TokenSource` because MSAL's token cache lives in it: a new object per send would mean a token request per
send. MSAL serves the cached token until 5 minutes before it expires.

Failures become `TransportError(stage="token")` whose reply carries the HTTP status when known, the
`error_description`, and the first `AADSTSnnnn` code (else the OAuth `error` value). Neither the client secret
nor a token ever appears in an error text.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import msal

from app.transports import netpolicy
from app.transports.base import Reply, Stage, TransportError

__all__ = ["AccessToken", "TokenSettings", "TokenSource", "aadsts_code", "http_failure"]

_AADSTS = re.compile(r"AADSTS\d+")
_HTTP_STATUS = re.compile(r"HTTP status: (\d{3})")


def aadsts_code(text: str) -> str | None:
    """The first `AADSTSnnnn` code in a text (Entra puts it at the start of `error_description`)."""
    match = _AADSTS.search(text)
    return match.group(0) if match else None


@dataclass(frozen=True)
class TokenSettings:
    authority: str  # "https://<host>/<tenant>"
    client_id: str
    client_secret: str = field(repr=False)  # "" when a certificate is used
    scope: str  # "<resource>/.default"
    ca_bundle: str | None = None
    timeout: float = 30.0
    # True when the authority host is not one of Microsoft's (tests, a local fake): MSAL would otherwise ask
    # login.microsoftonline.com to validate it ("instance discovery"), which fails offline.
    local_authority: bool = False
    # PEM with the private key and its certificate: sign a client assertion instead of sending a secret (MSAL
    # computes the SHA-256 thumbprint from the certificate and signs with PS256).
    client_certificate: str | None = field(default=None, repr=False)
    # Where the sign-in host may be (the SSRF guard, checked at connect time); None only in transport unit tests.
    network_policy: netpolicy.NetworkPolicy | None = None

    @property
    def credential(self) -> str | dict[str, str]:
        if self.client_certificate:
            return {"private_key": self.client_certificate, "public_certificate": self.client_certificate}
        return self.client_secret


@dataclass(frozen=True)
class AccessToken:
    """A bearer token, when it expires (`time.time()` seconds) and whether it came from the cache."""

    token: str = field(repr=False)
    expires_at: float
    from_cache: bool = False


class _Http:
    """MSAL's `http_client` (its documented minimal interface: `get`, `post`, `close`, responses with
    `status_code`, `text`, `headers`) over the provider HTTP client of `netpolicy`, so that tenant discovery and
    the token request (which carries the client secret) are checked like every other provider connection.

    - The timeout is the client's (MSAL ignores its own `timeout=` when given an http_client).
    - The last HTTP status seen by the current thread is kept, because MSAL's error dict does not carry it.
    """

    def __init__(self, client: httpx.Client) -> None:
        self._client = client
        self._local = threading.local()

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> httpx.Response:
        return self._keep(self._client.get(url, params=params, headers=headers, **kwargs))

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None,
             **kwargs: Any) -> httpx.Response:
        # MSAL sends a dict (form-encoded here) or, as it recommends, a ready string (sent as it is). A dict may
        # hold bytes (the signed client assertion), which httpx would write as "b'...'": decode them first.
        body: dict[str, Any] = {"content": data} if isinstance(data, str | bytes) else {"data": data and {
            k: v.decode("ascii") if isinstance(v, bytes) else v for k, v in data.items()}}
        return self._keep(self._client.post(url, params=params, headers=headers, **body, **kwargs))

    def close(self) -> None:
        self._client.close()

    def _keep(self, response: httpx.Response) -> httpx.Response:
        self._local.status = response.status_code
        return response

    def reset_status(self) -> None:
        self._local.status = None

    @property
    def last_status(self) -> int | None:
        status: int | None = getattr(self._local, "status", None)
        return status


class TokenSource:
    """Lazily builds one MSAL application and hands out (cached) access tokens for one scope."""

    def __init__(self, settings: TokenSettings, *, provider: str) -> None:
        self._settings = settings
        self._provider = provider
        self._session = _Http(netpolicy.sync_client(settings.network_policy, ca_bundle=settings.ca_bundle,
                                                    timeout=settings.timeout))
        self._app: Any = None
        self._lock = asyncio.Lock()

    @property
    def settings(self) -> TokenSettings:
        return self._settings

    async def token(self) -> str:
        return (await self.access_token()).token

    async def access_token(self) -> AccessToken:
        """The token with its expiry: MSAL's cached one while it has 5 minutes or more left, else a new one."""
        app = await self._application()
        return await asyncio.to_thread(self._acquire, app)

    def invalidate(self, token: str) -> None:
        """Drop `token` from MSAL's cache (after a 401), so that the next `token()` asks Entra for a new one.

        `acquire_token_for_client` has no force-refresh; removing the cache entry is the supported way. Only
        the rejected token is removed, so a newer token fetched meanwhile by another task survives.
        """
        if self._app is None:
            return
        cache = self._app.token_cache
        for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN, query={"secret": token})):
            cache.remove_at(entry)

    async def aclose(self) -> None:
        self._app = None
        self._session.close()

    async def _application(self) -> Any:
        if self._app is not None:
            return self._app
        async with self._lock:  # one construction even when many sends start at once
            if self._app is None:
                self._app = await asyncio.to_thread(self._build)
            return self._app

    def _build(self) -> Any:
        s = self._settings
        self._session.reset_status()
        try:
            return msal.ConfidentialClientApplication(
                s.client_id,
                client_credential=s.credential,
                authority=s.authority,
                http_client=self._session,
                instance_discovery=not s.local_authority,
            )
        except ValueError as exc:
            raise self._construction_error(exc) from None
        except Exception as exc:
            raise self._exception_error(exc) from exc

    def _acquire(self, app: Any) -> AccessToken:
        self._session.reset_status()
        try:
            result: Mapping[str, Any] = app.acquire_token_for_client(scopes=[self._settings.scope])
        except ValueError as exc:  # a non-JSON 4xx body from the token endpoint
            raise self._fail(
                self._session.last_status, f"unreadable token endpoint answer: {exc}", None
            ) from None
        except Exception as exc:
            raise self._exception_error(exc) from exc
        token = result.get("access_token")
        if isinstance(token, str) and token:
            try:  # MSAL assumes 600 s when the endpoint gives no lifetime (PROVIDERS.md §2.2)
                lifetime = float(result.get("expires_in", 600))
            except (TypeError, ValueError):
                lifetime = 600.0
            return AccessToken(token, time.time() + lifetime, result.get("token_source") == "cache")
        description = str(result.get("error_description") or result.get("error") or "no access token")
        error = result.get("error")
        code = aadsts_code(description) or _first_error_code(result) or (str(error) if error else None)
        # A replay from MSAL's own 60 s cache of 400 answers makes no HTTP call: the status is then unknown.
        raise self._fail(self._session.last_status, description, code)

    def _construction_error(self, exc: ValueError) -> TransportError:
        """MSAL raises ValueError for a bad authority URL and for a failed tenant discovery (AADSTS90002)."""
        inner = exc.__context__
        inner_text = str(inner) if inner is not None else ""
        status_match = _HTTP_STATUS.search(inner_text)
        status = int(status_match.group(1)) if status_match else self._session.last_status
        description = _json_field(inner_text, "error_description") or str(exc)
        code = aadsts_code(inner_text) or _json_field(inner_text, "error") or "invalid_authority"
        return self._fail(status, description, code)

    def _exception_error(self, exc: Exception) -> TransportError:
        authority = self._settings.authority
        refused = netpolicy.refusal(exc)
        if refused is not None:
            return self._fail(None, refused, "address_not_allowed")
        if isinstance(exc, httpx.TimeoutException):
            return self._fail(
                None, f"no answer from {authority} within {self._settings.timeout:g}s", "timeout"
            )
        if isinstance(exc, httpx.HTTPError) and _is_tls_failure(exc):
            return self._fail(None, f"TLS failure talking to {authority}: {exc}", "connect_failed")
        if isinstance(exc, httpx.HTTPError):
            return self._fail(None, f"cannot reach {authority}: {type(exc).__name__}", "connect_failed")
        if isinstance(exc, msal.exceptions.MsalServiceError):  # 5xx from the token endpoint
            status = self._session.last_status
            return self._fail(status, f"token endpoint error: {exc}", "server_error")
        return self._fail(None, f"token acquisition failed: {type(exc).__name__}", None)

    def _fail(self, status: int | None, text: str, code: str | None) -> TransportError:
        # Defensive: Entra never echoes the secret, but a proxy or a fake could.
        text = text.replace(self._settings.client_secret, "***") if self._settings.client_secret else text
        return TransportError("token", Reply(status, text, code), provider=self._provider)


def _first_error_code(result: Mapping[str, Any]) -> str | None:
    codes = result.get("error_codes")
    if isinstance(codes, list) and codes:
        return f"AADSTS{codes[0]}"
    return None


def _json_field(text: str, key: str) -> str | None:
    """Pull one field out of the JSON body MSAL embeds in its discovery error message."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        body = json.loads(text[start:])
    except ValueError:
        return None
    value = body.get(key) if isinstance(body, dict) else None
    return str(value) if value else None


def http_failure(
    exc: httpx.HTTPError, stage: Stage, *, provider: str, host: str, timeout: float, final: bool
) -> TransportError:
    """Map an httpx failure to the error codes the classifier knows (connect_failed, tls_failed, timeout,
    disconnected). `final` marks the request that sends: if it had left when the failure came, the server
    may have accepted the message, so the error is `uncertain`."""
    if isinstance(exc, httpx.ConnectTimeout):
        return TransportError(
            "connect", Reply(None, f"connecting to {host} timed out", "timeout"), provider=provider
        )
    refused = netpolicy.refusal(exc)
    if refused is not None:  # nothing was sent: the network policy refused the address
        return TransportError("connect", Reply(None, refused, "address_not_allowed"), provider=provider)
    if isinstance(exc, httpx.ConnectError):
        if _is_tls_failure(exc):
            return TransportError(
                "tls", Reply(None, f"TLS with {host} failed: {exc}", "tls_failed"), provider=provider
            )
        return TransportError(
            "connect", Reply(None, f"cannot connect to {host}: {exc}", "connect_failed"), provider=provider
        )
    # Reading the answer failed: the request was sent in full.
    sent = isinstance(exc, httpx.ReadTimeout | httpx.ReadError | httpx.RemoteProtocolError)
    if isinstance(exc, httpx.TimeoutException):
        text = f"no answer from {host} within {timeout:g}s"
        return TransportError(
            stage, Reply(None, text, "timeout"), provider=provider, uncertain=final and sent
        )
    return TransportError(
        stage,
        Reply(None, f"connection to {host} lost: {type(exc).__name__}", "disconnected"),
        provider=provider,
        uncertain=final and sent,
    )


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(exc) or "certificate" in str(exc).lower()
