"""Reward fixtures: a store with a programme of every reward type, members with points."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from patron.auth import Scope
from patron.db import unit_of_work
from patron.loyalty.service import ledger
from patron.stores.models import Store
from tests.conftest import key_headers, new_store

PROBLEM = "application/problem+json"

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "tiers": [
        {"code": "member", "name": "Member", "threshold": 0},
        {"code": "gold", "name": {"en": "Gold", "zh": "金卡"}, "threshold": 1000,
         "benefits": {"member_only_rewards": True}},
    ],
    "rewards": [
        {"id": "coupon-10", "type": "coupon", "name": {"en": "10 off 50", "zh": "满50减10"},
         "cost_points": 100, "discount_type": "fixed", "value": "10.00", "min_spend": "50.00",
         "validity_days": 30, "per_customer": {"count": 2, "period": "day"}},
        {"id": "pct-15", "type": "coupon", "name": "15% off", "cost_points": 50,
         "discount_type": "percent", "value": 15, "max_discount": "20.00", "validity_days": 7},
        {"id": "gift", "type": "gift", "name": "Travel set", "cost_points": 200, "sku": "G-1",
         "stock": 5},
        {"id": "serum", "type": "points_plus_cash", "name": "Serum", "cost_points": 300,
         "cash": "19.90", "sku": "S-1", "stock": 3},
        {"id": "gold-gift", "type": "gift", "name": "Gold gift", "cost_points": 10,
         "tiers": ["gold"]},
        {"id": "members", "type": "gift", "name": "Members' gift", "cost_points": 10,
         "member_only": True},
        {"id": "retired", "type": "gift", "name": "Retired", "cost_points": 10, "active": False},
        {"id": "cash", "type": "points_as_cash", "name": "Pay with points",
         "points_per_unit": 100, "max_share_percent": 20, "min_points": 100},
        {"id": "draw", "type": "lucky_draw", "name": "Lucky draw", "cost_points": 10,
         "budget_points": 1000,
         "prizes": [
             {"id": "big", "name": "600 points", "weight": 1, "points": 600},
             {"id": "small", "name": "20 points", "weight": 3, "points": 20},
             {"id": "coupon", "name": "A coupon", "weight": 2, "reward": "coupon-10"},
             {"id": "none", "name": "Thanks", "weight": 4},
         ]},
    ],
}  # fmt: skip


def program(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PROGRAM)
    doc.update(changes)
    return doc


@dataclass
class Shop:
    """A store with the programme applied and handy calls."""

    client: TestClient
    engine: Engine
    store: Store
    admin: dict[str, str]
    ingest: dict[str, str]
    read: dict[str, str]

    def apply(self, doc: dict[str, Any]) -> None:
        res = self.client.put("/v1/loyalty/program", json=doc, headers=self.admin)
        assert res.status_code in (200, 201), res.text

    def customer(self, ext: str, points: int = 0) -> int:
        res = self.client.put(f"/v1/customers/{ext}", json={"external_id": ext}, headers=self.admin)
        assert res.is_success, res.text
        cid = int(res.json()["id"])
        if points:
            self.earn(cid, points)
        return cid

    def earn(self, customer_id: int, points: int) -> None:
        with unit_of_work(self.engine) as session:
            ledger.earn(
                session,
                session.merge(self.store),
                customer_id,
                key=f"seed-{uuid.uuid4()}",
                points=points,
                reason="test points",
            )

    def member(self, ext: str) -> dict[str, str]:
        res = self.client.post(f"/v1/customers/{ext}/member-token", headers=self.admin)
        assert res.status_code == 200, res.text
        return {"Authorization": f"Bearer {res.json()['token']}"}

    def balance(self, ext: str) -> dict[str, Any]:
        res = self.client.get(f"/v1/customers/{ext}/points", headers=self.read)
        assert res.status_code == 200, res.text
        body: dict[str, Any] = res.json()
        return body

    def points(self, ext: str) -> int:
        return int(self.balance(ext)["points_available"])

    def redeem(self, ext: str, reward: str, key: str | None = None) -> Any:
        headers = {**self.ingest, "Idempotency-Key": key or str(uuid.uuid4())}
        return self.client.post(f"/v1/customers/{ext}/rewards/{reward}/redeem", headers=headers)

    def catalogue(self, ext: str | None = None) -> dict[str, dict[str, Any]]:
        url = "/v1/rewards" + (f"?customer={ext}" if ext else "")
        res = self.client.get(url, headers=self.read)
        assert res.status_code == 200, res.text
        return {item["id"]: item for item in res.json()["items"]}

    def invariants(self, customer_id: int) -> None:
        with unit_of_work(self.engine) as session:
            assert ledger.check_invariants(session, self.store, customer_id) == []


def make_shop(client: TestClient, engine: Engine, store: Store | None = None) -> Shop:
    store = store or new_store(engine)
    shop = Shop(
        client,
        engine,
        store,
        key_headers(engine, store, Scope.admin),
        key_headers(engine, store, Scope.ingest),
        key_headers(engine, store, Scope.read),
    )
    shop.apply(PROGRAM)
    return shop


@pytest.fixture
def shop(client: TestClient, engine: Engine, store: Store) -> Shop:
    return make_shop(client, engine, store)
