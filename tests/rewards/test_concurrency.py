"""Concurrent redemptions: stock is never oversold, a key is applied once, limits hold.

Each thread is a request of its own (the API, its own session and transaction). On
PostgreSQL the conditional stock update and the customer's row lock decide; on SQLite
``BEGIN IMMEDIATE`` serialises writers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.rewards.conftest import Shop, program


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


def test_twenty_four_members_race_for_five_gifts(shop: Shop) -> None:
    n = 24
    for i in range(n):
        shop.customer(f"C-{i}", points=1000)
    outcomes = run_concurrently(n, lambda i: shop.redeem(f"C-{i}", "gift"))
    statuses = sorted(r.status_code for r in outcomes)
    assert statuses == [201] * 5 + [409] * (n - 5), [r.text for r in outcomes]
    refused = [r.json() for r in outcomes if r.status_code == 409]
    assert all(r["reason"] == "out_of_stock" for r in refused)
    assert shop.catalogue()["gift"]["issued"] == 5
    winners = {r.json()["customer_external_id"] for r in outcomes if r.status_code == 201}
    for i in range(n):  # only the five winners paid
        assert shop.points(f"C-{i}") == (800 if f"C-{i}" in winners else 1000)


def test_one_key_sent_eight_times_at_once_redeems_once(shop: Shop) -> None:
    shop.customer("C-1", points=1000)
    outcomes = run_concurrently(8, lambda _i: shop.redeem("C-1", "gift", key="same"))
    assert all(r.status_code in (200, 201) for r in outcomes), [r.text for r in outcomes]
    assert sum(r.status_code == 201 for r in outcomes) == 1
    assert len({r.json()["id"] for r in outcomes}) == 1
    assert shop.points("C-1") == 800 and shop.catalogue()["gift"]["issued"] == 1


def test_a_members_limit_holds_under_concurrency(shop: Shop) -> None:
    shop.customer("C-1", points=10_000)  # coupon-10: 2 per store day
    outcomes = run_concurrently(10, lambda _i: shop.redeem("C-1", "coupon-10"))
    assert sorted(r.status_code for r in outcomes) == [201] * 2 + [409] * 8
    assert shop.points("C-1") == 9800


def test_budgeted_draws_race_without_exceeding_the_budget(shop: Shop) -> None:
    doc = program()
    draw = doc["rewards"][-1]
    draw["budget_points"] = 100
    draw["prizes"] = [
        {"id": "p", "name": "30", "weight": 9, "points": 30},
        {"id": "none", "name": "Thanks", "weight": 1},
    ]
    shop.apply(doc)
    for i in range(12):
        shop.customer(f"C-{i}", points=100)
    outcomes = run_concurrently(12, lambda i: shop.redeem(f"C-{i}", "draw"))
    assert all(r.status_code == 201 for r in outcomes), [r.text for r in outcomes]
    given = sum(r.json()["prize_points"] for r in outcomes)
    assert given <= 100 and given % 30 == 0
    assert sum(shop.points(f"C-{i}") for i in range(12)) == 12 * 90 + given
