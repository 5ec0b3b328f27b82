"""Recommendations for a campaign batch: 100,000 customers from ~1,000,000 order lines.

    python -m bench.recommend                            # PostgreSQL, defaults below
    python -m bench.recommend --lines 200000 --batch 20000

A scratch PostgreSQL database (dropped afterwards) gets one store with ``--products``
products in 50 categories, ``--customers`` customers and orders of 1-3 lines (1.3 on
average) until ``--lines`` lines: each customer has a favourite category (80% of their
lines, popularity within a category Zipf-like), 5% of lines refunded, 3% of orders
cancelled. Rows are written with COPY from numpy arrays (seed 7).

Then, before (``recommend.in_memory``: everything built from the orders on each call)
and after (``recommend.for_customers``: the persisted neighbours) side by side: the
rebuild (twice, commit included); one customer at a time for ``--singles`` customers
drawn from the batch (``--before-singles`` of them in memory, ~2 s each); and the batch
of ``--batch`` customers with orders plus 1% without (the cold-start path), three times
each way, the answers compared customer by customer. ``--profile`` prints a cProfile of
one rebuild and one batch.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from bench.ingest import Database
from patron.campaigns import recommend
from patron.db import unit_of_work
from patron.stores.service import stores

NOW = datetime(2026, 11, 26, tzinfo=UTC)
console = Console(width=120)


def _copy(db: Database, table: str, columns: str, lines: io.StringIO) -> None:
    lines.seek(0)
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            while chunk := lines.read(1 << 20):
                copy.write(chunk)
        raw.commit()
    finally:
        raw.close()


def build(db: Database, n_products: int, n_customers: int, n_lines: int) -> int:
    rng = np.random.default_rng(7)
    with unit_of_work(db.engine) as session:
        store = stores.create(session, "bench-recommend", "bench", "CNY", "Asia/Shanghai")
        store_id = store.id
    now = NOW.isoformat()
    buf = io.StringIO()
    for p in range(n_products):
        buf.write(f"{store_id}\tsku{p}\tProduct {p}\tcat{p % 50}\t1000\tCNY\t{now}\t{now}\n")
    _copy(
        db,
        "products",
        "store_id, sku, name, category, price_minor, currency, created_at, updated_at",
        buf,
    )
    buf = io.StringIO()
    for c in range(n_customers):
        buf.write(f"{store_id}\tc{c}\t{{}}\t{{}}\tf\tf\t{now}\t{now}\n")
    _copy(
        db,
        "customers",
        "store_id, external_id, attributes, traits, flagged, is_stub, created_at, updated_at",
        buf,
    )
    with db.engine.connect() as conn:
        first_customer = conn.execute(
            text("SELECT min(id) FROM customers WHERE store_id = :s"), {"s": store_id}
        ).scalar_one()
        first_order = conn.execute(text("SELECT coalesce(max(id), 0) + 1 FROM orders")).scalar_one()

    n_orders = int(n_lines / 1.3)
    sizes = rng.choice([1, 2, 3], size=n_orders, p=[0.76, 0.18, 0.06])
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_lines) + 1]
    n_orders = len(sizes)
    # Customers: a few buy often (Zipf-like), most once or twice.
    owner = (
        rng.zipf(1.3, size=n_orders) * 7919 + rng.integers(0, n_customers, n_orders)
    ) % n_customers
    favourite = rng.integers(0, 50, size=n_customers)
    per_cat = n_products // 50
    status = np.where(rng.random(n_orders) < 0.03, "cancelled", "delivered")
    buf = io.StringIO()
    for i in range(n_orders):
        buf.write(
            f"{store_id}\to{i}\t{first_customer + owner[i]}\t{status[i]}\tCNY\t1000\t0\t0\t0\t"
            f"1000\t0\t{now}\t{now}\t{now}\n"
        )
    _copy(
        db,
        "orders",
        "store_id, external_id, customer_id, status, currency, subtotal_minor, "
        "discount_minor, shipping_minor, tax_minor, total_minor, refunded_minor, placed_at, "
        "created_at, updated_at",
        buf,
    )
    line_order = np.repeat(np.arange(n_orders), sizes)
    line_no = np.concatenate([np.arange(1, s + 1) for s in sizes]) if n_orders else np.zeros(0)
    cat = np.where(
        rng.random(len(line_order)) < 0.8,
        favourite[owner[line_order]],
        rng.integers(0, 50, len(line_order)),
    )
    within = np.minimum(rng.zipf(1.5, size=len(line_order)) - 1, per_cat - 1)
    product = within * 50 + cat
    refunded = rng.random(len(line_order)) < 0.05
    buf = io.StringIO()
    for o, n, p, r in zip(line_order, line_no, product, refunded, strict=True):
        q = 1
        buf.write(
            f"{first_order + o}\t{n}\tsku{p}\t{q}\t1000\t0\t1000\t{q if r else 0}\t"
            f"{1000 if r else 0}\n"
        )
    _copy(
        db,
        "order_lines",
        "order_id, line_no, sku, quantity, unit_price_minor, "
        "discount_minor, total_minor, refunded_quantity, refunded_minor",
        buf,
    )
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    console.print(
        f"built {n_products:,} products, {n_customers:,} customers, {n_orders:,} orders, "
        f"{len(line_order):,} lines"
    )
    return store_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--customers", type=int, default=300_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--singles", type=int, default=1000, help="Customers timed alone.")
    parser.add_argument(
        "--before-singles", type=int, default=5, help="Of which timed in memory (~2 s each)."
    )
    parser.add_argument("--profile", action="store_true", help="Print a cProfile of a run.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database("postgresql", Path(tmp))
        try:
            started = time.perf_counter()
            store_id = build(db, args.products, args.customers, args.lines)
            console.print(f"  in {time.perf_counter() - started:.0f} s")
            with db.engine.connect() as conn:
                buyers = (
                    conn.execute(
                        text(
                            "SELECT DISTINCT customer_id FROM orders WHERE store_id = :s "
                            "ORDER BY customer_id LIMIT :n"
                        ),
                        {"s": store_id, "n": args.batch},
                    )
                    .scalars()
                    .all()
                )
                cold = (
                    conn.execute(
                        text(
                            "SELECT id FROM customers c WHERE store_id = :s AND NOT EXISTS "
                            "(SELECT 1 FROM orders o WHERE o.customer_id = c.id) LIMIT :n"
                        ),
                        {"s": store_id, "n": max(1, args.batch // 100)},
                    )
                    .scalars()
                    .all()
                )
            batch = list(buyers) + list(cold)
            if args.profile:
                import cProfile
                import pstats

                with unit_of_work(db.engine) as session, cProfile.Profile() as prof:
                    recommend.rebuild(session, store_id)
                    recommend.for_customers(session, store_id, batch, limit=args.limit)
                pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
            _compare(db, store_id, batch, len(cold), args)
        finally:
            db.close()


def _ms(values: list[float], q: float) -> str:
    return f"{np.quantile(np.array(values), q) * 1000:.1f}"


def _compare(db: Database, store_id: int, batch: list[int], n_cold: int, args: Any) -> None:
    """Rebuild, then before (in memory) and after (persisted) side by side."""
    builds = []
    for _ in range(2):
        t = time.perf_counter()
        with unit_of_work(db.engine) as session:
            build = recommend.rebuild(session, store_id)
        builds.append(time.perf_counter() - t)
    console.print(
        f"rebuild: {build.neighbours:,} neighbours of {build.products:,} products from "
        f"{build.customers:,} customers: {', '.join(f'{b:.2f}' for b in builds)} s "
        "(incl. commit)"
    )
    with unit_of_work(db.engine) as session:
        t = time.perf_counter()
        recommend.watermark(session, store_id)
        console.print(f"watermark (the job's change check): {time.perf_counter() - t:.2f} s")
    rng = np.random.default_rng(11)
    singles = [int(c) for c in rng.choice(batch, size=min(args.singles, len(batch)), replace=False)]

    def one(fn: Any, cid: int) -> float:
        with unit_of_work(db.engine) as session:
            t = time.perf_counter()
            fn(session, store_id, [cid], limit=args.limit)
            return time.perf_counter() - t

    after_single = [one(recommend.for_customers, c) for c in singles]
    before_single = [one(recommend.in_memory, c) for c in singles[: args.before_singles]]
    runs: dict[str, list[float]] = {"before": [], "after": []}
    answers: dict[str, dict[int, list[recommend.Suggestion]]] = {}
    for _ in range(3):
        for name, fn in (("before", recommend.in_memory), ("after", recommend.for_customers)):
            with unit_of_work(db.engine) as session:
                t = time.perf_counter()
                answers[name] = fn(session, store_id, batch, limit=args.limit)
                runs[name].append(time.perf_counter() - t)
    same = sum(answers["before"][c] == answers["after"][c] for c in batch)
    filled = sum(1 for v in answers["after"].values() if len(v) == args.limit)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = Table("", "before (in memory)", "after (persisted)")
    table.add_row(
        f"one customer, p50 / p99 ms ({len(before_single):,} / {len(singles):,} customers)",
        f"{_ms(before_single, 0.5)} / {_ms(before_single, 0.99)}",
        f"{_ms(after_single, 0.5)} / {_ms(after_single, 0.99)}",
    )
    for name in runs:
        runs[name].sort()
    table.add_row(
        f"batch of {len(batch):,} ({n_cold:,} without history), median of 3, s",
        f"{statistics.median(runs['before']):.2f} "
        f"({', '.join(f'{r:.2f}' for r in runs['before'])})",
        f"{statistics.median(runs['after']):.2f} ({', '.join(f'{r:.2f}' for r in runs['after'])})",
    )
    console.print(table)
    console.print(
        f"same answer for {same:,} of {len(batch):,} customers; {filled:,} with a full list; "
        f"peak RSS {peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()
