"""Points routes: the member's balance and history; admin reads, adjustments, liability."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy.orm import Session

from patron.auth import Principal, Scope, SessionDep, require
from patron.kit.text import CleanText
from patron.loyalty.schemas import (
    AdjustIn,
    BalanceOut,
    EntryOut,
    ExpiringOut,
    HistoryPage,
    LiabilityOut,
    PostingOut,
)
from patron.loyalty.service import ledger
from patron.stores.models import Store

router = APIRouter(tags=["points"])
Read = Annotated[Principal, require(Scope.read)]
Admin = Annotated[Principal, require(Scope.admin)]
Member = Annotated[Principal, require(Scope.member)]
ExtId = Annotated[CleanText, Path(min_length=1, max_length=128)]
Limit = Annotated[int, Query(ge=1, le=500)]
Before = Annotated[int | None, Query(ge=1, le=2**62, description="Entries older than this id.")]
CostPerPoint = Annotated[
    Decimal,
    Query(
        ge=0,
        le=1_000_000,
        max_digits=18,
        allow_inf_nan=False,
        description="Value of one point in the store's currency.",
    ),
]


def _balance(session: Session, store: Store, customer_id: int) -> BalanceOut:
    found, expiring = ledger.balance_and_expiring(session, store, customer_id, timedelta(days=30))
    balance = asdict(found)
    del balance["customer_id"]
    return BalanceOut(
        **balance, expiring=[ExpiringOut(expires_at=at, points=n) for at, n in expiring]
    )


def _history(
    session: Session, store: Store, customer_id: int, limit: int, before: int | None
) -> HistoryPage:
    rows = ledger.history(session, store, customer_id, limit, before)
    return HistoryPage(
        items=[EntryOut.model_validate(e) for e in rows],
        next_before=rows[-1].id if len(rows) == limit else None,
    )


@router.get("/v1/me/points", response_model=BalanceOut, tags=["member"])
def my_points(session: SessionDep, who: Member) -> BalanceOut:
    """The signed-in member's points and growth."""
    assert who.customer_id is not None
    ledger.require_member(session, who.store, who.customer_id)
    return _balance(session, who.store, who.customer_id)


@router.get("/v1/me/points/history", response_model=HistoryPage, tags=["member"])
def my_points_history(
    session: SessionDep, who: Member, limit: Limit = 20, before: Before = None
) -> HistoryPage:
    """The signed-in member's ledger entries with their reasons, newest first."""
    assert who.customer_id is not None
    ledger.require_member(session, who.store, who.customer_id)
    return _history(session, who.store, who.customer_id, limit, before)


@router.get("/v1/customers/{external_id}/points", response_model=BalanceOut)
def customer_points(external_id: ExtId, session: SessionDep, who: Read) -> BalanceOut:
    customer_id = ledger.customer_id(session, who.store, external_id)
    return _balance(session, who.store, customer_id)


@router.get("/v1/customers/{external_id}/points/history", response_model=HistoryPage)
def customer_points_history(
    external_id: ExtId, session: SessionDep, who: Read, limit: Limit = 50, before: Before = None
) -> HistoryPage:
    customer_id = ledger.customer_id(session, who.store, external_id)
    return _history(session, who.store, customer_id, limit, before)


@router.post(
    "/v1/customers/{external_id}/points/adjust",
    response_model=PostingOut,
    status_code=201,
    responses={200: {"model": PostingOut, "description": "A replay: the first result"}},
)
def adjust_points(
    external_id: ExtId, body: AdjustIn, session: SessionDep, who: Admin, response: Response
) -> PostingOut:
    """Credit (+) or debit (-) a member's points or growth, with a reason. The entry
    records the API key. A debit beyond the available points is refused (409)."""
    customer_id = ledger.customer_id(session, who.store, external_id)
    posting = ledger.adjust(
        session,
        who.store,
        customer_id,
        key=body.idempotency_key or f"adjust:{uuid.uuid4()}",
        points=body.points,
        growth=body.growth,
        reason=body.reason,
        api_key_id=who.key_id,
        expires_at=body.expires_at,
    )
    if posting.replayed:
        response.status_code = 200
    return PostingOut(
        idempotency_key=posting.key,
        replayed=posting.replayed,
        entries=[EntryOut.model_validate(e) for e in posting.entries],
        balance=_balance(session, who.store, customer_id),
    )


@router.get("/v1/loyalty/liability", response_model=LiabilityOut, tags=["loyalty"])
def liability(
    session: SessionDep, who: Admin, cost_per_point: CostPerPoint = Decimal("0.01")
) -> LiabilityOut:
    """Outstanding points × cost per point, pending points, and breakage (expired /
    earned)."""
    return LiabilityOut(**asdict(ledger.liability(session, who.store, cost_per_point)))
