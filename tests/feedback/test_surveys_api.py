"""Surveys through the service and the API: templates, versions, invitations with survey
fatigue, the trigger job (delivered orders, closed tickets), reminders and the outbox.

The helpers at the top are shared by the other feedback test modules."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, update

from patron.auth import Scope
from patron.customers.models import Customer
from patron.db import unit_of_work
from patron.feedback.models import SurveyInvitation, SurveyResponse
from patron.feedback.schemas import InviteOut, ResponseOut, SurveyIn, SurveyOut
from patron.feedback.service import invitations, link_of, responses, run_triggers, surveys
from patron.kit.clock import utcnow
from patron.orders.schemas import OrderIn
from patron.orders.service import orders
from patron.stores.models import Store
from patron.support.models import Priority, Ticket, TicketChannel, TicketStatus
from tests.conftest import key_headers

T0 = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # a Monday, noon in Shanghai
DAY = timedelta(days=1)
NOW = utcnow().replace(microsecond=0)  # for links the API opens at the real time


def text(en: str, zh: str = "问题") -> dict[str, str]:
    return {"en": en, "zh": zh}


# nps, csat, ces, two expectation/experience pairs and an optional comment.
SIMPLE: dict[str, Any] = {
    "title": text("How was it?", "体验如何?"),
    "thanks": text("Thanks!", "谢谢!"),
    "questions": [
        {"id": "nps", "type": "nps", "text": text("Recommend us?", "推荐我们吗?")},
        {"id": "csat", "type": "csat", "text": text("Satisfied?", "满意吗?")},
        {"id": "ces", "type": "ces", "text": text("Easy?", "容易吗?")},
        {
            "id": "quality",
            "type": "expectation_experience",
            "attribute": "quality",
            "attribute_label": text("Quality", "质量"),
            "text": text("Quality: expected and experienced", "质量"),
        },
        {
            "id": "delivery",
            "type": "expectation_experience",
            "attribute": "delivery",
            "attribute_label": text("Delivery", "配送"),
            "text": text("Delivery: expected and experienced", "配送"),
            "required": False,
        },
        {"id": "comments", "type": "text", "text": text("Anything else?"), "required": False},
    ],
}


def happy(nps: int = 9, csat: int = 5, ces: int = 6) -> dict[str, Any]:
    return {
        "nps": nps,
        "csat": csat,
        "ces": ces,
        "quality": {"expectation": 5, "experience": 6},
    }


def add_customer(engine: Engine, store: Store, ext: str, **fields: Any) -> int:
    with unit_of_work(engine) as session:
        fields.setdefault("email", f"{ext.lower()}@example.com")
        row = Customer(store_id=store.id, external_id=ext, **fields)
        session.add(row)
        session.flush()
        return row.id


def create_survey(engine: Engine, store: Store, key: str = "after-order", **body: Any) -> SurveyOut:
    body.setdefault("definition", SIMPLE if "template" not in body else None)
    with unit_of_work(engine) as session:
        return surveys.create(
            session, session.merge(store), SurveyIn.model_validate({"key": key, **body}), now=T0
        )


def invite(
    engine: Engine,
    store: Store,
    key: str,
    *customers: str,
    now: datetime | None = None,
    subject: str | None = None,
) -> InviteOut:
    with unit_of_work(engine) as session:
        return invitations.invite(
            session,
            session.merge(store),
            key,
            list(customers),
            subject,
            base_url="http://patron.test",
            now=now,
        )


def token(link: str) -> str:
    return link.rsplit("/", 1)[1]


def one_token(engine: Engine, store: Store, key: str, customer: str, **kw: Any) -> str:
    out = invite(engine, store, key, customer, **kw)
    assert len(out.invited) == 1, out
    return token(out.invited[0].link)


def submit(
    engine: Engine, tok: str, answers: dict[str, Any], now: datetime | None = None
) -> ResponseOut:
    with unit_of_work(engine) as session:
        return responses.submit(session, tok, answers, now=now)


def count_responses(engine: Engine, store: Store) -> int:
    with unit_of_work(engine) as session:
        return int(
            session.scalar(
                select(func.count(SurveyResponse.id)).where(SurveyResponse.store_id == store.id)
            )
            or 0
        )


def invitation_rows(engine: Engine, store: Store) -> list[SurveyInvitation]:
    with unit_of_work(engine) as session:
        rows = session.scalars(
            select(SurveyInvitation)
            .where(SurveyInvitation.store_id == store.id)
            .order_by(SurveyInvitation.id)
        ).all()
        for r in rows:
            session.expunge(r)
        return list(rows)


def deliver(
    engine: Engine,
    store: Store,
    ext: str,
    customer_ext: str,
    delivered: datetime,
    *,
    channel: str | None = "web",
    sku: str = "SKU-1",
) -> None:
    placed = delivered - 2 * DAY
    body = {
        "external_id": ext,
        "customer_external_id": customer_ext,
        "status": "delivered",
        "currency": "CNY",
        "channel": channel,
        "placed_at": placed.isoformat(),
        "paid_at": placed.isoformat(),
        "delivered_at": delivered.isoformat(),
        "lines": [{"sku": sku, "quantity": 1, "unit_price": "99.00"}],
    }
    with unit_of_work(engine) as session:
        results = orders.upsert_many(
            session, session.merge(store), [OrderIn.model_validate(body)], now=delivered
        )
    assert all(r.status != "error" for r in results), results


def closed_ticket(
    engine: Engine,
    store: Store,
    customer_id: int | None,
    closed: datetime,
    channel: TicketChannel = TicketChannel.email,
    status: TicketStatus = TicketStatus.closed,
) -> int:
    """A ticket row written directly (the support service has its own tests)."""
    with unit_of_work(engine) as session:
        t = Ticket(
            store_id=store.id,
            customer_id=customer_id,
            channel=channel,
            subject="Where is my parcel?",
            status=status,
            priority=Priority.normal,
            source="api",
            created_at=closed - DAY,
            updated_at=closed,
            first_response_target_s=3600,
            resolution_target_s=86400,
            pauses=[],
            resolved_at=closed,
            closed_at=closed if status is TicketStatus.closed else None,
        )
        session.add(t)
        session.flush()
        return t.id


def problem_fields(res: Any) -> list[str]:
    assert res.headers["content-type"] == "application/problem+json", res.text
    return [e["field"] for e in res.json().get("errors") or []]


# -- surveys ------------------------------------------------------------------------------


def test_templates_are_listed_in_both_languages(client: TestClient, admin: dict[str, str]) -> None:
    res = client.get("/v1/surveys/templates", headers=admin)
    assert res.status_code == 200, res.text
    items = {t["name"]: t for t in res.json()["items"]}
    assert set(items) == {"post_purchase", "cosmetics", "after_ticket", "competitor_value"}
    for t in items.values():
        assert set(t["definition"]["title"]) == {"en", "zh"}
    assert items["competitor_value"]["params"] == {
        "competitors": "list of competitor names shown to the customer"
    }


def test_create_from_a_template_or_a_definition(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    res = client.post(
        "/v1/surveys",
        json={
            "key": "value",
            "template": "competitor_value",
            "params": {"competitors": ["JD", "Tmall"]},
        },
        headers=admin,
    )
    assert res.status_code == 201, res.text
    body = res.json()
    assert (body["version"], body["trigger"], body["template"]) == (1, "manual", "competitor_value")
    assert body["definition"]["questions"][0]["competitors"] == ["JD", "Tmall"]
    again = client.post("/v1/surveys", json={"key": "value", "definition": SIMPLE}, headers=admin)
    assert again.status_code == 409 and problem_fields(again) == ["key"]
    delivery = client.post(
        "/v1/surveys",
        json={"key": "pp", "template": "post_purchase", "trigger": "after_delivery"},
        headers=admin,
    )
    assert delivery.status_code == 201 and delivery.json()["delay_days"] == 7
    custom = client.post(
        "/v1/surveys",
        json={"key": "custom", "definition": SIMPLE, "anonymous": True, "reminder_days": 3},
        headers=admin,
    )
    assert custom.status_code == 201 and custom.json()["anonymous"] is True
    listed = client.get("/v1/surveys", headers=admin).json()["items"]
    assert [s["key"] for s in listed] == ["custom", "pp", "value"]
    got = client.get("/v1/surveys/custom", headers=admin)
    assert got.status_code == 200 and got.json()["reminder_days"] == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": "x", "template": "nope"}, "template"),
        ({"key": "x", "template": "competitor_value", "params": {"competitors": "JD"}}, "params"),
        ({"key": "x", "template": "post_purchase", "params": {"colour": "red"}}, "params"),
        ({"key": "x", "template": "post_purchase", "definition": SIMPLE}, "body.definition"),
        ({"key": "x"}, "body.definition"),
        ({"key": "X Y", "definition": SIMPLE}, "body.key"),
        ({"key": "x", "definition": {**SIMPLE, "questions": []}}, "body.definition.questions"),
        ({"key": "x", "definition": SIMPLE, "link_days": 0}, "body.link_days"),
    ],
)
def test_bad_surveys_are_refused_with_the_field(
    client: TestClient, admin: dict[str, str], body: dict[str, Any], field: str
) -> None:
    res = client.post("/v1/surveys", json=body, headers=admin)
    assert res.status_code == 422, res.text
    assert any(f.startswith(field) for f in problem_fields(res)), res.json()


def test_an_update_is_a_new_version_and_old_links_keep_theirs(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    add_customer(engine, store, "A")
    add_customer(engine, store, "B")
    create_survey(engine, store, "s", recontact_days=0)
    old = one_token(engine, store, "s", "A")
    v2 = {
        **SIMPLE,
        "questions": [{"id": "stars", "type": "rating", "text": text("Stars?"), "max": 5}],
    }
    res = client.put("/v1/surveys/s", json={"definition": v2, "recontact_days": 0}, headers=admin)
    assert res.status_code == 201 and res.json()["version"] == 2, res.text
    same = client.put("/v1/surveys/s", json={"definition": v2, "recontact_days": 0}, headers=admin)
    assert same.status_code == 200 and same.json()["version"] == 2
    assert client.get("/v1/surveys/s?version=1", headers=admin).json()["current"] is False
    assert client.put("/v1/surveys/nope", json={"definition": v2}, headers=admin).status_code == 404
    # The link sent for version 1 answers version 1's questions.
    view = client.get(f"/v1/survey-links/{old}").json()
    assert view["version"] == 1 and view["questions"][0]["id"] == "nps"
    assert submit(engine, old, happy()).version == 1
    new = one_token(engine, store, "s", "B")
    assert client.get(f"/v1/survey-links/{new}").json()["questions"][0]["id"] == "stars"
    res = client.post(f"/v1/survey-links/{new}/response", json={"answers": {"stars": 4}})
    assert res.status_code == 201 and res.json()["version"] == 2


def test_deactivated_surveys_invite_nobody_but_sent_links_still_answer(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    add_customer(engine, store, "A")
    add_customer(engine, store, "B")
    create_survey(engine, store, "s", recontact_days=0)
    tok = one_token(engine, store, "s", "A")
    res = client.post("/v1/surveys/s/deactivate", headers=admin)
    assert res.status_code == 200 and res.json()["active"] is False
    res = client.post("/v1/surveys/s/invitations", json={"customers": ["B"]}, headers=admin)
    assert res.status_code == 409
    assert client.get("/v1/survey-invitations/due", headers=admin).json()["items"] == []
    assert submit(engine, tok, happy()).survey_key == "s"


def test_scopes(client: TestClient, engine: Engine, store: Store) -> None:
    read = key_headers(engine, store, Scope.read)
    assert (
        client.post(
            "/v1/surveys", json={"key": "s", "definition": SIMPLE}, headers=read
        ).status_code
        == 403
    )
    assert client.get("/v1/surveys", headers=read).status_code == 403
    assert client.get("/v1/feedback/scores", headers=read).status_code == 200
    assert client.get("/v1/feedback/scores").status_code == 401


# -- invitations --------------------------------------------------------------------------


def test_invitations_skip_unknown_repeated_and_tired_customers(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    for ext in ("A", "B", "C"):
        add_customer(engine, store, ext, locale="zh-CN" if ext == "B" else "en-GB")
    create_survey(engine, store, "first", recontact_days=30)
    create_survey(engine, store, "second", recontact_days=10)
    res = client.post(
        "/v1/surveys/first/invitations",
        json={"customers": ["A", "B", "NOBODY", "A"], "subject": "order:1"},
        headers=admin,
    )
    assert res.status_code == 201, res.text
    out = res.json()
    assert [(i["customer_external_id"], i["locale"]) for i in out["invited"]] == [
        ("A", "en"),
        ("B", "zh"),
    ]
    link = out["invited"][0]["link"]
    assert link.startswith(f"http://testserver/s/{store.slug}/")
    assert [(s["customer_external_id"], s["reason"]) for s in out["skipped"]] == [
        ("NOBODY", "unknown_customer")
    ]
    # The same survey and subject again: already invited.
    again = invite(engine, store, "first", "A", subject="order:1", now=NOW + DAY)
    assert [s.reason for s in again.skipped] == ["already_invited"]
    # Another survey within its recontact days: survey fatigue.
    tired = invite(engine, store, "second", "A", "C", now=NOW + 9 * DAY)
    assert [i.customer_external_id for i in tired.invited] == ["C"]
    assert [(s.customer_external_id, s.reason) for s in tired.skipped] == [
        ("A", "recently_invited")
    ]
    later = invite(engine, store, "second", "A", now=NOW + 11 * DAY)
    assert [i.customer_external_id for i in later.invited] == ["A"]


def test_the_outbox_lists_due_invitations_and_reminders(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    add_customer(engine, store, "A")
    add_customer(engine, store, "B")
    create_survey(engine, store, "s", reminder_days=3, max_reminders=1, recontact_days=0)
    out = invite(engine, store, "s", "A", "B", now=NOW)
    ids = [i.id for i in out.invited]

    def due(now: datetime) -> list[tuple[int, bool]]:
        with unit_of_work(engine) as session:
            page = invitations.due(session, session.merge(store), now, base_url="http://x")
            return [(i.invitation_id, i.reminder) for i in page.items]

    def sent(invitation_id: int, now: datetime) -> int:
        with unit_of_work(engine) as session:
            return invitations.mark_sent(
                session, session.merge(store), invitation_id, now
            ).sent_count

    assert due(NOW) == [(ids[0], False), (ids[1], False)]
    api = client.get("/v1/survey-invitations/due", headers=admin).json()["items"]
    assert api[0]["email"] == "a@example.com" and api[0]["link"].startswith("http://testserver/s/")
    assert sent(ids[0], NOW) == 1 and sent(ids[1], NOW) == 1
    assert sent(ids[0], NOW) == 1  # not due: a repeated mark changes nothing
    assert due(NOW + DAY) == []
    submit(engine, token(out.invited[1].link), happy(), now=NOW + DAY)

    def remind(now: datetime) -> int:
        with unit_of_work(engine) as session:
            return run_triggers(session, session.merge(store), now).reminders

    assert remind(NOW + 2 * DAY) == 0  # not 3 days yet
    assert remind(NOW + 3 * DAY) == 1  # A only: B answered
    assert remind(NOW + 3 * DAY) == 0  # idempotent while due
    assert due(NOW + 3 * DAY) == [(ids[0], True)]
    res = client.post(f"/v1/survey-invitations/{ids[0]}/sent", headers=admin)
    assert res.status_code == 200 and res.json()["sent_count"] == 2
    assert remind(NOW + 10 * DAY) == 0  # max_reminders reached
    assert client.post("/v1/survey-invitations/999999/sent", headers=admin).status_code == 404


# -- triggers -----------------------------------------------------------------------------


def run(engine: Engine, store: Store, now: datetime) -> tuple[int, int, int]:
    with unit_of_work(engine) as session:
        r = run_triggers(session, session.merge(store), now)
        return r.after_delivery, r.ticket_closed, r.skipped


def test_delivered_orders_are_surveyed_once_after_the_delay(engine: Engine, store: Store) -> None:
    for ext in ("A", "B", "C"):
        add_customer(engine, store, ext)
    create_survey(engine, store, "pp", trigger="after_delivery", delay_days=7, recontact_days=0)
    deliver(engine, store, "O-1", "A", T0, channel="app")
    deliver(engine, store, "O-2", "B", T0 + 2 * DAY)
    deliver(engine, store, "O-3", "C", T0 - 60 * DAY)  # long before: out of the window
    assert run(engine, store, T0 + 6 * DAY) == (0, 0, 0)
    assert run(engine, store, T0 + 7 * DAY) == (1, 0, 0)
    assert run(engine, store, T0 + 7 * DAY) == (0, 0, 0)  # idempotent
    assert run(engine, store, T0 + 12 * DAY) == (1, 0, 0)
    assert run(engine, store, T0 + 13 * DAY) == (0, 0, 0)
    rows = invitation_rows(engine, store)
    assert [(r.subject, r.channel) for r in rows] == [("order:O-1", "app"), ("order:O-2", "web")]
    assert all(r.next_send_at is not None and r.expires_at == r.created_at + 30 * DAY for r in rows)


def test_the_trigger_job_respects_survey_fatigue(engine: Engine, store: Store) -> None:
    add_customer(engine, store, "A")
    create_survey(engine, store, "pp", trigger="after_delivery", delay_days=7, recontact_days=30)
    deliver(engine, store, "O-1", "A", T0)
    deliver(engine, store, "O-2", "A", T0 + DAY)
    # Two orders in one run: the second is stopped by the first invitation.
    assert run(engine, store, T0 + 8 * DAY) == (1, 0, 1)
    assert run(engine, store, T0 + 9 * DAY) == (0, 0, 1)
    assert [r.subject for r in invitation_rows(engine, store)] == ["order:O-1"]


def test_closed_tickets_are_surveyed_once(engine: Engine, store: Store) -> None:
    a = add_customer(engine, store, "A")
    b = add_customer(engine, store, "B")
    create_survey(engine, store, "care", template="after_ticket", trigger="ticket_closed")
    t1 = closed_ticket(engine, store, a, T0, TicketChannel.chat)
    closed_ticket(engine, store, None, T0)  # nobody to ask
    t3 = closed_ticket(engine, store, b, T0 + DAY, status=TicketStatus.resolved)
    with unit_of_work(engine) as session:  # an open ticket is not asked about
        session.execute(update(Ticket).where(Ticket.id == t3).values(status=TicketStatus.open))
    assert run(engine, store, T0 + 2 * DAY) == (0, 1, 0)
    assert run(engine, store, T0 + 2 * DAY) == (0, 0, 0)
    with unit_of_work(engine) as session:
        session.execute(update(Ticket).where(Ticket.id == t3).values(status=TicketStatus.resolved))
    assert run(engine, store, T0 + 3 * DAY) == (0, 1, 0)
    assert run(engine, store, T0 + 3 * DAY) == (0, 0, 0)
    rows = invitation_rows(engine, store)
    assert [(r.subject, r.channel) for r in rows] == [
        (f"ticket:{t1}", "chat"),
        (f"ticket:{t3}", "email"),
    ]


def test_the_trigger_job_through_the_api(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    res = client.post("/v1/survey-invitations/run", headers=admin)
    assert res.status_code == 200
    assert res.json() == {"after_delivery": 0, "ticket_closed": 0, "skipped": 0, "reminders": 0}


# -- hostile input ------------------------------------------------------------------------

HOSTILE: list[Any] = [
    None,
    True,
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "x" * 10_000,
    "x" * 129,
    "'; DROP TABLE surveys; --",
    "顾客🎉",
    10**400,
    -(2**63) - 1,
    2**64,
    -1,
    1.5,
    1e308,
    float("nan"),
    float("inf"),
    [],
    [None],
    {},
    {"en": "\x00"},
    {"\x00": 1},
    {"en": ""},
    "2026-13-45T99:99:99Z",
]
hostile = st.sampled_from(HOSTILE) | st.text(max_size=20) | st.integers()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def mutate(body: dict[str, Any], data: st.DataObject) -> Any:
    if data.draw(st.booleans()):
        return data.draw(json_values)
    out = json.loads(json.dumps(body))
    for _ in range(data.draw(st.integers(1, 3))):
        target = out
        path = data.draw(st.sampled_from(sorted(_paths(out))))
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = copy.deepcopy(data.draw(hostile))  # HOSTILE holds lists
    return out


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> set[tuple[Any, ...]]:
    found: set[tuple[Any, ...]] = set()
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        found.add((*prefix, key))
        if isinstance(child, dict | list) and child:
            found |= _paths(child, (*prefix, key))
    return found


@FUZZ
@given(data=st.data())
def test_hostile_input_never_fails_with_5xx(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], data: st.DataObject
) -> None:
    if not invitation_rows(engine, store):
        add_customer(engine, store, "A")
        create_survey(engine, store, "s", recontact_days=0)
        invite(engine, store, "s", "A", now=NOW)
    tok = token(invitations_link(engine, store))
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("post", "/v1/surveys", {"key": "k", "definition": SIMPLE, "trigger": "manual"}),
        (
            "put",
            "/v1/surveys/s",
            {"template": "competitor_value", "params": {"competitors": ["a"]}},
        ),
        ("post", "/v1/surveys/s/invitations", {"customers": ["A"], "subject": "x", "locale": "en"}),
        ("post", f"/v1/survey-links/{tok}/response", {"answers": happy(), "locale": "en"}),
        ("post", "/v1/reviews", {"external_id": "R", "product_sku": "S", "rating": 1, "body": "b"}),
        ("post", "/v1/reviews/R/moderation", {"decision": "approve", "note": "n"}),
        ("post", "/v1/reviews/R/reply", {"reply": "thanks"}),
    ]
    method, url, body = data.draw(st.sampled_from(calls))
    payload = json.dumps(mutate(body, data), ensure_ascii=True)
    res = client.request(
        method,
        url,
        content=payload,
        headers={**admin, "content-type": "application/json"},
    )
    assert res.status_code < 500, (url, payload[:300], res.text)
    if res.status_code >= 400:
        assert res.headers["content-type"] == "application/problem+json"


QUERY_KEYS = [
    "survey",
    "by",
    "since",
    "until",
    "source",
    "status",
    "product",
    "rating",
    "limit",
    "after",
    "lang",
]
# What a URL can carry (a lone surrogate cannot even be encoded by the client).
QUERY_VALUES = [str(h) for h in HOSTILE if isinstance(h, str | int) and "\ud800" not in str(h)]


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(QUERY_KEYS),
        st.sampled_from(QUERY_VALUES)
        | st.text(max_size=10).filter(lambda t: all(not 0xD800 <= ord(c) <= 0xDFFF for c in t)),
        max_size=3,
    )
)
def test_hostile_queries_never_fail_with_5xx(
    client: TestClient, admin: dict[str, str], params: dict[str, str]
) -> None:
    for url in (
        "/v1/feedback/scores",
        "/v1/feedback/gaps",
        "/v1/feedback/ipa",
        "/v1/feedback/value-analysis",
        "/v1/reviews",
        "/v1/reviews/summary",
        "/v1/reviews/alerts",
        "/v1/survey-invitations/due",
        "/v1/survey-links/x.y",
    ):
        res = client.get(url, params=params, headers=admin)
        assert res.status_code < 500, (url, params, res.text)


def invitations_link(engine: Engine, store: Store) -> str:
    row = invitation_rows(engine, store)[0]
    return link_of("http://x", store, row.nonce)
