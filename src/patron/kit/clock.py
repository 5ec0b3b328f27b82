"""Time: every stored instant is aware UTC; calendar notions use the store's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must include a time zone offset")
    return value.astimezone(UTC)


def as_utc_or_now(now: datetime | None) -> datetime:
    """The instant a call acts at: ``now`` as aware UTC, the current time when None."""
    return utcnow() if now is None else as_utc(now)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {name!r}") from exc


def local_date(value: datetime, tz: str) -> date:
    """The calendar day of an instant in the store's time zone."""
    return as_utc(value).astimezone(zone(tz)).date()
