"""Complaint grading: the four factors, the five levels, opportunism, and the invariants."""

from __future__ import annotations

import dataclasses
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patron.support.grading import (
    CATEGORIES,
    FACTOR_NAMES,
    LEVEL_LABELS,
    SERVICE_LABELS,
    Claim,
    Grade,
    Level,
    Priority,
    Service,
    grade,
)

D = Decimal
CJK = re.compile(r"[\u4e00-\u9fff]")
PRIORITIES = [Priority.low, Priority.normal, Priority.high, Priority.urgent]


def rank(priority: Priority) -> int:
    return PRIORITIES.index(priority)


def assert_bilingual(text: dict[str, str]) -> None:
    assert set(text) == {"en", "zh"}
    assert text["en"].strip() and not CJK.search(text["en"])
    assert CJK.search(text["zh"])


# -- one realistic example per level ---------------------------------------------------------

EXAMPLES: dict[Level, Claim] = {
    # damaged parcel, the customer wants ten times the price back (seed 004's example)
    Level.UNREASONABLE: Claim("damaged", requested_compensation=D(1990), order_amount=D(199)),
    # parcel two days late, a 20 yuan voucher asked for; the policy says nothing about it
    Level.MINOR: Claim("delivery_late", requested_compensation=D(20), order_amount=D(129)),
    # wrong size sent, an exchange asked for, covered by the return policy
    Level.STANDARD: Claim("wrong_item", order_amount=D(259), backed_by_policy=True),
    # a diamond member's serum arrived broken; refund asked for, covered
    Level.IMPORTANT: Claim(
        "damaged",
        requested_compensation=D(480),
        order_amount=D(480),
        backed_by_policy=True,
        customer_tier_rank=3,
        tier_count=4,
    ),
    # a face cream caused a skin reaction; refund asked for
    Level.CRITICAL: Claim(
        "quality",
        requested_compensation=D(89),
        order_amount=D(89),
        backed_by_policy=True,
        safety_issue=True,
    ),
}


@pytest.mark.parametrize("level", list(Level))
def test_every_level_is_reachable_with_a_realistic_claim(level: Level) -> None:
    g = grade(EXAMPLES[level])
    assert g.level == level
    assert_bilingual(g.suggested_response)
    assert_bilingual(g.commitment)
    assert_bilingual(LEVEL_LABELS[level])


def test_levels_map_to_tiered_service_and_priority() -> None:
    got = {lvl: (grade(c).service, grade(c).priority) for lvl, c in EXAMPLES.items()}
    assert got == {
        Level.UNREASONABLE: (Service.basic, Priority.low),
        Level.MINOR: (Service.basic, Priority.normal),
        Level.STANDARD: (Service.expected, Priority.normal),
        Level.IMPORTANT: (Service.expected, Priority.high),
        Level.CRITICAL: (Service.surprise, Priority.urgent),
    }


def test_labels_exist_in_both_languages_for_every_level_and_service() -> None:
    assert set(LEVEL_LABELS) == set(Level)
    assert [int(lvl) for lvl in Level] == [1, 2, 3, 4, 5]
    for label in LEVEL_LABELS.values():
        assert_bilingual(label)
    assert set(SERVICE_LABELS) == set(Service)
    assert SERVICE_LABELS[Service.surprise]["zh"] == "惊喜服务"
    for label in SERVICE_LABELS.values():
        assert_bilingual(label)


def test_the_four_factors_are_explained() -> None:
    g = grade(EXAMPLES[Level.IMPORTANT])
    assert [f.name for f in g.factors] == list(FACTOR_NAMES)
    assert [f.score for f in g.factors] == [3, 3, 2, 1]
    assert "high-value" in g.factor("importance").reason
    assert all(f.reason for f in g.factors)


def test_a_covered_claim_within_the_order_value_is_auto_approvable() -> None:
    assert grade(EXAMPLES[Level.STANDARD]).auto_approvable
    assert grade(EXAMPLES[Level.IMPORTANT]).auto_approvable
    # policy unknown, or more than the order's value, or safety: a person decides
    assert not grade(EXAMPLES[Level.MINOR]).auto_approvable
    assert not grade(EXAMPLES[Level.CRITICAL]).auto_approvable
    above = dataclasses.replace(EXAMPLES[Level.IMPORTANT], requested_compensation=D(600))
    assert grade(above).level == Level.IMPORTANT and not grade(above).auto_approvable
    unknown = Claim("missing", requested_compensation=D(50), backed_by_policy=True)
    assert "amount_unverified" in grade(unknown).flags and not grade(unknown).auto_approvable


