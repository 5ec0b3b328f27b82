"""Store platform webhooks."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Request
from pydantic import BaseModel, ValidationError

from patron.auth import SessionDep
from patron.errors import Conflict, Invalid, Unauthorized, validation_errors
from patron.ingest import shopify
from patron.ingest.api import count
from patron.kit.bulk import RecordResult
from patron.kit.text import CleanText
from patron.orders.schemas import OrderIn, RefundIn
from patron.orders.service import orders, refunds
from patron.stores import repository as stores_repo

router = APIRouter(tags=["webhooks"])


class WebhookResult(BaseModel):
    topic: str
    status: Literal["created", "updated", "unchanged", "pending", "ignored"]
    external_id: str | None = None


@router.post("/v1/webhooks/shopify/{store_slug}", response_model=WebhookResult)
async def shopify_webhook(
    request: Request,
    session: SessionDep,
    store_slug: Annotated[CleanText, Path(max_length=64)],
    x_shopify_topic: Annotated[str | None, Header()] = None,
    x_shopify_hmac_sha256: Annotated[str | None, Header()] = None,
) -> WebhookResult:
    """Shopify `orders/*` and `refunds/create` webhooks, signed with the store's webhook
    secret. Unsigned or forged deliveries get 401 and change nothing; re-deliveries are
    idempotent; an older order status arriving late is ignored."""
    body = await request.body()
    store = stores_repo.by_slug(session, store_slug)
    # The same 401 for an unknown store and a bad signature: nothing to probe.
    if store is None or not shopify.signature_valid(
        store.webhook_secret, body, x_shopify_hmac_sha256
    ):
        raise Unauthorized("Missing or invalid X-Shopify-Hmac-Sha256 signature.")
    topic = (x_shopify_topic or "").strip()
    if topic not in shopify.ORDER_TOPICS | shopify.REFUND_TOPICS:
        raise Invalid(
            f"X-Shopify-Topic: unsupported topic {topic!r}",
            errors=[{"field": "X-Shopify-Topic", "message": "unsupported topic"}],
        )
    # Only reading the body is guarded: an error in applying it is ours (500), not theirs.
    record: OrderIn | RefundIn | None
    try:
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise shopify.PayloadError("body", "expected a JSON object")
        if topic in shopify.ORDER_TOPICS:
            record = shopify.order_from_shopify(topic, payload)
        else:
            record = shopify.refund_from_shopify(payload)
    except ValidationError as exc:
        errors = validation_errors(list(exc.errors()))
        raise Invalid(
            f"{topic} payload: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            errors=errors,
        ) from exc
    except shopify.PayloadError as exc:
        raise Invalid(
            f"{topic} payload: {exc}", errors=[{"field": exc.field, "message": exc.message}]
        ) from exc
    # ValueError: not JSON or not UTF-8; RecursionError: nested too deeply to parse.
    except (ValueError, RecursionError) as exc:
        raise Invalid(
            f"{topic} payload: not a JSON object",
            errors=[{"field": "body", "message": "expected a JSON object"}],
        ) from exc
    if record is None:
        return WebhookResult(topic=topic, status="ignored")
    if isinstance(record, OrderIn):
        result: RecordResult = orders.upsert_many(session, store, [record], stale_ok=True)[0]
    else:
        result = refunds.upsert_many(session, store, [record])[0]
    count("webhook", [result])
    if result.status == "error":
        error = Invalid if result.code == "invalid" else Conflict
        raise error(result.error or "refused")
    return WebhookResult(topic=topic, status=result.status, external_id=result.external_id)
