"""Shared path and query parameter types, and the page every list endpoint returns."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel

MAX_DB_ID = 2**63 - 1  # ids are BIGINT: a larger number is simply not found, never a database error

DbId = Annotated[int, Path(ge=1, le=MAX_DB_ID, description="A database id")]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=2**62, description="Items to skip")]

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
