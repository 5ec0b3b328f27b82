"""Every query of the rewards domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from patron.customers.models import Customer
from patron.kit.clock import utcnow
from patron.kit.repository import insert_ignoring_conflicts, table_of
from patron.loyalty.models import LoyaltyAccount, LoyaltyMember
from patron.rewards.models import (
    CheckoutState,
    Coupon,
    CouponStatus,
    PointsCheckout,
    Redemption,
    RedemptionStatus,
    RewardInventory,
)

INVENTORY = table_of(RewardInventory)

# -- customers -----------------------------------------------------------------------------


def customer_id(session: Session, store_id: int, external_id: str) -> int | None:
    return session.scalar(
        select(Customer.id).where(
            Customer.store_id == store_id, Customer.external_id == external_id
        )
    )


def external_ids(session: Session, store_id: int, ids: Sequence[int]) -> dict[int, str]:
    rows = session.execute(
        select(Customer.id, Customer.external_id).where(
            Customer.store_id == store_id, Customer.id.in_(sorted(set(ids)))
        )
    )
    return {cid: ext for cid, ext in rows}


def lock_customer(session: Session, store_id: int, customer_id: int) -> bool:
    """Lock the customer's row: a member's redemptions and cancellations run one at a
    time, so a per-customer limit counted under this lock cannot be overrun. Lock order
    everywhere: customer, then the ledger account, then stock counters."""
    found = session.scalar(
        select(Customer.id)
        .where(Customer.store_id == store_id, Customer.id == customer_id)
        .with_for_update()
    )
    return found is not None


def is_member(session: Session, store_id: int, customer_id: int) -> bool:
    """A member has a loyalty account (any ledger event) or a tier placement."""
    account = exists().where(
        LoyaltyAccount.store_id == store_id, LoyaltyAccount.customer_id == customer_id
    )
    member = exists().where(
        LoyaltyMember.store_id == store_id, LoyaltyMember.customer_id == customer_id
    )
    return bool(session.scalar(select(account | member)))


# -- stock ---------------------------------------------------------------------------------


def inventory(session: Session, store_id: int) -> dict[str, tuple[int, int]]:
    """reward id -> (issued, prize points given)."""
    rows = session.execute(
        select(
            RewardInventory.reward_id, RewardInventory.issued, RewardInventory.prize_points
        ).where(RewardInventory.store_id == store_id)
    )
    return {rid: (issued, points) for rid, issued, points in rows}


def _ensure(session: Session, store_id: int, reward_id: str) -> None:
    stmt = insert_ignoring_conflicts(session, INVENTORY, "store_id", "reward_id")
    session.execute(
        stmt.values(
            store_id=store_id, reward_id=reward_id, issued=0, prize_points=0, updated_at=utcnow()
        )
    )


def take_stock(session: Session, store_id: int, reward_id: str, stock: int | None) -> bool:
    """Count one unit issued; with a ``stock``, only while ``issued < stock``.

    One conditional UPDATE: concurrent redemptions queue on the row and each re-checks
    the condition on the row as the previous one left it, so stock is never oversold.
    """
    _ensure(session, store_id, reward_id)
    stmt = (
        update(RewardInventory)
        .where(RewardInventory.store_id == store_id, RewardInventory.reward_id == reward_id)
        .values(issued=RewardInventory.issued + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if stock is not None:
        stmt = stmt.where(RewardInventory.issued < stock)
    return session.execute(stmt).rowcount == 1  # type: ignore[attr-defined,no-any-return]


def return_stock(session: Session, store_id: int, reward_id: str) -> None:
    session.execute(
        update(RewardInventory)
        .where(
            RewardInventory.store_id == store_id,
            RewardInventory.reward_id == reward_id,
            RewardInventory.issued > 0,
        )
        .values(issued=RewardInventory.issued - 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def lock_draw_budget(session: Session, store_id: int, reward_id: str) -> int:
    """Lock a lucky draw's counter and return the prize points it gave: draws of a
    budgeted draw run one at a time, so the budget is never exceeded."""
    _ensure(session, store_id, reward_id)
    given = session.scalar(
        select(RewardInventory.prize_points)
        .where(RewardInventory.store_id == store_id, RewardInventory.reward_id == reward_id)
        .with_for_update()
    )
    return int(given or 0)


def add_prize_points(session: Session, store_id: int, reward_id: str, points: int) -> None:
    _ensure(session, store_id, reward_id)
    session.execute(
        update(RewardInventory)
        .where(RewardInventory.store_id == store_id, RewardInventory.reward_id == reward_id)
        .values(prize_points=RewardInventory.prize_points + points, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


# -- redemptions ---------------------------------------------------------------------------


def redemption_by_key(session: Session, store_id: int, key: str) -> Redemption | None:
    return session.scalars(
        select(Redemption).where(Redemption.store_id == store_id, Redemption.idempotency_key == key)
    ).first()


def redemption(session: Session, store_id: int, redemption_id: int) -> Redemption | None:
    return session.scalars(
        select(Redemption).where(Redemption.store_id == store_id, Redemption.id == redemption_id)
    ).first()


def children(session: Session, parent_ids: Sequence[int]) -> list[Redemption]:
    if not parent_ids:
        return []
    return list(
        session.scalars(
            select(Redemption).where(Redemption.parent_id.in_(parent_ids)).order_by(Redemption.id)
        )
    )


def redemptions_of(
    session: Session, store_id: int, customer_id: int, limit: int, before: int | None
) -> list[Redemption]:
    query = select(Redemption).where(
        Redemption.store_id == store_id, Redemption.customer_id == customer_id
    )
    if before is not None:
        query = query.where(Redemption.id < before)
    return list(session.scalars(query.order_by(Redemption.id.desc()).limit(limit)))


def count_redeemed(
    session: Session, store_id: int, customer_id: int, reward_id: str, since: datetime | None
) -> int:
    """Redemptions of a reward by a member since ``since`` (None: ever), cancelled ones
    and prizes won in a draw not counted."""
    query = select(func.count()).where(
        Redemption.store_id == store_id,
        Redemption.customer_id == customer_id,
        Redemption.reward_id == reward_id,
        Redemption.status == RedemptionStatus.completed,
        Redemption.parent_id.is_(None),
    )
    if since is not None:
        query = query.where(Redemption.created_at >= since)
    return int(session.scalar(query) or 0)


def add(session: Session, row: Redemption | Coupon | PointsCheckout) -> None:
    session.add(row)
    session.flush()


# -- coupons -------------------------------------------------------------------------------


def coupon_by_code(
    session: Session, store_id: int, code: str, *, for_update: bool = False
) -> Coupon | None:
    query = select(Coupon).where(Coupon.store_id == store_id, Coupon.code == code)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def coupons_of(session: Session, redemption_ids: Sequence[int]) -> dict[int, Coupon]:
    if not redemption_ids:
        return {}
    rows = session.scalars(select(Coupon).where(Coupon.redemption_id.in_(redemption_ids)))
    return {c.redemption_id: c for c in rows}


def mark_used(
    session: Session, coupon_id: int, order_external_id: str, discount_minor: int, now: datetime
) -> bool:
    """Active -> used, once: a conditional UPDATE, so two checkouts cannot both use it."""
    result = session.execute(
        update(Coupon)
        .where(Coupon.id == coupon_id, Coupon.status == CouponStatus.active)
        .values(
            status=CouponStatus.used,
            used_at=now,
            order_external_id=order_external_id,
            discount_minor=discount_minor,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


# -- checkouts -----------------------------------------------------------------------------


def checkout(
    session: Session, store_id: int, checkout_id: str, *, for_update: bool = False
) -> PointsCheckout | None:
    query = select(PointsCheckout).where(
        PointsCheckout.store_id == store_id, PointsCheckout.checkout_id == checkout_id
    )
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def set_checkout_state(
    session: Session, row: PointsCheckout, state: CheckoutState, now: datetime
) -> None:
    row.state = state
    row.resolved_at = now
    session.flush()
