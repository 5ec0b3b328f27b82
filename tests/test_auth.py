"""Who may call what: API keys with scopes, member tokens, and the routes left open."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from patron.auth import Scope, issue_member_token
from patron.config import get_settings
from patron.db import unit_of_work
from patron.stores.models import ApiKey, Store
from patron.stores.service import stores
from tests.conftest import key_headers, new_store

PROBLEM = "application/problem+json"
OPEN_ROUTES = {"/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# Survey links: the signed, use-once token in the path is the credential.
TOKEN_ROUTES = {
    "/s/{store_slug}/{token}",
    "/v1/survey-links/{token}",
    "/v1/survey-links/{token}/response",
    "/c/{store_slug}/{token}",  # double opt-in confirmation
    "/u/{store_slug}/{token}",  # unsubscribe and preferences
    "/t/o/{token}.gif",  # open pixel (signed message token)
    "/t/c/{token}",  # tracked link (signed message and link token)
}
# The merchant dashboard: the login form, logout, / (a redirect) and static assets are
# open; every page under /dashboard needs the staff session cookie
# (tests/web/test_dashboard_auth.py checks that each redirects to /login without it).
DASHBOARD_OPEN_ROUTES = {"/", "/login", "/logout", "/static"}
STAFF_PREFIX = "/dashboard"
# The member page: /enter takes a member token (pm_…) and sets the member cookie; every
# other page needs that cookie (test_member_pages_need_the_member_cookie).
MEMBER_ROUTES = {
    "/m/{store_slug}/enter",
    "/m/{store_slug}",
    "/m/{store_slug}/history",
    "/m/{store_slug}/rewards",
    "/m/{store_slug}/rewards/{reward_id}",
    "/m/{store_slug}/redemptions/{redemption_id}",
    "/m/{store_slug}/check-in",
}


def customer(ext: str, **over: Any) -> dict[str, Any]:
    return {"external_id": ext, "email": f"{ext.lower()}@example.com", **over}


def order(ext: str, customer_ext: str, total: str = "100.00") -> dict[str, Any]:
    return {
        "external_id": ext,
        "customer_external_id": customer_ext,
        "currency": "CNY",
        "total": total,
        "placed_at": "2026-01-05T10:00:00+08:00",
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_401(res: Any) -> None:
    assert res.status_code == 401, res.text
    assert res.headers["content-type"].startswith(PROBLEM)
    assert res.headers["www-authenticate"].lower().startswith("bearer")
    body = res.json()
    assert body["status"] == 401 and body["title"] and body["detail"]


def put_customer(client: TestClient, headers: dict[str, str], ext: str) -> int:
    res = client.put(f"/v1/customers/{ext}", json=customer(ext), headers=headers)
    assert res.status_code in (200, 201), res.text
    return int(res.json()["id"])


def member_token(client: TestClient, admin: dict[str, str], ext: str) -> str:
    res = client.post(f"/v1/customers/{ext}/member-token", headers=admin)
    assert res.status_code == 200, res.text
    return str(res.json()["token"])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    body = token.removeprefix("pm_").split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def _with_claims(token: str, **claims: Any) -> str:
    """The same signature over a different body."""
    sig = token.split(".", 1)[1]
    body = _b64(json.dumps({**_claims(token), **claims}, separators=(",", ":")).encode())
    return f"pm_{body}.{sig}"


# --- API keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token pk_abc_def",
        "Bearer pk_",
        "Bearer pk_onlyprefix",
        "Bearer sk_abcdef012345_secret",
        "Bearer pk_000000000000_not-a-real-secret",
        "Bearer pm_",
        "Bearer pm_garbage",
        "Bearer pm_e30.c2ln",  # {} with any signature
        "Bearer pm_bm90IGpzb24.c2ln",  # "not json"
        "Bearer pm_WzEsMiwzXQ.c2ln",  # [1,2,3]
    ],
)
def test_missing_or_malformed_credentials_are_401(
    client: TestClient, store: Store, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_401(client.get("/v1/customers", headers=headers))


def test_unknown_wrong_and_revoked_keys_are_401(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    full = admin["Authorization"].removeprefix("Bearer ")
    _, prefix, secret = full.split("_", 2)
    assert client.get("/v1/customers", headers=admin).status_code == 200

    assert_401(client.get("/v1/customers", headers=bearer(f"pk_{prefix}_{secret[:-1]}x")))
    assert_401(client.get("/v1/customers", headers=bearer(f"pk_{'0' * 12}_{secret}")))
    assert_401(client.get("/v1/customers", headers=bearer(f"pk_{prefix}_")))

    with unit_of_work(engine) as session:
        stores.revoke_key(session, session.merge(store), prefix)
    assert_401(client.get("/v1/customers", headers=admin))
    # a revoked key stays revoked for every route, writes included
    assert_401(client.put("/v1/customers/C-1", json=customer("C-1"), headers=admin))


@pytest.mark.parametrize(
    "token",
    [
        # a signature with characters hmac.compare_digest refuses
        "pm_" + _b64(b'{"s":1,"c":1,"e":9999999999}') + ".\u00ff\u00fe",
        # claims no database id or int() can take
        "pm_" + _b64(b'{"s":1e999,"c":1,"e":1}') + ".c2ln",
        "pm_" + _b64(b'{"s":100000000000000000000000000,"c":1,"e":9999999999}') + ".c2ln",
        "pm_" + _b64(b'{"s":-1,"c":1,"e":9999999999}') + ".c2ln",
        "pm_" + _b64(b'{"s":"1","c":null,"e":1}') + ".c2ln",
        "pm_" + _b64(b"[" * 5000) + ".c2ln",
        "pm_\u00e9t\u00e9.c2ln",
        "pk_\u00e9t\u00e9_secret",
        "pk_abc_\u00ff",
        "pk_abc\x00def_secret",
        "pk_abc\x7fdef_secret",
    ],
)
def test_hostile_tokens_are_401_not_500(client: TestClient, store: Store, token: str) -> None:
    header = f"Bearer {token}".encode("latin-1")
    res = client.get("/v1/customers", headers={"Authorization": header})  # type: ignore[dict-item]
    assert_401(res)


def test_keys_are_stored_only_as_hashes(engine: Engine, store: Store) -> None:
    full = key_headers(engine, store, Scope.read)["Authorization"].removeprefix("Bearer ")
    secret = full.split("_", 2)[2]
    with unit_of_work(engine) as session:
        rows = session.execute(select(ApiKey.__table__).where(ApiKey.store_id == store.id)).all()
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0])
    assert secret not in stored and full not in stored
    assert secret[:16] not in stored  # not even a leading slice of it


def test_the_stored_hash_does_not_work_as_a_secret(
    client: TestClient, engine: Engine, store: Store
) -> None:
    full = key_headers(engine, store, Scope.read)["Authorization"].removeprefix("Bearer ")
    prefix = full.split("_", 2)[1]
    with unit_of_work(engine) as session:
        digest = session.scalars(select(ApiKey.secret_hash).where(ApiKey.prefix == prefix)).one()
    assert client.get("/v1/customers", headers=bearer(full)).status_code == 200
    assert_401(client.get("/v1/customers", headers=bearer(f"pk_{prefix}_{digest}")))


# The designed matrix: admin ⊇ {ingest, read}; ingest and read grant only themselves;
# only a member token opens /v1/me. "ok" means any 2xx.
ACTIONS = ("read", "ingest", "admin", "member")
MATRIX: dict[str, dict[str, str]] = {
    "admin": {"read": "ok", "ingest": "ok", "admin": "ok", "member": "403"},
    "ingest": {"read": "403", "ingest": "ok", "admin": "403", "member": "403"},
    "read": {"read": "ok", "ingest": "403", "admin": "403", "member": "403"},
    "ingest read": {"read": "ok", "ingest": "ok", "admin": "403", "member": "403"},
    "member token": {"read": "403", "ingest": "403", "admin": "403", "member": "ok"},
}


def _call(client: TestClient, action: str, headers: dict[str, str]) -> int:
    if action == "read":
        return client.get("/v1/customers/C-1", headers=headers).status_code
    if action == "ingest":
        return client.put("/v1/customers/C-2", json=customer("C-2"), headers=headers).status_code
    if action == "admin":
        return client.post("/v1/customers/C-1/member-token", headers=headers).status_code
    return client.get("/v1/me", headers=headers).status_code


@pytest.mark.parametrize("who", list(MATRIX))
def test_scope_matrix(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], who: str
) -> None:
    put_customer(client, admin, "C-1")
    if who == "member token":
        headers = bearer(member_token(client, admin, "C-1"))
    else:
        headers = key_headers(engine, store, *(Scope(s) for s in who.split()))
    got = {}
    for action in ACTIONS:
        status = _call(client, action, headers)
        got[action] = "ok" if 200 <= status < 300 else str(status)
    assert got == MATRIX[who]


def test_forbidden_is_a_problem_naming_the_scope(
    client: TestClient, engine: Engine, store: Store
) -> None:
    res = client.put(
        "/v1/customers/C-1", json=customer("C-1"), headers=key_headers(engine, store, Scope.read)
    )
    assert res.status_code == 403
    assert res.headers["content-type"].startswith(PROBLEM)
    assert "ingest" in res.json()["detail"]
    assert (
        client.get("/v1/customers/C-1", headers=key_headers(engine, store, Scope.read)).status_code
        == 404
    )


# --- member tokens ------------------------------------------------------------------


def test_member_sees_own_profile_and_only_own_orders(
    client: TestClient, admin: dict[str, str]
) -> None:
    put_customer(client, admin, "C-1")
    put_customer(client, admin, "C-2")
    for ext, cust in [("O-1", "C-1"), ("O-2", "C-2"), ("O-3", "C-1"), ("O-4", "C-2")]:
        assert client.put(f"/v1/orders/{ext}", json=order(ext, cust), headers=admin).is_success

    before = int(time.time())
    res = client.post("/v1/customers/C-1/member-token", headers=admin)
    assert res.status_code == 200
    ttl = get_settings().member_token_ttl_seconds
    assert before + ttl <= res.json()["expires_at"] <= int(time.time()) + ttl + 1
    headers = bearer(res.json()["token"])

    me = client.get("/v1/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["external_id"] == "C-1" and me.json()["email"] == "c-1@example.com"
    mine = client.get("/v1/me/orders", headers=headers).json()
    assert sorted(o["external_id"] for o in mine["items"]) == ["O-1", "O-3"]
    assert {o["customer_external_id"] for o in mine["items"]} == {"C-1"}


def test_member_token_for_unknown_customer_is_404(
    client: TestClient, admin: dict[str, str]
) -> None:
    res = client.post("/v1/customers/nobody/member-token", headers=admin)
    assert res.status_code == 404 and res.headers["content-type"].startswith(PROBLEM)


def test_expired_member_token_is_401(
    client: TestClient, store: Store, admin: dict[str, str]
) -> None:
    cid = put_customer(client, admin, "C-1")
    fresh, _ = issue_member_token(store, cid, ttl_seconds=60)
    assert client.get("/v1/me", headers=bearer(fresh)).status_code == 200
    expired, expires = issue_member_token(store, cid, ttl_seconds=-1)
    assert expires < time.time()
    res = client.get("/v1/me", headers=bearer(expired))
    assert_401(res)
    assert "expired" in res.json()["detail"].lower()


def test_tampered_member_tokens_are_401(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    put_customer(client, admin, "C-1")
    other = put_customer(client, admin, "C-2")
    token = member_token(client, admin, "C-1")
    assert client.get("/v1/me", headers=bearer(token)).status_code == 200

    claims = _claims(token)
    assert_401(client.get("/v1/me", headers=bearer(_with_claims(token, c=other))))
    assert_401(client.get("/v1/me", headers=bearer(_with_claims(token, e=claims["e"] + 3600))))
    body, sig = token.split(".", 1)
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    assert_401(client.get("/v1/me", headers=bearer(f"{body}.{flipped}")))
    assert_401(client.get("/v1/me", headers=bearer(body)))

    # a token another store signed cannot claim this store, nor this store's customer
    other_store = new_store(engine)
    forged, _ = issue_member_token(other_store, claims["c"], ttl_seconds=600)
    assert_401(client.get("/v1/me", headers=bearer(_with_claims(forged, s=store.id))))
    # ...while the genuine token of the other store opens only that store, where the id
    # names no customer
    assert client.get("/v1/me", headers=bearer(forged)).status_code == 404


def test_member_token_stops_working_when_store_secret_rotates(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    put_customer(client, admin, "C-1")
    token = member_token(client, admin, "C-1")
    with unit_of_work(engine) as session:
        session.merge(store).signing_secret = "rotated-" + "0" * 56
    assert_401(client.get("/v1/me", headers=bearer(token)))


# --- every route but the open ones needs credentials -------------------------------


def api_routes(app: Any) -> list[tuple[str, set[str]]]:
    """(path, methods) of every route, through included routers on any FastAPI version."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI ≥ 0.16x: lazy inclusion
    except ImportError:  # pragma: no cover - older FastAPI lists routes flat
        routes = list(app.routes)
    else:
        routes = list(iter_route_contexts(app.routes))
    return [(r.path, set(r.methods or ())) for r in routes]


