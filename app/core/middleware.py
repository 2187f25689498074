"""Request ids, and a cap on request size before the body is read.

Plain ASGI (not Starlette's BaseHTTPMiddleware, which costs a task and a stream copy per request).
"""

from __future__ import annotations

import uuid

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem_response

# Generous: the per-email limit (parameters) is checked precisely after decoding; this only stops abuse.
MAX_BODY_BYTES = 210 * 1024 * 1024


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        rid_raw = headers.get(b"x-request-id", b"")
        rid = rid_raw.decode("latin-1") if rid_raw else ""
        if not rid or not rid.isprintable() or len(rid) > 100:
            rid = uuid.uuid4().hex
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            response = problem_response(413, "request-too-large", "The request is too large",
                                        f"Requests are limited to {MAX_BODY_BYTES // 1048576} MB", scope["path"])
            await response(scope, receive, send)
            return
        rid_bytes = rid.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid_bytes)]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")


def install_middleware(app: FastAPI) -> None:
    app.add_middleware(RequestContext)
