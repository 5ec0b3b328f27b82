"""`patron campaigns create|list|show|schedule|pause|cancel|results|run-due`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml  # type: ignore[import-untyped]
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from patron.campaigns.campaign import CampaignIn, campaign_service
from patron.db import unit_of_work
from patron.errors import PatronError, validation_errors
from patron.kit.cli import StoreOpt, WhenOpt, option_instant
from patron.stores.service import stores

console = Console()
err = Console(stderr=True)
KeyArg = Annotated[str, typer.Argument(help="The campaign's key.")]


def _fail(exc: PatronError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc.detail}")
    for e in exc.errors[1:]:
        err.print(f"  {e['field']}: {e['message']}")
    return typer.Exit(1)


def _load(path: Path) -> CampaignIn:
    try:
        text = path.read_text(encoding="utf-8")
        raw: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        err.print(f"[red]error:[/red] cannot read {path}: {exc}")
        raise typer.Exit(1) from exc
    try:
        return CampaignIn.model_validate(raw)
    except ValidationError as exc:
        for e in validation_errors(list(exc.errors())):
            err.print(f"[red]error:[/red] {e['field']}: {e['message']}")
        raise typer.Exit(1) from exc


def create_command(
    store: StoreOpt,
    file: Annotated[Path, typer.Argument(help="The campaign as YAML or JSON.")],
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the draft or paused campaign of that key.")
    ] = False,
) -> None:
    """Create a campaign (a draft) from a YAML or JSON file."""
    data = _load(file)
    try:
        with unit_of_work() as session:
            shop = stores.get(session, store)
            if replace:
                campaign = campaign_service.update(session, shop, data.key, data)
            else:
                campaign = campaign_service.create(session, shop, data)
            key, status = campaign.key, campaign.status.value
    except PatronError as exc:
        raise _fail(exc) from exc
    console.print(f"campaign [bold]{key}[/bold]: {status}")


def list_command(store: StoreOpt) -> None:
    """The store's campaigns with their status and recipients."""
    try:
        with unit_of_work() as session:
            shop = stores.get(session, store)
            table = Table("key", "name", "kind", "trigger", "status", "queued", "held out")
            for c in campaign_service.find(session, shop, limit=1000):
                counts = campaign_service.recipient_counts(session, c)
                table.add_row(
                    c.key,
                    c.name,
                    c.kind.value,
                    c.trigger.value if c.trigger else "",
                    c.status.value,
                    str(counts["queued"]),
                    str(counts["held_out"]),
                )
    except PatronError as exc:
        raise _fail(exc) from exc
    console.print(table)


def show_command(store: StoreOpt, key: KeyArg) -> None:
    """A campaign as JSON (settings, variants, recipients by status)."""
    from fastapi.encoders import jsonable_encoder

    from patron.campaigns.campaign_endpoints import campaign_out

    try:
        with unit_of_work() as session:
            out = campaign_out(
                session, campaign_service.get(session, stores.get(session, store), key)
            )
    except PatronError as exc:
        raise _fail(exc) from exc
    print(json.dumps(jsonable_encoder(out), ensure_ascii=False, indent=2))


def schedule_command(store: StoreOpt, key: KeyArg, at: WhenOpt = None) -> None:
    """Schedule a one-off (now, or --at), or activate a triggered campaign."""
    try:
        with unit_of_work() as session:
            c = campaign_service.schedule(
                session, stores.get(session, store), key, option_instant(at)
            )
            status, when = c.status.value, c.scheduled_at
    except PatronError as exc:
        raise _fail(exc) from exc
    console.print(f"{key}: {status}" + (f" at {when.isoformat()}" if when else ""))


def pause_command(store: StoreOpt, key: KeyArg) -> None:
    """Pause a scheduled or active campaign."""
    try:
        with unit_of_work() as session:
            campaign_service.pause(session, stores.get(session, store), key)
    except PatronError as exc:
        raise _fail(exc) from exc
    console.print(f"{key}: paused")


