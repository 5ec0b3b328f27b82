"""`patron worker`: every package's jobs for every store, once or on a schedule."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import select

console = Console()


def worker_command(
    once: Annotated[bool, typer.Option("--once", help="Run once and exit.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=1, help="Seconds between runs.")
    ] = 60,
    store: Annotated[
        str | None, typer.Option("--store", "-s", help="Only this store (slug).")
    ] = None,
    backfill: Annotated[
        bool,
        typer.Option(
            "--backfill",
            help="First award points for delivered orders that have not earned yet "
            "(e.g. loaded by file import).",
        ),
    ] = False,
) -> None:
    """Run the scheduled jobs: pending points mature, due points expire, held points of
    abandoned checkouts return, tiers are reviewed, birthday gifts, referral rewards and
    surprise gifts are given; survey invitations go out for delivered orders and closed
    tickets (with reminders); support SLAs are checked (warnings, breaches, escalation).
    Idempotent: safe to run twice or alongside another worker (or `patron serve`, which
    runs them too). The campaigns outbox is delivered on a thread of its own (every
    PATRON_DELIVERY_INTERVAL_SECONDS) when SMTP (PATRON_SMTP_HOST) or a channel webhook
    is configured; with --once, one delivery pass follows the jobs."""
    from patron.campaigns.mailer import DeliveryLoop
    from patron.config import get_settings
    from patron.db import unit_of_work
    from patron.errors import PatronError
    from patron.jobs import run_all
    from patron.loyalty.orders import award_delivered
    from patron.stores.models import Store
    from patron.stores.service import stores as store_service

    def slugs() -> list[str]:
        if store is not None:
            return [store]
        with unit_of_work() as session:
            return list(session.scalars(select(Store.slug).order_by(Store.id)))

    delivery = DeliveryLoop(None, get_settings().delivery_interval_seconds)
    try:
        if not once:
            delivery.start()
        if backfill:
            for slug in slugs():
                started = time.perf_counter()
                with unit_of_work() as session:
                    earned = award_delivered(session, store_service.get(session, slug))
                console.log(
                    f"backfill {slug}: {earned:,} orders earned points "
                    f"in {time.perf_counter() - started:.2f}s"
                )
        while True:
            started = time.perf_counter()
            total_run, failed = run_all(store=store)
            for slug in failed:
                console.log(f"[red]worker: store {slug} failed[/red] (see the log)")
            done = total_run.loyalty
            console.log(
                f"worker: {done.matured:,} matured, "
                f"{done.expired:,} expired, {done.released:,} holds released, "
                f"{done.tiers:,} tiers reviewed, {done.birthdays:,} birthday gifts, "
                f"{done.referrals:,} referrals rewarded, {done.surprises:,} surprises, "
                f"{total_run.invitations:,} survey invitations, "
                f"{total_run.survey_reminders:,} reminders, "
                f"{total_run.sla_warnings:,} SLA warnings, {total_run.sla_breaches:,} breaches "
                f"in {time.perf_counter() - started:.2f}s"
            )
            if once:
                mail, hooks = delivery.run_once(store_slug=store)
                console.log(
                    f"delivery: {mail.sent:,} mails, {hooks.sent:,} webhook messages sent; "
                    f"{mail.retried + hooks.retried:,} to retry, "
                    f"{mail.failed + hooks.failed:,} failed"
                )
                if failed:
                    raise typer.Exit(1)
                return
            time.sleep(interval)
    except PatronError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        console.log("worker stopped")
    finally:
        delivery.stop()
