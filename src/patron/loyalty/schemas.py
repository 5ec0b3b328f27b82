"""API shapes of the points ledger. Points and growth are whole numbers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from patron.kit.text import CleanText, Instant, ShortText
from patron.loyalty.ledger import MAX_AMOUNT
from patron.loyalty.models import Currency, EntryKind

SignedPoints = Annotated[int, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, strict=True)]


class ExpiringOut(BaseModel):
    expires_at: datetime
    points: int


class BalanceOut(BaseModel):
    """A member's balances. Points (积分) are spendable; growth (成长值) qualifies tiers."""

    points_available: int = Field(description="Spendable now.")
    points_pending: int = Field(description="Earned, available once the return window ends.")
    points_held: int = Field(description="Reserved by checkouts in progress.")
    debt: int = Field(description="Points owed after a refund; paid from the next points.")
    growth: int
    growth_pending: int
    growth_debt: int
    expiring: list[ExpiringOut] = Field(
        default_factory=list, description="Points expiring within 30 days, soonest first."
    )
    version: int = Field(description="Changes with every change of these balances.")


class EntryOut(BaseModel):
    """A ledger entry. ``amount`` changes what the member owns; the deltas say which
    balance moved (available, pending, held, debt)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: EntryKind
    currency: Currency
    amount: int
    available_delta: int
    pending_delta: int
    held_delta: int
    debt_delta: int
    reason: str
    ref: str | None
    available_at: datetime | None
    expires_at: datetime | None
    created_at: datetime


class HistoryPage(BaseModel):
    items: list[EntryOut]
    next_before: int | None = Field(
        None, description="Pass as `before` for the next (older) page; null on the last page."
    )


class AdjustIn(BaseModel):
    """An admin correction of a member's points and/or growth."""

    model_config = ConfigDict(extra="forbid")

    points: SignedPoints = 0
    growth: SignedPoints = 0
    reason: Annotated[ShortText, Field(min_length=1)] = Field(
        description="Why: kept on the entry and shown in the member's history."
    )
    idempotency_key: Annotated[CleanText, Field(min_length=1, max_length=255)] | None = Field(
        None, description="Send one to make retries safe; a repeat returns the first result."
    )
    expires_at: Instant | None = Field(
        None, description="Expiry of credited points (default: never)."
    )

    @model_validator(mode="after")
    def _something(self) -> AdjustIn:
        if self.points == 0 and self.growth == 0:
            raise ValueError("points: points or growth must be non-zero")
        return self


class PostingOut(BaseModel):
    idempotency_key: str
    replayed: bool = Field(description="True when the key was seen: the first result.")
    entries: list[EntryOut]
    balance: BalanceOut


class LiabilityOut(BaseModel):
    """What the store owes its members in points, valued at a cost per point."""

    currency: str
    cost_per_point: Decimal
    members: int
    points_outstanding: int = Field(description="Available + held.")
    points_pending: int
    points_debt: int
    outstanding_value: Decimal
    pending_value: Decimal
    points_earned: int
    points_redeemed: int = Field(description="Net of cancelled redemptions.")
    points_expired: int
    points_clawed_back: int
    points_adjusted: int = Field(description="Net admin adjustments.")
    breakage_rate: Decimal | None = Field(description="Expired / earned; null before any earning.")


class LocalNameOut(BaseModel):
    en: str | None
    zh: str | None


class TierBenefitsOut(BaseModel):
    earn_multiplier: Decimal
    member_price_percent: int
    free_shipping: bool
    birthday_gift_points: int
    member_only_rewards: bool


class TierRefOut(BaseModel):
    code: str
    name: LocalNameOut
    threshold: Decimal = Field(description="Growth, orders, or spend in the currency.")


class TierOut(TierRefOut):
    benefits: TierBenefitsOut


class StandingOut(BaseModel):
    """A member's tier and how far the next one is (会员等级与升级进度)."""

    tier: TierOut
    since: datetime | None = Field(description="When the member reached this tier.")
    review_at: datetime | None = Field(
        description="The period end at which the tier is reviewed (kept or lowered)."
    )
    qualify_on: str = Field(description="growth, spend or orders")
    window: str = Field(description="`calendar_year` or `rolling N days`")
    value: Decimal = Field(description="Qualifying value in the current window.")
    retain: Decimal = Field(description="Value needed by the review to keep the tier.")
    next_tier: TierRefOut | None
    missing: Decimal = Field(description="Value still missing for the next tier.")
    message: str
    message_zh: str


class TierChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    from_tier: str | None
    to_tier: str
    change: str
    reason: str
    value: int
    program_version: int | None
    occurred_at: datetime


class TierHistoryPage(BaseModel):
    items: list[TierChangeOut]


class ActionIn(BaseModel):
    """Something the member did that the store reports: sign-up and profile completion
    count once per member; a review or share once per ``key`` (the review's id, ...)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["sign_up", "profile_completed", "review", "share"]
    key: Annotated[CleanText, Field(min_length=1, max_length=128)] = Field(
        description="The business event's id; a repeat with the same key earns nothing more."
    )
    ref: Annotated[CleanText, Field(max_length=128)] | None = None


class FiredRuleOut(BaseModel):
    rule_id: str
    points: int
    growth: int
    reason: str


class ActionOut(BaseModel):
    kind: str
    idempotency_key: str
    points: int
    growth: int
    replayed: bool = Field(description="Already credited before: nothing changed.")
    streak: int | None = Field(None, description="Check-ins: days in a row, today included.")
    rules: list[FiredRuleOut] = Field(default_factory=list, description="Rules that fired.")
    balance: BalanceOut


class NoticeOut(BaseModel):
    """Something to tell a member (the outbox campaigns read): points about to expire, a
    new tier."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    customer_id: int
    kind: str
    data: dict[str, Any]
    created_at: datetime


class NoticePage(BaseModel):
    items: list[NoticeOut]
    next_after: int | None
