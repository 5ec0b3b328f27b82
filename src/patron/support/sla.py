"""Business-time arithmetic for support SLAs: pure functions, no database.

A ticket's first-response and resolution targets ("answer e-mail within 24 business
hours") count only the time the store is open. The model:

* A :class:`BusinessCalendar` gives the opening hours of each local date as minutes of
  the local wall-clock day in the store's IANA time zone: a weekly template, minus the
  public holidays of a country (the ``holidays`` package), minus the store's own
  ``closed_dates``, plus working days that fall on a weekend (``open_dates`` and
  China's 调休 makeup days, which get the ordinary weekday hours).
* Every instant is an aware UTC ``datetime``; local wall times are turned into instants
  per local date. An opening interval runs from the first instant the wall clock shows
  its opening time to the first instant it shows its closing time. So a 24 h day is 23
  or 25 real hours across a DST change, a boundary inside a spring-forward gap lands on
  the transition, and during a fall-back repeated hour the clock counts as still showing
  the moment it was set back. The mapping is monotone, so intervals always come out
  ordered and disjoint.
* Pauses (the ticket waits on the customer) stop the clock; a pause without an end
  stops it for good.

:func:`business_time` measures open time between two instants; :func:`add_business_time`
inverts it, finding the earliest due instant. Both walk the calendar day by day, never
minute by minute. :class:`HoursSpec` is the YAML/JSON form stores configure;
:data:`DEFAULT_HOURS` (24/7, no holidays) applies to a store without settings, so that
"24 h" means 24 wall-clock hours until the store says otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

__all__ = [
    "DAY_KEYS",
    "DEFAULT_HOURS",
    "BusinessCalendar",
    "HoursSpec",
    "Pause",
    "add_business_time",
    "business_time",
    "open_intervals",
]

Interval = tuple[datetime, datetime]
#: A pause of the SLA clock: (start, end); an end of None means "until further notice".
Pause = tuple[datetime, datetime | None]

DAY_KEYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MINUTES_PER_DAY = 1440
_ONE_DAY = timedelta(days=1)
# add_business_time gives up after this much calendar time without any open time.
_HORIZON_DAYS = 3 * 366
# Stands in for the end of an open-ended pause; only ever compared, never added to.
_FOREVER = datetime.max.replace(tzinfo=UTC)
_ALWAYS: tuple[tuple[int, int], ...] = ((0, _MINUTES_PER_DAY),)


# --- validation helpers shared by BusinessCalendar and HoursSpec -----------------------


def _zone_error(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return f"timezone: expected an IANA time zone name, got {name!r}"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: keys like "../x" that are not even well-formed paths.
        return f"timezone: unknown IANA time zone {name!r}"
    return None


@lru_cache(maxsize=256)
def _holidays_error(country: str | None, subdivision: str | None) -> str | None:
    if country is None:
        if subdivision is not None:
            return f"holidays_subdivision: {subdivision!r} given without holidays_country"
        return None
    supported = holidays.list_supported_countries()
    if country not in supported:
        return f"holidays_country: unknown country {country!r} (use an ISO 3166 code like 'CN')"
    if subdivision is not None:
        try:
            holidays.country_holidays(country, subdiv=subdivision)
        except NotImplementedError:
            known = ", ".join(supported[country]) or "none"
            return (
                f"holidays_subdivision: {country!r} has no subdivision {subdivision!r}"
                f" (known: {known})"
            )
    return None


@lru_cache(maxsize=512)
def _public_holidays(country: str, subdivision: str | None, year: int) -> holidays.HolidayBase:
    # expand=False: the cached object is shared, so looking up another year must not
    # mutate it behind other callers' backs.
    return holidays.country_holidays(country, subdiv=subdivision, years=year, expand=False)


@lru_cache(maxsize=512)
def _weekend_workdays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    # A year's holiday table may declare makeup days in a neighbouring year (the days off
    # around New Year are paid back in December or January), so ask three years.
    days: set[date] = set()
    for y in (year - 1, year, year + 1):
        days.update(getattr(_public_holidays(country, subdivision, y), "weekend_workdays", ()))
    return frozenset(d for d in days if d.year == year)


@lru_cache(maxsize=64)
def _workday_hours(week: tuple[tuple[tuple[int, int], ...], ...]) -> tuple[tuple[int, int], ...]:
    for hours in (*week[:5], *week):
        if hours:
            return hours
    return ()


# --- the calendar ----------------------------------------------------------------------


@dataclass(frozen=True)
class BusinessCalendar:
    """When a store is open: weekly hours in local wall-clock minutes, and exceptions.

    ``week`` has 7 entries, Monday first; each is a sorted tuple of non-overlapping
    ``(open_minute, close_minute)`` with ``0 <= open < close <= 1440`` (1440 is the next
    midnight); an empty tuple means closed that weekday. Hours never run past midnight:
    an overnight shift is split over two days.
    """

    timezone: str
    week: tuple[tuple[tuple[int, int], ...], ...]
    holidays_country: str | None = None
    holidays_subdivision: str | None = None
    closed_dates: frozenset[date] = frozenset()
    open_dates: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if error := _zone_error(self.timezone):
            raise ValueError(error)
        # Accept lists from callers but store tuples/frozensets so the value stays
        # hashable (it keys caches) and immutable.
        object.__setattr__(self, "week", _check_week(self.week))
        for name in ("closed_dates", "open_dates"):
            object.__setattr__(self, name, _check_dates(name, getattr(self, name)))
        if error := _holidays_error(self.holidays_country, self.holidays_subdivision):
            raise ValueError(error)

    @classmethod
    def always_open(cls, timezone: str = "UTC") -> BusinessCalendar:
        """Open 24/7 with no holidays: business time equals wall time."""
        return cls(timezone=timezone, week=(_ALWAYS,) * 7)

    def day_hours(self, day: date) -> tuple[tuple[int, int], ...]:
        """The opening intervals (local minutes) of one local date, exceptions applied."""
        if day in self.closed_dates:
            return ()
        country = self.holidays_country
        if day in self.open_dates or (
            country is not None
            and day in _weekend_workdays(country, self.holidays_subdivision, day.year)
        ):
            return _workday_hours(self.week)
        if country is not None and day in _public_holidays(
            country, self.holidays_subdivision, day.year
        ):
            return ()
        return self.week[day.weekday()]

    def is_open(self, at: datetime) -> bool:
        """Whether the instant falls inside an opening interval (closing time excluded)."""
        at = _as_utc(at, "at")
        local = at.astimezone(ZoneInfo(self.timezone)).date()
        return any(a <= at < b for a, b in _day_intervals(self, local - _ONE_DAY, local + _ONE_DAY))


def _check_week(week: object) -> tuple[tuple[tuple[int, int], ...], ...]:
    if not isinstance(week, Sequence) or isinstance(week, str) or len(week) != 7:
        raise ValueError(f"week: expected 7 entries (Monday..Sunday), got {week!r}")
    out: list[tuple[tuple[int, int], ...]] = []
    for i, day in enumerate(week):
        where = f"week[{i}] ({DAY_KEYS[i]})"
        if not isinstance(day, Sequence) or isinstance(day, str):
            raise ValueError(f"{where}: expected a sequence of (open, close) minutes, got {day!r}")
        intervals: list[tuple[int, int]] = []
        for iv in day:
            if (
                not isinstance(iv, Sequence)
                or len(iv) != 2
                or not all(isinstance(m, int) and not isinstance(m, bool) for m in iv)
            ):
                raise ValueError(f"{where}: expected (open_minute, close_minute), got {iv!r}")
            o, c = iv
            if not 0 <= o < c <= _MINUTES_PER_DAY:
                raise ValueError(f"{where}: need 0 <= open < close <= 1440, got {(o, c)!r}")
            if intervals and o < intervals[-1][1]:
                raise ValueError(
                    f"{where}: {(o, c)!r} overlaps or precedes {intervals[-1]!r};"
                    " intervals must be sorted and disjoint"
                )
            intervals.append((o, c))
        out.append(tuple(intervals))
    if not any(out):
        raise ValueError("week: closed every day; at least one opening interval is needed")
    return tuple(out)


def _check_dates(name: str, values: object) -> frozenset[date]:
    if not isinstance(values, Iterable) or isinstance(values, str):
        raise ValueError(f"{name}: expected a set of dates, got {values!r}")
    out = frozenset(values)
    for d in out:
        # A datetime is a date subclass but never equals one, so it would silently not match.
        if not isinstance(d, date) or isinstance(d, datetime):
            raise ValueError(f"{name}: expected dates, got {d!r}")
    return out


# --- local wall time -> UTC ------------------------------------------------------------


def _as_utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name}: expected a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: expected a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _wall_to_utc(zone: ZoneInfo, day: date, minute: int) -> datetime:
    """The first instant at which the local wall clock shows ``minute`` of ``day`` or later."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minute)
    first = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: earlier of a repeated time
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # The wall time does not exist (spring-forward gap): the answer is the transition.
    # fold=0 and fold=1 read it with the offsets on either side, which bracket the
    # transition; bisect to the second (tzdata transitions are whole seconds).
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = min(first, other), max(first, other)
    while hi - lo > timedelta(seconds=1):
        mid = lo + timedelta(seconds=(hi - lo) // timedelta(seconds=2))
        if mid.astimezone(zone).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


@lru_cache(maxsize=8192)
def _local_hours_to_utc(
    timezone: str, day: date, hours: tuple[tuple[int, int], ...]
) -> tuple[Interval, ...]:
    zone = ZoneInfo(timezone)
    out: list[Interval] = []
    for o, c in hours:
        a, b = _wall_to_utc(zone, day, o), _wall_to_utc(zone, day, c)
        if a < b:  # an interval wholly inside a DST gap is empty
            out.append((a, b))
    return tuple(out)


def _day_intervals(cal: BusinessCalendar, first: date, last: date) -> Iterator[Interval]:
    """Opening intervals of local dates first..last, in order, disjoint, maybe touching."""
    day = first
    while day <= last:
        yield from _local_hours_to_utc(cal.timezone, day, cal.day_hours(day))
        day += _ONE_DAY


def _local_date(cal: BusinessCalendar, at: datetime) -> date:
    return at.astimezone(ZoneInfo(cal.timezone)).date()


# --- public arithmetic -----------------------------------------------------------------


def open_intervals(cal: BusinessCalendar, start: datetime, end: datetime) -> Iterator[Interval]:
    """The open periods intersecting ``[start, end)``, clipped to it, as aware UTC pairs.

    In order and disjoint; touching periods (midnight of a 24/7 store) are merged.
    """
    start, end = _as_utc(start, "start"), _as_utc(end, "end")
    return _open_intervals(cal, start, end)


def _open_intervals(cal: BusinessCalendar, start: datetime, end: datetime) -> Iterator[Interval]:
    if end <= start:
        return
    # A day's intervals lie between its local midnights, so one day of slack either side
    # covers any instant whose local date differs from the day it belongs to.
    first = _local_date(cal, start) - _ONE_DAY
    last = _local_date(cal, end) + _ONE_DAY
    current: Interval | None = None
    for a, b in _day_intervals(cal, first, last):
        a, b = max(a, start), min(b, end)
        if a >= b:
            if a >= end:
                break
            continue
        if current is not None and a <= current[1]:
            current = (current[0], max(current[1], b))
            continue
        if current is not None:
            yield current
        current = (a, b)
    if current is not None:
        yield current


def _merge_pauses(pauses: Sequence[Pause]) -> list[Interval]:
    spans: list[Interval] = []
    for i, pause in enumerate(pauses):
        if not isinstance(pause, Sequence) or len(pause) != 2:
            raise ValueError(f"pauses[{i}]: expected (start, end or None), got {pause!r}")
        p = _as_utc(pause[0], f"pauses[{i}] start")
        q = _FOREVER if pause[1] is None else _as_utc(pause[1], f"pauses[{i}] end")
        if q < p:
            raise ValueError(
                f"pauses[{i}]: ends ({q.isoformat()}) before it starts ({p.isoformat()})"
            )
        if p < q:
            spans.append((p, q))
    spans.sort()
    merged: list[Interval] = []
    for p, q in spans:
        if merged and p <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], q))
        else:
            merged.append((p, q))
    return merged


