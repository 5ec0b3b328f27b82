"""Customer routes: upsert, bulk, read, touchpoints, member tokens and the member's own view."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel

from patron.auth import Principal, Scope, SessionDep, issue_member_token, require
from patron.config import get_settings
from patron.customers import repository as repo
from patron.customers.schemas import CustomerIn, CustomerOut, TouchpointOut
from patron.customers.service import customers
from patron.errors import Invalid, NotFound
from patron.ingest.api import BulkIn, run_bulk, run_one
from patron.kit.bulk import BulkResult, RecordResult
from patron.kit.pagination import Page
from patron.kit.text import CleanText, Instant

router = APIRouter(tags=["customers"])
Ingest = Annotated[Principal, require(Scope.ingest)]
Read = Annotated[Principal, require(Scope.read)]
Admin = Annotated[Principal, require(Scope.admin)]
Member = Annotated[Principal, require(Scope.member)]
ExtId = Annotated[CleanText, Path(min_length=1, max_length=128)]


@router.put(
    "/v1/customers/{external_id}",
    response_model=RecordResult,
    responses={201: {"model": RecordResult}},
)
def upsert_customer(
    external_id: ExtId, body: CustomerIn, session: SessionDep, who: Ingest, response: Response
) -> RecordResult:
    """Create or update one customer. Re-sending the same body changes nothing."""
    if body.external_id != external_id:
        raise Invalid("external_id: must equal the id in the path")
    return run_one(session, who.store, "customer", body, customers.upsert_many, response)


@router.post("/v1/customers/bulk", response_model=BulkResult)
def bulk_customers(
    body: BulkIn,
    session: SessionDep,
    who: Ingest,
    atomic: bool = Query(False, description="All or nothing."),
) -> BulkResult:
    """Upsert up to 10,000 customers; one result per record, in request order."""
    return run_bulk(
        session, who.store, "customer", CustomerIn, body.records, customers.upsert_many, atomic
    )


@router.get("/v1/customers", response_model=Page[CustomerOut])
def list_customers(
    session: SessionDep,
    who: Read,
    limit: int = Query(50, ge=1, le=500),
    after: int | None = Query(None, ge=0, le=2**62),
    email: Annotated[CleanText | None, Query(max_length=320)] = None,
) -> Page[CustomerOut]:
    rows = repo.list_page(session, who.store.id, limit, after, email)
    items = [CustomerOut.model_validate(c) for c in rows]
    return Page(items=items, next_after=rows[-1].id if len(rows) == limit else None)


@router.get("/v1/customers/{external_id}", response_model=CustomerOut)
def read_customer(external_id: ExtId, session: SessionDep, who: Read) -> CustomerOut:
    return customers.read(session, who.store, external_id)


@router.get("/v1/customers/{external_id}/touchpoints", response_model=list[TouchpointOut])
def customer_touchpoints(
    external_id: ExtId,
    session: SessionDep,
    who: Read,
    limit: int = Query(100, ge=1, le=1000),
    before: Instant | None = None,
) -> list[TouchpointOut]:
    """The customer's events, newest first: orders, refunds, consent changes, sign-up…"""
    customer = customers.read(session, who.store, external_id)
    rows = repo.touchpoints_of(session, who.store.id, customer.id, limit, before)
    return [TouchpointOut.model_validate(t) for t in rows]


class MemberToken(BaseModel):
    token: str
    expires_at: int


@router.post("/v1/customers/{external_id}/member-token", response_model=MemberToken)
def member_token(external_id: ExtId, session: SessionDep, who: Admin) -> MemberToken:
    """A short-lived signed token the store's front end hands to this customer."""
    customer = repo.get_by_external_id(session, who.store.id, external_id)
    if customer is None:
        raise NotFound(f"No customer with external id {external_id!r} in this store.")
    token, expires = issue_member_token(
        who.store, customer.id, get_settings().member_token_ttl_seconds
    )
    return MemberToken(token=token, expires_at=expires)


@router.get("/v1/me", response_model=CustomerOut, tags=["member"])
def me(session: SessionDep, who: Member) -> CustomerOut:
    """The signed-in member's own profile."""
    assert who.customer_id is not None
    customer = repo.get(session, who.store.id, who.customer_id)
    if customer is None:
        raise NotFound("This member no longer exists.")
    return customers.out(session, customer)
