"""Operations: health, Prometheus metrics, the OpenAPI document and generic HTTP errors."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from patron import __version__
from patron.app import create_app
from patron.db import make_engine
from tests.test_auth import api_routes

PROBLEM = "application/problem+json"


def samples(client: TestClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    res = client.get("/metrics")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(res.text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(found: dict[tuple[tuple[str, str], ...], float], **labels: str) -> float:
    return found.get(tuple(sorted(labels.items())), 0.0)


def test_healthz_is_open_and_checks_the_database(client: TestClient) -> None:
    res = client.get("/healthz")
    assert res.status_code == 200
    assert res.json() == {"status": "ok", "version": __version__}


def test_healthz_fails_when_the_database_is_gone(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        broken = make_engine(f"sqlite:////nonexistent-{uuid.uuid4().hex}/patron.db")
    else:
        broken = make_engine(engine.url.set(port=1).render_as_string(hide_password=False))
    with TestClient(create_app(broken), raise_server_exceptions=False) as c:
        res = c.get("/healthz")
    assert res.status_code >= 500
    assert res.headers["content-type"].startswith(PROBLEM)


def test_metrics_count_ingested_records(client: TestClient, admin: dict[str, str]) -> None:
    name = "patron_ingested_records_total"
    before = samples(client, name)
    body = {"external_id": "C-1", "email": "m@example.com"}
    assert client.put("/v1/customers/C-1", json=body, headers=admin).status_code == 201
    assert client.put("/v1/customers/C-1", json=body, headers=admin).status_code == 200
    bulk = {"records": [{"external_id": "C-2"}, {"external_id": ""}]}
    assert client.post("/v1/customers/bulk", json=bulk, headers=admin).status_code == 200
    after = samples(client, name)
    delta = {
        outcome: value(after, kind="customer", outcome=outcome)
        - value(before, kind="customer", outcome=outcome)
        for outcome in ("created", "unchanged", "error")
    }
    assert delta == {"created": 2, "unchanged": 1, "error": 1}


def test_metrics_time_requests_by_route_template(client: TestClient, admin: dict[str, str]) -> None:
    name = "patron_http_request_duration_seconds_count"
    before = samples(client, name)
    ext = f"C-{uuid.uuid4().hex}"
    client.put(f"/v1/customers/{ext}", json={"external_id": ext}, headers=admin)
    client.get(f"/v1/customers/{ext}", headers=admin)
    client.get(f"/v1/nowhere/{ext}")
    after = samples(client, name)
    route = "/v1/customers/{external_id}"
    for method, status in [("PUT", "201"), ("GET", "200")]:
        labels = {"method": method, "route": route, "status": status}
        assert value(after, **labels) - value(before, **labels) == 1
    assert value(after, method="GET", route="unmatched", status="404") >= 1
    # one series per route, never per id: the label set stays bounded
    assert not any(ext in str(labels) for labels in after)
    text = client.get("/metrics").text
    assert "patron_http_request_duration_seconds_bucket" in text


def test_openapi_lists_every_route(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    routes = {
        (path, method)
        for path, methods in api_routes(client.app)
        for method in methods
        if path.startswith("/v1/") or path in ("/healthz", "/metrics")
    }
    assert routes <= documented
    assert len(routes) >= 20


def _schema(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    return dict(doc["components"]["schemas"][ref.rsplit("/", 1)[-1]])


def test_openapi_documents_problem_responses(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    checked = 0
    for path, ops in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            responses = op["responses"]
            if path.startswith("/v1/survey-links/"):  # the path's signed token is the key
                assert "401" not in responses and "404" in responses, (method, path)
                assert not op.get("security"), (method, path)
            else:
                assert "401" in responses, (method, path)
            if "webhooks" not in path and "survey-links" not in path:
                assert "403" in responses, (method, path)
                assert op.get("security"), (method, path)  # a bearer token is declared
            for status, response in responses.items():
                if int(status) < 400:
                    continue
                content = response["content"]
                assert list(content) == [PROBLEM], (method, path, status)
                schema = _schema(doc, content[PROBLEM]["schema"]["$ref"])
                assert {"type", "title", "status", "detail"} <= set(schema["required"])
                checked += 1
    assert checked > 40
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_unknown_path_is_a_problem(client: TestClient) -> None:
    res = client.get("/v1/nowhere")
    assert res.status_code == 404
    assert res.headers["content-type"].startswith(PROBLEM)
    body = res.json()
    assert body["status"] == 404 and body["instance"] == "/v1/nowhere" and body["detail"]


def test_wrong_method_is_a_problem_with_allow(client: TestClient) -> None:
    res = client.delete("/healthz")
    assert res.status_code == 405
    assert res.headers["content-type"].startswith(PROBLEM)
    assert res.json()["status"] == 405
    assert "GET" in res.headers["allow"]


def test_unexpected_errors_are_problems_without_internals(engine: Engine) -> None:
    app = create_app(engine)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret connection string postgres://user:pw@db")

    with TestClient(app, raise_server_exceptions=False) as c:
        res = c.get("/boom")
    assert res.status_code == 500
    assert res.headers["content-type"].startswith(PROBLEM)
    assert res.json()["status"] == 500
    assert "secret" not in res.text and "RuntimeError" not in res.text


def test_an_exhausted_connection_pool_is_a_503_to_retry(
    engine: Engine, admin: dict[str, str]
) -> None:
    """Over capacity the API says so (503 + Retry-After), never a 500."""
    small = make_engine(
        engine.url.render_as_string(hide_password=False),
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.2,
    )
    held = small.connect()  # the only connection is busy
    try:
        client = TestClient(create_app(small), raise_server_exceptions=False)
        res = client.get("/v1/customers", headers=admin)
        assert res.status_code == 503
        assert res.headers["retry-after"] == "1"
        assert res.json()["type"].endswith("/overloaded")
    finally:
        held.close()
        small.dispose()
    client = TestClient(create_app(make_engine(engine.url.render_as_string(hide_password=False))))
    assert client.get("/v1/customers", headers=admin).status_code == 200
