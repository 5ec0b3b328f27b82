"""Referrals and surprises through the API: scopes, status codes, problems naming fields."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.conftest import key_headers
from tests.referrals.conftest import apply_program, customer
from typer.testing import CliRunner

from patron.auth import Scope
from patron.cli import app as cli_app
from patron.stores.models import Store


def member_headers(client: TestClient, admin: dict[str, str], ext: str) -> dict[str, str]:
    res = client.post(f"/v1/customers/{ext}/member-token", headers=admin)
    assert res.status_code == 200, res.text
    return {"Authorization": f"Bearer {res.json()['token']}"}


def fields(res: Any) -> list[str]:
    assert res.headers["content-type"] == "application/problem+json", res.text
    return [e["field"] for e in res.json().get("errors") or []]


def test_member_gets_a_code_and_a_link(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    customer(engine, store, "A")
    me = member_headers(client, admin, "A")
    first = client.get("/v1/me/referral", headers=me)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["link"] == f"http://testserver/r/{body['code']}"
    assert body["counts"] == dict.fromkeys(
        ("invited", "pending", "qualified", "rewarded", "rejected"), 0
    )
    assert client.get("/v1/me/referral", headers=me).json()["code"] == body["code"]
    assert client.get("/v1/customers/A/referral", headers=admin).json()["code"] == body["code"]
    res = client.get("/v1/customers/NOBODY/referral", headers=admin)
    assert res.status_code == 404 and fields(res) == ["external_id"]
    assert client.get("/v1/me/referral", headers=admin).status_code == 403


def test_attribution_through_the_api(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    apply_program(engine, store, referral={})
    for ext in ("A", "B", "C"):
        customer(engine, store, ext)
    code = client.get("/v1/customers/A/referral", headers=admin).json()["code"]
    other = client.get("/v1/customers/C/referral", headers=admin).json()["code"]
    ingest = key_headers(engine, store, Scope.ingest)
    res = client.post(
        "/v1/referrals", json={"code": code, "referee_external_id": "B"}, headers=ingest
    )
    assert res.status_code == 201, res.text
    assert res.json()["status"] == "pending" and res.json()["referrer_external_id"] == "A"
    again = client.post(
        "/v1/referrals", json={"code": code.lower(), "referee_external_id": "B"}, headers=ingest
    )
    assert again.status_code == 200 and again.json()["id"] == res.json()["id"]
    clash = client.post(
        "/v1/referrals", json={"code": other, "referee_external_id": "B"}, headers=ingest
    )
    assert clash.status_code == 409 and fields(clash) == ["referee_external_id"]
    self_ = client.post(
        "/v1/referrals", json={"code": code, "referee_external_id": "A"}, headers=ingest
    )
    assert self_.status_code == 201 and self_.json()["reason"] == "self_referral"

    read = key_headers(engine, store, Scope.read)
    rejected = client.get("/v1/referrals", params={"status": "rejected"}, headers=read).json()
    assert [(r["referee_external_id"], r["reason"]) for r in rejected["items"]] == [
        ("A", "self_referral")
    ]
    mine = client.get("/v1/referrals", params={"referrer": "A"}, headers=read).json()
    assert len(mine["items"]) == 2
    tree = client.get("/v1/referrals/tree", params={"root": "A", "depth": 1}, headers=read)
    assert tree.status_code == 200
    assert [c["external_id"] for c in tree.json()["root"]["children"]] == ["B"]
    stats = client.get("/v1/referrals/stats", headers=read).json()
    assert (stats["invitations"], stats["rejected"]) == (2, 1)
    counts = client.get("/v1/customers/A/referral", headers=admin).json()["counts"]
    assert (counts["invited"], counts["pending"], counts["rejected"]) == (2, 1, 1)
    assert (
        client.post(
            "/v1/referrals", json={"code": code, "referee_external_id": "B"}, headers=read
        ).status_code
        == 403
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"referee_external_id": "B"}, "body.code"),
        ({"code": "", "referee_external_id": "B"}, "body.code"),
        ({"code": "!!", "referee_external_id": "B"}, "code"),
        ({"code": "ABCDEFGH", "referee_external_id": "B"}, "code"),
        ({"code": "ABCDEFGH", "referee_external_id": "B", "extra": 1}, "body.extra"),
        ({"code": "ABCDEFGH", "referee_external_id": "x" * 200}, "body.referee_external_id"),
        ({"code": "A\u0000", "referee_external_id": "B"}, "body.code"),
    ],
)
def test_bad_attributions_are_4xx_naming_the_field(
    client: TestClient, admin: dict[str, str], body: dict[str, Any], field: str
) -> None:
    res = client.post("/v1/referrals", json=body, headers=admin)
    assert 400 <= res.status_code < 500, res.text
    assert field in fields(res)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/referrals/tree", {"root": "A", "depth": 0}, "query.depth"),
        ("/v1/referrals/tree", {"root": "A", "depth": 11}, "query.depth"),
        ("/v1/referrals/tree", {"depth": 2}, "query.root"),
        ("/v1/referrals/tree", {"root": "NOBODY"}, "root"),
        ("/v1/referrals", {"status": "lost"}, "query.status"),
        ("/v1/referrals", {"referrer": "NOBODY"}, "referrer"),
        ("/v1/referrals/stats", {"since": "2026-01-01"}, "query.since"),
        (
            "/v1/referrals/stats",
            {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            "since",
        ),
        ("/v1/surprises", {"status": "lost"}, "query.status"),
        ("/v1/surprises", {"plan_id": 99999}, "plan_id"),
    ],
)
def test_bad_reads_are_4xx_naming_the_field(
    client: TestClient, admin: dict[str, str], path: str, params: dict[str, Any], field: str
) -> None:
    res = client.get(path, params=params, headers=admin)
    assert 400 <= res.status_code < 500, res.text
    assert field in fields(res)


def test_surprise_plans_through_the_api(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    customer(engine, store, "A")
    body = {"segment": ["A"], "points": 50, "note": "for being you"}
    res = client.post("/v1/surprises/plan", json=body, headers=admin)
    assert res.status_code == 409, res.text
    apply_program(
        engine,
        store,
        surprise={
            "budget_points_per_month": 500,
            "max_per_customer_per_year": 1,
            "min_gap_days": 60,
        },
    )
    res = client.post("/v1/surprises/plan", json=body, headers=admin)
    assert res.status_code == 201, res.text
    assert res.json()["scheduled"] == 1 and res.json()["segment"] == {"customers": ["A"]}
    listed = client.get("/v1/surprises", params={"plan_id": res.json()["id"]}, headers=admin)
    assert [g["status"] for g in listed.json()["items"]] == ["scheduled"]
    read = key_headers(engine, store, Scope.read)
    assert client.post("/v1/surprises/plan", json=body, headers=read).status_code == 403
    for bad, field in (
        ({**body, "points": 0}, "body.points"),
        ({**body, "points": "50"}, "body.points"),
        ({**body, "segment": []}, "body.segment.customers"),
        ({**body, "segment": {}}, "body.segment.customers"),
        ({**body, "segment": {"customers": ["A"], "min_orders": 1}}, "body.segment.customers"),
        ({**body, "segment": {"min_orders": 0}}, "body.segment.min_orders"),
        ({**body, "segment": {"min_spend": "NaN"}}, "body.segment.min_spend"),
        ({**body, "segment": {"last_order": 3}}, "body.segment.last_order"),
        ({**body, "segment": ["A", "NOBODY"]}, "segment.customers.1"),
        ({**body, "points": 501}, "points"),
    ):
        res = client.post("/v1/surprises/plan", json=bad, headers=admin)
        assert res.status_code == 422, (bad, res.text)
        assert field in fields(res), (bad, res.json())


def test_cli_stats_and_run(db_cli: CliRunner, engine: Engine, store: Store) -> None:
    customer(engine, store, "A")
    res = db_cli.invoke(cli_app, ["referrals", "stats", "--store", store.slug])
    assert res.exit_code == 0, res.output
    assert "viral coefficient K" in res.output and "members (could refer)" in res.output
    res = db_cli.invoke(cli_app, ["referrals", "run", "--store", store.slug])
    assert res.exit_code == 0 and "referrals rewarded: 0" in res.output
    res = db_cli.invoke(cli_app, ["referrals", "stats", "--store", "nope"])
    assert res.exit_code == 1
    res = db_cli.invoke(
        cli_app,
        [
            "referrals",
            "stats",
            "--store",
            store.slug,
            "--since",
            "2026-02-01",
            "--until",
            "2026-01-01",
        ],
    )
    assert res.exit_code == 1 and "since" in res.output
