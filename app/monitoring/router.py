from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from app.core.deps import TxDep
from app.monitoring import service as monitoring_service
from app.monitoring.schemas import ServiceStatus

router = APIRouter(tags=["monitoring"])


@router.get("/healthz", summary="Liveness: the process answers",
            responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}})
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database and Redis reachable", responses={
    200: {"description": "Ready", "content": {"application/json": {
        "example": {"ready": True, "database": "ok", "redis": "ok"}}}},
    503: {"description": "Not ready (with `Retry-After`): what does not answer", "content": {"application/json": {
        "example": {"ready": False, "database": "ok", "redis": "ConnectionError: Error 111 connecting"}}}}})
async def readyz(request: Request, tx: TxDep) -> Response:
    db, db_err = await monitoring_service.db_ok(tx.session)
    rd, rd_err = await monitoring_service.redis_ok(request.app.state.redis)
    body = {"ready": db and rd, "database": db_err or "ok", "redis": rd_err or "ok"}
    ready = db and rd
    return JSONResponse(body, status_code=200 if ready else 503, headers=None if ready else {"Retry-After": "5"})


@router.get("/status", response_model=ServiceStatus, summary="Service status for monitoring (no secrets)")
async def service_status(request: Request, tx: TxDep) -> dict[str, Any]:
    """Database and Redis reachable, workers alive (heartbeat age), queue depth by status, age of the oldest
    waiting message, batch processing on/off, each provider's limit, tokens left and deferrals, recent failures."""
    return await monitoring_service.status(tx.session, request.app.state.redis, request.app.state.settings)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"description": "Prometheus text format", "content": {"text/plain": {"example": (
                "# HELP outbox_messages Messages by status\n# TYPE outbox_messages gauge\n"
                'outbox_messages{status="queued"} 3.0\noutbox_workers_alive 1.0\n')}}}})
async def metrics(request: Request, tx: TxDep) -> Response:
    st = await monitoring_service.status(tx.session, request.app.state.redis, request.app.state.settings)
    reg = CollectorRegistry()
    Gauge("outbox_up", "Dependencies reachable", ["dependency"], registry=reg).labels("database").set(
        1 if st["database"]["ok"] else 0)
    g_redis = Gauge("outbox_redis_up", "Redis reachable", registry=reg)
    g_redis.set(1 if st["redis"]["ok"] else 0)
    q = Gauge("outbox_messages", "Messages by status", ["status"], registry=reg)
    for s, n in st.get("queue", {}).get("by_status", {}).items():
        q.labels(s).set(n)
    age = st.get("queue", {}).get("oldest_waiting_age_seconds")
    Gauge("outbox_oldest_waiting_seconds", "Age of the oldest waiting message", registry=reg).set(age or 0)
    Gauge("outbox_workers_alive", "Workers with a fresh heartbeat", registry=reg).set(
        st.get("workers", {}).get("alive", 0))
    Gauge("outbox_batch_processing_enabled", "Email distributor batch on", registry=reg).set(
        1 if st.get("batch_processing_enabled") else 0)
    lim = Gauge("outbox_throttle_limit_per_minute", "Per-minute sending limit in force", ["provider"], registry=reg)
    left = Gauge("outbox_throttle_tokens_left", "Sends left in the current minute", ["provider"], registry=reg)
    dfr = Gauge("outbox_throttle_deferrals_total", "Deferrals so far", ["provider"], registry=reg)
    for p, t in st.get("throttle", {}).items():
        lim.labels(p).set(t["per_minute_limit"])
        left.labels(p).set(t["tokens_left"] if t["tokens_left"] is not None else -1)
        dfr.labels(p).set(t["deferrals_total"])
    return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)
