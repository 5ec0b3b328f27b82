"""The rules of rewards, as pure functions: no database, no clock.

- **Eligibility** (``eligibility``): why a member cannot redeem a reward now, in a fixed
  order: inactive, member-only, tier-only, the per-customer limit of the current
  store-time period, out of stock, not enough points.
- **Coupons**: unguessable codes (``new_code``), the discount a coupon gives on a
  subtotal (``discount``) and whether it applies to a checkout (``check_coupon``).
- **Points as cash** (积分抵现): the most points an order can take and their cash value
  (``quote``), exact in minor units.
- **Lucky draw** (抽奖): a seeded, auditable weighted draw (``draw_seed``, ``roll``,
  ``pick``): anyone with the seed (and the store's secret, to check the seed) recomputes it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from patron.kit.money import exponent, to_minor
from patron.loyalty.program import (
    CouponReward,
    GiftReward,
    Limit,
    LuckyDrawReward,
    PointsAsCashReward,
    PointsPlusCashReward,
    ProgramConfig,
    Reward,
)
from patron.loyalty.rules import period_bounds

# -- coupon codes --------------------------------------------------------------------------

# 32 symbols (5 bits each) without the look-alikes 0/O and 1/I.
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_PREFIX = "PAT"
CODE_GROUPS = 4  # 4 x 4 symbols = 80 bits of randomness
CODE_BITS = CODE_GROUPS * 4 * 5


def new_code() -> str:
    """A fresh coupon code, ``PAT-XXXX-XXXX-XXXX-XXXX``, from the OS's CSPRNG."""
    groups = ("".join(secrets.choice(ALPHABET) for _ in range(4)) for _ in range(CODE_GROUPS))
    return "-".join((CODE_PREFIX, *groups))


def normalize_code(text: str) -> str:
    """The stored form of a code as a shopper may type it: case, spaces and dashes are
    forgiven (``pat abcd…`` finds ``PAT-ABCD-…``)."""
    compact = "".join(ch for ch in text.upper() if ch.isalnum())
    if compact.startswith(CODE_PREFIX) and len(compact) == len(CODE_PREFIX) + 4 * CODE_GROUPS:
        body = compact[len(CODE_PREFIX) :]
        return "-".join((CODE_PREFIX, *(body[i : i + 4] for i in range(0, len(body), 4))))
    return text.strip().upper()


# -- eligibility ---------------------------------------------------------------------------


class Why(enum.StrEnum):
    """Why a member cannot redeem a reward."""

    inactive = "inactive"
    member_only = "member_only"
    tier = "tier"
    limit_reached = "limit_reached"
    out_of_stock = "out_of_stock"
    not_enough_points = "not_enough_points"


@dataclass(frozen=True)
class Refusal:
    code: Why
    message: str


@dataclass(frozen=True)
class MemberState:
    """What eligibility needs to know of a member."""

    tier: str  # the tier held (the programme's first tier when never placed)
    is_member: bool  # has a loyalty account or a tier placement
    points_available: int
    used_in_period: int = 0  # redemptions of this reward in the limit's current period


def cost(reward: Reward) -> int:
    """Points a redemption debits (points as cash: chosen at checkout)."""
    return 0 if isinstance(reward, PointsAsCashReward) else reward.cost_points


def stock_of(reward: Reward) -> int | None:
    return reward.stock if isinstance(reward, GiftReward | PointsPlusCashReward) else None


def stock_left(reward: Reward, issued: int) -> int | None:
    """Units left (None: unlimited). A lowered stock never goes below 0."""
    stock = stock_of(reward)
    return None if stock is None else max(stock - issued, 0)


def tier_code(program: ProgramConfig, held: str | None) -> str:
    """The tier a member holds: one never placed (or placed in a tier the programme no
    longer has) holds the first tier."""
    return held if held is not None and program.tier(held) is not None else program.tiers[0].code


def limit_start(limit: Limit, now: datetime, tz: str) -> datetime | None:
    """The first instant of the limit's current period in the store's time zone (None:
    ``ever``)."""
    start, _ = period_bounds(limit.period, now, tz)
    return start


