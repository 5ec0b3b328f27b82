"""Tables of permission marketing: opt-in confirmations, suppressions, privacy audit.

The current consent per customer and channel is ``customers.Consent``; these tables add
what it cannot say: whether an email address was confirmed (double opt-in), which
addresses must never be contacted, and who exported or erased a customer's data.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Double, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.customers.models import Channel, _enum
from patron.db import Base, BigId, JsonDoc
from patron.orders.models import Order


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
    # The original URLs of an HTML mail's tracked links, by index (``/t/c/<token>``).
    links: Mapped[list[str] | None] = mapped_column(JsonDoc, default=None)


class Segment(Base):
    """A saved segment: a named rule over customers (see ``patron.campaigns.segments``),
    evaluated when it is used, never materialised."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("store_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    definition: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


# -- delivery: webhook channels, tracking events, per-store delivery settings ----------------

Index("ix_campaign_messages_message_id", OutboxMessage.message_id)


class EventKind(enum.StrEnum):
    open = "open"
    click = "click"
    bounce = "bounce"
    complaint = "complaint"


class CampaignEvent(Base):
    """Something that happened to a sent message: an open, a click, a bounce (hard when
    ``permanent``), a complaint. Every event is kept; counts take messages, not events."""

    __tablename__ = "campaign_events"
    __table_args__ = (Index("ix_campaign_events_message_kind", "message_id", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("campaign_messages.id", ondelete="CASCADE"))
    kind: Mapped[EventKind] = mapped_column(_enum(EventKind, "campaign_event_kind"))
    url: Mapped[str | None] = mapped_column(String(2048))  # a click's target
    # A bounce: hard (5.x.x, true) or soft (4.x.x, false); None for the other kinds.
    permanent: Mapped[bool | None]
    # An open or click by a mail proxy or scanner right after sending (see tracking.py).
    machine: Mapped[bool] = mapped_column(default=False)
    detail: Mapped[str | None] = mapped_column(String(255))  # status, feedback type
    ua_hash: Mapped[str | None] = mapped_column(String(16))  # never the user agent itself
    occurred_at: Mapped[datetime]


class ChannelEndpoint(Base):
    """Where a store's SMS, WeChat or push messages are POSTed (its provider's gateway),
    signed with ``secret`` (kept as issued: Patron signs with it, so it cannot be hashed)."""

    __tablename__ = "channel_endpoints"
    __table_args__ = (UniqueConstraint("store_id", "channel"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "consent_channel"))
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(128))
    enabled: Mapped[bool]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DeliverySettings(Base):
    """A store's delivery choices (one row per store; no row = the defaults)."""

    __tablename__ = "delivery_settings"

    store_id: Mapped[int] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True
    )
    # Due survey invitations are mailed by Patron's outbox (else the store sends them).
    survey_invitations_by_mail: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime]


# -- campaigns (one-off and triggered; see ``patron.campaigns.campaign``) -------------------


class CampaignKind(enum.StrEnum):
    one_off = "one_off"  # sent once to a segment, when scheduled
    triggered = "triggered"  # sent to each customer per occasion while active


class CampaignTrigger(enum.StrEnum):
    newsletter = "newsletter"  # a one-off's purpose; not a trigger of its own
    welcome = "welcome"
    birthday = "birthday"
    points_expiring = "points_expiring"
    tier_upgrade = "tier_upgrade"
    tier_downgrade_warning = "tier_downgrade_warning"
    win_back = "win_back"
    post_purchase_survey = "post_purchase_survey"


class CampaignStatus(enum.StrEnum):
    draft = "draft"
    scheduled = "scheduled"  # one-off, waiting for ``scheduled_at``
    sending = "sending"
    sent = "sent"
    active = "active"  # triggered, firing
    paused = "paused"
    cancelled = "cancelled"


class RecipientStatus(enum.StrEnum):
    queued = "queued"  # a message is in the outbox (``message_key``)
    suppressed = "suppressed"  # no consent on the channel (许可营销)
    capped = "capped"  # the frequency cap would be exceeded
    held_out = "held_out"  # the random holdout group: never sent, measured
    failed = "failed"  # the template could not be rendered for this customer


