"""Real parts: PostgreSQL and Redis over real connections, SQLite files, an in-process aiosmtpd server.

PostgreSQL: a fresh database per test session on $TEST_PG (default postgresql://postgres@127.0.0.1:5432),
migrated once with the project's Alembic migrations; each test truncates the tables it touched.
Redis: $TEST_REDIS (default redis://127.0.0.1:6379/15), flushed per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import text

from app.core.migrate import upgrade
from app.core.redis import connect
from app.main import create_app
from app.settings import Settings
from app.users import keys as key_service
from tests.support.smtp_server import SmtpServer
from worker.context import WorkerContext

os.environ.setdefault("OUTBOX_TUNE_GC", "false")  # many apps start in this one process
PG = os.environ.get("TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("TEST_REDIS", "redis://127.0.0.1:6379/15")
TABLES = ("delivery_attempt, message_attachment, message, api_key, app_user, provider_config, email_parameters, "
          "email_template_content, email_template, notification_rule, workflow_event, webhook_delivery, "
          "webhook_event, webhook_endpoint, suppression, message_bounce, message_complaint, bounce_mailbox")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = "outbox_test_" + uuid.uuid4().hex[:8]

    async def _admin(sql: str) -> None:
        conn = await asyncpg.connect(PG + "/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    url = f"{PG}/{name}"
    upgrade(url)
    yield url
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres":
        # Tables are truncated in `running_env`'s teardown.
        yield request.getfixturevalue("pg_database")
    else:
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "outbox.db"
        path.write_bytes(template.read_bytes())
        yield f"sqlite:///{path}"


@pytest.fixture
def pg_url(pg_database: str) -> str:
    return pg_database


@dataclass
class Env:
    """A running Outbox (API in-process over ASGI, worker context) against real stores."""

    settings: Settings
    client: httpx.AsyncClient
    app: Any
    redis: ArqRedis
    admin_key: str
    worker_ctx: WorkerContext

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def new_key(self, role: str, user_id: int | None = None) -> str:
        async with self.app.state.sessionmaker() as s:
            key = await key_service.create(s, role=role, user_id=user_id)
            await s.commit()
        return key

    async def deliver(self) -> int:
        from worker.dispatch import deliver

        return await deliver(self.worker_ctx)

    async def reconcile(self) -> dict[str, int]:
        from worker.reconcile import reconcile

        return await reconcile(self.worker_ctx)

    async def use_smtp(self, server: SmtpServer, **extra: Any) -> None:
        body = {"host": "127.0.0.1", "port": server.port, "tls": "none", "authentication_required": False,
                "from_address": "outbox@example.com", "per_minute_limit": 0, "timeout_seconds": 5, **extra}
        r = await self.client.patch("/providers/smtp", json=body)
        assert r.status_code == 200, r.text

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        async with self.app.state.sessionmaker() as s:
            res = await s.execute(text(statement), params)
            rows = list(res.all()) if res.returns_rows else []
            await s.commit()
            return rows


@contextlib.asynccontextmanager
async def running_env(db: str, redis_url: str = REDIS, **settings_kw: Any) -> AsyncIterator[Env]:
    settings = Settings(DATABASE_URL=db, REDIS_URL=redis_url, OUTBOX_SECRET_KEYS=os.environ.get(
        "OUTBOX_TEST_SECRET_KEY", "kRYq5XbX7xkq8o2sFZ1S1X3f0pWq0yT8m3vV6cZ9aQk="), **settings_kw)
    redis = await connect(redis_url)
    await redis.flushdb()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.sessionmaker() as s:
            admin = await key_service.create(s, role="admin", name="test admin")
            await s.commit()
        from worker.main import build_context

        ctx = await build_context({"redis": redis}, settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://outbox.test",
                                     headers={"Authorization": f"Bearer {admin}"}) as client:
            env = Env(settings, client, app, redis, admin, ctx)
            try:
                yield env
            finally:
                ctx["heartbeat"].cancel()
                for _, t in ctx["pools"].values():
                    await t.aclose()
                await ctx["engine"].dispose()
                if not db.startswith("sqlite"):
                    async with app.state.engine.begin() as conn:
                        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    await redis.flushdb()
    await redis.aclose()


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[Env]:
    async with running_env(db_url) as e:
        yield e


@pytest.fixture
async def pg_env(pg_url: str) -> AsyncIterator[Env]:
    async with running_env(pg_url) as e:
        yield e


@pytest.fixture
async def sqlite_env(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Env]:
    """The embedded default alone (a copy of the migrated template)."""
    path = tmp_path / "outbox.db"
    path.write_bytes(sqlite_template.read_bytes())
    async with running_env(f"sqlite:///{path}") as e:
        yield e


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server
