"""Scores from SQL aggregates against the domain's answer-level functions: NPS, CSAT, CES
overall and by channel, tier, segment, month and week (store time); gaps, IPA and the
customer value analysis; closing the loop on unhappy answers."""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select, update

from patron.analytics.models import CustomerScore
from patron.auth import Scope
from patron.customers.models import Touchpoint
from patron.db import unit_of_work
from patron.feedback import domain
from patron.feedback.domain import Estimate
from patron.feedback.models import SurveyInvitation, SurveyResponse
from patron.feedback.schemas import EstimateOut, ScoreSet
from patron.feedback.scores import (
    ces_from_counts,
    csat_from_counts,
    mean_from_counts,
    nps_from_counts,
    period_edges,
    scores,
)
from patron.kit.clock import zone
from patron.loyalty import membership
from patron.loyalty.models import LoyaltyMember
from patron.stores.models import Store
from patron.support.models import Priority, Ticket, TicketChannel
from tests.conftest import key_headers
from tests.feedback.test_surveys_api import (
    DAY,
    NOW,
    SIMPLE,
    T0,
    add_customer,
    create_survey,
    happy,
    one_token,
    submit,
)

CHANNELS = ["web", "app", None]
TIERS = ["silver", "gold"]
SEGMENTS = ["champions", "at_risk", None]
# Submission instants across a month boundary of the store's time zone (Shanghai, UTC+8):
# 2026-03-31 17:00 UTC is already 1 April there.
INSTANTS = [
    T0,
    T0 + 10 * DAY,
    datetime.fromisoformat("2026-03-31T15:59:00+00:00"),
    datetime.fromisoformat("2026-03-31T17:00:00+00:00"),
    T0 + 40 * DAY,
    T0 + 65 * DAY,
]


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) < 1e-9


def same(out: EstimateOut, expected: Estimate) -> None:
    assert out.n == expected.n
    for name in ("value", "low", "high"):
        assert close(getattr(out, name), getattr(expected, name)), (name, out, expected)


def check(s: ScoreSet, answers: list[dict[str, Any]]) -> None:
    same(s.nps, domain.nps(a["nps"] for a in answers))
    same(s.csat, domain.csat(a["csat"] for a in answers))
    same(s.ces, domain.ces(a["ces"] for a in answers if "ces" in a))
    b = domain.nps_breakdown(a["nps"] for a in answers)
    assert (s.nps.promoters, s.nps.passives, s.nps.detractors) == (
        b.promoters,
        b.passives,
        b.detractors,
    )


def test_estimators_from_counts_equal_the_domain() -> None:
    rng = random.Random(7)
    for n in (0, 1, 2, 5, 40, 300):
        scores_ = [rng.randint(0, 10) for _ in range(n)]
        counts: dict[float, int] = defaultdict(int)
        for v in scores_:
            counts[float(v)] += 1
        est, b = nps_from_counts(counts)
        assert est == domain.nps(scores_) and b == domain.nps_breakdown(scores_)
        csat_scores = [rng.randint(1, 5) for _ in range(n)]
        c2: dict[float, int] = defaultdict(int)
        for v in csat_scores:
            c2[float(v)] += 1
        e, d = csat_from_counts(c2), domain.csat(csat_scores)
        assert e.n == d.n and all(
            close(getattr(e, f), getattr(d, f)) for f in ("value", "low", "high")
        )
        ces_scores = [rng.randint(1, 7) for _ in range(n)]
        c3: dict[float, int] = defaultdict(int)
        for v in ces_scores:
            c3[float(v)] += 1
        for got, want in (
            (ces_from_counts(c3), domain.ces(ces_scores)),
            (mean_from_counts(c3), domain.mean_score(ces_scores)),
        ):
            assert got.n == want.n
            assert all(close(getattr(got, f), getattr(want, f)) for f in ("value", "low", "high"))


def test_period_edges_follow_the_store_calendar() -> None:
    labels, edges = period_edges("month", INSTANTS[2], INSTANTS[3], "Asia/Shanghai")
    assert labels == ["2026-03", "2026-04"]
    assert [e.isoformat() for e in edges] == [
        "2026-02-28T16:00:00+00:00",
        "2026-03-31T16:00:00+00:00",
        "2026-04-30T16:00:00+00:00",
    ]
    weeks, _ = period_edges("week", T0, T0 + 8 * DAY, "Asia/Shanghai")
    assert weeks == ["2026-03-02", "2026-03-09"]


def set_tier(engine: Engine, store: Store, customer_id: int, tier: str) -> None:
    with unit_of_work(engine) as session:
        session.execute(
            LoyaltyMember.__table__.insert().values(
                membership.new_member_row(store.id, customer_id, T0) | {"tier": tier}
            )
        )


