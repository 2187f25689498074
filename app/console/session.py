"""Signing in to the console, and protection against cross-site request forgery.

The API key is the credential, as for the API: it is kept in an HttpOnly, SameSite=Strict cookie scoped to
/console (never rendered into a page, never readable by a script) and checked on every request exactly as a
Bearer key is (`users.auth.authenticate`: the same cache, revocations, disabled users and failure limit).

Every POST carries a per-session CSRF token in a hidden field, compared with the token in a second HttpOnly
cookie (a fresh random value at each sign-in; double-submit). A cross-site form cannot read or set that cookie,
and SameSite=Strict keeps both cookies off cross-site requests altogether. A POST whose Origin header names
another site is refused too.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from fastapi import Request, Response

from app.core.errors import AppError, Forbidden
from app.core.security import Principal
from app.users.auth import authenticate, client_of

KEY_COOKIE = "outbox_console"
CSRF_COOKIE = "outbox_console_csrf"
CSRF_FIELD = "csrf"
PATH = "/console"


class SignInNeeded(Exception):
    """No key, or a key that no longer works: the page redirects to the sign-in form."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "")
        self.reason = reason


class CsrfRefused(Forbidden):
    slug = "csrf-token-invalid"
    title = "The form's security token is missing or wrong"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(name, value, path=PATH, httponly=True, samesite="strict", secure=_secure(request))


def clear_cookies(response: Response, request: Request) -> None:
    for name in (KEY_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path=PATH, httponly=True, samesite="strict", secure=_secure(request))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(request: Request) -> str:
    """The token this session's forms carry (the cookie's value); a fresh one when there is none yet (sign-in
    form), which the response then sets (`ensure_csrf_cookie`)."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) < 32:
        token = getattr(request.state, "new_csrf", None) or new_token()
        request.state.new_csrf = token
    return token


def ensure_csrf_cookie(response: Response, request: Request) -> None:
    new: str | None = getattr(request.state, "new_csrf", None)
    if new:
        set_cookie(response, request, CSRF_COOKIE, new)


def check_csrf(request: Request, form: Any) -> None:
    """Refuses (403) a POST without the session's token, or sent from another site."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin.rstrip("/") != own:
            raise CsrfRefused(f"This form was sent from {origin}, not from the console ({own}).")
    sent = form.get(CSRF_FIELD)
    expected = request.cookies.get(CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused("The form's security token is missing or does not match this session: reload the page "
                          "and send the form again.")


async def principal(request: Request) -> Principal:
    """Who is signed in: the key in the cookie, authenticated as a Bearer key is."""
    key = request.cookies.get(KEY_COOKIE)
    if not key:
        raise SignInNeeded()
    try:
        return await authenticate(request.app.state, "Bearer " + key, client_of(request.scope))
    except AppError as exc:
        raise SignInNeeded(exc.detail) from exc


async def sign_in(request: Request, key: str) -> Principal:
    """Checks a key typed into the sign-in form. Service keys are for programs: refused here."""
    who = await authenticate(request.app.state, "Bearer " + key.strip(), client_of(request.scope))
    if who.role == "service":
        raise Forbidden("A service key cannot sign in to the console: use an admin key, or a user's own key.")
    return who
