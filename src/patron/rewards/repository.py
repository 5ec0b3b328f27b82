"""Every query of the rewards domain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.sql import Executable

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
M = TypeVar("M", Redemption, Coupon)
REDEMPTIONS = table_of(Redemption)
CUSTOMERS = table_of(Customer)
ACCOUNTS = table_of(LoyaltyAccount)
MEMBERS = table_of(LoyaltyMember)

# The statements of a redemption are built once, with bound parameters: building a
# statement and its cache key costs more CPU than its round trip.
_LOCK_BY_EXTERNAL_ID = (
    select(CUSTOMERS.c.id)
    .where(
        CUSTOMERS.c.store_id == bindparam("store_id"),
        CUSTOMERS.c.external_id == bindparam("external_id"),
    )
    .with_for_update()
)
_LOCK_CUSTOMER = (
    select(CUSTOMERS.c.id)
    .where(CUSTOMERS.c.store_id == bindparam("store_id"), CUSTOMERS.c.id == bindparam("cid"))
    .with_for_update()
)
_REDEMPTION_BY_KEY = select(Redemption).where(
    Redemption.store_id == bindparam("store_id"), Redemption.idempotency_key == bindparam("key")
)

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
    found = session.scalar(_LOCK_CUSTOMER, {"store_id": store_id, "cid": customer_id})
    return found is not None


def lock_customer_by_external_id(session: Session, store_id: int, external_id: str) -> int | None:
    """``customer_id`` and ``lock_customer`` in one statement: the customer's id, its row
    locked (None: no such customer)."""
    found: int | None = session.scalar(
        _LOCK_BY_EXTERNAL_ID, {"store_id": store_id, "external_id": external_id}
    )
    return found


@dataclass(frozen=True)
class RedeemState:
    """What a redemption's eligibility reads, in one statement."""

    tier: str | None  # None: never placed
    is_member: bool
    points_available: int
    used: int  # completed redemptions of the reward since the limit's start (0: no limit)
    issued: int  # units of the reward issued so far


_STATES: dict[tuple[bool, bool], Executable] = {}


def _state_query(count: bool, since: bool) -> Executable:
    stmt = _STATES.get((count, since))
    if stmt is not None:
        return stmt
    store: Any = bindparam("store_id")
    customer: Any = bindparam("customer_id")
    member = (MEMBERS.c.store_id == store) & (MEMBERS.c.customer_id == customer)
    account = (ACCOUNTS.c.store_id == store) & (ACCOUNTS.c.customer_id == customer)
    columns: list[Any] = [
        select(MEMBERS.c.tier).where(member).scalar_subquery(),
        exists().where(member),
        select(ACCOUNTS.c.points_available).where(account).scalar_subquery(),
        select(INVENTORY.c.issued)
        .where(INVENTORY.c.store_id == store, INVENTORY.c.reward_id == bindparam("reward_id"))
        .scalar_subquery(),
    ]
    if count:
        used = select(func.count()).where(
            REDEMPTIONS.c.store_id == store,
            REDEMPTIONS.c.customer_id == customer,
            REDEMPTIONS.c.reward_id == bindparam("reward_id"),
            REDEMPTIONS.c.status == RedemptionStatus.completed,
            REDEMPTIONS.c.parent_id.is_(None),
        )
        if since:
            used = used.where(REDEMPTIONS.c.created_at >= bindparam("since"))
        columns.append(used.scalar_subquery())
    stmt = _STATES[(count, since)] = select(*columns)
    return stmt


def redeem_state(
    session: Session,
    store_id: int,
    customer_id: int,
    reward_id: str,
    *,
    count: bool,
    since: datetime | None,
) -> RedeemState:
    """The member's tier, membership and points, the reward's units issued, and (with
    ``count``) the member's redemptions of it since ``since`` (None: ever) — what
    ``is_member``, ``member_tier``, the ledger balance, ``inventory`` and
    ``count_redeemed`` read, in one round trip."""
    params: dict[str, Any] = {
        "store_id": store_id,
        "customer_id": customer_id,
        "reward_id": reward_id,
    }
    if since is not None:
        params["since"] = since
    row = session.execute(_state_query(count, since is not None), params).one()
    tier, placed, points, issued = row[0], bool(row[1]), row[2], row[3]
    return RedeemState(
        tier=tier or None,
        is_member=placed or points is not None,
        points_available=int(points or 0),
        used=int(row[4] or 0) if count else 0,
        issued=int(issued or 0),
    )


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
    if stock is not None and stock <= 0:
        return False  # nothing to issue, whatever was counted
    dialect = session.get_bind().dialect.name
    stmt = _TAKE_STOCK.get((dialect, stock is not None))
    if stmt is None:
        # One statement: the counter's first unit inserts it, every other one adds one
        # (ON CONFLICT DO UPDATE locks the row and re-checks the stock on its latest
        # version, as a conditional UPDATE does).
        upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(INVENTORY)
        stmt = upsert.on_conflict_do_update(
            index_elements=["store_id", "reward_id"],
            set_={"issued": INVENTORY.c.issued + 1, "updated_at": upsert.excluded.updated_at},
            where=INVENTORY.c.issued < bindparam("stock") if stock is not None else None,
        ).returning(INVENTORY.c.id)
        _TAKE_STOCK[(dialect, stock is not None)] = stmt
    params: dict[str, Any] = {
        "store_id": store_id,
        "reward_id": reward_id,
        "issued": 1,
        "prize_points": 0,
        "updated_at": utcnow(),
    }
    if stock is not None:
        params["stock"] = stock
    return session.execute(stmt, params).first() is not None


_TAKE_STOCK: dict[tuple[str, bool], Any] = {}


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
    return session.scalars(_REDEMPTION_BY_KEY, {"store_id": store_id, "key": key}).first()


_INSERTS: dict[tuple[str, str, bool], Executable] = {}


def insert_loaded(
    session: Session, model: type[M], values: dict[str, Any], *, conflict: Sequence[str] = ()
) -> M | None:
    """INSERT a row with one Core statement [ON CONFLICT (conflict) DO NOTHING] and return
    it as a loaded object of this session (None: the conflict skipped it). No savepoint
    and no ORM flush; later changes to the object are written at the next flush.

    ``values`` names every column but the id; ``None`` columns are left out of the INSERT
    (SQL NULL, also for JSON columns)."""
    table = table_of(model)
    missing = {c.key for c in table.c} - {"id", *values}
    assert not missing, f"insert_loaded: no value for {sorted(missing)}"
    dialect = session.get_bind().dialect.name
    key = (dialect, table.name, bool(conflict))
    stmt = _INSERTS.get(key)
    if stmt is None:
        base = insert_ignoring_conflicts(session, table, *conflict) if conflict else table.insert()
        stmt = _INSERTS[key] = base.returning(table.c.id)
    params = {k: v for k, v in values.items() if v is not None}
    defaulted = [k for k in values.keys() - params.keys() if table.c[k].default is not None]
    assert not defaulted, f"insert_loaded: None for {defaulted}, which have defaults"
    new_id = session.execute(stmt, params).scalar()
    if new_id is None:
        return None
    row = model(id=new_id, **values)
    make_transient_to_detached(row)  # loaded as written: no INSERT at flush, no reload
    session.add(row)
    return row


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
