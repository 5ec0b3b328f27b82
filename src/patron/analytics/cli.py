"""`patron analyze`: retention, cohorts, concentration, RFM, loyalty types and CLV of a
store's database or of order files, as Rich tables, JSON or exported files.

Exit codes: 0 done; 2 the analysis could not run (an unreadable file, a missing column,
an unknown store, no orders, the spark engine without PySpark, wrong usage) — one line
on stderr, nothing written.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from patron.errors import PatronError

if TYPE_CHECKING:
    import pyarrow as pa

    from patron.analytics.report import AnalysisReport

# The analysis stack (Ibis, DuckDB, pyarrow, scipy) is imported when the command runs,
# not when `patron` starts: every other command would pay ~0.7 s for it.

EXIT_FAILED = 2
COHORT_ROWS = 12  # the compact cohort table: the latest cohorts …
COHORT_AGES = 12  # … and their first periods
TOP_MOVES = 10

console = Console()
err = Console(stderr=True)


class EngineName(enum.StrEnum):
    duckdb = "duckdb"
    spark = "spark"


class PeriodName(enum.StrEnum):
    month = "month"
    quarter = "quarter"
    year = "year"


class ExportFormat(enum.StrEnum):
    csv = "csv"
    parquet = "parquet"


class Failed(Exception):
    """The analysis could not run; the message is the one line the user sees."""


def _engine_errors() -> tuple[type[BaseException], ...]:
    """The engines' own error classes: bad data surfaces there at execution time."""
    errors: list[type[BaseException]] = []
    try:
        import duckdb

        errors.append(duckdb.Error)
    except ImportError:  # pragma: no cover - duckdb is a dependency
        pass
    try:
        from pyspark.errors import PySparkException

        errors.append(PySparkException)
    except ImportError:
        pass
    return tuple(errors)


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Turn every expected failure into :class:`Failed` with a one-line message."""
    try:
        yield
    except Failed:
        raise
    except PatronError as exc:
        raise Failed(exc.detail) from exc
    except (ValueError, RuntimeError, OSError) as exc:
        raise Failed(_first_line(exc)) from exc
    except _engine_errors() as exc:
        raise Failed(f"the engine could not run the analysis: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------- formatting


def _num(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _pct(value: float | None, *, fraction: bool = True, digits: int = 1) -> str:
    """A percentage; ``fraction``: the value is 0–1 (else already a percentage)."""
    if value is None:
        return "–"
    return f"{value * 100 if fraction else value:.{digits}f}%"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}×"


def _names(key: str, names: dict[str, Any]) -> tuple[str, str]:
    name = names.get(key)
    return (name.en, name.zh) if name is not None else (key, "")


def _overview_table(report: AnalysisReport) -> Table:
    o = report.overview
    table = Table(
        "measure",
        "value",
        title=f"Overview — data until {report.as_of:%Y-%m-%d %H:%M} ({report.timezone}), "
        f"{report.currency}",
    )
    for label, value in (
        ("customers with orders", _num(o.customers)),
        ("known customers", _num(o.known_customers)),
        ("members", _num(o.members)),
        ("orders", _num(o.orders)),
        ("revenue", _num(o.revenue, 2)),
        ("net revenue", _num(o.net_revenue, 2)),
        ("first order", f"{o.first_order_at:%Y-%m-%d %H:%M}"),
        ("last order", f"{o.last_order_at:%Y-%m-%d %H:%M}"),
    ):
        table.add_row(label, value)
    return table


def _retention_table(report: AnalysisReport) -> Table:
    series = report.retention[report.options.period]
    table = Table(
        "period",
        "S",
        "E",
        "N",
        "CRR",
        "churn",
        "buyers",
        "orders",
        "net revenue",
        "orders/buyer",
        "repeat",
        "days between",
        "AOV",
        title=f"Retention by {series.period} (CRR = (E − N) / S; "
        f"active = ordered within {report.options.active_days} days; * incomplete)",
    )
    for p in series.all:
        table.add_row(
            f"{p.period_start:%Y-%m-%d}{'' if p.complete else '*'}",
            _num(p.customers_start),
            _num(p.customers_end),
            _num(p.new_customers),
            _pct(p.retention_rate, fraction=False),
            _pct(p.churn_rate, fraction=False),
            _num(p.buyers),
            _num(p.orders),
            _num(p.net_revenue, 2),
            _num(p.purchase_frequency, 2),
            _pct(p.repeat_purchase_rate, fraction=False),
            _num(p.mean_interpurchase_days, 1),
            _num(p.average_order_value, 2),
        )
    members = [p.retention_rate for p in series.members if p.retention_rate is not None]
    others = [p.retention_rate for p in series.non_members if p.retention_rate is not None]
    if members and others:
        table.caption = (
            f"mean CRR: members {sum(members) / len(members):.1f}%, "
            f"non-members {sum(others) / len(others):.1f}%"
        )
    return table


def _cohort_table(report: AnalysisReport) -> Table:
    c = report.cohorts
    ages = min(COHORT_AGES, max((len(row) for row in c.cells), default=0))
    table = Table(
        "cohort",
        "customers",
        *[f"+{age}" for age in range(ages)],
        title=f"Cohorts by {c.period}: share still ordering k periods after the first "
        f"(latest {COHORT_ROWS})",
    )
    rows = list(zip(c.cohorts, c.sizes, c.cells, strict=True))[-COHORT_ROWS:]
    for cohort, size, cells in rows:
        table.add_row(
            f"{cohort:%Y-%m-%d}",
            _num(size),
            *[_pct(cell, digits=0) for cell in cells[:ages]],
        )
    return table


def _concentration_table(report: AnalysisReport) -> Table:
    c = report.concentration
    table = Table("measure", "value", title="Value concentration (80/20)")
    for label, value in (
        ("customers", _num(c.customers)),
        ("net revenue" if c.net else "revenue", _num(c.revenue, 2)),
        ("share of the top 20%", _pct(c.top20_share)),
        ("top 10% revenue", _num(c.top10_revenue, 2)),
        ("next 10% revenue", _num(c.next10_revenue, 2)),
        ("top 10% ÷ next 10%", _times(c.top10_to_next10)),
        ("margin share of the top 20%", _pct(c.margin_top20_share)),
        ("margin top 10% ÷ next 10%", _times(c.margin_top10_to_next10)),
    ):
        table.add_row(label, value)
    return table


def _rfm_tables(report: AnalysisReport) -> list[Table]:
    from patron.analytics.rfm import NO_SEGMENT, SEGMENT_NAMES

    rfm = report.rfm
    sizes = Table(
        "segment",
        "名称",
        "customers",
        "share",
        "net revenue",
        "revenue share",
        title=f"RFM segments at {rfm.as_of:%Y-%m-%d}",
    )
    for s in rfm.segments:
        en, zh = _names(s.segment, SEGMENT_NAMES)
        sizes.add_row(
            en,
            zh,
            _num(s.customers),
            _pct(s.share),
            _num(s.revenue, 2),
            _pct(s.revenue_share),
        )
    moves = sorted(
        (m for m in rfm.movement if m.from_segment != m.to_segment),
        key=lambda m: -m.customers,
    )[:TOP_MOVES]
    movement = Table(
        "from",
        "to",
        "customers",
        title=f"Largest segment moves {rfm.movement_from:%Y-%m-%d} → {rfm.as_of:%Y-%m-%d}",
    )
    for m in moves:
        start = (
            "(new)" if m.from_segment == NO_SEGMENT else _names(m.from_segment, SEGMENT_NAMES)[0]
        )
        movement.add_row(start, _names(m.to_segment, SEGMENT_NAMES)[0], _num(m.customers))
    return [sizes, movement]


def _type_tables(report: AnalysisReport) -> list[Table]:
    from patron.analytics.loyalty_types import BEHAVIOUR_TYPE_NAMES, LOYALTY_TYPE_NAMES, UNKNOWN

    loyalty = Table(
        "loyalty type",
        "类型",
        "customers",
        "share",
        "of surveyed",
        "repeat purchases",
        "price sensitivity",
        "tolerance",
        title="Loyalty types (attitude × behaviour)",
    )
    for t in report.loyalty_types:
        en, zh = _names(t.type, LOYALTY_TYPE_NAMES)
        loyalty.add_row(
            en,
            zh,
            _num(t.customers),
            _pct(t.share),
            "" if t.type == UNKNOWN else _pct(t.share_of_surveyed),
            _num(t.avg_repeat_purchases, 2),
            _pct(t.avg_price_sensitivity),
            _pct(t.tolerance_rate),
        )
    behaviour = Table(
        "behaviour type",
        "类型",
        "customers",
        "share",
        "repeat purchases",
        "price sensitivity",
        "tolerance",
        title="Behaviour types",
    )
    for b in report.behaviour_types:
        en, zh = _names(b.type, BEHAVIOUR_TYPE_NAMES)
        behaviour.add_row(
            en,
            zh,
            _num(b.customers),
            _pct(b.share),
            _num(b.avg_repeat_purchases, 2),
            _pct(b.avg_price_sensitivity),
            _pct(b.tolerance_rate),
        )
    return [loyalty, behaviour]


def _clv_tables(report: AnalysisReport) -> list[Table]:
    clv = report.clv
    fit = clv.fit
    params = Table("model", "parameter", "estimate", "std. error", "fit", title="CLV models")
    for model in (fit.purchases, fit.spend):
        if model is None:
            continue
        status = "converged" if model.converged else ("usable" if model.usable else "failed")
        if not model.params:
            params.add_row(model.model, "–", "–", "–", f"[red]{status}[/red]")
        for i, (name, estimate) in enumerate(model.params.items()):
            se = model.se.get(name)
            params.add_row(
                model.model if i == 0 else "",
                name,
                f"{estimate:.4g}",
                "–" if se is None else f"{se:.3g}",
                status if i == 0 else "",
            )
    summary = Table(
        "measure",
        "value",
        title=f"CLV over {fit.months} months (discount {fit.discount_rate:.1%}/month, "
        f"margin {fit.margin:.0%} from {fit.margin_source}), {report.currency}",
    )
    for label, value in (
        ("customers", _num(fit.customers)),
        ("repeat customers", _num(fit.repeat_customers)),
        ("customers with a CLV", _num(clv.scored)),
        ("total CLV", _num(clv.total_clv, 2)),
        ("mean CLV", _num(clv.mean_clv, 2)),
        ("median CLV", _num(clv.median_clv, 2)),
        ("CLV share of the top 10%", _pct(clv.top_decile_share)),
        (f"expected purchases, next {fit.horizon_days} days", _num(clv.expected_purchases, 0)),
        ("expected active customers (Σ P(alive))", _num(clv.expected_alive, 0)),
    ):
        summary.add_row(label, value)
    buckets = Table("CLV from", "to", "customers", "total CLV", title="CLV distribution")
    for b in clv.clv_buckets:
        if b.customers:
            buckets.add_row(_num(b.lower), _num(b.upper), _num(b.customers), _num(b.clv, 2))
    return [params, summary, buckets]


def print_report(report: AnalysisReport) -> None:
    for table in (
        _overview_table(report),
        _retention_table(report),
        _cohort_table(report),
        _concentration_table(report),
        *_rfm_tables(report),
        *_type_tables(report),
        *_clv_tables(report),
    ):
        console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")


# --------------------------------------------------------------------------- export


def _rows(items: Sequence[Any], **extra: Any) -> list[dict[str, Any]]:
    return [{**extra, **dataclasses.asdict(item)} for item in items]


def section_tables(report: AnalysisReport) -> dict[str, pa.Table]:
    """One flat table per report section (the files ``--export`` writes)."""
    import pyarrow as pa

    from patron.analytics.rfm import SEGMENT_NAMES

    retention: list[dict[str, Any]] = []
    for period, series in report.retention.items():
        for group in ("all", "members", "non_members"):
            retention += _rows(getattr(series, group), period=period, group=group)
    c = report.cohorts
    cohorts = [
        {"cohort": cohort, "customers": size, "age": age, "share": share}
        for cohort, size, cells in zip(c.cohorts, c.sizes, c.cells, strict=True)
        for age, share in enumerate(cells)
    ]
    concentration = {
        k: v for k, v in dataclasses.asdict(report.concentration).items() if k != "pareto"
    }
    fit = report.clv.fit
    params = [
        {"model": m.model, "parameter": name, "estimate": value, "se": m.se.get(name)}
        for m in (fit.purchases, fit.spend)
        if m is not None
        for name, value in m.params.items()
    ]
    summary = {
        k: v
        for k, v in dataclasses.asdict(report.clv).items()
        if k not in ("fit", "clv_buckets", "p_alive_buckets")
    }
    summary.update(
        margin=fit.margin,
        margin_source=fit.margin_source,
        months=fit.months,
        discount_rate=fit.discount_rate,
        horizon_days=fit.horizon_days,
    )
    segment_rows = [
        {**dataclasses.asdict(s), "name_en": n[0], "name_zh": n[1]}
        for s in report.rfm.segments
        for n in [_names(s.segment, SEGMENT_NAMES)]
    ]
    return {
        "overview": pa.Table.from_pylist([dataclasses.asdict(report.overview)]),
        "retention": pa.Table.from_pylist(retention),
        "cohorts": pa.Table.from_pylist(cohorts),
        "concentration": pa.Table.from_pylist([concentration]),
        "pareto": pa.Table.from_pylist(_rows(report.concentration.pareto)),
        "rfm_segments": pa.Table.from_pylist(segment_rows),
        "rfm_movement": pa.Table.from_pylist(_rows(report.rfm.movement)),
        "loyalty_types": pa.Table.from_pylist(_rows(report.loyalty_types)),
        "behaviour_types": pa.Table.from_pylist(_rows(report.behaviour_types)),
        "clv_params": pa.Table.from_pylist(params),
        "clv_summary": pa.Table.from_pylist([summary]),
        "clv_buckets": pa.Table.from_pylist(_rows(report.clv.clv_buckets)),
        "p_alive_buckets": pa.Table.from_pylist(_rows(report.clv.p_alive_buckets)),
    }


def export(
    report: AnalysisReport, scores: pa.Table | None, out: Path, fmt: ExportFormat
) -> list[Path]:
    """Write every section (and the customer scores) to ``out``, one file each."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    tables = section_tables(report)
    if scores is not None:
        tables["customer_scores"] = scores
    paths = []
    for name, table in tables.items():
        path = out / f"{name}.{fmt.value}"
        if fmt is ExportFormat.csv:
            pa_csv.write_csv(table, path)
        else:
            pq.write_table(table, path)
        paths.append(path)
    (out / "report.json").write_text(
        json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    paths.append(out / "report.json")
    return paths


# --------------------------------------------------------------------------- command


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def analyze_command(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="`db` (Patron's database, PATRON_DATABASE_URL) or an order file: "
            "CSV, Parquet or a directory of Parquet files.",
        ),
    ],
    engine: Annotated[
        EngineName, typer.Option(help="duckdb (embedded) or spark (pip install 'patron\\[spark]').")
    ] = EngineName.duckdb,
    store: Annotated[
        str | None,
        typer.Option("--store", "-s", help="Store slug (db source; optional with one store)."),
    ] = None,
    customers: Annotated[
        Path | None, typer.Option(help="Customers file: members, NPS, complaints.")
    ] = None,
    refunds: Annotated[Path | None, typer.Option(help="Refunds file (order id, amount).")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="The store's IANA time zone (files: default UTC).")
    ] = None,
    currency: Annotated[str | None, typer.Option(help="Currency of the file's amounts.")] = None,
    period: Annotated[
        PeriodName, typer.Option(help="Period of the retention table and cohorts.")
    ] = PeriodName.month,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Analyse the data as it was at this store-local date (exclusive).",
        ),
    ] = None,
    active_days: Annotated[
        int, typer.Option(min=1, help="Retention: active this many days after an order.")
    ] = 365,
    margin: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="CLV gross margin (default: from costs, else 0.3)."),
    ] = None,
    months: Annotated[int, typer.Option(min=1, max=120, help="CLV horizon in months.")] = 12,
    horizon_days: Annotated[
        int, typer.Option(min=1, help="Expected purchases over this many days.")
    ] = 90,
    export_dir: Annotated[
        Path | None,
        typer.Option("--export", help="Write each section and the customer scores here."),
    ] = None,
    fmt: Annotated[
        ExportFormat, typer.Option("--format", help="Export format.")
    ] = ExportFormat.parquet,
    write_back: Annotated[
        bool,
        typer.Option(
            "--write-back",
            help="Store the run and every customer's scores in the database (db source).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of tables.")
    ] = False,
) -> None:
    """Analyse a store: retention (CRR), cohorts, value concentration, RFM segments and
    their movement, loyalty types, and CLV (BG/NBD + Gamma-Gamma).

    Reads Patron's database (`--source db`) or order files; see docs/analytics.md.
    """
    is_db = source == "db"
    if write_back and not is_db:
        err.print(
            "error: --write-back needs --source db (scores are keyed to the store)",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_FAILED)
    if is_db and (customers or refunds):
        err.print(
            "error: --customers and --refunds go with a file source, not --source db",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_FAILED)
    try:
        _analyze(
            source=source,
            engine=engine,
            store=store,
            customers=customers,
            refunds=refunds,
            timezone=timezone,
            currency=currency,
            options_kwargs={
                "period": period.value,
                "as_of": as_of,
                "active_days": active_days,
                "margin": margin,
                "months": months,
                "horizon_days": horizon_days,
            },
            export_dir=export_dir,
            fmt=fmt,
            write_back=write_back,
            as_json=as_json,
        )
    except Failed as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None


