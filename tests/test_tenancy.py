"""Two stores sending the same external ids never see or change each other's data."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from patron.auth import Scope
from patron.customers.models import Consent, Customer, Touchpoint
from patron.db import unit_of_work
from patron.orders.models import Order, OrderLine, Product, Refund
from patron.stores.models import Store
from tests.conftest import key_headers, new_store


class Tenant:
    def __init__(self, engine: Engine, total: str, email: str) -> None:
        self.store = new_store(engine)
        self.key = key_headers(engine, self.store, Scope.admin)
        self.total = total  # the price of SKU-1 in this store: tells the stores apart
        self.email = email


@pytest.fixture
def a(engine: Engine) -> Tenant:
    return Tenant(engine, "10.00", "alice@a.example")


@pytest.fixture
def b(engine: Engine) -> Tenant:
    return Tenant(engine, "20.00", "bob@b.example")


def customer(t: Tenant, ext: str = "C-1") -> dict[str, Any]:
    return {
        "external_id": ext,
        "email": t.email,
        "consents": [{"channel": "email", "granted": True, "source": "checkout"}],
    }


def product(t: Tenant) -> dict[str, Any]:
    return {"sku": "SKU-1", "name": "Tea", "price": t.total, "currency": "CNY"}


def order(t: Tenant, ext: str = "O-1", customer_ext: str = "C-1") -> dict[str, Any]:
    return {
        "external_id": ext,
        "customer_external_id": customer_ext,
        "currency": "CNY",
        "placed_at": "2026-01-05T10:00:00+08:00",
        "lines": [{"external_id": "L1", "sku": "SKU-1", "quantity": 2, "unit_price": t.total}],
    }


def refund(ext: str = "R-1", order_ext: str = "O-1") -> dict[str, Any]:
    return {
        "external_id": ext,
        "order_external_id": order_ext,
        "refunded_at": "2026-01-06T00:00:00Z",
        "lines": [{"line_external_id": "L1", "quantity": 1}],
    }


def seed(client: TestClient, t: Tenant) -> None:
    for path, body in [
        ("/v1/customers/C-1", customer(t)),
        ("/v1/products/SKU-1", product(t)),
        ("/v1/orders/O-1", order(t)),
        ("/v1/refunds/R-1", refund()),
    ]:
        res = client.put(path, json=body, headers=t.key)
        assert res.status_code == 201, (path, res.text)


def test_same_external_ids_make_separate_records(client: TestClient, a: Tenant, b: Tenant) -> None:
    seed(client, a)
    seed(client, b)  # all 201: B's ids are new in B although A has them
    for t in (a, b):
        got = client.get("/v1/orders/O-1", headers=t.key).json()
        assert got["total"] == str(2 * Decimal(t.total))
        assert got["refunded_total"] == t.total  # its own refund of one unit
        assert client.get("/v1/customers/C-1", headers=t.key).json()["email"] == t.email
        assert client.get("/v1/products/SKU-1", headers=t.key).json()["price"] == t.total
        assert client.get("/v1/refunds/R-1", headers=t.key).json()["amount"] == t.total
    ids = [client.get("/v1/orders/O-1", headers=t.key).json()["id"] for t in (a, b)]
    assert ids[0] != ids[1]


def test_lists_hold_only_the_callers_records(client: TestClient, a: Tenant, b: Tenant) -> None:
    seed(client, a)
    seed(client, b)
    client.put("/v1/customers/C-2", json=customer(b, "C-2"), headers=b.key)
    client.put("/v1/orders/O-2", json=order(b, "O-2", "C-2"), headers=b.key)
    for t, customers, orders in [(a, ["C-1"], ["O-1"]), (b, ["C-1", "C-2"], ["O-1", "O-2"])]:
        listed = client.get("/v1/customers", headers=t.key).json()["items"]
        assert [c["external_id"] for c in listed] == customers
        assert {c["email"] for c in listed} == {t.email}
        listed = client.get("/v1/orders", headers=t.key).json()["items"]
        assert [o["external_id"] for o in listed] == orders
        listed = client.get("/v1/products", headers=t.key).json()["items"]
        assert [p["price"] for p in listed] == [t.total]
    # filters too: B's customer C-2 and B's email do not exist in A
    assert client.get("/v1/orders?customer=C-2", headers=a.key).status_code == 404
    assert client.get(f"/v1/customers?email={b.email}", headers=a.key).json()["items"] == []
    assert client.get("/v1/customers/C-2/touchpoints", headers=a.key).status_code == 404


def test_reads_of_the_other_stores_ids_are_404(client: TestClient, a: Tenant, b: Tenant) -> None:
    seed(client, b)
    for path in [
        "/v1/customers/C-1",
        "/v1/customers/C-1/touchpoints",
        "/v1/products/SKU-1",
        "/v1/orders/O-1",
        "/v1/refunds/R-1",
    ]:
        res = client.get(path, headers=a.key)
        assert res.status_code == 404, path
    assert client.post("/v1/customers/C-1/member-token", headers=a.key).status_code == 404


def test_writes_never_change_the_other_store(
    client: TestClient, engine: Engine, a: Tenant, b: Tenant
) -> None:
    seed(client, b)
    before = client.get("/v1/customers/C-1", headers=b.key).json()
    # A sends B's ids with different content: new rows in A, B untouched
    assert client.put("/v1/customers/C-1", json=customer(a), headers=a.key).status_code == 201
    assert client.put("/v1/products/SKU-1", json=product(a), headers=a.key).status_code == 201
    paid = {**order(a), "status": "paid", "paid_at": "2026-01-05T11:00:00+08:00"}
    assert client.put("/v1/orders/O-1", json=paid, headers=a.key).status_code == 201
    bulk = {"records": [{**customer(a, "C-1"), "first_name": "Changed"}]}
    assert client.post("/v1/customers/bulk", json=bulk, headers=a.key).json()["updated"] == 1

    assert client.get("/v1/customers/C-1", headers=b.key).json() == before
    b_order = client.get("/v1/orders/O-1", headers=b.key).json()
    assert b_order["status"] == "placed" and b_order["paid_at"] is None
    assert client.get("/v1/products/SKU-1", headers=b.key).json()["price"] == b.total


def test_refund_for_the_other_stores_order_waits_in_its_own_store(
    client: TestClient, a: Tenant, b: Tenant
) -> None:
    assert client.put("/v1/orders/O-9", json=order(b, "O-9"), headers=b.key).status_code == 201
    res = client.put("/v1/refunds/R-9", json=refund("R-9", "O-9"), headers=a.key)
    assert res.status_code == 202 and res.json()["status"] == "pending"
    assert client.get("/v1/refunds/R-9", headers=a.key).json()["state"] == "pending_order"
    assert client.get("/v1/refunds/R-9", headers=b.key).status_code == 404
    assert client.get("/v1/orders/O-9", headers=b.key).json()["refunded_total"] == "0.00"
    # when A's own O-9 arrives the refund applies there, and still not in B
    assert client.put("/v1/orders/O-9", json=order(a, "O-9"), headers=a.key).status_code == 201
    assert client.get("/v1/orders/O-9", headers=a.key).json()["refunded_total"] == a.total
    assert client.get("/v1/orders/O-9", headers=b.key).json()["refunded_total"] == "0.00"


def test_member_token_sees_only_its_own_store(client: TestClient, a: Tenant, b: Tenant) -> None:
    seed(client, a)
    seed(client, b)
    client.put("/v1/orders/O-2", json=order(b, "O-2", "C-1"), headers=b.key)
    token = client.post("/v1/customers/C-1/member-token", headers=a.key).json()["token"]
    member = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/me", headers=member).json()["email"] == a.email
    mine = client.get("/v1/me/orders", headers=member).json()["items"]
    assert [(o["external_id"], o["total"]) for o in mine] == [("O-1", "20.00")]


def test_rows_per_store_in_the_database(
    client: TestClient, engine: Engine, a: Tenant, b: Tenant
) -> None:
    seed(client, a)
    seed(client, b)
    client.put("/v1/customers/C-2", json=customer(b, "C-2"), headers=b.key)
    client.put("/v1/orders/O-2", json=order(b, "O-2", "C-2"), headers=b.key)

    def counts(store: Store) -> dict[str, int]:
        with unit_of_work(engine) as s:
            per_table = {
                model.__tablename__: s.scalar(
                    select(func.count()).select_from(model).where(model.store_id == store.id)
                )
                for model in (Customer, Consent, Touchpoint, Product, Order, Refund)
            }
            per_table["order_lines"] = s.scalar(
                select(func.count())
                .select_from(OrderLine)
                .join(Order, Order.id == OrderLine.order_id)
                .where(Order.store_id == store.id)
            )
            # no row of this store points at another store's customer or order
            per_table["foreign"] = (
                s.scalar(
                    select(func.count())
                    .select_from(Order)
                    .join(Customer, Customer.id == Order.customer_id)
                    .where(Order.store_id == store.id, Customer.store_id != store.id)
                )
                + s.scalar(
                    select(func.count())
                    .select_from(Refund)
                    .join(Order, Order.id == Refund.order_id)
                    .where(Refund.store_id == store.id, Order.store_id != store.id)
                )
                + s.scalar(
                    select(func.count())
                    .select_from(Touchpoint)
                    .join(Customer, Customer.id == Touchpoint.customer_id)
                    .where(Touchpoint.store_id == store.id, Customer.store_id != store.id)
                )
            )
        return {k: int(v or 0) for k, v in per_table.items()}

    # touchpoints: signup + consent per customer, one per order, one per refund
    assert counts(a.store) == {
        "customers": 1,
        "consents": 1,
        "touchpoints": 2 + 1 + 1,
        "products": 1,
        "orders": 1,
        "refunds": 1,
        "order_lines": 1,
        "foreign": 0,
    }
    assert counts(b.store) == {
        "customers": 2,
        "consents": 2,
        "touchpoints": 4 + 2 + 1,
        "products": 1,
        "orders": 2,
        "refunds": 1,
        "order_lines": 2,
        "foreign": 0,
    }