def business_time(
    cal: BusinessCalendar,
    start: datetime,
    end: datetime,
    pauses: Sequence[Pause] = (),
) -> timedelta:
    """Open time in ``[start, end)`` not covered by any pause; 0 when ``end <= start``."""
    start, end = _as_utc(start, "start"), _as_utc(end, "end")
    spans = _merge_pauses(pauses)
    total = timedelta(0)
    j = 0
    for a, b in _open_intervals(cal, start, end):
        total += b - a
        # Both lists are sorted and disjoint: one forward pass subtracts the overlaps.
        while j < len(spans) and spans[j][1] <= a:
            j += 1
        k = j
        while k < len(spans) and spans[k][0] < b:
            total -= min(b, spans[k][1]) - max(a, spans[k][0])
            k += 1
    return total


def add_business_time(
    cal: BusinessCalendar,
    start: datetime,
    duration: timedelta,
    pauses: Sequence[Pause] = (),
) -> datetime | None:
    """The earliest instant ``t >= start`` with ``business_time(cal, start, t, pauses)``
    equal to ``duration``, as aware UTC.

    None when the clock never gets there: an open-ended pause stops it, or about three
    years of calendar time pass without any open, unpaused time.
    """
    start = _as_utc(start, "start")
    if not isinstance(duration, timedelta):
        raise TypeError(f"duration: expected a timedelta, got {duration!r}")
    if duration < timedelta(0):
        raise ValueError(f"duration: must not be negative, got {duration}")
    if not duration:
        return start
    spans = _merge_pauses(pauses)
    remaining = duration
    pos = start  # all time before pos is accounted for
    j = 0  # spans before j end at or before pos
    while True:
        # Each pass walks the calendar from pos; a pass restarts after jumping over a
        # pause longer than the interval it started in (cheap, and keeps long pauses
        # from being walked day by day) and ends after the horizon without progress.
        first = _local_date(cal, pos) - _ONE_DAY
        jumped = progressed = False
        for a, b in _day_intervals(cal, first, first + timedelta(days=_HORIZON_DAYS)):
            if b <= pos:
                continue
            a = max(a, pos)
            while a < b:
                while j < len(spans) and spans[j][1] <= a:
                    j += 1
                if j < len(spans) and spans[j][0] <= a:  # paused at a: skip the pause
                    if spans[j][1] >= _FOREVER:  # also a caller's own datetime.max
                        return None
                    a = spans[j][1]
                    continue
                seg_end = min(b, spans[j][0]) if j < len(spans) else b
                if remaining <= seg_end - a:
                    return a + remaining
                remaining -= seg_end - a
                a = seg_end
                progressed = True
            pos = a
            if pos > b:
                jumped = True
                break
        if not (jumped or progressed):
            return None


