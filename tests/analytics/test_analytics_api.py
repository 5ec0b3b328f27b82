"""The analytics API on SQLite and PostgreSQL: a run stores the report and writes every
customer's scores back (replacing, never duplicating; all or nothing); the report and
its slices are served from the stored run; 404 before any run; scopes enforced."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from patron.analytics import repository as repo
from patron.analytics.models import AnalyticsRun, CustomerScore
from patron.analytics.report import AnalysisOptions, analyze_with_scores
from patron.analytics.sources import open_source
from patron.auth import Scope
from patron.customers.models import Customer
from patron.db import session_factory, unit_of_work
from patron.kit.clock import utcnow
from patron.stores.models import Store
from tests.analytics.shop_data import fill_store, generated
from tests.conftest import key_headers, new_store

SLICES = (
    "/v1/analytics/report",
    "/v1/analytics/retention",
    "/v1/analytics/cohorts",
    "/v1/analytics/concentration",
    "/v1/analytics/rfm",
    "/v1/analytics/loyalty-types",
    "/v1/analytics/clv",
)


@dataclass
class Shop:
    store: Store
    admin: dict[str, str]
    read: dict[str, str]
    buyers: set[str]  # customers with an order that counts
    orders: int
    paths: dict[str, Path]


@pytest.fixture(scope="module")
def shop(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Shop:
    store = new_store(engine)
    data = generated(customers=300, orders=1500, seed=2)
    paths = fill_store(engine, store.slug, tmp_path_factory.mktemp("shop"), data)
    kept = data.orders.filter(pc.not_equal(data.orders["status"], "cancelled"))
    return Shop(
        store=store,
        admin=key_headers(engine, store, Scope.admin),
        read=key_headers(engine, store, Scope.read),
        buyers=set(kept["customer_external_id"].to_pylist()),
        orders=len(set(kept["external_id"].to_pylist())),
        paths=paths,
    )


@pytest.fixture(scope="module")
def first_run(client: TestClient, shop: Shop) -> dict[str, Any]:
    res = client.post("/v1/analytics/runs", json={}, headers=shop.admin)
    assert res.status_code == 201, res.text
    body: dict[str, Any] = res.json()
    return body


def problem(res: Any, status: int) -> str:
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == "application/problem+json"
    detail: str = res.json()["detail"]
    return detail


def stored(engine: Engine, store: Store) -> tuple[list[int], dict[str, dict[str, Any]]]:
    """The store's run ids and its customer_scores rows by external customer id."""
    with unit_of_work(engine) as session:
        runs = list(
            session.scalars(
                select(AnalyticsRun.id)
                .where(AnalyticsRun.store_id == store.id)
                .order_by(AnalyticsRun.id)
            )
        )
        rows = session.execute(
            select(Customer.external_id, CustomerScore)
            .join(Customer, Customer.id == CustomerScore.customer_id)
            .where(CustomerScore.store_id == store.id)
        ).all()
        scores = {
            ext: {c.name: getattr(s, c.name) for c in CustomerScore.__table__.columns}
            for ext, s in rows
        }
    return runs, scores


def test_nothing_before_the_first_run(client: TestClient, engine: Engine, store: Store) -> None:
    read = key_headers(engine, store, Scope.read)
    for path in SLICES:
        detail = problem(client.get(path, headers=read), 404)
        assert "No analysis has been run for this store yet" in detail
    ingest = key_headers(engine, store, Scope.ingest)
    res = client.put("/v1/customers/C1", json={"external_id": "C1"}, headers=ingest)
    assert res.status_code == 201, res.text
    assert "No analysis has been run" in problem(
        client.get("/v1/customers/C1/scores", headers=read), 404
    )
    assert "No customer 'C2'" in problem(client.get("/v1/customers/C2/scores", headers=read), 404)


def test_scopes(client: TestClient, engine: Engine, shop: Shop) -> None:
    for scope in (Scope.read, Scope.ingest):
        res = client.post(
            "/v1/analytics/runs", json={}, headers=key_headers(engine, shop.store, scope)
        )
        assert "`admin` scope" in problem(res, 403)
    assert problem(client.post("/v1/analytics/runs", json={}), 401)
    assert problem(client.get("/v1/analytics/report"), 401)
    ingest = key_headers(engine, shop.store, Scope.ingest)
    assert problem(client.get("/v1/analytics/report", headers=ingest), 403)


