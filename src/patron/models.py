"""Imports every table so that metadata (Alembic, tests) sees the whole schema."""

import patron.loyalty.models  # noqa: F401  (the points ledger)
from patron.customers.models import Consent, Customer, Touchpoint
from patron.orders.models import Order, OrderLine, Product, Refund
from patron.stores.models import ApiKey, Store

__all__ = [
    "ApiKey",
    "Consent",
    "Customer",
    "Order",
    "OrderLine",
    "Product",
    "Refund",
    "Store",
    "Touchpoint",
]
