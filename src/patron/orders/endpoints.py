"""Product, order and refund routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from patron.auth import Principal, Scope, SessionDep, require
from patron.customers import repository as customer_repo
from patron.errors import Invalid, NotFound
from patron.ingest.api import BulkIn, run_bulk, run_one
from patron.kit.bulk import BulkResult, RecordResult
from patron.kit.money import from_minor
from patron.kit.pagination import Page
from patron.kit.text import CleanText
from patron.orders import repository as repo
from patron.orders.schemas import OrderIn, OrderOut, ProductIn, ProductOut, RefundIn, RefundOut
from patron.orders.service import orders, products, refunds

router = APIRouter()
Ingest = Annotated[Principal, require(Scope.ingest)]
Read = Annotated[Principal, require(Scope.read)]
Member = Annotated[Principal, require(Scope.member)]
ExtId = Annotated[CleanText, Path(min_length=1, max_length=128)]
Atomic = Annotated[bool, Query(description="All or nothing: any bad record writes nothing.")]
Limit = Annotated[int, Query(ge=1, le=500)]
After = Annotated[int | None, Query(ge=0, le=2**62)]


def _path_matches(path_id: str, body_id: str, field: str) -> None:
    if path_id != body_id:
        raise Invalid(f"{field}: must equal the id in the path")


@router.put("/v1/products/{sku}", response_model=RecordResult, tags=["products"])
def upsert_product(
    sku: ExtId, body: ProductIn, session: SessionDep, who: Ingest, response: Response
) -> RecordResult:
    _path_matches(sku, body.sku, "sku")
    return run_one(session, who.store, "product", body, products.upsert_many, response)


@router.post("/v1/products/bulk", response_model=BulkResult, tags=["products"])
def bulk_products(
    body: BulkIn, session: SessionDep, who: Ingest, atomic: Atomic = False
) -> BulkResult:
    return run_bulk(
        session, who.store, "product", ProductIn, body.records, products.upsert_many, atomic
    )


@router.get("/v1/products", response_model=Page[ProductOut], tags=["products"])
def list_products(
    session: SessionDep, who: Read, limit: Limit = 50, after: After = None
) -> Page[ProductOut]:
    rows = repo.list_products(session, who.store.id, limit, after)
    items = [
        ProductOut(
            id=p.id,
            sku=p.sku,
            name=p.name,
            category=p.category,
            currency=p.currency,
            price=from_minor(p.price_minor, p.currency),
        )
        for p in rows
    ]
    return Page(items=items, next_after=rows[-1].id if len(rows) == limit else None)


@router.get("/v1/products/{sku}", response_model=ProductOut, tags=["products"])
def read_product(sku: ExtId, session: SessionDep, who: Read) -> ProductOut:
    return products.read(session, who.store, sku)


@router.put("/v1/orders/{external_id}", response_model=RecordResult, tags=["orders"])
def upsert_order(
    external_id: ExtId, body: OrderIn, session: SessionDep, who: Ingest, response: Response
) -> RecordResult:
    """Create an order or advance its status. Same body again: no change (200 `unchanged`).
    A body that changes customer, currency, lines, amounts or placed_at: 409."""
    _path_matches(external_id, body.external_id, "external_id")
    return run_one(session, who.store, "order", body, orders.upsert_many, response)


@router.post("/v1/orders/bulk", response_model=BulkResult, tags=["orders"])
def bulk_orders(
    body: BulkIn, session: SessionDep, who: Ingest, atomic: Atomic = False
) -> BulkResult:
    """Upsert up to 10,000 orders; one result per record, in request order."""
    return run_bulk(session, who.store, "order", OrderIn, body.records, orders.upsert_many, atomic)


@router.get("/v1/orders", response_model=Page[OrderOut], tags=["orders"])
def list_orders(
    session: SessionDep,
    who: Read,
    limit: Limit = 50,
    after: After = None,
    customer: Annotated[CleanText | None, Query(max_length=128)] = None,
) -> Page[OrderOut]:
    customer_id = None
    if customer is not None:
        found = customer_repo.get_by_external_id(session, who.store.id, customer)
        if found is None:
            raise NotFound(f"No customer with external id {customer!r} in this store.")
        customer_id = found.id
    rows = repo.list_orders(session, who.store.id, limit, after, customer_id)
    return Page(
        items=orders.out_many(session, rows), next_after=rows[-1].id if len(rows) == limit else None
    )


@router.get("/v1/orders/{external_id}", response_model=OrderOut, tags=["orders"])
def read_order(external_id: ExtId, session: SessionDep, who: Read) -> OrderOut:
    return orders.read(session, who.store, external_id)


@router.put("/v1/refunds/{external_id}", response_model=RecordResult, tags=["refunds"])
def upsert_refund(
    external_id: ExtId, body: RefundIn, session: SessionDep, who: Ingest, response: Response
) -> RecordResult:
    """Record a refund once (201). Again with the same body: 200 `unchanged`. For an order
    not received yet: 202 `pending`, applied when the order arrives."""
    _path_matches(external_id, body.external_id, "external_id")
    return run_one(session, who.store, "refund", body, refunds.upsert_many, response)


@router.post("/v1/refunds/bulk", response_model=BulkResult, tags=["refunds"])
def bulk_refunds(
    body: BulkIn, session: SessionDep, who: Ingest, atomic: Atomic = False
) -> BulkResult:
    return run_bulk(
        session, who.store, "refund", RefundIn, body.records, refunds.upsert_many, atomic
    )


@router.get("/v1/refunds/{external_id}", response_model=RefundOut, tags=["refunds"])
def read_refund(external_id: ExtId, session: SessionDep, who: Read) -> RefundOut:
    return refunds.read(session, who.store, external_id)


@router.get("/v1/me/orders", response_model=Page[OrderOut], tags=["member"])
def my_orders(
    session: SessionDep, who: Member, limit: Limit = 20, after: After = None
) -> Page[OrderOut]:
    """The signed-in member's orders."""
    rows = repo.list_orders(session, who.store.id, limit, after, who.customer_id)
    return Page(
        items=orders.out_many(session, rows), next_after=rows[-1].id if len(rows) == limit else None
    )
