"""Consent, double opt-in, one-click unsubscribe, preferences and suppression."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from patron.campaigns.consent import consents
from patron.customers.models import Channel
from patron.db import unit_of_work
from patron.kit.clock import utcnow
from patron.stores.models import Store

PROBLEM = "application/problem+json"


def put_customer(client: TestClient, admin: dict[str, str], ext: str, **over: Any) -> int:
    body = {"external_id": ext, "email": f"{ext}@Example.com", "phone": "+86 138 0000 0000"}
    res = client.put(f"/v1/customers/{ext}", json={**body, **over}, headers=admin)
    assert res.status_code in (200, 201), res.text
    return int(res.json()["id"])


def may(engine: Engine, store: Store, cid: int, channel: Channel) -> bool:
    with unit_of_work(engine) as session:
        return consents.may_contact(session, session.merge(store), cid, channel)


def state(client: TestClient, admin: dict[str, str], ext: str) -> dict[str, dict[str, Any]]:
    res = client.get(f"/v1/customers/{ext}/consents", headers=admin)
    assert res.status_code == 200, res.text
    return {c["channel"]: c for c in res.json()["consents"]}


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_email_needs_double_opt_in(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    cid = put_customer(client, admin, "c1")
    assert not may(engine, store, cid, Channel.email)
    res = client.post("/v1/customers/c1/consents/email/opt-in", json={}, headers=admin)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["status"] == "pending" and f"/c/{store.slug}/" in body["confirm_url"]
    assert not may(engine, store, cid, Channel.email)  # pending until confirmed
    assert state(client, admin, "c1")["email"]["confirmed"] is False

    # Opening the link (as a mail scanner would) only asks; the button confirms.
    page = client.get(path_of(body["confirm_url"]) + "?lang=en")
    assert page.status_code == 200 and "Yes, subscribe me" in page.text
    assert not may(engine, store, cid, Channel.email)
    done = client.post(path_of(body["confirm_url"]) + "?lang=en")
    assert done.status_code == 200 and "Subscription confirmed" in done.text
    again = client.post(path_of(body["confirm_url"]))  # the store's language (zh-CN)
    assert again.status_code == 200 and "已确认" in again.text  # idempotent
    assert "已确认" in client.get(path_of(body["confirm_url"])).text
    assert may(engine, store, cid, Channel.email)
    email = state(client, admin, "c1")["email"]
    assert email["granted"] and email["confirmed"] and email["may_contact"]
    assert email["source"] == "double_opt_in"

    # A confirmed address is granted at once next time; each change is a touchpoint.
    client.post("/v1/customers/c1/consents/email/opt-out", json={}, headers=admin)
    assert not may(engine, store, cid, Channel.email)
    res = client.post("/v1/customers/c1/consents/email/opt-in", json={}, headers=admin)
    assert res.json()["status"] == "granted"
    touch = client.get("/v1/customers/c1/touchpoints", headers=admin).json()
    assert [t["data"]["granted"] for t in touch if t["kind"] == "consent"].count(True) == 2

    # A new address must be confirmed again.
    put_customer(client, admin, "c1", email="new@example.com")
    assert not may(engine, store, cid, Channel.email)


def test_other_channels_are_granted_at_once(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    cid = put_customer(client, admin, "c2")
    res = client.post(
        "/v1/customers/c2/consents/sms/opt-in", json={"source": "checkout"}, headers=admin
    )
    assert res.json()["status"] == "granted"
    assert may(engine, store, cid, Channel.sms)
    assert not may(engine, store, cid, Channel.push)
    assert state(client, admin, "c2")["sms"]["source"] == "checkout"


def test_confirmation_links_refuse_tampering_and_expire(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    put_customer(client, admin, "c3")
    url = client.post("/v1/customers/c3/consents/email/opt-in", json={}, headers=admin).json()[
        "confirm_url"
    ]
    path = path_of(url)
    assert client.get(path[:-2] + ("AA" if not path.endswith("AA") else "BB")).status_code == 404
    assert client.get(path.replace(store.slug, "other")).status_code == 404
    assert client.get(f"/c/{store.slug}/forged.token").status_code == 404
    with unit_of_work(engine) as session:
        s = session.merge(store)
        customer = consents.customer(session, s, "c3")
        old = consents.opt_in(
            session, s, customer, Channel.email, "api", "http://x", utcnow() - timedelta(days=8)
        )
    assert old.confirm_url is not None
    expired = client.get(path_of(old.confirm_url))
    assert expired.status_code == 410 and "过期" in expired.text
    assert client.post(path_of(old.confirm_url)).status_code == 410


def test_one_click_unsubscribe_and_preferences(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    cid = put_customer(client, admin, "c4", locale="zh-CN")
    url = client.post("/v1/customers/c4/consents/email/opt-in", json={}, headers=admin).json()[
        "confirm_url"
    ]
    client.post(path_of(url))
    client.post("/v1/customers/c4/consents/sms/opt-in", json={}, headers=admin)
    headers = client.get(
        "/v1/customers/c4/unsubscribe-headers", params={"channel": "email"}, headers=admin
    ).json()
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = headers["List-Unsubscribe"].strip("<>")
    assert f"/u/{store.slug}/{cid}.email." in link

    for _ in range(2):  # RFC 8058: no login, 200, idempotent
        res = client.post(path_of(link), data={"List-Unsubscribe": "One-Click"})
        assert res.status_code == 200 and "已退订" in res.text
    assert not may(engine, store, cid, Channel.email)
    assert may(engine, store, cid, Channel.sms)
    listed = client.get("/v1/suppressions", headers=admin).json()["items"]
    assert [(s["channel"], s["address"], s["reason"]) for s in listed] == [
        ("email", "c4@example.com", "unsubscribed")
    ]

    page = client.get(path_of(link))
    assert page.status_code == 200 and "消息订阅设置" in page.text
    assert 'value="sms" aria-label="短信: 开启" checked' in page.text
    assert 'value="email" aria-label="电子邮件: 开启">' in page.text
    assert "Your communication preferences" in client.get(path_of(link) + "?lang=en").text

    # The form: email back on (the email link proves the mailbox), SMS off.
    saved = client.post(path_of(link) + "?lang=en", data={"channel": "email"})
    assert saved.status_code == 200 and "have been saved" in saved.text
    assert may(engine, store, cid, Channel.email)
    assert not may(engine, store, cid, Channel.sms)
    reasons = {s["channel"] for s in client.get("/v1/suppressions", headers=admin).json()["items"]}
    assert reasons == {"sms"}
    assert client.post(f"/u/{store.slug}/{cid}.email.forgedforgedforgedforged").status_code == 404


def test_suppression_api(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    cid = put_customer(client, admin, "c5")
    client.post("/v1/customers/c5/consents/sms/opt-in", json={}, headers=admin)
    assert may(engine, store, cid, Channel.sms)
    bounce = {"channel": "sms", "address": "+86-138-0000-0000", "reason": "hard_bounce"}
    res = client.post("/v1/suppressions", json=bounce, headers=admin)
    assert res.status_code == 201, res.text
    assert res.json()["address"] == "+8613800000000"
    assert client.post("/v1/suppressions", json=bounce, headers=admin).status_code == 200
    assert not may(engine, store, cid, Channel.sms)
    # A bounced address is not re-opened by an opt-in.
    url = client.post("/v1/customers/c5/consents/email/opt-in", json={}, headers=admin)
    assert url.status_code == 200
    gone = client.delete("/v1/suppressions/sms/+8613800000000", headers=admin)
    assert gone.status_code == 204
    assert may(engine, store, cid, Channel.sms)
    again = client.delete("/v1/suppressions/sms/+8613800000000", headers=admin)
    assert again.status_code == 404 and again.headers["content-type"] == PROBLEM
    email = {"channel": "email", "address": "C5@example.com", "reason": "complaint"}
    client.post("/v1/suppressions", json=email, headers=admin)
    res = client.post("/v1/customers/c5/consents/email/opt-in", json={}, headers=admin)
    assert res.status_code == 409 and res.headers["content-type"] == PROBLEM


def test_bad_input_is_a_problem(client: TestClient, admin: dict[str, str]) -> None:
    put_customer(client, admin, "c6", email=None)
    cases = [
        client.post("/v1/suppressions", json={"channel": "fax", "address": "x@y.z"}, headers=admin),
        client.post("/v1/suppressions", json={"channel": "email"}, headers=admin),
        client.post("/v1/suppressions", json=[1], headers=admin),
        client.post("/v1/customers/c6/consents/fax/opt-in", json={}, headers=admin),
        client.post("/v1/customers/c6/consents/email/opt-in", json={"x": 1}, headers=admin),
        client.post("/v1/customers/c6/consents/email/opt-in", json={}, headers=admin),
        client.get("/v1/suppressions", params={"after": -1}, headers=admin),
    ]
    for res in cases:
        assert res.status_code == 422, res.text
        assert res.headers["content-type"] == PROBLEM
    missing = client.post("/v1/customers/nobody/consents/sms/opt-in", json={}, headers=admin)
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert client.get("/v1/suppressions").status_code == 401
