"""API shapes of support: tickets, messages, SLA views, grades, compensations, the
customer 360 view, the attainment report and settings."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from patron.kit.money import MAX_MAJOR
from patron.kit.pagination import Page
from patron.kit.text import ExternalId, Label, ShortText, check_json_value
from patron.support.grading import CATEGORIES
from patron.support.models import (
    CompensationKind,
    CompensationStatus,
    Direction,
    Priority,
    TicketChannel,
    TicketStatus,
)
from patron.support.settings import Role

_CLEAN = AfterValidator(check_json_value)  # no NUL, no lone surrogate
ClockState = Literal["ok", "warning", "breached", "paused", "met"]

Subject = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), _CLEAN
]
Body = Annotated[str, StringConstraints(min_length=1, max_length=100_000), _CLEAN]
Actor = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128), _CLEAN
]
Address = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320), _CLEAN
]
Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), _CLEAN]
MessageId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), _CLEAN
]
Amount = Annotated[Decimal, Field(ge=0, lt=MAX_MAJOR, allow_inf_nan=False)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimIn(_In):
    """What the customer asks for. The customer's context (value, tier, other customers'
    reports of the same problem, prior claims, refund rate, flag) is added by Patron."""

    category: str = Field(description="One of: " + ", ".join(CATEGORIES) + ".")
    requested_compensation: Amount | None = Field(
        None, description="Money asked for, in the store's currency (major units)."
    )
    order_amount: Amount | None = Field(
        None, description="Value of the order concerned (default: the ticket's order total)."
    )
    backed_by_policy: StrictBool | None = Field(
        None, description="The store's policy or consumer law covers the request (null: unknown)."
    )
    lawful: StrictBool = True
    safety_issue: StrictBool = False
    public_exposure: StrictBool = Field(
        False, description="Posted publicly, media or a regulator involved or threatened."
    )

    @field_validator("category")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in CATEGORIES:
            raise ValueError(
                f"unknown category {value!r}; expected one of " + ", ".join(CATEGORIES)
            )
        return value


class GradeIn(ClaimIn):
    actor: Actor | None = None


class TicketIn(_In):
    """A ticket from any channel. Name the customer by ``customer_external_id`` or by the
    requester's e-mail address (``requester``)."""

    channel: TicketChannel
    subject: Subject
    body: Body = Field(description="The customer's first message.")
    customer_external_id: ExternalId | None = None
    requester: Address | None = Field(
        None, description="Who asked: an e-mail address finds the customer by e-mail."
    )
    priority: Priority | None = Field(
        None, description="Default: the grade's suggestion for a claim, else normal."
    )
    category: Label | None = Field(None, description="Default: the claim's category.")
    order_external_id: ExternalId | None = None
    product_sku: ExternalId | None = None
    assignee: Actor | None = None
    claim: ClaimIn | None = None
    idempotency_key: Key | None = Field(
        None,
        description="Opens the ticket once: a retry with the same key and body returns the "
        "first ticket (200); the key with another body is refused (409).",
    )

    @model_validator(mode="after")
    def _who(self) -> TicketIn:
        if self.customer_external_id is None and self.requester is None:
            raise ValueError("customer_external_id: give customer_external_id or requester")
        return self


class MessageIn(_In):
    direction: Direction = Field(
        description="inbound: from the customer; outbound: the store's reply (the first one "
        "stops the first-response clock); note: internal."
    )
    body: Body
    author: Address | None = None
    wait_for_customer: StrictBool = Field(
        False, description="Outbound only: set the ticket pending (the SLA clock pauses)."
    )
    message_id: MessageId | None = Field(
        None, description="The e-mail Message-ID of this message: replies quoting it thread here."
    )

    @model_validator(mode="after")
    def _waiting(self) -> MessageIn:
        if self.wait_for_customer and self.direction != Direction.outbound:
            raise ValueError("wait_for_customer: only an outbound reply waits for the customer")
        return self


class TicketPatch(_In):
    """Fields to change; ``null`` clears the assignee or the category."""

    priority: Priority | None = None
    assignee: Actor | None = None
    category: Label | None = None
    actor: Actor | None = None

    @model_validator(mode="after")
    def _something(self) -> TicketPatch:
        if not (self.model_fields_set - {"actor"}):
            raise ValueError("priority: give priority, assignee or category")
        if "priority" in self.model_fields_set and self.priority is None:
            raise ValueError("priority: cannot be null")
        return self


class StatusIn(_In):
    status: TicketStatus
    actor: Actor | None = None
    note: ShortText | None = None


class CompensationIn(_In):
    """Service recovery: points (a ledger credit) or a coupon reward of the programme."""

    key: Key = Field(description="Idempotency key: a retry returns the first compensation.")
    kind: CompensationKind
    points: StrictInt | None = Field(None, ge=1, le=10**9)
    reward_id: Annotated[str, StringConstraints(min_length=1, max_length=64), _CLEAN] | None = None
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), _CLEAN
    ]
    role: Role = Field(description="The acting role, whose cap decides: agent, lead, manager.")
    actor: Actor

    @model_validator(mode="after")
    def _kind(self) -> CompensationIn:
        if self.kind == CompensationKind.points:
            if self.points is None:
                raise ValueError("points: required for a points compensation")
            if self.reward_id is not None:
                raise ValueError("reward_id: only for a coupon compensation")
        else:
            if self.reward_id is None:
                raise ValueError("reward_id: required for a coupon compensation")
            if self.points is not None:
                raise ValueError("points: only for a points compensation")
        return self


