"""The loyalty programme a merchant configures: earn rate, tiers, rules, rewards.

One ``ProgramConfig`` per store, written as YAML (``patron program apply``) or JSON (the
API). It is strict: an unknown key, a wrong type or an inconsistent value is refused with
the path of the field (``tiers.2.threshold: ...``) and nothing is applied. Amounts are
decimals in the programme's currency (major units, ``199.00``); points and growth are
whole numbers. The rules that *use* this configuration are pure and live next to it:
``rules.py`` (how many points an event earns) and ``tiers.py`` (which tier a member holds).

``version`` is assigned by the database when a configuration is applied; the identity
of a configuration is its ``fingerprint()``, a hash of its canonical JSON.
"""

from __future__ import annotations

import calendar
import enum
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import yaml  # type: ignore[import-untyped]
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from patron.kit.clock import as_utc, zone
from patron.kit.money import MAX_MAJOR, MoneyError, from_minor, to_minor
from patron.kit.text import Category, ExternalId, Label, ShortText

# Upper bounds that keep every product of a rate and an amount far inside a BIGINT.
MAX_POINTS = 10**9  # points or growth in one configured number (a bonus, a cap, a cost)
MAX_RATE = Decimal(10**6)  # points per currency unit
MAX_MULTIPLIER = Decimal(100)


