"""The member page (/m/{store}/…): sign-in by link, figures, history, the rewards mall,
redemption exactly once, check-in, CSRF, in English and Chinese."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from patron.auth import Scope, issue_member_token
from patron.db import unit_of_work
from patron.kit.clock import zone
from patron.loyalty.service import ledger
from patron.stores.models import Store
from patron.web.member import csrf_token
from tests.conftest import key_headers, new_store
from tests.rewards.conftest import Shop, make_shop, program

CHECK_IN_RULE = {
    "id": "daily",
    "name": {"en": "Daily check-in", "zh": "每日签到"},
    "event": "check_in",
    "effect": {"bonus": 5},
}


@pytest.fixture
def shop(client: TestClient, engine: Engine, store: Store) -> Shop:
    made = make_shop(client, engine, store)
    made.apply(program(rules=[CHECK_IN_RULE]))
    return made


def token_of(shop: Shop, ext: str) -> str:
    res = shop.client.post(f"/v1/customers/{ext}/member-token", headers=shop.admin)
    assert res.status_code == 200, res.text
    token: str = res.json()["token"]
    return token


def enter(shop: Shop, ext: str, **headers: str) -> TestClient:
    """A browser of its own (cookie jar) signed in through the store's link."""
    browser = TestClient(shop.client.app, headers=headers)
    res = browser.get(
        f"/m/{shop.store.slug}/enter", params={"token": token_of(shop, ext)}, follow_redirects=False
    )
    assert res.status_code == 303, res.text
    return browser


def field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert match, f"no {name} field in the page"
    return match.group(1)


def points_shown(html: str) -> int:
    match = re.search(r'data-testid="points">([\d,]+)<', html)
    assert match, "no points on the page"
    return int(match.group(1).replace(",", ""))


def redemptions(shop: Shop, ext: str) -> list[dict[str, Any]]:
    res = shop.client.get(f"/v1/customers/{ext}/redemptions", headers=shop.read)
    assert res.status_code == 200, res.text
    items: list[dict[str, Any]] = res.json()["items"]
    return items


def local_day(at: datetime, store: Store) -> str:
    return at.astimezone(zone(store.timezone)).date().isoformat()


# -- signing in ---------------------------------------------------------------------------


def test_the_link_sets_a_scoped_cookie_and_takes_the_token_out_of_the_address(
    shop: Shop,
) -> None:
    shop.customer("C-1", points=10)
    browser = TestClient(shop.client.app)
    token = token_of(shop, "C-1")
    res = browser.get(
        f"/m/{shop.store.slug}/enter", params={"token": token}, follow_redirects=False
    )
    assert res.status_code == 303
    assert res.headers["location"] == f"/m/{shop.store.slug}"
    cookie = res.headers["set-cookie"]
    assert cookie.startswith(f"patron_member={token};")
    assert "HttpOnly" in cookie
    assert f"Path=/m/{shop.store.slug}" in cookie
    assert "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower()  # plain http here; https marks it Secure
    home = browser.get(res.headers["location"])
    assert home.status_code == 200
    assert token not in home.text
    assert home.headers["cache-control"] == "no-store"
    # Over https the cookie is Secure.
    secure = TestClient(shop.client.app, base_url="https://testserver")
    res = secure.get(f"/m/{shop.store.slug}/enter", params={"token": token}, follow_redirects=False)
    assert "Secure" in res.headers["set-cookie"]


def test_bad_expired_and_foreign_tokens_get_a_bilingual_401(shop: Shop, engine: Engine) -> None:
    cid = shop.customer("C-1")
    good = token_of(shop, "C-1")
    other = new_store(engine)
    with unit_of_work(engine) as session:
        expired, _ = issue_member_token(session.merge(shop.store), cid, 60, now=time.time() - 600)
        foreign, _ = issue_member_token(session.merge(other), cid, 600)
    body, sig = good.split(".")
    tampered = f"{body}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
    browser = TestClient(shop.client.app)
    odd = ("nonsense", "pm_%%%.x", "pm_" + "A" * 5000, good + "\u00e9", "pm_e30.x")
    for token in (None, "", tampered, expired, foreign, *odd):
        params = {} if token is None else {"token": token}
        res = browser.get(f"/m/{shop.store.slug}/enter", params=params, follow_redirects=False)
        assert res.status_code == 401, (token, res.text)
        assert res.headers["content-type"].startswith("text/html")
        assert "Please sign in again" in res.text and "请重新登录" in res.text
        assert "set-cookie" not in res.headers
    # The good token of this store opens only this store's pages.
    res = browser.get(f"/m/{other.slug}/enter", params={"token": good}, follow_redirects=False)
    assert res.status_code == 401
    # Without the cookie every page answers 401 (and a forged cookie too).
    for path in ("", "/history", "/rewards", "/rewards/coupon-10", "/redemptions/1"):
        assert browser.get(f"/m/{shop.store.slug}{path}").status_code == 401
    browser.cookies.set("patron_member", tampered, path=f"/m/{shop.store.slug}")
    assert browser.get(f"/m/{shop.store.slug}").status_code == 401
    res = browser.post(f"/m/{shop.store.slug}/check-in", data={"csrf": "x"})
    assert res.status_code == 401


