"""Lucky draws: debited, auditable from the stored seed, budget-capped, prizes issued."""

from __future__ import annotations

from collections import Counter
from typing import Any

from patron.db import unit_of_work
from patron.rewards import domain
from patron.stores.models import Store
from tests.rewards.conftest import Shop, program


def secret(shop: Shop) -> str:
    with unit_of_work(shop.engine) as session:
        store = session.get(Store, shop.store.id)
        assert store is not None
        return store.signing_secret


def test_draws_are_recomputable_from_the_stored_seed(shop: Shop) -> None:
    cid = shop.customer("C-1", points=100_000)
    key_of: dict[int, str] = {}
    won: Counter[str] = Counter()
    prize_points = 0
    for i in range(40):
        res = shop.redeem("C-1", "draw", key=f"draw-{i}")
        assert res.status_code == 201, res.text
        body = res.json()
        key_of[body["id"]] = f"draw-{i}"
        won[body["prize_id"]] += 1
        prize_points += body["prize_points"]
        # the audit as an auditor reads it
        audit = shop.client.get(f"/v1/redemptions/{body['id']}", headers=shop.read).json()["draw"]
        assert domain.verify_draw(secret(shop), f"draw-{i}", audit), audit
        assert audit["prize_id"] == body["prize_id"]
        assert audit["seed"] == domain.draw_seed(secret(shop), f"draw-{i}").hex()
        prize = next(p for p in program()["rewards"][-1]["prizes"] if p["id"] == body["prize_id"])
        assert body["prize_points"] == prize.get("points", 0)
        if prize.get("reward"):  # a coupon, issued without charging its 100 points
            child = body["prize"]
            assert child["reward_id"] == "coupon-10" and child["points"] == 0
            assert child["coupon"]["status"] == "active"
        else:
            assert body["prize"] is None
    assert sum(won.values()) == 40 and len(won) >= 3, won  # several prizes came up
    assert shop.points("C-1") == 100_000 - 40 * 10 + prize_points
    # replaying a draw never draws again
    again = shop.redeem("C-1", "draw", key="draw-0").json()
    assert again["replayed"] and again["draw"]["roll"] == next(
        shop.client.get(f"/v1/redemptions/{i}", headers=shop.read).json()["draw"]["roll"]
        for i, k in key_of.items()
        if k == "draw-0"
    )
    shop.invariants(cid)


def test_the_budget_excludes_points_prizes_it_cannot_pay(shop: Shop) -> None:
    doc = program()
    draw = doc["rewards"][-1]
    draw["budget_points"] = 700  # one 600-point prize at most, then 20s until 700
    draw["prizes"] = [
        {"id": "big", "name": "600", "weight": 50, "points": 600},
        {"id": "small", "name": "20", "weight": 50, "points": 20},
        {"id": "none", "name": "Thanks", "weight": 1},
    ]
    shop.apply(doc)
    shop.customer("C-1", points=100_000)
    results: list[dict[str, Any]] = [shop.redeem("C-1", "draw").json() for _ in range(30)]
    given = sum(r["prize_points"] for r in results)
    assert given <= 700
    assert sum(r["prize_id"] == "big" for r in results) <= 1
    big_at = next((n for n, r in enumerate(results) if r["prize_id"] == "big"), None)
    if big_at is not None:  # after it, big is excluded for the budget
        later = results[big_at + 1 :]
        assert all({"prize_id": "big", "reason": "budget exhausted"} in r["draw"]["excluded"]
                   for r in later)  # fmt: skip
    assert any(r["draw"]["excluded"] for r in results)


def test_cancelling_a_draw_returns_its_cost_and_takes_back_its_prize(shop: Shop) -> None:
    doc = program()
    draw = doc["rewards"][-1]
    draw["prizes"] = [{"id": "coupon", "name": "C", "weight": 1, "reward": "coupon-10"}]
    shop.apply(doc)
    cid = shop.customer("C-1", points=1000)
    body = shop.redeem("C-1", "draw").json()
    assert body["prize"]["coupon"]["status"] == "active" and shop.points("C-1") == 990
    res = shop.client.post(f"/v1/redemptions/{body['id']}/cancel", headers=shop.admin).json()
    assert res["status"] == "cancelled" and res["prize"]["status"] == "cancelled"
    assert res["prize"]["coupon"]["status"] == "void"
    assert shop.points("C-1") == 1000
    # the prize itself is cancelled through its draw
    child = shop.client.post(f"/v1/redemptions/{body['prize']['id']}/cancel", headers=shop.admin)
    assert child.status_code == 409

    draw["prizes"] = [{"id": "pts", "name": "P", "weight": 1, "points": 500}]
    shop.apply(doc)
    body = shop.redeem("C-1", "draw").json()
    assert shop.points("C-1") == 1490
    shop.client.post(f"/v1/redemptions/{body['id']}/cancel", headers=shop.admin)
    assert shop.points("C-1") == 1000
    assert shop.catalogue()["draw"]["issued"] == 0
    shop.invariants(cid)


def test_a_draw_with_nothing_left_to_give_is_refused(shop: Shop) -> None:
    doc = program()
    draw = doc["rewards"][-1]
    draw["budget_points"] = 10
    draw["prizes"] = [{"id": "big", "name": "600", "weight": 1, "points": 600}]
    shop.apply(doc)
    shop.customer("C-1", points=100)
    res = shop.redeem("C-1", "draw")
    assert res.status_code == 409 and res.json()["reason"] == "out_of_stock"
    assert shop.points("C-1") == 100
