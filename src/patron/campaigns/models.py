"""Tables of permission marketing: opt-in confirmations, suppressions, privacy audit.

The current consent per customer and channel is ``customers.Consent``; these tables add
what it cannot say: whether an email address was confirmed (double opt-in), which
addresses must never be contacted, and who exported or erased a customer's data.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.customers.models import Channel, _enum
from patron.db import Base, BigId


class SuppressionReason(enum.StrEnum):
    unsubscribed = "unsubscribed"
    hard_bounce = "hard_bounce"
    complaint = "complaint"
    manual = "manual"
    erased = "erased"


class PrivacyAction(enum.StrEnum):
    export = "export"
    erase = "erase"


class ConsentRequest(Base):
    """A double opt-in: an email address waiting for (or given) its confirmation."""

    __tablename__ = "consent_requests"
    __table_args__ = (
        UniqueConstraint("nonce"),
        Index("ix_consent_requests_customer", "customer_id", "channel"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "consent_channel"))
    # The address confirmed; NULL once the customer is erased (its hash stays).
    address: Mapped[str | None] = mapped_column(String(320))
    address_hash: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]


class Suppression(Base):
    """An address never to be contacted on a channel, whatever its consent says."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("store_id", "channel", "address_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "consent_channel"))
    # Email lower-cased, phone as digits with its leading +, `customer:<id>` for push and
    # WeChat. NULL when only the hash is kept (an erased customer's address).
    address: Mapped[str | None] = mapped_column(String(320))
    address_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[SuppressionReason] = mapped_column(
        _enum(SuppressionReason, "suppression_reason")
    )
    note: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]


class PrivacyEvent(Base):
    """The audit of exports and erasures: who, when, which customer (by id)."""

    __tablename__ = "privacy_events"
    __table_args__ = (Index("ix_privacy_events_store_customer", "store_id", "customer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    # Kept as a plain id: the audit outlives nothing it points at, and never blocks.
    customer_id: Mapped[int] = mapped_column(BigId)
    action: Mapped[PrivacyAction] = mapped_column(_enum(PrivacyAction, "privacy_action"))
    actor: Mapped[str] = mapped_column(String(128))  # `api-key:<id>`, `cli`
    occurred_at: Mapped[datetime]
