"""Read-only reports of customer service: SLA attainment by channel × priority
(``report``) and the agent's customer 360 (``customer_360``). They query and compute,
never write.
"""

from __future__ import annotations

import statistics
from datetime import datetime

from sqlalchemy.orm import Session

from patron.customers import repository as customers_repo
from patron.customers.models import Customer
from patron.errors import Invalid, NotFound
from patron.kit.clock import as_utc, as_utc_or_now, zone
from patron.kit.money import from_minor
from patron.loyalty import membership
from patron.loyalty.orders import active_program
from patron.loyalty.service import ledger
from patron.stores.models import Store
from patron.support import repository as repo
from patron.support import settings as support_settings
from patron.support.clock import sla_view
from patron.support.common import field_errors
from patron.support.models import TicketChannel
from patron.support.schemas import (
    Customer360Out,
    LoyaltyOut,
    NpsOut,
    OrderBrief,
    OrdersOut,
    ProfileOut,
    ReportRow,
    ReviewsOut,
    SlaOut,
    SlaReportOut,
    TicketsSummary,
    TierOut,
    ValueScoresOut,
)
from patron.support.service import BATCH, PRIORITY_ORDER, tickets

RECENT = 10


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def _pct(met: int, breached: int) -> float | None:
    return round(100 * met / (met + breached), 1) if met + breached else None


class InsightService:
    def report(
        self,
        session: Session,
        store: Store,
        since: datetime | None,
        until: datetime | None,
        now: datetime | None = None,
    ) -> SlaReportOut:
        """SLA attainment of the tickets opened in [since, until), by channel × priority:
        clocks met and breached (running clocks not breached yet are not counted), the
        business hours to the first response and to the resolution, and the tickets of
        each row open and breached now (whenever they were opened). Done tickets are read
        from their clocks' stored outcomes; only active tickets are computed as of now."""
        now = as_utc_or_now(now)
        until = now if until is None else as_utc(until)
        since = None if since is None else as_utc(since)
        if since is not None and since >= until:
            raise Invalid("since: must be before until")
        config = support_settings.load(session, store)
        cal = config.calendar()
        acc: dict[tuple[str, str], _Row] = {}
        total = _Row()

        def rows_of(channel: str, priority: str) -> tuple[_Row, _Row]:
            return acc.setdefault((channel, priority), _Row()), total

        # Done tickets: their clocks' outcomes are stored (``clock.retime``); counted in
        # SQL, the hours read as two integers a ticket.
        for counts in repo.done_clock_counts(session, store.id, since, until):
            for row in rows_of(counts.channel, counts.priority):
                row.add_counts(counts)
        hours: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        for channel, priority, first_s, resolution_s in repo.done_clock_seconds(
            session, store.id, since, until
        ):
            first_h, resolution_h = hours.setdefault((channel, priority), ([], []))
            first_h.append(first_s / 3600)
            resolution_h.append(resolution_s / 3600)
        for (channel, priority), (first_h, resolution_h) in hours.items():
            for row in rows_of(channel, priority):
                row.first_hours.extend(first_h)
                row.resolution_hours.extend(resolution_h)
        # Done tickets written without their outcomes (none through the service).
        after = 0
        while batch := repo.unstored_done_tickets(session, store.id, since, until, after, BATCH):
            after = batch[-1].id
            for t in batch:
                view = sla_view(cal, t, now, config.warn_at)
                for row in rows_of(t.channel.value, t.priority.value):
                    row.add(view)
        # Active tickets, the only ones with a running clock: computed as of now, for
        # the window's rows and for the breaches open now (whenever they were opened).
        after = 0
        while batch := repo.active_tickets(session, store.id, after, BATCH):
            after = batch[-1].id
            for t in batch:
                view = sla_view(cal, t, now, config.warn_at)
                created = as_utc(t.created_at)
                if created < until and (since is None or created >= since):
                    for row in rows_of(t.channel.value, t.priority.value):
                        row.add(view)
                first, resolution = view.first_response, view.resolution
                # As ``breached=true`` lists: a running clock past its due instant.
                if (first.state == "breached" and first.done_at is None) or (
                    resolution.state == "breached"
                ):
                    for row in rows_of(t.channel.value, t.priority.value):
                        row.breaches_open += 1
        order = {c.value: i for i, c in enumerate(TicketChannel)}
        prio = {p.value: i for i, p in enumerate(PRIORITY_ORDER)}
        rows = [
            acc[key].out(*key)
            for key in sorted(acc, key=lambda k: (order.get(k[0], 99), prio.get(k[1], 99)))
        ]
        return SlaReportOut(since=since, until=until, rows=rows, total=total.out("all", "all"))

    # -- the customer 360 -----------------------------------------------------------------

    def customer_360(
        self, session: Session, store: Store, external_id: str, now: datetime | None = None
    ) -> Customer360Out:
        """Everything an agent needs on one screen: profile, orders, points and tier,
        value scores, NPS answers, tickets with their SLA state, reviews."""
        now = as_utc_or_now(now)
        customer = customers_repo.get_by_external_id(session, store.id, external_id)
        if customer is None:
            message = f"no customer with external id {external_id!r}"
            raise NotFound(
                f"external_id: {message} in this store", errors=field_errors("external_id", message)
            )
        stats = repo.order_stats(session, store.id, customer.id)
        single = stats.currencies[0] if len(stats.currencies) == 1 else None
        recent = repo.recent_orders(session, store.id, customer.id, RECENT)
        orders = OrdersOut(
            count=stats.orders,
            cancelled=stats.cancelled,
            refunded=stats.refunded,
            spent=from_minor(stats.spent_minor, single) if single else None,
            currency=single,
            first_order_at=stats.first_order_at,
            last_order_at=stats.last_order_at,
            recent=[
                OrderBrief(
                    external_id=o.external_id,
                    status=o.status.value,
                    total=from_minor(o.total_minor, o.currency),
                    refunded=from_minor(o.refunded_minor, o.currency),
                    currency=o.currency,
                    placed_at=o.placed_at,
                    delivered_at=o.delivered_at,
                )
                for o in recent
            ],
        )
        scored = repo.score(session, store.id, customer.id)
        scores = None
        if scored is not None:
            scores = ValueScoresOut(
                segment=scored.segment,
                clv=scored.clv,
                clv_percentile=(
                    None
                    if scored.clv is None
                    else repo.clv_percentile(session, store.id, scored.clv)
                ),
                p_alive=scored.p_alive,
                loyalty_type=scored.loyalty_type,
                computed_at=scored.computed_at,
            )
        recent_tickets = repo.recent_tickets(session, store.id, customer.id, RECENT)
        count, mean = repo.review_stats(session, store.id, customer.id)
        tz = customer.timezone or store.timezone
        nps = []
        for at, value, key in repo.nps_history(session, store.id, customer.id, 50):
            try:
                day = at.astimezone(zone(tz)).date()
            except ValueError:
                day = at.date()
            nps.append(NpsOut(submitted_at=at, date=day, score=value, survey_key=key))
        return Customer360Out(
            profile=ProfileOut(
                external_id=customer.external_id,
                email=customer.email,
                phone=customer.phone,
                first_name=customer.first_name,
                last_name=customer.last_name,
                birthday=customer.birthday,
                locale=customer.locale,
                timezone=customer.timezone,
                flagged=customer.flagged,
                flagged_reason=customer.flagged_reason,
                traits=customer.traits or {},
                created_at=customer.created_at,
            ),
            orders=orders,
            loyalty=self._loyalty(session, store, customer, now),
            scores=scores,
            nps=nps,
            tickets=TicketsSummary(
                counts=repo.ticket_counts(session, store.id, customer.id),
                recent=tickets.out(session, store, recent_tickets, now),
            ),
            reviews=ReviewsOut(count=count, mean_rating=None if mean is None else round(mean, 2)),
        )

    def _loyalty(
        self, session: Session, store: Store, customer: Customer, now: datetime
    ) -> LoyaltyOut | None:
        program = active_program(session, store)
        if program is None:
            return None
        balance = ledger.balance(session, store, customer.id)
        tier = None
        if program.tiers:
            standing = membership.standing(session, store, program, customer.id, now)
            tier = TierOut(
                code=standing.tier.code,
                name=standing.tier.name.display(),
                since=standing.since,
                next=standing.progress.next,
                missing=standing.progress.missing,
                progress=standing.progress.message,
                progress_zh=standing.progress.message_zh,
            )
        return LoyaltyOut(
            points_available=balance.points_available,
            points_pending=balance.points_pending,
            points_held=balance.points_held,
            debt=balance.debt,
            growth=balance.growth,
            tier=tier,
        )