# -- what the pages show ------------------------------------------------------------------


def seed_ledger(shop: Shop, cid: int, now: datetime) -> dict[str, Any]:
    """Points available, pending and expiring, and growth, written to the ledger."""
    matures = now + timedelta(days=5)
    expires = (now + timedelta(days=10)).replace(hour=20, minute=0)  # next day in Shanghai
    with unit_of_work(shop.engine) as session:
        store = session.merge(shop.store)
        ledger.earn(session, store, cid, key="a", points=1234, growth=600, reason="order O-1")
        ledger.earn(
            session, store, cid, key="b", points=300, reason="order O-2", available_at=matures
        )
        ledger.earn(session, store, cid, key="c", points=100, reason="review", expires_at=expires)
    return {
        "available": 1234 + 100,
        "pending": 300,
        "matures": local_day(matures, shop.store),
        "expiring": 100,
        "expires": local_day(expires, shop.store),
        "growth": 600,
        "missing": 1000 - 600,  # growth to the gold tier's threshold
    }


def test_home_shows_the_members_figures_in_english_and_chinese(shop: Shop) -> None:
    cid = shop.customer("C-1")
    seen = seed_ledger(shop, cid, datetime.now(UTC))
    browser = enter(shop, "C-1")
    page = browser.get(f"/m/{shop.store.slug}", params={"lang": "en"}).text
    assert points_shown(page) == seen["available"]
    assert f'data-testid="pending">{seen["pending"]}<' in page
    assert f"{seen['pending']} points become available on {seen['matures']}" in page
    assert f"{seen['expiring']} points expire on {seen['expires']}" in page
    assert f'data-testid="growth">{seen["growth"]}<' in page
    assert f"earn {seen['missing']} more growth to reach 金卡 Gold" in page
    assert "Check in: +5 points" in page
    assert "/r/" in field(page.replace('readonly value="', 'name="ref" value="'), "ref")

    zh = browser.get(f"/m/{shop.store.slug}", params={"lang": "zh"}).text
    assert '<html lang="zh-CN">' in zh
    assert points_shown(zh) == seen["available"]
    assert f"{seen['pending']} 积分将于 {seen['matures']} 生效" in zh
    assert f"{seen['expiring']} 积分将于 {seen['expires']} 过期" in zh
    assert f"再获得 {seen['missing']} 成长值即可升级为金卡" in zh
    assert "签到领 5 积分" in zh
    # The choice is remembered (cookie) for the next pages.
    assert "积分明细" in browser.get(f"/m/{shop.store.slug}/history").text


def test_language_follows_the_customer_then_the_browser(shop: Shop) -> None:
    res = shop.client.put(
        "/v1/customers/C-zh", json={"external_id": "C-zh", "locale": "zh-CN"}, headers=shop.admin
    )
    assert res.is_success, res.text
    shop.customer("C-any")
    assert "我的会员" in enter(shop, "C-zh").get(f"/m/{shop.store.slug}").text
    browser = enter(shop, "C-any", **{"Accept-Language": "fr;q=1, zh-TW;q=0.8, en;q=0.5"})
    assert "我的会员" in browser.get(f"/m/{shop.store.slug}").text
    browser = enter(shop, "C-any", **{"Accept-Language": "de"})
    assert "My membership" in browser.get(f"/m/{shop.store.slug}").text


def test_history_is_paged_signed_and_in_the_members_language(shop: Shop) -> None:
    cid = shop.customer("C-1")
    with unit_of_work(shop.engine) as session:
        store = session.merge(shop.store)
        for i in range(22):
            ledger.earn(session, store, cid, key=f"o{i}", points=10 + i, reason=f"order O-{i}")
    browser = enter(shop, "C-1")
    assert shop.redeem("C-1", "coupon-10").status_code == 201
    page = browser.get(f"/m/{shop.store.slug}/history", params={"lang": "zh"}).text
    rows = re.findall(r'<li class="row">(.*?)</li>', page, re.S)
    assert len(rows) == 20
    assert "兑换:满50减10" in rows[0] and 'class="minus"' in rows[0] and "-100" in rows[0]
    assert "订单 O-21" in rows[1] and 'class="plus"' in rows[1] and "+31" in rows[1]
    older = re.search(r'href="([^"]+history\?before=\d+)"', page)
    assert older
    rest = browser.get(older.group(1)).text
    rows = re.findall(r'<li class="row">(.*?)</li>', rest, re.S)
    assert [re.search(r"订单 (O-\d+)", r).group(1) for r in rows] == ["O-2", "O-1", "O-0"]  # type: ignore[union-attr]
    en = browser.get(f"/m/{shop.store.slug}/history", params={"lang": "en"}).text
    assert "Order O-21" in en


