"""Per-customer CLV scores from an analysis :class:`~patron.analytics.frame.Frame`.

The (frequency, recency, T, monetary value) summary is computed **in the engine** with
Ibis (DuckDB or Spark), with the definitions of :func:`patron.analytics.clv_data.
summary_from_transactions` at ``freq="D"``:

* a purchase is a **store-local day** with at least one order (several orders on one day
  are one purchase whose amount is their sum);
* the amount of an order is its **net** amount, ``amount − refunded_amount`` (never below 0);
* ``frequency`` x = purchase days − 1; ``recency`` t_x = last − first purchase day;
  ``T`` = day of ``as_of`` − first purchase day; ``monetary_value`` = mean net amount of
  the repeat days (0 when x = 0);
* only orders placed before ``as_of`` (exclusive) count.

Only the small per-customer result (one row per customer) leaves the engine, as Arrow;
BG/NBD and Gamma-Gamma are then fitted with numpy/scipy (``patron.analytics.clv``).

A fit that fails is never hidden: its :class:`ModelFit` says so (``usable`` false, the
optimiser's message), the affected scores are null, and :attr:`ClvFit.warnings` explains
why. Predictions are never NaN: a non-finite value becomes null and is counted in a
warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import ibis
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from patron.analytics.clv import (
    BetaGeo,
    ConvergenceError,
    GammaGamma,
    ModifiedBetaGeo,
    customer_lifetime_value,
)
from patron.analytics.clv_data import Summary
from patron.analytics.frame import Frame

__all__ = [
    "DEFAULT_MARGIN",
    "ClvFit",
    "ClvScores",
    "ModelFit",
    "clv_scores",
    "clv_summary",
    "store_margin",
]

FloatArr = npt.NDArray[np.float64]

#: Gross margin used for CLV when neither an argument nor order costs give one.
DEFAULT_MARGIN = 0.3
#: A fit whose largest |∂ mean log-likelihood / ∂ log θ| is below this stopped at a
#: stationary point, even if a parameter ran to its bound (a limiting case of the model,
#: e.g. b → ∞ "nobody drops out") or its standard errors are undefined.
STATIONARY_GRADIENT = 1e-4
#: |corr(frequency, spend)| above this casts doubt on Gamma-Gamma's independence assumption.
SPEND_CORRELATION_WARNING = 0.3

MarginSource = Literal["argument", "cost", "default"]

SCORE_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("frequency", pa.float64()),
        ("recency", pa.float64()),
        ("T", pa.float64()),
        ("monetary_value", pa.float64()),
        ("p_alive", pa.float64()),
        ("expected_purchases", pa.float64()),
        ("clv", pa.float64()),
    ]
)


@dataclass(frozen=True)
class ModelFit:
    """One fitted model, in primitives (JSON-ready; NaN standard errors are ``None``)."""

    model: str  # "BG/NBD", "MBG/NBD", "Gamma-Gamma"
    usable: bool  # a stationary point of the likelihood: predictions can be made with it
    converged: bool  # FitDiagnostics.converged: stationary, inside bounds, identified
    params: dict[str, float]
    se: dict[str, float | None]
    message: str
    log_likelihood: float | None
    customers: int
    iterations: int
    seconds: float


@dataclass(frozen=True)
class ClvFit:
    """How the CLV scores were made: inputs, both models, and what went wrong."""

    as_of: datetime  # naive store-local, exclusive
    customers: int  # with at least one purchase day before as_of
    repeat_customers: int  # x > 0
    spend_customers: int  # x > 0 and a positive repeat spend: Gamma-Gamma's data
    horizon_days: int
    months: int
    discount_rate: float  # per month
    margin: float
    margin_source: MarginSource
    costed_revenue_share: float  # share of revenue whose cost is known
    purchases: ModelFit | None  # None: no model could be fitted
    spend: ModelFit | None
    spend_frequency_correlation: float | None  # Pearson, repeat customers
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class ClvScores:
    fit: ClvFit
    #: One row per customer (sorted by id): the summary (frequency, recency, T,
    #: monetary_value) and p_alive, expected_purchases (next ``horizon_days``) and clv
    #: (discounted margin over ``months``); null where the model behind them failed.
    table: pa.Table


# --------------------------------------------------------------------------- summary


def _summary_arrow(frame: Frame, as_of: datetime) -> pa.Table:
    """One row per customer: first and last purchase day, purchase days, repeat net total."""
    o = frame.orders
    o = o.filter(o.placed_at < as_of)
    net = (o.amount - o.refunded_amount.fill_null(0.0)).clip(lower=0.0)
    daily = o.group_by(customer_id=o.customer_id, day=o.placed_at.date()).aggregate(net=net.sum())
    first = daily.day.min().over(group_by=daily.customer_id)
    daily = daily.mutate(repeat_net=ibis.ifelse(daily.day > first, daily.net, 0.0))
    per = daily.group_by("customer_id").aggregate(
        first_day=daily.day.min(),
        last_day=daily.day.max(),
        days=daily.count(),
        repeat_total=daily.repeat_net.sum(),
    )
    table = per.to_pyarrow()
    return table.take(pc.sort_indices(table, [("customer_id", "ascending")]))


def _epoch_days(column: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    return np.asarray(
        pc.cast(column, pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )


def clv_summary(frame: Frame, *, as_of: datetime | None = None) -> Summary:
    """The BG/NBD / Gamma-Gamma input per customer, computed in the frame's engine.

    Equals ``summary_from_transactions(customer_ids, placed_at, net, observation_end=as_of,
    freq="D")`` over the orders placed before ``as_of`` (default: the frame's).
    """
    as_of = as_of or frame.as_of
    table = _summary_arrow(frame, as_of)
    if table.num_rows == 0:
        raise ValueError(f"no orders before {as_of:%Y-%m-%d %H:%M}: nothing to score")
    first = _epoch_days(table.column("first_day"))
    last = _epoch_days(table.column("last_day"))
    end = int(np.datetime64(as_of.date(), "D").astype(np.int64))
    frequency = table.column("days").to_numpy().astype(np.float64) - 1.0
    repeat_total = np.asarray(
        table.column("repeat_total").fill_null(0.0).to_numpy(), dtype=np.float64
    )
    monetary = np.divide(repeat_total, frequency, out=np.zeros_like(frequency), where=frequency > 0)
    return Summary(
        customer_ids=np.asarray(table.column("customer_id").to_numpy(zero_copy_only=False)),
        frequency=frequency,
        recency=(last - first).astype(np.float64),
        T=(end - first).astype(np.float64),
        monetary_value=monetary,
    )


def store_margin(frame: Frame, *, as_of: datetime | None = None) -> tuple[float | None, float]:
    """(gross margin of the orders whose cost is known, their share of revenue).

    margin = 1 − Σ cost / Σ amount over costed orders, clipped to [0, 1]; ``None`` when no
    order before ``as_of`` has a cost.
    """
    as_of = as_of or frame.as_of
    o = frame.orders.filter(frame.orders.placed_at < as_of)
    costed = o.cost.notnull()
    row = (
        o.aggregate(
            revenue=o.amount.sum(),
            costed_revenue=ibis.ifelse(costed, o.amount, 0.0).sum(),
            cost=o.cost.sum(),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    revenue = float(row["revenue"] or 0.0)
    costed_revenue = float(row["costed_revenue"] or 0.0)
    if costed_revenue <= 0:
        return None, 0.0
    margin = min(max(1.0 - float(row["cost"] or 0.0) / costed_revenue, 0.0), 1.0)
    return margin, costed_revenue / revenue if revenue > 0 else 0.0


# --------------------------------------------------------------------------- fitting


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _model_fit(name: str, model: BetaGeo | GammaGamma) -> ModelFit:
    d = model.diagnostics
    assert d is not None  # set by every fit
    stationary = math.isfinite(d.log_likelihood) and d.gradient_norm < STATIONARY_GRADIENT
    return ModelFit(
        model=name,
        usable=d.converged or stationary,
        converged=d.converged,
        params=model.params,
        se={k: _finite_or_none(v) for k, v in model.se.items()},
        message=d.message,
        log_likelihood=_finite_or_none(d.log_likelihood),
        customers=d.customers,
        iterations=d.iterations,
        seconds=round(d.seconds, 3),
    )


def _failed(name: str, exc: Exception, customers: int) -> ModelFit:
    return ModelFit(
        model=name,
        usable=False,
        converged=False,
        params={},
        se={},
        message=f"{type(exc).__name__}: {exc}",
        log_likelihood=None,
        customers=customers,
        iterations=0,
        seconds=0.0,
    )


@dataclass(frozen=True)
class _Candidate:
    model: BetaGeo
    fit: ModelFit
    p_alive: FloatArr
    expected: FloatArr

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.p_alive).all() and np.isfinite(self.expected).all())


def _fit_purchases(
    s: Summary, horizon_days: int, warnings: list[str]
) -> tuple[_Candidate | None, ModelFit | None]:
    """BG/NBD, or MBG/NBD when BG/NBD fails, does not converge, or predicts non-finite
    values. A fit that is stationary but not identified (a parameter at its bound, the
    Hessian singular) is used, with a warning, only when neither model converges."""
    tried: list[ModelFit] = []
    candidates: list[_Candidate] = []
    for name, cls in (("BG/NBD", BetaGeo), ("MBG/NBD", ModifiedBetaGeo)):
        try:
            model: BetaGeo = cls.fit(s.frequency, s.recency, s.T)
        except (ConvergenceError, ValueError, FloatingPointError) as exc:
            tried.append(_failed(name, exc, s.frequency.size))
            continue
        fit = _model_fit(name, model)
        tried.append(fit)
        if not fit.usable:
            continue
        with np.errstate(all="ignore"):
            p_alive = model.probability_alive(s.frequency, s.recency, s.T)
            expected = model.conditional_expected_purchases(
                horizon_days, s.frequency, s.recency, s.T
            )
        candidates.append(_Candidate(model, fit, p_alive, expected))
        if fit.converged and candidates[-1].finite:
            break
    chosen = next((c for c in candidates if c.fit.converged and c.finite), None)
    if chosen is None:
        chosen = next((c for c in candidates if c.finite), None)
        if chosen is not None:
            warnings.append(
                f"{chosen.fit.model} fit is stationary but not fully identified, treat its "
                f"predictions with care: {chosen.fit.message}"
            )
    if chosen is None and candidates:
        chosen = candidates[0]  # non-finite predictions are nulled (and counted) below
    if chosen is None:
        warnings.append(
            "no purchase model could be fitted, p_alive, expected_purchases and clv are "
            "null: " + "; ".join(f"{f.model}: {f.message}" for f in tried)
        )
        return None, tried[0]
    if chosen.fit.model != "BG/NBD":
        bg = tried[0]
        if not bg.params:
            why = f"could not be fitted ({bg.message})"
        elif not bg.usable:
            why = f"did not converge ({bg.message})"
        elif not bg.converged:
            why = f"is not identified by the data ({bg.message})"
        else:
            why = "predicted non-finite values"
        warnings.append(f"purchases modelled with MBG/NBD: BG/NBD {why}")
    return chosen, chosen.fit


def _fit_spend(s: Summary, warnings: list[str]) -> tuple[GammaGamma | None, ModelFit | None]:
    repeat = (s.frequency > 0) & (s.monetary_value > 0)
    try:
        model = GammaGamma.fit(s.frequency[repeat], s.monetary_value[repeat])
    except (ConvergenceError, ValueError, FloatingPointError) as exc:
        warnings.append(f"Gamma-Gamma could not be fitted, clv is null: {exc}")
        return None, _failed("Gamma-Gamma", exc, int(repeat.sum()))
    fit = _model_fit("Gamma-Gamma", model)
    if not fit.usable:
        warnings.append(f"Gamma-Gamma did not converge, clv is null: {fit.message}")
        return None, fit
    if model.q <= 1.0:
        warnings.append(
            f"Gamma-Gamma q = {model.q:.3g} ≤ 1: the mean spend is infinite, clv is null"
        )
        return None, fit
    if not fit.converged:
        warnings.append(f"Gamma-Gamma fit is usable but not fully identified: {fit.message}")
    return model, fit


def _clean(values: FloatArr, name: str, warnings: list[str]) -> pa.Array:
    """Arrow doubles with every non-finite value null, and a warning that says how many."""
    bad = ~np.isfinite(values)
    if bad.any():
        warnings.append(f"{int(bad.sum())} non-finite {name} value(s) set to null")
    return pa.array(values, type=pa.float64(), mask=bad)


def clv_scores(
    frame: Frame,
    *,
    as_of: datetime | None = None,
    horizon_days: int = 90,
    months: int = 12,
    discount_rate: float = 0.01,
    margin: float | None = None,
) -> ClvScores:
    """P(alive), expected purchases in the next ``horizon_days`` and CLV per customer.

    CLV = Σ over the next ``months`` months of expected purchases in the month × expected
    spend (Gamma-Gamma, given the customer's history) × ``margin``, discounted by
    ``discount_rate`` per month (``customer_lifetime_value``). ``margin`` defaults to the
    gross margin of the orders whose cost is known, else :data:`DEFAULT_MARGIN`.
    """
    if horizon_days < 1 or months < 1:
        raise ValueError("horizon_days and months must be at least 1")
    if not -1.0 < discount_rate < 10.0:
        raise ValueError("discount_rate is a monthly rate: it must be in (−1, 10)")
    if margin is not None and not 0.0 <= margin <= 1.0:
        raise ValueError("margin must be in [0, 1]")
    as_of = as_of or frame.as_of
    s = clv_summary(frame, as_of=as_of)
    warnings: list[str] = []

    cost_margin, costed_share = store_margin(frame, as_of=as_of)
    source: MarginSource
    if margin is not None:
        source = "argument"
    elif cost_margin is not None:
        margin, source = cost_margin, "cost"
    else:
        margin, source = DEFAULT_MARGIN, "default"

    n = s.frequency.size
    chosen, purchases = _fit_purchases(s, horizon_days, warnings)
    gg, spend = _fit_spend(s, warnings)
    clv: FloatArr | None = None
    if chosen is not None and gg is not None:
        with np.errstate(all="ignore"):
            clv = customer_lifetime_value(
                chosen.model,
                gg,
                s.frequency,
                s.recency,
                s.T,
                s.monetary_value,
                months=months,
                discount_rate=discount_rate,
                margin=margin,
                freq="D",
            )

    repeat = s.frequency > 0
    correlation = None
    if int(repeat.sum()) > 2:
        x, m = s.frequency[repeat], s.monetary_value[repeat]
        if float(x.std()) > 0 and float(m.std()) > 0:
            correlation = float(np.corrcoef(x, m)[0, 1])
            if abs(correlation) > SPEND_CORRELATION_WARNING:
                warnings.append(
                    f"frequency and spend are correlated (r = {correlation:.2f}): Gamma-Gamma "
                    "assumes they are independent, so expected spend may be biased"
                )

    missing = pa.nulls(n, pa.float64())
    table = pa.Table.from_arrays(
        [
            pa.array(s.customer_ids, type=pa.string()),
            pa.array(s.frequency),
            pa.array(s.recency),
            pa.array(s.T),
            pa.array(s.monetary_value),
            missing if chosen is None else _clean(chosen.p_alive, "p_alive", warnings),
            missing if chosen is None else _clean(chosen.expected, "expected_purchases", warnings),
            missing if clv is None else _clean(clv, "clv", warnings),
        ],
        schema=SCORE_SCHEMA,
    )
    fit = ClvFit(
        as_of=as_of,
        customers=n,
        repeat_customers=int(repeat.sum()),
        spend_customers=int((repeat & (s.monetary_value > 0)).sum()),
        horizon_days=horizon_days,
        months=months,
        discount_rate=discount_rate,
        margin=float(margin),
        margin_source=source,
        costed_revenue_share=costed_share,
        purchases=purchases,
        spend=spend,
        spend_frequency_correlation=correlation,
        warnings=tuple(warnings),
    )
    return ClvScores(fit=fit, table=table)
