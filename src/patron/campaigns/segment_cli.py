"""`patron segments`: preview a definition, list saved segments, recommend products."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from patron.campaigns import recommend
from patron.campaigns import segments as seg
from patron.campaigns.models import Segment
from patron.campaigns.segment_endpoints import mask_email
from patron.customers.models import Customer
from patron.db import unit_of_work
from patron.errors import NotFound, PatronError
from patron.kit.cli import StoreOpt, WhenOpt, option_instant
from patron.kit.clock import utcnow
from patron.stores.service import stores

segments_app = typer.Typer(
    help="Customer segments and product recommendations.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)


def _fail(exc: PatronError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc.detail}")
    for e in exc.errors[1:]:
        err.print(f"  {e['field']}: {e['message']}")
    return typer.Exit(1)


@segments_app.command("preview")
def preview_command(
    store: StoreOpt,
    file: Annotated[
        Path | None, typer.Argument(help="A JSON file holding the definition.", exists=True)
    ] = None,
    definition: Annotated[
        str | None, typer.Option("--definition", "-d", help="The definition as JSON text.")
    ] = None,
    now: WhenOpt = None,
    sample: Annotated[int, typer.Option(help="How many members to show.", min=0)] = 10,
) -> None:
    """Count the customers a definition matches, and show the first few."""
    if (file is None) == (definition is None):
        err.print("[red]error:[/red] give a FILE or --definition, not both")
        raise typer.Exit(2)
    text = file.read_text(encoding="utf-8") if file is not None else definition or ""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error:[/red] not JSON: {exc}")
        raise typer.Exit(1) from exc
    at = option_instant(now) or utcnow()
    try:
        with unit_of_work() as session:
            st = stores.get(session, store)
            parsed = seg.parse_definition(raw)
            n = seg.count(session, st, parsed, now=at)
            ids = seg.members_query(st, parsed, now=at).subquery()
            rows = session.scalars(
                select(Customer)
                .where(Customer.id.in_(select(ids.c.id)))
                .order_by(Customer.id)
                .limit(sample)
            ).all()
    except PatronError as exc:
        raise _fail(exc) from exc
    console.print(f"[bold]{n}[/bold] customers")
    if rows:
        table = Table("external id", "name", "email")
        for c in rows:
            name = " ".join(p for p in (c.first_name, c.last_name) if p)
            table.add_row(c.external_id, name, mask_email(c.email) or "")
        console.print(table)


@segments_app.command("list")
def list_command(store: StoreOpt) -> None:
    """The store's saved segments with their current counts."""
    try:
        with unit_of_work() as session:
            st = stores.get(session, store)
            rows = session.scalars(
                select(Segment).where(Segment.store_id == st.id).order_by(Segment.key)
            ).all()
            now = utcnow()
            counted: list[tuple[Segment, int]] = [
                (r, seg.count(session, st, seg.parse_definition(r.definition), now=now))
                for r in rows
            ]
    except PatronError as exc:
        raise _fail(exc) from exc
    table = Table("key", "name", "customers", "updated")
    for r, n in counted:
        table.add_row(r.key, r.name, str(n), _day(r.updated_at))
    console.print(table)


def _day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


@segments_app.command("recommend")
def recommend_command(
    store: StoreOpt,
    customer: Annotated[
        str | None, typer.Argument(help="The customer's external id.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(help="How many products.", min=1, max=50)] = 3,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Recompute the store's product neighbours from its orders now "
            "(the job does it when orders changed, at most every 6 h).",
        ),
    ] = False,
) -> None:
    """Products to suggest to a customer, from what similar buyers bought.

    --rebuild recomputes the store's product neighbours first."""
    if customer is None and not rebuild:
        err.print("[red]error:[/red] give a CUSTOMER, --rebuild, or both")
        raise typer.Exit(2)
    found: list[recommend.Suggestion] = []
    try:
        with unit_of_work() as session:
            st = stores.get(session, store)
            if rebuild:
                started = time.perf_counter()
                build = recommend.rebuild(session, st.id)
                console.print(
                    f"rebuilt: {build.neighbours:,} neighbours of {build.products:,} products "
                    f"from {build.customers:,} customers in "
                    f"{time.perf_counter() - started:.1f} s"
                )
            if customer is not None:
                cid = session.scalar(
                    select(Customer.id).where(
                        Customer.store_id == st.id, Customer.external_id == customer
                    )
                )
                if cid is None:
                    raise NotFound(f"No customer with external id {customer!r} in this store.")
                found = recommend.for_customers(session, st.id, [cid], limit=limit)[cid]
    except PatronError as exc:
        raise _fail(exc) from exc
    if customer is None:
        return
    if not found:
        console.print("nothing to suggest")
        return
    table = Table("sku", "name", "score")
    for s in found:
        table.add_row(s.sku, s.name, f"{s.score:.4f}")
    console.print(table)
