"""What every local HTTPS fake shares: uvicorn serving a Starlette app in a daemon thread behind a trustme
certificate, the lifecycle (`start`/`stop`, context manager), request recording, per-route scripted answers,
and waiting for a signal when run standalone. A fake subclasses `HttpsFake` and keeps only its protocol."""

from __future__ import annotations

import asyncio
import signal
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = [
    "BackgroundServer",
    "HttpsFake",
    "RecordedRequest",
    "ScriptQueues",
    "Scripted",
    "request_headers",
    "wait_for_signal",
]


@dataclass(frozen=True)
class RecordedRequest:
    route: str
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Scripted:
    """One scripted answer. `status=None` means: wait `delay` seconds, then answer normally."""

    status: int | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def response(self) -> Response:
        assert self.status is not None
        if self.json is None:
            return Response(status_code=self.status, headers=self.headers)
        return JSONResponse(self.json, status_code=self.status, headers=self.headers)


def request_headers(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


class BackgroundServer:
    """Serves a Starlette app over HTTPS (trustme CA) with uvicorn in a daemon thread.

    A thread with its own event loop keeps the fake independent of the test's loop, and works from sync
    code (MSAL runs in worker threads) and standalone.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, tls: bool = True) -> None:
        self._host = host
        self._port = port
        self._tls = tls
        self._dir = tempfile.TemporaryDirectory(prefix="outbox-fake-")
        self.ca_path = str(Path(self._dir.name) / "ca.pem")
        self.stopping = threading.Event()  # ends scripted delays early so shutdown is quick
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self._host}:{self.port}"

    def start(self, app: Starlette) -> None:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(self.ca_path)
        cert_path = str(Path(self._dir.name) / "server.pem")
        ca.issue_cert(self._host, "localhost").private_key_and_cert_chain_pem.write_to_path(cert_path)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            ssl_certfile=cert_path if self._tls else None,
            log_config=None,  # leave the process's logging alone
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        self._sock = sock

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._sock.close()
        self._server = None
        self._thread = None
        self._dir.cleanup()

    async def pause(self, seconds: float) -> None:
        """Sleep inside a handler, cut short when the server stops."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(0.02, remaining))


class ScriptQueues:
    """Per-route queues of scripted answers (tests push from their thread; the server pops from its own)."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Scripted]] = {}
        self._lock = threading.Lock()

    def push(self, route: str, answers: Iterable[Scripted]) -> None:
        with self._lock:
            self._queues.setdefault(route, deque()).extend(answers)

    def pop(self, route: str) -> Scripted | None:
        with self._lock:
            queue = self._queues.get(route)
            return queue.popleft() if queue else None

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()

    async def play(self, route: str, server: BackgroundServer) -> Response | None:
        """Take the next answer scripted for `route`: wait its delay, then return its response, or None
        (nothing scripted, or a delay only) for the normal answer."""
        answer = self.pop(route)
        if answer is None:
            return None
        await server.pause(answer.delay)
        return answer.response() if answer.status is not None else None


class HttpsFake:
    """A fake on one HTTPS port: lifecycle, `url`/`port`/`ca_path`, and `requests`, the record of what its
    protocol routes received. Subclasses give their routes in `_routes()` and extend `reset()`."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = BackgroundServer(host=host, port=port)
        self.requests: list[RecordedRequest] = []

    def _routes(self) -> list[Route]:
        raise NotImplementedError

    def start(self) -> Self:
        self._server.start(Starlette(routes=self._routes()))
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget what was recorded (between tests sharing one server)."""
        self.requests.clear()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def ca_path(self) -> str:
        return self._server.ca_path

    async def _record(self, route: str, request: Request) -> tuple[dict[str, str], bytes]:
        """Record a request to `route`; returns its headers (lower-case names) and body."""
        body = await request.body()
        headers = request_headers(request)
        self.requests.append(
            RecordedRequest(route, request.method, request.url.path, request.url.query, headers, body)
        )
        return headers, body


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM (a background job of a non-interactive shell ignores SIGINT)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