def test_a_run_stores_the_report_and_the_scores(
    engine: Engine, shop: Shop, first_run: dict[str, Any]
) -> None:
    assert first_run["status"] == "succeeded" and first_run["engine"] == "duckdb"
    assert first_run["source"] == "db"
    assert first_run["overview"]["orders"] == shop.orders
    assert first_run["scores"] == {"written": len(shop.buyers), "unknown_customers": 0}
    assert first_run["run"]["currency"] == "CNY"
    assert first_run["run"]["timezone"] == "Asia/Shanghai"
    assert "CLV models" in first_run["seconds"]
    runs, scores = stored(engine, shop.store)
    assert runs == [first_run["run"]["run_id"]]
    assert set(scores) == shop.buyers
    # the scores written are the analysis' own, each on the right customer
    frame = open_source("db", database_url=_url(engine), store=shop.store.slug)
    _, expected = analyze_with_scores(frame, AnalysisOptions())
    for row in expected.to_pylist():
        got = scores[row["customer_id"]]
        assert (got["segment"], got["r"], got["f"], got["m"]) == (
            row["segment"],
            row["r"],
            row["f"],
            row["m"],
        )
        assert float(got["clv"]) == pytest.approx(row["clv"], abs=0.006)
        assert got["p_alive"] == pytest.approx(row["p_alive"])
        assert got["expected_purchases"] == pytest.approx(row["expected_purchases"])
        assert got["behaviour_type"] == row["behaviour_type"]
        assert got["price_sensitivity"] == pytest.approx(row["price_sensitivity"])
        assert got["run_id"] == runs[0]


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _stored_report(engine: Engine, run_id: int) -> dict[str, Any]:
    with unit_of_work(engine) as session:
        run = session.get(AnalyticsRun, run_id)
        assert run is not None and run.report is not None
        return run.report


def test_the_api_answers_from_the_stored_run(
    client: TestClient, engine: Engine, shop: Shop, first_run: dict[str, Any]
) -> None:
    run_id = first_run["run"]["run_id"]
    doc = _stored_report(engine, run_id)
    get = lambda path: client.get(path, headers=shop.read)  # noqa: E731

    report = get("/v1/analytics/report")
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["run"]["run_id"] == run_id
    assert body["overview"] == doc["overview"] and body["scores"] == doc["scores"]
    assert body["clv"] == doc["clv"]

    for period in ("month", "quarter", "year"):
        res = get(f"/v1/analytics/retention?period={period}")
        assert res.status_code == 200, res.text
        assert {k: v for k, v in res.json().items() if k != "run"} == doc["retention"][period]
    assert get("/v1/analytics/retention").json()["period"] == "month"
    assert "period" in problem(get("/v1/analytics/retention?period=week"), 422)

    assert get("/v1/analytics/cohorts").json()["cohorts"] == doc["cohorts"]
    assert get("/v1/analytics/concentration").json()["concentration"] == doc["concentration"]
    assert get("/v1/analytics/clv").json()["clv"] == doc["clv"]

    rfm = get("/v1/analytics/rfm").json()
    assert [s["size"] for s in rfm["segments"]] == doc["rfm"]["segments"]
    assert rfm["segments"][0]["name"] == {"en": "Champions", "zh": "重要价值客户"}
    assert rfm["movement"] == doc["rfm"]["movement"]

    types = get("/v1/analytics/loyalty-types").json()
    assert [t["count"] for t in types["loyalty_types"]] == doc["loyalty_types"]
    assert types["loyalty_types"][0]["name"]["zh"] == "真正忠诚"
    assert [t["count"] for t in types["behaviour_types"]] == doc["behaviour_types"]


def test_customer_scores(
    client: TestClient, engine: Engine, shop: Shop, first_run: dict[str, Any]
) -> None:
    _, scores = stored(engine, shop.store)
    ext = sorted(shop.buyers)[0]
    res = client.get(f"/v1/customers/{ext}/scores", headers=shop.read)
    assert res.status_code == 200, res.text
    body = res.json()
    row = scores[ext]
    assert body["customer_id"] == ext and body["run_id"] == first_run["run"]["run_id"]
    assert body["clv"] == str(row["clv"])  # money as a decimal string
    assert (body["segment"], body["r"], body["f"], body["m"]) == (
        row["segment"],
        row["r"],
        row["f"],
        row["m"],
    )
    assert body["segment_name"]["en"] and body["segment_name"]["zh"]
    assert body["p_alive"] == pytest.approx(row["p_alive"])
    ingest = key_headers(engine, shop.store, Scope.ingest)
    res = client.put("/v1/customers/NEW-1", json={"external_id": "NEW-1"}, headers=ingest)
    assert res.status_code == 201, res.text
    assert "no orders before the latest analysis" in problem(
        client.get("/v1/customers/NEW-1/scores", headers=shop.read), 404
    )


def test_other_stores_see_nothing(
    client: TestClient, engine: Engine, shop: Shop, first_run: dict[str, Any]
) -> None:
    other = new_store(engine)
    read = key_headers(engine, other, Scope.read)
    assert "No analysis" in problem(client.get("/v1/analytics/report", headers=read), 404)
    ext = sorted(shop.buyers)[0]
    assert "No customer" in problem(client.get(f"/v1/customers/{ext}/scores", headers=read), 404)