class DecisionIn(_In):
    approve: StrictBool
    role: Role
    actor: Actor
    note: ShortText | None = None


# -- out ----------------------------------------------------------------------------------


class SlaClockOut(BaseModel):
    target_s: int = Field(description="Business seconds allowed.")
    target: str = Field(description="The target as text, e.g. 24h.")
    due_at: datetime | None = Field(description="Null while the clock is paused.")
    state: ClockState
    used_s: int = Field(description="Business seconds used so far (or until done).")
    remaining_s: int = Field(description="Business seconds left; negative once breached.")
    done_at: datetime | None = None


class SlaOut(BaseModel):
    first_response: SlaClockOut
    resolution: SlaClockOut
    paused: bool
    escalation_level: int = Field(description="0; 1: first response breached; 2: resolution.")
    warned_at: datetime | None
    escalated_at: datetime | None


class TicketOut(BaseModel):
    id: int
    channel: TicketChannel
    subject: str
    status: TicketStatus
    priority: Priority
    category: str | None
    source: str
    customer_external_id: str | None
    requester: str | None
    order_external_id: str | None
    product_sku: str | None
    assignee: str | None
    created_at: datetime
    updated_at: datetime
    first_responded_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    grade_level: int | None
    opportunistic: bool
    sla: SlaOut


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    direction: Direction
    author: str | None
    body: str
    message_id: str | None
    created_at: datetime


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    actor: str | None
    data: dict[str, Any]
    created_at: datetime


class CompensationOut(BaseModel):
    id: int
    ticket_id: int
    customer_external_id: str
    key: str
    kind: CompensationKind
    points: int
    reward_id: str | None
    value: Decimal | None = Field(description="A coupon's face value (null: unbounded percent).")
    currency: str | None
    status: CompensationStatus
    reason: str
    role: str
    actor: str
    ledger_key: str | None
    redemption_id: int | None
    coupon_code: str | None
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None


class TicketDetail(TicketOut):
    claim: dict[str, Any] | None
    grade: dict[str, Any] | None
    messages: list[MessageOut]
    events: list[EventOut]
    compensations: list[CompensationOut]


class TicketPage(Page[TicketOut]):
    pass  # a named page: the schema is TicketPage (no docstring: it would describe it)


class SlaCheckOut(BaseModel):
    checked: int
    warnings: int
    breaches: int
    escalated: int


class ReportRow(BaseModel):
    channel: str
    priority: str
    tickets: int
    first_response_met: int
    first_response_breached: int
    first_response_met_pct: float | None = Field(description="met / (met + breached) × 100.")
    resolution_met: int
    resolution_breached: int
    resolution_met_pct: float | None
    median_first_response_h: float | None = Field(description="Business hours.")
    mean_first_response_h: float | None
    median_resolution_h: float | None
    mean_resolution_h: float | None
    breaches_open: int = Field(description="Tickets of this row still open and breached now.")


class SlaReportOut(BaseModel):
    since: datetime | None
    until: datetime
    rows: list[ReportRow]
    total: ReportRow


class SettingsOut(BaseModel):
    version: int = Field(description="0: the defaults, nothing applied yet.")
    config: dict[str, Any]


class OrderBrief(BaseModel):
    external_id: str
    status: str
    total: Decimal
    refunded: Decimal
    currency: str
    placed_at: datetime
    delivered_at: datetime | None


class OrdersOut(BaseModel):
    count: int
    cancelled: int
    refunded: int = Field(description="Orders refunded in part or in full.")
    spent: Decimal | None = Field(description="Net of refunds; null across currencies.")
    currency: str | None
    first_order_at: datetime | None
    last_order_at: datetime | None
    recent: list[OrderBrief]


class TierOut(BaseModel):
    code: str
    name: str
    since: datetime | None
    next: str | None
    missing: int
    progress: str
    progress_zh: str


class LoyaltyOut(BaseModel):
    points_available: int
    points_pending: int
    points_held: int
    debt: int
    growth: int
    tier: TierOut | None


class ValueScoresOut(BaseModel):
    segment: str | None
    clv: Decimal | None
    clv_percentile: float | None
    p_alive: float | None
    loyalty_type: str | None
    computed_at: datetime


class NpsOut(BaseModel):
    submitted_at: datetime
    date: date
    score: float
    survey_key: str


class ReviewsOut(BaseModel):
    count: int
    mean_rating: float | None


class TicketsSummary(BaseModel):
    counts: dict[str, int]
    recent: list[TicketOut]


class ProfileOut(BaseModel):
    external_id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    birthday: date | None
    locale: str | None
    timezone: str | None
    flagged: bool
    flagged_reason: str | None
    traits: dict[str, Any]
    created_at: datetime


class Customer360Out(BaseModel):
    profile: ProfileOut
    orders: OrdersOut
    loyalty: LoyaltyOut | None = Field(description="Null when the store runs no programme.")
    scores: ValueScoresOut | None = Field(
        description="Null before an analysis scored the customer."
    )
    nps: list[NpsOut]
    tickets: TicketsSummary
    reviews: ReviewsOut


class MailOut(BaseModel):
    action: Literal["opened", "threaded", "duplicate"]
    ticket_id: int
    message_id: str
