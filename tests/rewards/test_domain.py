"""The pure rules of rewards: codes, discounts, points as cash, limits, the seeded draw."""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.loyalty.program import Limit, LuckyDrawReward, PointsAsCashReward, parse
from patron.rewards import domain
from patron.rewards.domain import CouponState, CouponTerms, CouponWhy, MemberState, Why

PROGRAM: dict[str, Any] = {
    "currency": "CNY",
    "tiers": [
        {"code": "member", "name": "Member", "threshold": 0},
        {
            "code": "gold",
            "name": "Gold",
            "threshold": 100,
            "benefits": {"member_only_rewards": True},
        },
    ],
    "rewards": [
        {"id": "c", "type": "coupon", "name": "C", "cost_points": 100, "discount_type": "fixed",
         "value": 10, "validity_days": 30, "per_customer": {"count": 2, "period": "day"}},
        {"id": "g", "type": "gift", "name": "G", "cost_points": 50, "tiers": ["gold"]},
        {"id": "m", "type": "gift", "name": "M", "cost_points": 5, "member_only": True},
        {"id": "off", "type": "gift", "name": "Off", "cost_points": 5, "active": False},
    ],
}  # fmt: skip


def test_codes_are_readable_unguessable_and_distinct() -> None:
    codes = {domain.new_code() for _ in range(5000)}
    assert len(codes) == 5000
    pattern = re.compile(r"^PAT(-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{4}){4}$")
    assert all(pattern.match(c) for c in codes)
    assert domain.CODE_BITS >= 60 and len(domain.ALPHABET) == 32
    assert not set("01OI") & set(domain.ALPHABET)
    # every symbol shows up: the code really uses the whole alphabet
    symbols = Counter("".join(c[4:].replace("-", "") for c in codes))
    assert set(symbols) == set(domain.ALPHABET)


def test_typed_codes_are_normalised() -> None:
    code = domain.new_code()
    assert domain.normalize_code(code.lower()) == code
    assert domain.normalize_code(code.replace("-", " ")) == code
    assert domain.normalize_code(" " + code.replace("-", "") + " ") == code
    assert domain.normalize_code("something-else") == "SOMETHING-ELSE"


def fixed(amount: int, min_spend: int = 0) -> CouponTerms:
    return CouponTerms("fixed", "CNY", amount_minor=amount, min_spend_minor=min_spend)


def percent(value: str, cap: int | None = None, min_spend: int = 0) -> CouponTerms:
    return CouponTerms(
        "percent",
        "CNY",
        percent=Decimal(value),
        max_discount_minor=cap,
        min_spend_minor=min_spend,
    )


@pytest.mark.parametrize(
    ("terms", "subtotal", "expected"),
    [
        (fixed(1000), 5000, 1000),
        (fixed(1000), 700, 700),  # never above the subtotal
        (fixed(1000), 0, 0),
        (percent("15"), 10000, 1500),
        (percent("15"), 333, 50),  # 49.95 rounds half up to 50
        (percent("15"), 330, 50),  # 49.5 -> 50
        (percent("15"), 329, 49),  # 49.35 -> 49
        (percent("15", cap=2000), 100000, 2000),  # capped by max_discount
        (percent("100"), 4321, 4321),
        (percent("12.5"), 999, 125),  # 124.875 -> 125
    ],
)
def test_discount(terms: CouponTerms, subtotal: int, expected: int) -> None:
    assert domain.discount(terms, subtotal) == expected


@given(
    st.integers(0, 10**12),
    st.decimals(min_value=Decimal("0.01"), max_value=100, places=2),
    st.none() | st.integers(0, 10**9),
)
def test_a_percent_discount_is_bounded(subtotal: int, pct: Decimal, cap: int | None) -> None:
    d = domain.discount(percent(str(pct), cap), subtotal)
    assert 0 <= d <= subtotal
    assert cap is None or d <= cap
    exact = Decimal(subtotal) * pct / 100
    bound = exact if cap is None else min(exact, Decimal(cap))
    assert abs(Decimal(d) - bound) <= Decimal("0.5")  # rounded half up to the minor unit


T = datetime(2026, 3, 1, 12, tzinfo=UTC)


