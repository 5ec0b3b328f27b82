"""Segment routes: preview, saved segments, members, the field list; recommendations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.auth import Principal, Scope, SessionDep, require
from patron.campaigns import recommend
from patron.campaigns import segments as seg
from patron.campaigns.models import Segment
from patron.customers.models import Customer
from patron.errors import Conflict, Invalid, NotFound
from patron.kit.clock import utcnow
from patron.kit.pagination import Page
from patron.kit.text import CleanText
from patron.stores.models import Store

router = APIRouter(tags=["segments"])
Read = Annotated[Principal, require(Scope.read)]
Admin = Annotated[Principal, require(Scope.admin)]
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
Key = Annotated[str, Path(pattern=KEY_PATTERN)]
SAMPLE = 10


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    definition: Any = Field(description="The segment definition (see docs/campaigns.md).")


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(pattern=KEY_PATTERN, description="Unique in the store; used in URLs.")
    name: CleanText = Field(min_length=1, max_length=255)
    definition: Any


class SegmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: CleanText = Field(min_length=1, max_length=255)
    definition: Any


class MemberOut(BaseModel):
    id: int
    external_id: str
    name: str | None
    email: str | None = Field(description="Masked: first character, then the domain.")


class PreviewOut(BaseModel):
    count: int
    sample: list[MemberOut]


class SegmentOut(BaseModel):
    key: str
    name: str
    definition: dict[str, Any]
    count: int
    created_at: datetime
    updated_at: datetime


class SegmentSummary(BaseModel):
    key: str
    name: str
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class FieldOut(BaseModel):
    field: str
    group: str
    type: str
    ops: list[str]
    values: list[str] | None
    doc: str


class SuggestionOut(BaseModel):
    product_id: int
    sku: str
    name: str
    score: float


class RecommendationsOut(BaseModel):
    external_id: str
    items: list[SuggestionOut]


def mask_email(email: str | None) -> str | None:
    if not email:
        return None
    local, at, domain = email.strip().lower().partition("@")
    return f"{local[:1]}***{at}{domain}"


def _in_body(path: str) -> str:
    return "definition" if path == "definition" else f"definition.{path}"


def checked(session: Session, store: Store, raw: object) -> seg.SegmentDefinition:
    """Parse and check a definition given in a body's ``definition``: errors name the path
    from the body (``definition.all[2].value``)."""
    try:
        definition = seg.parse_definition(raw)
        seg.check_for_store(session, store, definition)
    except Invalid as exc:
        errors = [{**e, "field": _in_body(e["field"])} for e in exc.errors]
        first = errors[0] if errors else {"field": "definition", "message": exc.detail}
        raise Invalid(f"{first['field']}: {first['message']}", errors=errors) from exc
    return definition


def member_rows(
    session: Session,
    store: Store,
    definition: seg.SegmentDefinition,
    limit: int,
    after: int | None = None,
) -> list[MemberOut]:
    ids = seg.members_query(store, definition, now=utcnow()).subquery()
    query = select(Customer).where(Customer.id.in_(select(ids.c.id)))
    if after is not None:
        query = query.where(Customer.id > after)
    rows = session.scalars(query.order_by(Customer.id).limit(limit)).all()
    return [
        MemberOut(
            id=c.id,
            external_id=c.external_id,
            name=" ".join(p for p in (c.first_name, c.last_name) if p) or None,
            email=mask_email(c.email),
        )
        for c in rows
    ]


def _segment(session: Session, store_id: int, key: str) -> Segment:
    found = session.scalars(
        select(Segment).where(Segment.store_id == store_id, Segment.key == key)
    ).first()
    if found is None:
        raise NotFound(f"No segment {key!r} in this store.")
    return found


def _out(session: Session, store: Store, row: Segment) -> SegmentOut:
    definition = seg.parse_definition(row.definition)
    return SegmentOut(
        key=row.key,
        name=row.name,
        definition=row.definition,
        count=seg.count(session, store, definition, now=utcnow()),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.post("/v1/segments/preview", response_model=PreviewOut)
def preview(body: PreviewIn, session: SessionDep, who: Read) -> PreviewOut:
    """How many customers a definition matches now, and the first ten of them."""
    definition = checked(session, who.store, body.definition)
    return PreviewOut(
        count=seg.count(session, who.store, definition, now=utcnow()),
        sample=member_rows(session, who.store, definition, SAMPLE),
    )


@router.get("/v1/segments/fields", response_model=list[FieldOut])
def fields(session: SessionDep, who: Read) -> list[FieldOut]:
    """Every field a condition may use, its type, operators and (for enums) values."""
    tiers = seg.programme_tiers(session, who.store.id)
    out = []
    for spec in seg.FIELDS.values():
        values: list[str] | None = list(spec.choices) or None
        if spec.name == "tier":
            values = tiers
        elif spec.kind == "month":
            values = [str(m) for m in range(1, 13)] + list(spec.extra)
        out.append(
            FieldOut(
                field=spec.name,
                group=spec.group,
                type=spec.kind,
                ops=list(spec.ops),
                values=values,
                doc=spec.doc,
            )
        )
    return out


@router.get("/v1/segments", response_model=Page[SegmentSummary])
def list_segments(
    session: SessionDep,
    who: Read,
    limit: int = Query(50, ge=1, le=500),
    after: int | None = Query(None, ge=0, lt=2**63),
) -> Page[SegmentSummary]:
    """The store's saved segments (without counts: open one to count it)."""
    query = select(Segment).where(Segment.store_id == who.store.id)
    if after is not None:
        query = query.where(Segment.id > after)
    rows = session.scalars(query.order_by(Segment.id).limit(limit)).all()
    return Page(
        items=[
            SegmentSummary(
                key=r.key,
                name=r.name,
                definition=r.definition,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
            for r in rows
        ],
        next_after=rows[-1].id if len(rows) == limit else None,
    )


@router.post("/v1/segments", response_model=SegmentOut, status_code=201)
def create_segment(body: SegmentIn, session: SessionDep, who: Admin) -> SegmentOut:
    """Save a segment under a key. 409 when the key is taken."""
    definition = checked(session, who.store, body.definition)
    now = utcnow()
    row = Segment(
        store_id=who.store.id,
        key=body.key,
        name=body.name,
        definition=definition.to_json(),
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"A segment {body.key!r} exists already.") from exc
    return _out(session, who.store, row)


@router.get("/v1/segments/{key}", response_model=SegmentOut)
def read_segment(key: Key, session: SessionDep, who: Read) -> SegmentOut:
    """A saved segment with its current count."""
    return _out(session, who.store, _segment(session, who.store.id, key))


@router.put("/v1/segments/{key}", response_model=SegmentOut)
def update_segment(key: Key, body: SegmentUpdate, session: SessionDep, who: Admin) -> SegmentOut:
    """Replace a segment's name and definition."""
    row = _segment(session, who.store.id, key)
    definition = checked(session, who.store, body.definition)
    row.name = body.name
    row.definition = definition.to_json()
    row.updated_at = utcnow()
    session.flush()
    return _out(session, who.store, row)


@router.delete("/v1/segments/{key}", status_code=204)
def delete_segment(key: Key, session: SessionDep, who: Admin) -> Response:
    """Delete a saved segment (campaigns that copied its definition are not affected)."""
    session.delete(_segment(session, who.store.id, key))
    session.flush()
    return Response(status_code=204)


@router.get("/v1/segments/{key}/members", response_model=Page[MemberOut])
def segment_members(
    key: Key,
    session: SessionDep,
    who: Read,
    limit: int = Query(50, ge=1, le=500),
    after: int | None = Query(None, ge=0, lt=2**63),
) -> Page[MemberOut]:
    """The customers the segment matches now, by id; pass `next_after` as `after`."""
    definition = seg.parse_definition(_segment(session, who.store.id, key).definition)
    rows = member_rows(session, who.store, definition, limit, after)
    return Page(items=rows, next_after=rows[-1].id if len(rows) == limit else None)


@router.get(
    "/v1/customers/{external_id}/recommendations",
    response_model=RecommendationsOut,
    tags=["recommendations"],
)
def recommendations(
    external_id: Annotated[CleanText, Path(min_length=1, max_length=128)],
    session: SessionDep,
    who: Read,
    limit: int = Query(3, ge=1, le=50),
) -> RecommendationsOut:
    """Products this customer has not bought, from what customers who bought the same
    products also bought; the store's best sellers for a customer without history."""
    customer_id = session.scalar(
        select(Customer.id).where(
            Customer.store_id == who.store.id, Customer.external_id == external_id
        )
    )
    if customer_id is None:
        raise NotFound(f"No customer with external id {external_id!r} in this store.")
    found = recommend.for_customers(session, who.store.id, [customer_id], limit=limit)
    return RecommendationsOut(
        external_id=external_id,
        items=[
            SuggestionOut(product_id=s.product_id, sku=s.sku, name=s.name, score=s.score)
            for s in found[customer_id]
        ],
    )
