"""A fake Microsoft Entra ID authority (the parts MSAL calls for client credentials), shared by the Graph and
EWS fakes, and `EntraFake`: an `HttpsFake` that serves it on its own port beside the fake's protocol.

- `GET /{tenant}/v2.0/.well-known/openid-configuration` and `POST /{tenant}/oauth2/v2.0/token` exactly as
  msal 1.39 calls them (PROVIDERS.md §2.4), issuing JWTs signed with the authority's own RSA key (RS256) with
  `aud`, `tid`, `appid`, `roles` and `exp` claims; `FakeAuthority.decode()` checks a token as a resource server
  does (signature, audience, expiry), e.g. the fake Exchange Online SMTP server in tests/support.
- The `discovery` and `token` routes take scripted answers (`token_error(...)` and friends).
"""

from __future__ import annotations

import base64
import itertools
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._https import BackgroundServer, HttpsFake, Scripted, ScriptQueues, request_headers

__all__ = [
    "EntraFake",
    "FakeAuthority",
    "TokenRequest",
    "app_not_found",
    "expired_client_secret",
    "invalid_client_secret",
    "tenant_not_found",
    "token_error",
    "token_server_error",
]


def token_error(status: int, error: str, description: str, code: int) -> Scripted:
    body = {
        "error": error,
        "error_description": description,
        "error_codes": [code],
        "timestamp": "2026-11-01 00:00:00Z",
        "trace_id": "00000000-0000-0000-0000-000000000000",
        "correlation_id": "00000000-0000-0000-0000-000000000000",
    }
    return Scripted(status, body)


def invalid_client_secret() -> Scripted:
    return token_error(
        401,
        "invalid_client",
        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID, for a secret added to app 'fake'.",
        7000215,
    )


def expired_client_secret() -> Scripted:
    return token_error(
        401,
        "invalid_client",
        "AADSTS7000222: The provided client secret keys for app 'fake' are expired.",
        7000222,
    )


def app_not_found(client_id: str = "fake") -> Scripted:
    return token_error(
        400,
        "unauthorized_client",
        f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory 'fake'.",
        700016,
    )


def tenant_not_found(tenant: str = "fake") -> Scripted:
    """For the `discovery` route: MSAL raises ValueError while constructing the application."""
    return token_error(
        400,
        "invalid_tenant",
        f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
        90002,
    )


def token_server_error() -> Scripted:
    return Scripted(500, {"error": "server_error", "error_description": "AADSTS50000: fake outage"})


@dataclass(frozen=True)
class TokenRequest:
    tenant: str
    form: dict[str, str]
    headers: dict[str, str]


