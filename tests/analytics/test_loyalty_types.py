"""Loyalty types (attitude × behaviour), traits and counts, on DuckDB and Spark.

A hand-built shop with one customer per rule and boundary; the generated-shop comparison
with a pure-Python reference and across engines is in ``test_rfm.py``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from patron.analytics.frame import Engine, Frame, from_arrow
from patron.analytics.loyalty_types import (
    BEHAVIOUR_TYPE_NAMES,
    BEHAVIOUR_TYPES,
    LOYALTY_TYPE_NAMES,
    LOYALTY_TYPES,
    UNKNOWN,
    LoyaltyCriteria,
    LoyaltyTypeCount,
    behaviour_type_counts,
    loyalty_table,
    loyalty_type_counts,
)

AS_OF = datetime(2025, 7, 1)


def days_ago(days: int, hour: int = 12) -> datetime:
    """Noon of the day ``days`` calendar days before AS_OF (so recency_days == days)."""
    return AS_OF - timedelta(days=days) + timedelta(hours=hour)


# customer → orders, oldest first: (days before as_of, discounted, refunded)
ORDERS: dict[str, list[tuple[int, bool, bool]]] = {
    "t1": [(24, True, False), (17, False, False), (10, False, False)],
    "t2": [(30, False, False)],
    "t3": [(26, True, False), (19, True, True), (12, True, False), (5, False, False)],
    "t4": [(40, True, False), (33, False, False)],
    "t5": [(250, False, False), (220, False, False), (200, False, True)],
    "t6": [(200, False, False), (190, False, False), (181, False, False)],
    "t7": [(22, True, False), (15, True, False), (8, False, False), (1, False, True)],
    "t8": [(194, False, False), (187, False, False), (180, False, False)],
    "t9": [(3, False, False), (-1, True, False)],  # the second is after as_of
    "t10": [(60, False, False), (50, False, False)],  # not in the customers table
}
# customer → (nps, complained_at)
CUSTOMERS: dict[str, tuple[int | None, datetime | None]] = {
    "t1": (10, None),
    "t2": (9, None),
    "t3": (7, None),  # a passive: low attitude
    "t4": (3, days_ago(20)),  # complained after the last order
    "t5": (None, days_ago(240)),  # complained, then bought again
    "t6": (9, None),
    "t7": (8, None),
    "t8": (0, None),
    "t9": (None, AS_OF + timedelta(days=4)),  # complaint after as_of: not counted
    "z": (10, days_ago(5)),  # no orders: not in the table
}

COLUMNS = (
    "orders",
    "repeat_purchases",
    "recency_days",
    "price_sensitivity",
    "tolerance",
    "nps",
    "behaviour",
    "attitude",
    "loyalty_type",
    "behaviour_type",
)
EXPECTED: dict[str, tuple[Any, ...]] = {
    "t1": (3, 2, 10, 1 / 3, None, 10, "high", "high", "true", "regular"),
    "t2": (1, 0, 30, 0.0, None, 9, "low", "high", "latent", "one_time"),
    "t3": (4, 3, 5, 0.75, True, 7, "high", "low", "spurious", "deal_seeker"),
    "t4": (2, 1, 33, 0.5, False, 3, "low", "low", "none", "occasional"),
    "t5": (3, 2, 200, 0.0, True, None, "low", None, None, "lapsed"),
    "t6": (3, 2, 181, 0.0, None, 9, "low", "high", "latent", "lapsed"),  # 181 > 180
    "t7": (4, 3, 1, 0.5, False, 8, "high", "low", "spurious", "deal_seeker"),  # 0.5: deals
    "t8": (3, 2, 180, 0.0, None, 0, "high", "low", "spurious", "regular"),  # 180: recent
    "t9": (1, 0, 3, 0.0, None, None, "low", None, None, "one_time"),
    "t10": (2, 1, 50, 0.0, None, None, "low", None, None, "occasional"),
}


def shop(engine: Engine) -> Frame:
    rows = [
        (cid, days_ago(days), discounted, refunded)
        for cid, orders in ORDERS.items()
        for days, discounted, refunded in orders
    ]
    orders = pa.table(
        {
            "order_id": [f"o{i}" for i in range(len(rows))],
            "customer_id": [r[0] for r in rows],
            "placed_at": pa.array([r[1] for r in rows], pa.timestamp("us")),
            "amount": [10.0] * len(rows),
            "refunded_amount": [10.0 if r[3] else 0.0 for r in rows],
            "discounted": [r[2] for r in rows],
        }
    )
    customers = pa.table(
        {
            "customer_id": list(CUSTOMERS),
            "nps": pa.array([v[0] for v in CUSTOMERS.values()], pa.int64()),
            "complained_at": pa.array([v[1] for v in CUSTOMERS.values()], pa.timestamp("us")),
        }
    )
    return from_arrow(orders, customers, engine=engine, as_of=AS_OF)


def rows(frame: Frame, **kwargs: Any) -> dict[str, dict[str, Any]]:
    table = loyalty_table(frame, **kwargs).to_pyarrow().to_pylist()
    return {r.pop("customer_id"): r for r in table}


def test_loyalty_table(analytics_engine: Engine) -> None:
    frame = shop(analytics_engine)
    table = loyalty_table(frame)
    assert table.schema().names == ("customer_id", *COLUMNS)
    got = rows(frame)
    assert got == {cid: dict(zip(COLUMNS, v, strict=True)) for cid, v in EXPECTED.items()}


def test_criteria_move_the_boundaries(analytics_engine: Engine) -> None:
    frame = shop(analytics_engine)
    # passives count as high attitude: t3 (7) and t7 (8) become truly loyal
    passives_high = rows(frame, criteria=LoyaltyCriteria(high_attitude_nps=7))
    assert {c: r["loyalty_type"] for c, r in passives_high.items() if r["nps"] is not None} == {
        "t1": "true",
        "t2": "latent",
        "t3": "true",
        "t4": "none",
        "t6": "latent",
        "t7": "true",
        "t8": "spurious",
    }
    # one repeat purchase within a year is enough
    loose = rows(frame, criteria=LoyaltyCriteria(min_repeat_purchases=1, max_recency_days=365))
    assert {c for c, r in loose.items() if r["behaviour"] == "high"} == {
        "t1",
        "t3",
        "t4",
        "t5",
        "t6",
        "t7",
        "t8",
        "t10",
    }
    assert (loose["t4"]["loyalty_type"], loose["t6"]["loyalty_type"]) == ("spurious", "true")
    assert loose["t10"]["behaviour_type"] == "regular"  # no "occasional" with 1 repeat
    # deal seekers from a quarter of the orders on
    deals = rows(frame, criteria=LoyaltyCriteria(deal_seeker_share=0.25))
    assert deals["t1"]["behaviour_type"] == "deal_seeker"  # 1/3 ≥ 0.25
    assert deals["t8"]["behaviour_type"] == "regular"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_repeat_purchases": 0},
        {"max_recency_days": -1},
        {"high_attitude_nps": 11},
        {"deal_seeker_share": 0.0},
        {"deal_seeker_share": 1.5},
    ],
)
def test_criteria_are_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LoyaltyCriteria(**kwargs)


def test_as_of_in_the_middle(analytics_engine: Engine) -> None:
    """At 20 June: t7's refund and last two orders, t1's last order are in the future."""
    got = rows(shop(analytics_engine), as_of=date(2025, 6, 20))
    assert "t9" not in got and "t2" in got
    t7 = got["t7"]
    assert (t7["orders"], t7["recency_days"], t7["price_sensitivity"], t7["tolerance"]) == (
        2,
        4,
        1.0,
        None,
    )
    assert t7["behaviour_type"] == "occasional"
    t1 = got["t1"]
    assert (t1["orders"], t1["recency_days"], t1["price_sensitivity"]) == (2, 6, 0.5)
    assert got["t4"]["tolerance"] is False  # complained on 11 June, before the cut
    assert got["t3"]["tolerance"] is True  # refund on 12 June, bought again on 19 June


def test_loyalty_type_counts(analytics_engine: Engine) -> None:
    counts = loyalty_type_counts(shop(analytics_engine))
    assert [c.type for c in counts] == [*LOYALTY_TYPES, UNKNOWN]
    by = {c.type: c for c in counts}
    assert by["true"] == LoyaltyTypeCount("true", 1, 0.1, 1 / 7, 2.0, pytest.approx(1 / 3), None)
    assert by["latent"] == LoyaltyTypeCount("latent", 2, 0.2, 2 / 7, 1.0, 0.0, None)
    assert by["spurious"] == LoyaltyTypeCount(
        "spurious", 3, 0.3, 3 / 7, 8 / 3, pytest.approx(1.25 / 3), 0.5
    )
    assert by["none"] == LoyaltyTypeCount("none", 1, 0.1, 1 / 7, 1.0, 0.5, 0.0)
    assert by[UNKNOWN] == LoyaltyTypeCount(UNKNOWN, 3, 0.3, None, 1.0, 0.0, 1.0)


def test_behaviour_type_counts(analytics_engine: Engine) -> None:
    counts = behaviour_type_counts(shop(analytics_engine))
    assert [(c.type, c.customers) for c in counts] == [(t, 2) for t in BEHAVIOUR_TYPES]
    by = {c.type: c for c in counts}
    assert by["deal_seeker"].avg_price_sensitivity == pytest.approx(0.625)
    assert by["deal_seeker"].tolerance_rate == 0.5  # t3 bought again, t7 did not
    assert by["lapsed"].tolerance_rate == 1.0
    assert by["regular"].tolerance_rate is None


def test_counts_of_an_empty_period() -> None:
    frame = shop("duckdb")
    counts = loyalty_type_counts(frame, as_of=date(2020, 1, 1))
    assert [(c.type, c.customers, c.share, c.avg_price_sensitivity) for c in counts] == [
        (t, 0, 0.0, None) for t in (*LOYALTY_TYPES, UNKNOWN)
    ]
    assert [c.customers for c in behaviour_type_counts(frame, as_of=date(2020, 1, 1))] == [0] * 5


def test_names() -> None:
    assert {t: LOYALTY_TYPE_NAMES[t].zh for t in LOYALTY_TYPES} == {
        "true": "真正忠诚",
        "latent": "潜在忠诚",
        "spurious": "虚假忠诚",
        "none": "不忠诚",
    }
    assert list(BEHAVIOUR_TYPE_NAMES) == list(BEHAVIOUR_TYPES)
    assert len({n.zh for n in BEHAVIOUR_TYPE_NAMES.values()}) == len(BEHAVIOUR_TYPES)
