"""Orders earn points through the bridge: at delivery, once; refunds claw back once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from patron.db import unit_of_work
from patron.loyalty import orders as order_points
from patron.loyalty.models import Currency, EntryKind, LoyaltyEntry
from patron.loyalty.program import ProgramConfig, load_yaml
from patron.loyalty.programs import programs
from patron.loyalty.rules import EarnEvent, EventKind, Line, MemberContext, evaluate
from patron.loyalty.service import Balance, ledger
from patron.orders import repository as orders_repo
from patron.orders.models import OrderStatus
from patron.orders.schemas import OrderIn, RefundIn
from patron.orders.service import orders, refunds
from patron.stores.models import Store

EXAMPLE = Path(__file__).parents[2] / "src/patron/loyalty/examples/program.yaml"
PLACED = datetime(2026, 11, 5, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: Singles' Day window
DELIVERED = datetime(2026, 11, 7, 4, 0, tzinfo=UTC)
NOW = DELIVERED + timedelta(hours=1)
BIRTHDAY = date(1990, 11, 20)


@pytest.fixture
def program(engine: Engine, store: Store) -> ProgramConfig:
    config = load_yaml(EXAMPLE.read_text(encoding="utf-8"))
    with unit_of_work(engine) as session:
        programs.apply(session, session.merge(store), config)
    return config


def order(ext: str = "O-1", status: str = "delivered", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_id": ext,
        "customer_external_id": "C-1",
        "customer": {"external_id": "C-1", "birthday": BIRTHDAY.isoformat()},
        "status": status,
        "channel": "app",
        "currency": "CNY",
        "placed_at": PLACED.isoformat(),
        "lines": [
            {"sku": "SERUM", "category": "skincare", "quantity": 1, "unit_price": "199.00"},
            {"sku": "LIPSTICK", "category": "makeup", "quantity": 1, "unit_price": "100.00"},
        ],
    }
    if status in ("paid", "fulfilled", "delivered"):
        body["paid_at"] = PLACED.isoformat()
    if status == "delivered":
        body["delivered_at"] = DELIVERED.isoformat()
    if status == "cancelled":
        body["cancelled_at"] = PLACED.isoformat()
    body.update(over)
    return body


def put(engine: Engine, store: Store, *bodies: dict[str, Any], now: datetime = NOW) -> list[str]:
    with unit_of_work(engine) as session:
        results = orders.upsert_many(
            session, session.merge(store), [OrderIn.model_validate(b) for b in bodies], now=now
        )
    assert all(r.status != "error" for r in results), results
    return [r.status for r in results]


def refund(
    engine: Engine, store: Store, ext: str, amount: str, order_ext: str = "O-1"
) -> list[str]:
    body = {
        "external_id": ext,
        "order_external_id": order_ext,
        "refunded_at": (NOW + timedelta(days=1)).isoformat(),
        "amount": amount,
    }
    with unit_of_work(engine) as session:
        results = refunds.upsert_many(
            session, session.merge(store), [RefundIn.model_validate(body)], now=NOW
        )
    return [r.status for r in results]


def member_id(engine: Engine, store: Store, ext: str = "C-1") -> int:
    with unit_of_work(engine) as session:
        return ledger.customer_id(session, store, ext)


def balance(engine: Engine, store: Store, ext: str = "C-1") -> Balance:
    with unit_of_work(engine) as session:
        customer = ledger.customer_id(session, store, ext)
        assert ledger.check_invariants(session, store, customer) == []
        return ledger.balance(session, store, customer)


def entries(engine: Engine, store: Store, key: str | None = None) -> list[LoyaltyEntry]:
    with unit_of_work(engine) as session:
        query = select(LoyaltyEntry).where(LoyaltyEntry.store_id == store.id)
        if key is not None:
            query = query.where(LoyaltyEntry.idempotency_key == key)
        found = list(session.scalars(query.order_by(LoyaltyEntry.id)))
        session.expunge_all()
        return found


def expected(program: ProgramConfig, *, first_order: bool = True) -> tuple[int, int]:
    event = EarnEvent(
        kind=EventKind.order,
        occurred_at=PLACED,
        currency="CNY",
        amount_minor=29900,
        channel="app",
        lines=[Line("SERUM", "skincare", 19900), Line("LIPSTICK", "makeup", 10000)],
    )
    member = MemberContext(timezone="Asia/Shanghai", first_order=first_order, birthday=BIRTHDAY)
    result = evaluate(program, event, member)
    assert "birthday-month-double" in result.points_by_rule()
    return result.points, result.growth


def test_a_delivered_order_earns_per_the_programme(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    points, growth = expected(program)
    put(engine, store, order())
    b = balance(engine, store)
    assert (b.points_pending, b.growth_pending, b.points_available) == (points, growth, 0)
    (earn, *_) = entries(engine, store, "order:O-1:earn")
    assert earn.kind == EntryKind.earn and earn.ref == "O-1"
    assert earn.available_at == DELIVERED + timedelta(days=program.pending_days)
    assert earn.expires_at == program.expires_at(DELIVERED, "Asia/Shanghai")
    # a second order is not the first any more
    put(engine, store, order("O-2"))
    assert balance(engine, store).points_pending == points + expected(program, first_order=False)[0]


def test_redelivery_earns_once(engine: Engine, store: Store, program: ProgramConfig) -> None:
    assert put(engine, store, order(), order(), order()) == ["created", "unchanged", "unchanged"]
    put(engine, store, order())
    put(engine, store, order(channel="web"))  # an update of a delivered order
    assert len(entries(engine, store, "order:O-1:earn")) == 2  # points + growth
    assert balance(engine, store).points_pending == expected(program)[0]


def test_an_order_earns_when_it_is_delivered(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    put(engine, store, order(status="paid"))
    put(engine, store, order(status="fulfilled"))
    assert entries(engine, store) == []
    put(engine, store, order())
    assert balance(engine, store).points_pending == expected(program)[0]


def test_refunds_claw_back_proportionally_and_once(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    points, growth = expected(program)
    put(engine, store, order())
    assert refund(engine, store, "R-1", "100.00") == ["created"]
    assert refund(engine, store, "R-1", "100.00") == ["unchanged"]
    taken = (points * 100 * 2 + 299) // (2 * 299), (growth * 100 * 2 + 299) // (2 * 299)
    b = balance(engine, store)
    assert (b.points_pending, b.growth_pending) == (points - taken[0], growth - taken[1])
    assert {e.currency for e in entries(engine, store, "refund:R-1")} == {
        Currency.points,
        Currency.growth,
    }
    assert refund(engine, store, "R-2", "199.00") == ["created"]  # the rest
    assert refund(engine, store, "R-2", "199.00") == ["unchanged"]
    b = balance(engine, store)
    assert (b.points_pending, b.growth_pending, b.debt) == (0, 0, 0)
    with unit_of_work(engine) as session:
        kinds = session.execute(
            select(LoyaltyEntry.kind, func.count())
            .where(LoyaltyEntry.store_id == store.id)
            .group_by(LoyaltyEntry.kind)
        ).all()
    assert dict(kinds) == {EntryKind.earn: 2, EntryKind.clawback: 4}


def test_a_refund_before_delivery_is_netted_at_delivery(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    points, _ = expected(program)
    put(engine, store, order(status="paid"))
    refund(engine, store, "R-1", "100.00")
    assert entries(engine, store) == []
    put(engine, store, order())
    assert balance(engine, store).points_pending == points - (points * 200 + 299) // 598


def test_no_programme_no_points(engine: Engine, store: Store) -> None:
    put(engine, store, order(), order("O-2", status="paid"))
    refund(engine, store, "R-1", "10.00")
    assert entries(engine, store) == []
    with unit_of_work(engine) as session:
        assert order_points.award_delivered(session, store) == 0


def test_cancelled_orders_earn_nothing(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    put(engine, store, order(status="paid"))
    put(engine, store, order(status="cancelled"))
    put(engine, store, order("O-2", status="cancelled", delivered_at=None))
    assert entries(engine, store) == []
    with unit_of_work(engine) as session:
        assert order_points.award_delivered(session, store) == 0
    assert entries(engine, store) == []


def test_award_delivered_backfills_once(engine: Engine, store: Store) -> None:
    put(engine, store, order(), order("O-2"), order("O-3", status="paid"))  # no programme yet
    config = load_yaml(EXAMPLE.read_text(encoding="utf-8"))
    with unit_of_work(engine) as session:
        programs.apply(session, session.merge(store), config)
    with unit_of_work(engine) as session:
        assert order_points.award_delivered(session, session.merge(store), now=NOW) == 2
    with unit_of_work(engine) as session:
        assert order_points.award_delivered(session, session.merge(store), now=NOW) == 0
        assert order_points.award_delivered(session, session.merge(store), DELIVERED) == 0
    first, second = expected(config)[0], expected(config, first_order=False)[0]
    assert balance(engine, store).points_pending == first + second


def test_bulk_orders_of_many_members(engine: Engine, store: Store, program: ProgramConfig) -> None:
    bodies = [
        order(f"O-{i}", customer_external_id=f"C-{i % 7}", customer=None, channel="web")
        for i in range(60)
    ]
    put(engine, store, *bodies)
    put(engine, store, *bodies)
    with unit_of_work(engine) as session:
        n = session.scalar(
            select(func.count()).where(
                LoyaltyEntry.store_id == store.id, LoyaltyEntry.kind == EntryKind.earn
            )
        )
    assert n == 120
    for i in range(7):
        assert balance(engine, store, f"C-{i}").points_pending > 0


def test_a_cancelled_order_gives_back_all_it_earned_once(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    # The API refuses to cancel a delivered order; a platform correction may still land.
    put(engine, store, order())
    assert balance(engine, store).points_pending > 0
    for _ in range(2):
        with unit_of_work(engine) as session:
            found = orders_repo.get_order(session, store.id, "O-1")
            assert found is not None
            found.status = OrderStatus.cancelled
            session.flush()
            order_points.on_orders_changed(session, session.merge(store), [found.id], NOW)
    b = balance(engine, store)
    assert (b.points_pending, b.growth_pending, b.debt) == (0, 0, 0)
    assert len(entries(engine, store, "order:O-1:cancel")) == 2
