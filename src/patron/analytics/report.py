"""The whole analysis of a frame in one call: the report the CLI prints, the API serves and
the dashboard charts, and the per-customer scores written back for campaigns.

``analyze(frame, options)`` runs, in order: an overview, retention by month, quarter and
year (everyone, members, non-members), the cohort matrix, value concentration, RFM segment
sizes and movement, loyalty and behaviour types, and the CLV models. Each step is one
module's public function (``retention``, ``concentration``, ``rfm``, ``loyalty_types``,
``clv_frame``); this module only composes them, so a number in the report is defined in
exactly one place.

``options.as_of`` analyses the data as it was then: orders placed at or after it are left
out before any step runs (customer attributes — membership, NPS — are today's).

Every result is a frozen dataclass of primitives; :meth:`AnalysisReport.to_json` gives the
JSON document stored in ``analytics_runs.report`` (NaN and infinities become null).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from patron.analytics.clv_frame import ClvFit, ClvScores, clv_scores
from patron.analytics.concentration import ValueConcentration, value_concentration
from patron.analytics.frame import Frame
from patron.analytics.loyalty_types import (
    BehaviourTypeCount,
    LoyaltyCriteria,
    LoyaltyTypeCount,
    behaviour_type_counts,
    loyalty_table,
    loyalty_type_counts,
)
from patron.analytics.retention import (
    PERIODS,
    CohortMatrix,
    Period,
    PeriodRetention,
    cohort_matrix,
    retention_by_membership,
    retention_by_period,
)
from patron.analytics.rfm import (
    SegmentMove,
    SegmentSize,
    rfm_table,
    segment_movement,
    segment_sizes,
)
from patron.kit.clock import utcnow

__all__ = [
    "PERIODS",
    "REPORT_VERSION",
    "SCORE_COLUMNS",
    "AnalysisOptions",
    "AnalysisReport",
    "Bucket",
    "ClvSummary",
    "Overview",
    "Period",
    "Progress",
    "RetentionSeries",
    "RfmSummary",
    "analyze",
    "analyze_with_scores",
    "customer_scores",
    "jsonable",
]

#: Bumped when the report's JSON shape changes: the API refuses to serve an older one.
REPORT_VERSION = 1
#: How far ``AnalysisOptions.as_of`` may lie beyond the end of the data.
MAX_AS_OF_BEYOND_DATA = timedelta(days=366)
#: ``progress(step, done, total)``: called before each step (``done`` steps finished) and
#: once at the end with ``done == total``.
Progress = Callable[[str, int, int], None]

#: The columns of :func:`customer_scores`, in order.
SCORE_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "recency_days",
    "frequency",
    "monetary",
    "r",
    "f",
    "m",
    "rfm",
    "segment",
    "clv",
    "p_alive",
    "expected_purchases",
    "loyalty_type",
    "behaviour_type",
    "price_sensitivity",
)


@dataclass(frozen=True)
class AnalysisOptions:
    """What to analyse and how. Every field has a default; ``validate`` runs on creation."""

    period: Period = "month"  # the period the CLI shows and the cohorts use
    active_days: int = 365  # retention: a customer is "active" this long after an order
    as_of: datetime | None = None  # naive store-local, exclusive; None: the frame's end
    horizon_days: int = 90  # CLV: expected purchases over the next this many days
    months: int = 12  # CLV horizon
    margin: float | None = None  # CLV gross margin; None: from order costs, else 0.3
    discount_rate: float = 0.01  # CLV, per month
    movement_days: int = 90  # RFM movement from as_of − this many days …
    movement_from: datetime | None = None  # … unless given (naive store-local)
    cohort_max_age: int | None = None  # cohort matrix: periods after acquisition shown
    loyalty: LoyaltyCriteria = field(default_factory=LoyaltyCriteria)

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {self.period!r}")
        for name in ("active_days", "horizon_days", "months", "movement_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.margin is not None and not 0.0 <= self.margin <= 1.0:
            raise ValueError("margin must be between 0 and 1")
        if not -1.0 < self.discount_rate < 10.0:
            raise ValueError("discount_rate is per month: it must be in (−1, 10)")
        if self.cohort_max_age is not None and self.cohort_max_age < 0:
            raise ValueError("cohort_max_age must not be negative")
        for name in ("as_of", "movement_from"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is not None:
                raise ValueError(f"{name} is store-local time: give it without a time zone")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = jsonable(self)
        return out


@dataclass(frozen=True)
class Overview:
    customers: int  # with an order before as_of
    known_customers: int  # in the customers table (some may never have ordered)
    members: int  # known customers enrolled in the loyalty programme
    orders: int
    revenue: float  # Σ amount, major units
    net_revenue: float  # Σ (amount − refunded_amount)
    first_order_at: datetime
    last_order_at: datetime


@dataclass(frozen=True)
class RetentionSeries:
    """One period length: every customer, and members / non-members apart."""

    period: Period
    all: list[PeriodRetention]
    members: list[PeriodRetention]
    non_members: list[PeriodRetention]


@dataclass(frozen=True)
class RfmSummary:
    as_of: datetime
    segments: list[SegmentSize]
    movement_from: datetime
    movement: list[SegmentMove]


@dataclass(frozen=True)
class Bucket:
    """Customers whose value is in [lower, upper) (``upper`` None: no upper end)."""

    lower: float
    upper: float | None
    customers: int
    clv: float  # Σ CLV of these customers (major units)


@dataclass(frozen=True)
class ClvSummary:
    fit: ClvFit
    scored: int  # customers with a CLV (0 when a model failed: see fit.warnings)
    total_clv: float | None
    mean_clv: float | None
    median_clv: float | None
    top_decile_share: float | None  # of the total CLV held by the 10% most valuable
    expected_purchases: float | None  # Σ over customers, next fit.horizon_days
    expected_alive: float | None  # Σ P(alive): customers expected to be still active
    clv_buckets: list[Bucket]  # 1-2-5 steps in the store currency
    p_alive_buckets: list[Bucket]  # tenths of probability


@dataclass(frozen=True)
class AnalysisReport:
    version: int
    generated_at: datetime  # aware UTC
    as_of: datetime  # naive store-local, exclusive
    engine: str
    currency: str
    timezone: str
    options: AnalysisOptions
    overview: Overview
    retention: dict[str, RetentionSeries]  # by period: month, quarter, year
    cohorts: CohortMatrix
    concentration: ValueConcentration
    rfm: RfmSummary
    loyalty_types: list[LoyaltyTypeCount]
    behaviour_types: list[BehaviourTypeCount]
    clv: ClvSummary
    seconds: dict[str, float]  # per step
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = jsonable(self)
        return out


# --------------------------------------------------------------------------- JSON


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses and mappings as objects, dates as ISO
    8601, NaN and infinities as null, numpy scalars as Python numbers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | None | str):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON-ready: {type(value).__name__}")


# --------------------------------------------------------------------------- steps


def _at(frame: Frame, as_of: datetime | None) -> Frame:
    """The frame as it was at ``as_of``: later orders left out.

    ``as_of`` may be after the data's end (say, today, weeks after the last order), but
    not more than :data:`MAX_AS_OF_BEYOND_DATA` after it: cohorts and periods run to
    ``as_of``, and a date in a far future would make them endless.
    """
    if as_of is None or as_of == frame.as_of:
        return frame
    if as_of > frame.as_of + MAX_AS_OF_BEYOND_DATA:
        raise ValueError(
            f"as_of {as_of:%Y-%m-%d} is more than a year after the end of the data "
            f"({frame.as_of:%Y-%m-%d})"
        )
    return dataclasses.replace(
        frame, orders=frame.orders.filter(frame.orders.placed_at < as_of), as_of=as_of
    )


def _overview(frame: Frame) -> Overview:
    o = frame.orders
    row = (
        o.aggregate(
            customers=o.customer_id.nunique(),
            orders=o.count(),
            revenue=o.amount.sum(),
            net_revenue=(o.amount - o.refunded_amount).sum(),
            first_order_at=o.placed_at.min(),
            last_order_at=o.placed_at.max(),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    if not row["orders"]:
        raise ValueError(f"no orders before {frame.as_of:%Y-%m-%d %H:%M}: nothing to analyse")
    c = frame.customers
    people = c.aggregate(known=c.count(), members=c.is_member.cast("int64").sum())
    crow = people.to_pyarrow().to_pylist()[0]
    return Overview(
        customers=int(row["customers"]),
        known_customers=int(crow["known"]),
        members=int(crow["members"] or 0),
        orders=int(row["orders"]),
        revenue=round(float(row["revenue"] or 0.0), 2),
        net_revenue=round(float(row["net_revenue"] or 0.0), 2),
        first_order_at=row["first_order_at"],
        last_order_at=row["last_order_at"],
    )


def _nice_edges(top: float) -> list[float]:
    """0, 1, 2, 5, 10, 20, 50, … up to the first edge above ``top``."""
    edges = [0.0]
    step = 1.0
    while edges[-1] <= top:
        for k in (1.0, 2.0, 5.0):
            edges.append(k * step)
            if edges[-1] > top:
                break
        step *= 10.0
    return edges


def _buckets(
    values: np.ndarray[Any, Any], clv: np.ndarray[Any, Any], edges: list[float]
) -> list[Bucket]:
    """Histogram of ``values`` over ``edges`` (the last bucket closed at its upper end)."""
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(index, minlength=len(edges) - 1)
    sums = np.bincount(index, weights=clv, minlength=len(edges) - 1)
    return [
        Bucket(
            lower=edges[i],
            upper=edges[i + 1],
            customers=int(counts[i]),
            clv=round(float(sums[i]), 2),
        )
        for i in range(len(edges) - 1)
    ]


def _clv_summary(scores: ClvScores) -> ClvSummary:
    t = scores.table
    clv_col = t.column("clv")
    p_col = t.column("p_alive")
    exp_col = t.column("expected_purchases")
    clv = np.asarray(clv_col.drop_null().to_numpy(), dtype=np.float64)
    alive = np.asarray(p_col.drop_null().to_numpy(), dtype=np.float64)
    scored = int(clv.size)
    total = float(clv.sum()) if scored else None
    top_share = None
    if scored and total and total > 0:
        k = max(1, math.ceil(scored / 10))
        top_share = float(np.sort(clv)[-k:].sum()) / total
    clv_buckets: list[Bucket] = []
    if scored:
        clv_buckets = _buckets(clv, clv, _nice_edges(float(max(clv.max(), 0.0))))
    p_buckets: list[Bucket] = []
    if alive.size:
        # P(alive) with the CLV of the same customers (0 where a customer has no CLV)
        both = pa.table({"p": p_col, "clv": clv_col}).filter(pc.is_valid(p_col))
        weights = np.asarray(both.column("clv").fill_null(0.0).to_numpy(), dtype=np.float64)
        p_buckets = _buckets(alive, weights, [i / 10 for i in range(11)])
    return ClvSummary(
        fit=scores.fit,
        scored=scored,
        total_clv=round(total, 2) if total is not None else None,
        mean_clv=round(float(clv.mean()), 2) if scored else None,
        median_clv=round(float(np.median(clv)), 2) if scored else None,
        top_decile_share=top_share,
        expected_purchases=float(exp_col.drop_null().to_numpy().sum()) if alive.size else None,
        expected_alive=float(alive.sum()) if alive.size else None,
        clv_buckets=clv_buckets,
        p_alive_buckets=p_buckets,
    )


def _scores_table(frame: Frame, options: AnalysisOptions, clv: ClvScores) -> pa.Table:
    rfm = rfm_table(frame)
    loyal = loyalty_table(frame, criteria=options.loyalty).select(
        "customer_id", "loyalty_type", "behaviour_type", "price_sensitivity"
    )
    joined = rfm.left_join(loyal, rfm.customer_id == loyal.customer_id).select(
        rfm.customer_id,
        rfm.recency_days,
        rfm.frequency,
        rfm.monetary,
        rfm.r,
        rfm.f,
        rfm.m,
        rfm.rfm,
        rfm.segment,
        loyal.loyalty_type,
        loyal.behaviour_type,
        loyal.price_sensitivity,
    )
    base = joined.to_pyarrow()
    scores = clv.table.select(["customer_id", "clv", "p_alive", "expected_purchases"])
    table = base.join(scores, "customer_id", join_type="left outer")
    table = table.select(list(SCORE_COLUMNS))
    return table.sort_by("customer_id")


class _Steps:
    """Runs named steps, reporting progress and timing each."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = total
        self.done = 0
        self.progress = progress
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        if self.progress is not None:
            self.progress(name, self.done, self.total)
        started = time.perf_counter()
        result = fn()
        self.seconds[name] = round(time.perf_counter() - started, 3)
        self.done += 1
        return result

    def finish(self) -> None:
        if self.progress is not None:
            self.progress("done", self.total, self.total)


