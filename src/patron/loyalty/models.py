"""Ledger tables: one account per member, append-only entries, earned lots, lot uses, holds.

The entries are the ledger; accounts, lots and holds are derived state kept in step with
it under the account's row lock, and checked against it by ``check_invariants``.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.customers.models import _enum
from patron.db import Base, BigId
from patron.kit.clock import utcnow


class Currency(enum.StrEnum):
    points = "points"  # 积分: spendable
    growth = "growth"  # 成长值: qualifies tiers, never spent


class EntryKind(enum.StrEnum):
    earn = "earn"
    redeem = "redeem"
    hold = "hold"
    release = "release"
    reverse = "reverse"
    expire = "expire"
    adjust = "adjust"
    clawback = "clawback"
    mature = "mature"  # pending -> available at the end of the return window
    settle = "settle"  # newly available points pay back a debt


class HoldState(enum.StrEnum):
    open = "open"
    captured = "captured"
    released = "released"


class LoyaltyAccount(Base):
    """One member's cached balances; every change takes this row's lock first."""

    __tablename__ = "loyalty_accounts"
    __table_args__ = (
        UniqueConstraint("store_id", "customer_id"),
        CheckConstraint(
            "points_available >= 0 AND points_pending >= 0 AND points_held >= 0 AND debt >= 0"
            " AND growth >= 0 AND growth_pending >= 0 AND growth_debt >= 0",
            name="non_negative",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    points_available: Mapped[int] = mapped_column(BigInteger, default=0)
    points_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    points_held: Mapped[int] = mapped_column(BigInteger, default=0)
    # Points owed after a clawback found too few: paid back from the next available points.
    debt: Mapped[int] = mapped_column(BigInteger, default=0)
    growth: Mapped[int] = mapped_column(BigInteger, default=0)
    growth_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    growth_debt: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bumped by every change (optimistic check on top of the row lock; an ETag for readers).
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class LoyaltyEntry(Base):
    """A ledger line. Never updated nor deleted.

    ``amount`` is the change of what the member owns in ``currency``
    (available + pending + held - debt); the four deltas say which bucket moved.
    One business event (one idempotency key) writes entries ``seq`` 0, 1, ...
    """

    __tablename__ = "loyalty_entries"
    __table_args__ = (
        UniqueConstraint("store_id", "idempotency_key", "seq"),
        # An entry is resolved at most once: one reversal per redemption, one capture or
        # release per hold.
        Index(
            "uq_loyalty_entries_target_id",
            "target_id",
            unique=True,
            postgresql_where=text("target_id IS NOT NULL"),
            sqlite_where=text("target_id IS NOT NULL"),
        ),
        Index("ix_loyalty_entries_account_history", "account_id", "id"),
        Index("ix_loyalty_entries_account_ref", "account_id", "ref"),
        CheckConstraint(
            "amount = available_delta + pending_delta + held_delta - debt_delta",
            name="amount_is_sum_of_deltas",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The account implies the store (and cascades from it): no second foreign key to
    # check on every row of the hottest table.
    store_id: Mapped[int] = mapped_column(BigId)
    account_id: Mapped[int] = mapped_column(ForeignKey("loyalty_accounts.id", ondelete="CASCADE"))
    kind: Mapped[EntryKind] = mapped_column(_enum(EntryKind, "loyalty_entry_kind"))
    currency: Mapped[Currency] = mapped_column(_enum(Currency, "loyalty_currency"))
    amount: Mapped[int] = mapped_column(BigInteger)
    available_delta: Mapped[int] = mapped_column(BigInteger)
    pending_delta: Mapped[int] = mapped_column(BigInteger)
    held_delta: Mapped[int] = mapped_column(BigInteger)
    debt_delta: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    seq: Mapped[int] = mapped_column(SmallInteger)
    payload_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(255))
    ref: Mapped[str | None] = mapped_column(String(128))  # e.g. an order's external id
    # The entry this one resolves: the redemption a reversal undoes, the hold a capture or
    # release ends.
    target_id: Mapped[int | None] = mapped_column(
        ForeignKey("loyalty_entries.id", ondelete="CASCADE")
    )
    # Audit: the API key of an admin adjustment.
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    available_at: Mapped[datetime | None]  # earn: pending until (the return window)
    expires_at: Mapped[datetime | None]  # earn: the lot's expiry; hold: the hold's
    created_at: Mapped[datetime]


class LoyaltyLot(Base):
    """What one earning (or positive adjustment) put in, and how much of it is left."""

    __tablename__ = "loyalty_lots"
    __table_args__ = (
        CheckConstraint("amount > 0 AND remaining >= 0 AND remaining <= amount", name="bounds"),
        Index(
            "ix_loyalty_lots_live",
            "account_id",
            postgresql_where=text("remaining > 0 OR pending"),
            sqlite_where=text("remaining > 0 OR pending"),
        ),
        Index(
            "ix_loyalty_lots_maturing",
            "available_at",
            postgresql_where=text("pending"),
            sqlite_where=text("pending"),
        ),
        Index(
            "ix_loyalty_lots_expiring",
            "expires_at",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The account implies the store (and cascades from it): no second foreign key to
    # check on every row of the hottest table.
    store_id: Mapped[int] = mapped_column(BigId)
    account_id: Mapped[int] = mapped_column(ForeignKey("loyalty_accounts.id", ondelete="CASCADE"))
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("loyalty_entries.id", ondelete="CASCADE"), unique=True
    )
    currency: Mapped[Currency] = mapped_column(_enum(Currency, "loyalty_currency"))
    ref: Mapped[str | None] = mapped_column(String(128))
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    pending: Mapped[bool]  # not yet available (inside the return window)
    available_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]  # NULL: never expires


class LoyaltyLotUse(Base):
    """Points an entry took from (positive) or gave back to (negative) a lot."""

    __tablename__ = "loyalty_lot_uses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lot_id: Mapped[int] = mapped_column(
        ForeignKey("loyalty_lots.id", ondelete="CASCADE"), index=True
    )
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("loyalty_entries.id", ondelete="CASCADE"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)


class LoyaltyHold(Base):
    """Points reserved at checkout until captured (redeemed) or released, once."""

    __tablename__ = "loyalty_holds"
    __table_args__ = (Index("ix_loyalty_holds_state_expires", "state", "expires_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(
        ForeignKey("loyalty_accounts.id", ondelete="CASCADE"), index=True
    )
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("loyalty_entries.id", ondelete="CASCADE"), unique=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[HoldState] = mapped_column(_enum(HoldState, "loyalty_hold_state"))
    expires_at: Mapped[datetime | None]
    resolved_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("loyalty_entries.id", ondelete="CASCADE")
    )
    resolved_at: Mapped[datetime | None]


class ProgramVersion(Base):
    """One applied version of a store's loyalty programme; never updated but ``active``.

    ``config`` is the canonical JSON of the programme (``ProgramConfig.model_dump(mode=
    "json")``, version excluded) and ``fingerprint`` its hash. Exactly one version of a
    store is active: the newest applied.
    """

    __tablename__ = "loyalty_programs"
    __table_args__ = (
        UniqueConstraint("store_id", "version"),
        Index(
            "uq_loyalty_programs_active",
            "store_id",
            unique=True,
            postgresql_where=text("active"),
            sqlite_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    version: Mapped[int]
    config: Mapped[dict[str, Any]]
    fingerprint: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool]
    source: Mapped[str] = mapped_column(String(16))  # api | cli
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoyaltyMember(Base):
    """A member's standing in the programme: tier, when it is next reviewed, check-ins.

    Kept apart from ``loyalty_accounts`` so the ledger's hot path never touches it; a
    customer without a row holds the programme's first tier.
    """

    __tablename__ = "loyalty_members"
    __table_args__ = (
        UniqueConstraint("store_id", "customer_id"),
        Index("ix_loyalty_members_check", "store_id", "check_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    tier: Mapped[str] = mapped_column(String(64))
    tier_since: Mapped[datetime]
    # The end of the period the tier is reviewed against (downgrades happen only here).
    review_at: Mapped[datetime | None]
    # When the tier must next be looked at: the review, or sooner when pending growth
    # (or a pending order, for spend and order-count tiers) starts counting.
    check_at: Mapped[datetime | None]
    last_check_in: Mapped[date | None]  # store-time day
    streak: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TierChange(Base):
    """Tier history: every entry into, upgrade, kept review and downgrade of a tier."""

    __tablename__ = "loyalty_tier_changes"
    __table_args__ = (Index("ix_loyalty_tier_changes_member", "store_id", "customer_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    from_tier: Mapped[str | None] = mapped_column(String(64))
    to_tier: Mapped[str] = mapped_column(String(64))
    change: Mapped[str] = mapped_column(String(16))  # enter | upgrade | keep | downgrade
    reason: Mapped[str] = mapped_column(String(500))
    value: Mapped[int] = mapped_column(BigInteger)  # the qualifying value decided on
    program_version: Mapped[int | None]
    occurred_at: Mapped[datetime]


class RuleUsage(Base):
    """Points an earning rule gave in one period: per member (``customer_id``) for
    ``caps.per_customer``, or for the whole store (``customer_id`` 0) for ``caps.budget``.
    ``period_start`` is the store-time period's first instant (1970-01-01 for "ever")."""

    __tablename__ = "loyalty_rule_usage"
    __table_args__ = (UniqueConstraint("store_id", "rule_id", "customer_id", "period_start"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    rule_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int] = mapped_column(BigInteger)  # 0: the campaign budget
    period_start: Mapped[datetime]
    points: Mapped[int] = mapped_column(BigInteger, default=0)


class NoticeKind(enum.StrEnum):
    points_expiring = "points_expiring"  # advance reminder, `expiry_reminder_days` before
    tier_changed = "tier_changed"  # an upgrade or a downgrade


class LoyaltyNotice(Base):
    """Something a member should be told, written once by the loyalty jobs: the outbox
    campaigns read (points about to expire, a new tier). ``key`` makes each notice
    happen once, however often the job runs."""

    __tablename__ = "loyalty_notices"
    __table_args__ = (
        UniqueConstraint("store_id", "key"),
        Index("ix_loyalty_notices_store_kind", "store_id", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[NoticeKind] = mapped_column(_enum(NoticeKind, "loyalty_notice_kind"))
    key: Mapped[str] = mapped_column(String(255))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