def eligibility(
    program: ProgramConfig, reward: Reward, member: MemberState, left: int | None
) -> list[Refusal]:
    """Every reason ``member`` cannot redeem ``reward`` now; empty: they can.

    ``member_only``: the customer must be a member (have a loyalty account or a tier);
    when some tiers of the programme list ``member_only_rewards`` as a benefit, only
    members of those tiers may redeem member-only rewards.
    """
    out: list[Refusal] = []
    if not reward.active:
        out.append(Refusal(Why.inactive, "this reward is not available at the moment"))
    if reward.member_only:
        privileged = [t.code for t in program.tiers if t.benefits.member_only_rewards]
        if not member.is_member:
            out.append(Refusal(Why.member_only, "only members of the programme can redeem it"))
        elif privileged and member.tier not in privileged:
            out.append(
                Refusal(Why.member_only, f"a member-only reward of tiers {', '.join(privileged)}")
            )
    if reward.tiers is not None and member.tier not in reward.tiers:
        out.append(Refusal(Why.tier, f"only for tiers {', '.join(reward.tiers)}"))
    limit = reward.per_customer
    if limit is not None and member.used_in_period >= limit.count:
        period = "in all" if limit.period == "ever" else f"per {limit.period}"
        out.append(
            Refusal(
                Why.limit_reached,
                f"limit of {limit.count} {period} reached ({member.used_in_period} redeemed)",
            )
        )
    if left is not None and left <= 0:
        out.append(Refusal(Why.out_of_stock, "out of stock"))
    needed = cost(reward)
    if isinstance(reward, PointsAsCashReward):
        needed = max(reward.min_points, 1)
    if member.points_available < needed:
        out.append(
            Refusal(
                Why.not_enough_points,
                f"needs {needed} points, {member.points_available} available",
            )
        )
    return out


# -- coupons -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CouponTerms:
    """A coupon's terms in minor units of ``currency``."""

    discount_type: str  # fixed | percent
    currency: str
    amount_minor: int | None = None  # fixed
    percent: Decimal | None = None  # percent
    min_spend_minor: int = 0
    max_discount_minor: int | None = None


def terms_of(reward: CouponReward, currency: str) -> CouponTerms:
    fixed = reward.discount_type == "fixed"
    return CouponTerms(
        discount_type=reward.discount_type,
        currency=currency,
        amount_minor=to_minor(reward.value, currency) if fixed else None,
        percent=None if fixed else reward.value,
        min_spend_minor=to_minor(reward.min_spend, currency),
        max_discount_minor=None
        if reward.max_discount is None
        else to_minor(reward.max_discount, currency),
    )


def discount(terms: CouponTerms, subtotal_minor: int) -> int:
    """The discount on ``subtotal_minor``: a fixed amount, or the percent of the subtotal
    rounded half up to the minor unit and capped by ``max_discount``; never above the
    subtotal, never below 0."""
    if subtotal_minor <= 0:
        return 0
    if terms.discount_type == "fixed":
        assert terms.amount_minor is not None
        amount = terms.amount_minor
    else:
        assert terms.percent is not None
        exact = Decimal(subtotal_minor) * terms.percent / 100
        amount = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        if terms.max_discount_minor is not None:
            amount = min(amount, terms.max_discount_minor)
    return max(0, min(amount, subtotal_minor))


class CouponWhy(enum.StrEnum):
    not_found = "not_found"
    other_customer = "other_customer"
    used = "used"
    void = "void"
    expired = "expired"
    currency = "currency"
    below_min_spend = "below_min_spend"


@dataclass(frozen=True)
class CouponCheck:
    valid: bool
    discount_minor: int = 0
    reason: CouponWhy | None = None
    message: str | None = None


@dataclass(frozen=True)
class CouponState:
    terms: CouponTerms
    customer_id: int
    status: str  # active | used | void
    valid_until: datetime


def check_coupon(
    coupon: CouponState, customer_id: int, subtotal_minor: int, currency: str, now: datetime
) -> CouponCheck:
    """Whether a coupon applies to a checkout of ``customer_id`` for ``subtotal_minor``,
    and its discount. The first failing check is the reason."""

    def no(reason: CouponWhy, message: str) -> CouponCheck:
        return CouponCheck(False, 0, reason, message)

    if coupon.customer_id != customer_id:
        return no(CouponWhy.other_customer, "this coupon belongs to another customer")
    if coupon.status == "used":
        return no(CouponWhy.used, "this coupon was already used")
    if coupon.status == "void":
        return no(CouponWhy.void, "this coupon was cancelled")
    if now >= coupon.valid_until:
        return no(CouponWhy.expired, f"this coupon expired at {coupon.valid_until.isoformat()}")
    terms = coupon.terms
    if currency != terms.currency:
        return no(CouponWhy.currency, f"this coupon is in {terms.currency}, not {currency}")
    if subtotal_minor < terms.min_spend_minor:
        return no(
            CouponWhy.below_min_spend,
            f"the subtotal is below the minimum spend of {_major(terms.min_spend_minor, currency)}",
        )
    return CouponCheck(True, discount(terms, subtotal_minor))


def _major(minor: int, currency: str) -> str:
    exp = exponent(currency)
    return f"{Decimal(minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))} {currency}"


# -- points as cash ------------------------------------------------------------------------


@dataclass(frozen=True)
class CashRate:
    """``points_per_unit`` points pay one major unit of ``currency``. Points are used in
    multiples of ``step``, the fewest points worth a whole number of minor units."""

    points_per_unit: int
    currency: str

    @property
    def minor_per_unit(self) -> int:
        return int(10 ** exponent(self.currency))

    @property
    def step(self) -> int:
        return self.points_per_unit // math.gcd(self.points_per_unit, self.minor_per_unit)

    def cash(self, points: int) -> int:
        """Minor units ``points`` pay (exact for multiples of ``step``; else floored)."""
        return points * self.minor_per_unit // self.points_per_unit

    def points_for(self, cash_minor: int) -> int:
        """The most points (a multiple of ``step``) that pay at most ``cash_minor``."""
        points = cash_minor * self.points_per_unit // self.minor_per_unit
        return points - points % self.step


