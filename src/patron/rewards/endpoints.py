"""Reward routes: the catalogue, redeeming, redemptions and their cancellation, and the
checkout's coupon and points-as-cash calls."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response

from patron.auth import Principal, Scope, SessionDep, require
from patron.errors import SafeJSONResponse
from patron.kit.money import from_minor
from patron.kit.text import CleanText
from patron.rewards.domain import CouponWhy
from patron.rewards.schemas import (
    CancelIn,
    CatalogueOut,
    CheckoutOut,
    HoldIn,
    QuoteIn,
    QuoteOut,
    RedemptionOut,
    RedemptionsPage,
    RewardOut,
    UseIn,
    UseOut,
    ValidateIn,
    ValidateOut,
    coupon_out,
    redemption_out,
)
from patron.rewards.service import Redeemed, rewards

router = APIRouter(tags=["rewards"])
Read = Annotated[Principal, require(Scope.read)]
Ingest = Annotated[Principal, require(Scope.ingest)]
Admin = Annotated[Principal, require(Scope.admin)]
Member = Annotated[Principal, require(Scope.member)]
ExtId = Annotated[CleanText, Path(min_length=1, max_length=128)]
RewardId = Annotated[CleanText, Path(min_length=1, max_length=64)]
RedemptionId = Annotated[int, Path(ge=1, le=2**62)]
CheckoutId = Annotated[CleanText, Path(min_length=1, max_length=128)]
Limit = Annotated[int, Query(ge=1, le=500)]
Before = Annotated[int | None, Query(ge=1, le=2**62, description="Older than this id.")]
IdempotencyKey = Annotated[
    CleanText,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Required: a new key per redemption; a repeat returns the first result.",
    ),
]
REDEEMED: dict[int | str, dict[str, Any]] = {
    200: {"model": RedemptionOut, "description": "A replay: the first result"}
}


def _answer(result: Redeemed, external_id: str, response: Response) -> RedemptionOut:
    if result.replayed:
        response.status_code = 200
    return redemption_out(result, external_id)


def _rendered(result: Redeemed, external_id: str) -> Response:
    """A redemption's answer rendered here, byte for byte what the route's response model
    gives: FastAPI would validate the model again and serialise it in another worker
    thread hop — CPU the hot path can spare (the response model still documents it)."""
    out = redemption_out(result, external_id)
    try:
        body = out.model_dump_json(by_alias=True)
    except ValueError:  # text that cannot be UTF-8 (a lone surrogate): FastAPI's renderer
        return SafeJSONResponse(out.model_dump(mode="json"), 200 if result.replayed else 201)
    return Response(body, 200 if result.replayed else 201, media_type="application/json")


# -- catalogue -----------------------------------------------------------------------------


@router.get("/v1/rewards", response_model=CatalogueOut)
def catalogue(
    session: SessionDep,
    who: Read,
    customer: Annotated[
        CleanText | None,
        Query(
            min_length=1,
            max_length=128,
            description="A customer's external id: say whether they can redeem each.",
        ),
    ] = None,
) -> CatalogueOut:
    """The active programme's rewards: cost, stock left, units issued."""
    customer_id = None if customer is None else rewards.customer_id(session, who.store, customer)
    items = rewards.catalogue(session, who.store, customer_id)
    return CatalogueOut(items=[RewardOut.of(i) for i in items])


@router.get("/v1/me/rewards", response_model=CatalogueOut, tags=["member"])
def my_catalogue(session: SessionDep, who: Member) -> CatalogueOut:
    """The rewards, each with whether the signed-in member can redeem it now and why not."""
    assert who.customer_id is not None
    rewards.member_external_id(session, who.store, who.customer_id)
    items = rewards.catalogue(session, who.store, who.customer_id)
    return CatalogueOut(items=[RewardOut.of(i) for i in items])


# -- redeem --------------------------------------------------------------------------------


