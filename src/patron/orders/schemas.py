"""API shapes of products, orders and refunds. Money travels as decimal strings."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from patron.customers.schemas import CustomerIn
from patron.kit.money import MAX_MAJOR, MoneyError, exponent, from_minor, to_minor
from patron.kit.text import Category, Code, ExternalId, Instant, Label, ShortText
from patron.orders.models import OrderStatus

Amount = Annotated[Decimal, Field(ge=0, allow_inf_nan=False, max_digits=20)]
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _currency(value: str) -> str:
    value = value.upper()
    if not _CURRENCY.match(value):
        raise ValueError("not an ISO 4217 currency code like `CNY`")
    return value


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: ExternalId
    name: ShortText
    category: Category | None = None
    price: Amount
    currency: str = Field(min_length=3, max_length=3)

    _cur = field_validator("currency")(_currency)

    @model_validator(mode="after")
    def _price_fits(self) -> ProductIn:
        try:
            to_minor(self.price, self.currency)
        except MoneyError as exc:
            raise ValueError(f"price: {exc}") from exc
        return self


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sku: str
    name: str
    category: str | None
    price: Decimal
    currency: str


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId | None = Field(None, description="The platform's line id.")
    sku: ExternalId | None = None
    name: ShortText | None = None
    category: Category | None = None
    quantity: int = Field(ge=1, le=1_000_000)
    unit_price: Amount
    discount: Amount = Decimal(0)


class OrderIn(BaseModel):
    """An order. Upserted by `external_id`; may advance its status on later deliveries."""

    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    customer_external_id: ExternalId
    customer: CustomerIn | None = Field(
        None, description="Optional profile, upserted with the order (as platforms send it)."
    )
    status: OrderStatus = OrderStatus.placed
    channel: Label | None = Field(None, examples=["web", "app", "wechat", "store"])
    currency: str = Field(min_length=3, max_length=3)
    discount_code: Code | None = None
    lines: list[LineIn] = Field(default_factory=list, max_length=500)
    discount_total: Amount = Field(Decimal(0), description="Order-level discount.")
    shipping_total: Amount = Decimal(0)
    tax_total: Amount = Decimal(0)
    total: Amount | None = Field(
        None,
        description="Checked against lines − discount + shipping + tax when lines are "
        "given; required when there are no lines.",
    )
    placed_at: Instant
    paid_at: Instant | None = None
    fulfilled_at: Instant | None = None
    delivered_at: Instant | None = None
    cancelled_at: Instant | None = None

    _cur = field_validator("currency")(_currency)
    _minor: OrderMinor | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _consistent(self) -> OrderIn:
        if self.status == OrderStatus.refunded:
            raise ValueError("status: `refunded` is set by refunds, not sent on an order")
        if self.customer is not None and self.customer.external_id != self.customer_external_id:
            raise ValueError("customer.external_id must equal customer_external_id")
        if not self.lines and self.total is None:
            raise ValueError("total: required when an order has no lines")
        self._minor = self._to_minor()  # raises on amounts the currency cannot hold
        return self

    def minor(self) -> OrderMinor:
        """Amounts in integer minor units, with the total checked (computed once)."""
        if self._minor is None:
            self._minor = self._to_minor()
        return self._minor

    def _to_minor(self) -> OrderMinor:
        cur = self.currency
        try:
            lines = []
            for n, line in enumerate(self.lines):
                unit = to_minor(line.unit_price, cur)
                disc = to_minor(line.discount, cur)
                gross = unit * line.quantity
                if gross >= MAX_MAJOR.scaleb(exponent(cur)):  # sums must fit a BIGINT too
                    raise ValueError(f"lines.{n}: quantity × unit_price out of range")
                if disc > gross:
                    raise ValueError(f"lines.{n}.discount: larger than the line amount")
                lines.append((unit, disc, gross - disc))
            discount = to_minor(self.discount_total, cur)
            shipping = to_minor(self.shipping_total, cur)
            tax = to_minor(self.tax_total, cur)
            given = None if self.total is None else to_minor(self.total, cur)
        except MoneyError as exc:
            raise ValueError(str(exc)) from exc
        if self.lines:
            subtotal = sum(t for _, _, t in lines)
            total = subtotal - discount + shipping + tax
            if total < 0:
                raise ValueError("discount_total: larger than the order amount")
            if given is not None and given != total:
                raise ValueError(
                    f"total: {self.total} does not equal lines − discount + shipping + tax "
                    f"({from_minor(total, cur)})"
                )
        else:
            assert given is not None
            total = given
            subtotal = total + discount - shipping - tax
            if subtotal < 0:
                raise ValueError("total: smaller than shipping + tax − discount")
        return OrderMinor(lines, subtotal, discount, shipping, tax, total)


class OrderMinor:
    __slots__ = ("discount", "lines", "shipping", "subtotal", "tax", "total")

    def __init__(
        self,
        lines: list[tuple[int, int, int]],
        subtotal: int,
        discount: int,
        shipping: int,
        tax: int,
        total: int,
    ) -> None:
        self.lines, self.subtotal, self.discount = lines, subtotal, discount
        self.shipping, self.tax, self.total = shipping, tax, total


class LineOut(BaseModel):
    line_no: int
    external_id: str | None
    sku: str | None
    name: str | None
    category: str | None
    quantity: int
    unit_price: Decimal
    discount: Decimal
    total: Decimal
    refunded_quantity: int
    refunded: Decimal


class OrderOut(BaseModel):
    id: int
    external_id: str
    customer_external_id: str
    status: OrderStatus
    channel: str | None
    currency: str
    discount_code: str | None
    subtotal: Decimal
    discount_total: Decimal
    shipping_total: Decimal
    tax_total: Decimal
    total: Decimal
    refunded_total: Decimal
    placed_at: datetime
    paid_at: datetime | None
    fulfilled_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None
    lines: list[LineOut]


class RefundLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_external_id: ExternalId | None = None
    sku: ExternalId | None = None
    quantity: int = Field(ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _names_a_line(self) -> RefundLineIn:
        if self.line_external_id is None and self.sku is None:
            raise ValueError("name the line by `line_external_id` or `sku`")
        return self


class RefundIn(BaseModel):
    """A refund, partial by lines or by amount. Refunds are immutable once recorded."""

    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    order_external_id: ExternalId
    refunded_at: Instant
    amount: Amount | None = Field(
        None, description="Refunded money. Defaults to the value of the refunded lines."
    )
    lines: list[RefundLineIn] = Field(default_factory=list, max_length=500)
    reason: ShortText | None = None

    @model_validator(mode="after")
    def _something(self) -> RefundIn:
        if self.amount is None and not self.lines:
            raise ValueError("give an `amount`, refunded `lines`, or both")
        return self


class RefundOut(BaseModel):
    id: int
    external_id: str
    order_external_id: str
    state: str
    amount: Decimal
    currency: str | None
    reason: str | None
    rejection: str | None
    refunded_at: datetime
    lines: list[dict[str, int]]
