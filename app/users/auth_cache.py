"""A short-lived in-process cache of API-key lookups, emptied at once when any key is revoked.

Looking the key up in the database was a tenth of the API's CPU per request. A hit is trusted for at most
`TTL` seconds; a revocation (API or CLI) is published on a Redis channel after its commit, and every API process
listening empties its cache on the message, so a revoked key stops working at once everywhere. If Redis is
unreachable, the TTL bounds how long a revoked key can still be used (documented in the README).

Wrong keys are remembered for `BAD_TTL` seconds, per process (the same guess again costs no database lookup).

Failed authentications are counted per client in one-minute windows, in Redis, so that the limit holds for all
API processes together (uvicorn --workers, replicas): one counter per client and wall-clock minute
(`outbox:auth-failures:<client>:<minute>`, INCR and EXPIRE in one round trip). Past the limit, a client's keys
that are not already cached are refused with 429 before any lookup. The check costs one Redis GET, made only for
a key this process has not verified in the last `TTL` seconds (never on the cached path, which is the hot one);
a process that has seen the client over the limit remembers it until the window ends and asks no more.

If Redis is unreachable (or slower than `REDIS_TIMEOUT`), the limit falls back to this process's own count,
which is always kept as well: it fails open to the per-process limit, as before Redis counted, rather than
closed (refusing every uncached key whenever Redis hiccups would lock out every client, the honest ones
first). A log line says so, at most once a minute.
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
FAILURE_KEY = "outbox:auth-failures"
REDIS_TIMEOUT = 0.5  # seconds; slower counts as unreachable (the fallback below), so auth never waits on Redis
_failures: dict[str, tuple[float, int]] = {}  # client -> (window start, failures in it), this process only
_blocked: dict[str, float] = {}  # client -> until (monotonic): over the limit of every process, seen in Redis
_warned_at = -FAILURE_WINDOW


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


def _window() -> tuple[int, float]:
    """The current wall-clock window (shared by every process) and the seconds left in it."""
    now = time.time()
    window = int(now // FAILURE_WINDOW)
    return window, (window + 1) * FAILURE_WINDOW - now


def _key(client: str, window: int) -> str:
    return f"{FAILURE_KEY}:{client}:{window}"


def _local_failure(client: str) -> None:
    now = time.monotonic()
    start, count = _failures.get(client, (now, 0))
    if now - start >= FAILURE_WINDOW:
        start, count = now, 0
    if len(_failures) > 100_000:
        _failures.clear()
    _failures[client] = (start, count + 1)


def _local_wait(client: str, per_minute: int) -> float:
    hit = _failures.get(client)
    if hit is not None and hit[1] >= per_minute:
        left = hit[0] + FAILURE_WINDOW - time.monotonic()
        if left > 0:
            return left
    until = _blocked.get(client)
    return until - time.monotonic() if until is not None else 0.0


def _seconds(left: float) -> int:
    return max(1, int(left + 0.999)) if left > 0 else 0


async def count_failure(redis: ArqRedis | None, client: str, per_minute: int) -> None:
    """Count a failed authentication of `client`, here and in Redis (for every API process)."""
    if per_minute <= 0:
        return
    _local_failure(client)
    if redis is None:
        return
    window, left = _window()
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(_key(client, window))
            pipe.expire(_key(client, window), int(FAILURE_WINDOW) * 2)
            count, _ = await asyncio.wait_for(pipe.execute(), REDIS_TIMEOUT)
    except Exception:
        _redis_down()
        return
    if int(count) >= per_minute:
        _block(client, left)


async def blocked_for(redis: ArqRedis | None, client: str, per_minute: int) -> int:
    """Seconds until `client` may try another key (0: it may now): the count of every API process (Redis),
    else this process's own."""
    if per_minute <= 0:
        return 0
    local = _local_wait(client, per_minute)
    if local > 0 or redis is None:
        return _seconds(local)
    window, left = _window()
    try:
        count = await asyncio.wait_for(redis.get(_key(client, window)), REDIS_TIMEOUT)
    except Exception:
        _redis_down()
        return 0
    if count is not None and int(count) >= per_minute:
        _block(client, left)
        return _seconds(left)
    return 0


def _block(client: str, seconds: float) -> None:
    if len(_blocked) > 100_000:
        _blocked.clear()
    _blocked[client] = time.monotonic() + seconds


def _redis_down() -> None:
    global _warned_at
    now = time.monotonic()
    if now - _warned_at >= FAILURE_WINDOW:
        _warned_at = now
        log.warning("Redis unreachable: failed authentications are counted per API process until it is back")


def forget() -> None:
    """Every cached key, good or bad (a key was revoked or a user disabled or enabled)."""
    _cache.clear()
    _bad.clear()


def reset_failures() -> None:
    _failures.clear()
    _blocked.clear()


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
