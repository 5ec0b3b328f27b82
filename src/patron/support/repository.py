"""Every query of support: settings, tickets, messages, events, compensations, and the
customer facts that grading and the 360 view read. All of them take the store id."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from patron.analytics.models import CustomerScore
from patron.customers.models import Customer
from patron.feedback.models import Review, ReviewStatus, SurveyAnswer, SurveyResponse
from patron.kit.repository import add_and_flush, aware_instant, chunks
from patron.orders.models import Order, OrderStatus
from patron.support.models import (
    Compensation,
    SupportSettings,
    Ticket,
    TicketEvent,
    TicketMessage,
    TicketStatus,
)

# Namespace of the per-store SLA job lock (pg_advisory_xact_lock(namespace, store id)).
SLA_JOB = 0x53_4C  # "SL"
ACTIVE = (TicketStatus.new, TicketStatus.open, TicketStatus.pending)


# -- settings -----------------------------------------------------------------------------


def settings_row(
    session: Session, store_id: int, *, for_update: bool = False
) -> SupportSettings | None:
    query = select(SupportSettings).where(SupportSettings.store_id == store_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def add_settings(
    session: Session, store_id: int, config: dict[str, Any], now: datetime
) -> SupportSettings:
    row = SupportSettings(store_id=store_id, config=config, version=1, updated_at=now)
    add_and_flush(session, row)
    return row


# -- customers ----------------------------------------------------------------------------


def customer_by_email(session: Session, store_id: int, email: str) -> Customer | None:
    """The customer with this e-mail address (case-insensitive); the oldest profile when
    several share it, stubs last."""
    return session.scalars(
        select(Customer)
        .where(Customer.store_id == store_id, func.lower(Customer.email) == email.lower())
        .order_by(Customer.is_stub, Customer.id)
        .limit(1)
    ).first()


def order_total(session: Session, store_id: int, external_id: str) -> tuple[int, str] | None:
    """(total in minor units, currency) of an order."""
    row = session.execute(
        select(Order.total_minor, Order.currency).where(
            Order.store_id == store_id, Order.external_id == external_id
        )
    ).first()
    return None if row is None else (int(row[0]), str(row[1]))


def score(session: Session, store_id: int, customer_id: int) -> CustomerScore | None:
    return session.scalars(
        select(CustomerScore).where(
            CustomerScore.store_id == store_id, CustomerScore.customer_id == customer_id
        )
    ).first()


def clv_percentile(session: Session, store_id: int, clv: Decimal) -> float | None:
    """Share of the store's scored customers whose CLV is at most ``clv`` (0..1)."""
    row = session.execute(
        select(
            func.count(CustomerScore.customer_id),
            func.sum(case((CustomerScore.clv <= clv, 1), else_=0)),
        ).where(CustomerScore.store_id == store_id, CustomerScore.clv.is_not(None))
    ).one()
    total, below = int(row[0] or 0), int(row[1] or 0)
    return None if total == 0 else below / total


def same_issue_count(
    session: Session,
    store_id: int,
    *,
    category: str,
    product_sku: str | None,
    customer_id: int | None,
    exclude_ticket: int | None,
    since: datetime,
) -> int:
    """Other customers with a ticket of this category on this product since ``since``."""
    query = select(func.count(func.distinct(Ticket.customer_id))).where(
        Ticket.store_id == store_id,
        Ticket.category == category,
        Ticket.created_at >= since,
        Ticket.customer_id.is_not(None),
    )
    if product_sku is not None:
        query = query.where(Ticket.product_sku == product_sku)
    if customer_id is not None:
        query = query.where(Ticket.customer_id != customer_id)
    if exclude_ticket is not None:
        query = query.where(Ticket.id != exclude_ticket)
    return int(session.scalar(query) or 0)


def prior_claims(
    session: Session, store_id: int, customer_id: int, since: datetime, exclude: int | None
) -> int:
    """This customer's other claims (tickets with a claim) since ``since``."""
    query = select(func.count(Ticket.id)).where(
        Ticket.store_id == store_id,
        Ticket.customer_id == customer_id,
        Ticket.created_at >= since,
        Ticket.claim.is_not(None),
    )
    if exclude is not None:
        query = query.where(Ticket.id != exclude)
    return int(session.scalar(query) or 0)


