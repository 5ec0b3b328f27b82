"""The store's checkout: coupons validated and used once, points as cash held and resolved."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from patron.db import unit_of_work
from patron.kit.clock import utcnow
from patron.rewards.service import CouponRefused, rewards
from tests.rewards.conftest import PROBLEM, Shop


def validate(shop: Shop, code: str, ext: str, subtotal: str, currency: str = "CNY") -> Any:
    body = {"code": code, "customer_external_id": ext, "subtotal": subtotal, "currency": currency}
    res = shop.client.post("/v1/coupons/validate", json=body, headers=shop.ingest)
    assert res.status_code == 200, res.text
    return res.json()


def use(shop: Shop, code: str, order: str, ext: str = "C-1", subtotal: str = "80.00") -> Any:
    body = {"order_external_id": order, "customer_external_id": ext, "subtotal": subtotal}
    return shop.client.post(f"/v1/coupons/{code}/use", json=body, headers=shop.ingest)


def test_validate_gives_the_discount_or_a_reason(shop: Shop) -> None:
    shop.customer("C-1", points=1000)
    shop.customer("C-2")
    fixed = shop.redeem("C-1", "coupon-10").json()["coupon"]["code"]
    pct = shop.redeem("C-1", "pct-15").json()["coupon"]["code"]

    ok = validate(shop, fixed, "C-1", "80.00")
    assert (ok["valid"], ok["discount"], ok["reason"]) == (True, "10.00", None)
    assert ok["coupon"]["code"] == fixed
    assert validate(shop, fixed.lower().replace("-", " "), "C-1", "80")["valid"]  # as typed
    assert validate(shop, pct, "C-1", "99.99")["discount"] == "15.00"  # 14.9985 -> 15.00
    assert validate(shop, pct, "C-1", "10.03")["discount"] == "1.50"  # 1.5045 -> 1.50
    assert validate(shop, pct, "C-1", "1000.00")["discount"] == "20.00"  # max_discount
    for code, ext, subtotal, currency, reason in [
        (fixed, "C-1", "49.99", "CNY", "below_min_spend"),
        (fixed, "C-2", "80.00", "CNY", "other_customer"),
        (fixed, "nobody", "80.00", "CNY", "other_customer"),
        (fixed, "C-1", "80.00", "USD", "currency"),
        ("PAT-2222-2222-2222-2222", "C-1", "80.00", "CNY", "not_found"),
    ]:
        check = validate(shop, code, ext, subtotal, currency)
        assert (check["valid"], check["reason"], check["discount"]) == (False, reason, "0.00")
        assert check["message"]
        if reason in ("other_customer", "not_found"):
            assert check["coupon"] is None  # a code alone reveals nobody's coupon
    # expired: validity_days later
    with unit_of_work(shop.engine) as session:
        store = session.merge(shop.store)
        later = utcnow() + timedelta(days=30, seconds=1)
        found = rewards.validate_coupon(session, store, fixed, "C-1", Decimal(80), "CNY", now=later)
        assert found.check.reason is not None and found.check.reason.value == "expired"


def test_a_coupon_is_used_exactly_once(shop: Shop) -> None:
    shop.customer("C-1", points=1000)
    code = shop.redeem("C-1", "coupon-10").json()["coupon"]["code"]
    res = use(shop, code, "O-1", subtotal="80.00")
    assert res.status_code == 200, res.text
    assert (res.json()["discount"], res.json()["replayed"]) == ("10.00", False)
    again = use(shop, code, "O-1", subtotal="80.00")
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["used_at"] == res.json()["used_at"]
    other = use(shop, code, "O-2")
    assert other.status_code == 409 and other.headers["content-type"].startswith(PROBLEM)
    assert other.json()["reason"] == "used"
    assert validate(shop, code, "C-1", "80.00")["reason"] == "used"
    history = shop.client.get("/v1/customers/C-1/redemptions", headers=shop.read).json()
    coupon = history["items"][0]["coupon"]
    assert (coupon["status"], coupon["order_external_id"], coupon["discount"]) == (
        "used",
        "O-1",
        "10.00",
    )


def test_a_coupon_that_does_not_apply_is_refused_and_stays_active(shop: Shop) -> None:
    shop.customer("C-1", points=1000)
    shop.customer("C-2")
    code = shop.redeem("C-1", "coupon-10").json()["coupon"]["code"]
    for ext, subtotal, reason in (
        ("C-2", "80.00", "other_customer"),
        ("C-1", "10", "below_min_spend"),
    ):
        res = use(shop, code, "O-1", ext=ext, subtotal=subtotal)
        assert res.status_code == 409 and res.json()["reason"] == reason
    assert use(shop, "PAT-2222-2222-2222-2222", "O-1").status_code == 404
    assert validate(shop, code, "C-1", "80.00")["valid"] is True
    bad = shop.client.post(
        f"/v1/coupons/{code}/use", json={"order_external_id": "O-1"}, headers=shop.ingest
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {
        "body.customer_external_id",
        "body.subtotal",
    }
    try:
        with unit_of_work(shop.engine) as session:
            rewards.use_coupon(
                session,
                session.merge(shop.store),
                code,
                "O-9",
                "C-1",
                Decimal(80),
                now=utcnow() + timedelta(days=31),
            )
        raise AssertionError("an expired coupon was used")
    except CouponRefused as exc:
        assert exc.extra["reason"] == "expired"


def quote(shop: Shop, ext: str, total: str, currency: str | None = "CNY") -> Any:
    body: dict[str, Any] = {"customer_external_id": ext, "order_total": total}
    if currency:
        body["currency"] = currency
    res = shop.client.post("/v1/checkout/points/quote", json=body, headers=shop.ingest)
    return res


def hold(shop: Shop, checkout: str, points: int, total: str = "500.00", ext: str = "C-1") -> Any:
    body = {
        "customer_external_id": ext,
        "checkout_id": checkout,
        "points": points,
        "order_total": total,
    }
    return shop.client.post("/v1/checkout/points/hold", json=body, headers=shop.ingest)


def test_points_as_cash_quote_hold_capture_release(shop: Shop) -> None:
    cid = shop.customer("C-1", points=15_000)
    q = quote(shop, "C-1", "500.00").json()  # 20% of 500 = 100 CNY = 10,000 points
    assert (q["max_points"], q["cash"], q["points_available"]) == (10_000, "100.00", 15_000)
    assert (q["reward_id"], q["points_per_unit"], q["step"]) == ("cash", 100, 1)
    assert quote(shop, "C-1", "50.00", None).json()["max_points"] == 1000
    small = quote(shop, "C-1", "4.00").json()
    assert small["max_points"] == 0 and "too small" in small["reason"]
    res = quote(shop, "C-1", "500.00", "USD")
    assert res.status_code == 422 and res.json()["errors"][0]["field"] == "currency"

    res = hold(shop, "chk-1", 8000)
    assert res.status_code == 201, res.text
    assert (res.json()["cash"], res.json()["state"]) == ("80.00", "held")
    assert res.json()["expires_at"]
    balance = shop.balance("C-1")
    assert (balance["points_available"], balance["points_held"]) == (7000, 8000)
    assert hold(shop, "chk-1", 8000).status_code == 200  # a replay
    assert hold(shop, "chk-1", 7000).status_code == 409  # the id for another hold
    assert quote(shop, "C-1", "500.00").json()["max_points"] == 7000  # held points are gone

    cap = shop.client.post("/v1/checkout/points/chk-1/capture", headers=shop.ingest)
    assert cap.status_code == 200 and cap.json()["state"] == "captured"
    assert shop.client.post("/v1/checkout/points/chk-1/capture", headers=shop.ingest).json()[
        "replayed"
    ]
    late = shop.client.post("/v1/checkout/points/chk-1/release", headers=shop.ingest)
    assert late.status_code == 409
    balance = shop.balance("C-1")
    assert (balance["points_available"], balance["points_held"]) == (7000, 0)

    assert hold(shop, "chk-2", 5000).status_code == 201
    rel = shop.client.post("/v1/checkout/points/chk-2/release", headers=shop.ingest)
    assert rel.status_code == 200 and rel.json()["state"] == "released"
    assert shop.points("C-1") == 7000
    assert (
        shop.client.post("/v1/checkout/points/chk-2/capture", headers=shop.ingest).status_code
        == 409
    )
    assert (
        shop.client.post("/v1/checkout/points/none/capture", headers=shop.ingest).status_code == 404
    )
    shop.invariants(cid)


def test_a_hold_beyond_the_rules_names_the_field_and_holds_nothing(shop: Shop) -> None:
    shop.customer("C-1", points=3000)
    for points, total, message in (
        (10_001, "500.00", "at most 10000"),  # over 20% of the order
        (50, "500.00", "at least 100"),  # under min_points
    ):
        res = hold(shop, f"chk-{uuid.uuid4()}", points, total)
        assert res.status_code == 422, res.text
        assert res.json()["errors"][0]["field"] == "points"
        assert message in res.json()["detail"]
    res = hold(shop, "chk-x", 5000)  # within the rules, beyond the balance
    assert res.status_code == 409 and res.json()["type"].endswith("insufficient-points")
    for body in (
        {"customer_external_id": "C-1", "checkout_id": "c", "points": "100", "order_total": "9"},
        {"customer_external_id": "C-1", "checkout_id": "c", "points": 0, "order_total": "9"},
        {"customer_external_id": "C-1", "checkout_id": "c", "points": 100, "order_total": "NaN"},
        {"customer_external_id": "C-1", "checkout_id": "", "points": 100, "order_total": "9"},
        {"customer_external_id": "C-1", "checkout_id": "c", "points": 100, "order_total": "0.001"},
    ):
        res = shop.client.post("/v1/checkout/points/hold", json=body, headers=shop.ingest)
        assert res.status_code == 422, (body, res.text)
        assert res.json()["errors"][0]["field"].split(".")[-1] in (
            "points",
            "order_total",
            "checkout_id",
        )
    balance = shop.balance("C-1")
    assert (balance["points_available"], balance["points_held"]) == (3000, 0)
    assert hold(shop, "c", 100, ext="nobody").status_code == 404
