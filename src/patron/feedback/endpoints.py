"""Survey, score and review routes: parse, call the service, answer.

The survey-link routes take no API key: the signed, use-once token is the credential.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from patron.auth import Principal, Scope, SessionDep, require
from patron.feedback.models import ReviewStatus
from patron.feedback.pages import router as pages_router
from patron.feedback.reviews import reviews
from patron.feedback.schemas import (
    DuePage,
    GapsOut,
    InvitationOut,
    InviteIn,
    InviteOut,
    IpaOut,
    Lang,
    LinkOut,
    ModerationIn,
    ReplyIn,
    ResponseIn,
    ResponseOut,
    ReviewIn,
    ReviewOut,
    ReviewPage,
    ReviewSummaryOut,
    ScoresOut,
    SurveyIn,
    SurveyList,
    SurveyOut,
    SurveySettings,
    TemplateList,
    TriggerRunOut,
    ValueAnalysisOut,
)
from patron.feedback.scores import By, scores
from patron.feedback.service import invitations, public_base, responses, run_triggers, surveys
from patron.kit.text import CleanText, Instant

router = APIRouter(tags=["feedback"])
router.include_router(pages_router)  # the response page, /s/{store}/{token}
Read = Annotated[Principal, require(Scope.read)]
Admin = Annotated[Principal, require(Scope.admin)]
Ingest = Annotated[Principal, require(Scope.ingest)]
Key = Annotated[CleanText, Path(min_length=1, max_length=64)]
ExtId = Annotated[CleanText, Path(min_length=1, max_length=128)]
Token = Annotated[CleanText, Path(min_length=1, max_length=128)]
SurveyFilter = Annotated[CleanText | None, Query(min_length=1, max_length=64)]
Limit = Annotated[int, Query(ge=1, le=500)]
After = Annotated[int | None, Query(ge=0, le=2**62)]


def _base(request: Request) -> str:
    return public_base(str(request.base_url))


# -- surveys (admin) ----------------------------------------------------------------------


@router.get("/v1/surveys/templates", response_model=TemplateList)
def list_templates(who: Admin) -> TemplateList:
    """The built-in templates (post_purchase, cosmetics, after_ticket, competitor_value),
    every text in English and Chinese."""
    return surveys.templates()


@router.post("/v1/surveys", response_model=SurveyOut, status_code=201)
def create_survey(body: SurveyIn, session: SessionDep, who: Admin) -> SurveyOut:
    """Publish a survey (version 1) from a `definition` or a built-in `template`."""
    return surveys.create(session, who.store, body)


@router.get("/v1/surveys", response_model=SurveyList)
def list_surveys(session: SessionDep, who: Admin) -> SurveyList:
    """The current version of every survey."""
    return surveys.list(session, who.store)


@router.get("/v1/surveys/{key}", response_model=SurveyOut)
def get_survey(
    key: Key,
    session: SessionDep,
    who: Admin,
    version: Annotated[int | None, Query(ge=1, le=2**31)] = None,
) -> SurveyOut:
    """A survey's current version (or `version`)."""
    return surveys.get(session, who.store, key, version)


@router.put(
    "/v1/surveys/{key}",
    response_model=SurveyOut,
    responses={201: {"model": SurveyOut, "description": "A new version was published"}},
)
def update_survey(
    key: Key, body: SurveySettings, session: SessionDep, who: Admin, response: Response
) -> SurveyOut:
    """Publish a new version (201); unchanged content publishes nothing (200). Links
    already sent keep answering the version they were sent for."""
    out, changed = surveys.update(session, who.store, key, body)
    if changed:
        response.status_code = 201
    return out


@router.post("/v1/surveys/{key}/deactivate", response_model=SurveyOut)
def deactivate_survey(key: Key, session: SessionDep, who: Admin) -> SurveyOut:
    """Stop inviting (API, triggers, reminders); links already sent stay answerable."""
    return surveys.deactivate(session, who.store, key)


# -- invitations and the outbox (admin) ---------------------------------------------------


@router.post("/v1/surveys/{key}/invitations", response_model=InviteOut, status_code=201)
def invite(
    key: Key, body: InviteIn, request: Request, session: SessionDep, who: Admin
) -> InviteOut:
    """Invite customers: one signed, use-once link each. Customers invited to any survey
    within `recontact_days` are skipped (survey fatigue), with the reason."""
    return invitations.invite(
        session,
        who.store,
        key,
        body.customers,
        body.subject,
        locale=body.locale,
        base_url=_base(request),
    )


@router.get("/v1/survey-invitations/due", response_model=DuePage)
def due_invitations(
    request: Request, session: SessionDep, who: Admin, limit: Limit = 100, after: After = None
) -> DuePage:
    """Invitations to deliver now (first sends and reminders), with link and contact.
    Deliver on the channels the customer consented to, then mark each as sent."""
    return invitations.due(session, who.store, limit=limit, after=after, base_url=_base(request))


@router.post("/v1/survey-invitations/{invitation_id}/sent", response_model=InvitationOut)
def mark_sent(
    invitation_id: Annotated[int, Path(ge=1, le=2**62)],
    request: Request,
    session: SessionDep,
    who: Admin,
) -> InvitationOut:
    """Record a delivery; marking one that is not due changes nothing."""
    return invitations.mark_sent(session, who.store, invitation_id, base_url=_base(request))


@router.post("/v1/survey-invitations/run", response_model=TriggerRunOut)
def run_survey_triggers(session: SessionDep, who: Admin) -> TriggerRunOut:
    """Run the trigger job now (delivered orders, closed tickets, reminders)."""
    return run_triggers(session, who.store).out()


