"""Random and hostile bodies, paths and forms to what campaigns expose: never a server
error, always a problem document, and nothing changed by a refused call."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from patron.campaigns.models import Suppression
from patron.db import unit_of_work
from patron.stores.models import Store
from tests.campaigns.test_consent import put_customer
from tests.test_malformed_input import assert_handled, json_values, mutated, send

EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


SEGMENT = {"all": [{"field": "points", "op": "gte", "value": 100}]}
CAMPAIGN = {
    "key": "fuzzed-news",
    "name": "Newsletter",
    "trigger": "newsletter",
    "variants": [
        {
            "key": "A",
            "subject": {"en": "Hello {{ customer.first_name }}", "zh": "您好"},
            "body": {"en": "News for you.", "zh": "新品上市。"},
        }
    ],
}


def suppressions(engine: Engine, store: Store) -> int:
    with unit_of_work(engine) as session:
        found = session.scalar(
            select(func.count()).select_from(Suppression).where(Suppression.store_id == store.id)
        )
    return int(found or 0)


def test_campaign_writes_survive_hostile_bodies(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    put_customer(client, admin, "H-1")
    writes: list[tuple[str, str, Any]] = [
        ("POST", "/v1/customers/H-1/consents/email/opt-in", {"source": "checkout"}),
        ("POST", "/v1/customers/H-1/consents/sms/opt-out", {"source": "app"}),
        ("POST", "/v1/suppressions", {"channel": "email", "address": "x@example.com"}),
        # Segments, campaigns and delivery settings.
        ("POST", "/v1/segments/preview", {"definition": SEGMENT}),
        ("POST", "/v1/segments", {"key": "fuzzed", "name": "Fuzzed", "definition": SEGMENT}),
        ("PUT", "/v1/segments/fuzzed", {"name": "Fuzzed", "definition": SEGMENT}),
        ("POST", "/v1/campaigns", CAMPAIGN),
        ("PUT", "/v1/campaign-settings", {"cap_messages": 2, "cap_days": 7}),
        ("PUT", "/v1/channels/sms", {"url": "https://sms.example.com/hook", "enabled": False}),
        ("PUT", "/v1/delivery-settings", {"survey_invitations_by_mail": False}),
        ("POST", "/v1/bounces", {"email": "x@example.com", "type": "soft"}),
    ]

    def fuzz(method: str, path: str, valid: Any) -> None:
        answer = send(client, method, path, valid, admin)
        assert answer.status_code < 300, (path, answer.text)  # the fuzz starts from a real call

        @EXAMPLES
        @given(body=json_values | mutated(valid))
        def check(body: Any) -> None:
            assert_handled(send(client, method, path, body, admin))

        check()

    for method, path, valid in writes:
        fuzz(method, path, valid)
    # A refused suppression adds nothing.
    before = suppressions(engine, store)
    refused = send(client, "POST", "/v1/suppressions", {"channel": "fax", "address": "a"}, admin)
    assert refused.status_code == 422 and suppressions(engine, store) == before
    for path in (
        "/v1/customers/%00/consents/email/opt-in",
        "/v1/customers/H-1/consents/pigeon/opt-in",
        "/v1/suppressions/email/%00",
        "/v1/customers/%00/erase",
    ):
        method = "DELETE" if path.startswith("/v1/suppressions/") else "POST"
        assert_handled(client.request(method, path, json={}, headers=admin))


# What a URL or a form can carry (a lone surrogate cannot even be encoded by the client).
PATH_TEXT = st.text(
    st.characters(
        min_codepoint=0x21, exclude_characters="/?#%\x7f", exclude_categories=["Cs", "Cc"]
    ),
    max_size=80,
)
FORM_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@EXAMPLES
@given(token=PATH_TEXT, form=st.dictionaries(FORM_TEXT, FORM_TEXT, max_size=4))
def test_customer_pages_refuse_forged_links_and_forms(
    client: TestClient, store: Store, token: str, form: dict[str, str]
) -> None:
    for prefix in ("c", "u"):
        url = f"/{prefix}/{store.slug}/{token or 'x'}"
        assert client.get(url).status_code < 500
        assert client.post(url, data=form).status_code < 500
