"""Hostile and random input: never a 5xx, always a problem+json a client can act on.

Every write endpoint gets random JSON documents and valid bodies with one to three
fields replaced by hostile values. Bodies are encoded with ``ensure_ascii=True`` so
NaN, lone surrogates (``\\ud800``) and NUL go on the wire exactly as a client could
send them.
"""

from __future__ import annotations

import copy
import json
import urllib.parse
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patron.ingest.shopify import sign
from patron.stores.models import Store

PROBLEM = "application/problem+json"
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

HOSTILE_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "'; DROP TABLE orders; --",
    '" OR 1=1 --',
    "x" * 10_000,
    # one past the width of a database column (locale 16, channel 32, code 64, name 255)
    "x" * 17,
    "x" * 33,
    "x" * 65,
    "x" * 129,
    "x" * 256,
    "9999999999999.99",
    "NaN",
    "-Infinity",
    "1e400",
    "9" * 400,
    "0x1F",
    "null",
    "\u202e\u0645\u0631\u062d\u0628\u0627",
    "顾客🎉",
    "2026-13-45T99:99:99Z",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "2026-01-05T10:00:00",  # naive
    "CNY",
    "paid",
    "email",
]
HOSTILE_NUMBERS = [
    10**400,
    -(10**400),
    2**63,
    -(2**63) - 1,
    2**64,
    0,
    -1,
    1.5,
    1e308,
    -0.0,
    1_000_000,
]
NAN_LIKE = [float("nan"), float("inf"), float("-inf")]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(HOSTILE_NUMBERS)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(NAN_LIKE)
    | st.text(max_size=40)
    | st.sampled_from(HOSTILE_STRINGS)
)
keys = st.text(max_size=12) | st.sampled_from(
    ["external_id", "records", "lines", "\ud800", "\x00", "customer", "amount"]
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)
hostile = scalars | st.lists(scalars, max_size=3) | st.dictionaries(keys, scalars, max_size=3)


def customer_body(ext: str = "C-1") -> dict[str, Any]:
    return {
        "external_id": ext,
        "email": "mei@example.com",
        "phone": "+86 138 0000 0000",
        "first_name": "Mei",
        "birthday": "1990-04-01",
        "locale": "zh-CN",
        "timezone": "Asia/Shanghai",
        "attributes": {"tier": "gold", "tags": ["tea"], "visits": 3},
        "created_at": "2025-01-01T00:00:00+08:00",
        "consents": [{"channel": "email", "granted": True, "source": "checkout"}],
    }


def product_body(ext: str = "SKU-1") -> dict[str, Any]:
    return {"sku": ext, "name": "Oolong", "category": "tea", "price": "99.00", "currency": "CNY"}


def order_body(ext: str = "O-1") -> dict[str, Any]:
    return {
        "external_id": ext,
        "customer_external_id": "C-1",
        "customer": {"external_id": "C-1", "email": "mei@example.com"},
        "status": "paid",
        "channel": "web",
        "currency": "CNY",
        "discount_code": "WELCOME",
        "lines": [
            {
                "external_id": "L1",
                "sku": "SKU-1",
                "name": "Oolong",
                "category": "tea",
                "quantity": 2,
                "unit_price": "50.00",
                "discount": "5.00",
            }
        ],
        "discount_total": "1.00",
        "shipping_total": "10.00",
        "tax_total": "0.00",
        "total": "104.00",
        "placed_at": "2026-01-05T10:00:00+08:00",
        "paid_at": "2026-01-05T10:05:00+08:00",
    }


def refund_body(ext: str = "R-1") -> dict[str, Any]:
    return {
        "external_id": ext,
        "order_external_id": "O-1",
        "refunded_at": "2026-01-06T00:00:00Z",
        "amount": "10.00",
        "lines": [{"line_external_id": "L1", "sku": "SKU-1", "quantity": 1}],
        "reason": "broken",
    }


