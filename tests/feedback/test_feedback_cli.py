"""`patron feedback ...` against the test database."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, select
from typer.testing import CliRunner

from patron.cli import app
from patron.db import unit_of_work
from patron.feedback.models import SurveyInvitation
from patron.feedback.reviews import reviews
from patron.feedback.schemas import ReviewIn
from patron.feedback.service import token_of
from patron.stores.models import Store
from tests.feedback.test_surveys_api import (
    NOW,
    SIMPLE,
    add_customer,
    create_survey,
    deliver,
    happy,
    one_token,
    submit,
)


def run(cli: CliRunner, *args: str) -> tuple[int, str, str]:
    result = cli.invoke(app, ["feedback", *args])
    return result.exit_code, result.stdout, result.stderr


def test_templates_and_surveys(
    db_cli: CliRunner, engine: Engine, store: Store, tmp_path: Path
) -> None:
    code, out, _ = run(db_cli, "templates")
    assert code == 0 and "competitor_value" in out and "我们与其他店铺相比如何" in out
    code, out, _ = run(db_cli, "templates", "--json")
    assert code == 0 and len(json.loads(out)["items"]) == 4
    code, out, err = run(
        db_cli,
        "survey",
        "create",
        "pp",
        "--store",
        store.slug,
        "--template",
        "post_purchase",
        "--trigger",
        "after_delivery",
        "--reminder-days",
        "3",
    )
    assert code == 0, err
    assert "after_delivery" in out and "post_purchase" in out
    definition = tmp_path / "survey.yaml"
    definition.write_text(json.dumps(SIMPLE, ensure_ascii=False), encoding="utf-8")
    code, out, err = run(
        db_cli, "survey", "create", "simple", "--store", store.slug, "--file", str(definition)
    )
    assert code == 0, err
    code, out, err = run(
        db_cli,
        "survey",
        "create",
        "value",
        "--store",
        store.slug,
        "--template",
        "competitor_value",
        "--competitor",
        "JD",
        "--competitor",
        "Tmall",
    )
    assert code == 0, err
    code, out, _ = run(db_cli, "survey", "list", "--store", store.slug)
    assert code == 0 and all(k in out for k in ("pp", "simple", "value"))
    code, out, err = run(
        db_cli,
        "survey",
        "update",
        "simple",
        "--store",
        store.slug,
        "--file",
        str(definition),
        "--anonymous",
    )
    assert code == 0 and "New version" in out, err
    code, out, _ = run(db_cli, "survey", "list", "--store", store.slug, "--json")
    versions = {s["key"]: s["version"] for s in json.loads(out)["items"]}
    assert versions == {"pp": 1, "simple": 2, "value": 1}
    # Errors: exit 2 with the reason.
    code, _, err = run(
        db_cli, "survey", "create", "pp", "--store", store.slug, "--template", "post_purchase"
    )
    assert code == 2 and "exists" in err
    code, _, err = run(db_cli, "survey", "create", "x", "--store", store.slug, "--template", "nope")
    assert code == 2 and "unknown template" in err
    code, _, err = run(db_cli, "survey", "create", "x", "--store", store.slug)
    assert code == 2 and "--template" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: {en: Hi}\nquestions: []\n", encoding="utf-8")
    code, _, err = run(db_cli, "survey", "create", "x", "--store", store.slug, "--file", str(bad))
    assert code == 2 and "definition.questions" in err
    code, _, err = run(db_cli, "survey", "list", "--store", "no-such-store")
    assert code == 2 and "no store" in err
    code, _, err = run(db_cli, "survey", "deactivate", "value", "--store", store.slug)
    assert code == 0


def test_invitations_triggers_and_scores(db_cli: CliRunner, engine: Engine, store: Store) -> None:
    for ext in ("A", "B", "C"):
        add_customer(engine, store, ext)
    create_survey(engine, store, "s", recontact_days=30)
    code, out, err = run(
        db_cli, "invite", "s", "A", "NOBODY", "--store", store.slug, "--locale", "en"
    )
    assert code == 0, err
    assert f"/s/{store.slug}/" in out and "unknown_customer" in out
    code, out, err = run(db_cli, "invite", "s", "A", "--store", store.slug, "--subject", "x")
    assert code == 0 and "recently_invited" in out
    code, _, err = run(db_cli, "invite", "nope", "A", "--store", store.slug)
    assert code == 2 and "no survey" in err
    create_survey(engine, store, "pp", trigger="after_delivery", delay_days=0, recontact_days=0)
    deliver(engine, store, "O-1", "B", NOW)
    code, out, err = run(db_cli, "run-triggers", "--store", store.slug)
    assert code == 0 and "invited after delivery: 1" in out, err
    submit(engine, _token_of_pp(engine, store), happy(nps=10))
    submit(engine, one_token(engine, store, "s", "C", now=NOW), happy(nps=2))
    code, out, err = run(db_cli, "scores", "--store", store.slug, "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["responses"] == 2 and body["overall"]["nps"]["value"] == 0.0
    code, out, err = run(db_cli, "scores", "--store", store.slug, "--by", "channel")
    assert code == 0 and "overall" in out and "web" in out, err
    code, _, err = run(db_cli, "scores", "--store", store.slug, "--by", "colour")
    assert code == 2 and "--by" in err
    code, out, err = run(db_cli, "gaps", "--store", store.slug)
    assert code == 0 and "quality" in out.lower(), err
    code, out, err = run(db_cli, "value-analysis", "--store", store.slug, "--json")
    assert code == 0 and json.loads(out)["n"] == 0, err


def _token_of_pp(engine: Engine, store: Store) -> str:
    with unit_of_work(engine) as session:
        nonce = session.scalars(
            select(SurveyInvitation.nonce).where(
                SurveyInvitation.store_id == store.id, SurveyInvitation.survey_key == "pp"
            )
        ).one()
    return token_of(store, nonce)


def test_reviews_and_moderation(db_cli: CliRunner, engine: Engine, store: Store) -> None:
    add_customer(engine, store, "A")
    with unit_of_work(engine) as session:
        reviews.submit(
            session,
            session.merge(store),
            ReviewIn(external_id="R-1", customer_external_id="A", product_sku="SKU", rating=2),
        )
    code, out, err = run(db_cli, "reviews", "--store", store.slug, "--status", "pending")
    assert code == 0 and "R-1" in out and "★★" in out, err
    code, out, err = run(
        db_cli, "moderate", "R-1", "--store", store.slug, "--approve", "--note", "ok"
    )
    assert code == 0 and "approved" in out and "points credited: 0" in out, err
    code, _, err = run(db_cli, "moderate", "R-1", "--store", store.slug)
    assert code == 2 and "--approve or --reject" in err
    code, _, err = run(db_cli, "moderate", "NOPE", "--store", store.slug, "--reject")
    assert code == 2 and "no review" in err
    code, out, _ = run(db_cli, "reviews", "--store", store.slug, "--json")
    assert json.loads(out)["items"][0]["status"] == "approved"
