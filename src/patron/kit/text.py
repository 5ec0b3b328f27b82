"""Validated input types shared by every API schema: strings, JSON documents, instants.

PostgreSQL refuses NUL characters and lone surrogates cannot be encoded: both are
rejected here with a clear 422 instead of surfacing as a database error. So are
timestamps that overflow when stored as UTC (e.g. ``0001-01-01T00:00:00+05:00``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, StringConstraints


def _clean(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode (no lone surrogates)") from exc
    return value


def _storable(value: datetime) -> datetime:
    # Kept as sent (payload hashes of stored records depend on it); only checked.
    try:
        value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("out of range once converted to UTC") from exc
    return value


def check_json_value(value: Any, depth: int = 0) -> Any:
    """Reject JSON that a database cannot store faithfully (NaN, NUL, deep nesting)."""
    if depth > 8:
        raise ValueError("nested too deeply (max 8 levels)")
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError("must not contain NaN or Infinity")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        raise ValueError("integer out of range")
    if isinstance(value, list):
        return [check_json_value(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {_clean(str(k)): check_json_value(v, depth + 1) for k, v in value.items()}
    return value


def _check_attributes(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > 200:
        raise ValueError("at most 200 attributes")
    checked: dict[str, Any] = check_json_value(value)
    return checked


ExternalId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
    AfterValidator(_clean),
]
ShortText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=255), AfterValidator(_clean)
]
# Narrower texts, as wide as the columns they are stored in.
Label = Annotated[  # 32: a sales channel
    str, StringConstraints(strip_whitespace=True, max_length=32), AfterValidator(_clean)
]
Code = Annotated[  # 64: a discount code, a consent source
    str, StringConstraints(strip_whitespace=True, max_length=64), AfterValidator(_clean)
]
Category = Annotated[  # 128: a product category
    str, StringConstraints(strip_whitespace=True, max_length=128), AfterValidator(_clean)
]
LongText = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_clean)]
Attributes = Annotated[dict[str, Any], AfterValidator(_check_attributes)]
Instant = Annotated[AwareDatetime, AfterValidator(_storable)]
# For path and query parameters: `Annotated[CleanText, Path(max_length=128)]`.
CleanText = Annotated[str, AfterValidator(_clean)]
