from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow
from app.models._base import BigId


class ApiKey(SQLModel, table=True):
    """An API key, stored as its SHA-256 digest (the key itself is 256 random bits, so no salt is needed)."""

    __tablename__ = "api_key"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    name: str = Field(default="", max_length=200)
    prefix: str = Field(max_length=16)  # shown in listings so a key can be recognised
    key_hash: str = Field(max_length=64, unique=True, index=True)
    role: str = Field(max_length=16)  # admin | service | user
    user_id: int | None = Field(
        default=None, sa_column=Column(BigId, ForeignKey("app_user.id", ondelete="CASCADE"), nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