def state(terms: CouponTerms, status: str = "active", until: datetime = T) -> CouponState:
    return CouponState(terms, customer_id=7, status=status, valid_until=until)


def test_coupon_checks_in_order() -> None:
    terms = fixed(2000, min_spend=20000)
    later = T + timedelta(days=1)
    ok = domain.check_coupon(state(terms, until=later), 7, 20000, "CNY", T)
    assert (ok.valid, ok.discount_minor) == (True, 2000)
    cases = [
        (state(terms, until=later), 8, 20000, "CNY", CouponWhy.other_customer),
        (state(terms, "used", later), 7, 20000, "CNY", CouponWhy.used),
        (state(terms, "void", later), 7, 20000, "CNY", CouponWhy.void),
        (state(terms, until=T), 7, 20000, "CNY", CouponWhy.expired),  # the end is exclusive
        (state(terms, until=later), 7, 20000, "USD", CouponWhy.currency),
        (state(terms, until=later), 7, 19999, "CNY", CouponWhy.below_min_spend),
    ]
    for coupon, customer, subtotal, currency, why in cases:
        check = domain.check_coupon(coupon, customer, subtotal, currency, T)
        assert (check.valid, check.reason, check.discount_minor) == (False, why, 0)
        assert check.message


def cash_reward(ppu: int, share: int, min_points: int = 0) -> PointsAsCashReward:
    return PointsAsCashReward(
        id="cash",
        name={"en": "Cash"},  # type: ignore[arg-type]
        type="points_as_cash",
        points_per_unit=ppu,
        max_share_percent=share,
        min_points=min_points,
    )


def test_points_as_cash_quote() -> None:
    reward = cash_reward(100, 20, min_points=100)  # 100 points = 1 CNY, up to 20%
    q = domain.quote(reward, "CNY", 50000, 100_000)  # 500 CNY order: 100 CNY max
    assert (q.max_points, q.cash_minor, q.step) == (10000, 10000, 1)
    q = domain.quote(reward, "CNY", 50000, 2345)  # the balance limits
    assert (q.max_points, q.cash_minor) == (2345, 2345)
    q = domain.quote(reward, "CNY", 50000, 99)  # below min_points
    assert q.max_points == 0 and q.reason and "at least 100" in q.reason
    q = domain.quote(reward, "CNY", 400, 100_000)  # 20% of 4 CNY = 80 points < min
    assert q.max_points == 0 and q.reason and "too small" in q.reason
    # 3 points = 1 JPY (no minor unit) and 3 points = 1 CNY: only whole minor units
    assert domain.quote(cash_reward(3, 50), "JPY", 1001, 10**6).max_points == 1500
    q = domain.quote(cash_reward(3, 50), "CNY", 1001, 10**6)  # 5.00 CNY: 15 points
    assert (q.max_points, q.cash_minor, q.step) == (15, 500, 3)
    assert domain.check_use(cash_reward(3, 50), "CNY", 1001, 0, 15) is None
    assert "multiple of 3" in str(domain.check_use(cash_reward(3, 50), "CNY", 1001, 0, 16))
    assert "at most 15" in str(domain.check_use(cash_reward(3, 50), "CNY", 1001, 0, 18))


@given(
    ppu=st.integers(1, 10**6),
    share=st.integers(1, 100),
    total=st.integers(0, 10**11),
    available=st.integers(0, 10**10),
    currency=st.sampled_from(["CNY", "JPY", "KWD"]),
)
def test_a_quote_never_pays_more_than_its_share_nor_uses_more_than_the_balance(
    ppu: int, share: int, total: int, available: int, currency: str
) -> None:
    q = domain.quote(cash_reward(ppu, share), currency, total, available)
    rate = domain.CashRate(ppu, currency)
    assert 0 <= q.max_points <= available
    assert q.max_points % rate.step == 0
    assert q.cash_minor * 100 <= total * share
    # exact: the cash is what the points are worth, with no fraction of a minor unit
    assert q.cash_minor * ppu == q.max_points * rate.minor_per_unit


def member(tier: str = "member", is_member: bool = True, points: int = 1000, used: int = 0) -> Any:
    return MemberState(tier, is_member, points, used)


