"""A short-lived in-process cache of API-key lookups, emptied at once when any key is revoked.

Looking the key up in the database was a tenth of the API's CPU per request. A hit is trusted for at most
`TTL` seconds; a revocation (API or CLI) is published on a Redis channel after its commit, and every API process
listening empties its cache on the message, so a revoked key stops working at once everywhere. If Redis is
unreachable, the TTL bounds how long a revoked key can still be used (documented in the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from arq.connections import ArqRedis

from app.core.security import Principal

log = logging.getLogger("outbox.auth")
TTL = 5.0
CHANNEL = "outbox:api-keys:revoked"
_cache: dict[str, tuple[Principal, float]] = {}


def get(key_hash: str) -> Principal | None:
    hit = _cache.get(key_hash)
    if hit is None:
        return None
    if hit[1] < time.monotonic():
        _cache.pop(key_hash, None)
        return None
    return hit[0]


def put(key_hash: str, principal: Principal) -> None:
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[key_hash] = (principal, time.monotonic() + TTL)


def forget() -> None:
    _cache.clear()


async def announce_revoked(redis: ArqRedis | None) -> None:
    """Call after the revocation committed."""
    forget()
    if redis is not None:
        try:
            await redis.publish(CHANNEL, "revoked")
        except Exception:
            log.warning("could not announce a key revocation; other API processes forget it within %s s", TTL)


async def listen(redis: ArqRedis) -> None:
    """Empty the cache whenever a revocation is announced; resubscribe after Redis hiccups."""
    while True:
        try:
            pubsub = redis.pubsub()
            await pubsub.subscribe(CHANNEL)
            try:
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if msg is not None:
                        forget()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py 5
        except asyncio.CancelledError:
            raise
        except Exception:
            forget()  # we may have missed an announcement
            await asyncio.sleep(1.0)
