from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal["message.sent", "message.failed", "message.bounced", "message.expired", "message.held",
                    "message.deferred", "message.complained"]
DeliveryState = Literal["pending", "delivered", "failed"]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="http(s) URL that receives the events (POST, JSON, signed)")
    events: list[EventType] = Field(min_length=1, max_length=7, description="The event types this endpoint wants")
    enabled: bool = True
    description: str = Field(default="", max_length=200)


class WebhookUpdate(BaseModel):
    """Only the fields sent change. `enabled: true` on a disabled endpoint replays every event it missed."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2000)
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=7)
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=200)


class WebhookPublic(BaseModel):
    id: int
    url: str
    description: str
    events: list[str]
    enabled: bool
    owner_api_key_id: int | None = Field(description="A service key's endpoint: only that key's messages. None: "
                                                     "an administrator's endpoint, every message")
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    last_success_at: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="After a rotation, deliveries are signed with the old secret too until then")
    pending_deliveries: int
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="The signing secret (Standard Webhooks, `whsec_...`). Shown once: store it")
    replayed: int = 0


class WebhookUpdated(WebhookPublic):
    replayed: int = Field(default=0, description="Deliveries queued again because the endpoint was re-enabled")


class RotateSecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_seconds: int = Field(default=86400, ge=0, le=7 * 86400,
                                 description="How long deliveries stay signed with the old secret as well")


class SecretRotated(BaseModel):
    secret: str = Field(description="The new signing secret. Shown once: store it")
    previous_secret_expires_at: datetime | None


class DeliveryPublic(BaseModel):
    id: int
    event_id: str
    type: str
    message_id: int | None
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_duration_ms: int | None
    delivered_at: datetime | None
    created_at: datetime


class TestResult(BaseModel):
    ok: bool
    event_id: str
    status_code: int | None
    duration_ms: int
    error: str | None = Field(description="Why the receiver did not accept it, when it did not")
