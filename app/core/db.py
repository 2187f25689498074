"""Database engine and sessions. PostgreSQL (asyncpg) in production, SQLite (aiosqlite) embedded."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine import CursorResult, Result, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata: MetaData = SQLModel.metadata


def rowcount(res: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched. `AsyncSession.execute` is typed to return a `Result`; for these
    statements it is a `CursorResult`, which alone has `rowcount`."""
    assert isinstance(res, CursorResult), type(res)
    return res.rowcount


def async_url(url: str) -> str:
    """`postgresql://...` / `sqlite:///...` as given by the user -> the async driver URL."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "postgresql":
        u = u.set(drivername="postgresql+asyncpg")
    elif backend == "sqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    else:
        raise ValueError(f"unsupported DATABASE_URL scheme {u.drivername!r}: use postgresql:// or sqlite:///")
    return u.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    aurl = async_url(url)
    if is_sqlite(url):
        engine = create_async_engine(aurl, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _rec: Any) -> None:
            # WAL lets readers proceed while one writer commits; the busy timeout makes writers queue
            # instead of failing with "database is locked" (TRAPS.md).
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    # No pre-ping (a round trip per request): a connection broken by a database restart fails one request
    # with a 503 (problem+json, Retry-After), and SQLAlchemy then replaces the whole pool.
    kwargs.setdefault("pool_recycle", 1800)
    return create_async_engine(aurl, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
