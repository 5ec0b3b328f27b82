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
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    # As bytes: compare_digest raises on str with non-ASCII characters.
    return hmac.compare_digest(digest, header.strip().encode("utf-8", "replace"))


def sign(secret: str, body: bytes) -> str:
    """What Shopify puts in X-Shopify-Hmac-Sha256 (used by tests and the demo)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class PayloadError(ValueError):
    """A body that is not shaped like Shopify's: the caller's error (422), never a 500."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _obj(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(field, "expected an object")
    return value


def _objs(value: Any, field: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PayloadError(field, "expected a list of objects")
    return value


def _id(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise PayloadError(field, "expected an id")
    return str(value)


def _text(value: Any, field: str, limit: int) -> str | None:
    """A label Shopify may send longer than Patron keeps: cut, never refused."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(field, "expected a string")
    return str(value)[:limit]


def _dec(value: Any, field: str) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PayloadError(field, "expected a decimal amount")
    try:
        amount = Decimal(str(value))
    except ArithmeticError as exc:
        raise PayloadError(field, "expected a decimal amount") from exc
    if not amount.is_finite():
        raise PayloadError(field, "expected a finite amount")
    return amount


def _quantity(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(field, "expected a whole number")
    return value


def _shipping(order: dict[str, Any]) -> Decimal:
    price_set = _obj(order.get("total_shipping_price_set"), "total_shipping_price_set")
    shop_money = _obj(price_set.get("shop_money"), "total_shipping_price_set.shop_money")
    if shop_money.get("amount") is not None:
        return _dec(shop_money["amount"], "total_shipping_price_set.shop_money.amount")
    lines = _objs(order.get("shipping_lines"), "shipping_lines")
    return sum(
        (_dec(s.get("price"), f"shipping_lines.{n}.price") for n, s in enumerate(lines)),
        Decimal(0),
    )


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
    """Raises PayloadError for a body not shaped like an order, ValidationError for bad values."""
    order_id = _id(order.get("id"), "id")
    customer = _obj(order.get("customer"), "customer")
    email = order.get("email") or customer.get("email")
    if customer.get("id") is not None:
        customer_id = _id(customer["id"], "customer.id")
    else:  # a guest checkout: one profile per guest email, else per order
        customer_id = f"guest:{str(email).strip().lower() if email else order_id}"
    lines: list[dict[str, Any]] = []
    gross = Decimal(0)
    for n, item in enumerate(_objs(order.get("line_items"), "line_items")):
        at = f"line_items.{n}"
        quantity = _quantity(item.get("quantity"), f"{at}.quantity")
        price = _dec(item.get("price"), f"{at}.price")
        discount = _dec(item.get("total_discount"), f"{at}.total_discount")
        gross += price * quantity - discount
        lines.append(
            {
                "external_id": None if item.get("id") is None else _id(item["id"], f"{at}.id"),
                "sku": item.get("sku") or None,
                "name": item.get("title") or item.get("name"),
                "quantity": quantity,
                "unit_price": price,
                "discount": discount,
            }
        )
    taxes_included = bool(order.get("taxes_included"))
    tax = Decimal(0) if taxes_included else _dec(order.get("total_tax"), "total_tax")
    shipping = _shipping(order)
    total = _dec(order.get("total_price"), "total_price")
    status = _status(topic, order)
    codes = _objs(order.get("discount_codes"), "discount_codes")
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
            "external_id": order_id,
            "customer_external_id": customer_id,
            "customer": profile,
            "status": status,
            # Shopify allows longer source names and codes than Patron stores.
            "channel": _text(order.get("source_name"), "source_name", 32),
            "currency": order.get("currency") or "",
            "discount_code": _text(codes[0].get("code"), "discount_codes.0.code", 64)
            if codes
            else None,
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
    transactions = _objs(refund.get("transactions"), "transactions")
    amount = sum(
        (
            _dec(t.get("amount"), f"transactions.{n}.amount")
            for n, t in enumerate(transactions)
            if t.get("kind") == "refund" and t.get("status", "success") == "success"
        ),
        Decimal(0),
    )
    items = _objs(refund.get("refund_line_items"), "refund_line_items")
    lines = [
        {
            "line_external_id": _id(
                item.get("line_item_id"), f"refund_line_items.{n}.line_item_id"
            ),
            "quantity": item.get("quantity"),
        }
        for n, item in enumerate(items)
        if item.get("quantity")
    ]
    if amount == 0 and not lines:
        return None
    return RefundIn.model_validate(
        {
            "external_id": _id(refund.get("id"), "id"),
            "order_external_id": _id(refund.get("order_id"), "order_id"),
            "refunded_at": refund.get("processed_at") or refund.get("created_at"),
            "amount": amount if amount > 0 else None,
            "lines": lines,
            "reason": (refund.get("note") or None),
        }
    )
