"""`analyze` composes the analysis modules: each section equals the module's own answer,
the JSON is valid, the scores join RFM, loyalty types and CLV per customer, and DuckDB
and Spark give the same report."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from patron.analytics.clv_frame import clv_scores
from patron.analytics.concentration import value_concentration
from patron.analytics.frame import Engine, Frame, from_arrow
from patron.analytics.loyalty_types import loyalty_table, loyalty_type_counts
from patron.analytics.report import (
    SCORE_COLUMNS,
    AnalysisOptions,
    AnalysisReport,
    analyze,
    analyze_with_scores,
    customer_scores,
    jsonable,
)
from patron.analytics.retention import cohort_matrix, retention_by_membership, retention_by_period
from patron.analytics.rfm import rfm_table, segment_movement, segment_sizes
from tests.analytics.shop_data import canonical, generated


@pytest.fixture(scope="module")
def tables() -> tuple[pa.Table, pa.Table]:
    return canonical(generated())


@pytest.fixture(scope="module")
def frame(tables: tuple[pa.Table, pa.Table]) -> Frame:
    orders, customers = tables
    return from_arrow(orders, customers, engine="duckdb", timezone="Asia/Shanghai", currency="CNY")


@pytest.fixture(scope="module")
def analysed(frame: Frame) -> tuple[AnalysisReport, pa.Table, list[tuple[str, int, int]]]:
    calls: list[tuple[str, int, int]] = []
    report, scores = analyze_with_scores(
        frame, AnalysisOptions(period="quarter"), lambda *call: calls.append(call)
    )
    return report, scores, calls


def same(a: Any, b: Any) -> None:
    """Equal, floats to 1e-9 relative (DuckDB sums floats in parallel, in no fixed order)."""
    _assert_close(jsonable(a), jsonable(b))


def test_sections_are_the_modules_answers(
    frame: Frame, analysed: tuple[AnalysisReport, pa.Table, Any]
) -> None:
    report = analysed[0]
    assert report.as_of == frame.as_of and report.currency == "CNY"
    for period in ("month", "quarter", "year"):
        series = report.retention[period]
        same(series.all, retention_by_period(frame, period))
        split = retention_by_membership(frame, period)
        same((series.members, series.non_members), (split["members"], split["non_members"]))
        assert len(series.all) == len(series.members) > 0
    same(report.cohorts, cohort_matrix(frame, "quarter"))
    same(report.concentration, value_concentration(frame))
    same(report.rfm.segments, segment_sizes(frame))
    assert report.rfm.movement_from == frame.as_of - timedelta(days=90)
    same(
        report.rfm.movement, segment_movement(frame, frame.as_of - timedelta(days=90), frame.as_of)
    )
    same(report.loyalty_types, loyalty_type_counts(frame))
    fit = clv_scores(frame).fit
    assert fit.purchases is not None and report.clv.fit.purchases is not None
    assert report.clv.fit.purchases.params == pytest.approx(fit.purchases.params)


def test_overview_and_clv_summary(
    tables: tuple[pa.Table, pa.Table], analysed: tuple[AnalysisReport, pa.Table, Any]
) -> None:
    report, scores, _ = analysed
    orders, customers = tables
    o = report.overview
    assert o.orders == orders.num_rows
    assert o.customers == len(set(orders["customer_id"].to_pylist()))
    assert o.known_customers == customers.num_rows
    assert o.members == sum(customers["is_member"].to_pylist())
    assert o.revenue == pytest.approx(sum(orders["amount"].to_pylist()), abs=0.01)
    clv = np.asarray(scores["clv"].to_numpy(), dtype=np.float64)
    summary = report.clv
    assert summary.scored == scores.num_rows == o.customers
    assert summary.total_clv == pytest.approx(clv.sum(), abs=0.01)
    assert summary.median_clv == pytest.approx(np.median(clv), abs=0.01)
    top = np.sort(clv)[-math.ceil(clv.size / 10) :].sum() / clv.sum()
    assert summary.top_decile_share == pytest.approx(top)
    assert sum(b.customers for b in summary.clv_buckets) == clv.size
    assert sum(b.clv for b in summary.clv_buckets) == pytest.approx(clv.sum(), abs=0.1)
    for low, high in zip(summary.clv_buckets, summary.clv_buckets[1:], strict=False):
        assert low.upper == high.lower
    inside = [((clv >= b.lower) & (clv < (b.upper or np.inf))).sum() for b in summary.clv_buckets]
    assert inside == [b.customers for b in summary.clv_buckets]
    alive = scores["p_alive"].to_numpy()
    assert [b.customers for b in summary.p_alive_buckets] == [
        int(((alive >= i / 10) & ((alive < (i + 1) / 10) | (i == 9))).sum()) for i in range(10)
    ]
    assert summary.expected_alive == pytest.approx(alive.sum())
    assert report.warnings == []


def test_progress_reports_every_step(analysed: tuple[AnalysisReport, pa.Table, Any]) -> None:
    report, _, calls = analysed
    total = calls[0][2]
    assert [c[1] for c in calls] == list(range(total + 1))
    assert {c[2] for c in calls} == {total}
    assert calls[-1][0] == "done"
    assert [c[0] for c in calls[:-1]] == list(report.seconds)


def test_json_is_valid_and_complete(analysed: tuple[AnalysisReport, pa.Table, Any]) -> None:
    report = analysed[0]
    doc = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert doc["version"] == 1 and doc["as_of"] == report.as_of.isoformat()
    assert set(doc) == {f.name for f in dataclasses.fields(AnalysisReport)}
    assert set(doc["retention"]) == {"month", "quarter", "year"}
    month = doc["retention"]["month"]["all"][0]
    assert month["period_start"] == report.retention["month"].all[0].period_start.isoformat()
    assert doc["clv"]["fit"]["purchases"]["params"] == report.clv.fit.purchases.params  # type: ignore[union-attr]
    assert doc["options"]["period"] == "quarter" and doc["options"]["loyalty"]


def test_jsonable() -> None:
    value = {
        "nan": float("nan"),
        "inf": -math.inf,
        "n": np.int64(3),
        "x": np.float64(0.5),
        "when": datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        "day": date(2026, 1, 2),
        "t": (1, None, True),
    }
    assert jsonable(value) == {
        "nan": None,
        "inf": None,
        "n": 3,
        "x": 0.5,
        "when": "2026-01-02T03:04:00+00:00",
        "day": "2026-01-02",
        "t": [1, None, True],
    }
    with pytest.raises(TypeError, match="not JSON-ready: object"):
        jsonable(object())


def test_customer_scores_join_rfm_loyalty_and_clv(
    frame: Frame, analysed: tuple[AnalysisReport, pa.Table, Any]
) -> None:
    scores = analysed[1]
    assert tuple(scores.column_names) == SCORE_COLUMNS
    ids = scores["customer_id"].to_pylist()
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    rfm = {r["customer_id"]: r for r in rfm_table(frame).to_pyarrow().to_pylist()}
    loyal = {r["customer_id"]: r for r in loyalty_table(frame).to_pyarrow().to_pylist()}
    clv = clv_scores(frame).table
    clv_of = dict(zip(clv["customer_id"].to_pylist(), clv["clv"].to_pylist(), strict=True))
    assert set(ids) == set(rfm) == set(loyal) == set(clv_of)
    for row in scores.to_pylist()[::97]:
        r, lt = rfm[row["customer_id"]], loyal[row["customer_id"]]
        assert (row["r"], row["f"], row["m"], row["rfm"], row["segment"]) == (
            r["r"],
            r["f"],
            r["m"],
            r["rfm"],
            r["segment"],
        )
        assert (row["loyalty_type"], row["behaviour_type"], row["price_sensitivity"]) == (
            lt["loyalty_type"],
            lt["behaviour_type"],
            lt["price_sensitivity"],
        )
        assert row["clv"] == pytest.approx(clv_of[row["customer_id"]])
    assert scores["loyalty_type"].null_count < scores.num_rows  # some answered a survey
    # A new fit on sums made in another order: equal to the optimiser's tolerance.
    again = customer_scores(frame, AnalysisOptions(period="quarter"))
    _assert_close(again.to_pylist(), scores.to_pylist(), rel=1e-6)


def test_as_of_analyses_the_data_as_it_was(tables: tuple[pa.Table, pa.Table], frame: Frame) -> None:
    cut = datetime(2026, 3, 1)
    orders, customers = tables
    early = orders.filter(pa.compute.less(orders["placed_at"], pa.scalar(cut, pa.timestamp("us"))))
    reference = from_arrow(early, customers, engine="duckdb", as_of=cut)
    report = analyze(frame, AnalysisOptions(as_of=cut))
    assert report.as_of == cut
    assert report.overview.orders == early.num_rows
    same(report.rfm.segments, segment_sizes(reference))
    same(report.retention["month"].all, retention_by_period(reference, "month"))
    same(report.concentration, value_concentration(reference))
    expected = clv_scores(reference).fit.purchases
    assert report.clv.fit.purchases is not None and expected is not None
    assert report.clv.fit.purchases.params == pytest.approx(expected.params)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"period": "week"}, "period must be one of month, quarter, year"),
        ({"margin": 1.2}, "margin must be between 0 and 1"),
        ({"months": 0}, "months must be at least 1"),
        ({"as_of": datetime(2026, 1, 1, tzinfo=UTC)}, "as_of is store-local time"),
        ({"discount_rate": -1.0}, "discount_rate"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnalysisOptions(**options)


def test_bad_data_is_refused(frame: Frame) -> None:
    with pytest.raises(ValueError, match="no orders before 2020-01-01 00:00"):
        analyze(frame, AnalysisOptions(as_of=datetime(2020, 1, 1)))
    with pytest.raises(ValueError, match="more than a year after the end of the data"):
        analyze(frame, AnalysisOptions(as_of=datetime(9999, 12, 31)))
    with pytest.raises(ValueError, match=r"movement_from .* must be before as_of"):
        analyze(frame, AnalysisOptions(movement_from=frame.as_of + timedelta(days=1)))


def _comparable(report: AnalysisReport) -> dict[str, Any]:
    doc: dict[str, Any] = report.to_json()
    for key in ("seconds", "generated_at", "engine"):
        doc.pop(key)
    for model in ("purchases", "spend"):
        for detail in ("seconds", "message", "iterations"):  # the optimiser's path
            doc["clv"]["fit"][model].pop(detail)
    return doc


def _assert_close(a: Any, b: Any, path: str = "", rel: float = 1e-9) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            _assert_close(a[key], b[key], f"{path}.{key}", rel)
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, f"{path}[{i}]", rel)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=rel, abs=1e-9), path
    else:
        assert a == b, path


def test_engines_give_the_same_report(
    analytics_engine: Engine, tables: tuple[pa.Table, pa.Table], frame: Frame
) -> None:
    if analytics_engine == "duckdb":
        pytest.skip("compares Spark with DuckDB")
    orders, customers = tables
    other = from_arrow(
        orders, customers, engine=analytics_engine, timezone="Asia/Shanghai", currency="CNY"
    )
    options = AnalysisOptions(period="month")
    duck_report, duck_scores = analyze_with_scores(frame, options)
    report, scores = analyze_with_scores(other, options)
    assert report.engine == "spark"
    # The models are fitted to floating-point sums made in another order: estimates agree
    # to the optimiser's tolerance, not to the last bit.
    _assert_close(_comparable(report), _comparable(duck_report), rel=1e-6)
    assert scores.column_names == duck_scores.column_names
    _assert_close(scores.to_pylist(), duck_scores.to_pylist(), rel=1e-6)
