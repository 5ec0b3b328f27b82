"""RFM scores, segments, sizes and movement, on DuckDB and Spark.

Hand-built frames with exact expected scores; the segment grid is checked for being total
and disjoint; a generated shop (a few thousand customers) is scored on every engine and
compared with a pure-Python reference of the documented rules — RFM and loyalty types —
and DuckDB and Spark are compared with each other.
"""

from __future__ import annotations

import functools
from bisect import bisect_left, bisect_right
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from patron.analytics.frame import Engine, Frame, from_arrow
from patron.analytics.loyalty_types import LoyaltyCriteria, loyalty_table, loyalty_type_counts
from patron.analytics.rfm import (
    NO_SEGMENT,
    SEGMENT_GRID,
    SEGMENT_NAMES,
    SEGMENT_RULES,
    SEGMENTS,
    SegmentMove,
    SegmentRule,
    _grid,
    _segment_expr,
    rfm_table,
    segment_movement,
    segment_sizes,
)
from patron.demo.generator import GeneratorParams, generate
from tests.analytics.conftest import ANALYTICS_ENGINES

Order = tuple[str, datetime, float, float]  # customer_id, placed_at, amount, refunded_amount
AS_OF = datetime(2025, 3, 1)
RFM_COLUMNS = ("recency_days", "frequency", "monetary", "r", "f", "m", "fm", "rfm", "segment")


def frame_of(engine: Engine, orders: list[Order], *, as_of: datetime = AS_OF) -> Frame:
    table = pa.table(
        {
            "order_id": [f"o{i}" for i in range(len(orders))],
            "customer_id": [o[0] for o in orders],
            "placed_at": pa.array([o[1] for o in orders], pa.timestamp("us")),
            "amount": [o[2] for o in orders],
            "refunded_amount": [o[3] for o in orders],
        }
    )
    return from_arrow(table, engine=engine, as_of=as_of)


def rows_by_customer(table: ibis.Table) -> dict[str, dict[str, Any]]:
    return {r.pop("customer_id"): r for r in table.to_pyarrow().to_pylist()}


def reference_rfm(orders: list[Order], as_of: datetime) -> dict[str, dict[str, Any]]:
    """The module docstring's rules in plain Python: score = ⌊5 · strictly worse / n⌋ + 1."""
    per: dict[str, list[Order]] = {}
    for o in orders:
        if o[1] < as_of:
            per.setdefault(o[0], []).append(o)
    measures = {
        cid: (
            (as_of.date() - max(o[1] for o in os).date()).days,
            len(os),
            sum(round((o[2] - o[3]) * 100) for o in os),
        )
        for cid, os in per.items()
    }
    n = len(measures)
    recency = sorted(m[0] for m in measures.values())
    frequency = sorted(m[1] for m in measures.values())
    cents = sorted(m[2] for m in measures.values())
    result = {}
    for cid, (rec, freq, money) in measures.items():
        r = 5 * (n - bisect_right(recency, rec)) // n + 1  # more days = worse
        f = 5 * bisect_left(frequency, freq) // n + 1
        m = 5 * bisect_left(cents, money) // n + 1
        fm = (f + m) // 2
        result[cid] = {
            "recency_days": rec,
            "frequency": freq,
            "monetary": money / 100,
            "r": r,
            "f": f,
            "m": m,
            "fm": fm,
            "rfm": f"{r}{f}{m}",
            "segment": SEGMENT_GRID[r, fm],
        }
    return result


# --- the segment grid -----------------------------------------------------------------------


def test_segment_rules_are_total_and_disjoint() -> None:
    for r in range(1, 6):
        for fm in range(1, 6):
            owners = [
                rule.segment
                for rule in SEGMENT_RULES
                if rule.r[0] <= r <= rule.r[1] and rule.fm[0] <= fm <= rule.fm[1]
            ]
            assert len(owners) == 1, (r, fm, owners)
            assert SEGMENT_GRID[r, fm] == owners[0]
    assert len(SEGMENT_GRID) == 25
    assert set(SEGMENT_GRID.values()) == set(SEGMENTS)  # every segment owns a cell
    assert len(SEGMENTS) == 11 and len(set(SEGMENTS)) == 11


def test_grid_check_rejects_overlaps_and_gaps() -> None:
    with pytest.raises(ValueError, match="R1 FM1"):
        _grid((*SEGMENT_RULES, SegmentRule("lost", r=(1, 1), fm=(1, 1))))
    with pytest.raises(ValueError, match=r"without a segment: \[\(1, 1\)\]"):
        _grid(tuple(rule for rule in SEGMENT_RULES if rule.segment != "lost"))


