"""The analytics, surveys and tickets pages in Chromium, in English and Chinese: the
bundled Chart.js draws every chart (no CDN), the cohort heatmap has its cells, a ticket's
SLA timer shows; a screenshot of each page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from patron.db import unit_of_work
from patron.kit.clock import utcnow
from patron.stores.models import Store
from patron.support.schemas import TicketIn
from patron.support.service import tickets
from tests.browser.conftest import screenshot
from tests.feedback.test_surveys_api import add_customer
from tests.web.test_charts import (
    COMPARE,
    MAR,
    answer,
    create_survey,
    nps_answers,
    order,
)

LANGS = ("en", "zh")


@pytest.fixture
def shop(engine: Engine, store: Store) -> Iterator[Store]:
    """The browser's store: a few customers analysed, survey answers, two tickets."""
    from datetime import UTC, datetime

    from patron.analytics.report import AnalysisOptions
    from patron.analytics.service import analytics
    from tests.feedback.test_surveys_api import SIMPLE

    months = [datetime(2026, m, 10, 4, 0, tzinfo=UTC) for m in (1, 2, 3)]
    for i in range(12):
        add_customer(engine, store, f"B{i}")
        first = months[i % 3]
        order(engine, store, f"B{i}-1", f"B{i}", first, f"{10 + 7 * i}.00")
        if i % 2 == 0:
            order(engine, store, f"B{i}-2", f"B{i}", first + timedelta(days=20), "25.00")
    with unit_of_work(engine) as session:
        analytics.run(session, session.merge(store), AnalysisOptions(as_of=datetime(2026, 4, 1)))
    create_survey(engine, store, "after-order", definition=SIMPLE, recontact_days=0)
    create_survey(engine, store, "value", definition=COMPARE, recontact_days=0)
    for i, nps in enumerate((10, 9, 3, 8, 10, 6)):
        answer(
            engine,
            store,
            "after-order",
            f"N{i}",
            MAR + timedelta(days=12 * i),
            nps_answers(nps, delivery=(6, 3)),
        )
    for i, us in enumerate((8, 6, 9)):
        answer(
            engine,
            store,
            "value",
            f"V{i}",
            MAR,
            {"quality": {"importance": 4, "ratings": {"us": us, "JD": 6}}},
        )
    for subject, channel, days in (("Parcel lost", "email", 20), ("Wrong colour", "chat", 0)):
        with unit_of_work(engine) as session:
            tickets.open(
                session,
                session.merge(store),
                TicketIn.model_validate(
                    {
                        "channel": channel,
                        "subject": subject,
                        "body": "Please help",
                        "customer_external_id": "B0",
                    }
                ),
                now=utcnow() - timedelta(days=days),
            )
    yield store


def charts_drawn(page: Any) -> int:
    page.wait_for_function("() => window.Chart && Object.keys(Chart.instances).length > 0")
    return int(page.evaluate("Object.keys(Chart.instances).length"))


@pytest.mark.parametrize("lang", LANGS)
def test_analytics_page(staff_page: Callable[..., Any], shop: Store, lang: str) -> None:
    page = staff_page("analyst", lang=lang)
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(page.base + "/dashboard/analytics")
    # Six canvases (RFM, CLV or its message, Pareto, NPS, gaps, comparison), all drawn.
    canvases = page.locator("canvas[data-chart]").count()
    assert canvases >= 5
    assert charts_drawn(page) == canvases
    assert page.locator("#cohort-heatmap tbody td.heat").count() >= 3 * 3
    assert page.locator("#cohort-heatmap td.h10").count() == 3  # each cohort's first month
    title = "帕累托曲线（二八法则）" if lang == "zh" else "Pareto curve (80/20)"
    assert page.locator("#h-pareto").inner_text() == title
    # The Pareto chart's labels came translated from the server.
    axis = page.evaluate(
        "Chart.getChart(document.querySelector('[data-chart=spec-pareto]'))"
        ".options.scales.x.title.text"
    )
    assert axis == ("客户十分位（由高到低）" if lang == "zh" else "Customer decile (best first)")
    assert not failed, failed
    assert all(
        u.startswith(page.base)
        for u in page.evaluate("[...document.scripts].map(s => s.src).filter(Boolean)")
    )
    screenshot(page, f"dashboard-analytics-{lang}")


@pytest.mark.parametrize("lang", LANGS)
def test_surveys_page(staff_page: Callable[..., Any], shop: Store, lang: str) -> None:
    page = staff_page("support", lang=lang)
    page.goto(page.base + "/dashboard/surveys")
    assert page.locator("#survey-table tbody tr").count() == 2
    assert charts_drawn(page) == 3  # NPS, CSAT and CES trends
    screenshot(page, f"dashboard-surveys-{lang}")


@pytest.mark.parametrize("lang", LANGS)
def test_tickets_pages(staff_page: Callable[..., Any], shop: Store, lang: str) -> None:
    page = staff_page("support", lang=lang)
    page.goto(page.base + "/dashboard/tickets")
    # Ours and the follow-ups the unhappy answers opened, each with its running clock.
    rows = page.locator("#ticket-table tbody tr")
    assert rows.count() >= 2 and page.locator("#ticket-table .sla-timer").count() == rows.count()
    lost = rows.filter(has_text="Parcel lost").locator(".sla-timer").inner_text()
    assert ("已超时" if lang == "zh" else "overdue by") in lost
    fresh = rows.filter(has_text="Wrong colour").locator(".sla-timer").inner_text()
    assert ("剩余" if lang == "zh" else "left") in fresh
    assert page.locator("#sla-summary .kpi").count() == 4
    screenshot(page, f"dashboard-tickets-{lang}")
    rows.filter(has_text="Parcel lost").locator("a").first.click()
    page.wait_for_selector("#sla-clocks")
    assert page.locator("#sla-clocks .sla-timer").count() == 2
    assert page.locator("#ticket-thread li").count() >= 1
    screenshot(page, f"dashboard-ticket-{lang}")
