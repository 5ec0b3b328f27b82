"""Concurrent deliveries of the same records: applied once, never a server error."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, func, select

from patron.db import unit_of_work
from patron.kit.bulk import RecordResult
from patron.orders.models import Order, OrderLine
from patron.orders.schemas import OrderIn, RefundIn
from patron.orders.service import orders, refunds
from patron.stores.models import Store


def _body(ext: str, customer: str = "C-1") -> dict[str, Any]:
    return {
        "external_id": ext,
        "customer_external_id": customer,
        "currency": "CNY",
        "placed_at": "2026-03-01T08:00:00Z",
        "lines": [{"sku": "S1", "quantity": 1, "unit_price": "10.00"}],
    }


def _run_concurrently(n: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # recorded, asserted below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_same_batch_delivered_concurrently_is_applied_once(engine: Engine, store: Store) -> None:
    records = [OrderIn.model_validate(_body(f"O-{i}", f"C-{i % 7}")) for i in range(40)]

    def deliver(i: int) -> list[RecordResult]:
        # each delivery in its own order, to provoke lock-order races
        batch = records if i % 2 == 0 else list(reversed(records))
        with unit_of_work(engine) as session:
            return orders.upsert_many(session, session.merge(store), batch)

    outcomes = _run_concurrently(5, deliver)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    created = sum(r.status == "created" for batch in outcomes for r in batch)
    assert created == 40
    with unit_of_work(engine) as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Order).where(Order.store_id == store.id)
            )
            == 40
        )
        assert (
            session.scalar(
                select(func.count())
                .select_from(OrderLine)
                .join(Order)
                .where(Order.store_id == store.id)
            )
            == 40
        )


def test_concurrent_refunds_never_exceed_the_order(engine: Engine, store: Store) -> None:
    with unit_of_work(engine) as session:
        orders.upsert_many(session, session.merge(store), [OrderIn.model_validate(_body("O-R"))])

    def refund(i: int) -> list[RecordResult]:
        body = RefundIn.model_validate(
            {
                "external_id": f"R-{i}",
                "order_external_id": "O-R",
                "refunded_at": "2026-03-02T00:00:00Z",
                "amount": "3.00",
            }
        )
        with unit_of_work(engine) as session:
            return refunds.upsert_many(session, session.merge(store), [body])

    outcomes = _run_concurrently(6, refund)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    applied = [r for batch in outcomes for r in batch if r.status == "created"]
    refused = [r for batch in outcomes for r in batch if r.status == "error"]
    assert len(applied) == 3 and len(refused) == 3  # 3 × 3.00 fit in 10.00, a 4th does not
    with unit_of_work(engine) as session:
        order = session.scalars(select(Order).where(Order.store_id == store.id)).one()
        assert order.refunded_minor == 900
