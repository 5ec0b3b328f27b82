"""Loyalty throughput and latency: order events through rules + ledger, and single calls.

    python bench/loyalty.py                          # PostgreSQL, 100k orders, 200 req/s
    python bench/loyalty.py --backend sqlite --orders 20000 --rate 100

With the example programme (tiers 普通/银卡/金卡/钻石, birthday / Singles' Day / first
order rules with caps and a budget, expiry, pending window):

1. **bulk order events**: delivered orders of the demo generator, in batches of
   `--batch`, through `orders.upsert_many` — order rows, rules, caps, ledger entries and
   lots, tier refresh, one commit per batch (order events/s end to end); then the same
   orders loaded without points and earned by `award_delivered` (rules + ledger only).
2. **single calls under load**: a real server (`uvicorn --workers 2`) on 127.0.0.1; an
   open-loop client sends `--rate` requests/s for `--seconds` s, shared in turn among the
   `--calls` (default `earn,redeem`, the calls the target names):
   - `earn`: `POST /v1/customers/{id}/actions`, a share (rules, caps, ledger);
   - `redeem`: `POST /v1/customers/{id}/rewards/coupon-20/redeem` (a coupon);
   - `order`: `PUT /v1/orders/{id}`, a delivered order written, then earned — ingestion,
     whose target is the bulk rate above; `--calls earn,redeem,order` adds it to the mix.
   Latency is measured from each request's scheduled start, so queueing counts (no
   coordinated omission).

Targets (issue #3, 2 cores): ≥ 2,000 order events/s bulk on PostgreSQL; p99 ≤ 25 ms for
single earn and redeem calls at 200 req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.http import HttpError, LeanClient, Response
from bench.ingest import Database, order_bodies, start_server
from patron.auth import Scope
from patron.customers.schemas import CustomerIn
from patron.customers.service import customers
from patron.db import unit_of_work
from patron.demo.generator import GeneratorParams, generate, write_shop
from patron.ingest.files import import_file
from patron.loyalty.orders import award_delivered
from patron.loyalty.program import load_yaml
from patron.loyalty.programs import programs
from patron.loyalty.service import ledger
from patron.orders.schemas import OrderIn
from patron.orders.service import orders
from patron.stores.service import stores

EXAMPLE = Path(__file__).parents[1] / "src/patron/loyalty/examples/program.yaml"
console = Console()


def new_store(db: Database, with_program: bool = True) -> tuple[str, str]:
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    with unit_of_work(db.engine) as session:
        store = stores.create(session, slug, "bench", "CNY", "Asia/Shanghai", "zh-CN")
        _, key = stores.create_key(session, store, "bench", [Scope.admin])
        if with_program:
            programs.apply(session, store, load_yaml(EXAMPLE.read_text(encoding="utf-8")))
    return slug, key


def bench_bulk(db: Database, bodies: list[dict[str, Any]], batch: int) -> tuple[float, int]:
    slug, _ = new_store(db)
    records = [OrderIn.model_validate(b) for b in bodies]
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        with unit_of_work(db.engine) as session:
            store = stores.get(session, slug)
            results = orders.upsert_many(session, store, records[i : i + batch])
            assert all(r.status == "created" for r in results), results[:3]
    return time.perf_counter() - started, len(records)


def bench_award(db: Database, paths: dict[str, Path]) -> tuple[float, int, float]:
    """Load the shop by file import without a programme, then apply it and earn."""
    slug, _ = new_store(db, with_program=False)
    for kind in ("customers", "products", "orders"):
        report = import_file(db.engine, slug, kind, paths[kind], mode="all-or-nothing")
        assert not report.failed, report
    with unit_of_work(db.engine) as session:
        programs.apply(session, stores.get(session, slug), load_yaml(EXAMPLE.read_text("utf-8")))
    started = time.perf_counter()
    with unit_of_work(db.engine) as session:
        earned = award_delivered(session, stores.get(session, slug))
    seconds = time.perf_counter() - started
    return seconds, earned, 0.0


def _order_body(ext: str, customer: str, now: datetime) -> dict[str, Any]:
    placed = now - timedelta(days=3)
    return {
        "external_id": ext,
        "customer_external_id": customer,
        "status": "delivered",
        "channel": "web",
        "currency": "CNY",
        "placed_at": placed.isoformat(),
        "paid_at": placed.isoformat(),
        "delivered_at": (now - timedelta(days=1)).isoformat(),
        "lines": [{"sku": "SERUM", "category": "skincare", "quantity": 1, "unit_price": "199.00"}],
    }


KINDS = ("order", "earn", "redeem")


async def _call(
    http: LeanClient, kind: str, i: int, customer: str, run: str, now: datetime
) -> Response:
    if kind == "order":
        ext = f"{run}-{i}"
        return await http.request("PUT", f"/v1/orders/{ext}", _order_body(ext, customer, now))
    if kind == "earn":
        return await http.request(
            "POST",
            f"/v1/customers/{customer}/actions",
            {"kind": "share", "key": f"{run}-{i}"},
        )
    return await http.request(
        "POST",
        f"/v1/customers/{customer}/rewards/coupon-20/redeem",
        headers={"Idempotency-Key": f"draw-{run}-{i}"},
    )


async def _load(
    base: str,
    key: str,
    rate: float,
    seconds: float,
    members: int,
    run: str,
    calls: tuple[str, ...] = KINDS,
) -> dict[str, list[float]]:
    """Open loop: request i starts at i / rate s whatever the answers before it; its
    latency counts from then. A request that fails or times out (30 s) is an error."""
    latencies: dict[str, list[float]] = {k: [] for k in (*KINDS, "error")}
    now = datetime.now(UTC)
    http = LeanClient(base, {"Authorization": f"Bearer {key}"}, timeout=30)
    try:
        start = time.perf_counter()
        total = int(rate * seconds)

        async def one(i: int) -> None:
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            kind = calls[i % len(calls)]
            try:
                res = await _call(http, kind, i, f"M-{i % members}", run, now)
            except HttpError as exc:  # a timeout: the server is over capacity
                latencies["error"].append((time.perf_counter() - due) * 1000)
                if len(latencies["error"]) <= 3:
                    console.print(f"[red]{kind}[/red] {exc!r}")
                return
            elapsed = (time.perf_counter() - due) * 1000
            latencies[kind if res.status_code < 300 else "error"].append(elapsed)
            if res.status_code >= 300 and len(latencies["error"]) <= 3:
                console.print(f"[red]{kind} {res.status_code}[/red] {res.text[:200]}")

        await asyncio.gather(*(one(i) for i in range(total)))
    finally:
        await http.close()
    return latencies


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_ms(server_pid: int) -> tuple[float, float]:
    """CPU time (ms) used so far by the server's process tree and by PostgreSQL."""
    parents: dict[int, int] = {}
    used: dict[int, int] = {}
    postgres = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                command = f.read()
        except OSError:
            continue
        pid, ticks = int(name), int(fields[11]) + int(fields[12])
        parents[pid], used[pid] = int(fields[1]), ticks
        postgres += ticks if command.startswith(b"postgres") else 0

    def in_server(pid: int) -> bool:
        while pid > 1:
            if pid == server_pid:
                return True
            pid = parents.get(pid, 0)
        return False

    server = sum(t for pid, t in used.items() if in_server(pid))
    return server * 1000 / _TICK, postgres * 1000 / _TICK


