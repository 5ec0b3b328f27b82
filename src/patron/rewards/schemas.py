"""API shapes of rewards, redemptions, coupons and points at checkout.

Money travels as decimal strings in the store's currency (``"19.90"``); points are whole
numbers.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from patron.kit.money import MAX_MAJOR, from_minor
from patron.kit.text import Code, ExternalId
from patron.loyalty.ledger import MAX_AMOUNT
from patron.rewards.models import CheckoutState, CouponStatus, RedemptionStatus
from patron.rewards.service import CatalogueItem, CheckoutResult, Redeemed

Amount = Annotated[Decimal, Field(ge=0, lt=MAX_MAJOR, allow_inf_nan=False, max_digits=20)]
Currency = Annotated[str, Field(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")]


def money(minor: int | None, currency: str) -> Decimal | None:
    return None if minor is None else from_minor(minor, currency)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- catalogue -----------------------------------------------------------------------------


class ReasonOut(BaseModel):
    code: str = Field(
        description="inactive | member_only | tier | limit_reached | out_of_stock | "
        "not_enough_points"
    )
    message: str


class RewardOut(BaseModel):
    id: str
    type: str
    name: dict[str, str | None]
    active: bool
    cost_points: int = Field(description="Points a redemption debits (0 for points as cash).")
    stock: int | None = Field(description="Configured stock; null: unlimited.")
    stock_left: int | None = Field(description="Null: unlimited.")
    issued: int = Field(description="Units handed out so far (cancellations give back).")
    redeem_via: Literal["redeem", "checkout"]
    can_redeem: bool | None = Field(
        None, description="For a member: whether they can redeem it now; null otherwise."
    )
    reasons: list[ReasonOut] | None = Field(
        None, description="For a member: every reason they cannot redeem it now."
    )
    config: dict[str, Any] = Field(description="The reward as configured in the programme.")

    @classmethod
    def of(cls, item: CatalogueItem) -> RewardOut:
        reward = item.reward
        config = reward.model_dump(mode="json", exclude_none=True)
        return cls(
            id=reward.id,
            type=reward.type,
            name=reward.name.model_dump(),
            active=reward.active,
            cost_points=item.cost_points,
            stock=getattr(reward, "stock", None),
            stock_left=item.stock_left,
            issued=item.issued,
            redeem_via="checkout" if reward.type == "points_as_cash" else "redeem",
            can_redeem=None if item.refusals is None else not item.refusals,
            reasons=None
            if item.refusals is None
            else [ReasonOut(code=r.code.value, message=r.message) for r in item.refusals],
            config=config,
        )


class CatalogueOut(BaseModel):
    items: list[RewardOut]


# -- redemptions ---------------------------------------------------------------------------


class CouponOut(BaseModel):
    code: str
    status: CouponStatus
    discount_type: str
    amount: Decimal | None = Field(description="Fixed coupons: the amount off.")
    percent: Decimal | None = Field(description="Percent coupons: the percent off.")
    min_spend: Decimal
    max_discount: Decimal | None
    currency: str
    valid_from: datetime
    valid_until: datetime
    used_at: datetime | None
    order_external_id: str | None
    discount: Decimal | None = Field(description="The discount given, once used.")


class DrawCandidate(BaseModel):
    prize_id: str
    weight: int


class DrawExcluded(BaseModel):
    prize_id: str
    reason: str


class DrawAudit(BaseModel):
    """What an auditor needs to recompute a lucky draw (see docs/rewards.md)."""

    algorithm: str
    seed: str = Field(description="Hex HMAC-SHA256(signing secret, idempotency key).")
    roll: int
    total_weight: int
    candidates: list[DrawCandidate]
    excluded: list[DrawExcluded]
    prize_id: str


class RedemptionOut(BaseModel):
    id: int
    reward_id: str
    reward_type: str
    reward_name: str
    customer_external_id: str
    status: RedemptionStatus
    points: int = Field(description="Points debited.")
    cash: Decimal | None = Field(description="points_plus_cash: the cash part to charge.")
    currency: str
    sku: str | None
    idempotency_key: str
    program_version: int | None
    created_at: datetime
    cancelled_at: datetime | None
    cancel_reason: str | None
    coupon: CouponOut | None = None
    prize_id: str | None = Field(None, description="Lucky draw: the prize won.")
    prize_points: int = Field(0, description="Lucky draw: points credited by the prize.")
    prize: RedemptionOut | None = Field(
        None, description="Lucky draw: the reward the prize issued (no points charged)."
    )
    draw: DrawAudit | None = None
    replayed: bool = Field(False, description="True when the key was seen: the first result.")


def coupon_out(c: Any) -> CouponOut:
    return CouponOut(
        code=c.code,
        status=c.status,
        discount_type=c.discount_type,
        amount=money(c.amount_minor, c.currency),
        percent=None if c.percent is None else Decimal(c.percent),
        min_spend=from_minor(c.min_spend_minor, c.currency),
        max_discount=money(c.max_discount_minor, c.currency),
        currency=c.currency,
        valid_from=c.valid_from,
        valid_until=c.valid_until,
        used_at=c.used_at,
        order_external_id=c.order_external_id,
        discount=money(c.discount_minor, c.currency),
    )


def redemption_out(r: Redeemed, customer_external_id: str) -> RedemptionOut:
    row = r.redemption
    return RedemptionOut(
        id=row.id,
        reward_id=row.reward_id,
        reward_type=row.reward_type,
        reward_name=row.reward_name,
        customer_external_id=customer_external_id,
        status=row.status,
        points=row.points,
        cash=money(row.cash_minor, row.currency),
        currency=row.currency,
        sku=row.sku,
        idempotency_key=row.idempotency_key,
        program_version=row.program_version,
        created_at=row.created_at,
        cancelled_at=row.cancelled_at,
        cancel_reason=row.cancel_reason,
        coupon=None if r.coupon is None else coupon_out(r.coupon),
        prize_id=row.prize_id,
        prize_points=row.prize_points,
        prize=None if r.prize is None else redemption_out(r.prize, customer_external_id),
        draw=None if row.draw is None else DrawAudit.model_validate(row.draw),
        replayed=r.replayed,
    )


class RedemptionsPage(BaseModel):
    items: list[RedemptionOut]
    next_before: int | None = Field(
        None, description="Pass as `before` for the next (older) page; null on the last page."
    )


class CancelIn(_In):
    reason: Annotated[Code, Field(max_length=255)] | None = None


# -- coupons -------------------------------------------------------------------------------


class ValidateIn(_In):
    code: Code
    customer_external_id: ExternalId
    subtotal: Amount
    currency: Currency

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class ValidateOut(BaseModel):
    valid: bool
    reason: str | None = Field(
        description="When not valid: not_found | other_customer | used | void | expired | "
        "currency | below_min_spend"
    )
    message: str | None
    discount: Decimal = Field(description="The discount on the subtotal (0 when not valid).")
    currency: str
    coupon: CouponOut | None = Field(None, description="The coupon, when it is the customer's.")


class UseIn(_In):
    order_external_id: ExternalId
    customer_external_id: ExternalId
    subtotal: Amount


class UseOut(BaseModel):
    code: str
    order_external_id: str
    discount: Decimal
    currency: str
    used_at: datetime
    replayed: bool


# -- points as cash ------------------------------------------------------------------------


class QuoteIn(_In):
    customer_external_id: ExternalId
    order_total: Amount
    currency: Currency | None = None


class QuoteOut(BaseModel):
    max_points: int = Field(description="The most points usable on this order.")
    cash: Decimal = Field(description="What max_points pay.")
    currency: str
    points_available: int
    step: int = Field(description="Points are used in multiples of this.")
    reward_id: str | None
    points_per_unit: int | None = Field(description="Points that pay one unit of currency.")
    reason: str | None = Field(description="Why no points can be used, when max_points is 0.")


class HoldIn(_In):
    customer_external_id: ExternalId
    checkout_id: ExternalId
    points: int = Field(ge=1, le=MAX_AMOUNT, strict=True)
    order_total: Amount


class CheckoutOut(BaseModel):
    checkout_id: str
    customer_external_id: str
    points: int
    cash: Decimal = Field(description="What the points pay: take it off the order.")
    currency: str
    state: CheckoutState
    expires_at: datetime | None = Field(
        None, description="Held points are released at this time unless captured."
    )
    replayed: bool

    @classmethod
    def of(cls, r: CheckoutResult, customer_external_id: str) -> CheckoutOut:
        c = r.checkout
        return cls(
            checkout_id=c.checkout_id,
            customer_external_id=customer_external_id,
            points=c.points,
            cash=from_minor(c.cash_minor, c.currency),
            currency=c.currency,
            state=c.state,
            expires_at=r.expires_at,
            replayed=r.replayed,
        )