def test_a_second_run_replaces_the_scores(
    client: TestClient, engine: Engine, shop: Shop, first_run: dict[str, Any]
) -> None:
    res = client.post("/v1/analytics/runs", json={"months": 6, "margin": 0.5}, headers=shop.admin)
    assert res.status_code == 201, res.text
    second = res.json()["run"]["run_id"]
    runs, scores = stored(engine, shop.store)
    assert runs[-2:] == [first_run["run"]["run_id"], second]
    assert set(scores) == shop.buyers  # replaced, not duplicated
    assert {s["run_id"] for s in scores.values()} == {second}
    with unit_of_work(engine) as session:
        assert repo.count_scores(session, shop.store.id) == len(shop.buyers)
    body = client.get("/v1/analytics/clv", headers=shop.read).json()
    assert body["run"]["run_id"] == second
    assert (body["clv"]["fit"]["months"], body["clv"]["fit"]["margin"]) == (6, 0.5)
    assert body["clv"]["fit"]["margin_source"] == "argument"


def test_a_failed_run_changes_nothing(
    client: TestClient,
    engine: Engine,
    shop: Shop,
    first_run: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs, scores = stored(engine, shop.store)
    # Bad input: refused before anything is written.
    res = client.post("/v1/analytics/runs", json={"as_of": "2020-01-01"}, headers=shop.admin)
    assert "no orders before 2020-01-01" in problem(res, 422)
    assert problem(client.post("/v1/analytics/runs", json={"margin": 2}, headers=shop.admin), 422)
    # A failure after the run row and the scores are written: all of it is rolled back.
    real = repo.replace_scores

    def fail_after_writing(*args: Any, **kwargs: Any) -> tuple[int, int]:
        real(*args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(repo, "replace_scores", fail_after_writing)
    res = client.post("/v1/analytics/runs", json={}, headers=shop.admin)
    assert res.status_code == 500
    assert stored(engine, shop.store) == (runs, scores)
    latest = client.get("/v1/analytics/report", headers=shop.read).json()["run"]["run_id"]
    assert latest == runs[-1]


def test_openapi_documents_the_analytics_api(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    for path in (*SLICES, "/v1/analytics/runs", "/v1/customers/{external_id}/scores"):
        assert path in doc["paths"], path
    run = doc["paths"]["/v1/analytics/runs"]["post"]
    assert {"201", "401", "403", "422"} <= set(run["responses"])
    schemas = doc["components"]["schemas"]
    for name in ("ReportOut", "RetentionOut", "PeriodRetention", "ClvSummary", "RunIn"):
        assert name in schemas, name
    assert "retention_rate" in schemas["PeriodRetention"]["properties"]


def test_spark_missing_is_a_clear_error(
    client: TestClient, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import patron.analytics.sources as sources

    def no_spark(engine: str) -> Any:
        raise RuntimeError("the spark engine needs PySpark: pip install 'patron[spark]'")

    monkeypatch.setattr(sources, "connect", no_spark)
    monkeypatch.setattr("patron.analytics.frame.connect", no_spark)
    res = client.post("/v1/analytics/runs", json={"engine": "spark"}, headers=shop.admin)
    assert "needs PySpark" in problem(res, 422)


@pytest.mark.parametrize("fk_triggers", [False, True])
def test_replace_scores_maps_ids_and_skips_strangers(
    engine: Engine,
    shop: Shop,
    first_run: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    fk_triggers: bool,
) -> None:
    if fk_triggers:  # the path of a role that may not switch FK triggers off
        monkeypatch.setattr(repo, "_fk_triggers_off", lambda conn: False)
    known = sorted(shop.buyers)[:3]
    scores = pa.table(
        {
            "customer_id": [*known, "STRANGER"],
            "segment": ["lost", "new", None, "lost"],
            "r": [1, 5, None, 1],
            "clv": [12.346, float("nan"), 2e12, 1.0],
            "p_alive": [0.5, float("inf"), None, 0.1],
        }
    )
    session = session_factory(engine)()
    try:
        assert repo.replace_scores(session, shop.store.id, 999, utcnow(), scores) == (3, 1)
        rows = {
            s.customer_id: s
            for s in session.scalars(
                select(CustomerScore).where(CustomerScore.store_id == shop.store.id)
            )
        }
        ids = dict(
            session.execute(
                select(Customer.external_id, Customer.id).where(
                    Customer.store_id == shop.store.id, Customer.external_id.in_(known)
                )
            ).all()
        )
        assert set(rows) == set(ids.values())
        first, second, third = (rows[ids[k]] for k in known)
        assert (first.segment, first.r, first.clv, first.p_alive) == (
            "lost",
            1,
            Decimal("12.35"),
            0.5,
        )
        assert (second.clv, second.p_alive, second.f) == (None, None, None)  # NaN, inf, absent
        assert third.clv is None  # beyond NUMERIC(14, 2)
        assert {r.run_id for r in rows.values()} == {999}
        if engine.dialect.name == "postgresql":
            role = session.execute(text("SHOW session_replication_role")).scalar()
            assert role == "origin"
    finally:
        session.rollback()
        session.close()
