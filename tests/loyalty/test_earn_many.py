"""``earn_many``: the batch path gives the same results as ``earn`` one by one."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from patron.db import unit_of_work
from patron.errors import Invalid, NotFound
from patron.loyalty.service import Earning, KeyReused, Posting, ledger
from patron.stores.models import Store
from tests.conftest import new_store
from tests.loyalty.conftest import T0, new_member
from tests.loyalty.test_concurrency import run_concurrently

DAY = timedelta(days=1)


def many(
    engine: Engine, store: Store, earnings: list[Earning], now: datetime = T0
) -> list[Posting]:
    with unit_of_work(engine) as session:
        return ledger.earn_many(session, session.merge(store), earnings, now=now)


def balances(engine: Engine, store: Store, members: list[int]) -> list[tuple[int, ...]]:
    out = []
    with unit_of_work(engine) as session:
        for member in members:
            assert ledger.check_invariants(session, store, member) == []
            b = ledger.balance(session, store, member)
            out.append((b.points_available, b.points_pending, b.debt, b.growth, b.growth_pending))
    return out


def test_a_batch_replays_and_repeats_like_single_events(engine: Engine, store: Store) -> None:
    a, b = new_member(engine, store, "A"), new_member(engine, store, "B")
    with unit_of_work(engine) as session:
        single = ledger.earn(
            session, session.merge(store), a, key="o-0", points=5, reason="order", now=T0
        )
    batch = [Earning(a, "o-0", points=5, reason="order")]  # seen before: a replay
    batch += [
        Earning(a if i % 2 else b, f"o-{i}", points=10, growth=2, reason="order", ref=f"O-{i}")
        for i in range(1, 30)
    ]
    batch.append(Earning(b, "o-2", points=10, growth=2, reason="order", ref="O-2"))  # repeat
    out = many(engine, store, batch)
    assert out[0].replayed and out[0].entry_ids == single.entry_ids
    assert not any(p.replayed for p in out[1:30])
    assert out[30].replayed and out[30].entry_ids == out[2].entry_ids
    assert balances(engine, store, [a, b]) == [(5 + 150, 0, 0, 30, 0), (140, 0, 0, 28, 0)]
    again = many(engine, store, batch)
    assert all(p.replayed for p in again)
    assert [p.entry_ids for p in again] == [p.entry_ids for p in out]


def test_a_batch_is_all_or_nothing(engine: Engine, store: Store) -> None:
    a = new_member(engine, store, "A")
    good = [Earning(a, f"o-{i}", points=1, reason="order") for i in range(3)]
    with pytest.raises(Invalid, match=r"earnings\.1\.points"):
        many(engine, store, [good[0], Earning(a, "bad", reason="order"), good[2]])
    with pytest.raises(Invalid, match=r"earnings\.2\.expires_at"):
        many(engine, store, [*good[:2], Earning(a, "x", points=1, expires_at=T0 - DAY)])
    with pytest.raises(KeyReused, match=r"earnings\.1"):
        many(engine, store, [good[0], Earning(a, "o-0", points=2, reason="order")])
    with pytest.raises(NotFound):
        many(engine, store, [good[0], Earning(10**9, "o-9", points=1)])
    assert balances(engine, store, [a]) == [(0, 0, 0, 0, 0)]
    assert many(engine, store, []) == []


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(
        st.tuples(
            st.integers(0, 2),  # member
            st.integers(0, 50),  # points
            st.integers(0, 9),  # growth
            st.sampled_from([None, 0, 2]),  # pending days
            st.sampled_from([None, 1, 5]),  # expiry days after available
            st.integers(0, 40),  # key (repeats happen)
        ),
        min_size=1,
        max_size=40,
    ),
    debts=st.lists(st.integers(0, 60), min_size=3, max_size=3),
    later=st.sampled_from([0, 1, 3, 8]),
)
def test_a_batch_equals_the_same_earnings_one_by_one(
    engine: Engine,
    plan: list[tuple[int, int, int, int | None, int | None, int]],
    debts: list[int],
    later: int,
) -> None:
    """Two stores start alike (debts, pending and expiring lots); one gets the batch,
    the other the same earnings one by one: same balances, same replays."""
    stores = [new_store(engine), new_store(engine)]
    members = [[new_member(engine, s, f"M{i}") for i in range(3)] for s in stores]
    for s, ms in zip(stores, members, strict=True):
        with unit_of_work(engine) as session:
            store = session.merge(s)
            for m, debt in zip(ms, debts, strict=True):
                ledger.earn(
                    session,
                    store,
                    m,
                    key=f"seed-{m}",
                    points=30,
                    ref="S",
                    reason="seed",
                    expires_at=T0 + 2 * DAY,
                    now=T0,
                )
                ledger.earn(
                    session,
                    store,
                    m,
                    key=f"pending-{m}",
                    points=7,
                    reason="seed",
                    available_at=T0 + DAY,
                    now=T0,
                )
                ledger.clawback(
                    session,
                    store,
                    m,
                    key=f"claw-{m}",
                    points=30 + debt,
                    ref=None,
                    reason="refund",
                    now=T0,
                )
    now = T0 + later * DAY

    def earnings(ms: list[int]) -> list[Earning]:
        out = []
        first: dict[tuple[int, int], tuple[int, int, int | None, int | None]] = {}
        for who, points_, growth_, pending_, expiry_, key in plan:
            # a repeated key repeats its first payload: a replay, not a conflict
            points, growth, pending, expiry = first.setdefault(
                (who, key), (points_, growth_, pending_, expiry_)
            )
            if points == 0 and growth == 0:
                points = 1
            available = None if pending is None else now + pending * DAY
            expires = None if expiry is None else (available or now) + expiry * DAY
            out.append(
                Earning(
                    ms[who],
                    f"k-{key}-{who}",
                    points,
                    growth,
                    "order",
                    f"O-{key}",
                    available,
                    expires,
                )
            )
        return out

    batch = many(engine, stores[0], earnings(members[0]), now=now)
    single = []
    with unit_of_work(engine) as session:
        store = session.merge(stores[1])
        for e in earnings(members[1]):
            single.append(
                ledger.earn(
                    session,
                    store,
                    e.customer_id,
                    key=e.key,
                    points=e.points,
                    growth=e.growth,
                    reason=e.reason,
                    ref=e.ref,
                    available_at=e.available_at,
                    expires_at=e.expires_at,
                    now=now,
                )
            )
    assert [p.replayed for p in batch] == [p.replayed for p in single]
    assert [[(x.kind, x.amount) for x in p.entries] for p in batch] == [
        [(x.kind, x.amount) for x in p.entries] for p in single
    ]
    assert balances(engine, stores[0], members[0]) == balances(engine, stores[1], members[1])


def test_overlapping_batches_at_once_neither_deadlock_nor_double_count(
    engine: Engine, store: Store
) -> None:
    members = [new_member(engine, store, f"M{i}") for i in range(8)]
    batch = [Earning(members[i % 8], f"o-{i}", points=3, reason="order") for i in range(40)]

    def deliver(i: int) -> list[Posting]:
        return many(engine, store, batch if i % 2 else list(reversed(batch)))

    outcomes = run_concurrently(4, deliver)
    assert all(isinstance(o, list) for o in outcomes), outcomes
    assert sum(not p.replayed for o in outcomes for p in o) == 40
    assert [b[0] for b in balances(engine, store, members)] == [15] * 8
