"""`patron generate` (synthetic shop files) and `patron demo` (a filled store, served)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

console = Console()

Customers = Annotated[int, typer.Option("--customers", min=1, help="Number of customers.")]
Orders = Annotated[int, typer.Option("--orders", min=1, help="Target number of orders.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed: same seed, same shop.")]
DEMO_SLUG = "demo"
#: The demo shop's customers: a member drops out after 10% of purchases on average (Beta(1, 9))
#: rather than the generator's default 24%, so that about half of them are still buying at
#: the end of the history (the default leaves 22%, buying every ten days until they vanish,
#: and 2,700 of 5,000 customers with a CLV under ¥1); the rate scale still hits --orders.
DEMO_DROPOUT_A, DEMO_DROPOUT_B = 1.0, 9.0
IMPORT_ORDER: tuple[Literal["customers", "products", "orders", "refunds"], ...] = (
    "customers",
    "products",
    "orders",
    "refunds",
)


def generate_command(
    customers: Customers = 5000,
    orders: Orders = 50000,
    seed: Seed = 42,
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("patron-data"),
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
) -> None:
    """Write a synthetic shop (customers, products, orders, refunds) with its ground truth.

    The purchase and spend model and its parameters are documented in docs/generator.md;
    ground_truth.json and truth.<ext> hold the true per-customer rates for checking
    analytics.
    """
    from patron.demo.generator import GeneratorParams, generate, write_shop

    if fmt not in ("csv", "parquet"):
        raise typer.BadParameter("csv or parquet", param_hint="--format")
    started = time.perf_counter()
    with console.status(f"generating {customers:,} customers / ~{orders:,} orders…"):
        shop = generate(GeneratorParams(customers=customers, orders=orders, seed=seed))
        paths = write_shop(shop, out, fmt)  # type: ignore[arg-type]
    table = Table("file", "rows")
    for name, path in paths.items():
        rows = getattr(shop, name).num_rows if hasattr(shop, name) else None
        table.add_row(str(path), f"{rows:,}" if rows is not None else "")
    console.print(table)
    console.print(f"done in {time.perf_counter() - started:.1f}s")


def demo_command(
    customers: Customers = 5000,
    orders: Orders = 50000,
    seed: Seed = 42,
    db: Annotated[Path, typer.Option("--db", help="SQLite file of the demo.")] = Path(
        "patron-demo.db"
    ),
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over from an empty file.")] = False,
    serve: Annotated[bool, typer.Option(help="Serve the API when the store is ready.")] = True,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Create a SQLite demo store filled with a synthetic shop, then serve the API.

    Reuses an existing demo file (fast restart) unless --fresh is given.
    """
    db = db.resolve()
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    os.environ["PATRON_DATABASE_URL"] = url
    from patron.config import get_settings
    from patron.db import default_engine

    get_settings.cache_clear()
    default_engine.cache_clear()

    from patron.auth import Scope
    from patron.db import unit_of_work
    from patron.migrate import upgrade
    from patron.stores import repository as stores_repo
    from patron.stores.service import stores
    from patron.web.staff import DEMO_PASSWORD, ensure_demo_staff

    engine = default_engine()
    upgrade(engine)
    with unit_of_work(engine) as session:
        existing = stores_repo.by_slug(session, DEMO_SLUG)
    if existing is None:
        _fill(engine, customers, orders, seed, db)
    else:
        console.print(f"reusing the demo store in {db} (--fresh to rebuild it)")
    if engine.dialect.name == "sqlite":  # planner statistics: per-customer reads use
        with engine.begin() as conn:  # the customer index (the dashboard's 360 view)
            conn.exec_driver_sql("ANALYZE")
    with unit_of_work(engine) as session:
        store = stores.get(session, DEMO_SLUG)
        _, key = stores.create_key(session, store, "demo", [Scope.admin])
        webhook_secret = store.webhook_secret
        staff = ensure_demo_staff(session, store)
        from patron.web.member import demo_member_link

        member_url = demo_member_link(session, store, f"http://{host}:{port}")
    console.print(f"\n[bold]Admin API key[/bold] (store `{DEMO_SLUG}`): {key}")
    console.print(f"Member page (a demo member, link valid 30 days): {member_url}", soft_wrap=True)
    console.print(f"Shopify webhook secret: {webhook_secret}")
    console.print(f"API docs: http://{host}:{port}/docs")
    console.print(f"[bold]Dashboard[/bold]: http://{host}:{port}/login (English / 简体中文)")
    for email, role in staff:
        console.print(f"  {role.value:<8} {email}  password: {DEMO_PASSWORD}")
    console.print("  (a fixed password for this synthetic demo store only: never reuse it)")
    console.print(
        f'Try: curl -H "Authorization: Bearer {key}" "http://{host}:{port}/v1/customers?limit=3"\n'
    )
    if serve:
        import uvicorn

        from patron.app import create_app

        uvicorn.run(create_app(engine, jobs_interval=60), host=host, port=port, log_level="info")


