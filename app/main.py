"""The ASGI app: `app.main:app`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.console.router import install_console
from app.core import db, openapi_docs
from app.core.crypto import load_keys
from app.core.docs import install_docs
from app.core.embedded import EmbeddedValkey
from app.core.errors import install_error_handlers
from app.core.jobs import JobFlusher
from app.core.logging import configure_logging
from app.core.middleware import install_middleware
from app.core.migrate import upgrade
from app.core.redis import connect
from app.core.runtime import tune_gc
from app.history.router import router as history_router
from app.messages.ingest import IngestBatcher
from app.messages.router import router as messages_router
from app.monitoring.router import router as monitoring_router
from app.parameters.router import router as parameters_router
from app.providers.router import router as providers_router
from app.settings import Settings, get_settings
from app.suppressions.router import router as suppressions_router
from app.templates.router import router as templates_router
from app.users import auth_cache
from app.users.router import keys_router
from app.users.router import router as users_router
from app.webhooks.router import router as webhooks_router
from app.workflow.router import router as workflow_router

log = logging.getLogger("outbox.api")

DESCRIPTION = """
Outbox sends email for other systems. Services submit messages (`POST /messages`); a worker sends them through
the configured provider (SMTP, Microsoft Graph, or the deprecated Exchange), throttled per provider, and records
every attempt. Administrators configure parameters, providers and users here; monitoring polls `/status`.

**Authentication**: every endpoint except `/healthz`, `/readyz`, `/status` and `/metrics` needs
`Authorization: Bearer <api key>`. Create the first admin key with `outbox api-key create --role admin`,
then press *Authorize* above and paste it.

**Errors** are `application/problem+json` (RFC 9457) with a stable `type` URI per kind of error.
"""


# The administrator's work, in order: Swagger UI shows the tags in this order, each with its description.
TAGS: list[dict[str, str]] = [
    {"name": "parameters", "description": "**Start here.** The email parameters: which provider sends batch "
     "email, the size limit of one email, how long unsent messages wait and how long history is kept, and the "
     "distributor batch switch. Read with GET; change one field with PATCH, or send the whole set with PUT."},
    {"name": "providers", "description": "How email leaves: **SMTP**, **Microsoft Graph** (recommended for "
     "Microsoft 365) and **Exchange** (EWS, deprecated). Set up one, *verify* it (nothing is sent), then send "
     "a *test* email. Secrets are write-only: no response ever contains one, and leaving a secret out of a "
     "PATCH or PUT keeps the stored one."},
    {"name": "users", "description": "The people Outbox sends for, and their email options: the provider they "
     "send with, their sender address, and whether workflow notifications reach them."},
    {"name": "api-keys", "description": "Keys for services (`service`), administrators (`admin`) and users "
     "acting for themselves (`user`). A key is shown once, when it is created; revoking it takes effect at "
     "once in every API process."},
    {"name": "templates", "description": "Email templates (system and organisation), one text per language, "
     "with placeholders rendered in a sandbox. Preview one with *render* before using it."},
    {"name": "workflow", "description": "Business events that send notification email: rules say which "
     "template goes to whom; a service reports an event and Outbox sends what the rules say."},
    {"name": "messages", "description": "Submit email (one, or many at once), follow it, and act on it: "
     "cancel, retry, edit and send a draft, download it as an `.eml` file."},
    {"name": "history", "description": "Email history: what was sent, failed or expired, with the attempts "
     "and, for each failure, its explanation and fix."},
    {"name": "webhooks", "description": "Outcomes pushed to your services: signed (Standard Webhooks) events "
     "for sent, failed, bounced, expired, held, deferred and complained-about messages, retried for about three "
     "days, with a delivery log and a test ping. The signing secret is shown once."},
    {"name": "suppressions", "description": "Addresses Outbox no longer sends to: added by a hard bounce, a spam "
     "complaint or an administrator. A submission to one is refused naming the field, or sent without it on "
     "request."},
    {"name": "monitoring", "description": "For load balancers and monitoring, without a key: liveness, "
     "readiness, the service status (queue, workers, providers) and Prometheus metrics."},
]


def _unique_id(route: APIRoute) -> str:
    return f"{route.tags[0] if route.tags else 'default'}-{route.name}"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    load_keys(settings)  # production refuses to start without an encryption key
    auth_cache.forget()  # per-process state starts with the app (tests start many apps in one process)
    auth_cache.reset_failures()
    embedded: EmbeddedValkey | None = None
    redis_url = settings.effective_redis_url
    if settings.embedded_redis:
        embedded = EmbeddedValkey(settings.var_dir / "valkey", settings.embedded_redis_port)
        redis_url = await asyncio.to_thread(embedded.start)
    if not settings.database_url:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(upgrade, settings.effective_database_url)
    engine = db.create_engine(settings.effective_database_url)
    app.state.engine = engine
    app.state.sessionmaker = db.make_sessionmaker(engine)
    app.state.redis = await connect(redis_url)
    app.state.jobs = JobFlusher(app.state.redis, settings.queue_name)
    app.state.jobs.start()
    # Group commit on PostgreSQL. SQLite has one writer: a request that wrote in its own transaction (say the
    # default parameters row) would wait on the batch's insert and the batch on it; there, each request inserts
    # in its own transaction.
    ingest_engine = None
    if not db.is_sqlite(settings.effective_database_url):
        # Its own small pool: requests may hold a connection of the main pool while they wait for the batch,
        # so a shared pool could run dry with every holder waiting on the batcher (a deadlock until timeout).
        ingest_engine = db.create_engine(settings.effective_database_url, pool_size=2, max_overflow=0)
        app.state.ingest = IngestBatcher(db.make_sessionmaker(ingest_engine))
        app.state.ingest.start()
    listener = asyncio.create_task(auth_cache.listen(app.state.redis), name="outbox-revocations")
    if settings.tune_gc:
        tune_gc()
    try:
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        if app.state.ingest is not None:
            await app.state.ingest.aclose()
        if ingest_engine is not None:
            await ingest_engine.dispose()
        await app.state.jobs.aclose()
        await app.state.redis.aclose()
        await engine.dispose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def _complete_spec(app: FastAPI) -> None:
    """Descriptions, examples and problem responses for every operation (app.core.openapi_docs)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return openapi_docs.complete(generate())  # idempotent: the first call caches the completed document

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    app = FastAPI(
        title="Outbox",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=TAGS,
        generate_unique_id_function=_unique_id,
        docs_url=None,  # served from installed files by install_docs, not from a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.redis = None
    app.state.ingest = None
    install_error_handlers(app)
    install_middleware(app)
    install_docs(app)
    _complete_spec(app)
    # A request is matched against the routers in this order, route by route (FastAPI 0.165 walks every included
    # router's routes, twice): the submit path and monitoring first, the administrator's pages after. Swagger UI
    # orders operations by the tags in TAGS, not by this order.
    for router in (messages_router, monitoring_router, history_router, parameters_router, providers_router,
                   users_router, keys_router, templates_router, workflow_router, webhooks_router,
                   suppressions_router):
        app.include_router(router)
    install_console(app)
    return app


app = create_app()
