"""The analytics, surveys and tickets pages over HTTP on SQLite and PostgreSQL: who may
open them, what they show in both languages (heatmap cells, chart specs, scores, SLA
timers, a ticket's thread), their empty states, forgiving filters and tenancy."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from patron.db import unit_of_work
from patron.kit.clock import utcnow
from patron.stores.models import Store
from patron.support.schemas import TicketIn
from patron.support.service import tickets
from tests.conftest import new_store
from tests.feedback.test_surveys_api import add_customer
from tests.web.conftest import login_client, make_staff
from tests.web.test_charts import analysed, answered  # noqa: F401  (fixtures)

PAGES = ("/dashboard/analytics", "/dashboard/surveys", "/dashboard/tickets")
SPEC = re.compile(r'<script type="application/json" id="spec-(\w+)">(.*?)</script>', re.S)


def specs(html: str) -> dict[str, dict[str, object]]:
    return {name: json.loads(body) for name, body in SPEC.findall(html)}


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("owner", set(PAGES)),
        ("manager", set(PAGES)),
        ("analyst", set(PAGES)),
        ("support", {"/dashboard/surveys", "/dashboard/tickets"}),
    ],
)
def test_roles(staff_client: Callable[..., TestClient], role: str, allowed: set[str]) -> None:
    c = staff_client(role)
    for path in PAGES:
        res = c.get(path)
        assert res.status_code == (200 if path in allowed else 403), (path, res.text[:300])
    if "/dashboard/analytics" not in allowed:
        assert "Not allowed" in c.get("/dashboard/analytics?lang=en").text


def test_login_required(client: TestClient) -> None:
    anonymous = TestClient(client.app, raise_server_exceptions=False)
    for path in (*PAGES, "/dashboard/tickets/1"):
        res = anonymous.get(path, follow_redirects=False)
        assert res.status_code == 303 and res.headers["location"].startswith("/login?next=")


def test_empty_store_says_what_to_do(staff_client: Callable[..., TestClient]) -> None:
    c = staff_client("analyst")
    en = c.get("/dashboard/analytics?lang=en").text
    assert "No analysis has been run for this store yet" in en and "<canvas" not in en
    zh = c.get("/dashboard/analytics?lang=zh").text
    assert "本店尚未运行分析" in zh and "帕累托曲线" in zh
    surveys = c.get("/dashboard/surveys?lang=en").text
    assert "No surveys yet." in surveys and "No survey answers yet." in surveys
    assert "No tickets match." in c.get("/dashboard/tickets?lang=en").text


def test_analytics_page_of_a_run(client: TestClient, engine: Engine, analysed: Store) -> None:  # noqa: F811
    c = login_client(client.app, analysed, make_staff(engine, analysed, "manager"))
    res = c.get("/dashboard/analytics?lang=en")
    assert res.status_code == 200
    html = res.text
    # The heatmap: three cohorts; January's row 100%, 50%, 0.0% (see test_charts).
    table = html[html.index('id="cohort-heatmap"') :]
    table = table[: table.index("</table>")]
    assert table.count('<th scope="row">') == 3
    assert re.search(
        r"2026-01</th>\s*<td class=\"num\">2</td>\s*<td class=\"heat h10\">100%</td>"
        r"<td class=\"heat h9\">50%</td><td class=\"heat h0\">0.0%</td>",
        table,
    )
    # Chart specs are JSON data beside their canvases; the Pareto bars as derived.
    found = specs(html)
    # No answers: no NPS, gaps or comparison; five customers may be too few for the CLV
    # models, and then the page says so instead of drawing.
    assert {"rfm", "pareto"} <= set(found) <= {"rfm", "clv", "pareto"}
    assert "clv" in found or "the CLV models could not be fitted" in html
    assert found["pareto"]["bars"]["data"][:2] == [25.0, 25.0]  # type: ignore[index]
    for name in found:
        assert f'data-chart="spec-{name}"' in html
    assert 'src="/static/vendor/chart.umd.min.js"' in html and "https://" not in html
    kpis = dict(
        re.findall(
            r'data-kpi="(\w+)"><div class="label">[^<]*</div><div class="value">([^<]*)<', html
        )
    )
    assert kpis["customers"] == "5" and kpis["top20_share"] == "50.0%"
    zh = c.get("/dashboard/analytics?lang=zh").text
    assert "客户保持率（同期群）" in zh and "帕累托曲线（二八法则）" in zh
    assert specs(zh)["pareto"]["x"] == "客户十分位（由高到低）"


def test_analytics_filters_are_forgiving(
    client: TestClient,
    engine: Engine,
    answered: Store,  # noqa: F811
) -> None:
    c = login_client(client.app, answered, make_staff(engine, answered, "owner"))
    base = specs(c.get("/dashboard/analytics?lang=en").text)
    assert base["nps"]["labels"] == ["2026-03", "2026-04"]
    # One survey: its answers only (the value survey has no NPS question).
    only = c.get("/dashboard/analytics?survey=value&lang=en").text
    assert "spec-nps" not in only and "spec-compare" in only
    for bad in ("?survey=nope", "?months=7", "?months=abc", "?survey=%00"):
        res = c.get("/dashboard/analytics" + bad)
        assert res.status_code == 200, bad
        assert specs(res.text)["nps"]["labels"] == ["2026-03", "2026-04"]


def test_surveys_page(client: TestClient, engine: Engine, answered: Store) -> None:  # noqa: F811
    c = login_client(client.app, answered, make_staff(engine, answered, "support"))
    html = c.get("/dashboard/surveys?lang=en").text
    table = html[html.index('id="survey-table"') : html.index("</table>")]
    row = table[table.index("after-order") :]
    # 5 answers; NPS 3 promoters − 2 detractors of 5 = 20.0.
    assert re.search(r'<td class="num">5</td>\s*<td class="num"><span class="est">20\.0', row)
    assert set(specs(html)) == {"nps", "csat", "ces"}
    assert "/dashboard/analytics#sec-gaps" in html
    one = c.get("/dashboard/surveys?survey=value&lang=zh").text
    assert "趋势：value" in one and "spec-nps" not in one  # no NPS answers in that survey
    assert "范围内：2 份回答" in one


def open_ticket(engine: Engine, store: Store, subject: str, channel: str, days_ago: int) -> int:
    with unit_of_work(engine) as session:
        t, _ = tickets.open(
            session,
            session.merge(store),
            TicketIn.model_validate(
                {
                    "channel": channel,
                    "subject": subject,
                    "body": f"{subject}: please help",
                    "customer_external_id": "T1",
                }
            ),
            now=utcnow() - timedelta(days=days_ago),
        )
        return t.id


def test_tickets_pages(
    staff_client: Callable[..., TestClient], engine: Engine, store: Store
) -> None:
    add_customer(engine, store, "T1")
    old = open_ticket(engine, store, "Parcel lost", "email", 30)
    fresh = open_ticket(engine, store, "Wrong colour", "chat", 0)
    c = staff_client("support")
    html = c.get("/dashboard/tickets?lang=en").text
    rows = re.findall(r'<tr data-ticket="(\d+)">', html)
    assert rows == [str(old), str(fresh)]  # soonest due first: the overdue one
    assert "First response: overdue by" in html and 'data-state="breached"' in html
    assert re.search(r"First response: \d+ (h|min).*left", html)
    assert "2 of 2 tickets" in html
    only_chat = c.get("/dashboard/tickets?channel=chat").text
    assert re.findall(r'<tr data-ticket="(\d+)">', only_chat) == [str(fresh)]
    assert c.get("/dashboard/tickets?status=bogus&priority=x").status_code == 200
    zh = c.get("/dashboard/tickets?lang=zh").text
    assert "已超时" in zh and "服务时效达成率" in zh
    detail = c.get(f"/dashboard/tickets/{old}?lang=en")
    assert detail.status_code == 200
    assert "Parcel lost: please help" in detail.text and 'data-clock="resolution"' in detail.text
    for missing in ("999999999", "0", "abc", "1e3", "9" * 30):
        assert c.get(f"/dashboard/tickets/{missing}").status_code == 404, missing
    # Another store's ticket is not found here.
    other = new_store(engine)
    add_customer(engine, other, "T1")
    theirs = open_ticket(engine, other, "Not yours", "email", 0)
    assert c.get(f"/dashboard/tickets/{theirs}").status_code == 404
