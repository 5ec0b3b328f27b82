"""Actions beyond orders (check-in streaks, reviews, sign-up, birthdays) and rule caps
that hold across events: per member per period, and campaign budgets (also concurrently)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from patron.auth import Scope, issue_member_token
from patron.customers.models import Customer
from patron.db import unit_of_work
from patron.loyalty import actions
from patron.loyalty.jobs import run_due
from patron.loyalty.program import EventKind, ProgramConfig, load_yaml, parse
from patron.loyalty.programs import programs
from patron.loyalty.service import ledger
from patron.orders.schemas import OrderIn
from patron.orders.service import orders
from patron.stores.models import Store
from patron.stores.service import stores

EXAMPLE = Path(__file__).parents[2] / "src/patron/loyalty/examples/program.yaml"
# 09:00 in Shanghai on a Monday.
DAY1 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def apply(engine: Engine, store: Store, program: ProgramConfig) -> None:
    with unit_of_work(engine) as session:
        programs.apply(session, session.merge(store), program)


@pytest.fixture
def example(engine: Engine, store: Store) -> ProgramConfig:
    program = load_yaml(EXAMPLE.read_text(encoding="utf-8"))
    apply(engine, store, program)
    return program


def add_customer(engine: Engine, store: Store, ext: str, **fields: Any) -> int:
    with unit_of_work(engine) as session:
        customer = Customer(store_id=store.id, external_id=ext, **fields)
        session.add(customer)
        session.flush()
        return customer.id


def check_in(engine: Engine, store: Store, cid: int, at: datetime) -> actions.ActionResult:
    with unit_of_work(engine) as session:
        return actions.check_in(session, session.merge(store), cid, at)


def available(engine: Engine, store: Store, cid: int) -> int:
    with unit_of_work(engine) as session:
        s = session.merge(store)
        assert ledger.check_invariants(session, s, cid) == []
        return ledger.balance(session, s, cid).points_available


def test_check_in_once_a_day_with_a_weekly_streak_bonus(
    engine: Engine, store: Store, example: ProgramConfig
) -> None:
    cid = add_customer(engine, store, "C-1")
    first = check_in(engine, store, cid, DAY1)
    assert (first.points, first.streak, first.replayed) == (5, 1, False)
    # Again the same store-time day (23:30 Shanghai): nothing more.
    again = check_in(engine, store, cid, DAY1 + timedelta(hours=14, minutes=30))
    assert again.replayed and again.streak == 1
    assert available(engine, store, cid) == 5
    # Days 2..7 in a row: day 7 adds the streak bonus of 20.
    results = [check_in(engine, store, cid, DAY1 + timedelta(days=n)) for n in range(1, 7)]
    assert [r.streak for r in results] == [2, 3, 4, 5, 6, 7]
    assert [r.points for r in results] == [5, 5, 5, 5, 5, 25]
    assert available(engine, store, cid) == 5 * 7 + 20
    # A missed day starts the streak again.
    late = check_in(engine, store, cid, DAY1 + timedelta(days=9))
    assert (late.streak, late.points) == (1, 5)


def test_reported_actions_count_once_and_caps_hold_across_events(
    engine: Engine, store: Store, example: ProgramConfig
) -> None:
    cid = add_customer(engine, store, "C-1")

    def report(kind: EventKind, key: str, at: datetime) -> actions.ActionResult:
        with unit_of_work(engine) as session:
            return actions.report(session, session.merge(store), cid, kind, key, now=at)

    assert report(EventKind.sign_up, "a", DAY1).points == 100
    # Sign-up is once per member, whatever key a retry sends.
    assert report(EventKind.sign_up, "b", DAY1).replayed
    assert report(EventKind.review, "R-1", DAY1).points == 20
    assert report(EventKind.review, "R-1", DAY1).replayed
    # Reviews: 20 each, at most 200 a month (store time): the 10th fills the cap.
    points = [report(EventKind.review, f"R-{n}", DAY1).points for n in range(2, 13)]
    assert sum(points) == 180 and points[-2:] == [0, 0]
    # A new month: the cap is free again.
    assert report(EventKind.review, "R-next", datetime(2026, 4, 1, 1, tzinfo=UTC)).points == 20
    assert available(engine, store, cid) == 100 + 200 + 20


def _order(ext: str, customer: str, placed: datetime, amount: str = "100.00") -> OrderIn:
    return OrderIn.model_validate(
        {
            "external_id": ext,
            "customer_external_id": customer,
            "status": "delivered",
            "currency": "CNY",
            "placed_at": placed.isoformat(),
            "paid_at": placed.isoformat(),
            "delivered_at": (placed + timedelta(days=1)).isoformat(),
            "lines": [{"sku": "S", "quantity": 1, "unit_price": amount}],
        }
    )


def capped_program(**caps: Any) -> ProgramConfig:
    return parse(
        {
            "currency": "CNY",
            "tiers": [{"code": "member", "name": "Member", "threshold": 0}],
            "earn": {"points_per_unit": 0},
            "growth": {"per_unit": 0},
            "rules": [{"id": "promo", "effect": {"points_per_unit": 1}, "caps": caps}],
        }
    )


def test_per_member_cap_counts_across_orders_and_batches(engine: Engine, store: Store) -> None:
    apply(engine, store, capped_program(per_customer=150, period="month"))
    with unit_of_work(engine) as session:
        s = session.merge(store)
        # Two orders in one batch, then a third in another: 100 + 50 + 0.
        orders.upsert_many(
            session, s, [_order("O-1", "C-1", DAY1), _order("O-2", "C-1", DAY1)], now=DAY1
        )
    with unit_of_work(engine) as session:
        orders.upsert_many(session, session.merge(store), [_order("O-3", "C-1", DAY1)], now=DAY1)
        # The next month starts again.
        nxt = datetime(2026, 4, 2, 1, tzinfo=UTC)
        orders.upsert_many(session, session.merge(store), [_order("O-4", "C-1", nxt)], now=nxt)
    with unit_of_work(engine) as session:
        s = session.merge(store)
        cid = ledger.customer_id(session, s, "C-1")
        balance = ledger.balance(session, s, cid)
    # March: 100 + 50 + 0 (matured by April); April: 100, pending.
    assert (balance.points_available, balance.points_pending) == (150, 100)


def test_campaign_budget_is_never_overspent_by_concurrent_batches(
    engine: Engine, store: Store
) -> None:
    apply(engine, store, capped_program(budget=1000))
    errors: list[BaseException] = []

    def batch(n: int) -> None:
        try:
            with unit_of_work(engine) as session:
                orders.upsert_many(
                    session,
                    session.merge(store),
                    [_order(f"O-{n}-{i}", f"C-{n}-{i}", DAY1) for i in range(3)],
                    now=DAY1,
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=batch, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with unit_of_work(engine) as session:
        totals = ledger.liability(session, session.merge(store), cost_per_point=Decimal(0))
    # 18 orders wanted 1,800 points; the budget gives exactly 1,000.
    assert totals.points_outstanding + totals.points_pending == 1000


def test_birthday_gift_once_a_year_in_store_time(engine: Engine, store: Store) -> None:
    apply(
        engine,
        store,
        parse(
            {
                "currency": "CNY",
                "tiers": [
                    {
                        "code": "member",
                        "name": "Member",
                        "threshold": 0,
                        "benefits": {"birthday_gift_points": 88},
                    }
                ],
            }
        ),
    )
    cid = add_customer(engine, store, "C-1", birthday=date(1990, 3, 2))
    other = add_customer(engine, store, "C-2", birthday=date(1990, 3, 3))
    for c in (cid, other):  # members have an account
        with unit_of_work(engine) as session:
            ledger.adjust(
                session, session.merge(store), c, key=f"seed-{c}", points=1, reason="seed"
            )
    with unit_of_work(engine) as session:
        s = session.merge(store)
        # 2 March 00:30 in Shanghai is still 1 March in UTC.
        at = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)
        assert run_due(session, s, at).birthdays == 1
        assert run_due(session, s, at + timedelta(hours=5)).birthdays == 0
    assert available(engine, store, cid) == 1 + 88
    assert available(engine, store, other) == 1
    with unit_of_work(engine) as session:  # the next year again
        assert run_due(session, session.merge(store), at.replace(year=2027)).birthdays == 1


def test_check_in_and_actions_over_the_api(
    engine: Engine, store: Store, example: ProgramConfig, client: TestClient
) -> None:
    cid = add_customer(engine, store, "C-1")
    with unit_of_work(engine) as session:
        s = session.merge(store)
        _, key = stores.create_key(session, s, "t", [Scope.ingest, Scope.read])
        token, _ = issue_member_token(s, cid, ttl_seconds=600)
    headers = {"Authorization": f"Bearer {key}"}
    res = client.post(
        "/v1/customers/C-1/actions", json={"kind": "review", "key": "R-1"}, headers=headers
    )
    assert res.status_code == 201, res.text
    assert res.json()["points"] == 20
    assert res.json()["rules"][0]["rule_id"] == "review"
    again = client.post(
        "/v1/customers/C-1/actions", json={"kind": "review", "key": "R-1"}, headers=headers
    )
    assert again.status_code == 200 and again.json()["replayed"]
    assert again.json()["balance"]["points_available"] == 20
    bad = client.post(
        "/v1/customers/C-1/actions", json={"kind": "order", "key": "x"}, headers=headers
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.kind"
    member = {"Authorization": f"Bearer {token}"}
    first = client.post("/v1/me/check-in", headers=member)
    assert first.status_code == 201 and first.json()["streak"] == 1
    assert first.json()["points"] == 5
    second = client.post("/v1/me/check-in", headers=member)
    assert second.status_code == 200 and second.json()["replayed"]
    assert second.json()["balance"]["points_available"] == 25