# --- configuration ---------------------------------------------------------------------

_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _parse_minute(hh: str, mm: str) -> int | None:
    h, m = int(hh), int(mm)
    if m > 59 or h > 24 or (h == 24 and m):
        return None
    return h * 60 + m


def _parse_day(key: str, ranges: list[str]) -> tuple[tuple[int, int], ...]:
    parsed: list[tuple[int, int, int]] = []
    for i, text in enumerate(ranges):
        where = f"hours.{key}[{i}]"
        match = _RANGE.match(text)
        if match is None:
            raise ValueError(f"{where}: {text!r} is not a range like '09:00-18:00'")
        o, c = _parse_minute(*match.group(1, 2)), _parse_minute(*match.group(3, 4))
        if o is None or c is None:
            raise ValueError(f"{where}: {text!r} has a time outside 00:00..24:00")
        if c < o:
            raise ValueError(
                f"{where}: {text!r} closes before it opens"
                " (split overnight hours at midnight over two days)"
            )
        if c == o:
            raise ValueError(f"{where}: {text!r} is empty (closes when it opens)")
        parsed.append((o, c, i))
    parsed.sort()
    for (_, c1, i1), (o2, _, i2) in pairwise(parsed):
        if o2 < c1:
            raise ValueError(
                f"hours.{key}[{i2}]: {ranges[i2]!r} overlaps hours.{key}[{i1}]: {ranges[i1]!r}"
            )
    return tuple((o, c) for o, c, _ in parsed)


