"""The pure rules of campaigns: assignment, quiet hours, caps, conversions, uplift — with
numbers derivable by hand."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest

from patron.campaigns import domain
from patron.campaigns.domain import GroupStats, QuietHours
from patron.campaigns.templating import TemplateFailed, render_one, sample_context

# -- assignment -----------------------------------------------------------------------------


def test_assignment_is_stable_and_follows_holdout_and_weights() -> None:
    variants = [("A", 1), ("B", 3)]
    groups = [domain.assign("spring", cid, 10, variants) for cid in range(1, 20_001)]
    again = [domain.assign("spring", cid, 10, variants) for cid in range(1, 20_001)]
    assert groups == again  # the same customer, the same group, every run
    counts = Counter(groups)
    # 10% holdout; the other 90% split 1:3 → 22.5% and 67.5% (±1 point at n = 20,000).
    assert abs(counts[domain.HOLDOUT] / 20_000 - 0.10) < 0.01
    assert abs(counts["A"] / 20_000 - 0.225) < 0.01
    assert abs(counts["B"] / 20_000 - 0.675) < 0.01
    # Another campaign draws independently: its holdout is not the same customers.
    other = [domain.assign("autumn", cid, 10, variants) for cid in range(1, 20_001)]
    both = sum(1 for g, h in zip(groups, other, strict=True) if g == h == domain.HOLDOUT)
    assert both < 400  # independent: about 1% of 20,000 = 200


def test_assignment_without_holdout_and_one_variant() -> None:
    assert {domain.assign("k", c, 0, [("A", 1)]) for c in range(1, 500)} == {"A"}
    with pytest.raises(ValueError):
        domain.assign("k", 1, 0, [])


# -- quiet hours ----------------------------------------------------------------------------

NIGHT = QuietHours(time(21, 0), time(9, 0))


def test_quiet_hours_across_midnight_in_store_time() -> None:
    tz = "Asia/Shanghai"  # UTC+8, no DST
    # 22:30 local (14:30 UTC) → 09:00 next morning local = 01:00 UTC next day.
    at = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
    assert domain.after_quiet_hours(at, tz, NIGHT) == datetime(2026, 3, 11, 1, 0, tzinfo=UTC)
    # 03:00 local (19:00 UTC the day before) → 09:00 the same local day.
    at = datetime(2026, 3, 9, 19, 0, tzinfo=UTC)
    assert domain.after_quiet_hours(at, tz, NIGHT) == datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
    # 12:00 local: not quiet, unchanged; exactly 09:00 is no longer quiet, 21:00 is.
    noon = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)
    assert domain.after_quiet_hours(noon, tz, NIGHT) == noon
    nine = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
    assert domain.after_quiet_hours(nine, tz, NIGHT) == nine
    assert domain.after_quiet_hours(datetime(2026, 3, 10, 13, 0, tzinfo=UTC), tz, NIGHT) == (
        datetime(2026, 3, 11, 1, 0, tzinfo=UTC)
    )


def test_quiet_hours_keep_local_end_across_dst() -> None:
    tz = "America/New_York"
    # 8 March 2026 clocks spring forward at 02:00 (EST −5 → EDT −4). 23:00 EST on the
    # 7th = 04:00 UTC on the 8th; the quiet hours end at 09:00 EDT = 13:00 UTC.
    at = datetime(2026, 3, 8, 4, 0, tzinfo=UTC)
    assert domain.after_quiet_hours(at, tz, NIGHT) == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)
    # 1 November 2026 clocks fall back: 23:00 EDT on 31 Oct = 03:00 UTC; 09:00 EST = 14:00.
    at = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    assert domain.after_quiet_hours(at, tz, NIGHT) == datetime(2026, 11, 1, 14, 0, tzinfo=UTC)
    # Quiet hours ending inside the spring-forward gap (01:00–02:30): 02:30 does not exist
    # on 8 March; the send moves to just after the gap, 03:30 EDT = 07:30 UTC.
    gap = QuietHours(time(1, 0), time(2, 30))
    at = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)  # 01:30 EST
    moved = domain.after_quiet_hours(at, tz, gap)
    assert moved == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert moved >= at


def test_same_day_window_and_no_window() -> None:
    lunch = QuietHours(time(12, 0), time(14, 0))
    at = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    assert domain.after_quiet_hours(at, "UTC", lunch) == datetime(2026, 5, 1, 14, 0, tzinfo=UTC)
    none = QuietHours(time(0, 0), time(0, 0))
    assert domain.after_quiet_hours(at, "UTC", none) == at
    with pytest.raises(ValueError):
        domain.parse_clock("9:00")


def test_cap() -> None:
    cap = domain.Cap(3, 7)
    assert cap.window == timedelta(days=7)
    assert [cap.allows(n) for n in range(5)] == [True, True, True, False, False]


# -- conversions ----------------------------------------------------------------------------


def test_conversion_window_and_exclusions() -> None:
    send = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)

    def conv(placed: datetime, status: str = "delivered", refunded: int = 0) -> bool:
        return domain.is_conversion(
            status=status,
            total_minor=1000,
            refunded_minor=refunded,
            placed_at=placed,
            send_at=send,
            attribution_days=7,
        )

    assert conv(send + timedelta(hours=1))
    assert conv(send + timedelta(days=7))  # the last instant of the window counts
    assert not conv(send + timedelta(days=7, seconds=1))
    assert not conv(send)  # placed before (or at) the send: not caused by it
    assert not conv(send + timedelta(days=1), status="cancelled")
    assert not conv(send + timedelta(days=1), refunded=1000)  # refunded in full
    assert conv(send + timedelta(days=1), refunded=400)  # partly refunded: still bought


# -- uplift ---------------------------------------------------------------------------------


def test_two_proportion_interval_by_hand() -> None:
    # Treatment 30/100, holdout 10/100: diff 0.2; se = √(0.3·0.7/100 + 0.1·0.9/100)
    # = √(0.0021 + 0.0009) = √0.003 = 0.0547723; ±1.96 → [0.0926, 0.3074].
    d = domain.proportion_difference(30, 100, 10, 100)
    assert d.estimate == pytest.approx(0.2)
    se = math.sqrt(0.003)
    assert d.low == pytest.approx(0.2 - 1.959964 * se, abs=1e-6)
    assert d.high == pytest.approx(0.2 + 1.959964 * se, abs=1e-6)
    assert d.low == pytest.approx(0.09265, abs=1e-4)
    assert d.significant
    assert domain.proportion_difference(1, 0, 1, 10).estimate is None


def test_welch_interval_by_hand() -> None:
    # Treatment revenue per recipient [0, 0, 100, 300] → mean 100, var (1e4+1e4+0+4e4)/3
    # = 20000; holdout [0, 0, 0, 40] → mean 10, var (100·3 + 900)/3 = 400.
    # se² = 20000/4 + 400/4 = 5100; ν = 5100² / (5000²/3 + 100²/3) = 3.1200...
    t = GroupStats(4, 2, 400, 0 + 0 + 100**2 + 300**2)
    h = GroupStats(4, 1, 40, 40**2)
    assert t.revenue_variance == pytest.approx(20000)
    assert h.revenue_variance == pytest.approx(400)
    d = domain.welch_difference(t, h)
    assert d.estimate == pytest.approx(90)
    dof = 5100**2 / (5000**2 / 3 + 100**2 / 3)
    assert dof == pytest.approx(3.1200, abs=1e-3)
    from scipy import stats

    half = stats.t.ppf(0.975, dof) * math.sqrt(5100)
    assert d.low == pytest.approx(90 - half)
    assert d.high == pytest.approx(90 + half)
    # t(0.975, 3.12) ≈ 3.09 (between 3.182 at ν=3 and 2.776 at ν=4): a wide interval.
    assert 3.0 < stats.t.ppf(0.975, dof) < 3.182
    assert not d.significant


def test_uplift_combines_both() -> None:
    u = domain.uplift(GroupStats(100, 30, 6000, 6000 * 200), GroupStats(100, 10, 2000, 2000 * 200))
    assert u.conversion.estimate == pytest.approx(0.2)
    assert u.revenue_per_recipient.estimate == pytest.approx(40)


# -- templates: the sandbox -----------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ customer.__class__.__mro__ }}",
        "{{ ''.__class__.__subclasses__() }}",
        "{{ range.__globals__ }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{{ 'x' * 100000000 }}",
        "{{ 'x'|center(100000000) }}",
        "{{ '%0999999999d'|format(1) }}",
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "{% for i in range(9999) %}{{ 'abcdefghij' * 999 }}{% endfor %}",
        "{{ ((10 ** 60) ** 60) ** 60 }}",
        "{{ customer.update({'a': 1}) }}",
        "{{ customer.nope }}",
        "{{ lipsum(100000) }}",
    ],
)
def test_hostile_templates_fail_safely(source: str) -> None:
    with pytest.raises(TemplateFailed):
        render_one(source, sample_context(), html_body=True)


def test_templates_autoescape_html_only() -> None:
    ctx = {**sample_context(), "customer": {**sample_context()["customer"], "first_name": "<b>"}}
    assert render_one("Hi {{ customer.first_name }}", ctx, html_body=True) == "Hi &lt;b&gt;"
    assert render_one("Hi {{ customer.first_name }}", ctx) == "Hi <b>"


def test_missing_language_falls_back_to_the_other() -> None:
    from patron.campaigns.templating import render_message

    ctx = sample_context()
    out = render_message(
        {"en": "Hi {{ customer.first_name }}"},
        {"en": "<p>a &amp; b</p>"},
        ctx,
        "zh",
        html_body=True,
    )
    assert (out.lang, out.subject, out.text) == ("en", "Hi Ann", "a & b\n")
    out = render_message({"zh": "您好"}, {"zh": "正文", "en": "body"}, ctx, "en", html_body=False)
    assert (out.lang, out.subject, out.text) == ("zh", "您好", "正文")
