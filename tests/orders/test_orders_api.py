"""Orders through the API: idempotent re-delivery, lifecycle, conflicts, refunds."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def order(ext: str = "O-1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_id": ext,
        "customer_external_id": "C-1",
        "currency": "CNY",
        "placed_at": "2026-01-05T10:00:00+08:00",
        "shipping_total": "10.00",
        "lines": [
            {
                "external_id": "L1",
                "sku": "SKU-1",
                "quantity": 2,
                "unit_price": "50.00",
                "discount": "5.00",
            },
            {"external_id": "L2", "sku": "SKU-2", "quantity": 1, "unit_price": "30.00"},
        ],
    }
    body.update(over)
    return body


def test_create_then_redeliver_is_a_no_op(client: TestClient, admin: dict[str, str]) -> None:
    first = client.put("/v1/orders/O-1", json=order(), headers=admin)
    assert first.status_code == 201, first.text
    again = client.put("/v1/orders/O-1", json=order(), headers=admin)
    assert again.status_code == 200
    assert again.json()["status"] == "unchanged"
    assert again.json()["id"] == first.json()["id"]
    got = client.get("/v1/orders/O-1", headers=admin).json()
    assert got["total"] == "135.00"  # 2×50 − 5 + 30 + 10 shipping
    assert got["subtotal"] == "125.00"
    assert [ln["total"] for ln in got["lines"]] == ["95.00", "30.00"]
    # the unknown customer got a stub profile and an order touchpoint
    cust = client.get("/v1/customers/C-1", headers=admin).json()
    assert cust["is_stub"] is True
    kinds = [t["kind"] for t in client.get("/v1/customers/C-1/touchpoints", headers=admin).json()]
    assert kinds == ["order"]


def test_status_advances_but_never_goes_back(client: TestClient, admin: dict[str, str]) -> None:
    assert client.put("/v1/orders/O-1", json=order(), headers=admin).status_code == 201
    paid = order(status="paid", paid_at="2026-01-05T10:05:00+08:00")
    res = client.put("/v1/orders/O-1", json=paid, headers=admin)
    assert res.status_code == 200 and res.json()["status"] == "updated"
    back = client.put("/v1/orders/O-1", json=order(status="placed"), headers=admin)
    assert back.status_code == 409
    assert back.headers["content-type"].startswith("application/problem+json")
    got = client.get("/v1/orders/O-1", headers=admin).json()
    assert got["status"] == "paid" and got["paid_at"].startswith("2026-01-05T02:05:00")


def test_changed_amounts_conflict_and_change_nothing(
    client: TestClient, admin: dict[str, str]
) -> None:
    client.put("/v1/orders/O-1", json=order(), headers=admin)
    changed = order()
    changed["lines"][0]["quantity"] = 3
    res = client.put("/v1/orders/O-1", json=changed, headers=admin)
    assert res.status_code == 409
    assert "lines" in res.json()["detail"]
    assert client.get("/v1/orders/O-1", headers=admin).json()["total"] == "135.00"


def test_wrong_total_is_422_naming_the_field(client: TestClient, admin: dict[str, str]) -> None:
    res = client.put("/v1/orders/O-9", json=order("O-9", total="1.00"), headers=admin)
    assert res.status_code == 422
    body = res.json()
    assert body["status"] == 422 and "total" in body["detail"]
    assert client.get("/v1/orders/O-9", headers=admin).status_code == 404


def test_partial_refunds_by_line_and_amount(client: TestClient, admin: dict[str, str]) -> None:
    client.put("/v1/orders/O-1", json=order(status="delivered"), headers=admin)
    r1 = {
        "external_id": "R-1",
        "order_external_id": "O-1",
        "refunded_at": "2026-01-10T00:00:00Z",
        "lines": [{"sku": "SKU-1", "quantity": 1}],
    }
    res = client.put("/v1/refunds/R-1", json=r1, headers=admin)
    assert res.status_code == 201, res.text
    assert client.put("/v1/refunds/R-1", json=r1, headers=admin).json()["status"] == "unchanged"
    got = client.get("/v1/orders/O-1", headers=admin).json()
    assert got["refunded_total"] == "47.50"  # half of the 95.00 line
    assert got["lines"][0]["refunded_quantity"] == 1
    # too much: only 87.50 left
    r2 = {
        "external_id": "R-2",
        "order_external_id": "O-1",
        "refunded_at": "2026-01-11T00:00:00Z",
        "amount": "87.51",
    }
    res = client.put("/v1/refunds/R-2", json=r2, headers=admin)
    assert res.status_code == 422
    r2["amount"] = "87.50"
    assert client.put("/v1/refunds/R-2", json=r2, headers=admin).status_code == 201
    got = client.get("/v1/orders/O-1", headers=admin).json()
    assert got["status"] == "refunded" and got["refunded_total"] == "135.00"
    # a different body under a known refund id is refused
    r2["amount"] = "1.00"
    assert client.put("/v1/refunds/R-2", json=r2, headers=admin).status_code == 409


def test_refund_before_its_order_waits_then_applies(
    client: TestClient, admin: dict[str, str]
) -> None:
    early = {
        "external_id": "R-9",
        "order_external_id": "O-5",
        "refunded_at": "2026-01-10T00:00:00Z",
        "amount": "20.00",
    }
    res = client.put("/v1/refunds/R-9", json=early, headers=admin)
    assert res.status_code == 202 and res.json()["status"] == "pending"
    assert client.put("/v1/orders/O-5", json=order("O-5"), headers=admin).status_code == 201
    assert client.get("/v1/orders/O-5", headers=admin).json()["refunded_total"] == "20.00"
    assert client.get("/v1/refunds/R-9", headers=admin).json()["state"] == "applied"


def test_bulk_reports_each_record(client: TestClient, admin: dict[str, str]) -> None:
    records = [order(f"B-{i}") for i in range(5)]
    records[2] = {**records[2], "currency": "not a currency"}
    records.append(order("B-0"))  # a repeat within the batch
    res = client.post("/v1/orders/bulk", json={"records": records}, headers=admin)
    assert res.status_code == 200, res.text
    body = res.json()
    assert [r["status"] for r in body["results"]] == [
        "created",
        "created",
        "error",
        "created",
        "created",
        "unchanged",
    ]
    assert body["results"][2]["errors"][0]["field"] == "currency"
    assert (body["created"], body["failed"], body["unchanged"]) == (4, 1, 1)
    again = client.post("/v1/orders/bulk", json={"records": records[:2]}, headers=admin).json()
    assert again["unchanged"] == 2


def test_atomic_bulk_writes_nothing_on_one_bad_record(
    client: TestClient, admin: dict[str, str]
) -> None:
    records = [order("A-1"), order("A-2", lines=[{"quantity": 0, "unit_price": "1"}])]
    res = client.post("/v1/orders/bulk?atomic=true", json={"records": records}, headers=admin)
    assert res.status_code == 422
    assert client.get("/v1/orders/A-1", headers=admin).status_code == 404


def test_profile_embedded_in_an_order_fills_in_but_never_erases(
    client: TestClient, admin: dict[str, str]
) -> None:
    full = {
        "external_id": "C-1",
        "email": "li@example.com",
        "birthday": "1990-05-01",
        "attributes": {"skin_type": "dry"},
        "first_name": "Li",
    }
    assert client.put("/v1/customers/C-1", json=full, headers=admin).status_code == 201
    embedded = {"external_id": "C-1", "email": "new@example.com", "first_name": "Li"}
    res = client.put("/v1/orders/O-1", json=order(customer=embedded), headers=admin)
    assert res.status_code == 201, res.text
    got = client.get("/v1/customers/C-1", headers=admin).json()
    assert got["email"] == "new@example.com"
    assert got["birthday"] == "1990-05-01" and got["attributes"] == {"skin_type": "dry"}
    # the store's own full profile, sent again, is applied (not mistaken for a repeat)
    again = client.put("/v1/customers/C-1", json=full, headers=admin)
    assert again.json()["status"] == "updated"
    assert client.get("/v1/customers/C-1", headers=admin).json()["email"] == "li@example.com"