def cancel_command(store: StoreOpt, key: KeyArg) -> None:
    """Cancel a campaign; its messages still in the outbox are withdrawn."""
    try:
        with unit_of_work() as session:
            campaign_service.cancel(session, stores.get(session, store), key)
    except PatronError as exc:
        raise _fail(exc) from exc
    console.print(f"{key}: cancelled")


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f}%"


def _ci(d: dict[str, Any] | None, scale: float = 1.0, pct: bool = False) -> str:
    if not d or d["estimate"] is None:
        return "–"

    def f(x: float) -> str:
        return f"{x * 100:+.1f} pp" if pct else f"{x / scale:+,.2f}"

    if d["low"] is None:
        return f(d["estimate"])
    mark = " *" if d["significant"] else ""
    return f"{f(d['estimate'])} [{f(d['low'])}, {f(d['high'])}]{mark}"


def results_command(
    store: StoreOpt,
    key: KeyArg,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full results as JSON.")
    ] = False,
) -> None:
    """Recipients, opens and clicks, conversions and revenue per group, uplift (95% CI)."""
    try:
        with unit_of_work() as session:
            out = campaign_service.results(session, stores.get(session, store), key)
    except PatronError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    r, m = out["recipients"], out["messages"]
    console.print(
        f"[bold]{out['name']}[/bold] ({out['status']}): queued {r['queued']}, held out "
        f"{r['held_out']}, suppressed {r['suppressed']}, capped {r['capped']}; sent "
        f"{m['sent']}, opened {m['opened']}, clicked {m['clicked']}"
    )
    table = Table(
        "group", "recipients", "converted", "conversion", f"revenue/recipient ({out['currency']})"
    )
    rows = [out["treatment"], *out["variants"]]
    if out["holdout"]:
        rows.append(out["holdout"])
    for g in rows:
        rpr = g["revenue_per_recipient_minor"]
        table.add_row(
            g["group"],
            str(g["recipients"]),
            str(g["conversions"]),
            _pct(g["conversion_rate"]),
            "–" if rpr is None else f"{rpr / 100:,.2f}",
        )
    console.print(table)
    up = out["uplift"]
    if up:
        console.print(
            f"uplift vs holdout: conversion {_ci(up['conversion'], pct=True)}, revenue/recipient "
            f"{_ci(up['revenue_per_recipient_minor'], 100)}  (* significant at 95%)"
        )


def run_due_command(
    store: Annotated[
        str | None, typer.Option("--store", "-s", help="Store slug (default: every store).")
    ] = None,
    now: WhenOpt = None,
) -> None:
    """Send the due one-offs and fire the active triggers (normally done by the worker)."""
    from sqlalchemy import select

    from patron.stores.models import Store

    try:
        with unit_of_work() as session:
            slugs = (
                [store] if store else list(session.scalars(select(Store.slug).order_by(Store.id)))
            )
        for slug in slugs:
            with unit_of_work() as session:
                run = campaign_service.run_due(
                    session, stores.get(session, slug), option_instant(now)
                )
            console.print(
                f"{slug}: {run.campaigns} campaigns; queued {run.queued}, held out "
                f"{run.held_out}, suppressed {run.suppressed}, capped {run.capped}, failed "
                f"{run.failed}, survey invitations {run.surveys}, finished {run.finished}"
            )
    except PatronError as exc:
        raise _fail(exc) from exc


def register(app: typer.Typer) -> None:
    """Add the campaign commands to the ``patron campaigns`` group."""
    app.command("create")(create_command)
    app.command("list")(list_command)
    app.command("show")(show_command)
    app.command("schedule")(schedule_command)
    app.command("pause")(pause_command)
    app.command("cancel")(cancel_command)
    app.command("results")(results_command)
    app.command("run-due")(run_due_command)
