"""What a walk through the demo found: labels left in English or cut off, money without
its currency, and a slow first page after start."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from patron.analytics.report import AnalysisOptions
from patron.analytics.service import analytics
from patron.app import warm_up
from patron.db import unit_of_work
from patron.kit.clock import utcnow
from patron.stores.models import Store
from patron.web import dashboard
from patron.web.charts import analytics_view, wrap_label
from tests.web.test_dashboard_pages import add_customer, add_order, apply_example


def test_long_axis_labels_wrap_into_lines_no_wider_than_the_limit() -> None:
    label = "Handling problems (after-sales, damage, returns) (cost: lower is better)"
    lines = wrap_label(label, 26)
    assert isinstance(lines, list) and " ".join(lines) == label
    assert all(len(line) <= 26 for line in lines)
    chinese = "售后问题处理（售后、破损、退货）（成本：越低越好）"  # 2 columns a character
    parts = wrap_label(chinese, 26)
    assert isinstance(parts, list) and "".join(parts) == chinese
    assert all(len(p) <= 13 for p in parts)
    mixed = "售后问题与顾虑(假货、破损、退货) (成本：越低越好)"  # a long word, then a space
    lines = wrap_label(mixed, 26)
    assert isinstance(lines, list) and "".join(lines).replace(" ", "") == mixed.replace(" ", "")
    assert all(sum(2 if ord(ch) > 0x2E7F else 1 for ch in line) <= 26 for line in lines)
    assert wrap_label("Price", 26) == "Price"
    assert wrap_label("价格与优惠", 26) == "价格与优惠"


def _scored_store(engine: Engine, store: Store) -> None:
    apply_example(engine, store)
    now = utcnow()
    for i in range(6):
        add_customer(engine, store, f"C{i}", first_name=f"N{i}")
        for k in range(1 + i % 3):
            add_order(engine, store, f"O{i}-{k}", f"C{i}", now - timedelta(days=200 - 40 * k - i))
    with unit_of_work(engine) as session:
        analytics.run(session, session.merge(store), AnalysisOptions())


def test_analytics_money_figures_carry_the_currency_symbol(engine: Engine, store: Store) -> None:
    _scored_store(engine, store)
    with unit_of_work(engine) as session:
        view = analytics_view(session, session.merge(store), "zh")
    kpis = {k.key: k.value for k in view.kpis}
    assert kpis["net_revenue"].startswith("¥") and "CNY" not in kpis["net_revenue"]
    assert kpis["median_clv"] == "—" or kpis["median_clv"].startswith("¥")


def test_customer_360_names_segment_and_order_status_in_chinese(
    staff_client: Callable[..., TestClient], engine: Engine, store: Store
) -> None:
    _scored_store(engine, store)
    c = staff_client("owner")
    zh = c.get("/dashboard/customers/C2?lang=zh")
    assert zh.status_code == 200
    assert "已签收" in zh.text and ">delivered<" not in zh.text
    en = c.get("/dashboard/customers/C2?lang=en")
    assert ">delivered<" in en.text
    listing = c.get("/dashboard/customers?lang=zh").text
    segments = ("lost", "champions", "new_customers", "hibernating", "at_risk", "promising")
    assert not any(f"<td>{s}</td>" in listing for s in segments)


def test_warm_up_loads_holiday_calendars_and_page_templates() -> None:
    warm_up()
    assert "holidays.countries.china" in sys.modules
    loaded = {name for (_, name) in dashboard.ENV.cache} if dashboard.ENV.cache else set()
    assert {"dashboard/overview.html", "dashboard/analytics.html"} <= loaded
    started = time.perf_counter()
    warm_up()  # once per process: a second call costs next to nothing
    assert time.perf_counter() - started < 0.5
