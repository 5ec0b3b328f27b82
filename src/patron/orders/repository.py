"""Every product, order and refund query, always scoped to a store."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.customers.models import Customer
from patron.kit.repository import (
    chunks,
    insert_ignoring_conflicts,
    insert_rows,
    select_by_keys,
    table_of,
    update_by_id,
)
from patron.orders.models import Order, OrderLine, OrderStatus, Product, Refund, RefundState


class OrderState(NamedTuple):
    id: int
    payload_hash: str | None
    status: OrderStatus
    customer_id: int


def order_states(
    session: Session, store_id: int, external_ids: Sequence[str]
) -> dict[str, OrderState]:
    rows = select_by_keys(
        session,
        (Order.external_id, Order.id, Order.payload_hash, Order.status, Order.customer_id),
        Order.external_id,
        external_ids,
        Order.store_id == store_id,
    )
    return {
        ext: OrderState(oid, digest, OrderStatus(status), customer_id)
        for ext, oid, digest, status, customer_id in rows
    }


def insert_orders(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    if not rows:
        return {}
    # Key order: concurrent writers lock rows in the same order and cannot deadlock.
    rows = sorted(rows, key=lambda row: row["external_id"])
    found = insert_rows(
        session,
        table_of(Order),
        rows,
        conflict=("store_id", "external_id"),
        returning=("external_id", "id"),
    )
    return {ext: oid for ext, oid in found}


def insert_lines(session: Session, rows: list[dict[str, Any]]) -> None:
    insert_rows(session, table_of(OrderLine), rows)


def update_orders(session: Session, rows: list[dict[str, Any]]) -> None:
    update_by_id(session, table_of(Order), rows)


def get_order(
    session: Session, store_id: int, external_id: str, *, for_update: bool = False
) -> Order | None:
    query = select(Order).where(Order.store_id == store_id, Order.external_id == external_id)
    if for_update:
        # Refunds of one order are serialised so two can never both take the last units.
        query = query.with_for_update()
    return session.scalars(query).first()


def lines_of(session: Session, order_ids: Sequence[int]) -> dict[int, list[OrderLine]]:
    found: dict[int, list[OrderLine]] = {oid: [] for oid in order_ids}
    for chunk in chunks(order_ids):
        for line in session.scalars(
            select(OrderLine)
            .where(OrderLine.order_id.in_(chunk))
            .order_by(OrderLine.order_id, OrderLine.line_no)
        ):
            found[line.order_id].append(line)
    return found


def customer_external_ids(session: Session, customer_ids: Iterable[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in chunks(list(customer_ids)):
        rows = session.execute(
            select(Customer.id, Customer.external_id).where(Customer.id.in_(chunk))
        )
        found.update({cid: ext for cid, ext in rows})
    return found


def list_orders(
    session: Session, store_id: int, limit: int, after: int | None, customer_id: int | None = None
) -> Sequence[Order]:
    query = select(Order).where(Order.store_id == store_id)
    if customer_id is not None:
        query = query.where(Order.customer_id == customer_id)
    if after is not None:
        query = query.where(Order.id > after)
    return session.scalars(query.order_by(Order.id).limit(limit)).all()


def get_refund(session: Session, store_id: int, external_id: str) -> Refund | None:
    return session.scalars(
        select(Refund).where(Refund.store_id == store_id, Refund.external_id == external_id)
    ).first()


def pending_refunds(session: Session, store_id: int, order_external_id: str) -> Sequence[Refund]:
    return session.scalars(
        select(Refund)
        .where(
            Refund.store_id == store_id,
            Refund.order_external_id == order_external_id,
            Refund.state == RefundState.pending_order,
        )
        .order_by(Refund.refunded_at, Refund.id)
    ).all()


def pending_refund_order_ids(
    session: Session, store_id: int, order_external_ids: Sequence[str]
) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(order_external_ids):
        found.update(
            session.scalars(
                select(Refund.order_external_id).where(
                    Refund.store_id == store_id,
                    Refund.order_external_id.in_(chunk),
                    Refund.state == RefundState.pending_order,
                )
            )
        )
    return found


def insert_pending_refund(session: Session, row: dict[str, Any]) -> bool:
    stmt = insert_ignoring_conflicts(session, table_of(Refund), "store_id", "external_id")
    return session.execute(stmt.returning(Refund.id), [row]).first() is not None


def product_states(
    session: Session, store_id: int, skus: Sequence[str]
) -> dict[str, tuple[int, str | None]]:
    rows = select_by_keys(
        session,
        (Product.sku, Product.id, Product.payload_hash),
        Product.sku,
        skus,
        Product.store_id == store_id,
    )
    return {sku: (pid, digest) for sku, pid, digest in rows}


def insert_products(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    if not rows:
        return {}
    stmt = insert_ignoring_conflicts(session, table_of(Product), "store_id", "sku")
    created: dict[str, int] = {}
    for chunk in chunks(rows, 500):
        created.update(
            {
                sku: pid
                for sku, pid in session.execute(
                    stmt.returning(Product.sku, Product.id), list(chunk)
                )
            }
        )
    return created


def update_products(session: Session, rows: list[dict[str, Any]]) -> None:
    update_by_id(session, table_of(Product), rows)


def get_product(session: Session, store_id: int, sku: str) -> Product | None:
    return session.scalars(
        select(Product).where(Product.store_id == store_id, Product.sku == sku)
    ).first()


def list_products(
    session: Session, store_id: int, limit: int, after: int | None
) -> Sequence[Product]:
    query = select(Product).where(Product.store_id == store_id)
    if after is not None:
        query = query.where(Product.id > after)
    return session.scalars(query.order_by(Product.id).limit(limit)).all()
