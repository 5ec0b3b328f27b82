"""The campaigns pages in Chromium, in English and Chinese: the list with status,
recipients, conversion of the sent group against the holdout and the uplift with its
interval; a campaign's groups (variants, holdout, A/B); a screenshot of each."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from patron.kit.clock import utcnow
from patron.stores.models import Store
from tests.browser.conftest import screenshot
from tests.campaigns.test_campaigns import add_customer, add_order, create, run, schedule

LANGS = ("en", "zh")


@pytest.fixture
def campaigns(engine: Engine, store: Store) -> Store:
    """A sent newsletter (A/B, 30% holdout) with orders after it, and a draft."""
    sent_at = utcnow() - timedelta(days=10)
    sent_at = sent_at.replace(hour=12)  # outside the default quiet hours (21:00-09:00)
    people = [add_customer(engine, store, f"W{n}", first_name=f"W{n}") for n in range(30)]
    create(engine, store, key="newsletter", name="May newsletter", holdout_percent=30)
    schedule(engine, store, "newsletter", sent_at)
    run(engine, store, sent_at)
    for n, c in enumerate(people):
        if n % 3 == 0:
            add_order(engine, store, c.id, f"o{n}", sent_at + timedelta(days=2), 8800)
    create(engine, store, key="draft", name="Autumn preview", holdout_percent=0)
    return store


@pytest.mark.parametrize("lang", LANGS)
def test_campaign_pages(staff_page: Callable[..., Any], campaigns: Store, lang: str) -> None:
    page = staff_page("manager", lang=lang)
    page.goto(page.base + "/dashboard/campaigns")
    rows = page.locator("#campaigns tbody tr")
    assert rows.count() == 2
    sent = page.locator('#campaigns tr[data-key="newsletter"]')
    # Its messages wait in the outbox (nothing delivered them): still sending.
    assert ("发送中" if lang == "zh" else "Sending") in sent.inner_text()
    # An uplift with its interval in brackets; the draft has none yet.
    assert "[" in sent.locator("td.uplift").inner_text()
    draft = page.locator('#campaigns tr[data-key="draft"]')
    assert ("草稿" if lang == "zh" else "Draft") in draft.inner_text()
    screenshot(page, f"dashboard-campaigns-{lang}")

    sent.locator("a").first.click()
    page.wait_for_url("**/dashboard/campaigns/newsletter")
    groups = page.locator("#campaign-groups tbody tr")
    names = [groups.nth(i).get_attribute("data-group") for i in range(groups.count())]
    assert names == ["treatment", "A", "B", "holdout"]
    heading = "分组" if lang == "zh" else "Groups"
    assert page.get_by_role("heading", name=heading).count() == 1
    assert page.locator("#campaign-kpis .kpi").count() == 7
    screenshot(page, f"dashboard-campaign-{lang}")


def test_analyst_sees_no_buttons_and_manager_pauses(
    staff_page: Callable[..., Any], campaigns: Store
) -> None:
    analyst = staff_page("analyst")
    analyst.goto(analyst.base + "/dashboard/campaigns/draft")
    assert analyst.locator("button.primary").count() == 0
    manager = staff_page("manager")
    manager.goto(manager.base + "/dashboard/campaigns/draft")
    manager.locator("button.primary").click()  # send / activate now
    manager.wait_for_url("**/dashboard/campaigns/draft")
    assert "Scheduled" in manager.locator("h1").inner_text()
