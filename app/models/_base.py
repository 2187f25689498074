"""Shared column helpers for the tables."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")