@dataclass(frozen=True)
class Quote:
    max_points: int
    cash_minor: int
    step: int
    reason: str | None = None


def quote(
    reward: PointsAsCashReward, currency: str, order_total_minor: int, available: int
) -> Quote:
    """The most points an order of ``order_total_minor`` can take: at most
    ``max_share_percent`` of the order (rounded down to whole minor units), at most the
    available points, in multiples of the rate's step; 0 when below ``min_points``."""
    rate = CashRate(reward.points_per_unit, currency)
    share_minor = order_total_minor * reward.max_share_percent // 100
    by_share = rate.points_for(share_minor)
    by_balance = available - available % rate.step
    points = min(by_share, by_balance)
    if points <= 0 or points < reward.min_points:
        if by_share < max(reward.min_points, rate.step):
            reason = f"the order is too small: at most {by_share} points can be used on it"
        else:
            reason = (
                f"needs at least {max(reward.min_points, rate.step)} points, {available} available"
            )
        return Quote(0, 0, rate.step, reason)
    return Quote(points, rate.cash(points), rate.step)


def check_use(
    reward: PointsAsCashReward, currency: str, order_total_minor: int, available: int, points: int
) -> str | None:
    """Why ``points`` cannot pay part of this order (``points: ...``); None: they can."""
    rate = CashRate(reward.points_per_unit, currency)
    if points % rate.step:
        return f"points: use a multiple of {rate.step} ({rate.step} points pay a whole amount)"
    if points < reward.min_points:
        return f"points: at least {reward.min_points} points are used at a time"
    most = quote(reward, currency, order_total_minor, 10**18).max_points
    if points > most:
        return (
            f"points: at most {most} points on this order "
            f"({reward.max_share_percent}% of the order total)"
        )
    return None


# -- lucky draw ----------------------------------------------------------------------------

DRAW_ALGORITHM = (
    "seed = HMAC-SHA256(key=store signing secret, message=redemption idempotency key); "
    "roll = int(seed, big-endian) mod total_weight; the prize is the first candidate, in "
    "programme order, whose cumulative weight exceeds roll"
)


def draw_seed(secret: str, key: str) -> bytes:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).digest()


def roll(seed: bytes, total_weight: int) -> int:
    """A number in [0, total_weight) from the seed's 256 bits (bias below 2**-200)."""
    if total_weight <= 0:
        raise ValueError("total_weight: must be positive")
    return int.from_bytes(seed, "big") % total_weight


def pick(candidates: Sequence[tuple[str, int]], rolled: int) -> str:
    """The candidate (id, weight) whose cumulative-weight interval holds ``rolled``."""
    upto = 0
    for prize_id, weight in candidates:
        upto += weight
        if rolled < upto:
            return prize_id
    raise ValueError("roll: beyond the total weight")


@dataclass(frozen=True)
class DrawResult:
    seed: str  # hex
    roll: int
    total_weight: int
    candidates: list[tuple[str, int]]
    excluded: dict[str, str] = field(default_factory=dict)  # prize id -> why
    prize_id: str = ""

    def audit(self) -> dict[str, object]:
        return {
            "algorithm": DRAW_ALGORITHM,
            "seed": self.seed,
            "roll": self.roll,
            "total_weight": self.total_weight,
            "candidates": [{"prize_id": p, "weight": w} for p, w in self.candidates],
            "excluded": [{"prize_id": p, "reason": r} for p, r in self.excluded.items()],
            "prize_id": self.prize_id,
        }


def run_draw(reward: LuckyDrawReward, seed: bytes, excluded: dict[str, str]) -> DrawResult:
    """Draw a prize among the prizes with a weight that are not ``excluded``. When every
    prize is excluded the draw cannot run (ValueError)."""
    candidates = [(p.id, p.weight) for p in reward.prizes if p.weight > 0 and p.id not in excluded]
    total = sum(w for _, w in candidates)
    if total == 0:
        raise ValueError("no prize can be drawn")
    rolled = roll(seed, total)
    return DrawResult(
        seed.hex(), rolled, total, candidates, dict(excluded), pick(candidates, rolled)
    )


def verify_draw(secret: str, key: str, audit: dict[str, object]) -> bool:
    """Recompute a stored draw: the seed from the secret and key, the roll from the seed,
    the prize from the roll and the candidates."""
    seed = draw_seed(secret, key)
    if seed.hex() != audit["seed"]:
        return False
    raw = audit["candidates"]
    assert isinstance(raw, list)
    candidates = [(str(c["prize_id"]), int(c["weight"])) for c in raw]
    rolled = roll(seed, sum(w for _, w in candidates))
    return rolled == audit["roll"] and pick(candidates, rolled) == audit["prize_id"]