def shopify_order() -> dict[str, Any]:
    return {
        "id": 5931218452667,
        "email": "mei@example.com",
        "created_at": "2026-01-05T10:02:09-05:00",
        "currency": "USD",
        "financial_status": "paid",
        "source_name": "web",
        "total_price": "108.00",
        "total_tax": "8.00",
        "taxes_included": False,
        "discount_codes": [{"code": "TEA", "amount": "0.00", "type": "fixed_amount"}],
        "total_shipping_price_set": {"shop_money": {"amount": "0.00", "currency_code": "USD"}},
        "customer": {"id": 7390102954171, "email": "mei@example.com", "first_name": "Mei"},
        "line_items": [
            {
                "id": 14723019587771,
                "sku": "TEA",
                "title": "Oolong",
                "quantity": 2,
                "price": "50.00",
                "total_discount": "0.00",
            }
        ],
    }


def shopify_refund() -> dict[str, Any]:
    return {
        "id": 1023456789012,
        "order_id": 5931218452667,
        "processed_at": "2026-01-12T14:20:03-05:00",
        "note": "chipped",
        "refund_line_items": [{"line_item_id": 14723019587771, "quantity": 1}],
        "transactions": [{"kind": "refund", "status": "success", "amount": "54.00"}],
    }


# (method, path, valid body) of every write endpoint taking a body
WRITES: list[tuple[str, str, Any]] = [
    ("PUT", "/v1/customers/C-1", customer_body()),
    ("POST", "/v1/customers/bulk", {"records": [customer_body(), customer_body("C-2")]}),
    ("PUT", "/v1/products/SKU-1", product_body()),
    ("POST", "/v1/products/bulk", {"records": [product_body(), product_body("SKU-2")]}),
    ("PUT", "/v1/orders/O-1", order_body()),
    ("POST", "/v1/orders/bulk", {"records": [order_body(), order_body("O-2")]}),
    ("PUT", "/v1/refunds/R-1", refund_body()),
    ("POST", "/v1/refunds/bulk", {"records": [refund_body(), refund_body("R-2")]}),
    ("POST", "/v1/orders/bulk?atomic=true", {"records": [order_body("O-3")]}),
]
WEBHOOKS = [
    ("orders/create", shopify_order()),
    ("orders/paid", shopify_order()),
    ("refunds/create", shopify_refund()),
]


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=True, allow_nan=True).encode()