def _concrete(path: str, store: Store) -> str:
    return re.sub(
        r"\{([^}:]+)(:[^}]*)?\}",
        lambda m: store.slug if m.group(1) == "store_slug" else "X-1",
        path,
    )


def test_only_ops_routes_are_open(client: TestClient) -> None:
    open_paths = (
        {path for path, _ in api_routes(client.app) if not path.startswith(("/v1/", STAFF_PREFIX))}
        - DASHBOARD_OPEN_ROUTES
        - MEMBER_ROUTES
    )
    assert open_paths <= OPEN_ROUTES | TOKEN_ROUTES, (
        f"unexpected unauthenticated routes: {open_paths - OPEN_ROUTES - TOKEN_ROUTES}"
    )
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_member_pages_need_the_member_cookie(client: TestClient, store: Store) -> None:
    member = {(p, frozenset(m)) for p, m in api_routes(client.app) if p.startswith("/m/")}
    assert {p for p, _ in member} == MEMBER_ROUTES
    for template, methods in member:
        path = _concrete(template, store).replace("X-1", "1")
        for method in methods - {"HEAD"}:
            res = client.request(method, path, data={"csrf": "x"})
            assert res.status_code == 401, f"{method} {template} answered {res.status_code}"


def test_every_v1_route_requires_credentials(client: TestClient, store: Store) -> None:
    routes = [(p, m) for p, m in api_routes(client.app) if p.startswith("/v1/")]
    assert len(routes) >= 15  # the walk really saw the API
    for template in TOKEN_ROUTES:  # a forged token opens nothing
        path = template.replace("{store_slug}", store.slug).replace("{token}", "forged.token")
        method = "POST" if template.endswith("/response") else "GET"
        res = client.request(method, path, json={"answers": {"nps": 10}})
        assert res.status_code == 404, f"{template} answered {res.status_code}"
    routes = [(p, m) for p, m in routes if p not in TOKEN_ROUTES]
    checked = 0
    for template, methods in routes:
        path = _concrete(template, store)
        for method in sorted(methods):
            for headers in ({}, bearer("pk_000000000000_nope")):
                res = client.request(method, path, json={}, headers=headers)
                assert res.status_code == 401, f"{method} {template} answered {res.status_code}"
                assert res.headers["content-type"].startswith(PROBLEM)
                checked += 1
    assert checked == 2 * sum(len(m) for _, m in routes)


