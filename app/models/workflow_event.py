"""Workflow events already handled: the idempotency record of POST /workflow-events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow
from app.models._base import BigId


class WorkflowEvent(SQLModel, table=True):
    """A workflow event already handled, with the result returned for it: each event_id is handled once per
    API key (another key's event with the same id is its own event), and only with the same body."""

    __tablename__ = "workflow_event"
    __table_args__ = (UniqueConstraint("api_key_id", "event_id", name="uq_workflow_event_key_event_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=200)
    workflow_id: str = Field(max_length=100)
    workflow_type: str | None = Field(default=None, max_length=100)
    company: str | None = Field(default=None, max_length=64)
    element: str | None = Field(default=None, max_length=100)  # the approval element the event happened on
    event: str = Field(max_length=64)
    api_key_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True))
    request_hash: str | None = Field(default=None, max_length=64)  # SHA-256 of the event as received
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)
