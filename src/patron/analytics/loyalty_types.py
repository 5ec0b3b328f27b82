"""Loyalty types: attitude × repeat behaviour (seed 000, seed 002; DOMAIN.md section 3).

Seed 002: loyalty has an attitudinal part (does the customer like the shop) and a
behavioural part (do they keep buying); "a loyal customer both likes the shop's products
and service *and* buys often", and the attitude drives the behaviour. Crossing the two
gives the four classic types:

==============  ============================  ============================
attitude        behaviour high                behaviour low
==============  ============================  ============================
high            ``true`` — 真正忠诚             ``latent`` — 潜在忠诚
low             ``spurious`` — 虚假忠诚         ``none`` — 不忠诚
==============  ============================  ============================

Latent: likes the shop but rarely buys; spurious: buys from habit, convenience or deals.

Per customer with an order before ``as_of`` (defaults of :class:`LoyaltyCriteria`):

* **behaviour** ``"high"`` when ``repeat_purchases`` (orders − 1) ≥ 2 *and* the last order
  is at most 180 days before ``as_of`` (``recency_days`` as in :mod:`patron.analytics.rfm`);
  otherwise ``"low"``: repeat buying that stopped is no longer loyal behaviour.
* **attitude** from the recommendation answer (NPS 0–10): ``"high"`` for promoters (≥ 9),
  ``"low"`` for everyone else who answered, *passives (7–8) included*: both seeds say that
  satisfaction is not loyalty (seed 000 "只是追求让客户满意远远不够"; seed 002: satisfied
  customers leave for a small favour elsewhere), and a passive is the satisfied but
  unenthusiastic customer. ``null`` when the customer never answered, and then
  ``loyalty_type`` is null too — raise ``high_attitude_nps`` to 7 to count passives as high.
* **price_sensitivity** (seed 002 "价格敏感度", DOMAIN.md section 1): share of the customer's
  orders bought with a discount, 0–1.
* **tolerance** of quality incidents (DOMAIN.md section 3): ``True`` when the customer
  ordered again after their first incident — the earliest of the first order that got a
  refund and the first complaint (before ``as_of``) — ``False`` when they had one and did
  not order again, null when neither happened.
* **behaviour_type**, a behavioural class for every customer, survey or not:

  ===========  ===============================================================
  one_time     no repeat purchase (一次性客户)
  occasional   some repeat purchases, fewer than ``min_repeat_purchases`` (偶尔复购客户)
  lapsed       enough repeat purchases, the last too long ago (流失老客户)
  deal_seeker  high behaviour, ≥ ``deal_seeker_share`` of orders on discount (促销驱动客户)
  regular      high behaviour, mostly at full price (稳定常客)
  ===========  ===============================================================

  ``regular`` and ``deal_seeker`` split the high-behaviour customers by price sensitivity:
  seed 002 notes that long-time loyal customers are *not* price sensitive, so a
  deal_seeker's repeat buying is the behavioural face of spurious loyalty.

Approximations (the frame has no refund dates and only the latest NPS answer): a refund
counts from the time of the refunded order, and both ``refunded_amount`` and ``nps`` are
as of the end of the data even when ``as_of`` is earlier.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import ibis

from patron.analytics.rfm import DisplayName, customer_measures, resolve_as_of

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from patron.analytics.frame import Frame

__all__ = [
    "BEHAVIOUR_TYPES",
    "BEHAVIOUR_TYPE_NAMES",
    "LOYALTY_TYPES",
    "LOYALTY_TYPE_NAMES",
    "UNKNOWN",
    "BehaviourTypeCount",
    "LoyaltyCriteria",
    "LoyaltyTypeCount",
    "behaviour_type_counts",
    "loyalty_table",
    "loyalty_type_counts",
]

LOYALTY_TYPES: tuple[str, ...] = ("true", "latent", "spurious", "none")
UNKNOWN = "unknown"  # loyalty_type_counts: customers without an NPS answer
BEHAVIOUR_TYPES: tuple[str, ...] = ("regular", "deal_seeker", "lapsed", "occasional", "one_time")

LOYALTY_TYPE_NAMES: dict[str, DisplayName] = {
    "true": DisplayName("True loyalty", "真正忠诚"),
    "latent": DisplayName("Latent loyalty", "潜在忠诚"),
    "spurious": DisplayName("Spurious loyalty", "虚假忠诚"),
    "none": DisplayName("No loyalty", "不忠诚"),
    UNKNOWN: DisplayName("Attitude unknown", "态度未知"),
}
BEHAVIOUR_TYPE_NAMES: dict[str, DisplayName] = {
    "regular": DisplayName("Regulars", "稳定常客"),
    "deal_seeker": DisplayName("Deal seekers", "促销驱动客户"),
    "lapsed": DisplayName("Lapsed repeat buyers", "流失老客户"),
    "occasional": DisplayName("Occasional buyers", "偶尔复购客户"),
    "one_time": DisplayName("One-time buyers", "一次性客户"),
}


@dataclass(frozen=True)
class LoyaltyCriteria:
    """Thresholds of the loyalty classification (see the module docstring)."""

    min_repeat_purchases: int = 2  # high behaviour: at least this many repeat purchases …
    max_recency_days: int = 180  # … and the last order at most this many days before as_of
    high_attitude_nps: int = 9  # high attitude: NPS at least this (promoters); below: low
    deal_seeker_share: float = 0.5  # deal seeker: at least this share of orders discounted

    def __post_init__(self) -> None:
        if self.min_repeat_purchases < 1:
            raise ValueError("min_repeat_purchases must be at least 1")
        if self.max_recency_days < 0:
            raise ValueError("max_recency_days must not be negative")
        if not 0 <= self.high_attitude_nps <= 10:
            raise ValueError("high_attitude_nps must be an NPS answer, 0–10")
        if not 0 < self.deal_seeker_share <= 1:
            raise ValueError("deal_seeker_share must be in (0, 1]")


@dataclass(frozen=True)
class LoyaltyTypeCount:
    """Customers of one loyalty type (or ``"unknown"`` attitude) and their traits."""

    type: str
    customers: int
    share: float  # of all customers with an order before as_of
    share_of_surveyed: float | None  # of customers with an NPS answer; None for "unknown"
    avg_repeat_purchases: float | None  # None when the type has no customers
    avg_price_sensitivity: float | None
    tolerance_rate: float | None  # bought again after an incident; None: no incidents


@dataclass(frozen=True)
class BehaviourTypeCount:
    """Customers of one behaviour type and their traits."""

    type: str
    customers: int
    share: float
    avg_repeat_purchases: float | None
    avg_price_sensitivity: float | None
    tolerance_rate: float | None


def _earliest(a: ir.TimestampValue, b: ir.TimestampValue) -> ir.TimestampValue:
    """The earlier of two nullable timestamps (null only when both are)."""
    earliest: ir.TimestampValue = ibis.least(a.fill_null(b), b.fill_null(a))
    return earliest


def loyalty_table(
    frame: Frame,
    *,
    as_of: date | datetime | None = None,
    criteria: LoyaltyCriteria = LoyaltyCriteria(),
) -> ir.Table:
    """One row per customer with an order before ``as_of`` (default ``frame.as_of``):
    ``customer_id, orders, repeat_purchases, recency_days, price_sensitivity, tolerance,
    nps, behaviour, attitude, loyalty_type, behaviour_type``. Lazy."""
    cut = resolve_as_of(frame, as_of)
    m = customer_measures(frame, cut)
    c = frame.customers
    c = c.select(
        "customer_id",
        "nps",
        complained_at=ibis.cases((c.complained_at < cut, c.complained_at)),
    )
    t = m.left_join(c, m.customer_id == c.customer_id)
    incident = _earliest(t.first_refunded_at, t.complained_at)
    repeat = t.frequency - 1
    t = t.select(
        "customer_id",
        "recency_days",
        "nps",
        orders=t.frequency,
        repeat_purchases=repeat,
        price_sensitivity=(t.discounted_orders / t.frequency).cast("float64"),
        tolerance=ibis.cases(
            (incident.isnull(), ibis.null("boolean")), else_=t.last_order_at > incident
        ),
        behaviour=ibis.cases(
            (
                (repeat >= criteria.min_repeat_purchases)
                & (t.recency_days <= criteria.max_recency_days),
                "high",
            ),
            else_="low",
        ),
        attitude=ibis.cases(
            (t.nps >= criteria.high_attitude_nps, "high"), (t.nps.notnull(), "low")
        ),
    )
    high_b, high_a = t.behaviour == "high", t.attitude == "high"
    return t.select(
        "customer_id",
        "orders",
        "repeat_purchases",
        "recency_days",
        "price_sensitivity",
        "tolerance",
        "nps",
        "behaviour",
        "attitude",
        loyalty_type=ibis.cases(
            (t.attitude.isnull(), ibis.null("string")),
            (high_a & high_b, "true"),
            (high_a, "latent"),
            (high_b, "spurious"),
            else_="none",
        ),
        behaviour_type=ibis.cases(
            (t.repeat_purchases == 0, "one_time"),
            (t.repeat_purchases < criteria.min_repeat_purchases, "occasional"),
            (~high_b, "lapsed"),
            (t.price_sensitivity >= criteria.deal_seeker_share, "deal_seeker"),
            else_="regular",
        ),
    )


def _type_stats(t: ir.Table, column: str) -> dict[str, dict[str, Any]]:
    """Count and trait averages per value of ``column`` (nulls as ``UNKNOWN``)."""
    key = t[column].fill_null(UNKNOWN)
    rows = (
        t.group_by(type=key)
        .aggregate(
            customers=t.count(),
            repeat_sum=t.repeat_purchases.sum(),
            sensitivity_avg=t.price_sensitivity.mean(),
            incidents=t.tolerance.notnull().cast("int64").sum(),
            tolerant=t.tolerance.fill_null(False).cast("int64").sum(),
        )
        .to_pyarrow()
        .to_pylist()
    )
    return {str(row["type"]): row for row in rows}


def _traits(row: dict[str, Any] | None) -> tuple[int, float | None, float | None, float | None]:
    if row is None:
        return 0, None, None, None
    customers, incidents = int(row["customers"]), int(row["incidents"])
    return (
        customers,
        int(row["repeat_sum"]) / customers,
        float(row["sensitivity_avg"]),
        int(row["tolerant"]) / incidents if incidents else None,
    )


def loyalty_type_counts(
    frame: Frame,
    *,
    as_of: date | datetime | None = None,
    criteria: LoyaltyCriteria = LoyaltyCriteria(),
) -> list[LoyaltyTypeCount]:
    """Customers per loyalty type — ``true, latent, spurious, none`` then ``unknown``
    (no NPS answer) — with their average repeat purchases, price sensitivity and
    tolerance rate. All five rows are always present."""
    stats = _type_stats(loyalty_table(frame, as_of=as_of, criteria=criteria), "loyalty_type")
    total = sum(int(r["customers"]) for r in stats.values())
    surveyed = total - int(stats[UNKNOWN]["customers"]) if UNKNOWN in stats else total
    counts = []
    for kind in (*LOYALTY_TYPES, UNKNOWN):
        customers, repeat, sensitivity, tolerance = _traits(stats.get(kind))
        of_surveyed = None if kind == UNKNOWN else (customers / surveyed if surveyed else 0.0)
        counts.append(
            LoyaltyTypeCount(
                type=kind,
                customers=customers,
                share=customers / total if total else 0.0,
                share_of_surveyed=of_surveyed,
                avg_repeat_purchases=repeat,
                avg_price_sensitivity=sensitivity,
                tolerance_rate=tolerance,
            )
        )
    return counts


def behaviour_type_counts(
    frame: Frame,
    *,
    as_of: date | datetime | None = None,
    criteria: LoyaltyCriteria = LoyaltyCriteria(),
) -> list[BehaviourTypeCount]:
    """Customers per behaviour type, in :data:`BEHAVIOUR_TYPES` order, all present."""
    stats = _type_stats(loyalty_table(frame, as_of=as_of, criteria=criteria), "behaviour_type")
    total = sum(int(r["customers"]) for r in stats.values())
    counts = []
    for kind in BEHAVIOUR_TYPES:
        customers, repeat, sensitivity, tolerance = _traits(stats.get(kind))
        counts.append(
            BehaviourTypeCount(
                type=kind,
                customers=customers,
                share=customers / total if total else 0.0,
                avg_repeat_purchases=repeat,
                avg_price_sensitivity=sensitivity,
                tolerance_rate=tolerance,
            )
        )
    return counts