def _canonical(value: Decimal) -> str:
    """A decimal's canonical text: ``1``, ``1.5``, ``0.01`` (never ``1.0`` or ``1E+2``)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


# Decimals serialise to canonical strings in JSON, so `1` and `1.0` hash alike.
_Dec = Annotated[
    Decimal,
    Field(allow_inf_nan=False, max_digits=20),
    PlainSerializer(_canonical, return_type=str, when_used="json"),
]
Money = Annotated[_Dec, Field(ge=0, lt=MAX_MAJOR)]
Rate = Annotated[_Dec, Field(ge=0, le=MAX_RATE)]
Unit = Annotated[_Dec, Field(gt=0, lt=MAX_MAJOR)]
Multiplier = Annotated[_Dec, Field(ge=0, le=MAX_MULTIPLIER)]
Points = Annotated[StrictInt, Field(ge=0, le=MAX_POINTS)]
Percent = Annotated[StrictInt, Field(ge=1, le=100)]
Slug = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
]
Rounding = Literal["floor", "round", "ceil"]
Period = Literal["day", "week", "month", "year", "ever"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class EventKind(enum.StrEnum):
    """What a member did. Only orders carry an amount."""

    order = "order"
    sign_up = "sign_up"
    profile_completed = "profile_completed"
    check_in = "check_in"  # 签到
    review = "review"
    referral = "referral"
    share = "share"
    birthday = "birthday"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalText(_Strict):
    """A name in English and/or Chinese, e.g. ``{en: Gold, zh: 金卡}``."""

    en: ShortText | None = None
    zh: ShortText | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        return {"en": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _some(self) -> LocalText:
        if not self.en and not self.zh:
            raise ValueError("give `en`, `zh` or both")
        return self

    def display(self) -> str:
        """``金卡 Gold``: both names when both are given."""
        return " ".join(x for x in (self.zh, self.en) if x)


# -- currency: points, growth, pending, expiry, debt ---------------------------------------


class EarnConfig(_Strict):
    """The base earn rate of orders: ``points_per_unit`` points per ``unit`` spent."""

    points_per_unit: Rate = Decimal(1)
    unit: Unit = Decimal(1)
    rounding: Rounding = "floor"
    basis: Literal["net", "paid"] = Field(
        "net",
        description="net: merchandise after discounts, shipping and tax excluded; "
        "paid: the whole amount paid, shipping and tax included.",
    )


class GrowthConfig(_Strict):
    """Growth value (成长值) earned by orders; it qualifies tiers and is never spent."""

    per_unit: Rate = Decimal(1)
    unit: Unit = Decimal(1)
    rounding: Rounding = "floor"
    pending: Literal["same_as_points", "immediate"] = "same_as_points"


class RollingExpiry(_Strict):
    """Each earned lot expires ``months`` after it was earned, at the end of that day."""

    policy: Literal["rolling_months"]
    months: StrictInt = Field(ge=1, le=120)


class FixedDateExpiry(_Strict):
    """Lots expire on a fixed day each year (store time), once held ``min_holding_months``."""

    policy: Literal["fixed_date"]
    month: StrictInt = Field(ge=1, le=12)
    day: StrictInt = Field(ge=1, le=31)
    min_holding_months: StrictInt = Field(0, ge=0, le=60)

    @model_validator(mode="after")
    def _real_day(self) -> FixedDateExpiry:
        if (self.month, self.day) == (2, 29):
            raise ValueError("day: 02-29 is not in every year; use 02-28 or 03-01")
        if self.day > calendar.monthrange(2025, self.month)[1]:
            raise ValueError(f"day: month {self.month} has no day {self.day}")
        return self


class NeverExpiry(_Strict):
    policy: Literal["never"]


Expiry = Annotated[RollingExpiry | FixedDateExpiry | NeverExpiry, Field(discriminator="policy")]


class DebtPolicy(_Strict):
    """When a refund claws back points already spent: record a debt (paid from the next
    points earned), or take only what is available and write the rest off."""

    allow_debt: StrictBool = True


# -- tiers ---------------------------------------------------------------------------------


class TierWindow(_Strict):
    """Where qualifying value is counted: ``calendar_year`` (store time) or
    ``{rolling_days: N}`` (the last N days)."""

    rolling_days: StrictInt | None = Field(None, ge=1, le=3660)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if value == "calendar_year":
            return {"rolling_days": None}
        if isinstance(value, str):
            raise ValueError(f"{value!r}: use `calendar_year` or `{{rolling_days: N}}`")
        if isinstance(value, Mapping) and "rolling_days" not in value:
            raise ValueError("use `calendar_year` or `{rolling_days: N}`")
        return value

    @model_serializer
    def _dump(self) -> str | dict[str, int]:
        if self.rolling_days is None:
            return "calendar_year"
        return {"rolling_days": self.rolling_days}

    @property
    def calendar_year(self) -> bool:
        return self.rolling_days is None


class Benefits(_Strict):
    earn_multiplier: _Dec = Field(Decimal(1), ge=1, le=10)
    member_price_percent: Percent = Field(
        100, description="Share of the list price a member of this tier pays (95 = 5% off)."
    )
    free_shipping: StrictBool = False
    birthday_gift_points: Points = 0
    member_only_rewards: StrictBool = False


class TierDef(_Strict):
    code: Slug
    name: LocalText
    qualify_on: Literal["growth", "spend", "orders"] = "growth"
    threshold: _Dec = Field(
        ge=0, lt=MAX_MAJOR, description="Growth, spend (in the currency) or orders to reach."
    )
    window: TierWindow = TierWindow(rolling_days=None)
    retain_threshold: _Dec | None = Field(
        None,
        ge=0,
        lt=MAX_MAJOR,
        description="Value needed over a period to keep the tier at its end (default: "
        "the threshold).",
    )
    benefits: Benefits = Benefits()

    @model_validator(mode="after")
    def _consistent(self) -> TierDef:
        if self.qualify_on != "spend":
            for name in ("threshold", "retain_threshold"):
                value = getattr(self, name)
                if value is not None and value != value.to_integral_value():
                    raise ValueError(f"{name}: {self.qualify_on} is counted in whole numbers")
        if self.retain_threshold is not None and self.retain_threshold > self.threshold:
            raise ValueError(
                f"retain_threshold: {_canonical(self.retain_threshold)} is above the "
                f"threshold {_canonical(self.threshold)}"
            )
        return self

    @property
    def retain(self) -> Decimal:
        return self.threshold if self.retain_threshold is None else self.retain_threshold


# -- earning rules -------------------------------------------------------------------------

Scalar = StrictBool | StrictInt | Annotated[str, StringConstraints(max_length=255)]


class DateWindow(_Strict):
    """Calendar days in the store's time zone, both ends included."""

    start: date | None = None
    end: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> DateWindow:
        if self.start is None and self.end is None:
            raise ValueError("give `start`, `end` or both")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end: {self.end} is before start {self.start}")
        return self


