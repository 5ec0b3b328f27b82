"""Exact simulators of the CLV models' generative processes (for tests and benchmarks).

Each returns per-customer summary arrays drawn from the model's own story, so a correct
fitter must recover the parameters it was given. All are vectorised and take a
``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArr = npt.NDArray[np.float64]

__all__ = [
    "simulate_bgnbd",
    "simulate_gamma_gamma",
    "simulate_mbgnbd",
    "simulate_pareto_nbd",
]


def _order_statistic(
    rng: np.random.Generator, k: npt.NDArray[np.int64], m: npt.NDArray[np.int64], span: FloatArr
) -> FloatArr:
    """Time of the k-th of m uniform points on [0, span] (0 where k = 0): span·Beta(k, m−k+1)."""
    out = np.zeros(span.shape)
    has = k > 0
    out[has] = span[has] * rng.beta(k[has], m[has] - k[has] + 1)
    return out


def _bg_process(
    rng: np.random.Generator,
    T: FloatArr,
    r: float,
    alpha: float,
    a: float,
    b: float,
    dropout_at_zero: bool,
) -> tuple[FloatArr, FloatArr, FloatArr]:
    n = T.size
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    # purchases a customer would make over T if they never left, and the repeat purchase
    # after which they leave (BG/NBD: K >= 1; MBG/NBD may also leave at time 0: K >= 0)
    m = rng.poisson(lam * T)
    k = rng.geometric(np.clip(p, 1e-300, 1.0)) - (1 if dropout_at_zero else 0)
    x = np.minimum(k, m)
    return x.astype(np.float64), _order_statistic(rng, x, m, T), T


def simulate_bgnbd(
    rng: np.random.Generator, T: FloatArr, r: float, alpha: float, a: float, b: float
) -> tuple[FloatArr, FloatArr, FloatArr]:
    """BG/NBD (Fader, Hardie & Lee 2005): λ ~ Gamma(r, rate α) purchases per unit time while
    alive; after each *repeat* purchase the customer leaves with probability p ~ Beta(a, b).

    Returns (frequency, recency, T) for customers of ages ``T``.
    """
    return _bg_process(rng, np.asarray(T, dtype=np.float64), r, alpha, a, b, False)


def simulate_mbgnbd(
    rng: np.random.Generator, T: FloatArr, r: float, alpha: float, a: float, b: float
) -> tuple[FloatArr, FloatArr, FloatArr]:
    """MBG/NBD (Batislam, Denizel & Filiztekin 2007): as BG/NBD, but the customer may also
    leave right after the first purchase (time 0)."""
    return _bg_process(rng, np.asarray(T, dtype=np.float64), r, alpha, a, b, True)


def simulate_pareto_nbd(
    rng: np.random.Generator, T: FloatArr, r: float, alpha: float, s: float, beta: float
) -> tuple[FloatArr, FloatArr, FloatArr]:
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): λ ~ Gamma(r, rate α); lifetime
    τ ~ Exponential(μ) with μ ~ Gamma(s, rate β); purchases are Poisson(λ) on (0, min(τ, T))."""
    T = np.asarray(T, dtype=np.float64)
    lam = rng.gamma(r, 1.0 / alpha, T.size)
    mu = rng.gamma(s, 1.0 / beta, T.size)
    tau = rng.exponential(1.0, T.size) / np.maximum(mu, 1e-300)
    active = np.minimum(tau, T)
    x = rng.poisson(lam * active)
    # the last of x uniform points on [0, active] is active · U^(1/x)
    t_x = np.zeros(T.size)
    has = x > 0
    t_x[has] = active[has] * rng.random(int(has.sum())) ** (1.0 / x[has])
    return x.astype(np.float64), t_x, T


def simulate_gamma_gamma(
    rng: np.random.Generator, frequency: FloatArr, p: float, q: float, v: float
) -> FloatArr:
    """Gamma-Gamma spend (Fader, Hardie & Lee 2005): ν ~ Gamma(q, rate v) per customer, each
    transaction's value ~ Gamma(p, rate ν). Returns the mean of ``frequency`` transaction
    values per customer (0 where frequency = 0)."""
    x = np.asarray(frequency, dtype=np.float64)
    nu = rng.gamma(q, 1.0 / v, x.size)
    out = np.zeros(x.size)
    has = x > 0
    # the sum of x Gamma(p, rate ν) values is Gamma(p·x, rate ν)
    out[has] = rng.gamma(p * x[has], 1.0 / nu[has]) / x[has]
    return out
