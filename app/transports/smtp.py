"""SMTP through aiosmtplib: a small pool of reused connections per configuration.

Facts this relies on (../shared/PROVIDERS.md §5, TRAPS.md): `start_tls=True` makes STARTTLS required (the
default would silently downgrade); a configured user name against a server without AUTH raises a plain
`SMTPException`; a partial recipient refusal does not raise; 421 and read timeouts close the connection.
A message goes out as MAIL, RCPT and DATA steps (`_transaction`) so a lost connection is placed exactly: only a
loss after the final "." was written and before its reply is `uncertain` (tests/mta/test_uncertain.py).

Sign-in is done here, not by aiosmtplib's `login()`, which tries every mechanism the server offers (PLAIN, then
LOGIN): one wrong password would count as two failed sign-ins against a lock-out policy. Outbox calls ONE
mechanism, once: the one the settings name, else the first of the server's list that works with a password.
With OAuth (`SmtpConfig.oauth`) it is `AUTH XOAUTH2` with a token shared by the pool's connections; a
connection whose token has less than `REFRESH_MARGIN` left is not reused but replaced (SMTP has no re-AUTH).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Literal

import aiosmtplib

from app.transports import netpolicy
from app.transports.base import OutgoingMessage, Reply, SendResult, Stage, TransportError
from app.transports.ehlo import default_ehlo_name
from app.transports.netpolicy import AddressNotAllowed, NetworkPolicy
from app.transports.oauth import REFRESH_MARGIN, SmtpOAuthConfig, SmtpTokens, token_source

TlsMode = Literal["none", "starttls", "tls"]
PasswordMechanism = Literal["PLAIN", "LOGIN", "CRAM-MD5"]
# Mechanisms Outbox can use with a password, by their aiosmtplib method.
_PASSWORD_MECHANISMS: dict[str, str] = {"plain": "auth_plain", "login": "auth_login", "cram-md5": "auth_crammd5"}


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    tls: TlsMode = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr, a log line or a traceback
    timeout: float = 30.0
    validate_certs: bool = True
    ca_bundle: str | None = None
    local_hostname: str | None = None  # the EHLO name; None = `app.transports.ehlo.default_ehlo_name`
    auth_mechanism: PasswordMechanism | None = None  # password sign-in: None = the server's first usable one
    oauth: SmtpOAuthConfig | None = None  # AUTH XOAUTH2 as `username` (the mailbox) with a token from here
    network_policy: NetworkPolicy | None = None  # None: connect anywhere (only unit tests build it so)

    @property
    def signs_in(self) -> bool:
        return self.oauth is not None or bool(self.username)


def excerpt(text: str, limit: int = 24) -> str:
    """A short, printable excerpt of what a non-SMTP peer sent, quoted."""
    text = text.removeprefix("Malformed SMTP response line: ")
    clean = "".join(ch if ch.isprintable() and ch.isascii() else " " for ch in text)
    clean = " ".join(clean.split())
    return repr(clean[:limit] + ("..." if len(clean) > limit else ""))


def _failure(stage: Stage, exc: BaseException, *, uncertain: bool = False) -> TransportError:
    """Turn an aiosmtplib exception into our TransportError (codes and texts kept verbatim)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = {r.recipient: Reply(r.code, r.message) for r in exc.recipients}
        first = next(iter(refused.values()), Reply(None, "all recipients refused"))
        return TransportError("rcpt", first, provider="smtp", recipients=refused)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return TransportError("auth", Reply(exc.code, exc.message), provider="smtp")
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return TransportError("mail", Reply(exc.code, exc.message), provider="smtp")
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return TransportError("data", Reply(exc.code, exc.message), provider="smtp")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if not 200 <= exc.code <= 599:  # not an SMTP server: never echo what it said (a banner may hold a token)
            return TransportError(stage, Reply(None, "the server did not answer like an SMTP server; it began: "
                                                     f"{excerpt(exc.message)}", "smtp_error"), provider="smtp")
        return TransportError(stage, Reply(exc.code, exc.message), provider="smtp")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return TransportError(stage, Reply(None, "the server did not answer in time", "timeout"),
                              provider="smtp", uncertain=uncertain)
    if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__ or exc.__context__, ssl.SSLError):
        return TransportError("tls", Reply(None, f"TLS handshake failed: {exc}", "tls_failed"), provider="smtp")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return TransportError(stage, Reply(None, f"connection lost: {exc}", "disconnected"),
                              provider="smtp", uncertain=uncertain)
    if isinstance(exc, AddressNotAllowed):
        return TransportError("connect", Reply(None, str(exc), "address_not_allowed"), provider="smtp")
    if isinstance(exc, aiosmtplib.SMTPConnectError | ConnectionError | OSError):
        return TransportError("connect", Reply(None, f"cannot connect: {exc}", "connect_failed"), provider="smtp")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return TransportError(stage, Reply(None, str(exc), "smtputf8_unsupported"), provider="smtp")
    if isinstance(exc, aiosmtplib.SMTPException):
        text = str(exc)
        low = text.lower()
        # Checked first: on plain connections this text also says "Try connecting via TLS (or STARTTLS)".
        if "auth extension is not supported" in low:
            return TransportError("auth", Reply(None, text, "auth_not_supported"), provider="smtp")
        if "starttls" in low:
            return TransportError("tls", Reply(None, text, "starttls_unsupported"), provider="smtp")
        if "no suitable authentication method" in low:
            return TransportError("auth", Reply(None, text, "auth_no_mechanism"), provider="smtp")
        return TransportError(stage, Reply(None, text, "smtp_error"), provider="smtp")
    raise exc


