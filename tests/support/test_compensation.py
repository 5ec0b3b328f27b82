"""Complaint grading with the customer's context, and service recovery: points and
coupons within each role's cap, approvals, idempotent keys, an audited trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from patron.analytics.models import CustomerScore
from patron.auth import Scope
from patron.db import unit_of_work
from patron.loyalty.models import LoyaltyEntry
from patron.loyalty.service import ledger
from patron.rewards.models import Coupon
from patron.stores.models import Store
from tests.conftest import key_headers
from tests.support.test_tickets import (
    apply_program,
    customer,
    fields_of,
    open_ticket,
    order,
)

NOW = datetime.now(UTC)


def points(engine: Engine, store: Store, customer_id: int) -> int:
    with unit_of_work(engine) as session:
        return ledger.balance(session, session.merge(store), customer_id).points_available


def entries(engine: Engine, store: Store, prefix: str) -> int:
    with unit_of_work(engine) as session:
        return int(
            session.scalar(
                select(func.count(LoyaltyEntry.id)).where(
                    LoyaltyEntry.store_id == store.id,
                    LoyaltyEntry.idempotency_key.like(f"{prefix}%"),
                )
            )
            or 0
        )


def comp(client: TestClient, headers: dict[str, str], ticket_id: int, **fields: Any) -> Any:
    body = {
        "key": "k-1",
        "kind": "points",
        "reason": "late delivery",
        "role": "agent",
        "actor": "ann",
        **fields,
    }
    return client.post(f"/v1/tickets/{ticket_id}/compensations", json=body, headers=headers)


def decide(client: TestClient, headers: dict[str, str], comp_id: int, **fields: Any) -> Any:
    body = {"approve": True, "role": "manager", "actor": "max", **fields}
    return client.post(f"/v1/compensations/{comp_id}/decision", json=body, headers=headers)


@pytest.fixture
def member(engine: Engine, store: Store) -> int:
    apply_program(engine, store)
    return customer(engine, store, "C-1")


# -- points -------------------------------------------------------------------------------


def test_points_within_the_cap_are_granted_once(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], member: int
) -> None:
    tid = open_ticket(engine, store, now=NOW, customer_external_id="C-1")
    res = comp(client, admin, tid, points=150)
    assert res.status_code == 201, res.text
    c = res.json()
    assert (c["status"], c["points"], c["role"], c["actor"]) == ("granted", 150, "agent", "ann")
    assert c["ledger_key"] == f"support:compensation:{c['id']}"
    assert points(engine, store, member) == 150
    # A replay is the first compensation; the key with another amount is refused.
    again = comp(client, admin, tid, points=150)
    assert again.status_code == 200 and again.json()["id"] == c["id"]
    clash = comp(client, admin, tid, points=151)
    assert clash.status_code == 409 and fields_of(clash) == ["key"]
    assert points(engine, store, member) == 150
    assert entries(engine, store, "support:compensation:") == 1
    detail = client.get(f"/v1/tickets/{tid}", headers=admin).json()
    kinds = [e["kind"] for e in detail["events"]]
    assert kinds == ["opened", "compensation_requested", "compensation_granted"]
    assert [x["id"] for x in detail["compensations"]] == [c["id"]]


def test_above_the_agents_cap_waits_for_a_manager(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], member: int
) -> None:
    tid = open_ticket(engine, store, now=NOW, customer_external_id="C-1")
    res = comp(client, admin, tid, points=500)
    assert res.status_code == 201, res.text
    c = res.json()
    assert c["status"] == "pending_approval" and c["ledger_key"] is None
    assert points(engine, store, member) == 0
    # Another agent's cap does not cover it; a lead's (1000) would; nobody approves their own.
    res = decide(client, admin, c["id"], role="agent", actor="amy")
    assert res.status_code == 403 and "cap of 200" in res.json()["detail"]
    res = decide(client, admin, c["id"], actor="ann")
    assert res.status_code == 403
    res = decide(client, admin, c["id"], note="loyal customer")
    assert res.status_code == 200, res.text
    assert (res.json()["status"], res.json()["decided_by"]) == ("granted", "max")
    assert points(engine, store, member) == 500
    # Approving again changes nothing; rejecting now is too late.
    assert decide(client, admin, c["id"]).status_code == 200
    assert decide(client, admin, c["id"], approve=False).status_code == 409
    assert comp(client, admin, tid, points=500).json()["status"] == "granted"  # replay
    assert points(engine, store, member) == 500
    assert entries(engine, store, "support:compensation:") == 1
    kinds = [e["kind"] for e in client.get(f"/v1/tickets/{tid}", headers=admin).json()["events"]]
    assert kinds == [
        "opened",
        "compensation_requested",
        "compensation_held",
        "compensation_approved",
        "compensation_granted",
    ]


def test_a_rejected_compensation_changes_no_balance(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], member: int
) -> None:
    tid = open_ticket(engine, store, now=NOW, customer_external_id="C-1")
    c = comp(client, admin, tid, points=5000, role="lead").json()
    assert c["status"] == "pending_approval"
    res = decide(client, admin, c["id"], approve=False, role="lead", actor="lee")
    assert res.status_code == 200 and res.json()["status"] == "rejected"
    assert decide(client, admin, c["id"]).status_code == 409
    assert points(engine, store, member) == 0
    assert decide(client, admin, 987654).status_code == 404


def test_points_need_a_programme_and_a_customer(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    customer(engine, store, "C-1")
    tid = open_ticket(engine, store, now=NOW, customer_external_id="C-1")
    res = comp(client, admin, tid, points=10)
    assert res.status_code == 409 and "no loyalty programme" in res.json()["detail"]
    apply_program(engine, store)
    anonymous = open_ticket(engine, store, now=NOW, requester="stranger@example.com")
    res = comp(client, admin, anonymous, points=10)
    assert res.status_code == 409 and "no known customer" in res.json()["detail"]
    assert comp(client, admin, 424242, points=10).status_code == 404


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"points": 0}, "points"),
        ({"points": None}, "points"),
        ({"points": 10, "reward_id": "coupon-10"}, "reward_id"),
        ({"kind": "coupon"}, "reward_id"),
        ({"kind": "cash", "points": 1}, "kind"),
        ({"points": 10, "role": "ceo"}, "role"),
        ({"points": 10, "reason": " "}, "reason"),
        ({"points": 10, "key": ""}, "key"),
        ({"points": "10"}, "points"),
    ],
)
def test_bad_compensation_input(
    client: TestClient,
    engine: Engine,
    store: Store,
    admin: dict[str, str],
    member: int,
    fields: dict[str, Any],
    field: str,
) -> None:
    tid = open_ticket(engine, store, now=NOW, customer_external_id="C-1")
    res = comp(client, admin, tid, **fields)
    assert res.status_code == 422, res.text
    assert f"body.{field}" in fields_of(res)
    assert client.get(f"/v1/tickets/{tid}", headers=admin).json()["compensations"] == []
    ingest = key_headers(engine, store, Scope.ingest)
    assert comp(client, ingest, tid, points=1).status_code == 403


# -- coupons ------------------------------------------------------------------------------


def test_coupon_compensation_issues_a_coupon(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], member: int
) -> None:
    tid = open_ticket(engine, store, now=NOW, customer_external_id="C-1")
    res = comp(client, admin, tid, kind="coupon", reward_id="coupon-10")
    assert res.status_code == 201, res.text
    c = res.json()
    assert (c["status"], c["value"], c["currency"]) == ("granted", "10.00", "CNY")
    assert c["coupon_code"].startswith("PAT-") and c["redemption_id"]
    with unit_of_work(engine) as session:
        coupon = session.scalars(select(Coupon).where(Coupon.code == c["coupon_code"])).one()
        assert (coupon.customer_id, coupon.amount_minor) == (member, 1000)
    assert points(engine, store, member) == 0  # given, not bought
    # 50.00 is above the agent's 20; a percent coupon without a maximum has no bound.
    held = comp(client, admin, tid, key="k-2", kind="coupon", reward_id="coupon-50").json()
    assert held["status"] == "pending_approval" and held["coupon_code"] is None
    assert decide(client, admin, held["id"], role="lead", actor="lee").json()["status"] == "granted"
    open_pct = comp(
        client, admin, tid, key="k-3", kind="coupon", reward_id="pct-open", role="lead"
    ).json()
    assert open_pct["status"] == "pending_approval" and open_pct["value"] is None
    res = decide(client, admin, open_pct["id"], role="lead", actor="lee")
    assert res.status_code == 403
    assert decide(client, admin, open_pct["id"]).json()["coupon_code"].startswith("PAT-")
    # Unknown or non-coupon rewards are refused.
    res = comp(client, admin, tid, key="k-4", kind="coupon", reward_id="nope")
    assert res.status_code == 404 and fields_of(res) == ["reward_id"]
    res = comp(client, admin, tid, key="k-5", kind="coupon", reward_id="gift")
    assert res.status_code == 422 and fields_of(res) == ["reward_id"]


def test_caps_follow_the_settings(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], member: int
) -> None:
    res = client.put(
        "/v1/support/settings",
        json={"caps": {"agent": {"points": 50, "coupon_value": "5"}}},
        headers=admin,
    )
    assert res.status_code == 200, res.text
    tid = open_ticket(engine, store, now=NOW, customer_external_id="C-1")
    assert comp(client, admin, tid, points=60).json()["status"] == "pending_approval"
    assert comp(client, admin, tid, key="k-2", points=50).json()["status"] == "granted"
    coupon = comp(client, admin, tid, key="k-3", kind="coupon", reward_id="coupon-10").json()
    assert coupon["status"] == "pending_approval"


# -- grading and opportunistic claims -----------------------------------------------------


def test_grading_uses_the_customers_context(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], member: int
) -> None:
    ingest = key_headers(engine, store, Scope.ingest)
    others = [customer(engine, store, f"X-{i}") for i in range(3)]
    with unit_of_work(engine) as session:
        for who, clv in ((member, "5000"), *((o, "10") for o in others)):
            session.add(
                CustomerScore(
                    customer_id=who, store_id=store.id, run_id=1, clv=Decimal(clv), computed_at=NOW
                )
            )
    order(engine, store, "O-1", "C-1", amount="80.00")
    # Three other customers reported the same product damaged this month.
    for i in range(3):
        open_ticket(
            engine,
            store,
            now=NOW - timedelta(days=3),
            customer_external_id=f"X-{i}",
            product_sku="SKU-9",
            claim={"category": "damaged"},
        )
    res = client.post(
        "/v1/tickets",
        json={
            "channel": "email",
            "subject": "Arrived broken",
            "body": "The bottle leaked",
            "customer_external_id": "C-1",
            "order_external_id": "O-1",
            "product_sku": "SKU-9",
            "claim": {
                "category": "damaged",
                "requested_compensation": "80.00",
                "backed_by_policy": True,
                "public_exposure": True,  # posted on social media
            },
        },
        headers=ingest,
    )
    assert res.status_code == 201, res.text
    t = res.json()
    grade, claim = t["grade"], t["claim"]
    assert claim["order_amount"] == "80.00"  # from the order
    assert claim["customer_clv_percentile"] == 1.0 and claim["same_issue_count"] == 3
    assert (claim["customer_tier_rank"], claim["tier_count"]) == (0, 2)
    assert {"high_value_customer", "many_customers_affected"} <= set(grade["flags"])
    assert grade["level"] == 5 and grade["service"] == "surprise"
    assert t["priority"] == "urgent" and t["category"] == "damaged"  # from the grade
    assert grade["suggested_response"]["zh"] and not grade["opportunistic"]
    assert "graded" in [e["kind"] for e in t["events"]]
    # Regrade: a claim for ten times the order is excessive, opportunistic, capped at 2.
    res = client.post(
        f"/v1/tickets/{t['id']}/grade",
        json={"category": "damaged", "requested_compensation": "800", "actor": "ann"},
        headers=admin,
    )
    assert res.status_code == 200, res.text
    assert res.json()["grade"]["opportunistic"] and res.json()["grade_level"] == 1
    assert res.json()["priority"] == "urgent"  # a regrade never lowers the priority
    res = client.post(f"/v1/tickets/{t['id']}/grade", json={"category": "mood"}, headers=admin)
    assert res.status_code == 422 and fields_of(res) == ["body.category"]


def test_flagged_customer_claims_are_held(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    apply_program(engine, store)
    customer(engine, store, "F-1", flagged=True, flagged_reason="serial returner")
    tid = open_ticket(
        engine, store, now=NOW, customer_external_id="F-1", claim={"category": "missing"}
    )
    t = client.get(f"/v1/tickets/{tid}", headers=admin).json()
    assert t["opportunistic"] and "flagged_customer" in t["grade"]["flags"]
    # Even a manager with no cap cannot grant it at once; an agent cannot approve it.
    c = comp(client, admin, tid, points=10, role="manager", actor="max").json()
    assert c["status"] == "pending_approval"
    assert decide(client, admin, c["id"], role="agent", actor="amy").status_code == 403
    assert decide(client, admin, c["id"], role="lead", actor="lee").json()["status"] == "granted"


def test_serial_claimants_are_opportunistic(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], member: int
) -> None:
    for i in range(4):
        open_ticket(
            engine,
            store,
            now=NOW - timedelta(days=10 * (i + 1)),
            customer_external_id="C-1",
            claim={"category": "missing"},
        )
    tid = open_ticket(
        engine, store, now=NOW, customer_external_id="C-1", claim={"category": "missing"}
    )
    t = client.get(f"/v1/tickets/{tid}", headers=admin).json()
    assert t["claim"]["prior_claims_90d"] == 4
    assert t["opportunistic"] and "serial_claimant" in t["grade"]["flags"]
    c = comp(client, admin, tid, points=20).json()
    assert c["status"] == "pending_approval"
    assert points(engine, store, member) == 0


def test_service_checks_its_arguments(engine: Engine, store: Store, member: int) -> None:
    from patron.errors import Invalid
    from patron.support.models import CompensationKind
    from patron.support.recovery import recovery
    from patron.support.settings import Role

    tid = open_ticket(engine, store, now=NOW, customer_external_id="C-1")
    with unit_of_work(engine) as session, pytest.raises(Invalid) as caught:
        recovery.compensate(
            session,
            session.merge(store),
            tid,
            key="k",
            kind=CompensationKind.points,
            points=0,
            reason="x",
            role=Role.agent,
            actor="ann",
        )
    assert caught.value.errors[0]["field"] == "points"
    with unit_of_work(engine) as session:
        done = recovery.compensate(
            session,
            session.merge(store),
            tid,
            key="k",
            kind=CompensationKind.points,
            points=20,
            reason="sorry",
            role=Role.agent,
            actor="ann",
            now=NOW,
        )
        assert done.row.status.value == "granted" and not done.replayed
    assert points(engine, store, member) == 20
