"""Product reviews: idempotent submission, verified purchases, moderation crediting review
points once through the programme's rules, replies, the rating summary, and the ticket
and alert of a negative review."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from patron.auth import Scope
from patron.customers.models import Touchpoint, TouchpointKind
from patron.db import unit_of_work
from patron.feedback.reviews import reviews
from patron.feedback.schemas import ModerationIn, ReviewIn
from patron.loyalty.models import LoyaltyEntry
from patron.loyalty.program import load_yaml
from patron.loyalty.programs import programs
from patron.loyalty.service import ledger
from patron.stores.models import Store
from patron.support.models import Ticket, TicketChannel
from tests.conftest import key_headers
from tests.feedback.test_surveys_api import DAY, T0, add_customer, deliver

EXAMPLE = Path(__file__).parents[2] / "src/patron/loyalty/examples/program.yaml"


def apply_example(engine: Engine, store: Store) -> None:
    """The example programme: its `review` rule gives 20 points, 200 a month at most."""
    with unit_of_work(engine) as session:
        programs.apply(session, session.merge(store), load_yaml(EXAMPLE.read_text("utf-8")))


def review(ext: str, rating: int = 5, **extra: Any) -> dict[str, Any]:
    return {
        "external_id": ext,
        "customer_external_id": "A",
        "product_sku": "SKU-1",
        "rating": rating,
        "title": f"{rating} stars",
        "body": "<b>Nice</b> 很好",
        **extra,
    }


def points(engine: Engine, store: Store, customer_id: int) -> int:
    with unit_of_work(engine) as session:
        return ledger.balance(session, session.merge(store), customer_id).points_available


def review_entries(engine: Engine, store: Store) -> int:
    with unit_of_work(engine) as session:
        return int(
            session.scalar(
                select(func.count(LoyaltyEntry.id)).where(
                    LoyaltyEntry.store_id == store.id,
                    LoyaltyEntry.idempotency_key.like("%:review:%"),
                )
            )
            or 0
        )


def test_submission_is_idempotent_and_verifies_purchases(
    client: TestClient, engine: Engine, store: Store
) -> None:
    cid = add_customer(engine, store, "A")
    add_customer(engine, store, "B")
    deliver(engine, store, "O-1", "A", T0, sku="SKU-1")
    ingest = key_headers(engine, store, Scope.ingest)
    res = client.post("/v1/reviews", json=review("R-1"), headers=ingest)
    assert res.status_code == 201, res.text
    body = res.json()
    assert body["verified_purchase"] is True and body["order_external_id"] == "O-1"
    assert body["status"] == "pending" and body["points"] == 0 and body["ticket_id"] is None
    again = client.post("/v1/reviews", json=review("R-1", rating=1), headers=ingest)
    assert again.status_code == 200 and again.json()["rating"] == 5
    other = client.post("/v1/reviews", json=review("R-2", customer_external_id="B"), headers=ingest)
    assert other.json()["verified_purchase"] is False
    nobody = client.post(
        "/v1/reviews", json=review("R-3", customer_external_id="NOBODY"), headers=ingest
    )
    assert nobody.status_code == 404
    assert nobody.json()["errors"][0]["field"] == "customer_external_id"
    bad = client.post("/v1/reviews", json=review("R-4", rating=6), headers=ingest)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.rating"
    read = key_headers(engine, store, Scope.read)
    assert client.post("/v1/reviews", json=review("R-5"), headers=read).status_code == 403
    with unit_of_work(engine) as session:
        kinds = session.scalars(select(Touchpoint.kind).where(Touchpoint.customer_id == cid)).all()
    assert kinds.count(TouchpointKind.review) == 1


def test_approval_credits_review_points_once(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    apply_example(engine, store)
    cid = add_customer(engine, store, "A")
    ingest = key_headers(engine, store, Scope.ingest)
    for ext in ("R-1", "R-2"):
        assert client.post("/v1/reviews", json=review(ext), headers=ingest).status_code == 201
    approve = {"decision": "approve", "note": "looks genuine"}
    res = client.post("/v1/reviews/R-1/moderation", json=approve, headers=admin)
    assert res.status_code == 200, res.text
    assert (res.json()["status"], res.json()["points"]) == ("approved", 20)
    assert res.json()["moderation_note"] == "looks genuine"
    # Approving again, rejecting, approving once more: still one credit.
    for decision in ("approve", "reject", "approve"):
        res = client.post("/v1/reviews/R-1/moderation", json={"decision": decision}, headers=admin)
        assert res.status_code == 200
    assert res.json()["points"] == 20
    assert points(engine, store, cid) == 20 and review_entries(engine, store) == 1
    rejected = client.post(
        "/v1/reviews/R-2/moderation", json={"decision": "reject", "note": "spam"}, headers=admin
    )
    assert rejected.json()["status"] == "rejected" and rejected.json()["points"] == 0
    assert points(engine, store, cid) == 20
    missing = client.post("/v1/reviews/NOPE/moderation", json=approve, headers=admin)
    assert missing.status_code == 404
    wrong = client.post("/v1/reviews/R-1/moderation", json={"decision": "maybe"}, headers=admin)
    assert wrong.status_code == 422


def test_without_a_programme_approval_gives_no_points(engine: Engine, store: Store) -> None:
    add_customer(engine, store, "A")
    with unit_of_work(engine) as session:
        s = session.merge(store)
        reviews.submit(session, s, ReviewIn.model_validate(review("R-1")), now=T0)
        out = reviews.moderate(session, s, "R-1", ModerationIn(decision="approve"), now=T0)
    assert (out.status.value, out.points) == ("approved", 0)


def test_a_negative_review_opens_a_ticket_and_an_alert_until_answered(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    add_customer(engine, store, "A")
    ingest = key_headers(engine, store, Scope.ingest)
    read = key_headers(engine, store, Scope.read)
    low = client.post("/v1/reviews", json=review("R-1", rating=1), headers=ingest).json()
    client.post("/v1/reviews", json=review("R-2", rating=2, product_sku="SKU-2"), headers=ingest)
    client.post("/v1/reviews", json=review("R-3", rating=4), headers=ingest)
    # A review without a customer: an alert, but nobody to open a ticket for.
    client.post(
        "/v1/reviews",
        json=review("R-4", rating=1, customer_external_id=None),
        headers=ingest,
    )
    with unit_of_work(engine) as session:
        tickets = session.scalars(
            select(Ticket).where(Ticket.store_id == store.id).order_by(Ticket.id)
        ).all()
        found = [(t.source_ref, t.channel, t.product_sku, t.id) for t in tickets]
    assert [f[:3] for f in found] == [
        ("review:R-1", TicketChannel.review, "SKU-1"),
        ("review:R-2", TicketChannel.review, "SKU-2"),
    ]
    assert low["ticket_id"] == found[0][3]
    alerts = client.get("/v1/reviews/alerts", headers=read).json()["items"]
    assert [r["external_id"] for r in alerts] == ["R-1", "R-2", "R-4"]
    reply = client.post(
        "/v1/reviews/R-1/reply", json={"reply": "Sorry! We will call you."}, headers=admin
    )
    assert reply.status_code == 200 and reply.json()["replied_at"] is not None
    client.post("/v1/reviews/R-2/moderation", json={"decision": "reject"}, headers=admin)
    alerts = client.get("/v1/reviews/alerts", headers=read).json()["items"]
    assert [r["external_id"] for r in alerts] == ["R-4"]
    res = client.post("/v1/reviews/R-2/reply", json={"reply": "x"}, headers=admin)
    assert res.status_code == 409
    res = client.post("/v1/reviews/R-3/reply", json={"reply": " "}, headers=admin)
    assert res.status_code == 422 and res.json()["errors"][0]["field"] == "body.reply"


def test_lists_and_the_rating_summary(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    add_customer(engine, store, "A")
    with unit_of_work(engine) as session:
        s = session.merge(store)
        for n, (sku, rating) in enumerate(
            [("SKU-1", 5), ("SKU-1", 4), ("SKU-1", 4), ("SKU-2", 2), ("SKU-2", 5), ("SKU-3", 1)]
        ):
            reviews.submit(
                session,
                s,
                ReviewIn.model_validate(review(f"R-{n}", rating=rating, product_sku=sku)),
                now=T0 + n * DAY,
            )
        reviews.moderate(session, s, "R-5", ModerationIn(decision="reject"), now=T0)
        reviews.moderate(session, s, "R-0", ModerationIn(decision="approve"), now=T0)
    read = key_headers(engine, store, Scope.read)
    summary = client.get("/v1/reviews/summary", headers=read).json()
    assert summary["overall"] == {
        "count": 5,
        "mean": 4.0,
        "distribution": {"1": 0, "2": 1, "3": 0, "4": 2, "5": 2},
    }
    assert [(p["product_sku"], p["count"], p["mean"]) for p in summary["products"]] == [
        ("SKU-1", 3, 13 / 3),
        ("SKU-2", 2, 3.5),
    ]
    approved = client.get(
        "/v1/reviews/summary", params={"status": "approved", "product": "SKU-1"}, headers=read
    ).json()
    assert approved["overall"]["count"] == 1 and approved["statuses"] == ["approved"]
    page = client.get("/v1/reviews", params={"product": "SKU-1", "rating": 4}, headers=read).json()
    assert [r["external_id"] for r in page["items"]] == ["R-1", "R-2"]
    pending = client.get("/v1/reviews", params={"status": "pending", "limit": 2}, headers=read)
    body = pending.json()
    assert [r["external_id"] for r in body["items"]] == ["R-1", "R-2"]
    rest = client.get(
        "/v1/reviews",
        params={"status": "pending", "after": body["next_after"]},
        headers=read,
    ).json()
    assert [r["external_id"] for r in rest["items"]] == ["R-3", "R-4"]
    assert rest["items"][0]["body"] == "<b>Nice</b> 很好"
