from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from app.core.deps import TxDep
from app.core.errors import problem_responses
from app.core.pagination import DbId, Limit, Offset, Page
from app.users import auth_cache
from app.users import service as user_service
from app.users.auth import AdminDep, PrincipalDep
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

router = APIRouter(prefix="/users", tags=["users"], responses=problem_responses(401, 403, 422))
Id = DbId
keys_router = APIRouter(prefix="/api-keys", tags=["api-keys"], responses=problem_responses(401, 403, 422))


@router.get("", response_model=Page[UserPublic], summary="Users and their Email")
async def list_users(
    tx: TxDep, _: AdminDep,
    email: Annotated[str | None, Query(description="Only the user with this Email")] = None,
    limit: Limit = 50, offset: Offset = 0,
) -> Page[UserPublic]:
    items, total = await user_service.list_users(tx.session, email=email, limit=limit, offset=offset)
    return Page[UserPublic](items=items, total=total, limit=limit, offset=offset)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserPublic, summary="Create a user")
async def create_user(body: UserCreate, tx: TxDep, _: AdminDep) -> UserPublic:
    """The Email is the user's default send-from address. Give the user a key with POST /api-keys."""
    return await user_service.create(tx.session, body)


@router.get("/{user_id}", response_model=UserPublic, responses=problem_responses(404), summary="One user")
async def get_user(user_id: Id, tx: TxDep, _: AdminDep) -> UserPublic:
    return await user_service.get(tx.session, user_id)


@router.patch("/{user_id}", response_model=UserPublic, responses=problem_responses(404),
              summary="Change a user")
async def update_user(user_id: Id, body: UserUpdate, request: Request, tx: TxDep, _: AdminDep) -> UserPublic:
    """Disabling a user stops their API keys at once (every API process forgets its cached keys after the
    commit); enabling the user again makes the same keys work again."""
    result = await user_service.update(tx.session, user_id, body)
    if body.enabled is not None:
        tx.after_commit(lambda: auth_cache.announce_revoked(request.app.state.redis))
    return result


@router.get("/{user_id}/options", response_model=UserOptionsPublic, responses=problem_responses(404),
            summary="User options: email provider, sender email, workflow notifications")
async def get_options(user_id: Id, tx: TxDep, principal: PrincipalDep) -> UserOptionsPublic:
    """The user's own key, or an admin key."""
    return await user_service.get_options(tx.session, principal, user_id)


@router.put("/{user_id}/options", response_model=UserOptionsPublic, responses=problem_responses(404),
            summary="Change user options")
async def put_options(
    user_id: Id, body: UserOptionsUpdate, tx: TxDep, principal: PrincipalDep
) -> UserOptionsPublic:
    """The user's own key, or an admin key. Fields left out keep their value; only an admin may change
    `sender_email`. `email_provider: null` means the user is asked each time how to send."""
    return await user_service.put_options(tx.session, principal, user_id, body)


@keys_router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated,
                  summary="Create an API key")
async def create_key(body: ApiKeyCreate, tx: TxDep, _: AdminDep) -> ApiKeyCreated:
    """The key is returned once, in this response; only its digest is stored."""
    return await user_service.create_key(tx.session, body)


@keys_router.get("", response_model=list[ApiKeyPublic], summary="Every API key (never the key itself)")
async def list_keys(tx: TxDep, _: AdminDep) -> list[ApiKeyPublic]:
    return await user_service.list_keys(tx.session)


@keys_router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404),
                    summary="Revoke an API key")
async def revoke_key(key_id: Id, request: Request, tx: TxDep, _: AdminDep) -> Response:
    """The key stops working at once (in every API process: the revocation is announced after it commits)."""
    await user_service.revoke_key(tx.session, key_id)
    tx.after_commit(lambda: auth_cache.announce_revoked(request.app.state.redis))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
