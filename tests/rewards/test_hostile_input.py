"""Hostile bodies, keys and paths on the reward endpoints: never a 5xx, always a problem."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.rewards.conftest import Shop
from tests.test_malformed_input import (
    EXAMPLES,
    HOSTILE_STRINGS,
    assert_handled,
    json_values,
    mutated,
    send,
)

WRITES: list[tuple[str, dict[str, Any]]] = [
    (
        "/v1/coupons/validate",
        {"code": "PAT-2222", "customer_external_id": "C-1", "subtotal": "80", "currency": "CNY"},
    ),
    (
        "/v1/coupons/PAT-2222/use",
        {"order_external_id": "O-1", "customer_external_id": "C-1", "subtotal": "80"},
    ),
    ("/v1/checkout/points/quote", {"customer_external_id": "C-1", "order_total": "80"}),
    (
        "/v1/checkout/points/hold",
        {"customer_external_id": "C-1", "checkout_id": "k", "points": 100, "order_total": "800"},
    ),
    ("/v1/redemptions/1/cancel", {"reason": "x"}),
]


@pytest.mark.parametrize(("path", "valid"), WRITES, ids=[w[0] for w in WRITES])
def test_checkout_endpoints_with_hostile_bodies(shop: Shop, path: str, valid: Any) -> None:
    shop.customer("C-1", points=1000)

    @EXAMPLES
    @given(body=json_values | mutated(valid))
    def check(body: Any) -> None:
        assert_handled(send(shop.client, "POST", path, body, shop.admin))

    check()


def test_hostile_keys_and_paths(shop: Shop) -> None:
    shop.customer("C-1", points=1000)
    before = shop.points("C-1")

    @EXAMPLES
    @given(value=st.sampled_from(HOSTILE_STRINGS) | st.text(max_size=300))
    def check(value: str) -> None:
        safe = value.encode("ascii", "ignore").decode()  # headers travel as latin-1/ascii
        res = shop.client.post(
            "/v1/customers/C-1/rewards/no-such-reward/redeem",
            headers={**shop.ingest, "Idempotency-Key": safe},
        )
        assert_handled(res)
        for path in (
            f"/v1/customers/C-1/rewards/{value}/redeem",
            f"/v1/redemptions/{value}",
            f"/v1/checkout/points/{value}/capture",
            f"/v1/coupons/{value}/use",
        ):
            res = shop.client.post(
                quote(path, safe="/", errors="surrogatepass"),
                headers={**shop.admin, "Idempotency-Key": "k"},
                json={},
            )
            assert res.status_code < 500, (path, res.text)

    check()
    assert shop.points("C-1") == before
