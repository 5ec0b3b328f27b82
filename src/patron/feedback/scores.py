"""Scores of the survey answers, from SQL aggregates.

The database returns counts per value (and group) or sums, never the answers one by
one, so a store with millions of answers is scored in a few small queries. The
estimators below take those counts and compute exactly what ``domain`` computes from
the answers (tested for equality):

- NPS = % promoters (9–10) − % detractors (0–6), normal interval for the difference of
  two multinomial shares; CSAT = % of 4–5 answers with a Wilson interval; CES and any
  mean with Student's t interval (``domain.nps``, ``csat``, ``ces``, ``mean_score``).
- Gaps per attribute: satisfaction = experience − expectation in five levels
  (``domain.attribute_gaps``), importance–performance (``domain.ipa_from_gaps``).
- Customer value analysis against competitors (``domain.value_analysis``) from sums of
  ratings and of paired differences us − competitor.

Periods (``by=month|week`` and the monthly trend) follow the store's calendar: their UTC
bounds are computed here and the database only sorts answers into them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, get_args

from sqlalchemy.orm import Session

from patron.errors import Invalid
from patron.feedback import domain
from patron.feedback import repository as repo
from patron.feedback.domain import US, Estimate
from patron.feedback.models import Survey
from patron.feedback.schemas import (
    AttributeValueOut,
    ComparisonOut,
    EstimateOut,
    GapOut,
    GapsOut,
    IpaOut,
    IpaPointOut,
    LevelOut,
    NpsOut,
    PartyValueOut,
    ScoreGroup,
    ScoreSet,
    ScoresOut,
    ValueAnalysisOut,
)
from patron.kit.clock import as_utc, zone
from patron.stores.models import Store

By = Literal["month", "week", "channel", "tier", "segment", "survey"]
BY_VALUES: tuple[str, ...] = get_args(By)
MAX_PERIODS = 120  # the newest periods kept when a range holds more
EMPTY = domain.EMPTY

# -- estimators from counts ----------------------------------------------------------------


def nps_from_counts(counts: Mapping[float, int]) -> tuple[Estimate, domain.NpsBreakdown]:
    """``domain.nps`` and ``domain.nps_breakdown`` of answers given as value → count."""
    n = sum(counts.values())
    promoters = sum(c for v, c in counts.items() if v >= 9)
    detractors = sum(c for v, c in counts.items() if v <= 6)
    breakdown = domain.NpsBreakdown(promoters, n - promoters - detractors, detractors, n)
    return domain.nps_estimate(breakdown), breakdown


def csat_from_counts(counts: Mapping[float, int]) -> Estimate:
    """``domain.csat``: the share of 4–5 answers (in %) with a Wilson interval."""
    satisfied = sum(c for v, c in counts.items() if v >= 4)
    return domain.csat_estimate(satisfied, sum(counts.values()))


def mean_from_sums(n: int, total: float, squares: float) -> Estimate:
    """``domain.mean_score`` from n, Σx and Σx²: the mean and its t 95% interval.

    With whole-number answers the sums are exact integers, and so is the variance's
    numerator n·Σx² − (Σx)²."""
    if n == 0:
        return EMPTY
    mean = total / n
    if n == 1:
        return Estimate(mean, None, None, 1)
    var = max(0.0, (n * squares - total * total) / (n * (n - 1)))
    return domain.t_estimate(mean, math.sqrt(var), n)


def mean_from_counts(counts: Mapping[float, int]) -> Estimate:
    n = sum(counts.values())
    total = sum(v * c for v, c in counts.items())
    squares = sum(v * v * c for v, c in counts.items())
    return mean_from_sums(n, total, squares)


def ces_from_counts(counts: Mapping[float, int]) -> Estimate:
    """``domain.ces``: the mean of 1–7 answers, its interval clipped to the scale."""
    return domain.clipped(mean_from_counts(counts), domain.CES_SCALE)


def gaps_from_counts(
    rows: Iterable[tuple[str, int, int, int]], order: Sequence[str] = ()
) -> list[domain.AttributeGap]:
    """``domain.attribute_gaps`` from (attribute, expectation, experience, count) rows;
    attributes in ``order`` first, then the others by name."""
    by_attribute: dict[str, list[tuple[int, int, int]]] = {}
    for attribute, expectation, experience, n in rows:
        by_attribute.setdefault(attribute, []).append((expectation, experience, n))
    ranked = [a for a in order if a in by_attribute]
    ranked += sorted(a for a in by_attribute if a not in ranked)
    out: list[domain.AttributeGap] = []
    for attribute in ranked:
        items = by_attribute[attribute]
        n = sum(c for _, _, c in items)
        distribution = dict.fromkeys(domain.GapLevel, 0)
        gaps: Counter[float] = Counter()
        for expectation, experience, c in items:
            distribution[domain.gap_level(expectation, experience)] += c
            gaps[float(experience - expectation)] += c
        estimate = mean_from_counts(gaps)
        assert estimate.value is not None
        out.append(
            domain.AttributeGap(
                attribute=attribute,
                n=n,
                expectation_mean=sum(e * c for e, _, c in items) / n,
                experience_mean=sum(x * c for _, x, c in items) / n,
                gap_mean=estimate.value,
                gap=estimate,
                level=domain.level_of_gap(estimate.value),
                distribution=distribution,
            )
        )
    return out


# -- periods of the store's calendar -------------------------------------------------------


def _instant(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(), zone(tz)).astimezone(UTC)


def period_edges(
    unit: Literal["month", "week"], first: datetime, last: datetime, tz: str
) -> tuple[list[str], list[datetime]]:
    """Labels and UTC bounds of the store-time months (or Monday weeks) from the one of
    ``first`` to the one of ``last``; the newest ``MAX_PERIODS`` when there are more."""
    start = as_utc(first).astimezone(zone(tz)).date()
    end = as_utc(last).astimezone(zone(tz)).date()
    days: list[date] = []
    if unit == "month":
        day = start.replace(day=1)
        while day <= end:
            days.append(day)
            day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        labels = [d.strftime("%Y-%m") for d in days]
    else:
        day = start - timedelta(days=start.weekday())
        while day <= end:
            days.append(day)
            day += timedelta(days=7)
        labels = [d.isoformat() for d in days]
    days.append(day)  # the end of the last period
    if len(labels) > MAX_PERIODS:
        labels, days = labels[-MAX_PERIODS:], days[-MAX_PERIODS - 1 :]
    return labels, [_instant(d, tz) for d in days]


# -- the service ---------------------------------------------------------------------------


def estimate_out(e: Estimate) -> EstimateOut:
    return EstimateOut(value=e.value, low=e.low, high=e.high, n=e.n)


def _score_set(
    nps: Mapping[float, int], csat: Mapping[float, int], ces: Mapping[float, int]
) -> ScoreSet:
    estimate, b = nps_from_counts(nps)
    return ScoreSet(
        nps=NpsOut(
            **estimate_out(estimate).model_dump(),
            promoters=b.promoters,
            passives=b.passives,
            detractors=b.detractors,
        ),
        csat=estimate_out(csat_from_counts(csat)),
        ces=estimate_out(ces_from_counts(ces)),
    )


def _definitions(
    session: Session, store: Store, survey_key: str | None
) -> list[domain.SurveyDefinition]:
    """The definitions of the surveys in scope, newest version first."""
    rows: Sequence[Survey] = repo.surveys_of_keys(session, store.id, survey_key)
    out = []
    for s in sorted(rows, key=lambda s: (s.current, s.version, s.id), reverse=True):
        out.append(domain.SurveyDefinition.model_validate(s.definition))
    return out


def _score_groups(
    counts: Mapping[str, Mapping[Any, Mapping[float, int]]], labels: Sequence[str] | None
) -> list[ScoreGroup]:
    """A score set per group from kind -> group -> value -> count: every label in
    order (periods), else the groups found, by name, None last."""
    if labels is not None:
        keys: list[Any] = list(labels)
    else:
        found = {k for per in counts.values() for k in per}
        keys = sorted(found, key=lambda k: (k is None, str(k)))
    return [
        ScoreGroup(
            key=None if k is None else str(k),
            **_score_set(
                counts.get("nps", {}).get(k, {}),
                counts.get("csat", {}).get(k, {}),
                counts.get("ces", {}).get(k, {}),
            ).model_dump(),
        )
        for k in keys
    ]


def _window(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise Invalid("since: must be before `until`")


class ScoreService:
    def report(
        self,
        session: Session,
        store: Store,
        *,
        survey_key: str | None = None,
        by: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> ScoresOut:
        """NPS, CSAT and CES overall, by ``by`` (month, week, channel, tier, segment,
        survey) and by month (the trend), each with its 95% interval."""
        if by is not None and by not in BY_VALUES:
            raise Invalid(f"by: one of {', '.join(BY_VALUES)}")
        _window(since, until)
        scope: dict[str, Any] = {"survey_key": survey_key, "since": since, "until": until}
        responses, first, last = repo.response_summary(session, store.id, **scope)
        overall: list[ScoreGroup] = []
        groups: list[ScoreGroup] = []
        trend: list[ScoreGroup] = []
        if first is not None and last is not None:  # else no answers either
            overall, groups, trend = self._grouped(session, store, by, scope, first, last)
        return ScoresOut(
            survey_key=survey_key,
            since=since,
            until=until,
            by=by,
            responses=responses,
            overall=overall[0] if overall else _score_set({}, {}, {}),
            groups=groups,
            trend=trend,
        )

    def _grouped(
        self,
        session: Session,
        store: Store,
        by: str | None,
        scope: dict[str, Any],
        first: datetime,
        last: datetime,
    ) -> tuple[list[ScoreGroup], list[ScoreGroup], list[ScoreGroup]]:
        """The overall row, the ``by`` groups and the monthly trend from one query at the
        finest grain (month × group × question type × value), rolled up here."""
        months, month_edges = period_edges("month", first, last, store.timezone)
        labels: list[str] = []
        group: Any = None
        if by == "week":
            labels, edges = period_edges("week", first, last, store.timezone)
            group = repo.group_column(by, edges)
        elif by is not None and by != "month":
            group = repo.group_column(by)
        rows = repo.score_counts(session, store.id, repo.period_case(month_edges), group, **scope)
        totals: dict[str, Counter[float]] = {}
        per_month: dict[str, dict[Any, Counter[float]]] = {k: {} for k in repo.SCORE_TYPES}
        per_group: dict[str, dict[Any, Counter[float]]] = {k: {} for k in repo.SCORE_TYPES}
        for p, g, kind, value, n in rows:
            totals.setdefault(kind, Counter())[value] += n
            if 0 <= int(p) < len(months):
                per_month[kind].setdefault(months[int(p)], Counter())[value] += n
            if labels:
                if not 0 <= int(g) < len(labels):
                    continue
                g = labels[int(g)]
            per_group[kind].setdefault(g, Counter())[value] += n
        overall = {kind: {"all": c} for kind, c in totals.items()}
        trend = _score_groups(per_month, months)
        if by is None:
            return _score_groups(overall, None), [], trend
        if by == "month":
            return _score_groups(overall, None), trend, trend
        return _score_groups(overall, None), _score_groups(per_group, labels or None), trend

    # -- expectation vs experience --------------------------------------------------------

    def attribute_gaps(
        self,
        session: Session,
        store: Store,
        *,
        survey_key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[domain.AttributeGap], dict[str, dict[str, str]]]:
        """The gaps per attribute and the attributes' labels."""
        _window(since, until)
        labels: dict[str, dict[str, str]] = {}
        order: list[str] = []
        for d in reversed(_definitions(session, store, survey_key)):  # newest label wins
            for q in d.questions:
                if isinstance(q, domain.ExpectationExperienceQuestion):
                    labels[q.attribute] = dict(q.attribute_label)
                    if q.attribute not in order:
                        order.append(q.attribute)
        rows = repo.pair_counts(session, store.id, survey_key=survey_key, since=since, until=until)
        return gaps_from_counts(rows, order), labels

    def gaps(
        self,
        session: Session,
        store: Store,
        *,
        survey_key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> GapsOut:
        """Satisfaction = experience − expectation per attribute, in five levels."""
        found, labels = self.attribute_gaps(
            session, store, survey_key=survey_key, since=since, until=until
        )
        return GapsOut(
            survey_key=survey_key,
            since=since,
            until=until,
            levels=[
                LevelOut(level=level.value, en=text["en"], zh=text["zh"])
                for level, text in domain.GAP_LABELS.items()
            ],
            attributes=[
                GapOut(
                    attribute=g.attribute,
                    label=labels.get(g.attribute),
                    n=g.n,
                    expectation_mean=g.expectation_mean,
                    experience_mean=g.experience_mean,
                    gap_mean=g.gap_mean,
                    gap=estimate_out(g.gap),
                    level=g.level.value,
                    level_label=dict(domain.GAP_LABELS[g.level]),
                    distribution={k.value: v for k, v in g.distribution.items()},
                )
                for g in found
            ],
        )

    def ipa(
        self,
        session: Session,
        store: Store,
        *,
        survey_key: str | None = None,
        source: str = "pairs",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> IpaOut:
        """Importance–performance analysis: from expectation/experience pairs (mean
        expectation as importance, mean experience as performance) or from comparison
        questions (mean importance 1–5, our mean rating 1–10, benefit attributes)."""
        if source not in ("pairs", "comparison"):
            raise Invalid("source: one of pairs, comparison")
        labels: dict[str, dict[str, str]]
        if source == "pairs":
            found, labels = self.attribute_gaps(
                session, store, survey_key=survey_key, since=since, until=until
            )
            points = domain.ipa_from_gaps(found)
        else:
            analysis, labels = self._value(session, store, survey_key, since, until)
            points = domain.importance_performance(
                [
                    (a.attribute, a.importance, a.ratings[US] or 0.0)
                    for a in analysis.attributes
                    if not a.cost and a.ratings.get(US) is not None
                ]
            )
        cross = domain.ipa_crosshairs([(p.attribute, p.importance, p.performance) for p in points])
        return IpaOut(
            survey_key=survey_key,
            source=source,
            importance_mean=cross[0] if cross else None,
            performance_mean=cross[1] if cross else None,
            points=[
                IpaPointOut(
                    attribute=p.attribute,
                    label=labels.get(p.attribute),
                    importance=p.importance,
                    performance=p.performance,
                    quadrant=p.quadrant.value,
                )
                for p in points
            ],
        )

    # -- customer value analysis ----------------------------------------------------------

    def _value(
        self,
        session: Session,
        store: Store,
        survey_key: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> tuple[domain.ValueAnalysis, dict[str, dict[str, str]]]:
        _window(since, until)
        scope: dict[str, Any] = {"survey_key": survey_key, "since": since, "until": until}
        labels: dict[str, dict[str, str]] = {}
        costs: dict[str, bool] = {}
        order: list[str] = []
        named: list[str] = []
        for d in _definitions(session, store, survey_key):  # newest first
            for q in d.questions:
                if isinstance(q, domain.ComparisonQuestion):
                    labels.setdefault(q.attribute, dict(q.attribute_label))
                    costs.setdefault(q.attribute, q.cost)
                    if q.attribute not in order:
                        order.append(q.attribute)
                    named.extend(c for c in q.competitors if c not in named)
        importance, stats = repo.comparison_stats(session, store.id, [US, *named], **scope)
        sums = {US: stats[US]}
        competitors = []
        for name in named:
            found = stats[name]
            if any(n for n, *_ in found.values()):
                sums[name] = found
                competitors.append(name)
        attributes = [a for a in order if a in importance]
        attributes += sorted(a for a in importance if a not in attributes)
        return value_from_sums(attributes, costs, importance, sums, competitors), labels

    def value_analysis(
        self,
        session: Session,
        store: Store,
        *,
        survey_key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> ValueAnalysisOut:
        """Customer value analysis (seed 003) of the comparison answers in [since, until):
        attribute importance and weights, ratings of us and each competitor, us − each
        competitor attribute by attribute, perceived value = benefit − cost. Step 5,
        "repeat periodically", is a call per period."""
        analysis, labels = self._value(session, store, survey_key, since, until)
        return ValueAnalysisOut(
            survey_key=survey_key,
            since=since,
            until=until,
            n=analysis.n,
            competitors=analysis.competitors,
            attributes=[
                AttributeValueOut(
                    attribute=a.attribute,
                    label=labels.get(a.attribute),
                    cost=a.cost,
                    n=a.n,
                    importance=a.importance,
                    weight=a.weight,
                    ratings=a.ratings,
                    comparisons=[
                        ComparisonOut(
                            competitor=c.competitor,
                            difference=estimate_out(c.difference),
                            verdict=c.verdict.value,
                        )
                        for c in a.comparisons
                    ],
                )
                for a in analysis.attributes
            ],
            parties=[
                PartyValueOut(
                    party=p.party, benefit=p.benefit, cost=p.cost, value=p.value, rank=p.rank
                )
                for p in analysis.parties
            ],
            ranking=analysis.ranking,
        )


def value_from_sums(
    attributes: Sequence[str],
    costs: Mapping[str, bool],
    importance: Mapping[str, tuple[int, int, int]],
    sums: Mapping[str, Mapping[str, tuple[int, int, int, int]]],
    competitors: Sequence[str],
) -> domain.ValueAnalysis:
    """``domain.value_analysis`` from per-attribute sums.

    ``importance``: attribute → (answers, Σ importance, importances given); ``sums``:
    party → attribute → (ratings, Σ rating, Σ (us − rating), Σ (us − rating)²)."""
    parties = [US, *competitors]
    draft: list[tuple[str, bool, int, float]] = []
    for attribute in attributes:
        n, total, given = importance.get(attribute, (0, 0, 0))
        if n == 0:
            continue
        draft.append((attribute, costs.get(attribute, False), n, total / given if given else 0.0))
    totals = {kind: math.fsum(imp for _, c, _, imp in draft if c is kind) for kind in (False, True)}
    values: list[domain.AttributeValue] = []
    for attribute, cost, n, mean_importance in draft:
        ratings: dict[str, float | None] = {}
        for party in parties:
            count, total, _, _ = sums.get(party, {}).get(attribute, (0, 0, 0, 0))
            ratings[party] = total / count if count else None
        comparisons = []
        for competitor in competitors:
            count, _, diff, diff2 = sums.get(competitor, {}).get(attribute, (0, 0, 0, 0))
            difference = mean_from_sums(count, diff, diff2)
            comparisons.append(
                domain.Comparison(competitor, difference, domain.verdict(difference, cost))
            )
        total_importance = totals[cost]
        values.append(
            domain.AttributeValue(
                attribute=attribute,
                cost=cost,
                n=n,
                importance=mean_importance,
                weight=mean_importance / total_importance if total_importance > 0 else 0.0,
                ratings=ratings,
                comparisons=comparisons,
            )
        )
    ranked, ranking = domain.rank_parties(values, parties)
    return domain.ValueAnalysis(
        attributes=values,
        parties=ranked,
        ranking=ranking,
        competitors=list(competitors),
        n=sum(n for _, _, n, _ in draft),
    )


scores = ScoreService()
