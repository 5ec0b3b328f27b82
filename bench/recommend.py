"""Recommendations for a campaign batch: 100,000 customers from ~1,000,000 order lines.

    python -m bench.recommend                            # PostgreSQL, defaults below
    python -m bench.recommend --lines 200000 --batch 20000

A scratch PostgreSQL database (dropped afterwards) gets one store with ``--products``
products in 50 categories, ``--customers`` customers and orders of 1-3 lines (1.3 on
average) until ``--lines`` lines: each customer has a favourite category (80% of their
lines, popularity within a category Zipf-like), 5% of lines refunded, 3% of orders
cancelled. Rows are written with COPY from numpy arrays (seed 7).

Then ``recommend.for_customers`` is timed for ``--batch`` customers who have orders plus
1% without (the cold-start path), three times: load (the query of order lines),
the matrices and the scoring are one call; the median is reported, with the process's
peak memory.
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

import numpy as np
from rich.console import Console
from sqlalchemy import text

from bench.ingest import Database
from patron.campaigns import recommend
from patron.db import unit_of_work
from patron.stores.service import stores

NOW = datetime(2026, 11, 26, tzinfo=UTC)
console = Console()


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
                    recommend.for_customers(session, store_id, batch, limit=args.limit)
                pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
            runs = []
            filled = 0
            for _ in range(3):
                with unit_of_work(db.engine) as session:
                    t = time.perf_counter()
                    out = recommend.for_customers(session, store_id, batch, limit=args.limit)
                    runs.append(time.perf_counter() - t)
                filled = sum(1 for v in out.values() if len(v) == args.limit)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            console.print(
                f"for_customers: {len(batch):,} customers ({len(cold):,} without history), "
                f"limit {args.limit}: median {statistics.median(runs):.2f} s "
                f"(runs {', '.join(f'{r:.2f}' for r in runs)}); {filled:,} with a full list; "
                f"peak RSS {peak:.0f} MiB"
            )
        finally:
            db.close()


if __name__ == "__main__":
    main()