def _analyze(
    *,
    source: str,
    engine: EngineName,
    store: str | None,
    customers: Path | None,
    refunds: Path | None,
    timezone: str | None,
    currency: str | None,
    options_kwargs: dict[str, Any],
    export_dir: Path | None,
    fmt: ExportFormat,
    write_back: bool,
    as_json: bool,
) -> None:
    from patron.analytics.report import AnalysisOptions, analyze, analyze_with_scores, jsonable
    from patron.analytics.sources import open_source
    from patron.kit.clock import utcnow

    started_at = utcnow()
    started = time.perf_counter()
    with _clean_errors():
        options = AnalysisOptions(**options_kwargs)
    with _progress() as progress:
        task = progress.add_task("reading the source", total=None)

        def step(name: str, done: int, total: int) -> None:
            progress.update(task, description=name, completed=done, total=total)

        with _clean_errors():
            frame = open_source(
                source if source == "db" else Path(source),
                engine=engine.value,
                store=store,
                customers_file=customers,
                refunds_file=refunds,
                timezone=timezone,
                currency=currency,
            )
            scores: pa.Table | None = None
            if export_dir is not None or write_back:
                report, scores = analyze_with_scores(frame, options, step)
            else:
                report = analyze(frame, options, step)
    stored = None
    if write_back:
        assert scores is not None
        from patron.analytics.service import analytics
        from patron.db import unit_of_work
        from patron.stores.service import stores

        with _clean_errors(), unit_of_work() as session:
            if store is None:  # the source read the database's only store
                store = stores.list(session)[0].slug
            stored = analytics.save(
                session,
                stores.get(session, store),
                report,
                scores,
                source="db",
                started_at=started_at,
            )
    paths: list[Path] = []
    if export_dir is not None:
        with _clean_errors():
            paths = export(report, scores, export_dir, fmt)
    if as_json:
        document = report.to_json()
        if stored is not None:
            document["run_id"] = stored.run.id
        print(json.dumps(jsonable(document), ensure_ascii=False))
    else:
        print_report(report)
    if paths:
        err.print(f"exported {len(paths)} files to {export_dir}")
    if stored is not None:
        err.print(
            f"stored run {stored.run.id}: {stored.scores_written:,} customer scores written"
            + (
                f", {stored.unknown_customers:,} customers not in the store skipped"
                if stored.unknown_customers
                else ""
            )
        )
    err.print(f"done in {time.perf_counter() - started:.1f}s")
