"""Shared path and query parameter types, and the page every list endpoint returns."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel, Field

MAX_DB_ID = 2**63 - 1  # ids are BIGINT: a larger number is simply not found, never a database error

DbId = Annotated[int, Path(ge=1, le=MAX_DB_ID, description="A database id")]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=2**62, description="Items to skip")]
Cursor = Annotated[str | None, Query(max_length=100, description=(
    "Keyset paging: the `next_cursor` of the previous page. Reads from an index whatever the page number, and "
    "no message is skipped or shown twice when new ones arrive meanwhile; `offset` still works"))]


def encode_cursor(last_id: int) -> str:
    return f"id:{last_id}"


def decode_cursor(cursor: str) -> int:
    """The last id of the previous page; a cursor that is not one of ours is a 422 naming `cursor`."""
    from app.core.errors import InvalidInput

    kind, _, value = cursor.partition(":")
    if kind != "id" or not (value.isascii() and value.isdigit()) or not 0 < int(value) <= MAX_DB_ID:
        raise InvalidInput.for_field("cursor", "is not a cursor from a previous page (use its next_cursor)")
    return int(value)

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = Field(
        None, description="Where a list that pages by keyset goes on: pass it as `cursor` for the next page "
                          "(absent on the last page, and on lists that page by offset only)")
