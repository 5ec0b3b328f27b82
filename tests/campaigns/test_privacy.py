"""Export and erasure (PIPL / GDPR): everything is exported; erasure keeps the totals."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from patron.campaigns.consent import consents
from patron.cli import app as cli
from patron.customers.models import Channel
from patron.db import unit_of_work
from patron.stores.models import Store

PROBLEM = "application/problem+json"


def order(ext: str, customer: str, total: str) -> dict[str, Any]:
    return {
        "external_id": ext,
        "customer_external_id": customer,
        "currency": "CNY",
        "total": total,
        "status": "paid",
        "placed_at": "2026-01-05T10:00:00+08:00",
        "lines": [{"sku": "TEA-1", "name": "Tea", "quantity": 1, "unit_price": total}],
    }


def seed(client: TestClient, admin: dict[str, str]) -> None:
    for ext, name in (("alice", "Alice"), ("bob", "Bob")):
        body = {
            "external_id": ext,
            "email": f"{ext}@example.com",
            "phone": "+8613800000001" if ext == "alice" else None,
            "first_name": name,
            "birthday": "1990-05-01",
            "attributes": {"vip": True},
            "consents": [{"channel": "sms", "granted": True, "source": "checkout"}],
        }
        assert client.put(f"/v1/customers/{ext}", json=body, headers=admin).status_code == 201
    for ext, who, total in (
        ("o1", "alice", "120.00"),
        ("o2", "alice", "80.00"),
        ("o3", "bob", "50.00"),
    ):
        res = client.put(f"/v1/orders/{ext}", json=order(ext, who, total), headers=admin)
        assert res.status_code == 201, res.text
    for ext, points in (("alice", 300), ("bob", 100)):
        res = client.post(
            f"/v1/customers/{ext}/points/adjust",
            json={"points": points, "reason": "welcome"},
            headers=admin,
        )
        assert res.status_code == 201, res.text


def totals(client: TestClient, admin: dict[str, str]) -> tuple[Any, ...]:
    """The liability report, the orders' totals and a fresh analysis's overview."""
    liability = client.get("/v1/loyalty/liability", headers=admin)
    assert liability.status_code == 200, liability.text
    orders = client.get("/v1/orders", headers=admin, params={"limit": 500})
    assert orders.status_code == 200, orders.text
    run = client.post("/v1/analytics/runs", json={}, headers=admin)
    assert run.status_code == 201, run.text
    overview = run.json()["overview"]
    assert overview, run.text
    return liability.json(), sorted(o["total"] for o in orders.json()["items"]), overview


def test_export_holds_what_was_ingested(
    client: TestClient, store: Store, admin: dict[str, str]
) -> None:
    seed(client, admin)
    res = client.get("/v1/customers/alice/export", headers=admin)
    assert res.status_code == 200, res.text
    data = res.json()
    assert data["customer"]["email"] == "alice@example.com"
    assert data["customer"]["first_name"] == "Alice"
    assert sorted(o["external_id"] for o in data["orders"]) == ["o1", "o2"]
    assert all(len(o["lines"]) == 1 for o in data["orders"])
    assert [(c["channel"], c["granted"]) for c in data["consents"]] == [("sms", True)]
    assert {t["kind"] for t in data["touchpoints"]} >= {"signup", "consent", "order"}
    assert data["points_balance"]["points_available"] == 300
    assert len(data["ledger_entries"]) == 1
    for key in ("refunds", "redemptions", "coupons", "referrals", "reviews", "tickets"):
        assert data[key] == []
    again = client.get("/v1/customers/alice/export", headers=admin).json()
    assert [e["action"] for e in again["privacy_events"]] == ["export"]  # audited
    assert client.get("/v1/customers/nobody/export", headers=admin).status_code == 404


def test_erasure_keeps_the_totals(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    seed(client, admin)
    before = totals(client, admin)
    res = client.post("/v1/customers/alice/erase", headers=admin)
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["pseudonym"].startswith("erased-") and not out["already_erased"]
    assert out["suppressed"] == 4  # email, sms, push, wechat
    assert totals(client, admin) == before

    again = client.post("/v1/customers/alice/erase", headers=admin).json()
    assert again["already_erased"] and again["pseudonym"] == out["pseudonym"]
    assert totals(client, admin) == before

    data = client.get(f"/v1/customers/{out['pseudonym']}/export", headers=admin).json()
    c = data["customer"]
    assert (c["email"], c["phone"], c["first_name"], c["birthday"]) == (None, None, None, None)
    assert c["attributes"] == {} and c["id"] == out["customer_id"]
    assert sorted(o["total_minor"] for o in data["orders"]) == [8000, 12000]
    assert data["points_balance"]["points_available"] == 300
    erasure = {"granted": False, "source": "erasure"}  # the withdrawals it recorded
    assert all(t["data"] in ({}, erasure) for t in data["touchpoints"])
    assert not any(x["granted"] for x in data["consents"])
    assert [e["action"] for e in data["privacy_events"]] == ["erase"]

    with unit_of_work(engine) as session:
        s = session.merge(store)
        for channel in Channel:
            assert not consents.may_contact(session, s, out["customer_id"], channel)
        # The address is suppressed by hash only: a re-import cannot reach it again.
        assert consents.is_suppressed(session, s, Channel.email, "ALICE@example.com")
    listed = client.get("/v1/suppressions", headers=admin).json()["items"]
    assert {s["address"] for s in listed} == {None}
    assert client.get("/v1/customers/bob/export", headers=admin).json()["customer"]["email"]


def test_privacy_cli(
    db_cli: CliRunner, client: TestClient, store: Store, admin: dict[str, str]
) -> None:
    seed(client, admin)
    res = db_cli.invoke(cli, ["privacy", "export", "-s", store.slug, "bob"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["customer"]["first_name"] == "Bob"
    res = db_cli.invoke(cli, ["privacy", "erase", "-s", store.slug, "bob", "--yes"])
    assert res.exit_code == 0 and "erased as" in res.output, res.output
    res = db_cli.invoke(cli, ["privacy", "erase", "-s", store.slug, "bob", "--yes"])
    assert "already erased" in res.output
    res = db_cli.invoke(cli, ["privacy", "export", "-s", store.slug, "nobody"])
    assert res.exit_code == 1


def test_export_and_erasure_cover_outbox_messages_and_their_events(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    from datetime import timedelta

    from sqlalchemy import select, update

    from patron.campaigns import tracking
    from patron.campaigns.models import CampaignEvent, EventKind, MessageStatus, OutboxMessage
    from patron.campaigns.outbox import Rendered, outbox
    from patron.kit.clock import utcnow

    seed(client, admin)
    now = utcnow()
    html = '<html><body><a href="https://shop.example/tea">Tea</a></body></html>'
    with unit_of_work(engine) as session:
        s = session.merge(store)
        alice = consents.customer(session, s, "alice")
        bob = consents.customer(session, s, "bob")
        ids = [
            outbox.enqueue(
                session,
                s,
                customer=who,
                recipient=who.email or "",
                kind="test",
                key=f"campaign:1:{who.id}:{n}",
                mail=Rendered(f"Hi {who.first_name}", f"Text for {who.first_name}", html),
                now=now,
                base_url="http://patron.test",
            )[0]
            for who, n in ((alice, 1), (alice, 2), (bob, 1))
        ]
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([ids[0], ids[2]]))
            .values(status=MessageStatus.sent, sent_at=now - timedelta(hours=1))
        )
        sent = session.get(OutboxMessage, ids[0])
        assert sent is not None
        tracking.resolve_click(session, tracking.click_token(s, ids[0], 0), "Firefox", now)
        tracking.add_event(session, sent, EventKind.open, now, user_agent="Firefox")
        before = tracking.counts_by_key_prefix(session, s.id, "campaign:1:")

    data = client.get("/v1/customers/alice/export", headers=admin).json()
    messages = data["campaign_messages"]
    assert [m["id"] for m in messages] == ids[:2]
    assert messages[0]["recipient"] == "alice@example.com"
    assert messages[0]["subject"] == "Hi Alice" and "/t/c/" in messages[0]["body_html"]
    assert sorted(e["kind"] for e in data["campaign_events"]) == ["click", "open"]
    assert {e["url"] for e in data["campaign_events"]} == {"https://shop.example/tea", None}

    assert client.post("/v1/customers/alice/erase", headers=admin).status_code == 200
    with unit_of_work(engine) as session:
        rows = {
            m.id: m for m in session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        }
        for i in ids[:2]:
            m = rows[i]
            assert (m.recipient, m.subject, m.body_text, m.body_html, m.links, m.headers) == (
                "",
                "",
                "",
                None,
                None,
                {},
            )
        assert rows[ids[0]].status is MessageStatus.sent  # the record of sending stays
        assert rows[ids[1]].status is MessageStatus.suppressed  # queued: will never go
        assert rows[ids[2]].recipient == "bob@example.com"  # another customer: untouched
        events = session.scalars(select(CampaignEvent).where(CampaignEvent.message_id == ids[0]))
        assert {(e.url, e.ua_hash) for e in events} == {(None, None)}
        after = tracking.counts_by_key_prefix(session, store.id, "campaign:1:")
    assert (after["sent"], after["opened"], after["clicked"]) == (
        before["sent"],
        before["opened"],
        before["clicked"],
    )
    assert after["suppressed"] == before["suppressed"] + 1
    click = f"/t/c/{tracking.click_token(store, ids[0], 0)}"
    assert client.get(click, follow_redirects=False).status_code == 404  # its links are gone
