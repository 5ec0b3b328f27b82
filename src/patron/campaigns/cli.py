"""`patron privacy`: a customer's data export and erasure (PIPL / GDPR)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from fastapi.encoders import jsonable_encoder
from rich.console import Console

from patron.campaigns import privacy
from patron.db import unit_of_work
from patron.errors import PatronError
from patron.kit.cli import StoreOpt
from patron.stores.service import stores

privacy_app = typer.Typer(help="A customer's data export and erasure.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
ExtIdArg = Annotated[str, typer.Argument(help="The customer's external id.")]


def _fail(exc: PatronError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc.detail}")
    return typer.Exit(1)


@privacy_app.command("export")
def export_command(
    store: StoreOpt,
    external_id: ExtIdArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Everything Patron holds on a customer, as JSON."""
    try:
        with unit_of_work() as session:
            data = privacy.export(session, stores.get(session, store), external_id, "cli")
    except PatronError as exc:
        raise _fail(exc) from exc
    text = json.dumps(jsonable_encoder(data), ensure_ascii=False, indent=2)
    if output is None:
        print(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        err.print(f"exported {external_id} to {output}")


@privacy_app.command("erase")
def erase_command(
    store: StoreOpt,
    external_id: ExtIdArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a customer's personal data; orders, points and totals are kept."""
    if not yes:
        typer.confirm(
            f"Erase the personal data of {external_id}? This cannot be undone", abort=True
        )
    try:
        with unit_of_work() as session:
            out = privacy.erase(session, stores.get(session, store), external_id, "cli")
    except PatronError as exc:
        raise _fail(exc) from exc
    state = "already erased" if out.already_erased else "erased"
    console.print(f"{external_id}: {state} as [bold]{out.pseudonym}[/bold] (id {out.customer_id})")


# -- `patron campaigns`: the mail outbox ----------------------------------------------------

campaigns_app = typer.Typer(help="The campaigns mail outbox.", no_args_is_help=True)
OptionalStoreOpt = Annotated[
    str | None, typer.Option("--store", "-s", help="Store slug (default: every store).")
]


@campaigns_app.command("outbox")
def outbox_command(store: OptionalStoreOpt = None) -> None:
    """Messages in the outbox, by status."""
    from rich.table import Table

    from patron.campaigns.outbox import outbox

    try:
        with unit_of_work() as session:
            counts = outbox.counts(session, stores.get(session, store) if store else None)
    except PatronError as exc:
        raise _fail(exc) from exc
    table = Table("status", "messages")
    for status, n in counts.items():
        table.add_row(status.value, str(n))
    console.print(table)


@campaigns_app.command("deliver")
def deliver_command(
    store: OptionalStoreOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Messages to send at most.")] = 100,
) -> None:
    """Send the due messages of the outbox over SMTP (PATRON_SMTP_*)."""
    from patron.campaigns.mailer import deliver

    try:
        run = deliver(store_slug=store, limit=limit)
    except PatronError as exc:
        raise _fail(exc) from exc
    console.print(
        f"sent {run.sent}, retry later {run.retried}, failed {run.failed} "
        f"(hard bounces {run.bounced}), suppressed {run.suppressed}"
    )
