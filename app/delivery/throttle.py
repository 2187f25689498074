"""Per-provider sending limits in Redis, shared by every worker process.

A sliding one-minute window of send timestamps (a sorted set) taken and filled by one Lua script, so it is
atomic across workers: no 60-second window ever holds more than the limit. (A classic token bucket of
capacity L refilled at L/minute lets 2L through in some 60 s windows; the reference article's promise is a
per-minute limit, so we keep the exact window.) A provider that asked us to slow down (421 4.4.2, Graph 429)
gets a pause key; while it lives, nothing is granted.

A slot is taken when a send starts, but the server counts the message when it arrives, a few milliseconds
later and not always equally late; so a slot is held for the window plus a small guard (5%, at most 2 s).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from arq.connections import ArqRedis

KEY_PREFIX = "outbox:throttle:"
REGARDLESS = ":regardless"  # the window of messages sent regardless of the limit (after ten deferrals)
DEFERRALS_KEY = "outbox:stats:deferrals"

# KEYS[1] window zset, KEYS[2] pause key; ARGV: limit, now_ms, requested, token prefix, window_ms
# Returns {granted, wait_ms}: wait_ms is how long until the next slot frees (or the pause ends).
_ACQUIRE = """
local pause = redis.call('PTTL', KEYS[2])
if pause and pause > 0 then return {0, pause} end
local limit = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local window = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local granted = math.min(want, math.max(0, limit - used))
for i = 1, granted do
  redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. i)
end
redis.call('PEXPIRE', KEYS[1], window + 1000)
local wait = 0
if granted < want then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if oldest[2] then wait = tonumber(oldest[2]) + window - now else wait = 1000 end
end
return {granted, wait}
"""


def _held_for(window_seconds: float) -> float:
    return window_seconds + min(2.0, 0.05 * window_seconds)


async def acquire(redis: ArqRedis, provider: str, limit: int, wanted: int,
                  window_seconds: float = 60.0) -> tuple[int, float]:
    """Take up to `wanted` sends from the provider's window; returns (granted, seconds to wait for more)."""
    if wanted <= 0:
        return 0, 0.0
    if limit <= 0:
        pause = await redis.pttl(KEY_PREFIX + provider + ":pause")
        if pause and pause > 0:
            return 0, pause / 1000
        return wanted, 0.0
    now_ms = int(time.time() * 1000)
    # ARGV as str (what redis-py's annotation asks for; it would send str(int) for an int anyway).
    granted, wait_ms = await redis.eval(  # type: ignore[misc]  # redis-py types async replies as Awaitable | value
        _ACQUIRE, 2, KEY_PREFIX + provider, KEY_PREFIX + provider + ":pause", str(limit), str(now_ms), str(wanted),
        uuid.uuid4().hex, str(int(_held_for(window_seconds) * 1000)),
    )
    return int(granted), max(0.0, int(wait_ms) / 1000)


async def record_sent_regardless(redis: ArqRedis, provider: str, count: int, window_seconds: float = 60.0) -> None:
    """Sends past the limit after ten deferrals still occupy the window, so the next ones wait longer."""
    if count <= 0:
        return
    now_ms = int(time.time() * 1000)
    token = uuid.uuid4().hex
    await redis.zadd(KEY_PREFIX + provider, {f"{token}:{i}": now_ms for i in range(count)})
    await redis.pexpire(KEY_PREFIX + provider, int(_held_for(window_seconds) * 1000) + 1000)


async def pause(redis: ArqRedis, provider: str, seconds: float) -> None:
    """The provider asked us to slow down for `seconds`: no worker sends through it until then."""
    ms = max(1, int(seconds * 1000))
    key = KEY_PREFIX + provider + ":pause"
    current = await redis.pttl(key)
    if current is None or current < ms:
        await redis.set(key, "1", px=ms)


async def count_deferrals(redis: ArqRedis, provider: str, count: int) -> None:
    if count:
        await redis.hincrby(DEFERRALS_KEY, provider, count)  # type: ignore[misc]  # redis-py: Awaitable | value


async def state(redis: ArqRedis, limits: dict[str, int], window_seconds: float) -> dict[str, Any]:
    """What monitoring shows per provider: the limit, sends in the current window, sends left, an active pause
    and the deferrals so far. Reads the same keys, with the same window, that `acquire` writes."""
    now_ms = int(time.time() * 1000)
    out: dict[str, Any] = {}
    deferrals: dict[bytes | str, Any] = await redis.hgetall(DEFERRALS_KEY)  # type: ignore[misc]  # redis-py: Awaitable | value
    for provider, limit in limits.items():
        key = KEY_PREFIX + provider
        used = int(await redis.zcount(key, now_ms - int(window_seconds * 1000), "+inf"))
        paused = await redis.pttl(key + ":pause")
        out[provider] = {
            "per_minute_limit": limit,
            "window_seconds": window_seconds,
            "sent_last_minute": used,
            "tokens_left": max(0, limit - used) if limit else None,
            "paused_for_seconds": round(paused / 1000, 1) if paused and paused > 0 else 0,
            "deferrals_total": int(deferrals.get(provider.encode(), deferrals.get(provider, 0)) or 0),
        }
    return out
