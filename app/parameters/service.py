"""Email parameters: one row, created with defaults on first read."""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncSession

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


# The submit path reads the parameters on every request; they change rarely. A copy is kept for CACHE_TTL
# seconds (a change made through this process is seen at once; other API processes see it within the TTL).
CACHE_TTL = 2.0
_cached: tuple[Parameters, float] | None = None


async def cached(session: AsyncSession) -> Parameters:
    """A detached copy of the parameters for read-only use on hot paths."""
    global _cached
    now = time.monotonic()
    if _cached is not None and _cached[1] > now:
        return _cached[0]
    row = await get(session)
    copy = Parameters(**row.model_dump())
    _cached = (copy, now + CACHE_TTL)
    return copy


def forget_cached() -> None:
    global _cached
    _cached = None


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
    for k, v in data.model_dump(exclude={"effective_email_expiration_days", "effective_history_retention_days"}).items():
        setattr(row, k, v)
    row.updated_at = utcnow()
    session.add(row)
    await session.flush()
    forget_cached()
    return row
