"""Redeeming through the API: the catalogue, every reward type, refusals, replays, cancel."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from patron.auth import Scope
from patron.db import unit_of_work
from patron.loyalty.models import LoyaltyEntry
from patron.rewards.models import Redemption
from patron.rewards.service import NotEligible, rewards
from tests.conftest import key_headers, new_store
from tests.rewards.conftest import PROBLEM, Shop, make_shop, program

CODE = re.compile(r"^PAT(-[2-9A-HJ-NP-Z]{4}){4}$")


def snapshot(shop: Shop, ext: str) -> tuple[Any, ...]:
    """What a refused call must leave untouched."""
    with unit_of_work(shop.engine) as session:
        redemptions = session.scalar(
            select(func.count()).select_from(Redemption).where(Redemption.store_id == shop.store.id)
        )
        entries = session.scalar(
            select(func.count())
            .select_from(LoyaltyEntry)
            .where(LoyaltyEntry.store_id == shop.store.id)
        )
    stock = {k: v["issued"] for k, v in shop.catalogue().items()}
    return shop.balance(ext)["points_available"], redemptions, entries, stock


def test_catalogue_shows_cost_stock_and_why_not(shop: Shop) -> None:
    shop.customer("C-1", points=150)
    items = shop.catalogue()
    assert list(items) == [r["id"] for r in program()["rewards"]]
    assert items["gift"]["cost_points"] == 200 and items["gift"]["stock_left"] == 5
    assert items["coupon-10"]["stock_left"] is None and items["coupon-10"]["issued"] == 0
    assert items["cash"]["redeem_via"] == "checkout" and items["cash"]["cost_points"] == 0
    assert items["draw"]["config"]["prizes"][0]["id"] == "big"
    assert all(i["can_redeem"] is None and i["reasons"] is None for i in items.values())

    def why(item: dict[str, Any]) -> list[str]:
        return [r["code"] for r in item["reasons"]]

    for items in (shop.catalogue("C-1"), _mine(shop, "C-1")):
        assert items["coupon-10"]["can_redeem"] is True and items["coupon-10"]["reasons"] == []
        assert why(items["gift"]) == ["not_enough_points"]
        assert why(items["gold-gift"]) == ["tier"]
        # a member (they have points) but not of a tier with member-only rewards
        assert why(items["members"]) == ["member_only"]
        assert why(items["retired"]) == ["inactive"]
        assert items["cash"]["can_redeem"] is True
    assert shop.client.get("/v1/rewards?customer=nobody", headers=shop.read).status_code == 404
    # no programme: an empty catalogue
    member = shop.member("C-1")  # the member catalogue is /v1/me/rewards
    assert shop.client.get("/v1/rewards", headers=member).status_code == 403
    read = key_headers(shop.engine, new_store(shop.engine), Scope.read)
    assert shop.client.get("/v1/rewards", headers=read).json() == {"items": []}


def _mine(shop: Shop, ext: str) -> dict[str, dict[str, Any]]:
    res = shop.client.get("/v1/me/rewards", headers=shop.member(ext))
    assert res.status_code == 200, res.text
    return {i["id"]: i for i in res.json()["items"]}


def test_redeem_a_coupon_debits_points_issues_a_code_and_replays(shop: Shop) -> None:
    cid = shop.customer("C-1", points=500)
    res = shop.redeem("C-1", "coupon-10", key="k-1")
    assert res.status_code == 201, res.text
    body = res.json()
    assert (body["reward_id"], body["status"], body["points"]) == ("coupon-10", "completed", 100)
    coupon = body["coupon"]
    assert CODE.match(coupon["code"]) and coupon["status"] == "active"
    assert (coupon["amount"], coupon["min_spend"], coupon["currency"]) == ("10.00", "50.00", "CNY")
    valid = datetime.fromisoformat(coupon["valid_until"]) - datetime.fromisoformat(
        coupon["valid_from"]
    )
    assert valid == timedelta(days=30)
    assert shop.points("C-1") == 400
    history = shop.client.get("/v1/customers/C-1/points/history", headers=shop.read).json()
    assert history["items"][0]["kind"] == "redeem" and history["items"][0]["amount"] == -100

    again = shop.redeem("C-1", "coupon-10", key="k-1")
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["id"] == body["id"]
    assert again.json()["coupon"]["code"] == coupon["code"]
    assert shop.points("C-1") == 400
    # the key for another reward, or another customer: refused, nothing changes
    shop.customer("C-2", points=500)
    before = snapshot(shop, "C-1")
    for ext, reward in (("C-1", "pct-15"), ("C-2", "coupon-10")):
        res = shop.redeem(ext, reward, key="k-1")
        assert res.status_code == 409 and res.headers["content-type"].startswith(PROBLEM)
        assert res.json()["type"].endswith("idempotency-key-reused")
    assert snapshot(shop, "C-1") == before and shop.points("C-2") == 500
    # a percent coupon keeps its cap
    pct = shop.redeem("C-1", "pct-15").json()["coupon"]
    assert (pct["percent"], pct["max_discount"], pct["amount"]) == ("15", "20.00", None)
    shop.invariants(cid)


def test_bad_input_is_a_clear_4xx_and_changes_nothing(shop: Shop) -> None:
    shop.customer("C-1", points=150)
    before = snapshot(shop, "C-1")
    url = "/v1/customers/C-1/rewards/coupon-10/redeem"
    res = shop.client.post(url, headers=shop.ingest)
    assert res.status_code == 422
    assert res.json()["errors"][0]["field"] == "header.Idempotency-Key"
    for key in ("x" * 201, "patron:prize:1"):
        res = shop.client.post(url, headers={**shop.ingest, "Idempotency-Key": key})
        assert res.status_code == 422 and "Idempotency-Key" in res.json()["errors"][0]["field"]
    cases = [
        ("C-1", "nope", 404, "not-found"),
        ("nobody", "coupon-10", 404, "not-found"),
        ("C-1", "cash", 422, "validation-error"),  # points as cash is used at checkout
        ("C-1", "gift", 409, "reward-not-eligible"),  # 150 < 200
        ("C-1", "gold-gift", 409, "reward-not-eligible"),
        ("C-1", "members", 409, "reward-not-eligible"),
        ("C-1", "retired", 409, "reward-not-eligible"),
    ]
    for ext, reward, status, slug in cases:
        res = shop.redeem(ext, reward)
        assert res.status_code == status, (reward, res.text)
        assert res.headers["content-type"].startswith(PROBLEM)
        assert res.json()["type"].endswith(slug)
    res = shop.redeem("C-1", "gift")
    assert res.json()["reason"] == "not_enough_points"
    assert res.json()["reasons"] == [
        {"code": "not_enough_points", "message": "needs 200 points, 150 available"}
    ]
    assert shop.redeem("C-1", "cash").json()["errors"][0]["field"] == "reward_id"
    assert shop.redeem("C-1", "gold-gift").json()["reason"] == "tier"
    assert snapshot(shop, "C-1") == before
    # the read scope cannot redeem
    res = shop.client.post(url, headers={**shop.read, "Idempotency-Key": "k"})
    assert res.status_code == 403


def test_gift_stock_runs_out_and_cancel_restores_points_and_stock_exactly(shop: Shop) -> None:
    cid = shop.customer("C-1", points=2000)
    made = [shop.redeem("C-1", "gift") for _ in range(5)]
    assert [r.status_code for r in made] == [201] * 5, made[-1].text
    assert made[0].json()["sku"] == "G-1"
    assert shop.points("C-1") == 1000
    assert shop.catalogue()["gift"]["stock_left"] == 0
    res = shop.redeem("C-1", "gift")
    assert res.status_code == 409 and res.json()["reason"] == "out_of_stock"
    assert res.json()["type"].endswith("out-of-stock")
    assert shop.catalogue("C-1")["gift"]["reasons"][0]["code"] == "out_of_stock"

    first = made[0].json()["id"]
    res = shop.client.post(f"/v1/redemptions/{first}/cancel", json={}, headers=shop.admin)
    assert res.status_code == 200, res.text
    assert res.json()["status"] == "cancelled" and res.json()["cancelled_at"]
    assert shop.points("C-1") == 1200
    assert shop.catalogue()["gift"]["stock_left"] == 1
    # cancelling again: the same answer, nothing more given back
    again = shop.client.post(f"/v1/redemptions/{first}/cancel", headers=shop.admin)
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert shop.points("C-1") == 1200 and shop.catalogue()["gift"]["stock_left"] == 1
    assert shop.redeem("C-1", "gift").status_code == 201  # the unit is back on the shelf
    # a merchant raising the stock keeps what was issued
    shop.apply(program(rewards=[{**r, "stock": 8} if r["id"] == "gift" else r
                                for r in program()["rewards"]]))  # fmt: skip
    assert shop.catalogue()["gift"]["stock_left"] == 3
    # admin only; unknown id: 404
    assert (
        shop.client.post(f"/v1/redemptions/{first}/cancel", headers=shop.ingest).status_code == 403
    )
    assert shop.client.post("/v1/redemptions/999999/cancel", headers=shop.admin).status_code == 404
    shop.invariants(cid)


def test_points_plus_cash_returns_the_cash_to_charge(shop: Shop) -> None:
    shop.customer("C-1", points=1000)
    body = shop.redeem("C-1", "serum").json()
    assert (body["points"], body["cash"], body["currency"], body["sku"]) == (
        300,
        "19.90",
        "CNY",
        "S-1",
    )
    assert shop.points("C-1") == 700
    assert shop.catalogue()["serum"]["stock_left"] == 2


def test_a_cancelled_coupon_is_void_and_a_used_one_cannot_be_cancelled(shop: Shop) -> None:
    shop.customer("C-1", points=500)
    a, b = (shop.redeem("C-1", "coupon-10").json() for _ in range(2))
    res = shop.client.post(f"/v1/redemptions/{a['id']}/cancel", headers=shop.admin)
    assert res.json()["coupon"]["status"] == "void" and shop.points("C-1") == 400
    check = _validate(shop, a["coupon"]["code"], "C-1", "80.00")
    assert (check["valid"], check["reason"]) == (False, "void")

    used = shop.client.post(
        f"/v1/coupons/{b['coupon']['code']}/use",
        json={"order_external_id": "O-1", "customer_external_id": "C-1", "subtotal": "80.00"},
        headers=shop.ingest,
    )
    assert used.status_code == 200, used.text
    before = snapshot(shop, "C-1")
    res = shop.client.post(f"/v1/redemptions/{b['id']}/cancel", headers=shop.admin)
    assert res.status_code == 409 and res.json()["reason"] == "coupon_used"
    assert snapshot(shop, "C-1") == before


def _validate(shop: Shop, code: str, ext: str, subtotal: str, currency: str = "CNY") -> Any:
    res = shop.client.post(
        "/v1/coupons/validate",
        json={
            "code": code,
            "customer_external_id": ext,
            "subtotal": subtotal,
            "currency": currency,
        },
        headers=shop.ingest,
    )
    assert res.status_code == 200, res.text
    return res.json()


def test_member_routes_see_only_their_own(shop: Shop) -> None:
    shop.customer("C-1", points=500)
    shop.customer("C-2", points=500)
    me = shop.member("C-1")
    url = "/v1/me/rewards/coupon-10/redeem"
    res = shop.client.post(url, headers={**me, "Idempotency-Key": "m-1"})
    assert res.status_code == 201, res.text
    assert res.json()["customer_external_id"] == "C-1"
    assert shop.client.post(url, headers=me).status_code == 422  # the key is required
    # a member token cannot use the admin route, an API key not the member one
    assert shop.client.post(url, headers={**shop.admin, "Idempotency-Key": "x"}).status_code == 403
    other = "/v1/customers/C-2/rewards/coupon-10/redeem"
    assert shop.client.post(other, headers={**me, "Idempotency-Key": "x"}).status_code == 403

    mine = shop.client.get("/v1/me/redemptions", headers=me).json()
    assert [r["idempotency_key"] for r in mine["items"]] == ["m-1"]
    assert mine["items"][0]["coupon"]["code"] == res.json()["coupon"]["code"]
    theirs = shop.client.get("/v1/me/redemptions", headers=shop.member("C-2")).json()
    assert theirs == {"items": [], "next_before": None}
    # admin view, paged
    for _ in range(2):
        shop.redeem("C-1", "pct-15")
    page = shop.client.get("/v1/customers/C-1/redemptions?limit=2", headers=shop.read).json()
    assert len(page["items"]) == 2 and page["next_before"]
    rest = shop.client.get(
        f"/v1/customers/C-1/redemptions?limit=2&before={page['next_before']}", headers=shop.read
    ).json()
    assert [r["idempotency_key"] for r in rest["items"]] == ["m-1"]
    one = shop.client.get(f"/v1/redemptions/{res.json()['id']}", headers=shop.read)
    assert one.status_code == 200 and one.json()["reward_id"] == "coupon-10"
    # another store sees none of it
    stranger = make_shop(shop.client, shop.engine)
    assert (
        shop.client.get(f"/v1/redemptions/{res.json()['id']}", headers=stranger.read).status_code
        == 404
    )


def test_per_customer_limit_counts_in_the_store_day(shop: Shop) -> None:
    """coupon-10: 2 per day in the store's time zone (Asia/Shanghai, UTC+8 by default)."""
    assert shop.store.timezone == "Asia/Shanghai"
    cid = shop.customer("C-1", points=1000)
    late = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai, 1 March
    after_midnight = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)  # 00:30, 2 March (same UTC day)

    def redeem(at: datetime) -> Any:
        with unit_of_work(shop.engine) as session:
            store = session.merge(shop.store)
            return rewards.redeem(session, store, cid, "coupon-10", key=str(uuid.uuid4()), now=at)

    redeem(late)
    redeem(late + timedelta(minutes=10))
    try:
        redeem(late + timedelta(minutes=20))
        raise AssertionError("a third coupon in one store day was redeemed")
    except NotEligible as exc:
        assert exc.extra["reason"] == "limit_reached"
    assert redeem(after_midnight).redemption.status == "completed"  # a new store day
    assert shop.points("C-1") == 700
    # a cancelled redemption does not count against the limit
    second = redeem(after_midnight)
    try:
        redeem(after_midnight)
        raise AssertionError("over the limit")
    except NotEligible:
        pass
    with unit_of_work(shop.engine) as session:
        rewards.cancel(session, session.merge(shop.store), second.redemption.id)
    assert redeem(after_midnight).redemption.points == 100


def test_money_fields_are_decimal_strings(shop: Shop) -> None:
    shop.customer("C-1", points=500)
    body = shop.redeem("C-1", "coupon-10").json()
    assert Decimal(body["coupon"]["amount"]) == Decimal(10)
