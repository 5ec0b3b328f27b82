"""Referral codes, referrals (who brought whom, and what became of it), surprise plans
and the gifts they schedule."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.customers.models import _enum
from patron.db import Base, BigId
from patron.kit.clock import utcnow


class ReferralStatus(enum.StrEnum):
    pending = "pending"  # attributed; waiting for the referee's first qualifying order
    qualified = "qualified"  # qualifying order delivered; waiting for its return window
    rewarded = "rewarded"  # both sides credited
    rejected = "rejected"  # a fraud rule refused it; `reason` says which


class GiftStatus(enum.StrEnum):
    scheduled = "scheduled"
    given = "given"
    skipped = "skipped"  # a limit or a flag stopped it; `reason` says which


class ReferralCode(Base):
    """A member's one referral code, created the first time it is asked for."""

    __tablename__ = "referral_codes"
    __table_args__ = (
        UniqueConstraint("store_id", "code"),
        UniqueConstraint("store_id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Referral(Base):
    """One referee attributed to one referrer (a customer is attributed at most once)."""

    __tablename__ = "referrals"
    __table_args__ = (
        UniqueConstraint("store_id", "referee_id"),
        Index("ix_referrals_store_referrer", "store_id", "referrer_id"),
        Index("ix_referrals_store_status_due", "store_id", "status", "reward_due_at"),
        Index("ix_referrals_store_attributed", "store_id", "attributed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(16))
    referrer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    referee_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    status: Mapped[ReferralStatus] = mapped_column(_enum(ReferralStatus, "referral_status"))
    # Why it was rejected: a rule name (`self_referral`, `not_new`, ...) and the evidence.
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(255))
    attributed_at: Mapped[datetime]
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    order_external_id: Mapped[str | None] = mapped_column(String(128))
    qualified_at: Mapped[datetime | None]
    reward_due_at: Mapped[datetime | None]
    rewarded_at: Mapped[datetime | None]
    rejected_at: Mapped[datetime | None]
    referrer_points: Mapped[int] = mapped_column(default=0)
    referee_points: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SurprisePlan(Base):
    """An admin's decision to surprise a segment; the gifts it scheduled follow."""

    __tablename__ = "surprise_plans"
    __table_args__ = (Index("ix_surprise_plans_store", "store_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    points: Mapped[int]
    note: Mapped[str | None] = mapped_column(String(255))
    segment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    scheduled: Mapped[int] = mapped_column(default=0)
    excluded: Mapped[int] = mapped_column(default=0)
    api_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SurpriseGift(Base):
    """One member's gift of a plan: when it is due and how much, both jittered."""

    __tablename__ = "surprise_gifts"
    __table_args__ = (
        UniqueConstraint("plan_id", "customer_id"),
        Index("ix_surprise_gifts_store_status_due", "store_id", "status", "due_at"),
        Index("ix_surprise_gifts_store_customer", "store_id", "customer_id", "given_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    plan_id: Mapped[int] = mapped_column(ForeignKey("surprise_plans.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    points: Mapped[int]
    due_at: Mapped[datetime]
    status: Mapped[GiftStatus] = mapped_column(_enum(GiftStatus, "surprise_gift_status"))
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(255))
    given_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
