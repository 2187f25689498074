"""Workflow notification rules (seed: the workflow's Notifications settings)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow
from app.models._base import BigId


class NotificationRule(SQLModel, table=True):
    """For a workflow (by id or by type, optionally for one company): which events notify whom, with which
    template (by code: the organization or system template is chosen per event, see app.workflow.service)."""

    __tablename__ = "notification_rule"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    name: str = Field(default="", max_length=200)
    workflow_id: str | None = Field(default=None, max_length=100, index=True)
    workflow_type: str | None = Field(default=None, max_length=100, index=True)
    company: str | None = Field(default=None, max_length=64)  # None: any company, and system-level workflows
    # An approval element (step) of the workflow: only that element's events; None: the workflow's own
    # notifications, which match the events of the workflow and of any of its elements.
    element: str | None = Field(default=None, max_length=100)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # {"user_ids": [..], "submitter": bool, "assignees": bool}
    recipients: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    template_code: str = Field(max_length=100)
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
