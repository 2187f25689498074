"""The one clock: aware UTC datetimes (the database columns store and return UTC on both engines)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Aware UTC; sqlmodel's UTCDateTime column type stores and returns UTC on both databases."""
    return datetime.now(UTC)