def set_segment(engine: Engine, store: Store, customer_id: int, segment: str) -> None:
    with unit_of_work(engine) as session:
        session.add(
            CustomerScore(
                customer_id=customer_id,
                store_id=store.id,
                run_id=1,
                segment=segment,
                computed_at=T0,
            )
        )


def set_channel(engine: Engine, tok: str, channel: str | None) -> None:
    with unit_of_work(engine) as session:
        session.execute(
            update(SurveyInvitation)
            .where(SurveyInvitation.nonce == tok.split(".")[0])
            .values(channel=channel)
        )


def local_month(when: datetime) -> str:
    return when.astimezone(zone("Asia/Shanghai")).strftime("%Y-%m")


@contextmanager
def answer_reads(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements that read ``survey_answers`` while in the block."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "survey_answers" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def test_scores_by_channel_tier_segment_and_period_equal_the_domain(
    client: TestClient, engine: Engine, store: Store
) -> None:
    rng = random.Random(42)
    optional_ces = {
        **SIMPLE,
        "questions": [
            {**q, "required": False} if q["id"] == "ces" else q for q in SIMPLE["questions"]
        ],
    }
    create_survey(engine, store, "s", recontact_days=0, definition=optional_ces)
    create_survey(engine, store, "other", recontact_days=0, definition=optional_ces)
    groups: dict[str, dict[Any, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    everything: list[dict[str, Any]] = []
    whens: list[datetime] = []
    for i in range(48):
        cid = add_customer(engine, store, f"C-{i}")
        tier, segment, channel = TIERS[i % 2], SEGMENTS[i % 3], CHANNELS[(i // 2) % 3]
        set_tier(engine, store, cid, tier)
        if segment is not None:
            set_segment(engine, store, cid, segment)
        when = INSTANTS[i % len(INSTANTS)] + timedelta(minutes=i)
        key = "s" if i % 4 else "other"
        tok = one_token(engine, store, key, f"C-{i}", now=when - timedelta(hours=1))
        set_channel(engine, tok, channel)
        answers = {
            "nps": rng.randint(0, 10),
            "csat": rng.randint(1, 5),
            "quality": {"expectation": rng.randint(1, 7), "experience": rng.randint(1, 7)},
        }
        if rng.random() < 0.8:
            answers["ces"] = rng.randint(1, 7)
        submit(engine, tok, answers, now=when)
        everything.append(answers)
        whens.append(when)
        for by, k in (
            ("channel", channel),
            ("tier", tier),
            ("segment", segment),
            ("month", local_month(when)),
            ("survey", key),
        ):
            groups[by][k].append(answers)

    def report(**kw: Any) -> Any:
        with unit_of_work(engine) as session:
            return scores.report(session, session.merge(store), **kw)

    # Weeks (Monday to Sunday, store time), bucketed here by the same bounds.
    labels, edges = period_edges("week", min(whens), max(whens), "Asia/Shanghai")
    for when, answers in zip(whens, everything, strict=True):
        groups["week"][labels[bisect_right(edges, when) - 1]].append(answers)
    with answer_reads(engine) as seen:
        overall = report()
    assert len(seen) == 1  # overall and trend: the answers are read once
    assert overall.responses == 48
    check(overall.overall, everything)
    for by in ("channel", "tier", "segment", "month", "survey", "week"):
        with answer_reads(engine) as seen:
            out = report(by=by)
        assert len(seen) == 1, by  # overall, trend and groups: the answers read once
        if by == "week":
            assert [g.key for g in out.groups] == labels  # every week, empty ones too
            got = {g.key: g for g in out.groups if g.nps.n}
            assert set(got) == set(groups[by])
            for k, answers in groups[by].items():
                check(got[k], answers)
            continue
        got = {g.key: g for g in out.groups}
        assert set(got) == {k if k is None else str(k) for k in groups[by]}, by
        for k, answers in groups[by].items():
            check(got[k], answers)
    trend = overall.trend
    assert [g.key for g in trend] == ["2026-03", "2026-04", "2026-05"]
    for g in trend:
        check(g, groups["month"][g.key])
    # A survey filter and a window.
    only = report(survey_key="s", since=T0 + DAY)
    expected = [
        a
        for i, a in enumerate(everything)
        if i % 4 and INSTANTS[i % len(INSTANTS)] + timedelta(minutes=i) >= T0 + DAY
    ]
    check(only.overall, expected)
    weeks = report(by="week")
    assert sum(g.nps.n for g in weeks.groups) == 48
    assert [g.model_dump() for g in weeks.trend] == [g.model_dump() for g in trend]
    # The API answers the same.
    read = key_headers(engine, store, Scope.read)
    res = client.get("/v1/feedback/scores", params={"by": "tier"}, headers=read)
    assert res.status_code == 200, res.text
    api = {g["key"]: g for g in res.json()["groups"]}
    assert api["gold"]["nps"]["n"] == len(groups["tier"]["gold"])
    assert client.get("/v1/feedback/scores?by=colour", headers=read).status_code == 422
    bad = client.get(
        "/v1/feedback/scores",
        params={"since": "2026-05-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"},
        headers=read,
    )
    assert bad.status_code == 422


def test_gaps_and_ipa_equal_the_domain(client: TestClient, engine: Engine, store: Store) -> None:
    rng = random.Random(3)
    create_survey(engine, store, "s", recontact_days=0)
    raw: list[dict[str, Any]] = []
    for i in range(30):
        add_customer(engine, store, f"C-{i}")
        tok = one_token(engine, store, "s", f"C-{i}", now=NOW)
        answers = happy(nps=9)
        answers["quality"] = {"expectation": rng.randint(1, 7), "experience": rng.randint(3, 7)}
        if i % 3:
            answers["delivery"] = {
                "expectation": rng.randint(4, 7),
                "experience": rng.randint(1, 5),
            }
        submit(engine, tok, answers)
        raw.append(answers)
    definition = domain.SurveyDefinition.model_validate(SIMPLE)
    all_answers = [a for r in raw for a in domain.validate_answers(definition, r)]
    want = {g.attribute: g for g in domain.attribute_gaps(all_answers)}
    read = key_headers(engine, store, Scope.read)
    res = client.get("/v1/feedback/gaps", headers=read)
    assert res.status_code == 200, res.text
    body = res.json()
    assert [lvl["zh"] for lvl in body["levels"]] == [
        "非常满意",
        "比较满意",
        "一般",
        "比较不满意",
        "非常不满意",
    ]
    got = {g["attribute"]: g for g in body["attributes"]}
    assert list(got) == ["quality", "delivery"]  # the definition's order
    for attribute, g in got.items():
        w = want[attribute]
        assert g["n"] == w.n and g["level"] == w.level.value
        assert g["level_label"] == domain.GAP_LABELS[w.level]
        assert g["distribution"] == {k.value: v for k, v in w.distribution.items()}
        assert close(g["gap_mean"], w.gap_mean)
        assert close(g["expectation_mean"], w.expectation_mean)
        assert close(g["gap"]["low"], w.gap.low) and close(g["gap"]["high"], w.gap.high)
        assert g["label"] == {
            "en": attribute.capitalize(),
            "zh": "质量" if attribute == "quality" else "配送",
        }
    ipa = client.get("/v1/feedback/ipa", headers=read).json()
    want_ipa = {p.attribute: p for p in domain.ipa_from_gaps(list(want.values()))}
    assert {p["attribute"]: p["quadrant"] for p in ipa["points"]} == {
        a: p.quadrant.value for a, p in want_ipa.items()
    }
    assert client.get("/v1/feedback/ipa?source=other", headers=read).status_code == 422


COMPETITORS = ["JD", 'Tmall "Official"']


def test_value_analysis_equals_the_domain(client: TestClient, engine: Engine, store: Store) -> None:
    rng = random.Random(11)
    create_survey(
        engine,
        store,
        "value",
        template="competitor_value",
        params={"competitors": COMPETITORS},
        recontact_days=0,
    )
    definition = domain.SurveyDefinition.model_validate(
        client.get("/v1/surveys/value", headers=key_headers(engine, store, Scope.admin)).json()[
            "definition"
        ]
    )
    raw: list[dict[str, Any]] = []
    for i in range(25):
        add_customer(engine, store, f"C-{i}")
        tok = one_token(engine, store, "value", f"C-{i}", now=NOW)
        answers: dict[str, Any] = {}
        for q in definition.questions:
            ratings: dict[str, Any] = {"us": rng.randint(4, 10), "JD": rng.randint(1, 9)}
            if rng.random() < 0.6:
                ratings[COMPETITORS[1]] = rng.randint(1, 10)
            answers[q.id] = {"importance": rng.randint(1, 5), "ratings": ratings}
        submit(engine, tok, answers)
        raw.append(answers)
    want = domain.value_analysis([a for r in raw for a in domain.validate_answers(definition, r)])
    read = key_headers(engine, store, Scope.read)
    with answer_reads(engine) as seen:
        res = client.get("/v1/feedback/value-analysis", params={"survey": "value"}, headers=read)
    assert res.status_code == 200, res.text
    assert len(seen) == 1  # importance and every party's ratings: the answers read once
    got = res.json()
    assert got["n"] == want.n and got["competitors"] == want.competitors
    assert got["ranking"] == want.ranking
    by_attribute = {a["attribute"]: a for a in got["attributes"]}
    for w in want.attributes:
        g = by_attribute[w.attribute]
        assert g["cost"] == w.cost and g["n"] == w.n
        assert close(g["importance"], w.importance) and close(g["weight"], w.weight)
        for party, rating in w.ratings.items():
            assert close(g["ratings"][party], rating)
        for gc, wc in zip(g["comparisons"], w.comparisons, strict=True):
            assert gc["competitor"] == wc.competitor and gc["verdict"] == wc.verdict.value
            for name in ("value", "low", "high"):
                assert close(gc["difference"][name], getattr(wc.difference, name))
    for gp, wp in zip(got["parties"], want.parties, strict=True):
        assert gp["party"] == wp.party and gp["rank"] == wp.rank
        assert close(gp["value"], wp.value) and close(gp["benefit"], wp.benefit)
    # Step 5, periodically: a window with no answers analyses nothing.
    empty = client.get(
        "/v1/feedback/value-analysis",
        params={"until": "2020-01-01T00:00:00Z"},
        headers=read,
    ).json()
    assert empty["n"] == 0 and empty["attributes"] == []
    ipa = client.get("/v1/feedback/ipa", params={"source": "comparison"}, headers=read).json()
    assert {p["attribute"] for p in ipa["points"]} == {
        a.attribute for a in want.attributes if not a.cost
    }


# -- closing the loop ---------------------------------------------------------------------


def tickets_of(engine: Engine, store: Store) -> list[Ticket]:
    with unit_of_work(engine) as session:
        rows = session.scalars(
            select(Ticket).where(Ticket.store_id == store.id).order_by(Ticket.id)
        ).all()
        for r in rows:
            session.expunge(r)
        return list(rows)


def response_of(engine: Engine, response_id: int) -> SurveyResponse:
    with unit_of_work(engine) as session:
        row = session.get(SurveyResponse, response_id)
        assert row is not None
        session.expunge(row)
        return row


def test_unhappy_answers_open_a_ticket_once(engine: Engine, store: Store) -> None:
    for ext in ("A", "B", "C", "D"):
        add_customer(engine, store, ext)
    create_survey(engine, store, "s", recontact_days=0)
    detractor = submit(engine, one_token(engine, store, "s", "A", now=NOW), happy(nps=3))
    unhappy = happy(nps=8)
    unhappy["delivery"] = {"expectation": 7, "experience": 2}  # very dissatisfied
    very = submit(engine, one_token(engine, store, "s", "B", now=NOW), unhappy)
    fine = submit(engine, one_token(engine, store, "s", "C", now=NOW), happy(nps=7))
    tickets = tickets_of(engine, store)
    assert [(t.source, t.source_ref, t.channel) for t in tickets] == [
        ("survey", f"survey-response:{detractor.id}", TicketChannel.survey),
        ("survey", f"survey-response:{very.id}", TicketChannel.survey),
    ]
    assert tickets[1].priority is Priority.high
    assert "very dissatisfied with delivery" in tickets[1].subject
    assert response_of(engine, detractor.id).ticket_id == tickets[0].id
    assert response_of(engine, fine.id).ticket_id is None


def test_anonymous_responses_keep_no_customer_and_open_no_ticket(
    engine: Engine, store: Store
) -> None:
    cid = add_customer(engine, store, "A")
    set_tier(engine, store, cid, "gold")
    set_segment(engine, store, cid, "champions")
    create_survey(engine, store, "anon", anonymous=True)
    tok = one_token(engine, store, "anon", "A", now=NOW)
    set_channel(engine, tok, "app")
    out = submit(engine, tok, happy(nps=0), now=NOW + timedelta(minutes=37, seconds=5))
    row = response_of(engine, out.id)
    assert row.customer_id is None and row.invitation_id is None and row.subject is None
    assert (row.tier, row.segment, row.channel) == ("gold", "champions", "app")
    assert row.submitted_at == (NOW + timedelta(minutes=37)).replace(minute=0, second=0)
    assert row.ticket_id is None and tickets_of(engine, store) == []
    with unit_of_work(engine) as session:
        touch = session.scalars(select(Touchpoint).where(Touchpoint.customer_id == cid)).all()
    assert touch == []


@pytest.mark.parametrize("by", ["channel", "tier", "segment", "survey", "month", "week"])
def test_an_empty_store_scores_nothing(
    client: TestClient, engine: Engine, store: Store, by: str
) -> None:
    read = key_headers(engine, store, Scope.read)
    res = client.get("/v1/feedback/scores", params={"by": by}, headers=read)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["responses"] == 0 and body["groups"] == [] and body["trend"] == []
    assert body["overall"]["nps"] == {
        "value": None,
        "low": None,
        "high": None,
        "n": 0,
        "promoters": 0,
        "passives": 0,
        "detractors": 0,
    }
