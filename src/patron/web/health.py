"""What the overview page shows: the 4R scorecard and the headline KPIs, read from the
latest stored analysis run, the feedback and support reports, the points ledger and a
few single aggregate queries (``patron.web.repository``). Nothing expensive is
recomputed per request: CRR comes from the stored run, never from a new analysis."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from patron.analytics import repository as analytics_repo
from patron.analytics.report import REPORT_VERSION
from patron.feedback.schemas import NpsOut
from patron.feedback.scores import scores
from patron.kit.clock import as_utc_or_now
from patron.loyalty.orders import active_program
from patron.loyalty.program import PointsAsCashReward, ProgramConfig
from patron.loyalty.service import Liability, ledger
from patron.stores.models import Store
from patron.support.insights import insights
from patron.support.schemas import ReportRow
from patron.web import repository as repo
from patron.web.scorecard import Pillar, measure, pillar, share, tenure_from_cohorts

RECENT_DAYS = 90  # SLA window, active members
YEAR_DAYS = 365  # repeat buyers, tenure, NPS
DEFAULT_COST_PER_POINT = Decimal("0.01")


@dataclass(frozen=True)
class Analysis:
    run_id: int
    finished_at: datetime | None
    crr: float | None  # last complete month, 0-100
    crr_period: str | None  # its first day, ISO
    customers: int  # with an order, in the run
    tenure_months: float | None  # median, buyers of the last complete cohort period


@dataclass(frozen=True)
class TierCount:
    code: str
    names: dict[str, str]  # by language
    members: int


@dataclass(frozen=True)
class Overview:
    analysis: Analysis | None
    analysis_problem: str | None  # "none" | "old" when analysis is None
    pillars: list[Pillar]
    nps: NpsOut
    nps_since: datetime
    members: int
    tiers: list[TierCount]
    liability: Liability | None  # None: no programme
    sla: ReportRow | None
    follow_ups: tuple[int, int]
    computed_at: datetime


def _analysis(session: Session, store: Store) -> tuple[Analysis | None, str | None]:
    run = analytics_repo.latest_run(session, store.id)
    if run is None or run.report is None:
        return None, "none"
    report: dict[str, Any] = run.report
    if report.get("version") != REPORT_VERSION:
        return None, "old"
    crr, period = None, None
    months = (report.get("retention") or {}).get("month", {}).get("all") or []
    for row in reversed(months):
        if row.get("complete") and row.get("retention_rate") is not None:
            crr, period = float(row["retention_rate"]), str(row.get("period_start"))
            break
    customers = int((report.get("overview") or {}).get("customers") or 0)
    tenure = tenure_from_cohorts(report.get("cohorts") or {})
    return Analysis(run.id, run.finished_at, crr, period, customers, tenure), None


def cost_per_point(program: ProgramConfig | None) -> Decimal:
    """What a point is worth to the store: from the programme's points-as-cash reward
    (100 points = 1 unit → 0.01), else 0.01."""
    for reward in program.rewards if program else []:
        if isinstance(reward, PointsAsCashReward) and reward.active:
            return Decimal(1) / Decimal(reward.points_per_unit)
    return DEFAULT_COST_PER_POINT


def _tier_names(program: ProgramConfig | None) -> dict[str, dict[str, str]]:
    names: dict[str, dict[str, str]] = {}
    for tier in program.tiers if program else []:
        display = tier.name.display()
        names[tier.code] = {"en": tier.name.en or display, "zh": tier.name.zh or display}
    return names


# The overview of each store, kept CACHE_SECONDS: a reload (or a second staff member)
# within that time costs nothing; the page shows when its figures were computed.
CACHE_SECONDS = 60.0
_cache: dict[tuple[str, int], tuple[float, Overview]] = {}  # (database, store id)
_cache_lock = threading.Lock()


def forget(store_id: int | None = None) -> None:
    """Drop the cached overview of one store (None: of every store)."""
    with _cache_lock:
        for key in [k for k in _cache if store_id is None or k[1] == store_id]:
            del _cache[key]


def overview(session: Session, store: Store, max_age: float = CACHE_SECONDS) -> Overview:
    """The store's overview, from the cache when computed less than ``max_age`` ago."""
    key = (str(session.get_bind().engine.url), store.id)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < max_age:
        return hit[1]
    fresh = compute(session, store)
    with _cache_lock:
        if len(_cache) >= 256:
            _cache.clear()
        _cache[key] = (time.monotonic(), fresh)
    return fresh