# -- opportunistic claims ---------------------------------------------------------------------

COVERED = Claim(
    "damaged", requested_compensation=D(100), order_amount=D(100), backed_by_policy=True
)


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"requested_compensation": D(1000)}, "excessive_compensation"),
        ({"requested_compensation": D(5000), "backed_by_policy": None}, "excessive_compensation"),
        ({"prior_claims_90d": 4}, "serial_claimant"),
        ({"flagged": True}, "flagged_customer"),
        ({"refund_rate": 0.6, "order_count": 10}, "high_refund_rate"),
        ({"refund_rate": 0.5}, "high_refund_rate"),
    ],
)
def test_opportunistic_claims_are_capped_flagged_and_never_auto_approved(
    changes: dict[str, Any], flag: str
) -> None:
    changes = dict(changes)
    changes.setdefault("backed_by_policy", flag != "excessive_compensation")
    claim = dataclasses.replace(
        COVERED,
        customer_clv_percentile=1.0,  # the best customer: still no exception
        same_issue_count=20,
        public_exposure=True,
        **changes,
    )
    g = grade(claim)
    assert g.opportunistic and flag in g.flags
    assert not g.auto_approvable
    assert g.level <= Level.MINOR and g.service == Service.basic
    assert "Verify" in g.suggested_response["en"] and "核实" in g.suggested_response["zh"]
    # public and systemic: it is still looked at quickly
    assert g.priority == Priority.high


def test_ten_times_is_the_line() -> None:
    at = dataclasses.replace(COVERED, requested_compensation=D(1000), backed_by_policy=None)
    below = dataclasses.replace(at, requested_compensation=D("999.99"))
    assert grade(at).opportunistic and "excessive_compensation" in grade(at).flags
    # 3x..10x unbacked: unreasonable (level 1) but not, by itself, opportunism
    assert not grade(below).opportunistic and grade(below).level == Level.UNREASONABLE
    assert "above_order_value" in grade(below).flags
    # up to treble damages (退一赔三) with no known policy: beyond commitment, not unreasonable
    treble = dataclasses.replace(at, requested_compensation=D(300))
    assert grade(treble).level == Level.MINOR and grade(treble).factors[0].score == 1


def test_a_ten_times_promise_the_store_made_is_a_right_not_opportunism() -> None:
    # the store advertises 假一赔十 and the item was fake: graded normally, still never automatic
    claim = dataclasses.replace(
        COVERED, category="not_as_described", requested_compensation=D(1000)
    )
    g = grade(claim)
    assert not g.opportunistic and "excessive_compensation" in g.flags
    assert g.level == Level.STANDARD and not g.auto_approvable


def test_serial_claimant_threshold_and_refund_rate_needs_enough_orders() -> None:
    assert not grade(dataclasses.replace(COVERED, prior_claims_90d=3)).opportunistic
    assert grade(dataclasses.replace(COVERED, prior_claims_90d=4)).opportunistic
    one_order = dataclasses.replace(COVERED, refund_rate=1.0, order_count=1)
    assert not grade(one_order).opportunistic and grade(one_order).auto_approvable
    assert not grade(dataclasses.replace(COVERED, refund_rate=0.49)).opportunistic


def test_flagged_customers_safety_report_is_still_urgent_but_not_escalated() -> None:
    g = grade(dataclasses.replace(EXAMPLES[Level.CRITICAL], flagged=True))
    assert g.level == Level.MINOR and g.service == Service.basic
    assert g.priority == Priority.urgent and "safety" in g.flags
    assert "safety" in g.suggested_response["en"]


# -- unlawful requests ----------------------------------------------------------------------


def test_unlawful_request_is_level_one_whatever_else_is_true() -> None:
    claim = dataclasses.replace(
        EXAMPLES[Level.CRITICAL],
        lawful=False,  # e.g. "refund me and write a fake invoice for my insurer"
        customer_clv_percentile=1.0,
        same_issue_count=50,
        public_exposure=True,
    )
    g = grade(claim)
    assert g.level == Level.UNREASONABLE and "unlawful_request" in g.flags
    assert g.factor("legality").score == 0
    assert not g.auto_approvable and g.service == Service.basic
    assert "lawful" in g.suggested_response["en"] and "合法" in g.suggested_response["zh"]
    # the safety report attached is handled at once all the same
    assert g.priority == Priority.urgent


# -- what raises a level ----------------------------------------------------------------------