def refund_counts(session: Session, store_id: int, customer_id: int) -> tuple[int, int]:
    """(orders not cancelled, of them refunded in part or in full)."""
    refunded = or_(Order.refunded_minor > 0, Order.status == OrderStatus.refunded)
    row = session.execute(
        select(func.count(Order.id), func.sum(case((refunded, 1), else_=0))).where(
            Order.store_id == store_id,
            Order.customer_id == customer_id,
            Order.status != OrderStatus.cancelled,
        )
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


@dataclass(frozen=True)
class OrderStats:
    orders: int
    cancelled: int
    refunded: int
    spent_minor: int  # net of refunds, cancelled orders aside
    first_order_at: datetime | None
    last_order_at: datetime | None
    currencies: list[str]


def order_stats(session: Session, store_id: int, customer_id: int) -> OrderStats:
    live = Order.status != OrderStatus.cancelled
    row = session.execute(
        select(
            func.count(Order.id),
            func.sum(case((Order.status == OrderStatus.cancelled, 1), else_=0)),
            func.sum(
                case(
                    (
                        and_(
                            live,
                            or_(Order.refunded_minor > 0, Order.status == OrderStatus.refunded),
                        ),
                        1,
                    )
                )
            ),
            func.sum(case((live, Order.total_minor - Order.refunded_minor), else_=0)),
            func.min(Order.placed_at),
            func.max(Order.placed_at),
        ).where(Order.store_id == store_id, Order.customer_id == customer_id)
    ).one()
    currencies = session.scalars(
        select(Order.currency)
        .where(Order.store_id == store_id, Order.customer_id == customer_id)
        .distinct()
    ).all()
    return OrderStats(
        orders=int(row[0] or 0),
        cancelled=int(row[1] or 0),
        refunded=int(row[2] or 0),
        spent_minor=int(row[3] or 0),
        first_order_at=aware_instant(row[4]),
        last_order_at=aware_instant(row[5]),
        currencies=sorted(currencies),
    )


def recent_orders(session: Session, store_id: int, customer_id: int, limit: int) -> Sequence[Order]:
    return session.scalars(
        select(Order)
        .where(Order.store_id == store_id, Order.customer_id == customer_id)
        .order_by(Order.placed_at.desc(), Order.id.desc())
        .limit(limit)
    ).all()


def nps_history(
    session: Session, store_id: int, customer_id: int, limit: int
) -> list[tuple[datetime, float, str]]:
    """(submitted at, score, survey key) of the customer's NPS answers, newest first."""
    rows = session.execute(
        select(SurveyResponse.submitted_at, SurveyAnswer.value, SurveyResponse.survey_key)
        .join(SurveyAnswer, SurveyAnswer.response_id == SurveyResponse.id)
        .where(
            SurveyResponse.store_id == store_id,
            SurveyResponse.customer_id == customer_id,
            SurveyAnswer.store_id == store_id,
            SurveyAnswer.question_type == "nps",
            SurveyAnswer.value.is_not(None),
        )
        .order_by(SurveyResponse.submitted_at.desc(), SurveyAnswer.id.desc())
        .limit(limit)
    )
    out: list[tuple[datetime, float, str]] = []
    for at, value, key in rows:
        when = aware_instant(at)
        assert when is not None and value is not None  # filtered above
        out.append((when, float(value), str(key)))
    return out


def review_stats(session: Session, store_id: int, customer_id: int) -> tuple[int, float | None]:
    """(reviews not rejected, their mean rating)."""
    row = session.execute(
        select(func.count(Review.id), func.avg(Review.rating)).where(
            Review.store_id == store_id,
            Review.customer_id == customer_id,
            Review.status != ReviewStatus.rejected,
        )
    ).one()
    count = int(row[0] or 0)
    return count, (None if row[1] is None or count == 0 else float(row[1]))


# -- tickets ------------------------------------------------------------------------------


def ticket(
    session: Session, store_id: int, ticket_id: int, *, for_update: bool = False
) -> Ticket | None:
    query = select(Ticket).where(Ticket.store_id == store_id, Ticket.id == ticket_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def ticket_by_source_ref(session: Session, store_id: int, source_ref: str) -> Ticket | None:
    return session.scalars(
        select(Ticket).where(Ticket.store_id == store_id, Ticket.source_ref == source_ref)
    ).first()


def breached_condition(now: datetime) -> ColumnElement[bool]:
    """A ticket still open whose first-response or resolution due instant has passed
    (never NULL: each comparison is guarded)."""
    first = and_(
        Ticket.first_responded_at.is_(None),
        Ticket.first_response_due_at.is_not(None),
        Ticket.first_response_due_at <= now,
    )
    resolution = and_(Ticket.resolution_due_at.is_not(None), Ticket.resolution_due_at <= now)
    return and_(Ticket.status.in_(ACTIVE), or_(first, resolution))


def tickets_page(
    session: Session,
    store_id: int,
    *,
    status: Sequence[TicketStatus] | None,
    channel: str | None,
    priority: str | None,
    customer_id: int | None,
    breached: bool | None,
    now: datetime,
    limit: int,
    after: int | None,
) -> Sequence[Ticket]:
    query = select(Ticket).where(Ticket.store_id == store_id)
    if status:
        query = query.where(Ticket.status.in_(list(status)))
    if channel is not None:
        query = query.where(Ticket.channel == channel)
    if priority is not None:
        query = query.where(Ticket.priority == priority)
    if customer_id is not None:
        query = query.where(Ticket.customer_id == customer_id)
    if breached is not None:
        cond = breached_condition(now)
        query = query.where(cond if breached else ~cond)
    if after is not None:
        query = query.where(Ticket.id > after)
    return session.scalars(query.order_by(Ticket.id).limit(limit)).all()


def active_tickets(session: Session, store_id: int, after: int, limit: int) -> Sequence[Ticket]:
    """Tickets whose clocks may still run (new, open, pending), by id, locked for the
    SLA job."""
    return session.scalars(
        select(Ticket)
        .where(Ticket.store_id == store_id, Ticket.status.in_(ACTIVE), Ticket.id > after)
        .order_by(Ticket.id)
        .limit(limit)
    ).all()


DONE = (TicketStatus.resolved, TicketStatus.closed)


def _created_done(store_id: int, since: datetime | None, until: datetime) -> ColumnElement[bool]:
    """Resolved or closed tickets opened in [since, until) whose clock outcomes are stored
    (``clock.retime``)."""
    cond = and_(
        Ticket.store_id == store_id,
        Ticket.created_at < until,
        Ticket.status.in_(DONE),
        Ticket.first_response_business_s.is_not(None),
        Ticket.resolution_business_s.is_not(None),
    )
    return cond if since is None else and_(cond, Ticket.created_at >= since)


@dataclass(frozen=True, slots=True)
class DoneCounts:
    channel: str
    priority: str
    tickets: int
    first_met: int
    first_breached: int
    resolution_met: int
    resolution_breached: int


def done_clock_counts(
    session: Session, store_id: int, since: datetime | None, until: datetime
) -> list[DoneCounts]:
    """Per channel × priority, the done tickets opened in the window and their clocks met
    (business seconds within the target) and breached, from the stored outcomes."""

    def met(used: Any, target: Any) -> Any:
        return func.sum(case((used <= target, 1), else_=0))

    def breached(used: Any, target: Any) -> Any:
        return func.sum(case((used > target, 1), else_=0))

    first = (Ticket.first_response_business_s, Ticket.first_response_target_s)
    resolution = (Ticket.resolution_business_s, Ticket.resolution_target_s)
    rows = session.execute(
        select(
            Ticket.channel,
            Ticket.priority,
            func.count(Ticket.id),
            met(*first),
            breached(*first),
            met(*resolution),
            breached(*resolution),
        )
        .where(_created_done(store_id, since, until))
        .group_by(Ticket.channel, Ticket.priority)
    ).all()
    return [
        DoneCounts(c.value, p.value, int(n), int(fm), int(fb), int(rm), int(rb))
        for c, p, n, fm, fb, rm, rb in rows
    ]


def done_clock_seconds(
    session: Session, store_id: int, since: datetime | None, until: datetime
) -> Iterator[tuple[str, str, int, int]]:
    """(channel, priority, first-response business seconds, resolution business seconds)
    of the done tickets opened in the window: plain integers, for medians and means,
    streamed by partitions (a year of rows held at once costs full garbage collections)."""
    query = select(
        Ticket.channel,
        Ticket.priority,
        Ticket.first_response_business_s,
        Ticket.resolution_business_s,
    ).where(_created_done(store_id, since, until))
    for part in session.execute(query.execution_options(yield_per=2000)).partitions():
        for channel, priority, first_s, resolution_s in part:
            # Never None: ``_created_done`` requires both.
            yield channel.value, priority.value, first_s or 0, resolution_s or 0


def unstored_done_tickets(
    session: Session, store_id: int, since: datetime | None, until: datetime, after: int, limit: int
) -> Sequence[Ticket]:
    """Done tickets opened in the window without stored clock outcomes (rows written
    without ``clock.retime``), by id: the report computes their clocks itself."""
    query = select(Ticket).where(
        Ticket.store_id == store_id,
        Ticket.created_at < until,
        Ticket.status.in_(DONE),
        or_(Ticket.first_response_business_s.is_(None), Ticket.resolution_business_s.is_(None)),
        Ticket.id > after,
    )
    if since is not None:
        query = query.where(Ticket.created_at >= since)
    return session.scalars(query.order_by(Ticket.id).limit(limit)).all()


def recent_tickets(
    session: Session, store_id: int, customer_id: int, limit: int
) -> Sequence[Ticket]:
    return session.scalars(
        select(Ticket)
        .where(Ticket.store_id == store_id, Ticket.customer_id == customer_id)
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        .limit(limit)
    ).all()


def ticket_counts(session: Session, store_id: int, customer_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Ticket.status, func.count(Ticket.id))
        .where(Ticket.store_id == store_id, Ticket.customer_id == customer_id)
        .group_by(Ticket.status)
    )
    return {TicketStatus(s).value: int(n) for s, n in rows}


# -- messages and events ------------------------------------------------------------------


def message_by_message_id(session: Session, store_id: int, message_id: str) -> TicketMessage | None:
    return session.scalars(
        select(TicketMessage).where(
            TicketMessage.store_id == store_id, TicketMessage.message_id == message_id
        )
    ).first()


def ticket_of_message_ids(
    session: Session, store_id: int, message_ids: Sequence[str]
) -> int | None:
    """The ticket of the newest stored message among these Message-IDs."""
    if not message_ids:
        return None
    return session.scalar(
        select(TicketMessage.ticket_id)
        .where(
            TicketMessage.store_id == store_id,
            TicketMessage.message_id.in_(list(dict.fromkeys(message_ids))[:200]),
        )
        .order_by(TicketMessage.id.desc())
        .limit(1)
    )


def messages_of(session: Session, store_id: int, ticket_id: int) -> Sequence[TicketMessage]:
    return session.scalars(
        select(TicketMessage)
        .where(TicketMessage.store_id == store_id, TicketMessage.ticket_id == ticket_id)
        .order_by(TicketMessage.created_at, TicketMessage.id)
    ).all()


def events_of(session: Session, store_id: int, ticket_id: int) -> Sequence[TicketEvent]:
    return session.scalars(
        select(TicketEvent)
        .where(TicketEvent.store_id == store_id, TicketEvent.ticket_id == ticket_id)
        .order_by(TicketEvent.id)
    ).all()


def first_event(session: Session, store_id: int, ticket_id: int, kind: str) -> TicketEvent | None:
    return session.scalars(
        select(TicketEvent)
        .where(
            TicketEvent.store_id == store_id,
            TicketEvent.ticket_id == ticket_id,
            TicketEvent.kind == kind,
        )
        .order_by(TicketEvent.id)
        .limit(1)
    ).first()


def event_kinds(
    session: Session, store_id: int, ticket_ids: Sequence[int], kinds: Sequence[str]
) -> set[tuple[int, str]]:
    """Which of these kinds of event each ticket has had."""
    found: set[tuple[int, str]] = set()
    for chunk in chunks(sorted(set(ticket_ids))):
        rows = session.execute(
            select(TicketEvent.ticket_id, TicketEvent.kind)
            .where(
                TicketEvent.store_id == store_id,
                TicketEvent.ticket_id.in_(chunk),
                TicketEvent.kind.in_(list(kinds)),
            )
            .distinct()
        )
        found.update((int(t), str(k)) for t, k in rows)
    return found


# -- compensations ------------------------------------------------------------------------


def compensation(
    session: Session, store_id: int, compensation_id: int, *, for_update: bool = False
) -> Compensation | None:
    query = select(Compensation).where(
        Compensation.store_id == store_id, Compensation.id == compensation_id
    )
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def compensation_by_key(session: Session, store_id: int, key: str) -> Compensation | None:
    return session.scalars(
        select(Compensation).where(Compensation.store_id == store_id, Compensation.key == key)
    ).first()


def compensations_of(session: Session, store_id: int, ticket_id: int) -> Sequence[Compensation]:
    return session.scalars(
        select(Compensation)
        .where(Compensation.store_id == store_id, Compensation.ticket_id == ticket_id)
        .order_by(Compensation.id)
    ).all()
