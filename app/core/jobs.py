"""Enqueueing delivery jobs after commit, coalesced.

Drain jobs are idempotent wake-ups ("there is due work"), so a hundred requests committed in the same few
milliseconds need one enqueue per job id, not a hundred. Requests hand their job ids to this flusher after
their commit; a background task enqueues each distinct id at most once per tick. The response does not wait
on Redis, and a Redis outage costs nothing but the reconciler's few seconds (the rows are committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq.connections import ArqRedis

log = logging.getLogger("outbox.jobs")


class JobFlusher:
    def __init__(self, redis: ArqRedis | None, queue: str, tick: float = 0.005) -> None:
        self.redis = redis
        self.queue = queue
        self.tick = tick
        self._pending: dict[str, tuple[str, dict[str, Any]]] = {}
        self._signals: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-job-flusher")

    def request(self, function: str, **kwargs: Any) -> None:
        key = str(kwargs.get("_job_id") or f"{function}:{len(self._pending)}")
        self._pending[key] = (function, kwargs)
        self._wake.set()

    def signal(self, name: str) -> None:
        """Push a wake-up onto the Redis list `<queue>:<name>` (kept to one element) at the next tick: what a
        worker's dedicated loop blocks on (the high lane), rather than a job behind the others in arq's queue."""
        self._signals.add(f"{self.queue}:{name}")
        self._wake.set()

    async def flush(self) -> None:
        signals, self._signals = self._signals, set()
        if self.redis is not None:
            for key in sorted(signals):
                try:
                    pipe = self.redis.pipeline(transaction=False)
                    pipe.lpush(key, "1")
                    pipe.ltrim(key, 0, 0)
                    await pipe.execute()
                except Exception:
                    log.warning("wake-up %s failed; the worker polls it every second", key, exc_info=True)
        pending, self._pending = self._pending, {}
        if self.redis is None or not pending:
            return
        for function, kwargs in pending.values():
            try:
                await self.redis.enqueue_job(function, _queue_name=self.queue, **kwargs)
            except Exception:
                log.warning("enqueue of %s failed; the reconciler will pick the work up", function, exc_info=True)

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.tick)  # let concurrent requests join this tick
            await self.flush()

    async def aclose(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
