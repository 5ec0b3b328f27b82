"""`patron privacy`: a customer's data export and erasure (PIPL / GDPR)."""

from __future__ import annotations

import json
import sys
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

campaigns_app = typer.Typer(help="Campaigns and the mail outbox.", no_args_is_help=True)
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
    """Send the due messages of the outbox (mail, SMS, WeChat, push).

    Mail goes over SMTP (PATRON_SMTP_*); SMS, WeChat and push to the store's channel
    webhooks (PUT /v1/channels/{channel})."""
    from patron.campaigns import webhook
    from patron.campaigns.mailer import deliver

    try:
        run = deliver(store_slug=store, limit=limit)
        hooks = webhook.deliver(store_slug=store, limit=limit)
    except PatronError as exc:
        raise _fail(exc) from exc
    console.print(
        f"sent {run.sent}, retry later {run.retried}, failed {run.failed} "
        f"(hard bounces {run.bounced}), suppressed {run.suppressed}"
    )
    if hooks.claimed:
        console.print(
            f"webhooks: sent {hooks.sent}, retry later {hooks.retried}, "
            f"failed {hooks.failed}, suppressed {hooks.suppressed}"
        )


EX_TEMPFAIL = 75


def _unreachable(exc: Exception) -> typer.Exit:
    name = type(exc).__name__
    err.print(f"[red]error:[/red] the database is unreachable, try again later ({name})")
    return typer.Exit(EX_TEMPFAIL)


@campaigns_app.command("bounce")
def bounce_command(
    file: Annotated[
        Path | None,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="A message file (default: stdin)."
        ),
    ] = None,
) -> None:
    """Read one bounce (DSN) or complaint (ARF) from FILE or stdin.

    For the MTA's bounce address, e.g. `bounces: "|patron campaigns bounce"`. A hard
    bounce or complaint suppresses the address. Exit 0 also for a message that is not a
    report (nothing to retry), 75 when the database is unreachable (the MTA retries)."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.exc import TimeoutError as SQLTimeoutError

    from patron.campaigns import bounces

    raw = file.read_bytes() if file is not None else sys.stdin.buffer.read()
    try:
        report = bounces.parse(raw)
    except bounces.NotAReport as exc:
        console.print(f"ignored: {exc}")
        return
    try:
        with unit_of_work() as session:
            out = bounces.apply(session, report)
    except (OperationalError, SQLTimeoutError) as exc:
        raise _unreachable(exc) from None
    console.print(
        f"{out.action}: message {out.message or '-'}"
        + (", address suppressed" if out.suppressed else "")
    )


@campaigns_app.command("poll-bounces")
def poll_bounces_command(
    maildir: Annotated[
        Path,
        typer.Option("--maildir", exists=True, file_okay=False, help="A Maildir (cur/ new/ tmp/)."),
    ],
) -> None:
    """Read every new bounce and complaint of a Maildir.

    Each in its own transaction; read messages move to cur/ marked seen. Run it from
    cron or a systemd timer."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.exc import TimeoutError as SQLTimeoutError

    from patron.campaigns import bounces

    def handle(report: bounces.Report) -> bounces.Outcome:
        with unit_of_work() as session:
            return bounces.apply(session, report)

    try:
        found = bounces.poll_maildir(maildir, handle)
    except bounces.NotAReport as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except (OperationalError, SQLTimeoutError) as exc:
        raise _unreachable(exc) from None
    actions = [o.action for o in found.outcomes]
    console.print(
        f"{len(actions)} reports: {actions.count('hard_bounce')} hard bounces, "
        f"{actions.count('soft_bounce')} soft, {actions.count('complaint')} complaints, "
        f"{actions.count('unmatched')} unmatched; {len(found.skipped)} not reports"
    )


# -- `patron campaigns create|list|show|schedule|...`: see campaign_cli.py ------------------
from patron.campaigns.campaign_cli import register as _register_campaign_commands  # noqa: E402

_register_campaign_commands(campaigns_app)
