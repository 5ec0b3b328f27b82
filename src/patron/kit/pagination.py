"""Keyset pagination: stable under inserts, O(page) on any table size."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_after: int | None = Field(
        None, description="Pass as `after` to get the next page; null on the last page."
    )


class PageParams(BaseModel):
    limit: int = Field(50, ge=1, le=500)
    after: int | None = Field(None, ge=0)
