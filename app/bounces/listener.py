"""The inbound SMTP listener for bounces and complaints (`outbox bounces`): your relay forwards mail for
`bounces+*@<OUTBOX_BOUNCE_DOMAIN>` and for the complaints address (OUTBOX_COMPLAINTS_ADDRESS, by default
`complaints@<OUTBOX_BOUNCE_DOMAIN>`) here (a transport map entry in Postfix, a connector in Exchange).

It accepts RCPT only for those addresses (it is not a relay) and routes each message by what it is, whichever
address it came to: a feedback-loop report (ARF, `message/feedback-report`) is recorded as a complaint
(app.bounces.complaints), anything else is read as a DSN (app.bounces.service). It answers 250 once committed;
if the database cannot be reached it answers 451, so the relay keeps the message and tries again. A message that
is neither a readable DSN nor a complaint is accepted and dropped (no retry loop). Size is capped at 10 MB."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bounces import arf, complaints, dsn, service, verp
from app.core.clock import utcnow
from app.settings import Settings
from app.webhooks import events
from app.webhooks import jobs as webhook_jobs

log = logging.getLogger("outbox.bounces")
MAX_SIZE = 10 * 1024 * 1024
MAX_RCPT = 10


@dataclass
class BounceHandler:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: ArqRedis | None = None

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if not verp.is_bounce_address(address, self.settings):
            return "550 5.1.1 Not a bounce address of this service"
        if len(envelope.rcpt_tos) >= MAX_RCPT:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        started = time.monotonic()
        raw = envelope.original_content or b""
        complaint = await asyncio.to_thread(arf.parse, raw)
        report = dsn.Report() if complaint is not None else await asyncio.to_thread(dsn.parse, raw)
        # The VERP token: the address it came to (a bounce; a feedback loop registered with the Return-Path), else
        # for a complaint the original's envelope sender as the report gives it.
        found = [*envelope.rcpt_tos, *(complaint.sender_addresses if complaint is not None else ())]
        token = next((m for m in (verp.message_of(a, self.settings) for a in found) if m), None)
        try:
            async with self.sessionmaker() as s:
                outcome: service.Outcome | complaints.Outcome
                if complaint is not None:
                    outcome = await complaints.record(s, complaint, token, utcnow())
                else:
                    outcome = await service.record(s, report, token, utcnow())
                await s.commit()
                emitted = events.emitted(s)
        except Exception:
            log.exception("could not record a bounce or complaint")
            return "451 4.3.0 Could not record it now; try again later"
        if emitted and self.redis is not None:
            with contextlib.suppress(Exception):  # the reconciler finds the deliveries otherwise
                await webhook_jobs.enqueue(self.redis, self.settings.queue_name, "bounce", time.time_ns())
        log.info("complaint" if complaint is not None else "bounce", extra={
            "format": "arf" if complaint is not None else report.format, "failed": len(report.failures),
            "outcome": outcome.summary(), "ms": int((time.monotonic() - started) * 1000)})
        return f"250 2.0.0 OK: {outcome.summary()}"


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def start(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], redis: ArqRedis | None,
                listen: str | None = None) -> asyncio.Server:
    """Listen (on `listen` or OUTBOX_BOUNCE_LISTEN) and return the server; close it to stop."""
    handler = BounceHandler(settings, sessionmaker, redis)
    host, port = _host_port(listen or settings.bounce_listen)

    def factory() -> Any:
        return SMTP(handler, data_size_limit=MAX_SIZE, enable_SMTPUTF8=True, decode_data=False,
                    hostname=f"bounces.{settings.bounce_domain or 'outbox'}", ident="Outbox bounces",
                    auth_require_tls=False)

    return await asyncio.get_running_loop().create_server(factory, host=host, port=port)


async def run(settings: Settings, listen: str | None = None) -> None:
    """`outbox bounces`: listen until SIGTERM / SIGINT."""
    from app.core.db import create_engine, make_sessionmaker
    from app.core.redis import connect

    if not settings.bounce_domain and not settings.complaints_address:
        raise SystemExit("OUTBOX_BOUNCE_DOMAIN is not set (nor OUTBOX_COMPLAINTS_ADDRESS): messages carry no "
                         "bounce address and no complaints address is known, so there is nothing to listen for")
    engine = create_engine(settings.effective_database_url)
    redis: ArqRedis | None = None
    with contextlib.suppress(Exception):
        redis = await connect(settings.effective_redis_url)
    server = await start(settings, make_sessionmaker(engine), redis, listen)
    log.info("listening for bounces and complaints", extra={
        "listen": listen or settings.bounce_listen, "domain": settings.bounce_domain,
        "complaints": verp.complaints_address(settings)})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        if redis is not None:
            await redis.aclose()
        await engine.dispose()
