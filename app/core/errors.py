"""Errors as RFC 9457 problem details (`application/problem+json`), each kind with a stable `type`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_BASE = "https://outbox.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details, plus `errors` for field-level input problems."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
    choices: list[dict[str, Any]] | None = None


class AppError(Exception):
    status_code = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.extra = extra or {}


class InvalidInput(AppError):
    status_code = 422
    slug = "invalid-input"
    title = "The request is not valid"

    @classmethod
    def for_field(cls, field: str, reason: str) -> InvalidInput:
        """One field refused: `detail` and `errors[]` both name it."""
        return cls(f"{field}: {reason}", errors=[{"field": field, "message": reason}])


class Unauthorized(AppError):
    status_code = 401
    slug = "unauthorized"
    title = "Missing or invalid API key"


class Forbidden(AppError):
    status_code = 403
    slug = "forbidden"
    title = "This API key may not do that"


class NotFound(AppError):
    status_code = 404
    slug = "not-found"
    title = "Not found"


class Conflict(AppError):
    status_code = 409
    slug = "conflict"
    title = "Conflict with the current state"


class TooLarge(AppError):
    status_code = 413
    slug = "email-too-large"
    title = "The email is larger than the attachment size limit"


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str | None,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


_HTTP_SLUGS = {
    401: ("unauthorized", "Missing or invalid API key"),
    403: ("forbidden", "This API key may not do that"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("email-too-large", "The request is too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def jsonable_errors(errs: Any) -> list[dict[str, Any]]:
    out = []
    for e in errs:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        out.append({"field": ".".join(loc) or None, "message": str(e.get("msg", "")), "type": e.get("type")})
    return out


def validation_detail(errors: list[dict[str, Any]]) -> str | None:
    """One line for `detail`: every missing field at once (a PUT that left some out), else the first error."""
    missing = [str(e["field"]) for e in errors if e.get("type") == "missing"]
    if missing:
        return f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
    first = errors[0] if errors else None
    return f"{first.get('field') or 'request'}: {first.get('message')}" if first else None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return problem_response(
            exc.status_code, exc.slug, exc.title, exc.detail, request.url.path, exc.errors, exc.headers, exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_errors(exc.errors())
        return problem_response(422, "invalid-input", "The request is not valid", validation_detail(errors),
                                request.url.path, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug, title = _HTTP_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
        return problem_response(exc.status_code, slug, title, str(exc.detail), request.url.path,
                                headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _exc: Exception) -> JSONResponse:
        # Never a stack trace or internal detail (it could hold a secret) in the response; the log has it (the
        # request middleware logs it with the request id).
        return problem_response(500, "internal-error", "Internal error", "An unexpected error occurred; it was "
                                "logged. Nothing was committed.", request.url.path)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, _exc: IntegrityError) -> JSONResponse:
        # A race with another request on a unique key: nothing was committed; retrying will see the winner.
        return problem_response(409, "conflict", "Conflict with the current state",
                                "Another request changed the same data at the same moment; retry the request.",
                                request.url.path)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    @app.exception_handler(ConnectionError)
    @app.exception_handler(OSError)
    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        # The database (or Redis) is unreachable: nothing was committed, so the client may simply retry.
        return problem_response(
            503, "unavailable", "A dependency is unavailable; try again shortly",
            f"{type(exc).__name__}: the database or queue could not be reached", request.url.path,
            headers={"Retry-After": "5"},
        )


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for routes: document each problem status with the problem schema."""
    return {
        c: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for c in codes
    }
