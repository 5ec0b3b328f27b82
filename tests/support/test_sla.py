"""SLA business-time arithmetic: worked examples, then properties over random calendars.

The properties pin down what ``add_business_time`` means (the earliest instant at which
``business_time`` reaches the target) and check ``business_time`` against a minute-by-
minute oracle that reads the wall clock directly, across DST changes and holidays.
"""

from __future__ import annotations

import time as timer
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from patron.support.sla import (
    DAY_KEYS,
    DEFAULT_HOURS,
    BusinessCalendar,
    HoursSpec,
    Pause,
    add_business_time,
    business_time,
    open_intervals,
)

H = timedelta(hours=1)
MIN = timedelta(minutes=1)
US = timedelta(microseconds=1)
SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
NINE_TO_SIX = ((9 * 60, 18 * 60),)
WEEKDAYS_ONLY = (NINE_TO_SIX,) * 5 + ((), ())


def at(zone: tzinfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def local(t: datetime | None, zone: ZoneInfo) -> datetime:
    assert t is not None
    assert t.tzinfo is UTC
    return t.astimezone(zone)


def shanghai(
    country: str | None = "CN",
    closed_dates: frozenset[date] = frozenset(),
    open_dates: frozenset[date] = frozenset(),
) -> BusinessCalendar:
    """Open 09:00-18:00 Monday to Friday in Shanghai, with China's public holidays."""
    return BusinessCalendar("Asia/Shanghai", WEEKDAYS_ONLY, country, None, closed_dates, open_dates)


# --- worked examples ---------------------------------------------------------------------


def test_friday_evening_ticket_is_due_monday_afternoon() -> None:
    cal = shanghai()
    due = add_business_time(cal, at(SH, 2026, 3, 6, 17), 8 * H)
    assert local(due, SH) == at(SH, 2026, 3, 9, 16)
    assert business_time(cal, at(SH, 2026, 3, 6, 17), at(SH, 2026, 3, 9, 16)) == 8 * H
    # Arriving at night or on the weekend starts the clock at the next opening.
    assert local(add_business_time(cal, at(SH, 2026, 3, 7, 23), H), SH) == at(SH, 2026, 3, 9, 10)
    # Exactly at closing time the target is reached at closing, not the next morning.
    assert local(add_business_time(cal, at(SH, 2026, 3, 6, 9), 9 * H), SH) == at(SH, 2026, 3, 6, 18)
    assert add_business_time(cal, at(SH, 2026, 3, 7, 23), timedelta(0)) == at(SH, 2026, 3, 7, 23)


def test_spring_festival_2026_and_its_makeup_working_days() -> None:
    cal = shanghai()
    for day in range(15, 24):
        assert cal.day_hours(date(2026, 2, day)) == (), day
    # 调休: the Saturdays before and after the break are working days with weekday hours.
    assert cal.day_hours(date(2026, 2, 14)) == NINE_TO_SIX
    assert cal.day_hours(date(2026, 2, 28)) == NINE_TO_SIX
    assert cal.day_hours(date(2026, 2, 24)) == NINE_TO_SIX
    assert shanghai(None).day_hours(date(2026, 2, 14)) == ()
    assert shanghai(None).day_hours(date(2026, 2, 16)) == NINE_TO_SIX

    assert business_time(cal, at(SH, 2026, 2, 14, 18), at(SH, 2026, 2, 24, 9)) == timedelta(0)
    # Friday 17:00 + 8 h: 1 h on Friday, 7 h on the makeup Saturday.
    assert local(add_business_time(cal, at(SH, 2026, 2, 13, 17), 8 * H), SH) == at(
        SH, 2026, 2, 14, 16
    )
    # From the makeup Saturday's last hour, the clock resumes after the nine days off.
    assert local(add_business_time(cal, at(SH, 2026, 2, 14, 17), 8 * H), SH) == at(
        SH, 2026, 2, 24, 16
    )
    assert business_time(cal, at(SH, 2026, 2, 27, 17), at(SH, 2026, 3, 2, 10)) == 11 * H
    assert cal.is_open(at(SH, 2026, 2, 28, 12))
    assert not cal.is_open(at(SH, 2026, 2, 18, 12))


def test_new_york_across_dst_changes() -> None:
    always = BusinessCalendar.always_open("America/New_York")
    # A 24 h local day is 23 real hours in March and 25 in November.
    assert business_time(always, at(NY, 2026, 3, 8), at(NY, 2026, 3, 9)) == 23 * H
    assert business_time(always, at(NY, 2026, 11, 1), at(NY, 2026, 11, 2)) == 25 * H
    assert add_business_time(always, at(NY, 2026, 3, 7, 12), 24 * H) == at(
        UTC, 2026, 3, 8, 17
    )  # 24 real hours: 13:00 EDT on Sunday
    # Office hours keep their wall-clock times on both sides of the change.
    office = BusinessCalendar("America/New_York", (((9 * 60, 17 * 60),),) * 5 + ((), ()))
    due = add_business_time(office, at(NY, 2026, 3, 6, 16), 2 * H)
    assert local(due, NY) == at(NY, 2026, 3, 9, 10)
    assert due == at(UTC, 2026, 3, 9, 14)
    due = add_business_time(office, at(NY, 2026, 10, 30, 16), 2 * H)
    assert due == at(UTC, 2026, 11, 2, 15)  # 10:00 EST
    assert business_time(office, at(NY, 2026, 3, 2), at(NY, 2026, 3, 16)) == 80 * H
    assert business_time(office, at(NY, 2026, 10, 26), at(NY, 2026, 11, 9)) == 80 * H


def test_hours_at_the_dst_transition_itself() -> None:
    sunday_night = ((60, 120), (120, 150), (150, 180))  # 01:00-02:00-02:30-03:00
    cal = BusinessCalendar("America/New_York", ((),) * 6 + (sunday_night,))
    spring = list(open_intervals(cal, at(NY, 2026, 3, 7), at(NY, 2026, 3, 10)))
    # 02:00-03:00 does not exist that night: only 01:00-02:00 EST remains.
    assert spring == [(at(UTC, 2026, 3, 8, 6), at(UTC, 2026, 3, 8, 7))]
    autumn = list(open_intervals(cal, at(NY, 2026, 10, 31), at(NY, 2026, 11, 3)))
    # 01:00 EDT until 03:00 EST: the repeated hour is open, 3 real hours.
    assert autumn == [(at(UTC, 2026, 11, 1, 5), at(UTC, 2026, 11, 1, 8))]
    inside_gap = BusinessCalendar("America/New_York", ((),) * 6 + (((130, 140), (150, 200)),))
    spring = list(open_intervals(inside_gap, at(NY, 2026, 3, 7), at(NY, 2026, 3, 10)))
    assert spring == [(at(UTC, 2026, 3, 8, 7), at(UTC, 2026, 3, 8, 7, 20))]  # 03:00-03:20 EDT


def test_lord_howe_half_hour_dst() -> None:
    lh = ZoneInfo("Australia/Lord_Howe")
    always = BusinessCalendar.always_open("Australia/Lord_Howe")
    assert business_time(always, at(lh, 2026, 4, 5), at(lh, 2026, 4, 6)) == 24.5 * H
    assert business_time(always, at(lh, 2026, 10, 4), at(lh, 2026, 10, 5)) == 23.5 * H


def test_public_holidays_us_and_closed_and_open_dates() -> None:
    cal = BusinessCalendar("America/New_York", WEEKDAYS_ONLY, holidays_country="US")
    assert cal.day_hours(date(2026, 7, 3)) == ()  # Independence Day observed on Friday
    assert local(add_business_time(cal, at(NY, 2026, 7, 2, 17), 2 * H), NY) == at(
        NY, 2026, 7, 6, 10
    )
    wednesday, saturday = date(2026, 3, 11), date(2026, 3, 14)
    cal = shanghai(closed_dates=frozenset({wednesday}), open_dates=frozenset({saturday}))
    assert cal.day_hours(wednesday) == ()
    assert cal.day_hours(saturday) == NINE_TO_SIX
    assert local(add_business_time(cal, at(SH, 2026, 3, 10, 17), 2 * H), SH) == at(
        SH, 2026, 3, 12, 10
    )
    assert business_time(cal, at(SH, 2026, 3, 13, 18), at(SH, 2026, 3, 16, 9)) == 9 * H
    # closed_dates wins over open_dates and over makeup days.
    both = shanghai(
        closed_dates=frozenset({saturday, date(2026, 2, 14)}), open_dates=frozenset({saturday})
    )
    assert both.day_hours(saturday) == () and both.day_hours(date(2026, 2, 14)) == ()
    # Plain sets and lists are accepted and stored as frozensets (the calendar is hashable).
    loose = BusinessCalendar("UTC", list(WEEKDAYS_ONLY), open_dates={saturday})  # type: ignore[arg-type]
    assert loose.open_dates == frozenset({saturday}) and hash(loose)
    # An open date on a public holiday opens it.
    assert shanghai(open_dates=frozenset({date(2026, 2, 17)})).day_hours(date(2026, 2, 17))
    # Workday hours: the first weekday with hours, else the first day with any.
    weekend_shop = BusinessCalendar("UTC", ((),) * 5 + (((600, 700),), ((0, 60),)))
    assert BusinessCalendar(
        "UTC", weekend_shop.week, open_dates=frozenset({date(2026, 3, 11)})
    ).day_hours(date(2026, 3, 11)) == ((600, 700),)


def test_pauses() -> None:
    cal = shanghai()
    weekend = (at(SH, 2026, 3, 6, 18), at(SH, 2026, 3, 9, 9))
    assert add_business_time(cal, at(SH, 2026, 3, 6, 17), 8 * H, [weekend]) == (
        add_business_time(cal, at(SH, 2026, 3, 6, 17), 8 * H)
    )
    lunch_wait = (at(SH, 2026, 3, 9, 11), at(SH, 2026, 3, 9, 13))
    assert local(add_business_time(cal, at(SH, 2026, 3, 9, 10), 4 * H, [lunch_wait]), SH) == (
        at(SH, 2026, 3, 9, 16)
    )
    start, end = at(SH, 2026, 3, 9, 9), at(SH, 2026, 3, 9, 18)
    assert business_time(cal, start, end, [lunch_wait]) == 7 * H
    # Overlapping and unsorted pauses count once.
    pauses: list[Pause] = [(at(SH, 2026, 3, 9, 12), at(SH, 2026, 3, 9, 14)), lunch_wait]
    assert business_time(cal, start, end, pauses) == 6 * H
    # Waiting on the customer indefinitely stops the clock for good.
    forever: list[Pause] = [(at(SH, 2026, 3, 9, 12), None)]
    assert add_business_time(cal, start, 4 * H, forever) is None
    assert local(add_business_time(cal, start, 3 * H, forever), SH) == at(SH, 2026, 3, 9, 12)
    assert business_time(cal, start, at(SH, 2027, 1, 1), forever) == 3 * H
    # A pause of years is skipped, not walked through.
    years: list[Pause] = [(at(SH, 2026, 3, 9, 10), at(SH, 2031, 1, 1))]
    assert local(add_business_time(cal, start, 2 * H, years), SH) == at(SH, 2031, 1, 2, 10)
    with pytest.raises(ValueError, match=r"pauses\[0\]"):
        business_time(cal, start, end, [(end, start)])


def test_gives_up_when_nothing_ever_opens() -> None:
    mondays = frozenset(date(2026, 3, 2) + timedelta(weeks=w) for w in range(52 * 5))
    cal = BusinessCalendar("UTC", (NINE_TO_SIX,) + ((),) * 6, closed_dates=mondays)
    assert add_business_time(cal, at(UTC, 2026, 3, 1), MIN) is None
    assert add_business_time(cal, at(UTC, 2026, 3, 1), timedelta(0)) == at(UTC, 2026, 3, 1)


def test_input_checks() -> None:
    cal = shanghai()
    with pytest.raises(ValueError, match="start: expected a timezone-aware"):
        add_business_time(cal, datetime(2026, 3, 9), H)
    with pytest.raises(ValueError, match="end: expected a timezone-aware"):
        business_time(cal, at(UTC, 2026, 3, 9), datetime(2026, 3, 10))
    with pytest.raises(ValueError, match="duration"):
        add_business_time(cal, at(UTC, 2026, 3, 9), -H)
    assert business_time(cal, at(SH, 2026, 3, 9, 12), at(SH, 2026, 3, 9, 10)) == timedelta(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone: unknown IANA time zone 'Mars/Olympus'"),
        ({"timezone": "../etc"}, "timezone: unknown IANA time zone"),
        ({"week": WEEKDAYS_ONLY[:6]}, "week: expected 7 entries"),
        ({"week": (((600, 540),),) + ((),) * 6}, r"week\[0\] \(mon\): need 0 <= open < close"),
        ({"week": ((),) * 6 + (((0, 1441),),)}, r"week\[6\] \(sun\)"),
        ({"week": (((0, 600), (500, 700)),) + ((),) * 6}, "sorted and disjoint"),
        ({"week": ((),) * 7}, "week: closed every day"),
        ({"holidays_country": "XX"}, "holidays_country: unknown country 'XX'"),
        ({"holidays_subdivision": "ENG"}, "holidays_subdivision: 'ENG' given without"),
        (
            {"holidays_country": "US", "holidays_subdivision": "ZZ"},
            "holidays_subdivision: 'US' has no subdivision 'ZZ'",
        ),
        ({"closed_dates": frozenset({datetime(2026, 1, 1)})}, "closed_dates: expected dates"),
    ],
)
def test_calendar_validation(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"timezone": "UTC", "week": WEEKDAYS_ONLY, **kwargs}
    with pytest.raises(ValueError, match=message):
        BusinessCalendar(**args)  # type: ignore[arg-type]


