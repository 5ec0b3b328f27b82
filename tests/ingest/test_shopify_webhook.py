"""Shopify webhooks: signed deliveries apply once, in any order; anything else changes nothing.

The fixtures are modelled on the bodies Shopify documents for `orders/create`,
`orders/paid` and `refunds/create` (REST Admin API shapes, amounts as strings).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, func, select

from patron.customers.models import Customer, Touchpoint
from patron.db import unit_of_work
from patron.orders.models import Order, Refund
from patron.stores.models import Store
from tests.conftest import new_store

PROBLEM = "application/problem+json"
Payload = dict[str, Any]


@pytest.fixture
def load(fixtures_dir: Path) -> Callable[[str], Payload]:
    def read(name: str) -> Payload:
        return dict(json.loads((fixtures_dir / f"shopify_{name}.json").read_text()))

    return read


@pytest.fixture
def created(load: Callable[[str], Payload]) -> Payload:
    return load("orders_create")


@pytest.fixture
def paid(load: Callable[[str], Payload]) -> Payload:
    return load("orders_paid")


@pytest.fixture
def refunded(load: Callable[[str], Payload]) -> Payload:
    return load("refunds_create")


def signature(secret: str, body: bytes) -> str:
    # Written out here rather than imported, so the test checks Shopify's scheme itself.
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def deliver(
    client: TestClient,
    store: Store,
    topic: str,
    payload: Payload | bytes,
    *,
    secret: str | None = None,
    hmac_header: str | None = None,
) -> Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": f"{store.slug}.myshopify.com",
        "X-Shopify-Hmac-Sha256": hmac_header or signature(secret or store.webhook_secret, body),
    }
    return client.post(f"/v1/webhooks/shopify/{store.slug}", content=body, headers=headers)


def counts(engine: Engine, store: Store) -> dict[str, int]:
    with unit_of_work(engine) as s:
        return {
            m.__tablename__: int(
                s.scalar(select(func.count()).select_from(m).where(m.store_id == store.id)) or 0
            )
            for m in (Customer, Order, Refund, Touchpoint)
        }


def money(value: Any) -> Decimal:
    return Decimal(str(value))


# --- signed deliveries apply ----------------------------------------------------------


def test_signed_orders_create_is_applied(
    client: TestClient, store: Store, admin: dict[str, str], created: Payload
) -> None:
    res = deliver(client, store, "orders/create", created)
    assert res.status_code == 200, res.text
    assert res.json() == {
        "topic": "orders/create",
        "status": "created",
        "external_id": str(created["id"]),
    }

    got = client.get(f"/v1/orders/{created['id']}", headers=admin).json()
    assert got["status"] == "placed"  # financial_status "pending": not paid yet
    assert got["currency"] == created["currency"]
    assert money(got["total"]) == money(created["total_price"])
    assert money(got["tax_total"]) == money(created["total_tax"])
    assert money(got["shipping_total"]) == money(
        created["total_shipping_price_set"]["shop_money"]["amount"]
    )
    # the discount code's amount is the gap between line items and the order total
    assert money(got["discount_total"]) == money(created["total_discounts"])
    assert got["discount_code"] == created["discount_codes"][0]["code"]
    assert got["channel"] == created["source_name"]
    assert [
        (ln["external_id"], ln["sku"], ln["quantity"], money(ln["unit_price"]))
        for ln in got["lines"]
    ] == [
        (str(item["id"]), item["sku"], item["quantity"], money(item["price"]))
        for item in created["line_items"]
    ]
    cust = client.get(f"/v1/customers/{created['customer']['id']}", headers=admin).json()
    assert cust["email"] == created["customer"]["email"].lower()
    assert (cust["first_name"], cust["last_name"]) == (
        created["customer"]["first_name"],
        created["customer"]["last_name"],
    )
    assert cust["is_stub"] is False
    assert got["customer_external_id"] == cust["external_id"]


def test_redelivery_applies_once(
    client: TestClient,
    engine: Engine,
    store: Store,
    admin: dict[str, str],
    created: Payload,
    refunded: Payload,
) -> None:
    """Shopify retries a delivery it saw no 2xx for: 1–5 copies must count once."""
    for copies in range(1, 6):
        order_id = created["id"] + copies
        order = {**created, "id": order_id}
        refund = {**refunded, "id": refunded["id"] + copies, "order_id": order_id}
        first = deliver(client, store, "orders/create", order)
        assert first.json()["status"] == "created"
        for _ in range(copies - 1):
            again = deliver(client, store, "orders/create", order)
            assert again.status_code == 200 and again.json()["status"] == "unchanged"
        for n in range(copies):
            res = deliver(client, store, "refunds/create", refund)
            assert res.status_code == 200, res.text
            assert res.json()["status"] == ("created" if n == 0 else "unchanged")
        got = client.get(f"/v1/orders/{order_id}", headers=admin).json()
        assert money(got["refunded_total"]) == money(refunded["transactions"][0]["amount"])
    # one customer; five orders and refunds, each with one touchpoint, plus the sign-up
    assert counts(engine, store) == {
        "customers": 1,
        "orders": 5,
        "refunds": 5,
        "touchpoints": 1 + 5 + 5,
    }


@pytest.mark.parametrize("order_of_topics", ["create-then-paid", "paid-then-create"])
def test_paid_in_either_order_ends_paid(
    client: TestClient,
    store: Store,
    admin: dict[str, str],
    created: Payload,
    paid: Payload,
    order_of_topics: str,
) -> None:
    deliveries = [("orders/create", created), ("orders/paid", paid)]
    if order_of_topics == "paid-then-create":
        deliveries.reverse()
    for topic, payload in deliveries:
        res = deliver(client, store, topic, payload)
        assert res.status_code == 200, res.text
    got = client.get(f"/v1/orders/{created['id']}", headers=admin).json()
    assert got["status"] == "paid"
    assert got["paid_at"] is not None
    assert money(got["total"]) == money(paid["total_price"])
    # a late orders/create after paid is acknowledged (no Shopify retry storm) but ignored
    late = deliver(client, store, "orders/create", created)
    assert late.status_code == 200 and late.json()["status"] == "unchanged"
    assert client.get(f"/v1/orders/{created['id']}", headers=admin).json() == got


def test_refund_updates_order_and_lines(
    client: TestClient, store: Store, admin: dict[str, str], paid: Payload, refunded: Payload
) -> None:
    deliver(client, store, "orders/paid", paid)
    res = deliver(client, store, "refunds/create", refunded)
    assert res.status_code == 200 and res.json()["status"] == "created", res.text
    got = client.get(f"/v1/orders/{paid['id']}", headers=admin).json()
    assert money(got["refunded_total"]) == sum(
        money(t["amount"]) for t in refunded["transactions"] if t["kind"] == "refund"
    )
    returned = {str(r["line_item_id"]): r["quantity"] for r in refunded["refund_line_items"]}
    assert {ln["external_id"]: ln["refunded_quantity"] for ln in got["lines"]} == {
        str(item["id"]): returned.get(str(item["id"]), 0) for item in paid["line_items"]
    }
    assert got["status"] == "paid"  # partly refunded
    stored = client.get(f"/v1/refunds/{refunded['id']}", headers=admin).json()
    assert stored["state"] == "applied" and stored["reason"] == refunded["note"]


def test_refund_before_its_order_applies_when_the_order_lands(
    client: TestClient, store: Store, admin: dict[str, str], created: Payload, refunded: Payload
) -> None:
    res = deliver(client, store, "refunds/create", refunded)
    assert res.status_code == 200 and res.json()["status"] == "pending"
    deliver(client, store, "orders/create", created)
    got = client.get(f"/v1/orders/{created['id']}", headers=admin).json()
    assert money(got["refunded_total"]) == money(refunded["transactions"][0]["amount"])


def test_full_refund_marks_the_order_refunded(
    client: TestClient, store: Store, admin: dict[str, str], paid: Payload, refunded: Payload
) -> None:
    deliver(client, store, "orders/paid", paid)
    everything = copy.deepcopy(refunded)
    everything["refund_line_items"] = [
        {"line_item_id": item["id"], "quantity": item["quantity"]} for item in paid["line_items"]
    ]
    everything["transactions"][0]["amount"] = paid["total_price"]
    assert deliver(client, store, "refunds/create", everything).status_code == 200
    got = client.get(f"/v1/orders/{paid['id']}", headers=admin).json()
    assert got["status"] == "refunded"
    assert money(got["refunded_total"]) == money(paid["total_price"])


def test_failed_refund_transactions_return_no_money(
    client: TestClient, store: Store, admin: dict[str, str], paid: Payload, refunded: Payload
) -> None:
    deliver(client, store, "orders/paid", paid)
    failed = copy.deepcopy(refunded)
    failed["transactions"][0]["status"] = "failure"
    failed["refund_line_items"] = []
    res = deliver(client, store, "refunds/create", failed)
    assert res.status_code == 200 and res.json()["status"] == "ignored"
    got = client.get(f"/v1/orders/{paid['id']}", headers=admin).json()
    assert money(got["refunded_total"]) == 0


def test_cancellation_after_payment(
    client: TestClient, store: Store, admin: dict[str, str], paid: Payload
) -> None:
    deliver(client, store, "orders/paid", paid)
    cancelled = {
        **paid,
        "cancelled_at": "2026-01-06T09:00:00-05:00",
        "cancel_reason": "customer",
    }
    assert deliver(client, store, "orders/cancelled", cancelled).status_code == 200
    got = client.get(f"/v1/orders/{paid['id']}", headers=admin).json()
    assert got["status"] == "cancelled" and got["cancelled_at"] is not None


def test_guest_checkouts(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], created: Payload
) -> None:
    guest = {**created, "customer": None, "email": "guest@example.com"}
    second = {**guest, "id": created["id"] + 1, "email": "Guest@Example.com"}
    anonymous = {**guest, "id": created["id"] + 2, "email": None, "contact_email": None}
    for payload in (guest, second, anonymous):
        res = deliver(client, store, "orders/create", payload)
        assert res.status_code == 200 and res.json()["status"] == "created", res.text
    owners = [
        client.get(f"/v1/orders/{p['id']}", headers=admin).json()["customer_external_id"]
        for p in (guest, second, anonymous)
    ]
    assert owners[0] == owners[1] != owners[2]  # one profile per guest email
    profile = client.get(f"/v1/customers/{owners[0]}", headers=admin).json()
    assert profile["email"] == "guest@example.com"
    assert counts(engine, store)["customers"] == 2


# --- anything unsigned or forged changes nothing --------------------------------------


def _unsigned(client: TestClient, store: Store, body: bytes, engine: Engine) -> Response:
    return client.post(
        f"/v1/webhooks/shopify/{store.slug}",
        content=body,
        headers={"X-Shopify-Topic": "orders/create", "Content-Type": "application/json"},
    )


def _forged(client: TestClient, store: Store, body: bytes, engine: Engine) -> Response:
    fake = base64.b64encode(hashlib.sha256(body).digest()).decode()  # a hash, not an HMAC
    return deliver(client, store, "orders/create", body, hmac_header=fake)


def _other_secret(client: TestClient, store: Store, body: bytes, engine: Engine) -> Response:
    other = new_store(engine)
    return deliver(client, store, "orders/create", body, secret=other.webhook_secret)


def _other_store_url(client: TestClient, store: Store, body: bytes, engine: Engine) -> Response:
    # correctly signed by another store, sent to this store's URL
    other = new_store(engine)
    sig = signature(other.webhook_secret, body)
    return deliver(client, store, "orders/create", body, hmac_header=sig)


def _altered(client: TestClient, store: Store, body: bytes, engine: Engine) -> Response:
    sig = signature(store.webhook_secret, body)
    tampered = body.replace(b'"total_price": "', b'"total_price": "1')
    assert tampered != body
    return deliver(client, store, "orders/create", tampered, hmac_header=sig)


def _empty_header(client: TestClient, store: Store, body: bytes, engine: Engine) -> Response:
    return deliver(client, store, "orders/create", body, hmac_header=" ")


def _non_ascii_header(client: TestClient, store: Store, body: bytes, engine: Engine) -> Response:
    return client.post(
        f"/v1/webhooks/shopify/{store.slug}",
        content=body,
        headers={"X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": b"\xff\xfe=="},
    )


@pytest.mark.parametrize(
    "send",
    [
        _unsigned,
        _forged,
        _other_secret,
        _other_store_url,
        _altered,
        _empty_header,
        _non_ascii_header,
    ],
)
def test_unsigned_or_forged_deliveries_are_401_and_write_nothing(
    client: TestClient,
    engine: Engine,
    store: Store,
    admin: dict[str, str],
    created: Payload,
    send: Callable[[TestClient, Store, bytes, Engine], Response],
) -> None:
    res = send(client, store, json.dumps(created).encode(), engine)
    assert res.status_code == 401, res.text
    assert res.headers["content-type"].startswith(PROBLEM)
    assert counts(engine, store) == {"customers": 0, "orders": 0, "refunds": 0, "touchpoints": 0}
    assert client.get(f"/v1/orders/{created['id']}", headers=admin).status_code == 404


def test_unknown_store_is_the_same_401(client: TestClient, store: Store, created: Payload) -> None:
    body = json.dumps(created).encode()
    res = client.post(
        "/v1/webhooks/shopify/no-such-store",
        content=body,
        headers={
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Hmac-Sha256": signature(store.webhook_secret, body),
        },
    )
    assert res.status_code == 401
    forged = deliver(client, store, "orders/create", body, hmac_header="AAAA")
    assert res.json()["detail"] == forged.json()["detail"]  # nothing to tell them apart


# --- signed but unusable: 4xx problems, never 500 -------------------------------------


@pytest.mark.parametrize("topic", ["products/create", "orders/delete", "", "ORDERS/CREATE"])
def test_unsupported_topic_is_a_problem(
    client: TestClient, engine: Engine, store: Store, created: Payload, topic: str
) -> None:
    res = deliver(client, store, topic, created)
    assert 400 <= res.status_code < 500
    assert res.headers["content-type"].startswith(PROBLEM)
    body = res.json()
    assert body["status"] == res.status_code and "topic" in body["detail"].lower()
    assert counts(engine, store)["orders"] == 0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'"a string"',
        b"null",
        b"1e999",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"id": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    ],
    ids=["empty", "text", "binary", "array", "string", "null", "huge-number", "deep", "deep-id"],
)
@pytest.mark.parametrize("topic", ["orders/create", "refunds/create"])
def test_signed_non_object_bodies_are_422(
    client: TestClient, engine: Engine, store: Store, body: bytes, topic: str
) -> None:
    res = deliver(client, store, topic, body)
    assert res.status_code == 422, res.text
    assert res.headers["content-type"].startswith(PROBLEM)
    problem = res.json()
    assert problem["status"] == 422 and problem["errors"]
    assert all(e["field"] for e in problem["errors"])
    assert counts(engine, store)["orders"] == 0


def _broken(created: Payload, path: str, value: Any) -> Payload:
    doc = copy.deepcopy(created)
    target: Any = doc
    *parents, last = path.split(".")
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("id", None),
        ("id", {"nested": 1}),
        ("customer", "not an object"),
        ("customer", [1, 2]),
        ("customer.id", {"a": 1}),
        ("customer.email", 42),
        ("line_items", "abc"),
        ("line_items", {"0": {}}),
        ("line_items.0", "a string"),
        ("line_items.0", None),
        ("line_items.0.quantity", "two"),
        ("line_items.0.quantity", 10**400),
        ("line_items.0.quantity", 1.5),
        ("line_items.0.price", {"amount": "1"}),
        ("line_items.0.price", "NaN"),
        ("line_items.0.price", "-Infinity"),
        ("line_items.0.price", "1e400"),
        ("line_items.0.total_discount", [1]),
        ("total_price", None),
        ("total_price", "sNaN"),
        ("total_price", 10**400),
        ("total_tax", "x"),
        ("total_shipping_price_set", "10.00"),
        ("total_shipping_price_set", {"shop_money": "10.00"}),
        ("total_shipping_price_set", {"shop_money": {"amount": [1]}}),
        ("shipping_lines", "free"),
        ("shipping_lines", [None]),
        ("discount_codes", {"code": "X"}),
        ("discount_codes", "WELCOME10"),
        ("discount_codes", [None]),
        ("discount_codes", [{"code": ["X"]}]),
        ("currency", "usd1"),
        ("currency", None),
        ("created_at", None),
        ("created_at", "yesterday"),
        ("created_at", "0001-01-01T00:00:00+05:00"),
        ("created_at", "9999-12-31T23:59:59-05:00"),
        ("source_name", "x" * 300),
        ("source_name", 12345),
        ("email", "\x00@example.com"),
        ("customer.first_name", "\ud800"),
        ("customer.created_at", "not a time"),
        ("taxes_included", "yes"),
    ],
)
def test_signed_but_malformed_orders_are_422_not_500(
    client: TestClient, engine: Engine, store: Store, created: Payload, path: str, value: Any
) -> None:
    body = json.dumps(_broken(created, path, value), ensure_ascii=True).encode()
    res = deliver(client, store, "orders/create", body)
    assert res.status_code < 500, res.text
    assert res.status_code in (200, 422), res.text
    if res.status_code == 422:
        assert res.headers["content-type"].startswith(PROBLEM)
        assert all(e["field"] for e in res.json()["errors"])
        assert counts(engine, store)["orders"] == 0


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("id", None),
        ("order_id", None),
        ("order_id", [1]),
        ("refund_line_items", "abc"),
        ("refund_line_items.0", 7),
        ("refund_line_items.0.quantity", "one"),
        ("refund_line_items.0.quantity", 10**400),
        ("transactions", {"kind": "refund"}),
        ("transactions.0", "refund"),
        ("transactions.0.amount", "NaN"),
        ("transactions.0.amount", {"v": 1}),
        ("transactions.0.amount", "-5.00"),
        ("processed_at", "soon"),
        ("note", "\x00"),
    ],
)
def test_signed_but_malformed_refunds_are_4xx_not_500(
    client: TestClient, store: Store, refunded: Payload, path: str, value: Any
) -> None:
    body = json.dumps(_broken(refunded, path, value), ensure_ascii=True).encode()
    res = deliver(client, store, "refunds/create", body)
    assert res.status_code < 500, res.text
    if res.status_code >= 400:
        assert res.headers["content-type"].startswith(PROBLEM)


def test_long_platform_labels_are_cut_not_refused(
    client: TestClient, store: Store, admin: dict[str, str], created: Payload
) -> None:
    """An app's source name or a long discount code must not make Shopify retry forever."""
    long = {
        **created,
        "source_name": "app-" + "9" * 60,
        "discount_codes": [{"code": "SPRING-" + "X" * 100, "amount": "24.90", "type": "fixed"}],
    }
    res = deliver(client, store, "orders/create", long)
    assert res.status_code == 200, res.text
    got = client.get(f"/v1/orders/{created['id']}", headers=admin).json()
    assert long["source_name"].startswith(got["channel"]) and len(got["channel"]) == 32
    code = long["discount_codes"][0]["code"]
    assert code.startswith(got["discount_code"]) and len(got["discount_code"]) == 64
