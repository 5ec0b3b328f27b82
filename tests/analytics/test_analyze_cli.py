"""`patron analyze`: order files and the database, tables, JSON, exports, write-back, and
one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from patron.analytics import cli as analytics_cli
from patron.analytics.models import AnalyticsRun, CustomerScore
from patron.cli import app as cli_app
from patron.db import unit_of_work
from patron.demo.generator import GeneratedShop, write_shop
from tests.analytics.shop_data import fill_store, generated
from tests.conftest import new_store

SECTIONS = (
    "overview",
    "retention",
    "cohorts",
    "concentration",
    "pareto",
    "rfm_segments",
    "rfm_movement",
    "loyalty_types",
    "behaviour_types",
    "clv_params",
    "clv_summary",
    "clv_buckets",
    "p_alive_buckets",
    "customer_scores",
)


@pytest.fixture(scope="module")
def shop() -> GeneratedShop:
    return generated(customers=400, orders=2400, seed=11)


@pytest.fixture(scope="module")
def files(shop: GeneratedShop, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_shop(shop, tmp_path_factory.mktemp("shop"), "parquet")


def buyers(shop: GeneratedShop) -> set[str]:
    kept = shop.orders.filter(pc.not_equal(shop.orders["status"], "cancelled"))
    return set(kept["customer_external_id"].to_pylist())


def order_count(shop: GeneratedShop) -> int:
    kept = shop.orders.filter(pc.not_equal(shop.orders["status"], "cancelled"))
    return len(set(kept["external_id"].to_pylist()))


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    # Wide enough that no name wraps; the module's console may predate any COLUMNS set here.
    monkeypatch.setenv("COLUMNS", "240")
    monkeypatch.setattr(analytics_cli.console, "width", 240)
    return CliRunner()


def file_args(files: dict[str, Path], *extra: str) -> list[str]:
    return [
        "analyze",
        "--source",
        str(files["orders"]),
        "--customers",
        str(files["customers"]),
        "--refunds",
        str(files["refunds"]),
        "--timezone",
        "Asia/Shanghai",
        *extra,
    ]


def test_json_report_of_order_files(
    runner: CliRunner, files: dict[str, Path], shop: GeneratedShop
) -> None:
    res = runner.invoke(cli_app, file_args(files, "--json"))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["overview"]["orders"] == order_count(shop)
    assert doc["overview"]["customers"] == len(buyers(shop))
    assert doc["currency"] == "CNY" and doc["timezone"] == "Asia/Shanghai"
    assert doc["clv"]["fit"]["purchases"]["converged"] is True
    assert doc["clv"]["scored"] == len(buyers(shop))


def test_tables_name_every_section(runner: CliRunner, files: dict[str, Path]) -> None:
    res = runner.invoke(cli_app, file_args(files, "--period", "quarter"))
    assert res.exit_code == 0, res.output
    out = res.stdout
    for title in (
        "Overview",
        "Retention by quarter",
        "Cohorts by quarter",
        "Value concentration",
        "RFM segments",
        "Largest segment moves",
        "Loyalty types",
        "Behaviour types",
        "CLV models",
        "CLV distribution",
    ):
        assert title in out, title
    for name in ("重要价值客户", "Champions", "真正忠诚", "稳定常客", "BG/NBD", "Gamma-Gamma"):
        assert name in out, name
    assert "12/12" in res.stderr  # the progress bar finished every step


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export(
    runner: CliRunner, files: dict[str, Path], shop: GeneratedShop, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / "out"
    res = runner.invoke(cli_app, file_args(files, "--export", str(out), "--format", fmt))
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {f"{s}.{fmt}" for s in SECTIONS} | {"report.json"}

    def read(name: str) -> Any:
        path = out / f"{name}.{fmt}"
        return pa_csv.read_csv(path) if fmt == "csv" else pq.read_table(path)

    scores = read("customer_scores")
    assert set(scores["customer_id"].to_pylist()) == buyers(shop)
    assert scores["clv"].null_count == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    retention = read("retention")
    expected_rows = sum(
        len(report["retention"][p][g])
        for p in ("month", "quarter", "year")
        for g in ("all", "members", "non_members")
    )
    assert retention.num_rows == expected_rows
    assert read("rfm_segments").num_rows == 11
    assert read("pareto").num_rows == 101
    params = read("clv_params").to_pylist()
    assert [p["parameter"] for p in params] == ["r", "alpha", "a", "b", "p", "q", "v"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "/no/such/orders.parquet"], "no such file or directory"),
        (["--source", "{products}"], "no customer_id column"),
        (["--source", "{orders}", "--as-of", "2020-01-01"], "no orders before 2020-01-01"),
        (["--source", "{orders}", "--timezone", "Mars/Base"], "unknown time zone"),
        (["--source", "{orders}", "--write-back"], "--write-back needs --source db"),
        (["--source", "db", "--customers", "{customers}"], "go with a file source"),
    ],
)
def test_clear_errors(
    runner: CliRunner, files: dict[str, Path], args: list[str], message: str
) -> None:
    paths = {k: str(v) for k, v in files.items()}
    res = runner.invoke(cli_app, ["analyze", *(a.format(**paths) for a in args)])
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert "Traceback" not in res.output
    last = res.stderr.strip().splitlines()[-1]  # one line, however long
    assert last.startswith("error:") and message in last


def test_spark_missing(
    runner: CliRunner, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import patron.analytics.sources as sources

    def no_spark(engine: str) -> Any:
        raise RuntimeError("the spark engine needs PySpark: pip install 'patron[spark]'")

    monkeypatch.setattr(sources, "connect", no_spark)
    res = runner.invoke(cli_app, file_args(files, "--engine", "spark"))
    assert res.exit_code == 2, res.output
    assert "needs PySpark: pip install 'patron[spark]'" in res.stderr
    assert "Traceback" not in res.output


# -- the database ----------------------------------------------------------------------


def test_database_write_back_is_idempotent(
    db_cli: CliRunner,
    engine: Engine,
    shop: GeneratedShop,
    tmp_path: Path,
) -> None:
    store = new_store(engine)
    fill_store(engine, store.slug, tmp_path, shop)
    args = ["analyze", "--source", "db", "--store", store.slug, "--write-back", "--json"]

    def state() -> tuple[list[int], int, set[int]]:
        with unit_of_work(engine) as session:
            runs = list(
                session.scalars(
                    select(AnalyticsRun.id)
                    .where(AnalyticsRun.store_id == store.id)
                    .order_by(AnalyticsRun.id)
                )
            )
            count = session.scalar(
                select(func.count())
                .select_from(CustomerScore)
                .where(CustomerScore.store_id == store.id)
            )
            run_ids = set(
                session.scalars(
                    select(CustomerScore.run_id).where(CustomerScore.store_id == store.id)
                )
            )
        return runs, int(count or 0), run_ids

    first = db_cli.invoke(cli_app, args)
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["overview"]["orders"] == order_count(shop)
    runs, count, run_ids = state()
    assert runs == [doc["run_id"]] and run_ids == {doc["run_id"]}
    assert count == len(buyers(shop))
    assert f"{count:,} customer scores written" in first.stderr

    second = db_cli.invoke(cli_app, args)
    assert second.exit_code == 0, second.output
    runs, count, run_ids = state()
    assert len(runs) == 2 and run_ids == {runs[-1]}
    assert count == len(buyers(shop))  # replaced, not duplicated

    # Without --write-back nothing is stored.
    plain = db_cli.invoke(cli_app, ["analyze", "--source", "db", "--store", store.slug])
    assert plain.exit_code == 0, plain.output
    assert state()[0] == runs


def test_database_errors(db_cli: CliRunner, engine: Engine) -> None:
    res = db_cli.invoke(cli_app, ["analyze", "--source", "db", "--store", "no-such-store"])
    assert res.exit_code == 2
    assert "no store 'no-such-store'" in res.stderr and "Traceback" not in res.output
    empty = new_store(engine)
    res = db_cli.invoke(
        cli_app, ["analyze", "--source", "db", "--store", empty.slug, "--write-back"]
    )
    assert res.exit_code == 2 and "no orders" in res.stderr
    with unit_of_work(engine) as session:
        assert not session.scalars(
            select(AnalyticsRun).where(AnalyticsRun.store_id == empty.id)
        ).first()
