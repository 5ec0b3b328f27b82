"""The earning-rule engine (rules.py): pure, no database."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patron.loyalty.program import EventKind, ProgramConfig, parse
from patron.loyalty.rules import (
    EarnEvent,
    Evaluation,
    Line,
    MemberContext,
    RuleTrace,
    evaluate,
    next_streak,
    period_bounds,
    usage_period,
)
from tests.loyalty.test_program import DEMO, DEMO_DATA

SH = "Asia/Shanghai"
SHANGHAI = ZoneInfo(SH)
NOV5 = datetime(2026, 11, 5, 12, tzinfo=SHANGHAI)


def order(
    amount: int,
    *,
    at: datetime = NOV5,
    lines: list[Line] | None = None,
    channel: str | None = "web",
    shipping: int = 0,
) -> EarnEvent:
    return EarnEvent(
        EventKind.order,
        at,
        amount_minor=amount,
        currency="CNY",
        lines=lines or [],
        channel=channel,
        shipping_minor=shipping,
    )


def member(**kw: Any) -> MemberContext:
    kw.setdefault("timezone", SH)
    return MemberContext(**kw)


def trace(ev: Evaluation, rule_id: str) -> RuleTrace:
    return next(t for t in ev.rules if t.rule_id == rule_id)


def programme(rules: list[dict[str, Any]], **changes: Any) -> ProgramConfig:
    data = copy.deepcopy(DEMO_DATA)
    data["rules"] = rules
    data.update(changes)
    return parse(data)


# -- the demo, end to end ------------------------------------------------------------------


def test_singles_day_gold_birthday_first_app_order() -> None:
    lines = [Line("SERUM", "skincare", 19900), Line("LIPSTICK", "makeup", 10000)]
    ev = evaluate(
        DEMO,
        order(29900, lines=lines, channel="app"),
        member(tier="gold", first_order=True, birthday=date(1990, 11, 29)),
    )
    # base 299; gold ×1.5 → 448.5; birthday ×2 → 897; skincare ×1.5 on 199×1.5×2 = 597
    # adds 298.5 → 1195.5 → 1195 (floor); + 100 bonus.
    assert (ev.base_points, ev.tier_points) == (299, 149)
    assert trace(ev, "birthday-month-double").points == 449
    assert trace(ev, "singles-day-skincare").points == 298
    assert trace(ev, "app-first-order").points == 100
    assert ev.points == 1295
    assert ev.growth == 299 + 100
    assert ev.points == ev.base_points + ev.tier_points + sum(ev.points_by_rule().values())
    text = ev.explain()
    assert "×1.5 on the base of matching lines (199.00 CNY)" in text
    assert "= 1295 points, 399 growth" in text
    assert "for other events: daily-check-in, review" in text


def test_every_rule_is_traced_with_the_first_failing_condition() -> None:
    ev = evaluate(DEMO, order(5000, at=datetime(2026, 12, 1, 12, tzinfo=SHANGHAI)), member())
    assert [t.rule_id for t in ev.rules] == [r.id for r in DEMO.rules]
    assert ev.points == 50 and not ev.fired
    assert trace(ev, "birthday-month-double").reason == "no birthday on file"
    assert trace(ev, "singles-day-skincare").reason == (
        "2026-12-01 is after the window 2026-11-01..2026-11-11 (Asia/Shanghai)"
    )
    assert trace(ev, "singles-day-skincare").condition == "date_window"
    assert trace(ev, "app-first-order").reason == "channel web not in [app]"
    assert trace(ev, "review").reason == "event order is not review"


@pytest.mark.parametrize(
    ("when", "event_kw", "member_kw", "reason"),
    [
        (
            {"channels": ["app"]},
            {"channel": None},
            {},
            "no channel on the event; rule needs one of [app]",
        ),
        ({"channels": ["APP"]}, {"channel": "app"}, {}, None),
        (
            {"tiers": ["gold", "diamond"]},
            {},
            {"tier": "silver"},
            "tier silver not in [gold, diamond]",
        ),
        ({"first_order": True}, {}, {}, "not the member's first order"),
        ({"first_order": False}, {}, {"first_order": True}, "a first order"),
        (
            {"birthday": "day"},
            {},
            {"birthday": date(1990, 3, 14)},
            "2026-11-05 is not the birthday (03-14)",
        ),
        (
            {"birthday": "month"},
            {},
            {"birthday": date(1990, 3, 14)},
            "November is not the birthday month (March)",
        ),
        ({"weekdays": ["sat", "sun"]}, {}, {}, "weekday thu not in [sat, sun] (Asia/Shanghai)"),
        (
            {"date_window": {"start": "2026-11-06"}},
            {},
            {},
            "2026-11-05 is before the window 2026-11-06..… (Asia/Shanghai)",
        ),
        ({"min_amount": "100.00"}, {}, {}, "order amount 99.99 CNY below the minimum 100.00 CNY"),
        ({"max_amount": "50"}, {}, {}, "order amount 99.99 CNY above the maximum 50.00 CNY"),
        (
            {"attributes": {"city": "Shanghai"}},
            {},
            {},
            "attribute city missing; rule needs 'Shanghai'",
        ),
        (
            {"attributes": {"city": ["Shanghai", "Beijing"]}},
            {},
            {"attributes": {"city": "Xi'an"}},
            "attribute city is \"Xi'an\", rule needs one of ['Shanghai', 'Beijing']",
        ),
        (
            {"attributes": {"vip": 1}},
            {},
            {"attributes": {"vip": "1"}},
            "attribute vip is '1', rule needs 1",
        ),
        ({"attributes": {"vip": True}}, {}, {"attributes": {"vip": True}}, None),
        (
            {"skus": ["X-1"], "categories": ["toys"]},
            {},
            {},
            "no line with sku in [X-1] or category in [toys]",
        ),
        ({"categories": ["Skincare"]}, {}, {}, None),  # categories match case-insensitively
    ],
)
def test_conditions_explain_themselves(
    when: dict[str, Any], event_kw: dict[str, Any], member_kw: dict[str, Any], reason: str | None
) -> None:
    program = programme([{"id": "r", "when": when, "effect": {"bonus": 7}}])
    kw: dict[str, Any] = {"lines": [Line("A", "skincare", 9999)], **event_kw}
    ev = evaluate(program, order(9999, **kw), member(**member_kw))
    t = trace(ev, "r")
    if reason is None:
        assert t.fired and t.points == 7, t
    else:
        assert (t.fired, t.reason) == (False, reason)


def test_base_rounding_and_basis() -> None:
    def pts(rounding: str, basis: str, amount: int, shipping: int = 0) -> int:
        program = programme(
            [], earn={"points_per_unit": 1, "unit": 10, "rounding": rounding, "basis": basis}
        )
        return evaluate(program, order(amount, shipping=shipping), member()).points

    assert [pts(m, "net", 2500) for m in ("floor", "round", "ceil")] == [2, 3, 3]
    assert [pts(m, "net", 2499) for m in ("floor", "round", "ceil")] == [2, 2, 3]
    assert pts("floor", "net", 2500, shipping=1000) == 2
    assert pts("floor", "paid", 2500, shipping=1000) == 3


def test_currency_exponent_is_respected() -> None:
    jpy = programme([], currency="JPY")
    ev = evaluate(
        jpy, EarnEvent(EventKind.order, NOV5, amount_minor=1999, currency="JPY"), member()
    )
    assert ev.points == 1999  # 1 point per 1 JPY, and JPY has no minor unit
    with pytest.raises(ValueError, match="the event is in CNY, the programme in JPY"):
        evaluate(jpy, order(100), member())


def test_order_discount_is_shared_by_the_lines_pro_rata() -> None:
    program = programme(
        [{"id": "skin", "when": {"categories": ["skincare"]}, "effect": {"points_per_unit": 1}}]
    )
    # Lines 100 + 100, order discount 50: 150 paid, skincare's part is 75.
    lines = [Line("A", "skincare", 10000), Line("B", "makeup", 10000)]
    ev = evaluate(program, order(15000, lines=lines), member())
    assert (ev.base_points, trace(ev, "skin").points) == (150, 75)


def test_multipliers_stack_multiplicatively_and_per_unit_points_are_not_multiplied() -> None:
    program = programme(
        [
            {"id": "x2", "priority": 1, "effect": {"multiplier": 2}},
            {"id": "x3", "priority": 2, "effect": {"multiplier": 3}},
            {"id": "rate", "priority": 3, "effect": {"points_per_unit": 1}},
            {"id": "bonus", "priority": 4, "effect": {"bonus": 10}},
        ]
    )
    ev = evaluate(program, order(10000), member(tier="silver"))  # ×1.2
    # base 100, tier → 120, ×2 → 240, ×3 → 720, +100×1.2 = 840, + 10 bonus (no multiplier)
    assert (ev.base_points, ev.tier_points) == (100, 20)
    assert [t.points for t in ev.rules] == [120, 480, 120, 10]
    assert ev.points == 850


def test_priority_orders_rules_and_ties_keep_file_order() -> None:
    program = programme(
        [
            {"id": "late", "priority": 9, "effect": {"bonus": 1}},
            {"id": "a", "priority": 1, "effect": {"bonus": 1}},
            {"id": "b", "priority": 1, "effect": {"bonus": 1}},
        ]
    )
    assert [t.rule_id for t in evaluate(program, order(1), member()).rules] == ["a", "b", "late"]


def test_an_exclusive_rule_stops_the_rules_after_it() -> None:
    program = programme(
        [
            {"id": "first", "priority": 1, "effect": {"bonus": 1}},
            {
                "id": "vip",
                "priority": 2,
                "stacking": "exclusive",
                "when": {"tiers": ["gold"]},
                "effect": {"multiplier": 3},
            },
            {"id": "later", "priority": 3, "effect": {"multiplier": 2}},
        ]
    )
    gold = evaluate(program, order(10000), member(tier="gold"))
    assert [t.fired for t in gold.rules] == [True, True, False]
    assert trace(gold, "later").reason == "stopped: exclusive rule vip (priority 2) fired"
    assert gold.points == 150 + 300 + 1
    silver = evaluate(program, order(10000), member(tier="silver"))
    assert [t.fired for t in silver.rules] == [True, False, True]  # vip did not fire


def test_an_exclusive_rule_with_its_budget_spent_stops_nothing() -> None:
    program = programme(
        [
            {
                "id": "promo",
                "priority": 1,
                "stacking": "exclusive",
                "effect": {"bonus": 500},
                "caps": {"budget": 10000},
            },
            {"id": "normal", "priority": 2, "effect": {"bonus": 5}},
        ]
    )
    ev = evaluate(program, order(100), member(budget_left={"promo": 0}))
    assert trace(ev, "promo").reason == "nothing left under the campaign budget 10000 (0 left)"
    assert trace(ev, "promo").condition == "caps"
    assert trace(ev, "normal").fired


def test_caps_cut_a_rule_and_say_which() -> None:
    program = programme(
        [
            {
                "id": "x3",
                "effect": {"multiplier": 3, "bonus": 50},
                "caps": {"per_event": 100, "per_customer": 1000, "period": "month", "budget": 5000},
            },
        ]
    )
    ev = evaluate(program, order(20000), member())
    t = trace(ev, "x3")
    assert (t.wanted_points, t.points, t.cap) == (450, 100, "per-event cap 100")
    assert "(wanted 450, cut by the per-event cap 100)" in t.reason
    ev = evaluate(program, order(20000), member(rule_usage={"x3": 970}))
    assert trace(ev, "x3").points == 30
    assert trace(ev, "x3").cap == "per-member cap 1000 per month (970 used)"
    ev = evaluate(program, order(20000), member(budget_left={"x3": 12}))
    assert trace(ev, "x3").points == 12


def test_a_capped_multiplier_is_not_multiplied_again() -> None:
    program = programme(
        [
            {"id": "x2", "priority": 1, "effect": {"multiplier": 2}, "caps": {"per_event": 10}},
            {"id": "x3", "priority": 2, "effect": {"multiplier": 3}},
        ]
    )
    ev = evaluate(program, order(10000), member())
    # base 100; ×2 capped to +10; ×3 multiplies the base (100) only: +200.
    assert [t.points for t in ev.rules] == [10, 200]
    assert ev.points == 310


def test_a_zero_multiplier_excludes_a_category() -> None:
    program = programme(
        [
            {
                "id": "no-gift-cards",
                "when": {"categories": ["gift_card"]},
                "effect": {"multiplier": 0},
            }
        ]
    )
    lines = [Line("GC", "gift_card", 50000), Line("A", "skincare", 10000)]
    ev = evaluate(program, order(60000, lines=lines), member())
    assert ev.points == 100 and trace(ev, "no-gift-cards").points == -500


# -- time zones ----------------------------------------------------------------------------


def test_the_stores_calendar_decides_the_birthday_month() -> None:
    may_birthday = member(birthday=date(1995, 5, 20))
    late_may = datetime(2026, 5, 31, 23, 30, tzinfo=SHANGHAI)  # 15:30 UTC, still May
    assert late_may.astimezone(UTC).hour == 15
    ev = evaluate(DEMO, order(10000, at=late_may), may_birthday)
    assert trace(ev, "birthday-month-double").fired and ev.local_date == date(2026, 5, 31)
    early_june = datetime(2026, 6, 1, 0, 30, tzinfo=SHANGHAI)  # 2026-05-31 16:30 UTC
    assert early_june.astimezone(UTC).month == 5
    ev = evaluate(DEMO, order(10000, at=early_june), may_birthday)
    assert trace(ev, "birthday-month-double").reason == ("June is not the birthday month (May)")
    # The same instant in a store on UTC is still May.
    ev = evaluate(
        DEMO, order(10000, at=early_june), member(timezone="UTC", birthday=date(1995, 5, 20))
    )
    assert trace(ev, "birthday-month-double").fired


def test_date_window_edges_are_store_days() -> None:
    inside = datetime(2026, 11, 11, 23, 59, tzinfo=SHANGHAI)
    outside = datetime(2026, 11, 12, 0, 0, tzinfo=SHANGHAI)  # 2026-11-11 16:00 UTC
    first = datetime(2026, 11, 1, 0, 0, tzinfo=SHANGHAI)  # 2026-10-31 16:00 UTC
    line = [Line("A", "skincare", 10000)]
    fired = [
        trace(
            evaluate(DEMO, order(10000, at=at, lines=line), member()), "singles-day-skincare"
        ).fired
        for at in (inside, outside, first)
    ]
    assert fired == [True, False, True]


@pytest.mark.parametrize(
    ("day", "fires"),
    [
        (date(2027, 2, 28), True),  # common year: the 28th
        (date(2027, 3, 1), False),
        (date(2028, 2, 28), False),  # leap year: the 29th itself
        (date(2028, 2, 29), True),
    ],
)
def test_a_birthday_on_29_february(day: date, fires: bool) -> None:
    program = programme([{"id": "bday", "when": {"birthday": "day"}, "effect": {"bonus": 88}}])
    at = datetime(day.year, day.month, day.day, 0, 10, tzinfo=SHANGHAI)  # previous day in UTC
    ev = evaluate(program, order(100, at=at), member(birthday=date(2000, 2, 29)))
    assert trace(ev, "bday").fired is fires


def test_weekday_is_the_stores() -> None:
    program = programme([{"id": "weekend", "when": {"weekdays": ["sat"]}, "effect": {"bonus": 1}}])
    saturday_morning = datetime(2026, 5, 30, 1, tzinfo=SHANGHAI)  # Friday 17:00 UTC
    assert trace(evaluate(program, order(1, at=saturday_morning), member()), "weekend").fired
    ev = evaluate(program, order(1, at=saturday_morning), member(timezone="UTC"))
    assert trace(ev, "weekend").reason == "weekday fri not in [sat] (UTC)"


def test_usage_periods_are_store_periods() -> None:
    at = datetime(2026, 5, 31, 23, 30, tzinfo=SHANGHAI)
    start, end = period_bounds("month", at, SH)
    assert (start, end) == (
        datetime(2026, 4, 30, 16, tzinfo=UTC),
        datetime(2026, 5, 31, 16, tzinfo=UTC),
    )
    assert period_bounds("week", at, SH)[0] == datetime(2026, 5, 24, 16, tzinfo=UTC)  # Monday
    assert period_bounds("day", at, SH)[1] == datetime(2026, 5, 31, 16, tzinfo=UTC)
    assert period_bounds("year", at, SH)[0] == datetime(2025, 12, 31, 16, tzinfo=UTC)
    assert period_bounds("ever", at, SH) == (None, None)
    review = DEMO.rule("review")
    assert review is not None and usage_period(review, at, SH) == (start, end)


# -- actions beyond orders -----------------------------------------------------------------


def check_in(at: datetime, last: date | None, streak: int) -> Evaluation:
    return evaluate(
        DEMO, EarnEvent(EventKind.check_in, at), member(last_check_in=last, streak=streak)
    )


def test_check_in_with_streak_bonus_on_day_7_and_14() -> None:
    day = datetime(2026, 5, 31, 0, 5, tzinfo=SHANGHAI)  # 2026-05-30 in UTC
    assert [check_in(day, date(2026, 5, 30), s).points for s in (0, 5, 6, 12, 13)] == [
        5,
        5,
        25,
        5,
        25,
    ]
    ev = check_in(day, date(2026, 5, 30), 6)
    assert ev.streak == 7 and "day 7 of the streak: bonus 20" in trace(ev, "daily-check-in").reason
    missed = check_in(day, date(2026, 5, 29), 6)
    assert (missed.streak, missed.points) == (1, 5)


def test_check_in_twice_a_store_day_earns_nothing() -> None:
    ev = check_in(datetime(2026, 5, 31, 0, 5, tzinfo=SHANGHAI), date(2026, 5, 31), 3)
    assert (ev.points, ev.streak) == (0, None)
    assert trace(ev, "daily-check-in").reason == "already checked in on 2026-05-31"


def test_streak_bonus_without_repeat() -> None:
    program = programme(
        [
            {
                "id": "ci",
                "event": "check_in",
                "effect": {"bonus": 1, "streak_bonus": {"day": 3, "points": 10, "repeat": False}},
            },
        ]
    )
    at = datetime(2026, 1, 10, 12, tzinfo=UTC)
    got = [
        evaluate(
            program,
            EarnEvent(EventKind.check_in, at),
            member(timezone="UTC", last_check_in=date(2026, 1, 9), streak=s),
        ).points
        for s in (1, 2, 5)
    ]
    assert got == [1, 11, 1]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("sign_up", 100), ("profile_completed", 50), ("review", 20), ("share", 5)],
)
def test_one_off_actions(kind: str, expected: int) -> None:
    ev = evaluate(DEMO, EarnEvent(EventKind(kind), NOV5), member(tier="diamond"))
    assert ev.points == expected and ev.tier_points == 0


def test_review_points_stop_at_the_monthly_cap() -> None:
    ev = evaluate(DEMO, EarnEvent(EventKind.review, NOV5), member(rule_usage={"review": 190}))
    assert ev.points == 10
    ev = evaluate(DEMO, EarnEvent(EventKind.review, NOV5), member(rule_usage={"review": 200}))
    assert ev.points == 0 and not trace(ev, "review").fired


def test_birthday_gift_of_the_tier() -> None:
    ev = evaluate(DEMO, EarnEvent(EventKind.birthday, NOV5), member(tier="gold"))
    assert ev.points == 300 and ev.base_points == 300


def referral(role: str, amount: int = 0, **kw: Any) -> Evaluation:
    event = EarnEvent(
        EventKind.referral,
        NOV5,
        amount_minor=amount,
        currency="CNY" if amount else None,
        referral_role=role,  # type: ignore[arg-type]
    )
    return evaluate(DEMO, event, member(**kw))


def test_referral_rewards_both_sides_within_the_cap() -> None:
    assert referral("referrer", 15000).points == 500
    assert referral("referee", 15000).points == 200
    assert referral("referrer", 5000).points == 0  # below the 99.00 qualifying order
    capped = referral("referrer", 15000, referrals_rewarded=20)
    assert capped.points == 0 and "cap of 20 rewarded referrals reached" in capped.explain()


def test_unknown_tier_counts_as_the_first_with_a_note() -> None:
    ev = evaluate(DEMO, order(10000), member(tier="platinum"))
    assert ev.points == 100 and ev.tier == "member"
    assert "tier 'platinum' is not in the programme" in ev.explain()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": EventKind.order, "occurred_at": datetime(2026, 1, 1)}, "time zone"),
        ({"kind": EventKind.order, "occurred_at": NOV5}, "currency: required"),
        (
            {"kind": EventKind.order, "occurred_at": NOV5, "currency": "CNY", "amount_minor": -1},
            "non-negative",
        ),
        (
            {"kind": EventKind.review, "occurred_at": NOV5, "lines": [Line("A", None, 1)]},
            "orders only",
        ),
        ({"kind": EventKind.referral, "occurred_at": NOV5}, "referral_role"),
    ],
)
def test_malformed_events_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EarnEvent(**kwargs)


def test_next_streak() -> None:
    d = date(2026, 3, 1)
    assert next_streak(None, 0, d) == 1
    assert next_streak(d, 4, d + timedelta(days=1)) == 5
    assert next_streak(d, 4, d + timedelta(days=2)) == 1
    assert next_streak(d, 4, d) is None
    assert next_streak(d, 4, d - timedelta(days=1)) is None


# -- properties ----------------------------------------------------------------------------

CATEGORIES = ["skincare", "makeup", "gift_card"]


@st.composite
def rule_dicts(draw: st.DrawFn, i: int) -> dict[str, Any]:
    effect: dict[str, Any] = {}
    if draw(st.booleans()):
        effect["multiplier"] = draw(st.sampled_from(["0", "0.5", "1", "1.5", "2", "3"]))
    if draw(st.booleans()):
        effect["points_per_unit"] = draw(st.sampled_from(["0", "0.1", "1", "2.5"]))
    if draw(st.booleans()) or not effect:
        effect["bonus"] = draw(st.integers(0, 300))
    if draw(st.booleans()):
        effect["growth_bonus"] = draw(st.integers(0, 50))
    when: dict[str, Any] = {}
    if draw(st.booleans()):
        when["categories"] = draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2))
    if draw(st.booleans()):
        when["channels"] = [draw(st.sampled_from(["app", "web"]))]
    if draw(st.booleans()):
        when["tiers"] = [draw(st.sampled_from(["member", "silver", "gold", "diamond"]))]
    caps: dict[str, Any] = {}
    if draw(st.booleans()):
        caps["per_event"] = draw(st.integers(0, 500))
    if draw(st.booleans()):
        caps.update(per_customer=draw(st.integers(0, 1000)), period="month")
    if draw(st.booleans()):
        caps["budget"] = draw(st.integers(0, 5000))
    return {
        "id": f"r{i}",
        "priority": draw(st.integers(0, 5)),
        "stacking": draw(st.sampled_from(["stack", "stack", "exclusive"])),
        "when": when,
        "effect": effect,
        "caps": caps,
    }


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ProgramConfig, EarnEvent, MemberContext]:
    n = draw(st.integers(0, 6))
    rules = [draw(rule_dicts(i)) for i in range(n)]
    rounding = draw(st.sampled_from(["floor", "round", "ceil"]))
    program = programme(rules, earn={"points_per_unit": 1, "unit": 1, "rounding": rounding})
    lines = draw(
        st.lists(
            st.builds(Line, st.just("SKU"), st.sampled_from(CATEGORIES), st.integers(0, 10**7)),
            max_size=5,
        )
    )
    amount = draw(st.integers(0, 10**7))
    at = draw(st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)))
    event = EarnEvent(
        EventKind.order,
        at,
        amount_minor=amount,
        currency="CNY",
        lines=lines,
        channel=draw(st.sampled_from(["app", "web", None])),
    )
    ids = [r["id"] for r in rules]
    context = member(
        tier=draw(st.sampled_from(["member", "silver", "gold", "diamond", None])),
        rule_usage={i: draw(st.integers(0, 1200)) for i in ids},
        budget_left={i: draw(st.integers(-10, 6000)) for i in ids if draw(st.booleans())},
    )
    return program, event, context


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_points_are_never_negative_and_add_up(
    scenario: tuple[ProgramConfig, EarnEvent, MemberContext],
) -> None:
    program, event, context = scenario
    ev = evaluate(program, event, context)
    assert ev.points >= 0 and ev.growth >= 0
    assert ev.points == ev.base_points + ev.tier_points + sum(t.points for t in ev.rules)
    assert ev.growth == ev.base_growth + sum(t.growth for t in ev.rules)
    assert all(t.points == 0 and t.growth == 0 for t in ev.rules if not t.fired)
    assert ev.explain()


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_caps_are_never_exceeded(scenario: tuple[ProgramConfig, EarnEvent, MemberContext]) -> None:
    program, event, context = scenario
    ev = evaluate(program, event, context)
    for t in ev.rules:
        rule = program.rule(t.rule_id)
        assert rule is not None
        caps = rule.caps
        if caps.per_event is not None:
            assert t.points <= caps.per_event
        if caps.per_customer is not None:
            assert t.points <= max(0, caps.per_customer - context.rule_usage[t.rule_id])
        if caps.budget is not None:
            left = context.budget_left.get(t.rule_id, caps.budget)
            assert t.points <= max(0, min(left, caps.budget))
        if t.cap is not None and t.fired:
            assert t.points < t.wanted_points


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_exclusive_rule_semantics(scenario: tuple[ProgramConfig, EarnEvent, MemberContext]) -> None:
    program, event, context = scenario
    ev = evaluate(program, event, context)
    stopper = next(
        (i for i, t in enumerate(ev.rules) if t.fired and t.stacking == "exclusive"), None
    )
    if stopper is None:
        assert all(t.condition != "stacking" for t in ev.rules)
        return
    after = ev.rules[stopper + 1 :]
    assert all(not t.fired and t.condition == "stacking" for t in after)
    # Removing the rules it stopped changes nothing.
    kept = {t.rule_id for t in ev.rules[: stopper + 1]}
    data = program.model_dump(mode="json")
    data["rules"] = [r for r in data["rules"] if r["id"] in kept]
    assert evaluate(parse(data), event, context).points == ev.points


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=40))
def test_streak_monotonicity(gaps: list[int]) -> None:
    """Each check-in extends the streak by one after a consecutive day and restarts it at 1
    after a gap; the streak is the length of the run of consecutive days."""
    day, last, streak, run = date(2026, 1, 1), None, 0, 0
    for gap in gaps:
        day += timedelta(days=gap)
        new = next_streak(last, streak, day)
        run = run + 1 if gap == 1 and last is not None else 1
        assert new == run
        assert new == 1 or new == streak + 1
        at = datetime(day.year, day.month, day.day, 12, tzinfo=SHANGHAI)
        points = check_in(at, last, streak).points
        assert points == (25 if new % 7 == 0 else 5)
        last, streak = day, new
        assert next_streak(last, streak, day) is None  # twice the same day: no


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(["Asia/Shanghai", "America/Los_Angeles", "UTC", "Pacific/Kiritimati"]),
    st.integers(1, 12),
)
def test_birthday_month_is_the_local_month(at: datetime, tz: str, month: int) -> None:
    ev = evaluate(DEMO, order(10000, at=at), member(timezone=tz, birthday=date(1990, month, 1)))
    assert trace(ev, "birthday-month-double").fired is (at.astimezone(ZoneInfo(tz)).month == month)