def test_the_mall_respects_tiers_members_stock_and_affordability(shop: Shop) -> None:
    shop.customer("C-1", points=150)
    page = enter(shop, "C-1").get(f"/m/{shop.store.slug}/rewards", params={"lang": "en"}).text
    cards = dict(re.findall(r'data-reward="([^"]+)">(.*?)</section>', page, re.S))
    assert "retired" not in cards and "cash" not in cards  # inactive; used at checkout
    assert "100 points = ¥1.00" in page
    assert f"/m/{shop.store.slug}/rewards/coupon-10" in cards["coupon-10"]  # affordable
    assert "50 more points needed" in cards["gift"] and "/rewards/gift" not in cards["gift"]
    assert "5 left" in cards["gift"]
    assert "For Gold members" in cards["gold-gift"]
    assert "300 points + ¥19.90" in cards["serum"]
    zh = enter(shop, "C-1").get(f"/m/{shop.store.slug}/rewards", params={"lang": "zh"}).text
    assert "金卡专享" in zh and "还差 50 积分" in zh


# -- redeeming ----------------------------------------------------------------------------


def test_a_redemption_happens_once_even_when_the_confirmation_is_sent_twice(shop: Shop) -> None:
    shop.customer("C-1", points=500)
    browser = enter(shop, "C-1")
    base = f"/m/{shop.store.slug}"
    confirm = browser.get(f"{base}/rewards/coupon-10", params={"lang": "en"})
    assert confirm.status_code == 200
    assert "Your points after: 400" in confirm.text
    form = {"csrf": field(confirm.text, "csrf"), "key": field(confirm.text, "key")}
    first = browser.post(f"{base}/rewards/coupon-10", data=form, follow_redirects=False)
    again = browser.post(f"{base}/rewards/coupon-10", data=form, follow_redirects=False)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    assert shop.points("C-1") == 500 - 100
    made = redemptions(shop, "C-1")
    assert len(made) == 1
    result = browser.get(first.headers["location"])
    assert result.status_code == 200
    assert made[0]["coupon"]["code"] in result.text
    assert "100 points used. Balance: 400 points." in result.text
    mall = browser.get(f"{base}/rewards").text
    assert made[0]["coupon"]["code"] in mall and "ready to use" in mall
    # A new confirmation redeems again (the limit is two a day), then the limit says no.
    confirm = browser.get(f"{base}/rewards/coupon-10")
    form = {"csrf": field(confirm.text, "csrf"), "key": field(confirm.text, "key")}
    assert browser.post(f"{base}/rewards/coupon-10", data=form).status_code == 200
    assert shop.points("C-1") == 300
    confirm = browser.get(f"{base}/rewards/coupon-10")
    form = {"csrf": field(confirm.text, "csrf"), "key": field(confirm.text, "key")}
    res = browser.post(f"{base}/rewards/coupon-10", data=form)
    assert res.status_code == 409 and "Limit reached" in res.text
    assert shop.points("C-1") == 300 and len(redemptions(shop, "C-1")) == 2


def test_not_enough_points_is_explained_and_changes_nothing(shop: Shop) -> None:
    shop.customer("C-1", points=50)
    browser = enter(shop, "C-1")
    base = f"/m/{shop.store.slug}"
    confirm = browser.get(f"{base}/rewards/coupon-10", params={"lang": "zh"}).text
    assert re.search(r"<button type=\"submit\" disabled>", confirm)
    form = {"csrf": field(confirm, "csrf"), "key": field(confirm, "key")}
    res = browser.post(f"{base}/rewards/coupon-10", data=form)
    assert res.status_code == 409
    assert "还差 50 积分" in res.text and "您的积分没有变化" in res.text
    assert shop.points("C-1") == 50 and redemptions(shop, "C-1") == []
    # Unknown rewards and other members' redemptions are not found.
    assert browser.get(f"{base}/rewards/nope").status_code == 404
    shop.customer("C-2", points=500)
    assert shop.redeem("C-2", "coupon-10").status_code == 201
    theirs = redemptions(shop, "C-2")[0]["id"]
    res = browser.get(f"{base}/redemptions/{theirs}")
    assert res.status_code == 404 and redemptions(shop, "C-2")[0]["coupon"]["code"] not in res.text


