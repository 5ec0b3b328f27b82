"""The dashboard's own pages: overview (4R scorecard, KPIs), customers and the 360,
programme (and simulate an order), staff. Data goes in through the real services."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from patron.analytics.report import AnalysisOptions
from patron.analytics.service import analytics
from patron.customers.models import Customer
from patron.db import unit_of_work
from patron.kit.clock import utcnow
from patron.loyalty.models import LoyaltyMember
from patron.loyalty.program import load_yaml
from patron.loyalty.programs import programs
from patron.orders.schemas import OrderIn
from patron.orders.service import orders
from patron.stores.models import Store
from patron.web import customer_pages, health
from patron.web.models import Role
from patron.web.scorecard import Target, measure, pillar, tenure_from_cohorts
from tests.web.conftest import STAFF_PASSWORD, login_client

EXAMPLE = Path(__file__).parents[2] / "src/patron/loyalty/examples/program.yaml"


@pytest.fixture(autouse=True)
def _no_cache() -> None:
    health.forget()


def apply_example(engine: Engine, store: Store) -> None:
    with unit_of_work(engine) as session:
        programs.apply(
            session, session.merge(store), load_yaml(EXAMPLE.read_text("utf-8")), source="cli"
        )


def add_customer(engine: Engine, store: Store, ext: str, **fields: Any) -> None:
    with unit_of_work(engine) as session:
        session.add(Customer(store_id=store.id, external_id=ext, **fields))


def add_order(engine: Engine, store: Store, ext: str, customer: str, at: datetime) -> None:
    body = {
        "external_id": ext,
        "customer_external_id": customer,
        "status": "delivered",
        "currency": "CNY",
        "placed_at": at.isoformat(),
        "paid_at": at.isoformat(),
        "delivered_at": (at + timedelta(days=1)).isoformat(),
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": "100.00"}],
    }
    with unit_of_work(engine) as session:
        results = orders.upsert_many(
            session, session.merge(store), [OrderIn.model_validate(body)], now=at
        )
    assert all(r.status != "error" for r in results), results


class _Text(HTMLParser):
    """The text inside the element with a given id (nested elements included)."""

    VOID = frozenset({"br", "img", "input", "meta", "link", "hr", "wbr"})

    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id, self.depth, self.parts, self.found = element_id, 0, [], False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        if self.depth:
            self.depth += 1
        elif dict(attrs).get("id") == self.element_id and not self.found:
            self.depth, self.found = 1, True

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag not in self.VOID:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.parts.append(data)


def text_of(html: str, element_id: str) -> str:
    parser = _Text(element_id)
    parser.feed(html)
    assert parser.found, element_id
    return re.sub(r"\s+", " ", " ".join(parser.parts)).strip()


# --- the scorecard rules (pure) ----------------------------------------------------------


def test_lights_follow_targets_both_ways() -> None:
    up, down = Target(80, 50), Target(20, 35, higher_is_better=False)
    assert [up.light(v) for v in (90, 80, 60, 49.9, None)] == [
        "green",
        "green",
        "amber",
        "red",
        "grey",
    ]
    assert [down.light(v) for v in (10, 20, 30, 36)] == ["green", "green", "amber", "red"]


def test_a_pillar_shows_its_weakest_graded_measure() -> None:
    p = pillar(
        "rewards",
        [
            measure("active_members", 50.0, "pct"),  # green
            measure("redemption_rate", 12.0, "pct"),  # amber
            measure("breakage", None, "pct"),  # grey: no data, not counted
            measure("liability", 1e9, "money", graded=False),
        ],
    )
    assert p.light == "amber" and p.weakest is not None and p.weakest.key == "redemption_rate"
    assert pillar("x", [measure("crr", None, "pct")]).light == "grey"
    assert pillar("x", [measure("crr", 99.0, "pct")]).weakest is None


def test_tenure_from_cohorts_is_the_weighted_median_of_last_complete_period() -> None:
    # Jan cohort 10 customers, Feb 4, Mar 8, Apr (the incomplete data end) 5.
    # March is the last complete period: Jan buyers 10×0.2 = 2 (2 months old), Feb 4×0.5 = 2
    # (1 month), Mar 8×1.0 = 8 (0 months): the median buyer is 0 months old.
    cohorts = {
        "period": "month",
        "sizes": [10, 4, 8, 5],
        "cells": [
            [1.0, 0.3, 0.2, 0.1],
            [1.0, 0.5, 0.25, None],
            [1.0, 0.5, None, None],
            [1.0, None, None, None],
        ],
    }
    assert tenure_from_cohorts(cohorts) == 0.0
    cohorts["sizes"] = [10, 4, 1, 5]  # now Jan's 2 and Feb's 2 outweigh March's 1
    assert tenure_from_cohorts(cohorts) == 1.0
    cohorts["period"] = "quarter"
    assert tenure_from_cohorts(cohorts) == 3.0
    assert tenure_from_cohorts({"period": "month", "sizes": [3], "cells": [[1.0]]}) is None


# --- overview ----------------------------------------------------------------------------


def test_overview_of_an_empty_store_says_what_is_missing(
    staff_client: Callable[..., TestClient], store: Store
) -> None:
    res = staff_client("analyst").get("/dashboard")
    assert res.status_code == 200
    assert "No analysis has been run" in res.text
    assert f"patron analyze --source db --store {store.slug} --write-back" in res.text
    assert "No loyalty programme yet" in res.text
    for key in ("relationship", "relevance", "responsiveness", "rewards"):
        assert f'class="card r-card grey" id="r-{key}"' in res.text
    zh = staff_client().get("/dashboard?lang=zh").text
    assert "尚未运行数据分析" in zh and "4R 健康记分卡" in zh


def test_overview_with_data_shows_crr_members_and_lights(
    staff_client: Callable[..., TestClient], engine: Engine, store: Store
) -> None:
    apply_example(engine, store)
    now = utcnow()
    for i in range(6):
        add_customer(
            engine,
            store,
            f"C{i}",
            email=f"c{i}@example.com",
            birthday=None if i % 2 else datetime(1990, 1, 1).date(),
        )
    # every customer buys twice, three months apart, within the last year
    for i in range(6):
        add_order(engine, store, f"O{i}a", f"C{i}", now - timedelta(days=200 - i))
        add_order(engine, store, f"O{i}b", f"C{i}", now - timedelta(days=100 - i))
    with unit_of_work(engine) as session:
        analytics.run(session, session.merge(store), AnalysisOptions())
        members = session.scalar(
            select(LoyaltyMember.id).where(LoyaltyMember.store_id == store.id).limit(1)
        )
    html = staff_client().get("/dashboard").text
    assert "No analysis has been run" not in html
    assert re.search(r"\d+\.\d%", text_of(html, "kpi-crr"))
    # the birthday share: 3 of 6 profiles = 50.0%, exactly the target: green
    relevance = text_of(html, "r-relevance")
    assert "50.0%" in relevance
    # repeat buyers: all 6 bought twice in the last 12 months
    assert "100.0%" in text_of(html, "r-relationship")
    if members is not None:  # delivered orders made them members of the programme
        assert "6" in text_of(html, "kpi-members")
    assert "¥" in text_of(html, "kpi-liability")


def test_overview_is_cached_briefly_per_store(
    staff_client: Callable[..., TestClient], engine: Engine, store: Store
) -> None:
    c = staff_client()
    assert "Profiles with a birthday" in c.get("/dashboard").text
    add_customer(engine, store, "LATE", birthday=datetime(1990, 1, 1).date())
    cached = text_of(c.get("/dashboard").text, "r-relevance")
    health.forget(store.id)
    fresh = text_of(c.get("/dashboard").text, "r-relevance")
    assert "100.0%" in fresh and "100.0%" not in cached


# --- customers ---------------------------------------------------------------------------


def test_customer_search_by_id_email_name_phone_and_pages(
    staff_client: Callable[..., TestClient],
    engine: Engine,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_customer(engine, store, "ZH-1", email="wang@example.com", first_name="王", last_name="芳")
    add_customer(engine, store, "EN-2", email="ann@example.com", first_name="Ann", phone="+8613800")
    add_customer(engine, store, "EN-3", email="bob@example.com", first_name="Bob")
    add_customer(engine, store, "100%_x", email="odd@example.com")
    c = staff_client("support")

    def ids(q: str, **params: Any) -> list[str]:
        res = c.get("/dashboard/customers", params={"q": q, **params})
        assert res.status_code == 200
        return re.findall(r'href="/dashboard/customers/([^"]+)"', res.text)

    assert ids("ZH-1") == ["ZH-1"]
    assert ids("ANN@example.com") == ["EN-2"]
    assert ids("an") == ["EN-2"]  # first name prefix, case-insensitive
    assert ids("王") == ["ZH-1"]
    assert ids("+8613800") == ["EN-2"]
    assert ids("en-") == ["EN-2", "EN-3"]
    assert ids("100%") == ["100%25_x"]  # % is literal, not a wildcard
    assert ids("%") == []
    assert len(ids("")) == 4
    monkeypatch.setattr(customer_pages, "PAGE_SIZE", 2)
    first = c.get("/dashboard/customers").text
    after = re.search(r"after=(\d+)", first)
    assert after and len(re.findall(r'href="/dashboard/customers/[^"]+"', first)) == 2
    second = c.get(f"/dashboard/customers?after={after.group(1)}").text
    assert len(re.findall(r'href="/dashboard/customers/[^"]+"', second)) == 2
    assert c.get("/dashboard/customers?after=-1").status_code == 422


def test_customer_360_and_unknown_customer(
    staff_client: Callable[..., TestClient], engine: Engine, store: Store
) -> None:
    apply_example(engine, store)
    add_customer(engine, store, "C/1", email="c1@example.com", first_name="Lin")
    add_order(engine, store, "O-1", "C/1", utcnow() - timedelta(days=3))
    c = staff_client("support")
    res = c.get("/dashboard/customers/C/1")
    assert res.status_code == 200
    assert "Lin" in res.text and "O-1" in res.text and "Points and tier" in res.text
    assert "Not scored yet" in res.text  # no analysis yet
    res = c.get("/dashboard/customers/NOPE?lang=zh")
    assert res.status_code == 404 and "本店铺没有此外部编号的客户" in res.text


# --- programme -----------------------------------------------------------------------------


def test_programme_page_lists_tiers_rules_rewards(
    staff_client: Callable[..., TestClient], engine: Engine, store: Store
) -> None:
    c = staff_client("manager")
    assert "no loyalty programme yet" in c.get("/dashboard/programme").text
    apply_example(engine, store)
    html = c.get("/dashboard/programme").text
    for text in ("Silver", "Gold", "birthday-month-double", "Double points in your birthday"):
        assert text in html
    zh = c.get("/dashboard/programme?lang=zh").text
    assert "银卡" in zh and "生日月双倍积分" in zh
    assert staff_client("support").get("/dashboard/programme").status_code == 403


def test_simulate_an_order_explains_the_rules(
    staff_client: Callable[..., TestClient], engine: Engine, store: Store
) -> None:
    apply_example(engine, store)
    c = staff_client("analyst")  # read-only, but a simulation writes nothing
    form = {"csrf": c.csrf, "amount": "300", "tier": "gold", "channel": "app"}  # type: ignore[attr-defined]
    form |= {"first_order": "1", "day": "2026-03-05"}
    res = c.post("/dashboard/programme/simulate", data=form, headers={"HX-Request": "true"})
    assert res.status_code == 200 and "<html" not in res.text  # the partial
    # gold earns 1.5 × 300 = 450, the app first-order bonus adds 100
    assert "550 points" in res.text
    assert re.search(r"First order in the app.*?Fired", res.text, re.S)
    assert re.search(r"skincare \+50%.*?Not fired.*?before the window", res.text, re.S)
    full = c.post("/dashboard/programme/simulate", data=form)  # without JavaScript
    assert full.status_code == 200 and "<html" in full.text and "550 points" in full.text
    bad = c.post("/dashboard/programme/simulate", data={**form, "amount": "lots"})
    assert bad.status_code == 422 and "Amount: a number" in bad.text
    bad = c.post(
        "/dashboard/programme/simulate",
        data={**form, "tier": "platinum"},
        headers={"HX-Request": "1"},
    )
    assert bad.status_code == 200 and "platinum" in bad.text and 'id="sim-problems"' in bad.text
    no_csrf = c.post("/dashboard/programme/simulate", data={**form, "csrf": "x"})
    assert no_csrf.status_code == 403


# --- staff ---------------------------------------------------------------------------------


def test_owner_adds_and_disables_staff(
    staff_client: Callable[..., TestClient], client: TestClient, store: Store
) -> None:
    owner = staff_client("owner")
    form = {"csrf": owner.csrf, "email": "New@Example.com", "name": "New", "role": "support"}  # type: ignore[attr-defined]
    res = owner.post("/dashboard/staff", data={**form, "password": "short"})
    assert res.status_code == 422 and "at least 10 characters" in res.text
    res = owner.post(
        "/dashboard/staff", data={**form, "password": STAFF_PASSWORD}, follow_redirects=False
    )
    assert res.status_code == 303
    assert "new@example.com" in owner.get("/dashboard/staff").text
    again = owner.post("/dashboard/staff", data={**form, "password": STAFF_PASSWORD})
    assert again.status_code == 409 and "already exists" in again.text
    newbie = login_client(client.app, store, "new@example.com")
    assert newbie.get("/dashboard/staff").status_code == 403  # support
    staff_id = re.search(r"/dashboard/staff/(\d+)/disable", owner.get("/dashboard/staff").text)
    assert staff_id
    res = owner.post(
        f"/dashboard/staff/{staff_id.group(1)}/disable",
        data={"csrf": owner.csrf},
        follow_redirects=False,  # type: ignore[attr-defined]
    )
    assert res.status_code == 303
    assert newbie.get("/dashboard", follow_redirects=False).status_code == 303  # logged out
    assert (
        owner.post("/dashboard/staff/999999999/disable", data={"csrf": owner.csrf}).status_code
        == 404
    )  # type: ignore[attr-defined]


def test_owner_cannot_disable_themself_and_others_cannot_manage_staff(
    staff_client: Callable[..., TestClient], engine: Engine, store: Store
) -> None:
    owner = staff_client("owner")
    with unit_of_work(engine) as session:
        from patron.web.models import StaffUser

        own_id = session.scalars(select(StaffUser.id).where(StaffUser.store_id == store.id)).first()
    res = owner.post(f"/dashboard/staff/{own_id}/disable", data={"csrf": owner.csrf})  # type: ignore[attr-defined]
    assert res.status_code == 409 and "cannot disable your own" in res.text
    for role in (Role.manager, Role.support, Role.analyst):
        c = staff_client(role)
        res = c.post(
            "/dashboard/staff",
            data={
                "csrf": c.csrf,
                "email": "x@example.com",
                "name": "X",
                "role": "owner",  # type: ignore[attr-defined]
                "password": STAFF_PASSWORD,
            },
        )
        assert res.status_code == 403, role


def test_pages_are_fast_enough_for_a_small_store(
    staff_client: Callable[..., TestClient], engine: Engine, store: Store
) -> None:
    import time

    apply_example(engine, store)
    c = staff_client()
    for path in ("/dashboard", "/dashboard/customers", "/dashboard/programme", "/dashboard/staff"):
        c.get(path)  # warm
        started = time.perf_counter()
        assert c.get(path).status_code == 200
        assert time.perf_counter() - started < 1.0, path  # generous: a shared CI machine