def test_more_customers_reporting_the_same_problem_raises_the_level() -> None:
    base = Claim("quality", order_amount=D(300), backed_by_policy=True)
    levels = [grade(dataclasses.replace(base, same_issue_count=n)).level for n in (0, 3, 10)]
    assert levels == [Level.STANDARD, Level.IMPORTANT, Level.CRITICAL]
    systemic = grade(dataclasses.replace(base, same_issue_count=10))
    assert {"many_customers_affected", "systemic_issue"} <= set(systemic.flags)


def test_public_exposure_raises_level_and_priority() -> None:
    g = grade(dataclasses.replace(EXAMPLES[Level.MINOR], public_exposure=True))
    assert g.level == Level.IMPORTANT and g.priority == Priority.high
    assert "publicly" in g.suggested_response["en"]


def test_high_value_raises_importance_but_never_rescues_an_unreasonable_demand() -> None:
    plain = EXAMPLES[Level.MINOR]
    vip = dataclasses.replace(plain, customer_clv_percentile=0.95)
    assert grade(vip).level == Level.STANDARD > grade(plain).level
    for demand in (D(500), D(1290), D(100_000)):  # 3.9x, 10x, far beyond
        top = dataclasses.replace(vip, customer_tier_rank=4, tier_count=5)
        g = grade(dataclasses.replace(top, requested_compensation=demand))
        assert g.level == Level.UNREASONABLE and not g.auto_approvable


def test_privacy_complaints_go_to_a_person_with_priority() -> None:
    g = grade(Claim("privacy", backed_by_policy=True))
    assert g.level == Level.IMPORTANT and g.priority == Priority.high
    assert not g.auto_approvable and "privacy" in g.flags


# -- serialisation and validation -------------------------------------------------------------


def test_grade_as_dict_is_json_ready() -> None:
    data = grade(EXAMPLES[Level.IMPORTANT]).as_dict()
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data
    assert data["level"] == 4 and data["label"] == LEVEL_LABELS[Level.IMPORTANT]
    assert [f["name"] for f in data["factors"]] == list(FACTOR_NAMES)
    assert data["service"] == "expected" and data["priority"] == "high"
    assert data["service_label"]["zh"] == "期望服务"
    assert {"opportunistic", "flags", "auto_approvable", "commitment"} <= set(data)


def test_claim_round_trips_through_json() -> None:
    claim = EXAMPLES[Level.IMPORTANT]
    data = json.loads(json.dumps(claim.as_dict()))
    assert data["order_amount"] == "480"
    assert Claim.from_dict(data) == claim
    with pytest.raises(ValueError, match=r"^colour"):
        Claim.from_dict({"category": "other", "colour": "red"})
    with pytest.raises(ValueError, match=r"^order_amount"):
        Claim.from_dict({"category": "other", "order_amount": "lots"})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"category": "weather"}, "category"),
        ({"category": "Damaged"}, "category"),
        ({"requested_compensation": D(-1)}, "requested_compensation"),
        ({"requested_compensation": D("NaN")}, "requested_compensation"),
        ({"requested_compensation": 12.5}, "requested_compensation"),
        ({"order_amount": D("-0.01")}, "order_amount"),
        ({"order_amount": D("Infinity")}, "order_amount"),
        ({"customer_clv_percentile": 1.01}, "customer_clv_percentile"),
        ({"customer_clv_percentile": -0.1}, "customer_clv_percentile"),
        ({"customer_clv_percentile": float("nan")}, "customer_clv_percentile"),
        ({"refund_rate": 2.0}, "refund_rate"),
        ({"customer_tier_rank": 2, "tier_count": 2}, "customer_tier_rank"),
        ({"customer_tier_rank": -1, "tier_count": 2}, "customer_tier_rank"),
        ({"tier_count": -1}, "tier_count"),
        ({"same_issue_count": -1}, "same_issue_count"),
        ({"prior_claims_90d": -3}, "prior_claims_90d"),
        ({"order_count": -1}, "order_count"),
        ({"lawful": "no"}, "lawful"),
        ({"backed_by_policy": 1}, "backed_by_policy"),
    ],
)
def test_invalid_claims_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    kwargs = {"category": "other", **kwargs}
    with pytest.raises(ValueError, match=f"^{field}"):
        Claim(**kwargs)


def test_integer_amounts_are_accepted_as_decimals() -> None:
    claim = Claim("other", requested_compensation=D(5), order_amount=10)  # type: ignore[arg-type]
    assert claim.order_amount == D(10) and isinstance(claim.order_amount, Decimal)