class _Row:
    """Accumulates one row of the attainment report."""

    def __init__(self) -> None:
        self.tickets = 0
        self.first = {"met": 0, "breached": 0}
        self.resolution = {"met": 0, "breached": 0}
        self.first_hours: list[float] = []
        self.resolution_hours: list[float] = []
        self.breaches_open = 0

    def add(self, view: SlaOut) -> None:
        self.tickets += 1
        for c, counts, hours in (
            (view.first_response, self.first, self.first_hours),
            (view.resolution, self.resolution, self.resolution_hours),
        ):
            if c.state in counts:
                counts[c.state] += 1
            if c.done_at is not None:
                hours.append(c.used_s / 3600)

    def add_counts(self, counts: repo.DoneCounts) -> None:
        self.tickets += counts.tickets
        self.first["met"] += counts.first_met
        self.first["breached"] += counts.first_breached
        self.resolution["met"] += counts.resolution_met
        self.resolution["breached"] += counts.resolution_breached

    def out(self, channel: str, priority: str) -> ReportRow:
        return ReportRow(
            channel=channel,
            priority=priority,
            tickets=self.tickets,
            first_response_met=self.first["met"],
            first_response_breached=self.first["breached"],
            first_response_met_pct=_pct(self.first["met"], self.first["breached"]),
            resolution_met=self.resolution["met"],
            resolution_breached=self.resolution["breached"],
            resolution_met_pct=_pct(self.resolution["met"], self.resolution["breached"]),
            median_first_response_h=_median(self.first_hours),
            mean_first_response_h=_mean(self.first_hours),
            median_resolution_h=_median(self.resolution_hours),
            mean_resolution_h=_mean(self.resolution_hours),
            breaches_open=self.breaches_open,
        )


insights = InsightService()