def _run(
    frame: Frame, options: AnalysisOptions, progress: Progress | None, with_scores: bool
) -> tuple[AnalysisReport, pa.Table | None]:
    frame = _at(frame, options.as_of)
    as_of = frame.as_of
    moved_from = options.movement_from or as_of - timedelta(days=options.movement_days)
    if moved_from >= as_of:
        raise ValueError(
            f"movement_from ({moved_from:%Y-%m-%d}) must be before as_of ({as_of:%Y-%m-%d})"
        )
    steps = _Steps(9 + len(PERIODS) + int(with_scores), progress)
    overview: Overview = steps("overview", lambda: _overview(frame))
    retention: dict[str, RetentionSeries] = {}
    for period in PERIODS:

        def series(period: Period = period) -> RetentionSeries:
            split = retention_by_membership(frame, period, active_days=options.active_days)
            return RetentionSeries(
                period=period,
                all=retention_by_period(frame, period, active_days=options.active_days),
                members=split["members"],
                non_members=split["non_members"],
            )

        retention[period] = steps(f"retention by {period}", series)
    cohorts: CohortMatrix = steps(
        "cohorts", lambda: cohort_matrix(frame, options.period, max_age=options.cohort_max_age)
    )
    concentration: ValueConcentration = steps(
        "value concentration", lambda: value_concentration(frame)
    )
    sizes: list[SegmentSize] = steps("RFM segments", lambda: segment_sizes(frame))
    moves: list[SegmentMove] = steps(
        "segment movement", lambda: segment_movement(frame, moved_from, as_of)
    )
    loyalty: list[LoyaltyTypeCount] = steps(
        "loyalty types", lambda: loyalty_type_counts(frame, criteria=options.loyalty)
    )
    behaviour: list[BehaviourTypeCount] = steps(
        "behaviour types", lambda: behaviour_type_counts(frame, criteria=options.loyalty)
    )
    clv: ClvScores = steps(
        "CLV models",
        lambda: clv_scores(
            frame,
            horizon_days=options.horizon_days,
            months=options.months,
            discount_rate=options.discount_rate,
            margin=options.margin,
        ),
    )
    summary: ClvSummary = steps("CLV summary", lambda: _clv_summary(clv))
    table = None
    if with_scores:
        table = steps("customer scores", lambda: _scores_table(frame, options, clv))
    steps.finish()
    report = AnalysisReport(
        version=REPORT_VERSION,
        generated_at=utcnow(),
        as_of=as_of,
        engine=frame.engine,
        currency=frame.currency,
        timezone=frame.timezone,
        options=options,
        overview=overview,
        retention=retention,
        cohorts=cohorts,
        concentration=concentration,
        rfm=RfmSummary(as_of=as_of, segments=sizes, movement_from=moved_from, movement=moves),
        loyalty_types=loyalty,
        behaviour_types=behaviour,
        clv=summary,
        seconds=steps.seconds,
        warnings=list(clv.fit.warnings),
    )
    return report, table


