from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, BigId
from patron.kit.clock import utcnow


class Channel(enum.StrEnum):
    email = "email"
    sms = "sms"
    push = "push"
    wechat = "wechat"


class TouchpointKind(enum.StrEnum):
    signup = "signup"
    order = "order"
    refund = "refund"
    review = "review"
    check_in = "check_in"
    survey_answer = "survey_answer"
    ticket = "ticket"
    message = "message"
    referral = "referral"
    consent = "consent"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        length=32,
        validate_strings=True,
        values_callable=lambda e: [m.value for m in e],
    )


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("store_id", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    birthday: Mapped[date | None]
    locale: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str | None] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Derived behavioural traits (seed 002), e.g. price sensitivity; written by analytics.
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    flagged: Mapped[bool] = mapped_column(default=False)
    flagged_reason: Mapped[str | None] = mapped_column(String(255))
    # True for a profile created because an order named an unknown customer.
    is_stub: Mapped[bool] = mapped_column(default=False)
    payload_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Consent(Base):
    """Current consent per customer and channel; each change is also a touchpoint."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("customer_id", "channel"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "consent_channel"))
    granted: Mapped[bool]
    source: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime]


class Touchpoint(Base):
    """Every customer event, in one append-only log (顾客接触点)."""

    __tablename__ = "touchpoints"
    __table_args__ = (Index("ix_touchpoints_customer_time", "customer_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The customer implies the store (and cascades from it); reads go by customer. No
    # second foreign key or index to maintain on one of the largest tables.
    store_id: Mapped[int] = mapped_column(BigId)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[TouchpointKind] = mapped_column(_enum(TouchpointKind, "touchpoint_kind"))
    occurred_at: Mapped[datetime]
    ref: Mapped[str | None] = mapped_column(String(128))  # external id of the subject
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
