"""Support tables: tickets, their messages and audit events, service-recovery
compensations, and each store's support settings (hours, SLA targets, caps)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.customers.models import _enum
from patron.db import Base, BigId, JsonDoc
from patron.kit.clock import utcnow


class TicketChannel(enum.StrEnum):
    email = "email"
    phone = "phone"
    chat = "chat"
    social = "social"
    app = "app"
    # Opened by Patron itself to close the loop on unhappy feedback.
    survey = "survey"
    review = "review"


class TicketStatus(enum.StrEnum):
    new = "new"
    open = "open"
    pending = "pending"  # waiting on the customer: the SLA clock is paused
    resolved = "resolved"
    closed = "closed"


class Priority(enum.StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


class Direction(enum.StrEnum):
    inbound = "inbound"  # from the customer
    outbound = "outbound"  # from the store (counts as a response)
    note = "note"  # internal


class CompensationKind(enum.StrEnum):
    points = "points"
    coupon = "coupon"


class CompensationStatus(enum.StrEnum):
    granted = "granted"
    pending_approval = "pending_approval"  # above the role's cap or an opportunistic claim
    rejected = "rejected"


class SupportSettings(Base):
    """A store's support configuration (business hours, SLA targets, compensation caps)
    as one validated document; see ``support/settings.py``."""

    __tablename__ = "support_settings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), unique=True)
    config: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ticket(Base):
    """A customer's request, on one channel, with its SLA clock and complaint grade."""

    __tablename__ = "support_tickets"
    __table_args__ = (
        # Auto-opened tickets and API retries name their source: opened once.
        UniqueConstraint("store_id", "source_ref"),
        Index("ix_support_tickets_store_status_due", "store_id", "status", "resolution_due_at"),
        Index("ix_support_tickets_customer", "customer_id", "created_at"),
        Index("ix_support_tickets_store_created", "store_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    requester: Mapped[str | None] = mapped_column(String(320))  # e.g. an unknown sender
    channel: Mapped[TicketChannel] = mapped_column(_enum(TicketChannel, "ticket_channel"))
    subject: Mapped[str] = mapped_column(String(255))
    status: Mapped[TicketStatus] = mapped_column(_enum(TicketStatus, "ticket_status"))
    priority: Mapped[Priority] = mapped_column(_enum(Priority, "ticket_priority"))
    category: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))  # api, email, survey, review
    source_ref: Mapped[str | None] = mapped_column(String(255))
    order_external_id: Mapped[str | None] = mapped_column(String(128))
    product_sku: Mapped[str | None] = mapped_column(String(128))
    assignee: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The SLA clock: targets fixed when the ticket opens (and when its priority
    # changes), due instants moved on by pauses (``pauses``: [[start, end|null], ...]).
    first_response_target_s: Mapped[int] = mapped_column(BigInteger)
    resolution_target_s: Mapped[int] = mapped_column(BigInteger)
    first_response_due_at: Mapped[datetime | None]
    resolution_due_at: Mapped[datetime | None]
    pauses: Mapped[list[Any]] = mapped_column(JsonDoc, default=list)
    first_responded_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # The outcome of each clock once it is done (``clock.retime``): the business seconds
    # from ``created_at`` to its done instant, minus pauses; None while it runs.
    first_response_business_s: Mapped[int | None] = mapped_column(BigInteger)
    resolution_business_s: Mapped[int | None] = mapped_column(BigInteger)
    warned_at: Mapped[datetime | None]  # breach warning raised
    escalation_level: Mapped[int] = mapped_column(SmallInteger, default=0)
    escalated_at: Mapped[datetime | None]
    # The complaint grade (``grading.Grade.as_dict``) and the claim it was graded on.
    claim: Mapped[dict[str, Any] | None]
    grade: Mapped[dict[str, Any] | None]
    grade_level: Mapped[int | None] = mapped_column(SmallInteger)
    opportunistic: Mapped[bool] = mapped_column(default=False)


class TicketMessage(Base):
    __tablename__ = "support_messages"
    __table_args__ = (
        # An email piped in twice (or polled twice) is one message.
        UniqueConstraint("store_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(BigId)
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("support_tickets.id", ondelete="CASCADE"), index=True
    )
    direction: Mapped[Direction] = mapped_column(_enum(Direction, "ticket_message_direction"))
    author: Mapped[str | None] = mapped_column(String(320))
    body: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))  # email Message-ID
    created_at: Mapped[datetime]


class TicketEvent(Base):
    """The audit trail: status changes, SLA warnings and breaches, escalations, grades,
    compensations, each with who did it."""

    __tablename__ = "support_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(BigId)
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("support_tickets.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(128))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]


class Compensation(Base):
    """Service recovery: points (a ledger adjustment) or a coupon (a free redemption),
    granted within the acting role's cap or held for approval."""

    __tablename__ = "support_compensations"
    __table_args__ = (
        UniqueConstraint("store_id", "key"),
        Index("ix_support_compensations_ticket", "ticket_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("support_tickets.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))  # the caller's idempotency key
    kind: Mapped[CompensationKind] = mapped_column(_enum(CompensationKind, "compensation_kind"))
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    reward_id: Mapped[str | None] = mapped_column(String(64))
    value_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # a coupon's face value
    status: Mapped[CompensationStatus] = mapped_column(
        _enum(CompensationStatus, "compensation_status")
    )
    reason: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    ledger_key: Mapped[str | None] = mapped_column(String(255))
    redemption_id: Mapped[int | None]
    coupon_code: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(128))