def test_posts_without_the_right_csrf_token_change_nothing(shop: Shop) -> None:
    shop.customer("C-1", points=500)
    shop.customer("C-2", points=500)
    browser = enter(shop, "C-1")
    base = f"/m/{shop.store.slug}"
    confirm = browser.get(f"{base}/rewards/coupon-10").text
    key = field(confirm, "key")
    theirs = field(enter(shop, "C-2").get(f"{base}/rewards/coupon-10").text, "csrf")
    for csrf in (None, "", "0" * 40, theirs, field(confirm, "csrf") + "é"):
        data = {"key": key} if csrf is None else {"key": key, "csrf": csrf}
        res = browser.post(f"{base}/rewards/coupon-10", data=data)
        assert res.status_code == 403, csrf
        assert browser.post(f"{base}/check-in", data=data).status_code == 403
    assert shop.points("C-1") == 500 and redemptions(shop, "C-1") == []
    assert "Check in: +5 points" in browser.get(base).text  # not checked in
    # A malformed key is refused too, before anything is redeemed.
    res = browser.post(
        f"{base}/rewards/coupon-10", data={"csrf": field(confirm, "csrf"), "key": "short"}
    )
    assert res.status_code == 403 and redemptions(shop, "C-1") == []


def test_check_in_twice_the_same_day_credits_once(shop: Shop) -> None:
    shop.customer("C-1", points=10)
    browser = enter(shop, "C-1")
    base = f"/m/{shop.store.slug}"
    csrf = field(browser.get(base).text, "csrf")
    for _ in range(2):
        res = browser.post(f"{base}/check-in", data={"csrf": csrf}, follow_redirects=False)
        assert res.status_code == 303 and res.headers["location"].startswith(base)
    assert shop.points("C-1") == 10 + 5
    page = browser.get(base, params={"lang": "en"}).text
    assert "Checked in today: +5 points" in page
    assert "Streak: 1 day(s)" in page
    assert re.search(r"<button type=\"submit\" disabled>Checked in today</button>", page)
    assert "今日已签到:+5 积分" in browser.get(base, params={"lang": "zh"}).text


def test_a_survey_waiting_for_an_answer_is_linked(shop: Shop, engine: Engine) -> None:
    from tests.feedback.test_surveys_api import create_survey, one_token

    shop.customer("C-1")
    create_survey(engine, shop.store, "web", recontact_days=0)
    token = one_token(engine, shop.store, "web", "C-1", now=datetime.now(UTC))
    page = enter(shop, "C-1").get(f"/m/{shop.store.slug}").text
    assert f"/s/{shop.store.slug}/{token}" in page


def test_pages_answer_with_an_empty_ledger(shop: Shop) -> None:
    shop.customer("C-new")
    browser = enter(shop, "C-new")
    for path in ("", "/history", "/rewards"):
        res = browser.get(f"/m/{shop.store.slug}{path}")
        assert res.status_code == 200, (path, res.text)
    assert points_shown(browser.get(f"/m/{shop.store.slug}").text) == 0


def test_a_key_is_bound_to_its_member(shop: Shop) -> None:
    """The same one-time key sent by two members redeems for each, once."""
    shop.customer("C-1", points=500)
    shop.customer("C-2", points=500)
    key = uuid.uuid4().hex
    for ext in ("C-1", "C-2"):
        browser = enter(shop, ext)
        csrf = field(browser.get(f"/m/{shop.store.slug}").text, "csrf")
        res = browser.post(
            f"/m/{shop.store.slug}/rewards/pct-15",
            data={"csrf": csrf, "key": key},
            follow_redirects=False,
        )
        assert res.status_code == 303
        assert shop.points(ext) == 450


def test_a_store_without_a_programme_still_shows_the_pages(
    client: TestClient, engine: Engine
) -> None:
    store = new_store(engine)
    headers = [
        key_headers(engine, store, scope) for scope in (Scope.admin, Scope.ingest, Scope.read)
    ]
    bare = Shop(client, engine, store, *headers)  # no programme applied
    bare.customer("C-1", points=30)
    browser = enter(bare, "C-1")
    base = f"/m/{bare.store.slug}"
    for path in ("", "/history", "/rewards"):
        res = browser.get(f"{base}{path}", params={"lang": "en"})
        assert res.status_code == 200, (path, res.text)
        assert "no loyalty programme" in res.text or path == "/history"
    assert points_shown(browser.get(base).text) == 30
    # No check-in offered; a hand-made post (with a valid CSRF token) is refused gently.
    assert "/check-in" not in browser.get(base).text
    csrf = csrf_token(store, browser.cookies["patron_member"])
    res = browser.post(f"{base}/check-in", data={"csrf": csrf})
    assert res.status_code == 404 and "no loyalty programme" in res.text
    assert bare.points("C-1") == 30
