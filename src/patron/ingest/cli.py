"""`patron import customers|products|orders|refunds FILE`: CSV or Parquet into a store.

Exit codes: 0 every row imported; 1 nothing written (a bad row in all-or-nothing mode,
a missing column, an unknown store, an unreadable file); 2 wrong usage (Click's own);
3 imported with rows skipped (--skip-bad-rows). A partial import never exits 0, so a
script cannot mistake it for a complete one; 2 is Click's, hence 3.
"""

from __future__ import annotations

import csv
import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from patron.db import default_engine
from patron.ingest.files import (
    ImportFailed,
    ImportReport,
    Kind,
    Mode,
    RowError,
    import_file,
)

EXIT_OK, EXIT_FAILED, EXIT_PARTIAL = 0, 1, 3
SHOWN_ERRORS = 20

import_app = typer.Typer(
    help="Import customers, products, orders or refunds from CSV or Parquet files "
    "(see docs/import.md). Exit codes: 0 all imported, 1 nothing written, "
    "3 imported with rows skipped.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
console = Console()
err = Console(stderr=True)


class FileFormat(enum.StrEnum):
    csv = "csv"
    parquet = "parquet"


FileArg = Annotated[
    Path,
    typer.Argument(
        exists=True,
        dir_okay=False,
        readable=True,
        help="CSV (with a header row) or Parquet file.",
    ),
]
StoreOpt = Annotated[str, typer.Option("--store", "-s", help="Store slug.")]
ModeOpt = Annotated[
    bool,
    typer.Option(
        "--all-or-nothing/--skip-bad-rows",
        help="All or nothing: any bad row writes nothing (exit 1). Skip bad rows: import "
        "the rest and report every skipped row (exit 3).",
    ),
]
ErrorsOpt = Annotated[
    Path | None,
    typer.Option(
        "--errors",
        dir_okay=False,
        help="Write every refused row to this CSV file: row, column, external_id, reason.",
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Records per database batch.")]
FormatOpt = Annotated[
    FileFormat | None,
    typer.Option("--format", help="File format; inferred from the extension by default."),
]


@import_app.command("customers")
def import_customers(
    file: FileArg,
    store: StoreOpt,
    all_or_nothing: ModeOpt = True,
    errors: ErrorsOpt = None,
    batch_size: BatchOpt = 10_000,
    format: FormatOpt = None,
) -> None:
    """Import customers. A changed profile replaces the stored one.

    Columns: external_id (required), email, phone, first_name, last_name, birthday,
    locale, timezone, created_at, attributes (a JSON object), flagged, flagged_reason,
    consent_email, consent_sms, consent_push, consent_wechat (true/false/empty).
    """
    _run("customers", file, store, all_or_nothing, errors, batch_size, format)


@import_app.command("products")
def import_products(
    file: FileArg,
    store: StoreOpt,
    all_or_nothing: ModeOpt = True,
    errors: ErrorsOpt = None,
    batch_size: BatchOpt = 10_000,
    format: FormatOpt = None,
) -> None:
    """Import products.

    Columns: sku, name, price, currency (required), category.
    """
    _run("products", file, store, all_or_nothing, errors, batch_size, format)


@import_app.command("orders")
def import_orders(
    file: FileArg,
    store: StoreOpt,
    all_or_nothing: ModeOpt = True,
    errors: ErrorsOpt = None,
    batch_size: BatchOpt = 10_000,
    format: FormatOpt = None,
    keep_fk_triggers: Annotated[
        bool,
        typer.Option(
            "--keep-fk-triggers",
            help="PostgreSQL: check foreign keys row by row while loading new orders "
            "(about twice as slow) instead of checking and locking them in bulk.",
        ),
    ] = False,
) -> None:
    """Import orders, one row per order line.

    The order columns repeat on each line: external_id, customer_external_id, placed_at,
    currency (required), status, channel, discount_code, shipping_total, tax_total,
    discount_total, total, paid_at, fulfilled_at, delivered_at, cancelled_at; line
    columns: sku, quantity, unit_price, line_discount, line_external_id, name, category.
    A known order with the same content is unchanged, an advanced status is an update,
    changed amounts or lines are refused.
    """
    _run("orders", file, store, all_or_nothing, errors, batch_size, format, keep_fk_triggers)


@import_app.command("refunds")
def import_refunds(
    file: FileArg,
    store: StoreOpt,
    all_or_nothing: ModeOpt = True,
    errors: ErrorsOpt = None,
    batch_size: BatchOpt = 10_000,
    format: FormatOpt = None,
) -> None:
    """Import refunds; several rows with one external_id are the lines of one refund.

    Columns: external_id, order_external_id, refunded_at (required), amount, sku,
    quantity, line_external_id, reason. A refund for an order not yet imported waits
    (pending) and is applied when the order arrives.
    """
    _run("refunds", file, store, all_or_nothing, errors, batch_size, format)


def _run(
    kind: Kind,
    file: Path,
    store: str,
    all_or_nothing: bool,
    errors_path: Path | None,
    batch_size: int,
    fmt: FileFormat | None,
    fk_triggers: bool = False,
) -> None:
    mode: Mode = "all-or-nothing" if all_or_nothing else "skip-bad-rows"
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=err, transient=False) as progress:
            report = import_file(
                default_engine(),
                store,
                kind,
                file,
                mode=mode,
                batch_size=batch_size,
                progress=progress,
                fmt=fmt.value if fmt else None,
                fk_triggers=fk_triggers,
            )
    except ImportFailed as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_FAILED) from exc
    if errors_path is not None:
        write_errors(errors_path, report.errors)
    _print_errors(report, errors_path)
    _print_summary(report)
    raise typer.Exit(exit_code(report))


def exit_code(report: ImportReport) -> int:
    if not report.committed:
        return EXIT_FAILED
    return EXIT_PARTIAL if report.errors else EXIT_OK


def write_errors(path: Path, errors: list[RowError]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["row", "column", "external_id", "reason"])
        for e in errors:
            out.writerow([e.row, e.column, e.external_id or "", e.reason])


def _print_errors(report: ImportReport, errors_path: Path | None) -> None:
    if not report.errors:
        return
    table = Table("row", "column", "external id", "reason", title="Refused rows")
    for e in report.errors[:SHOWN_ERRORS]:
        table.add_row(str(e.row), e.column or "(record)", e.external_id or "", e.reason)
    console.print(table)
    more = len(report.errors) - SHOWN_ERRORS
    if more > 0:
        where = f"all in {errors_path}" if errors_path else "use --errors FILE.csv for all"
        console.print(f"… and {more:,} more ({where})")


def _print_summary(report: ImportReport) -> None:
    noun = "orders" if report.kind == "orders" else report.kind
    table = Table(title=f"{report.kind} from {report.path.name}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    for name in ("created", "updated", "unchanged", "pending", "failed"):
        table.add_row(name, f"{getattr(report, name):,}")
    table.add_row("rows", f"{report.rows:,}")
    table.add_row("rows skipped", f"{report.rows_skipped:,}")
    table.add_row("seconds", f"{report.seconds:.1f}")
    table.add_row("rows/s", f"{report.rows_per_second:,.0f}")
    table.add_row(f"{noun}/s", f"{report.records_per_second:,.0f}")
    console.print(table)
    if not report.committed:
        console.print(
            f"[red]Nothing was written[/red]: {len(report.errors):,} problem(s) found "
            f"({report.mode}). Fix them, or use --skip-bad-rows to import the rest."
        )
    elif report.errors:
        console.print(
            f"[yellow]{report.rows_skipped:,} rows skipped[/yellow] of {report.rows:,}; "
            f"the rest was imported."
        )
    else:
        console.print(f"[green]All {report.rows:,} rows imported.[/green]")