class FakeAuthority:
    """The Entra ID endpoints MSAL uses for client credentials, as routes to mount in a fake's app.

    Natural answers: an unknown tenant gets AADSTS90002 on discovery (MSAL raises ValueError), an unknown
    client id AADSTS700016, a wrong secret AADSTS7000215, a secret in `expired_secrets` AADSTS7000222.
    """

    def __init__(
        self,
        server: BackgroundServer,
        scripts: ScriptQueues,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        roles: Iterable[str] = ("Mail.Send",),
    ) -> None:
        self._server = server
        self._scripts = scripts
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.expired_secrets: set[str] = set()
        self._default_roles = list(roles)
        self.roles: list[str] = list(roles)
        self.expires_in = 3599
        self.extra_claims: dict[str, Any] = {}  # added to every token issued (e.g. a user claim for Dovecot)
        # Certificates uploaded to the app registration: base64url SHA-256 thumbprint -> certificate.
        self.certificates: dict[str, x509.Certificate] = {}
        self.token_requests: list[TokenRequest] = []
        self.discovery_requests = 0
        self._valid: set[str] = set()
        self._counter = itertools.count(1)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = f"fake-{uuid.uuid4().hex[:8]}"
        self.service_principal_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{client_id}"))

    @property
    def public_key_pem(self) -> bytes:
        """The key a resource server (or Dovecot's oauth2 passdb) verifies this authority's tokens with."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def register_certificate(self, cert_pem: bytes) -> str:
        """Upload a certificate to the app registration; returns its SHA-1 thumbprint (hex, as the portal shows)."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        sha256 = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA256())).rstrip(b"=").decode()
        self.certificates[sha256] = cert
        return cert.fingerprint(hashes.SHA1()).hex().upper()  # what the portal shows (identification only)

    def _assertion_error(self, assertion: str, tenant: str) -> Scripted | None:
        """Check a client assertion (RFC 7523) as Entra does: signed by an uploaded certificate, for this
        token endpoint, issued by the client. None when it is good."""
        bad_signature = token_error(401, "invalid_client", "AADSTS700027: Client assertion failed signature "
                                    "validation.", 700027)
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            return bad_signature
        cert = self.certificates.get(str(header.get("x5t#S256", "")).rstrip("="))  # MSAL keeps the padding
        if cert is None:
            return token_error(401, "invalid_client", "AADSTS700027: The certificate with identifier used to sign "
                               "the client assertion is not registered on application.", 700027)
        try:
            jwt.decode(assertion, cert.public_key(), algorithms=["PS256", "RS256"],  # type: ignore[arg-type]
                       audience=f"{self._server.url}/{tenant}/oauth2/v2.0/token", issuer=self.client_id)
        except jwt.InvalidTokenError:
            return bad_signature
        return None

    def decode(self, token: str, *, audience: str) -> dict[str, Any]:
        """The claims of a token this authority signed for `audience`, unexpired. Raises jwt.InvalidTokenError
        (a subclass names the reason: ExpiredSignatureError, InvalidAudienceError, InvalidSignatureError...)."""
        claims: dict[str, Any] = jwt.decode(token, self._key.public_key(), algorithms=["RS256"], audience=audience)
        return claims

    def routes(self) -> list[Route]:
        return [
            Route("/{tenant}/v2.0/.well-known/openid-configuration", self._discovery, methods=["GET"]),
            Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
        ]

    def is_valid(self, token: str) -> bool:
        return token in self._valid

    def revoke_tokens(self) -> None:
        """Make every token issued so far invalid (as if expired early): the next API call gets 401."""
        self._valid.clear()

    def reset(self) -> None:
        self.roles = list(self._default_roles)
        self.extra_claims.clear()
        self.certificates.clear()
        self.token_requests.clear()
        self.discovery_requests = 0
        self.expired_secrets.clear()
        self._valid.clear()

    async def _discovery(self, request: Request) -> Response:
        self.discovery_requests += 1
        tenant = request.path_params["tenant"]
        if (scripted := await self._scripts.play("discovery", self._server)) is not None:
            return scripted
        if tenant != self.tenant_id:
            return tenant_not_found(tenant).response()
        base = f"{self._server.url}/{tenant}"
        return JSONResponse(
            {
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "issuer": f"{self._server.url}/{tenant}/v2.0",
            }
        )

    async def _token(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        self.token_requests.append(TokenRequest(tenant, form, request_headers(request)))
        if (scripted := await self._scripts.play("token", self._server)) is not None:
            return scripted
        if tenant != self.tenant_id:
            return tenant_not_found(tenant).response()
        if form.get("grant_type") != "client_credentials":
            return token_error(
                400, "unsupported_grant_type", "AADSTS70003: unsupported grant", 70003
            ).response()
        if form.get("client_id") != self.client_id:
            return app_not_found(form.get("client_id", "")).response()
        if form.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            if (refused := self._assertion_error(form.get("client_assertion", ""), tenant)) is not None:
                return refused.response()
        else:
            secret = form.get("client_secret", "")
            if secret in self.expired_secrets:
                return expired_client_secret().response()
            if secret != self.client_secret:
                return invalid_client_secret().response()
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return token_error(
                400, "invalid_scope", "AADSTS70011: scope must be <resource>/.default", 70011
            ).response()
        token = self._issue(tenant, scope.removesuffix("/.default"))
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "ext_expires_in": self.expires_in,
                "access_token": token,
            }
        )

    def _issue(self, tenant: str, audience: str) -> str:
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.expires_in,
            "tid": tenant,
            "appid": self.client_id,
            "oid": self.service_principal_id,  # the enterprise application (service principal) object id
            "sub": self.service_principal_id,  # app-only tokens: the subject is the service principal
            "roles": list(self.roles),
            "jti": f"fake-{next(self._counter)}",
            **self.extra_claims,
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.key_id})
        self._valid.add(token)
        return token


class EntraFake(HttpsFake):
    """An `HttpsFake` with its own Entra ID authority on the same port: `authority_host` (= `url`),
    `tenant_id`, `client_id`, `client_secret`, `token_requests`. Subclasses add their routes in `_routes()`
    (the authority's come first) and may push answers for their own routes to `_scripts` too."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        roles: Iterable[str],
    ) -> None:
        super().__init__(host=host, port=port)
        self._scripts = ScriptQueues()
        self.authority = FakeAuthority(
            self._server,
            self._scripts,
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            roles=roles,
        )

    def start(self) -> Self:
        self._server.start(Starlette(routes=[*self.authority.routes(), *self._routes()]))
        return self

    def reset(self) -> None:
        """Forget records, scripted answers, issued tokens and changed roles."""
        super().reset()
        self._scripts.clear()
        self.authority.reset()

    def revoke_tokens(self) -> None:
        self.authority.revoke_tokens()

    @property
    def authority_host(self) -> str:
        return self._server.url

    @property
    def tenant_id(self) -> str:
        return self.authority.tenant_id

    @property
    def client_id(self) -> str:
        return self.authority.client_id

    @property
    def client_secret(self) -> str:
        return self.authority.client_secret

    @property
    def token_requests(self) -> list[TokenRequest]:
        return self.authority.token_requests
