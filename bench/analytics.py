"""The full `patron analyze` report on a large shop read from Parquet.

    python -m bench.analytics                                  # 10M orders / 1M customers
    python -m bench.analytics --orders 1000000 --customers 100000 --breakdown

1. The demo generator writes the shop (order lines, customers, refunds) as Parquet into
   ``--workdir`` (kept and reused for the same parameters: generating is not analysing).
2. ``patron analyze --source orders.parquet --customers ... --refunds ... --export``
   runs as a user runs it (a new process: imports, engine start, reading, every section,
   the CLV fits, customer scores and the export files), timed wall-clock.
3. ``--breakdown`` also runs the same analysis in this process and times each step.

Target from issue #4: ≤ 60 s for 10M orders / 1M customers on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from patron.demo.generator import GeneratorParams, generate, write_shop

console = Console()
TIMEZONE = "Asia/Shanghai"  # the generator's shop


def shop_files(workdir: Path, customers: int, orders: int, seed: int) -> dict[str, Path]:
    """The generated shop as Parquet, made once per (customers, orders, seed)."""
    folder = workdir / f"shop-{customers}-{orders}-{seed}"
    names = ("orders", "customers", "refunds")
    paths = {name: folder / f"{name}.parquet" for name in names}
    if all(p.exists() for p in paths.values()):
        return paths
    console.print(f"generating {orders:,} orders of {customers:,} customers (once) …")
    started = time.perf_counter()
    shop = generate(GeneratorParams(customers=customers, orders=orders, seed=seed))
    write_shop(shop, folder, "parquet")
    console.print(f"  generated in {time.perf_counter() - started:.0f} s")
    return paths


def run_cli(paths: dict[str, Path], engine: str, out: Path) -> tuple[float, dict[str, int]]:
    """Wall-clock seconds of `patron analyze` with export, and the rows it exported."""
    shutil.rmtree(out, ignore_errors=True)
    patron = Path(sys.executable).with_name("patron")
    command = [
        str(patron),
        "analyze",
        "--source",
        str(paths["orders"]),
        "--customers",
        str(paths["customers"]),
        "--refunds",
        str(paths["refunds"]),
        "--timezone",
        TIMEZONE,
        "--engine",
        engine,
        "--export",
        str(out),
        "--format",
        "parquet",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    import pyarrow.parquet as pq

    rows = {p.stem: pq.ParquetFile(p).metadata.num_rows for p in sorted(out.glob("*.parquet"))}
    return seconds, rows


def breakdown(paths: dict[str, Path], engine: str) -> list[tuple[str, float]]:
    """Seconds per step of the same analysis, in this process."""
    from patron.analytics.frame import Engine
    from patron.analytics.report import AnalysisOptions, analyze_with_scores
    from patron.analytics.sources import open_source

    engine_name: Engine = "spark" if engine == "spark" else "duckdb"
    steps: list[tuple[str, float]] = []
    last = time.perf_counter()
    frame = open_source(
        paths["orders"],
        engine=engine_name,
        customers_file=paths["customers"],
        refunds_file=paths["refunds"],
        timezone=TIMEZONE,
    )
    steps.append(("open the Parquet source", time.perf_counter() - last))
    report, _ = analyze_with_scores(frame, AnalysisOptions())
    steps.extend(report.seconds.items())
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--engine", default="duckdb", choices=["duckdb", "spark"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/patron-bench-analytics"))
    parser.add_argument("--breakdown", action="store_true", help="also time each step")
    args = parser.parse_args()

    paths = shop_files(args.workdir, args.customers, args.orders, args.seed)
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ids = pq.read_table(paths["orders"], columns=["external_id"]).column("external_id")
    lines, orders = len(ids), len(pc.unique(ids))
    seconds, rows = run_cli(paths, args.engine, args.workdir / "export")
    table = Table(title=f"patron analyze, {args.engine}, {os.cpu_count()} cores")
    table.add_column("what")
    table.add_column("figure", justify="right")
    table.add_column("target", justify="right")
    table.add_row("orders / order lines", f"{orders:,} / {lines:,}", "")
    table.add_row("customers", f"{args.customers:,}", "")
    table.add_row("customer scores exported", f"{rows.get('customer_scores', 0):,}", "")
    table.add_row("full report, wall clock (new process)", f"{seconds:.1f} s", "≤ 60 s")
    console.print(table)
    if args.breakdown:
        steps = breakdown(paths, args.engine)
        detail = Table("step", "seconds", title="the same analysis, step by step (in process)")
        for step, took in steps:
            detail.add_row(step, f"{took:.1f}")
        detail.add_row("total", f"{sum(t for _, t in steps):.1f}")
        console.print(detail)
    console.print(json.dumps({"seconds": round(seconds, 2), "exported": rows}))


if __name__ == "__main__":
    main()
