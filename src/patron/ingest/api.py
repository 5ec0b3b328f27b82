"""Shared plumbing of upsert and bulk endpoints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import Response
from prometheus_client import Counter
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from patron.errors import Conflict, Invalid
from patron.kit.bulk import BulkResult, RecordResult, merge, validate_records
from patron.stores.models import Store

M = TypeVar("M", bound=BaseModel)
Apply = Callable[[Session, Store, Sequence[M]], list[RecordResult]]

RECORDS = Counter(
    "patron_ingested_records_total",
    "Records received by upsert and bulk calls",
    ["kind", "outcome"],
)


class BulkIn(BaseModel):
    records: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=10_000,
        description="Up to 10,000 records, each in the shape of the single-record upsert.",
    )


def count(kind: str, results: list[RecordResult]) -> None:
    for result in results:
        RECORDS.labels(kind, result.status).inc()


def run_bulk(
    session: Session,
    store: Store,
    kind: str,
    model: type[M],
    raw: list[Any],
    apply: Apply[M],
    atomic: bool,
) -> BulkResult:
    valid, failed = validate_records(model, raw)
    if atomic and failed:
        raise Invalid(
            f"{len(failed)} of {len(raw)} records are invalid; nothing was written",
            results=[r.model_dump() for r in failed],
        )
    applied = apply(session, store, [m for _, m in valid]) if valid else []
    results = merge(valid, applied, failed)
    if atomic and any(r.status == "error" for r in results):
        # The caller's transaction is rolled back by raising: all or nothing.
        bad = [r.model_dump() for r in results if r.status == "error"]
        raise Conflict(
            f"{len(bad)} of {len(raw)} records were refused; nothing was written", results=bad
        )
    count(kind, results)
    return BulkResult.of(results)


def run_one(
    session: Session, store: Store, kind: str, record: M, apply: Apply[M], response: Response
) -> RecordResult:
    result = apply(session, store, [record])[0]
    count(kind, [result])
    if result.status == "error":
        error = Invalid if result.code == "invalid" else Conflict
        raise error(result.error or "refused", external_id=result.external_id)
    response.status_code = {"created": 201, "pending": 202}.get(result.status, 200)
    return result
