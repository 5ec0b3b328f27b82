"""API shapes of surveys, invitations, responses, scores and reviews."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

from patron.feedback.domain import SurveyDefinition
from patron.feedback.models import ReviewStatus, Trigger
from patron.kit.text import ExternalId, Instant, Label, LongText, ShortText, check_json_value

MAX_INVITE = 1000
Lang = Literal["en", "zh"]
SurveyKey = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")
]
Subject = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
    AfterValidator(check_json_value),
]


def _json_params(value: dict[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = check_json_value(value)
    return checked


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- surveys ------------------------------------------------------------------------------


class SurveySettings(_In):
    """How a survey is distributed. Every change publishes a new version."""

    template: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None, description="A built-in template (GET /v1/surveys/templates); or `definition`."
    )
    params: Annotated[dict[str, Any], AfterValidator(_json_params)] | None = Field(
        None, description="The template's options, e.g. `{competitors: [...]}`."
    )
    definition: SurveyDefinition | None = Field(
        None, description="The questions, in English and/or Chinese; or `template`."
    )
    trigger: Trigger = Field(
        Trigger.manual,
        description="manual (invitations by API/CLI), after_delivery (N days after an order "
        "is delivered), ticket_closed (when a support ticket is resolved or closed).",
    )
    delay_days: StrictInt | None = Field(
        None,
        ge=0,
        le=365,
        description="Days after the delivery or closing (default 7 after a delivery, 0 otherwise).",
    )
    link_days: StrictInt = Field(30, ge=1, le=365, description="How long a link is valid.")
    reminder_days: StrictInt | None = Field(
        None, ge=1, le=90, description="Remind after this many days without an answer."
    )
    max_reminders: StrictInt = Field(1, ge=0, le=5)
    recontact_days: StrictInt = Field(
        30,
        ge=0,
        le=365,
        description="Survey fatigue: no invitation to a customer invited to any survey in "
        "this many days.",
    )
    anonymous: StrictBool = Field(
        False, description="Responses keep no customer (no follow-up ticket either)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> SurveySettings:
        if (self.template is None) == (self.definition is None):
            raise ValueError("definition: give a `definition` or a `template`, not both")
        if self.params is not None and self.template is None:
            raise ValueError("params: only with a `template`")
        return self


class SurveyIn(SurveySettings):
    key: SurveyKey = Field(description="Stable name, e.g. `post-purchase`; versions share it.")


class SurveyOut(BaseModel):
    key: str
    version: int
    current: bool
    active: bool
    template: str | None
    anonymous: bool
    trigger: Trigger
    delay_days: int
    link_days: int
    reminder_days: int | None
    max_reminders: int
    recontact_days: int
    definition: dict[str, Any]
    created_at: datetime


class SurveyList(BaseModel):
    items: list[SurveyOut]


class TemplateOut(BaseModel):
    name: str
    params: dict[str, str] = Field(description="The options the template takes.")
    definition: dict[str, Any]


class TemplateList(BaseModel):
    items: list[TemplateOut]


# -- invitations --------------------------------------------------------------------------


class InviteIn(_In):
    customers: list[ExternalId] = Field(min_length=1, max_length=MAX_INVITE)
    subject: Subject | None = Field(
        None,
        description="What the survey asks about (e.g. `order:1001`); one invitation per "
        "customer, survey and subject. Default `manual:<store-time date>`.",
    )
    locale: Lang | None = Field(None, description="Default: the customer's, else the store's.")


class InvitationOut(BaseModel):
    id: int
    survey_key: str
    survey_version: int
    customer_external_id: str
    subject: str
    locale: str
    channel: str | None
    link: str
    created_at: datetime
    expires_at: datetime
    next_send_at: datetime | None
    sent_count: int
    last_sent_at: datetime | None
    used_at: datetime | None


class Skipped(BaseModel):
    customer_external_id: str
    reason: str = Field(
        description="unknown_customer, already_invited (this survey and subject) or "
        "recently_invited (survey fatigue)."
    )
    detail: str | None = None


class InviteOut(BaseModel):
    invited: list[InvitationOut]
    skipped: list[Skipped]


class DueItem(BaseModel):
    invitation_id: int
    survey_key: str
    customer_external_id: str
    email: str | None
    phone: str | None
    locale: str
    subject: str
    link: str
    reminder: bool = Field(description="True when this delivery is a reminder.")
    sent_count: int
    expires_at: datetime


class DuePage(BaseModel):
    items: list[DueItem]
    next_after: int | None = None


class TriggerRunOut(BaseModel):
    after_delivery: int = Field(description="Invitations created for delivered orders.")
    ticket_closed: int = Field(description="Invitations created for closed tickets.")
    skipped: int = Field(description="Candidates skipped by survey fatigue.")
    reminders: int = Field(description="Invitations made due again as reminders.")


# -- the public link ----------------------------------------------------------------------


class LinkOut(BaseModel):
    survey_key: str
    version: int
    locale: str
    anonymous: bool
    title: str
    intro: str | None
    thanks: str | None
    questions: list[dict[str, Any]] = Field(
        description="The questions with their texts in `locale`."
    )
    expires_at: datetime


class ResponseIn(_In):
    answers: Annotated[dict[str, Any], AfterValidator(_json_params)] = Field(
        description="Question id → answer: a number (nps/csat/ces/rating/likert), an option "
        "id, a list of option ids, a text, {expectation, experience}, or {importance, "
        "ratings: {us, <competitor>}}."
    )
    locale: Lang | None = None


class ResponseOut(BaseModel):
    id: int
    survey_key: str
    version: int
    submitted_at: datetime
    thanks: str | None


# -- scores -------------------------------------------------------------------------------


class EstimateOut(BaseModel):
    value: float | None
    low: float | None = Field(description="95% confidence interval.")
    high: float | None
    n: int


class NpsOut(EstimateOut):
    promoters: int
    passives: int
    detractors: int


class ScoreSet(BaseModel):
    nps: NpsOut
    csat: EstimateOut = Field(description="% of 1–5 answers that are 4 or 5 (Wilson interval).")
    ces: EstimateOut = Field(description="Mean of 1–7 answers, higher = easier (t-interval).")


class ScoreGroup(ScoreSet):
    key: str | None = Field(description="The channel, tier, segment or period start.")


class ScoresOut(BaseModel):
    survey_key: str | None
    since: datetime | None
    until: datetime | None
    by: str | None
    responses: int
    overall: ScoreSet
    groups: list[ScoreGroup]
    trend: list[ScoreGroup] = Field(description="By month of the store's calendar.")


class LevelOut(BaseModel):
    level: str
    en: str
    zh: str


class GapOut(BaseModel):
    attribute: str
    label: dict[str, str] | None
    n: int
    expectation_mean: float
    experience_mean: float
    gap_mean: float
    gap: EstimateOut
    level: str
    level_label: dict[str, str]
    distribution: dict[str, int]


class GapsOut(BaseModel):
    survey_key: str | None
    since: datetime | None
    until: datetime | None
    levels: list[LevelOut]
    attributes: list[GapOut]


class IpaPointOut(BaseModel):
    attribute: str
    label: dict[str, str] | None
    importance: float
    performance: float
    quadrant: str


class IpaOut(BaseModel):
    survey_key: str | None
    source: str = Field(
        description="pairs: importance = mean expectation, performance = mean experience; "
        "comparison: importance 1–5 and our rating 1–10 on benefit attributes."
    )
    importance_mean: float | None
    performance_mean: float | None
    points: list[IpaPointOut]


class ComparisonOut(BaseModel):
    competitor: str
    difference: EstimateOut
    verdict: str


class AttributeValueOut(BaseModel):
    attribute: str
    label: dict[str, str] | None
    cost: bool
    n: int
    importance: float
    weight: float
    ratings: dict[str, float | None]
    comparisons: list[ComparisonOut]


class PartyValueOut(BaseModel):
    party: str
    benefit: float | None
    cost: float | None
    value: float | None = Field(description="Perceived value CPV = benefit − cost.")
    rank: int | None


class ValueAnalysisOut(BaseModel):
    survey_key: str | None
    since: datetime | None
    until: datetime | None
    n: int
    competitors: list[str]
    attributes: list[AttributeValueOut]
    parties: list[PartyValueOut]
    ranking: list[str]


# -- reviews ------------------------------------------------------------------------------


class ReviewIn(_In):
    external_id: ExternalId
    customer_external_id: ExternalId | None = None
    product_sku: ExternalId
    order_external_id: ExternalId | None = None
    rating: StrictInt = Field(ge=1, le=5)
    title: ShortText | None = None
    body: LongText | None = None
    channel: Label | None = None
    created_at: Instant | None = None


class ReviewOut(BaseModel):
    external_id: str
    customer_external_id: str | None
    product_sku: str
    order_external_id: str | None
    rating: int
    title: str | None
    body: str | None
    channel: str | None
    verified_purchase: bool
    status: ReviewStatus
    moderation_note: str | None
    moderated_at: datetime | None
    reply: str | None
    replied_at: datetime | None
    points: int = Field(description="Points credited for the review once approved.")
    ticket_id: int | None = Field(description="The follow-up ticket of a 1–2 star review.")
    created_at: datetime


class ReviewPage(BaseModel):
    items: list[ReviewOut]
    next_after: int | None = None


class ModerationIn(_In):
    decision: Literal["approve", "reject"]
    note: ShortText | None = None


class ReplyIn(_In):
    reply: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000),
        AfterValidator(check_json_value),
    ]


class RatingSummary(BaseModel):
    count: int
    mean: float | None
    distribution: dict[str, int] = Field(description="Reviews per star, 1 to 5.")


class ProductRating(RatingSummary):
    product_sku: str


class ReviewSummaryOut(BaseModel):
    statuses: list[ReviewStatus]
    overall: RatingSummary
    products: list[ProductRating]
