"""The tracked spec matches the code, and the schema matches the migrations."""

from __future__ import annotations

import json
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import app.models  # noqa: F401
from app.core.db import metadata
from app.core.migrate import upgrade
from scripts.export_openapi import spec_text

ROOT = Path(__file__).resolve().parent.parent


def test_openapi_json_is_in_sync() -> None:
    tracked = (ROOT / "openapi" / "openapi.json").read_text()
    assert json.loads(tracked) == json.loads(spec_text()), (
        "openapi/openapi.json drifted from the code: run `make openapi` (python scripts/export_openapi.py)")


def test_every_operation_documents_its_problems() -> None:
    spec = json.loads(spec_text())
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary") or op.get("description"), (method, path)
            if path not in ("/healthz", "/readyz", "/status", "/metrics"):
                assert "401" in op["responses"], (method, path)


def _no_diff(sync_url: str) -> None:
    engine = create_engine(sync_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"


def test_migrations_match_models_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    _no_diff(url)


def test_migrations_match_models_postgres(pg_database: str) -> None:
    # pg_database is migrated by the fixture; inspect it with a sync driver-less URL through asyncpg's
    # SQLAlchemy dialect is async-only, so use the async engine's sync facade.
    import asyncio

    from app.core.db import create_engine as create_async

    async def _diff() -> list[object]:
        engine = create_async(pg_database)
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
        await engine.dispose()
        return list(diff)

    assert asyncio.run(_diff()) == []
