"""A webhook receiver on a loopback port (a real HTTP server: uvicorn), that verifies every delivery's signature
with the `standardwebhooks` library and answers as the test says (status, delay)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.requests import Request
from starlette.responses import Response


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: dict[str, Any] | None


@dataclass
class Receiver:
    port: int = 0
    secrets: list[str] = field(default_factory=list)  # verify with each; `verified` if any matches
    # (request number from 1) -> (status, delay seconds); default 204 at once
    answer: Callable[[int], tuple[int, float]] = lambda _n: (204, 0.0)
    received: list[Delivery] = field(default_factory=list)
    requests: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def verify(self, body: bytes, headers: dict[str, str]) -> dict[str, Any] | None:
        for s in self.secrets:
            try:
                out: dict[str, Any] = Webhook(s).verify(body, headers)
                return out
            except WebhookVerificationError:
                continue
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        self.requests += 1
        status, delay = self.answer(self.requests)
        if delay:
            await asyncio.sleep(delay)
        headers = {k.lower(): v for k, v in request.headers.items()}
        payload = self.verify(body, headers)
        if 200 <= status < 300:
            self.received.append(Delivery(headers, body, payload is not None,
                                          payload if payload is not None else json.loads(body)))
            self.arrived.set()
        await Response(status_code=status)(scope, receive, send)

    def ids(self) -> list[str]:
        return [d.headers["webhook-id"] for d in self.received]

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async def _wait() -> None:
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(_wait(), timeout)


@contextlib.asynccontextmanager
async def receiver(**kw: Any) -> AsyncIterator[Receiver]:
    r = Receiver(**kw)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    r.port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(r, log_level="warning", lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield r
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        sock.close()
