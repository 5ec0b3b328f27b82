"""The merchant dashboard in Chromium: log in, switch to Chinese, open the overview,
customers, a customer 360 and the programme, simulate an order (htmx), and stay usable
on a narrow screen. Every page is screenshotted (artifacts/screenshots/)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from patron.kit.clock import utcnow
from patron.stores.models import Store
from patron.web import health
from tests.browser.conftest import screenshot
from tests.web.conftest import STAFF_PASSWORD, make_staff
from tests.web.test_dashboard_pages import add_customer, add_order, apply_example


def shop(engine: Engine, store: Store) -> None:
    apply_example(engine, store)
    add_customer(engine, store, "VIP-1", email="li@example.com", first_name="李", last_name="娜")
    add_customer(engine, store, "NEW-2", email="sam@example.com", first_name="Sam")
    add_order(engine, store, "O-1", "VIP-1", utcnow() - timedelta(days=40))
    add_order(engine, store, "O-2", "VIP-1", utcnow() - timedelta(days=5))
    health.forget()


def test_log_in_switch_language_and_walk_the_pages(
    engine: Engine, store: Store, staff_page: Any
) -> None:
    shop(engine, store)
    page = staff_page("owner")
    assert page.locator("h1").first.inner_text() == "Overview"
    assert page.locator("#r-relationship").is_visible()
    assert "at ¥0.01 a point" in page.locator("#kpi-liability").inner_text()
    screenshot(page, "dashboard-overview-en")

    page.click("a.lang-switch")
    page.wait_for_url("**lang=zh")
    assert page.locator("h1").first.inner_text() == "总览"
    assert "4R 健康记分卡" in page.content()
    screenshot(page, "dashboard-overview-zh")

    # the choice is remembered: the next page is Chinese without ?lang=
    page.click("a[data-nav='customers']")
    page.wait_for_url("**/dashboard/customers")
    assert page.locator("h1").first.inner_text() == "客户"
    page.fill("#q", "li@")
    page.press("#q", "Enter")
    page.wait_for_url("**q=li%40**")
    assert page.locator("#customers tbody tr").count() == 1
    screenshot(page, "dashboard-customers-zh")

    page.click("#customers a[href='/dashboard/customers/VIP-1']")
    page.wait_for_url("**/dashboard/customers/VIP-1")
    assert "李 娜" in page.locator("h1").inner_text()
    assert "O-2" in page.content()
    screenshot(page, "dashboard-customer-360-zh")

    page.goto(page.base + "/dashboard/programme?lang=en")
    assert "Silver" in page.content()
    page.fill("#sim-amount", "300")
    page.select_option("#sim-tier", "gold")
    page.click("#simulate-form button[type=submit]")
    page.wait_for_selector("#sim-total")
    assert "450 points" in page.locator("#sim-total").inner_text()
    assert page.url.endswith("/dashboard/programme?lang=en")  # htmx: no page load
    screenshot(page, "dashboard-programme-en")

    page.goto(page.base + "/dashboard/staff")
    assert page.locator("#staff tbody tr").count() == 1
    screenshot(page, "dashboard-staff-en")

    page.click("form.logout button")
    page.wait_for_url("**/login")
    page.goto(page.base + "/dashboard")
    page.wait_for_url("**/login?next=%2Fdashboard")


def test_support_role_sees_its_pages_only(engine: Engine, store: Store, staff_page: Any) -> None:
    page = staff_page("support", lang="zh")
    nav = page.locator("nav a").all_inner_texts()
    assert "客户" in nav and "员工" not in nav and "会员计划" not in nav
    response = page.goto(page.base + "/dashboard/staff")
    assert response.status == 403 and "无权访问" in page.content()
    screenshot(page, "dashboard-forbidden-zh")


def test_login_page_and_a_narrow_screen(
    engine: Engine, store: Store, live_server: str, phone: Any
) -> None:
    email = make_staff(engine, store, "manager")
    phone.goto(f"{live_server}/login")
    phone.fill("#store", store.slug)
    phone.fill("#email", email)
    phone.fill("#password", "not the password")
    phone.click("button[type=submit]")
    assert "Wrong e-mail or password" in phone.locator(".alert").inner_text()
    screenshot(phone, "dashboard-login-error")
    phone.fill("#password", STAFF_PASSWORD)
    phone.click("button[type=submit]")
    phone.wait_for_url(f"{live_server}/dashboard")
    # the sidebar became a top menu: no sideways scrolling
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= phone.viewport_size["width"] + 1
    screenshot(phone, "dashboard-overview-phone")
