"""Customers through the API: idempotent upserts, consent history, validation, paging, bulk."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"


def customer(ext: str = "C-1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_id": ext,
        "email": "mei.lin@example.com",
        "phone": "+86 138 0013 8000",
        "first_name": "Mei",
        "last_name": "Lin",
        "birthday": "1990-04-01",
        "locale": "zh-CN",
        "timezone": "Asia/Shanghai",
        "attributes": {"tier": "gold", "tags": ["tea", "gift"]},
    }
    body.update(over)
    return body


def put(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Any:
    return client.put(f"/v1/customers/{body['external_id']}", json=body, headers=headers)


def get(client: TestClient, headers: dict[str, str], ext: str = "C-1") -> dict[str, Any]:
    res = client.get(f"/v1/customers/{ext}", headers=headers)
    assert res.status_code == 200, res.text
    return dict(res.json())


def touchpoints(client: TestClient, headers: dict[str, str], ext: str = "C-1") -> list[Any]:
    res = client.get(f"/v1/customers/{ext}/touchpoints", headers=headers)
    assert res.status_code == 200, res.text
    return list(res.json())


def consent(channel: str = "email", granted: bool = True, **over: Any) -> dict[str, Any]:
    return {"channel": channel, "granted": granted, **over}


# --- upserts ----------------------------------------------------------------------------


def test_same_body_is_unchanged_and_touches_nothing(
    client: TestClient, admin: dict[str, str]
) -> None:
    first = put(client, admin, customer())
    assert first.status_code == 201 and first.json()["status"] == "created"
    stored = get(client, admin)
    again = put(client, admin, customer())
    assert again.status_code == 200
    assert again.json()["status"] == "unchanged" and again.json()["id"] == first.json()["id"]
    assert get(client, admin) == stored  # updated_at included
    assert [t["kind"] for t in touchpoints(client, admin)] == ["signup"]


def test_changed_body_replaces_the_profile(client: TestClient, admin: dict[str, str]) -> None:
    put(client, admin, customer())
    before = get(client, admin)
    changed = customer(first_name="Meiling", attributes={"tier": "platinum"})
    del changed["phone"]
    res = put(client, admin, changed)
    assert res.status_code == 200 and res.json()["status"] == "updated"
    after = get(client, admin)
    assert after["first_name"] == "Meiling"
    assert after["attributes"] == {"tier": "platinum"}
    assert after["phone"] is None  # a full replace: what is not sent is cleared
    assert after["id"] == before["id"] and after["created_at"] == before["created_at"]
    assert datetime.fromisoformat(after["updated_at"]) > datetime.fromisoformat(
        before["updated_at"]
    )


def test_a_stub_becomes_a_full_profile(client: TestClient, admin: dict[str, str]) -> None:
    order = {
        "external_id": "O-1",
        "customer_external_id": "C-7",
        "currency": "CNY",
        "total": "10.00",
        "placed_at": "2026-01-05T10:00:00+08:00",
    }
    assert client.put("/v1/orders/O-1", json=order, headers=admin).status_code == 201
    stub = get(client, admin, "C-7")
    assert stub["is_stub"] is True and stub["email"] is None
    res = put(client, admin, customer("C-7"))
    assert res.status_code == 200 and res.json()["status"] == "updated"
    assert res.json()["id"] == stub["id"]
    full = get(client, admin, "C-7")
    assert full["is_stub"] is False and full["email"] == "mei.lin@example.com"
    # the order still belongs to the same profile
    orders = client.get("/v1/orders?customer=C-7", headers=admin).json()["items"]
    assert [o["external_id"] for o in orders] == ["O-1"]


def test_signup_time_is_the_stores(client: TestClient, admin: dict[str, str]) -> None:
    put(client, admin, customer(created_at="2024-02-29T09:30:00+08:00"))
    got = get(client, admin)
    assert datetime.fromisoformat(got["created_at"]) == datetime(2024, 2, 29, 1, 30, tzinfo=UTC)
    signup = touchpoints(client, admin)[0]
    assert signup["kind"] == "signup" and signup["occurred_at"] == got["created_at"]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("Mei.Lin@Example.COM", "mei.lin@example.com"),
        ("  mei@example.com  ", "mei@example.com"),
        ("", None),
    ],
)
def test_email_is_normalised(
    client: TestClient, admin: dict[str, str], sent: str, stored: str | None
) -> None:
    put(client, admin, customer(email=sent))
    assert get(client, admin)["email"] == stored


def test_path_and_body_ids_must_match(client: TestClient, admin: dict[str, str]) -> None:
    res = client.put("/v1/customers/C-2", json=customer("C-1"), headers=admin)
    assert res.status_code == 422
    assert [e["field"] for e in res.json()["errors"]] == ["external_id"]
    assert client.get("/v1/customers/C-1", headers=admin).status_code == 404
    assert client.get("/v1/customers/C-2", headers=admin).status_code == 404


# --- consents ---------------------------------------------------------------------------


def test_consent_records_source_and_time(client: TestClient, admin: dict[str, str]) -> None:
    at = "2026-01-02T08:00:00+08:00"
    put(client, admin, customer(consents=[consent(source="checkout", recorded_at=at)]))
    [got] = get(client, admin)["consents"]
    assert got["channel"] == "email" and got["granted"] is True and got["source"] == "checkout"
    assert datetime.fromisoformat(got["recorded_at"]) == datetime.fromisoformat(at)
    kinds = [(t["kind"], t["ref"], t["data"]) for t in touchpoints(client, admin)]
    assert ("consent", "email", {"granted": True, "source": "checkout"}) in kinds


def test_consent_without_a_time_is_recorded_at_receipt(
    client: TestClient, admin: dict[str, str]
) -> None:
    before = datetime.now(UTC)
    put(client, admin, customer(consents=[consent("sms", source="pos")]))
    after = datetime.now(UTC)
    [got] = get(client, admin)["consents"]
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(got["recorded_at"]) <= after


def test_consent_touchpoint_only_on_change(client: TestClient, admin: dict[str, str]) -> None:
    def consent_events() -> list[Any]:
        return [t for t in touchpoints(client, admin) if t["kind"] == "consent"]

    granted = consent(source="checkout", recorded_at="2026-01-02T00:00:00Z")
    put(client, admin, customer(consents=[granted]))
    assert len(consent_events()) == 1
    # the profile changes, the consent does not: no event, original source and time kept
    same = consent(source="newsletter", recorded_at="2026-01-03T00:00:00Z")
    res = put(client, admin, customer(first_name="Mei-Mei", consents=[same]))
    assert res.json()["status"] == "updated"
    assert len(consent_events()) == 1
    [kept] = get(client, admin)["consents"]
    assert kept["source"] == "checkout"
    assert datetime.fromisoformat(kept["recorded_at"]) == datetime(2026, 1, 2, tzinfo=UTC)
    # withdrawn: a second event, and the current state says who and when
    withdrawn = consent(
        granted=False, source="unsubscribe_link", recorded_at="2026-01-04T00:00:00Z"
    )
    put(client, admin, customer(first_name="Mei-Mei", consents=[withdrawn]))
    events = consent_events()
    assert len(events) == 2 and events[0]["data"] == {
        "granted": False,
        "source": "unsubscribe_link",
    }
    [now] = get(client, admin)["consents"]
    assert (now["granted"], now["source"]) == (False, "unsubscribe_link")
    # a body without consents leaves them as they are
    put(client, admin, customer(first_name="M"))
    assert get(client, admin)["consents"] == [now]


# --- validation: 422 naming the field, nothing written ----------------------------------

TOMORROW = (date.today() + timedelta(days=1)).isoformat()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "two@@example.com"),
        ("email", "a" * 310 + "@example.com"),
        ("phone", "call me"),
        ("phone", "+1" + "2" * 40),
        ("locale", "zh_CN"),
        ("locale", "chinese"),
        ("locale", "zh-" + "-".join(["abcd"] * 5)),
        ("timezone", "Mars/Olympus_Mons"),
        ("timezone", "../../etc/passwd"),
        ("birthday", TOMORROW),
        ("birthday", "1899-12-31"),
        ("birthday", "2026-02-30"),
        ("created_at", "2026-01-01T00:00:00"),  # no offset
        ("first_name", "x" * 256),
        ("first_name", "Mei\x00"),
        ("attributes", {"deep": [[[[[[[[[["too deep"]]]]]]]]]]}),
        ("attributes", {"k": "\x00"}),
        ("attributes", {"big": 2**64}),
        ("attributes", "not an object"),
        ("consents", [consent(), consent()]),
        ("consents", [consent("carrier_pigeon")]),
        ("consents", [consent(source="x" * 65)]),
        ("consents", [consent(recorded_at="2026-01-01T00:00:00")]),
        ("flagged", "maybe"),
        ("unknown_field", 1),
    ],
)
def test_invalid_fields_are_422_naming_the_field(
    client: TestClient, admin: dict[str, str], field: str, value: Any
) -> None:
    res = put(client, admin, customer(**{field: value}))
    assert res.status_code == 422, res.text
    assert res.headers["content-type"].startswith(PROBLEM)
    fields = [e["field"] for e in res.json()["errors"]]
    assert any(f == f"body.{field}" or f.startswith(f"body.{field}.") for f in fields), fields
    assert client.get("/v1/customers/C-1", headers=admin).status_code == 404


def test_touchpoints_before_needs_an_offset(client: TestClient, admin: dict[str, str]) -> None:
    put(client, admin, customer())
    res = client.get("/v1/customers/C-1/touchpoints?before=2026-01-01T00:00:00", headers=admin)
    assert res.status_code == 422
    assert [e["field"] for e in res.json()["errors"]] == ["query.before"]
    ok = client.get("/v1/customers/C-1/touchpoints?before=2000-01-01T00:00:00Z", headers=admin)
    assert ok.status_code == 200 and ok.json() == []


# --- listing ----------------------------------------------------------------------------


def test_pages_cover_every_customer_once(client: TestClient, admin: dict[str, str]) -> None:
    exts = [f"P-{n}" for n in range(7)]
    for ext in exts:
        put(client, admin, customer(ext, email=f"{ext.lower()}@example.com"))
    seen: list[str] = []
    pages = 0
    after: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 3} if after is None else {"limit": 3, "after": after}
        page = client.get("/v1/customers", params=params, headers=admin).json()
        pages += 1
        assert len(page["items"]) <= 3
        seen += [c["external_id"] for c in page["items"]]
        after = page["next_after"]
        if after is None:
            break
        assert after == page["items"][-1]["id"]
    assert seen == exts and pages == 3


def test_filter_by_email_is_case_insensitive(client: TestClient, admin: dict[str, str]) -> None:
    put(client, admin, customer("C-1", email="mei@example.com"))
    put(client, admin, customer("C-2", email="bo@example.com"))
    got = client.get("/v1/customers", params={"email": "MEI@Example.com"}, headers=admin).json()
    assert [c["external_id"] for c in got["items"]] == ["C-1"] and got["next_after"] is None
    none = client.get("/v1/customers", params={"email": "x@example.com"}, headers=admin).json()
    assert none["items"] == []


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "after=-1", "limit=abc"])
def test_bad_paging_is_422(client: TestClient, admin: dict[str, str], query: str) -> None:
    res = client.get(f"/v1/customers?{query}", headers=admin)
    assert res.status_code == 422
    assert res.json()["errors"][0]["field"] == "query." + query.split("=")[0]


# --- bulk -------------------------------------------------------------------------------


def test_bulk_reports_each_record_in_order(client: TestClient, admin: dict[str, str]) -> None:
    put(client, admin, customer("B-0"))
    records = [
        customer("B-0"),  # unchanged
        customer("B-1"),  # created
        customer("B-2", email="nope"),  # invalid
        {"email": "no-id@example.com"},  # invalid: no external_id
        customer("B-3"),
        customer("B-3", first_name="Later"),  # the same id twice: the last one wins
    ]
    res = client.post("/v1/customers/bulk", json={"records": records}, headers=admin)
    assert res.status_code == 200, res.text
    body = res.json()
    assert [r["index"] for r in body["results"]] == list(range(len(records)))
    assert [r["status"] for r in body["results"]] == [
        "unchanged",
        "created",
        "error",
        "error",
        "created",
        "created",
    ]
    assert body["results"][2]["external_id"] == "B-2"
    assert body["results"][2]["errors"][0]["field"] == "email"
    assert body["results"][3]["errors"][0]["field"] == "external_id"
    assert (body["created"], body["unchanged"], body["failed"]) == (3, 1, 2)
    assert get(client, admin, "B-3")["first_name"] == "Later"
    assert client.get("/v1/customers/B-2", headers=admin).status_code == 404


def test_atomic_bulk_writes_nothing_when_one_record_is_bad(
    client: TestClient, admin: dict[str, str]
) -> None:
    records = [customer("A-1"), customer("A-2", birthday=TOMORROW)]
    res = client.post("/v1/customers/bulk?atomic=true", json={"records": records}, headers=admin)
    assert res.status_code == 422
    assert res.headers["content-type"].startswith(PROBLEM)
    assert client.get("/v1/customers/A-1", headers=admin).status_code == 404
    ok = client.post("/v1/customers/bulk?atomic=true", json={"records": records[:1]}, headers=admin)
    assert ok.status_code == 200 and ok.json()["created"] == 1


@pytest.mark.parametrize("body", [{"records": []}, {"records": "x"}, {}, []])
def test_bulk_envelope_is_validated(client: TestClient, admin: dict[str, str], body: Any) -> None:
    res = client.post("/v1/customers/bulk", json=body, headers=admin)
    assert res.status_code == 422
    assert all(e["field"].startswith("body") for e in res.json()["errors"])
