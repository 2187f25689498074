"""Email templates (seed: System and Organization email templates) and their per-language texts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow
from app.models._base import BigId


class EmailTemplate(SQLModel, table=True):
    """A template a workflow notification is rendered from, found by `code` within its scope.

    `company` is "" for system templates rather than NULL: NULLs are distinct in a unique constraint on both
    databases, and the code must be unique among system templates too. The API shows it as null.
    """

    __tablename__ = "email_template"
    __table_args__ = (
        UniqueConstraint("scope", "company", "code", name="uq_email_template_scope_company_code"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    scope: str = Field(max_length=16)  # system | organization
    company: str = Field(default="", max_length=64)  # "" for system templates
    code: str = Field(max_length=100)  # the template's Email ID, named by notification rules
    description: str | None = Field(default=None, max_length=500)
    sender_email: str | None = Field(default=None, max_length=320)  # None: the batch provider's account
    sender_name: str | None = Field(default=None, max_length=200)
    fallback_language: str = Field(max_length=16)
    # Declared placeholders with sample values: the template may use these names and no others.
    placeholders: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class EmailTemplateContent(SQLModel, table=True):
    """The subject and body of one template in one language."""

    __tablename__ = "email_template_content"
    __table_args__ = (UniqueConstraint("template_id", "language", name="uq_email_template_content_language"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    template_id: int = Field(
        sa_column=Column(
            BigId, ForeignKey("email_template.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    language: str = Field(max_length=16)  # lower case, e.g. "en", "fr", "pt-br"
    subject: str = Field(sa_column=Column(Text, nullable=False))
    body_html: str = Field(sa_column=Column(Text, nullable=False))
    body_text: str | None = Field(
        default=None, sa_column=Column(Text, nullable=True)
    )  # None: derived from HTML
