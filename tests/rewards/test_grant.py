"""Giving a reward free of points (service recovery): stock taken, coupon issued, once."""

from __future__ import annotations

import pytest

from patron.db import unit_of_work
from patron.errors import Invalid
from patron.loyalty.service import KeyReused
from patron.rewards.service import rewards
from tests.rewards.conftest import Shop


def test_a_grant_issues_the_coupon_without_points_once_per_key(shop: Shop) -> None:
    cid = shop.customer("G-1", points=0)
    with unit_of_work(shop.engine) as session:
        store = session.merge(shop.store)
        first = rewards.grant(session, store, cid, "coupon-10", key="recovery-1")
        again = rewards.grant(session, store, cid, "coupon-10", key="recovery-1")
        assert first.coupon is not None and again.coupon is not None
        assert again.coupon.code == first.coupon.code and again.replayed
        assert first.redemption.points == 0
        with pytest.raises(KeyReused):
            rewards.grant(session, store, cid, "pct-15", key="recovery-1")
    assert shop.points("G-1") == 0  # nothing was charged, nothing went negative
    assert shop.catalogue()["coupon-10"]["issued"] == 1
    shop.invariants(cid)


def test_a_grant_takes_stock_and_cancelling_it_returns_the_stock(shop: Shop) -> None:
    cid = shop.customer("G-2")
    with unit_of_work(shop.engine) as session:
        store = session.merge(shop.store)
        given = rewards.grant(session, store, cid, "gift", key="sorry-gift")
    assert shop.catalogue()["gift"]["issued"] == 1
    with unit_of_work(shop.engine) as session:
        rewards.cancel(session, session.merge(shop.store), given.redemption.id)
    assert shop.catalogue()["gift"]["issued"] == 0


def test_points_as_cash_and_draws_cannot_be_given(shop: Shop) -> None:
    cid = shop.customer("G-3")
    with unit_of_work(shop.engine) as session:
        store = session.merge(shop.store)
        for reward in ("cash", "draw"):
            with pytest.raises(Invalid, match=reward):
                rewards.grant(session, store, cid, reward, key=f"no-{reward}")
