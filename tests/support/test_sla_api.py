"""SLA clocks on a real calendar: settings through the API, business hours and Chinese
public holidays, pauses counted in business time, breach warnings and escalations by the
SLA job (idempotent), and the attainment report."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from patron.auth import Scope
from patron.db import unit_of_work
from patron.stores.models import Store
from patron.support import settings as support_settings
from patron.support.insights import insights
from patron.support.service import run_sla_check, tickets
from tests.conftest import key_headers
from tests.support.test_tickets import (
    event_kinds,
    fields_of,
    message,
    open_ticket,
    status,
    ticket_row,
)

CST = ZoneInfo("Asia/Shanghai")
HOUR = timedelta(hours=1)
OFFICE: dict[str, Any] = {
    "hours": {
        "timezone": "Asia/Shanghai",
        "hours": {day: ["09:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
        "holidays_country": "CN",
    },
    "targets": {"email": {"normal": {"first_response": "4h", "resolution": "16h"}}},
}


def cst(*args: int) -> datetime:
    return datetime(*args, tzinfo=CST)  # type: ignore[misc]


def apply(engine: Engine, store: Store, raw: dict[str, Any]) -> int:
    with unit_of_work(engine) as session:
        return support_settings.apply(session, session.merge(store), raw)[1]


def check(engine: Engine, store: Store, now: datetime) -> tuple[int, int, int, int]:
    with unit_of_work(engine) as session:
        done = run_sla_check(session, session.merge(store), now)
    return done.checked, done.warnings, done.breaches, done.escalated


# -- settings -----------------------------------------------------------------------------


def test_settings_defaults_partial_merge_and_versions(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    read = key_headers(engine, store, Scope.read)
    res = client.get("/v1/support/settings", headers=read)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["version"] == 0
    config = body["config"]
    assert config["targets"]["email"]["normal"] == {"first_response": "1d", "resolution": "3d"}
    assert config["warn_at"] == 0.8
    assert config["caps"]["agent"] == {"points": 200, "coupon_value": "20"}
    assert config["caps"]["manager"] == {"points": None, "coupon_value": None}
    assert config["hours"]["timezone"] == "UTC"

    res = client.put("/v1/support/settings", json=OFFICE, headers=admin)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["version"] == 1
    email = body["config"]["targets"]["email"]
    assert email["normal"] == {"first_response": "4h", "resolution": "16h"}
    assert email["high"] == {"first_response": "8h", "resolution": "2d"}  # a default kept
    # The same document again keeps the version; another one bumps it.
    assert client.put("/v1/support/settings", json=OFFICE, headers=admin).json()["version"] == 1
    res = client.put("/v1/support/settings", json={**OFFICE, "warn_at": 0.5}, headers=admin)
    assert res.json()["version"] == 2 and res.json()["config"]["warn_at"] == 0.5
    assert client.put("/v1/support/settings", json=OFFICE, headers=read).status_code == 403


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"targets": {"email": {"normal": {"first_response": "24 hours"}}}}, "first_response"),
        ({"targets": {"email": {"normal": {"first_response": 3600}}}}, "first_response"),
        ({"targets": {"email": {"normal": {"first_response": "0h"}}}}, "first_response"),
        ({"targets": {"email": {"low": {"first_response": "9d"}}}}, "resolution"),
        ({"targets": {"fax": {"normal": {"first_response": "1h"}}}}, "targets.fax"),
        ({"targets": {"email": {"normal": {"first_responce": "1h"}}}}, "first_responce"),
        ({"warn_at": 1.5}, "warn_at"),
        ({"caps": {"lead": {"points": 100}}}, "caps.lead.points"),
        ({"caps": {"agent": {"coupon_value": "-1"}}}, "caps.agent.coupon_value"),
        ({"caps": {"boss": {"points": 1}}}, "caps.boss"),
        ({"hours": {"timezone": "Mars/Base", "hours": {"mon": ["09:00-18:00"]}}}, "timezone"),
        ({"hours": {"hours": {"mon": ["18:00-09:00"]}}}, "hours"),
        ({"hours": {"hours": {"mon": ["09:00-18:00"]}, "holidays_country": "XX"}}, "holidays"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_settings_name_the_field_and_write_nothing(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], raw: Any, field: str
) -> None:
    res = client.put("/v1/support/settings", json=raw, headers=admin)
    assert res.status_code == 422, res.text
    assert any(field in f for f in fields_of(res)), (field, res.json())
    assert client.get("/v1/support/settings", headers=admin).json()["version"] == 0


def test_durations_parse_and_print() -> None:
    parse, fmt = support_settings.parse_duration, support_settings.format_duration
    assert [parse(t) for t in ("30m", "8h", "3d", "1w", "1d 4h", " 90S ")] == [
        1800,
        28_800,
        259_200,
        604_800,
        100_800,
        90,
    ]
    assert [fmt(s) for s in (1800, 86_400, 5400, 90)] == ["30m", "1d", "1h30m", "1m30s"]
    for bad in ("", "h", "1.5h", "-1h", "1y", "367d", True, None, 5):
        with pytest.raises(ValueError):
            parse(bad)


# -- business hours, holidays and pauses --------------------------------------------------


def test_friday_evening_ticket_is_due_the_next_working_day(engine: Engine, store: Store) -> None:
    apply(engine, store, OFFICE)
    # Friday 3 April 2026, 19:00 in Shanghai; Monday 6 April is Qingming (清明节).
    tid = open_ticket(engine, store, now=cst(2026, 4, 3, 19), requester="c@example.com")
    t = ticket_row(engine, tid)
    assert t.first_response_due_at == cst(2026, 4, 7, 13)  # Tuesday, 4 business hours in
    # 16 h: Tuesday 09:00-18:00 (9 h) and Wednesday 09:00-16:00 (7 h).
    assert t.resolution_due_at == cst(2026, 4, 8, 16)
    # Wednesday, high priority: 8 h first response, into Thursday.
    tid = open_ticket(
        engine, store, now=cst(2026, 4, 8, 15), requester="c@example.com", priority="high"
    )
    assert ticket_row(engine, tid).first_response_due_at == cst(2026, 4, 9, 14)


def test_a_pause_moves_the_due_instant_by_the_business_time_it_covered(
    engine: Engine, store: Store
) -> None:
    apply(engine, store, OFFICE)
    tid = open_ticket(engine, store, now=cst(2026, 4, 3, 19), requester="c@example.com")
    message(engine, store, tid, "outbound", cst(2026, 4, 7, 10))
    t = ticket_row(engine, tid)
    assert t.first_responded_at == cst(2026, 4, 7, 10)
    assert t.resolution_due_at == cst(2026, 4, 8, 16)
    # Waiting on the customer from Tuesday 17:30 to Wednesday 09:30: 16 wall-clock hours,
    # but one business hour (17:30-18:00 and 09:00-09:30).
    message(engine, store, tid, "outbound", cst(2026, 4, 7, 17, 30), wait_for_customer=True)
    t = ticket_row(engine, tid)
    assert t.status.value == "pending" and t.resolution_due_at is None
    with unit_of_work(engine) as session:
        view = tickets.detail(session, session.merge(store), tid, now=cst(2026, 4, 8, 12))
    assert view.sla.resolution.state == "paused" and view.sla.paused
    # Paused: the business time used stopped at 17:30 (Tuesday 09:00-17:30).
    assert view.sla.resolution.used_s == int(8.5 * 3600)
    message(engine, store, tid, "inbound", cst(2026, 4, 8, 9, 30))
    t = ticket_row(engine, tid)
    assert t.status.value == "open"
    assert t.resolution_due_at == cst(2026, 4, 8, 16) + HOUR
    # Resolving and reopening also pauses: Wednesday 10:00 to Thursday 10:00 is 9 h.
    status(engine, store, tid, "resolved", cst(2026, 4, 8, 10))
    assert ticket_row(engine, tid).resolution_due_at == cst(2026, 4, 8, 17)  # kept
    message(engine, store, tid, "inbound", cst(2026, 4, 9, 10))
    t = ticket_row(engine, tid)
    assert t.status.value == "open" and t.resolved_at is None
    # 9 h used by then (Tuesday 09:00-17:30, Wednesday 09:30-10:00): 7 h more from
    # Thursday 10:00. The due instant moved by the 9 business hours it sat resolved.
    assert t.resolution_due_at == cst(2026, 4, 9, 17)


# -- the SLA job --------------------------------------------------------------------------


def test_breach_warning_and_escalation_once_each(engine: Engine, store: Store) -> None:
    apply(engine, store, OFFICE)
    # Tuesday 7 April 09:00: first response due 13:00 (4 h), warned from 12:12 (80 %).
    tid = open_ticket(engine, store, now=cst(2026, 4, 7, 9), requester="c@example.com")
    assert check(engine, store, cst(2026, 4, 7, 12)) == (1, 0, 0, 0)
    assert check(engine, store, cst(2026, 4, 7, 12, 30)) == (1, 1, 0, 0)
    assert check(engine, store, cst(2026, 4, 7, 12, 45)) == (1, 0, 0, 0)  # once
    t = ticket_row(engine, tid)
    assert t.warned_at == cst(2026, 4, 7, 12, 30) and t.escalation_level == 0
    assert check(engine, store, cst(2026, 4, 7, 13, 5)) == (1, 0, 1, 1)
    t = ticket_row(engine, tid)
    assert (t.escalation_level, t.escalated_at) == (1, cst(2026, 4, 7, 13, 5))
    assert check(engine, store, cst(2026, 4, 7, 13, 10)) == (1, 0, 0, 0)
    # The resolution (16 h, due Wednesday 16:00): warned, then breached; level 2.
    assert check(engine, store, cst(2026, 4, 8, 14)) == (1, 1, 0, 0)
    assert check(engine, store, cst(2026, 4, 8, 16, 1)) == (1, 0, 1, 1)
    assert check(engine, store, cst(2026, 4, 9, 10)) == (1, 0, 0, 0)
    assert ticket_row(engine, tid).escalation_level == 2
    assert event_kinds(engine, tid) == [
        "opened",
        "sla_warning:first_response",
        "sla_breach:first_response",
        "escalated",
        "sla_warning:resolution",
        "sla_breach:resolution",
        "escalated",
    ]
    # Done tickets are not looked at.
    status(engine, store, tid, "closed", cst(2026, 4, 9, 11))
    assert check(engine, store, cst(2026, 4, 10, 10)) == (0, 0, 0, 0)


def test_a_paused_clock_raises_no_warning_and_a_reply_stops_the_first(
    engine: Engine, store: Store
) -> None:
    apply(engine, store, OFFICE)
    paused = open_ticket(engine, store, now=cst(2026, 4, 7, 9), requester="a@example.com")
    message(engine, store, paused, "outbound", cst(2026, 4, 7, 9, 30), wait_for_customer=True)
    answered = open_ticket(engine, store, now=cst(2026, 4, 7, 9), requester="b@example.com")
    message(engine, store, answered, "outbound", cst(2026, 4, 7, 14))  # late: breached
    assert check(engine, store, cst(2026, 4, 8, 14)) == (2, 1, 0, 0)
    # Only the answered ticket's resolution (16 h, 80 % by Wednesday 12:48) is warned of;
    # its late first reply shows in the report, it escalates nothing now.
    assert event_kinds(engine, answered)[-1] == "sla_warning:resolution"
    assert "sla_warning:resolution" not in event_kinds(engine, paused)
    with unit_of_work(engine) as session:
        view = tickets.detail(session, session.merge(store), answered, now=cst(2026, 4, 8, 14))
    assert view.sla.first_response.state == "breached"
    assert view.sla.first_response.used_s == 5 * 3600


def test_attainment_report(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    apply(engine, store, OFFICE)
    day = cst(2026, 4, 7, 9)
    a = open_ticket(engine, store, now=day, requester="a@example.com")
    message(engine, store, a, "outbound", day + HOUR)  # 1 h: met
    status(engine, store, a, "resolved", day + 3 * HOUR)  # 3 h: met
    b = open_ticket(engine, store, now=day, requester="b@example.com")
    message(engine, store, b, "outbound", day + 5 * HOUR)  # 5 h: breached
    c = open_ticket(engine, store, now=day, requester="c@example.com", channel="chat")
    open_ticket(engine, store, now=day - timedelta(days=30), requester="d@example.com")
    with unit_of_work(engine) as session:
        out = insights.report(
            session, session.merge(store), day - HOUR, day + timedelta(days=1), now=day + 6 * HOUR
        )
    rows = {(r.channel, r.priority): r for r in out.rows}
    email = rows["email", "normal"]
    assert (email.tickets, email.first_response_met, email.first_response_breached) == (2, 1, 1)
    assert email.first_response_met_pct == 50.0
    assert (email.median_first_response_h, email.mean_first_response_h) == (3.0, 3.0)
    assert (email.resolution_met, email.resolution_breached, email.resolution_met_pct) == (
        1,
        0,
        100.0,
    )
    assert email.median_resolution_h == 3.0
    # Breached now: the old ticket (opened 30 days ago, outside the window) still counts.
    assert email.breaches_open == 1
    chat = rows["chat", "normal"]
    assert (chat.tickets, chat.first_response_breached, chat.breaches_open) == (1, 1, 1)
    assert out.total.tickets == 3 and out.total.breaches_open == 2
    assert c  # opened in the window, never answered
    # Through the API (now: the real clock, long after these tickets).
    res = client.get(
        "/v1/support/report",
        params={"since": (day - HOUR).isoformat(), "until": (day + timedelta(days=1)).isoformat()},
        headers=admin,
    )
    assert res.status_code == 200, res.text
    assert res.json()["total"]["tickets"] == 3
    res = client.get("/v1/support/report", params={"since": "2026-04-07"}, headers=admin)
    assert res.status_code == 422 and fields_of(res) == ["query.since"]
    res = client.get(
        "/v1/support/report",
        params={"since": "2026-04-08T00:00:00Z", "until": "2026-04-07T00:00:00Z"},
        headers=admin,
    )
    assert res.status_code == 422
