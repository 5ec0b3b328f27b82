"""API shapes of referrals and surprise rewards."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from patron.kit.money import MAX_MAJOR
from patron.kit.text import CleanText, ExternalId, ShortText
from patron.referrals.models import GiftStatus, ReferralStatus

MAX_SEGMENT = 10_000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferralIn(_In):
    """A customer who signed up through a referral code (sent by the store at sign-up)."""

    code: Annotated[CleanText, Field(min_length=1, max_length=64)] = Field(
        description="The code as the customer typed it, or from the share link."
    )
    referee_external_id: ExternalId


class ReferralOut(BaseModel):
    id: int
    code: str
    referrer_external_id: str
    referee_external_id: str
    status: ReferralStatus
    reason: str | None = Field(
        None,
        description="Why it was rejected: self_referral, not_new, flagged, ring, cap_reached.",
    )
    detail: str | None = None
    attributed_at: datetime
    order_external_id: str | None = Field(None, description="The qualifying order.")
    qualified_at: datetime | None = None
    reward_due_at: datetime | None = Field(
        None, description="End of the qualifying order's return window."
    )
    rewarded_at: datetime | None = None
    rejected_at: datetime | None = None
    referrer_points: int
    referee_points: int


class ReferralPage(BaseModel):
    items: list[ReferralOut]
    next_after: int | None = Field(
        None, description="Pass as `after` to get the next page; null on the last page."
    )


class ReferralCounts(BaseModel):
    invited: int = Field(description="Customers attributed to this code (every status).")
    pending: int = Field(description="Waiting for a first qualifying order.")
    qualified: int = Field(description="Qualifying order delivered; in its return window.")
    rewarded: int
    rejected: int


class MyReferralOut(BaseModel):
    code: str
    link: str
    counts: ReferralCounts
    points_earned: int = Field(description="Points earned by referring (rewarded referrals).")
    referrer_points: int | None = Field(
        None, description="What a referral earns the referrer now (null: no referral programme)."
    )
    referee_points: int | None = None


class TreeNode(BaseModel):
    external_id: str
    referral_id: int | None = Field(None, description="How this customer was referred.")
    status: ReferralStatus | None = None
    reason: str | None = None
    children: list[TreeNode] = Field(default_factory=list)


class TreeOut(BaseModel):
    root: TreeNode
    depth: int
    nodes: int = Field(description="Referred customers in the tree (the root excluded).")
    truncated: bool = Field(description="True when the node limit cut the tree short.")


class StatsOut(BaseModel):
    since: datetime | None
    until: datetime
    members: int = Field(
        description="Customers who could refer in the window: created before `until` and "
        "not flagged."
    )
    code_holders: int = Field(description="Members holding a referral code by `until`.")
    active_referrers: int = Field(description="Distinct referrers of the window's referrals.")
    invitations: int = Field(
        description="Referred customers attributed in the window, rejected ones included."
    )
    attributions: int = Field(description="Invitations not rejected.")
    qualified: int = Field(
        description="Invitations whose referee made a qualifying order (qualified or rewarded)."
    )
    rewarded: int
    rejected: int
    conversion: Decimal | None = Field(description="qualified / invitations.")
    invites_per_member: Decimal | None = Field(description="invitations / members.")
    viral_coefficient: Decimal | None = Field(
        description="K = invites_per_member × conversion (= qualified / members)."
    )


class SegmentIn(_In):
    """Who a surprise plan is for: a list of external ids, or a filter on orders
    (cancelled orders aside; every criterion given must hold)."""

    customers: list[ExternalId] | None = Field(None, min_length=1, max_length=MAX_SEGMENT)
    min_orders: StrictInt | None = Field(None, ge=1, le=1_000_000)
    min_spend: Decimal | None = Field(
        None, ge=0, lt=MAX_MAJOR, allow_inf_nan=False, description="Net of refunds."
    )
    last_order_within_days: StrictInt | None = Field(None, ge=1, le=3660)

    @model_validator(mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return {"customers": value} if isinstance(value, list) else value

    @model_validator(mode="after")
    def _one_kind(self) -> SegmentIn:
        criteria = (self.min_orders, self.min_spend, self.last_order_within_days)
        given = [c for c in criteria if c is not None]
        if self.customers is not None and given:
            raise ValueError("customers: give a list of customers or a filter, not both")
        if self.customers is None and not given:
            raise ValueError(
                "customers: give a list of customers or a filter "
                "(min_orders, min_spend, last_order_within_days)"
            )
        return self


class PlanIn(_In):
    segment: SegmentIn
    points: StrictInt = Field(ge=1, le=10**9, description="Before jitter.")
    note: ShortText | None = Field(None, description="Shown in the members' points history.")


class PlanOut(BaseModel):
    id: int
    points: int
    note: str | None
    segment: dict[str, Any]
    scheduled: int = Field(description="Gifts scheduled, one per member of the segment.")
    excluded: int = Field(description="Members of the segment left out: flagged.")
    first_due_at: datetime | None
    last_due_at: datetime | None
    created_at: datetime


class GiftOut(BaseModel):
    id: int
    plan_id: int
    customer_external_id: str
    points: int
    due_at: datetime
    status: GiftStatus
    reason: str | None = Field(
        None, description="Why it was skipped: flagged, yearly_limit, too_soon, budget."
    )
    detail: str | None = None
    given_at: datetime | None = None


class GiftPage(BaseModel):
    items: list[GiftOut]
    next_after: int | None = None
