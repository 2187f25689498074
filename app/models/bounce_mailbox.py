"""The state of reading one provider's batch mailbox for NDRs (Microsoft Graph, Exchange): how far it has been
read (the watermark and the items already seen at it), who is reading it now (a lease), and what the last poll
found, for /status."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Table, Text
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class BounceMailbox(SQLModel, table=True):
    """One row per provider and mailbox (a new batch account starts a new row)."""

    __tablename__ = "bounce_mailbox"

    provider: str = Field(primary_key=True, max_length=16)  # graph | exchange
    mailbox: str = Field(primary_key=True, max_length=320)  # lower case
    # Items received before the watermark are done; `seen` holds the ids of those received exactly at it (the
    # listing asks for "received at or after", so they come again and are skipped).
    watermark: datetime
    seen: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    lease_owner: str | None = Field(default=None, max_length=128)
    lease_until: datetime | None = None
    next_poll_at: datetime | None = None
    last_poll_at: datetime | None = None
    last_ok_at: datetime | None = None
    ndrs_recorded: int = 0  # NDRs read and recorded (matched to one of our messages or not)
    last_error_code: str | None = Field(default=None, max_length=64)  # permission_missing | throttled | ...
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_error_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


BOUNCE_MAILBOXES: Table = SQLModel.metadata.tables["bounce_mailbox"]

__all__ = ["BOUNCE_MAILBOXES", "BounceMailbox"]
