"""The programme configuration: the demo, the YAML round trip, errors that name fields."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from patron.loyalty import program as prog
from patron.loyalty.program import (
    FixedDateExpiry,
    ProgramConfig,
    ProgramError,
    dump_yaml,
    load_yaml,
    parse,
)

DEMO_PATH = Path(prog.__file__).parent / "examples" / "program.yaml"
DEMO_TEXT = DEMO_PATH.read_text(encoding="utf-8")
DEMO_DATA: dict[str, Any] = yaml.safe_load(DEMO_TEXT)
DEMO = load_yaml(DEMO_TEXT)


def problems(data: Any) -> list[str]:
    with pytest.raises(ProgramError) as err:
        parse(data)
    return [str(p) for p in err.value.problems]


def paths(data: Any) -> list[str]:
    with pytest.raises(ProgramError) as err:
        parse(data)
    return [p.path for p in err.value.problems]


def demo(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(DEMO_DATA)
    data.update(changes)
    return data


# -- the demo ------------------------------------------------------------------------------


def test_demo_programme() -> None:
    assert DEMO.currency == "CNY"
    assert [t.code for t in DEMO.tiers] == ["member", "silver", "gold", "diamond"]
    assert [t.name.display() for t in DEMO.tiers] == [
        "普通会员 Member",
        "银卡 Silver",
        "金卡 Gold",
        "钻石 Diamond",
    ]
    assert [t.benefits.earn_multiplier for t in DEMO.tiers] == [1, Decimal("1.2"), 1.5, 2]
    assert all(t.qualify_on == "growth" and t.window.calendar_year for t in DEMO.tiers)
    assert DEMO.pending_days == 15
    assert DEMO.expiry == prog.RollingExpiry(policy="rolling_months", months=24)
    assert {r.event for r in DEMO.rules} >= {
        "order",
        "check_in",
        "review",
        "sign_up",
        "profile_completed",
    }
    assert DEMO.referral is not None and DEMO.referral.referrer_points > 0
    kinds = {r.type for r in DEMO.rewards}
    assert kinds == {"coupon", "points_as_cash", "gift", "lucky_draw", "points_plus_cash"}
    gold_only = [r for r in DEMO.rewards if r.tiers == ["gold", "diamond"]]
    assert gold_only and gold_only[0].member_only


# -- YAML round trip and fingerprint -------------------------------------------------------


def test_yaml_round_trip_is_equal_with_the_same_fingerprint() -> None:
    text = dump_yaml(DEMO)
    again = load_yaml(text)
    assert again == DEMO
    assert again.fingerprint() == DEMO.fingerprint()
    assert dump_yaml(again) == text
    assert "金卡" in text and "&id" not in text  # readable: unicode, no anchors


def test_fingerprint_ignores_key_order_number_spelling_and_version() -> None:
    data = demo()
    data["earn"] = {"rounding": "floor", "unit": "1.00", "basis": "net", "points_per_unit": 1.0}
    data["tiers"][1]["benefits"]["earn_multiplier"] = "1.20"
    data = dict(reversed(list(data.items())))
    same = parse(data)
    assert same.fingerprint() == DEMO.fingerprint()
    assert parse(demo(version=7)).fingerprint() == DEMO.fingerprint()
    assert parse(demo(pending_days=16)).fingerprint() != DEMO.fingerprint()


def test_fingerprint_is_a_sha256_of_canonical_json() -> None:
    fp = DEMO.fingerprint()
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert DEMO.model_dump(mode="json")["tiers"][1]["benefits"]["earn_multiplier"] == "1.2"


def test_decimals_that_a_float_would_change_are_kept_exact() -> None:
    data = demo()
    data["earn"]["points_per_unit"] = "0.123456789012345678"
    program = parse(data)
    assert load_yaml(dump_yaml(program)) == program


@settings(max_examples=100, deadline=None)
@given(
    multiplier=st.decimals(min_value=0, max_value=100, places=4),
    rate=st.decimals(min_value=0, max_value=1000, places=6),
    threshold=st.integers(1, 10**6),
    pending=st.integers(0, 365),
)
def test_round_trip_of_any_numbers(
    multiplier: Decimal, rate: Decimal, threshold: int, pending: int
) -> None:
    data = demo(pending_days=pending)
    data["rules"][0]["effect"] = {"multiplier": multiplier, "points_per_unit": rate}
    data["tiers"][1]["threshold"] = threshold
    data["tiers"][1]["retain_threshold"] = threshold
    data["tiers"][2]["threshold"] = threshold + 1
    data["tiers"][3]["threshold"] = threshold + 2
    data["tiers"][2]["retain_threshold"] = data["tiers"][3]["retain_threshold"] = 1
    program = parse(data)
    again = load_yaml(dump_yaml(program))
    assert again == program and again.fingerprint() == program.fingerprint()


def test_yaml_reads_no_and_on_as_text_and_refuses_duplicate_keys() -> None:
    text = DEMO_TEXT.replace(
        "when: {channels: [app], first_order: true}",
        "when: {channels: [no, on], first_order: true}",
    )
    program = load_yaml(text)
    rule = program.rule("app-first-order")
    assert rule is not None and rule.when.channels == ["no", "on"]
    with pytest.raises(ProgramError) as err:
        load_yaml("currency: CNY\ncurrency: USD\n")
    assert "line 2" in str(err.value) and "duplicate key 'currency'" in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("currency: [CNY\n", "line 2"),
        ("- a list\n", "a programme is a mapping"),
        ("", "a programme is a mapping"),
        ("currency: CNY\n", "tiers: Field required"),
    ],
)
def test_unreadable_documents(text: str, expected: str) -> None:
    with pytest.raises(ProgramError) as err:
        load_yaml(text)
    assert expected in str(err.value)


# -- every invalid field is named ----------------------------------------------------------


def _set(data: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()

INVALID: list[tuple[list[Any], Any, str, str | None]] = [
    (["pendng_days"], 3, "pendng_days", "Extra inputs"),
    (["currency"], "yuan", "currency", "ISO 4217"),
    (["currency"], _DELETE, "currency", "Field required"),
    (["earn", "rounding"], "down", "earn.rounding", "'floor', 'round' or 'ceil'"),
    (["earn", "unit"], 0, "earn.unit", "greater than 0"),
    (["earn", "bogus"], 1, "earn.bogus", "Extra inputs"),
    (["pending_days"], -1, "pending_days", "greater than or equal to 0"),
    (["pending_days"], "15", "pending_days", "valid integer"),
    (["expiry", "months"], 0, "expiry.months", "greater than or equal to 1"),
    (["expiry"], {"policy": "monthly"}, "expiry", "does not match any of the expected tags"),
    (["expiry"], {"policy": "fixed_date", "month": 2, "day": 29}, "expiry.day", "02-29"),
    (["expiry"], {"policy": "fixed_date", "month": 4, "day": 31}, "expiry.day", "no day 31"),
    (["growth", "pending"], "later", "growth.pending", "same_as_points"),
    (["debt_policy", "allow_debt"], "yes", "debt_policy.allow_debt", "valid boolean"),
    (["tiers"], [], "tiers", "at least 1 item"),
    (["tiers", 0, "threshold"], 10, "tiers.0.threshold", "everyone starts: 0"),
    (["tiers", 1, "threshold"], 5000, "tiers.2.threshold", "rise strictly"),
    (
        ["tiers", 3],
        {"code": "top", "name": "Top", "threshold": 5000},
        "tiers.3.threshold",
        "must be above tiers.2.threshold (5000)",
    ),
    (["tiers", 0, "retain_threshold"], 1, "tiers.0.retain_threshold", "above the threshold 0"),
    (["tiers", 1, "code"], "gold", "tiers.2.code", "already used by tiers.1"),
    (["tiers", 1, "code"], "Silver card", "tiers.1.code", "should match pattern"),
    (["tiers", 1, "name"], {}, "tiers.1.name", "give `en`, `zh` or both"),
    (["tiers", 1, "name", "fr"], "Argent", "tiers.1.name.fr", "Extra inputs"),
    (["tiers", 1, "qualify_on"], "spend", "tiers.1.qualify_on", "same metric (growth)"),
    (["tiers", 1, "qualify_on"], "visits", "tiers.1.qualify_on", "'growth', 'spend'"),
    (["tiers", 2, "window"], {"rolling_days": 365}, "tiers.2.window", "same window"),
    (["tiers", 2, "window"], "calender_year", "tiers.2.window", "use `calendar_year`"),
    (["tiers", 2, "window"], {"rolling_days": 0}, "tiers.2.window.rolling_days", "greater"),
    (["tiers", 2, "retain_threshold"], 6000, "tiers.2.retain_threshold", "above the threshold"),
    (["tiers", 2, "threshold"], 5000.5, "tiers.2.threshold", "whole numbers"),
    (["tiers", 1, "benefits", "earn_multiplier"], 0.5, "tiers.1.benefits.earn_multiplier", ""),
    (
        ["tiers", 1, "benefits", "member_price_percent"],
        0,
        "tiers.1.benefits.member_price_percent",
        "",
    ),
    (["rules", 1, "id"], "birthday-month-double", "rules.1.id", "already used by rules.0"),
    (["rules", 0, "effect"], {}, "rules.0.effect", "give at least one of"),
    (["rules", 0, "effect", "multiplier"], -1, "rules.0.effect.multiplier", "greater than"),
    (["rules", 0, "effect", "multiplier"], 1000, "rules.0.effect.multiplier", "less than"),
    (["rules", 0, "event"], "purchase", "rules.0.event", "'order', 'sign_up'"),
    (["rules", 0, "event"], "review", "rules.0.effect.multiplier", "only order rules"),
    (["rules", 0, "stacking"], "alone", "rules.0.stacking", "'stack' or 'exclusive'"),
    (["rules", 0, "when", "birthday"], "year", "rules.0.when.birthday", "'day' or 'month'"),
    (["rules", 0, "when", "tiers"], ["platinum"], "rules.0.when.tiers.0", "no tier 'platinum'"),
    (["rules", 0, "when", "weekdays"], ["sunday"], "rules.0.when.weekdays.0", "'mon'"),
    (["rules", 0, "when", "channels"], [], "rules.0.when.channels", "at least 1 item"),
    (["rules", 0, "when", "min_amount"], 1.005, "rules.0.when.min_amount", "decimal places"),
    (["rules", 0, "when", "max_amount"], -1, "rules.0.when.max_amount", "greater than"),
    (
        ["rules", 1, "when", "date_window"],
        {"start": "2026-11-11", "end": "2026-11-01"},
        "rules.1.when.date_window.end",
        "before start",
    ),
    (["rules", 1, "when", "date_window"], {}, "rules.1.when.date_window", "give `start`"),
    (
        ["rules", 1, "when", "date_window", "start"],
        "11/01",
        "rules.1.when.date_window.start",
        "date",
    ),
    (["rules", 1, "caps", "per_event"], -5, "rules.1.caps.per_event", "greater than"),
    (
        ["rules", 1, "caps"],
        {"per_customer": 5},
        "rules.1.caps.period",
        "required with per_customer",
    ),
    (["rules", 1, "caps"], {"period": "day"}, "rules.1.caps.per_customer", "required with period"),
    (["rules", 2, "effect", "bonus"], 10**12, "rules.2.effect.bonus", "less than"),
    (
        ["rules", 2, "effect", "streak_bonus"],
        {"day": 7, "points": 1},
        "rules.2.effect.streak_bonus",
        "only check_in rules",
    ),
    (["rules", 3, "effect", "streak_bonus", "day"], 1, "rules.3.effect.streak_bonus.day", ""),
    (["rules", 4, "when"], {"skus": ["A"]}, "rules.4.when.skus", "only order rules"),
    (["rewards", 0, "type"], "voucher", "rewards.0", "does not match any of the expected tags"),
    (["rewards", 0, "value"], 0, "rewards.0.value", "greater than 0"),
    (["rewards", 0, "discount_type"], "percent", "rewards.0.value", None),  # 20% is fine
    (["rewards", 0, "validity_days"], _DELETE, "rewards.0.validity_days", "Field required"),
    (["rewards", 0, "min_spend"], "200.001", "rewards.0.min_spend", "decimal places"),
    (["rewards", 0, "tiers"], ["vip"], "rewards.0.tiers.0", "no tier 'vip'"),
    (["rewards", 0, "per_customer", "count"], 0, "rewards.0.per_customer.count", "greater"),
    (["rewards", 1, "max_share_percent"], 120, "rewards.1.max_share_percent", "less than"),
    (["rewards", 2, "stock"], -1, "rewards.2.stock", "greater than or equal to 0"),
    (["rewards", 3, "prizes", 0, "reward"], "nope", "rewards.3.prizes.0.reward", "no reward"),
    (["rewards", 3, "prizes", 1, "id"], "coupon", "rewards.3.prizes.1.id", "already used"),
    (
        ["rewards", 3, "prizes"],
        [{"id": "x", "name": "X", "weight": 0}],
        "rewards.3.prizes",
        "weight",
    ),
    (["rewards", 4, "id"], "coupon-20", "rewards.4.id", "already used by rewards.0"),
    (["rewards", 4, "cash"], "99.999", "rewards.4.cash", "decimal places"),
    (["referral", "per_referrer_cap"], 0, "referral.per_referrer_cap", "greater than"),
    (["referral", "qualifying_min_order"], "x", "referral.qualifying_min_order", "decimal"),
    (["surprise", "min_gap_days"], 0, "surprise.min_gap_days", "greater than"),
    (["surprise", "jitter", "amount_percent"], 101, "surprise.jitter.amount_percent", "less"),
]


@pytest.mark.parametrize(("path", "value", "where", "message"), INVALID)
def test_invalid_field_is_named(
    path: list[Any], value: Any, where: str, message: str | None
) -> None:
    data = _set(DEMO_DATA, path, value)
    if message is None:
        parse(data)  # valid after all
        return
    found = problems(data)
    assert any(p.startswith(f"{where}: ") and message in p for p in found), found


def test_every_problem_is_reported_together() -> None:
    data = _set(DEMO_DATA, ["pending_days"], -1)
    data = _set(data, ["tiers", 1, "name"], {})
    data = _set(data, ["rules", 0, "stacking"], "alone")
    assert paths(data) == ["pending_days", "tiers.1.name", "rules.0.stacking"]
    data = _set(DEMO_DATA, ["tiers", 0, "threshold"], 1)
    data = _set(data, ["rules", 1, "id"], "sign-up")
    assert paths(data) == ["tiers.0.threshold", "rules.5.id"]


def _leaves(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(data, dict):
        return [leaf for k, v in data.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(data, list):
        return [leaf for i, v in enumerate(data) for leaf in _leaves(v, (*path, i))]
    return [path]


LEAVES = _leaves(DEMO_DATA)


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


@settings(max_examples=150, deadline=None)
@given(leaf=st.sampled_from(LEAVES), junk=st.sampled_from([[[]], {"?": 1}, [{"?": []}]]))
def test_any_broken_field_is_named_by_its_path(leaf: tuple[Any, ...], junk: Any) -> None:
    """Replace any value of the demo with nonsense: an error names that field (or the
    object holding it, when the nonsense hides which variant the object is)."""
    data = _set(DEMO_DATA, list(leaf), junk)
    where = _dotted(leaf)
    found = paths(data)
    assert any(p and (p == where or where.startswith(p) or p.startswith(where)) for p in found), (
        where,
        found,
    )


# -- derived values ------------------------------------------------------------------------


def test_available_at_is_the_end_of_the_return_window() -> None:
    delivered = datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert DEMO.available_at(delivered) == datetime(2026, 5, 16, 10, tzinfo=UTC)
    assert DEMO.growth_available_at(delivered, delivered) == datetime(2026, 5, 16, 10, tzinfo=UTC)
    now = datetime(2026, 5, 2, tzinfo=UTC)
    immediate = parse(demo(growth={"pending": "immediate"}))
    assert immediate.growth_available_at(delivered, now) == now


def test_rolling_expiry_ends_with_the_store_day_months_later() -> None:
    # 2026-01-31 01:00 in Shanghai is still the 30th in UTC: the store's day counts.
    earned = datetime(2026, 1, 30, 17, tzinfo=UTC)
    assert DEMO.expires_at(earned, "Asia/Shanghai") == datetime(2028, 1, 31, 16, tzinfo=UTC)
    one = parse(demo(expiry={"policy": "rolling_months", "months": 1}))
    # Jan 31 + 1 month = the last day of February.
    assert one.expires_at(earned, "Asia/Shanghai") == datetime(2026, 2, 28, 16, tzinfo=UTC)


def test_fixed_date_expiry_honours_the_minimum_holding_period() -> None:
    program = parse(
        demo(expiry={"policy": "fixed_date", "month": 12, "day": 31, "min_holding_months": 12})
    )
    assert isinstance(program.expiry, FixedDateExpiry)
    may = datetime(2026, 5, 10, tzinfo=UTC)
    assert program.expires_at(may, "UTC") == datetime(2028, 1, 1, tzinfo=UTC)
    plain = parse(demo(expiry={"policy": "fixed_date", "month": 6, "day": 30}))
    assert plain.expires_at(may, "UTC") == datetime(2026, 7, 1, tzinfo=UTC)
    assert plain.expires_at(datetime(2026, 7, 1, tzinfo=UTC), "UTC") == datetime(
        2027, 7, 1, tzinfo=UTC
    )


def test_never_expires() -> None:
    program = parse(demo(expiry={"policy": "never"}))
    assert program.expires_at(datetime(2026, 1, 1, tzinfo=UTC), "UTC") is None


def test_config_is_immutable() -> None:
    with pytest.raises(ValueError):
        DEMO.pending_days = 3  # type: ignore[misc]
    assert isinstance(DEMO, ProgramConfig)