def test_hours_spec() -> None:
    spec = HoursSpec.model_validate(
        {
            "timezone": "Europe/London",
            "hours": {"mon": ["13:00-18:00", "09:00-12:00"], "sat": ["00:00-24:00"]},
            "holidays_country": "gb",
            "holidays_subdivision": "ENG",
            "closed_dates": ["2026-03-04"],
            "open_dates": ["2026-03-08"],
        }
    )
    cal = spec.calendar()
    assert cal.week == (((540, 720), (780, 1080)), (), (), (), (), ((0, 1440),), ())
    assert cal.holidays_country == "GB"
    assert cal.closed_dates == frozenset({date(2026, 3, 4)})
    assert cal.day_hours(date(2026, 3, 8)) == ((540, 720), (780, 1080))
    assert cal.day_hours(date(2026, 4, 6)) == ()  # Easter Monday in England
    assert HoursSpec.model_validate_json(spec.model_dump_json()) == spec

    default = DEFAULT_HOURS.calendar()
    assert default == BusinessCalendar.always_open()
    assert set(DEFAULT_HOURS.hours) == set(DAY_KEYS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hours": {"mon": ["18:00-09:00"]}}, "hours.mon[0]: '18:00-09:00' closes before it opens"),
        ({"hours": {"mon": ["9-18"]}}, "hours.mon[0]: '9-18' is not a range"),
        ({"hours": {"tue": ["09:00-24:30"]}}, "hours.tue[0]: '09:00-24:30' has a time outside"),
        ({"hours": {"tue": ["09:60-10:00"]}}, "hours.tue[0]: '09:60-10:00' has a time outside"),
        ({"hours": {"wed": ["09:00-09:00"]}}, "hours.wed[0]: '09:00-09:00' is empty"),
        (
            {"hours": {"thu": ["09:00-12:00", "11:00-13:00"]}},
            "hours.thu[1]: '11:00-13:00' overlaps hours.thu[0]: '09:00-12:00'",
        ),
        ({"hours": {"monday": ["09:00-18:00"]}}, "hours: unknown day 'monday'"),
        ({"hours": {"sun": []}}, "hours: closed every day"),
        ({"hours": {}, "timezone": "Nowhere/Land"}, "timezone: unknown IANA time zone"),
        ({"hours": {"mon": ["09:00-10:00"]}, "holidays_country": "Narnia"}, "'NARNIA'"),
        (
            {
                "hours": {"mon": ["09:00-10:00"]},
                "holidays_country": "CN",
                "holidays_subdivision": "X",
            },
            "holidays_subdivision: 'CN' has no subdivision 'X'",
        ),
        ({"hours": {"mon": ["09:00-10:00"]}, "closed_dates": ["someday"]}, "closed_dates.0"),
        ({"hours": {"mon": ["09:00-10:00"]}, "weekdays": 5}, "weekdays"),
        ({}, "hours"),
    ],
)
def test_hours_spec_errors_name_field_and_value(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        HoursSpec.model_validate(data)
    assert message in str(info.value)


def test_fast_enough() -> None:
    cal = shanghai()
    always = BusinessCalendar.always_open("Europe/London")
    starts = [at(UTC, 2026, 1, 1) + timedelta(hours=7 * i) for i in range(500)]
    began = timer.perf_counter()
    for s in starts:  # mostly cold caches: each start is a fresh local date
        add_business_time(cal, s, 24 * H)
        add_business_time(always, s, 24 * H)
    # ~2 ms per call even on a slow shared CI machine; typically tens of microseconds.
    assert timer.perf_counter() - began < 2.0


# --- properties ----------------------------------------------------------------------------

ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe", "UTC"]
COUNTRIES = [None, "CN", "US", "GB"]


def _dst_days(name: str) -> list[datetime]:
    """UTC midnights starting a day in which the zone's offset changes, 2025-2027."""
    zone = ZoneInfo(name)
    days = []
    t = datetime(2025, 1, 1, tzinfo=UTC)
    while t.year < 2028:
        if (t + timedelta(days=1)).astimezone(zone).utcoffset() != t.astimezone(zone).utcoffset():
            days.append(t)
        t += timedelta(days=1)
    return days


DST_DAYS = {name: _dst_days(name) for name in ZONES}

# Quarter hours hit DST changes (at 01:00, 02:00 or 02:30 local in these zones) often.
minutes = st.one_of(
    st.integers(0, 1440),
    st.integers(0, 96).map(lambda q: q * 15),
    st.integers(0, 16).map(lambda q: 30 + q * 15),
)


@st.composite
def day_hours(draw: st.DrawFn) -> tuple[tuple[int, int], ...]:
    kind = draw(st.sampled_from(["closed", "full", "split", "random", "random"]))
    if kind == "closed":
        return ()
    if kind == "full":
        return ((0, 1440),)
    if kind == "split":  # touching intervals
        cut = draw(st.integers(1, 1439))
        return ((0, cut), (cut, 1440))
    bounds = sorted(draw(st.lists(minutes, min_size=2, max_size=6, unique=True)))
    bounds = bounds[: len(bounds) // 2 * 2]
    return tuple(zip(bounds[::2], bounds[1::2], strict=True))


def instants(zone: str) -> st.SearchStrategy[datetime]:
    """Any instant of 2025-2027, or one within days of the zone's DST changes."""
    anytime = st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC))
    if not DST_DAYS[zone]:
        return anytime
    near_dst = st.builds(
        lambda day, offset: day + offset,
        st.sampled_from(DST_DAYS[zone]),
        st.timedeltas(timedelta(days=-3), timedelta(days=3)),
    )
    return st.one_of(anytime, near_dst)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[BusinessCalendar, datetime, timedelta]:
    """A calendar, a start, and a duration the calendar reaches within a few weeks."""
    zone = draw(st.sampled_from(ZONES))
    start = draw(instants(zone))
    week = tuple(draw(day_hours()) for _ in range(7))
    if not any(week):
        week = (((540, 1080),), *week[1:])
    near = start.astimezone(ZoneInfo(zone)).date()
    offsets = st.lists(st.integers(-2, 30), max_size=4)
    cal = BusinessCalendar(
        zone,
        week,
        holidays_country=draw(st.sampled_from(COUNTRIES)),
        closed_dates=frozenset(near + timedelta(days=k) for k in draw(offsets)),
        open_dates=frozenset(near + timedelta(days=k) for k in draw(offsets)),
    )
    # Long enough to cross several openings, short enough that even a calendar open one
    # minute a week answers within weeks (holidays and closed dates only add a few).
    weekly = sum(c - o for hours in week for o, c in hours)
    cap = timedelta(minutes=min(3 * weekly, 20 * 24 * 60))
    duration = draw(
        st.one_of(
            st.timedeltas(timedelta(0), cap),
            st.integers(0, cap // MIN).map(lambda m: m * MIN),
        )
    )
    return cal, start, duration


@st.composite
def pause_lists(draw: st.DrawFn, start: datetime, open_ended: bool = True) -> list[Pause]:
    out: list[Pause] = []
    for _ in range(draw(st.integers(0, 3))):
        p = start + draw(st.timedeltas(timedelta(days=-2), timedelta(days=20)))
        if open_ended and draw(st.integers(0, 9)) == 0:
            out.append((p, None))
        else:
            out.append((p, p + draw(st.timedeltas(timedelta(0), timedelta(days=5)))))
    return out


def merged(pauses: list[Pause], until: datetime) -> list[tuple[datetime, datetime]]:
    spans = sorted((p, until if q is None else min(q, until)) for p, q in pauses)
    out: list[tuple[datetime, datetime]] = []
    for p, q in spans:
        if out and p <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], q))
        elif p < q:
            out.append((p, q))
    return out


PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(scenarios(), st.data())
def test_add_is_the_earliest_instant_reaching_the_duration(
    scenario: tuple[BusinessCalendar, datetime, timedelta], data: st.DataObject
) -> None:
    cal, start, duration = scenario
    pauses = data.draw(pause_lists(start))
    due = add_business_time(cal, start, duration, pauses)
    stops = [p for p, q in pauses if q is None]
    if due is None:
        # Only an open-ended pause stops the clock, and before it there is too little time.
        assert stops
        assert business_time(cal, start, min(stops), pauses) < duration
        return
    assert due.tzinfo is UTC and due >= start
    assert business_time(cal, start, due, pauses) == duration
    if duration:
        assert business_time(cal, start, due - US, pauses) < duration
        # It never lands in a closed or paused stretch: the last microsecond counted.
        assert business_time(cal, due - US, due, pauses) == US
        if not pauses:
            assert cal.is_open(due - US)
    else:
        assert due == start


@PROPS
@given(scenarios(), st.data())
def test_add_is_additive_and_monotone(
    scenario: tuple[BusinessCalendar, datetime, timedelta], data: st.DataObject
) -> None:
    cal, start, total = scenario
    first = data.draw(st.timedeltas(timedelta(0), total))
    pauses = data.draw(pause_lists(start, open_ended=False))
    mid = add_business_time(cal, start, first, pauses)
    assert mid is not None
    assert add_business_time(cal, mid, total - first, pauses) == add_business_time(
        cal, start, total, pauses
    )
    end = add_business_time(cal, start, total, pauses)
    assert end is not None and mid <= end


