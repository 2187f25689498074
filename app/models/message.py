from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow
from app.models._base import BigId

# The waiting statuses (lifecycle.WAITING_STATUSES) as the lane index's predicate; repository.due_lanes repeats it.
WAITING_PREDICATE = "status IN ('queued', 'deferred', 'retrying')"
# The submitting key of a message as ix_message_key_lane has it (0: none); lifecycle.SUBMITTER repeats it.
SUBMITTER_EXPRESSION = "coalesce(api_key_id, 0)"
UNSENT_PREDICATE = "status IN ('draft', 'queued', 'deferred', 'retrying', 'held')"  # lifecycle.UNSENT_STATUSES
# With the email distributor batch off only interactive mail goes out (repository.due_lanes repeats it).
INTERACTIVE_WAITING_PREDICATE = f"{WAITING_PREDICATE} AND kind = 'interactive'"


class Message(SQLModel, table=True):
    """One email and where it is in its life. Only `app.messages.lifecycle` changes `status`."""

    __tablename__ = "message"
    __table_args__ = (
        # The claim's lanes: one range per priority over the waiting set only, so a claim reads its batch, not
        # the backlog (literal statuses: the planner proves the predicate from the query's literal IN list).
        Index("ix_message_lane", "priority", "next_attempt_at",
              postgresql_where=text(WAITING_PREDICATE), sqlite_where=text(WAITING_PREDICATE)),
        # Fairness within a lane: the submitting keys with waiting messages (a loose index scan, one probe per
        # key) and each key's due messages in order (one range per key); messages without a key are key 0 (an
        # expression, so that they are one range too: `IS NULL` gives no order). See lifecycle.claim_due.
        Index("ix_message_key_lane", "priority", text(SUBMITTER_EXPRESSION), "next_attempt_at",
              postgresql_where=text(WAITING_PREDICATE), sqlite_where=text(WAITING_PREDICATE)),
        # The same for interactive mail alone, read while the email distributor batch is off: the lanes' and
        # keys' ranges then hold the whole bulk backlog, which a kind filter would walk.
        Index("ix_message_interactive_lane", "priority", text(SUBMITTER_EXPRESSION), "next_attempt_at",
              postgresql_where=text(INTERACTIVE_WAITING_PREDICATE),
              sqlite_where=text(INTERACTIVE_WAITING_PREDICATE)),
        Index("ix_message_expiry", "expires_at",  # the expiry sweep: unsent messages past their time only
              postgresql_where=text(UNSENT_PREDICATE), sqlite_where=text(UNSENT_PREDICATE)),
        Index("ix_message_status_id", "status", "id"),  # listing by status, newest first (keyset pages)
        Index("ix_message_status_finished", "status", "finished_at"),  # recent failures, purge
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_message_idempotency"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    status: str = Field(max_length=16)
    # The lane (lifecycle.PRIORITIES): 0 high, 1 normal, 2 low. Claims take the highest lane with due messages.
    priority: int = Field(default=1, sa_column=Column(SmallInteger, nullable=False, server_default="1"))
    send_at: datetime | None = None  # scheduled sending: not before this time (None: at once)
    kind: str = Field(default="batch", max_length=16)  # batch | interactive | workflow | test
    provider: str | None = Field(default=None, max_length=16)  # chosen provider; None: the batch provider
    user_id: int | None = Field(
        default=None, sa_column=Column(BigId, ForeignKey("app_user.id", ondelete="SET NULL"), nullable=True)
    )
    api_key_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True))
    sender: str = Field(max_length=320)
    sender_name: str | None = Field(default=None, max_length=200)
    to_addrs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    cc_addrs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    bcc_addrs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    reply_to: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    subject: str = Field(default="", sa_column=Column(Text, nullable=False))
    body_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    body_html: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    headers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    message_id_header: str = Field(max_length=255)
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_hash: str | None = Field(default=None, max_length=64)
    size_bytes: int = 0
    attachment_count: int = 0
    attempts: int = 0
    deferrals: int = 0
    deferred_since: datetime | None = None  # first held back by the per-minute limit (deferrals count windows)
    uncertain: bool = False  # a worker may have handed it to the server before dying: a retry may duplicate
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    claimed_by: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    sent_at: datetime | None = None
    finished_at: datetime | None = None
    last_error_type: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_fix: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    sent_via: str | None = Field(default=None, max_length=16)
    # Interactive and workflow mail (users, templates, workflow notifications)
    workflow_event_id: str | None = Field(default=None, max_length=200, index=True)
    template_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True))
    language: str | None = Field(default=None, max_length=16)
    handed_to_user_at: datetime | None = None  # "Use an email app": the .eml was handed to the user
    # Resend / correct and resend: the finished message this one was made from (it keeps its own record)
    resent_from: int | None = Field(
        default=None, sa_column=Column(BigId, ForeignKey("message.id", ondelete="SET NULL"), nullable=True,
                                       index=True))
    # Per-recipient delivery, written by lifecycle once a server answered recipients differently: address ->
    # {"state": "accepted" | "pending" | "failed", "code", "text", "error_type", "explanation", "fix", "at"}.
    # Empty: every recipient shares the message's fate. Pending recipients are the envelope of the next try.
    recipient_state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False,
                                                                                 server_default="{}"))


class MessageAttachment(SQLModel, table=True):
    __tablename__ = "message_attachment"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    message_id: int = Field(sa_column=Column(BigId, ForeignKey("message.id", ondelete="CASCADE"), index=True))
    position: int = 0
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int = 0
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Attempt(SQLModel, table=True):
    """One try to send (or a deferral), with the server's reply and our explanation and fix."""

    __tablename__ = "delivery_attempt"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    message_id: int = Field(sa_column=Column(BigId, ForeignKey("message.id", ondelete="CASCADE"), index=True))
    at: datetime = Field(default_factory=utcnow, index=True)  # the console's chart groups attempts per minute
    provider: str = Field(max_length=16)
    sender: str = Field(max_length=320)
    outcome: str = Field(max_length=16)  # sent | partial | transient | permanent | throttled | held | deferred
    reply_code: int | None = None
    reply_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error_type: str | None = Field(default=None, max_length=64)
    explanation: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    fix: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    recipients: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    uncertain: bool = False
    duration_ms: int | None = None


class MessageCount(SQLModel, table=True):
    """How many messages are in each status, kind and priority lane, kept by database triggers on `message` in
    the same transaction as every insert, status change, delete and truncate (migrations 0021, 0026), so
    monitoring reads a few rows instead of counting the table. A count is the sum over its shards. On
    PostgreSQL a shard is the backend's pid, so concurrent transactions never write the same row (no hot row, no
    lock order to get wrong); `lifecycle.compact_counts` folds the shards of ended backends into shard 0. SQLite
    has one writer: shard 0."""

    __tablename__ = "message_count"
    __table_args__ = (PrimaryKeyConstraint("status", "kind", "priority", "shard"),)

    status: str = Field(sa_column=Column(String(16), nullable=False))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    priority: int = Field(sa_column=Column(SmallInteger, nullable=False))
    shard: int = Field(sa_column=Column(BigInteger, nullable=False))
    n: int = Field(sa_column=Column(BigInteger, nullable=False))


# Core table handles for the hot paths that use SQL expressions rather than ORM objects.
MESSAGES: Table = SQLModel.metadata.tables["message"]
ATTACHMENTS: Table = SQLModel.metadata.tables["message_attachment"]
ATTEMPTS: Table = SQLModel.metadata.tables["delivery_attempt"]
COUNTS: Table = SQLModel.metadata.tables["message_count"]