# -- the public link ----------------------------------------------------------------------


@router.get("/v1/survey-links/{token}", response_model=LinkOut, tags=["survey links"])
def open_link(
    token: Token, session: SessionDep, lang: Annotated[Lang | None, Query()] = None
) -> LinkOut:
    """The survey of a link, in the invitation's language (or `lang`). No API key: the
    token is the credential. 404 unknown or tampered, 409 answered, 410 expired."""
    return responses.view(session, token, lang)


@router.post(
    "/v1/survey-links/{token}/response",
    response_model=ResponseOut,
    status_code=201,
    tags=["survey links"],
)
def submit_response(token: Token, body: ResponseIn, session: SessionDep) -> ResponseOut:
    """Answer a survey, once: a second response to the link is refused (409), whatever
    the timing. 422 lists every problem of the answers."""
    return responses.submit(session, token, body.answers, body.locale)


# -- scores (read) ------------------------------------------------------------------------


@router.get("/v1/feedback/scores", response_model=ScoresOut)
def feedback_scores(
    session: SessionDep,
    who: Read,
    survey: SurveyFilter = None,
    by: By | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
) -> ScoresOut:
    """NPS, CSAT and CES with 95% intervals: overall, by `by`, and the monthly trend."""
    return scores.report(session, who.store, survey_key=survey, by=by, since=since, until=until)


@router.get("/v1/feedback/gaps", response_model=GapsOut)
def feedback_gaps(
    session: SessionDep,
    who: Read,
    survey: SurveyFilter = None,
    since: Instant | None = None,
    until: Instant | None = None,
) -> GapsOut:
    """Satisfaction = experience − expectation per attribute, in five levels."""
    return scores.gaps(session, who.store, survey_key=survey, since=since, until=until)


@router.get("/v1/feedback/ipa", response_model=IpaOut)
def feedback_ipa(
    session: SessionDep,
    who: Read,
    survey: SurveyFilter = None,
    source: Annotated[str, Query(pattern="^(pairs|comparison)$")] = "pairs",
    since: Instant | None = None,
    until: Instant | None = None,
) -> IpaOut:
    """Importance–performance analysis: each attribute in a quadrant."""
    return scores.ipa(
        session, who.store, survey_key=survey, source=source, since=since, until=until
    )


@router.get("/v1/feedback/value-analysis", response_model=ValueAnalysisOut)
def feedback_value_analysis(
    session: SessionDep,
    who: Read,
    survey: SurveyFilter = None,
    since: Instant | None = None,
    until: Instant | None = None,
) -> ValueAnalysisOut:
    """Customer value analysis against competitors over [since, until); repeat it per
    period to follow the comparison over time."""
    return scores.value_analysis(session, who.store, survey_key=survey, since=since, until=until)


# -- reviews ------------------------------------------------------------------------------


@router.post(
    "/v1/reviews",
    response_model=ReviewOut,
    status_code=201,
    tags=["reviews"],
    responses={200: {"model": ReviewOut, "description": "Already recorded (a retry)"}},
)
def submit_review(
    body: ReviewIn, session: SessionDep, who: Ingest, response: Response
) -> ReviewOut:
    """Record a product review, pending moderation. A 1–2 star review opens a support
    ticket at once."""
    out, created = reviews.submit(session, who.store, body)
    if not created:
        response.status_code = 200
    return out


@router.get("/v1/reviews", response_model=ReviewPage, tags=["reviews"])
def list_reviews(
    session: SessionDep,
    who: Read,
    status: ReviewStatus | None = None,
    product: Annotated[CleanText | None, Query(min_length=1, max_length=128)] = None,
    rating: Annotated[int | None, Query(ge=1, le=5)] = None,
    limit: Limit = 50,
    after: After = None,
) -> ReviewPage:
    """Reviews, oldest first."""
    return reviews.list(
        session,
        who.store,
        status=status,
        product_sku=product,
        rating=rating,
        limit=limit,
        after=after,
    )


@router.get("/v1/reviews/summary", response_model=ReviewSummaryOut, tags=["reviews"])
def review_summary(
    session: SessionDep,
    who: Read,
    product: Annotated[CleanText | None, Query(min_length=1, max_length=128)] = None,
    status: Annotated[list[ReviewStatus] | None, Query()] = None,
) -> ReviewSummaryOut:
    """Rating distribution and mean, store-wide and per product (default: reviews not
    rejected)."""
    if status:
        return reviews.summary(session, who.store, product_sku=product, statuses=status)
    return reviews.summary(session, who.store, product_sku=product)


@router.get("/v1/reviews/alerts", response_model=ReviewPage, tags=["reviews"])
def review_alerts(
    session: SessionDep, who: Read, limit: Limit = 50, after: After = None
) -> ReviewPage:
    """Negative reviews (1–2 stars) without a reply yet: answer them (seed 004)."""
    return reviews.alerts(session, who.store, limit=limit, after=after)


@router.post("/v1/reviews/{external_id}/moderation", response_model=ReviewOut, tags=["reviews"])
def moderate_review(
    external_id: ExtId, body: ModerationIn, session: SessionDep, who: Admin
) -> ReviewOut:
    """Approve (credits review points once, through the programme's rules) or reject."""
    return reviews.moderate(session, who.store, external_id, body)


@router.post("/v1/reviews/{external_id}/reply", response_model=ReviewOut, tags=["reviews"])
def reply_review(external_id: ExtId, body: ReplyIn, session: SessionDep, who: Admin) -> ReviewOut:
    """The store's public reply."""
    return reviews.reply(session, who.store, external_id, body.reply)
