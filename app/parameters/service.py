"""Email parameters: one row, created with defaults on first read."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import merge_patch
from app.core.clock import utcnow
from app.core.ttl_cache import TTLCache
from app.messages import lifecycle
from app.models import Parameters, ProviderConfig
from app.parameters.schemas import ParametersPublic, ParametersUpdate

DEFAULT_DAYS = 30


def effective_days(value: int) -> int:
    return value or DEFAULT_DAYS


def expires_at(params: Parameters, now: datetime) -> datetime:
    """When a message queued (or a draft sent) at `now` expires unsent: the email expiration days later."""
    return now + timedelta(days=effective_days(params.email_expiration_days))


async def get(session: AsyncSession) -> Parameters:
    row = await session.get(Parameters, 1)
    if row is None:
        # Migration 0005 creates the row; should it be missing, concurrent requests may race to create it.
        dialect = session.bind.dialect.name if session.bind is not None else "postgresql"
        insert = sqlite_insert if dialect == "sqlite" else pg_insert
        defaults = Parameters(id=1).model_dump()
        await session.execute(insert(Parameters).values(**defaults).on_conflict_do_nothing())
        row = await session.get(Parameters, 1, populate_existing=True)
        assert row is not None
    return row


# The submit path reads the parameters on every request; they change rarely (see core.ttl_cache).
_cache: TTLCache[int, Parameters] = TTLCache()


def peek() -> Parameters | None:
    """The cached copy if it is fresh (no session needed), else None."""
    return _cache.get(1)


async def cached(session: AsyncSession) -> Parameters:
    """A detached copy of the parameters for read-only use on hot paths."""
    hit = _cache.get(1)
    if hit is None:
        row = await get(session)
        hit = Parameters(**row.model_dump())
        _cache.put(1, hit)
    return hit


async def public(session: AsyncSession, row: Parameters | None = None) -> ParametersPublic:
    row = row or await get(session)
    warnings = []
    if await session.get(ProviderConfig, row.batch_provider) is None:
        warnings.append(f"batch_provider is {row.batch_provider}, which is not configured: batch email waits until "
                        f"it is (PUT or PATCH /providers/{row.batch_provider}).")
    if not row.batch_processing_enabled:
        warnings.append("batch_processing_enabled is off: batch email waits until it is turned on.")
    return ParametersPublic(
        batch_provider=row.batch_provider,
        attachment_size_limit_mb=row.attachment_size_limit_mb,
        email_expiration_days=row.email_expiration_days,
        history_retention_days=row.history_retention_days,
        batch_processing_enabled=row.batch_processing_enabled,
        distributor_interval_seconds=row.distributor_interval_seconds,
        interactive_providers=row.interactive_providers,
        effective_email_expiration_days=effective_days(row.email_expiration_days),
        effective_history_retention_days=effective_days(row.history_retention_days),
        warnings=warnings,
    )


async def patch(session: AsyncSession, body: BaseModel) -> Parameters:
    """JSON merge patch: the fields given replace the stored ones."""
    current = (await public(session)).model_dump(include=set(ParametersUpdate.model_fields) - _READ_ONLY)
    return await update(session, merge_patch.apply(ParametersUpdate, current, body))


_READ_ONLY = {"effective_email_expiration_days", "effective_history_retention_days", "warnings"}


async def update(session: AsyncSession, data: ParametersUpdate) -> Parameters:
    """Save the parameters. A change of the email expiration days applies to the messages not sent yet too
    (`lifecycle.shift_expiry`): the expiry follows the parameter, counted from each message's creation."""
    row = await get(session)
    before = effective_days(row.email_expiration_days)
    for k, v in data.model_dump(exclude=_READ_ONLY).items():
        setattr(row, k, v)
    row.updated_at = utcnow()
    session.add(row)
    await session.flush()
    await lifecycle.shift_expiry(session, effective_days(row.email_expiration_days) - before)
    _cache.clear()
    return row
