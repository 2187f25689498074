from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Status = Literal[
    "draft", "queued", "sending", "deferred", "retrying", "held", "sent", "failed", "expired", "cancelled"
]
ACTIVE_STATUSES: tuple[str, ...] = ("queued", "sending", "deferred", "retrying", "held")
WAITING_STATUSES: tuple[str, ...] = ("queued", "deferred", "retrying")  # claimable when due
UNSENT_STATUSES: tuple[str, ...] = ("draft", "queued", "deferred", "retrying", "held")
FINAL_STATUSES: tuple[str, ...] = ("sent", "failed", "expired", "cancelled")
HISTORY_STATUSES: tuple[str, ...] = ("sent", "failed", "expired")


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(max_length=255, examples=["invoice-1042.pdf"])
    content_type: str = Field("application/octet-stream", max_length=255, examples=["application/pdf"])
    content_base64: str = Field(description="The file's bytes, base64-encoded (standard alphabet)")


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{
        "to": ["customer@example.com"], "cc": [], "bcc": [], "from": "billing@contoso.com",
        "subject": "Your invoice 1042", "body_text": "Please find your invoice attached.",
        "body_html": "<p>Please find your invoice <b>attached</b>.</p>",
        "attachments": [{"filename": "invoice-1042.txt", "content_type": "text/plain",
                         "content_base64": "SW52b2ljZSAxMDQy"}]}]})

    to: list[str] = Field(default_factory=list, max_length=1000)
    cc: list[str] = Field(default_factory=list, max_length=1000)
    bcc: list[str] = Field(default_factory=list, max_length=1000)
    from_: str | None = Field(None, alias="from", max_length=320,
                              description="Sender address; defaults to the batch account")
    from_name: str | None = Field(None, max_length=200)
    reply_to: str | list[str] | None = None
    subject: str = Field("", max_length=998)
    body_text: str | None = None
    body_html: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="Extra X- headers", max_length=50)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=100)
    provider: Literal["smtp", "graph", "exchange"] | None = Field(
        None, description="Send through this provider instead of the batch provider")


class MessageAccepted(BaseModel):
    id: int
    status: Status
    message_id: str = Field(description="The RFC 5322 Message-ID header the email carries on every try")


class BulkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[MessageIn] = Field(min_length=1)


class BulkAccepted(BaseModel):
    accepted: list[MessageAccepted]


class AttemptPublic(BaseModel):
    at: datetime
    provider: str
    sender: str
    outcome: str
    reply_code: int | None = None
    reply_text: str | None = None
    error_type: str | None = None
    explanation: str | None = None
    fix: str | None = None
    recipients: dict[str, dict[str, object]] = Field(default_factory=dict)
    uncertain: bool = False


class AttachmentPublic(BaseModel):
    filename: str
    content_type: str
    size: int


class MessageSummary(BaseModel):
    id: int
    status: Status
    kind: str
    provider: str | None
    sender: str
    to: list[str]
    subject: str
    attempts: int
    deferrals: int
    next_attempt_at: datetime | None
    created_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None
    error_type: str | None = None
    error: str | None = None
    fix: str | None = None
    uncertain: bool = False
    user_id: int | None = None


class MessagePublic(MessageSummary):
    message_id: str
    sender_name: str | None
    cc: list[str]
    bcc: list[str]
    reply_to: list[str]
    body_text: str | None
    body_html: str | None
    size_bytes: int
    sent_via: str | None
    expires_at: datetime | None
    attachments: list[AttachmentPublic]
    attempt_log: list[AttemptPublic] = Field(description="Every attempt and deferral, oldest first")


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
