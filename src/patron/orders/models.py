from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.customers.models import _enum
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
