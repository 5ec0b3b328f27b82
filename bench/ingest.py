"""Ingestion throughput: file import and the bulk API, on SQLite and PostgreSQL.

    python bench/ingest.py                       # 1M orders, both databases
    python bench/ingest.py --orders 100000 --backends sqlite

Generates a synthetic shop with the demo generator, then for each database:
1. `patron import` of customers, products and orders CSV into a fresh store — orders/s
   of the orders file (read, validate, write, commit);
2. the bulk API: a real server (`uvicorn --workers N`) on 127.0.0.1, clients POSTing
   batches of `--batch` orders from `--clients` threads — orders/s end to end (HTTP,
   JSON, validation, idempotency checks, writes, commit).
Targets (issue #2, 2 cores): CSV import ≥ 50,000 orders/s into PostgreSQL, bulk API ≥
5,000 orders/s.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pyarrow.csv as pacsv
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from patron.auth import Scope
from patron.db import make_engine, unit_of_work
from patron.demo.generator import GeneratorParams, generate, write_shop
from patron.ingest.files import import_file
from patron.migrate import upgrade
from patron.stores.service import stores

PG_ADMIN = os.environ.get(
    "PATRON_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Database:
    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.url = f"sqlite:///{workdir / 'bench.db'}"
            self._admin = None
        else:
            self.name = f"patron_bench_{uuid.uuid4().hex[:8]}"
            self._admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with self._admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
            self.url = PG_ADMIN.rsplit("/", 1)[0] + "/" + self.name
        self.engine = make_engine(self.url)
        upgrade(self.engine)

    def new_store(self) -> tuple[str, str]:
        slug = f"bench-{uuid.uuid4().hex[:8]}"
        with unit_of_work(self.engine) as session:
            store = stores.create(session, slug, "bench")
            _, key = stores.create_key(session, store, "bench", [Scope.ingest])
        return slug, key

    def close(self) -> None:
        self.engine.dispose()
        if self._admin is not None:
            with self._admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self._admin.dispose()


def order_bodies(orders_csv: Path) -> list[dict[str, Any]]:
    """The orders file as API bodies (one per order, its lines gathered)."""
    table = pacsv.read_csv(
        orders_csv,
        convert_options=pacsv.ConvertOptions(
            strings_can_be_null=True,
            column_types={
                c: "string"
                for c in (
                    "external_id",
                    "customer_external_id",
                    "placed_at",
                    "paid_at",
                    "delivered_at",
                    "shipping_total",
                    "unit_price",
                    "line_discount",
                    "discount_code",
                    "sku",
                )
            },
        ),
    )
    bodies: dict[str, dict[str, Any]] = {}
    for row in table.to_pylist():
        body = bodies.get(row["external_id"])
        if body is None:
            body = bodies[row["external_id"]] = {
                "external_id": row["external_id"],
                "customer_external_id": row["customer_external_id"],
                "status": row["status"],
                "currency": row["currency"],
                "channel": row["channel"],
                "discount_code": row["discount_code"] or None,
                "shipping_total": row["shipping_total"] or "0",
                "placed_at": row["placed_at"],
                "paid_at": row["paid_at"] or None,
                "delivered_at": row["delivered_at"] or None,
                "lines": [],
            }
        body["lines"].append(
            {
                "sku": row["sku"],
                "quantity": int(row["quantity"]),
                "unit_price": row["unit_price"],
                "discount": row["line_discount"] or "0",
            }
        )
    return list(bodies.values())


def start_server(db: Database, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    """A real uvicorn server on the database, answering /healthz: (process, base URL)."""
    port = free_port()
    env = {**os.environ, "PATRON_DATABASE_URL": db.url}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "patron.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return server, base


def bench_api(
    db: Database, bodies: list[dict[str, Any]], batch: int, clients: int, workers: int
) -> tuple[float, int]:
    _, key = db.new_store()
    server, base = start_server(db, workers)
    try:
        payloads = [
            json.dumps({"records": bodies[i : i + batch]}).encode()
            for i in range(0, len(bodies), batch)
        ]
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        outcome: dict[str, int] = defaultdict(int)
        queue = list(reversed(payloads))
        lock = threading.Lock()

        def client() -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=600) as http:
                while True:
                    with lock:
                        if not queue:
                            return
                        payload = queue.pop()
                    res = http.post("/v1/orders/bulk", content=payload)
                    res.raise_for_status()
                    body = res.json()
                    with lock:
                        for k in ("created", "updated", "unchanged", "failed"):
                            outcome[k] += body[k]

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(30)
    if outcome["created"] != len(bodies):
        raise SystemExit(f"bulk API created {outcome['created']} of {len(bodies)}: {outcome}")
    return seconds, outcome["created"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument(
        "--api-orders",
        type=int,
        default=None,
        help="orders sent through the bulk API (default: all)",
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--sqlite-workers",
        type=int,
        default=2,
        help="server processes on SQLite (one writer at a time; more overlap parsing)",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="patron-bench-"))
    with console.status("generating the shop"):
        shop = generate(GeneratorParams(customers=args.customers, orders=args.orders, seed=7))
        paths = write_shop(shop, workdir / "data", "csv")
    n_orders = len(set(shop.orders.column("external_id").to_pylist()))
    n_lines = shop.orders.num_rows
    console.print(f"shop: {args.customers:,} customers, {n_orders:,} orders, {n_lines:,} lines")
    bodies = order_bodies(paths["orders"])
    if args.api_orders:
        bodies = bodies[: args.api_orders]

    results = Table("database", "step", "orders", "seconds", "orders/s", "target")
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        db = Database(backend, workdir)
        try:
            slug, _ = db.new_store()
            for kind in ("customers", "products"):
                report = import_file(db.engine, slug, kind, paths[kind], mode="all-or-nothing")
                assert not report.failed, report
            started = time.perf_counter()
            report = import_file(db.engine, slug, "orders", paths["orders"], mode="all-or-nothing")
            seconds = time.perf_counter() - started
            assert not report.failed and report.created == n_orders, report
            target = "≥ 50,000" if backend == "postgresql" else ""
            results.add_row(
                backend,
                "CSV import",
                f"{n_orders:,}",
                f"{seconds:.1f}",
                f"{n_orders / seconds:,.0f}",
                target,
            )
            console.print(f"{backend}: CSV import {n_orders / seconds:,.0f} orders/s")
            api_seconds, created = bench_api(
                db,
                bodies,
                args.batch,
                args.clients,
                args.sqlite_workers if backend == "sqlite" else args.workers,
            )
            results.add_row(
                backend,
                f"bulk API ({args.batch}/call, {args.clients} clients)",
                f"{created:,}",
                f"{api_seconds:.1f}",
                f"{created / api_seconds:,.0f}",
                "≥ 5,000",
            )
            console.print(f"{backend}: bulk API {created / api_seconds:,.0f} orders/s")
        finally:
            db.close()
    console.print(results)


if __name__ == "__main__":
    main()
