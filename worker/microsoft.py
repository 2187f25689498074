"""Routes for the Microsoft providers: a Graph or EWS transport per configuration, cached in the worker.

One transport per configuration matters more here than for SMTP: it owns the MSAL application, whose token
cache serves app-only tokens until 5 minutes before they expire; a new one per batch would ask Entra ID for a
token per batch (PROVIDERS.md §2.2).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from app.delivery.classify import classify_error
from app.models import ProviderConfig
from app.providers import service as providers_service
from app.transports.base import TransportError
from worker import pools
from worker.context import WorkerContext
from worker.dispatch import Route

__all__ = ["route"]


async def route(ctx: WorkerContext, provider: str, row: ProviderConfig) -> Route:
    """Graph or Exchange, ready to send. Raises SecretUndecryptable (the caller holds the messages); a
    configuration that cannot work (no secret stored, a bad URL) holds them with the reason."""
    try:
        rt = providers_service.microsoft_runtime_from(row, ctx["settings"])
        transport: Any = await pools.cached(
            ctx, provider, rt.config, lambda: providers_service.microsoft_transport(rt))
    except TransportError as err:
        verdict = classify_error(err)
        # The route's verdict is copied to every held message: include what exactly is missing.
        verdict = dataclasses.replace(verdict, explanation=f"{verdict.explanation} ({err.reply.text}.)")
        return Route(provider, None, 0, verdict)
    return Route(provider, transport, rt.per_minute_limit)
