"""Surprise rewards on both databases: seeded schedule, budget, limits, flags, once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from tests.referrals.conftest import DAY, T0, apply_program, count_entries, customer, entries, order

from patron.customers.models import Customer
from patron.db import unit_of_work
from patron.errors import Conflict, Invalid
from patron.referrals import domain
from patron.referrals.models import GiftStatus, SurpriseGift
from patron.referrals.schemas import PlanIn, PlanOut
from patron.referrals.service import run_surprises, surprises
from patron.stores.models import Store

EXACT = {"days": 0, "amount_percent": 0}  # no jitter: hand-checkable amounts and times


def surprise(**over: Any) -> dict[str, Any]:
    return {
        "budget_points_per_month": 1000,
        "max_per_customer_per_year": 2,
        "min_gap_days": 30,
        "jitter": {"days": 21, "amount_percent": 40},
        **over,
    }


def plan(
    engine: Engine, store: Store, segment: Any, points: int = 100, now: datetime = T0
) -> PlanOut:
    body = PlanIn.model_validate({"segment": segment, "points": points, "note": "thank you"})
    with unit_of_work(engine) as session:
        return surprises.plan(session, session.merge(store), body, now=now)


def run(engine: Engine, store: Store, now: datetime) -> int:
    with unit_of_work(engine) as session:
        return run_surprises(session, session.merge(store), now)


def gifts(engine: Engine, store: Store) -> list[SurpriseGift]:
    with unit_of_work(engine) as session:
        rows = list(
            session.scalars(
                select(SurpriseGift)
                .where(SurpriseGift.store_id == store.id)
                .order_by(SurpriseGift.id)
            )
        )
        session.expunge_all()
        return rows


def test_planning_needs_a_surprise_section(engine: Engine, store: Store) -> None:
    customer(engine, store, "A")
    apply_program(engine, store)
    with pytest.raises(Conflict, match="surprise"):
        plan(engine, store, ["A"])


def test_gifts_are_scheduled_irregularly_and_reproducibly(engine: Engine, store: Store) -> None:
    apply_program(engine, store, surprise=surprise())
    ids = [customer(engine, store, f"C{n}") for n in range(30)]
    out = plan(engine, store, [f"C{n}" for n in range(30)])
    assert (out.scheduled, out.excluded) == (30, 0)
    rows = gifts(engine, store)
    for g in rows:
        draw = domain.surprise_draw(store.signing_secret, out.id, g.customer_id, 100, 21, 40)
        assert (g.due_at, g.points) == (T0 + draw.delay, draw.points)
    assert sorted(g.customer_id for g in rows) == ids
    assert len({g.due_at for g in rows}) == 30 and len({g.points for g in rows}) > 10
    assert out.first_due_at == min(g.due_at for g in rows)
    assert all(T0 <= g.due_at <= T0 + 21 * DAY and 60 <= g.points <= 140 for g in rows)


def test_due_gifts_are_given_once(engine: Engine, store: Store) -> None:
    apply_program(engine, store, surprise=surprise())
    customer(engine, store, "A")
    out = plan(engine, store, ["A"])
    (gift,) = gifts(engine, store)
    assert run(engine, store, gift.due_at - timedelta(seconds=1)) == 0
    assert run(engine, store, gift.due_at) == 1
    assert run(engine, store, gift.due_at + DAY) == 0
    assert [n for _, n in entries(engine, store, f"surprise:{out.id}:{gift.customer_id}")] == [
        gift.points
    ]
    (done,) = gifts(engine, store)
    assert (done.status, done.given_at) == (GiftStatus.given, gift.due_at)


def test_the_monthly_budget_is_never_exceeded(engine: Engine, store: Store) -> None:
    apply_program(engine, store, surprise=surprise(budget_points_per_month=250, jitter=EXACT))
    for n in range(5):
        customer(engine, store, f"C{n}")
    plan(engine, store, [f"C{n}" for n in range(5)])
    assert run(engine, store, T0) == 2
    rows = gifts(engine, store)
    assert [g.status for g in rows].count(GiftStatus.given) == 2
    assert {g.reason for g in rows if g.status == GiftStatus.skipped} == {"budget"}
    # Next (store-time) month: a fresh budget.
    customer(engine, store, "D")
    plan(engine, store, ["D"], now=T0 + 31 * DAY)
    assert run(engine, store, T0 + 31 * DAY) == 1


def test_flagged_members_are_left_out_and_skipped(engine: Engine, store: Store) -> None:
    apply_program(engine, store, surprise=surprise(jitter=EXACT))
    customer(engine, store, "A")
    b = customer(engine, store, "B")
    customer(engine, store, "X", flagged=True, flagged_reason="compensation claims")
    out = plan(engine, store, ["A", "B", "X"])
    assert (out.scheduled, out.excluded) == (2, 1)
    with unit_of_work(engine) as session:  # flagged after planning
        session.execute(update(Customer).where(Customer.id == b).values(flagged=True))
    assert run(engine, store, T0) == 1
    skipped = [g for g in gifts(engine, store) if g.status == GiftStatus.skipped]
    assert [(g.customer_id, g.reason) for g in skipped] == [(b, "flagged")]


def test_gap_and_yearly_limits(engine: Engine, store: Store) -> None:
    apply_program(
        engine,
        store,
        surprise=surprise(max_per_customer_per_year=2, min_gap_days=30, jitter=EXACT),
    )
    customer(engine, store, "A")
    plan(engine, store, ["A"])
    assert run(engine, store, T0) == 1
    plan(engine, store, ["A"], now=T0 + 10 * DAY)
    assert run(engine, store, T0 + 10 * DAY) == 0  # too soon
    plan(engine, store, ["A"], now=T0 + 40 * DAY)
    assert run(engine, store, T0 + 40 * DAY) == 1
    plan(engine, store, ["A"], now=T0 + 80 * DAY)
    assert run(engine, store, T0 + 80 * DAY) == 0  # two this year already
    reasons = [g.reason for g in gifts(engine, store)]
    assert reasons == [None, "too_soon", None, "yearly_limit"]
    assert count_entries(engine, store, "surprise:") == 2


def test_a_filter_selects_by_orders(engine: Engine, store: Store) -> None:
    apply_program(engine, store, surprise=surprise())
    for ext in ("A", "B", "C"):
        customer(engine, store, ext)
    order(engine, store, "A-1", "A", amount="300.00")
    order(engine, store, "A-2", "A", amount="300.00", placed=T0 + 2 * DAY)
    order(engine, store, "B-1", "B", amount="50.00")
    order(
        engine,
        store,
        "C-1",
        "C",
        amount="900.00",
        placed=T0 - 200 * DAY,
        delivered=None,
        status="paid",
    )
    now = T0 + 5 * DAY
    assert plan(engine, store, {"min_orders": 2}, now=now).scheduled == 1
    assert plan(engine, store, {"min_spend": "100"}, now=now).scheduled == 2
    recent = plan(engine, store, {"min_spend": "100", "last_order_within_days": 30}, now=now)
    assert recent.scheduled == 1
    assert recent.segment == {"min_spend": "100", "last_order_within_days": 30}


def test_bad_plans_name_their_field(engine: Engine, store: Store) -> None:
    apply_program(engine, store, surprise=surprise())
    customer(engine, store, "A")
    with pytest.raises(Invalid) as caught:
        plan(engine, store, ["A", "NOBODY"])
    assert caught.value.errors[0]["field"] == "segment.customers.1"
    with pytest.raises(Invalid, match=r"^points: "):
        plan(engine, store, ["A"], points=1001)
    with pytest.raises(Invalid, match=r"^segment\.min_spend: "):
        plan(engine, store, {"min_spend": "1.001"})
