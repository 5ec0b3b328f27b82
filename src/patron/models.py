"""Imports every table so that metadata (Alembic, tests) sees the whole schema."""

import patron.analytics.models  # analysis runs, customer scores
import patron.loyalty.models  # the points ledger
import patron.referrals.models  # referrals, surprise rewards
import patron.rewards.models  # noqa: F401  (redemptions, coupons, stock)
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
