"""Feedback tables: versioned surveys, use-once invitations, responses and their answers,
and product reviews.

A survey is immutable once published: changing it writes a new version (same ``key``),
so every response is read against the questions it answered. Answers are one row per
question with their numbers in columns, so scores (NPS, CSAT, CES, gaps) aggregate in
SQL by period, channel, tier or segment.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Double, ForeignKey, Index, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.customers.models import _enum
from patron.db import Base, BigId
from patron.kit.clock import utcnow


class Trigger(enum.StrEnum):
    manual = "manual"  # invitations created by the API or CLI
    after_delivery = "after_delivery"  # N days after an order is delivered
    ticket_closed = "ticket_closed"  # when a support ticket is resolved or closed


class ReviewStatus(enum.StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class Survey(Base):
    """One version of a survey definition (the questions, in each language)."""

    __tablename__ = "surveys"
    __table_args__ = (UniqueConstraint("store_id", "key", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    # Only the newest version of a key is current; older ones still take answers to the
    # links already sent for them.
    current: Mapped[bool] = mapped_column(default=True)
    active: Mapped[bool] = mapped_column(default=True)
    template: Mapped[str | None] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]]
    anonymous: Mapped[bool] = mapped_column(default=False)
    trigger: Mapped[Trigger] = mapped_column(_enum(Trigger, "survey_trigger"))
    delay_days: Mapped[int] = mapped_column(default=0)
    link_days: Mapped[int] = mapped_column(default=30)  # how long a link stays valid
    reminder_days: Mapped[int | None]  # remind after this many days without an answer
    max_reminders: Mapped[int] = mapped_column(default=1)
    # Survey fatigue: no new invitation of any survey to a customer invited this recently.
    recontact_days: Mapped[int] = mapped_column(default=30)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SurveyInvitation(Base):
    """A use-once link sent to one customer. ``subject`` names what it asks about
    (``order:<external id>``, ``ticket:<id>``) and makes each trigger invite once."""

    __tablename__ = "survey_invitations"
    __table_args__ = (
        UniqueConstraint("store_id", "survey_key", "customer_id", "subject"),
        UniqueConstraint("nonce"),
        Index("ix_survey_invitations_customer", "customer_id", "created_at"),
        Index("ix_survey_invitations_store_due", "store_id", "used_at", "next_send_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    survey_key: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(128))
    # Random part of the signed token; the token is nonce + HMAC(store secret).
    nonce: Mapped[str] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(32))  # the order's or ticket's
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    # The outbox: a sender lists invitations whose next_send_at has come and marks each
    # delivery; reminders move next_send_at on until max_reminders.
    next_send_at: Mapped[datetime | None]
    sent_count: Mapped[int] = mapped_column(default=0)
    last_sent_at: Mapped[datetime | None]
    # Set once, by the conditional update that accepts the one response.
    used_at: Mapped[datetime | None]


class SurveyResponse(Base):
    """One submitted response. For an anonymous survey no customer or invitation is
    kept, only the context needed to slice scores."""

    __tablename__ = "survey_responses"
    __table_args__ = (
        # The database itself refuses a second response to one invitation.
        UniqueConstraint("invitation_id"),
        Index("ix_survey_responses_store_time", "store_id", "submitted_at"),
        Index("ix_survey_responses_customer", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    survey_key: Mapped[str] = mapped_column(String(64))
    invitation_id: Mapped[int | None] = mapped_column(
        ForeignKey("survey_invitations.id", ondelete="SET NULL")
    )
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    submitted_at: Mapped[datetime]
    locale: Mapped[str | None] = mapped_column(String(16))
    # Context at submission, for scores by channel / tier / RFM segment.
    channel: Mapped[str | None] = mapped_column(String(32))
    tier: Mapped[str | None] = mapped_column(String(64))
    segment: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(128))
    ticket_id: Mapped[int | None]  # the follow-up opened by an unhappy answer


class SurveyAnswer(Base):
    """One question's answer. Scales in ``value``; a pair in expectation/experience; a
    comparison's importance in ``importance`` and its ratings in ``data``."""

    __tablename__ = "survey_answers"
    __table_args__ = (Index("ix_survey_answers_store_type", "store_id", "question_type"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(BigId)
    response_id: Mapped[int] = mapped_column(
        ForeignKey("survey_responses.id", ondelete="CASCADE"), index=True
    )
    question_id: Mapped[str] = mapped_column(String(64))
    question_type: Mapped[str] = mapped_column(String(32))
    attribute: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Double)
    expectation: Mapped[int | None] = mapped_column(SmallInteger)
    experience: Mapped[int | None] = mapped_column(SmallInteger)
    importance: Mapped[int | None] = mapped_column(SmallInteger)
    data: Mapped[dict[str, Any] | None]  # choices, ratings, text


class Review(Base):
    """A product review, moderated before it is shown; points once approved."""

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("store_id", "external_id"),
        Index("ix_reviews_store_product", "store_id", "product_sku"),
        Index("ix_reviews_store_status", "store_id", "status", "created_at"),
        Index("ix_reviews_customer", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    product_sku: Mapped[str] = mapped_column(String(128))
    order_external_id: Mapped[str | None] = mapped_column(String(128))
    rating: Mapped[int] = mapped_column(SmallInteger)
    title: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(32))
    verified_purchase: Mapped[bool] = mapped_column(default=False)
    status: Mapped[ReviewStatus] = mapped_column(_enum(ReviewStatus, "review_status"))
    moderation_note: Mapped[str | None] = mapped_column(String(255))
    moderated_at: Mapped[datetime | None]
    reply: Mapped[str | None] = mapped_column(Text)  # the store's public answer
    replied_at: Mapped[datetime | None]
    points: Mapped[int] = mapped_column(default=0)  # credited through the ledger
    ticket_id: Mapped[int | None]  # the follow-up opened by a 1–2 star review
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
