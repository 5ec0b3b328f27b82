"""Concurrent events on one member: no overdraft, no double credit, no unexpected error.

Each thread runs its own unit of work, as concurrent requests do. On PostgreSQL the
account's row lock serialises them; on SQLite ``BEGIN IMMEDIATE`` does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from patron.db import unit_of_work
from patron.loyalty.service import InsufficientPoints, Posting, ledger
from patron.stores.models import Store
from tests.loyalty.conftest import T0, new_member


def run_concurrently(n: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # recorded, asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _event(engine: Engine, store: Store, op: str, member: int, **kwargs: Any) -> Posting:
    with unit_of_work(engine) as session:
        fn: Callable[..., Posting] = getattr(ledger, op)
        return fn(session, session.merge(store), member, now=T0, **kwargs)


def _balance_ok(engine: Engine, store: Store, member: int) -> int:
    with unit_of_work(engine) as session:
        assert ledger.check_invariants(session, store, member) == []
        return ledger.balance(session, store, member).points_available


def test_fifty_redeems_of_ten_against_a_hundred(engine: Engine, store: Store) -> None:
    member = new_member(engine, store)
    for round_ in range(5):
        _event(engine, store, "earn", member, key=f"earn-{round_}", points=100, reason="order")
        outcomes = run_concurrently(
            50,
            lambda i, r=round_: _event(  # type: ignore[misc]
                engine, store, "redeem", member, key=f"r-{r}-{i}", points=10, reason="gift"
            ),
        )
        applied = [o for o in outcomes if isinstance(o, Posting)]
        refused = [o for o in outcomes if isinstance(o, InsufficientPoints)]
        assert len(applied) == 10, outcomes
        assert len(refused) == 40, [o for o in outcomes if not isinstance(o, Posting)]
        assert all(r.status == 409 and r.extra["requested"] == 10 for r in refused)
        assert _balance_ok(engine, store, member) == 0


def test_an_event_delivered_one_to_five_times_at_once_is_applied_once(
    engine: Engine, store: Store
) -> None:
    member = new_member(engine, store)
    for copies in range(1, 6):
        outcomes = run_concurrently(
            copies,
            lambda _i, c=copies: _event(  # type: ignore[misc]
                engine, store, "earn", member, key=f"order:O-{c}", points=7, reason="order"
            ),
        )
        assert all(isinstance(o, Posting) for o in outcomes), outcomes
        assert sum(not o.replayed for o in outcomes) == 1
        assert len({tuple(o.entry_ids) for o in outcomes}) == 1
    assert _balance_ok(engine, store, member) == 7 * 5


def test_first_events_of_a_new_member_race_to_create_the_account(
    engine: Engine, store: Store
) -> None:
    member = new_member(engine, store, "NEW")
    outcomes = run_concurrently(
        12,
        lambda i: _event(engine, store, "earn", member, key=f"e-{i % 6}", points=5, reason="x"),
    )
    assert all(isinstance(o, Posting) for o in outcomes), outcomes
    assert sum(not o.replayed for o in outcomes) == 6
    assert _balance_ok(engine, store, member) == 30


def test_holds_captures_and_releases_race_without_double_resolution(
    engine: Engine, store: Store
) -> None:
    member = new_member(engine, store)
    _event(engine, store, "earn", member, key="earn", points=100, reason="order")
    _event(engine, store, "hold", member, key="hold", points=60, reason="checkout")

    def resolve(i: int) -> Posting:
        op = "capture" if i % 2 == 0 else "release"
        return _event(engine, store, op, member, key=f"{op}-{i}", hold_key="hold")

    outcomes = run_concurrently(8, resolve)
    applied = [o for o in outcomes if isinstance(o, Posting)]
    assert len(applied) == 1, outcomes
    assert all(isinstance(o, Posting) or o.status == 409 for o in outcomes), outcomes
    with unit_of_work(engine) as session:
        assert ledger.check_invariants(session, store, member) == []
        b = ledger.balance(session, store, member)
    assert b.points_held == 0 and b.points_available in (40, 100)