@PROPS
@given(scenarios(), st.data())
def test_business_time_is_a_measure(
    scenario: tuple[BusinessCalendar, datetime, timedelta], data: st.DataObject
) -> None:
    cal, start, _ = scenario
    end = start + data.draw(st.timedeltas(timedelta(0), timedelta(days=12)))
    split = start + data.draw(st.timedeltas(timedelta(0), end - start))
    whole = business_time(cal, start, end)
    assert timedelta(0) <= whole <= end - start
    assert whole == business_time(cal, start, split) + business_time(cal, split, end)
    assert business_time(cal, end, start) == timedelta(0) or end == start

    intervals = list(open_intervals(cal, start, end))
    assert sum((b - a for a, b in intervals), timedelta(0)) == whole
    for a, b in intervals:
        assert start <= a < b <= end and a.tzinfo is UTC and b.tzinfo is UTC
        assert cal.is_open(a) and cal.is_open(b - US)
    for (_, b1), (a2, _) in pairwise(intervals):
        assert b1 < a2  # ordered, disjoint, and touching periods merged
        assert not cal.is_open(b1)

    pauses = data.draw(pause_lists(start))
    paused = business_time(cal, start, end, pauses)
    assert paused <= whole
    # Pauses take away exactly the open time they cover, overlaps counted once.
    overlap = sum(
        (business_time(cal, max(p, start), min(q, end)) for p, q in merged(pauses, end)),
        timedelta(0),
    )
    assert whole - paused == overlap