class SmtpPool:
    """Up to `size` connections to one server with one set of credentials, reused across messages.

    aiosmtplib serialises commands on a connection (no PIPELINING), so parallelism comes from several
    connections; Microsoft 365 allows at most 3 per mailbox (PROVIDERS.md §4.3).
    """

    def __init__(self, config: SmtpConfig, size: int = 4) -> None:
        self.config = config
        self.size = max(1, size)
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
        self._slots = asyncio.Semaphore(self.size)
        self._all: set[aiosmtplib.SMTP] = set()
        self._closed = False
        if config.oauth is not None and not config.username:
            raise ValueError("SMTP OAuth needs the mailbox to sign in as (username)")
        # One token source per pool: every connection signs in with the same cached token.
        self.tokens: SmtpTokens | None = (
            token_source(config.oauth, config.network_policy) if config.oauth is not None else None)
        self._token_expiry: dict[aiosmtplib.SMTP, float] = {}  # connection -> expiry of the token it used
        self.connections_opened = 0
        self.ehlo_name: str | None = config.local_hostname  # the default is found on the first connection
        self.sign_ins = 0  # AUTH commands sent (each one a sign-in the server counts)

    def _client(self, sock: socket.socket | None = None) -> aiosmtplib.SMTP:
        c = self.config
        # No username/password here: aiosmtplib's login() would try every mechanism (see _sign_in). With a
        # socket already connected (to the address the network policy checked), the host name still serves
        # TLS (SNI and the certificate check).
        return aiosmtplib.SMTP(
            hostname=c.host,
            port=None if sock is not None else c.port,
            sock=sock,
            use_tls=c.tls == "tls",
            start_tls=True if c.tls == "starttls" else False,
            timeout=c.timeout,
            validate_certs=c.validate_certs,
            cert_bundle=c.ca_bundle,
            local_hostname=self.ehlo_name,
        )

    async def _open(self) -> tuple[aiosmtplib.SMTP, Reply]:
        """A connected, TLS-negotiated, signed-in client and the server's greeting. Raises TransportError."""
        if self.ehlo_name is None:
            self.ehlo_name = await default_ehlo_name(self.config.host, self.config.port)
        try:
            sock = None
            if self.config.network_policy is not None:
                sock = await netpolicy.connect(self.config.host, self.config.port, self.config.timeout,
                                               self.config.network_policy)
        except Exception as exc:
            raise _failure("connect", exc) from exc
        client = self._client(sock)
        try:
            greeting = await client.connect()
        except Exception as exc:
            client.close()
            raise _failure("connect", exc) from exc
        self.connections_opened += 1
        try:
            await self._sign_in(client)
        except BaseException:
            client.close()
            raise
        return client, Reply(greeting.code, greeting.message)

    async def _connect(self) -> aiosmtplib.SMTP:
        client, _ = await self._open()
        self._all.add(client)
        return client

    async def _sign_in(self, client: aiosmtplib.SMTP) -> None:
        """Authenticate with ONE mechanism, once (XOAUTH2 with OAuth; else the named or the server's first
        password mechanism). A cached token the server refuses is dropped and a fresh one tried once: a token
        revoked early must not hold the provider until it would have expired."""
        c = self.config
        if not c.signs_in:
            return
        try:
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
        except Exception as exc:
            raise _failure("connect", exc) from exc
        offered = client.server_auth_methods
        if not client.supports_extension("auth"):
            plain = client.get_transport_info("sslcontext") is None
            text = "The SMTP AUTH extension is not supported by this server." + (
                " Try connecting via TLS (or STARTTLS)." if plain else "")
            raise TransportError("auth", Reply(None, text, "auth_not_supported"), provider="smtp")
        username = c.username or ""
        if self.tokens is not None:
            if "xoauth2" not in offered:
                raise TransportError("auth", Reply(
                    None, f"the server does not offer AUTH XOAUTH2 (it offers: {_offered(offered)})",
                    "auth_no_xoauth2"), provider="smtp")
            token = await self.tokens.access_token()
            try:
                await self._auth(client, "xoauth2", username, token.token)
            except aiosmtplib.SMTPAuthenticationError as exc:
                if not token.from_cache or not client.is_connected:
                    raise _refused(exc, "XOAUTH2") from None
                self.tokens.invalidate(token.token)
                token = await self.tokens.access_token()
                try:
                    await self._auth(client, "xoauth2", username, token.token)
                except aiosmtplib.SMTPAuthenticationError as again:
                    raise _refused(again, "XOAUTH2") from None
            self._token_expiry[client] = token.expires_at
            return
        mechanism = (c.auth_mechanism or "").lower() or next((m for m in offered if m in _PASSWORD_MECHANISMS), None)
        if mechanism is None or mechanism not in offered:
            wanted = f"{c.auth_mechanism} (named in the settings)" if c.auth_mechanism else "PLAIN, LOGIN or CRAM-MD5"
            raise TransportError("auth", Reply(
                None, f"No suitable authentication method found: Outbox signs in with {wanted}, the server offers "
                      f"{_offered(offered)}", "auth_no_mechanism"), provider="smtp")
        try:
            await self._auth(client, mechanism, username, c.password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise _refused(exc, mechanism.upper()) from None

    async def _auth(self, client: aiosmtplib.SMTP, mechanism: str, username: str, secret: str) -> None:
        self.sign_ins += 1
        try:
            if mechanism == "xoauth2":
                await client.auth_xoauth2(username, secret)
            else:
                await getattr(client, _PASSWORD_MECHANISMS[mechanism])(username, secret)
        except aiosmtplib.SMTPAuthenticationError:
            raise
        except Exception as exc:
            raise _failure("auth", exc) from exc

    def _usable(self, client: aiosmtplib.SMTP) -> bool:
        if not client.is_connected:
            return False
        expiry = self._token_expiry.get(client)
        return expiry is None or expiry - time.time() >= REFRESH_MARGIN

    async def _acquire(self) -> aiosmtplib.SMTP:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if self._usable(client):
                return client
            # Dropped by the server, or signed in with a token about to expire: replace it.
            await self._discard(client)
        return await self._connect()

    async def _discard(self, client: aiosmtplib.SMTP) -> None:
        self._all.discard(client)
        self._token_expiry.pop(client, None)
        if client.is_connected:
            try:
                await asyncio.wait_for(client.quit(), timeout=2)
            except Exception:
                pass
        client.close()

    def _release(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected and not self._closed:
            self._idle.put_nowait(client)
        else:
            self._all.discard(client)
            self._token_expiry.pop(client, None)
            client.close()

    async def send(self, msg: OutgoingMessage) -> SendResult:
        if msg.mime is None:
            raise ValueError("SmtpPool.send needs msg.mime (build it once with app.mail.build.build_mime)")
        async with self._slots:
            client = await self._acquire()
            try:
                return await _transaction(client, msg.envelope_sender or msg.sender, msg.recipients, msg.mime)
            finally:
                self._release(client)

    async def verify(self, sender: str | None = None) -> Reply:
        """Connect, negotiate TLS and authenticate as configured (the same code as a send), then QUIT. With
        `sender`, first MAIL FROM:<sender> and RCPT TO:<sender>, then RSET: what a server refuses before DATA
        (an EHLO name, STARTTLS or sign-in it requires, a sender the login does not own) shows here too. Sends
        nothing."""
        client, greeting = await self._open()
        try:
            if sender is not None:
                await _envelope(client, sender)
            noop = await client.noop()
            await client.quit()
            return Reply(noop.code, f"connected to {self.config.host}:{self.config.port}: {greeting.text}")
        except TransportError:
            raise
        except Exception as exc:
            raise _failure("verify", exc) from exc
        finally:
            client.close()

    async def aclose(self) -> None:
        self._closed = True
        for client in list(self._all):
            try:
                if client.is_connected:
                    await asyncio.wait_for(client.quit(), timeout=2)
            except Exception:
                pass
            finally:
                client.close()
        self._all.clear()
        self._token_expiry.clear()
        if self.tokens is not None:
            await self.tokens.aclose()


def _offered(methods: list[str]) -> str:
    return " ".join(m.upper() for m in methods) or "nothing"


def _refused(exc: aiosmtplib.SMTPAuthenticationError, mechanism: str) -> TransportError:
    """The server's refusal, verbatim, with the mechanism that was refused as the error code (the classifier
    tells a refused password from a refused token by it)."""
    return TransportError("auth", Reply(exc.code, exc.message, mechanism), provider="smtp")


# --- one mail transaction, step by step ---------------------------------------------------------------------
#
# aiosmtplib's sendmail() runs MAIL, RCPT and DATA as one call, so a lost connection cannot be placed: it was
# all reported as "lost after the whole message had been transmitted" (possibly delivered, flagged as a
# possible duplicate forever). Here each step is its own call, and only a loss after the message and its final
# "." were written, before the server's reply to it, is `uncertain`.


async def _transaction(client: aiosmtplib.SMTP, sender: str, recipients: list[str], mime: bytes) -> SendResult:
    utf8 = any(not a.isascii() for a in (sender, *recipients))
    options: list[str] = []
    try:
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()  # connect() greets lazily; the extensions are known after EHLO
    except Exception as exc:
        raise _failure("connect", exc) from exc
    if utf8:
        if not client.supports_extension("smtputf8"):
            raise TransportError("mail", Reply(None, "an address needs SMTPUTF8, which the server does not offer",
                                               "smtputf8_unsupported"), provider="smtp")
        options.append("SMTPUTF8")
    if client.supports_extension("size"):
        options.insert(0, f"SIZE={len(mime)}")  # RFC 1870: octets as transmitted (mime is CRLF already)
    encoding = "utf-8" if utf8 else "ascii"
    try:
        await client.mail(sender, options=options, encoding=encoding)
    except aiosmtplib.SMTPResponseException as exc:
        await _reset(client)
        raise _failure("mail", exc) from exc
    except Exception as exc:
        raise _failure("mail", exc) from exc  # nothing of the message was sent: never uncertain
    refused: dict[str, Reply] = {}
    for rcpt in recipients:
        try:
            await client.rcpt(rcpt, encoding=encoding)
        except aiosmtplib.SMTPRecipientRefused as exc:
            refused[rcpt] = Reply(exc.code, exc.message)
        except aiosmtplib.SMTPResponseException as exc:
            await _reset(client)
            raise _failure("rcpt", exc) from exc
        except Exception as exc:
            raise _failure("rcpt", exc) from exc
    if len(refused) == len(recipients):
        await _reset(client)
        first = next(iter(refused.values()), Reply(None, "all recipients refused"))
        raise TransportError("rcpt", first, provider="smtp", recipients=refused)
    return SendResult(reply=await _data(client, mime), refused=refused)


async def _envelope(client: aiosmtplib.SMTP, address: str) -> None:
    """MAIL FROM and RCPT TO for `address`, then RSET (verify: a transaction announced, never sent)."""
    utf8 = not address.isascii()
    try:
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
    except Exception as exc:
        raise _failure("connect", exc) from exc
    options = ["SMTPUTF8"] if utf8 and client.supports_extension("smtputf8") else []
    encoding = "utf-8" if utf8 else "ascii"
    try:
        try:
            await client.mail(address, options=options, encoding=encoding)
        except Exception as exc:
            raise _failure("mail", exc) from exc
        try:
            await client.rcpt(address, encoding=encoding)
        except Exception as exc:
            raise _failure("rcpt", exc) from exc
    finally:
        await _reset(client)


async def _data(client: aiosmtplib.SMTP, mime: bytes) -> Reply:
    """DATA, the message and its final ".". A reply the server sends and then drops the connection (354 then
    at once 550 and close) can be missed by aiosmtplib, which only reads a reply it is waiting for: `_ReplyTap`
    records every reply of this step, so the lost connection is placed by what the server really said."""
    tap = _ReplyTap.install(client)
    try:
        response = await client.data(mime)
    except aiosmtplib.SMTPDataError as exc:  # DATA refused, or the message refused after it was sent
        await _reset(client)
        raise _failure("data", exc) from exc
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
        replies = tap.replies() if tap else []
        if len(replies) >= 2 and replies[0].code == 354:  # the server did answer the message before the loss
            final = replies[1]
            if final.code is not None and 200 <= final.code < 300:
                return final
            raise TransportError("data", final, provider="smtp") from exc
        # Uncertain only when the server said "go ahead" (354, so the message and "." were written) and its
        # reply to the final "." never came. Without a tap (a transport that cannot be tapped) assume so.
        went_ahead = bool(replies) and replies[0].code == 354 if tap else True
        raise _failure("data", exc, uncertain=went_ahead) from exc
    except Exception as exc:
        raise _failure("data", exc) from exc
    finally:
        if tap:
            tap.remove()
    return Reply(response.code, response.message)


async def _reset(client: aiosmtplib.SMTP) -> None:
    """RSET after a refusal, so the connection can carry the next message; a connection that cannot is closed."""
    if not client.is_connected:
        return
    try:
        await client.rset()
    except Exception:
        client.close()


class _ReplyTap(asyncio.Protocol):
    """Sits between the transport and aiosmtplib's protocol (`transport.set_protocol`, public asyncio API, also
    in uvloop) for one DATA step: passes everything on unchanged and keeps a copy of what the server sent."""

    def __init__(self, transport: asyncio.BaseTransport, inner: asyncio.Protocol) -> None:
        self.transport = transport
        self.inner = inner
        self.received = bytearray()

    @classmethod
    def install(cls, client: aiosmtplib.SMTP) -> _ReplyTap | None:
        transport = client.transport
        inner = transport.get_protocol() if transport is not None else None
        if transport is None or not isinstance(inner, asyncio.Protocol):  # aiosmtplib's SMTPProtocol is one
            return None
        tap = cls(transport, inner)
        transport.set_protocol(tap)
        return tap

    def remove(self) -> None:
        if self.transport.get_protocol() is self:
            self.transport.set_protocol(self.inner)

    def replies(self) -> list[Reply]:
        """The complete replies received while installed, in order (multi-line replies joined)."""
        out: list[Reply] = []
        lines: list[str] = []
        for raw in bytes(self.received).split(b"\n"):
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit():
                continue
            lines.append(line[4:])
            if line[3:4] != "-":
                out.append(Reply(int(line[:3]), "\n".join(lines)))
                lines = []
        return out

    # asyncio.Protocol, forwarded
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.received += data
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
