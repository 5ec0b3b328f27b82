"""Pure order rules: the status lifecycle and how a refund is split over lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from patron.orders.models import OrderStatus

# The forward path of an order; cancelled and refunded end it.
_RANK = {
    OrderStatus.placed: 0,
    OrderStatus.paid: 1,
    OrderStatus.fulfilled: 2,
    OrderStatus.delivered: 3,
}
FINAL = frozenset({OrderStatus.cancelled, OrderStatus.refunded})
IMMUTABLE_FIELDS = (
    "customer_external_id",
    "currency",
    "lines",
    "discount_total",
    "shipping_total",
    "tax_total",
    "total",
    "placed_at",
)


class TransitionError(ValueError):
    pass


@dataclass(frozen=True)
class OrderContent:
    """What an order may never change once recorded (refunds are how amounts change)."""

    customer_id: int
    currency: str
    placed_at: datetime
    discount_minor: int
    shipping_minor: int
    tax_minor: int
    total_minor: int
    # (external_id, sku, quantity, unit_price_minor, discount_minor) per line, in order
    lines: tuple[tuple[str | None, str | None, int, int, int], ...]


def content_differences(stored: OrderContent, incoming: OrderContent) -> list[str]:
    """Names of the immutable fields in which a later delivery differs from the record."""
    names = {
        "customer_id": "customer",
        "discount_minor": "discount_total",
        "shipping_minor": "shipping_total",
        "tax_minor": "tax_total",
        "total_minor": "total",
    }
    return [
        names.get(f, f)
        for f in OrderContent.__dataclass_fields__
        if getattr(stored, f) != getattr(incoming, f)
    ]


def next_status(current: OrderStatus, incoming: OrderStatus) -> OrderStatus | None:
    """The status after a later delivery of the order, or None if the delivery is stale.

    Raises TransitionError for an impossible move (e.g. cancelling a delivered order).
    """
    if incoming == current:
        return current
    if current in FINAL:
        return None  # a final order ignores older news
    if incoming == OrderStatus.cancelled:
        if current == OrderStatus.delivered:
            raise TransitionError("a delivered order cannot be cancelled; send a refund instead")
        return incoming
    if _RANK[incoming] < _RANK[current]:
        return None
    return incoming


@dataclass(frozen=True)
class LineState:
    line_no: int
    external_id: str | None
    sku: str | None
    quantity: int
    total_minor: int
    refunded_quantity: int
    refunded_minor: int


@dataclass(frozen=True)
class RefundRequest:
    # (line_external_id, sku, quantity) as named by the caller
    lines: list[tuple[str | None, str | None, int]]
    amount_minor: int | None


@dataclass
class RefundPlan:
    amount_minor: int
    # line_no -> (quantity, amount_minor) taken back from that line
    lines: dict[int, tuple[int, int]] = field(default_factory=dict)


class RefundError(ValueError):
    pass


def _find_line(lines: list[LineState], line_ext: str | None, sku: str | None) -> LineState:
    for line in lines:
        if line_ext is not None and line.external_id == line_ext:
            return line
    if sku is not None:
        # The first line of that sku with quantity left to refund.
        candidates = [ln for ln in lines if ln.sku == sku]
        for line in candidates:
            if line.refunded_quantity < line.quantity:
                return line
        if candidates:
            return candidates[0]
    raise RefundError(f"the order has no line {line_ext or sku!r}")


def plan_refund(
    lines: list[LineState],
    order_total_minor: int,
    order_refunded_minor: int,
    request: RefundRequest,
) -> RefundPlan:
    """Split a refund over the order's lines.

    A refunded line gives back its net value pro rata to quantity; the last units of a
    line give back exactly what is left, so rounding never leaks. An explicit amount
    overrides the line value (e.g. it includes shipping). Nothing beyond what was paid
    can be refunded.
    """
    plan = RefundPlan(amount_minor=0)
    taken: dict[int, int] = {}
    for line_ext, sku, quantity in request.lines:
        line = _find_line(lines, line_ext, sku)
        already = line.refunded_quantity + taken.get(line.line_no, 0)
        left_qty = line.quantity - already
        if quantity > left_qty:
            raise RefundError(
                f"line {line.line_no} ({line.sku or line.external_id}): refunding {quantity} "
                f"but only {left_qty} of {line.quantity} are left to refund"
            )
        prev_qty, prev_amount = plan.lines.get(line.line_no, (0, 0))
        left_amount = line.total_minor - line.refunded_minor - prev_amount
        if quantity == left_qty:
            amount = left_amount
        else:
            amount = min(left_amount, line.total_minor * quantity // line.quantity)
        plan.lines[line.line_no] = (prev_qty + quantity, prev_amount + amount)
        taken[line.line_no] = taken.get(line.line_no, 0) + quantity
        plan.amount_minor += amount
    if request.amount_minor is not None:
        plan.amount_minor = request.amount_minor
    if plan.amount_minor <= 0 and not plan.lines:
        raise RefundError("a refund must return money or items")
    left = order_total_minor - order_refunded_minor
    if plan.amount_minor > left:
        raise RefundError(
            f"refund of {plan.amount_minor} minor units exceeds the {left} left to refund "
            "on this order"
        )
    return plan
