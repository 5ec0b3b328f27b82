"""The dashboard's chart data (patron.web.charts) on SQLite and PostgreSQL, from small
constructed stores whose figures are worked out by hand: the cohort matrix and the Pareto
deciles of a real analysis run of five customers, the RFM grid and CLV buckets of
hand-written scores, the NPS trend, gaps and competitor comparison of a few answers, the
tickets soonest due first; an empty state (never an error) before any run or answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine

from patron.analytics.models import AnalyticsRun, CustomerScore, RunStatus
from patron.analytics.report import REPORT_VERSION, AnalysisOptions
from patron.analytics.service import analytics
from patron.db import unit_of_work
from patron.orders.schemas import OrderIn
from patron.orders.service import orders
from patron.stores.models import Store
from patron.support.models import Priority, Ticket, TicketChannel, TicketStatus
from patron.web import charts
from tests.conftest import new_store
from tests.feedback.test_surveys_api import (
    SIMPLE,
    add_customer,
    create_survey,
    one_token,
    submit,
    text,
)

MAR = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # noon in Shanghai, the stores' zone
APR = datetime(2026, 4, 10, 4, 0, tzinfo=UTC)


def approx(a: float | None, b: float, tol: float = 1e-6) -> bool:
    return a is not None and abs(a - b) < tol


# -- analytics: a real run on five customers ------------------------------------------------


def order(engine: Engine, store: Store, ext: str, customer: str, at: datetime, amount: str) -> None:
    body = {
        "external_id": ext,
        "customer_external_id": customer,
        "status": "delivered",
        "currency": "CNY",
        "placed_at": at.isoformat(),
        "paid_at": at.isoformat(),
        "delivered_at": (at + timedelta(days=1)).isoformat(),
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": amount}],
    }
    with unit_of_work(engine) as session:
        results = orders.upsert_many(
            session, session.merge(store), [OrderIn.model_validate(body)], now=at
        )
    assert all(r.status != "error" for r in results), results


@pytest.fixture(scope="module")
def analysed(engine: Engine) -> Store:
    """Five customers, net values 50, 20, 15, 10, 5 (total 100): A and B first buy in
    January, A again in February; C in February; D and E in March. Analysed as of 1 April
    (store time), so the cohorts are January (2), February (1) and March (2)."""
    store = new_store(engine)
    jan = datetime(2026, 1, 10, 4, 0, tzinfo=UTC)
    feb = datetime(2026, 2, 10, 4, 0, tzinfo=UTC)
    for ext in "ABCDE":
        add_customer(engine, store, ext)
    order(engine, store, "O1", "A", jan, "30.00")
    order(engine, store, "O2", "B", jan, "20.00")
    order(engine, store, "O3", "A", feb, "20.00")
    order(engine, store, "O4", "C", feb, "15.00")
    order(engine, store, "O5", "D", MAR, "10.00")
    order(engine, store, "O6", "E", MAR, "5.00")
    with unit_of_work(engine) as session:
        analytics.run(session, session.merge(store), AnalysisOptions(as_of=datetime(2026, 4, 1)))
    return store


def test_cohort_heatmap_of_a_run(engine: Engine, analysed: Store) -> None:
    with unit_of_work(engine) as session:
        found = charts.latest_report(session, session.merge(analysed))
        assert found is not None
        _, report = found
    heat = charts.cohort_heatmap(report, "en")
    assert heat.empty is None and heat.period == "month"
    assert [(r.cohort, r.size) for r in heat.rows] == [
        ("2026-01", 2),
        ("2026-02", 1),
        ("2026-03", 2),
    ]
    jan, feb, mar = heat.rows
    # January: both bought in their first month, A (1 of 2) again in February, none in March.
    assert [c.value for c in jan.cells] == [1.0, 0.5, 0.0]
    assert [c.text for c in jan.cells] == ["100%", "50%", "0.0%"]
    # Colour levels: the acquisition period 10; later cells relative to the largest (0.5).
    assert [c.level for c in jan.cells] == [10, 9, 0]
    assert [c.value for c in feb.cells] == [1.0, 0.0, None]
    assert [c.value for c in mar.cells] == [1.0, None, None]
    assert heat.ages == [0, 1, 2]
    # One period on: January 1 of 2, February 0 of 1 → 1 of 3 customers.
    assert "33.3%" in heat.summary
    assert charts.cohort_heatmap(report, "zh").title == "客户保持率（同期群）"


def test_pareto_deciles_of_a_run(engine: Engine, analysed: Store) -> None:
    with unit_of_work(engine) as session:
        _, report = charts.latest_report(session, session.merge(analysed)) or (None, {})
    chart = charts.pareto_chart(report, "en")
    assert chart.empty is None
    # Ranked values 50, 20, 15, 10, 5: the curve runs through (k/5, 0.5, 0.7, 0.85, 0.95, 1),
    # linear in between, so each tenth of the customers holds half of a fifth's share.
    bars = [25, 25, 10, 10, 7.5, 7.5, 5, 5, 2.5, 2.5]
    line = [25, 50, 60, 70, 77.5, 85, 90, 95, 97.5, 100]
    assert all(approx(g, w, 0.01) for g, w in zip(chart.spec["bars"]["data"], bars, strict=True))
    assert all(approx(g, w, 0.01) for g, w in zip(chart.spec["line"]["data"], line, strict=True))
    assert chart.spec["mark"]["value"] == 80
    assert chart.table is not None and chart.table.rows[1] == ["10–20%", "25.0%", "50.0%"]
    # The top 20% (one customer) bring 50%; the top 10% (half of A) earn 25 vs the next 25.
    assert "50.0%" in chart.summary and "1.0×" in chart.summary
    assert charts.pareto_chart(report, "zh").title == "帕累托曲线（二八法则）"


def test_analytics_view_of_a_run(engine: Engine, analysed: Store) -> None:
    with unit_of_work(engine) as session:
        store = session.merge(analysed)
        view = charts.analytics_view(session, store, "zh")
        grid = charts.rfm_counts(session, store.id)
        _, report = charts.latest_report(session, store) or (None, {})
    assert view.empty is None and view.run is not None
    kpis = {k.key: k.value for k in view.kpis}
    assert kpis["customers"] == "5" and kpis["orders"] == "6"
    assert kpis["net_revenue"] == "¥100" and kpis["top20_share"] == "50.0%"
    assert [c.id for c in view.charts] == ["rfm", "clv", "pareto", "nps", "gaps", "compare"]
    # Every customer is in one cell, and the cells add up to the run's segment sizes.
    assert sum(grid.values()) == 5
    per_segment: dict[str, int] = {}
    for cell, n in grid.items():
        segment = charts.SEGMENT_GRID[cell]
        per_segment[segment] = per_segment.get(segment, 0) + n
    assert per_segment == {
        s["segment"]: s["customers"] for s in report["rfm"]["segments"] if s["customers"]
    }
    rfm = view.charts[0]
    assert rfm.empty is None and rfm.title == "RFM 客户分群"
    assert sum(c["n"] for s in rfm.spec["series"] for c in s["data"]) == 5
    # No answers yet: the feedback charts say so.
    for chart in view.charts[3:]:
        assert chart.empty is not None and chart.spec == {}


# -- the empty store ---------------------------------------------------------------------


def test_empty_store_gives_empty_states(engine: Engine, store: Store) -> None:
    for lang in charts.LANGS:
        with unit_of_work(engine) as session:
            view = charts.analytics_view(session, session.merge(store), lang)
            rows = charts.survey_rows(session, session.merge(store), lang)
        assert view.run is None and view.kpis == []
        assert view.empty == charts.t("charts.no_run", lang)
        assert view.heatmap.empty == view.empty and view.heatmap.rows == []
        assert all(c.empty for c in view.charts) and rows == []
    assert charts.t("charts.no_run", "zh") != charts.t("charts.no_run", "en")


# -- scores written back: RFM grid and CLV buckets -----------------------------------------


def add_scores(engine: Engine, store: Store, rows: list[tuple[Any, ...]]) -> None:
    """A stored run (empty report) and a score row per (r, f, m, clv)."""
    with unit_of_work(engine) as session:
        run = AnalyticsRun(
            store_id=store.id,
            started_at=MAR,
            finished_at=MAR,
            source="test",
            engine="duckdb",
            status=RunStatus.succeeded,
            options={},
            report={"version": REPORT_VERSION, "currency": "CNY", "clv": {"median_clv": 3.0}},
        )
        session.add(run)
        session.flush()
        for i, (r, f, m, clv) in enumerate(rows):
            cid = add_customer_in(session, store, f"S{i}")
            session.add(
                CustomerScore(
                    customer_id=cid,
                    store_id=store.id,
                    run_id=run.id,
                    r=r,
                    f=f,
                    m=m,
                    clv=None if clv is None else Decimal(clv),
                    computed_at=MAR,
                )
            )


def add_customer_in(session: Any, store: Store, ext: str) -> int:
    from patron.customers.models import Customer

    row = Customer(store_id=store.id, external_id=ext, email=f"{ext.lower()}@example.com")
    session.add(row)
    session.flush()
    return row.id


SCORES: list[tuple[Any, ...]] = [
    (5, 5, 4, "0.50"),  # FM ⌊9/2⌋ = 4: champions
    (5, 4, 5, "-2.00"),  # FM 4: champions; a negative CLV counts in the first bucket
    (1, 1, 1, "3.00"),  # lost
    (3, 3, 4, "3.00"),  # FM 3: need_attention
    (1, 2, 3, "5.00"),  # FM 2: hibernating; 5 is the lower edge of [5, 10)
    (2, 5, 5, "150.00"),  # FM 5: cant_lose
    (None, None, None, None),  # not scored
]


def test_rfm_grid_counts_cells(engine: Engine, store: Store) -> None:
    add_scores(engine, store, SCORES)
    other = new_store(engine)
    add_scores(engine, other, [(5, 5, 5, "1.00")] * 3)  # another store's: never counted
    with unit_of_work(engine) as session:
        grid = charts.rfm_counts(session, store.id)
        chart = charts.rfm_chart(session, session.merge(store), "en", has_run=True)
    assert grid == {(5, 4): 2, (1, 1): 1, (3, 3): 1, (1, 2): 1, (2, 5): 1}
    cells = {(c["x"], c["y"]): (s["key"], c["n"]) for s in chart.spec["series"] for c in s["data"]}
    assert len(cells) == 25
    assert cells[(4, 5)] == ("champions", 2) and cells[(5, 4)] == ("loyal", 0)
    assert cells[(1, 1)] == ("lost", 1) and cells[(5, 2)] == ("cant_lose", 1)
    assert cells[(3, 3)] == ("need_attention", 1) and cells[(2, 1)] == ("hibernating", 1)
    assert chart.spec["max"] == 2
    assert "6 customers" in chart.summary and "R5 FM4 (Champions): 2" in chart.summary
    assert chart.table is not None and chart.table.rows[0][4] == "2 · Champions"


def test_clv_histogram_buckets(engine: Engine, store: Store) -> None:
    add_scores(engine, store, SCORES)
    with unit_of_work(engine) as session:
        buckets = charts.clv_buckets(session, store.id)
        chart = charts.clv_chart(
            session, session.merge(store), "zh", {"currency": "CNY", "clv": {"median_clv": 3.0}}
        )
    # Largest CLV 150 → edges 0, 1, 2, 5, 10, 20, 50, 100, 200.
    assert [(lo, hi) for lo, hi, _, _ in buckets] == [
        (0, 1),
        (1, 2),
        (2, 5),
        (5, 10),
        (10, 20),
        (20, 50),
        (50, 100),
        (100, 200),
    ]
    assert [n for _, _, n, _ in buckets] == [2, 0, 2, 1, 0, 0, 0, 1]
    assert [s for _, _, _, s in buckets] == [-1.5, 0, 6, 5, 0, 0, 0, 150]
    assert chart.spec["series"]["data"] == [2, 0, 2, 1, 0, 0, 0, 1]
    assert chart.spec["labels"][0] == "0–1" and chart.spec["labels"][-1] == "100–200"
    assert chart.title == "顾客终身价值分布" and "6 位客户" in chart.summary


def test_nice_edges() -> None:
    assert charts.nice_edges(0) == [0, 1]
    assert charts.nice_edges(1) == [0, 1, 2]
    assert charts.nice_edges(7.5) == [0, 1, 2, 5, 10]


# -- answers: NPS trend, gaps, competitor comparison, survey rows --------------------------


COMPARE: dict[str, Any] = {
    "title": text("Us and them", "我们与他们"),
    "questions": [
        {
            "id": "quality",
            "type": "comparison",
            "attribute": "quality",
            "attribute_label": text("Quality", "质量"),
            "competitors": ["JD"],
            "text": text("Rate the quality", "质量评分"),
        }
    ],
}


def answer(engine: Engine, store: Store, key: str, who: str, at: datetime, answers: Any) -> None:
    add_customer(engine, store, who)
    tok = one_token(engine, store, key, who, now=at - timedelta(hours=1))
    submit(engine, tok, answers, now=at)


def nps_answers(nps: int, **pairs: tuple[int, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"nps": nps, "csat": 5, "ces": 6}
    for attribute, (expectation, experience) in pairs.items():
        out[attribute] = {"expectation": expectation, "experience": experience}
    out.setdefault("quality", {"expectation": 5, "experience": 6})
    return out


@pytest.fixture
def answered(engine: Engine, store: Store) -> Store:
    """March: NPS 10, 9, 3; April: 10, 6. Quality +1 in every answer; delivery 6 → 3
    twice and 6 → 2 once. Comparison: us 8 and 6, JD 6 and 6."""
    create_survey(engine, store, "after-order", definition=SIMPLE, recontact_days=0)
    create_survey(engine, store, "value", definition=COMPARE, recontact_days=0)
    answer(engine, store, "after-order", "N1", MAR, nps_answers(10, delivery=(6, 3)))
    answer(
        engine, store, "after-order", "N2", MAR + timedelta(days=2), nps_answers(9, delivery=(6, 3))
    )
    answer(
        engine, store, "after-order", "N3", MAR + timedelta(days=4), nps_answers(3, delivery=(6, 2))
    )
    answer(engine, store, "after-order", "N4", APR, nps_answers(10))
    answer(engine, store, "after-order", "N5", APR + timedelta(days=1), nps_answers(6))
    for who, us in (("V1", 8), ("V2", 6)):
        ratings = {"quality": {"importance": 4, "ratings": {"us": us, "JD": 6}}}
        answer(engine, store, "value", who, APR, ratings)
    return store


def test_nps_trend(engine: Engine, answered: Store) -> None:
    with unit_of_work(engine) as session:
        chart = charts.nps_trend_chart(session, session.merge(answered), "en")
    assert chart.empty is None and chart.kind == "line_ci"
    assert chart.spec["labels"] == ["2026-03", "2026-04"]
    # March: 2 promoters, 1 detractor of 3 → 33.3; April: 1 and 1 of 2 → 0.
    assert chart.spec["value"]["data"] == [33.3, 0.0]
    for v, lo, hi in zip(
        chart.spec["value"]["data"], chart.spec["low"], chart.spec["high"], strict=True
    ):
        assert lo <= v <= hi
    # Overall: 3 promoters, 2 detractors of 5 → 20.
    assert chart.summary.startswith("NPS 20.0 over 5 answers")
    assert chart.table is not None and [r[3] for r in chart.table.rows] == ["3", "2"]


def test_gaps_coloured_by_level(engine: Engine, answered: Store) -> None:
    with unit_of_work(engine) as session:
        chart = charts.gaps_chart(session, session.merge(answered), "zh")
    assert chart.spec["labels"] == ["质量", "配送"]  # the definition's order, translated
    # Quality: +1 every time → satisfied; delivery: −3, −3, −4 → −3.33 → very dissatisfied.
    assert chart.spec["series"]["data"] == [1.0, -3.33]
    assert chart.spec["series"]["colours"] == [
        charts.LEVEL_COLOURS["satisfied"],
        charts.LEVEL_COLOURS["very_dissatisfied"],
    ]
    assert chart.spec["series"]["levels"] == ["比较满意", "非常不满意"]
    assert [item["label"] for item in chart.spec["legend"]] == [
        "非常满意",
        "比较满意",
        "一般",
        "比较不满意",
        "非常不满意",
    ]
    assert "配送（-3.33）" in chart.summary


def test_competitor_comparison(engine: Engine, answered: Store) -> None:
    with unit_of_work(engine) as session:
        chart = charts.compare_chart(session, session.merge(answered), "en", survey_key="value")
    assert chart.spec["labels"] == ["Quality"]
    series = {s["label"]: s for s in chart.spec["series"]}
    assert series["Our store"]["us"] and series["Our store"]["data"] == [7.0]
    assert series["JD"]["data"] == [6.0]
    assert chart.summary == "Perceived value ranking: Our store > JD."


def test_survey_rows(engine: Engine, answered: Store) -> None:
    with unit_of_work(engine) as session:
        rows = {r.key: r for r in charts.survey_rows(session, session.merge(answered), "zh")}
    assert set(rows) == {"after-order", "value"}
    after = rows["after-order"]
    assert after.responses == 5 and after.title == "体验如何?"
    assert approx(after.nps.value, 20.0) and after.nps.n == 5
    assert approx(after.csat.value, 100.0)
    assert rows["value"].responses == 2 and rows["value"].nps.n == 0


# -- tickets -----------------------------------------------------------------------------


def ticket(
    engine: Engine,
    store: Store,
    subject: str,
    *,
    status: TicketStatus = TicketStatus.open,
    channel: TicketChannel = TicketChannel.email,
    priority: Priority = Priority.normal,
    first_due: datetime | None = None,
    resolution_due: datetime | None = None,
    responded: datetime | None = None,
) -> int:
    with unit_of_work(engine) as session:
        t = Ticket(
            store_id=store.id,
            channel=channel,
            subject=subject,
            status=status,
            priority=priority,
            source="api",
            created_at=MAR,
            updated_at=MAR,
            first_response_target_s=3600,
            resolution_target_s=86400,
            first_response_due_at=first_due,
            resolution_due_at=resolution_due,
            first_responded_at=responded,
            pauses=[],
        )
        session.add(t)
        session.flush()
        return t.id


def test_tickets_soonest_due_first(engine: Engine, store: Store) -> None:
    h = timedelta(hours=1)
    # Unanswered: due at its first response; answered: at its resolution.
    late = ticket(engine, store, "late", first_due=MAR + 5 * h, resolution_due=MAR + 50 * h)
    soon = ticket(
        engine, store, "soon", first_due=MAR + h, resolution_due=MAR + 9 * h, responded=MAR
    )  # answered: due at MAR + 9 h
    first = ticket(engine, store, "first", first_due=MAR + 2 * h, resolution_due=MAR + 60 * h)
    chat = ticket(
        engine,
        store,
        "chat",
        channel=TicketChannel.chat,
        priority=Priority.urgent,
        first_due=MAR + 3 * h,
        resolution_due=MAR + 4 * h,
    )
    ticket(engine, store, "done", status=TicketStatus.closed, first_due=MAR)
    pending = ticket(engine, store, "pending", status=TicketStatus.pending)  # no due: last
    with unit_of_work(engine) as session:
        rows, total = charts.tickets_by_due(session, store.id)
        assert [t.id for t in rows] == [first, chat, late, soon, pending] and total == 5
        rows, total = charts.tickets_by_due(session, store.id, channel=TicketChannel.chat)
        assert [t.id for t in rows] == [chat] and total == 1
        rows, total = charts.tickets_by_due(session, store.id, priority=Priority.urgent)
        assert [t.id for t in rows] == [chat]
        rows, total = charts.tickets_by_due(
            session, store.id, status=[TicketStatus.pending, TicketStatus.closed]
        )
        assert {t.subject for t in rows} == {"done", "pending"} and total == 2
        rows, total = charts.tickets_by_due(session, store.id, limit=2)
        assert [t.id for t in rows] == [first, chat] and total == 5


def test_business_duration() -> None:
    assert charts.business_duration(59, "en") == "0 min"
    assert charts.business_duration(3 * 3600 + 5 * 60, "en") == "3 h 5 min"
    assert charts.business_duration(-(26 * 3600), "en") == "1 d 2 h"
    assert charts.business_duration(26 * 3600, "zh") == "1天2小时"
    assert charts.business_duration(720, "zh") == "12分钟"


def test_lang_of() -> None:
    assert charts.lang_of("zh-CN") == "zh" and charts.lang_of("ZH") == "zh"
    assert charts.lang_of("en-GB") == "en" and charts.lang_of(None) == "en"
