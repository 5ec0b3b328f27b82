"""Programme versions through the API and the CLI: apply, show, history, simulate."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

import patron.loyalty
from patron.auth import Scope
from patron.cli import app as cli_app
from patron.db import unit_of_work
from patron.loyalty.models import ProgramVersion
from patron.loyalty.program import load_yaml
from patron.stores.models import Store
from tests.conftest import key_headers, new_store

PROBLEM = "application/problem+json"
EXAMPLE = Path(patron.loyalty.__file__).parent / "examples" / "program.yaml"
URL = "/v1/loyalty/program"

# 5 Nov 2026 in Shanghai (the stores' zone): inside the Singles' Day window; a member
# born in November ordering on the web, first order.
ORDER: dict[str, Any] = {
    "order": {
        "amount": "500.00",
        "currency": "CNY",
        "channel": "web",
        "occurred_at": "2026-11-05T10:00:00+08:00",
        "lines": [
            {"sku": "SER-1", "category": "skincare", "net": "300.00"},
            {"sku": "LIP-1", "category": "makeup", "quantity": 2, "unit_price": "100.00"},
        ],
    },
    "member": {"tier": "member", "first_order": True, "birthday": "1990-11-20"},
}


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return json.loads(json.dumps(data, default=str))  # dates as ISO text, as JSON sends


def count(engine: Engine, store: Store) -> int:
    with unit_of_work(engine) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(ProgramVersion)
                .where(ProgramVersion.store_id == store.id)
            )
            or 0
        )


def test_apply_versions_and_no_op(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], example: dict[str, Any]
) -> None:
    assert client.get(URL, headers=admin).status_code == 404

    first = client.put(URL, json=example, headers=admin)
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1 and first.json()["created"] is True
    fingerprint = first.json()["fingerprint"]
    assert fingerprint == load_yaml(EXAMPLE.read_text(encoding="utf-8")).fingerprint()

    again = client.put(URL, json=example, headers=admin)
    assert again.status_code == 200
    assert again.json() == {"version": 1, "fingerprint": fingerprint, "created": False}

    active = client.get(URL, headers=admin).json()
    assert active["version"] == 1 and active["active"] and active["source"] == "api"
    assert active["api_key_id"] is not None
    # the stored canonical config applied again (any key order, `version` ignored): no-op
    echoed = {"version": 7, **dict(reversed(list(active["config"].items())))}
    assert client.put(URL, json=echoed, headers=admin).json()["created"] is False

    changed = copy.deepcopy(example)
    changed["pending_days"] = 30
    second = client.put(URL, json=changed, headers=admin)
    assert second.status_code == 201
    assert second.json()["version"] == 2 and second.json()["fingerprint"] != fingerprint
    active = client.get(URL, headers=admin).json()
    assert active["version"] == 2 and active["config"]["pending_days"] == 30

    # back to the first configuration: a new version, not a revival of version 1
    assert client.put(URL, json=example, headers=admin).json()["version"] == 3
    versions = client.get(f"{URL}/versions", headers=admin).json()["items"]
    assert [(v["version"], v["active"]) for v in versions] == [(3, True), (2, False), (1, False)]
    assert versions[0]["fingerprint"] == versions[2]["fingerprint"] == fingerprint
    page = client.get(f"{URL}/versions?limit=2", headers=admin).json()
    assert [v["version"] for v in page["items"]] == [3, 2] and page["next_before"] == 2
    rest = client.get(f"{URL}/versions?before=2", headers=admin).json()
    assert [v["version"] for v in rest["items"]] == [1]
    assert count(engine, store) == 3


def errors_of(res: Any) -> dict[str, str]:
    assert res.status_code == 422, res.text
    assert res.headers["content-type"].startswith(PROBLEM)
    return {e["field"]: e["message"] for e in res.json()["errors"]}


def test_invalid_programme_names_every_field_and_writes_nothing(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], example: dict[str, Any]
) -> None:
    tiers = copy.deepcopy(example)
    tiers["tiers"][1].update(threshold=0, retain_threshold=0)
    tiers["tiers"][3].update(threshold=4000, retain_threshold=3000)
    found = errors_of(client.put(URL, json=tiers, headers=admin))
    assert "tiers.1.threshold" in found and "tiers.3.threshold" in found
    assert "rise strictly" in found["tiers.1.threshold"]

    fields = copy.deepcopy(example)
    fields["rules"][0]["colour"] = "red"
    fields["rules"][2]["when"]["chanels"] = ["app"]
    fields["currency"] = "yuan"
    found = errors_of(client.put(URL, json=fields, headers=admin))
    assert {"rules.0.colour", "rules.2.when.chanels", "currency"} <= set(found)

    assert errors_of(client.put(URL, json={"currency": "CNY"}, headers=admin)) == {
        "tiers": "Field required"
    }
    assert client.put(URL, json=[1, 2], headers=admin).status_code == 422
    assert count(engine, store) == 0
    assert client.get(URL, headers=admin).status_code == 404

    # with a programme applied, an invalid one leaves it active and alone
    assert client.put(URL, json=example, headers=admin).status_code == 201
    errors_of(client.put(URL, json=tiers, headers=admin))
    assert client.get(URL, headers=admin).json()["version"] == 1
    assert count(engine, store) == 1


def test_scopes_and_tenancy(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str], example: dict[str, Any]
) -> None:
    reader = key_headers(engine, store, Scope.read)
    assert client.put(URL, json=example, headers=reader).status_code == 403
    assert client.put(URL, json=example, headers=admin).status_code == 201
    assert client.get(URL, headers=reader).json()["version"] == 1
    assert client.post("/v1/loyalty/simulate", json=ORDER, headers=reader).status_code == 200

    other = new_store(engine)
    theirs = key_headers(engine, other, Scope.admin)
    assert client.get(URL, headers=theirs).status_code == 404
    assert client.get(f"{URL}/versions", headers=theirs).json()["items"] == []
    res = client.post("/v1/loyalty/simulate", json=ORDER, headers=theirs)
    assert res.status_code == 404 and res.headers["content-type"].startswith(PROBLEM)
    # B's own first programme is its version 1, independent of A's
    assert client.put(URL, json=example, headers=theirs).json()["version"] == 1


def test_simulate_explains_every_rule(
    client: TestClient, store: Store, admin: dict[str, str], example: dict[str, Any]
) -> None:
    client.put(URL, json=example, headers=admin)
    res = client.post("/v1/loyalty/simulate", json=ORDER, headers=admin)
    assert res.status_code == 200, res.text
    out = res.json()
    rules = {r["rule_id"]: r for r in out["rules"]}
    # base 500; birthday month ×2 → 1000; Singles' Day skincare ×1.5 on 600 → +300
    assert rules["birthday-month-double"]["fired"] is True
    assert rules["birthday-month-double"]["points"] == 500
    assert "×2" in rules["birthday-month-double"]["reason"]
    assert rules["singles-day-skincare"]["fired"] and rules["singles-day-skincare"]["points"] == 300
    app_rule = rules["app-first-order"]
    assert app_rule["fired"] is False and app_rule["points"] == 0
    assert app_rule["condition"] == "channels"
    assert app_rule["reason"] == "channel web not in [app]"
    assert rules["daily-check-in"]["condition"] == "event"
    assert (out["points"], out["growth"], out["base_points"]) == (1300, 500, 500)
    assert out["program_version"] == 1 and out["timezone"] == store.timezone
    assert out["local_date"] == "2026-11-05" and out["amount"] == "500.00"
    assert "= 1300 points, 500 growth" in out["explanation"]

    # the store's zone decides the day: 31 Oct 17:30 at +01:00 is 1 Nov in Shanghai
    late = copy.deepcopy(ORDER)
    late["order"]["occurred_at"] = "2026-10-31T17:30:00+01:00"
    out = client.post("/v1/loyalty/simulate", json=late, headers=admin).json()
    assert out["local_date"] == "2026-11-01"
    assert {r["rule_id"]: r["fired"] for r in out["rules"]}["singles-day-skincare"] is True

    # no channel, in the app, not a birthday month: the first-order bonus only
    app_order = copy.deepcopy(ORDER)
    app_order["order"]["channel"] = "app"
    app_order["member"]["birthday"] = "1990-03-01"
    app_order["order"]["lines"] = []
    out = client.post("/v1/loyalty/simulate", json=app_order, headers=admin).json()
    fired = {r["rule_id"] for r in out["rules"] if r["fired"]}
    assert fired == {"app-first-order"} and out["points"] == 600 and out["growth"] == 600

    bad = copy.deepcopy(ORDER)
    bad["order"]["currency"] = "USD"
    assert "order.currency" in errors_of(
        client.post("/v1/loyalty/simulate", json=bad, headers=admin)
    )
    bad = copy.deepcopy(ORDER)
    bad["order"]["lines"][0]["unit_price"] = "1.00"
    assert errors_of(client.post("/v1/loyalty/simulate", json=bad, headers=admin))


# -- CLI -----------------------------------------------------------------------------------


def test_cli_apply_show_simulate(
    db_cli: CliRunner, engine: Engine, store: Store, tmp_path: Path, example: dict[str, Any]
) -> None:
    slug = ["--store", store.slug]
    order = tmp_path / "order.json"
    order.write_text(json.dumps(ORDER))
    res = db_cli.invoke(cli_app, ["program", "simulate", str(order), *slug])
    assert res.exit_code == 1 and "no loyalty programme" in res.output

    res = db_cli.invoke(cli_app, ["program", "apply", str(EXAMPLE), *slug])
    assert res.exit_code == 0, res.output
    assert "applied version 1" in res.output
    res = db_cli.invoke(cli_app, ["program", "apply", str(EXAMPLE), *slug])
    assert res.exit_code == 0 and "unchanged: version 1" in res.output

    bad = tmp_path / "bad.yaml"
    broken = copy.deepcopy(example)
    broken["tiers"][2].update(threshold=500, retain_threshold=400)
    bad.write_text(yaml.safe_dump(broken, allow_unicode=True))
    res = db_cli.invoke(cli_app, ["program", "apply", str(bad), *slug])
    assert res.exit_code == 1
    assert "tiers.2.threshold: must be above tiers.1.threshold" in res.output
    assert "nothing applied" in res.output
    typo = tmp_path / "typo.yaml"
    typo.write_text(EXAMPLE.read_text(encoding="utf-8").replace("pending_days:", "pendng_days:"))
    res = db_cli.invoke(cli_app, ["program", "apply", str(typo), *slug])
    assert res.exit_code == 1 and "pendng_days: Extra inputs are not permitted" in res.output
    assert count(engine, store) == 1

    res = db_cli.invoke(cli_app, ["program", "show", *slug])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("# version 1,")
    shown = load_yaml(res.output)
    assert shown.fingerprint() == load_yaml(EXAMPLE.read_text(encoding="utf-8")).fingerprint()
    assert "生日月双倍积分" in res.output

    res = db_cli.invoke(cli_app, ["program", "simulate", str(order), *slug])
    assert res.exit_code == 0, res.output
    assert "programme version 1" in res.output
    assert "Double points in your birthday month" in res.output
    assert "channel web not in [app]" in res.output
    assert "= 1300 points; 500 growth" in res.output
    assert "for other events: daily-check-in" in res.output

    # a file programme, not applied: earn 3 points per CNY; a bare order (no member)
    trial = tmp_path / "trial.yaml"
    doubled = copy.deepcopy(example)
    doubled["earn"]["points_per_unit"] = 3
    trial.write_text(yaml.safe_dump(doubled, allow_unicode=True))
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({**ORDER["order"], "channel": "app"}))
    res = db_cli.invoke(cli_app, ["program", "simulate", str(bare), *slug, "--program", str(trial)])
    assert res.exit_code == 0, res.output
    assert "programme from file" in res.output
    assert "= 1950 points" in res.output  # 1500 base + skincare ×1.5 on 900 (not a first order)
    assert count(engine, store) == 1

    junk = tmp_path / "junk.json"
    junk.write_text(json.dumps({"order": {"amount": "-1"}}))
    res = db_cli.invoke(cli_app, ["program", "simulate", str(junk), *slug])
    assert res.exit_code == 1 and "order.amount" in res.output
    res = db_cli.invoke(cli_app, ["program", "show", "--store", "no-such-store"])
    assert res.exit_code == 1
