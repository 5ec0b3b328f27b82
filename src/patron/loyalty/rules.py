"""Earning rules: how many points and how much growth an event earns, and why. Pure.

``evaluate(program, event, member)`` is the one place that decides what a member earns
for an order or an action (sign-up, check-in, review, referral, birthday, ...). It reads
no database and no clock: the caller passes the event, what it knows of the member and
what the member already got from capped rules. It returns the totals and a trace of
*every* rule — fired or not, and why — which ``POST /simulate`` and
``patron program simulate`` print as they are.

How points combine (exact rational arithmetic, rounded once with ``earn.rounding``)::

    base      = amount × earn rate                      (orders only; per line)
    tier      = base × (tier earn_multiplier − 1)       (the tier applies on top)
    then each rule that fires, lowest ``priority`` first (ties: file order):
      multiplier m  → the base (with tier, and with earlier multipliers) of the lines in
                      the rule's scope is multiplied by m: stacking multipliers multiply
                      (×2 birthday and ×1.5 skincare give ×3 on skincare lines)
      points_per_unit → amount in scope × rate × tier multiplier is added (not multiplied
                      by other rules' multipliers)
      bonus, streak bonus → added as is (no multiplier, not even the tier's)
    points = round(amount-based total) + bonuses

A rule's points are the rounded total after it minus before it, so the contributions
add up exactly to the total. Caps (per event, per member per period, campaign budget)
limit what a rule itself adds, tier uplift included; a capped rule's points are fixed at
the capped number (later multipliers do not multiply them). An ``exclusive`` rule that
fires stops every rule after it; a rule that adds nothing (e.g. its budget is spent) has
not fired and stops nothing. Growth follows the same steps with the ``growth_*`` effects,
no tier multiplier and no caps.

A rule's scope is the whole order, or only the lines matching its ``skus`` or
``categories`` (either list matches). Lines are weighed by their net amount and share
the order's basis amount pro rata, so an order-level discount lowers every line.
Calendar conditions (birthday, date window, weekday, check-in days, cap periods) use the
store's time zone.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from patron.kit.clock import as_utc, zone
from patron.kit.money import exponent
from patron.loyalty.program import (
    WEEKDAYS,
    EventKind,
    Period,
    ProgramConfig,
    Rounding,
    Rule,
    StreakBonus,
    TierDef,
    add_months,
    money_text,
)

__all__ = [
    "EarnEvent",
    "Evaluation",
    "EventKind",
    "Line",
    "MemberContext",
    "RuleTrace",
    "evaluate",
    "next_streak",
    "period_bounds",
    "streak_bonus_due",
    "usage_period",
]


@dataclass(frozen=True, slots=True)
class Line:
    """An order line: its net amount after line discounts, in minor units."""

    sku: str | None
    category: str | None
    net_minor: int

    def __post_init__(self) -> None:
        _check_minor("net_minor", self.net_minor)


@dataclass(frozen=True, slots=True)
class EarnEvent:
    """Something a member did. Orders carry an amount: ``amount_minor`` is the
    merchandise net of every discount, shipping and tax excluded (they are added when the
    programme's ``earn.basis`` is ``paid``). A referral carries the referee's qualifying
    order amount, if known, and the ``referral_role`` of the member who earns."""

    kind: EventKind
    occurred_at: datetime
    amount_minor: int = 0
    currency: str | None = None
    lines: Sequence[Line] = ()
    channel: str | None = None
    shipping_minor: int = 0
    tax_minor: int = 0
    referral_role: Literal["referrer", "referee"] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", EventKind(self.kind))
        object.__setattr__(self, "occurred_at", as_utc(self.occurred_at))
        object.__setattr__(self, "lines", tuple(self.lines))
        for name in ("amount_minor", "shipping_minor", "tax_minor"):
            _check_minor(name, getattr(self, name))
        if self.currency is not None:
            object.__setattr__(self, "currency", self.currency.upper())
        if self.kind == EventKind.order and self.currency is None:
            raise ValueError("currency: required for an order")
        if self.kind != EventKind.order and (self.lines or self.shipping_minor or self.tax_minor):
            raise ValueError("lines, shipping and tax belong to orders only")
        if self.kind == EventKind.referral and self.referral_role is None:
            raise ValueError("referral_role: required for a referral (referrer or referee)")
        if self.amount_minor and self.currency is None:
            raise ValueError("currency: required with an amount")


@dataclass(frozen=True, slots=True)
class MemberContext:
    """What the caller knows of the member at the time of the event.

    ``rule_usage``: points each capped rule already gave this member in the rule's
    current period (``usage_period``). ``budget_left``: points left in each budgeted
    rule's campaign (a rule missing here has its whole budget left).
    """

    timezone: str = "UTC"  # the store's
    tier: str | None = None  # None: the first tier
    first_order: bool = False
    birthday: date | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    rule_usage: Mapping[str, int] = field(default_factory=dict)
    budget_left: Mapping[str, int] = field(default_factory=dict)
    last_check_in: date | None = None  # store-time day
    streak: int = 0  # days in the streak ending on last_check_in
    referrals_rewarded: int = 0  # as a referrer, so far


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """One rule's part in an evaluation. ``reason`` says why it did not fire (its first
    failing condition) or what it did; ``cap`` names the cap that cut it."""

    rule_id: str
    label: str
    priority: int
    stacking: str
    fired: bool
    reason: str
    points: int = 0
    growth: int = 0
    wanted_points: int = 0
    cap: str | None = None
    condition: str | None = None  # the failing condition's name: `channels`, `event`, ...


@dataclass(frozen=True, slots=True)
class Evaluation:
    kind: EventKind
    points: int
    growth: int
    base_points: int  # the programme's own: earn rate, referral reward, birthday gift
    base_growth: int
    tier_points: int  # the tier earn multiplier's uplift of amount-based points
    tier: str | None
    timezone: str
    local_date: date
    basis_minor: int
    currency: str | None
    rules: tuple[RuleTrace, ...]
    notes: tuple[str, ...]
    streak: int | None = None  # check-ins: the streak after this one

    @property
    def fired(self) -> list[RuleTrace]:
        return [t for t in self.rules if t.fired]

    def points_by_rule(self) -> dict[str, int]:
        """Points each fired rule added: what the ledger records as the rule's usage."""
        return {t.rule_id: t.points for t in self.rules if t.fired}

    def explain(self) -> str:
        head = f"{self.kind} on {self.local_date} ({self.timezone})"
        if self.currency is not None and self.kind == EventKind.order:
            head += f": {money_text(self.basis_minor, self.currency)}"
        if self.tier is not None:
            head += f", tier {self.tier}"
        out = [head, *(f"  · {note}" for note in self.notes)]
        other_events = []
        for t in self.rules:
            if t.condition == "event":
                other_events.append(t.rule_id)
                continue
            mark = "✓" if t.fired else "✗"
            gain = ""
            if t.fired:
                gain = f"  {t.points:+} points" + (f", {t.growth:+} growth" if t.growth else "")
            out.append(f"  {mark} {t.label} [{t.priority}, {t.stacking}]: {t.reason}{gain}")
        if other_events:
            out.append(f"  - for other events: {', '.join(other_events)}")
        out.append(f"= {self.points} points, {self.growth} growth")
        return "\n".join(out)


