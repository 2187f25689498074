from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow

INTERACTIVE_PROVIDERS = ("email_app", "exchange", "smtp", "graph")  # the dialog's order


class Parameters(SQLModel, table=True):
    """Email parameters (seed: Email parameters page). A single row, id = 1."""

    __tablename__ = "email_parameters"

    id: int = Field(default=1, primary_key=True)
    batch_provider: str = Field(default="smtp", max_length=16)
    attachment_size_limit_mb: int = 25
    email_expiration_days: int = 0  # 0 = the default 30
    history_retention_days: int = 0  # 0 = the default 30
    batch_processing_enabled: bool = True
    distributor_interval_seconds: int = 60
    # The providers the "How would you like to send email" dialog offers (interactive mail); batch is separate.
    interactive_providers: list[str] = Field(
        default_factory=lambda: list(INTERACTIVE_PROVIDERS), sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)
