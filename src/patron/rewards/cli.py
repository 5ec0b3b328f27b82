"""`patron rewards list`: the store's reward catalogue from the shell."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from patron.db import unit_of_work
from patron.errors import PatronError
from patron.stores.service import stores

rewards_app = typer.Typer(
    help="Rewards of the store's loyalty programme.", no_args_is_help=True, rich_markup_mode="rich"
)
StoreOpt = Annotated[str, typer.Option("--store", "-s", help="Store slug.")]


@rewards_app.command("list")
def list_command(store: StoreOpt) -> None:
    """List the active programme's rewards: type, cost, stock left, units issued."""
    from patron.rewards.service import rewards

    try:
        with unit_of_work() as session:
            items = rewards.catalogue(session, stores.get(session, store))
    except PatronError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    if not items:
        typer.echo("no rewards: the store has no active programme, or it lists none")
        return
    table = Table("id", "type", "name", "cost (points)", "stock left", "issued", "active")
    for item in items:
        r = item.reward
        table.add_row(
            Text(r.id),
            r.type,
            Text(r.name.display()),
            str(item.cost_points) if r.type != "points_as_cash" else "at checkout",
            "unlimited" if item.stock_left is None else str(item.stock_left),
            str(item.issued),
            "yes" if r.active else "no",
        )
    Console().print(table)
