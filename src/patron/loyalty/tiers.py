"""Tier rules (会员等级): which tier a member holds, and how far the next one is. Pure.

Tiers qualify on growth (成长值), spend or order count, counted over the calendar year
(store time) or a rolling window of N days. The history passed in is already net of
refunds and cancellations.

- **Upgrade at once**: as soon as the window's value reaches a higher tier's threshold.
- **Downgrade only at a period end**, and only if the value of the period that just
  ended is below the current tier's ``retain_threshold``. The member then drops to the
  tier that value qualifies for (``tier_downgrade: qualifying``, the default), or by at
  most one tier (``one_step``). Periods: calendar year → reviewed every 1 January (store
  time); rolling N days → reviewed N days after the tier was reached, then every N days.
  An upgrade in November is reviewed on 1 January against the year that earned it, so a
  tier reached in a year is kept through the next one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, NamedTuple

from patron.kit.clock import as_utc, zone
from patron.kit.money import exponent, from_minor
from patron.loyalty.program import ProgramConfig, TierDef

__all__ = [
    "Activity",
    "Progress",
    "TierDecision",
    "evaluate_tier",
    "progress",
    "qualifying_value",
    "review_at",
    "threshold_value",
    "window_start",
]


class Activity(NamedTuple):
    """What a member did at one moment, net of refunds; a plain 4-tuple works too."""

    occurred_at: datetime
    growth: int = 0
    spend_minor: int = 0
    orders: int = 0


History = Iterable[tuple[datetime, int, int, int]]


@dataclass(frozen=True)
class TierDecision:
    tier: str
    previous: str | None
    change: Literal["enter", "upgrade", "keep", "downgrade"]
    reason: str
    value: int  # the qualifying value the decision rests on
    next_review: datetime | None  # when the new tier is next reviewed (UTC)

    @property
    def changed(self) -> bool:
        return self.change in ("enter", "upgrade", "downgrade")


@dataclass(frozen=True)
class Progress:
    current: str
    next: str | None
    value: int
    target: int | None
    missing: int
    message: str
    message_zh: str


def _local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(), zone(tz)).astimezone(UTC)


def threshold_value(tier: TierDef, currency: str, *, retain: bool = False) -> int:
    """A tier's threshold in the unit values are counted in: growth, orders, or minor
    units of the currency for spend."""
    value = tier.retain if retain else tier.threshold
    if tier.qualify_on == "spend":
        return int(value.scaleb(exponent(currency)))
    return int(value)


def window_start(tier: TierDef, as_of: datetime, tz: str) -> datetime:
    """Where the tier's counting window that ends at ``as_of`` starts (UTC)."""
    as_of = as_utc(as_of)
    if tier.window.rolling_days is not None:
        return as_of - timedelta(days=tier.window.rolling_days)
    local = as_of.astimezone(zone(tz)).date()
    return _local_midnight(date(local.year, 1, 1), tz)


def _sum(tier: TierDef, history: History, start: datetime, end: datetime, *, closed: bool) -> int:
    """The value counted over [start, end), or [start, end] when ``closed``."""
    metric = tier.qualify_on
    total = 0
    for at, growth, spend_minor, orders in history:
        at = as_utc(at)
        if start <= at and (at < end or (closed and at == end)):
            total += growth if metric == "growth" else spend_minor if metric == "spend" else orders
    return max(0, total)


def qualifying_value(tier: TierDef, history: History, as_of: datetime, tz: str = "UTC") -> int:
    """The value that qualifies for tiers as of ``as_of`` (included): growth, spend in
    minor units, or orders, over the calendar year of ``as_of`` (store time) or the
    ``rolling_days`` before it. Negative totals (refunds of older activity) count as 0."""
    as_of = as_utc(as_of)
    start = window_start(tier, as_of, tz)
    if tier.window.rolling_days is not None:
        # (as_of − N days, as_of]
        start += timedelta(microseconds=1)
    return _sum(tier, history, start, as_of, closed=True)


def review_at(program: ProgramConfig, since: datetime, tz: str) -> datetime:
    """When a tier held from ``since`` is next reviewed: the next 1 January (store time)
    for calendar-year tiers, ``rolling_days`` later for rolling ones."""
    window = program.tiers[0].window
    since = as_utc(since)
    if window.rolling_days is not None:
        return since + timedelta(days=window.rolling_days)
    local = since.astimezone(zone(tz)).date()
    return _local_midnight(date(local.year + 1, 1, 1), tz)


def _metric(tier: TierDef, value: int, currency: str) -> str:
    if tier.qualify_on == "spend":
        return f"spend {from_minor(value, currency)} {currency}"
    if tier.qualify_on == "orders":
        return f"{value:,} order" + ("" if value == 1 else "s")
    return f"growth {value:,}"


def _window_text(tier: TierDef) -> str:
    if tier.window.rolling_days is not None:
        return f"in the last {tier.window.rolling_days} days"
    return "this calendar year"


def _qualified(program: ProgramConfig, value: int) -> int:
    """Index of the highest tier whose threshold ``value`` reaches."""
    best = 0
    for i, tier in enumerate(program.tiers):
        if value >= threshold_value(tier, program.currency):
            best = i
    return best