class HoursSpec(BaseModel):
    """A store's business hours as configured in YAML/JSON.

    ``hours`` maps ``mon``..``sun`` to ranges like ``["09:00-12:00", "13:00-18:00"]``
    (``"00:00-24:00"`` is a whole day; a missing day is closed). Times are wall-clock in
    ``timezone``. Public holidays of ``holidays_country`` (and subdivision) are closed,
    and so are ``closed_dates``; ``open_dates`` (and China's makeup working days) open
    with the hours of the first weekday that has any.
    """

    model_config = ConfigDict(extra="forbid")

    timezone: str = "UTC"
    hours: dict[str, list[str]]
    holidays_country: str | None = None
    holidays_subdivision: str | None = None
    closed_dates: list[date] = []
    open_dates: list[date] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if error := _zone_error(value):
            raise ValueError(error)
        return value

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, ranges in value.items():
            if key not in DAY_KEYS:
                raise ValueError(f"hours: unknown day {key!r} (use {', '.join(DAY_KEYS)})")
            _parse_day(key, ranges)
        if not any(value.get(k) for k in DAY_KEYS):
            raise ValueError("hours: closed every day; give at least one opening range")
        return value

    @field_validator("holidays_country")
    @classmethod
    def _upper_country(cls, value: str | None) -> str | None:
        return None if value is None else value.strip().upper()

    @model_validator(mode="after")
    def _known_country(self) -> Self:
        if error := _holidays_error(self.holidays_country, self.holidays_subdivision):
            raise ValueError(error)
        return self

    def week(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """The weekly template in the calendar's minute form."""
        return tuple(_parse_day(key, self.hours.get(key, [])) for key in DAY_KEYS)

    def calendar(self) -> BusinessCalendar:
        return BusinessCalendar(
            timezone=self.timezone,
            week=self.week(),
            holidays_country=self.holidays_country,
            holidays_subdivision=self.holidays_subdivision,
            closed_dates=frozenset(self.closed_dates),
            open_dates=frozenset(self.open_dates),
        )


#: Hours for a store that has configured none: open 24/7 in UTC with no holidays, so an
#: SLA of "24 h" means 24 wall-clock hours until the store sets real hours.
DEFAULT_HOURS = HoursSpec(hours={key: ["00:00-24:00"] for key in DAY_KEYS})
