from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class ProviderConfig(SQLModel, table=True):
    """One provider's settings. Non-secret settings are JSON; secrets are one Fernet token (see core.crypto)."""

    __tablename__ = "provider_config"

    id: str = Field(primary_key=True, max_length=16)  # smtp | graph | exchange
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    secrets_encrypted: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    per_minute_limit: int | None = None  # None: automatic (30 for smtp.office365.com, else 0)
    updated_at: datetime = Field(default_factory=utcnow)
