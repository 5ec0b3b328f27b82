"""The SLA clocks of a ticket, pure: no session, no queries (the ticket is read, and
``retime`` and the pause helpers write its columns).

A ticket has two targets in business time (``settings.py``), fixed when it opens and when
its priority changes: first response and resolution. Both run from ``created_at`` over
the store's business hours (``sla.py``), minus the ticket's ``pauses``:

- ``pending`` (waiting on the customer) opens a pause; the customer's next message, or
  any move out of ``pending``, closes it;
- ``resolved`` also opens one, so a reopened ticket continues its clock where it stopped
  (the days it sat resolved are not the store's).

The due instants are recomputed from the targets and the pauses on every change (None
while paused); once a clock is done (first reply; resolution) its due instant is kept.
A clock is *met* when the business time used by then is within its target. When a clock
is done, ``retime`` also stores that business time on the ticket
(``first_response_business_s``, ``resolution_business_s``; None while it runs), so the
attainment report counts done clocks in SQL instead of recomputing every ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from patron.kit.clock import as_utc
from patron.support.models import Ticket, TicketStatus
from patron.support.schemas import ClockState, SlaClockOut, SlaOut
from patron.support.settings import format_duration
from patron.support.sla import BusinessCalendar, Pause, add_business_time, business_time

DONE = (TicketStatus.resolved, TicketStatus.closed)


def pauses_of(ticket: Ticket) -> list[Pause]:
    """The ticket's pauses as aware instants."""
    out: list[Pause] = []
    for start, end in ticket.pauses or []:
        out.append(
            (
                as_utc(datetime.fromisoformat(start)),
                None if end is None else as_utc(datetime.fromisoformat(end)),
            )
        )
    return out


def _store_pauses(ticket: Ticket, pauses: Sequence[Pause]) -> None:
    # A new list: the JSON column is written only when the attribute is replaced.
    ticket.pauses = [[a.isoformat(), None if b is None else b.isoformat()] for a, b in pauses]


def open_pause(ticket: Ticket, now: datetime) -> None:
    pauses = pauses_of(ticket)
    if not any(end is None for _, end in pauses):
        _store_pauses(ticket, [*pauses, (now, None)])


def close_pause(ticket: Ticket, now: datetime) -> timedelta:
    """Close the open pause at ``now``; returns its wall-clock length."""
    pauses = pauses_of(ticket)
    length = timedelta(0)
    closed: list[Pause] = []
    for start, end in pauses:
        if end is None:
            end = max(start, now)
            length += end - start
        closed.append((start, end))
    _store_pauses(ticket, closed)
    return length


def retime(ticket: Ticket, cal: BusinessCalendar) -> None:
    """Recompute the due instants of the clocks still running from the targets and the
    pauses (None while an open pause stops the clock), and store the outcome of each
    clock: the business seconds it used once done (``used_s`` of ``clock``), None while
    it runs (a reopened ticket's resolution goes back to None)."""
    pauses = pauses_of(ticket)
    first, resolution = first_done(ticket), _resolution_done(ticket)
    ticket.first_response_business_s = None if first is None else _used(cal, ticket, first, pauses)
    ticket.resolution_business_s = (
        None if resolution is None else _used(cal, ticket, resolution, pauses)
    )
    if ticket.status in DONE:
        return
    if ticket.first_responded_at is None:
        ticket.first_response_due_at = add_business_time(
            cal, ticket.created_at, timedelta(seconds=ticket.first_response_target_s), pauses
        )
    ticket.resolution_due_at = add_business_time(
        cal, ticket.created_at, timedelta(seconds=ticket.resolution_target_s), pauses
    )


def first_done(ticket: Ticket) -> datetime | None:
    """When the first-response clock stopped: the first reply, or a resolution without one."""
    return ticket.first_responded_at or ticket.resolved_at or ticket.closed_at


def _resolution_done(ticket: Ticket) -> datetime | None:
    if ticket.status not in DONE:
        return None
    return ticket.resolved_at or ticket.closed_at


def _used(cal: BusinessCalendar, ticket: Ticket, end: datetime, pauses: Sequence[Pause]) -> int:
    """Whole business seconds from the ticket's opening to ``end``, minus pauses."""
    return int(business_time(cal, ticket.created_at, end, pauses).total_seconds())


def clock(
    cal: BusinessCalendar,
    ticket: Ticket,
    which: str,
    now: datetime,
    warn_at: float,
    pauses: Sequence[Pause] | None = None,
) -> SlaClockOut:
    """One clock of a ticket as of ``now``."""
    pauses = pauses_of(ticket) if pauses is None else pauses
    if which == "first_response":
        target, due, done = (
            ticket.first_response_target_s,
            ticket.first_response_due_at,
            first_done(ticket),
        )
    else:
        target, due, done = (
            ticket.resolution_target_s,
            ticket.resolution_due_at,
            _resolution_done(ticket),
        )
    used = _used(cal, ticket, done if done is not None else max(now, ticket.created_at), pauses)
    state: ClockState
    if done is not None:
        state = "met" if used <= target else "breached"
    elif used >= target:
        state = "breached"
    elif ticket.status == TicketStatus.pending:
        state = "paused"
    elif used >= warn_at * target:
        state = "warning"
    else:
        state = "ok"
    return SlaClockOut(
        target_s=target,
        target=format_duration(target),
        due_at=due,
        state=state,
        used_s=used,
        remaining_s=target - used,
        done_at=done,
    )


def sla_view(cal: BusinessCalendar, ticket: Ticket, now: datetime, warn_at: float) -> SlaOut:
    pauses = pauses_of(ticket)
    return SlaOut(
        first_response=clock(cal, ticket, "first_response", now, warn_at, pauses),
        resolution=clock(cal, ticket, "resolution", now, warn_at, pauses),
        paused=ticket.status == TicketStatus.pending,
        escalation_level=ticket.escalation_level,
        warned_at=ticket.warned_at,
        escalated_at=ticket.escalated_at,
    )