# -- invariants over random claims ------------------------------------------------------------

amounts = st.none() | st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False)


@st.composite
def claims(draw: st.DrawFn) -> Claim:
    tier_count = draw(st.integers(0, 6))
    tier_rank = draw(st.none() | st.integers(0, tier_count - 1)) if tier_count else None
    return Claim(
        category=draw(st.sampled_from(CATEGORIES)),
        requested_compensation=draw(amounts),
        order_amount=draw(amounts),
        backed_by_policy=draw(st.sampled_from([None, True, False])),
        lawful=draw(st.booleans()),
        safety_issue=draw(st.booleans()),
        public_exposure=draw(st.booleans()),
        customer_clv_percentile=draw(st.none() | st.floats(0, 1)),
        customer_tier_rank=tier_rank,
        tier_count=tier_count,
        same_issue_count=draw(st.integers(0, 30)),
        prior_claims_90d=draw(st.integers(0, 8)),
        refund_rate=draw(st.none() | st.floats(0, 1)),
        flagged=draw(st.booleans()),
        order_count=draw(st.none() | st.integers(0, 50)),
    )


def at_least_as_high(after: Grade, before: Grade) -> bool:
    return after.level >= before.level and rank(after.priority) >= rank(before.priority)


@settings(max_examples=400, deadline=None)
@given(claims())
def test_invariants(claim: Claim) -> None:
    g = grade(claim)
    assert g == grade(claim)  # deterministic
    assert [f.name for f in g.factors] == list(FACTOR_NAMES)
    assert all(0 <= f.score <= 3 for f in g.factors)
    assert len(set(g.flags)) == len(g.flags)
    assert_bilingual(g.suggested_response)
    assert_bilingual(g.commitment)
    assert g.as_dict()["level"] == int(g.level)
    json.dumps(g.as_dict())

    if not claim.lawful:
        assert g.level == Level.UNREASONABLE and "unlawful_request" in g.flags
    if g.opportunistic:
        assert g.level <= Level.MINOR and g.service == Service.basic
    if claim.flagged or claim.prior_claims_90d >= 4:
        assert g.opportunistic
    if "excessive_compensation" in g.flags or g.opportunistic or not claim.lawful:
        assert not g.auto_approvable
    if g.auto_approvable:
        assert claim.lawful and claim.backed_by_policy is True and not g.opportunistic
        assert not (claim.safety_issue or claim.public_exposure or claim.category == "privacy")
        asked = claim.requested_compensation
        assert not asked or (claim.order_amount is not None and asked <= claim.order_amount)
    assert (g.service == Service.surprise) == (g.level == Level.CRITICAL)
    if claim.safety_issue or claim.category == "safety":
        assert g.priority == Priority.urgent
    if claim.public_exposure:
        assert rank(g.priority) >= rank(Priority.high)


@settings(max_examples=400, deadline=None)
@given(claims(), st.integers(1, 20), st.floats(0, 1))
def test_monotonicity(claim: Claim, more: int, share: float) -> None:
    g = grade(claim)
    # more at stake never lowers the level or the priority
    for raised in (
        dataclasses.replace(claim, safety_issue=True),
        dataclasses.replace(claim, public_exposure=True),
        dataclasses.replace(claim, same_issue_count=claim.same_issue_count + more),
    ):
        assert at_least_as_high(grade(raised), g)
    # a more valuable customer never lowers it, and never makes a claim auto-approvable
    higher = max(share, claim.customer_clv_percentile or 0.0)
    valued = [dataclasses.replace(claim, customer_clv_percentile=higher)]
    if claim.tier_count:
        valued.append(dataclasses.replace(claim, customer_tier_rank=claim.tier_count - 1))
    for richer in valued:
        assert at_least_as_high(grade(richer), g)
        assert grade(richer).auto_approvable == g.auto_approvable
    # asking for more, claiming more often or being flagged never raises it
    if claim.requested_compensation is not None:
        greedier = dataclasses.replace(
            claim, requested_compensation=claim.requested_compensation * 2 + more
        )
        assert grade(greedier).level <= g.level
    for suspect in (
        dataclasses.replace(claim, flagged=True),
        dataclasses.replace(claim, prior_claims_90d=claim.prior_claims_90d + more),
    ):
        assert grade(suspect).level <= g.level
        assert not grade(suspect).auto_approvable or g.auto_approvable
    # the policy covering the request never lowers it
    if claim.backed_by_policy is not True:
        assert grade(dataclasses.replace(claim, backed_by_policy=True)).level >= g.level