def test_the_well_known_corners_of_the_grid() -> None:
    assert SEGMENT_GRID[5, 5] == "champions"
    assert SEGMENT_GRID[5, 1] == "new"
    assert SEGMENT_GRID[1, 5] == "cant_lose"
    assert SEGMENT_GRID[1, 1] == "lost"
    assert SEGMENT_GRID[3, 3] == "need_attention"


def test_segment_names_are_bilingual_and_distinct() -> None:
    assert list(SEGMENT_NAMES) == list(SEGMENTS)
    assert len({n.en for n in SEGMENT_NAMES.values()}) == 11
    assert len({n.zh for n in SEGMENT_NAMES.values()}) == 11
    assert SEGMENT_NAMES["champions"].zh == "重要价值客户"
    assert all(s.isidentifier() and s == s.lower() for s in SEGMENTS)


def test_segment_expression_matches_the_grid(analytics_engine: Engine) -> None:
    """The Ibis CASE built from the rules agrees with SEGMENT_GRID on all 25 cells."""
    frame = frame_of(analytics_engine, [("x", AS_OF - timedelta(days=1), 1.0, 0.0)])
    cells = ibis.memtable(
        {"r": [r for r in range(1, 6) for _ in range(5)], "fm": list(range(1, 6)) * 5}
    )
    expr = cells.mutate(segment=_segment_expr(cells.r, cells.fm))
    got = {(row["r"], row["fm"]): row["segment"] for row in frame.con.to_pyarrow(expr).to_pylist()}
    assert got == SEGMENT_GRID


# --- the ten-customer shop ------------------------------------------------------------------
# n = 10, so score = ⌊5 · worse / 10⌋ + 1: 0–1 customers worse → 1, 2–3 → 2, 4–5 → 3,
# 6–7 → 4, 8–9 → 5. Ties: c02/c05 recency 10 (both beat 6: r 4), c03/c04 three orders
# (beat 6: f 4), c02/c03 net 300 (beat 7: m 4), four one-time buyers (beat nobody: f 1).
#
#  customer recency frequency monetary  r  f  m  fm  segment
SHOP: dict[str, tuple[int, int, float, int, int, int, int, str]] = {
    "c01": (1, 5, 500.00, 5, 5, 5, 5, "champions"),
    "c02": (10, 4, 300.00, 4, 5, 4, 4, "loyal"),
    "c03": (40, 3, 300.00, 3, 4, 4, 4, "loyal"),
    "c04": (100, 3, 250.00, 2, 4, 4, 4, "at_risk"),
    "c05": (10, 2, 90.00, 4, 3, 3, 3, "potential_loyalists"),
    "c06": (2, 1, 40.00, 5, 1, 2, 1, "new"),
    "c07": (70, 1, 60.00, 3, 1, 2, 1, "about_to_sleep"),
    "c08": (200, 1, 20.00, 1, 1, 1, 1, "lost"),
    "c09": (300, 1, 10.00, 1, 1, 1, 1, "lost"),
    "c10": (150, 2, 120.00, 2, 3, 3, 3, "at_risk"),
}
AMOUNTS: dict[str, list[tuple[float, float]]] = {  # (amount, refunded) where not even
    "c04": [(100.0, 0.0), (100.0, 50.0), (100.0, 0.0)],  # 300 paid, 50 refunded
    "c05": [(30.3, 0.0), (59.7, 0.0)],  # float amounts, summed as cents
    "c10": [(60.1, 0.0), (59.9, 0.0)],
}


def shop_orders() -> list[Order]:
    orders: list[Order] = []
    for cid, (recency, frequency, monetary, *_) in SHOP.items():
        last = AS_OF - timedelta(days=recency) + timedelta(hours=23, minutes=30)
        amounts = AMOUNTS.get(cid, [(monetary / frequency, 0.0)] * frequency)
        for k, (amount, refunded) in enumerate(amounts):
            orders.append((cid, last - timedelta(days=7 * (frequency - 1 - k)), amount, refunded))
    orders.append(("c09", AS_OF, 999.0, 0.0))  # at as_of: excluded, as_of is exclusive
    orders.append(("late", AS_OF + timedelta(days=3), 5.0, 0.0))  # no order before as_of
    return orders