class Conditions(_Strict):
    """All must hold for a rule to fire. Lists mean "one of"."""

    min_amount: Money | None = Field(None, description="Order basis amount, inclusive.")
    max_amount: Money | None = Field(None, description="Order basis amount, inclusive.")
    skus: list[ExternalId] | None = Field(None, min_length=1, max_length=1000)
    categories: list[Category] | None = Field(None, min_length=1, max_length=1000)
    channels: list[Label] | None = Field(None, min_length=1, max_length=100)
    tiers: list[Slug] | None = Field(None, min_length=1, max_length=100)
    attributes: dict[str, Scalar | list[Scalar]] | None = Field(None, max_length=50)
    first_order: StrictBool | None = None
    birthday: Literal["day", "month"] | None = None
    date_window: DateWindow | None = None
    weekdays: list[Weekday] | None = Field(None, min_length=1, max_length=7)

    @model_validator(mode="after")
    def _range(self) -> Conditions:
        low, high = self.min_amount, self.max_amount
        if low is not None and high is not None and high < low:
            raise ValueError(f"max_amount: {high} is below min_amount {low}")
        return self

    @property
    def product_filter(self) -> bool:
        return self.skus is not None or self.categories is not None


class StreakBonus(_Strict):
    """Extra points on day ``day`` of a check-in streak (and every ``day`` days after, if
    ``repeat``)."""

    day: StrictInt = Field(ge=2, le=366)
    points: Points
    repeat: StrictBool = True


class Effect(_Strict):
    """What a rule adds. Per-unit amounts and multipliers work on the rule's scope: the
    whole order, or only its matching lines when the rule filters skus or categories."""

    points_per_unit: Rate | None = None
    unit: Unit = Decimal(1)
    multiplier: Multiplier | None = Field(None, description="Multiplies the base points.")
    bonus: Points | None = None
    growth_per_unit: Rate | None = None
    growth_multiplier: Multiplier | None = None
    growth_bonus: Points | None = None
    streak_bonus: StreakBonus | None = None

    @model_validator(mode="after")
    def _does_something(self) -> Effect:
        fields = (
            "points_per_unit",
            "multiplier",
            "bonus",
            "growth_per_unit",
            "growth_multiplier",
            "growth_bonus",
            "streak_bonus",
        )
        if all(getattr(self, f) is None for f in fields):
            raise ValueError(f"give at least one of {', '.join(fields)}")
        return self


class Caps(_Strict):
    """Limits on the points a rule adds (growth is not capped, but a rule capped to zero
    points does not fire, so it adds no growth either)."""

    per_event: Points | None = Field(None, description="Per order (or other event).")
    per_customer: Points | None = Field(None, description="Per member per `period`.")
    period: Period | None = Field(None, description="Store-time period of `per_customer`.")
    budget: Points | None = Field(None, description="Campaign total, all members together.")

    @model_validator(mode="after")
    def _period(self) -> Caps:
        if self.per_customer is not None and self.period is None:
            raise ValueError("period: required with per_customer (day|week|month|year|ever)")
        if self.period is not None and self.per_customer is None:
            raise ValueError("per_customer: required with period")
        return self


class Rule(_Strict):
    id: Slug
    name: LocalText | None = None
    event: EventKind = EventKind.order
    priority: StrictInt = Field(100, ge=0, le=1_000_000, description="Lower runs first.")
    stacking: Literal["stack", "exclusive"] = Field(
        "stack", description="An exclusive rule that fires stops every rule after it."
    )
    active: StrictBool = True
    when: Conditions = Conditions()
    effect: Effect
    caps: Caps = Caps()

    @model_validator(mode="after")
    def _fits_event(self) -> Rule:
        if self.event != EventKind.order:
            only_orders = {
                "when.min_amount": self.when.min_amount,
                "when.max_amount": self.when.max_amount,
                "when.skus": self.when.skus,
                "when.categories": self.when.categories,
                "when.first_order": self.when.first_order,
                "effect.points_per_unit": self.effect.points_per_unit,
                "effect.multiplier": self.effect.multiplier,
                "effect.growth_per_unit": self.effect.growth_per_unit,
                "effect.growth_multiplier": self.effect.growth_multiplier,
            }
            problems = [
                f"{path}: only order rules can use it (this rule is for {self.event})"
                for path, value in only_orders.items()
                if value is not None
            ]
            if problems:
                raise ValueError("\n".join(problems))
        if self.effect.streak_bonus is not None and self.event != EventKind.check_in:
            raise ValueError("effect.streak_bonus: only check_in rules have streaks")
        return self

    def label(self) -> str:
        return f"{self.id} ({self.name.display()})" if self.name else self.id


