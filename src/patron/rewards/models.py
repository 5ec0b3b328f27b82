"""Reward tables: stock counters, redemptions, issued coupons, points-as-cash checkouts.

The catalogue itself is the active programme's ``rewards`` list; these tables hold only
what redeeming produced. Stock is a counter of what was issued (``issued < stock``), so
a re-applied programme changes the stock without forgetting what was handed out.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.customers.models import _enum
from patron.db import Base, BigId
from patron.kit.clock import utcnow


class RedemptionStatus(enum.StrEnum):
    completed = "completed"
    cancelled = "cancelled"


class CouponStatus(enum.StrEnum):
    active = "active"
    used = "used"
    void = "void"  # its redemption was cancelled


class CheckoutState(enum.StrEnum):
    held = "held"
    captured = "captured"
    released = "released"


class RewardInventory(Base):
    """What a reward has handed out: ``issued`` units (stock left = stock - issued) and,
    for a lucky draw, the prize points given (against ``budget_points``)."""

    __tablename__ = "reward_inventory"
    __table_args__ = (
        UniqueConstraint("store_id", "reward_id"),
        CheckConstraint("issued >= 0 AND prize_points >= 0", name="non_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    reward_id: Mapped[str] = mapped_column(String(64))
    issued: Mapped[int] = mapped_column(BigInteger, default=0)
    prize_points: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Redemption(Base):
    """One redemption of a reward by a member, keyed by the caller's idempotency key.

    A lucky draw's prize that names another reward is a redemption of its own
    (``parent_id``: the draw), issued without charging its points. ``draw`` keeps what an
    auditor needs to recompute the draw: the seed, the roll and the weighted candidates.
    """

    __tablename__ = "reward_redemptions"
    __table_args__ = (
        UniqueConstraint("store_id", "idempotency_key"),
        Index(
            "ix_reward_redemptions_customer", "store_id", "customer_id", "reward_id", "created_at"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    reward_id: Mapped[str] = mapped_column(String(64))
    reward_type: Mapped[str] = mapped_column(String(32))
    reward_name: Mapped[str] = mapped_column(String(255))
    program_version: Mapped[int | None]
    idempotency_key: Mapped[str] = mapped_column(String(255))
    payload_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[RedemptionStatus] = mapped_column(
        _enum(RedemptionStatus, "reward_redemption_status")
    )
    points: Mapped[int] = mapped_column(BigInteger)  # debited (0: free, e.g. a prize)
    ledger_key: Mapped[str | None] = mapped_column(String(255))  # the ledger's redeem event
    cash_minor: Mapped[int | None] = mapped_column(BigInteger)  # points_plus_cash: to charge
    currency: Mapped[str] = mapped_column(String(3))
    sku: Mapped[str | None] = mapped_column(String(128))
    stock_taken: Mapped[bool] = mapped_column(default=False)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("reward_redemptions.id", ondelete="CASCADE"), index=True
    )
    prize_id: Mapped[str | None] = mapped_column(String(64))
    prize_points: Mapped[int] = mapped_column(BigInteger, default=0)
    draw: Mapped[dict[str, Any] | None]
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(String(255))


class Coupon(Base):
    """A coupon issued by a redemption: unguessable code, terms copied from the reward."""

    __tablename__ = "reward_coupons"
    __table_args__ = (
        UniqueConstraint("code"),
        Index("ix_reward_coupons_customer", "store_id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    redemption_id: Mapped[int] = mapped_column(
        ForeignKey("reward_redemptions.id", ondelete="CASCADE"), unique=True
    )
    reward_id: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(32))
    discount_type: Mapped[str] = mapped_column(String(16))  # fixed | percent
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)  # fixed
    percent: Mapped[str | None] = mapped_column(String(24))  # percent, canonical decimal
    min_spend_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    max_discount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[CouponStatus] = mapped_column(_enum(CouponStatus, "reward_coupon_status"))
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    used_at: Mapped[datetime | None]
    order_external_id: Mapped[str | None] = mapped_column(String(128))
    discount_minor: Mapped[int | None] = mapped_column(BigInteger)  # given when used
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PointsCheckout(Base):
    """Points held to pay part of a checkout (积分抵现), until captured or released."""

    __tablename__ = "reward_checkouts"
    __table_args__ = (UniqueConstraint("store_id", "checkout_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    checkout_id: Mapped[str] = mapped_column(String(128))
    reward_id: Mapped[str] = mapped_column(String(64))
    points: Mapped[int] = mapped_column(BigInteger)
    cash_minor: Mapped[int] = mapped_column(BigInteger)
    order_total_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    hold_key: Mapped[str] = mapped_column(String(255))
    state: Mapped[CheckoutState] = mapped_column(_enum(CheckoutState, "reward_checkout_state"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