def test_rfm_table_scores_and_segments(analytics_engine: Engine) -> None:
    table = rfm_table(frame_of(analytics_engine, shop_orders()))
    assert table.schema().names == ("customer_id", *RFM_COLUMNS)
    got = rows_by_customer(table)
    expected = {
        cid: dict(zip(RFM_COLUMNS, (*v[:7], f"{v[3]}{v[4]}{v[5]}", v[7]), strict=True))
        for cid, v in SHOP.items()
    }
    assert got == expected
    assert got == reference_rfm(shop_orders(), AS_OF)


def test_ties_share_a_score_and_all_equal_scores_one(analytics_engine: Engine) -> None:
    """Same values, same scores, whatever the customer ids; identical customers all get 1."""
    day = AS_OF - timedelta(days=5)
    orders = [(cid, day, 10.0, 0.0) for cid in ("z", "a", "m", "b", "y", "c")]
    got = rows_by_customer(rfm_table(frame_of(analytics_engine, orders)))
    assert {row["rfm"] for row in got.values()} == {"111"}
    assert {row["segment"] for row in got.values()} == {"lost"}


def test_as_of_in_the_middle_of_the_data(analytics_engine: Engine) -> None:
    """Orders on and after as_of are ignored; recency counts to the earlier date."""
    middle = date(2025, 2, 1)
    frame = frame_of(analytics_engine, shop_orders())
    got = rows_by_customer(rfm_table(frame, as_of=middle))
    expected = reference_rfm(shop_orders(), datetime(2025, 2, 1))
    assert got == expected
    assert set(got) == {"c01", "c02", "c03", "c04", "c07", "c08", "c09", "c10"}
    # c02's first order (29 Jan, 23:30) is the only one before the cut
    assert (got["c02"]["frequency"], got["c02"]["monetary"], got["c02"]["recency_days"]) == (
        1,
        75.0,
        3,
    )
    # the same cut as a datetime
    assert rows_by_customer(rfm_table(frame, as_of=datetime(2025, 2, 1))) == got


def test_as_of_must_be_naive_local_time() -> None:
    frame = frame_of("duckdb", shop_orders())
    with pytest.raises(ValueError, match="naive"):
        rfm_table(frame, as_of=datetime(2025, 2, 1, tzinfo=UTC))


def test_segment_sizes(analytics_engine: Engine) -> None:
    sizes = segment_sizes(frame_of(analytics_engine, shop_orders()))
    assert [s.segment for s in sizes] == list(SEGMENTS)
    got = {s.segment: (s.customers, s.revenue) for s in sizes}
    assert got == {
        "champions": (1, 500.0),
        "loyal": (2, 600.0),
        "potential_loyalists": (1, 90.0),
        "new": (1, 40.0),
        "promising": (0, 0.0),
        "need_attention": (0, 0.0),
        "about_to_sleep": (1, 60.0),
        "at_risk": (2, 370.0),
        "cant_lose": (0, 0.0),
        "hibernating": (0, 0.0),
        "lost": (2, 30.0),
    }
    by = {s.segment: s for s in sizes}
    assert by["loyal"].share == pytest.approx(0.2)
    assert by["loyal"].revenue_share == pytest.approx(600 / 1690)
    assert sum(s.share for s in sizes) == pytest.approx(1.0)
    assert sum(s.revenue_share for s in sizes) == pytest.approx(1.0)


def test_segment_sizes_of_an_empty_period() -> None:
    sizes = segment_sizes(frame_of("duckdb", shop_orders()), as_of=date(2024, 1, 1))
    assert [(s.segment, s.customers, s.share, s.revenue_share) for s in sizes] == [
        (s, 0, 0.0, 0.0) for s in SEGMENTS
    ]


# --- movement -------------------------------------------------------------------------------
# At 2025-02-01 (n = 2: worse 0 → 1, worse 1 → 3):
#   A  recency 12, 2 orders, 200  → r3 f3 m3, fm 3 → need_attention
#   B  recency 27, 1 order,   50  → r1 f1 m1, fm 1 → lost
# At 2025-03-01 (n = 3: worse 0 → 1, 1 → 2, 2 → 4):
#   A  recency 40, 2 orders, 200  → r1 f2 m2, fm 2 → hibernating
#   B  recency  4, 2 orders, 350  → r2 f2 m4, fm 3 → at_risk
#   C  recency  2, 1 order,   10  → r4 f1 m1, fm 1 → promising (new since the start)
MOVES: list[Order] = [
    ("A", datetime(2025, 1, 10, 9), 100.0, 0.0),
    ("A", datetime(2025, 1, 20, 9), 100.0, 0.0),
    ("B", datetime(2025, 1, 5, 9), 50.0, 0.0),
    ("B", datetime(2025, 2, 25, 9), 300.0, 0.0),
    ("C", datetime(2025, 2, 27, 9), 10.0, 0.0),
]


