"""API keys: create (CLI and API), revoke, list."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.clock import utcnow
from app.core.db import rowcount
from app.core.security import ROLES, hash_key, new_key
from app.models import ApiKey, User


async def create(session: AsyncSession, *, role: str, user_id: int | None = None, name: str = "") -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == "user":
        if user_id is None:
            raise ValueError("a user key needs --user ID (the user it acts as)")
        if await session.get(User, user_id) is None:
            raise ValueError(f"no user {user_id}")
    elif user_id is not None:
        raise ValueError("only user keys are bound to a user")
    key = new_key()
    session.add(ApiKey(name=name, prefix=key[:10], key_hash=hash_key(key), role=role, user_id=user_id))
    await session.flush()
    return key


async def revoke(session: AsyncSession, key_id: int) -> bool:
    res = await session.execute(
        update(ApiKey).where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None)).values(revoked_at=utcnow())
    )
    return bool(rowcount(res))


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.execute(select(ApiKey).order_by(col(ApiKey.id)))).scalars().all())
