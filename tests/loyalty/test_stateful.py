"""Random sequences of ledger events keep every invariant and match a simple model.

Two members of one store go through earns (pending, expiring, with refs), time passing,
redemptions, holds with capture/release/timeout, reversals, clawbacks with debt,
adjustments, the jobs, and replays of earlier keys (same payload: the first result;
different payload: 409). After every step each member's balances equal the model's and
``check_invariants`` finds nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine

from patron.db import unit_of_work
from patron.errors import Conflict
from patron.loyalty.service import InsufficientPoints, KeyReused, Posting, ledger
from tests.conftest import new_store
from tests.loyalty.conftest import T0, new_member
from tests.loyalty.model import BUCKETS, Member, ModelConflict, ModelShortfall

REFS = ["O-1", "O-2", "O-3"]
WHO = st.sampled_from([0, 0, 0, 1])  # mostly member A; B shares the keys
SETTINGS = settings(
    max_examples=35,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class LedgerMachine(RuleBasedStateMachine):
    engine: Engine

    def __init__(self) -> None:
        super().__init__()
        self.store = new_store(self.engine)
        self.customers = [new_member(self.engine, self.store, ext) for ext in ("A", "B")]
        self.models = {cid: Member() for cid in self.customers}
        self.now = T0
        self.keys = 0
        # successful events: (operation, customer, kwargs, entry ids) for replays
        self.done: list[tuple[str, int, dict[str, Any], list[int]]] = []
        self.holds: list[tuple[int, str]] = []
        self.redemptions: list[tuple[int, str]] = []

    # -- plumbing ----------------------------------------------------------------------

    def key(self) -> str:
        self.keys += 1
        return f"k-{self.keys}"

    def call(self, op: str, cid: int, **kwargs: Any) -> Posting:
        with unit_of_work(self.engine) as session:
            fn: Callable[..., Posting] = getattr(ledger, op)
            return fn(session, session.merge(self.store), cid, now=self.now, **kwargs)

    def event(
        self, op: str, cid: int, change: Callable[[Member], object], **kwargs: Any
    ) -> Posting | None:
        """Run an event on the model (after catching up) and on the ledger; both must
        agree on success, insufficient points or conflict."""
        model = self.models[cid].copy()
        model.catch_up(self.now)
        try:
            change(model)
        except ModelShortfall:
            with pytest.raises(InsufficientPoints):
                self.call(op, cid, **kwargs)
            return None
        except ModelConflict:
            with pytest.raises(Conflict):
                self.call(op, cid, **kwargs)
            return None
        posting = self.call(op, cid, **kwargs)
        assert not posting.replayed
        self.models[cid] = model
        self.done.append((op, cid, kwargs, posting.entry_ids))
        return posting

    def job(self, name: str) -> None:
        with unit_of_work(self.engine) as session:
            getattr(ledger, name)(session, self.now, store_id=self.store.id)
        due = {"mature": "mature", "expire": "expire", "release_expired_holds": "holds"}[name]
        for model in self.models.values():
            if model.due(self.now)[due]:
                model.catch_up(self.now)

    # -- rules -------------------------------------------------------------------------

    @initialize(
        points=st.lists(st.integers(50, 300), min_size=2, max_size=2),
        expiry_hours=st.sampled_from([None, 24, 100]),
    )
    def first_orders(self, points: list[int], expiry_hours: int | None) -> None:
        for who, amount in enumerate(points):
            self.earn(who, amount, amount // 4, 0, expiry_hours, "O-1")

    @rule(
        who=WHO,
        points=st.integers(0, 120),
        growth=st.integers(0, 60),
        pending_hours=st.sampled_from([0, 0, 12, 48]),
        expiry_hours=st.sampled_from([None, None, 6, 24, 72, 240]),
        ref=st.sampled_from([*REFS, None]),
    )
    def earn(
        self,
        who: int,
        points: int,
        growth: int,
        pending_hours: int,
        expiry_hours: int | None,
        ref: str | None,
    ) -> None:
        cid = self.customers[who]
        if points == 0 and growth == 0:
            points = 1
        available_at = self.now + timedelta(hours=pending_hours)
        expires_at = None if expiry_hours is None else available_at + timedelta(hours=expiry_hours)
        now = self.now

        def change(m: Member) -> None:
            if points:
                m.earn("points", points, now, available_at, expires_at, ref)
            if growth:
                m.earn("growth", growth, now, available_at, None, ref)

        self.event(
            "earn",
            cid,
            change,
            key=self.key(),
            points=points,
            growth=growth,
            reason="order",
            ref=ref,
            available_at=available_at,
            expires_at=expires_at,
        )

    @rule(hours=st.sampled_from([1, 7, 24, 50, 100]))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    def share(self, cid: int, cur: str, percent: int) -> int:
        """``percent`` of what the member can spend now (over 100: more than that)."""
        model = self.models[cid].copy()
        model.catch_up(self.now)
        return max(1, model.bal[cur]["available"] * percent // 100)

    @rule(who=WHO, percent=st.integers(1, 120))
    def redeem(self, who: int, percent: int) -> None:
        cid, key, now = self.customers[who], self.key(), self.now
        points = self.share(cid, "points", percent)
        posting = self.event(
            "redeem",
            cid,
            lambda m: m.redeem(key, points, now),
            key=key,
            points=points,
            reason="reward",
        )
        if posting is not None:
            self.redemptions.append((cid, key))

    @rule(who=WHO, percent=st.integers(1, 120), ttl=st.sampled_from([2, 30, 200]))
    def hold(self, who: int, percent: int, ttl: int) -> None:
        cid, key, now = self.customers[who], self.key(), self.now
        points = self.share(cid, "points", percent)
        until = now + timedelta(hours=ttl)
        posting = self.event(
            "hold",
            cid,
            lambda m: m.hold(key, points, now, until),
            key=key,
            points=points,
            reason="checkout",
            expires_at=until,
        )
        if posting is not None:
            self.holds.append((cid, key))

    @rule(pick=st.integers(0, 1000))
    def capture(self, pick: int) -> None:
        if not self.holds:
            return
        cid, hold_key = self.holds[pick % len(self.holds)]
        key = self.key()
        posting = self.event(
            "capture", cid, lambda m: m.capture(key, hold_key), key=key, hold_key=hold_key
        )
        if posting is not None:
            self.redemptions.append((cid, key))

    @rule(pick=st.integers(0, 1000))
    def release(self, pick: int) -> None:
        if not self.holds:
            return
        cid, hold_key = self.holds[pick % len(self.holds)]
        now = self.now
        self.event(
            "release", cid, lambda m: m.release(hold_key, now), key=self.key(), hold_key=hold_key
        )

    @rule(pick=st.integers(0, 1000))
    def reverse(self, pick: int) -> None:
        if not self.redemptions:
            return
        cid, original = self.redemptions[pick % len(self.redemptions)]
        now = self.now
        self.event(
            "reverse",
            cid,
            lambda m: m.reverse(original, now),
            key=self.key(),
            original_key=original,
        )

    @rule(
        who=WHO,
        ref=st.sampled_from(REFS),
        points=st.integers(0, 150),
        growth=st.integers(0, 80),
    )
    def clawback(self, who: int, ref: str, points: int, growth: int) -> None:
        cid, now = self.customers[who], self.now
        if points == 0 and growth == 0:
            growth = 1

        def change(m: Member) -> None:
            m.clawback("points", points, ref, now)
            m.clawback("growth", growth, ref, now)

        self.event(
            "clawback",
            cid,
            change,
            key=self.key(),
            points=points,
            growth=growth,
            ref=ref,
            reason="refund",
        )

    @rule(
        who=WHO,
        points=st.integers(-120, 80),
        growth=st.sampled_from([0, 0, 10, -50, -120]),
    )
    def adjust(self, who: int, points: int, growth: int) -> None:
        """Positive: that many points; negative: that percentage of the available."""
        cid, now = self.customers[who], self.now
        if points < 0:
            points = -self.share(cid, "points", -points)
        if growth < 0:
            growth = -self.share(cid, "growth", -growth)
        if points == 0 and growth == 0:
            points = 5

        def change(m: Member) -> None:
            if points:
                m.adjust("points", points, now)
            if growth:
                m.adjust("growth", growth, now)

        self.event(
            "adjust", cid, change, key=self.key(), points=points, growth=growth, reason="fix"
        )

    @rule(name=st.sampled_from(["mature", "expire", "release_expired_holds"]))
    def run_job(self, name: str) -> None:
        self.job(name)

    @rule(pick=st.integers(0, 1000))
    def replay_same(self, pick: int) -> None:
        if not self.done:
            return
        op, cid, kwargs, ids = self.done[pick % len(self.done)]
        posting = self.call(op, cid, **kwargs)
        assert posting.replayed
        assert posting.entry_ids == ids

    @rule(pick=st.integers(0, 1000), other_member=st.booleans())
    def replay_different(self, pick: int, other_member: bool) -> None:
        if not self.done:
            return
        op, cid, kwargs, _ = self.done[pick % len(self.done)]
        if other_member:
            cid = next(c for c in self.customers if c != cid)
        else:
            kwargs = {**kwargs, "reason": kwargs.get("reason", "x") + " (changed)"}
        with pytest.raises(KeyReused):
            self.call(op, cid, **kwargs)

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def matches_model_and_invariants(self) -> None:
        with unit_of_work(self.engine) as session:
            for cid, model in self.models.items():
                assert ledger.check_invariants(session, self.store, cid) == []
                b = ledger.balance(session, self.store, cid)
                real = {
                    "points": (b.points_available, b.points_pending, b.points_held, b.debt),
                    "growth": (b.growth, b.growth_pending, 0, b.growth_debt),
                }
                for cur, values in real.items():
                    assert min(values) >= 0
                    assert values == tuple(model.bal[cur][name] for name in BUCKETS), cur


def test_random_event_sequences_keep_the_ledger_consistent(engine: Engine) -> None:
    machine = type("Machine", (LedgerMachine,), {"engine": engine})
    run_state_machine_as_test(machine, settings=SETTINGS)
