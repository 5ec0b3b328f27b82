"""The ledger service on both databases: each rule on a worked example."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from patron.db import unit_of_work
from patron.errors import Conflict, Invalid, NotFound
from patron.loyalty.models import (
    Currency,
    EntryKind,
    LoyaltyAccount,
    LoyaltyEntry,
    LoyaltyLot,
    LoyaltyLotUse,
)
from patron.loyalty.service import Balance, InsufficientPoints, KeyReused, Posting, ledger
from patron.stores.models import Store
from tests.conftest import new_store
from tests.loyalty.conftest import T0, new_member

DAY = timedelta(days=1)


class Ledger:
    """Calls the service in one unit of work each, like a request or a job would."""

    def __init__(self, engine: Engine, store: Store, member: int) -> None:
        self.engine, self.store, self.member = engine, store, member

    def __getattr__(self, op: str) -> Callable[..., Posting]:
        def call(**kwargs: Any) -> Posting:
            kwargs.setdefault("now", T0)
            with unit_of_work(self.engine) as session:
                fn: Callable[..., Posting] = getattr(ledger, op)
                return fn(session, session.merge(self.store), self.member, **kwargs)

        return call

    def job(self, name: str, now: Any) -> int:
        with unit_of_work(self.engine) as session:
            written: int = getattr(ledger, name)(session, now, store_id=self.store.id)
            return written

    def balance(self) -> Balance:
        with unit_of_work(self.engine) as session:
            assert ledger.check_invariants(session, self.store, self.member) == []
            return ledger.balance(session, self.store, self.member)

    def count(self) -> int:
        """Entries of this store."""
        with unit_of_work(self.engine) as session:
            query = select(func.count()).where(LoyaltyEntry.store_id == self.store.id)
            return int(session.scalar(query) or 0)

    def lots(self) -> dict[str | None, int]:
        with unit_of_work(self.engine) as session:
            rows = session.execute(
                select(LoyaltyLot.ref, LoyaltyLot.remaining).where(
                    LoyaltyLot.store_id == self.store.id
                )
            )
            return {ref: remaining for ref, remaining in rows}


@pytest.fixture
def book(engine: Engine, store: Store, member: int) -> Ledger:
    return Ledger(engine, store, member)


def test_earn_is_idempotent_and_a_changed_payload_is_a_409(book: Ledger) -> None:
    first = book.earn(key="order:O-1", points=100, growth=30, reason="order O-1", ref="O-1")
    assert [(e.kind, e.currency, e.amount) for e in first.entries] == [
        (EntryKind.earn, Currency.points, 100),
        (EntryKind.earn, Currency.growth, 30),
    ]
    again = book.earn(
        key="order:O-1", points=100, growth=30, reason="order O-1", ref="O-1", now=T0 + DAY
    )
    assert again.replayed and again.entry_ids == first.entry_ids
    with pytest.raises(KeyReused) as err:
        book.earn(key="order:O-1", points=101, growth=30, reason="order O-1", ref="O-1")
    assert err.value.status == 409
    b = book.balance()
    assert (b.points_available, b.growth) == (100, 30)
    assert book.count() == 2


def test_same_key_for_another_member_is_a_conflict(
    engine: Engine, store: Store, book: Ledger
) -> None:
    book.earn(key="k", points=5, reason="x")
    other = Ledger(engine, store, new_member(engine, store, "C-2"))
    with pytest.raises(KeyReused):
        other.earn(key="k", points=5, reason="x")
    assert other.balance().points_available == 0


def test_keys_are_per_store(engine: Engine, book: Ledger) -> None:
    book.earn(key="k", points=5, reason="x")
    store2 = new_store(engine)
    other = Ledger(engine, store2, new_member(engine, store2, "C-1"))
    assert not other.earn(key="k", points=5, reason="x").replayed


def test_member_of_another_store_is_not_found(engine: Engine, book: Ledger) -> None:
    store2 = new_store(engine)
    with pytest.raises(NotFound):
        Ledger(engine, store2, book.member).earn(key="k", points=5, reason="x")


def test_invalid_input_is_refused(book: Ledger) -> None:
    with pytest.raises(Invalid, match="points"):
        book.earn(key="k", points=0, reason="x")
    with pytest.raises(Invalid, match="points"):
        book.redeem(key="k", points=-1, reason="x")
    with pytest.raises(Invalid, match="reason"):
        book.earn(key="k", points=1, reason=" ")
    with pytest.raises(Invalid, match="reserved"):
        book.earn(key="patron:mature:1", points=1, reason="x")
    with pytest.raises(Invalid, match="expires_at"):
        book.earn(key="k", points=1, reason="x", available_at=T0 + DAY, expires_at=T0 + DAY)
    assert book.count() == 0


def test_pending_points_mature_once(book: Ledger) -> None:
    book.earn(key="e", points=80, growth=8, reason="order", available_at=T0 + 7 * DAY)
    b = book.balance()
    assert (b.points_available, b.points_pending, b.growth, b.growth_pending) == (0, 80, 0, 8)
    with pytest.raises(InsufficientPoints):
        book.redeem(key="r", points=1, reason="x", now=T0 + 6 * DAY)
    assert book.job("mature", T0 + 6 * DAY) == 0
    assert book.job("mature", T0 + 7 * DAY) == 2
    assert book.job("mature", T0 + 8 * DAY) == 0
    b = book.balance()
    assert (b.points_available, b.points_pending, b.growth, b.growth_pending) == (80, 0, 8, 0)


def test_an_event_after_available_at_matures_without_the_job(book: Ledger) -> None:
    book.earn(key="e", points=80, reason="order", available_at=T0 + DAY)
    book.redeem(key="r", points=50, reason="x", now=T0 + DAY)
    assert book.balance().points_available == 30
    assert book.job("mature", T0 + 2 * DAY) == 0


def test_redemptions_take_the_soonest_expiring_lots_first(book: Ledger) -> None:
    book.earn(key="never", points=100, reason="x", ref="never")
    book.earn(key="late", points=100, reason="x", ref="late", expires_at=T0 + 30 * DAY)
    book.earn(key="soon", points=100, reason="x", ref="soon", expires_at=T0 + 10 * DAY)
    book.redeem(key="r", points=150, reason="x")
    assert book.lots() == {"never": 100, "late": 50, "soon": 0}


def test_expiry_job_expires_each_lot_once(book: Ledger) -> None:
    book.earn(key="a", points=100, reason="x", expires_at=T0 + DAY)
    book.earn(key="b", points=50, reason="x", expires_at=T0 + 2 * DAY)
    book.redeem(key="r", points=30, reason="x")
    assert book.job("expire", T0 + DAY) == 1
    assert book.job("expire", T0 + DAY) == 0
    assert book.balance().points_available == 50
    assert book.job("expire", T0 + 3 * DAY) == 1
    assert book.balance().points_available == 0
    with unit_of_work(book.engine) as session:
        liability = ledger.liability(session, book.store, Decimal("0.01"))
    assert liability.points_expired == 120 and liability.points_earned == 150
    assert liability.breakage_rate == Decimal("0.8000")


def test_points_expiring_soon_for_reminders(book: Ledger) -> None:
    book.earn(key="a", points=10, reason="x", expires_at=T0 + 5 * DAY)
    book.earn(key="b", points=20, reason="x", expires_at=T0 + 20 * DAY)
    book.earn(key="c", points=40, reason="x", expires_at=T0 + 60 * DAY)
    with unit_of_work(book.engine) as session:
        soon = ledger.expiring_soon(session, book.store, timedelta(days=30), now=T0)
        mine = ledger.expiring(session, book.store, book.member, timedelta(days=30), now=T0)
    assert [(e.customer_id, e.points, e.first_expiry) for e in soon] == [
        (book.member, 30, T0 + 5 * DAY)
    ]
    assert mine == [(T0 + 5 * DAY, 10), (T0 + 20 * DAY, 20)]


def test_reversal_returns_points_to_exactly_their_lots(book: Ledger) -> None:
    book.earn(key="a", points=50, reason="x", ref="a", expires_at=T0 + 10 * DAY)
    book.earn(key="b", points=50, reason="x", ref="b", expires_at=T0 + 20 * DAY)
    book.redeem(key="r", points=80, reason="gift")
    assert book.lots() == {"a": 0, "b": 20}
    book.redeem(key="r2", points=10, reason="gift")
    reversal = book.reverse(key="undo", original_key="r")
    assert [(e.kind, e.amount) for e in reversal.entries] == [(EntryKind.reverse, 80)]
    assert book.lots() == {"a": 50, "b": 40}
    assert book.reverse(key="undo", original_key="r").replayed
    with pytest.raises(Conflict, match="already reversed"):
        book.reverse(key="undo-2", original_key="r")
    with pytest.raises(Invalid, match="only a redemption"):
        book.reverse(key="undo-3", original_key="a")
    with pytest.raises(NotFound):
        book.reverse(key="undo-4", original_key="nope")
    assert book.balance().points_available == 90


def test_points_returned_to_an_expired_lot_expire_at_once(book: Ledger) -> None:
    book.earn(key="a", points=50, reason="x", ref="a", expires_at=T0 + DAY)
    book.earn(key="b", points=50, reason="x", ref="b")
    book.redeem(key="r", points=70, reason="gift")  # 50 from a, 20 from b
    reversal = book.reverse(key="undo", original_key="r", now=T0 + 2 * DAY)
    assert [(e.kind, e.amount) for e in reversal.entries] == [
        (EntryKind.reverse, 70),
        (EntryKind.expire, -50),
    ]
    assert book.lots() == {"a": 0, "b": 50}
    assert book.balance().points_available == 50


def test_hold_then_capture_then_reverse(book: Ledger) -> None:
    book.earn(key="e", points=100, reason="x")
    hold = book.hold(key="h", points=60, reason="checkout", ref="cart-1")
    assert [(e.kind, e.amount, e.held_delta) for e in hold.entries] == [(EntryKind.hold, 0, 60)]
    b = book.balance()
    assert (b.points_available, b.points_held) == (40, 60)
    with pytest.raises(InsufficientPoints):
        book.redeem(key="r", points=41, reason="x")
    capture = book.capture(key="c", hold_key="h")
    assert [(e.kind, e.amount) for e in capture.entries] == [(EntryKind.redeem, -60)]
    assert book.capture(key="c", hold_key="h").replayed
    with pytest.raises(Conflict, match="captured"):
        book.release(key="rel", hold_key="h")
    b = book.balance()
    assert (b.points_available, b.points_held) == (40, 0)
    book.reverse(key="undo", original_key="c")
    assert book.balance().points_available == 100


def test_release_and_expired_holds(book: Ledger) -> None:
    book.earn(key="e", points=100, reason="x")
    book.hold(key="h1", points=30, reason="checkout")
    book.release(key="r1", hold_key="h1")
    with pytest.raises(Conflict, match="released"):
        book.capture(key="c1", hold_key="h1")
    book.hold(key="h2", points=30, reason="checkout", expires_at=T0 + timedelta(minutes=10))
    with pytest.raises(NotFound):
        book.capture(key="c2", hold_key="e")
    later = T0 + timedelta(minutes=11)
    with pytest.raises(Conflict, match="expired"):
        book.capture(key="c2", hold_key="h2", now=later)
    assert book.job("release_expired_holds", later) == 1
    assert book.job("release_expired_holds", later) == 0
    b = book.balance()
    assert (b.points_available, b.points_held) == (100, 0)


def test_clawback_takes_the_orders_points_then_others_then_debt(book: Ledger) -> None:
    book.earn(key="o1", points=100, growth=100, reason="order", ref="O-1")
    book.earn(key="o2", points=40, reason="order", ref="O-2", available_at=T0 + 7 * DAY)
    book.earn(key="o3", points=30, reason="order", ref="O-3")
    book.redeem(key="r", points=110, reason="gift")  # O-1 and 10 of O-3 (never-expiring, older)
    claw = book.clawback(key="refund:R-1", points=100, growth=100, ref="O-1", reason="refund")
    assert [(e.currency, e.amount, e.available_delta, e.debt_delta) for e in claw.entries] == [
        (Currency.points, -100, -20, 80),
        (Currency.growth, -100, -100, 0),
    ]
    b = book.balance()
    assert (b.points_available, b.points_pending, b.debt, b.growth) == (0, 40, 80, 0)
    # limited to what O-1 earned: nothing left to take back, recorded once
    again = book.clawback(key="refund:R-2", points=10, ref="O-1", reason="refund")
    assert [(e.kind, e.amount) for e in again.entries] == [(EntryKind.clawback, 0)]
    # the debt is paid from the next available points, first the next earning...
    earned = book.earn(key="o4", points=50, reason="order", ref="O-4")
    assert [(e.kind, e.amount, e.debt_delta) for e in earned.entries] == [
        (EntryKind.earn, 50, 0),
        (EntryKind.settle, 0, -50),
    ]
    # ...then O-2 when it matures
    assert book.job("mature", T0 + 7 * DAY) == 2
    b = book.balance()
    assert (b.points_available, b.points_pending, b.debt) == (10, 0, 0)


def test_clawback_of_pending_points_before_they_mature(book: Ledger) -> None:
    book.earn(key="o1", points=100, reason="order", ref="O-1", available_at=T0 + 7 * DAY)
    book.clawback(key="refund", points=100, ref="O-1", reason="refund")
    assert book.job("mature", T0 + 8 * DAY) == 0
    b = book.balance()
    assert (b.points_available, b.points_pending, b.debt) == (0, 0, 0)


def test_adjust_records_the_api_key_and_refuses_overdraft(book: Ledger, engine: Engine) -> None:
    book.adjust(key="a1", points=20, growth=5, reason="goodwill")
    with pytest.raises(InsufficientPoints):
        book.adjust(key="a2", points=-21, reason="fix")
    book.adjust(key="a3", points=-20, growth=-5, reason="fix")
    b = book.balance()
    assert (b.points_available, b.growth) == (0, 0)
    assert book.count() == 4


def test_history_is_newest_first_with_reasons(book: Ledger) -> None:
    for n in range(5):
        book.earn(key=f"e{n}", points=10, reason=f"order {n}")
    with unit_of_work(book.engine) as session:
        page = ledger.history(session, book.store, book.member, limit=3)
        rest = ledger.history(session, book.store, book.member, limit=3, before=page[-1].id)
    assert [e.reason for e in page] == ["order 4", "order 3", "order 2"]
    assert [e.reason for e in rest] == ["order 1", "order 0"]


def test_lot_uses_link_every_taking(book: Ledger) -> None:
    book.earn(key="e", points=10, reason="x")
    book.redeem(key="r", points=4, reason="x")
    with unit_of_work(book.engine) as session:
        uses = session.execute(
            select(LoyaltyLotUse.amount, LoyaltyEntry.kind)
            .join(LoyaltyEntry, LoyaltyEntry.id == LoyaltyLotUse.entry_id)
            .where(LoyaltyEntry.store_id == book.store.id)
        ).all()
    assert [(a, k) for a, k in uses] == [(4, EntryKind.redeem)]


def test_several_events_of_one_member_in_one_transaction(book: Ledger) -> None:
    """A caller may post many events in its unit of work (bulk order import)."""
    with unit_of_work(book.engine) as session:
        store = session.merge(book.store)
        for n in range(3):
            ledger.earn(session, store, book.member, key=f"e{n}", points=10, reason="x", now=T0)
        ledger.redeem(session, store, book.member, key="r", points=25, reason="x", now=T0)
        ledger.reverse(session, store, book.member, key="v", original_key="r", now=T0)
        ledger.redeem(session, store, book.member, key="r2", points=30, reason="x", now=T0)
    assert book.balance().points_available == 0


def test_check_invariants_detects_a_tampered_balance(book: Ledger) -> None:
    book.earn(key="e", points=10, reason="x")
    with unit_of_work(book.engine) as session:
        session.execute(
            update(LoyaltyAccount)
            .where(LoyaltyAccount.store_id == book.store.id)
            .values(points_available=11)
        )
    with unit_of_work(book.engine) as session:
        problems = ledger.check_invariants(session, book.store, book.member)
    assert any("cached 11 != entries 10" in p for p in problems), problems


def test_the_database_refuses_a_negative_balance(book: Ledger) -> None:
    book.earn(key="e", points=10, reason="x")
    with pytest.raises(IntegrityError), unit_of_work(book.engine) as session:
        session.execute(
            update(LoyaltyAccount)
            .where(LoyaltyAccount.store_id == book.store.id)
            .values(points_available=-1)
        )
