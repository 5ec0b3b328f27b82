"""Every query of referrals and surprise rewards. All of them take the store id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, exists, func, select, text
from sqlalchemy.orm import Session

from patron.customers.models import Customer
from patron.kit.repository import chunks, insert_ignoring_conflicts, insert_rows, table_of
from patron.orders.models import Order, OrderStatus
from patron.referrals.models import (
    GiftStatus,
    Referral,
    ReferralCode,
    ReferralStatus,
    SurpriseGift,
    SurprisePlan,
)

# Namespaces of the per-store job locks (pg_advisory_xact_lock(namespace, store id)).
REFERRAL_JOB = 0x52_46  # "RF"
SURPRISE_JOB = 0x53_50  # "SP"


def lock_job(session: Session, namespace: int, store_id: int) -> None:
    """Serialise one job of one store until the transaction ends.

    Why: the per-referrer cap and the monthly surprise budget are counts over many rows;
    two runs counting at once would both see room for one more. On SQLite ``BEGIN
    IMMEDIATE`` already serialises writers."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:ns AS integer), CAST(:id AS integer))"),
            {"ns": namespace, "id": store_id % 2**31},
        )


# -- customers and orders -----------------------------------------------------------------


def customer_by_external_id(session: Session, store_id: int, external_id: str) -> Customer | None:
    return session.scalars(
        select(Customer).where(Customer.store_id == store_id, Customer.external_id == external_id)
    ).first()


def customers_by_ids(session: Session, store_id: int, ids: Sequence[int]) -> dict[int, Customer]:
    found: dict[int, Customer] = {}
    for chunk in chunks(sorted(set(ids))):
        for c in session.scalars(
            select(Customer).where(Customer.store_id == store_id, Customer.id.in_(chunk))
        ):
            found[c.id] = c
    return found


def customers_by_external_ids(
    session: Session, store_id: int, external_ids: Sequence[str]
) -> dict[str, Customer]:
    found: dict[str, Customer] = {}
    for chunk in chunks(list(dict.fromkeys(external_ids))):
        for c in session.scalars(
            select(Customer).where(Customer.store_id == store_id, Customer.external_id.in_(chunk))
        ):
            found[c.external_id] = c
    return found


