"""The dashboard's own read queries: single aggregates over a store's tables (the
overview) and the customer search. Everything else is read through the domain services.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from patron.analytics.models import CustomerScore
from patron.customers.models import Consent, Customer
from patron.feedback.models import SurveyResponse
from patron.loyalty.models import LoyaltyMember
from patron.orders.models import Order
from patron.support.models import Ticket, TicketStatus


def repeat_buyers(session: Session, store_id: int, since: datetime) -> tuple[int, int]:
    """(customers with an order since ``since``, those with two or more)."""
    per = (
        select(func.count().label("n"))
        .where(Order.store_id == store_id, Order.placed_at >= since)
        # `+ 0`: group the recent orders found by the (store, placed_at) index; grouping
        # by the bare column lets SQLite prefer a scan of every order by customer.
        .group_by(Order.customer_id + 0)
        .subquery()
    )
    row = session.execute(
        select(
            func.count(), func.coalesce(func.sum(case((per.c.n >= 2, 1), else_=0)), 0)
        ).select_from(per)
    ).one()
    return int(row[0]), int(row[1])


def profile_counts(session: Session, store_id: int) -> tuple[int, int]:
    """(customers, customers with a birthday), stubs left out."""
    row = session.execute(
        select(func.count(Customer.id), func.count(Customer.birthday)).where(
            Customer.store_id == store_id, Customer.is_stub.is_(False)
        )
    ).one()
    return int(row[0]), int(row[1])


def consenting_customers(session: Session, store_id: int) -> int:
    return int(
        session.scalar(
            select(func.count(func.distinct(Consent.customer_id))).where(
                Consent.store_id == store_id, Consent.granted.is_(True)
            )
        )
        or 0
    )


def scored_customers(session: Session, store_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                CustomerScore.store_id == store_id, CustomerScore.segment.is_not(None)
            )
        )
        or 0
    )


def follow_ups(session: Session, store_id: int) -> tuple[int, int]:
    """(follow-up tickets opened by survey answers, of which resolved or closed)."""
    done = func.sum(
        case((Ticket.status.in_([TicketStatus.resolved, TicketStatus.closed]), 1), else_=0)
    )
    row = session.execute(
        select(func.count(Ticket.id), done)
        .select_from(SurveyResponse)
        .join(Ticket, Ticket.id == SurveyResponse.ticket_id)
        .where(SurveyResponse.store_id == store_id, SurveyResponse.ticket_id.is_not(None))
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


def members_by_tier(session: Session, store_id: int) -> dict[str, int]:
    rows = session.execute(
        select(LoyaltyMember.tier, func.count())
        .where(LoyaltyMember.store_id == store_id)
        .group_by(LoyaltyMember.tier)
    )
    return {tier: int(n) for tier, n in rows}  # "" : members not placed yet (first tier)


def active_members(session: Session, store_id: int, since: datetime) -> int:
    """Members with an order placed since ``since`` (the store's recent orders, by the
    (store, placed_at) index, joined to their member rows)."""
    return int(
        session.scalar(
            select(func.count(func.distinct(Order.customer_id)))
            .join(
                LoyaltyMember,
                and_(
                    LoyaltyMember.customer_id == Order.customer_id,
                    LoyaltyMember.store_id == store_id,
                ),
            )
            .where(Order.store_id == store_id, Order.placed_at >= since)
        )
        or 0
    )


# -- customer search ---------------------------------------------------------------------


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_customers(
    session: Session, store_id: int, q: str, after: int | None, limit: int
) -> list[tuple[Customer, str | None, str | None]]:
    """Customers matching ``q`` — external id, e-mail, phone exactly; external id, name
    or e-mail by prefix (case-insensitive) — by id, with their tier and RFM segment.
    An empty ``q`` lists everyone."""
    query = (
        select(Customer, LoyaltyMember.tier, CustomerScore.segment)
        .outerjoin(
            LoyaltyMember,
            and_(LoyaltyMember.customer_id == Customer.id, LoyaltyMember.store_id == store_id),
        )
        .outerjoin(CustomerScore, CustomerScore.customer_id == Customer.id)
        .where(Customer.store_id == store_id)
    )
    q = q.strip()
    if q:
        prefix = _like(q.lower())
        name = func.lower(
            func.coalesce(Customer.first_name, "") + " " + func.coalesce(Customer.last_name, "")
        )
        query = query.where(
            or_(
                Customer.external_id == q,
                Customer.email == q.lower(),
                Customer.phone == q,
                func.lower(Customer.external_id).like(prefix, escape="\\"),
                func.lower(Customer.email).like(prefix, escape="\\"),
                func.lower(Customer.first_name).like(prefix, escape="\\"),
                func.lower(Customer.last_name).like(prefix, escape="\\"),
                name.like(prefix, escape="\\"),
                func.lower(Customer.phone).like(prefix, escape="\\"),
            )
        )
    if after is not None:
        query = query.where(Customer.id > after)
    rows = session.execute(query.order_by(Customer.id).limit(limit)).all()
    return [(customer, tier, segment) for customer, tier, segment in rows]
