"""The 4R health scorecard (DOMAIN.md section 7, seed 001): relationship, relevance,
responsiveness and rewards, each from measures Patron already keeps, each with a traffic
light and a one-line explanation. Pure: the figures come in, the lights go out.

A measure is green at or beyond its target, amber at or beyond its floor, red below
(for "lower is better" measures the comparison flips); without data it is grey and
does not count. A pillar's light is its worst graded measure: a scorecard exists to
point at the weakest spot. The targets are rules of thumb for an online retail store,
documented in docs/dashboard.md; they are constants here so one place changes them.

Relationship (tenure, engagement): CRR of the last complete month, the share of last
year's buyers who bought again, the median tenure of active customers.
Relevance (personalisation that converts): the share of buyers with an RFM segment
(the latest analysis), of customers with a birthday on file (a personal profile the
birthday rules and gifts use), of customers reachable with consent on some channel.
Responsiveness (service targets met): first-response and resolution SLAs met (last
90 days), the median first response in business hours (shown, not graded), the share
of follow-ups opened by unhappy survey answers that are resolved.
Rewards (points earned and redeemed): members active in the last 90 days, the
redemption rate (points redeemed / earned), breakage (points expired / earned), and the
outstanding liability (shown, not graded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Light = Literal["green", "amber", "red", "grey"]
Kind = Literal["pct", "number", "money", "hours", "months", "points"]
_ORDER: dict[Light, int] = {"red": 0, "amber": 1, "green": 2, "grey": 3}


@dataclass(frozen=True)
class Target:
    green: float
    amber: float
    higher_is_better: bool = True

    def light(self, value: float | None) -> Light:
        if value is None:
            return "grey"
        if self.higher_is_better:
            return "green" if value >= self.green else "amber" if value >= self.amber else "red"
        return "green" if value <= self.green else "amber" if value <= self.amber else "red"


# Percentages are 0-100.
TARGETS: dict[str, Target] = {
    "crr": Target(85, 70),
    "repeat_rate": Target(30, 15),
    "tenure_months": Target(6, 3),
    "segment_coverage": Target(90, 60),
    "profile_birthday": Target(50, 25),
    "consent_reach": Target(40, 20),
    "sla_first": Target(90, 75),
    "sla_resolution": Target(90, 75),
    "follow_ups_closed": Target(90, 70),
    "active_members": Target(30, 15),
    "redemption_rate": Target(20, 10),
    "breakage": Target(20, 35, higher_is_better=False),
}


@dataclass(frozen=True)
class Measure:
    key: str
    value: float | None
    kind: Kind
    light: Light  # grey: no data, or a figure shown without a target
    target: Target | None


@dataclass(frozen=True)
class Pillar:
    key: str  # relationship | relevance | responsiveness | rewards
    measures: list[Measure]
    light: Light
    weakest: Measure | None  # the worst graded measure, when not green


def measure(key: str, value: float | None, kind: Kind, graded: bool = True) -> Measure:
    target = TARGETS.get(key) if graded else None
    return Measure(key, value, kind, target.light(value) if target else "grey", target)


def pillar(key: str, measures: list[Measure]) -> Pillar:
    graded = [m for m in measures if m.light != "grey"]
    if not graded:
        return Pillar(key, measures, "grey", None)
    worst = min(graded, key=lambda m: _ORDER[m.light])
    return Pillar(key, measures, worst.light, None if worst.light == "green" else worst)


def share(part: int | float | None, whole: int | float | None) -> float | None:
    """``part`` as a percentage of ``whole``; None when there is no whole."""
    if part is None or not whole:
        return None
    return 100.0 * float(part) / float(whole)


_MONTHS_PER_PERIOD = {"month": 1, "quarter": 3, "year": 12}


def tenure_from_cohorts(cohorts: dict[str, object]) -> float | None:
    """Median tenure, in months, of the customers who ordered in the last complete period
    of a stored cohort matrix (``analytics_runs.report["cohorts"]``).

    Cohort i (acquired in period i) has ``sizes[i] × cells[i][k]`` buyers k periods after
    its acquisition; the last row is the data end's (incomplete) period, so the last
    complete period is ``k = len − 2 − i``. Their tenure is k periods: the weighted
    median over the cohorts, in months. None when there is no complete period."""
    sizes = cohorts.get("sizes")
    cells = cohorts.get("cells")
    months = _MONTHS_PER_PERIOD.get(str(cohorts.get("period")), 1)
    if not isinstance(sizes, list) or not isinstance(cells, list) or len(sizes) < 2:
        return None
    last = len(sizes) - 2
    weighted: list[tuple[int, float]] = []
    for i in range(last + 1):
        row = cells[i] if i < len(cells) and isinstance(cells[i], list) else []
        age = last - i
        share_ = row[age] if age < len(row) else None
        if isinstance(share_, int | float) and sizes[i]:
            weighted.append((age, float(sizes[i]) * float(share_)))
    total = sum(w for _, w in weighted)
    if total <= 0:
        return None
    running = 0.0
    for age, w in sorted(weighted):
        running += w
        if running >= total / 2:
            return float(age * months)
    return None  # pragma: no cover - the loop always reaches half the total
