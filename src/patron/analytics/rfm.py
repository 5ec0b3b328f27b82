"""RFM scores and the named RFM segments a merchant acts on (DOMAIN.md section 3).

Every customer with at least one order before ``as_of`` gets three measures and three
quintile scores (5 = best):

==============  ===================================================================
recency_days    store-local calendar days from the day of the last order to the day
                of ``as_of`` (``as_of`` at midnight: bought on the last day → 1)
frequency       orders placed before ``as_of`` (refunded ones included: they were
                bought; cancelled ones are never in the frame)
monetary        net spend, Σ (amount − refunded_amount), summed in cents
r, f, m         quintile scores 1–5: most recent, most frequent, highest net spend = 5
fm              ⌊(f + m) / 2⌋, the "frequency & monetary" axis of the segment grid
rfm             the cell as a string, e.g. ``"545"``
segment         one of the eleven segment keys below
==============  ===================================================================

Scoring rule — **"how many fifths of the customers you beat"**::

    score = ⌊5 · worse / n⌋ + 1

with ``n`` the customers scored and ``worse`` the customers with a *strictly* worse value
(more days since the last order; fewer orders; less net spend) — SQL ``RANK()`` minus one.
So a score of k means "better than at least (k − 1) fifths of the customers".

Ties share a score, on purpose. Two customers with the same number of orders must not be
told apart by their customer id: a shop where 60 % of customers bought once gives *all*
one-time buyers f = 1 (the next value, two orders, beats 60 % → f = 4), instead of
spreading identical customers over f = 1, 2, 3 at random as ``NTILE`` does. The least
frequent/recent/valuable customers always score 1, and scores only depend on values, so
no tie-breaking column is needed and DuckDB and Spark give identical scores (the rank
and the integer division are exact; money is summed as integer cents so float summation
order cannot split a tie). The price: scores are uneven when values tie heavily (some
scores stay empty), and if every customer has the same value they all score 1.

Segments — the widely used R × FM grid (rows recency score, columns FM score); every one
of the 25 cells belongs to exactly one segment:

======  ===================  ===================  ===================  =========  =========
R \\ FM  1                    2                    3                    4          5
======  ===================  ===================  ===================  =========  =========
5       new                  potential_loyalists  potential_loyalists  champions  champions
4       promising            potential_loyalists  potential_loyalists  loyal      loyal
3       about_to_sleep       about_to_sleep       need_attention       loyal      loyal
2       hibernating          hibernating          at_risk              at_risk    cant_lose
1       lost                 hibernating          at_risk              at_risk    cant_lose
======  ===================  ===================  ===================  =========  =========

===================  =====  ===========  ===========================================
segment              R      FM           who (English / 中文)
===================  =====  ===========  ===========================================
champions            5      4–5          bought recently, often, much / 重要价值客户
loyal                3–4    4–5          buy often and much, not the latest / 忠诚客户
potential_loyalists  4–5    2–3          recent, average frequency/spend / 潜力客户
new                  5      1            just made a first, small purchase / 新客户
promising            4      1            recent one-off, small / 待培育客户
need_attention       3      3            average on all counts, slipping / 需关注客户
about_to_sleep       3      1–2          below average, going quiet / 即将沉睡客户
at_risk              1–2    3–4          used to buy well, long ago / 流失风险客户
cant_lose            1–2    5            best customers gone quiet / 重要挽留客户
hibernating          2 / 1  1–2 / 2      low value, long ago / 沉睡客户
lost                 1      1            lowest on every count / 已流失客户
===================  =====  ===========  ===========================================

FM rounds the mean of F and M *down*: a customer must earn a better column on both counts
(a one-time buyer, f = 1, reaches FM 2 only with m ≥ 3).

Scores are relative to the customers at ``as_of``: :func:`segment_movement` compares two
dates, so a customer can move because others changed around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import ibis

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from patron.analytics.frame import Frame

__all__ = [
    "NO_SEGMENT",
    "SEGMENTS",
    "SEGMENT_GRID",
    "SEGMENT_NAMES",
    "SEGMENT_RULES",
    "DisplayName",
    "SegmentMove",
    "SegmentRule",
    "SegmentSize",
    "customer_measures",
    "resolve_as_of",
    "rfm_table",
    "segment_movement",
    "segment_sizes",
]


@dataclass(frozen=True)
class DisplayName:
    """How a merchant reads a key: English and the Chinese merchant term."""

    en: str
    zh: str


@dataclass(frozen=True)
class SegmentRule:
    """A rectangle of the R × FM grid (inclusive score ranges) that belongs to ``segment``."""

    segment: str
    r: tuple[int, int]
    fm: tuple[int, int]


SEGMENTS: tuple[str, ...] = (
    "champions",
    "loyal",
    "potential_loyalists",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cant_lose",
    "hibernating",
    "lost",
)
NO_SEGMENT = "none"  # segment_movement: no order before the start date

SEGMENT_NAMES: dict[str, DisplayName] = {
    "champions": DisplayName("Champions", "重要价值客户"),
    "loyal": DisplayName("Loyal customers", "忠诚客户"),
    "potential_loyalists": DisplayName("Potential loyalists", "潜力客户"),
    "new": DisplayName("New customers", "新客户"),
    "promising": DisplayName("Promising", "待培育客户"),
    "need_attention": DisplayName("Need attention", "需关注客户"),
    "about_to_sleep": DisplayName("About to sleep", "即将沉睡客户"),
    "at_risk": DisplayName("At risk", "流失风险客户"),
    "cant_lose": DisplayName("Can't lose them", "重要挽留客户"),
    "hibernating": DisplayName("Hibernating", "沉睡客户"),
    "lost": DisplayName("Lost", "已流失客户"),
}

SEGMENT_RULES: tuple[SegmentRule, ...] = (
    SegmentRule("champions", r=(5, 5), fm=(4, 5)),
    SegmentRule("loyal", r=(3, 4), fm=(4, 5)),
    SegmentRule("potential_loyalists", r=(4, 5), fm=(2, 3)),
    SegmentRule("new", r=(5, 5), fm=(1, 1)),
    SegmentRule("promising", r=(4, 4), fm=(1, 1)),
    SegmentRule("need_attention", r=(3, 3), fm=(3, 3)),
    SegmentRule("about_to_sleep", r=(3, 3), fm=(1, 2)),
    SegmentRule("at_risk", r=(1, 2), fm=(3, 4)),
    SegmentRule("cant_lose", r=(1, 2), fm=(5, 5)),
    SegmentRule("hibernating", r=(2, 2), fm=(1, 2)),
    SegmentRule("hibernating", r=(1, 1), fm=(2, 2)),
    SegmentRule("lost", r=(1, 1), fm=(1, 1)),
)


def _grid(rules: tuple[SegmentRule, ...]) -> dict[tuple[int, int], str]:
    """The (r, fm) → segment map of ``rules``; raises if a cell is missing or doubled."""
    grid: dict[tuple[int, int], str] = {}
    for rule in rules:
        for r in range(rule.r[0], rule.r[1] + 1):
            for fm in range(rule.fm[0], rule.fm[1] + 1):
                if (r, fm) in grid:
                    raise ValueError(f"cell R{r} FM{fm} in {grid[r, fm]} and {rule.segment}")
                grid[r, fm] = rule.segment
    missing = [(r, fm) for r in range(1, 6) for fm in range(1, 6) if (r, fm) not in grid]
    if missing:
        raise ValueError(f"cells without a segment: {missing}")
    return grid


SEGMENT_GRID: dict[tuple[int, int], str] = _grid(SEGMENT_RULES)


@dataclass(frozen=True)
class SegmentSize:
    """One segment at a date: its customers and their net revenue, with shares of the total."""

    segment: str
    customers: int
    share: float  # of the customers scored
    revenue: float  # net of refunds, major units, rounded to cents
    revenue_share: float  # of the net revenue of all customers scored (0 when that is ≤ 0)


@dataclass(frozen=True)
class SegmentMove:
    """Customers who were in ``from_segment`` at the start and in ``to_segment`` at the end."""

    from_segment: str  # NO_SEGMENT ("none") when they had no order before the start
    to_segment: str
    customers: int


def resolve_as_of(frame: Frame, as_of: date | datetime | None) -> datetime:
    """``as_of`` as a naive store-local datetime (a date means its midnight)."""
    if as_of is None:
        return frame.as_of
    if isinstance(as_of, datetime):
        if as_of.tzinfo is not None:
            raise ValueError("as_of is store-local time: pass a naive datetime")
        return as_of
    return datetime(as_of.year, as_of.month, as_of.day)


def customer_measures(frame: Frame, as_of: datetime) -> ir.Table:
    """Per customer with an order before ``as_of``: ``customer_id``, ``frequency``,
    ``recency_days``, ``monetary_cents`` (net, int64), ``last_order_at``,
    ``discounted_orders`` and ``first_refunded_at`` (placed_at of the first order with a
    refund, null if none). Shared by the RFM and loyalty-type tables."""
    o = frame.orders
    o = o.filter(o.placed_at < as_of)
    net_cents = ((o.amount - o.refunded_amount) * 100).round().cast("int64")
    agg = o.group_by("customer_id").aggregate(
        frequency=o.count(),
        last_order_at=o.placed_at.max(),
        monetary_cents=net_cents.sum(),
        discounted_orders=o.discounted.cast("int64").sum(),
        first_refunded_at=ibis.cases((o.refunded_amount > 0, o.placed_at)).min(),
    )
    recency = ibis.literal(as_of.date()).delta(agg.last_order_at.date(), unit="day")
    return agg.mutate(
        frequency=agg.frequency.cast("int64"),
        recency_days=recency.cast("int64"),
        discounted_orders=agg.discounted_orders.cast("int64"),
    )


def _score(worse: ir.IntegerColumn, n: ir.IntegerColumn) -> ir.IntegerColumn:
    """⌊5 · worse / n⌋ + 1: exact on both engines (integers far below 2⁵³)."""
    score: ir.IntegerColumn = ((worse * 5) // n + 1).cast("int64")
    return score


def _segment_expr(r: ir.IntegerColumn, fm: ir.IntegerColumn) -> ir.StringColumn:
    branches: list[tuple[Any, str]] = [
        (r.between(*rule.r) & fm.between(*rule.fm), rule.segment) for rule in SEGMENT_RULES
    ]
    segment: ir.StringColumn = ibis.cases(*branches)
    return segment


def rfm_table(frame: Frame, *, as_of: date | datetime | None = None) -> ir.Table:
    """One row per customer with an order before ``as_of`` (default ``frame.as_of``):
    ``customer_id, recency_days, frequency, monetary, r, f, m, fm, rfm, segment``.

    Lazy: nothing runs until the caller executes or exports the table. Scoring and segment
    rules are in the module docstring.
    """
    cut = resolve_as_of(frame, as_of)
    t = customer_measures(frame, cut)
    whole = ibis.window()
    t = t.mutate(
        n=t.customer_id.count().over(whole),
        r_worse=ibis.rank().over(order_by=ibis.desc(t.recency_days)),
        f_worse=ibis.rank().over(order_by=t.frequency),
        m_worse=ibis.rank().over(order_by=t.monetary_cents),
    )
    t = t.mutate(r=_score(t.r_worse, t.n), f=_score(t.f_worse, t.n), m=_score(t.m_worse, t.n))
    t = t.mutate(fm=((t.f + t.m) // 2).cast("int64"))
    return t.select(
        "customer_id",
        "recency_days",
        "frequency",
        monetary=(t.monetary_cents / 100.0).cast("float64"),
        r=t.r,
        f=t.f,
        m=t.m,
        fm=t.fm,
        rfm=t.r.cast("string") + t.f.cast("string") + t.m.cast("string"),
        segment=_segment_expr(t.r, t.fm),
    )


def segment_sizes(frame: Frame, *, as_of: date | datetime | None = None) -> list[SegmentSize]:
    """Customers and net revenue per segment at ``as_of``, all eleven segments in
    :data:`SEGMENTS` order (empty ones with zeros)."""
    t = rfm_table(frame, as_of=as_of)
    cents = (t.monetary * 100).round().cast("int64")
    rows = (
        t.group_by("segment")
        .aggregate(customers=t.count(), cents=cents.sum())
        .to_pyarrow()
        .to_pylist()
    )
    by_segment = {row["segment"]: (int(row["customers"]), int(row["cents"])) for row in rows}
    total_customers = sum(c for c, _ in by_segment.values())
    total_cents = sum(c for _, c in by_segment.values())
    sizes = []
    for segment in SEGMENTS:
        customers, seg_cents = by_segment.get(segment, (0, 0))
        sizes.append(
            SegmentSize(
                segment=segment,
                customers=customers,
                share=customers / total_customers if total_customers else 0.0,
                revenue=seg_cents / 100,
                revenue_share=seg_cents / total_cents if total_cents > 0 else 0.0,
            )
        )
    return sizes


def segment_movement(
    frame: Frame, from_date: date | datetime, to_date: date | datetime
) -> list[SegmentMove]:
    """How customers moved between segments from ``from_date`` to ``to_date``.

    One row per (from, to) pair that has customers; ``from_segment`` is ``"none"`` for
    customers whose first order falls between the two dates. Everyone scored at the start
    is scored at the end (their orders are still before it). Rows come in segment order.
    """
    start, end = resolve_as_of(frame, from_date), resolve_as_of(frame, to_date)
    if start >= end:
        raise ValueError(f"from_date {start} must be before to_date {end}")
    before = rfm_table(frame, as_of=start).select("customer_id", from_segment="segment")
    after = rfm_table(frame, as_of=end).select("customer_id", to_segment="segment")
    joined = after.left_join(before, after.customer_id == before.customer_id)
    moves = joined.select(
        from_segment=joined.from_segment.fill_null(NO_SEGMENT), to_segment=joined.to_segment
    )
    rows = (
        moves.group_by("from_segment", "to_segment")
        .aggregate(customers=moves.count())
        .to_pyarrow()
        .to_pylist()
    )
    order = {s: i for i, s in enumerate((NO_SEGMENT, *SEGMENTS))}
    result = [
        SegmentMove(str(r["from_segment"]), str(r["to_segment"]), int(r["customers"])) for r in rows
    ]
    return sorted(result, key=lambda m: (order[m.from_segment], order[m.to_segment]))
