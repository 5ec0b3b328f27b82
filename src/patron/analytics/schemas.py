"""API shapes of analysis runs, the stored report and its chart-ready slices.

The slices reuse the analysis result dataclasses (``PeriodRetention``, ``SegmentSize``,
…) as their schemas, so the API documents exactly what the analysis computes. Every
slice carries the run it comes from (``run``); money is in the store's currency, major
units, as numbers (these are statistics), except the per-customer CLV, a decimal string
like every stored amount.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from patron.analytics.concentration import ValueConcentration
from patron.analytics.frame import Engine
from patron.analytics.loyalty_types import (
    BEHAVIOUR_TYPE_NAMES,
    LOYALTY_TYPE_NAMES,
    BehaviourTypeCount,
    LoyaltyTypeCount,
)
from patron.analytics.report import (
    AnalysisOptions,
    ClvSummary,
    Overview,
    Period,
)
from patron.analytics.retention import CohortMatrix, PeriodRetention
from patron.analytics.rfm import SEGMENT_NAMES, DisplayName, SegmentMove, SegmentSize


class RunIn(BaseModel):
    """Options of an analysis run; every one has a default."""

    model_config = ConfigDict(extra="forbid")

    engine: Engine = Field("duckdb", description="duckdb (embedded) or spark (needs PySpark).")
    period: Period = Field("month", description="Period of the cohort matrix.")
    active_days: int = Field(
        365, ge=1, le=3650, description="Retention: a customer counts as active this long."
    )
    as_of: date | None = Field(
        None, description="Analyse the data as it was at this store-local date (exclusive)."
    )
    horizon_days: int = Field(
        90, ge=1, le=3650, description="CLV: expected purchases over this many days."
    )
    months: int = Field(12, ge=1, le=120, description="CLV horizon in months.")
    margin: float | None = Field(
        None, ge=0, le=1, description="Gross margin for CLV; default: from costs, else 0.3."
    )
    discount_rate: float = Field(0.01, ge=0, le=1, description="CLV discount rate per month.")
    movement_from: date | None = Field(
        None, description="RFM movement from this date (default: 90 days before as_of)."
    )

    def options(self) -> AnalysisOptions:
        def midnight(d: date | None) -> datetime | None:
            return None if d is None else datetime(d.year, d.month, d.day)

        return AnalysisOptions(
            period=self.period,
            active_days=self.active_days,
            as_of=midnight(self.as_of),
            horizon_days=self.horizon_days,
            months=self.months,
            margin=self.margin,
            discount_rate=self.discount_rate,
            movement_from=midnight(self.movement_from),
        )


class RunMeta(BaseModel):
    """Which stored run an answer comes from."""

    run_id: int
    finished_at: datetime | None = Field(description="When the run was stored (UTC).")
    as_of: datetime = Field(description="End of the analysed data, store-local, exclusive.")
    currency: str
    timezone: str


class ScoresWritten(BaseModel):
    written: int = Field(description="customer_scores rows written by the run.")
    unknown_customers: int = Field(
        description="Customers in the orders but not in the store's customers (not written)."
    )


class RunOut(BaseModel):
    run: RunMeta
    status: str
    source: str
    engine: str
    started_at: datetime
    overview: Overview
    scores: ScoresWritten
    seconds: dict[str, float] = Field(description="Time per analysis step.")
    warnings: list[str] = Field(description="What the run could not do, e.g. a failed fit.")


class RetentionSeriesOut(BaseModel):
    period: Period
    all: list[PeriodRetention]
    members: list[PeriodRetention]
    non_members: list[PeriodRetention]


class RetentionOut(RetentionSeriesOut):
    run: RunMeta


class CohortsOut(BaseModel):
    run: RunMeta
    cohorts: CohortMatrix


class ConcentrationOut(BaseModel):
    run: RunMeta
    concentration: ValueConcentration


class SegmentOut(BaseModel):
    size: SegmentSize
    name: DisplayName


class RfmOut(BaseModel):
    run: RunMeta
    as_of: datetime
    segments: list[SegmentOut] = Field(description="All eleven segments, best first.")
    movement_from: datetime
    movement: list[SegmentMove] = Field(
        description="Customers per (segment at movement_from, segment at as_of)."
    )


class LoyaltyTypeOut(BaseModel):
    count: LoyaltyTypeCount
    name: DisplayName


class BehaviourTypeOut(BaseModel):
    count: BehaviourTypeCount
    name: DisplayName


class LoyaltyTypesOut(BaseModel):
    run: RunMeta
    loyalty_types: list[LoyaltyTypeOut]
    behaviour_types: list[BehaviourTypeOut]


class ClvOut(BaseModel):
    run: RunMeta
    clv: ClvSummary


class ReportOut(BaseModel):
    """The whole stored report."""

    run: RunMeta
    version: int
    generated_at: datetime
    engine: str
    options: dict[str, Any] = Field(description="The options the run was made with.")
    overview: Overview
    retention: dict[str, RetentionSeriesOut] = Field(description="By period: month, quarter, year.")
    cohorts: CohortMatrix
    concentration: ValueConcentration
    rfm: RfmOut
    loyalty: LoyaltyTypesOut
    clv: ClvSummary
    scores: ScoresWritten | None
    seconds: dict[str, float]
    warnings: list[str]


class CustomerScoresOut(BaseModel):
    """A customer's scores from the store's latest analysis run."""

    customer_id: str = Field(description="The store's customer id.")
    run_id: int
    computed_at: datetime
    segment: str | None = Field(description="RFM segment key, e.g. champions.")
    segment_name: DisplayName | None
    r: int | None = Field(description="RFM recency score 1–5 (5 = most recent).")
    f: int | None
    m: int | None
    clv: Decimal | None = Field(
        description="Discounted expected margin over the run's CLV horizon, store currency; "
        "null when the CLV models could not be fitted."
    )
    p_alive: float | None = Field(description="Probability the customer is still active.")
    expected_purchases: float | None = Field(
        description="Expected purchase days over the run's horizon."
    )
    loyalty_type: str | None = Field(
        description="true | latent | spurious | none; null without an NPS answer."
    )
    behaviour_type: str | None = Field(
        description="regular | deal_seeker | lapsed | occasional | one_time."
    )
    price_sensitivity: float | None = Field(description="Share of orders bought on discount.")


# -- from the stored JSON ------------------------------------------------------------------


def run_meta(run_id: int, finished_at: datetime | None, report: dict[str, Any]) -> RunMeta:
    return RunMeta(
        run_id=run_id,
        finished_at=finished_at,
        as_of=report["as_of"],
        currency=report["currency"],
        timezone=report["timezone"],
    )


def _named(item: dict[str, Any], key: str, names: dict[str, DisplayName]) -> dict[str, Any]:
    return {key: item, "name": names[item["segment" if key == "size" else "type"]]}


def rfm_out(meta: RunMeta, report: dict[str, Any]) -> RfmOut:
    rfm = report["rfm"]
    return RfmOut.model_validate(
        {
            "run": meta,
            "as_of": rfm["as_of"],
            "segments": [_named(s, "size", SEGMENT_NAMES) for s in rfm["segments"]],
            "movement_from": rfm["movement_from"],
            "movement": rfm["movement"],
        }
    )


def loyalty_out(meta: RunMeta, report: dict[str, Any]) -> LoyaltyTypesOut:
    return LoyaltyTypesOut.model_validate(
        {
            "run": meta,
            "loyalty_types": [
                _named(c, "count", LOYALTY_TYPE_NAMES) for c in report["loyalty_types"]
            ],
            "behaviour_types": [
                _named(c, "count", BEHAVIOUR_TYPE_NAMES) for c in report["behaviour_types"]
            ],
        }
    )
