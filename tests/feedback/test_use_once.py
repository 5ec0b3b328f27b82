"""The use-once guarantee of survey links: tampering, expiry, a second response, the
database refusing a duplicate, and many clients submitting one link at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.db import unit_of_work
from patron.errors import Conflict, NotFound
from patron.feedback import repository as repo
from patron.feedback.models import SurveyAnswer, SurveyInvitation, SurveyResponse
from patron.feedback.service import (
    ALREADY_ANSWERED,
    Gone,
    responses,
    split_token,
    token_of,
)
from patron.stores.models import Store
from tests.feedback.test_surveys_api import (
    DAY,
    NOW,
    add_customer,
    count_responses,
    create_survey,
    happy,
    one_token,
    submit,
)

THREADS = 20
ROUNDS = 3


def tampered(tok: str) -> list[str]:
    nonce, sig = tok.split(".")
    flip = "A" if sig[0] != "A" else "B"
    other = "A" if nonce[0] != "A" else "B"
    return [
        f"{nonce}.{flip}{sig[1:]}",  # signature changed
        f"{other}{nonce[1:]}.{sig}",  # nonce changed
        nonce,  # no signature
        f"{nonce}.{sig}x",
        "",
        "x" * 200,
        f"{nonce}.{sig}\x00",
    ]


def test_a_tampered_link_is_not_found(client: TestClient, engine: Engine, store: Store) -> None:
    add_customer(engine, store, "A")
    create_survey(engine, store, "s")
    tok = one_token(engine, store, "s", "A", now=NOW)
    for bad in tampered(tok):
        with pytest.raises(NotFound):
            submit(engine, bad, happy())
        if bad:
            res = client.get(f"/v1/survey-links/{quote(bad)}")
            assert res.status_code in (404, 422), (bad, res.text)
            assert res.headers["content-type"] == "application/problem+json"
    # A link of another store's secret: the signature does not match.
    other = Store(signing_secret="not-the-secret", slug="x", id=store.id)
    nonce = tok.split(".")[0]
    with pytest.raises(NotFound):
        submit(engine, token_of(other, nonce), happy())
    assert count_responses(engine, store) == 0
    assert split_token(tok) is not None


def test_an_expired_link_is_gone(client: TestClient, engine: Engine, store: Store) -> None:
    add_customer(engine, store, "A")
    create_survey(engine, store, "s", link_days=3)
    tok = one_token(engine, store, "s", "A", now=NOW - 4 * DAY)
    with pytest.raises(Gone):
        submit(engine, tok, happy())
    res = client.post(f"/v1/survey-links/{tok}/response", json={"answers": happy()})
    assert res.status_code == 410 and res.json()["type"].endswith("/gone")
    assert client.get(f"/v1/survey-links/{tok}").status_code == 410
    assert count_responses(engine, store) == 0


def test_a_second_response_is_refused(client: TestClient, engine: Engine, store: Store) -> None:
    add_customer(engine, store, "A")
    create_survey(engine, store, "s")
    tok = one_token(engine, store, "s", "A", now=NOW)
    bad = client.post(
        f"/v1/survey-links/{tok}/response",
        json={"answers": {"nps": 11, "ces": "x", "quality": {"expectation": 9}, "extra": 1}},
    )
    assert bad.status_code == 422, bad.text
    fields = [(e["field"], e["message"]) for e in bad.json()["errors"]]
    assert ("answers.nps", "must be between 0 and 10") in fields
    assert ("answers.csat", "required") in fields
    assert ("answers.ces", "must be a number") in fields
    assert ("answers.quality", "expectation: must be between 1 and 7") in fields
    assert ("answers.quality", "experience: required") in fields
    assert ("answers.extra", "unknown question") in fields
    first = client.post(f"/v1/survey-links/{tok}/response", json={"answers": happy()})
    assert first.status_code == 201, first.text
    assert first.json()["thanks"] == "谢谢!"  # the store's locale: zh-CN
    second = client.post(f"/v1/survey-links/{tok}/response", json={"answers": happy(nps=0)})
    assert second.status_code == 409 and "already" in second.json()["detail"]
    assert client.get(f"/v1/survey-links/{tok}").status_code == 409
    with pytest.raises(Conflict):
        submit(engine, tok, happy())
    assert count_responses(engine, store) == 1


def test_the_database_refuses_a_second_response(engine: Engine, store: Store) -> None:
    add_customer(engine, store, "A")
    create_survey(engine, store, "s")
    tok = one_token(engine, store, "s", "A", now=NOW)
    out = submit(engine, tok, happy())
    with unit_of_work(engine) as session:
        inv = repo.invitation_by_nonce(session, tok.split(".")[0])
        assert inv is not None and inv.used_at is not None
        # The conditional update matches nothing once the link is used ...
        assert repo.claim(session, inv.id, NOW) is False
        first = session.get(SurveyResponse, out.id)
        assert first is not None and first.invitation_id == inv.id
        inv_id, survey_id = inv.id, inv.survey_id
    # ... and UNIQUE(invitation_id) refuses a second row written around the service.
    with pytest.raises(IntegrityError), unit_of_work(engine) as session:
        session.add(
            SurveyResponse(
                store_id=store.id,
                survey_id=survey_id,
                survey_key="s",
                invitation_id=inv_id,
                submitted_at=NOW,
            )
        )
        session.flush()
    assert count_responses(engine, store) == 1


def race(db: Callable[[], Any], tok: str, answers: dict[str, Any]) -> list[str]:
    """THREADS clients submit one link at the same instant, each on its own connection."""
    barrier = threading.Barrier(THREADS)
    results: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        barrier.wait()
        try:
            with db() as session:
                responses.submit(session, tok, answers)
            outcome = "ok"
        except Conflict as exc:  # the 'already answered' error, nothing else
            outcome = "conflict" if exc.detail == ALREADY_ANSWERED else f"Conflict: {exc.detail}"
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


@pytest.mark.parametrize("anonymous", [False, True])
def test_concurrent_submissions_of_one_link_record_one_response(
    engine: Engine,
    store: Store,
    db: Callable[[], Iterator[Session]],
    anonymous: bool,
) -> None:
    for n in range(ROUNDS):
        add_customer(engine, store, f"C-{n}")
    create_survey(engine, store, "s", anonymous=anonymous, recontact_days=0)
    for n in range(ROUNDS):
        tok = one_token(engine, store, "s", f"C-{n}", now=NOW)
        results = race(db, tok, happy(nps=n))
        assert sorted(results) == ["conflict"] * (THREADS - 1) + ["ok"], results
        assert count_responses(engine, store) == n + 1
    with unit_of_work(engine) as session:
        rows = session.scalars(
            select(SurveyResponse).where(SurveyResponse.store_id == store.id)
        ).all()
        answers = session.scalar(
            select(func.count(SurveyAnswer.id)).where(SurveyAnswer.store_id == store.id)
        )
        used = session.scalar(
            select(func.count(SurveyInvitation.id)).where(
                SurveyInvitation.store_id == store.id, SurveyInvitation.used_at.is_not(None)
            )
        )
    assert len(rows) == ROUNDS and used == ROUNDS
    assert answers == ROUNDS * 4  # nps, csat, ces, quality: each response once
    if anonymous:
        assert all(r.customer_id is None and r.invitation_id is None for r in rows)
    else:
        assert len({r.invitation_id for r in rows}) == ROUNDS


def test_concurrent_api_submissions_never_fail_with_5xx(
    client: TestClient, engine: Engine, store: Store
) -> None:
    add_customer(engine, store, "A")
    create_survey(engine, store, "s")
    tok = one_token(engine, store, "s", "A", now=NOW)
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        barrier.wait()
        res = client.post(f"/v1/survey-links/{tok}/response", json={"answers": happy()})
        statuses.append(res.status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(statuses) == [201] + [409] * 7, statuses
    assert count_responses(engine, store) == 1
