from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from patron.customers.models import Customer, _enum
from patron.db import Base, BigId, JsonDoc
from patron.kit.clock import utcnow


class OrderStatus(enum.StrEnum):
    placed = "placed"
    paid = "paid"
    fulfilled = "fulfilled"
    delivered = "delivered"
    cancelled = "cancelled"
    refunded = "refunded"


class RefundState(enum.StrEnum):
    applied = "applied"
    # Arrived before its order: applied when the order lands.
    pending_order = "pending_order"
    rejected = "rejected"


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("store_id", "sku"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255))
    category: Mapped[str | None] = mapped_column(String(128))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    payload_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("store_id", "external_id"),
        Index("ix_orders_customer_placed", "customer_id", "placed_at"),
        Index("ix_orders_store_placed", "store_id", "placed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    status: Mapped[OrderStatus] = mapped_column(_enum(OrderStatus, "order_status"))
    channel: Mapped[str | None] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    discount_code: Mapped[str | None] = mapped_column(String(64))
    subtotal_minor: Mapped[int] = mapped_column(BigInteger)  # lines after line discounts
    discount_minor: Mapped[int] = mapped_column(BigInteger)  # order-level discount
    shipping_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    placed_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    fulfilled_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    # Hash of the last API body; NULL for orders loaded by file import.
    payload_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class OrderLine(Base):
    __tablename__ = "order_lines"

    # A line is its order's line number: one index for 1.3 lines per order, not two.
    order_id: Mapped[int] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    line_no: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(128))
    sku: Mapped[str | None] = mapped_column(String(128))  # read with its order, never alone
    name: Mapped[str | None] = mapped_column(String(255))
    category: Mapped[str | None] = mapped_column(String(128))
    quantity: Mapped[int]
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    discount_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    refunded_quantity: Mapped[int] = mapped_column(default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("store_id", "external_id"),
        Index("ix_refunds_store_order_ext", "store_id", "order_external_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(128))
    order_external_id: Mapped[str] = mapped_column(String(128))
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[RefundState] = mapped_column(_enum(RefundState, "refund_state"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(255))
    rejection: Mapped[str | None] = mapped_column(String(255))
    refunded_at: Mapped[datetime]
    # [{"line": line_no, "quantity": n, "amount_minor": m}] — what was taken back per line.
    lines: Mapped[list[dict[str, int]]] = mapped_column(JsonDoc, default=list)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    payload_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CustomerOrderFacts(Base):
    """Per customer, what segments read of their orders: orders not cancelled, their
    latest ``placed_at`` and the sum of ``total - refunded`` of those in the store's
    currency. Kept current by database triggers on ``orders`` (migration 0020: one
    refresh per statement on PostgreSQL, per row on SQLite), so every writer — the API,
    the file import's COPY, refunds, cancellations, merges, deletes — updates it in the
    same transaction. A customer without a row has no order."""

    __tablename__ = "customer_order_facts"

    customer_id: Mapped[int] = mapped_column(
        BigId,
        ForeignKey("customers.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    orders_count: Mapped[int]
    spent_minor: Mapped[int] = mapped_column(BigInteger)
    last_placed_at: Mapped[datetime | None]


# Segment counts start from the store's customers that may be members (neither stubs nor
# erased): this partial index gives their ids by an index-only scan in id order (~30 MB
# for 1M customers, against ~140 MB of rows), merge-joined with the order facts above.
# The pattern is written as a literal in segments.eligible so PostgreSQL can match it.
ELIGIBLE_PATTERN = "'erased-%'"
_ELIGIBLE = f"is_stub IS false AND external_id NOT LIKE {ELIGIBLE_PATTERN}"
Index(
    "ix_customers_segment_members",
    Customer.store_id,
    Customer.id,
    postgresql_where=text(_ELIGIBLE),
    sqlite_where=text(_ELIGIBLE),
)
