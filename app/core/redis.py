"""The arq Redis pool, built from the same URL the worker uses."""

from __future__ import annotations

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings


def redis_settings(url: str) -> RedisSettings:
    s = RedisSettings.from_dsn(url)
    s.conn_timeout = 2
    s.conn_retries = 2
    return s


async def connect(url: str) -> ArqRedis:
    return await create_pool(redis_settings(url), retry=2)
