"""Segments: every field and operator against data whose answer is known by construction,
random definitions against a plain-Python filter of the same data, the API and the CLI."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from patron.analytics.models import CustomerScore
from patron.auth import Scope
from patron.campaigns import segments as seg
from patron.campaigns.models import ConsentRequest, Segment, Suppression, SuppressionReason
from patron.cli import app as cli_app
from patron.customers.models import Channel, Consent, Customer
from patron.db import unit_of_work
from patron.errors import Invalid
from patron.feedback.models import Survey, SurveyAnswer, SurveyResponse, Trigger
from patron.loyalty.models import LoyaltyAccount, LoyaltyMember, ProgramVersion
from patron.orders.models import CustomerOrderFacts, Order, OrderStatus
from patron.stores.models import Store
from tests.conftest import key_headers, new_store

NOW = datetime(2026, 6, 15, 2, 0, tzinfo=UTC)  # 10:00 on 15 June in Shanghai
TZ = ZoneInfo("Asia/Shanghai")
TODAY = NOW.astimezone(TZ).date()
TIERS = ["bronze", "silver", "gold"]


@dataclass
class Person:
    """One customer as the test builds it, and the values a segment sees (computed here
    from what was built, not by the code under test)."""

    ext: str
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    birthday: date | None = None
    created_at: datetime = NOW - timedelta(days=100)
    flagged: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    tier: str | None = None  # member row
    member_since: datetime | None = None
    points: int | None = None  # account row
    growth: int = 0
    scores: dict[str, Any] | None = None
    orders: list[tuple[datetime, int, int, str, OrderStatus]] = field(default_factory=list)
    nps: list[tuple[datetime, int]] = field(default_factory=list)
    consent: dict[str, bool] = field(default_factory=dict)
    confirmed: str | None = None  # confirmed email address
    suppressed: list[tuple[Channel, str]] = field(default_factory=list)
    stub: bool = False
    erased: bool = False

    def days(self, ts: datetime | None) -> int | None:
        return None if ts is None else (TODAY - ts.astimezone(TZ).date()).days

    def values(self) -> dict[str, Any]:
        live = [o for o in self.orders if o[4] is not OrderStatus.cancelled]
        latest = max(self.nps, default=None)
        nps = latest[1] if latest else None
        email_addr = self.email.strip().lower() if self.email else None
        sms_addr = None
        if self.phone:
            digits = "".join(ch for ch in self.phone if ch.isdigit())
            sms_addr = ("+" if self.phone.strip().startswith("+") else "") + digits
        sc = self.scores or {}
        return {
            "email_domain": self.email.split("@", 1)[-1].lower() if self.email else None,
            "has_email": bool(self.email),
            "has_phone": bool(self.phone),
            "locale": self.locale.lower() if self.locale else None,
            "birthday_month": self.birthday.month if self.birthday else None,
            "signed_up_days_ago": self.days(self.created_at),
            "flagged": self.flagged,
            "tier": self.tier or TIERS[0],
            "points": self.points or 0,
            "growth": self.growth if self.points is not None else 0,
            "member_since_days": self.days(self.member_since) if self.tier is not None else None,
            "rfm_segment": sc.get("segment"),
            **{k: sc.get(k) for k in ("r", "f", "m", "p_alive", "expected_purchases")},
            **{k: sc.get(k) for k in ("loyalty_type", "behaviour_type", "price_sensitivity")},
            "clv": sc.get("clv"),
            "last_purchase_days_ago": self.days(max((o[0] for o in live), default=None)),
            "orders_count": len(live),
            "total_spent": sum(
                (Decimal(o[1] - o[2]) / 100 for o in live if o[3] == "CNY"), Decimal(0)
            ),
            "nps": nps,
            "nps_category": None
            if nps is None
            else "promoter"
            if nps >= 9
            else "passive"
            if nps >= 7
            else "detractor",
            "contactable_email": bool(
                email_addr
                and self.consent.get("email")
                and self.confirmed == email_addr
                and (Channel.email, email_addr) not in self.suppressed
            ),
            "contactable_sms": bool(
                sms_addr
                and self.consent.get("sms")
                and (Channel.sms, sms_addr) not in self.suppressed
            ),
            "attributes": self.attributes,
        }


def build(engine: Engine, people: list[Person], programme: bool = True) -> Store:
    store = new_store(engine, timezone="Asia/Shanghai")
    with unit_of_work(engine) as s:
        if programme:
            s.add(
                ProgramVersion(
                    store_id=store.id,
                    version=1,
                    config={
                        "tiers": [{"code": t, "threshold": i * 100} for i, t in enumerate(TIERS)]
                    },
                    fingerprint="x",
                    active=True,
                    source="cli",
                )
            )
        survey = Survey(
            store_id=store.id,
            key="nps",
            version=1,
            definition={},
            trigger=Trigger.manual,
            reminder_days=None,
            template=None,
        )
        s.add(survey)
        s.flush()
        for n, p in enumerate(people):
            c = Customer(
                store_id=store.id,
                external_id=("erased-" if p.erased else "") + p.ext,
                email=p.email,
                phone=p.phone,
                locale=p.locale,
                birthday=p.birthday,
                attributes=p.attributes,
                flagged=p.flagged,
                is_stub=p.stub,
                created_at=p.created_at,
            )
            s.add(c)
            s.flush()
            if p.tier is not None:
                s.add(
                    LoyaltyMember(
                        store_id=store.id,
                        customer_id=c.id,
                        tier=p.tier,
                        tier_since=p.member_since or NOW,
                        review_at=None,
                        check_at=None,
                        last_check_in=None,
                        created_at=p.member_since or NOW,
                    )
                )
            if p.points is not None:
                s.add(
                    LoyaltyAccount(
                        store_id=store.id,
                        customer_id=c.id,
                        points_available=p.points,
                        growth=p.growth,
                    )
                )
            if p.scores is not None:
                s.add(
                    CustomerScore(
                        customer_id=c.id, store_id=store.id, run_id=1, computed_at=NOW, **p.scores
                    )
                )
            for i, (at, total, refunded, cur, status) in enumerate(p.orders):
                s.add(
                    Order(
                        store_id=store.id,
                        external_id=f"o-{n}-{i}",
                        customer_id=c.id,
                        status=status,
                        currency=cur,
                        subtotal_minor=total,
                        discount_minor=0,
                        shipping_minor=0,
                        tax_minor=0,
                        total_minor=total,
                        refunded_minor=refunded,
                        placed_at=at,
                        paid_at=None,
                        fulfilled_at=None,
                        delivered_at=None,
                        cancelled_at=None,
                        discount_code=None,
                        channel=None,
                        payload_hash=None,
                    )
                )
            for i, (at, score) in enumerate(p.nps):
                r = SurveyResponse(
                    store_id=store.id,
                    survey_id=survey.id,
                    survey_key="nps",
                    invitation_id=None,
                    customer_id=c.id,
                    submitted_at=at,
                    locale=None,
                    channel=None,
                    tier=None,
                    segment=None,
                    subject=None,
                    ticket_id=None,
                )
                s.add(r)
                s.flush()
                s.add(
                    SurveyAnswer(
                        store_id=store.id,
                        response_id=r.id,
                        question_id=f"q{i}",
                        question_type="nps",
                        attribute=None,
                        value=float(score),
                        expectation=None,
                        experience=None,
                        importance=None,
                        data=None,
                    )
                )
            for ch, granted in p.consent.items():
                s.add(
                    Consent(
                        store_id=store.id,
                        customer_id=c.id,
                        channel=Channel(ch),
                        granted=granted,
                        source="test",
                        recorded_at=NOW,
                    )
                )
            if p.confirmed:
                s.add(
                    ConsentRequest(
                        store_id=store.id,
                        customer_id=c.id,
                        channel=Channel.email,
                        address=p.confirmed,
                        address_hash=uuid.uuid4().hex,
                        nonce=uuid.uuid4().hex,
                        source="test",
                        created_at=NOW,
                        expires_at=NOW,
                        confirmed_at=NOW,
                    )
                )
            for ch, addr in p.suppressed:
                s.add(
                    Suppression(
                        store_id=store.id,
                        channel=ch,
                        address=addr,
                        address_hash=uuid.uuid4().hex,
                        reason=SuppressionReason.manual,
                        note=None,
                        created_at=NOW,
                    )
                )
    return store


def members(engine: Engine, store: Store, definition: Any) -> set[str]:
    d = seg.parse_definition(definition)
    with unit_of_work(engine) as s:
        ids = s.scalars(seg.members_query(store, d, now=NOW)).all()
        got = set(s.scalars(select(Customer.external_id).where(Customer.id.in_(ids))).all())
        assert seg.count(s, store, d, now=NOW) == len(got)
    return got


# -- a small store where every answer is known ------------------------------------------------


def day(days_ago: int, hour: int = 12) -> datetime:
    """Noon (or ``hour``) Shanghai time, ``days_ago`` store days before TODAY."""
    d = TODAY - timedelta(days=days_ago)
    return datetime(d.year, d.month, d.day, hour, tzinfo=TZ).astimezone(UTC)


PEOPLE = [
    Person(
        "ann",
        email="Ann@Example.com",
        phone="+86 138-0000-0001",
        locale="zh-CN",
        birthday=date(1990, 6, 3),
        created_at=day(10),
        attributes={"vip": True, "size": "M", "score": 7},
        tier="gold",
        member_since=day(5),
        points=500,
        growth=900,
        scores={
            "segment": "champions",
            "r": 5,
            "f": 5,
            "m": 4,
            "clv": Decimal("1200.50"),
            "p_alive": 0.9,
            "expected_purchases": 3.5,
            "loyalty_type": "true",
            "behaviour_type": "regular",
            "price_sensitivity": 0.1,
        },
        orders=[
            (day(3), 10000, 0, "CNY", OrderStatus.paid),
            (day(40), 5000, 1000, "CNY", OrderStatus.delivered),
            (day(1), 99900, 0, "CNY", OrderStatus.cancelled),
        ],
        nps=[(day(30), 3), (day(2), 10)],
        consent={"email": True, "sms": True},
        confirmed="ann@example.com",
    ),
    Person(
        "bob",
        email="bob@shop.cn",
        phone=None,
        locale="en-US",
        birthday=date(1985, 7, 20),
        created_at=day(400, hour=1),
        attributes={"vip": False, "size": "L", "score": 2.5},
        tier="silver",
        member_since=day(300),
        points=50,
        scores={
            "segment": "at_risk",
            "r": 1,
            "f": 3,
            "m": 3,
            "clv": Decimal("80.00"),
            "p_alive": 0.2,
            "expected_purchases": 0.3,
            "loyalty_type": "spurious",
            "behaviour_type": "lapsed",
            "price_sensitivity": 0.8,
        },
        orders=[
            (day(200), 3000, 0, "CNY", OrderStatus.paid),
            (day(100), 7000, 0, "USD", OrderStatus.paid),
        ],
        nps=[(day(50), 7)],
        consent={"email": True},
        confirmed="old@shop.cn",
        flagged=True,
    ),
    Person(
        "cy",
        email="cy@example.com",
        phone="138 0000 0003",
        locale=None,
        birthday=None,
        created_at=day(0),
        consent={"email": True, "sms": True},
        confirmed="cy@example.com",
        suppressed=[(Channel.email, "cy@example.com")],
        nps=[(day(1), 8)],
    ),
    Person(
        "dee",
        email=None,
        phone="+1 (555) 010-0004",
        consent={"sms": True},
        suppressed=[(Channel.sms, "+15550100004")],
        created_at=day(30),
    ),
    Person("stub", email="stub@example.com", stub=True),
    Person("gone", email=None, erased=True),
]
LIVE = {"ann", "bob", "cy", "dee"}


@pytest.fixture
def small(engine: Engine) -> Store:
    return build(engine, PEOPLE)


CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"all": []}, LIVE),
    ({"field": "email_domain", "op": "eq", "value": "EXAMPLE.com"}, {"ann", "cy"}),
    ({"field": "email_domain", "op": "not_in", "value": ["example.com"]}, {"bob"}),
    ({"field": "email_domain", "op": "is_null"}, {"dee"}),
    ({"field": "has_email", "op": "eq", "value": False}, {"dee"}),
    ({"field": "has_phone", "op": "ne", "value": False}, {"ann", "cy", "dee"}),
    ({"field": "locale", "op": "in", "value": ["zh-cn", "fr"]}, {"ann"}),
    ({"field": "locale", "op": "not_null"}, {"ann", "bob"}),
    ({"field": "locale", "op": "ne", "value": "en-US"}, {"ann"}),
    ({"field": "birthday_month", "op": "eq", "value": "this_month"}, {"ann"}),
    ({"field": "birthday_month", "op": "eq", "value": "next_month"}, {"bob"}),
    ({"field": "birthday_month", "op": "between", "value": [1, 6]}, {"ann"}),
    ({"field": "signed_up_days_ago", "op": "eq", "value": 0}, {"cy"}),
    ({"field": "signed_up_days_ago", "op": "gte", "value": 30}, {"bob", "dee"}),
    ({"field": "signed_up_days_ago", "op": "lt", "value": 30}, {"ann", "cy"}),
    ({"field": "signed_up_days_ago", "op": "between", "value": [10, 30]}, {"ann", "dee"}),
    ({"field": "signed_up_days_ago", "op": "in", "value": [400, 1]}, {"bob"}),
    ({"field": "attributes.vip", "op": "eq", "value": True}, {"ann"}),
    ({"field": "attributes.vip", "op": "eq", "value": False}, {"bob"}),
    ({"field": "attributes.size", "op": "in", "value": ["L", "XL"]}, {"bob"}),
    ({"field": "attributes.score", "op": "gt", "value": 3}, {"ann"}),
    ({"field": "attributes.score", "op": "between", "value": [2, 3]}, {"bob"}),
    ({"field": "attributes.size", "op": "gt", "value": 1}, set()),
    ({"field": "attributes.score", "op": "is_null"}, {"cy", "dee"}),
    ({"field": "flagged", "op": "eq", "value": True}, {"bob"}),
    ({"field": "tier", "op": "eq", "value": "bronze"}, {"cy", "dee"}),
    ({"field": "tier", "op": "not_in", "value": ["bronze", "silver"]}, {"ann"}),
    ({"field": "points", "op": "gte", "value": 50}, {"ann", "bob"}),
    ({"field": "points", "op": "eq", "value": 0}, {"cy", "dee"}),
    ({"field": "growth", "op": "gt", "value": 100}, {"ann"}),
    ({"field": "member_since_days", "op": "lte", "value": 5}, {"ann"}),
    ({"field": "member_since_days", "op": "is_null"}, {"cy", "dee"}),
    ({"field": "rfm_segment", "op": "in", "value": ["at_risk", "cant_lose"]}, {"bob"}),
    ({"field": "rfm_segment", "op": "is_null"}, {"cy", "dee"}),
    ({"field": "r", "op": "gte", "value": 2}, {"ann"}),
    ({"field": "f", "op": "lt", "value": 5}, {"bob"}),
    ({"field": "m", "op": "eq", "value": 4}, {"ann"}),
    ({"field": "clv", "op": "gt", "value": "1200.49"}, {"ann"}),
    ({"field": "clv", "op": "lte", "value": 80}, {"bob"}),
    ({"field": "p_alive", "op": "gt", "value": 0.5}, {"ann"}),
    ({"field": "expected_purchases", "op": "between", "value": [0, 1]}, {"bob"}),
    # An int first in an IN list must not truncate the fractions after it (PostgreSQL).
    ({"field": "expected_purchases", "op": "in", "value": [0, 3.5]}, {"ann"}),
    ({"field": "expected_purchases", "op": "not_in", "value": [1, 3.5]}, {"bob"}),
    ({"field": "clv", "op": "in", "value": [0, "1200.50"]}, {"ann"}),
    ({"field": "loyalty_type", "op": "eq", "value": "true"}, {"ann"}),
    ({"field": "behaviour_type", "op": "ne", "value": "regular"}, {"bob"}),
    ({"field": "price_sensitivity", "op": "gte", "value": 0.5}, {"bob"}),
    ({"field": "last_purchase_days_ago", "op": "eq", "value": 3}, {"ann"}),
    ({"field": "last_purchase_days_ago", "op": "gt", "value": 90}, {"bob"}),
    ({"field": "last_purchase_days_ago", "op": "is_null"}, {"cy", "dee"}),
    ({"field": "orders_count", "op": "eq", "value": 2}, {"ann", "bob"}),
    ({"field": "orders_count", "op": "lt", "value": 1}, {"cy", "dee"}),
    # ann: 100.00 + (50.00 - 10.00) = 140.00; bob: 30.00 (USD order not counted)
    ({"field": "total_spent", "op": "eq", "value": "140.00"}, {"ann"}),
    ({"field": "total_spent", "op": "between", "value": [1, 30]}, {"bob"}),
    ({"field": "nps", "op": "eq", "value": 10}, {"ann"}),
    ({"field": "nps", "op": "lte", "value": 8}, {"bob", "cy"}),
    ({"field": "nps_category", "op": "eq", "value": "passive"}, {"bob", "cy"}),
    ({"field": "nps_category", "op": "not_in", "value": ["promoter"]}, {"bob", "cy"}),
    ({"field": "nps_category", "op": "is_null"}, {"dee"}),
    ({"field": "contactable_email", "op": "eq", "value": True}, {"ann"}),
    ({"field": "contactable_sms", "op": "eq", "value": True}, {"ann", "cy"}),
    ({"field": "contactable_sms", "op": "eq", "value": False}, {"bob", "dee"}),
    ({"not": {"field": "p_alive", "op": "gt", "value": 0.5}}, {"bob", "cy", "dee"}),
    (
        {
            "any": [
                {"field": "flagged", "op": "eq", "value": True},
                {
                    "all": [
                        {"field": "tier", "op": "eq", "value": "bronze"},
                        {"field": "has_phone", "op": "eq", "value": True},
                    ]
                },
            ]
        },
        {"bob", "cy", "dee"},
    ),
]


@pytest.mark.parametrize(
    ("definition", "expected"), CASES, ids=[json.dumps(c[0])[:60] for c in CASES]
)
def test_each_field_and_operator(
    engine: Engine, small: Store, definition: dict[str, Any], expected: set[str]
) -> None:
    assert members(engine, small, definition) == expected


def test_every_field_is_covered() -> None:
    used = {c[0].get("field", "").split(".")[0] for c in CASES}
    names = {n.split(".")[0] for n in seg.FIELDS}
    assert names <= used, names - used


def test_tier_without_programme_and_unknown_tier(engine: Engine) -> None:
    store = build(engine, [Person("a", tier="vip"), Person("b")], programme=False)
    assert members(engine, store, {"field": "tier", "op": "is_null"}) == {"b"}
    with unit_of_work(engine) as s, pytest.raises(Invalid, match=r"value: unknown tier"):
        seg.count(
            s, store, seg.parse_definition({"field": "tier", "op": "eq", "value": "vip"}), now=NOW
        )
    with unit_of_work(engine) as s, pytest.raises(Invalid, match=r"any\[0\]\.value\[1\]"):
        seg.count(
            s,
            build(engine, []),
            seg.parse_definition({"any": [{"field": "tier", "op": "in", "value": ["gold", "x"]}]}),
            now=NOW,
        )


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ([], "definition"),
        ({"all": [{"field": "nope", "op": "eq", "value": 1}]}, "all[0].field"),
        ({"all": [{}, {"field": "points", "op": "like", "value": 1}]}, "all[0].field"),
        (
            {
                "all": [
                    {"field": "points", "op": "eq", "value": 1},
                    {"field": "points", "op": "like", "value": 1},
                ]
            },
            "all[1].op",
        ),
        (
            {
                "all": [
                    {"field": "points", "op": "eq", "value": 1},
                    {"field": "points", "op": "eq", "value": 1},
                    {"field": "points", "op": "gt", "value": "many"},
                ]
            },
            "all[2].value",
        ),
        (
            {"not": {"any": [{"field": "rfm_segment", "op": "in", "value": ["champions", "vip"]}]}},
            "not.any[0].value[1]",
        ),
        ({"any": []}, "any"),
        ({"all": [{"field": "p_alive", "op": "between", "value": [0.9, 0.1]}]}, "all[0].value"),
        ({"field": "flagged", "op": "gt", "value": True}, "op"),
        ({"field": "has_email", "op": "eq", "value": "yes"}, "value"),
        ({"field": "r", "op": "eq", "value": 6}, "value"),
        ({"field": "orders_count", "op": "is_null", "value": 3}, "value"),
        ({"field": "last_purchase_days_ago", "op": "gt", "value": -1}, "value"),
        ({"field": "birthday_month", "op": "eq", "value": "june"}, "value"),
        ({"field": "attributes.x y", "op": "eq", "value": 1}, "field"),
        ({"field": "points", "op": "eq", "value": 1, "extra": 2}, "extra"),
        ({"all": [], "any": []}, "all"),
        ({"field": "nps", "op": "in", "value": []}, "value"),
        ({"field": "total_spent", "op": "gt", "value": "1e400"}, "value"),
        ({"field": "points", "op": "gt", "value": 10**30}, "value"),
        ({"field": "locale", "op": "eq", "value": "zh\x00"}, "value"),
        ({"field": "attributes.a", "op": "in", "value": ["x", "\x00"]}, "value[1]"),
    ],
)
def test_invalid_definitions_name_the_path(raw: Any, path: str) -> None:
    with pytest.raises(Invalid) as err:
        seg.parse_definition(raw)
    assert err.value.errors[0]["field"] == path, err.value.errors


def test_too_deep_and_too_many() -> None:
    node: dict[str, Any] = {"field": "points", "op": "eq", "value": 1}
    for _ in range(10):
        node = {"not": node}
    with pytest.raises(Invalid, match="deeper"):
        seg.parse_definition(node)
    with pytest.raises(Invalid, match="more than"):
        seg.parse_definition({"all": [{"field": "points", "op": "eq", "value": 1}] * 101})
    many = {"field": "points", "op": "in", "value": list(range(1000))}
    with pytest.raises(Invalid, match="values in lists"):
        seg.parse_definition({"any": [many] * 6})


def test_round_trip() -> None:
    raw = {
        "all": [
            {"not": {"field": "nps", "op": "is_null"}},
            {"any": [{"field": "tier", "op": "in", "value": ["gold"]}]},
        ]
    }
    assert seg.parse_definition(raw).to_json() == raw


# -- random definitions against a plain-Python filter -------------------------------------------

DOMAINS = ["example.com", "Shop.CN", "mail.org"]
SEGS = ["champions", "at_risk", "lost", "new"]


def random_people(rng: random.Random, n: int) -> list[Person]:
    out = []
    for i in range(n):
        email = None if rng.random() < 0.2 else f"u{i}@{rng.choice(DOMAINS)}"
        phone = (
            None if rng.random() < 0.3 else rng.choice(["+86 138 0000 %04d", "(555) 01-%04d"]) % i
        )
        orders = [
            (
                NOW - timedelta(days=rng.randint(0, 400), hours=rng.randint(0, 23)),
                rng.randint(100, 50000),
                rng.choice([0, 0, 100]),
                rng.choice(["CNY", "CNY", "USD"]),
                rng.choice([OrderStatus.paid, OrderStatus.paid, OrderStatus.cancelled]),
            )
            for _ in range(rng.choice([0, 0, 1, 2, 3]))
        ]
        scores = None
        if rng.random() < 0.7:
            scores = {
                "segment": rng.choice(SEGS),
                "r": rng.randint(1, 5),
                "f": rng.randint(1, 5),
                "m": rng.randint(1, 5),
                "clv": Decimal(rng.randint(0, 100000)) / 100,
                "p_alive": rng.choice([0.1, 0.5, 0.9, None]),
                "expected_purchases": rng.choice([0.0, 1.5, 3.0]),
                "loyalty_type": rng.choice(["true", "none", None]),
                "behaviour_type": rng.choice(["regular", "lapsed"]),
                "price_sensitivity": rng.choice([0.0, 0.25, 1.0]),
            }
        confirmed = email.lower() if email and rng.random() < 0.6 else None
        suppressed = []
        if email and rng.random() < 0.2:
            suppressed.append((Channel.email, email.lower()))
        attrs: dict[str, Any] = {}
        if rng.random() < 0.5:
            attrs["vip"] = rng.choice([True, False, "yes"])
        if rng.random() < 0.5:
            attrs["score"] = rng.choice([1, 2.5, 10, "10"])
        out.append(
            Person(
                f"c{i}",
                email=email,
                phone=phone,
                locale=rng.choice(["zh-CN", "en-us", None]),
                birthday=rng.choice([None, date(1990, rng.randint(1, 12), 1)]),
                created_at=NOW - timedelta(days=rng.randint(0, 60), hours=rng.randint(0, 23)),
                flagged=rng.random() < 0.2,
                attributes=attrs,
                tier=rng.choice([None, *TIERS]),
                member_since=NOW - timedelta(days=rng.randint(0, 30), hours=rng.randint(0, 23)),
                points=rng.choice([None, 0, 10, 500]),
                growth=rng.choice([0, 200]),
                scores=scores,
                orders=orders,
                nps=[
                    (NOW - timedelta(days=d), rng.randint(0, 10))
                    for d in rng.sample(range(1, 90), rng.choice([0, 0, 1, 2]))
                ],
                consent={"email": rng.random() < 0.7, "sms": rng.random() < 0.5},
                confirmed=confirmed,
                suppressed=suppressed,
            )
        )
    return out


def pool(name: str) -> list[Any]:
    return {
        "email_domain": ["example.com", "shop.cn", "nowhere.net"],
        "has_email": [True, False],
        "has_phone": [True, False],
        "locale": ["zh-CN", "en-US", "fr"],
        "birthday_month": [1, 3, 6, 12, "this_month"],
        "signed_up_days_ago": [0, 1, 7, 30, 61],
        "flagged": [True, False],
        "tier": TIERS,
        "points": [0, 10, 11, 500],
        "growth": [0, 200, 199],
        "member_since_days": [0, 3, 30],
        "rfm_segment": [*SEGS, "loyal"],
        "r": [1, 3, 5],
        "f": [1, 3, 5],
        "m": [2, 4],
        "clv": [0, "10.50", 500, "999.99"],
        "p_alive": [0.1, 0.5, 0.9],
        "expected_purchases": [0, 1.5, 3],
        "loyalty_type": ["true", "none", "latent"],
        "behaviour_type": ["regular", "lapsed"],
        "price_sensitivity": [0, 0.25, 1],
        "last_purchase_days_ago": [0, 1, 30, 90, 365],
        "orders_count": [0, 1, 2, 3],
        "total_spent": [0, 1, "100.5", 300],
        "nps": [0, 6, 7, 9, 10],
        "nps_category": ["promoter", "passive", "detractor"],
        "contactable_email": [True, False],
        "contactable_sms": [True, False],
        "attributes.vip": [True, False, "yes"],
        "attributes.score": [1, 2.5, 10, "10"],
    }[name]


def condition_strategy() -> st.SearchStrategy[dict[str, Any]]:
    names = [n for n in seg.FIELDS if n != "attributes.<name>"] + [
        "attributes.vip",
        "attributes.score",
    ]

    @st.composite
    def one(draw: st.DrawFn) -> dict[str, Any]:
        name = draw(st.sampled_from(names))
        spec = seg.spec_of(name)
        assert spec is not None
        op = draw(st.sampled_from(spec.ops))
        values = pool(name)
        if name.startswith("attributes.") and op in ("gt", "gte", "lt", "lte", "between"):
            values = [v for v in values if not isinstance(v, bool | str)]
        if spec.kind == "month" and op == "between":
            values = [v for v in values if isinstance(v, int)]
        if op in ("is_null", "not_null") or not values:
            return {"field": name, "op": op if op in ("is_null", "not_null") else "not_null"}
        if op in ("in", "not_in"):
            vs = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
            if name.startswith("attributes."):
                vs = [v for v in vs if type(v) is type(vs[0])]
            return {"field": name, "op": op, "value": vs}
        if op == "between":
            pair = sorted(
                draw(st.lists(st.sampled_from(values), min_size=2, max_size=2)),
                key=lambda v: Decimal(str(v)),
            )
            return {"field": name, "op": op, "value": pair}
        return {"field": name, "op": op, "value": draw(st.sampled_from(values))}

    return one()


definitions = st.recursive(
    condition_strategy(),
    lambda kids: st.one_of(
        st.lists(kids, max_size=3).map(lambda k: {"all": k}),
        st.lists(kids, min_size=1, max_size=3).map(lambda k: {"any": k}),
        kids.map(lambda k: {"not": k}),
    ),
    max_leaves=6,
)


def _cmp(v: Any, op: str, value: Any) -> bool:
    if op == "eq":
        return bool(v == value)
    if op == "ne":
        return bool(v != value)
    if op == "in":
        return v in value
    if op == "not_in":
        return v not in value
    if op == "gt":
        return bool(v > value)
    if op == "gte":
        return bool(v >= value)
    if op == "lt":
        return bool(v < value)
    if op == "lte":
        return bool(v <= value)
    return bool(value[0] <= v <= value[1])


def _attr(attrs: dict[str, Any], key: str, like: Any) -> Any:
    v = attrs.get(key)
    if isinstance(like, bool):
        return v if isinstance(v, bool) else None
    if isinstance(like, str):
        return v if isinstance(v, str) else None
    return v if isinstance(v, int | float) and not isinstance(v, bool) else None


def python_match(values: dict[str, Any], node: dict[str, Any]) -> bool:
    if "all" in node:
        return all(python_match(values, n) for n in node["all"])
    if "any" in node:
        return any(python_match(values, n) for n in node["any"])
    if "not" in node:
        return not python_match(values, node["not"])
    name, op, value = node["field"], node["op"], node.get("value")
    if name.startswith("attributes."):
        key = name.split(".", 1)[1]
        if op in ("is_null", "not_null"):
            return (key in values["attributes"]) == (op == "not_null")
        like = value[0] if isinstance(value, list) else value
        v = _attr(values["attributes"], key, like)
    else:
        v = values[name]
    if op == "is_null":
        return v is None
    if op == "not_null":
        return v is not None
    if v is None:
        return False
    norm: Callable[[Any], Any] = lambda x: x  # noqa: E731
    if name == "birthday_month":
        norm = lambda x: TODAY.month if x == "this_month" else x  # noqa: E731
    elif name in ("clv", "total_spent"):
        norm = lambda x: Decimal(str(x))  # noqa: E731
    elif name in ("email_domain", "locale"):
        norm = str.lower
    value = [norm(x) for x in value] if isinstance(value, list) else norm(value)
    return _cmp(v, op, value)


@pytest.fixture
def random_store(engine: Engine) -> tuple[Store, list[Person]]:
    people = random_people(random.Random(6), 60)
    return build(engine, people), people


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(definition=definitions)
def test_count_equals_python_filter(
    engine: Engine, random_store: tuple[Store, list[Person]], definition: dict[str, Any]
) -> None:
    store, people = random_store
    expected = {p.ext for p in people if python_match(p.values(), definition)}
    assert members(engine, store, definition) == expected


# -- API and CLI ---------------------------------------------------------------------------------


def test_api_preview_and_crud(client: TestClient, engine: Engine, small: Store) -> None:
    admin = key_headers(engine, small, Scope.admin)
    read = key_headers(engine, small, Scope.read)
    body = {"definition": {"field": "email_domain", "op": "eq", "value": "example.com"}}
    r = client.post("/v1/segments/preview", json=body, headers=read)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["count"] == 2
    assert {s["external_id"] for s in out["sample"]} == {"ann", "cy"}
    assert all("@example.com" in s["email"] and s["email"][1] == "*" for s in out["sample"])
    assert "Ann@Example.com" not in r.text

    seg_in = {"key": "example-folks", "name": "Example folks", **body}
    assert client.post("/v1/segments", json=seg_in, headers=read).status_code == 403
    r = client.post("/v1/segments", json=seg_in, headers=admin)
    assert r.status_code == 201, r.text
    assert client.post("/v1/segments", json=seg_in, headers=admin).status_code == 409
    r = client.get("/v1/segments/example-folks", headers=read)
    assert r.json()["definition"] == body["definition"] and r.json()["count"] == 2
    assert [s["key"] for s in client.get("/v1/segments", headers=read).json()["items"]] == [
        "example-folks"
    ]
    page1 = client.get("/v1/segments/example-folks/members?limit=1", headers=read).json()
    page2 = client.get(
        f"/v1/segments/example-folks/members?limit=1&after={page1['next_after']}", headers=read
    ).json()
    assert {m["external_id"] for m in page1["items"] + page2["items"]} == {"ann", "cy"}
    upd = {
        "name": "Shop folks",
        "definition": {"field": "email_domain", "op": "eq", "value": "shop.cn"},
    }
    r = client.put("/v1/segments/example-folks", json=upd, headers=admin)
    assert r.status_code == 200 and r.json()["count"] == 1 and r.json()["name"] == "Shop folks"
    assert client.delete("/v1/segments/example-folks", headers=admin).status_code == 204
    assert client.get("/v1/segments/example-folks", headers=read).status_code == 404
    fields = client.get("/v1/segments/fields", headers=read).json()
    assert {"field": "p_alive"}.items() <= next(
        f for f in fields if f["field"] == "p_alive"
    ).items()
    tier = next(f for f in fields if f["field"] == "tier")
    assert tier["values"] == TIERS


def test_api_invalid_definition_saves_nothing(
    client: TestClient, engine: Engine, small: Store
) -> None:
    admin = key_headers(engine, small, Scope.admin)
    bad = {
        "all": [
            {"field": "points", "op": "gt", "value": 1},
            {"field": "tier", "op": "eq", "value": "platinum"},
        ]
    }
    r = client.post(
        "/v1/segments", json={"key": "k", "name": "K", "definition": bad}, headers=admin
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "definition.all[1].value"
    r = client.post(
        "/v1/segments/preview",
        json={"definition": {"all": [{"field": "pts", "op": "gt", "value": 1}]}},
        headers=admin,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "definition.all[0].field"
    r = client.post(
        "/v1/segments",
        json={"key": "Bad Key!", "name": "K", "definition": {"all": []}},
        headers=admin,
    )
    assert r.status_code == 422
    with unit_of_work(engine) as s:
        assert (
            s.scalar(select(func.count()).select_from(Segment).where(Segment.store_id == small.id))
            == 0
        )


def test_cli_preview_and_list(db_cli: CliRunner, small: Store, tmp_path: Any) -> None:
    d = {"field": "contactable_sms", "op": "eq", "value": True}
    r = db_cli.invoke(
        cli_app,
        [
            "segments",
            "preview",
            "-s",
            small.slug,
            "--definition",
            json.dumps(d),
            "--now",
            "2026-06-15T02:00:00+0000",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "2 customers" in r.output
    f = tmp_path / "d.json"
    f.write_text(json.dumps({"field": "nope", "op": "eq", "value": 1}))
    r = db_cli.invoke(cli_app, ["segments", "preview", "-s", small.slug, str(f)])
    assert r.exit_code == 1 and "field" in r.output
    r = db_cli.invoke(cli_app, ["segments", "list", "-s", small.slug])
    assert r.exit_code == 0, r.output


def test_largest_definition_allowed_runs(client: TestClient, engine: Engine, small: Store) -> None:
    """5,000 list values and 100 conditions: the limits, and still one statement on
    both databases (SQLite binds at most 32,766 parameters)."""
    read = key_headers(engine, small, Scope.read)
    conditions: list[dict[str, Any]] = [
        {"field": "email_domain", "op": "in", "value": [f"d{i}-{j}.cn" for j in range(1000)]}
        for i in range(5)
    ]
    # Nobody's points equal every number 0..94 at once: the `any` matches everyone.
    conditions += [{"not": {"field": "points", "op": "eq", "value": i}} for i in range(95)]
    r = client.post("/v1/segments/preview", json={"definition": {"any": conditions}}, headers=read)
    assert r.status_code == 200, r.text
    assert r.json()["count"] == len(LIVE)


# -- order facts stay current -----------------------------------------------------------------


def _order(store: Store, customer_id: int, ext: str, total: int, at: datetime) -> dict[str, Any]:
    return {
        "store_id": store.id,
        "external_id": ext,
        "customer_id": customer_id,
        "status": OrderStatus.paid,
        "currency": "CNY",
        "subtotal_minor": total,
        "discount_minor": 0,
        "shipping_minor": 0,
        "tax_minor": 0,
        "total_minor": total,
        "refunded_minor": 0,
        "placed_at": at,
        "paid_at": None,
        "fulfilled_at": None,
        "delivered_at": None,
        "cancelled_at": None,
        "discount_code": None,
        "channel": None,
        "payload_hash": None,
    }


def test_order_writes_show_in_the_next_preview(engine: Engine, small: Store) -> None:
    """Segments read per-customer order facts kept by triggers on ``orders``: every kind
    of write (ORM add, bulk insert, refund, cancel, move, delete, customer deleted) shows
    in the very next count, on both databases."""

    def ids() -> dict[str, int]:
        with unit_of_work(engine) as s:
            rows = s.execute(
                select(Customer.external_id, Customer.id).where(Customer.store_id == small.id)
            )
            return {ext: cid for ext, cid in rows}

    def who(field: str, op: str, value: Any = None) -> set[str]:
        cond: dict[str, Any] = {"field": field, "op": op}
        if value is not None:
            cond["value"] = value
        return members(engine, small, cond)

    cid = ids()
    assert who("orders_count", "eq", 0) == {"cy", "dee"}
    with unit_of_work(engine) as s:  # one order through the ORM
        s.add(Order(**_order(small, cid["cy"], "new-1", 2000, day(2))))
    assert who("orders_count", "eq", 1) == {"cy"}
    assert who("last_purchase_days_ago", "eq", 2) == {"cy"}
    assert who("total_spent", "eq", "20.00") == {"cy"}

    o = Order.__table__
    with unit_of_work(engine) as s:  # a refund
        s.execute(o.update().where(o.c.external_id == "new-1").values(refunded_minor=500))
    assert who("total_spent", "eq", "15.00") == {"cy"}
    with unit_of_work(engine) as s:  # a cancellation
        s.execute(o.update().where(o.c.external_id == "new-1").values(status="cancelled"))
    assert who("orders_count", "eq", 0) == {"cy", "dee"}
    assert who("last_purchase_days_ago", "is_null") == {"cy", "dee"}
    with unit_of_work(engine) as s:  # reinstated and moved to another customer
        s.execute(
            o.update()
            .where(o.c.external_id == "new-1")
            .values(status="paid", customer_id=cid["dee"])
        )
    assert who("orders_count", "eq", 1) == {"dee"}
    assert who("total_spent", "eq", "15.00") == {"dee"}

    with unit_of_work(engine) as s:  # one bulk statement for several customers
        s.execute(
            o.insert(),
            [
                _order(small, cid["cy"], "bulk-1", 1000, day(40)),
                _order(small, cid["cy"], "bulk-2", 1000, day(95)),
                _order(small, cid["dee"], "bulk-3", 500, day(1)),
                _order(small, cid["ann"], "bulk-4", 100, day(0)),
                {**_order(small, cid["dee"], "bulk-5", 9900, day(0)), "status": "cancelled"},
            ],
        )
    assert who("orders_count", "eq", 2) == {"bob", "cy", "dee"}
    assert who("orders_count", "eq", 3) == {"ann"}
    assert who("last_purchase_days_ago", "eq", 40) == {"cy"}
    assert who("last_purchase_days_ago", "eq", 0) == {"ann"}
    assert who("total_spent", "eq", "20.00") == {"cy", "dee"}

    with unit_of_work(engine) as s:  # deletes
        s.execute(o.delete().where(o.c.external_id.in_(["new-1", "bulk-3"])))
    assert who("orders_count", "eq", 0) == {"dee"}
    with unit_of_work(engine) as s:  # a customer deleted with its orders
        s.execute(Customer.__table__.delete().where(Customer.id == cid["cy"]))
    assert who("orders_count", "gte", 0) == {"ann", "bob", "dee"}
    with unit_of_work(engine) as s:
        facts = s.scalars(select(CustomerOrderFacts.customer_id)).all()
    assert cid["cy"] not in facts
