"""Rewards for the demo store: members spend their points over the history, through the
real rewards service (the ledger takes the points, coupons are issued, draws are drawn).

A member redeems only once the points earned by then (available at that time, less what
they already spent) cover the cost, a few days to weeks later; a 20 CNY coupon is used at
the member's next order of at least its minimum spend within its validity, when there is
one. Lucky draws are played by a share of members now and then, and some members check
in on a few days. Redemption dates lie in the past: the ledger's entries carry them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.customers.models import Customer
from patron.errors import PatronError
from patron.kit.clock import utcnow
from patron.loyalty import actions
from patron.loyalty.ledger import LedgerRuleError
from patron.loyalty.models import Currency, EntryKind, LoyaltyAccount, LoyaltyEntry
from patron.orders.models import Order, OrderStatus
from patron.rewards.service import rewards
from patron.stores.models import Store

#: (reward id, points) a member saves for, in the order of preference.
COUPON, COUPON_COST = "coupon-20", 2000
GIFT, GIFT_COST = "gift-set", 3000
SERUM, SERUM_COST = "gold-serum", 5000
DRAW, DRAW_COST = "lucky-draw", 50
#: Share of members with enough points who ever redeem (the rest let them accumulate).
REDEEMER_SHARE = 0.7
DRAW_SHARE = 0.03  # members who play the lucky draw
CHECK_IN_SHARE = 0.01  # members who check in on some days


@dataclass(frozen=True)
class RewardsFilled:
    redemptions: int
    coupons_used: int
    draws: int
    check_ins: int


def _timelines(session: Session, store: Store) -> dict[int, list[tuple[datetime, int]]]:
    """Per customer: (available from, points) of each points credit, oldest first."""
    rows = session.execute(
        select(LoyaltyAccount.customer_id, LoyaltyEntry.available_at, LoyaltyEntry.amount)
        .join(LoyaltyAccount, LoyaltyAccount.id == LoyaltyEntry.account_id)
        .where(
            LoyaltyEntry.store_id == store.id,
            LoyaltyEntry.kind == EntryKind.earn,
            LoyaltyEntry.currency == Currency.points,
            LoyaltyEntry.amount > 0,
        )
        .order_by(LoyaltyAccount.customer_id, LoyaltyEntry.available_at)
    ).all()
    out: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for customer_id, available_at, amount in rows:
        if available_at is not None:
            out[int(customer_id)].append((available_at, int(amount)))
    return out


def _orders(session: Session, store: Store) -> dict[int, list[tuple[datetime, str, int]]]:
    """Per customer: (placed at, external id, subtotal minor) of delivered orders."""
    rows = session.execute(
        select(Order.customer_id, Order.placed_at, Order.external_id, Order.subtotal_minor)
        .where(Order.store_id == store.id, Order.status == OrderStatus.delivered)
        .order_by(Order.customer_id, Order.placed_at)
    ).all()
    out: dict[int, list[tuple[datetime, str, int]]] = defaultdict(list)
    for customer_id, placed_at, external_id, subtotal in rows:
        out[int(customer_id)].append((placed_at, external_id, int(subtotal)))
    return out


def _goal(rng: np.random.Generator) -> tuple[str, int]:
    """What a member saves for next: mostly the coupon, else the gift set or the serum."""
    roll = rng.random()
    if roll < 0.1:
        return SERUM, SERUM_COST
    if roll < 0.45:
        return GIFT, GIFT_COST
    return COUPON, COUPON_COST


def _before_order(
    orders: list[tuple[datetime, str, int]],
    since: datetime,
    default: datetime,
    rng: np.random.Generator,
) -> datetime:
    """A time up to a week before the member's next order of ≥ 200 CNY within 60 days
    after ``since`` (and after it), else ``default``."""
    for placed_at, _, subtotal in orders:
        if placed_at <= since or subtotal < 200_00:
            continue
        if placed_at > since + timedelta(days=60):
            break
        return max(since, placed_at - timedelta(days=float(rng.uniform(0.1, 7))))
    return default


def _try_redeem(
    session: Session, store: Store, customer_id: int, reward_id: str, key: str, at: datetime
) -> str | None:
    """Redeem in a savepoint; the coupon's code (or "") when it went through, else None."""
    try:
        with session.begin_nested():
            done = rewards.redeem(session, store, customer_id, reward_id, key=key, now=at)
    except (PatronError, LedgerRuleError):
        return None
    return done.coupon.code if done.coupon is not None else ""


