"""Group commit for submissions: concurrent requests share one INSERT and one COMMIT.

Per request, the ORM-free insert and its commit were most of what a submit cost (asyncpg and SQLAlchemy were
over half the API's CPU, with a round trip for BEGIN, INSERT and COMMIT each). Requests that arrive together
hand their validated rows to this batcher; one task inserts everything waiting in one statement, commits, and
answers each request with its ids. A 202 is still sent only after the commit that stored its message.

If a batch fails (say an Idempotency-Key raced), each request of it is retried alone, so one bad request never
fails another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.messages import lifecycle
from app.models import ATTACHMENTS

log = logging.getLogger("outbox.ingest")
ATT = ATTACHMENTS


@dataclass
class _Item:
    rows: list[dict[str, Any]]
    attachments: list[list[dict[str, Any]]]
    done: asyncio.Future[list[int]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


async def insert_prepared(session: AsyncSession, rows: list[dict[str, Any]],
                          attachments: list[list[dict[str, Any]]]) -> list[int]:
    """Insert messages and their attachments in the session's transaction; returns ids in order."""
    ids = await lifecycle.insert_messages(session, rows)
    atts = [dict(a, message_id=mid) for mid, group in zip(ids, attachments, strict=True) for a in group]
    if atts:
        await session.execute(insert(ATT), atts)
    return ids


class IngestBatcher:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], max_rows: int = 1000) -> None:
        self.sessionmaker = sessionmaker
        self.max_rows = max_rows
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-ingest")

    async def insert(self, rows: list[dict[str, Any]], attachments: list[list[dict[str, Any]]]) -> list[int]:
        item = _Item(rows, attachments)
        await self._queue.put(item)
        return await item.done

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            count = len(first.rows)
            await asyncio.sleep(0)  # let requests parsed in the same loop iteration join
            while count < self.max_rows and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                count += len(item.rows)
            await self._commit(batch)

    async def _commit(self, batch: list[_Item]) -> None:
        try:
            async with self.sessionmaker() as session:
                ids = await insert_prepared(session, [r for it in batch for r in it.rows],
                                            [a for it in batch for a in it.attachments])
                await session.commit()
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0].done.done():
                    batch[0].done.set_exception(exc)
                return
            for item in batch:  # isolate the request that failed
                await self._commit([item])
            return
        pos = 0
        for item in batch:
            n = len(item.rows)
            if not item.done.done():
                item.done.set_result(ids[pos:pos + n])
            pos += n

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():  # never leave a request waiting
            item = self._queue.get_nowait()
            await self._commit([item])


__all__ = ["IngestBatcher", "IntegrityError", "insert_prepared"]