@PROPS
@given(scenarios(), st.sampled_from(ZONES), st.data())
def test_answers_do_not_depend_on_the_zone_inputs_are_written_in(
    scenario: tuple[BusinessCalendar, datetime, timedelta], zone: str, data: st.DataObject
) -> None:
    cal, start, duration = scenario
    other = ZoneInfo(zone)
    pauses = data.draw(pause_lists(start))
    moved: list[Pause] = [(p.astimezone(other), q and q.astimezone(other)) for p, q in pauses]
    assert add_business_time(cal, start.astimezone(other), duration, moved) == (
        add_business_time(cal, start, duration, pauses)
    )
    end = start + duration * 2
    assert business_time(cal, start.astimezone(other), end.astimezone(other), moved) == (
        business_time(cal, start, end, pauses)
    )
    assert cal.is_open(start.astimezone(other)) == cal.is_open(start)


def _local_midnight(cal: BusinessCalendar, day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=ZoneInfo(cal.timezone)).astimezone(UTC)


@PROPS
@given(scenarios())
def test_nothing_accrues_on_closed_days(
    scenario: tuple[BusinessCalendar, datetime, timedelta],
) -> None:
    cal, start, duration = scenario
    first = start.astimezone(ZoneInfo(cal.timezone)).date()
    closed = [first + timedelta(days=k) for k in range(30)]
    closed = [d for d in closed if not cal.day_hours(d)]
    due = add_business_time(cal, start, duration)
    assert due is not None
    for day in closed:
        assert day in cal.closed_dates or not cal.week[day.weekday()] or cal.holidays_country
        begin, end = _local_midnight(cal, day), _local_midnight(cal, day + timedelta(days=1))
        assert business_time(cal, begin, end) == timedelta(0)
        assert list(open_intervals(cal, begin, end)) == []
        assert not any(cal.is_open(begin + k * (end - begin) / 24) for k in range(24))
        # A due time may be a closed day's first instant (the previous day closed at
        # midnight), never inside it.
        assert not begin < due < end or not duration


