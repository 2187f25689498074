"""Request-scoped dependencies: one transaction per request, jobs enqueued only after it commits, and auth."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core import auth_cache, ttl_cache
from app.core.errors import Forbidden, Unauthorized
from app.core.security import Principal, Role, hash_key
from app.settings import Settings

log = logging.getLogger("outbox.api")


@dataclass
class Tx:
    """The request's unit of work: a session, and the jobs to enqueue once it has committed."""

    session: AsyncSession
    jobs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    callbacks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def enqueue_after_commit(self, function: str, **kwargs: Any) -> None:
        self.jobs.append((function, kwargs))

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
    for callback in tx.callbacks:
        await callback()


# scope="function": the commit (and enqueue) happen before the response is sent, so a 202 means committed.
TxDep = Annotated[Tx, Depends(get_tx, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An Outbox API key: `Authorization: Bearer obx_...`")


async def get_principal(
    tx: TxDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    from app.models import ApiKey  # local: keep core importable without the model registry

    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise Unauthorized("Send an API key as `Authorization: Bearer <key>`.", headers={"WWW-Authenticate": "Bearer"})
    digest = hash_key(creds.credentials)
    cached = auth_cache.get(digest)
    if cached is not None:
        return cached
    row = (
        await tx.session.execute(
            select(col(ApiKey.id), col(ApiKey.role), col(ApiKey.user_id), col(ApiKey.revoked_at)).where(
                col(ApiKey.key_hash) == digest
            )
        )
    ).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("The API key is unknown or revoked.", headers={"WWW-Authenticate": "Bearer"})
    principal = Principal(key_id=row.id, role=row.role, user_id=row.user_id)
    auth_cache.put(digest, principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(*roles: Role) -> Any:
    async def _check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"This endpoint needs a key with role {' or '.join(roles)}; this key is {principal.role}.")
        return principal

    return Depends(_check)


AdminDep = Annotated[Principal, require("admin")]


def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with (tests create apps with their own; never the process global)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
