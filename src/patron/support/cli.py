"""`patron support ...`: customer service from the shell.

Exit codes: 0 done; 1 nothing done (an invalid file, an unknown store or ticket, a
message that cannot be read, a Maildir message moved aside); 2 wrong usage (Click's own);
75 (EX_TEMPFAIL) the database could not be reached — an MTA delivering through
``patron support mail`` then keeps the message and retries.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLTimeoutError

from patron.db import unit_of_work
from patron.errors import PatronError
from patron.kit.cli import StoreOpt, WhenOpt, option_instant
from patron.stores.models import Store
from patron.stores.service import stores
from patron.support import mail
from patron.support import settings as support_settings
from patron.support.insights import insights
from patron.support.models import Priority, TicketChannel, TicketStatus
from patron.support.schemas import SlaClockOut, TicketOut
from patron.support.service import run_sla_check, tickets

support_app = typer.Typer(
    help="Customer service (客服): tickets, SLAs, inbound e-mail, settings, reports.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
settings_app = typer.Typer(help="Support settings: hours, SLA targets, caps.", no_args_is_help=True)
support_app.add_typer(settings_app, name="settings")

EX_TEMPFAIL = 75
_STATE_STYLE = {
    "ok": "green",
    "met": "green",
    "warning": "yellow",
    "paused": "cyan",
    "breached": "bold red",
}


def _fail(message: str, lines: list[str] | None = None, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    for line in lines or []:
        typer.echo(f"  {line}", err=True)
    return typer.Exit(code)


def _failed(exc: PatronError) -> typer.Exit:
    lines = [f"{e['field']}: {e['message']}" for e in exc.errors if len(exc.errors) > 1]
    return _fail(exc.detail, lines)


def _unreachable(exc: Exception) -> typer.Exit:
    return _fail(
        f"the database is unreachable, try again later ({type(exc).__name__})", code=EX_TEMPFAIL
    )


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else ""


def _clock(c: SlaClockOut) -> Text:
    label: str = c.state
    if c.state in ("ok", "warning") and c.due_at is not None:
        label = f"{c.state}, due {c.due_at:%m-%d %H:%M}"
    return Text(label, style=_STATE_STYLE.get(c.state, ""))


# -- settings -----------------------------------------------------------------------------


@settings_app.command("apply")
def settings_apply(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A YAML file.")
    ],
    store: StoreOpt,
) -> None:
    """Validate a settings file (YAML) and make it the store's support settings. A partial
    file is merged over the defaults; every refused field is printed and nothing applied."""
    try:
        raw: Any = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _fail(f"{file}: cannot read: {exc}") from None
    try:
        with unit_of_work() as session:
            _, version = support_settings.apply(session, stores.get(session, store), raw)
    except PatronError as exc:
        lines = [f"{e['field']}: {e['message']}" for e in exc.errors]
        raise _fail(f"{file}: invalid settings; nothing applied", lines or [exc.detail]) from None
    except (OperationalError, SQLTimeoutError) as exc:
        raise _unreachable(exc) from None
    typer.echo(f"applied support settings version {version}")


@settings_app.command("show")
def settings_show(store: StoreOpt) -> None:
    """Print the settings in force as YAML (the defaults until some are applied)."""
    try:
        with unit_of_work() as session:
            found = stores.get(session, store)
            config = support_settings.load(session, found)
            version = support_settings.version(session, found)
    except PatronError as exc:
        raise _failed(exc) from None
    typer.echo(f"# version {version}" + (" (defaults)" if version == 0 else ""))
    typer.echo(yaml.safe_dump(config.document(), allow_unicode=True, sort_keys=False), nl=False)


# -- tickets ------------------------------------------------------------------------------


def _ticket_table(items: list[TicketOut], title: str) -> Table:
    table = Table(
        "id",
        "status",
        "priority",
        "channel",
        "customer",
        "subject",
        "first response",
        "resolution",
        "esc.",
        title=title,
    )
    for t in items:
        table.add_row(
            str(t.id),
            t.status.value,
            t.priority.value,
            t.channel.value,
            Text(t.customer_external_id or t.requester or ""),
            Text(t.subject[:60]),
            _clock(t.sla.first_response),
            _clock(t.sla.resolution),
            str(t.sla.escalation_level or ""),
        )
    return table


@support_app.command("tickets")
def tickets_command(
    store: StoreOpt,
    status: Annotated[
        list[TicketStatus] | None, typer.Option("--status", help="Repeat for several.")
    ] = None,
    channel: Annotated[TicketChannel | None, typer.Option()] = None,
    priority: Annotated[Priority | None, typer.Option()] = None,
    customer: Annotated[str | None, typer.Option(help="A customer's external id.")] = None,
    breached: Annotated[
        bool | None, typer.Option("--breached/--not-breached", help="Past a due instant.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    after: Annotated[int | None, typer.Option(min=0, help="Tickets after this id.")] = None,
) -> None:
    """List tickets, oldest first, with the state of their SLA clocks."""
    try:
        with unit_of_work() as session:
            page = tickets.page(
                session,
                stores.get(session, store),
                status=status,
                channel=channel,
                priority=priority,
                customer_external_id=customer,
                breached=breached,
                limit=limit,
                after=after,
            )
    except PatronError as exc:
        raise _failed(exc) from None
    if not page.items:
        typer.echo("no tickets")
        return
    Console().print(_ticket_table(page.items, f"Tickets of {store}"))
    if page.next_after is not None:
        typer.echo(f"more: --after {page.next_after}")


@support_app.command("show")
def show_command(
    ticket_id: Annotated[int, typer.Argument(min=1, help="Ticket id.")], store: StoreOpt
) -> None:
    """A ticket: its SLA clocks, grade, messages and audit trail."""
    try:
        with unit_of_work() as session:
            t = tickets.detail(session, stores.get(session, store), ticket_id)
    except PatronError as exc:
        raise _failed(exc) from None
    console = Console()
    console.print(Text(f"#{t.id} {t.subject}", style="bold"))
    who = t.customer_external_id or t.requester or "unknown customer"
    console.print(
        Text(
            f"{t.status.value} · {t.priority.value} · {t.channel.value} · {who} · "
            f"opened {_when(t.created_at)} UTC via {t.source}"
            + (f" · assigned to {t.assignee}" if t.assignee else "")
        )
    )
    sla = Table("clock", "target", "state", "used", "remaining", "due", title="SLA")
    for name, c in (("first response", t.sla.first_response), ("resolution", t.sla.resolution)):
        sla.add_row(
            name,
            c.target,
            _clock(c),
            support_settings.format_duration(c.used_s),
            ("-" if c.remaining_s < 0 else "")
            + support_settings.format_duration(abs(c.remaining_s)),
            _when(c.due_at) or ("paused" if t.sla.paused else ""),
        )
    console.print(sla)
    if t.grade is not None:
        console.print(
            Text(
                f"grade: level {t.grade['level']} ({t.grade['label']['en']}), "
                f"{t.grade['service']} service"
                + (", OPPORTUNISTIC" if t.grade["opportunistic"] else "")
                + (f"; flags: {', '.join(t.grade['flags'])}" if t.grade["flags"] else "")
            )
        )
        console.print(Text(f"suggested: {t.grade['suggested_response']['en']}"))
    messages = Table("at", "direction", "author", "message", title="Messages")
    for m in t.messages:
        messages.add_row(_when(m.created_at), m.direction.value, Text(m.author or ""), Text(m.body))
    console.print(messages)
    events = Table("at", "event", "by", "data", title="Events")
    for e in t.events:
        events.add_row(_when(e.created_at), e.kind, Text(e.actor or ""), Text(str(e.data)))
    console.print(events)
    if t.compensations:
        comps = Table(
            "id", "kind", "amount", "status", "role", "by", "reason", title="Compensation"
        )
        for comp in t.compensations:
            amount = f"{comp.points} points" if comp.kind.value == "points" else str(comp.reward_id)
            comps.add_row(
                str(comp.id),
                comp.kind.value,
                amount,
                comp.status.value,
                comp.role,
                comp.actor,
                Text(comp.reason),
            )
        console.print(comps)


# -- inbound e-mail -----------------------------------------------------------------------


@support_app.command("mail")
def mail_command(
    store: StoreOpt,
    file: Annotated[
        Path | None,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="A message file (default: stdin)."
        ),
    ] = None,
) -> None:
    """File one e-mail message (RFC 5322) read from FILE or stdin: for an MTA alias such
    as `support: "|patron support mail --store acme"`."""
    raw = file.read_bytes() if file is not None else sys.stdin.buffer.read()
    try:
        with unit_of_work() as session:
            result = mail.ingest(session, stores.get(session, store), raw)
    except mail.MailError as exc:
        raise _fail(f"cannot read the message: {exc}") from None
    except PatronError as exc:
        raise _failed(exc) from None
    except (OperationalError, SQLTimeoutError) as exc:
        raise _unreachable(exc) from None
    typer.echo(f"{result.action}: ticket #{result.ticket_id} {result.message_id}")


@support_app.command("poll-maildir")
def poll_maildir_command(
    directory: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="A Maildir (cur/ new/ tmp/).")
    ],
    store: StoreOpt,
    delete: Annotated[
        bool, typer.Option("--delete", help="Delete processed messages (default: to cur/, seen).")
    ] = False,
    failed_dir: Annotated[
        Path | None,
        typer.Option(help="Where unreadable messages go (default: DIR/failed)."),
    ] = None,
) -> None:
    """File every new message of a Maildir, each in its own transaction; processed ones
    move to cur/ marked seen (or are deleted), unreadable ones to the failed directory.
    Run it from cron or a systemd timer."""
    try:
        with unit_of_work() as session:
            stores.get(session, store)
    except PatronError as exc:
        raise _failed(exc) from None
    except (OperationalError, SQLTimeoutError) as exc:
        raise _unreachable(exc) from None

    def handle(raw: bytes) -> mail.MailResult:
        with unit_of_work() as session:
            found: Store = stores.get(session, store)
            return mail.ingest(session, found, raw)

    try:
        report = mail.poll_maildir(directory, handle, delete=delete, failed_dir=failed_dir)
    except mail.MailError as exc:
        raise _fail(str(exc)) from None
    except (OperationalError, SQLTimeoutError) as exc:
        raise _unreachable(exc) from None
    counts = {"opened": 0, "threaded": 0, "duplicate": 0}
    for _, result in report.processed:
        counts[result.action] += 1
    typer.echo(
        f"{len(report.processed)} processed: {counts['opened']} opened, "
        f"{counts['threaded']} threaded, {counts['duplicate']} duplicates; "
        f"{len(report.failed)} failed"
    )
    for key, reason in report.failed:
        typer.echo(f"failed: {key}: {reason}", err=True)
    if report.failed:
        raise typer.Exit(1)


# -- jobs and reports ---------------------------------------------------------------------


@support_app.command("sla-check")
def sla_check_command(
    store: Annotated[
        str | None, typer.Option("--store", "-s", help="Store slug (default: every store).")
    ] = None,
    now: WhenOpt = None,
) -> None:
    """Raise breach warnings and escalate breached tickets, once each: run it every
    minute or so (cron), or let a scheduler call `run_sla_check`."""
    try:
        with unit_of_work() as session:
            slugs = [store] if store else [s.slug for s in stores.list(session)]
        for slug in slugs:
            with unit_of_work() as session:
                done = run_sla_check(session, stores.get(session, slug), option_instant(now))
            typer.echo(
                f"{slug}: {done.checked} open tickets checked, {done.warnings} warnings, "
                f"{done.breaches} breaches, {done.escalated} escalated"
            )
    except PatronError as exc:
        raise _failed(exc) from None
    except (OperationalError, SQLTimeoutError) as exc:
        raise _unreachable(exc) from None


def _num(value: float | None, suffix: str = "") -> str:
    return "–" if value is None else f"{value:g}{suffix}"


@support_app.command("report")
def report_command(store: StoreOpt, since: WhenOpt = None, until: WhenOpt = None) -> None:
    """SLA attainment of tickets opened in [since, until) by channel × priority."""
    try:
        with unit_of_work() as session:
            out = insights.report(
                session, stores.get(session, store), option_instant(since), option_instant(until)
            )
    except PatronError as exc:
        raise _failed(exc) from None
    window = f"{out.since:%Y-%m-%d %H:%M} – " if out.since else "until "
    table = Table(
        "channel",
        "priority",
        "tickets",
        "1st response met",
        "resolution met",
        "1st response h (median/mean)",
        "resolution h (median/mean)",
        "breached now",
        title=f"SLA attainment of {store}, {window}{out.until:%Y-%m-%d %H:%M} UTC",
    )
    for row in [*out.rows, out.total]:
        style = "bold" if row is out.total else ""
        table.add_row(
            Text(row.channel, style=style),
            row.priority,
            str(row.tickets),
            f"{_num(row.first_response_met_pct, '%')} "
            f"({row.first_response_met}/{row.first_response_met + row.first_response_breached})",
            f"{_num(row.resolution_met_pct, '%')} "
            f"({row.resolution_met}/{row.resolution_met + row.resolution_breached})",
            f"{_num(row.median_first_response_h)} / {_num(row.mean_first_response_h)}",
            f"{_num(row.median_resolution_h)} / {_num(row.mean_resolution_h)}",
            str(row.breaches_open),
        )
    Console().print(table)