def send(
    client: TestClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> Response:
    return client.request(
        method, path, content=encode(body), headers={**headers, "Content-Type": "application/json"}
    )


def deliver(client: TestClient, store: Store, topic: str, body: Any) -> Response:
    raw = encode(body)
    return client.post(
        f"/v1/webhooks/shopify/{store.slug}",
        content=raw,
        headers={
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": sign(store.webhook_secret, raw),
        },
    )


def assert_handled(res: Response) -> None:
    """Not a server error; an error is a complete problem document."""
    assert res.status_code < 500, f"{res.status_code}: {res.text[:2000]}"
    body = res.json()  # whatever came back is valid JSON
    if res.status_code >= 400:
        assert res.headers["content-type"].startswith(PROBLEM), res.headers["content-type"]
        assert body["status"] == res.status_code
        assert isinstance(body["title"], str) and body["title"]
        assert isinstance(body["detail"], str) and body["detail"]
        if res.status_code == 422:
            assert isinstance(body["errors"], list) and body["errors"], body
            for error in body["errors"]:
                assert isinstance(error["field"], str) and error["field"], error
                assert isinstance(error["message"], str) and error["message"], error
    elif "results" in body:  # bulk: one result per record, each failure explained
        for result in body["results"]:
            assert result["status"] in {"created", "updated", "unchanged", "pending", "error"}
            if result["status"] == "error":
                assert result["error"] and result["code"] in {"invalid", "conflict"}
                if result["errors"]:
                    assert all(e["field"] for e in result["errors"])


def leaf_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position in a document, containers included."""
    paths = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            paths += leaf_paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            paths += leaf_paths(value, (*prefix, index))
    return paths


def replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    """A valid body with one to three fields set to hostile values, or one removed."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        paths = leaf_paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        if draw(st.integers(0, 5)) == 0:
            parent = doc
            for key in path[:-1]:
                parent = parent[key]
            del parent[path[-1]]
        else:
            doc = replace(doc, path, draw(hostile))
    return doc


@pytest.mark.parametrize(("method", "path", "valid"), WRITES, ids=[w[1] for w in WRITES])
def test_every_write_endpoint_with_random_and_hostile_bodies(
    client: TestClient, admin: dict[str, str], method: str, path: str, valid: Any
) -> None:
    assert_handled(send(client, method, path, valid, admin))  # the baseline is accepted

    @EXAMPLES
    @given(body=json_values | mutated(valid))
    def check(body: Any) -> None:
        assert_handled(send(client, method, path, body, admin))

    check()


@pytest.mark.parametrize(("topic", "valid"), WEBHOOKS, ids=[w[0] for w in WEBHOOKS])
def test_signed_webhooks_with_random_and_hostile_bodies(
    client: TestClient, store: Store, topic: str, valid: Any
) -> None:
    assert deliver(client, store, topic, valid).status_code == 200

    @EXAMPLES
    @given(body=json_values | mutated(valid))
    def check(body: Any) -> None:
        assert_handled(deliver(client, store, topic, body))

    check()


def test_order_fields_one_by_one(client: TestClient, admin: dict[str, str]) -> None:
    """Each field of a valid order, alone, set to each hostile value: refused cleanly."""
    valid = order_body("O-F")
    values: list[Any] = [
        *(s for s in HOSTILE_STRINGS if s.startswith(("x", "\x00", "\ud800", "'", "9", "N"))),
        10**400,
        -1,
        1.5,
        1_000_000,
        None,
        [],
        {"a": 1},
        True,
    ]
    for path in leaf_paths(valid):
        for value in values:
            res = send(client, "PUT", "/v1/orders/O-F", replace(valid, path, value), admin)
            assert_handled(res)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/{}",
        "/v1/customers/{}/touchpoints",
        "/v1/products/{}",
        "/v1/orders/{}",
        "/v1/refunds/{}",
        "/v1/orders?customer={}",
        "/v1/customers?email={}",
        "/v1/customers?after={}",
        "/v1/orders?limit={}",
        "/v1/customers/C-1/touchpoints?before={}",
    ],
)
def test_hostile_path_and_query_values(
    client: TestClient, admin: dict[str, str], path: str
) -> None:
    @settings(EXAMPLES, max_examples=25)
    @given(value=st.text(max_size=300) | st.sampled_from([*HOSTILE_STRINGS, "-1", str(10**400)]))
    def check(value: str) -> None:
        quoted = urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="")
        res = client.get(path.format(quoted or "x"), headers=admin)
        assert_handled(res)

    check()


def test_hostile_webhook_store_slugs(client: TestClient, store: Store) -> None:
    for slug in ["%00", "a%00b", "x" * 64, "x" * 65, "%27%3B%20DROP%20TABLE%20stores%3B--"]:
        res = client.post(f"/v1/webhooks/shopify/{slug}", content=b"{}")
        assert res.status_code in (401, 422), (slug, res.status_code)
        assert_handled(res)


def test_lone_surrogates_echoed_back_stay_valid_json(
    client: TestClient, admin: dict[str, str]
) -> None:
    bad_id = {"records": [{"external_id": "\ud800"}, {"external_id": "ok"}]}
    res = send(client, "POST", "/v1/customers/bulk", bad_id, admin)
    assert_handled(res)
    assert [r["status"] for r in res.json()["results"]] == ["error", "created"]
    assert res.json()["results"][0]["external_id"] == "\ud800"

    extra_key = {**customer_body("C-9"), "\ud800": 1}
    res = send(client, "PUT", "/v1/customers/C-9", extra_key, admin)
    assert res.status_code == 422
    assert_handled(res)
