"""A member on a phone: opens the store's link, switches to Chinese, checks in, redeems a
reward in the mall and sees the coupon code, in Chromium."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from patron.stores.models import Store
from tests.browser.conftest import screenshot
from tests.rewards.conftest import make_shop, program

CHECK_IN = {"id": "daily", "name": "Check-in", "event": "check_in", "effect": {"bonus": 5}}


def test_a_member_checks_in_and_redeems_on_a_phone(
    engine: Engine, store: Store, client: TestClient, live_server: str, phone: Any
) -> None:
    shop = make_shop(client, engine, store)
    shop.apply(program(rules=[CHECK_IN]))
    shop.customer("M-1", points=480)
    res = client.post("/v1/customers/M-1/member-token", headers=shop.admin)
    token = res.json()["token"]
    base = f"{live_server}/m/{store.slug}"

    phone.goto(f"{base}/enter?token={token}&lang=en")
    assert phone.url == f"{base}?lang=en"  # the token left the address bar
    assert phone.locator("[data-testid=points]").inner_text() == "480"
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "member-home-en")

    phone.get_by_role("link", name="中文").click()
    phone.get_by_text("每日签到").wait_for()
    screenshot(phone, "member-home-zh")

    phone.get_by_role("button", name="签到领 5 积分").click()
    phone.get_by_text("今日已签到:+5 积分").wait_for()
    assert phone.get_by_role("button", name="今日已签到").is_disabled()
    assert phone.locator("[data-testid=points]").inner_text() == "485"
    assert shop.points("M-1") == 485
    screenshot(phone, "member-checked-in")

    phone.get_by_role("link", name="积分商城", exact=True).click()
    card = phone.locator("[data-reward=coupon-10]")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "member-mall")
    card.get_by_role("link", name="兑换").click()
    phone.get_by_text("兑换后剩余积分:385").wait_for()
    screenshot(phone, "member-confirm")

    phone.get_by_role("button", name="确认兑换").click()
    code = phone.locator("[data-testid=code]").inner_text()
    assert code
    screenshot(phone, "member-redeemed")
    assert shop.points("M-1") == 385
    redeemed = client.get("/v1/customers/M-1/redemptions", headers=shop.read).json()["items"]
    assert [r["coupon"]["code"] for r in redeemed] == [code]

    # Back (a reload of the result) redeems nothing more; the mall lists the code.
    phone.reload()
    assert shop.points("M-1") == 385
    phone.get_by_role("link", name="积分商城", exact=True).click()
    assert code in phone.locator("[data-testid=redemptions]").inner_text()
    assert phone.locator("[data-testid=points]").inner_text() == "385"
    screenshot(phone, "member-my-redemptions")
