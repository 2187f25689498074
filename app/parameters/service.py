"""Email parameters: one row, created with defaults on first read."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ttl_cache import TTLCache
from app.models import Parameters
from app.models._base import utcnow
from app.parameters.schemas import ParametersPublic, ParametersUpdate

DEFAULT_DAYS = 30


def effective_days(value: int) -> int:
    return value or DEFAULT_DAYS


async def get(session: AsyncSession) -> Parameters:
    row = await session.get(Parameters, 1)
    if row is None:
        row = Parameters(id=1)
        session.add(row)
        await session.flush()
    return row


# The submit path reads the parameters on every request; they change rarely (see core.ttl_cache).
_cache: TTLCache[int, Parameters] = TTLCache()


async def cached(session: AsyncSession) -> Parameters:
    """A detached copy of the parameters for read-only use on hot paths."""
    hit = _cache.get(1)
    if hit is None:
        row = await get(session)
        hit = Parameters(**row.model_dump())
        _cache.put(1, hit)
    return hit


def to_public(row: Parameters) -> ParametersPublic:
    return ParametersPublic(
        batch_provider=row.batch_provider,  # type: ignore[arg-type]
        attachment_size_limit_mb=row.attachment_size_limit_mb,
        email_expiration_days=row.email_expiration_days,
        history_retention_days=row.history_retention_days,
        batch_processing_enabled=row.batch_processing_enabled,
        distributor_interval_seconds=row.distributor_interval_seconds,
        effective_email_expiration_days=effective_days(row.email_expiration_days),
        effective_history_retention_days=effective_days(row.history_retention_days),
    )


async def update(session: AsyncSession, data: ParametersUpdate) -> Parameters:
    row = await get(session)
    read_only = {"effective_email_expiration_days", "effective_history_retention_days"}
    for k, v in data.model_dump(exclude=read_only).items():
        setattr(row, k, v)
    row.updated_at = utcnow()
    session.add(row)
    await session.flush()
    _cache.clear()
    return row
