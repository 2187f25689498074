"""A short-lived in-process cache of API-key lookups, emptied at once when any key is revoked.

Looking the key up in the database was a tenth of the API's CPU per request. A hit is trusted for at most
`TTL` seconds; a revocation (API or CLI) is published on a Redis channel after its commit, and every API process
listening empties its cache on the message, so a revoked key stops working at once everywhere. If Redis is
unreachable, the TTL bounds how long a revoked key can still be used (documented in the README).

Wrong keys are remembered for `BAD_TTL` seconds (the same guess again costs no database lookup), and failed
authentications are counted per client in one-minute windows: past the limit, a client's keys that are not
already cached are refused with 429 before any lookup. Both are per API process.
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
BAD_TTL = 30.0
FAILURE_WINDOW = 60.0
CHANNEL = "outbox:api-keys:revoked"
_cache: dict[str, tuple[Principal, float]] = {}
_bad: dict[str, float] = {}  # digest -> until
_failures: dict[str, tuple[float, int]] = {}  # client -> (window start, failures in it)


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


def known_bad(key_hash: str) -> bool:
    until = _bad.get(key_hash)
    return until is not None and until >= time.monotonic()


def put_bad(key_hash: str) -> None:
    if len(_bad) > 100_000:
        _bad.clear()
    _bad[key_hash] = time.monotonic() + BAD_TTL


def count_failure(client: str) -> None:
    now = time.monotonic()
    start, count = _failures.get(client, (now, 0))
    if now - start >= FAILURE_WINDOW:
        start, count = now, 0
    if len(_failures) > 100_000:
        _failures.clear()
    _failures[client] = (start, count + 1)


def blocked_for(client: str, per_minute: int) -> int:
    """Seconds until `client` may try another key (0: it may now)."""
    hit = _failures.get(client)
    if hit is None or per_minute <= 0:
        return 0
    left = hit[0] + FAILURE_WINDOW - time.monotonic()
    if left <= 0 or hit[1] < per_minute:
        return 0
    return max(1, int(left + 0.999))


def forget() -> None:
    """Every cached key, good or bad (a key was revoked or a user disabled or enabled)."""
    _cache.clear()
    _bad.clear()


def reset_failures() -> None:
    _failures.clear()


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
