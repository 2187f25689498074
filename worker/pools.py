"""Transports cached per provider in the worker context, keyed by a fingerprint of their configuration.

Several drain jobs of one worker process share `ctx["pools"]`. When the configuration changes (an admin saved
new settings), the next batch builds a new transport; the old one is retired: closed as soon as the sends
already using it have finished, so a settings change never cuts a send off mid-request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any, Protocol

from app.transports.base import OutgoingMessage, SendResult
from worker.context import WorkerContext

__all__ = ["SharedTransport", "cached", "fingerprint"]


class Transport(Protocol):
    async def send(self, msg: OutgoingMessage) -> SendResult: ...

    async def aclose(self) -> None: ...


def fingerprint(config: Any) -> str:
    """A digest of every field of a config dataclass, secrets included (a new password means a new transport).
    Only the digest is kept; config reprs deliberately leave secrets out, so they cannot be used here."""
    fields = dataclasses.asdict(config)
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


class SharedTransport:
    """A transport used by concurrent sends, closed once retired and idle."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._busy = 0
        self._retired = False
        self._closed = False

    async def send(self, msg: OutgoingMessage) -> SendResult:
        self._busy += 1
        try:
            return await self.transport.send(msg)
        finally:
            self._busy -= 1
            if self._retired and self._busy == 0:
                await self.aclose()

    async def retire(self) -> None:
        self._retired = True
        if self._busy == 0:
            await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.transport.aclose()


async def cached(
    ctx: WorkerContext, provider: str, config: Any, build: Callable[[], Transport]
) -> SharedTransport:
    """The provider's transport for `config`: the cached one if the configuration is unchanged, else a new one
    (and the old one retired)."""
    key = fingerprint(config)
    pools = ctx["pools"]
    current = pools.get(provider)
    if current is not None and current[0] == key:
        shared: SharedTransport = current[1]
        return shared
    # No await between the lookup and the store: concurrent drain jobs cannot both build one.
    shared = SharedTransport(build())
    pools[provider] = (key, shared)
    if current is not None:
        await current[1].retire()
    return shared
