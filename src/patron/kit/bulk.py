"""Per-record results of upserts and bulk calls."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from patron.errors import validation_errors

M = TypeVar("M", bound=BaseModel)

Outcome = Literal["created", "updated", "unchanged", "pending", "error"]


class RecordResult(BaseModel):
    """What happened to one record of an upsert or bulk call."""

    index: int
    external_id: str | None
    status: Outcome
    id: int | None = None
    error: str | None = None
    code: Literal["invalid", "conflict"] | None = None
    errors: list[dict[str, str]] | None = None


class BulkResult(BaseModel):
    created: int
    updated: int
    unchanged: int
    pending: int
    failed: int
    results: list[RecordResult]

    @classmethod
    def of(cls, results: list[RecordResult]) -> BulkResult:
        counts = {k: 0 for k in ("created", "updated", "unchanged", "pending", "error")}
        for result in results:
            counts[result.status] += 1
        return cls(
            created=counts["created"],
            updated=counts["updated"],
            unchanged=counts["unchanged"],
            pending=counts["pending"],
            failed=counts["error"],
            results=results,
        )


def fill_superseded(
    results: list[RecordResult | None], final_index: list[int]
) -> list[RecordResult]:
    """Earlier copies of a record repeated in one batch share the outcome of the last copy."""
    filled: list[RecordResult] = []
    for index, result in enumerate(results):
        if result is None:
            final = results[final_index[index]]
            assert final is not None
            result = final.model_copy(update={"index": index})
        filled.append(result)
    return filled


def validate_records(
    model: type[M], raw: list[Any]
) -> tuple[list[tuple[int, M]], list[RecordResult]]:
    """Validate each record alone, so one bad record cannot hide the others' results."""
    valid: list[tuple[int, M]] = []
    failed: list[RecordResult] = []
    for index, item in enumerate(raw):
        try:
            valid.append((index, model.model_validate(item)))
        except ValidationError as exc:
            errors = validation_errors(list(exc.errors()))
            ext = item.get("external_id", item.get("sku")) if isinstance(item, dict) else None
            failed.append(
                RecordResult(
                    index=index,
                    external_id=ext if isinstance(ext, str) else None,
                    status="error",
                    code="invalid",
                    error="; ".join(f"{e['field']}: {e['message']}" for e in errors),
                    errors=errors,
                )
            )
    return valid, failed


def merge(
    valid: list[tuple[int, Any]], applied: list[RecordResult], failed: list[RecordResult]
) -> list[RecordResult]:
    """Put results of the applied records back at their positions in the request."""
    out = [r.model_copy(update={"index": valid[r.index][0]}) for r in applied]
    return sorted(out + failed, key=lambda r: r.index)
