"""Every customer query. All of them take the store id: tenancy lives here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.customers.models import Consent, Customer, Touchpoint
from patron.kit.repository import chunks, insert_rows, select_by_keys, table_of, update_by_id


def get_by_external_id(session: Session, store_id: int, external_id: str) -> Customer | None:
    return session.scalars(
        select(Customer).where(Customer.store_id == store_id, Customer.external_id == external_id)
    ).first()


def get(session: Session, store_id: int, customer_id: int) -> Customer | None:
    return session.scalars(
        select(Customer).where(Customer.store_id == store_id, Customer.id == customer_id)
    ).first()


def list_page(
    session: Session, store_id: int, limit: int, after: int | None, email: str | None = None
) -> Sequence[Customer]:
    query = select(Customer).where(Customer.store_id == store_id)
    if after is not None:
        query = query.where(Customer.id > after)
    if email:
        query = query.where(Customer.email == email.lower())
    return session.scalars(query.order_by(Customer.id).limit(limit)).all()


def by_external_ids(
    session: Session, store_id: int, external_ids: Sequence[str]
) -> dict[str, Customer]:
    found: dict[str, Customer] = {}
    for chunk in chunks(list(dict.fromkeys(external_ids))):
        for customer in session.scalars(
            select(Customer).where(Customer.store_id == store_id, Customer.external_id.in_(chunk))
        ):
            found[customer.external_id] = customer
    return found


def states_by_external_id(
    session: Session, store_id: int, external_ids: Sequence[str]
) -> dict[str, tuple[int, str | None]]:
    """external id -> (id, payload hash) for those that exist."""
    rows = select_by_keys(
        session,
        (Customer.external_id, Customer.id, Customer.payload_hash),
        Customer.external_id,
        external_ids,
        Customer.store_id == store_id,
    )
    return {ext: (cid, digest) for ext, cid, digest in rows}


def insert_new(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert customers, skipping external ids another writer inserted first."""
    if not rows:
        return {}
    # Key order: concurrent writers lock rows in the same order and cannot deadlock.
    rows = sorted(rows, key=lambda row: row["external_id"])
    found = insert_rows(
        session,
        table_of(Customer),
        rows,
        conflict=("store_id", "external_id"),
        returning=("external_id", "id"),
    )
    return {ext: cid for ext, cid in found}


def update_profiles(session: Session, rows: list[dict[str, Any]]) -> None:
    update_by_id(session, table_of(Customer), rows)


def consents_of(session: Session, customer_ids: Sequence[int]) -> dict[tuple[int, str], Consent]:
    found: dict[tuple[int, str], Consent] = {}
    for chunk in chunks(customer_ids):
        for consent in session.scalars(select(Consent).where(Consent.customer_id.in_(chunk))):
            found[(consent.customer_id, consent.channel.value)] = consent
    return found


def add_all(session: Session, objects: Sequence[object]) -> None:
    session.add_all(objects)


def insert_touchpoints(session: Session, rows: list[dict[str, Any]]) -> None:
    insert_rows(session, table_of(Touchpoint), rows)


def touchpoints_of(
    session: Session, store_id: int, customer_id: int, limit: int, before: datetime | None = None
) -> Sequence[Touchpoint]:
    query = select(Touchpoint).where(
        Touchpoint.store_id == store_id, Touchpoint.customer_id == customer_id
    )
    if before is not None:
        query = query.where(Touchpoint.occurred_at < before)
    return session.scalars(
        query.order_by(Touchpoint.occurred_at.desc(), Touchpoint.id.desc()).limit(limit)
    ).all()