# -- rewards (schema only; redemption lives in the rewards service) ------------------------


class Limit(_Strict):
    count: StrictInt = Field(ge=1, le=1_000_000)
    period: Period = "ever"


class _Reward(_Strict):
    id: Slug
    name: LocalText
    tiers: list[Slug] | None = Field(
        None, min_length=1, description="Only members of these tiers may redeem."
    )
    member_only: StrictBool = False
    per_customer: Limit | None = None
    active: StrictBool = True


class CouponReward(_Reward):
    type: Literal["coupon"]
    cost_points: Points
    discount_type: Literal["fixed", "percent"]
    value: _Dec = Field(gt=0, lt=MAX_MAJOR)
    min_spend: Money = Decimal(0)
    max_discount: Money | None = None
    validity_days: StrictInt = Field(ge=1, le=3660)

    @model_validator(mode="after")
    def _value(self) -> CouponReward:
        if self.discount_type == "percent" and self.value > 100:
            raise ValueError("value: a percent discount is at most 100")
        if self.discount_type == "fixed" and self.max_discount is not None:
            raise ValueError("max_discount: only for percent coupons")
        return self


class GiftReward(_Reward):
    """A gift or product from the points mall (积分商城)."""

    type: Literal["gift", "product"]
    cost_points: Points
    sku: ExternalId | None = None
    stock: StrictInt | None = Field(None, ge=0, le=10**9, description="None: unlimited.")


class PointsAsCashReward(_Reward):
    """Points as cash at checkout (积分抵现): ``points_per_unit`` points pay one unit."""

    type: Literal["points_as_cash"]
    points_per_unit: StrictInt = Field(ge=1, le=10**6)
    max_share_percent: Percent
    min_points: Points = 0


class PointsPlusCashReward(_Reward):
    type: Literal["points_plus_cash"]
    cost_points: Points
    cash: Money
    sku: ExternalId | None = None
    stock: StrictInt | None = Field(None, ge=0, le=10**9)


class Prize(_Strict):
    id: Slug
    name: LocalText
    weight: StrictInt = Field(ge=0, le=10**6)
    points: Points = 0
    reward: Slug | None = Field(None, description="Id of a reward won as the prize.")


class LuckyDrawReward(_Reward):
    """A lucky draw (抽奖): weighted prizes; a prize with nothing is "thanks for playing"."""

    type: Literal["lucky_draw"]
    cost_points: Points
    prizes: list[Prize] = Field(min_length=1, max_length=100)
    budget_points: Points | None = Field(None, description="Total prize points to give.")

    @model_validator(mode="after")
    def _prizes(self) -> LuckyDrawReward:
        if not any(p.weight for p in self.prizes):
            raise ValueError("prizes: at least one prize needs a weight above 0")
        problems = _duplicates([p.id for p in self.prizes], "prizes", "id")
        if problems:
            raise ValueError("\n".join(problems))
        return self


Reward = Annotated[
    CouponReward | GiftReward | PointsAsCashReward | PointsPlusCashReward | LuckyDrawReward,
    Field(discriminator="type"),
]


# -- word of mouth, surprise ---------------------------------------------------------------


class ReferralConfig(_Strict):
    """Referral rewards (口碑): both sides earn once the referee's first qualifying order
    is past its return window."""

    referrer_points: Points = 0
    referee_points: Points = 0
    qualifying_min_order: Money = Decimal(0)
    per_referrer_cap: StrictInt | None = Field(None, ge=1, le=1_000_000)
    after_return_window: StrictBool = True


class Jitter(_Strict):
    """Irregularity of surprise rewards: a random delay and a random share of the amount."""

    days: StrictInt = Field(7, ge=0, le=365)
    amount_percent: StrictInt = Field(30, ge=0, le=100)


