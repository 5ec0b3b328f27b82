"""Tables of permission marketing: opt-in confirmations, suppressions, privacy audit.

The current consent per customer and channel is ``customers.Consent``; these tables add
what it cannot say: whether an email address was confirmed (double opt-in), which
addresses must never be contacted, and who exported or erased a customer's data.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
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


class MessageStatus(enum.StrEnum):
    queued = "queued"
    sending = "sending"  # claimed by a delivery run (see ``claimed_at``)
    sent = "sent"
    failed = "failed"  # permanently: 5xx, or out of attempts
    suppressed = "suppressed"  # no consent or a suppressed address when its turn came


class OutboxMessage(Base):
    """One message of the outbox: rendered when queued, delivered by ``patron.campaigns.
    mailer``. ``key`` (unique per store) makes queueing idempotent; ``message_id`` is
    fixed when queued, so a resend after a crash carries the same Message-ID."""

    __tablename__ = "campaign_messages"
    __table_args__ = (
        UniqueConstraint("store_id", "key"),
        Index("ix_campaign_messages_status_next", "status", "next_attempt_at"),
        Index("ix_campaign_messages_store_status", "store_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "consent_channel"))
    kind: Mapped[str] = mapped_column(String(32))  # survey_invitation, opt_in_confirmation
    key: Mapped[str] = mapped_column(String(128))
    # Marketing and survey mail needs ``may_contact``; a transactional one (an opt-in
    # confirmation) only an address that is not suppressed.
    needs_consent: Mapped[bool]
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(255))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any]]
    message_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[MessageStatus] = mapped_column(_enum(MessageStatus, "message_status"))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
