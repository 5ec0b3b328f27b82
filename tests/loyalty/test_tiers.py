"""Tier rules (tiers.py): qualifying value, upgrade at once, downgrade at period end."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patron.loyalty.program import ProgramConfig, parse
from patron.loyalty.tiers import (
    Activity,
    evaluate_tier,
    progress,
    qualifying_value,
    review_at,
    threshold_value,
)
from tests.loyalty.test_program import DEMO, DEMO_DATA

SH = "Asia/Shanghai"
SHANGHAI = ZoneInfo(SH)
MEMBER = DEMO.tiers[0]
NEW_YEAR_2027 = datetime(2027, 1, 1, tzinfo=SHANGHAI)  # 2026-12-31 16:00 UTC


def at(y: int, m: int, d: int, h: int = 12) -> datetime:
    return datetime(y, m, d, h, tzinfo=SHANGHAI)


def grew(when: datetime, growth: int, spend: int = 0, orders: int = 0) -> Activity:
    return Activity(when, growth, spend, orders)


def with_tiers(tiers: list[dict[str, Any]], **changes: Any) -> ProgramConfig:
    data = copy.deepcopy(DEMO_DATA)
    data.update(tiers=tiers, rules=[], rewards=[], **changes)
    return parse(data)


SPEND = with_tiers(
    [
        {
            "code": "member",
            "name": {"en": "Member", "zh": "普通会员"},
            "threshold": 0,
            "qualify_on": "spend",
        },
        {
            "code": "gold",
            "name": {"en": "Gold", "zh": "金卡"},
            "threshold": "1000.00",
            "qualify_on": "spend",
            "retain_threshold": 600,
        },
    ]
)


# -- qualifying value ---------------------------------------------------------------------


def test_calendar_year_is_the_stores() -> None:
    history = [
        grew(datetime(2026, 12, 31, 16, 30, tzinfo=UTC), 100),  # 2027-01-01 00:30 Shanghai
        grew(datetime(2026, 12, 31, 15, 30, tzinfo=UTC), 50),  # 2026-12-31 23:30 Shanghai
    ]
    assert qualifying_value(MEMBER, history, at(2027, 1, 2), SH) == 100
    assert qualifying_value(MEMBER, history, at(2027, 1, 2), "UTC") == 0  # 2026 in UTC
    assert qualifying_value(MEMBER, history, datetime(2026, 12, 31, 23, tzinfo=UTC), "UTC") == 150
    late = datetime(2026, 12, 31, 23, 45, tzinfo=SHANGHAI)
    assert qualifying_value(MEMBER, history, late, SH) == 50


def test_rolling_window() -> None:
    program = with_tiers(
        [{"code": "m", "name": "M", "threshold": 0, "window": {"rolling_days": 30}}]
    )
    tier = program.tiers[0]
    now = datetime(2026, 6, 30, tzinfo=UTC)
    history = [
        grew(now - timedelta(days=30), 1),  # exactly 30 days ago: out
        grew(now - timedelta(days=29, hours=23), 2),
        grew(now, 4),  # now: in
        grew(now + timedelta(seconds=1), 8),  # the future: out
    ]
    assert qualifying_value(tier, history, now) == 6


def test_refunds_net_out_and_the_value_never_goes_negative() -> None:
    history = [grew(at(2026, 3, 1), 300), grew(at(2026, 3, 5), -500)]
    assert qualifying_value(MEMBER, history, at(2026, 4, 1), SH) == 0


def test_spend_and_orders_are_counted_in_their_own_units() -> None:
    history = [grew(at(2026, 3, 1), 0, spend=12345, orders=1), grew(at(2026, 3, 2), 0, 55, 1)]
    assert qualifying_value(SPEND.tiers[0], history, at(2026, 4, 1), SH) == 12400
    assert threshold_value(SPEND.tiers[1], "CNY") == 100000
    assert threshold_value(SPEND.tiers[1], "CNY", retain=True) == 60000


# -- upgrades and downgrades ------------------------------------------------------------------


def test_upgrade_at_once_even_over_several_tiers() -> None:
    history = [grew(at(2026, 3, 1), 600), grew(at(2026, 3, 2), 4500)]
    d = evaluate_tier(DEMO, "member", history, at(2026, 3, 2, 13), NEW_YEAR_2027, tz=SH)
    assert (d.change, d.tier) == ("upgrade", "gold")
    assert d.reason == "growth 5,100 this calendar year reaches growth 5,000 for 金卡 Gold"
    assert d.next_review == NEW_YEAR_2027


def test_no_downgrade_before_the_period_end() -> None:
    d = evaluate_tier(DEMO, "gold", [], at(2026, 12, 31, 23), NEW_YEAR_2027, tz=SH)
    assert (d.change, d.tier, d.next_review) == ("keep", "gold", NEW_YEAR_2027)
    d = evaluate_tier(DEMO, "gold", [], at(2026, 12, 31, 23), None, tz=SH)
    assert (d.change, d.tier) == ("keep", "gold")


def test_kept_at_period_end_with_the_retain_threshold() -> None:
    history = [grew(at(2026, 6, 1), 4200)]  # below gold's 5000, above its retain 4000
    d = evaluate_tier(DEMO, "gold", history, at(2027, 1, 1, 3), NEW_YEAR_2027, tz=SH)
    assert (d.change, d.tier) == ("keep", "gold")
    assert d.reason == "kept 金卡 Gold: growth 4,200 in 2026 ≥ retain growth 4,000"
    assert d.next_review == datetime(2028, 1, 1, tzinfo=SHANGHAI)


def test_downgrade_to_the_qualifying_tier() -> None:
    history = [grew(at(2026, 6, 1), 900)]  # member level (silver needs 1000)
    d = evaluate_tier(DEMO, "diamond", history, at(2027, 1, 1, 3), NEW_YEAR_2027, tz=SH)
    assert (d.change, d.tier) == ("downgrade", "member")
    assert d.reason == (
        "growth 900 in 2026 is below the growth 16,000 needed to keep 钻石 Diamond: "
        "down to 普通会员 Member"
    )


def test_downgrade_one_step() -> None:
    program = parse({**copy.deepcopy(DEMO_DATA), "tier_downgrade": "one_step"})
    d = evaluate_tier(program, "diamond", [], at(2027, 1, 1, 3), NEW_YEAR_2027, tz=SH)
    assert (d.change, d.tier) == ("downgrade", "gold")


def test_a_review_counts_the_year_that_ended_not_the_new_one() -> None:
    history = [grew(at(2026, 12, 31, 23), 20000)]  # the last hour of 2026, Shanghai time
    d = evaluate_tier(DEMO, "diamond", history, at(2027, 1, 3), NEW_YEAR_2027, tz=SH)
    assert (d.change, d.value) == ("keep", 20000)


def test_growth_early_in_the_new_year_can_keep_the_tier() -> None:
    history = [grew(at(2027, 1, 1, 2), 6000)]  # nothing in 2026, but gold again in 2027
    d = evaluate_tier(DEMO, "gold", history, at(2027, 1, 1, 3), NEW_YEAR_2027, tz=SH)
    assert (d.change, d.tier) == ("keep", "gold")
    assert "qualifies again" in d.reason


def test_upgrade_found_at_review() -> None:
    history = [grew(at(2026, 12, 30), 21000)]
    d = evaluate_tier(DEMO, "silver", history, at(2027, 1, 1, 3), NEW_YEAR_2027, tz=SH)
    assert (d.change, d.tier) == ("upgrade", "diamond")


def test_new_and_unknown_tiers_enter() -> None:
    d = evaluate_tier(DEMO, None, [grew(at(2026, 3, 1), 1500)], at(2026, 3, 2), tz=SH)
    assert (d.change, d.tier, d.previous) == ("enter", "silver", None)
    assert d.next_review == NEW_YEAR_2027
    d = evaluate_tier(DEMO, "platinum", [], at(2026, 3, 2), tz=SH)
    assert (d.change, d.tier) == ("enter", "member")
    assert "no longer in the programme" in d.reason


def test_rolling_tiers_are_reviewed_every_window() -> None:
    program = with_tiers(
        [
            {"code": "m", "name": "M", "threshold": 0, "window": {"rolling_days": 90}},
            {
                "code": "g",
                "name": "G",
                "threshold": 100,
                "retain_threshold": 50,
                "window": {"rolling_days": 90},
            },
        ]
    )
    since = datetime(2026, 1, 1, tzinfo=UTC)
    end = review_at(program, since, "UTC")
    assert end == since + timedelta(days=90)
    history = [grew(since + timedelta(days=10), 120)]
    d = evaluate_tier(program, "g", history, end, end, tz="UTC")
    assert (d.change, d.next_review) == ("keep", end + timedelta(days=90))
    later = end + timedelta(days=90)
    d = evaluate_tier(program, "g", history, later, later, tz="UTC")
    assert (d.change, d.tier) == ("downgrade", "m")


# -- progress -----------------------------------------------------------------------------------


def test_progress_messages() -> None:
    p = progress(SPEND, "member", 68000)
    assert (p.next, p.missing) == ("gold", 32000)
    assert p.message == "spend 320.00 more to reach 金卡 Gold"
    assert p.message_zh == "再消费 320.00元 即可升级为金卡"
    p = progress(DEMO, "silver", 1200)
    assert p.message == "earn 3,800 more growth to reach 金卡 Gold"
    assert progress(DEMO, "diamond", 0).message == "at the top tier, 钻石 Diamond"
    assert progress(DEMO, None, 0).next == "silver"
    assert progress(DEMO, "member", 1000).message == "qualifies for 银卡 Silver"
    orders = with_tiers(
        [
            {"code": "a", "name": "A", "threshold": 0, "qualify_on": "orders"},
            {"code": "b", "name": "B", "threshold": 3, "qualify_on": "orders"},
        ]
    )
    assert progress(orders, "a", 2).message == "place 1 more order to reach B"


# -- properties ---------------------------------------------------------------------------------

histories = st.lists(
    st.builds(
        Activity,
        st.datetimes(datetime(2025, 1, 1), datetime(2028, 1, 1), timezones=st.just(UTC)),
        st.integers(-2000, 15000),
    ),
    max_size=8,
)
codes = st.sampled_from([None, "member", "silver", "gold", "diamond"])
moments = st.datetimes(datetime(2026, 1, 1), datetime(2027, 6, 1), timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(histories, codes, moments, st.booleans())
def test_tier_decisions_follow_the_rules(
    history: list[Activity], current: str | None, now: datetime, reviewing: bool
) -> None:
    period_end = NEW_YEAR_2027 if reviewing else now + timedelta(days=1)
    d = evaluate_tier(DEMO, current, history, now, period_end, tz=SH)
    order = [t.code for t in DEMO.tiers]
    rank = {code: i for i, code in enumerate(order)}
    new = DEMO.tier(d.tier)
    assert new is not None
    if d.change == "downgrade":
        assert current is not None and rank[d.tier] < rank[current]
        assert now >= period_end  # never before the period end
        old = DEMO.tier(current)
        assert old is not None and d.value < threshold_value(old, "CNY", retain=True)
    if d.change == "upgrade":
        assert current is not None and rank[d.tier] > rank[current]
        assert d.value >= threshold_value(new, "CNY")
    if d.change == "keep":
        assert d.tier == current
    if now < period_end:
        assert d.change != "downgrade"
    assert d.next_review is not None and (d.change == "keep" or d.next_review > now)


@settings(max_examples=200, deadline=None)
@given(histories, moments)
def test_progress_never_overshoots(history: list[Activity], now: datetime) -> None:
    value = qualifying_value(MEMBER, history, now, SH)
    tier = evaluate_tier(DEMO, None, history, now, tz=SH).tier
    p = progress(DEMO, tier, value)
    if p.next is not None:
        assert p.target is not None and p.missing == p.target - value > 0
    else:
        assert tier == "diamond"


def test_upgrade_threshold_is_inclusive() -> None:
    history = [grew(at(2026, 3, 1), 1000)]
    assert evaluate_tier(DEMO, "member", history, at(2026, 3, 2), tz=SH).tier == "silver"
    history = [grew(at(2026, 3, 1), 999)]
    assert evaluate_tier(DEMO, "member", history, at(2026, 3, 2), tz=SH).tier == "member"


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "UTC", "America/New_York"])
def test_review_at_is_the_next_local_new_year(tz: str) -> None:
    since = datetime(2026, 12, 31, 20, tzinfo=UTC)
    local_year = since.astimezone(ZoneInfo(tz)).year
    expected = datetime(local_year + 1, 1, 1, tzinfo=ZoneInfo(tz))
    assert review_at(DEMO, since, tz) == expected
