"""'How would you like to send email': which provider an interactive message goes out through.

The user's `email_provider` option decides; when it is blank ("ask me each time") and the request names no
provider, `ChooseProvider` (409, type `choose-provider`) lists the choices available to this user now, with
the one to propose (the last choice made), so that a client can show the dialog and ask again.

The choices are the interactive providers the administrator offers (email parameters, `interactive_providers`,
the email app included), of those the ones configured (and Exchange only for users inside the organization).
A provider not offered cannot be chosen here, in the user's options (`not_offered_reason`) or on a submission.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import AppError
from app.models import User
from app.parameters import service as parameters_service
from app.providers import service as providers_service

__all__ = ["CHOICE_LABELS", "ChooseProvider", "ProviderUnavailable", "available_choices", "decide_provider"]

# The dialog's wording (reference article, "[User] How would you like to send email dialog box").
CHOICE_LABELS: dict[str, str] = {
    "email_app": "Use an email app, such as Outlook",
    "exchange": "Use Exchange email server",
    "smtp": "Use the system email client",
    "graph": "Use Microsoft Graph",
}


class ChooseProvider(AppError):
    status_code = 409
    slug = "choose-provider"
    title = "Choose how to send this email"


class ProviderUnavailable(AppError):
    status_code = 409
    slug = "provider-unavailable"
    title = "That way of sending email is not available"


async def not_offered_reason(session: AsyncSession, provider: str) -> str | None:
    """Why `provider` cannot be chosen for interactive mail at all (not among the interactive providers the
    email parameters offer); None when it is offered."""
    offered = (await parameters_service.cached(session)).interactive_providers
    if provider in offered:
        return None
    label = CHOICE_LABELS.get(provider, provider)
    return (f"{provider} ({label!r}) is not offered to users: the email parameters' interactive providers are "
            f"{', '.join(offered)}. An administrator can add it (PUT /parameters, interactive_providers).")


async def _unavailable_reason(session: AsyncSession, user: User, provider: str) -> tuple[str, str] | None:
    """(reason code, explanation) when `provider` cannot be used by `user` now; None when it can."""
    why = await not_offered_reason(session, provider)
    if why is not None:
        return ("not_offered", why)
    if provider == "email_app":
        return None
    if provider == "exchange" and user.external:
        return ("external_user", "Exchange is not available to users outside the organization (this user is "
                                 "marked external); choose another way to send.")
    if await providers_service.get_row(session, provider) is None:
        return ("not_configured", f"The {provider} provider is not configured; an administrator must set it "
                                  f"up (PUT /providers/{provider}) before email can be sent through it.")
    return None


async def available_choices(session: AsyncSession, user: User) -> list[dict[str, Any]]:
    """The choices the dialog offers this user now: of the interactive providers offered (email parameters),
    the email app, and the others where configured (Exchange only for users inside the organization)."""
    out = []
    for provider, label in CHOICE_LABELS.items():
        if await _unavailable_reason(session, user, provider) is None:
            out.append({"provider": provider, "label": label})
    return out


async def decide_provider(
    session: AsyncSession,
    user: User,
    requested: str | None,
    *,
    do_not_ask_again: bool = False,
    remember: bool = True,
) -> str:
    """The provider to send through: the one requested, else the user's option, else `ChooseProvider`.

    With `remember`, a requested provider is stored: as the user's `email_provider` with `do_not_ask_again`
    (the dialog is not shown again), otherwise as `last_provider_choice` (proposed next time). Flushes only.
    """
    choices = await available_choices(session, user)
    ids = [c["provider"] for c in choices]
    proposed = user.last_provider_choice if user.last_provider_choice in ids else None
    extra: dict[str, Any] = {"choices": choices, "proposed": proposed}
    provider = requested or user.email_provider
    if provider is None:
        raise ChooseProvider(
            "This user is asked each time how to send email (their email provider option is blank). Send "
            "again naming one of `choices` as `provider`; add `do_not_ask_again: true` to make it their "
            "default.",
            extra=extra)
    reason = await _unavailable_reason(session, user, provider)
    if reason is not None:
        origin = "" if requested else f"The user's email provider option is {provider}, but: "
        raise ProviderUnavailable(origin + reason[1] + " Send again naming one of `choices` as `provider`.",
                                  extra={**extra, "provider": provider, "reason": reason[0]})
    if requested is not None and remember:
        if do_not_ask_again:
            user.email_provider = requested
        user.last_provider_choice = requested
        session.add(user)
        await session.flush()
    return provider