def _fill(engine: Engine, customers: int, orders: int, seed: int, db: Path) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from patron.analytics.report import AnalysisOptions
    from patron.analytics.service import analytics
    from patron.db import unit_of_work
    from patron.demo.feedback import fill_feedback
    from patron.demo.generator import GeneratorParams, generate, write_shop
    from patron.ingest.files import import_file
    from patron.loyalty.jobs import run_due
    from patron.loyalty.orders import award_delivered
    from patron.loyalty.program import load_yaml
    from patron.loyalty.programs import programs
    from patron.stores.service import stores

    started = time.perf_counter()
    with unit_of_work(engine) as session:
        store = stores.create(
            session, DEMO_SLUG, "Patron 演示美妆 · Demo Cosmetics", "CNY", "Asia/Shanghai", "zh-CN"
        )
        # The example programme (tiers 普通/银卡/金卡/钻石, rules, rewards), from the start.
        example = Path(__file__).parent.parent / "loyalty" / "examples" / "program.yaml"
        programs.apply(session, store, load_yaml(example.read_text(encoding="utf-8")), source="cli")
    with console.status(f"generating a shop of {customers:,} customers / ~{orders:,} orders…"):
        shop = generate(
            GeneratorParams(
                customers=customers,
                orders=orders,
                seed=seed,
                a=DEMO_DROPOUT_A,
                b=DEMO_DROPOUT_B,
            )
        )
    data_dir = db.with_name(db.stem + "-data")
    # Kept beside the database: the files and the ground truth for checking analytics.
    paths = write_shop(shop, data_dir, "parquet")
    with Progress(
        TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        for kind in IMPORT_ORDER:
            report = import_file(
                engine,
                DEMO_SLUG,
                kind,
                paths[kind],
                mode="all-or-nothing",
                progress=progress,
            )
            if report.failed:
                for error in report.errors[:10]:
                    console.print(
                        f"[red]{kind} row {error.row}[/red] {error.column}: {error.reason}"
                    )
                engine.dispose()
                for suffix in ("", "-wal", "-shm"):  # no half-filled demo to reuse next time
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                raise typer.Exit(1)
    # File imports bypass the orders service: delivered orders earn their points here.
    points_started = time.perf_counter()
    with (
        console.status("awarding points for delivered orders…"),
        unit_of_work(engine) as session,
    ):
        demo_store = stores.get(session, DEMO_SLUG)
        earned = award_delivered(session, demo_store)
        # Points past their return window mature, old lots expire, tiers count what matured.
        jobs = run_due(session, demo_store)
    console.print(
        f"{earned:,} delivered orders earned points, {jobs.matured:,} lots matured, "
        f"{jobs.expired:,} expired, {jobs.tiers:,} tiers reviewed "
        f"in {time.perf_counter() - points_started:.1f}s"
    )
    from patron.demo.rewards import fill_rewards

    rewards_started = time.perf_counter()
    with (
        console.status("rewards redeemed, coupons used, check-ins…"),
        unit_of_work(engine) as session,
    ):
        spent = fill_rewards(session, stores.get(session, DEMO_SLUG), seed)
    console.print(
        f"{spent.redemptions:,} rewards redeemed ({spent.coupons_used:,} coupons used), "
        f"{spent.draws:,} lucky draws, {spent.check_ins:,} check-ins "
        f"in {time.perf_counter() - rewards_started:.1f}s"
    )
    # The analytics API and the dashboard answer from a stored run: make the first one.
    analysis_started = time.perf_counter()
    with (
        console.status("analysing: retention, RFM, loyalty types, CLV…"),
        unit_of_work(engine) as session,
    ):
        stored = analytics.run(session, stores.get(session, DEMO_SLUG), AnalysisOptions())
    console.print(
        f"analysis stored (run {stored.run.id}, {stored.scores_written:,} customers scored) "
        f"in {time.perf_counter() - analysis_started:.1f}s"
    )
    feedback_started = time.perf_counter()
    with (
        console.status("surveys, reviews and support tickets…"),
        unit_of_work(engine) as session,
    ):
        filled = fill_feedback(session, stores.get(session, DEMO_SLUG), seed)
    console.print(
        f"{filled.responses:,} survey answers, {filled.reviews:,} reviews, "
        f"{filled.tickets:,} tickets ({filled.follow_ups:,} follow-ups opened by unhappy "
        f"answers and reviews) in {time.perf_counter() - feedback_started:.1f}s"
    )
    from patron.demo.campaigns import fill_campaigns

    campaigns_started = time.perf_counter()
    with console.status("campaigns…"), unit_of_work(engine) as session:
        made = fill_campaigns(session, stores.get(session, DEMO_SLUG))
    console.print(
        f"{made.campaigns} campaigns ({made.sent:,} messages sent, {made.held_out:,} held out) "
        f"in {time.perf_counter() - campaigns_started:.1f}s"
    )
    console.print(
        f"demo store ready in {time.perf_counter() - started:.1f}s (ground truth in {data_dir})"
    )