class SurpriseConfig(_Strict):
    """Surprise rewards (惊喜服务): budget-capped and irregular, never to flagged members."""

    budget_points_per_month: Points
    max_per_customer_per_year: StrictInt = Field(ge=1, le=365)
    min_gap_days: StrictInt = Field(ge=1, le=3660)
    jitter: Jitter = Jitter()


# -- the programme -------------------------------------------------------------------------


class ProgramConfig(_Strict):
    version: StrictInt | None = Field(
        None, ge=1, description="Assigned by the database when applied; ignored on input."
    )
    currency: str = Field(min_length=3, max_length=3)
    earn: EarnConfig = EarnConfig()
    pending_days: StrictInt = Field(
        15, ge=0, le=365, description="Points stay pending this long after delivery."
    )
    expiry: Expiry = NeverExpiry(policy="never")
    expiry_reminder_days: list[Annotated[StrictInt, Field(ge=1, le=365)]] = Field(
        default_factory=lambda: [30, 7],
        max_length=10,
        description="Remind members this many days before points expire (one notice each).",
    )
    growth: GrowthConfig = GrowthConfig()
    debt_policy: DebtPolicy = DebtPolicy()
    tiers: list[TierDef] = Field(min_length=1, max_length=20)
    tier_downgrade: Literal["qualifying", "one_step"] = Field(
        "qualifying",
        description="At a period end below the retain threshold: drop to the tier the "
        "period's value qualifies for, or at most one tier.",
    )
    rules: list[Rule] = Field(default_factory=list, max_length=500)
    rewards: list[Reward] = Field(default_factory=list, max_length=1000)
    referral: ReferralConfig | None = None
    surprise: SurpriseConfig | None = None

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            if not _CURRENCY.match(value):
                raise ValueError("not an ISO 4217 currency code like `CNY`")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ProgramConfig:
        problems = [*self._tier_problems(), *self._reference_problems(), *self._money_problems()]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _tier_problems(self) -> list[str]:
        problems = _duplicates([t.code for t in self.tiers], "tiers", "code")
        first = self.tiers[0]
        if first.threshold != 0:
            problems.append("tiers.0.threshold: the first tier is where everyone starts: 0")
        for i, (low, high) in enumerate(zip(self.tiers, self.tiers[1:], strict=False), 1):
            if high.qualify_on != first.qualify_on:
                problems.append(
                    f"tiers.{i}.qualify_on: all tiers qualify on the same metric "
                    f"({first.qualify_on})"
                )
            if high.window != first.window:
                problems.append(
                    f"tiers.{i}.window: all tiers count over the same window "
                    f"({_window_text(first.window)})"
                )
            if high.threshold <= low.threshold:
                problems.append(
                    f"tiers.{i}.threshold: must be above tiers.{i - 1}.threshold "
                    f"({_canonical(low.threshold)}); thresholds rise strictly"
                )
        return problems

    def _reference_problems(self) -> list[str]:
        problems = _duplicates([r.id for r in self.rules], "rules", "id")
        problems += _duplicates([r.id for r in self.rewards], "rewards", "id")
        codes = {t.code for t in self.tiers}
        known = ", ".join(t.code for t in self.tiers)
        for i, rule in enumerate(self.rules):
            for j, code in enumerate(rule.when.tiers or ()):
                if code not in codes:
                    problems.append(f"rules.{i}.when.tiers.{j}: no tier {code!r} ({known})")
        reward_ids = {r.id for r in self.rewards if not isinstance(r, LuckyDrawReward)}
        for i, reward in enumerate(self.rewards):
            for j, code in enumerate(reward.tiers or ()):
                if code not in codes:
                    problems.append(f"rewards.{i}.tiers.{j}: no tier {code!r} ({known})")
            if isinstance(reward, LuckyDrawReward):
                for j, prize in enumerate(reward.prizes):
                    if prize.reward is not None and prize.reward not in reward_ids:
                        problems.append(
                            f"rewards.{i}.prizes.{j}.reward: no reward {prize.reward!r} "
                            "(a prize names a coupon, gift or product of this programme)"
                        )
        return problems

    def _money_problems(self) -> list[str]:
        """Every amount must be representable in the programme's currency."""
        amounts: list[tuple[str, Decimal | None]] = [
            ("earn.unit", self.earn.unit),
            ("growth.unit", self.growth.unit),
        ]
        for i, tier in enumerate(self.tiers):
            if tier.qualify_on == "spend":
                amounts += [
                    (f"tiers.{i}.threshold", tier.threshold),
                    (f"tiers.{i}.retain_threshold", tier.retain_threshold),
                ]
        for i, rule in enumerate(self.rules):
            amounts += [
                (f"rules.{i}.when.min_amount", rule.when.min_amount),
                (f"rules.{i}.when.max_amount", rule.when.max_amount),
                (f"rules.{i}.effect.unit", rule.effect.unit),
            ]
        for i, reward in enumerate(self.rewards):
            if isinstance(reward, CouponReward):
                amounts += [
                    (f"rewards.{i}.min_spend", reward.min_spend),
                    (f"rewards.{i}.max_discount", reward.max_discount),
                ]
                if reward.discount_type == "fixed":
                    amounts.append((f"rewards.{i}.value", reward.value))
            elif isinstance(reward, PointsPlusCashReward):
                amounts.append((f"rewards.{i}.cash", reward.cash))
        if self.referral is not None:
            amounts.append(("referral.qualifying_min_order", self.referral.qualifying_min_order))
        problems = []
        for path, value in amounts:
            if value is None:
                continue
            try:
                to_minor(value, self.currency)
            except MoneyError as exc:
                problems.append(f"{path}: {exc}")
        return problems

    # -- lookups and derived values ---------------------------------------------------------

    def tier(self, code: str | None) -> TierDef | None:
        return next((t for t in self.tiers if t.code == code), None)

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def available_at(self, delivered_at: datetime) -> datetime:
        """When points earned by an order delivered at ``delivered_at`` stop being pending
        (the end of the return window)."""
        return as_utc(delivered_at) + timedelta(days=self.pending_days)

    def growth_available_at(self, delivered_at: datetime, now: datetime) -> datetime:
        if self.growth.pending == "immediate":
            return as_utc(now)
        return self.available_at(delivered_at)

    def expires_at(self, earned_at: datetime, tz: str) -> datetime | None:
        """When a lot earned at ``earned_at`` expires (None: never), at the end of a day in
        the store's time zone ``tz``.

        rolling_months: the end of the same calendar day ``months`` later (the 31st becomes
        the month's last day). fixed_date: the end of the first ``month-day`` reached once
        the lot has been held ``min_holding_months``.
        """
        policy = self.expiry
        if isinstance(policy, NeverExpiry):
            return None
        local = as_utc(earned_at).astimezone(zone(tz)).date()
        if isinstance(policy, RollingExpiry):
            last_day = add_months(local, policy.months)
        else:
            held = add_months(local, policy.min_holding_months)
            last_day = date(held.year, policy.month, policy.day)
            if last_day < held:
                last_day = date(held.year + 1, policy.month, policy.day)
        return end_of_day(last_day, tz)

    def fingerprint(self) -> str:
        """A stable hash of the configuration (version excluded): equal configurations,
        however written (key order, ``1`` or ``1.0``), have equal fingerprints."""
        data = self.model_dump(mode="json", exclude={"version"})
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, clamped to the end of a shorter month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def end_of_day(day: date, tz: str) -> datetime:
    """The instant (UTC) at which the store-time calendar day ``day`` ends."""
    return datetime.combine(day + timedelta(days=1), time(), zone(tz)).astimezone(UTC)


