"""A real SMTP server (aiosmtpd) in-process, with scripted replies, optional AUTH and STARTTLS."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.content, policy=policy.default)


@dataclass
class SinkHandler:
    """Records every message; `rcpt_script` / `data_script` / `mail_script` give replies instead of 250."""

    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # per address
    mail_script: deque[str] = field(default_factory=deque)
    data_script: deque[str] = field(default_factory=deque)
    data_delay: float = 0.0
    drop_after_data: int = 0  # close the connection after accepting this many messages' DATA (no reply)
    rcpt_once: dict[str, str] = field(default_factory=dict)  # per address, answered once, then 250
    fail_ratio: float = 0.0  # answer DATA with a transient 451 at random this often (soak runs)
    times: list[float] = field(default_factory=list)  # time.time() of each accepted message
    in_data: threading.Event = field(default_factory=threading.Event)  # set when a DATA reply is pending
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        if self.mail_script:
            return self.mail_script.popleft()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        with self.lock:
            once = self.rcpt_once.pop(address, None)
        if once is not None:
            return once
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.in_data.set()
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_script:
            return self.data_script.popleft()
        if self.fail_ratio and random.random() < self.fail_ratio:
            return "451 4.3.0 Temporary failure (soak)"
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
            self.times.append(time.time())
            if self.drop_after_data > 0:
                self.drop_after_data -= 1
                assert server.transport is not None
                server.transport.close()  # accepted, but the client never hears the 250
        return "250 OK queued"


class SmtpServer:
    def __init__(self, *, auth: dict[str, str] | None = None, tls_context: ssl.SSLContext | None = None,
                 require_starttls: bool = False, implicit_tls: bool = False, smtputf8: bool = True) -> None:
        self.handler = SinkHandler()
        self.port = free_port()
        self.auth = auth
        kwargs: dict[str, Any] = {}
        if auth is not None:
            def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and auth.get(data.login.decode()) == data.password.decode()
                # handled=False: let aiosmtpd send the 535 itself (the default means "already answered").
                return AuthResult(success=ok, handled=False)

            kwargs.update(authenticator=authenticator, auth_require_tls=tls_context is not None,
                          auth_required=True)
        else:
            kwargs.update(auth_require_tls=True)  # no AUTH offered on a plain connection
        if tls_context is not None and not implicit_tls:
            kwargs.update(tls_context=tls_context, require_starttls=require_starttls)
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=smtputf8,
            ssl_context=tls_context if implicit_tls else None, **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.handler.received