def test_segment_movement(analytics_engine: Engine) -> None:
    frame = frame_of(analytics_engine, MOVES)
    moves = segment_movement(frame, date(2025, 2, 1), date(2025, 3, 1))
    assert moves == [
        SegmentMove(NO_SEGMENT, "promising", 1),
        SegmentMove("need_attention", "hibernating", 1),
        SegmentMove("lost", "at_risk", 1),
    ]


def test_segment_movement_needs_increasing_dates() -> None:
    frame = frame_of("duckdb", MOVES)
    with pytest.raises(ValueError, match="before"):
        segment_movement(frame, date(2025, 3, 1), date(2025, 3, 1))


# --- a generated shop: every engine agrees with the reference and with each other ----------

CRITERIA = LoyaltyCriteria()


@functools.cache
def generated_shop() -> tuple[pa.Table, pa.Table]:
    """~3,000 customers, ~10,000 orders; store-local times; some NPS answers and complaints."""
    shop = generate(GeneratorParams(customers=3000, orders=10000, seed=11))
    lines = shop.orders.filter(pc.not_equal(shop.orders["status"], "cancelled"))
    net = pc.subtract(
        pc.multiply(lines["unit_price"].cast(pa.float64()), lines["quantity"].cast(pa.float64())),
        lines["line_discount"].cast(pa.float64()),
    )
    discounted = pc.or_(
        pc.is_valid(lines["discount_code"]),
        pc.greater(lines["line_discount"].cast(pa.float64()), 0),
    )
    lines = pa.table(
        {
            "order_id": lines["external_id"],
            "customer_id": lines["customer_external_id"],
            "placed_at": pc.local_timestamp(
                lines["placed_at"].cast(pa.timestamp("ms", tz="Asia/Shanghai"))
            ),
            "net": net,
            "shipping": lines["shipping_total"].cast(pa.float64()),
            "discounted": discounted,
        }
    )
    orders = lines.group_by(["order_id", "customer_id", "placed_at"]).aggregate(
        [("net", "sum"), ("shipping", "max"), ("discounted", "any")]
    )
    refunds = (
        shop.refunds.select(["order_external_id", "amount"])
        .rename_columns(["order_id", "refund"])
        .group_by("order_id")
        .aggregate([("refund", "sum")])
    )
    orders = orders.join(refunds, "order_id", join_type="left outer")
    amount = pc.round(pc.add(orders["net_sum"], orders["shipping_max"]), 2)
    refunded = pc.fill_null(orders["refund_sum"].cast(pa.float64()), 0.0)
    orders = pa.table(
        {
            "order_id": orders["order_id"],
            "customer_id": orders["customer_id"],
            "placed_at": orders["placed_at"].cast(pa.timestamp("us")),
            "amount": amount,
            "refunded_amount": pc.min_element_wise(refunded, amount),
            "discounted": orders["discounted_any"],
        }
    ).sort_by("order_id")
    rng = np.random.default_rng(11)
    ids = shop.customers["external_id"].to_pylist()
    start = datetime(2024, 11, 25)
    nps = [int(rng.integers(0, 11)) if rng.random() < 0.7 else None for _ in ids]
    complained = [
        start + timedelta(minutes=int(rng.integers(0, 730 * 24 * 60)))
        if rng.random() < 0.05
        else None
        for _ in ids
    ]
    customers = pa.table(
        {
            "customer_id": ids,
            "nps": pa.array(nps, pa.int64()),
            "complained_at": pa.array(complained, pa.timestamp("us")),
        }
    )
    return orders, customers


