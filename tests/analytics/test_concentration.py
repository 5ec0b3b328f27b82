"""Value concentration (80/20, top 10% vs the next 10%, Pareto curve) on DuckDB and Spark.

Hand-built shops with exact shares; a random shop against a sort in Python.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from patron.analytics.concentration import ParetoPoint, value_concentration
from patron.analytics.frame import Engine, Frame, from_arrow

# customer, amount, refunded_amount, cost
Order = tuple[str, float, float, float | None]


def frame_of(engine: Engine, orders: list[Order]) -> Frame:
    start = datetime(2024, 1, 1)
    table = pa.table(
        {
            "order_id": [f"o{i}" for i in range(len(orders))],
            "customer_id": [o[0] for o in orders],
            "placed_at": pa.array(
                [start + timedelta(hours=i) for i in range(len(orders))], pa.timestamp("us")
            ),
            "amount": [o[1] for o in orders],
            "refunded_amount": [o[2] for o in orders],
            "cost": pa.array([o[3] for o in orders], pa.float64()),
        }
    )
    return from_arrow(table, engine=engine)


# Ten customers worth 1,000 net: c01 400, c02 80 (100 less a 20 refund), c03…c10 65 each
# (equal values: ranked by customer id). Margins: 100, 80 and 50 each, 580 in all.
TEN: list[Order] = [
    ("c01", 300.0, 0.0, 200.0),
    ("c01", 100.0, 0.0, 100.0),
    ("c02", 100.0, 20.0, 0.0),
    *[(f"c{i:02d}", 65.0, 0.0, 15.0) for i in range(3, 11)],
]


@pytest.fixture(scope="module")
def ten(analytics_engine: Engine) -> Frame:
    return frame_of(analytics_engine, TEN)


def test_top_20_percent_and_top_10_against_the_next_10(ten: Frame) -> None:
    result = value_concentration(ten, points=10)
    assert result.net is True
    assert result.customers == 10
    assert result.revenue == pytest.approx(1000.0)
    assert result.top20_share == pytest.approx(0.48)  # (400 + 80) / 1000
    assert result.top10_revenue == pytest.approx(400.0)
    assert result.next10_revenue == pytest.approx(80.0)
    assert result.top10_to_next10 == pytest.approx(5.0)  # seed 002's "5–10×"
    assert result.margin == pytest.approx(580.0)
    assert result.margin_top20_share == pytest.approx(180 / 580)
    assert result.margin_top10 == pytest.approx(100.0)
    assert result.margin_next10 == pytest.approx(80.0)
    assert result.margin_top10_to_next10 == pytest.approx(1.25)
    expected_curve = [0.0, 0.4, 0.48] + [(480 + 65 * k) / 1000 for k in range(1, 9)]
    assert [p.customer_share for p in result.pareto] == pytest.approx([i / 10 for i in range(11)])
    assert [p.revenue_share for p in result.pareto] == pytest.approx(expected_curve)


def test_gross_values_count_refunded_money(ten: Frame) -> None:
    result = value_concentration(ten, net=False, points=2)
    assert result.revenue == pytest.approx(1020.0)
    assert result.top20_share == pytest.approx(500 / 1020)
    assert result.next10_revenue == pytest.approx(100.0)
    assert result.margin == pytest.approx(600.0)  # margin follows the gross values too
    assert result.pareto == (
        ParetoPoint(0.0, 0.0),
        ParetoPoint(0.5, pytest.approx((500 + 3 * 65) / 1020)),  # type: ignore[arg-type]
        ParetoPoint(1.0, 1.0),
    )


def test_shares_interpolate_between_customers(analytics_engine: Engine) -> None:
    # Five customers: 10% of them is half of the best customer.
    values = [50.0, 30.0, 10.0, 5.0, 5.0]
    frame = frame_of(analytics_engine, [(f"c{i}", v, 0.0, None) for i, v in enumerate(values)])
    result = value_concentration(frame, points=4)
    assert result.top20_share == pytest.approx(0.5)
    assert result.top10_revenue == pytest.approx(25.0)
    assert result.next10_revenue == pytest.approx(25.0)
    assert result.top10_to_next10 == pytest.approx(1.0)
    # L(1/4): 1.25 customers = 50 + 0.25 × 30; L(3/4): 3.75 customers = 90 + 0.75 × 5
    assert [p.revenue_share for p in result.pareto] == pytest.approx([0, 0.575, 0.85, 0.9375, 1])
    # One order without a cost: no margin.
    assert result.margin is None and result.margin_top20_share is None


def test_random_shop_matches_a_sort_in_python() -> None:
    rng = np.random.default_rng(11)
    n_orders, n_customers = 3000, 437
    who = rng.integers(0, n_customers, n_orders)
    amounts = np.round(rng.lognormal(4, 1, n_orders), 2)
    orders = [
        (f"c{w:04d}", float(a), 0.0, float(a) * 0.6) for w, a in zip(who, amounts, strict=True)
    ]
    result = value_concentration(frame_of("duckdb", orders), points=100)
    per_customer: dict[str, float] = {}
    for customer, amount, _, _ in orders:
        per_customer[customer] = per_customer.get(customer, 0.0) + amount
    ranked = sorted(per_customer.values(), reverse=True)
    n, total = len(ranked), sum(ranked)
    cumulative = np.concatenate([[0.0], np.cumsum(ranked)])

    def lorenz(x: float) -> float:
        k = int(np.floor(x * n + 1e-9))
        return 1.0 if k >= n else float(cumulative[k] + (x * n - k) * ranked[k]) / total

    assert result.customers == n
    assert result.revenue == pytest.approx(total)
    assert result.top20_share == pytest.approx(lorenz(0.2))
    assert result.top10_revenue == pytest.approx(lorenz(0.1) * total)
    assert [p.revenue_share for p in result.pareto] == pytest.approx(
        [lorenz(i / 100) for i in range(101)]
    )
    # Margin is 40% of every order: the same curve.
    assert result.margin_top20_share == pytest.approx(lorenz(0.2))


def test_no_orders_and_bad_points() -> None:
    empty = frame_of("duckdb", [])
    result = value_concentration(empty)
    assert (result.customers, result.revenue, result.top20_share, result.pareto) == (
        0,
        0.0,
        None,
        (),
    )
    with pytest.raises(ValueError, match="points"):
        value_concentration(empty, points=0)