def external_ids(session: Session, store_id: int, ids: Sequence[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in chunks(sorted(set(ids))):
        rows = session.execute(
            select(Customer.id, Customer.external_id).where(
                Customer.store_id == store_id, Customer.id.in_(chunk)
            )
        )
        found.update({cid: ext for cid, ext in rows})
    return found


def order_before(
    session: Session, store_id: int, customer_id: int, before: datetime | None
) -> str | None:
    """The external id of an order of the customer placed before ``before`` (None: any)."""
    query = select(Order.external_id).where(
        Order.store_id == store_id, Order.customer_id == customer_id
    )
    if before is not None:
        query = query.where(Order.placed_at < before)
    return session.scalar(query.order_by(Order.placed_at, Order.id).limit(1))


def delivered_orders_since(
    session: Session, store_id: int, customer_id: int, since: datetime, currency: str
) -> Sequence[Order]:
    """The customer's delivered orders placed at or after ``since``, oldest first."""
    return session.scalars(
        select(Order)
        .where(
            Order.store_id == store_id,
            Order.customer_id == customer_id,
            Order.placed_at >= since,
            Order.status == OrderStatus.delivered,
            Order.delivered_at.is_not(None),
            Order.currency == currency,
        )
        .order_by(Order.placed_at, Order.id)
    ).all()


def order(session: Session, store_id: int, order_id: int) -> Order | None:
    return session.scalars(
        select(Order).where(Order.store_id == store_id, Order.id == order_id)
    ).first()


def segment_by_filter(
    session: Session,
    store_id: int,
    *,
    min_orders: int | None,
    min_spend_minor: int | None,
    last_order_since: datetime | None,
) -> list[int]:
    """Customers whose orders (cancelled ones aside) match every given criterion."""
    spend = func.sum(Order.total_minor - Order.refunded_minor)
    query = (
        select(Order.customer_id)
        .where(Order.store_id == store_id, Order.status != OrderStatus.cancelled)
        .group_by(Order.customer_id)
    )
    if min_orders is not None:
        query = query.having(func.count(Order.id) >= min_orders)
    if min_spend_minor is not None:
        query = query.having(spend >= min_spend_minor)
    if last_order_since is not None:
        query = query.having(func.max(Order.placed_at) >= last_order_since)
    return sorted(session.scalars(query))


def members_count(session: Session, store_id: int, until: datetime) -> int:
    return int(
        session.scalar(
            select(func.count(Customer.id)).where(
                Customer.store_id == store_id,
                Customer.created_at < until,
                Customer.flagged.is_(False),
            )
        )
        or 0
    )


def code_holders(session: Session, store_id: int, until: datetime) -> int:
    return int(
        session.scalar(
            select(func.count(ReferralCode.id)).where(
                ReferralCode.store_id == store_id, ReferralCode.created_at < until
            )
        )
        or 0
    )


# -- codes --------------------------------------------------------------------------------


def code_of(session: Session, store_id: int, customer_id: int) -> ReferralCode | None:
    return session.scalars(
        select(ReferralCode).where(
            ReferralCode.store_id == store_id, ReferralCode.customer_id == customer_id
        )
    ).first()


def code_by_value(session: Session, store_id: int, code: str) -> ReferralCode | None:
    return session.scalars(
        select(ReferralCode).where(ReferralCode.store_id == store_id, ReferralCode.code == code)
    ).first()


def insert_code(
    session: Session, store_id: int, customer_id: int, code: str, now: datetime
) -> None:
    """Insert the member's code unless a concurrent first ask inserted one already."""
    stmt = insert_ignoring_conflicts(session, table_of(ReferralCode), "store_id", "customer_id")
    session.execute(
        stmt.values(store_id=store_id, customer_id=customer_id, code=code, created_at=now)
    )


# -- referrals ----------------------------------------------------------------------------


def referral_of_referee(session: Session, store_id: int, referee_id: int) -> Referral | None:
    return session.scalars(
        select(Referral).where(Referral.store_id == store_id, Referral.referee_id == referee_id)
    ).first()


def insert_referral(session: Session, row: dict[str, Any]) -> bool:
    """Insert an attribution unless the referee has one already (a concurrent request);
    True when this call inserted it."""
    stmt = insert_ignoring_conflicts(session, table_of(Referral), "store_id", "referee_id")
    result = session.execute(stmt.values(**row))
    return bool(getattr(result, "rowcount", 0))


def referrer_of(session: Session, store_id: int, customer_id: int) -> int | None:
    return session.scalar(
        select(Referral.referrer_id).where(
            Referral.store_id == store_id, Referral.referee_id == customer_id
        )
    )


def counts_by_status(session: Session, store_id: int, referrer_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Referral.status, func.count(Referral.id))
        .where(Referral.store_id == store_id, Referral.referrer_id == referrer_id)
        .group_by(Referral.status)
    )
    return {ReferralStatus(status).value: int(n) for status, n in rows}


def points_earned(session: Session, store_id: int, referrer_id: int) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Referral.referrer_points), 0)).where(
                Referral.store_id == store_id,
                Referral.referrer_id == referrer_id,
                Referral.status == ReferralStatus.rewarded,
            )
        )
        or 0
    )


def rewarded_count(session: Session, store_id: int, referrer_id: int) -> int:
    return int(
        session.scalar(
            select(func.count(Referral.id)).where(
                Referral.store_id == store_id,
                Referral.referrer_id == referrer_id,
                Referral.status == ReferralStatus.rewarded,
            )
        )
        or 0
    )


def list_page(
    session: Session,
    store_id: int,
    *,
    status: ReferralStatus | None,
    referrer_id: int | None,
    limit: int,
    after: int | None,
) -> Sequence[Referral]:
    query = select(Referral).where(Referral.store_id == store_id)
    if status is not None:
        query = query.where(Referral.status == status)
    if referrer_id is not None:
        query = query.where(Referral.referrer_id == referrer_id)
    if after is not None:
        query = query.where(Referral.id > after)
    return session.scalars(query.order_by(Referral.id).limit(limit)).all()


def referrals_of_referrers(
    session: Session, store_id: int, referrer_ids: Sequence[int], limit: int
) -> list[Referral]:
    found: list[Referral] = []
    for chunk in chunks(sorted(set(referrer_ids))):
        found.extend(
            session.scalars(
                select(Referral)
                .where(Referral.store_id == store_id, Referral.referrer_id.in_(chunk))
                .order_by(Referral.id)
                .limit(limit - len(found) + 1)
            )
        )
        if len(found) > limit:
            break
    return found


def pending_with_delivered_orders(
    session: Session, store_id: int, after: int, limit: int
) -> Sequence[Referral]:
    """Pending referrals whose referee has a delivered order placed since attribution."""
    delivered = exists().where(
        Order.store_id == store_id,
        Order.customer_id == Referral.referee_id,
        Order.status == OrderStatus.delivered,
        Order.placed_at >= Referral.attributed_at,
    )
    return session.scalars(
        select(Referral)
        .where(
            Referral.store_id == store_id,
            Referral.status == ReferralStatus.pending,
            Referral.id > after,
            delivered,
        )
        .order_by(Referral.id)
        .limit(limit)
    ).all()


