"""The `patron` command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from patron import __version__
from patron.analytics.cli import analyze_command
from patron.auth import Scope
from patron.campaigns.cli import campaigns_app, privacy_app
from patron.campaigns.segment_cli import segments_app
from patron.config import get_settings
from patron.db import default_engine, unit_of_work
from patron.demo.cli import demo_command, generate_command
from patron.errors import PatronError
from patron.feedback.cli import feedback_app
from patron.ingest.cli import import_app
from patron.loyalty.cli import program_app
from patron.loyalty.worker_cli import worker_command
from patron.referrals.cli import referrals_app
from patron.rewards.cli import rewards_app
from patron.stores.service import stores
from patron.support.cli import support_app
from patron.web.cli import staff_app

app = typer.Typer(
    help="Patron: customer loyalty and retention for online stores.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
stores_app = typer.Typer(help="Stores (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of a store.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(stores_app, name="stores")
app.add_typer(keys_app, name="keys")
app.add_typer(import_app, name="import")
app.add_typer(program_app, name="program")
app.add_typer(rewards_app, name="rewards")
app.add_typer(referrals_app, name="referrals")
app.add_typer(support_app, name="support")
app.add_typer(feedback_app, name="feedback")
app.add_typer(privacy_app, name="privacy")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(segments_app, name="segments")
app.add_typer(staff_app, name="staff")
console = Console()
err = Console(stderr=True)

StoreOpt = Annotated[str, typer.Option("--store", "-s", help="Store slug.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@app.callback(invoke_without_command=True)
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        console.print(f"patron {__version__}")
        raise typer.Exit()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of PATRON_DATABASE_URL to the newest version."""
    from patron.migrate import upgrade

    upgrade(default_engine())
    console.print(f"schema up to date: {get_settings().database_url}")


@stores_app.command("create")
def stores_create(
    slug: Annotated[str, typer.Argument(help="Short unique name, e.g. `acme`.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    currency: Annotated[str, typer.Option(help="ISO 4217 code.")] = "CNY",
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = "Asia/Shanghai",
    locale: Annotated[str, typer.Option(help="Default locale.")] = "zh-CN",
    webhook_secret: Annotated[
        str | None, typer.Option(help="Shopify webhook signing secret (generated if omitted).")
    ] = None,
) -> None:
    """Create a store."""
    try:
        with unit_of_work() as session:
            store = stores.create(
                session, slug, name or slug, currency, timezone, locale, webhook_secret
            )
            console.print(f"created store [bold]{store.slug}[/bold] (id {store.id})")
            console.print(f"webhook secret: {store.webhook_secret}")
    except PatronError as exc:
        raise fail(exc.detail) from exc


@stores_app.command("list")
def stores_list() -> None:
    """List stores."""
    with unit_of_work() as session:
        table = Table("id", "slug", "name", "currency", "timezone", "locale")
        for s in stores.list(session):
            table.add_row(str(s.id), s.slug, s.name, s.currency, s.timezone, s.locale)
        console.print(table)


@keys_app.command("create")
def keys_create(
    store: StoreOpt,
    scope: Annotated[list[Scope], typer.Option(help="Repeat for several: admin, ingest, read.")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "default",
) -> None:
    """Create an API key. The key is printed once; only its hash is stored."""
    try:
        with unit_of_work() as session:
            key, full = stores.create_key(session, stores.get(session, store), name, scope)
            console.print(f"key {key.prefix} ({key.scopes}) for store {store}:")
            print(full)
    except PatronError as exc:
        raise fail(exc.detail) from exc


@keys_app.command("list")
def keys_list(store: StoreOpt) -> None:
    """List a store's keys (prefixes only)."""
    try:
        with unit_of_work() as session:
            table = Table("prefix", "name", "scopes", "created", "last used", "revoked")
            for k in stores.keys(session, stores.get(session, store)):
                table.add_row(
                    k.prefix,
                    k.name,
                    k.scopes,
                    f"{k.created_at:%Y-%m-%d %H:%M}",
                    f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never",
                    f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
                )
            console.print(table)
    except PatronError as exc:
        raise fail(exc.detail) from exc


@keys_app.command("revoke")
def keys_revoke(
    store: StoreOpt, prefix: Annotated[str, typer.Argument(help="Key prefix.")]
) -> None:
    """Revoke a key at once."""
    try:
        with unit_of_work() as session:
            stores.revoke_key(session, stores.get(session, store), prefix)
        console.print(f"revoked {prefix}")
    except PatronError as exc:
        raise fail(exc.detail) from exc


app.command("generate")(generate_command)
app.command("demo")(demo_command)
app.command("worker")(worker_command)
app.command("analyze")(analyze_command)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    migrate: Annotated[bool, typer.Option(help="Upgrade the schema first.")] = True,
    jobs: Annotated[
        float,
        typer.Option(
            "--jobs-interval",
            min=0,
            help="Run the loyalty jobs in the server every N seconds (0: off, e.g. when "
            "`patron worker` runs them).",
        ),
    ] = 60,
) -> None:
    """Serve the API (docs at /docs), running the loyalty jobs on a schedule."""
    import uvicorn

    from patron.app import create_app
    from patron.migrate import upgrade

    settings = get_settings()
    if migrate:
        upgrade(default_engine())
    uvicorn.run(
        create_app(jobs_interval=jobs or None),
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
    )