def _use_coupon(
    session: Session,
    store: Store,
    code: str,
    external_id: str,
    orders: list[tuple[datetime, str, int]],
    issued: datetime,
    used_orders: set[str],
) -> bool:
    """Use the coupon at the member's next order of ≥ 200 CNY within 30 days, if any."""
    for placed_at, order_id, subtotal in orders:
        if placed_at <= issued or order_id in used_orders:
            continue
        if placed_at > issued + timedelta(days=30):
            return False
        if subtotal < 200_00:
            continue
        try:
            with session.begin_nested():
                rewards.use_coupon(
                    session,
                    store,
                    code,
                    order_id,
                    external_id,
                    Decimal(subtotal) / 100,
                    now=placed_at,
                )
        except PatronError:
            return False
        used_orders.add(order_id)
        return True
    return False


def fill_rewards(
    session: Session, store: Store, seed: int = 42, now: datetime | None = None
) -> RewardsFilled:
    """Redemptions, coupon uses, lucky draws and check-ins over the demo's history."""
    rng = np.random.default_rng(seed + 11)
    now = utcnow() if now is None else now
    latest = now - timedelta(hours=1)
    timelines = _timelines(session, store)
    orders = _orders(session, store)
    externals = dict(
        session.execute(
            select(Customer.id, Customer.external_id).where(Customer.store_id == store.id)
        ).all()
    )
    redemptions = coupons_used = draws = check_ins = 0
    used_orders: set[str] = set()
    for customer_id in sorted(timelines):
        credits = timelines[customer_id]
        total = sum(points for _, points in credits)
        saver = total >= COUPON_COST and rng.random() < REDEEMER_SHARE
        player = rng.random() < DRAW_SHARE
        if not saver and not player:
            continue
        spent, earned, n = 0, 0, 0
        goal = _goal(rng)
        for available_at, points in credits:
            earned += points
            if player and rng.random() < 0.1 and earned - spent >= DRAW_COST:
                at = min(available_at + timedelta(days=float(rng.uniform(0.5, 20))), latest)
                key = f"demo-draw-{customer_id}-{n}"
                if _try_redeem(session, store, customer_id, DRAW, key, at) is not None:
                    spent, draws, n = spent + DRAW_COST, draws + 1, n + 1
            if not saver:
                continue
            reward_id, cost = goal
            if earned - spent < cost:
                continue
            at = min(available_at + timedelta(days=float(rng.uniform(1, 45))), latest)
            if reward_id == COUPON:  # taken a few days before a big enough order, if any
                at = _before_order(orders.get(customer_id, []), available_at, at, rng)
            key = f"demo-reward-{customer_id}-{n}"
            code = _try_redeem(session, store, customer_id, reward_id, key, at)
            if code is None and reward_id != COUPON:  # not for this member (tier, limit)
                reward_id, cost = COUPON, COUPON_COST
                code = _try_redeem(session, store, customer_id, reward_id, key, at)
            if code is None:
                continue
            spent, redemptions, n = spent + cost, redemptions + 1, n + 1
            goal = _goal(rng)
            if code and _use_coupon(
                session,
                store,
                code,
                externals[customer_id],
                orders.get(customer_id, []),
                at,
                used_orders,
            ):
                coupons_used += 1
    # Check-ins: a share of members, on a run of days after one of their orders.
    members = sorted(timelines)
    for customer_id in rng.choice(members, size=int(len(members) * CHECK_IN_SHARE), replace=False):
        first = timelines[int(customer_id)][-1][0]
        start = min(first, now - timedelta(days=30))
        for day in range(int(rng.integers(2, 8))):
            at = start + timedelta(days=day, hours=float(rng.uniform(0, 12)))
            if at >= latest:
                break
            try:
                with session.begin_nested():
                    actions.check_in(session, store, int(customer_id), now=at)
            except (PatronError, LedgerRuleError):
                continue
            check_ins += 1
    session.flush()
    return RewardsFilled(redemptions, coupons_used, draws, check_ins)
