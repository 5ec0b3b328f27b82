"""Analytics routes: run an analysis, and read the stored report and its chart-ready slices.

Reads are served from the store's latest stored run (one row, one JSON document): the
dashboard never waits on a model fit. A run is the only slow call.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from patron.analytics.models import AnalyticsRun
from patron.analytics.report import Period
from patron.analytics.rfm import SEGMENT_NAMES
from patron.analytics.schemas import (
    ClvOut,
    CohortsOut,
    ConcentrationOut,
    CustomerScoresOut,
    LoyaltyTypesOut,
    ReportOut,
    RetentionOut,
    RfmOut,
    RunIn,
    RunMeta,
    RunOut,
    loyalty_out,
    rfm_out,
    run_meta,
)
from patron.analytics.service import analytics
from patron.auth import Principal, Scope, SessionDep, require
from patron.kit.text import CleanText

router = APIRouter(tags=["analytics"])
Read = Annotated[Principal, require(Scope.read)]
Admin = Annotated[Principal, require(Scope.admin)]
ExtId = Annotated[CleanText, Path(min_length=1, max_length=128)]


def _latest(session: SessionDep, who: Principal) -> tuple[RunMeta, dict[str, Any]]:
    run: AnalyticsRun = analytics.latest(session, who.store)
    report = run.report or {}
    return run_meta(run.id, run.finished_at, report), report


@router.post("/v1/analytics/runs", response_model=RunOut, status_code=201)
def run_analysis(body: RunIn, session: SessionDep, who: Admin) -> RunOut:
    """Analyse the store's data now (seconds to minutes), store the report as the latest
    run and write every customer's scores back. All or nothing: a failed run changes
    nothing. Needs the `admin` scope."""
    stored = analytics.run(session, who.store, body.options(), engine=body.engine)
    run = stored.run
    report = run.report or {}
    return RunOut.model_validate(
        {
            "run": run_meta(run.id, run.finished_at, report),
            "status": run.status.value,
            "source": run.source,
            "engine": run.engine,
            "started_at": run.started_at,
            "overview": report["overview"],
            "scores": report["scores"],
            "seconds": report["seconds"],
            "warnings": report["warnings"],
        }
    )


@router.get("/v1/analytics/report", response_model=ReportOut)
def latest_report(session: SessionDep, who: Read) -> ReportOut:
    """The whole report of the store's latest run (404 before the first run)."""
    meta, report = _latest(session, who)
    return ReportOut.model_validate(
        {
            **report,
            "run": meta,
            "rfm": rfm_out(meta, report),
            "loyalty": loyalty_out(meta, report),
            "scores": report.get("scores"),
        }
    )


@router.get("/v1/analytics/retention", response_model=RetentionOut)
def retention(
    session: SessionDep,
    who: Read,
    period: Annotated[Period, Query(description="month, quarter or year.")] = "month",
) -> RetentionOut:
    """Customer retention rate CRR = (E − N) / S per period, with churn, buyers, orders,
    revenue, repeat rate and order value — for everyone, members and non-members."""
    meta, report = _latest(session, who)
    return RetentionOut.model_validate({"run": meta, **report["retention"][period]})


@router.get("/v1/analytics/cohorts", response_model=CohortsOut)
def cohorts(session: SessionDep, who: Read) -> CohortsOut:
    """Acquisition cohorts × periods since acquisition: customers still buying."""
    meta, report = _latest(session, who)
    return CohortsOut.model_validate({"run": meta, "cohorts": report["cohorts"]})


@router.get("/v1/analytics/concentration", response_model=ConcentrationOut)
def concentration(session: SessionDep, who: Read) -> ConcentrationOut:
    """Value concentration: the top 20%'s share (80/20), top 10% vs the next 10%, and the
    Pareto curve."""
    meta, report = _latest(session, who)
    return ConcentrationOut.model_validate({"run": meta, "concentration": report["concentration"]})


@router.get("/v1/analytics/rfm", response_model=RfmOut)
def rfm(session: SessionDep, who: Read) -> RfmOut:
    """RFM segment sizes (with their English and Chinese names) and how customers moved
    between segments."""
    meta, report = _latest(session, who)
    return rfm_out(meta, report)


@router.get("/v1/analytics/loyalty-types", response_model=LoyaltyTypesOut)
def loyalty_types(session: SessionDep, who: Read) -> LoyaltyTypesOut:
    """Loyalty types (attitude × behaviour: true, latent, spurious, none) and behaviour
    types, with their traits."""
    meta, report = _latest(session, who)
    return loyalty_out(meta, report)


@router.get("/v1/analytics/clv", response_model=ClvOut)
def clv(session: SessionDep, who: Read) -> ClvOut:
    """Customer lifetime value: the fitted BG/NBD and Gamma-Gamma models (parameters,
    standard errors, diagnostics, warnings), totals and distributions."""
    meta, report = _latest(session, who)
    return ClvOut.model_validate({"run": meta, "clv": report["clv"]})


@router.get("/v1/customers/{external_id}/scores", response_model=CustomerScoresOut)
def customer_scores(external_id: ExtId, session: SessionDep, who: Read) -> CustomerScoresOut:
    """The customer's RFM segment, CLV, P(alive), expected purchases and loyalty type from
    the store's latest analysis run."""
    score = analytics.scores_of(session, who.store, external_id)
    return CustomerScoresOut(
        customer_id=external_id,
        run_id=score.run_id,
        computed_at=score.computed_at,
        segment=score.segment,
        segment_name=SEGMENT_NAMES.get(score.segment) if score.segment else None,
        r=score.r,
        f=score.f,
        m=score.m,
        clv=score.clv,
        p_alive=score.p_alive,
        expected_purchases=score.expected_purchases,
        loyalty_type=score.loyalty_type,
        behaviour_type=score.behaviour_type,
        price_sensitivity=score.price_sensitivity,
    )