class Campaign(Base):
    """A campaign: who (segment or trigger), what (variants), when, and how it is measured
    (holdout, attribution window)."""

    __tablename__ = "campaigns"
    __table_args__ = (
        UniqueConstraint("store_id", "key"),
        Index("ix_campaigns_store_status", "store_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[CampaignKind] = mapped_column(_enum(CampaignKind, "campaign_kind"))
    trigger: Mapped[CampaignTrigger | None] = mapped_column(
        _enum(CampaignTrigger, "campaign_trigger")
    )
    # Trigger parameters, e.g. {"p_alive_below": 0.3, "every_days": 90}.
    trigger_params: Mapped[dict[str, Any]]
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "consent_channel"))
    # A saved segment, or an inline definition; neither: every customer of the store.
    segment_id: Mapped[int | None] = mapped_column(
        ForeignKey("segments.id", ondelete="SET NULL"), index=True
    )
    segment_definition: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    status: Mapped[CampaignStatus] = mapped_column(_enum(CampaignStatus, "campaign_status"))
    scheduled_at: Mapped[datetime | None]
    holdout_percent: Mapped[int] = mapped_column(default=0)
    attribution_days: Mapped[int] = mapped_column(default=7)
    # Triggered: occasions after this instant fire (set when activated); the last run.
    active_since: Mapped[datetime | None]
    last_run_at: Mapped[datetime | None]
    # Triggered by loyalty notices: the last notice id handled.
    notice_cursor: Mapped[int] = mapped_column(BigId, default=0)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CampaignVariant(Base):
    """A version of the message (A/B): subject and body templates per language."""

    __tablename__ = "campaign_variants"
    __table_args__ = (UniqueConstraint("campaign_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(16))  # "A", "B", ...
    weight: Mapped[int] = mapped_column(default=1)
    subject: Mapped[dict[str, Any]]  # {"en": template, "zh": template}
    body: Mapped[dict[str, Any]]  # HTML for email, plain text on other channels


class CampaignRecipient(Base):
    """One customer on one occasion of a campaign: their group (a variant key or
    ``holdout``), what happened, and when the message was (or would have been) sent —
    the start of the attribution window for both groups."""

    __tablename__ = "campaign_recipients"
    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id", "occasion"),
        Index("ix_campaign_recipients_customer", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    occasion: Mapped[str] = mapped_column(String(64))  # "" for a one-off
    arm: Mapped[str] = mapped_column(String(16))  # the group: a variant key or "holdout"
    status: Mapped[RecipientStatus] = mapped_column(_enum(RecipientStatus, "recipient_status"))
    send_at: Mapped[datetime]  # after quiet hours; the would-be send time when held out
    window_end: Mapped[datetime]  # send_at + the campaign's attribution days
    message_key: Mapped[str | None] = mapped_column(String(128))
    assigned_at: Mapped[datetime]


class CampaignSettings(Base):
    """A store's campaign settings: frequency cap and quiet hours (store time zone).
    A store without a row uses the defaults of ``patron.campaigns.domain``."""

    __tablename__ = "campaign_settings"

    store_id: Mapped[int] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True
    )
    cap_messages: Mapped[int]
    cap_days: Mapped[int]
    quiet_start: Mapped[str] = mapped_column(String(5))  # "21:00"; equal to end: none
    quiet_end: Mapped[str] = mapped_column(String(5))  # "09:00"
    updated_at: Mapped[datetime]


# Segments read orders as one aggregate per customer (count, last order, amount spent);
# this index answers it by an index-only scan in customer order, no sort or hash (a
# 1M-customer store: 9.0 s -> 3.4 s, see docs/benchmarks.md "Segments"). Declared here,
# with the segments that need it, not in orders/models.py.
Index(
    "ix_orders_store_customer_summary",
    Order.store_id,
    Order.customer_id,
    postgresql_include=["status", "placed_at", "currency", "total_minor", "refunded_minor"],
)


class ProductNeighbour(Base):
    """One of a product's nearest neighbours for recommendations (cosine over customers
    who bought both, top ``recommend.NEIGHBOURS`` per product). Rebuilt wholesale per
    store by ``recommend.rebuild``; the product ids are read through ``products``, so a
    product gone since is simply never suggested."""

    __tablename__ = "product_neighbours"

    store_id: Mapped[int] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    neighbour_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    score: Mapped[float] = mapped_column(Double)


class ProductBuyers(Base):
    """How many customers bought a product (lines that count), as of the store's last
    recommendation build: the best sellers that fill empty recommendation slots."""

    __tablename__ = "product_buyers"

    store_id: Mapped[int] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(primary_key=True)  # 0: most buyers (ties: older product)
    product_id: Mapped[int] = mapped_column(BigId)
    buyers: Mapped[int]


class RecommendationState(Base):
    """A store's last recommendation build and the order watermark it was built from:
    the job rebuilds when the watermark moved and the build is old enough."""

    __tablename__ = "recommendation_states"

    store_id: Mapped[int] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True
    )
    computed_at: Mapped[datetime]
    checked_at: Mapped[datetime]  # the watermark was last compared (unchanged) then
    customers: Mapped[int]  # customers with a purchase that counts (popularity share)
    neighbours: Mapped[int]  # product_neighbours rows written
    # The watermark: what the build saw of the store's orders and products.
    max_order_id: Mapped[int] = mapped_column(BigInteger)
    orders_updated_at: Mapped[datetime | None]  # latest orders.updated_at
    order_lines: Mapped[int] = mapped_column(BigInteger)
    refunded_units: Mapped[int] = mapped_column(BigInteger)  # sum of refunded quantities
    products: Mapped[int]
    max_product_id: Mapped[int] = mapped_column(BigInteger)
