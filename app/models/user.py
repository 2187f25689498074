from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow
from app.models._base import BigId


class User(SQLModel, table=True):
    """A person who sends email interactively and receives workflow notifications (seed: Users page + User options)."""

    __tablename__ = "app_user"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=320)  # the default send-from address
    enabled: bool = True
    external: bool = False  # outside the organisation: Exchange is refused for them
    language: str = Field(default="en", max_length=16)
    # User options
    email_provider: str | None = Field(default=None, max_length=16)  # None: ask each time
    sender_email: str | None = Field(default=None, max_length=320)  # admin-set From override
    workflow_notifications_by_email: bool = True
    last_provider_choice: str | None = Field(default=None, max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
