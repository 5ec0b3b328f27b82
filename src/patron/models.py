"""Imports every table so that metadata (Alembic, tests) sees the whole schema."""

import patron.analytics.models  # analysis runs, customer scores
import patron.campaigns.models  # opt-in confirmations, suppressions, privacy audit
import patron.feedback.models  # surveys, responses, reviews
import patron.loyalty.models  # the points ledger
import patron.referrals.models  # referrals, surprise rewards
import patron.rewards.models  # redemptions, coupons, stock
import patron.support.models  # tickets, SLAs, compensations
import patron.web.models  # noqa: F401  (dashboard staff accounts)
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