# -- check-in streaks ----------------------------------------------------------------------


def next_streak(last: date | None, streak: int, today: date) -> int | None:
    """The streak after checking in on store-time day ``today``, given the last check-in
    day and the streak that ended on it; None if the member already checked in today
    (or on a later day: a clock that went back). A missed day starts again at 1."""
    if last is None or streak < 1:
        return 1
    if today <= last:
        return None
    return streak + 1 if today - last == timedelta(days=1) else 1


def streak_bonus_due(bonus: StreakBonus, streak: int) -> bool:
    if bonus.repeat:
        return streak > 0 and streak % bonus.day == 0
    return streak == bonus.day


# -- periods -------------------------------------------------------------------------------


def period_bounds(period: Period, at: datetime, tz: str) -> tuple[datetime | None, datetime | None]:
    """The store-time period (day, ISO week, month, year) containing ``at``, as
    [start, end) in UTC; ``ever`` is unbounded (None, None)."""
    if period == "ever":
        return None, None
    day = as_utc(at).astimezone(zone(tz)).date()
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = day.replace(day=1)
        end = add_months(start, 1)
    else:
        start, end = date(day.year, 1, 1), date(day.year + 1, 1, 1)
    return _local_midnight(start, tz), _local_midnight(end, tz)


def usage_period(rule: Rule, at: datetime, tz: str) -> tuple[datetime | None, datetime | None]:
    """The period over which ``MemberContext.rule_usage[rule.id]`` is summed for an event
    at ``at`` (unbounded when the rule has no per-member cap)."""
    return period_bounds(rule.caps.period or "ever", at, tz)


