"""The scheduled jobs of every package, per store: loyalty (maturing, expiry, holds, tiers,
birthdays, referrals, surprises, reminders), feedback (survey invitations for delivered
orders and closed tickets, reminders) and support (SLA warnings, breaches, escalation).

``run_all`` brings every store (or one) up to date, each store in its own transaction;
``patron worker`` calls it on a schedule and ``Scheduler`` runs it inside ``patron serve``.
Every job is idempotent, so two runs at once, or one after the other, write nothing twice.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from patron.campaigns.campaign import run_due as run_campaigns
from patron.campaigns.outbox import outbox
from patron.campaigns.recommend import run_step as run_recommendations
from patron.errors import NotFound
from patron.feedback.service import run_triggers
from patron.kit.clock import as_utc, utcnow
from patron.loyalty.jobs import JobRun, run_due
from patron.stores.models import Store
from patron.support.service import run_sla_check

log = logging.getLogger("patron.jobs")


@dataclass(frozen=True)
class StoreRun:
    """What the jobs wrote (summed over stores with ``+``)."""

    loyalty: JobRun = field(default_factory=JobRun)
    invitations: int = 0  # survey invitations created by triggers
    survey_reminders: int = 0
    sla_warnings: int = 0
    sla_breaches: int = 0
    campaign_recipients: int = 0  # campaign recipients decided (queued, held out, capped...)
    survey_mails: int = 0  # survey invitations queued in the mail outbox (store setting)
    # Stores whose recommendation neighbours were rebuilt: a cache, so not in ``total``.
    recommendations: int = 0

    @property
    def total(self) -> int:
        return (
            self.loyalty.total
            + self.invitations
            + self.survey_reminders
            + self.sla_warnings
            + self.sla_breaches
            + self.campaign_recipients
            + self.survey_mails
        )

    def __add__(self, other: StoreRun) -> StoreRun:
        return StoreRun(
            self.loyalty + other.loyalty,
            self.invitations + other.invitations,
            self.survey_reminders + other.survey_reminders,
            self.sla_warnings + other.sla_warnings,
            self.sla_breaches + other.sla_breaches,
            campaign_recipients=self.campaign_recipients + other.campaign_recipients,
            survey_mails=self.survey_mails + other.survey_mails,
            recommendations=self.recommendations + other.recommendations,
        )


def run_store(session: Session, store: Store, now: datetime | None = None) -> StoreRun:
    """Every job of one store, in the caller's transaction (flushes, never commits)."""
    now = utcnow() if now is None else as_utc(now)
    loyalty = run_due(session, store, now)
    surveys = run_triggers(session, store, now)
    survey_mails = outbox.run_step(session, store, now)  # due invitations, if mailed by Patron
    sla = run_sla_check(session, store, now)
    campaigns = run_campaigns(session, store, now)
    rebuilt = run_recommendations(session, store.id, now)  # when orders moved, every 6 h
    return StoreRun(
        loyalty,
        surveys.after_delivery + surveys.ticket_closed,
        surveys.reminders,
        sla.warnings,
        sla.breaches,
        campaign_recipients=campaigns.total,
        survey_mails=survey_mails,
        recommendations=int(rebuilt is not None),
    )


def run_all(
    engine: Engine | None = None, store: str | None = None, now: datetime | None = None
) -> tuple[StoreRun, list[str]]:
    """``run_store`` for every store (or one, by slug), each in its own transaction; a
    store that fails is logged and skipped so it cannot stop the others. Returns the summed
    run and the slugs that failed."""
    from patron.db import unit_of_work

    if store is not None:
        slugs = [store]
    else:
        with unit_of_work(engine) as session:
            slugs = list(session.scalars(select(Store.slug).order_by(Store.id)))
    total, failed = StoreRun(), []
    for slug in slugs:
        try:
            with unit_of_work(engine) as session:
                row = session.scalars(select(Store).where(Store.slug == slug)).first()
                if row is None:
                    raise NotFound(f"No store {slug!r}.")
                total += run_store(session, row, now)
        except NotFound:
            raise
        except Exception:  # one store's failure must not stop the others
            log.exception("jobs failed for store %s", slug)
            failed.append(slug)
    return total, failed


class Scheduler:
    """Runs the jobs every ``interval`` seconds on a background thread, for ``patron
    serve`` (no separate worker needed). Several server processes may each run one: every
    job is idempotent and safe to run concurrently. The outbox is delivered by a
    ``DeliveryLoop`` of its own (``delivery``), started and stopped with it."""

    def __init__(self, engine: Engine, interval: float) -> None:
        from patron.campaigns.mailer import DeliveryLoop
        from patron.config import get_settings

        self.engine = engine
        self.interval = interval
        self.runs = 0
        self.last: StoreRun | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivery = DeliveryLoop(engine, get_settings().delivery_interval_seconds)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="patron-jobs", daemon=True)
            self._thread.start()
            self.delivery.start()

    def stop(self, timeout: float = 30) -> None:
        self.delivery.stop(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.last, failed = run_all(self.engine)
                self.runs += 1
                if self.last.total or failed:
                    log.info("jobs: %s; failed stores: %s", self.last, failed or "none")
            except Exception:
                log.exception("jobs failed")
            self._stop.wait(self.interval)