def qualified_due(
    session: Session, store_id: int, now: datetime, after: int, limit: int
) -> Sequence[Referral]:
    return session.scalars(
        select(Referral)
        .where(
            Referral.store_id == store_id,
            Referral.status == ReferralStatus.qualified,
            Referral.reward_due_at <= now,
            Referral.id > after,
        )
        .order_by(Referral.id)
        .limit(limit)
    ).all()


def window_counts(
    session: Session, store_id: int, since: datetime | None, until: datetime
) -> dict[str, int]:
    """Referrals attributed in [since, until) by status."""
    query = select(Referral.status, func.count(Referral.id)).where(
        Referral.store_id == store_id, Referral.attributed_at < until
    )
    if since is not None:
        query = query.where(Referral.attributed_at >= since)
    rows = session.execute(query.group_by(Referral.status))
    return {ReferralStatus(status).value: int(n) for status, n in rows}


def active_referrers(
    session: Session, store_id: int, since: datetime | None, until: datetime
) -> int:
    query = select(func.count(func.distinct(Referral.referrer_id))).where(
        Referral.store_id == store_id, Referral.attributed_at < until
    )
    if since is not None:
        query = query.where(Referral.attributed_at >= since)
    return int(session.scalar(query) or 0)


# -- surprises ----------------------------------------------------------------------------


def add(session: Session, obj: object) -> None:
    session.add(obj)
    session.flush()


def insert_gifts(session: Session, rows: list[dict[str, Any]]) -> None:
    insert_rows(session, table_of(SurpriseGift), rows)


def due_gifts(session: Session, store_id: int, now: datetime, limit: int) -> Sequence[SurpriseGift]:
    return session.scalars(
        select(SurpriseGift)
        .where(
            SurpriseGift.store_id == store_id,
            SurpriseGift.status == GiftStatus.scheduled,
            SurpriseGift.due_at <= now,
        )
        .order_by(SurpriseGift.due_at, SurpriseGift.id)
        .limit(limit)
    ).all()


def given_points(session: Session, store_id: int, start: datetime, end: datetime) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(SurpriseGift.points), 0)).where(
                SurpriseGift.store_id == store_id,
                SurpriseGift.status == GiftStatus.given,
                SurpriseGift.given_at >= start,
                SurpriseGift.given_at < end,
            )
        )
        or 0
    )


def gift_history(
    session: Session, store_id: int, customer_ids: Sequence[int], year_start: datetime
) -> dict[int, tuple[int, datetime | None]]:
    """customer id -> (gifts given since ``year_start``, last gift ever given)."""
    found: dict[int, tuple[int, datetime | None]] = {}
    in_year = func.sum(case((SurpriseGift.given_at >= year_start, 1), else_=0))
    for chunk in chunks(sorted(set(customer_ids))):
        rows = session.execute(
            select(SurpriseGift.customer_id, in_year, func.max(SurpriseGift.given_at))
            .where(
                SurpriseGift.store_id == store_id,
                SurpriseGift.status == GiftStatus.given,
                SurpriseGift.customer_id.in_(chunk),
            )
            .group_by(SurpriseGift.customer_id)
        )
        for cid, n, last in rows:
            found[cid] = (int(n or 0), _aware(last))
    return found


def _aware(value: Any) -> datetime | None:
    """An aggregate (max, min) of a timestamp column as aware UTC, whatever the driver
    returns for it (SQLite may give naive text)."""
    if value is None:
        return None
    when: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def gifts_page(
    session: Session,
    store_id: int,
    *,
    plan_id: int | None,
    status: GiftStatus | None,
    limit: int,
    after: int | None,
) -> Sequence[SurpriseGift]:
    query = select(SurpriseGift).where(SurpriseGift.store_id == store_id)
    if plan_id is not None:
        query = query.where(SurpriseGift.plan_id == plan_id)
    if status is not None:
        query = query.where(SurpriseGift.status == status)
    if after is not None:
        query = query.where(SurpriseGift.id > after)
    return session.scalars(query.order_by(SurpriseGift.id).limit(limit)).all()


def plan(session: Session, store_id: int, plan_id: int) -> SurprisePlan | None:
    return session.scalars(
        select(SurprisePlan).where(SurprisePlan.store_id == store_id, SurprisePlan.id == plan_id)
    ).first()


def gift_due_range(session: Session, plan_id: int) -> tuple[datetime | None, datetime | None]:
    row = session.execute(
        select(func.min(SurpriseGift.due_at), func.max(SurpriseGift.due_at)).where(
            SurpriseGift.plan_id == plan_id
        )
    ).one()
    return _aware(row[0]), _aware(row[1])