def bench_latency(
    db: Database, rate: float, seconds: float, members: int, calls: tuple[str, ...]
) -> dict[str, Any]:
    """Latencies per call kind, plus "cpu": CPU ms per request of server, PostgreSQL and
    this client (PostgreSQL counts every backend: run on a quiet machine)."""
    slug, key = new_store(db)
    with unit_of_work(db.engine) as session:  # members with points to redeem
        store = stores.get(session, slug)
        customers.upsert_many(
            session, store, [CustomerIn(external_id=f"M-{n}") for n in range(members)]
        )
        for n in range(members):
            cid = ledger.customer_id(session, store, f"M-{n}")
            ledger.adjust(session, store, cid, key=f"seed-{n}", points=1_000_000, reason="bench")
    server, base = start_server(db, 2 if db.backend == "postgresql" else 1)
    try:
        asyncio.run(_load(base, key, rate, 2, members, "warm", calls))  # warm up both workers
        server0, postgres0, client0 = *_cpu_ms(server.pid), time.process_time()
        latencies: dict[str, Any] = asyncio.run(
            _load(base, key, rate, seconds, members, "run", calls)
        )
        server1, postgres1, client1 = *_cpu_ms(server.pid), time.process_time()
        requests = rate * seconds
        latencies["cpu"] = {
            "server": (server1 - server0) / requests,
            "postgres": (postgres1 - postgres0) / requests,
            "client": (client1 - client0) * 1000 / requests,
        }
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return latencies


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="postgresql", choices=["postgresql", "sqlite"])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--steps", default="bulk,award,latency", help="which steps to run")
    parser.add_argument(
        "--calls", default="earn,redeem", help="the single calls under load: earn, redeem, order"
    )
    args = parser.parse_args()
    calls = tuple(c.strip() for c in args.calls.split(",") if c.strip())
    if not calls or set(calls) - set(KINDS):
        parser.error(f"--calls: choose among {', '.join(KINDS)}")
    steps = {s.strip() for s in args.steps.split(",")}

    workdir = Path(tempfile.mkdtemp(prefix="patron-bench-loyalty-"))
    with console.status("generating the shop"):
        shop = generate(GeneratorParams(customers=args.customers, orders=args.orders, seed=11))
        paths = write_shop(shop, workdir / "data", "csv")
    bodies = [b for b in order_bodies(paths["orders"]) if b["status"] == "delivered"]
    db = Database(args.backend, workdir)
    table = Table("step", "events", "seconds", "events/s", "target")
    lat: dict[str, list[float]] = {}
    target = "≥ 2,000" if args.backend == "postgresql" else ""
    try:
        if "bulk" in steps:
            seconds, n = bench_bulk(db, bodies, args.batch)
            console.print(f"bulk order events (orders + rules + ledger): {n / seconds:,.0f}/s")
            table.add_row(
                f"delivered orders, upsert_many ({args.batch}/batch)",
                f"{n:,}",
                f"{seconds:.1f}",
                f"{n / seconds:,.0f}",
                target,
            )
        if "award" in steps:
            seconds, earned, _ = bench_award(db, paths)
            console.print(f"rules + ledger only (award_delivered): {earned / seconds:,.0f}/s")
            table.add_row(
                "award_delivered (rules + ledger)",
                f"{earned:,}",
                f"{seconds:.1f}",
                f"{earned / seconds:,.0f}",
                target,
            )
        if "latency" in steps:
            lat = bench_latency(db, args.rate, args.seconds, args.members, calls)
    finally:
        db.close()
    console.print(table)
    latency = Table("call", "requests", "p50 ms", "p90 ms", "p99 ms", "max ms", "target")
    labels = {
        "earn": "earn: an action through rules + ledger",
        "redeem": "redeem: a coupon for points",
        "order": "a delivered order (upsert + earn)",
    }
    for kind in calls:
        values = lat.get(kind, [])
        latency.add_row(
            f"{labels[kind]}, {args.rate:g} req/s in all",
            f"{len(values):,}",
            f"{pct(values, 50):.1f}",
            f"{pct(values, 90):.1f}",
            f"{pct(values, 99):.1f}",
            f"{max(values, default=float('nan')):.1f}",
            "p99 ≤ 25",
        )
    console.print(latency)
    if "cpu" in lat:
        cpu = lat["cpu"]
        console.print(
            f"CPU per request: server {cpu['server']:.2f} ms, PostgreSQL {cpu['postgres']:.2f}"
            f" ms, load client {cpu['client']:.2f} ms ({os.cpu_count()} cores)"
        )
    if lat.get("error"):
        console.print(f"[red]{len(lat['error'])} requests failed[/red]")


if __name__ == "__main__":
    main()
