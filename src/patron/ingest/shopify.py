"""Shopify webhook payloads mapped to Patron's order and refund shapes (pure, no I/O).

Topics: ``orders/create``, ``orders/updated``, ``orders/paid``, ``orders/fulfilled``,
``orders/cancelled`` and ``refunds/create``. Shopify's ``total_price`` is authoritative:
any gap between it and lines + shipping + tax is taken as the order-level discount.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from decimal import Decimal
from typing import Any

from patron.orders.schemas import OrderIn, RefundIn

ORDER_TOPICS = frozenset(
    {"orders/create", "orders/updated", "orders/paid", "orders/fulfilled", "orders/cancelled"}
)
REFUND_TOPICS = frozenset({"refunds/create"})


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(digest, header.strip())


def sign(secret: str, body: bytes) -> str:
    """What Shopify puts in X-Shopify-Hmac-Sha256 (used by tests and the demo)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


def _shipping(order: dict[str, Any]) -> Decimal:
    shop_money = (order.get("total_shipping_price_set") or {}).get("shop_money") or {}
    if shop_money.get("amount") is not None:
        return _dec(shop_money["amount"])
    return sum((_dec(s.get("price")) for s in order.get("shipping_lines") or []), Decimal(0))


def _status(topic: str, order: dict[str, Any]) -> str:
    if order.get("cancelled_at") or topic == "orders/cancelled":
        return "cancelled"
    if order.get("fulfillment_status") == "fulfilled" or topic == "orders/fulfilled":
        return "fulfilled"
    if (
        order.get("financial_status") in ("paid", "partially_refunded", "refunded")
        or topic == "orders/paid"
    ):
        return "paid"
    return "placed"


def order_from_shopify(topic: str, order: dict[str, Any]) -> OrderIn:
    customer = order.get("customer") or {}
    email = order.get("email") or customer.get("email")
    if customer.get("id") is not None:
        customer_id = str(customer["id"])
    else:  # a guest checkout: one profile per guest email, else per order
        customer_id = f"guest:{email or order.get('id')}"
    lines = [
        {
            "external_id": str(item["id"]) if item.get("id") is not None else None,
            "sku": item.get("sku") or None,
            "name": item.get("title") or item.get("name"),
            "quantity": item.get("quantity"),
            "unit_price": item.get("price"),
            "discount": item.get("total_discount") or "0",
        }
        for item in order.get("line_items") or []
    ]
    taxes_included = bool(order.get("taxes_included"))
    tax = Decimal(0) if taxes_included else _dec(order.get("total_tax"))
    shipping = _shipping(order)
    gross = sum(
        (_dec(x["unit_price"]) * int(x["quantity"] or 0) - _dec(x["discount"]) for x in lines),
        Decimal(0),
    )
    total = _dec(order.get("total_price"))
    status = _status(topic, order)
    codes = order.get("discount_codes") or []
    profile = {
        "external_id": customer_id,
        "email": email or None,
        "phone": customer.get("phone") or order.get("phone") or None,
        "first_name": customer.get("first_name"),
        "last_name": customer.get("last_name"),
    }
    if customer.get("created_at"):
        profile["created_at"] = customer["created_at"]
    return OrderIn.model_validate(
        {
            "external_id": str(order.get("id")),
            "customer_external_id": customer_id,
            "customer": profile,
            "status": status,
            "channel": order.get("source_name") or None,
            "currency": order.get("currency") or "",
            "discount_code": codes[0].get("code") if codes else None,
            "lines": lines,
            "discount_total": max(gross + shipping + tax - total, Decimal(0)) if lines else "0",
            "shipping_total": shipping,
            "tax_total": tax,
            "total": total,
            "placed_at": order.get("created_at"),
            "paid_at": (order.get("processed_at") or order.get("updated_at"))
            if status in ("paid", "fulfilled")
            else None,
            "cancelled_at": order.get("cancelled_at"),
        }
    )


def refund_from_shopify(refund: dict[str, Any]) -> RefundIn | None:
    """None for a refund that returns neither money nor items (e.g. a restock note)."""
    amount = sum(
        (
            _dec(t.get("amount"))
            for t in refund.get("transactions") or []
            if t.get("kind") == "refund" and t.get("status", "success") == "success"
        ),
        Decimal(0),
    )
    lines = [
        {"line_external_id": str(item.get("line_item_id")), "quantity": item.get("quantity")}
        for item in refund.get("refund_line_items") or []
        if item.get("quantity")
    ]
    if amount == 0 and not lines:
        return None
    return RefundIn.model_validate(
        {
            "external_id": str(refund.get("id")),
            "order_external_id": str(refund.get("order_id")),
            "refunded_at": refund.get("processed_at") or refund.get("created_at"),
            "amount": amount if amount > 0 else None,
            "lines": lines,
            "reason": (refund.get("note") or None),
        }
    )
