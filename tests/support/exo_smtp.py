"""A local stand-in for Exchange Online's SMTP client submission (smtp.office365.com:587): aiosmtpd with STARTTLS
required, `AUTH LOGIN XOAUTH2` offered after STARTTLS (as Microsoft 365 does), and a local Entra ID fake
(`EntraAuthority`, tests/fakes/_entra.py) whose RS256-signed tokens are the only ones it accepts.

XOAUTH2 is accepted only when all of these hold, else Exchange Online's real refusal is answered
(PROVIDERS.md §4.2, §4.4):

* SMTP AUTH is enabled for the tenant and the mailbox -> else `535 5.7.139 Authentication unsuccessful,
  SmtpClientAuthentication is disabled for the Tenant|Mailbox. Visit https://aka.ms/smtp_auth_disabled ...`
* the token is signed by the fake authority, unexpired, for the audience `https://outlook.office365.com`,
  from the tenant, and carries the role `SMTP.SendAsApp`;
* the app's service principal is registered in Exchange (`service_principals`, New-ServicePrincipal) and has
  FullAccess on the mailbox named in `user=` (`mailbox_permissions`, Add-MailboxPermission).
  Any of these failing -> `535 5.7.3 Authentication unsuccessful [<server>]`: Exchange says nothing more, so
  `refusals` records which check failed, for the tests.

Password sign-in (AUTH LOGIN) follows `basic_auth`: "enabled" (checks `passwords`), "disabled" (`535 5.7.139
Authentication unsuccessful, basic authentication is disabled.`), "retired" (`550 5.7.30 Basic authentication is
not supported for Client Submission.`).

One behaviour is the fake's own choice, because Microsoft documents none: a session whose token has expired
gets `451 4.7.0` to MAIL FROM (`expire_sessions=True`), so a client that keeps a signed-in connection past its
token's lifetime is caught.
"""

from __future__ import annotations

import base64
import binascii
import collections
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jwt
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from starlette.routing import Route

from tests.fakes._entra import EntraFake
from tests.support.smtp_server import SinkHandler, free_port

__all__ = ["AUDIENCE", "EntraAuthority", "ExoSmtpServer", "exo_smtp"]

AUDIENCE = "https://outlook.office365.com"
SERVER = "AM0PR02CA0001.eurprd02.prod.outlook.com"
REFUSED = f"535 5.7.3 Authentication unsuccessful [{SERVER}]"
TENANT_DISABLED = ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. "
                   f"Visit https://aka.ms/smtp_auth_disabled for more information. [{SERVER}]")
MAILBOX_DISABLED = ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
                    f"Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. [{SERVER}]")
BASIC_DISABLED = f"535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [{SERVER}]"
BASIC_RETIRED = "550 5.7.30 Basic authentication is not supported for Client Submission."
SESSION_EXPIRED = "451 4.7.0 fake Exchange Online: the token this session signed in with has expired"


class _LongLines(SMTP):
    """Exchange Online takes an `AUTH XOAUTH2 <base64>` line of a few kilobytes (a JWT); aiosmtpd's default limit
    is 512 bytes."""

    command_size_limit = 16384
    line_length_limit = 16384

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command_size_limits = collections.defaultdict(lambda: 16384)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _LongLines(self.handler, **self.SMTP_kwargs)


class EntraAuthority(EntraFake):
    """The Entra ID fake alone (no API routes): the token endpoint of an app with `SMTP.SendAsApp`."""

    def __init__(self, *, tenant_id: str, client_id: str, client_secret: str,
                 roles: Iterable[str] = ("SMTP.SendAsApp",)) -> None:
        super().__init__(tenant_id=tenant_id, client_id=client_id, client_secret=client_secret, roles=roles)

    def _routes(self) -> list[Route]:
        return []


@dataclass
class AuthRecord:
    mechanism: str
    user: str
    ok: bool
    reason: str  # "ok" or which check failed
    jti: str | None = None


