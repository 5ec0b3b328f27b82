"""Customer retention per calendar period (客户保留率, DOMAIN.md section 3), and cohorts.

Periods are calendar months, quarters or years in store-local time; a period runs from
its start (00:00 of its first day) to its end, the start of the next period (exclusive).

Definitions, for a period [start, end) and ``active_days`` = d (default 365):

* A customer **is a customer at instant t** when they placed at least one order in
  [t − d days, t).
* **S** — customers at the period's start; **E** — customers at its end; **N** — new
  customers: those whose first order ever falls in the period.
* **CRR** (customer retention rate, seed 001) = (E − N) / S × 100; None when S = 0.
* **retained** — in S and in E; **lost** — in S, not in E; **reactivated** — in E, not
  in S, and not new (they had ordered before the period, lapsed, and came back). So
  E = retained + reactivated + the new customers still active at the end.
* **churn rate** = lost / S × 100; None when S = 0.
* **buyers** — customers with an order in the period; **orders**, **revenue** (Σ amount)
  and **net revenue** (Σ amount − refunded_amount) of the period's orders.
* **purchase frequency** = orders / buyers.
* **repeat buyers** — buyers who made a repeat purchase in the period, i.e. at least one
  of their orders in it is not their first order ever: they had ordered before the
  period, or ordered at least twice in it. **Repeat purchase rate** = repeat buyers /
  buyers × 100.
* **mean inter-purchase days** — over the period's orders that have an earlier order of
  the same customer (at any time before), the mean time since that previous order, in
  days (timestamps truncated to the second).
* **AOV** (average order value) = revenue / orders.

Rates are percentages (as DOMAIN.md writes CRR); cohort shares are fractions 0–1.

A period whose end is after the frame's ``as_of`` is marked ``complete=False``: its E,
lost and reactivated counts treat the days after ``as_of`` as having no orders.

How it is computed (one query per call, on DuckDB or Spark alike): orders are grouped
per customer and period with the customer's last order time in the period. An order at
time x makes its customer active at every period boundary b with x < b ≤ x + d, so a
customer's purchases in period p make them active at the boundaries p+1 … J where J is
the period containing (last order in p) + d. Per customer these ranges merge into
spells (window functions over the customer's periods); counting spell starts and ends
per boundary gives S and E as running sums, and lost / reactivated directly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

import ibis
from ibis import _

from patron.analytics.frame import Frame

Period = Literal["month", "quarter", "year"]
PERIODS: tuple[Period, ...] = ("month", "quarter", "year")
_ALL = "all"
MEMBERS, NON_MEMBERS = "members", "non_members"


@dataclass(frozen=True)
class PeriodRetention:
    """Retention and purchase measures of one calendar period (see the module docstring)."""

    period_start: date  # first day of the period
    period_end: date  # first day after the period (exclusive): E is measured at its 00:00
    complete: bool  # the period ended by the frame's as_of
    customers_start: int  # S
    customers_end: int  # E
    new_customers: int  # N
    retained: int
    lost: int
    reactivated: int
    retention_rate: float | None  # CRR = (E − N) / S × 100
    churn_rate: float | None  # lost / S × 100
    buyers: int
    orders: int
    revenue: float
    net_revenue: float
    purchase_frequency: float | None  # orders / buyers
    repeat_buyers: int
    repeat_purchase_rate: float | None  # repeat buyers / buyers × 100
    mean_interpurchase_days: float | None
    average_order_value: float | None  # revenue / orders


@dataclass(frozen=True)
class CohortMatrix:
    """Acquisition cohorts: ``cells[i][k]`` is the share (0–1) of cohort i's customers who
    ordered in the k-th period after the cohort's (k = 0: the acquisition period, 1.0).

    A cohort is the period of its customers' first order. ``cohorts`` lists every period
    from the first cohort to the data end (the period holding ``as_of``'s last instant);
    a cell is None beyond the data end, and a cohort of size 0 has only None cells.
    """

    period: Period
    cohorts: tuple[date, ...]  # first day of each cohort's period
    sizes: tuple[int, ...]  # customers acquired in each cohort
    cells: tuple[tuple[float | None, ...], ...]


# --- period arithmetic -------------------------------------------------------------------


def _check_period(period: str) -> Period:
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}: choose one of {', '.join(PERIODS)}")
    return period


def _index_expr(at: ibis.TimestampValue, period: Period) -> ibis.IntegerValue:
    """The absolute number of the period holding ``at``: months, quarters or years since
    year 0, so consecutive periods differ by one."""
    year = at.year().cast("int64")
    if period == "month":
        return year * 12 + at.month().cast("int64") - 1
    if period == "quarter":
        return year * 4 + at.quarter().cast("int64") - 1
    return year


def _index_of(day: date | datetime, period: Period) -> int:
    if period == "month":
        return day.year * 12 + day.month - 1
    if period == "quarter":
        return day.year * 4 + (day.month - 1) // 3
    return day.year


def _start_of(index: int, period: Period) -> date:
    if period == "month":
        return date(index // 12, index % 12 + 1, 1)
    if period == "quarter":
        return date(index // 4, (index % 4) * 3 + 1, 1)
    return date(index, 1, 1)


def _last_index(frame: Frame, period: Period) -> int:
    """The period holding the data's last instant (``as_of`` is exclusive)."""
    return _index_of(frame.as_of - timedelta(microseconds=1), period)


# --- the query ---------------------------------------------------------------------------


def _customer_periods(orders: ibis.Table, period: Period, active_days: int) -> ibis.Table:
    """One row per segment, customer and period with orders (``period_no``, see
    ``_index_expr``): the period's purchase figures, the customer's ``first_period`` ever
    and ``reach``, the last period boundary at which the period's orders keep the customer
    active (boundary b is the start of period b)."""
    previous = orders.placed_at.lag().over(
        group_by=orders.customer_id, order_by=[orders.placed_at, orders.order_id]
    )
    # Truncated to the second: Spark's epoch seconds are whole, DuckDB's are not.
    gap_days = (
        orders.placed_at.truncate("s").epoch_seconds() - previous.truncate("s").epoch_seconds()
    ) / 86_400
    o = orders.mutate(period_no=_index_expr(orders.placed_at, period), gap_days=gap_days)
    per_period = o.group_by("segment", "customer_id", "period_no").aggregate(
        orders=o.count(),
        revenue=o.amount.sum(),
        net_revenue=(o.amount - o.refunded_amount).sum(),
        last_at=o.placed_at.max(),
        gap_days_sum=o.gap_days.sum(),
        gaps=o.gap_days.count(),
    )
    return per_period.mutate(
        first_period=per_period.period_no.min().over(group_by=per_period.customer_id),
        reach=_index_expr(per_period.last_at + ibis.interval(days=active_days), period),
    )


def _retention_query(customer_periods: ibis.Table) -> ibis.Table:
    """Per segment and period index: purchase sums, new customers, spell starts (split
    into new and returning) and spell ends. Missing measures are 0."""
    sales = customer_periods.group_by("segment", index=_.period_no).aggregate(
        buyers=_.count(),
        orders=_.orders.sum(),
        revenue=_.revenue.sum(),
        net_revenue=_.net_revenue.sum(),
        repeat_buyers=ibis.ifelse((_.first_period < _.period_no) | (_.orders >= 2), 1, 0).sum(),
        new_customers=ibis.ifelse(_.period_no == _.first_period, 1, 0).sum(),
        gap_days_sum=_.gap_days_sum.sum(),
        gaps=_.gaps.sum(),
    )
    # Periods whose orders keep the customer active at a later boundary, as spells.
    active = customer_periods.filter(customer_periods.reach > customer_periods.period_no)
    by_customer = ibis.window(group_by=active.customer_id, order_by=active.period_no)
    active = active.mutate(
        previous_reach=active.reach.lag().over(by_customer),
        next_period=active.period_no.lead().over(by_customer),
    )
    starts = (
        active.filter(active.previous_reach.isnull() | (active.previous_reach < active.period_no))
        .group_by("segment", index=active.period_no + 1)
        .aggregate(
            spell_starts=_.count(),
            returning_starts=ibis.ifelse(_.period_no > _.first_period, 1, 0).sum(),
        )
    )
    ends = (
        active.filter(active.next_period.isnull() | (active.next_period > active.reach))
        .group_by("segment", index=active.reach)
        .aggregate(spell_ends=_.count())
    )
    measures: dict[str, str] = {
        "buyers": "int64",
        "orders": "int64",
        "revenue": "float64",
        "net_revenue": "float64",
        "repeat_buyers": "int64",
        "new_customers": "int64",
        "gap_days_sum": "float64",
        "gaps": "int64",
        "spell_starts": "int64",
        "returning_starts": "int64",
        "spell_ends": "int64",
    }

    def widen(part: ibis.Table) -> ibis.Table:
        return part.select(
            "segment",
            index=part["index"].cast("int64"),
            **{
                name: (
                    part[name].fill_null(0).cast(kind)
                    if name in part.columns
                    else ibis.literal(0).cast(kind)
                )
                for name, kind in measures.items()
            },
        )

    combined = widen(sales).union(widen(starts)).union(widen(ends))
    return combined.group_by("segment", "index").aggregate(
        **{name: combined[name].sum() for name in measures}
    )


def _segmented_orders(frame: Frame, by_membership: bool) -> ibis.Table:
    orders = frame.orders
    if not by_membership:
        return orders.mutate(segment=ibis.literal(_ALL))
    customers = frame.customers
    # One row per customer, whatever duplicates the customer table holds.
    members = (
        customers.group_by("customer_id")
        .aggregate(member=ibis.ifelse(customers.is_member.fill_null(False), 1, 0).max())
        .filter(_.member == 1)
        .select(member_id=_.customer_id)
    )
    joined = orders.left_join(members, orders.customer_id == members.member_id)
    return joined.mutate(
        segment=ibis.ifelse(joined.member_id.notnull(), MEMBERS, NON_MEMBERS)
    ).drop("member_id")


# --- results -----------------------------------------------------------------------------


def _percent(part: float, whole: float) -> float | None:
    return part / whole * 100 if whole else None


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _series(
    rows: dict[int, dict[str, Any]], first: int, last: int, period: Period, as_of: datetime
) -> list[PeriodRetention]:
    """The periods ``first`` … ``last`` of one segment from its per-index sums."""
    zero: dict[str, Any] = defaultdict(int)

    def at(index: int) -> dict[str, Any]:
        return rows.get(index, zero)

    # Customers active at boundary b = spells started at or before b, minus those ended
    # before b (a spell's end is its last active boundary).
    lowest = min([first, *rows])
    active_at: dict[int, int] = {}
    running = 0
    for boundary in range(lowest, last + 2):
        running += at(boundary)["spell_starts"]
        active_at[boundary] = running
        running -= at(boundary)["spell_ends"]

    series: list[PeriodRetention] = []
    for index in range(first, last + 1):
        row = at(index)
        start, end = _start_of(index, period), _start_of(index + 1, period)
        s, e, n = active_at[index], active_at[index + 1], row["new_customers"]
        lost = row["spell_ends"]
        buyers, orders, revenue = row["buyers"], row["orders"], float(row["revenue"])
        series.append(
            PeriodRetention(
                period_start=start,
                period_end=end,
                complete=datetime(end.year, end.month, end.day) <= as_of,
                customers_start=s,
                customers_end=e,
                new_customers=n,
                retained=s - lost,
                lost=lost,
                reactivated=at(index + 1)["returning_starts"],
                retention_rate=_percent(e - n, s),
                churn_rate=_percent(lost, s),
                buyers=buyers,
                orders=orders,
                revenue=revenue,
                net_revenue=float(row["net_revenue"]),
                purchase_frequency=_ratio(orders, buyers),
                repeat_buyers=row["repeat_buyers"],
                repeat_purchase_rate=_percent(row["repeat_buyers"], buyers),
                mean_interpurchase_days=_ratio(float(row["gap_days_sum"]), row["gaps"]),
                average_order_value=_ratio(revenue, orders),
            )
        )
    return series


def _retention(
    frame: Frame,
    period: str,
    active_days: int,
    start: date | None,
    end: date | None,
    by_membership: bool,
) -> dict[str, list[PeriodRetention]]:
    checked = _check_period(period)
    if active_days < 1:
        raise ValueError("active_days must be at least 1")
    orders = _segmented_orders(frame, by_membership)
    query = _retention_query(_customer_periods(orders, checked, active_days))
    by_segment: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for row in query.to_pyarrow().to_pylist():
        by_segment[row["segment"]][int(row["index"])] = row
    segments = [MEMBERS, NON_MEMBERS] if by_membership else [_ALL]
    buying = [i for rows in by_segment.values() for i, r in rows.items() if r["buyers"]]
    if (start is None or end is None) and not buying:
        return {segment: [] for segment in segments}
    first = _index_of(start, checked) if start is not None else min(buying)
    last = _index_of(end, checked) if end is not None else max(buying)
    return {
        segment: _series(by_segment[segment], first, last, checked, frame.as_of)
        for segment in segments
    }


def retention_by_period(
    frame: Frame,
    period: Period = "month",
    *,
    active_days: int = 365,
    start: date | None = None,
    end: date | None = None,
) -> list[PeriodRetention]:
    """Retention and purchase measures of every ``period`` from the one holding the first
    order (or ``start``) to the one holding the last order (or ``end``), oldest first.

    Definitions in the module docstring. Raises ``ValueError`` for an unknown period or
    ``active_days`` < 1.
    """
    return _retention(frame, period, active_days, start, end, by_membership=False)[_ALL]


def retention_by_membership(
    frame: Frame,
    period: Period = "month",
    *,
    active_days: int = 365,
    start: date | None = None,
    end: date | None = None,
) -> dict[str, list[PeriodRetention]]:
    """``retention_by_period`` for loyalty members and for everyone else, keyed
    ``"members"`` and ``"non_members"`` (by ``customers.is_member``; a customer missing
    from the customer table is not a member). Both series cover the same periods."""
    return _retention(frame, period, active_days, start, end, by_membership=True)


def cohort_matrix(
    frame: Frame, period: Period = "month", *, max_age: int | None = None
) -> CohortMatrix:
    """The acquisition cohort matrix; ``max_age`` limits the periods after acquisition
    shown (the columns are ages 0 … max_age)."""
    checked = _check_period(period)
    if max_age is not None and max_age < 0:
        raise ValueError("max_age must be at least 0")
    orders = frame.orders
    bought = orders.select(
        "customer_id", period_no=_index_expr(orders.placed_at, checked)
    ).distinct()
    bought = bought.mutate(first_period=bought.period_no.min().over(group_by=bought.customer_id))
    bought = bought.mutate(age=bought.period_no - bought.first_period)
    if max_age is not None:
        bought = bought.filter(bought.age <= max_age)
    counts = bought.group_by("first_period", "age").aggregate(customers=bought.count())
    rows = counts.to_pyarrow().to_pylist()
    last = _last_index(frame, checked)
    found = {(int(r["first_period"]), int(r["age"])): int(r["customers"]) for r in rows}
    cohort_indexes = [first for first, _ in found if first <= last]
    if not cohort_indexes:
        return CohortMatrix(period=checked, cohorts=(), sizes=(), cells=())
    first_cohort = min(cohort_indexes)
    width = last - first_cohort + 1
    if max_age is not None:
        width = min(width, max_age + 1)
    cohorts, sizes, cells = [], [], []
    for cohort in range(first_cohort, last + 1):
        size = found.get((cohort, 0), 0)
        cohorts.append(_start_of(cohort, checked))
        sizes.append(size)
        cells.append(
            tuple(
                found.get((cohort, age), 0) / size if size and cohort + age <= last else None
                for age in range(width)
            )
        )
    return CohortMatrix(
        period=checked, cohorts=tuple(cohorts), sizes=tuple(sizes), cells=tuple(cells)
    )
