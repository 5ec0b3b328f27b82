"""`patron referrals stats|run`: word of mouth from the shell.

Exit codes: 0 done; 1 an unknown store or invalid input; 2 wrong usage (Click's own).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from patron.db import unit_of_work
from patron.errors import PatronError
from patron.kit.clock import as_utc
from patron.referrals.service import referrals, run_referrals, run_surprises
from patron.stores.service import stores

referrals_app = typer.Typer(
    help="Referrals (口碑): statistics and the viral coefficient; run the reward jobs.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

StoreOpt = Annotated[str, typer.Option("--store", "-s", help="Store slug.")]
WhenOpt = Annotated[
    datetime | None,
    typer.Option(
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"],
        help="UTC unless an offset is given.",
    ),
]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return as_utc(value) if value.tzinfo else value.replace(tzinfo=UTC)


def _failed(exc: PatronError) -> typer.Exit:
    typer.echo(f"error: {exc.detail}", err=True)
    return typer.Exit(1)


def _ratio(value: Decimal | None) -> str:
    return "–" if value is None else str(value)


@referrals_app.command("stats")
def stats_command(store: StoreOpt, since: WhenOpt = None, until: WhenOpt = None) -> None:
    """Invitations, conversion and the viral coefficient K of attributions in
    [since, until) (default: all time)."""
    try:
        with unit_of_work() as session:
            out = referrals.stats(session, stores.get(session, store), _utc(since), _utc(until))
    except PatronError as exc:
        raise _failed(exc) from None
    console = Console()
    window = f"{out.since:%Y-%m-%d %H:%M} – " if out.since else "until "
    table = Table(
        "measure", "value", title=f"Referrals of {store}, {window}{out.until:%Y-%m-%d %H:%M} UTC"
    )
    for label, value in (
        ("members (could refer)", str(out.members)),
        ("code holders", str(out.code_holders)),
        ("active referrers", str(out.active_referrers)),
        ("invitations (referred sign-ups)", str(out.invitations)),
        ("attributions (not rejected)", str(out.attributions)),
        ("qualified (first qualifying order)", str(out.qualified)),
        ("rewarded", str(out.rewarded)),
        ("rejected", str(out.rejected)),
        ("invites per member", _ratio(out.invites_per_member)),
        ("conversion", _ratio(out.conversion)),
    ):
        table.add_row(label, value)
    table.add_row(
        Text("viral coefficient K", style="bold"), Text(_ratio(out.viral_coefficient), style="bold")
    )
    console.print(table)


@referrals_app.command("run")
def run_command(store: StoreOpt) -> None:
    """Run the referral and surprise jobs of a store once (``patron worker`` runs them on
    a schedule)."""
    try:
        with unit_of_work() as session:
            found = stores.get(session, store)
            rewarded = run_referrals(session, found)
            given = run_surprises(session, found)
    except PatronError as exc:
        raise _failed(exc) from None
    typer.echo(f"referrals rewarded: {rewarded}; surprise gifts given: {given}")
