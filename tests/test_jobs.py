"""The scheduled jobs of every package run together, per store, idempotently:
``patron.jobs.run_all`` (what ``patron worker`` and ``patron serve`` call)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from patron.cli import app
from patron.jobs import StoreRun, run_all
from patron.stores.models import Store


def _shop(client: TestClient, admin: dict[str, str], now: datetime) -> None:
    res = client.post(
        "/v1/surveys",
        json={"key": "pp", "template": "post_purchase", "trigger": "after_delivery",
              "delay_days": 7},
        headers=admin,
    )  # fmt: skip
    assert res.status_code == 201, res.text
    res = client.put("/v1/customers/J-1", json={"external_id": "J-1"}, headers=admin)
    assert res.is_success, res.text
    placed = now - timedelta(days=10)
    order = {
        "external_id": "JO-1", "customer_external_id": "J-1", "status": "delivered",
        "currency": "CNY", "placed_at": placed.isoformat(), "paid_at": placed.isoformat(),
        "delivered_at": (now - timedelta(days=8)).isoformat(),
        "lines": [{"sku": "S-1", "quantity": 1, "unit_price": "50.00"}],
    }  # fmt: skip
    res = client.put("/v1/orders/JO-1", json=order, headers=admin)
    assert res.is_success, res.text
    res = client.post(
        "/v1/tickets",
        json={"channel": "email", "subject": "Where is my parcel?", "body": "Still waiting.",
              "customer_external_id": "J-1"},
        headers=admin,
    )  # fmt: skip
    assert res.status_code == 201, res.text


def test_one_run_does_every_packages_jobs_once(
    engine: Engine, store: Store, client: TestClient, admin: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    _shop(client, admin, now)
    soon = now + timedelta(hours=20)  # past 80% of the e-mail's 24 h first-response target
    done, failed = run_all(engine, store.slug, soon)
    assert failed == []
    assert done.invitations == 1  # the delivered order's survey
    assert (done.sla_warnings, done.sla_breaches) == (1, 0)
    assert run_all(engine, store.slug, soon)[0] == StoreRun()  # nothing twice
    later = now + timedelta(days=2)
    done, _ = run_all(engine, store.slug, later)
    assert done.sla_breaches >= 1 and done.invitations == 0
    assert run_all(engine, store.slug, later)[0].total == 0


def test_worker_reports_every_job(
    db_cli: CliRunner, store: Store, client: TestClient, admin: dict[str, str]
) -> None:
    _shop(client, admin, datetime.now(UTC))
    result = db_cli.invoke(app, ["worker", "--once", "--store", store.slug])
    assert result.exit_code == 0, result.output
    assert "1 survey invitations" in result.output
    assert "SLA warnings" in result.output
