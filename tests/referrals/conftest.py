"""Referral fixtures: a programme with referral and surprise sections, customers, orders
through the real orders service, and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from patron.customers.models import Customer
from patron.db import unit_of_work
from patron.loyalty.models import LoyaltyEntry
from patron.loyalty.program import ProgramConfig
from patron.loyalty.programs import programs
from patron.orders.schemas import OrderIn, RefundIn
from patron.orders.service import orders, refunds
from patron.referrals.models import Referral
from patron.referrals.schemas import ReferralIn, ReferralOut
from patron.referrals.service import referrals
from patron.stores.models import Store

T0 = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # a Monday, noon in Shanghai
DAY = timedelta(days=1)
PENDING_DAYS = 15


def apply_program(
    engine: Engine,
    store: Store,
    *,
    referral: dict[str, Any] | None = None,
    surprise: dict[str, Any] | None = None,
) -> ProgramConfig:
    data: dict[str, Any] = {
        "currency": "CNY",
        "pending_days": PENDING_DAYS,
        "tiers": [{"code": "member", "name": "Member", "threshold": 0}],
    }
    if referral is not None:
        data["referral"] = {
            "referrer_points": 500,
            "referee_points": 200,
            "qualifying_min_order": "99.00",
            **referral,
        }
    if surprise is not None:
        data["surprise"] = surprise
    config = ProgramConfig.model_validate(data)
    with unit_of_work(engine) as session:
        programs.apply(session, session.merge(store), config)
    return config


@pytest.fixture
def program(engine: Engine, store: Store) -> ProgramConfig:
    return apply_program(engine, store, referral={})


def customer(engine: Engine, store: Store, ext: str, **fields: Any) -> int:
    with unit_of_work(engine) as session:
        fields.setdefault("created_at", T0 - 30 * DAY)
        row = Customer(store_id=store.id, external_id=ext, **fields)
        session.add(row)
        session.flush()
        return row.id


def code_of(engine: Engine, store: Store, customer_id: int) -> str:
    with unit_of_work(engine) as session:
        return referrals.code(session, session.merge(store), customer_id, now=T0)


def attribute(
    engine: Engine, store: Store, code: str, referee: str, now: datetime = T0
) -> ReferralOut:
    with unit_of_work(engine) as session:
        out, _ = referrals.attribute(
            session,
            session.merge(store),
            ReferralIn(code=code, referee_external_id=referee),
            now=now,
        )
        return out


def order(
    engine: Engine,
    store: Store,
    ext: str,
    customer_ext: str,
    *,
    amount: str = "199.00",
    placed: datetime = T0 + DAY,
    delivered: datetime | None = T0 + 3 * DAY,
    status: str = "delivered",
) -> None:
    body: dict[str, Any] = {
        "external_id": ext,
        "customer_external_id": customer_ext,
        "status": status,
        "currency": "CNY",
        "placed_at": placed.isoformat(),
        "lines": [{"sku": "SKU", "quantity": 1, "unit_price": amount}],
    }
    if status in ("paid", "fulfilled", "delivered"):
        body["paid_at"] = placed.isoformat()
    if delivered is not None and status == "delivered":
        body["delivered_at"] = delivered.isoformat()
    if status == "cancelled":
        body["cancelled_at"] = placed.isoformat()
    with unit_of_work(engine) as session:
        results = orders.upsert_many(
            session, session.merge(store), [OrderIn.model_validate(body)], now=placed
        )
    assert all(r.status != "error" for r in results), results


def refund(
    engine: Engine, store: Store, ext: str, order_ext: str, amount: str, when: datetime
) -> None:
    body = {
        "external_id": ext,
        "order_external_id": order_ext,
        "refunded_at": when.isoformat(),
        "amount": amount,
    }
    with unit_of_work(engine) as session:
        results = refunds.upsert_many(
            session, session.merge(store), [RefundIn.model_validate(body)], now=when
        )
    assert all(r.status != "error" for r in results), results


def referral(engine: Engine, referral_id: int) -> Referral:
    with unit_of_work(engine) as session:
        found = session.get(Referral, referral_id)
        assert found is not None
        session.expunge(found)
        return found


def entries(engine: Engine, store: Store, key: str) -> list[tuple[int, int]]:
    """(customer account id, amount) of the ledger entries written under ``key``."""
    with unit_of_work(engine) as session:
        rows = session.execute(
            select(LoyaltyEntry.account_id, LoyaltyEntry.amount).where(
                LoyaltyEntry.store_id == store.id, LoyaltyEntry.idempotency_key == key
            )
        )
        return [(a, n) for a, n in rows]


def count_entries(engine: Engine, store: Store, prefix: str) -> int:
    with unit_of_work(engine) as session:
        return int(
            session.scalar(
                select(func.count(LoyaltyEntry.id)).where(
                    LoyaltyEntry.store_id == store.id,
                    LoyaltyEntry.idempotency_key.like(f"{prefix}%"),
                )
            )
            or 0
        )