def analyze(
    frame: Frame, options: AnalysisOptions | None = None, progress: Progress | None = None
) -> AnalysisReport:
    """Every analysis of ``frame``; see the module docstring."""
    return _run(frame, options or AnalysisOptions(), progress, with_scores=False)[0]


def analyze_with_scores(
    frame: Frame, options: AnalysisOptions | None = None, progress: Progress | None = None
) -> tuple[AnalysisReport, pa.Table]:
    """:func:`analyze` plus :func:`customer_scores`, fitting the CLV models once."""
    report, table = _run(frame, options or AnalysisOptions(), progress, with_scores=True)
    assert table is not None
    return report, table


def customer_scores(frame: Frame, options: AnalysisOptions | None = None) -> pa.Table:
    """One row per customer with an order before ``as_of``, columns :data:`SCORE_COLUMNS`:
    RFM measures, scores, cell and segment; CLV, P(alive) and expected purchases (null
    where a model failed); loyalty type (null without an NPS answer), behaviour type and
    price sensitivity. Sorted by customer id."""
    options = options or AnalysisOptions()
    frame = _at(frame, options.as_of)
    clv = clv_scores(
        frame,
        horizon_days=options.horizon_days,
        months=options.months,
        discount_rate=options.discount_rate,
        margin=options.margin,
    )
    return _scores_table(frame, options, clv)