def money_text(minor: int, currency: str) -> str:
    return f"{from_minor(minor, currency)} {currency}"


def _window_text(window: TierWindow) -> str:
    return "calendar_year" if window.calendar_year else f"rolling_days {window.rolling_days}"


def _duplicates(values: list[str], where: str, field: str) -> list[str]:
    seen: dict[str, int] = {}
    problems = []
    for i, value in enumerate(values):
        if value in seen:
            problems.append(
                f"{where}.{i}.{field}: {value!r} is already used by {where}.{seen[value]}"
            )
        else:
            seen[value] = i
    return problems


# -- errors that name their field ----------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    path: str  # `tiers.2.threshold`, as the API names fields; empty: the whole document
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ProgramError(ValueError):
    """An invalid programme; ``problems`` name every field at fault."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid loyalty programme:\n{lines}")


# Checks of several fields name theirs first, "tiers.2.threshold: ...", as in errors.py.
_PATH_PREFIX = re.compile(r"^([A-Za-z_][\w]*(?:\.\w+)*): (.+)$")
_PREFIXES = ("Value error, ", "Assertion failed, ")


def _join(parts: list[str | int]) -> str:
    return ".".join(str(part) for part in parts)


def _data_path(loc: tuple[str | int, ...], data: Any, *, missing: bool) -> list[str | int]:
    """The part of a pydantic error location that exists in the input document: union
    and tag names (``expiry.rolling_months.months``) are dropped; the last part is kept
    for a ``missing`` field."""
    parts: list[str | int] = []
    current = data
    for i, key in enumerate(loc):
        in_list = isinstance(current, list) and isinstance(key, int) and 0 <= key < len(current)
        if in_list or (isinstance(current, Mapping) and key in current):
            parts.append(key)
            current = current[key]
        elif missing and isinstance(current, Mapping) and i == len(loc) - 1:
            parts.append(key)  # a missing field
        elif not isinstance(current, Mapping | list):
            break  # the rest names union members of a scalar
    return parts


def problems_of(exc: ValidationError, data: Any) -> list[Problem]:
    """Readable problems from a validation error of ``data``, each naming its field."""
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        base = _data_path(tuple(error["loc"]), data, missing=error["type"] == "missing")
        message = str(error["msg"])
        for prefix in _PREFIXES:
            message = message.removeprefix(prefix)
        for line in message.split("\n"):
            match = _PATH_PREFIX.match(line)
            path = _join(base)
            if match is not None:
                inner = match.group(1)
                path = f"{path}.{inner}" if path else inner
                line = match.group(2)
            problem = Problem(path, line)
            if problem not in problems:
                problems.append(problem)
    return problems


def parse(data: Any) -> ProgramConfig:
    """Validate a programme document (parsed JSON or YAML); raises ProgramError."""
    if not isinstance(data, Mapping):
        raise ProgramError([Problem("", "a programme is a mapping of fields (currency, ...)")])
    try:
        return ProgramConfig.model_validate(data)
    except ValidationError as exc:
        raise ProgramError(problems_of(exc, data)) from None


# -- YAML ----------------------------------------------------------------------------------


# libyaml when it is there: ten times faster, same behaviour.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SafeDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Loader(_SafeLoader):  # type: ignore[misc]
    """Safe YAML that refuses duplicate keys and reads only true/false as booleans
    (YAML 1.1 would read a channel `no` or `on` as a boolean)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _Dumper(_SafeDumper):  # type: ignore[misc]
    def ignore_aliases(self, data: Any) -> bool:
        return True  # no `&id001` anchors for shared default values


def _represent_decimal(dumper: Any, value: Decimal) -> Any:
    text = _canonical(value)
    if "." not in text:
        return dumper.represent_scalar("tag:yaml.org,2002:int", text)
    if Decimal(repr(float(text))) == value:
        return dumper.represent_scalar("tag:yaml.org,2002:float", text)
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="'")


_Dumper.add_representer(Decimal, _represent_decimal)
_Dumper.add_multi_representer(enum.Enum, lambda d, v: d.represent_str(str(v.value)))


def load_yaml(text: str) -> ProgramConfig:
    """Parse and validate a programme written in YAML; raises ProgramError."""
    try:
        data = yaml.load(text, Loader=_Loader)  # a safe loader (SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise ProgramError([Problem("", f"{where}: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise ProgramError([Problem("", f"not valid YAML: {exc}")]) from None
    return parse(data)


def dump_yaml(program: ProgramConfig) -> str:
    """The programme as YAML that ``load_yaml`` reads back to an equal programme."""
    data = program.model_dump(mode="python", exclude_none=True)
    text: str = yaml.dump(
        data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, default_flow_style=False
    )
    return text