def evaluate_tier(
    program: ProgramConfig,
    current_tier: str | None,
    history: History,
    now: datetime,
    period_end: datetime | None = None,
    *,
    tz: str = "UTC",
) -> TierDecision:
    """The tier a member holds at ``now``.

    ``period_end``: when the current tier is due for review (``review_at`` of when it was
    reached or last reviewed); a downgrade happens only once ``now`` has reached it. If
    reviews were missed, call again while ``next_review <= now``.
    """
    now = as_utc(now)
    tiers, cur_code = program.tiers, program.currency
    history = list(history)
    first = tiers[0]
    value = qualifying_value(first, history, now, tz)
    qualified = _qualified(program, value)
    names = [t.name.display() for t in tiers]
    codes = [t.code for t in tiers]
    reached = (
        f"{_metric(first, value, cur_code)} {_window_text(first)} reaches "
        f"{_metric(first, threshold_value(tiers[qualified], cur_code), cur_code)}"
    )

    current = program.tier(current_tier)
    if current is None:
        reason = f"joins at {names[qualified]}"
        if current_tier is not None:
            reason = (
                f"tier {current_tier!r} is no longer in the programme: placed at "
                + (names[qualified])
            )
        if qualified:
            reason += f" ({reached})"
        return TierDecision(
            codes[qualified], current_tier, "enter", reason, value, review_at(program, now, tz)
        )
    cur = codes.index(current.code)

    if period_end is None or now < as_utc(period_end):
        if qualified > cur:
            return TierDecision(
                codes[qualified],
                current.code,
                "upgrade",
                f"{reached} for {names[qualified]}",
                value,
                review_at(program, now, tz),
            )
        return TierDecision(
            current.code,
            current.code,
            "keep",
            f"{_metric(first, value, cur_code)} {_window_text(first)}; no review before "
            + (f"{as_utc(period_end):%Y-%m-%d %H:%M} UTC" if period_end else "a period end"),
            value,
            None if period_end is None else as_utc(period_end),
        )

    # A review: the period that ended decides whether the tier is kept.
    end = as_utc(period_end)
    if first.window.rolling_days is not None:
        start = end - timedelta(days=first.window.rolling_days)
    else:
        start = window_start(first, end - timedelta(microseconds=1), tz)
    ended = _sum(first, history, start, end, closed=False)  # [start, end)
    best = max(qualified, _qualified(program, ended))
    period = _period_text(first, end, tz)
    following = review_at(program, end, tz)
    if best > cur:
        top = max(value, ended)
        return TierDecision(
            codes[best],
            current.code,
            "upgrade",
            f"{_metric(first, top, cur_code)} reaches the threshold of {names[best]}",
            top,
            following,
        )
    retain = threshold_value(current, cur_code, retain=True)
    if ended >= retain or qualified >= cur:
        why = (
            f"{_metric(first, ended, cur_code)} {period} ≥ retain "
            f"{_metric(first, retain, cur_code)}"
            if ended >= retain
            else f"{_metric(first, value, cur_code)} {_window_text(first)} qualifies again"
        )
        return TierDecision(
            current.code, current.code, "keep", f"kept {names[cur]}: {why}", ended, following
        )
    target = best if program.tier_downgrade == "qualifying" else max(best, cur - 1)
    return TierDecision(
        codes[target],
        current.code,
        "downgrade",
        f"{_metric(first, ended, cur_code)} {period} is below the "
        f"{_metric(first, retain, cur_code)} needed to keep {names[cur]}: "
        f"down to {names[target]}",
        ended,
        following,
    )


def _period_text(tier: TierDef, end: datetime, tz: str) -> str:
    if tier.window.rolling_days is not None:
        return f"in the {tier.window.rolling_days} days to {end:%Y-%m-%d}"
    year = (end - timedelta(microseconds=1)).astimezone(zone(tz)).year
    return f"in {year}"


def progress(program: ProgramConfig, current: str | None, value: int) -> Progress:
    """How far ``value`` (the member's qualifying value) is from the tier above
    ``current``: "spend 320.00 more to reach 金卡 Gold"."""
    tiers = program.tiers
    tier = program.tier(current) or tiers[0]
    i = tiers.index(tier)
    if i == len(tiers) - 1:
        name = tier.name.display()
        return Progress(
            tier.code,
            None,
            value,
            None,
            0,
            f"at the top tier, {name}",
            f"已是最高等级：{tier.name.zh or name}",
        )
    nxt = tiers[i + 1]
    target = threshold_value(nxt, program.currency)
    missing = max(0, target - value)
    name, name_zh = nxt.name.display(), nxt.name.zh or nxt.name.display()
    if missing == 0:
        en, zh = f"qualifies for {name}", f"已达到{name_zh}升级条件"
    elif nxt.qualify_on == "spend":
        amount = from_minor(missing, program.currency)
        unit = "元" if program.currency == "CNY" else f" {program.currency}"
        en = f"spend {amount} more to reach {name}"
        zh = f"再消费 {amount}{unit} 即可升级为{name_zh}"
    elif nxt.qualify_on == "orders":
        en = f"place {missing} more order{'' if missing == 1 else 's'} to reach {name}"
        zh = f"再下 {missing} 单即可升级为{name_zh}"
    else:
        en = f"earn {missing:,} more growth to reach {name}"
        zh = f"再获得 {missing} 成长值即可升级为{name_zh}"
    return Progress(tier.code, nxt.code, value, target, missing, en, zh)