def test_eligibility_names_every_reason() -> None:
    program = parse(PROGRAM)
    c, g, m, off = program.rewards
    assert domain.eligibility(program, c, member(), None) == []
    assert [r.code for r in domain.eligibility(program, c, member(points=99), None)] == [
        Why.not_enough_points
    ]
    refused = domain.eligibility(program, c, member(used=2, points=0), None)
    assert [r.code for r in refused] == [Why.limit_reached, Why.not_enough_points]
    assert "limit of 2 per day reached" in refused[0].message
    assert [r.code for r in domain.eligibility(program, g, member(), None)] == [Why.tier]
    assert domain.eligibility(program, g, member("gold"), None) == []
    assert [r.code for r in domain.eligibility(program, g, member("gold"), 0)] == [Why.out_of_stock]
    # member-only: a member, and of a tier with the member_only_rewards benefit
    assert [r.code for r in domain.eligibility(program, m, member("gold", False), None)] == [
        Why.member_only
    ]
    assert [r.code for r in domain.eligibility(program, m, member("member"), None)] == [
        Why.member_only
    ]
    assert domain.eligibility(program, m, member("gold"), None) == []
    assert [r.code for r in domain.eligibility(program, off, member(), None)] == [Why.inactive]


def test_limit_periods_follow_the_store_day() -> None:
    shanghai = "Asia/Shanghai"  # UTC+8: the store day starts at 16:00 UTC
    before_midnight = datetime(2026, 3, 1, 15, 59, tzinfo=UTC)
    after_midnight = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
    day = Limit(count=1, period="day")
    assert domain.limit_start(day, before_midnight, shanghai) == datetime(
        2026, 2, 28, 16, tzinfo=UTC
    )
    assert domain.limit_start(day, after_midnight, shanghai) == after_midnight
    week = Limit(count=1, period="week")  # ISO weeks: Monday 2026-03-02 starts one
    assert domain.limit_start(week, after_midnight, shanghai) == after_midnight
    assert domain.limit_start(Limit(count=1, period="ever"), T, shanghai) is None


DRAW = LuckyDrawReward.model_validate(
    {
        "id": "draw",
        "type": "lucky_draw",
        "name": "Draw",
        "cost_points": 10,
        "prizes": [
            {"id": "big", "name": "Big", "weight": 1, "points": 500},
            {"id": "small", "name": "Small", "weight": 3, "points": 20},
            {"id": "zero", "name": "Nothing", "weight": 0, "points": 1},
            {"id": "none", "name": "Thanks", "weight": 6},
        ],
    }
)


def test_the_draw_is_reproducible_and_verifiable() -> None:
    seed = domain.draw_seed("secret", "key-1")
    a = domain.run_draw(DRAW, seed, {})
    b = domain.run_draw(DRAW, domain.draw_seed("secret", "key-1"), {})
    assert a == b and a.total_weight == 10 and a.roll == int.from_bytes(seed, "big") % 10
    audit = a.audit()
    assert domain.verify_draw("secret", "key-1", audit)
    assert not domain.verify_draw("other secret", "key-1", audit)
    assert not domain.verify_draw("secret", "key-2", audit)
    tampered = {**audit, "prize_id": "big" if a.prize_id != "big" else "none"}
    assert not domain.verify_draw("secret", "key-1", tampered)


def test_the_draw_follows_the_weights_and_never_picks_excluded_prizes() -> None:
    n = 6000
    won = Counter(
        domain.run_draw(DRAW, domain.draw_seed("s", f"k{i}"), {}).prize_id for i in range(n)
    )
    assert "zero" not in won
    for prize, weight in (("big", 1), ("small", 3), ("none", 6)):
        expected = n * weight / 10
        # within 5 standard deviations of the binomial
        assert abs(won[prize] - expected) < 5 * math.sqrt(expected * (1 - weight / 10)), won
    without_big = {
        domain.run_draw(DRAW, domain.draw_seed("s", f"k{i}"), {"big": "budget"}).prize_id
        for i in range(500)
    }
    assert without_big == {"small", "none"}
    with pytest.raises(ValueError, match="no prize"):
        domain.run_draw(DRAW, b"x", {"big": "", "small": "", "none": ""})