@dataclass
class ExoHandler(SinkHandler):
    authority: EntraAuthority | None = None
    tenant_id: str = ""
    service_principals: set[str] = field(default_factory=set)  # app ids registered with New-ServicePrincipal
    mailbox_permissions: dict[str, set[str]] = field(default_factory=dict)  # mailbox -> app ids with FullAccess
    smtp_auth_disabled_tenant: bool = False
    smtp_auth_disabled_mailboxes: set[str] = field(default_factory=set)
    basic_auth: Literal["enabled", "disabled", "retired"] = "enabled"
    passwords: dict[str, str] = field(default_factory=dict)
    expire_sessions: bool = True
    auths: list[AuthRecord] = field(default_factory=list)
    expired_sessions_used: int = 0  # MAIL FROM on a session whose token had expired

    @property
    def refusals(self) -> list[str]:
        return [a.reason for a in self.auths if not a.ok]

    def _record(self, mechanism: str, user: str, reason: str, jti: str | None = None) -> None:
        with self.lock:
            self.auths.append(AuthRecord(mechanism, user, reason == "ok", reason, jti))

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            blob = args[1]
        else:  # the two-step form of Microsoft's sample: "AUTH XOAUTH2", "334 ", then the response
            answer = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            blob = base64.b64encode(answer).decode()
        try:
            fields = base64.b64decode(blob, validate=True).decode().split("\x01")
            user = fields[0].removeprefix("user=")
            token = fields[1].removeprefix("auth=Bearer ")
            if not fields[0].startswith("user=") or not fields[1].startswith("auth=Bearer ") or fields[2:] != ["", ""]:
                raise ValueError("not XOAUTH2")
        except (binascii.Error, ValueError, IndexError, UnicodeDecodeError):
            self._record("XOAUTH2", "", "malformed")
            return AuthResult(success=False, handled=False, message=REFUSED)
        user_key = user.lower()
        if self.smtp_auth_disabled_tenant:
            self._record("XOAUTH2", user, "smtp_auth_disabled_tenant")
            return AuthResult(success=False, handled=False, message=TENANT_DISABLED)
        if user_key in self.smtp_auth_disabled_mailboxes:
            self._record("XOAUTH2", user, "smtp_auth_disabled_mailbox")
            return AuthResult(success=False, handled=False, message=MAILBOX_DISABLED)
        assert self.authority is not None
        try:
            claims = self.authority.authority.decode(token, audience=AUDIENCE)
        except jwt.ExpiredSignatureError:
            return self._refuse(user, "expired")
        except jwt.InvalidAudienceError:
            return self._refuse(user, "audience")
        except jwt.InvalidSignatureError:
            return self._refuse(user, "signature")
        except jwt.InvalidTokenError:
            return self._refuse(user, "invalid_token")
        if claims.get("tid") != self.tenant_id:
            return self._refuse(user, "tenant")
        if "SMTP.SendAsApp" not in claims.get("roles", []):
            return self._refuse(user, "role")
        appid = str(claims.get("appid"))
        if appid not in self.service_principals:
            return self._refuse(user, "service_principal")
        if appid not in self.mailbox_permissions.get(user_key, set()):
            return self._refuse(user, "mailbox_permission")
        self._record("XOAUTH2", user, "ok", str(claims.get("jti")))
        return AuthResult(success=True, auth_data=claims)

    def _refuse(self, user: str, reason: str) -> AuthResult:
        self._record("XOAUTH2", user, reason)
        return AuthResult(success=False, handled=False, message=REFUSED)

    def authenticate_password(self, mechanism: str, data: LoginPassword) -> AuthResult:
        user = data.login.decode()
        if self.basic_auth == "retired":
            self._record(mechanism, user, "basic_retired")
            return AuthResult(success=False, handled=False, message=BASIC_RETIRED)
        if self.basic_auth == "disabled":
            self._record(mechanism, user, "basic_disabled")
            return AuthResult(success=False, handled=False, message=BASIC_DISABLED)
        ok = self.passwords.get(user.lower()) == data.password.decode()
        self._record(mechanism, user, "ok" if ok else "password")
        return AuthResult(success=ok, handled=False, auth_data=data, message=None if ok else REFUSED)

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        claims = session.auth_data if isinstance(session.auth_data, dict) else None
        if self.expire_sessions and claims is not None and int(claims.get("exp", 0)) <= time.time():
            with self.lock:
                self.expired_sessions_used += 1
            return SESSION_EXPIRED
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


class ExoSmtpServer:
    """The server and its Entra ID fake. `ca_path` is the CA both certificates chain to (one file to trust)."""

    def __init__(self, *, tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47",
                 client_id: str = "0b5e1c4a-6f1e-4b5f-9d52-1c2b3a4d5e6f", client_secret: str = "smtp-app-secret",
                 mailbox: str = "batch@contoso.com", directory: Path) -> None:
        self.entra = EntraAuthority(tenant_id=tenant_id, client_id=client_id, client_secret=client_secret)
        self.mailbox = mailbox
        self.handler = ExoHandler(authority=self.entra, tenant_id=tenant_id,
                                  service_principals={client_id}, mailbox_permissions={mailbox: {client_id}})
        self.port = free_port()
        ca = trustme.CA()
        self.ca_path = str(directory / "exo-ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        handler = self.handler

        def authenticator(_server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any) -> AuthResult:
            assert isinstance(data, LoginPassword)
            return handler.authenticate_password(mechanism, data)

        self.controller = _Controller(
            self.handler, hostname="127.0.0.1", port=self.port, tls_context=ctx, require_starttls=True,
            auth_require_tls=True, auth_required=True, authenticator=authenticator,
            auth_exclude_mechanism=["PLAIN"], server_hostname=SERVER)

    def start(self) -> ExoSmtpServer:
        self.entra.start()
        self.controller.start()
        # One CA file for both: append the Entra fake's CA (a different trustme CA) to ours.
        with open(self.ca_path, "a") as out, open(self.entra.ca_path) as entra_ca:
            out.write(entra_ca.read())
        return self

    def stop(self) -> None:
        self.controller.stop()
        self.entra.stop()

    @property
    def received(self) -> list[Any]:
        return self.handler.received

    @property
    def token_requests(self) -> int:
        return len(self.entra.token_requests)


@contextmanager
def exo_smtp(directory: Path) -> Iterator[ExoSmtpServer]:
    server = ExoSmtpServer(directory=directory).start()
    try:
        yield server
    finally:
        server.stop()