def _oracle(cal: BusinessCalendar, start: datetime, end: datetime) -> timedelta:
    """Open minutes in [start, end), reading the wall clock minute by minute.

    While the clock repeats an hour after being set back, it counts as still showing the
    time it was set back from: the running maximum of the wall clock.
    """
    zone = ZoneInfo(cal.timezone)
    t = start - 3 * H  # folds here are at most an hour: this sees the clock's high mark
    high: datetime | None = None
    count = 0
    while t < end:
        wall = t.astimezone(zone).replace(tzinfo=None)
        high = wall if high is None or wall > high else high
        if t >= start:
            minute = high.hour * 60 + high.minute
            count += any(o <= minute < c for o, c in cal.day_hours(high.date()))
        t += MIN
    return count * MIN


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 30 * 60), st.data())
def test_business_time_matches_a_minute_by_minute_oracle(
    scenario: tuple[BusinessCalendar, datetime, timedelta], length: int, data: st.DataObject
) -> None:
    cal, start, _ = scenario
    near_dst: bool = data.draw(st.booleans())
    if DST_DAYS[cal.timezone] and near_dst:
        # Straddle a DST change, where boundaries fall in gaps and repeated hours.
        day = data.draw(st.sampled_from(DST_DAYS[cal.timezone]))
        start = day + data.draw(st.timedeltas(-6 * H, timedelta(days=1)))
    start = start.replace(second=0, microsecond=0)
    end = start + length * MIN
    assert business_time(cal, start, end) == _oracle(cal, start, end)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["America/New_York", "Europe/London", "Australia/Lord_Howe"]),
    st.lists(st.integers(0, 20).map(lambda q: q * 15), min_size=2, max_size=6, unique=True),
    st.data(),
)
def test_dst_nights_match_the_oracle(zone: str, bounds: list[int], data: st.DataObject) -> None:
    # Every day has the same hours, with boundaries around the small hours when clocks
    # change: boundaries in spring-forward gaps and in repeated hours, every time.
    bounds = sorted(bounds)[: len(bounds) // 2 * 2]
    hours = tuple(zip(bounds[::2], bounds[1::2], strict=True))
    cal = BusinessCalendar(zone, (hours,) * 7)
    day = data.draw(st.sampled_from(DST_DAYS[zone]))
    start = day + data.draw(st.integers(-12 * 60, 24 * 60)) * MIN
    end = start + data.draw(st.integers(0, 30 * 60)) * MIN
    assert business_time(cal, start, end) == _oracle(cal, start, end)
    duration = business_time(cal, start, end)
    due = add_business_time(cal, start, duration)
    assert due is not None and due <= end and business_time(cal, start, due) == duration
