"""Value concentration (seed 002): how much of the revenue the best customers bring.

Customers are the customers with at least one order. Each one's value is their net
revenue Σ (amount − refunded_amount) (``net=True``) or their revenue Σ amount; their
margin is that value minus Σ cost, known only when every order has a cost.

Customers are ranked by value, highest first, ties broken by ``customer_id`` so every
engine ranks alike. With n customers, v₁ ≥ v₂ ≥ … ≥ vₙ and C(k) = v₁ + … + vₖ, the
concentration curve (Pareto / Lorenz curve from the top) is linear between the points
(k/n, C(k)/C(n)):

    L(x) = (C(k) + (x·n − k) · vₖ₊₁) / C(n),   k = ⌊x·n⌋   (L(1) = 1)

so "the top 20%" is exact for any n, also when 20% of n is not a whole customer.

* ``top20_share`` = L(0.2) — the 80/20 rule: the share of revenue from the top 20%;
* ``top10_revenue`` = L(0.1) · C(n), ``next10_revenue`` = (L(0.2) − L(0.1)) · C(n);
* ``top10_to_next10`` = top10_revenue / next10_revenue (seed 002: the top 10% earn 5–10×
  what the next 10% do);
* the ``margin_*`` fields: the same, customers ranked by margin;
* ``pareto``: L(i / points) for i = 0 … points.

Shares are fractions 0–1; they are None when the total is not positive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ibis

from patron.analytics.frame import Frame

# Cut-offs of the headline shares: tenths of the customers.
_TENTHS = 10


@dataclass(frozen=True)
class ParetoPoint:
    customer_share: float  # the top x of customers, 0–1
    revenue_share: float  # the share of the total value they bring, 0–1


@dataclass(frozen=True)
class ValueConcentration:
    """Value concentration of a store's customers (see the module docstring)."""

    net: bool  # values are net of refunds
    customers: int
    revenue: float  # Σ value over all customers
    top20_share: float | None
    top10_revenue: float | None
    next10_revenue: float | None
    top10_to_next10: float | None
    margin: float | None  # Σ margin; None when some order has no cost
    margin_top20_share: float | None
    margin_top10: float | None
    margin_next10: float | None
    margin_top10_to_next10: float | None
    pareto: tuple[ParetoPoint, ...]


def _kept(rank: ibis.IntegerValue, n: ibis.IntegerValue, parts: int) -> ibis.BooleanValue:
    """Whether some cut-off i/parts (i = 0 … parts) has ⌊i·n/parts⌋ = ``rank``, i.e. an
    integer i in [rank·parts/n, (rank + 1)·parts/n): ⌈rank·parts/n⌉·n < (rank + 1)·parts."""
    ceiling = (rank * parts + n - 1) // n
    return ceiling * n < (rank + 1) * parts


def _ranked(frame: Frame, net: bool, parts: Sequence[int]) -> list[dict[str, Any]]:
    """The rows of the ranked customers that the curve's cut-offs need: for each cut-off
    k = ⌊x·n⌋ the rows of rank k (C(k)) and k + 1 (vₖ₊₁), by value and by margin."""
    orders = frame.orders
    value = orders.amount - orders.refunded_amount if net else orders.amount
    per_customer = orders.group_by("customer_id").aggregate(
        value=value.sum(),
        cost=orders.cost.sum(),
        uncosted=ibis.ifelse(orders.cost.isnull(), 1, 0).sum(),
    )
    t = per_customer.mutate(margin=per_customer.value - per_customer.cost.fill_null(0.0))
    by_value = [ibis.desc(t.value), t.customer_id]
    by_margin = [ibis.desc(t.margin), t.customer_id]
    everyone = ibis.window()
    t = t.mutate(
        n=t.count().over(everyone),
        uncosted_orders=t.uncosted.sum().over(everyone),
        value_rank=ibis.row_number().over(order_by=by_value) + 1,
        value_cum=t.value.sum().over(ibis.window(order_by=by_value, rows=(None, 0))),
        margin_rank=ibis.row_number().over(order_by=by_margin) + 1,
        margin_cum=t.margin.sum().over(ibis.window(order_by=by_margin, rows=(None, 0))),
    )
    needed = ibis.literal(False)
    for rank in (t.value_rank, t.margin_rank):
        for p in parts:
            needed = needed | _kept(rank, t.n, p) | _kept(rank - 1, t.n, p)
    wanted = t.filter(needed).select(
        "n",
        "uncosted_orders",
        "value_rank",
        "value",
        "value_cum",
        "margin_rank",
        "margin",
        "margin_cum",
    )
    rows: list[dict[str, Any]] = wanted.to_pyarrow().to_pylist()
    return rows


