"""Retention per period, by membership, and cohorts, on DuckDB and Spark.

A four-customer shop computed by hand (CRR = (E − N) / S × 100 exactly as DOMAIN.md,
lost, reactivated, frequency, repeat rate, inter-purchase days); a random shop checked
against a brute-force reading of the documented definitions; and a generated shop read
from Parquet by both engines, which must agree.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from patron.analytics.concentration import value_concentration
from patron.analytics.frame import Engine, Frame, from_arrow
from patron.analytics.retention import (
    PeriodRetention,
    cohort_matrix,
    retention_by_membership,
    retention_by_period,
)
from patron.analytics.sources import open_source
from patron.demo.generator import GeneratorParams, generate, write_shop
from tests.analytics.conftest import ANALYTICS_ENGINES

# customer, placed_at (store-local), amount, refunded_amount
Order = tuple[str, datetime, float, float]

NOON = 12
HAND_ORDERS: list[Order] = [
    ("D", datetime(2023, 11, 15, NOON), 10.0, 0.0),
    ("A", datetime(2024, 1, 10, NOON), 100.0, 0.0),
    ("A", datetime(2024, 1, 20, NOON), 50.0, 20.0),
    ("B", datetime(2024, 1, 25, NOON), 30.0, 0.0),
    ("B", datetime(2024, 2, 5, 18), 70.0, 0.0),
    ("C", datetime(2024, 2, 28, NOON), 40.0, 0.0),
    ("D", datetime(2024, 3, 10, NOON), 25.0, 0.0),
    ("A", datetime(2024, 4, 15, NOON), 80.0, 0.0),
]
MEMBERS = {"A", "C"}


def frame_of(
    engine: Engine, orders: list[Order], members: set[str] = frozenset(), **kwargs: Any
) -> Frame:
    table = pa.table(
        {
            "order_id": [f"o{i:04d}" for i in range(len(orders))],
            "customer_id": [o[0] for o in orders],
            "placed_at": pa.array([o[1] for o in orders], pa.timestamp("us")),
            "amount": [o[2] for o in orders],
            "refunded_amount": [o[3] for o in orders],
        }
    )
    ids = sorted({o[0] for o in orders})
    customers = pa.table({"customer_id": ids, "is_member": [c in members for c in ids]})
    return from_arrow(table, customers, engine=engine, **kwargs)


@pytest.fixture(scope="module")
def hand(analytics_engine: Engine) -> Frame:
    # as_of defaults to 2024-04-16, the day after the last order.
    return frame_of(analytics_engine, HAND_ORDERS, MEMBERS)


def fields(rows: list[PeriodRetention], *names: str) -> list[tuple[Any, ...]]:
    return [tuple(getattr(r, n) for n in names) for r in rows]


def test_hand_computed_months_with_a_60_day_activity_window(hand: Frame) -> None:
    # Customers at each boundary (an order in the 60 days before it):
    #   Jan 1 {D}; Feb 1 {A, B}; Mar 1 {A, B, C}; Apr 1 {B, C, D}; May 1 {A, D}.
    rows = retention_by_period(
        hand, "month", active_days=60, start=date(2024, 1, 1), end=date(2024, 4, 30)
    )
    assert [r.period_start for r in rows] == [date(2024, m, 1) for m in (1, 2, 3, 4)]
    assert [r.period_end for r in rows] == [date(2024, m, 1) for m in (2, 3, 4, 5)]
    names = ("customers_start", "customers_end", "new_customers", "retained", "lost")
    assert fields(rows, *names, "reactivated") == [
        (1, 2, 2, 0, 1, 0),  # D lapses; A and B are new
        (2, 3, 1, 2, 0, 0),  # C is new
        (3, 3, 0, 2, 1, 1),  # A lapses, D comes back
        (3, 2, 0, 1, 2, 1),  # B and C lapse, A comes back
    ]
    crr = [r.retention_rate for r in rows]
    assert crr == [pytest.approx(x) for x in (0.0, 100.0, 100.0, 200 / 3)]  # (E − N) / S
    assert [r.churn_rate for r in rows] == [
        pytest.approx(x) for x in (100.0, 0.0, 100 / 3, 200 / 3)
    ]
    assert fields(rows, "buyers", "orders", "repeat_buyers") == [
        (2, 3, 1),  # A twice (a repeat purchase), B's first order
        (2, 2, 1),  # B had ordered before, C is new
        (1, 1, 1),  # D had ordered in November
        (1, 1, 1),
    ]
    assert [r.repeat_purchase_rate for r in rows] == [50.0, 50.0, 100.0, 100.0]
    assert [r.purchase_frequency for r in rows] == [1.5, 1.0, 1.0, 1.0]
    # A: Jan 10 → Jan 20; B: Jan 25 12:00 → Feb 5 18:00; D: Nov 15 → Mar 10; A: Jan 20 → Apr 15
    assert [r.mean_interpurchase_days for r in rows] == [
        pytest.approx(x) for x in (10.0, 11.25, 116.0, 86.0)
    ]
    assert fields(rows, "revenue", "net_revenue", "average_order_value") == [
        (180.0, 160.0, 60.0),
        (110.0, 110.0, 55.0),
        (25.0, 25.0, 25.0),
        (80.0, 80.0, 80.0),
    ]
    assert [r.complete for r in rows] == [True, True, True, False]  # as_of is Apr 16


def test_default_range_runs_from_the_first_to_the_last_order(hand: Frame) -> None:
    rows = retention_by_period(hand, "month")
    assert [r.period_start for r in rows] == [
        date(2023, 11, 1),
        date(2023, 12, 1),
        date(2024, 1, 1),
        date(2024, 2, 1),
        date(2024, 3, 1),
        date(2024, 4, 1),
    ]
    december = rows[1]
    assert (december.buyers, december.orders, december.revenue) == (0, 0, 0.0)
    assert december.average_order_value is None and december.purchase_frequency is None
    assert december.mean_interpurchase_days is None and december.repeat_purchase_rate is None
    # With a year of activity nobody lapses within these six months.
    assert fields(rows, "customers_start", "customers_end", "new_customers", "lost") == [
        (0, 1, 1, 0),
        (1, 1, 0, 0),
        (1, 3, 2, 0),
        (3, 4, 1, 0),
        (4, 4, 0, 0),
        (4, 4, 0, 0),
    ]
    assert rows[0].retention_rate is None and rows[0].churn_rate is None  # S = 0
    assert rows[2].retention_rate == pytest.approx(100.0)  # (3 − 2) / 1


def test_quarters_and_years(hand: Frame) -> None:
    quarters = retention_by_period(hand, "quarter")
    assert [q.period_start for q in quarters] == [
        date(2023, 10, 1),
        date(2024, 1, 1),
        date(2024, 4, 1),
    ]
    assert fields(quarters, "customers_start", "customers_end", "new_customers", "orders") == [
        (0, 1, 1, 1),
        (1, 4, 3, 6),
        (4, 4, 0, 1),
    ]
    assert quarters[1].retention_rate == pytest.approx(100.0)  # (4 − 3) / 1
    years = retention_by_period(hand, "year")
    assert [y.period_end for y in years] == [date(2024, 1, 1), date(2025, 1, 1)]
    # At 2025-01-01 the year before holds orders of A, B, C and D (March).
    assert fields(years, "customers_start", "customers_end", "new_customers", "retained") == [
        (0, 1, 1, 0),
        (1, 4, 3, 1),
    ]
    assert years[1].retention_rate == pytest.approx(100.0)
    assert years[1].complete is False


def test_members_and_non_members_split_the_same_periods(hand: Frame) -> None:
    split = retention_by_membership(
        hand, "month", active_days=60, start=date(2024, 1, 1), end=date(2024, 4, 1)
    )
    assert set(split) == {"members", "non_members"}
    names = ("customers_start", "customers_end", "new_customers", "lost", "reactivated")
    # members A and C; non-members B and D
    assert fields(split["members"], *names) == [
        (0, 1, 1, 0, 0),
        (1, 2, 1, 0, 0),
        (2, 1, 0, 1, 0),
        (1, 1, 0, 1, 1),
    ]
    assert fields(split["non_members"], *names) == [
        (1, 1, 1, 1, 0),
        (1, 1, 0, 0, 0),
        (1, 2, 0, 0, 1),
        (2, 1, 0, 1, 0),
    ]
    assert [r.retention_rate for r in split["members"]] == [None, 100.0, 50.0, 100.0]
    assert [r.retention_rate for r in split["non_members"]] == [0.0, 100.0, 200.0, 50.0]
    assert [r.revenue for r in split["members"]] == [150.0, 40.0, 0.0, 80.0]


def test_cohort_matrix(hand: Frame) -> None:
    matrix = cohort_matrix(hand, "month")
    assert matrix.period == "month"
    assert matrix.cohorts == tuple(
        date(y, m, 1)
        for y, m in ((2023, 11), (2023, 12), (2024, 1), (2024, 2), (2024, 3), (2024, 4))
    )
    assert matrix.sizes == (1, 0, 2, 1, 0, 0)
    n = None
    assert matrix.cells == (
        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),  # D: November, back in March
        (n, n, n, n, n, n),  # nobody acquired in December
        (1.0, 0.5, 0.0, 0.5, n, n),  # A and B: B in February, A in April
        (1.0, 0.0, 0.0, n, n, n),
        (n, n, n, n, n, n),
        (n, n, n, n, n, n),
    )
    short = cohort_matrix(hand, "month", max_age=2)
    assert short.cells[2] == (1.0, 0.5, 0.0)
    assert cohort_matrix(hand, "year").cells == ((1.0, 1.0), (1.0, n))


def test_invalid_arguments_are_refused(hand: Frame) -> None:
    with pytest.raises(ValueError, match="unknown period 'week'"):
        retention_by_period(hand, "week")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="active_days"):
        retention_by_period(hand, active_days=0)
    with pytest.raises(ValueError, match="max_age"):
        cohort_matrix(hand, max_age=-1)


def test_a_frame_without_orders_has_no_periods() -> None:
    empty = frame_of("duckdb", [])
    assert retention_by_period(empty) == []
    assert retention_by_membership(empty) == {"members": [], "non_members": []}
    assert cohort_matrix(empty).cohorts == ()


# --- a brute-force reading of the definitions ---------------------------------------------


def _period_start(day: datetime, period: str) -> datetime:
    if period == "month":
        return datetime(day.year, day.month, 1)
    return datetime(day.year, (day.month - 1) // 3 * 3 + 1, 1)


def _next_start(start: datetime, period: str) -> datetime:
    months = 1 if period == "month" else 3
    month = start.month - 1 + months
    return datetime(start.year + month // 12, month % 12 + 1, 1)


def reference(orders: list[Order], period: str, active_days: int) -> list[dict[str, Any]]:
    """Every measure straight from its definition, one period at a time."""
    window = timedelta(days=active_days)
    first: dict[str, datetime] = {}
    # Each order's previous order of the same customer, in (placed_at, order_id) order.
    previous: dict[int, datetime] = {}
    last_seen: dict[str, datetime] = {}
    for i in sorted(range(len(orders)), key=lambda i: (orders[i][1], i)):
        customer, at = orders[i][0], orders[i][1]
        first.setdefault(customer, at)
        if customer in last_seen:
            previous[i] = last_seen[customer]
        last_seen[customer] = at

    def customers_at(t: datetime) -> set[str]:
        return {c for c, at, _, _ in orders if t - window <= at < t}

    out = []
    start = _period_start(min(o[1] for o in orders), period)
    last = max(o[1] for o in orders)
    while start <= last:
        end = _next_start(start, period)
        s, e = customers_at(start), customers_at(end)
        new = {c for c, f in first.items() if start <= f < end}
        inside = [o for o in orders if start <= o[1] < end]
        counts: dict[str, int] = defaultdict(int)
        for o in inside:
            counts[o[0]] += 1
        repeat = {c for c in counts if first[c] < start or counts[c] >= 2}
        gaps = [
            (o[1] - previous[i]).total_seconds() / 86_400
            for i, o in enumerate(orders)
            if start <= o[1] < end and i in previous
        ]
        revenue = sum(o[2] for o in inside)
        out.append(
            {
                "period_start": start.date(),
                "customers_start": len(s),
                "customers_end": len(e),
                "new_customers": len(new),
                "retained": len(s & e),
                "lost": len(s - e),
                "reactivated": len(e - s - new),
                "buyers": len(counts),
                "orders": len(inside),
                "repeat_buyers": len(repeat),
                "revenue": revenue,
                "net_revenue": sum(o[2] - o[3] for o in inside),
                "gaps": gaps,
            }
        )
        start = end
    return out


def random_orders(seed: int, customers: int = 120, orders: int = 700) -> list[Order]:
    rng = np.random.default_rng(seed)
    origin = datetime(2023, 1, 1)
    who = rng.integers(0, customers, orders)
    # Customers buy in two bursts well over a year apart: they lapse and come back.
    first_burst = rng.uniform(0, 200, customers)
    second_burst = first_burst + rng.uniform(420, 520, customers)
    burst = np.where(rng.random(orders) < 0.5, first_burst[who], second_burst[who])
    days = np.clip(burst + rng.normal(0, 25, orders), 0, 729)
    seconds = np.floor(days * 86_400)
    out: list[Order] = []
    for c, s in zip(who, seconds, strict=True):
        amount = float(rng.integers(1, 500))
        out.append((f"c{c:03d}", origin + timedelta(seconds=float(s)), amount, 0.0))
    # Two orders of one customer in the same second.
    out.append((out[0][0], out[0][1], 5.0, 5.0))
    return out


@pytest.mark.parametrize(
    ("period", "active_days"), [("month", 365), ("month", 45), ("quarter", 30)]
)
def test_matches_a_brute_force_reading_of_the_definitions(period: str, active_days: int) -> None:
    orders = random_orders(seed=7)
    got = retention_by_period(frame_of("duckdb", orders), period, active_days=active_days)  # type: ignore[arg-type]
    expected = reference(orders, period, active_days)
    assert [g.period_start for g in got] == [e["period_start"] for e in expected]
    for g, e in zip(got, expected, strict=True):
        gaps = e.pop("gaps")
        for name, value in e.items():
            assert getattr(g, name) == pytest.approx(value), (g.period_start, name)
        assert g.retention_rate == (
            pytest.approx((e["customers_end"] - e["new_customers"]) / e["customers_start"] * 100)
            if e["customers_start"]
            else None
        )
        if gaps:
            assert g.mean_interpurchase_days == pytest.approx(sum(gaps) / len(gaps))
        else:
            assert g.mean_interpurchase_days is None
    # The random shop does exercise lapses and returns.
    assert sum(g.lost for g in got) > 0 and sum(g.reactivated for g in got) > 0


# --- DuckDB and Spark agree on a generated shop --------------------------------------------


@pytest.mark.skipif(not {"duckdb", "spark"} <= set(ANALYTICS_ENGINES), reason="needs both engines")
def test_duckdb_and_spark_agree_on_a_generated_shop(tmp_path: Path) -> None:
    shop = generate(GeneratorParams(customers=2_000, orders=12_000, seed=3))
    paths = write_shop(shop, tmp_path, "parquet")
    # The generator has no loyalty programme: e-mail subscribers play the members.
    members = tmp_path / "members.parquet"
    pq.write_table(
        pa.table(
            {
                "external_id": shop.customers["external_id"],
                "is_member": shop.customers["consent_email"],
            }
        ),
        members,
    )
    results = []
    for engine in ("duckdb", "spark"):
        frame = open_source(
            paths["orders"],
            engine=engine,
            refunds_file=paths["refunds"],
            customers_file=members,
            timezone="Asia/Shanghai",
        )
        results.append(
            {
                "months": retention_by_period(frame, "month"),
                "members": retention_by_membership(frame, "quarter", active_days=90),
                "cohorts": cohort_matrix(frame, "quarter"),
                "concentration": value_concentration(frame, points=20),
            }
        )
    duck, spark = results
    assert len(duck["months"]) == 25  # 2024-11 … 2026-11
    assert sum(r.orders for r in duck["months"]) > 11_000
    assert all(sum(r.buyers for r in duck["members"][k]) > 1000 for k in ("members", "non_members"))
    assert_same(duck, spark)


def assert_same(left: Any, right: Any) -> None:
    """Equal, floats within 1e-9 relative (sums run in a different order)."""
    if dataclasses.is_dataclass(left) and not isinstance(left, type):
        assert_same(dataclasses.asdict(left), dataclasses.asdict(right))
    elif isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            assert_same(left[key], right[key])
    elif isinstance(left, list | tuple):
        assert len(left) == len(right)
        for a, b in zip(left, right, strict=True):
            assert_same(a, b)
    elif isinstance(left, float):
        assert right == pytest.approx(left, rel=1e-9, abs=1e-9)
    else:
        assert left == right
