"""The ASGI guard in front of every route: the API key is checked before a byte of the body is read, and the
body is read here, counted as it really arrives (chunked included), against a cap that fits the route.

- Protected routes (all but `/healthz`, `/readyz`, the docs and their files, and `/status` and `/metrics`
  unless `OUTBOX_STATUS_REQUIRES_KEY`): no key, a wrong key or a key of a disabled user is answered 401
  before the body is read. Wrong keys are remembered briefly (no database lookup for the same guess again),
  and a client with too many failed authentications in a minute gets 429 with `Retry-After` (`users.auth`).
- Body caps: message submission, draft edits and corrected resends, the attachment size limit (parameters)
  as base64 plus 1 MB; bulk submission `OUTBOX_MAX_BULK_BODY_MB`; templates and workflow events
  `OUTBOX_MAX_TEMPLATE_BODY_MB`; every other request `OUTBOX_MAX_BODY_KB`. Past the cap: 413 at once, the
  rest of the body is never read.
- At most `OUTBOX_LARGE_BODIES` bodies over 1 MB are held at once per API process; one more is answered 503
  with `Retry-After` before it is read further. A body that stalls for `OUTBOX_BODY_READ_TIMEOUT_SECONDS`
  is answered 408 and the connection closed.
- Strings no field can store or send are a client's mistake, answered 422 naming the field before any route
  runs: a NUL character in a query value or a JSON string (PostgreSQL cannot store it), a lone UTF-16
  surrogate in a JSON string (it cannot be encoded as UTF-8), and JSON nested more than `MAX_JSON_DEPTH` levels.

The route then gets the body in one piece, and the principal in the scope (`users.auth.get_principal`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import AppError, problem_response
from app.settings import Settings

log = logging.getLogger("outbox.api")
LARGE_BODY = 1024 * 1024
MB = 1024 * 1024
_PUBLIC = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_MONITORING = frozenset({"/status", "/metrics"})
_MESSAGE = re.compile(r"^/messages/?$")
_DRAFT = re.compile(r"^/messages/[^/]+/?$")
_RESEND = re.compile(r"^/messages/[^/]+/resend/?$")  # corrections may carry a whole body
_BULK = re.compile(r"^/messages/bulk/?$")
MAX_JSON_DEPTH = 32
_NUL_ESCAPE = re.compile(rb"\\u0000")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_TEMPLATE = re.compile(r"^/(templates|workflow-events)(/.*)?$")


def is_public(path: str, settings: Settings) -> bool:
    # The console (/console) signs in with the same keys, kept in a cookie: it authenticates each request itself
    # (app.console.session), with the same check as here.
    return (path in _PUBLIC or path.startswith("/docs-assets/") or path == "/console" or path.startswith("/console/")
            or (path in _MONITORING and not settings.status_requires_key))


def _string_problem(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain a NUL character"
    m = _LONE_SURROGATE.search(value)
    if m:
        return (f"contains a lone UTF-16 surrogate (U+{ord(m.group()):04X}), which is not a character: "
                "send valid surrogate pairs or UTF-8")
    return None


def json_problem(body: bytes, *, check_depth: bool = True) -> tuple[str, str] | None:
    """(field, reason) for the first string no field can take, or JSON nested too deep; None if fine (or not
    JSON at all: the route's parser says so). The body is parsed only when a cheap scan finds a suspect.
    `check_depth=False` for routes whose schema has no free-form (Any) field: their typed fields refuse nesting, and
    a bulk body's many brackets would otherwise have it parsed twice."""
    if not (_NUL_ESCAPE.search(body) or _SURROGATE_ESCAPE.search(body)
            or (check_depth and body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH)):
        return None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if (reason := _string_problem(value)) is not None:
                return path or "body", reason
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return path or "body", f"is nested more than {MAX_JSON_DEPTH} levels deep"
            if isinstance(value, list):
                stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
                continue
            for k, v in value.items():
                here = f"{path}.{k}" if path else str(k)
                if (reason := _string_problem(k)) is not None:
                    return here, "the name " + reason
                stack.append((v, here, depth + 1))
    return None


def query_problem(query_string: bytes) -> tuple[str, str] | None:
    if b"%00" not in query_string and b"\x00" not in query_string:
        return None
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if "\x00" in key or "\x00" in value:
            return f"query.{key.replace(chr(0), '')}", "must not contain a NUL character"
    return None


def _is_message(method: str, path: str) -> bool:
    return ((method == "POST" and (_MESSAGE.match(path) is not None or _RESEND.match(path) is not None))
            or (method == "PATCH" and _DRAFT.match(path) is not None))


def body_cap(method: str, path: str, settings: Settings, attachment_limit_mb: int | None) -> int:
    if method == "POST" and _BULK.match(path):
        return settings.max_bulk_body_mb * MB
    if _is_message(method, path):
        # The attachment limit is the size of the whole MIME message; its content arrives as base64 in JSON.
        return math.ceil((attachment_limit_mb or 150) * MB * 4 / 3) + MB
    if _TEMPLATE.match(path):
        return settings.max_template_body_mb * MB
    return settings.max_body_kb * 1024


class Guard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._large: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        settings: Settings = state.settings
        path: str = scope["path"]
        method: str = scope["method"]
        headers = dict(scope["headers"])
        try:
            if not is_public(path, settings):
                from app.users.auth import PRINCIPAL, authenticate, client_of  # local: core loads first

                auth = headers.get(b"authorization")
                scope[PRINCIPAL] = await authenticate(
                    state, auth.decode("latin-1") if auth is not None else None, client_of(scope))
            limit_mb = None
            if _is_message(method, path):
                from app.parameters import service as parameters_service

                params = parameters_service.peek()
                if params is None:
                    async with state.sessionmaker() as session:
                        params = await parameters_service.cached(session)
                limit_mb = params.attachment_size_limit_mb
        except AppError as exc:
            await _problem(scope, receive, send, exc.status_code, exc.slug, exc.title, exc.detail, exc.headers)
            return
        except (DBAPIError, OSError) as exc:
            await _problem(scope, receive, send, 503, "unavailable", "A dependency is unavailable; try again shortly",
                           f"{type(exc).__name__}: the database could not be reached", {"Retry-After": "5"})
            return
        if (bad := query_problem(scope.get("query_string", b""))) is not None:
            await _invalid(scope, receive, send, *bad)
            return
        length_raw = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        if length_raw is None and not chunked:
            await self.app(scope, receive, send)
            return
        cap = body_cap(method, path, settings, limit_mb)
        length = int(length_raw) if length_raw is not None and length_raw.isdigit() else None
        if length_raw is not None and (length is None or length > cap):
            await _too_large(scope, receive, send, cap)
            return
        if self._large is None:
            self._large = asyncio.Semaphore(settings.large_bodies)
        large = self._large
        holding = False
        try:
            if length is not None and length > LARGE_BODY:
                if large.locked():
                    await _busy(scope, receive, send, settings)
                    return
                await large.acquire()
                holding = True
            chunks: list[bytes] = []
            received = 0
            while True:
                try:
                    # asyncio.timeout, not wait_for: no task per chunk (wait_for wraps the receive in one).
                    async with asyncio.timeout(settings.body_read_timeout_seconds):
                        message = await receive()
                except TimeoutError:  # a half-sent body (slowloris): uvicorn itself never times it out
                    chunks.clear()
                    await _problem(scope, receive, send, 408, "request-timeout", "The request body stalled",
                                   f"No part of the body arrived for {settings.body_read_timeout_seconds:g} s.",
                                   {"Connection": "close"})
                    return
                if message["type"] == "http.disconnect":
                    return  # the client left: nothing to answer
                chunk: bytes = message.get("body", b"")
                received += len(chunk)
                if received > cap:
                    del chunks
                    await _too_large(scope, receive, send, cap)
                    return
                if not holding and received > LARGE_BODY:
                    if large.locked():
                        del chunks
                        await _busy(scope, receive, send, settings)
                        return
                    await large.acquire()
                    holding = True
                if chunk:
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            del chunks
            free_form = not (_is_message(method, path) or (method == "POST" and _BULK.match(path)))
            if (b"json" in headers.get(b"content-type", b"")
                    and (bad := json_problem(body, check_depth=free_form)) is not None):
                await _invalid(scope, receive, send, *bad)
                return
            delivered = False

            async def replay() -> Message:
                nonlocal delivered, body
                if not delivered:
                    delivered = True
                    whole, body = body, b""
                    return {"type": "http.request", "body": whole, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
        finally:
            if holding:
                large.release()


async def _problem(scope: Scope, receive: Receive, send: Send, status: int, slug: str, title: str,
                   detail: str | None, headers: dict[str, str] | None = None) -> None:
    response = problem_response(status, slug, title, detail, scope["path"], headers=headers)
    await response(scope, receive, send)


async def _invalid(scope: Scope, receive: Receive, send: Send, field: str, reason: str) -> None:
    response = problem_response(422, "invalid-input", "The request is not valid", f"{field}: {reason}",
                                scope["path"], errors=[{"field": field, "message": reason}])
    await response(scope, receive, send)


async def _too_large(scope: Scope, receive: Receive, send: Send, cap: int) -> None:
    size = f"{cap // MB} MB" if cap >= MB else f"{cap // 1024} KB"
    await _problem(scope, receive, send, 413, "request-too-large", "The request is too large",
                   f"The body of {scope['method']} {scope['path']} is limited to {size}.", {"Connection": "close"})


async def _busy(scope: Scope, receive: Receive, send: Send, settings: Settings) -> None:
    await _problem(scope, receive, send, 503, "busy", "Too many large requests at once",
                   f"This API process reads at most {settings.large_bodies} bodies over 1 MB at once; "
                   "try again shortly.", {"Retry-After": "2", "Connection": "close"})
