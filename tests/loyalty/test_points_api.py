"""Points through the API: member balance and history, admin reads, adjust, liability."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from patron.auth import Scope
from patron.db import unit_of_work
from patron.kit.clock import utcnow
from patron.loyalty.models import LoyaltyEntry
from patron.loyalty.service import ledger
from patron.stores.models import ApiKey, Store
from tests.conftest import key_headers, new_store

PROBLEM = "application/problem+json"


def customer(client: TestClient, headers: dict[str, str], ext: str = "C-1") -> int:
    res = client.put(f"/v1/customers/{ext}", json={"external_id": ext}, headers=headers)
    assert res.is_success, res.text
    return int(res.json()["id"])


def member_headers(client: TestClient, admin: dict[str, str], ext: str = "C-1") -> dict[str, str]:
    res = client.post(f"/v1/customers/{ext}/member-token", headers=admin)
    return {"Authorization": f"Bearer {res.json()['token']}"}


def earn(engine: Engine, store: Store, member: int, key: str, points: int, **kw: Any) -> None:
    with unit_of_work(engine) as session:
        ledger.earn(session, session.merge(store), member, key=key, points=points, **kw)


def adjust(client: TestClient, headers: dict[str, str], body: Any, ext: str = "C-1") -> Any:
    return client.post(f"/v1/customers/{ext}/points/adjust", json=body, headers=headers)


def test_member_sees_own_balance_and_history(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    member = customer(client, admin)
    customer(client, admin, "C-2")
    soon = utcnow() + timedelta(days=10)
    earn(
        engine, store, member, "o1", 100, growth=10, reason="order O-1", ref="O-1", expires_at=soon
    )
    earn(
        engine,
        store,
        member,
        "o2",
        50,
        reason="order O-2",
        available_at=utcnow() + timedelta(days=7),
    )
    earn(engine, store, member, "o3", 5, reason="sign-up bonus")
    me = member_headers(client, admin)

    res = client.get("/v1/me/points", headers=me)
    assert res.status_code == 200, res.text
    body = res.json()
    assert {k: body[k] for k in ("points_available", "points_pending", "points_held", "debt")} == {
        "points_available": 105,
        "points_pending": 50,
        "points_held": 0,
        "debt": 0,
    }
    assert (body["growth"], body["growth_pending"], body["growth_debt"]) == (10, 0, 0)
    assert [e["points"] for e in body["expiring"]] == [100]

    page = client.get("/v1/me/points/history?limit=2", headers=me).json()
    assert [e["reason"] for e in page["items"]] == ["sign-up bonus", "order O-2"]
    assert page["items"][1]["pending_delta"] == 50 and page["items"][1]["available_at"]
    rest = client.get(f"/v1/me/points/history?limit=2&before={page['next_before']}", headers=me)
    assert [(e["currency"], e["reason"]) for e in rest.json()["items"]] == [
        ("growth", "order O-1"),
        ("points", "order O-1"),
    ]
    # another member sees only their own (empty) account
    other = client.get("/v1/me/points", headers=member_headers(client, admin, "C-2")).json()
    assert other["points_available"] == 0 and other["version"] == 0
    assert client.get(
        "/v1/me/points/history", headers=member_headers(client, admin, "C-2")
    ).json() == {"items": [], "next_before": None}


def test_admin_reads_a_customers_points(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    member = customer(client, admin)
    earn(engine, store, member, "o1", 30, reason="order")
    read = key_headers(engine, store, Scope.read)
    assert client.get("/v1/customers/C-1/points", headers=read).json()["points_available"] == 30
    history = client.get("/v1/customers/C-1/points/history", headers=read).json()
    assert [e["kind"] for e in history["items"]] == ["earn"]
    missing = client.get("/v1/customers/nobody/points", headers=read)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(PROBLEM)
    # another store's key does not see this customer
    other = new_store(engine)
    res = client.get("/v1/customers/C-1/points", headers=key_headers(engine, other, Scope.admin))
    assert res.status_code == 404


def test_adjust_credits_debits_and_replays(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    customer(client, admin)
    body = {
        "points": 40,
        "growth": 5,
        "reason": "goodwill: late delivery",
        "idempotency_key": "ticket-77",
    }
    res = adjust(client, admin, body)
    assert res.status_code == 201, res.text
    out = res.json()
    assert out["replayed"] is False and out["idempotency_key"] == "ticket-77"
    assert [(e["kind"], e["currency"], e["amount"]) for e in out["entries"]] == [
        ("adjust", "points", 40),
        ("adjust", "growth", 5),
    ]
    assert out["balance"]["points_available"] == 40
    again = adjust(client, admin, body)
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert [e["id"] for e in again.json()["entries"]] == [e["id"] for e in out["entries"]]
    changed = adjust(client, admin, {**body, "points": 41})
    assert changed.status_code == 409
    assert changed.json()["type"].endswith("/idempotency-key-reused")

    debit = adjust(client, admin, {"points": -15, "reason": "duplicate credit"})
    assert debit.status_code == 201 and debit.json()["balance"]["points_available"] == 25
    # the entries record the API key that made them
    with unit_of_work(engine) as session:
        key_ids = set(session.scalars(select(ApiKey.id).where(ApiKey.store_id == store.id)))
        recorded = set(
            session.scalars(
                select(LoyaltyEntry.api_key_id).where(LoyaltyEntry.store_id == store.id)
            )
        )
    assert recorded and recorded <= key_ids


def test_adjust_refusals_write_nothing(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    customer(client, admin)
    assert adjust(client, admin, {"points": 10, "reason": "welcome"}).status_code == 201

    def history() -> list[int]:
        res = client.get("/v1/customers/C-1/points/history", headers=admin)
        return [e["id"] for e in res.json()["items"]]

    before = history()
    no_reason = adjust(client, admin, {"points": 5})
    assert no_reason.status_code == 422
    assert [e["field"] for e in no_reason.json()["errors"]] == ["body.reason"]
    blank = adjust(client, admin, {"points": 5, "reason": "   "})
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "body.reason"
    zero = adjust(client, admin, {"points": 0, "reason": "nothing"})
    assert zero.status_code == 422 and zero.json()["errors"][0]["field"] == "body.points"
    overdraft = adjust(client, admin, {"points": -11, "reason": "too much"})
    assert overdraft.status_code == 409, overdraft.text
    problem = overdraft.json()
    assert problem["type"].endswith("/insufficient-points")
    assert problem["available"] == 10 and problem["requested"] == 11
    reserved = adjust(
        client, admin, {"points": 1, "reason": "x", "idempotency_key": "patron:mature:1"}
    )
    assert reserved.status_code == 422
    assert reserved.json()["errors"][0]["field"] == "idempotency_key"
    assert adjust(client, admin, {"points": 1, "reason": "x"}, "nobody").status_code == 404
    read_only = key_headers(engine, store, Scope.read)
    assert adjust(client, read_only, {"points": 1, "reason": "x"}).status_code == 403
    assert history() == before
    assert client.get("/v1/customers/C-1/points", headers=admin).json()["points_available"] == 10


def test_liability_report(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    member = customer(client, admin)
    earn(engine, store, member, "o1", 1000, reason="order")
    earn(
        engine, store, member, "o2", 250, reason="order", available_at=utcnow() + timedelta(days=7)
    )
    with unit_of_work(engine) as session:
        ledger.redeem(session, session.merge(store), member, key="r", points=400, reason="gift")
    res = client.get("/v1/loyalty/liability?cost_per_point=0.01", headers=admin)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["currency"] == "CNY" and body["members"] == 1
    assert (body["points_outstanding"], body["points_pending"]) == (600, 250)
    assert (body["outstanding_value"], body["pending_value"]) == ("6.00", "2.50")
    assert (body["points_earned"], body["points_redeemed"], body["points_expired"]) == (
        1250,
        400,
        0,
    )
    assert body["breakage_rate"] == "0.0000"
    default = client.get("/v1/loyalty/liability", headers=admin).json()
    assert default["cost_per_point"] == "0.01"
    for bad in ("-1", "abc", "NaN", "1e400"):
        res = client.get(f"/v1/loyalty/liability?cost_per_point={bad}", headers=admin)
        assert res.status_code == 422, (bad, res.text)
    read_only = key_headers(engine, store, Scope.read)
    assert client.get("/v1/loyalty/liability", headers=read_only).status_code == 403


HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.sampled_from(
        [
            2**63,
            -(2**63) - 1,
            10**12 + 1,
            "10",
            "\x00",
            "\ud800",
            "x" * 300,
            "",
            "NaN",
            "2026-13-45T00:00:00Z",
            "2026-01-05T10:00:00",
            [],
            {},
        ]
    ),
    st.text(max_size=20),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    field=st.sampled_from(["points", "growth", "reason", "idempotency_key", "expires_at", "extra"]),
    value=HOSTILE,
)
def test_hostile_adjust_bodies_never_fail_the_server(
    client: TestClient, admin: dict[str, str], field: str, value: Any
) -> None:
    customer(client, admin)
    body = {"points": 1, "reason": "fuzz", field: value}
    res = client.post(
        "/v1/customers/C-1/points/adjust",
        content=json.dumps(body, ensure_ascii=True, allow_nan=True).encode(),
        headers={**admin, "Content-Type": "application/json"},
    )
    assert res.status_code < 500, res.text
    if res.status_code >= 400:
        assert res.headers["content-type"].startswith(PROBLEM)
        if res.status_code == 422:
            assert res.json()["errors"][0]["field"]
