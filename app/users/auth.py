"""Who is calling: the API key in `Authorization: Bearer`, looked up (briefly cached), and the roles each
operation needs. Roles: admin (everything), service (submits and reads its own messages), user (acts as its
own user: options, drafts, its own messages)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlmodel import col
from starlette.types import Scope

from app.core.errors import AppError, Forbidden, Unauthorized
from app.core.security import Principal, Role, hash_key
from app.models import ApiKey, User
from app.settings import Settings
from app.users import auth_cache

_bearer = HTTPBearer(auto_error=False, description="An Outbox API key: `Authorization: Bearer obx_...`")


PRINCIPAL = "outbox.principal"  # the scope key the guard (core.guard) leaves the authenticated principal under


class TooManyFailures(AppError):
    status_code = 429
    slug = "too-many-failed-authentications"
    title = "Too many failed authentications from this client"


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def authenticate(state: Any, authorization: str | None, client: str) -> Principal:
    """The principal of an `Authorization: Bearer` value, or Unauthorized / TooManyFailures.

    Opens (and closes) its own short session: nothing is held while the body is read."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Send an API key as `Authorization: Bearer <key>`.", headers={"WWW-Authenticate": "Bearer"})
    digest = hash_key(token)
    cached = auth_cache.get(digest)
    if cached is not None:
        return cached
    settings: Settings = state.settings
    limit = settings.auth_failures_per_minute
    # Only for a key not verified here in the last seconds: the cached path above never waits on Redis.
    wait = await auth_cache.blocked_for(state.redis, client, limit)
    if wait:
        raise TooManyFailures(
            f"More than {limit} failed authentications from this client in a minute; "
            f"try again in {wait} s.", headers={"Retry-After": str(wait)})
    if not auth_cache.known_bad(digest):
        async with state.sessionmaker() as session:
            row = (await session.execute(
                select(col(ApiKey.id), col(ApiKey.role), col(ApiKey.user_id), col(ApiKey.revoked_at),
                       col(User.enabled))
                .outerjoin(User, col(User.id) == col(ApiKey.user_id))
                .where(col(ApiKey.key_hash) == digest))).first()
        # A key of a disabled user stops working at once (disabling announces like a revocation).
        if row is not None and row.revoked_at is None and row.enabled is not False:
            principal = Principal(key_id=row.id, role=row.role, user_id=row.user_id)
            auth_cache.put(digest, principal)
            return principal
        auth_cache.put_bad(digest)
    await auth_cache.count_failure(state.redis, client, limit)
    raise Unauthorized("The API key is unknown or revoked, or its user is disabled.",
                       headers={"WWW-Authenticate": "Bearer"})


async def get_principal(
    request: Request, _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]  # for OpenAPI
) -> Principal:
    """The principal the guard (core.guard) authenticated before the body was read."""
    principal: Principal | None = request.scope.get(PRINCIPAL)
    if principal is None:  # not behind the guard: check here, the same way
        principal = await authenticate(request.app.state, request.headers.get("authorization"),
                                       client_of(request.scope))
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
