"""Programme routes: apply a version, read the active one and the history, simulate."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel

from patron.auth import Principal, Scope, SessionDep, require
from patron.loyalty.models import ProgramVersion
from patron.loyalty.programs import SimulateIn, SimulateOut, programs

router = APIRouter(tags=["loyalty"])
Read = Annotated[Principal, require(Scope.read)]
Admin = Annotated[Principal, require(Scope.admin)]


class AppliedOut(BaseModel):
    version: int
    fingerprint: str
    created: bool


class VersionOut(BaseModel):
    version: int
    fingerprint: str
    active: bool
    source: str
    api_key_id: int | None
    created_at: datetime

    @classmethod
    def of(cls, row: ProgramVersion) -> VersionOut:
        return cls(
            version=row.version,
            fingerprint=row.fingerprint,
            active=row.active,
            source=row.source,
            api_key_id=row.api_key_id,
            created_at=row.created_at,
        )


class ProgramOut(VersionOut):
    config: dict[str, Any]


class VersionsOut(BaseModel):
    items: list[VersionOut]
    next_before: int | None = None


@router.put(
    "/v1/loyalty/program",
    response_model=AppliedOut,
    status_code=201,
    responses={200: {"model": AppliedOut, "description": "The active programme already"}},
)
def apply_program(
    session: SessionDep,
    who: Admin,
    response: Response,
    body: Annotated[dict[str, Any], Body(description="The programme (see docs).")],
) -> AppliedOut:
    """Apply a programme as the store's new active version. Invalid: 422 naming every
    field at fault, nothing applied. The active programme again: 200, same version."""
    applied = programs.apply(session, who.store, body, source="api", api_key_id=who.key_id)
    if not applied.created:
        response.status_code = 200
    return AppliedOut(
        version=applied.version, fingerprint=applied.fingerprint, created=applied.created
    )


@router.get("/v1/loyalty/program", response_model=ProgramOut)
def read_program(session: SessionDep, who: Read) -> ProgramOut:
    """The active programme."""
    row, _ = programs.active(session, who.store)
    return ProgramOut(**VersionOut.of(row).model_dump(), config=row.config)


@router.get("/v1/loyalty/program/versions", response_model=VersionsOut)
def program_versions(
    session: SessionDep,
    who: Read,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**31)] = None,
) -> VersionsOut:
    """Every applied version, newest first."""
    rows = programs.versions(session, who.store, limit, before)
    return VersionsOut(
        items=[VersionOut.of(r) for r in rows],
        next_before=rows[-1].version if len(rows) == limit else None,
    )


@router.post("/v1/loyalty/simulate", response_model=SimulateOut)
def simulate(body: SimulateIn, session: SessionDep, who: Read) -> SimulateOut:
    """What an order (or another action) would earn under the active programme, in the
    store's time zone, with every rule: fired or not, and why. Writes nothing."""
    return programs.simulate(session, who.store, body)
