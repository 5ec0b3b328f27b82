"""The pure ledger rules (no database): lot order, clawback order, restore, settle."""

from __future__ import annotations

from datetime import timedelta

import pytest

from patron.loyalty.ledger import (
    Book,
    Buckets,
    Delta,
    HoldNotOpen,
    Lot,
    Shortfall,
    breakage,
    invariant_violations,
    spend_order,
)
from patron.loyalty.models import Currency, EntryKind
from tests.loyalty.conftest import T0

P = Currency.points
DAY = timedelta(days=1)


def lot(
    i: int,
    remaining: int,
    expires_in: int | None,
    *,
    pending: bool = False,
    ref: str | None = None,
    age: int = 0,
) -> Lot:
    expires = None if expires_in is None else T0 + expires_in * DAY
    return Lot(i, P, 100, remaining, pending, T0 - age * DAY, expires, ref)


def book_of(*lots: Lot, debt: int = 0) -> Book:
    available = sum(x.remaining for x in lots if not x.pending)
    pending = sum(x.remaining for x in lots if x.pending)
    return Book({P: Buckets(available, pending, 0, debt)}, list(lots), [])


def test_spend_order_soonest_expiry_first_never_expiring_last() -> None:
    lots = [
        lot(1, 10, None, age=5),
        lot(2, 10, 30),
        lot(3, 10, 3),
        lot(4, 10, None, age=9),
        lot(5, 10, 3, pending=True),
        lot(6, 0, 1),
        lot(7, 10, 0),
    ]
    assert [x.id for x in spend_order(lots, T0)] == [3, 2, 4, 1]


def test_take_raises_shortfall_and_changes_nothing() -> None:
    book = book_of(lot(1, 10, None))
    with pytest.raises(Shortfall) as err:
        book.take(P, 11, T0, kind=EntryKind.redeem, reason="x")
    assert (err.value.available, err.value.requested) == (10, 11)
    assert book.balances[P].available == 10 and book.lots[1].remaining == 10
    assert book.drain().entries == []


def test_earn_while_in_debt_settles_from_the_new_lot() -> None:
    book = book_of(debt=30)
    book.balances[P].available = 0
    book.earn(P, 50, T0, available_at=T0, expires_at=None, reason="order", ref="O-9")
    changes = book.drain()
    assert [(e.kind, e.delta) for e in changes.entries] == [
        (EntryKind.earn, Delta(available=50)),
        (EntryKind.settle, Delta(available=-30, debt=-30)),
    ]
    assert changes.new_lots[0].remaining == 20
    assert book.balances[P] == Buckets(20, 0, 0, 0)


def test_clawback_prefers_the_refs_pending_then_own_then_other_lots() -> None:
    book = book_of(
        lot(1, 30, 5, ref="O-1", pending=True),
        lot(2, 20, 50, ref="O-1"),
        lot(3, 25, 2, ref="O-2"),
        lot(4, 10, None, pending=True, ref="O-3"),
    )
    entry = book.clawback(P, 100, T0, ref="O-1", reason="refund")
    assert [(x.id, n) for x, n in entry.uses] == [(1, 30), (2, 20), (3, 25)]
    assert entry.delta == Delta(available=-45, pending=-30, debt=25)
    assert book.balances[P] == Buckets(0, 10, 0, 25)


def test_restore_into_an_expired_lot_expires_it_again_and_pays_debt_first() -> None:
    a, b = lot(1, 0, 1), lot(2, 0, None)
    book = book_of(a, b, debt=5)
    book.restore([(1, 40), (2, 60)], T0 + 2 * DAY, kind=EntryKind.reverse, reason="x", target_id=99)
    kinds = [(e.kind, e.delta.amount) for e in book.drain().entries]
    assert kinds == [(EntryKind.reverse, 100), (EntryKind.expire, -40), (EntryKind.settle, 0)]
    assert (a.remaining, b.remaining) == (0, 55)
    assert book.balances[P] == Buckets(55, 0, 0, 0)


def test_a_hold_resolves_once() -> None:
    book = book_of(lot(1, 50, None))
    hold = book.hold(20, T0, expires_at=T0 + DAY, reason="checkout", ref=None)
    assert book.balances[P] == Buckets(30, 0, 20, 0)
    book.capture(hold, T0, reason="paid", ref=None)
    with pytest.raises(HoldNotOpen):
        book.release(hold, T0, reason="x")
    assert book.balances[P] == Buckets(30, 0, 0, 0)


def test_due_transitions() -> None:
    book = book_of(lot(1, 10, 3, pending=True), lot(2, 10, 1), lot(3, 0, 1))
    book.lots[1].available_at = T0 + DAY
    assert [x.id for x in book.due_to_mature(T0 + DAY)] == [1]
    assert [x.id for x in book.due_to_expire(T0 + DAY)] == [2]


def test_invariant_violations_name_what_disagrees() -> None:
    good = Buckets(10, 0, 0, 0)
    lots = [Lot(1, P, 10, 10, False, T0, None)]
    assert invariant_violations({P: good}, {P: good}, lots, {}, [], [(1, 10, 10, 0)]) == []
    problems = invariant_violations(
        {P: Buckets(12, 0, 0, 3)}, {P: good}, lots, {1: 1}, [], [(1, 10, 10, 1)]
    )
    text = "\n".join(problems)
    for expected in (
        "cached 12 != entries 10",
        "available lots",
        "debt 3 and 12",
        "remaining 10 != amount 10 - uses 1",
        "entry 1",
    ):
        assert expected in text


def test_breakage() -> None:
    assert breakage(0, 0) is None
    assert str(breakage(1, 3)) == "0.3333"
