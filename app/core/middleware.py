"""Request ids, and a cap on request size before the body is read."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI, Request, Response

from app.core.errors import problem_response

# Generous: the per-email limit (parameters) is checked precisely after decoding; this only stops abuse.
MAX_BODY_BYTES = 210 * 1024 * 1024


def install_middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def _request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        if not rid.isprintable() or len(rid) > 100:
            rid = uuid.uuid4().hex
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return problem_response(413, "request-too-large", "The request is too large",
                                    f"Requests are limited to {MAX_BODY_BYTES // 1048576} MB", request.url.path)
        structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        response.headers["X-Request-ID"] = rid
        return response
