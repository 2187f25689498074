"""Which address a message is sent from: one function, `resolve_sender`, for every kind of mail.

The rules, in order (reference article, "[Administrator] User email" and "Sender email"):

1. The From given on the message, where the caller may use it. Admin and service keys may give any address
   (the provider's Send As permissions decide the rest); a user key only its user's Email or the sender
   override an admin set for it. Any other From is refused with `sender-not-allowed` (403) naming the
   allowed addresses: it is never silently replaced.
2. Interactive mail (sent on behalf of a user): the user's sender override, else the user's Email. A user with
   neither cannot send (422): falling back to the batch account would send their mail as someone else.
3. Batch, workflow and test mail: the template's sender, else the batch account (the provider's from_address).
   A From taken from a provider's batch account pins the message to that provider (`ResolvedSender.provider`):
   it goes out through the provider whose account it names even if an administrator changes the batch
   provider before it is sent. Any other batch From follows the batch provider in force at send time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import AppError, Conflict, Forbidden, InvalidInput
from app.core.security import Principal
from app.mail.validate import check_header_text, normalize_address
from app.models import User

__all__ = ["EmailAppNeedsDraft", "ResolvedSender", "SenderNotAllowed", "SenderRules", "UserDisabled",
           "acting_user", "allowed_user_senders", "resolve_sender"]

SenderSource = Literal["message", "sender_override", "user_email", "template", "batch_account", "unchanged"]


class SenderNotAllowed(AppError):
    status_code = 403
    slug = "sender-not-allowed"
    title = "This key may not send from that address"


class UserDisabled(Conflict):
    slug = "user-disabled"
    title = "The user is disabled"


class EmailAppNeedsDraft(Conflict):
    slug = "email-app-needs-draft"
    title = "This user sends through their own email app: create a draft"


async def acting_user(
    session: AsyncSession, principal: Principal, user_id: int | None, *, field: str = "user_id"
) -> User | None:
    """The user a message is sent on behalf of: a user key's own user, or the `user_id` an admin or service
    key names; None for batch mail. Refuses another user's id (403), an unknown one (422), a disabled user
    (409)."""
    if principal.role == "user":
        if user_id is not None and user_id != principal.user_id:
            raise Forbidden(f"{field}: this key acts as user {principal.user_id} and cannot send for user "
                            f"{user_id}",
                            errors=[{"field": field, "message": "another user"}])
        user_id = principal.user_id
    if user_id is None:
        return None
    user = await session.get(User, user_id)
    if user is None:
        raise InvalidInput(f"{field}: there is no user {user_id}",
                           errors=[{"field": field, "message": "no such user"}])
    if not user.enabled:
        raise UserDisabled(f"User {user_id} is disabled: no email is sent on their behalf until an "
                           "administrator enables them (PATCH /users/{id}).")
    return user


@dataclass(frozen=True, slots=True)
class SenderRules:
    """What the rules need to know besides the requested From.

    `user` is the user the message is sent on behalf of (interactive mail only); `caller_role` is the API
    key's role; `template_sender` and `batch_account` are (address, display name) pairs, either part None;
    `batch_provider` is the provider whose batch account `batch_account` is.
    """

    kind: str
    caller_role: str
    user: User | None = None
    template_sender: tuple[str | None, str | None] = (None, None)
    batch_account: tuple[str | None, str | None] = (None, None)
    batch_provider: str | None = None


@dataclass(frozen=True, slots=True)
class ResolvedSender:
    address: str
    name: str | None
    source: SenderSource
    # The provider the message must go out through because the From is its batch account; None otherwise.
    provider: str | None = None


def allowed_user_senders(user: User) -> list[str]:
    """The From addresses a user key may give: the sender override (if set), then the user's Email."""
    out: list[str] = []
    for addr in (user.sender_email, user.email):
        if addr and addr.casefold() not in {a.casefold() for a in out}:
            out.append(addr)
    return out


def _no_sender(field: str, why: str) -> InvalidInput:
    return InvalidInput(f"{field}: {why}",
                        errors=[{"field": field, "message": "no sender could be determined"}])


def resolve_sender(
    requested: str | None,
    requested_name: str | None,
    rules: SenderRules,
    *,
    field: str = "from",
) -> ResolvedSender:
    """Apply the sender rules (see the module docstring).

    Raises InvalidInput (422) or SenderNotAllowed (403)."""
    address = normalize_address(field, requested) if requested else None
    name = check_header_text(f"{field}_name", requested_name) if requested_name else None
    user = rules.user if rules.kind == "interactive" else None
    if address is not None:
        if rules.caller_role == "user":
            allowed = allowed_user_senders(user) if user is not None else []
            match = next((a for a in allowed if a.casefold() == address.casefold()), None)
            if match is None:
                detail = (f"{field}: a user key may send only from {' or '.join(allowed)}, not {address}; "
                          "leave `from` out to use the default" if allowed else
                          f"{field}: this user has no Email and no sender email, so it cannot send; an "
                          "administrator must set one")
                raise SenderNotAllowed(detail, errors=[{"field": field, "message": "sender not allowed"}],
                                       extra={"allowed_senders": allowed})
            address = match
        own = user is not None and address.casefold() in {a.casefold() for a in allowed_user_senders(user)}
        return ResolvedSender(address, name or (user.name if own and user is not None else None), "message")
    if user is not None:
        user_name = name or user.name
        if user.sender_email:
            return ResolvedSender(user.sender_email, user_name, "sender_override")
        if user.email:
            return ResolvedSender(user.email, user_name, "user_email")
        raise _no_sender(field, f"user {user.id} has no Email and no sender email; an administrator must set "
                                "the Email (PATCH /users/{id}) before mail can be sent on the user's behalf")
    t_addr, t_name = rules.template_sender
    if t_addr:
        return ResolvedSender(t_addr, name or t_name, "template")
    b_addr, b_name = rules.batch_account
    if b_addr:
        return ResolvedSender(b_addr, name or b_name, "batch_account", rules.batch_provider)
    raise _no_sender(field, "no sender: give `from`, or set the batch account (from_address) of the provider")