class _Curve:
    """L(x) from the known ranks: ``values[k]`` = vₖ and ``cumulative[k]`` = C(k)."""

    def __init__(self, n: int, values: dict[int, float], cumulative: dict[int, float]) -> None:
        self.n = n
        self.values = values
        self.cumulative = {0: 0.0, **cumulative}
        self.total = self.cumulative[n]

    def top(self, i: int, parts: int) -> float:
        """L(i / parts) · C(n): the value of the top i/parts of the customers."""
        k, remainder = divmod(i * self.n, parts)
        if k >= self.n:
            return self.total
        return self.cumulative[k] + remainder / parts * self.values[k + 1]

    def tenths(self) -> tuple[float | None, float | None, float | None, float | None]:
        """Top-20% share, top-10% value, next-10% value and their ratio."""
        if self.total <= 0:
            return None, None, None, None
        top10, top20 = self.top(1, _TENTHS), self.top(2, _TENTHS)
        next10 = top20 - top10
        return top20 / self.total, top10, next10, (top10 / next10 if next10 > 0 else None)


def value_concentration(frame: Frame, *, net: bool = True, points: int = 100) -> ValueConcentration:
    """The value concentration of ``frame``'s customers, with ``points`` + 1 points of
    the Pareto curve (customer shares 0, 1/points, …, 1). Definitions in the module
    docstring."""
    if points < 1:
        raise ValueError("points must be at least 1")
    rows = _ranked(frame, net, (points, _TENTHS))
    if not rows:
        return ValueConcentration(
            net=net,
            customers=0,
            revenue=0.0,
            top20_share=None,
            top10_revenue=None,
            next10_revenue=None,
            top10_to_next10=None,
            margin=None,
            margin_top20_share=None,
            margin_top10=None,
            margin_next10=None,
            margin_top10_to_next10=None,
            pareto=(),
        )
    n = int(rows[0]["n"])
    value = _Curve(
        n,
        {int(r["value_rank"]): float(r["value"]) for r in rows},
        {int(r["value_rank"]): float(r["value_cum"]) for r in rows},
    )
    top20, top10, next10, ratio = value.tenths()
    margin_known = int(rows[0]["uncosted_orders"]) == 0
    margin_total: float | None = None
    m_top20 = m_top10 = m_next10 = m_ratio = None
    if margin_known:
        margin = _Curve(
            n,
            {int(r["margin_rank"]): float(r["margin"]) for r in rows},
            {int(r["margin_rank"]): float(r["margin_cum"]) for r in rows},
        )
        margin_total = margin.total
        m_top20, m_top10, m_next10, m_ratio = margin.tenths()
    pareto: tuple[ParetoPoint, ...] = ()
    if value.total > 0:
        pareto = tuple(
            ParetoPoint(customer_share=i / points, revenue_share=value.top(i, points) / value.total)
            for i in range(points + 1)
        )
    return ValueConcentration(
        net=net,
        customers=n,
        revenue=value.total,
        top20_share=top20,
        top10_revenue=top10,
        next10_revenue=next10,
        top10_to_next10=ratio,
        margin=margin_total,
        margin_top20_share=m_top20,
        margin_top10=m_top10,
        margin_next10=m_next10,
        margin_top10_to_next10=m_ratio,
        pareto=pareto,
    )
