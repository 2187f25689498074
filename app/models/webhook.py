"""Webhook endpoints, the events they receive, and each delivery of an event to an endpoint; the suppression
list, recorded bounces and complaints (issue 16)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow
from app.models._base import BigId
from app.models.message import MESSAGES


class WebhookEndpoint(SQLModel, table=True):
    """Where events go. `api_key_id` set: a service key's endpoint, which receives events of that key's
    messages only; None: an administrator's, which receives every message's events."""

    __tablename__ = "webhook_endpoint"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    url: str = Field(sa_column=Column(Text, nullable=False))
    description: str = Field(default="", max_length=200)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    api_key_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True, index=True))
    # {"current": "whsec_...", "previous": "whsec_..."} as one Fernet token (core.crypto); never returned.
    secret_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    previous_secret_expires_at: datetime | None = None
    disabled_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    disabled_at: datetime | None = None
    failing_since: datetime | None = None  # first failure since the last success
    last_success_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class WebhookEvent(SQLModel, table=True):
    """Something that happened to a message, written in the transaction of the change that caused it."""

    __tablename__ = "webhook_event"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    uid: str = Field(max_length=40, unique=True)  # the stable event id (webhook-id): "evt_<32 hex>"
    type: str = Field(max_length=32)
    message_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True, index=True))
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: pending until the endpoint answers 2xx, or failed when its time is up."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_due", "state", "next_attempt_at"),
        Index("ix_webhook_delivery_endpoint", "endpoint_id", "id"),
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_delivery_event"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    endpoint_id: int = Field(sa_column=Column(BigId, ForeignKey("webhook_endpoint.id", ondelete="CASCADE"),
                                              nullable=False))
    event_id: int = Field(sa_column=Column(BigId, ForeignKey("webhook_event.id", ondelete="CASCADE"),
                                           nullable=False, index=True))
    state: str = Field(default="pending", max_length=16)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime | None = None
    give_up_at: datetime | None = None  # retries end here (about three days after the event or its replay)
    lease_until: datetime | None = None
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_duration_ms: int | None = None
    delivered_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Suppression(SQLModel, table=True):
    """An address Outbox does not send to: a hard bounce, a complaint, or added by an administrator."""

    __tablename__ = "suppression"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    address: str = Field(max_length=320, unique=True)  # lower case
    reason: str = Field(max_length=16)  # hard_bounce | complaint | manual
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    message_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class MessageBounce(SQLModel, table=True):
    """A delivery status notification for one recipient of a sent message."""

    __tablename__ = "message_bounce"
    __table_args__ = (UniqueConstraint("message_id", "recipient", "kind", name="uq_message_bounce"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    message_id: int = Field(sa_column=Column(BigId, ForeignKey("message.id", ondelete="CASCADE"), nullable=False,
                                             index=True))
    recipient: str = Field(max_length=320)
    kind: str = Field(max_length=8)  # hard | soft
    status: str | None = Field(default=None, max_length=16)  # RFC 3463 status, e.g. 5.1.1
    diagnostic_code: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    remote_mta: str | None = Field(default=None, max_length=255)
    error_type: str | None = Field(default=None, max_length=64)
    explanation: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    fix: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    matched_by: str = Field(max_length=16)  # token | message_id
    created_at: datetime = Field(default_factory=utcnow)


class MessageComplaint(SQLModel, table=True):
    """A feedback-loop complaint (an ARF report) about a sent message, for one of its recipients."""

    __tablename__ = "message_complaint"
    __table_args__ = (UniqueConstraint("message_id", "recipient", "feedback_type", name="uq_message_complaint"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    message_id: int = Field(sa_column=Column(BigId, ForeignKey("message.id", ondelete="CASCADE"), nullable=False,
                                             index=True))
    recipient: str = Field(max_length=320)
    feedback_type: str = Field(max_length=16)  # abuse | fraud | virus | other
    user_agent: str | None = Field(default=None, max_length=255)  # who reported it (the report's User-Agent)
    source_ip: str | None = Field(default=None, max_length=64)
    arrived_at: datetime | None = None  # when the provider received the message (Arrival-Date)
    matched_by: str = Field(max_length=16)  # token | message_id
    recipient_by: str = Field(max_length=16)  # report (named in it) | only (the message's only recipient)
    created_at: datetime = Field(default_factory=utcnow)


WEBHOOK_ENDPOINTS: Table = SQLModel.metadata.tables["webhook_endpoint"]
WEBHOOK_EVENTS: Table = SQLModel.metadata.tables["webhook_event"]
WEBHOOK_DELIVERIES: Table = SQLModel.metadata.tables["webhook_delivery"]
SUPPRESSIONS: Table = SQLModel.metadata.tables["suppression"]
BOUNCES: Table = SQLModel.metadata.tables["message_bounce"]
COMPLAINTS: Table = SQLModel.metadata.tables["message_complaint"]

# Bounces are matched by the returned message's Message-ID when the VERP token is missing.
Index("ix_message_message_id_header", MESSAGES.c.message_id_header)
