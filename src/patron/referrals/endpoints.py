"""Referral and surprise routes: parse, call the service, answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from patron.auth import Principal, Scope, SessionDep, require
from patron.config import get_settings
from patron.kit.text import CleanText, Instant
from patron.referrals.models import GiftStatus, ReferralStatus
from patron.referrals.schemas import (
    GiftPage,
    MyReferralOut,
    PlanIn,
    PlanOut,
    ReferralIn,
    ReferralOut,
    ReferralPage,
    StatsOut,
    TreeOut,
)
from patron.referrals.service import MAX_TREE_DEPTH, referrals, surprises

router = APIRouter(tags=["referrals"])
Read = Annotated[Principal, require(Scope.read)]
Admin = Annotated[Principal, require(Scope.admin)]
Ingest = Annotated[Principal, require(Scope.ingest)]
Member = Annotated[Principal, require(Scope.member)]
ExtId = Annotated[CleanText, Path(min_length=1, max_length=128)]
Limit = Annotated[int, Query(ge=1, le=500)]
After = Annotated[int | None, Query(ge=0, le=2**62)]


def _base_url(request: Request) -> str:
    return get_settings().referral_base_url or str(request.base_url)


@router.get("/v1/me/referral", response_model=MyReferralOut, tags=["member"])
def my_referral(request: Request, session: SessionDep, who: Member) -> MyReferralOut:
    """The signed-in member's referral code (created on the first ask), share link,
    counts and points earned by referring."""
    assert who.customer_id is not None
    return referrals.summary(session, who.store, who.customer_id, _base_url(request))


@router.get("/v1/customers/{external_id}/referral", response_model=MyReferralOut)
def customer_referral(
    external_id: ExtId, request: Request, session: SessionDep, who: Admin
) -> MyReferralOut:
    """A customer's referral code (created on the first ask), link and counts."""
    return referrals.summary_of(session, who.store, external_id, _base_url(request))


@router.post(
    "/v1/referrals",
    response_model=ReferralOut,
    status_code=201,
    responses={200: {"model": ReferralOut, "description": "Already attributed to this code"}},
)
def attribute(
    body: ReferralIn, session: SessionDep, who: Ingest, response: Response
) -> ReferralOut:
    """Record that a customer signed up through a referral code. Call it at sign-up.

    A customer is attributed once: the same code again answers 200 with the referral;
    another code is refused (409). A referral refused by a fraud rule is recorded as
    `rejected` with its `reason` (201 all the same: the sign-up itself is fine)."""
    out, created = referrals.attribute(session, who.store, body)
    if not created:
        response.status_code = 200
    return out


@router.get("/v1/referrals", response_model=ReferralPage)
def list_referrals(
    session: SessionDep,
    who: Read,
    status: ReferralStatus | None = None,
    referrer: Annotated[CleanText | None, Query(min_length=1, max_length=128)] = None,
    limit: Limit = 50,
    after: After = None,
) -> ReferralPage:
    """Referrals, oldest first; `status=rejected` lists refused ones with their reason."""
    return referrals.list(
        session, who.store, status=status, referrer_external_id=referrer, limit=limit, after=after
    )


@router.get("/v1/referrals/tree", response_model=TreeOut)
def referral_tree(
    session: SessionDep,
    who: Read,
    root: Annotated[CleanText, Query(min_length=1, max_length=128)],
    depth: Annotated[int, Query(ge=1, le=MAX_TREE_DEPTH)] = 3,
) -> TreeOut:
    """Who `root` referred, and who they referred, `depth` levels down."""
    return referrals.tree(session, who.store, root, depth)


@router.get("/v1/referrals/stats", response_model=StatsOut)
def referral_stats(
    session: SessionDep, who: Read, since: Instant | None = None, until: Instant | None = None
) -> StatsOut:
    """Invitations, attributions, conversion and the viral coefficient K of a window of
    attribution times [since, until) (default: all time until now)."""
    return referrals.stats(session, who.store, since, until)


@router.post("/v1/surprises/plan", response_model=PlanOut, status_code=201, tags=["surprises"])
def plan_surprise(body: PlanIn, session: SessionDep, who: Admin) -> PlanOut:
    """Plan surprise gifts (惊喜) for a segment: each member gets a gift at an irregular
    time within the programme's jitter, of an irregular amount, if the budget and the
    limits allow it when it falls due. Flagged members are left out."""
    return surprises.plan(session, who.store, body, api_key_id=who.key_id)


@router.get("/v1/surprises", response_model=GiftPage, tags=["surprises"])
def list_surprises(
    session: SessionDep,
    who: Read,
    plan_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    status: GiftStatus | None = None,
    limit: Limit = 50,
    after: After = None,
) -> GiftPage:
    """Surprise gifts: scheduled, given, or skipped with the limit that stopped them."""
    return surprises.gifts(
        session, who.store, plan_id=plan_id, status=status, limit=limit, after=after
    )