def test_webhook_without_signature_is_401_even_with_an_api_key(
    client: TestClient, store: Store, admin: dict[str, str]
) -> None:
    res = client.post(
        f"/v1/webhooks/shopify/{store.slug}",
        content=b"{}",
        headers={**admin, "X-Shopify-Topic": "orders/create"},
    )
    assert_401(res)


def test_key_use_is_recorded(engine: Engine, store: Store, client: TestClient) -> None:
    headers = key_headers(engine, store, Scope.read)
    prefix = headers["Authorization"].split("_")[1]
    with unit_of_work(engine) as session:
        key = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one()
        assert key.last_used_at is None
    assert client.get("/v1/customers", headers=headers).status_code == 200
    with unit_of_work(engine) as session:
        key = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one()
        assert key.last_used_at is not None


def test_a_verified_key_is_remembered_briefly(
    client: TestClient, engine: Engine, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import event

    import patron.auth as auth

    key_reads: list[str] = []

    def note(_conn: object, _cur: object, statement: str, *_: object) -> None:
        if "FROM api_keys" in statement:
            key_reads.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        assert client.get("/v1/customers", headers=admin).status_code == 200
        first = len(key_reads)
        assert client.get("/v1/customers", headers=admin).status_code == 200
        assert len(key_reads) == first  # verified a moment ago: no query
        monkeypatch.setattr(auth, "KEY_CACHE_SECONDS", 0.0)
        auth.forget_keys()
        assert client.get("/v1/customers", headers=admin).status_code == 200
        assert client.get("/v1/customers", headers=admin).status_code == 200
        assert len(key_reads) == first + 2  # no cache: every request checks the key
    finally:
        event.remove(engine, "before_cursor_execute", note)
