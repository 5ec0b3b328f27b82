"""The stored outcome of each SLA clock (``clock.retime``) and the attainment report
built on it: the stored seconds are the business time the clock used, across pauses,
resolutions and reopenings; the report counts done clocks in SQL and equals the
per-ticket computation it replaced."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update

from patron.db import unit_of_work
from patron.stores.models import Store
from patron.support import settings as support_settings
from patron.support.clock import first_done, pauses_of, sla_view
from patron.support.insights import _Row, insights
from patron.support.models import Ticket, TicketChannel, TicketStatus
from patron.support.schemas import MessageIn, SlaReportOut, TicketIn
from patron.support.service import PRIORITY_ORDER, tickets
from patron.support.sla import business_time
from tests.support.test_sla_api import HOUR, OFFICE, apply, cst
from tests.support.test_tickets import message, open_ticket, status, ticket_row

CHANNELS = ("email", "chat", "phone", "social", "app")
DONE = (TicketStatus.resolved, TicketStatus.closed)


def stored(engine: Engine, tid: int) -> tuple[int | None, int | None]:
    t = ticket_row(engine, tid)
    return t.first_response_business_s, t.resolution_business_s


def recomputed(engine: Engine, store: Store, tid: int) -> tuple[int | None, int | None]:
    """The business seconds of each done clock, computed from the ticket as it is now."""
    with unit_of_work(engine) as session:
        cal = support_settings.load(session, session.merge(store)).calendar()
        t = session.get(Ticket, tid)
        assert t is not None
        pauses = pauses_of(t)

        def used(end: datetime | None) -> int | None:
            if end is None:
                return None
            return int(business_time(cal, t.created_at, end, pauses).total_seconds())

        resolution = (t.resolved_at or t.closed_at) if t.status in DONE else None
        return used(first_done(t)), used(resolution)


def test_stored_seconds_across_pauses_and_reopening(engine: Engine, store: Store) -> None:
    apply(engine, store, OFFICE)
    # Friday 3 April 2026 19:00 in Shanghai; Monday 6 April is Qingming (清明节).
    tid = open_ticket(engine, store, now=cst(2026, 4, 3, 19), requester="c@example.com")
    assert stored(engine, tid) == (None, None)

    def step() -> tuple[int | None, int | None]:
        got = stored(engine, tid)
        assert got == recomputed(engine, store, tid)
        return got

    message(engine, store, tid, "outbound", cst(2026, 4, 7, 10))
    assert step() == (3600, None)  # Tuesday 09:00-10:00
    # Waiting on the customer Tuesday 17:30 to Wednesday 09:30, resolved at 10:00:
    # Tuesday 09:00-17:30 and Wednesday 09:30-10:00.
    message(engine, store, tid, "outbound", cst(2026, 4, 7, 17, 30), wait_for_customer=True)
    message(engine, store, tid, "inbound", cst(2026, 4, 8, 9, 30))
    assert step() == (3600, None)
    status(engine, store, tid, "resolved", cst(2026, 4, 8, 10))
    assert step() == (3600, 9 * 3600)
    # Reopened: the resolution runs again (None), the first response stays done.
    message(engine, store, tid, "inbound", cst(2026, 4, 9, 10))
    assert step() == (3600, None)
    # Resolved again two business hours later: the days it sat resolved do not count.
    status(engine, store, tid, "resolved", cst(2026, 4, 9, 12))
    assert step() == (3600, 11 * 3600)
    status(engine, store, tid, "closed", cst(2026, 4, 10, 12))
    assert step() == (3600, 11 * 3600)

    # Resolved without a reply: the resolution also stops the first-response clock,
    # and reopening starts both again.
    other = open_ticket(engine, store, now=cst(2026, 4, 7, 9), requester="d@example.com")
    status(engine, store, other, "resolved", cst(2026, 4, 7, 11))
    assert stored(engine, other) == recomputed(engine, store, other) == (7200, 7200)
    status(engine, store, other, "open", cst(2026, 4, 8, 9))
    assert stored(engine, other) == recomputed(engine, store, other) == (None, None)
    status(engine, store, other, "closed", cst(2026, 4, 8, 10))
    assert stored(engine, other) == recomputed(engine, store, other) == (3 * 3600, 3 * 3600)


def old_report(
    engine: Engine, store: Store, since: datetime | None, until: datetime, now: datetime
) -> SlaReportOut:
    """The report as it was computed before the outcomes were stored: ``sla_view`` of
    every ticket opened in the window, and of every active ticket for its open breaches."""
    with unit_of_work(engine) as session:
        config = support_settings.load(session, session.merge(store))
        cal = config.calendar()
        acc: dict[tuple[str, str], _Row] = {}
        total = _Row()
        query = select(Ticket).where(Ticket.store_id == store.id, Ticket.created_at < until)
        if since is not None:
            query = query.where(Ticket.created_at >= since)
        for t in session.scalars(query.order_by(Ticket.id)):
            view = sla_view(cal, t, now, config.warn_at)
            for row in (acc.setdefault((t.channel.value, t.priority.value), _Row()), total):
                row.add(view)
        active = select(Ticket).where(Ticket.store_id == store.id, Ticket.status.not_in(DONE))
        for t in session.scalars(active.order_by(Ticket.id)):
            view = sla_view(cal, t, now, config.warn_at)
            first, resolution = view.first_response, view.resolution
            if (first.state == "breached" and first.done_at is None) or (
                resolution.state == "breached"
            ):
                for row in (acc.setdefault((t.channel.value, t.priority.value), _Row()), total):
                    row.breaches_open += 1
        order = {c.value: i for i, c in enumerate(TicketChannel)}
        prio = {p.value: i for i, p in enumerate(PRIORITY_ORDER)}
        rows = [
            acc[key].out(*key)
            for key in sorted(acc, key=lambda k: (order.get(k[0], 99), prio.get(k[1], 99)))
        ]
        return SlaReportOut(since=since, until=until, rows=rows, total=total.out("all", "all"))


def random_tickets(engine: Engine, store: Store, rng: random.Random, n: int) -> datetime:
    """``n`` tickets through the service, each with a random life (replies, waits on the
    customer, resolutions, reopenings, closing); returns the last instant of any."""
    start = cst(2026, 3, 30, 0)
    last = start
    for i in range(n):
        at = start + timedelta(minutes=rng.randrange(14 * 24 * 60))
        data = TicketIn.model_validate(
            {
                "channel": rng.choice(CHANNELS),
                "priority": rng.choice(PRIORITY_ORDER).value,
                "subject": "Help",
                "body": "Something is wrong",
                "requester": f"r{i}@example.com",
            }
        )
        with unit_of_work(engine) as session:
            s = session.merge(store)
            ticket, _ = tickets.open(session, s, data, now=at)
            for _ in range(rng.randrange(7)):
                at += timedelta(minutes=rng.randrange(10, 30 * 60))
                if ticket.status == TicketStatus.closed:
                    break
                roll = rng.random()
                if ticket.status in (TicketStatus.pending, TicketStatus.resolved) and roll < 0.5:
                    msg = MessageIn(direction="inbound", body="…")
                    tickets.add_message(session, s, ticket.id, msg, now=at)
                elif ticket.status == TicketStatus.resolved:
                    to = TicketStatus.open if roll < 0.7 else TicketStatus.closed
                    tickets.set_status(session, s, ticket.id, to, now=at)
                elif roll < 0.55:
                    wait = ticket.status != TicketStatus.pending and rng.random() < 0.3
                    msg = MessageIn(direction="outbound", body="…", wait_for_customer=wait)
                    tickets.add_message(session, s, ticket.id, msg, now=at)
                else:
                    to = TicketStatus.resolved if roll < 0.9 else TicketStatus.closed
                    tickets.set_status(session, s, ticket.id, to, now=at)
            last = max(last, at)
    return last


def test_report_equals_the_per_ticket_computation(engine: Engine, store: Store) -> None:
    apply(engine, store, OFFICE)
    rng = random.Random(20260407)
    last = random_tickets(engine, store, rng, 60)
    with unit_of_work(engine) as session:
        ids = list(session.scalars(select(Ticket.id).where(Ticket.store_id == store.id)))
        # A row written without ``retime`` (no stored outcome) is computed as before.
        done = [
            t.id
            for t in session.scalars(select(Ticket).where(Ticket.id.in_(ids)))
            if t.status in DONE
        ]
        assert done and len(done) < len(ids)
        session.execute(
            update(Ticket)
            .where(Ticket.id == done[0])
            .values(first_response_business_s=None, resolution_business_s=None)
        )
    for t in (ticket_row(engine, tid) for tid in ids if tid != done[0]):
        assert (t.first_response_business_s, t.resolution_business_s) == recomputed(
            engine, store, t.id
        )
    windows: list[tuple[datetime | None, datetime]] = [
        (None, last + HOUR),
        (cst(2026, 4, 2), cst(2026, 4, 9)),
        (cst(2026, 4, 6, 12), last + timedelta(days=3)),
    ]
    for now in (last + HOUR, last + timedelta(days=3)):
        for since, until in windows:
            with unit_of_work(engine) as session:
                new = insights.report(session, session.merge(store), since, until, now=now)
            old = old_report(engine, store, since, until, now)
            assert new.model_dump() == old.model_dump()
            assert new.total.tickets > 0
    # The set exercises every kind of count: met, breached, running and breached now.
    total = new.total
    assert min(total.first_response_met, total.first_response_breached) > 0
    assert min(total.resolution_met, total.resolution_breached, total.breaches_open) > 0
