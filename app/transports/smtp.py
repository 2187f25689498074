"""SMTP through aiosmtplib: a small pool of reused connections per configuration.

Facts this relies on (../shared/PROVIDERS.md §5, TRAPS.md): `start_tls=True` makes STARTTLS required (the
default would silently downgrade); a configured user name against a server without AUTH raises a plain
`SMTPException`; a partial recipient refusal does not raise; 421 and read timeouts close the connection.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Literal

import aiosmtplib

from app.transports.base import OutgoingMessage, Reply, SendResult, Stage, TransportError

TlsMode = Literal["none", "starttls", "tls"]


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
    local_hostname: str | None = None


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
        return TransportError(stage, Reply(exc.code, exc.message), provider="smtp")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return TransportError(stage, Reply(None, "the server did not answer in time", "timeout"),
                              provider="smtp", uncertain=uncertain)
    if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__ or exc.__context__, ssl.SSLError):
        return TransportError("tls", Reply(None, f"TLS handshake failed: {exc}", "tls_failed"), provider="smtp")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return TransportError(stage, Reply(None, f"connection lost: {exc}", "disconnected"),
                              provider="smtp", uncertain=uncertain)
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

    def _client(self) -> aiosmtplib.SMTP:
        c = self.config
        return aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            use_tls=c.tls == "tls",
            start_tls=True if c.tls == "starttls" else False,
            username=c.username or None,
            password=c.password if c.username else None,
            timeout=c.timeout,
            validate_certs=c.validate_certs,
            cert_bundle=c.ca_bundle,
            local_hostname=c.local_hostname,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        client = self._client()
        try:
            await client.connect()
        except Exception as exc:
            client.close()
            raise _failure("connect", exc) from exc
        self._all.add(client)
        return client

    async def _acquire(self) -> aiosmtplib.SMTP:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client.is_connected:
                return client
            self._all.discard(client)
        return await self._connect()

    def _release(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected and not self._closed:
            self._idle.put_nowait(client)
        else:
            self._all.discard(client)
            client.close()

    async def send(self, msg: OutgoingMessage) -> SendResult:
        if msg.mime is None:
            raise ValueError("SmtpPool.send needs msg.mime (build it once with app.mail.build.build_mime)")
        recipients = msg.recipients
        options: list[str] = []
        async with self._slots:
            client = await self._acquire()
            try:
                if any(not a.isascii() for a in (msg.sender, *recipients)):
                    if not client.esmtp_extensions:
                        await client.ehlo()  # connect() greets lazily; the extensions are known after EHLO
                    if not client.supports_extension("smtputf8"):
                        raise TransportError(
                            "mail",
                            Reply(None, "an address needs SMTPUTF8, which the server does not offer",
                                  "smtputf8_unsupported"),
                            provider="smtp",
                        )
                    options.append("SMTPUTF8")
                try:
                    refused, reply_text = await client.sendmail(msg.sender, recipients, msg.mime, mail_options=options)
                except aiosmtplib.SMTPServerDisconnected as exc:
                    # We cannot tell whether the drop came after the final "." was accepted: possibly sent.
                    raise _failure("data", exc, uncertain=True) from exc
                except aiosmtplib.SMTPReadTimeoutError as exc:
                    raise _failure("data", exc, uncertain=True) from exc
                except TransportError:
                    raise
                except Exception as exc:
                    raise _failure("send", exc) from exc
            finally:
                self._release(client)
        code, _, text = reply_text.partition(" ")
        return SendResult(
            reply=Reply(int(code) if code.isdigit() else 250, text if code.isdigit() else reply_text),
            refused={addr: Reply(r.code, r.message) for addr, r in refused.items()},
        )

    async def verify(self) -> Reply:
        """Connect, negotiate TLS and authenticate as configured, then QUIT. Sends nothing."""
        client = self._client()
        try:
            resp = await client.connect()
            if self.config.username is None and self.config.tls == "none" and client.supports_extension("auth"):
                pass  # AUTH is offered but not configured: fine for servers that relay for us
            noop = await client.noop()
            await client.quit()
            return Reply(noop.code, f"connected to {self.config.host}:{self.config.port}: {resp.message}")
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