def _local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(), zone(tz)).astimezone(UTC)


# -- evaluation ----------------------------------------------------------------------------


def _check_minor(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: must be a non-negative integer of minor units")


def _round(value: Fraction, mode: Rounding) -> int:
    if mode == "floor":
        return math.floor(value)
    if mode == "ceil":
        return math.ceil(value)
    return math.floor(value + Fraction(1, 2))  # half up


def _num(value: Decimal | Fraction | int) -> str:
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    text = format(Decimal(value).normalize(), "f")
    return text


def _points(value: Decimal) -> str:
    return f"{_num(value)} point" + ("" if value == 1 else "s")


class _Pot:
    """A running exact total: per-line values that multipliers scale, plus an extra part
    that they do not (per-unit points of rules, capped contributions). Every value is an
    integer numerator over one shared denominator: exact, and much cheaper than Fraction.
    """

    __slots__ = ("den", "extra", "nums", "rounding")

    def __init__(self, nums: list[int], den: int, rounding: Rounding) -> None:
        self.nums, self.den, self.extra = nums, den, 0
        self.rounding: Rounding = rounding

    @classmethod
    def of(cls, shares: list[Fraction], factor: Fraction, rounding: Rounding) -> _Pot:
        den = math.lcm(*(x.denominator for x in shares)) * factor.denominator
        nums = [x.numerator * (den // x.denominator) * factor.numerator for x in shares]
        return cls([n // factor.denominator for n in nums], den, rounding)

    def rounded(self) -> int:
        total, den = sum(self.nums, self.extra), self.den
        if self.rounding == "floor":
            return total // den
        if self.rounding == "ceil":
            return -(-total // den)
        return (2 * total + den) // (2 * den)  # half up

    def _over(self, q: int) -> None:
        """Make ``q`` divide the denominator."""
        scale = q // math.gcd(self.den, q)
        if scale != 1:
            self.nums = [n * scale for n in self.nums]
            self.extra *= scale
            self.den *= scale

    def multiply(self, scope: list[int], factor: Fraction) -> None:
        """Multiply the lines in ``scope`` by ``factor``, exactly."""
        p, q = factor.numerator, factor.denominator
        if q != 1:  # everything over q more; the scope's lines then by p, not q
            self.nums = [n * q for n in self.nums]
            self.extra *= q
            self.den *= q
        for i in scope:
            self.nums[i] = self.nums[i] // q * p

    def add(self, value: Fraction) -> None:
        self._over(value.denominator)
        self.extra += value.numerator * (self.den // value.denominator)

    def add_int(self, value: int) -> None:
        self.extra += value * self.den

    def copy(self) -> _Pot:
        pot = _Pot(list(self.nums), self.den, self.rounding)
        pot.extra = self.extra
        return pot

    def restore(self, saved: _Pot) -> None:
        self.nums, self.den, self.extra = saved.nums, saved.den, saved.extra


@dataclass(slots=True)
class _Situation:
    """Everything about the event a condition looks at, computed once."""

    event: EarnEvent
    member: MemberContext
    today: date
    weekday: str
    tier_code: str | None
    basis: int  # minor units
    currency: str
    lines: list[Line]
    shares: list[Fraction]  # each line's part of the basis


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A rule with its numbers as exact fractions and its lists as sets, made once."""

    rule: Rule
    label: str
    multiplier: Fraction | None
    per_minor: Fraction | None  # points per minor unit
    growth_multiplier: Fraction | None
    growth_per_minor: Fraction | None
    skus: frozenset[str] | None
    categories: frozenset[str] | None  # casefolded
    channels: frozenset[str] | None  # casefolded
    min_minor: int | None
    max_minor: int | None


@dataclass(frozen=True, slots=True)
class _Programme:
    rate: Fraction  # base points per minor unit
    growth_rate: Fraction
    tier_factors: dict[str, Fraction]
    rules: tuple[_Compiled, ...]  # in evaluation order


_CACHE: dict[int, tuple[ProgramConfig, _Programme]] = {}
_CACHE_SIZE = 64


def _compile(program: ProgramConfig) -> _Programme:
    """The programme's numbers and rule order, computed once per configuration object."""
    hit = _CACHE.get(id(program))
    if hit is not None and hit[0] is program:
        return hit[1]
    scale = 10 ** exponent(program.currency)

    def per_minor(value: Decimal | None, unit: Decimal) -> Fraction | None:
        return None if value is None else Fraction(value) / (Fraction(unit) * scale)

    def fraction(value: Decimal | None) -> Fraction | None:
        return None if value is None else Fraction(value)

    def folded(values: list[str] | None) -> frozenset[str] | None:
        return None if values is None else frozenset(v.casefold() for v in values)

    def minor(value: Decimal | None) -> int | None:
        return None if value is None else int(value * scale)

    ordered = sorted(enumerate(program.rules), key=lambda p: (p[1].priority, p[0]))
    rules = tuple(
        _Compiled(
            rule,
            rule.label(),
            fraction(rule.effect.multiplier),
            per_minor(rule.effect.points_per_unit, rule.effect.unit),
            fraction(rule.effect.growth_multiplier),
            per_minor(rule.effect.growth_per_unit, rule.effect.unit),
            None if rule.when.skus is None else frozenset(rule.when.skus),
            folded(rule.when.categories),
            folded(rule.when.channels),
            minor(rule.when.min_amount),
            minor(rule.when.max_amount),
        )
        for _, rule in ordered
    )
    compiled = _Programme(
        rate=per_minor(program.earn.points_per_unit, program.earn.unit) or Fraction(0),
        growth_rate=per_minor(program.growth.per_unit, program.growth.unit) or Fraction(0),
        tier_factors={t.code: Fraction(t.benefits.earn_multiplier) for t in program.tiers},
        rules=rules,
    )
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()  # a handful of programmes are live at a time
    _CACHE[id(program)] = (program, compiled)
    return compiled


def evaluate(program: ProgramConfig, event: EarnEvent, member: MemberContext) -> Evaluation:
    """What ``event`` earns ``member`` under ``program``, with a trace of every rule.

    Raises ValueError when the event's currency is not the programme's (convert first).
    """
    tz = member.timezone
    today = event.occurred_at.astimezone(zone(tz)).date()
    notes: list[str] = []
    tier = _member_tier(program, member, notes)
    currency = program.currency
    if event.currency is not None and event.currency != currency:
        raise ValueError(f"currency: the event is in {event.currency}, the programme in {currency}")
    compiled = _compile(program)

    basis = 0
    if event.kind == EventKind.order:
        basis = event.amount_minor
        if program.earn.basis == "paid":
            basis += event.shipping_minor + event.tax_minor
    lines, shares = _shares(event, basis)
    sit = _Situation(
        event, member, today, WEEKDAYS[today.weekday()], tier.code, basis, currency, lines, shares
    )

    # The programme's own points and growth.
    earn, growth_cfg = program.earn, program.growth
    rate, g_rate = compiled.rate, compiled.growth_rate
    tier_factor = compiled.tier_factors[tier.code]
    points = _Pot.of(shares, rate * tier_factor, earn.rounding)
    growth = _Pot.of(shares, g_rate, growth_cfg.rounding)
    base_points = _round(basis * rate, earn.rounding)
    tier_points = points.rounded() - base_points
    base_growth = growth.rounded()
    bonus_base = 0  # points that are not amount-based
    if event.kind == EventKind.order:
        notes.append(
            f"base: {_points(earn.points_per_unit)} per {_num(earn.unit)} {currency} "
            f"on {money_text(basis, currency)} ({earn.basis}, {earn.rounding}) = {base_points}"
        )
        if tier_points or tier_factor != 1:
            notes.append(
                f"tier {tier.name.display()}: ×{_num(tier.benefits.earn_multiplier)} "
                f"on top = {tier_points:+}"
            )
        notes.append(
            f"growth: {_num(growth_cfg.per_unit)} per {_num(growth_cfg.unit)} {currency} "
            f"= {base_growth}"
        )
    elif event.kind == EventKind.birthday:
        bonus_base = tier.benefits.birthday_gift_points
        notes.append(f"birthday gift of tier {tier.name.display()}: {bonus_base}")
    elif event.kind == EventKind.referral:
        bonus_base = _referral_points(program, event, member, notes)

    # Check-ins: one a store-time day, with a streak.
    streak: int | None = None
    duplicate: str | None = None
    if event.kind == EventKind.check_in:
        streak = next_streak(member.last_check_in, member.streak, today)
        if streak is None:
            duplicate = f"already checked in on {member.last_check_in}"
            notes.append(f"{duplicate}: nothing earned")
        else:
            notes.append(f"check-in day {streak} of the streak")

    traces: list[RuleTrace] = []
    rule_points = 0
    rule_growth = 0
    stopper: Rule | None = None
    for compiled_rule in compiled.rules:
        rule = compiled_rule.rule
        failure: tuple[str, str] | None
        if stopper is not None:
            why = f"stopped: exclusive rule {stopper.id} (priority {stopper.priority}) fired"
            failure = "stacking", why
        elif not rule.active:
            failure = "active", "inactive"
        else:
            failure = _failure(compiled_rule, sit)
            if failure is None and duplicate is not None:
                failure = "check_in", duplicate
        if failure is not None:
            condition, why = failure
            traces.append(
                RuleTrace(
                    rule.id,
                    compiled_rule.label,
                    rule.priority,
                    rule.stacking,
                    False,
                    why,
                    condition=condition,
                )
            )
            continue
        trace = _apply(compiled_rule, sit, points, growth, tier_factor, streak)
        traces.append(trace)
        if trace.fired:
            rule_points += trace.points
            rule_growth += trace.growth
            if rule.stacking == "exclusive":
                stopper = rule

    if duplicate is not None:
        bonus_base = 0
    total_points = base_points + tier_points + rule_points + bonus_base
    total_growth = base_growth + rule_growth
    return Evaluation(
        kind=event.kind,
        points=total_points,
        growth=total_growth,
        base_points=base_points + bonus_base,
        base_growth=base_growth,
        tier_points=tier_points,
        tier=tier.code,
        timezone=tz,
        local_date=today,
        basis_minor=basis,
        currency=currency if event.kind == EventKind.order or event.amount_minor else None,
        rules=tuple(traces),
        notes=tuple(notes),
        streak=streak,
    )


def _member_tier(program: ProgramConfig, member: MemberContext, notes: list[str]) -> TierDef:
    if member.tier is None:
        return program.tiers[0]
    tier = program.tier(member.tier)
    if tier is None:
        first = program.tiers[0]
        notes.append(
            f"tier {member.tier!r} is not in the programme: counted as {first.name.display()}"
        )
        return first
    return tier


def _referral_points(
    program: ProgramConfig, event: EarnEvent, member: MemberContext, notes: list[str]
) -> int:
    referral = program.referral
    if referral is None:
        notes.append("the programme has no referral reward")
        return 0
    minimum = int(referral.qualifying_min_order.scaleb(exponent(program.currency)))
    if event.amount_minor and event.amount_minor < minimum:
        notes.append(
            f"referral: qualifying order {money_text(event.amount_minor, program.currency)} "
            f"is below the minimum {money_text(minimum, program.currency)}"
        )
        return 0
    if event.referral_role == "referee":
        notes.append(f"referral reward to the referee: {referral.referee_points}")
        return referral.referee_points
    cap = referral.per_referrer_cap
    if cap is not None and member.referrals_rewarded >= cap:
        notes.append(
            f"referral: cap of {cap} rewarded referrals reached ({member.referrals_rewarded})"
        )
        return 0
    notes.append(f"referral reward to the referrer: {referral.referrer_points}")
    return referral.referrer_points


def _shares(event: EarnEvent, basis: int) -> tuple[list[Line], list[Fraction]]:
    """The lines and each line's part of the basis amount, pro rata to its net amount."""
    lines = list(event.lines)
    total = sum(line.net_minor for line in lines)
    if not lines or total == 0:
        # No lines (or only free ones): the amount sits on a line that matches no filter.
        return [*lines, Line(None, None, basis)], [*(Fraction(0) for _ in lines), Fraction(basis)]
    return lines, [Fraction(basis * line.net_minor, total) for line in lines]


def _listed(values: Sequence[object]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _in_scope(rule: _Compiled, line: Line) -> bool:
    if rule.skus is not None and line.sku is not None and line.sku in rule.skus:
        return True
    if rule.categories is not None and line.category is not None:
        return line.category.casefold() in rule.categories
    return False


def _failure(compiled: _Compiled, sit: _Situation) -> tuple[str, str] | None:
    """The first condition of a rule that does not hold: its name in the configuration
    and why, in plain words (None: all hold)."""
    rule = compiled.rule
    event, member, when = sit.event, sit.member, rule.when
    if event.kind != rule.event:
        return "event", f"event {event.kind} is not {rule.event}"
    window = when.date_window
    if window is not None:
        span = f"{window.start or '…'}..{window.end or '…'}"
        if window.start is not None and sit.today < window.start:
            return "date_window", f"{sit.today} is before the window {span} ({member.timezone})"
        if window.end is not None and sit.today > window.end:
            return "date_window", f"{sit.today} is after the window {span} ({member.timezone})"
    if when.weekdays is not None and sit.weekday not in when.weekdays:
        return "weekdays", (
            f"weekday {sit.weekday} not in {_listed(when.weekdays)} ({member.timezone})"
        )
    if when.channels is not None:
        if event.channel is None:
            return "channels", (
                f"no channel on the event; rule needs one of {_listed(when.channels)}"
            )
        if compiled.channels is not None and event.channel.casefold() not in compiled.channels:
            return "channels", f"channel {event.channel} not in {_listed(when.channels)}"
    if when.tiers is not None and sit.tier_code not in when.tiers:
        return "tiers", f"tier {sit.tier_code} not in {_listed(when.tiers)}"
    if when.first_order is not None and member.first_order != when.first_order:
        why = "not the member's first order" if when.first_order else "a first order"
        return "first_order", why
    if when.birthday is not None:
        failure = _birthday_failure(when.birthday, member.birthday, sit.today)
        if failure is not None:
            return "birthday", failure
    for key, expected in (when.attributes or {}).items():
        if key not in member.attributes:
            return "attributes", f"attribute {key} missing; rule needs {_expected(expected)}"
        actual = member.attributes[key]
        options = expected if isinstance(expected, list) else [expected]
        if not any(_same(actual, option) for option in options):
            return "attributes", f"attribute {key} is {actual!r}, rule needs {_expected(expected)}"
    minimum, maximum = compiled.min_minor, compiled.max_minor
    if minimum is not None and sit.basis < minimum:
        return "min_amount", (
            f"order amount {money_text(sit.basis, sit.currency)} below the minimum "
            f"{money_text(minimum, sit.currency)}"
        )
    if maximum is not None and sit.basis > maximum:
        return "max_amount", (
            f"order amount {money_text(sit.basis, sit.currency)} above the maximum "
            f"{money_text(maximum, sit.currency)}"
        )
    if when.product_filter and not any(_in_scope(compiled, line) for line in sit.lines):
        wanted = []
        if when.skus is not None:
            wanted.append(f"sku in {_listed(when.skus)}")
        if when.categories is not None:
            wanted.append(f"category in {_listed(when.categories)}")
        return ("skus" if when.skus is not None else "categories"), (
            "no line with " + " or ".join(wanted)
        )
    return None


def _same(actual: Any, expected: Any) -> bool:
    # Exact: 1 is not "1", and True is not 1.
    return type(actual) is type(expected) and bool(actual == expected)


def _expected(expected: Any) -> str:
    if isinstance(expected, list):
        return "one of " + _listed([repr(x) for x in expected])
    return repr(expected)


def birthday_in(birthday: date, year: int) -> date:
    """The member's birthday in ``year``: 29 February is celebrated on the 28th in
    common years."""
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def _birthday_failure(kind: str, birthday: date | None, today: date) -> str | None:
    if birthday is None:
        return "no birthday on file"
    if kind == "month":
        if today.month != birthday.month:
            return (
                f"{calendar.month_name[today.month]} is not the birthday month "
                f"({calendar.month_name[birthday.month]})"
            )
        return None
    if today != birthday_in(birthday, today.year):
        return f"{today} is not the birthday ({birthday:%m-%d})"
    return None


def _apply(
    compiled: _Compiled,
    sit: _Situation,
    points: _Pot,
    growth: _Pot,
    tier_factor: Fraction,
    streak: int | None,
) -> RuleTrace:
    """Apply a rule whose conditions hold; updates the pots in place when it fires."""
    rule = compiled.rule
    effect, cur = rule.effect, sit.currency
    if rule.when.product_filter:
        scope = [i for i, line in enumerate(sit.lines) if _in_scope(compiled, line)]
        amount = sum((sit.shares[i] for i in scope), Fraction(0))
        where = f"matching lines ({money_text(math.floor(amount), cur)})"
    else:
        scope = list(range(len(sit.lines)))
        amount = Fraction(sit.basis)
        where = f"the order ({money_text(sit.basis, cur)})"
    saved_points, saved_growth = points.copy(), growth.copy()
    parts: list[str] = []

    before = points.rounded()
    if effect.multiplier is not None and compiled.multiplier is not None:
        points.multiply(scope, compiled.multiplier)
        parts.append(f"×{_num(effect.multiplier)} on the base of {where}")
    if effect.points_per_unit is not None and compiled.per_minor is not None:
        points.add(amount * compiled.per_minor * tier_factor)
        parts.append(f"{_points(effect.points_per_unit)} per {_num(effect.unit)} {cur} on {where}")
    from_amount = points.rounded() - before
    bonus = effect.bonus or 0
    if effect.bonus is not None:
        parts.append(f"bonus {effect.bonus}")
    streak_bonus = effect.streak_bonus
    if streak_bonus is not None and streak is not None and streak_bonus_due(streak_bonus, streak):
        bonus += streak_bonus.points
        parts.append(f"day {streak} of the streak: bonus {streak_bonus.points}")

    wanted = from_amount + bonus
    allowed, cap = _allowance(rule, sit.member)
    got = wanted
    if allowed is not None and wanted > allowed:
        if from_amount <= 0:
            got = from_amount + max(0, min(bonus, allowed - from_amount))
        else:
            kept = min(from_amount, allowed)
            if kept < from_amount:
                points.restore(saved_points)
                points.add_int(kept)
            got = kept + min(bonus, allowed - kept)
    else:
        cap = None

    g_before = growth.rounded()
    if effect.growth_multiplier is not None and compiled.growth_multiplier is not None:
        growth.multiply(scope, compiled.growth_multiplier)
        parts.append(f"growth ×{_num(effect.growth_multiplier)} on {where}")
    if effect.growth_per_unit is not None and compiled.growth_per_minor is not None:
        growth.add(amount * compiled.growth_per_minor)
        parts.append(f"{_num(effect.growth_per_unit)} growth per {_num(effect.unit)} {cur}")
    gained = growth.rounded() - g_before + (effect.growth_bonus or 0)
    if effect.growth_bonus is not None:
        parts.append(f"growth bonus {effect.growth_bonus}")

    label = (rule.id, compiled.label, rule.priority, rule.stacking)
    if got == 0 and (gained == 0 or cap is not None):
        points.restore(saved_points)
        growth.restore(saved_growth)
        if cap is not None:
            reason = f"nothing left under the {cap}"
        else:
            reason = "adds nothing: " + "; ".join(parts) + " rounds to 0"
        return RuleTrace(*label, False, reason, 0, 0, wanted, cap, "caps" if cap else "effect")
    reason = "; ".join(parts)
    if cap is not None:
        reason += f" (wanted {wanted}, cut by the {cap})"
    return RuleTrace(*label, True, reason, got, gained, wanted, cap)


def _allowance(rule: Rule, member: MemberContext) -> tuple[int | None, str | None]:
    """The most points the rule may still add, and the cap that sets it."""
    caps = rule.caps
    limits: list[tuple[int, str]] = []
    if caps.per_event is not None:
        limits.append((caps.per_event, f"per-event cap {caps.per_event}"))
    if caps.per_customer is not None:
        used = max(0, member.rule_usage.get(rule.id, 0))
        limits.append(
            (
                max(0, caps.per_customer - used),
                f"per-member cap {caps.per_customer} per {caps.period} ({used} used)",
            )
        )
    if caps.budget is not None:
        left = min(caps.budget, max(0, member.budget_left.get(rule.id, caps.budget)))
        limits.append((left, f"campaign budget {caps.budget} ({left} left)"))
    if not limits:
        return None, None
    return min(limits)
