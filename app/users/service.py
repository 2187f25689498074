"""Users (the Users page) and their options (the User options page), with who may change what."""

from __future__ import annotations

from sqlalchemy import func, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.errors import Forbidden, InvalidInput, NotFound
from app.core.security import Principal, hash_key
from app.mail.validate import check_header_text, normalize_address
from app.messages import choice
from app.models import ApiKey, User
from app.users import keys as key_service
from app.users.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    UserCreate,
    UserOptionsPublic,
    UserOptionsUpdate,
    UserPublic,
    UserUpdate,
)

__all__ = ["create", "create_key", "get", "get_options", "list_keys", "list_users", "put_options",
           "revoke_key", "update"]


def _address(field: str, value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return normalize_address(field, value)


def _name(value: str) -> str:
    # The name becomes the display name in the From header of the user's mail.
    name = check_header_text("name", value.strip(), max_len=200)
    if not name:
        raise InvalidInput("name: is empty", errors=[{"field": "name", "message": "is empty"}])
    return name


def to_public(user: User) -> UserPublic:
    return UserPublic.model_validate(user, from_attributes=True)


async def get_row(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user {user_id}")
    return user


async def get(session: AsyncSession, user_id: int) -> UserPublic:
    return to_public(await get_row(session, user_id))


async def list_users(
    session: AsyncSession, *, email: str | None, limit: int, offset: int
) -> tuple[list[UserPublic], int]:
    cond = func.lower(col(User.email)) == email.strip().lower() if email else true()
    total = (await session.execute(select(func.count()).select_from(User).where(cond))).scalar_one()
    rows = (await session.execute(
        select(User).where(cond).order_by(col(User.id)).limit(limit).offset(offset)
    )).scalars().all()
    return [to_public(u) for u in rows], int(total)


async def create(session: AsyncSession, body: UserCreate) -> UserPublic:
    user = User(name=_name(body.name), email=_address("email", body.email), enabled=body.enabled,
                external=body.external, language=body.language)
    session.add(user)
    await session.flush()
    return to_public(user)


async def update(session: AsyncSession, user_id: int, body: UserUpdate) -> UserPublic:
    user = await get_row(session, user_id)
    fields = body.model_fields_set
    for name in ("name", "enabled", "external", "language"):
        if name in fields:
            value = getattr(body, name)
            if value is None:
                raise InvalidInput.for_field(name, "may not be null")
            setattr(user, name, _name(value) if name == "name" else value)
    if "email" in fields:
        user.email = _address("email", body.email)
    session.add(user)
    await session.flush()
    return to_public(user)


def _options(user: User) -> UserOptionsPublic:
    assert user.id is not None
    return UserOptionsPublic(
        user_id=user.id,
        email_provider=user.email_provider,
        sender_email=user.sender_email,
        workflow_notifications_by_email=user.workflow_notifications_by_email,
        proposed_provider=user.last_provider_choice,
        effective_sender=user.sender_email or user.email,
    )


async def _own_user(session: AsyncSession, principal: Principal, user_id: int) -> User:
    """The user whose options this key may read and change: its own (user keys) or any (admin)."""
    if principal.role == "user" and principal.user_id != user_id:
        raise Forbidden(f"This key acts as user {principal.user_id}; it can read and change only "
                        f"/users/{principal.user_id}/options.")
    if principal.role not in ("user", "admin"):
        raise Forbidden("User options are read and changed by the user's own key or an admin key.")
    return await get_row(session, user_id)


async def get_options(session: AsyncSession, principal: Principal, user_id: int) -> UserOptionsPublic:
    return _options(await _own_user(session, principal, user_id))


async def put_options(
    session: AsyncSession, principal: Principal, user_id: int, body: UserOptionsUpdate
) -> UserOptionsPublic:
    user = await _own_user(session, principal, user_id)
    fields = body.model_fields_set
    if "sender_email" in fields:
        sender = _address("sender_email", body.sender_email)
        changed = (sender or "").casefold() != (user.sender_email or "").casefold()
        # Sending back the unchanged value (GET, edit another field, PUT) is not an attempt to set it.
        if changed and not principal.is_admin:
            raise Forbidden("sender_email is set by an administrator; a user key cannot change it.",
                            errors=[{"field": "sender_email", "message": "only an admin may set it"}])
        user.sender_email = sender
    if "email_provider" in fields:
        why = await choice.not_offered_reason(session, body.email_provider) if body.email_provider else None
        if why is not None:
            raise InvalidInput.for_field("email_provider", why)
        if body.email_provider == "exchange" and user.external:
            raise InvalidInput.for_field("email_provider", "Exchange is not available to users outside the "
                                                           "organization (this user is external)")
        user.email_provider = body.email_provider
    if "workflow_notifications_by_email" in fields:
        if body.workflow_notifications_by_email is None:
            raise InvalidInput.for_field("workflow_notifications_by_email", "may not be null")
        user.workflow_notifications_by_email = body.workflow_notifications_by_email
    session.add(user)
    await session.flush()
    return _options(user)


def _key_public(row: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(row, from_attributes=True)


async def create_key(session: AsyncSession, body: ApiKeyCreate) -> ApiKeyCreated:
    try:
        key = await key_service.create(session, role=body.role, user_id=body.user_id, name=body.name)
    except ValueError as exc:
        raise InvalidInput(str(exc), errors=[{"field": "user_id", "message": str(exc)}]) from exc
    row = (await session.execute(select(ApiKey).where(col(ApiKey.key_hash) == hash_key(key)))).scalar_one()
    return ApiKeyCreated(**_key_public(row).model_dump(), key=key)


async def list_keys(session: AsyncSession) -> list[ApiKeyPublic]:
    return [_key_public(k) for k in await key_service.list_keys(session)]


async def revoke_key(session: AsyncSession, key_id: int) -> None:
    if not await key_service.revoke(session, key_id):
        raise NotFound(f"No active API key {key_id}")