def compute(session: Session, store: Store, now: datetime | None = None) -> Overview:
    now = as_utc_or_now(now)
    year_ago, recent = now - timedelta(days=YEAR_DAYS), now - timedelta(days=RECENT_DAYS)
    analysis, problem = _analysis(session, store)
    program = active_program(session, store)

    # relationship
    buyers, repeat = repo.repeat_buyers(session, store.id, year_ago)
    relationship = pillar(
        "relationship",
        [
            measure("crr", analysis.crr if analysis else None, "pct"),
            measure("repeat_rate", share(repeat, buyers), "pct"),
            measure("tenure_months", analysis.tenure_months if analysis else None, "months"),
        ],
    )
    # relevance
    customers, with_birthday = repo.profile_counts(session, store.id)
    relevance = pillar(
        "relevance",
        [
            measure(
                "segment_coverage",
                share(repo.scored_customers(session, store.id), analysis.customers)
                if analysis
                else None,
                "pct",
            ),
            measure("profile_birthday", share(with_birthday, customers), "pct"),
            measure(
                "consent_reach",
                share(repo.consenting_customers(session, store.id), customers),
                "pct",
            ),
        ],
    )
    # responsiveness
    sla = insights.report(session, store, recent, None, now).total
    opened, closed = repo.follow_ups(session, store.id)
    responsiveness = pillar(
        "responsiveness",
        [
            measure("sla_first", sla.first_response_met_pct if sla.tickets else None, "pct"),
            measure("sla_resolution", sla.resolution_met_pct if sla.tickets else None, "pct"),
            measure("first_response_h", sla.median_first_response_h, "hours", graded=False),
            measure("follow_ups_closed", share(closed, opened), "pct"),
        ],
    )
    # rewards
    tiers_found = repo.members_by_tier(session, store.id)
    members = sum(tiers_found.values())
    liability = ledger.liability(session, store, cost_per_point(program)) if program else None
    rewards = pillar(
        "rewards",
        [
            measure(
                "active_members",
                share(repo.active_members(session, store.id, recent), members),
                "pct",
            ),
            measure(
                "redemption_rate",
                share(liability.points_redeemed, liability.points_earned) if liability else None,
                "pct",
            ),
            measure(
                "breakage",
                float(liability.breakage_rate) * 100
                if liability and liability.breakage_rate is not None
                else None,
                "pct",
            ),
            measure(
                "liability",
                float(liability.outstanding_value) if liability else None,
                "money",
                graded=False,
            ),
        ],
    )
    names = _tier_names(program)
    if names and "" in tiers_found:  # never placed yet: they hold the first tier
        first = next(iter(names))
        tiers_found[first] = tiers_found.get(first, 0) + tiers_found.pop("")
    order = list(names) + sorted(set(tiers_found) - set(names))
    tiers = [
        TierCount(code, names.get(code, {"en": code, "zh": code}), tiers_found.get(code, 0))
        for code in order
    ]
    nps = scores.report(session, store, since=year_ago).overall.nps
    return Overview(
        analysis=analysis,
        analysis_problem=problem,
        pillars=[relationship, relevance, responsiveness, rewards],
        nps=nps,
        nps_since=year_ago,
        members=members,
        tiers=tiers,
        liability=liability,
        sla=sla if sla.tickets else None,
        follow_ups=(opened, closed),
        computed_at=now,
    )
