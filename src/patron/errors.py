"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("patron")
PROBLEM = "application/problem+json"
TYPE_BASE = "https://patron.dev/problems/"


class PatronError(Exception):
    """A failure with a meaning for the caller; rendered as problem+json."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(
        self, detail: str, *, errors: list[dict[str, Any]] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.extra = extra


class NotFound(PatronError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(PatronError):
    status, slug, title = 409, "conflict", "Conflict"


class Invalid(PatronError):
    status, slug, title = 422, "validation-error", "Invalid input"


class Unauthorized(PatronError):
    status, slug, title = 401, "unauthorized", "Unauthorized"


class Forbidden(PatronError):
    status, slug, title = 403, "forbidden", "Forbidden"


class PayloadTooLarge(PatronError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem: every error response of the API has this shape."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] | None = None


class SafeJSONResponse(JSONResponse):
    """JSON that renders whatever a client sent, echoed back.

    A lone surrogate (valid in JSON as ``"\\ud800"``) cannot be encoded as UTF-8; such a
    document is sent with ASCII escapes instead of failing with a 500.
    """

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return SafeJSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def field_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    return ".".join(str(part) for part in loc)


# Rules that check several fields name theirs in the message: "total: does not add up".
_NAMED = re.compile(r"^([A-Za-z_][\w.\-]*): (.+)$", re.DOTALL)


def _named_error(loc: list[int | str], message: str) -> dict[str, Any]:
    match = _NAMED.match(message)
    if match:
        loc = [*loc, *match.group(1).split(".")]
        message = match.group(2)
    return {"field": field_path(loc) or "body", "message": message}


def validation_errors(raw: list[Any]) -> list[dict[str, Any]]:
    return [
        _named_error(
            list(err.get("loc", ())), str(err.get("msg", "invalid")).removeprefix("Value error, ")
        )
        for err in raw
    ]


_DESCRIPTIONS = {
    401: "Missing or invalid credentials (or webhook signature)",
    403: "The credentials lack the scope this endpoint needs",
    404: "Not found in this store",
    409: "Conflicts with what is already recorded",
    422: "Invalid input; `errors` names each refused field",
    410: "The link has expired",
}
# Routes whose credential is a signed token in the path (survey links), not a key.
TOKEN_PATHS = ("/v1/survey-links/",)


def document_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """Make an OpenAPI document show the problem+json error responses the API really sends.

    Every ``/v1`` operation can answer 401 (survey links, whose token is the credential:
    404 and 410 instead); one that needs a scope 403; one with input 422;
    reads 404; writes 409. FastAPI's own ``HTTPValidationError`` shape is never sent.
    """
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    content = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in doc.get("paths", {}).items():
        if not path.startswith("/v1/"):
            continue
        for method, op in operations.items():
            statuses = {401}
            if path.startswith(TOKEN_PATHS):  # a bad token is not found; a used one conflicts
                statuses = {404, 410} | ({409} if method == "post" else set())
            if op.get("security"):
                statuses.add(403)
            if op.get("parameters") or op.get("requestBody"):
                statuses.add(422)
            if method == "get" or path.endswith("/member-token"):
                statuses.add(404)
            elif method in ("put", "post"):
                statuses.add(409)
            responses = op.setdefault("responses", {})
            for status in sorted(statuses):
                responses[str(status)] = {"description": _DESCRIPTIONS[status], "content": content}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def install(app: FastAPI) -> None:
    @app.exception_handler(PatronError)
    async def _patron(request: Request, exc: PatronError) -> JSONResponse:
        errors = exc.errors
        if not errors and exc.status == 422:  # every 422 names the field it refuses
            errors = [_named_error([], exc.detail)]
        return problem(
            exc.status,
            exc.slug,
            exc.title,
            exc.detail,
            request.url.path,
            errors=errors or None,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors())) or [_named_error([], "invalid")]
        first = errors[0]
        detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        return problem(
            422, "validation-error", "Invalid input", detail, request.url.path, errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {
            404: "not-found",
            405: "method-not-allowed",
            401: "unauthorized",
            403: "forbidden",
        }.get(exc.status_code, "http-error")
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return problem(
            exc.status_code,
            slug,
            title,
            str(exc.detail),
            request.url.path,
            headers=exc.headers,  # e.g. the Allow header a 405 must carry
        )

    @app.exception_handler(sa_exc.TimeoutError)
    async def _overloaded(request: Request, exc: sa_exc.TimeoutError) -> JSONResponse:
        # Every database connection stayed busy past the pool timeout: the server is over
        # capacity, the request did nothing, and a retry later is the answer.
        log.warning("database pool exhausted on %s", request.url.path)
        return problem(
            503,
            "overloaded",
            "Service overloaded",
            "All database connections are busy; nothing was changed. Retry shortly.",
            request.url.path,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem(
            500,
            "internal-error",
            "Internal server error",
            "An unexpected error occurred; it has been logged.",
            request.url.path,
        )
