"""The `outbox` command."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar, cast

import typer
from rich.console import Console

from app.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

cli = typer.Typer(no_args_is_help=True, help="Outbox: the email service for business software.")
db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")
key_cli = typer.Typer(no_args_is_help=True, help="API keys.")
secrets_cli = typer.Typer(no_args_is_help=True, help="Encryption keys for stored secrets.")
cli.add_typer(db_cli, name="db")
cli.add_typer(key_cli, name="api-key")
cli.add_typer(secrets_cli, name="secrets")
console = Console(stderr=True)


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations to DATABASE_URL (or the embedded SQLite file)."""
    from app.core.migrate import upgrade

    settings = get_settings()
    if not settings.database_url:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)
    console.print("database is up to date")


async def _with_session(fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from app.core.db import create_engine, make_sessionmaker

    engine = create_engine(get_settings().effective_database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            result = await fn(session)
            await session.commit()
            return result
    finally:
        await engine.dispose()


@key_cli.command("create")
def api_key_create(
    role: Annotated[str, typer.Option(help="admin | service | user")],
    user: Annotated[int | None, typer.Option("--user", help="The user a `user` key acts as")] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the key by")] = "",
) -> None:
    """Create an API key. The key is printed once, alone on the last line."""
    from app.users import keys as key_service

    try:
        key = asyncio.run(_with_session(lambda s: key_service.create(s, role=role, user_id=user, name=name)))
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(f"created a {role} key; store it now, it is not shown again:")
    print(key)


@key_cli.command("revoke")
def api_key_revoke(key_id: int) -> None:
    """Revoke a key by id: it stops working at once."""
    from app.users import keys as key_service

    ok = asyncio.run(_with_session(lambda s: key_service.revoke(s, key_id)))
    if not ok:
        console.print(f"[red]no active key {key_id}[/red]")
        raise typer.Exit(1)
    asyncio.run(_announce_revoked())
    console.print(f"key {key_id} revoked")


async def _announce_revoked() -> None:
    """Tell running API processes to forget cached keys (they listen on Redis)."""
    from app.core.redis import connect
    from app.users import auth_cache

    settings = get_settings()
    try:
        redis = await connect(settings.effective_redis_url)
    except Exception:
        console.print(f"Redis unreachable: running API processes stop accepting the key within {auth_cache.TTL:.0f} s")
        return
    try:
        await auth_cache.announce_revoked(redis)
    finally:
        await redis.aclose()


@secrets_cli.command("generate-key")
def secrets_generate_key() -> None:
    """Print a new Fernet key for OUTBOX_SECRET_KEYS (put new keys first, comma-separated)."""
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())


@secrets_cli.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret with the first key of OUTBOX_SECRET_KEYS."""
    from app.core.crypto import SecretUndecryptable
    from app.providers import secrets as provider_secrets

    try:
        n = asyncio.run(_with_session(lambda s: provider_secrets.rotate_all(s, get_settings())))
    except SecretUndecryptable as exc:
        console.print(f"[red]{exc}: add the key they were encrypted with to OUTBOX_SECRET_KEYS (after the new "
                      "one), or clear and re-enter those secrets. Nothing was changed.[/red]")
        raise typer.Exit(1) from exc
    console.print(f"re-encrypted {n} stored secret(s) with the newest key")


_WORKER_CMD = [sys.executable, "-m", "app.cli", "worker"]


@cli.command("worker")
def worker() -> None:
    """Run one delivery worker (arq), logging in the API's format. Run it under a supervisor that restarts it:
    arq's loop ends when it loses Redis."""
    from arq.typing import WorkerSettingsBase
    from arq.worker import run_worker

    from worker.main import WorkerSettings  # configures logging on import

    # arq's CLI takes the class as it is too: it is read for its attributes, not as a subclass.
    run_worker(cast(type[WorkerSettingsBase], WorkerSettings))


@cli.command("bounces")
def bounces(
    listen: Annotated[str | None, typer.Option(help="host:port (default OUTBOX_BOUNCE_LISTEN)")] = None,
) -> None:
    """Listen for bounces (DSNs) and feedback-loop complaints (ARF) over SMTP: point your relay's route for
    bounces+*@OUTBOX_BOUNCE_DOMAIN and the complaints address (OUTBOX_COMPLAINTS_ADDRESS, default
    complaints@OUTBOX_BOUNCE_DOMAIN) here. Records bounced and complaining recipients, suppresses hard bounces
    and spam complaints, sends message.bounced and message.complained webhooks."""
    import asyncio

    from app.bounces.listener import run as run_listener
    from app.core.logging import configure_logging

    settings = get_settings()
    configure_logging(settings)
    asyncio.run(run_listener(settings, listen))


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env)


UVICORN_LIMITS = ("--timeout-keep-alive", "5", "--limit-concurrency", "1000")


@cli.command("run")
def run(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
) -> None:
    """Run the API (with Swagger UI at /docs) and the worker together, on the embedded default unless
    DATABASE_URL / REDIS_URL are set. Restarts a worker that stops; Ctrl-C stops everything."""
    import logging

    import httpx

    from app.core.logging import configure_logging

    settings = get_settings()
    configure_logging(settings)  # the same format as the API's and the workers' lines it is interleaved with
    log = logging.getLogger("outbox.run")
    env = dict(os.environ)
    # No uvicorn access line: the request middleware logs each request once, with its id.
    # Idle keep-alive connections closed after 5 s; past 1000 open connections uvicorn answers 503 at once.
    api = _spawn([sys.executable, "-m", "uvicorn", "app.main:app", "--host", host, "--port", str(port),
                  "--no-access-log", *UVICORN_LIMITS], env)
    base = f"http://{host}:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if api.poll() is not None:
            raise typer.Exit(api.returncode or 1)
        time.sleep(0.1)
    # The API started the embedded Valkey (inside its lifespan): point the workers at it.
    env["REDIS_URL"] = settings.effective_redis_url
    env["DATABASE_URL"] = settings.database_url or settings.effective_database_url
    procs = [_spawn(_WORKER_CMD, env) for _ in range(workers)]
    log.info("Outbox is running: API %s (Swagger UI %s/docs), %d worker(s). Ctrl-C stops.", base, base, workers)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stopping:
        time.sleep(0.5)
        if api.poll() is not None:
            break
        for i, p in enumerate(procs):
            if p.poll() is not None and not stopping:
                # arq's loop ends when it loses Redis (TRAPS.md): start it again.
                log.warning("worker %d stopped (exit %s); restarting it", i, p.returncode)
                procs[i] = _spawn(_WORKER_CMD, env)
    for p in [*procs, api]:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in [*procs, api]:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
