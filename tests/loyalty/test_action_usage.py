"""A reported action locks and counts only the usage rows of the capped rules that can
fire for it, caps and budgets stay exact under concurrency, a new programme version is
used at once, and the answer is what FastAPI's own renderer would send."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import yaml
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from patron.db import unit_of_work
from patron.loyalty.models import RuleUsage
from patron.loyalty.program import ProgramConfig, parse
from patron.loyalty.schemas import ActionOut
from tests.loyalty.test_actions import EXAMPLE, apply
from tests.rewards.conftest import Shop, make_shop


@pytest.fixture
def shop(client: TestClient, engine: Engine) -> Shop:
    return make_shop(client, engine)


def program(**rules: dict[str, Any]) -> ProgramConfig:
    """The example programme, its rules replaced or added by id (None: removed)."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    by_id = {r["id"]: r for r in data["rules"]}
    for rule_id, rule in rules.items():
        by_id[rule_id] = {"id": rule_id, "name": {"en": rule_id}, **rule}
    data["rules"] = [r for r in by_id.values() if r.get("event")]
    return parse(data)


def act(shop: Shop, ext: str, kind: str, key: str) -> Any:
    body = {"kind": kind, "key": key}
    return shop.client.post(f"/v1/customers/{ext}/actions", json=body, headers=shop.ingest)


def usage(shop: Shop) -> dict[tuple[str, int], int]:
    with unit_of_work(shop.engine) as session:
        rows = session.scalars(select(RuleUsage).where(RuleUsage.store_id == shop.store.id))
        return {(r.rule_id, r.customer_id): r.points for r in rows}


def test_a_share_touches_only_the_share_rules_usage(shop: Shop) -> None:
    apply(shop.engine, shop.store, program())
    cid = shop.customer("M-1")
    res = act(shop, "M-1", "share", "s-1")
    assert res.status_code == 201, res.text
    # The example also caps birthday, Singles' Day (a store-wide budget) and reviews:
    # a share neither creates nor locks their rows.
    assert usage(shop) == {("share", cid): 5}
    assert act(shop, "M-1", "review", "r-1").json()["points"] == 20
    assert usage(shop) == {("share", cid): 5, ("review", cid): 20}
    # The daily cap of 5 is spent: a second share earns nothing and counts nothing.
    second = act(shop, "M-1", "share", "s-2")
    assert second.status_code == 201 and second.json()["points"] == 0
    assert usage(shop)[("share", cid)] == 5
    assert shop.points("M-1") == 25


def test_a_spent_exclusive_rule_lets_the_next_capped_rule_fire(shop: Shop) -> None:
    """The first share's evaluation has the budget rule stopped by the exclusive one;
    once the exclusive rule's cap is spent the budget rule fires, so it must have been
    locked and counted too."""
    apply(
        shop.engine,
        shop.store,
        program(
            share={
                "event": "share",
                "priority": 10,
                "stacking": "exclusive",
                "effect": {"bonus": 5},
                "caps": {"per_customer": 5, "period": "day"},
            },
            **{
                "share-budget": {
                    "event": "share",
                    "priority": 20,
                    "effect": {"bonus": 3},
                    "caps": {"budget": 4},
                }
            },
        ),
    )
    cid = shop.customer("M-1")
    first = act(shop, "M-1", "share", "s-1").json()
    assert [r["rule_id"] for r in first["rules"]] == ["share"] and first["points"] == 5
    second = act(shop, "M-1", "share", "s-2")
    assert second.status_code == 201, second.text
    assert [(r["rule_id"], r["points"]) for r in second.json()["rules"]] == [("share-budget", 3)]
    third = act(shop, "M-1", "share", "s-3").json()
    assert third["points"] == 1  # what is left of the budget of 4
    assert act(shop, "M-1", "share", "s-4").json()["points"] == 0
    assert usage(shop) == {("share", cid): 5, ("share-budget", 0): 4}
    assert shop.points("M-1") == 9


def test_a_budget_is_spent_exactly_once_under_concurrent_actions(shop: Shop) -> None:
    apply(
        shop.engine,
        shop.store,
        program(review={"event": "review", "effect": {"bonus": 20}, "caps": {"budget": 50}}),
    )
    members = [f"M-{n}" for n in range(6)]
    for ext in members:
        shop.customer(ext)
    barrier = threading.Barrier(len(members))
    results: dict[str, Any] = {}

    def go(ext: str) -> None:
        barrier.wait()
        results[ext] = act(shop, ext, "review", f"r-{ext}")

    threads = [threading.Thread(target=go, args=(ext,)) for ext in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 201 for r in results.values()), [r.text for r in results.values()]
    given = sorted(r.json()["points"] for r in results.values())
    assert given == [0, 0, 0, 10, 20, 20]
    assert usage(shop) == {("review", 0): 50}
    assert sum(shop.points(ext) for ext in members) == 50


def test_a_members_cap_is_spent_exactly_once_under_concurrent_actions(shop: Shop) -> None:
    share = {
        "event": "share",
        "effect": {"bonus": 4},
        "caps": {"per_customer": 10, "period": "day"},
    }
    apply(shop.engine, shop.store, program(share=share))
    cid = shop.customer("M-1")
    barrier = threading.Barrier(5)
    results: list[Any] = []

    def go(n: int) -> None:
        barrier.wait()
        results.append(act(shop, "M-1", "share", f"s-{n}"))

    threads = [threading.Thread(target=go, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 201 for r in results), [r.text for r in results]
    assert sorted(r.json()["points"] for r in results) == [0, 0, 2, 4, 4]
    assert usage(shop) == {("share", cid): 10}
    assert shop.points("M-1") == 10
    shop.invariants(cid)


def test_a_new_programme_version_is_used_at_once(shop: Shop) -> None:
    apply(shop.engine, shop.store, program())
    shop.customer("M-1")
    assert act(shop, "M-1", "share", "s-1").json()["points"] == 5
    bigger = {
        "event": "share",
        "effect": {"bonus": 7},
        "caps": {"per_customer": 100, "period": "day"},
    }
    apply(shop.engine, shop.store, program(share=bigger))
    assert act(shop, "M-1", "share", "s-2").json()["points"] == 7
    apply(shop.engine, shop.store, program())  # back to the first configuration
    assert act(shop, "M-1", "share", "s-3").json()["points"] == 0  # 5 a day, spent


def test_the_answer_is_what_fastapis_renderer_sends(shop: Shop) -> None:
    apply(shop.engine, shop.store, program())
    shop.customer("M-1", points=10)
    for key, status in (("s-1", 201), ("s-1", 200)):
        res = act(shop, "M-1", "share", key)
        assert res.status_code == status, res.text
        assert res.headers["content-type"] == "application/json"
        model = ActionOut.model_validate(res.json())
        assert res.content == JSONResponse(jsonable_encoder(model)).body
        assert json.loads(res.content)["replayed"] is (status == 200)
    missing = act(shop, "nobody", "share", "s-1")
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]
