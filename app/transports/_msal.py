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
import requests
from requests.adapters import HTTPAdapter

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


class _Session(requests.Session):
    """The `requests.Session` handed to MSAL as `http_client`.

    - A CA bundle given here wins over `REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE`, which requests otherwise lets
      override `session.verify` (seen on this machine). Proxies from the environment still apply.
    - MSAL ignores its own `timeout=` when given an http_client, so the timeout is applied here.
    - The last HTTP status seen by the current thread is kept, because MSAL's error dict does not carry it.
    """

    def __init__(self, *, ca_bundle: str | None, timeout: float) -> None:
        super().__init__()
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        self._local = threading.local()
        if ca_bundle is not None:
            self.verify = ca_bundle
        # MSAL's own default session retries a failed connection once; keep that (never a read retry).
        self.mount("https://", HTTPAdapter(max_retries=1))

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self._ca_bundle is not None:
            settings["verify"] = self._ca_bundle
        return settings

    # Same call as Session.request; the signature is loosened only to inject a default timeout.
    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("timeout", self._timeout)
        response = super().request(method, url, *args, **kwargs)
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
        self._session = _Session(ca_bundle=settings.ca_bundle, timeout=settings.timeout)
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
        if isinstance(exc, requests.exceptions.Timeout):
            return self._fail(
                None, f"no answer from {authority} within {self._settings.timeout:g}s", "timeout"
            )
        if isinstance(exc, requests.exceptions.SSLError):
            return self._fail(None, f"TLS failure talking to {authority}: {exc}", "connect_failed")
        if isinstance(exc, requests.exceptions.RequestException):
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
    if isinstance(exc, httpx.ConnectError):
        if "OUTBOX_PROVIDER_ALLOWED_NETWORKS" in str(exc):  # refused by the network policy (netpolicy)
            return TransportError("connect", Reply(None, str(exc), "address_not_allowed"), provider=provider)
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