def reference_loyalty(
    orders: pa.Table, customers: pa.Table, as_of: datetime
) -> dict[str, dict[str, Any]]:
    """loyalty_types' documented rules in plain Python (default criteria)."""
    per: dict[str, list[dict[str, Any]]] = {}
    for o in orders.to_pylist():
        if o["placed_at"] < as_of:
            per.setdefault(o["customer_id"], []).append(o)
    info = {c["customer_id"]: c for c in customers.to_pylist()}
    result = {}
    for cid, os in per.items():
        last = max(o["placed_at"] for o in os)
        repeat = len(os) - 1
        recency = (as_of.date() - last.date()).days
        sensitivity = sum(o["discounted"] for o in os) / len(os)
        refunded = [o["placed_at"] for o in os if o["refunded_amount"] > 0]
        complaint = info.get(cid, {}).get("complained_at")
        events = [*refunded, *([complaint] if complaint and complaint < as_of else [])]
        tolerance = None if not events else last > min(events)
        nps = info.get(cid, {}).get("nps")
        high_b = repeat >= CRITERIA.min_repeat_purchases and recency <= CRITERIA.max_recency_days
        attitude = None if nps is None else ("high" if nps >= CRITERIA.high_attitude_nps else "low")
        kind = None
        if attitude is not None:
            kind = {
                ("high", True): "true",
                ("high", False): "latent",
                ("low", True): "spurious",
                ("low", False): "none",
            }[attitude, high_b]
        if repeat == 0:
            behaviour_type = "one_time"
        elif repeat < CRITERIA.min_repeat_purchases:
            behaviour_type = "occasional"
        elif not high_b:
            behaviour_type = "lapsed"
        else:
            deals = sensitivity >= CRITERIA.deal_seeker_share
            behaviour_type = "deal_seeker" if deals else "regular"
        result[cid] = {
            "orders": len(os),
            "repeat_purchases": repeat,
            "recency_days": recency,
            "price_sensitivity": sensitivity,
            "tolerance": tolerance,
            "nps": nps,
            "behaviour": "high" if high_b else "low",
            "attitude": attitude,
            "loyalty_type": kind,
            "behaviour_type": behaviour_type,
        }
    return result


@functools.cache
def shop_results(engine: Engine) -> dict[str, Any]:
    """Everything the engine computes on the generated shop, as plain Python (cached)."""
    orders, customers = generated_shop()
    frame = from_arrow(orders, customers, engine=engine, timezone="Asia/Shanghai")
    middle = frame.as_of - timedelta(days=365)
    return {
        "as_of": frame.as_of,
        "rfm": rows_by_customer(rfm_table(frame)),
        "rfm_middle": rows_by_customer(rfm_table(frame, as_of=middle)),
        "sizes": segment_sizes(frame),
        "movement": segment_movement(frame, middle, frame.as_of),
        "loyalty": rows_by_customer(loyalty_table(frame)),
        "types": loyalty_type_counts(frame),
    }


def test_generated_shop_matches_the_reference(analytics_engine: Engine) -> None:
    orders, customers = generated_shop()
    got = shop_results(analytics_engine)
    as_of: datetime = got["as_of"]
    plain = [
        (o["customer_id"], o["placed_at"], o["amount"], o["refunded_amount"])
        for o in orders.to_pylist()
    ]
    expected = reference_rfm(plain, as_of)
    assert len(expected) > 2000
    assert got["rfm"] == expected
    assert got["rfm_middle"] == reference_rfm(plain, as_of - timedelta(days=365))
    # a realistic shop fills the grid and has heavy frequency ties
    assert len({row["segment"] for row in expected.values()}) >= 9
    assert sum(row["frequency"] == 1 for row in expected.values()) > len(expected) / 5
    assert {s.segment: s.customers for s in got["sizes"]} == {
        s: sum(row["segment"] == s for row in expected.values()) for s in SEGMENTS
    }
    ref_loyalty = reference_loyalty(orders, customers, as_of)
    assert got["loyalty"].keys() == ref_loyalty.keys()
    assert got["loyalty"] == ref_loyalty
    kinds = [row["loyalty_type"] for row in ref_loyalty.values()]
    assert {c.type: c.customers for c in got["types"]} == {
        "true": kinds.count("true"),
        "latent": kinds.count("latent"),
        "spurious": kinds.count("spurious"),
        "none": kinds.count("none"),
        "unknown": kinds.count(None),
    }
    assert min(c.customers for c in got["types"]) > 0  # every type occurs


@pytest.mark.skipif(not {"duckdb", "spark"} <= set(ANALYTICS_ENGINES), reason="needs both engines")
def test_duckdb_and_spark_agree_on_a_generated_shop() -> None:
    duck, spark = shop_results("duckdb"), shop_results("spark")
    assert duck["rfm"] == spark["rfm"]
    assert duck["rfm_middle"] == spark["rfm_middle"]
    assert duck["sizes"] == spark["sizes"]
    assert duck["movement"] == spark["movement"]
    assert duck["loyalty"] == spark["loyalty"]
    for d, s in zip(duck["types"], spark["types"], strict=True):
        assert (d.type, d.customers, d.share, d.share_of_surveyed) == (
            s.type,
            s.customers,
            s.share,
            s.share_of_surveyed,
        )
        assert d.avg_price_sensitivity == pytest.approx(s.avg_price_sensitivity)
        assert d.avg_repeat_purchases == s.avg_repeat_purchases
        assert d.tolerance_rate == s.tolerance_rate
