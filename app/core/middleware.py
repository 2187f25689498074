"""Request ids and one log line per request; the guard (API key before the body, body caps) is `core.guard`.

Plain ASGI (not Starlette's BaseHTTPMiddleware, which costs a task and a stream copy per request).
"""

from __future__ import annotations

import time
import uuid

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.guard import Guard

log = structlog.get_logger("outbox.request")
# Polled many times a minute by load balancers and monitoring: logged only when they do not answer 200.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
SLOW_SECONDS = 1.0  # with OUTBOX_REQUEST_LOG=errors, a request this slow is logged whatever its status


def _worth_a_line(scope: Scope, path: str, status: int, elapsed: float) -> bool:
    if path in _QUIET_PATHS:
        return status != 200
    settings = getattr(getattr(scope.get("app"), "state", None), "settings", None)
    if settings is not None and settings.request_log == "errors":
        return status >= 400 or elapsed >= SLOW_SECONDS
    return True


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
        rid_bytes = rid.encode("latin-1")
        status = 500  # what the client gets when the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid_bytes)]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Logged here, where the request id is still bound; the outermost handler answers 500 without detail.
            log.exception(f"unhandled error on {scope['method']} {scope['path']}")
            raise
        finally:
            elapsed = time.perf_counter() - started
            if _worth_a_line(scope, scope["path"], status, elapsed):
                log.info("request", method=scope["method"], path=scope["path"], status=status,
                         duration_ms=round(elapsed * 1000, 1))
            structlog.contextvars.unbind_contextvars("request_id")


def install_middleware(app: FastAPI) -> None:
    app.add_middleware(Guard)
    app.add_middleware(RequestContext)  # outermost: the guard's answers carry the request id and a log line
