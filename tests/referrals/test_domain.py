"""The pure rules: codes, identities, fraud checks, K, surprise draws and limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from patron.referrals import domain
from patron.referrals.domain import GiftFacts, Party, ViralStats

NOW = datetime(2026, 3, 31, 17, 0, tzinfo=UTC)  # already April 1st in Shanghai


def test_codes_are_crockford_and_normalise_what_people_type() -> None:
    codes = {domain.new_code() for _ in range(500)}
    assert len(codes) == 500
    assert all(domain.normalize_code(c) == c for c in codes)
    assert domain.normalize_code(" ab3d-efgh ") == "AB3DEFGH"
    assert domain.normalize_code("ABCDEFGO") == "ABCDEFG0"  # O read as zero
    assert domain.normalize_code("ABCDEFGL") == "ABCDEFG1"
    assert domain.normalize_code("ABCDEFG") is None
    assert domain.normalize_code("ABCDEFGU") is None
    assert domain.normalize_code("ABCD💥FGH") is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("J.Doe+shop@Gmail.com", "jdoe@googlemail.com"),
        ("jane+x@example.com", "JANE@example.com"),
    ],
)
def test_same_email(a: str, b: str) -> None:
    assert domain.normalize_email(a) == domain.normalize_email(b)


def test_dots_matter_outside_gmail() -> None:
    assert domain.normalize_email("j.doe@example.com") != domain.normalize_email("jdoe@example.com")
    assert domain.normalize_email("not-an-email") is None


def test_phones_compare_on_their_digits() -> None:
    assert domain.phone_digits("+86 138-0000-0001") == domain.phone_digits("13800000001")
    assert domain.phone_digits("12") is None


def test_addresses_compare_letters_and_digits() -> None:
    a = domain.normalize_address({"address": {"line1": "1 Main St", "city": "Springfield"}})
    b = domain.normalize_address({"shipping_address": "1 main st, SPRINGFIELD"})
    assert a is not None and a == b
    assert domain.normalize_address({"address": 5}) is None
    assert domain.normalize_address(None) is None


def test_rules_in_order() -> None:
    a, b = Party(1), Party(2)
    assert domain.check(a, b) is None
    assert domain.check(a, Party(1)).rule == "self_referral"  # type: ignore[union-attr]
    assert domain.check(Party(1, flagged=True), b).rule == "flagged"  # type: ignore[union-attr]
    assert domain.check(a, b, referrer_ancestors=(7, 2)).rule == "ring"  # type: ignore[union-attr]
    assert domain.check(a, b, ordered_before="O-1").rule == "not_new"  # type: ignore[union-attr]
    assert domain.check(a, b, rewarded=2, cap=3) is None
    assert domain.check(a, b, rewarded=3, cap=3).rule == "cap_reached"  # type: ignore[union-attr]


def test_qualifying_orders() -> None:
    assert domain.qualifies("delivered", 9900, 0, 9900)
    assert not domain.qualifies("delivered", 9899, 0, 9900)
    assert not domain.qualifies("delivered", 12000, 3000, 9900)
    assert not domain.qualifies("delivered", 100, 100, 0)  # fully refunded
    assert not domain.qualifies("cancelled", 12000, 0, 0)
    assert domain.qualifies("delivered", 1, 0, 0)


def test_k_is_invites_per_member_times_conversion() -> None:
    stats = ViralStats(members=8, invitations=6, attributions=5, qualified=3, rewarded=2)
    assert stats.invites_per_member == Fraction(3, 4)
    assert stats.conversion == Fraction(1, 2)
    assert stats.k == Fraction(3, 8)
    assert domain.ratio(stats.k) == domain.ratio(Fraction(375, 1000))
    assert ViralStats(0, 0, 0, 0, 0).k is None
    assert ViralStats(5, 0, 0, 0, 0).k == 0


def test_surprise_draws_are_seeded_irregular_and_bounded() -> None:
    draws = [domain.surprise_draw("secret", 1, cid, 100, 21, 40) for cid in range(200)]
    assert draws == [domain.surprise_draw("secret", 1, cid, 100, 21, 40) for cid in range(200)]
    assert draws != [domain.surprise_draw("other", 1, cid, 100, 21, 40) for cid in range(200)]
    assert draws != [domain.surprise_draw("secret", 2, cid, 100, 21, 40) for cid in range(200)]
    assert all(timedelta(0) <= d.delay <= timedelta(days=21) for d in draws)
    assert all(60 <= d.points <= 140 for d in draws)
    assert len({d.delay.days for d in draws}) > 15  # spread over the window
    assert len({d.points for d in draws}) > 40
    flat = domain.surprise_draw("secret", 1, 1, 100, 0, 0)
    assert flat == domain.Draw(timedelta(0), 100)


def test_calendar_bounds_are_in_store_time() -> None:
    start, end = domain.month_bounds(NOW, "Asia/Shanghai")
    assert start == datetime(2026, 3, 31, 16, 0, tzinfo=UTC)  # April 1st 00:00 +08
    assert end == datetime(2026, 4, 30, 16, 0, tzinfo=UTC)
    assert domain.month_bounds(NOW, "UTC")[0] == datetime(2026, 3, 1, tzinfo=UTC)
    dec = domain.month_bounds(datetime(2026, 12, 15, tzinfo=UTC), "UTC")
    assert dec[1] == datetime(2027, 1, 1, tzinfo=UTC)
    assert domain.year_bounds(datetime(2026, 12, 31, 20, tzinfo=UTC), "Asia/Shanghai")[0] == (
        datetime(2026, 12, 31, 16, tzinfo=UTC)
    )


def test_gift_limits() -> None:
    limits = {"budget_per_month": 1000, "max_per_year": 2, "min_gap_days": 30}
    fresh = GiftFacts(flagged=False, given_this_year=0, last_given_at=None, month_given=0)
    assert domain.gift_refusal(100, fresh, NOW, **limits) is None

    def rule(facts: GiftFacts, points: int = 100) -> str | None:
        refusal = domain.gift_refusal(points, facts, NOW, **limits)
        return refusal.rule if refusal else None

    assert rule(GiftFacts(True, 0, None, 0)) == "flagged"
    assert rule(GiftFacts(False, 2, None, 0)) == "yearly_limit"
    assert rule(GiftFacts(False, 1, NOW - timedelta(days=29), 0)) == "too_soon"
    assert rule(GiftFacts(False, 1, NOW - timedelta(days=30), 0)) is None
    assert rule(GiftFacts(False, 0, None, 900)) is None
    assert rule(GiftFacts(False, 0, None, 901)) == "budget"
