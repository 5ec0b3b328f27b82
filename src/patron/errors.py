"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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


def problem(
    status: int, slug: str, title: str, detail: str, instance: str, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def field_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    return ".".join(str(part) for part in loc)


def validation_errors(raw: list[Any]) -> list[dict[str, Any]]:
    out = []
    for err in raw:
        msg = str(err.get("msg", "invalid"))
        out.append(
            {"field": field_path(err.get("loc", ())), "message": msg.removeprefix("Value error, ")}
        )
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(PatronError)
    async def _patron(request: Request, exc: PatronError) -> JSONResponse:
        return problem(
            exc.status,
            exc.slug,
            exc.title,
            exc.detail,
            request.url.path,
            errors=exc.errors or None,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        first = errors[0] if errors else {"field": "", "message": "invalid"}
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
        return problem(exc.status_code, slug, title, str(exc.detail), request.url.path)

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