@router.post(
    "/v1/me/rewards/{reward_id}/redeem",
    response_model=RedemptionOut,
    status_code=201,
    responses=REDEEMED,
    tags=["member"],
)
def redeem_mine(
    reward_id: RewardId,
    session: SessionDep,
    who: Member,
    response: Response,
    idempotency_key: IdempotencyKey,
) -> RedemptionOut:
    """Redeem a reward with the signed-in member's points (409 when not eligible)."""
    assert who.customer_id is not None
    external_id = rewards.member_external_id(session, who.store, who.customer_id)
    result = rewards.redeem(session, who.store, who.customer_id, reward_id, key=idempotency_key)
    return _answer(result, external_id, response)


@router.post(
    "/v1/customers/{external_id}/rewards/{reward_id}/redeem",
    response_model=RedemptionOut,
    status_code=201,
    responses=REDEEMED,
)
def redeem_for(
    external_id: ExtId,
    reward_id: RewardId,
    session: SessionDep,
    who: Ingest,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Redeem a reward for a customer (the store's own pages or support)."""
    customer_id = rewards.lock_customer(session, who.store, external_id)
    result = rewards.redeem(
        session,
        who.store,
        customer_id,
        reward_id,
        key=idempotency_key,
        api_key_id=who.key_id,
        customer_locked=True,
    )
    return _rendered(result, external_id)


# -- redemptions ---------------------------------------------------------------------------


def _page(items: list[Redeemed], external_id: str, limit: int) -> RedemptionsPage:
    return RedemptionsPage(
        items=[redemption_out(r, external_id) for r in items],
        next_before=items[-1].redemption.id if len(items) == limit else None,
    )


@router.get("/v1/me/redemptions", response_model=RedemptionsPage, tags=["member"])
def my_redemptions(
    session: SessionDep, who: Member, limit: Limit = 20, before: Before = None
) -> RedemptionsPage:
    """The signed-in member's redemptions with their coupons, newest first."""
    assert who.customer_id is not None
    external_id = rewards.member_external_id(session, who.store, who.customer_id)
    items = rewards.history(session, who.store, who.customer_id, limit, before)
    return _page(items, external_id, limit)


@router.get("/v1/customers/{external_id}/redemptions", response_model=RedemptionsPage)
def customer_redemptions(
    external_id: ExtId, session: SessionDep, who: Read, limit: Limit = 50, before: Before = None
) -> RedemptionsPage:
    customer_id = rewards.customer_id(session, who.store, external_id)
    items = rewards.history(session, who.store, customer_id, limit, before)
    return _page(items, external_id, limit)


@router.get("/v1/redemptions/{redemption_id}", response_model=RedemptionOut)
def read_redemption(redemption_id: RedemptionId, session: SessionDep, who: Read) -> RedemptionOut:
    """A redemption, with its coupon and, for a lucky draw, the audit of the draw."""
    result = rewards.get(session, who.store, redemption_id)
    external_id = rewards.external_id(session, who.store, result.redemption.customer_id)
    return redemption_out(result, external_id)


@router.post("/v1/redemptions/{redemption_id}/cancel", response_model=RedemptionOut)
def cancel_redemption(
    redemption_id: RedemptionId, session: SessionDep, who: Admin, body: CancelIn | None = None
) -> RedemptionOut:
    """Cancel a redemption: points back exactly, stock back, its coupon void (409 once the
    coupon is used). Again: the cancelled redemption (`replayed`)."""
    reason = body.reason if body is not None and body.reason else "cancelled by the store"
    result = rewards.cancel(session, who.store, redemption_id, reason)
    external_id = rewards.external_id(session, who.store, result.redemption.customer_id)
    return redemption_out(result, external_id)


# -- coupons at checkout -------------------------------------------------------------------


@router.post("/v1/coupons/validate", response_model=ValidateOut, tags=["checkout"])
def validate_coupon(body: ValidateIn, session: SessionDep, who: Ingest) -> ValidateOut:
    """Whether a coupon applies to a customer's checkout, and its discount. Writes nothing;
    an invalid coupon is `valid: false` with a reason."""
    found = rewards.validate_coupon(
        session, who.store, body.code, body.customer_external_id, body.subtotal, body.currency
    )
    check, coupon = found.check, found.coupon
    # Only the customer's own coupon is shown (a code alone reveals nobody's coupon).
    mine = check.reason not in (CouponWhy.not_found, CouponWhy.other_customer)
    return ValidateOut(
        valid=check.valid,
        reason=None if check.reason is None else check.reason.value,
        message=check.message,
        discount=from_minor(check.discount_minor, body.currency),
        currency=body.currency,
        coupon=coupon_out(coupon) if coupon is not None and mine else None,
    )


@router.post("/v1/coupons/{code}/use", response_model=UseOut, tags=["checkout"])
def use_coupon(
    code: Annotated[CleanText, Path(min_length=1, max_length=64)],
    body: UseIn,
    session: SessionDep,
    who: Ingest,
) -> UseOut:
    """Mark a coupon used by an order, exactly once (the same order again: a no-op)."""
    coupon, replayed = rewards.use_coupon(
        session, who.store, code, body.order_external_id, body.customer_external_id, body.subtotal
    )
    assert coupon.used_at is not None and coupon.order_external_id is not None
    return UseOut(
        code=coupon.code,
        order_external_id=coupon.order_external_id,
        discount=from_minor(coupon.discount_minor or 0, coupon.currency),
        currency=coupon.currency,
        used_at=coupon.used_at,
        replayed=replayed,
    )


# -- points as cash at checkout ------------------------------------------------------------


@router.post("/v1/checkout/points/quote", response_model=QuoteOut, tags=["checkout"])
def quote_points(body: QuoteIn, session: SessionDep, who: Ingest) -> QuoteOut:
    """The most points a customer can use on an order (积分抵现), and what they pay."""
    customer_id = rewards.customer_id(session, who.store, body.customer_external_id)
    q, reward, available, currency = rewards.quote(
        session, who.store, customer_id, body.order_total, body.currency
    )
    return QuoteOut(
        max_points=q.max_points,
        cash=from_minor(q.cash_minor, currency),
        currency=currency,
        points_available=available,
        step=q.step,
        reward_id=None if reward is None else reward.id,
        points_per_unit=None if reward is None else reward.points_per_unit,
        reason=q.reason,
    )


@router.post(
    "/v1/checkout/points/hold",
    response_model=CheckoutOut,
    status_code=201,
    responses={200: {"model": CheckoutOut, "description": "A replay: the first result"}},
    tags=["checkout"],
)
def hold_points(body: HoldIn, session: SessionDep, who: Ingest, response: Response) -> CheckoutOut:
    """Hold points for a checkout: they leave the balance at once and are captured or
    released once (released by themselves after 30 minutes)."""
    customer_id = rewards.customer_id(session, who.store, body.customer_external_id)
    result = rewards.hold(
        session,
        who.store,
        customer_id,
        checkout_id=body.checkout_id,
        points=body.points,
        order_total=body.order_total,
    )
    if result.replayed:
        response.status_code = 200
    return CheckoutOut.of(result, body.customer_external_id)


def _resolve(session: SessionDep, who: Principal, checkout_id: str, capture: bool) -> CheckoutOut:
    result = rewards.resolve(session, who.store, checkout_id, capture)
    external_id = rewards.external_id(session, who.store, result.checkout.customer_id)
    return CheckoutOut.of(result, external_id)


@router.post(
    "/v1/checkout/points/{checkout_id}/capture", response_model=CheckoutOut, tags=["checkout"]
)
def capture_points(checkout_id: CheckoutId, session: SessionDep, who: Ingest) -> CheckoutOut:
    """The order went through: the held points are spent."""
    return _resolve(session, who, checkout_id, capture=True)


@router.post(
    "/v1/checkout/points/{checkout_id}/release", response_model=CheckoutOut, tags=["checkout"]
)
def release_points(checkout_id: CheckoutId, session: SessionDep, who: Ingest) -> CheckoutOut:
    """The checkout was abandoned: the held points go back."""
    return _resolve(session, who, checkout_id, capture=False)
