"""Routes: for each provider a batch needs, its pooled transport and limit, or the verdict that holds its
messages. The transport itself is opened by `app.providers.runtime`, the one place that builds transports."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.delivery.classify import Verdict, classify_error
from app.providers import runtime
from app.providers import service as providers_service
from app.transports.base import TransportError
from worker import pools
from worker.context import WorkerContext

__all__ = ["Route", "route"]


@dataclass
class Route:
    """A provider ready to send: its transport and limit, or the verdict that holds its messages."""

    provider: str
    transport: pools.SharedTransport | None
    limit: int
    held: Verdict | None = None
    inflight: asyncio.Semaphore | None = None  # the high lane's own (None: the worker's shared one)


async def route(ctx: WorkerContext, session: AsyncSession, provider: str, *, high: bool = False) -> Route:
    """One transport per configuration, cached in the worker: it owns the SMTP connections, or the MSAL
    application whose token cache serves app-only tokens until shortly before they expire (a new one per batch
    would ask Entra ID for a token per batch, PROVIDERS.md §2.2).

    `high`: the high lane's route: a transport of its own (OUTBOX_HIGH_LANE_CONNECTIONS reserved connections)
    and its own in-flight bound, so a high-priority message never queues behind a bulk batch's sends."""
    s = ctx["settings"]
    try:
        rt = runtime.load(await providers_service.get_row(session, provider), provider, s,
                          connections=s.high_lane_connections if high else s.smtp_connections)
        transport = await pools.cached(ctx, f"{provider}:high" if high else provider, rt.config, rt.open)
    except TransportError as err:
        verdict = classify_error(err)
        # The route's verdict is copied to every held message: include what exactly is missing.
        verdict = dataclasses.replace(verdict, explanation=f"{verdict.explanation} ({err.reply.text}.)")
        return Route(provider, None, 0, verdict)
    return Route(provider, transport, rt.per_minute_limit, inflight=ctx["inflight_high"] if high else None)
