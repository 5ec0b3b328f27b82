"""Member routes beyond the balance: tier, progress and tier history; daily check-in;
actions a store reports (sign-up, profile completed, review, share)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import Principal, Scope, SessionDep, require
from patron.errors import SafeJSONResponse
from patron.kit.money import from_minor
from patron.kit.text import CleanText
from patron.loyalty import actions, membership
from patron.loyalty.endpoints import _balance
from patron.loyalty.models import LoyaltyNotice, NoticeKind
from patron.loyalty.orders import require_program
from patron.loyalty.program import EventKind, ProgramConfig, TierDef
from patron.loyalty.schemas import (
    ActionIn,
    ActionOut,
    FiredRuleOut,
    LocalNameOut,
    NoticeOut,
    NoticePage,
    StandingOut,
    TierBenefitsOut,
    TierChangeOut,
    TierHistoryPage,
    TierOut,
    TierRefOut,
)
from patron.loyalty.service import ledger
from patron.stores.models import Store

router = APIRouter(tags=["tiers"])
Read = Annotated[Principal, require(Scope.read)]
Ingest = Annotated[Principal, require(Scope.ingest)]
Member = Annotated[Principal, require(Scope.member)]
ExtId = Annotated[CleanText, Path(min_length=1, max_length=128)]
Limit = Annotated[int, Query(ge=1, le=500)]


def _value(program: ProgramConfig, value: int) -> Decimal:
    """A qualifying value as shown: currency units for spend tiers, else a count."""
    if program.tiers[0].qualify_on == "spend":
        return from_minor(value, program.currency)
    return Decimal(value)


def _ref(tier: TierDef) -> TierRefOut:
    return TierRefOut(
        code=tier.code,
        name=LocalNameOut(en=tier.name.en, zh=tier.name.zh),
        threshold=tier.threshold,
    )


def _standing(session: Session, store: Store, customer_id: int) -> StandingOut:
    program = require_program(session, store)
    found = membership.standing(session, store, program, customer_id)
    tier, progress = found.tier, found.progress
    nxt = program.tier(progress.next) if progress.next else None
    window = tier.window
    return StandingOut(
        tier=TierOut(
            **_ref(tier).model_dump(),
            benefits=TierBenefitsOut(**tier.benefits.model_dump()),
        ),
        since=found.since,
        review_at=found.review_at,
        qualify_on=tier.qualify_on,
        window="calendar_year" if window.calendar_year else f"rolling {window.rolling_days} days",
        value=_value(program, found.value),
        retain=_value(program, found.retain),
        next_tier=_ref(nxt) if nxt else None,
        missing=_value(program, progress.missing),
        message=progress.message,
        message_zh=progress.message_zh,
    )


def _history(session: Session, store: Store, customer_id: int, limit: int) -> TierHistoryPage:
    rows = membership.tier_history(session, store, customer_id, limit)
    return TierHistoryPage(items=[TierChangeOut.model_validate(r) for r in rows])


@router.get("/v1/me/tier", response_model=StandingOut, tags=["member"])
def my_tier(session: SessionDep, who: Member) -> StandingOut:
    """The signed-in member's tier, benefits and progress ("spend 320 more to reach Gold")."""
    assert who.customer_id is not None
    ledger.require_member(session, who.store, who.customer_id)
    return _standing(session, who.store, who.customer_id)


@router.get("/v1/me/tier/history", response_model=TierHistoryPage, tags=["member"])
def my_tier_history(session: SessionDep, who: Member, limit: Limit = 20) -> TierHistoryPage:
    assert who.customer_id is not None
    ledger.require_member(session, who.store, who.customer_id)
    return _history(session, who.store, who.customer_id, limit)


@router.get("/v1/customers/{external_id}/tier", response_model=StandingOut)
def customer_tier(external_id: ExtId, session: SessionDep, who: Read) -> StandingOut:
    customer_id = ledger.customer_id(session, who.store, external_id)
    return _standing(session, who.store, customer_id)


@router.get("/v1/customers/{external_id}/tier/history", response_model=TierHistoryPage)
def customer_tier_history(
    external_id: ExtId, session: SessionDep, who: Read, limit: Limit = 50
) -> TierHistoryPage:
    """Every tier change of the member, newest first: entries, upgrades, reviews."""
    customer_id = ledger.customer_id(session, who.store, external_id)
    return _history(session, who.store, customer_id, limit)


def _action(
    session: Session, store: Store, customer_id: int, done: actions.ActionResult
) -> ActionOut:
    fired = done.evaluation.fired if done.evaluation is not None else []
    return ActionOut(
        kind=done.kind.value,
        idempotency_key=done.key,
        points=done.points,
        growth=done.growth,
        replayed=done.replayed,
        streak=done.streak,
        rules=[
            FiredRuleOut(rule_id=t.rule_id, points=t.points, growth=t.growth, reason=t.reason)
            for t in fired
        ],
        balance=_balance(session, store, customer_id),
    )


def _rendered(out: ActionOut, replayed: bool) -> Response:
    """An action's answer rendered here, byte for byte what the route's response model
    gives: FastAPI would validate the model again and serialise it in another worker
    thread hop (the response model still documents it). 200 for a replay, else 201."""
    status = 200 if replayed else 201
    try:
        body = out.model_dump_json(by_alias=True)
    except ValueError:  # text that cannot be UTF-8 (a lone surrogate): FastAPI's renderer
        return SafeJSONResponse(out.model_dump(mode="json"), status)
    return Response(body, status, media_type="application/json")


@router.post(
    "/v1/me/check-in",
    response_model=ActionOut,
    status_code=201,
    tags=["member"],
    responses={200: {"model": ActionOut, "description": "Already checked in today"}},
)
def my_check_in(session: SessionDep, who: Member, response: Response) -> ActionOut:
    """Daily check-in (签到): once per store-time day; streak bonuses per the programme's
    check_in rules. A second check-in the same day answers 200 with ``replayed``."""
    assert who.customer_id is not None
    done = actions.check_in(session, who.store, who.customer_id)
    if done.replayed:
        response.status_code = 200
    return _action(session, who.store, who.customer_id, done)


@router.post(
    "/v1/customers/{external_id}/actions",
    response_model=ActionOut,
    status_code=201,
    responses={200: {"model": ActionOut, "description": "A replay: credited before"}},
)
def report_action(external_id: ExtId, body: ActionIn, session: SessionDep, who: Ingest) -> Response:
    """The store reports what a member did; the programme's rules for that action decide
    the points (caps and budgets apply). Sign-up and profile completion count once."""
    customer_id, done = actions.report_for(
        session, who.store, external_id, EventKind(body.kind), body.key, body.ref
    )
    return _rendered(_action(session, who.store, customer_id, done), done.replayed)


@router.get("/v1/loyalty/notices", response_model=NoticePage, tags=["loyalty"])
def notices(
    session: SessionDep,
    who: Read,
    kind: Annotated[NoticeKind | None, Query()] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Limit = 100,
) -> NoticePage:
    """Notices the loyalty jobs wrote, oldest first (page with ``after``): points about to
    expire (``expiry_reminder_days`` before), tier upgrades and downgrades."""
    query = select(LoyaltyNotice).where(LoyaltyNotice.store_id == who.store.id)
    if kind is not None:
        query = query.where(LoyaltyNotice.kind == kind)
    if after is not None:
        query = query.where(LoyaltyNotice.id > after)
    rows = list(session.scalars(query.order_by(LoyaltyNotice.id).limit(limit)))
    return NoticePage(
        items=[NoticeOut.model_validate(r) for r in rows],
        next_after=rows[-1].id if len(rows) == limit else None,
    )
