"""Shared column helpers for the tables."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Integer

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Aware UTC; sqlmodel's UTCDateTime column type stores and returns UTC on both databases."""
    return datetime.now(UTC)
