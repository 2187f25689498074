"""Request-scoped dependencies: one transaction per request, jobs enqueued only after it commits, settings.

Who is calling (API keys and roles) is `app.users.auth`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ttl_cache
from app.settings import Settings

log = logging.getLogger("outbox.api")


@dataclass
class Tx:
    """The request's unit of work: a session, and the jobs to enqueue once it has committed."""

    session: AsyncSession
    jobs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    callbacks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)

    def enqueue_after_commit(self, function: str, **kwargs: Any) -> None:
        self.jobs.append((function, kwargs))

    def signal_after_commit(self, name: str) -> None:
        """Once committed, push a wake-up onto the queue's Redis list `name` (core.jobs.JobFlusher.signal)."""
        self.signals.append(name)

    def after_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        self.callbacks.append(callback)


async def get_tx(request: Request) -> AsyncIterator[Tx]:
    state = request.app.state
    async with state.sessionmaker() as session:
        tx = Tx(session)
        try:
            yield tx
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
    if request.method in ("PUT", "PATCH", "DELETE"):
        ttl_cache.clear_all()  # an administrator's change is seen at once by this process
    for function, kwargs in tx.jobs:  # committed: now the worker may see the rows
        state.jobs.request(function, **kwargs)
    for key in tx.signals:
        state.jobs.signal(key)
    for callback in tx.callbacks:
        await callback()


# scope="function": the commit (and enqueue) happen before the response is sent, so a 202 means committed.
TxDep = Annotated[Tx, Depends(get_tx, scope="function")]

def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with (tests create apps with their own; never the process global)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
