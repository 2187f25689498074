"""Who is calling: the API key in `Authorization: Bearer`, looked up (briefly cached), and the roles each
operation needs. Roles: admin (everything), service (submits and reads its own messages), user (acts as its
own user: options, drafts, its own messages)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlmodel import col

from app.core.deps import TxDep
from app.core.errors import Forbidden, Unauthorized
from app.core.security import Principal, Role, hash_key
from app.models import ApiKey
from app.users import auth_cache

_bearer = HTTPBearer(auto_error=False, description="An Outbox API key: `Authorization: Bearer obx_...`")


async def get_principal(
    tx: TxDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
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
ServiceOrAdminDep = Annotated[Principal, require("service", "admin")]
AnyKeyDep = Annotated[Principal, require("service", "admin", "user")]
