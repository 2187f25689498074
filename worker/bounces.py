"""The mailbox poller (arq cron "bounces.poll_mailboxes"): read the batch mailbox of the Graph and Exchange
providers for NDRs (app.bounces.mailbox), then wake the webhook drain for the `message.bounced` events."""

from __future__ import annotations

import logging
import time
from typing import Any

from app.bounces import mailbox
from app.providers import runtime
from app.providers import service as providers_service
from app.transports.base import TransportError
from app.webhooks import jobs as webhook_jobs
from worker import pools
from worker.context import WorkerContext

log = logging.getLogger("outbox.bounces")
PROVIDERS = ("graph", "exchange")


async def poll_mailboxes(ctx: WorkerContext, *_: Any, **__: Any) -> dict[str, Any]:
    s = ctx["settings"]
    out: dict[str, Any] = {}
    if s.bounce_poll_seconds <= 0:
        return out
    for provider in PROVIDERS:
        async with ctx["sessionmaker"]() as session:
            row = await providers_service.get_row(session, provider)
            await session.commit()
        if row is None:
            continue
        try:
            rt = runtime.load(row, provider, s)
            # Its own transport (token cache, connections), kept between polls; not the sending one, whose
            # in-flight count a poll must not disturb.
            shared = await pools.cached(ctx, f"{provider}:mailbox", rt.config, rt.open)
        except TransportError:
            continue  # not usable (no secret, undecryptable): its messages are held and /status says why
        reader = mailbox.reader_for(shared.transport, rt.account or "")
        if reader is None or not rt.account:
            continue
        result = await mailbox.poll(ctx["sessionmaker"], reader, provider, rt.account, ctx["worker_id"],
                                    s.bounce_poll_seconds)
        if result is None:
            continue
        out[provider] = {"listed": result.listed, "ndrs": result.ndrs, "bounced": result.bounced,
                         "requests": result.requests, "error_code": result.error_code}
        if result.emitted:
            await webhook_jobs.enqueue(ctx["redis"], s.queue_name, "bounce", time.time_ns())
    return out
