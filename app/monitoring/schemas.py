"""The `/status` document, for monitoring systems (no secrets)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.messages.lifecycle import Status
from app.providers.schemas import ProviderSummary, SenderCounts

# Fields may be added; a monitoring client should ignore those it does not know.
_OPEN = ConfigDict(extra="allow")


class Dependency(BaseModel):
    model_config = _OPEN

    ok: bool = Field(description="Whether it answered")
    error: str | None = Field(None, description="Why not, when it did not answer (no secrets)")


class QueueState(BaseModel):
    model_config = _OPEN

    by_status: dict[Status, int] = Field(description="How many messages are in each status")
    waiting: int = Field(description="Messages still to be sent (queued, retrying, deferred)")
    oldest_waiting_age_seconds: float | None = Field(
        description="Age of the oldest message still to be sent, in seconds (null: none waiting)")


class RecentFailure(BaseModel):
    model_config = _OPEN

    id: int = Field(description="The message's id (GET /history/{id} explains the failure)")
    at: str | None = Field(description="When it failed (ISO 8601, UTC)")
    error_type: str | None = Field(description="The failure's `error_type` (GET /providers/errors lists them)")
    error: str | None = Field(description="The server's or Outbox's words for the failure")
    provider: Literal["smtp", "graph", "exchange", "email_app"] | None = Field(
        description="The provider it was sent through")


class ThrottleState(BaseModel):
    model_config = _OPEN

    per_minute_limit: int = Field(description="Per-minute limit in force (0: none)")
    window_seconds: float = Field(description="The throttling window, in seconds")
    sent_last_minute: int = Field(description="Sends counted in the current window")
    tokens_left: int | None = Field(description="Sends left in the current window (null: no limit)")
    paused_for_seconds: float = Field(description="Seconds left of a pause the provider asked for (429/503)")
    deferrals_total: int = Field(description="Messages deferred by the limit so far")


class WorkerState(BaseModel):
    model_config = _OPEN

    id: str = Field(description="The worker's id (host, process id and a random suffix)")
    host: str | None = Field(None, description="Host name the worker runs on")
    pid: int | None = Field(None, description="Its process id")
    at: float | None = Field(None, description="Its last heartbeat (Unix time)")
    started_at: float | None = Field(None, description="When it started (Unix time)")
    heartbeat_age_seconds: float = Field(description="Seconds since its last heartbeat (alive under 30)")


class Workers(BaseModel):
    model_config = _OPEN

    alive: int = Field(description="Workers with a fresh heartbeat")
    items: list[WorkerState] = Field(description="Each live worker")


class BounceMailboxState(BaseModel):
    model_config = _OPEN

    provider: Literal["graph", "exchange"] = Field(description="The provider whose batch mailbox is read")
    mailbox: str = Field(description="The batch account's mailbox whose inbox is read for NDRs")
    read_up_to: str = Field(description="Items received before this time are done (ISO 8601, UTC)")
    last_poll_at: str | None = Field(description="When it was last polled (ISO 8601, UTC)")
    last_ok_at: str | None = Field(description="When a poll last ended without an error (ISO 8601, UTC)")
    ndrs_recorded: int = Field(description="NDRs read from it so far (matched to one of our messages or not)")
    error_code: Literal["permission_missing", "throttled", "sign_in_failed", "read_failed", "internal"] | None = (
        Field(None, description="Why the last poll stopped (null: it did not)"))
    error: str | None = Field(None, description="What an administrator reads about that, with the fix")


class BouncePolling(BaseModel):
    model_config = _OPEN

    every_seconds: int = Field(description="OUTBOX_BOUNCE_POLL_SECONDS (0: the mailboxes are not read)")
    mailboxes: list[BounceMailboxState] = Field(description="Each batch mailbox read so far")


class ServiceStatus(BaseModel):
    """The service's state. `status` is `degraded` when the database or Redis does not answer or no worker is
    alive; the parts that need the database or Redis are left out while they are down."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "status": "ok", "database": {"ok": True, "error": None}, "redis": {"ok": True, "error": None},
        "time": "2026-12-01T13:40:00.000000+00:00", "batch_processing_enabled": True, "batch_provider": "smtp",
        "queue": {"by_status": {"sent": 1520, "queued": 3, "failed": 2}, "waiting": 3,
                  "oldest_waiting_age_seconds": 1.4},
        "providers": [{"id": "smtp", "name": "SMTP", "configured": True, "deprecated": False,
                       "per_minute_limit_in_force": 30,
                       "limit_source": "automatic (Office 365 SMTP: Exchange Online sending limits)",
                       "secret_status": "ok", "note": None, "warnings": []}],
        "recent_failures": [{"id": 1187, "at": "2026-12-01T13:12:09+00:00", "error_type": "smtp.recipient_unknown",
                             "error": "550 5.1.1 User unknown", "provider": "smtp"}],
        "throttle": {"smtp": {"per_minute_limit": 30, "window_seconds": 60.0, "sent_last_minute": 12,
                              "tokens_left": 18, "paused_for_seconds": 0, "deferrals_total": 0}},
        "workers": {"alive": 1, "items": [{"id": "erp-app1-4242-1a2b3c", "host": "erp-app1", "pid": 4242,
                                           "at": 1796132400.0, "started_at": 1796130000.0,
                                           "heartbeat_age_seconds": 2.1}]},
        "bounce_polling": {"every_seconds": 60, "mailboxes": [{
            "provider": "graph", "mailbox": "batch@contoso.com", "read_up_to": "2026-12-01T13:39:12+00:00",
            "last_poll_at": "2026-12-01T13:39:40+00:00", "last_ok_at": "2026-12-01T13:39:40+00:00",
            "ndrs_recorded": 14, "error_code": None, "error": None}]}}]})

    status: Literal["ok", "degraded"] = Field(description="ok, or degraded (see above)")
    database: Dependency = Field(description="The database")
    redis: Dependency = Field(description="Redis (the queue, throttling and heartbeats)")
    time: str = Field(description="The server's time (ISO 8601, UTC)")
    batch_processing_enabled: bool | None = Field(None, description="The email distributor batch switch")
    batch_provider: Literal["smtp", "graph", "exchange"] | None = Field(
        None, description="The provider batch email goes through")
    queue: QueueState | None = Field(None, description="The queue (while the database answers)")
    providers: list[ProviderSummary] | None = Field(None, description="Each provider's state and limit")
    senders: SenderCounts | None = Field(None, description="Senders in use, by state (GET /providers/senders)")
    recent_failures: list[RecentFailure] | None = Field(None, description="The last five failed messages")
    throttle: dict[str, ThrottleState] | None = Field(None, description="Each provider's throttling window")
    workers: Workers | None = Field(None, description="Workers alive (while Redis answers)")
    bounce_polling: BouncePolling | None = Field(
        None, description="Reading NDRs from the Graph / Exchange batch mailboxes (while the database answers)")
