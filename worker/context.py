from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.messages.lifecycle import KeyTurns
from app.settings import Settings


class WorkerContext(TypedDict):
    redis: ArqRedis
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    postgres: bool
    worker_id: str
    pools: dict[str, tuple[str, Any]]
    heartbeat: Any
    inflight: asyncio.Semaphore  # messages loaded, built or being sent at once, across this worker's drains
    large: asyncio.Semaphore  # of which large ones (attachments): bounds the worker's memory
    inflight_high: asyncio.Semaphore  # the high lane's own bound (never waits for a bulk batch's sends)
    turns: KeyTurns  # where each lane's round over submitting keys resumes (lifecycle.claim_due)
