r"""Customer-lifetime-value models: BG/NBD, MBG/NBD, Pareto/NBD and Gamma-Gamma.

Pure numpy/scipy, fitted by maximum likelihood. Every model

* works on **compressed data**: customers with identical (x, t_x, T) are one *pattern*
  with a count, and every transcendental function is evaluated on the unique x, t_x and T
  values (or (x, τ) pairs for Pareto/NBD) rather than per customer — with period data
  (days, weeks) this is what makes a million customers fast;
* has an **analytic gradient** (Pareto/NBD: see :class:`ParetoNBD` for the one exception)
  and is written in log space (``gammaln``, ``betaln``, ``logaddexp``, log ₂F₁) so it
  neither overflows nor returns NaN for x in the hundreds or T in the thousands;
* is optimised on log-parameters with bounds (L-BFGS-B) from several starting points —
  the starts are tried on a random sample of 20,000 customers and the best one is polished
  on all of them — and reports a :class:`FitDiagnostics` (converged, iterations, gradient
  norm, message) instead of silently returning NaN; a fit whose likelihood is not finite
  anywhere raises :class:`ConvergenceError`;
* gets standard errors from the inverse of a numerical Hessian (central differences of the
  analytic gradient in log-parameters, then the delta method).

Notation (Fader, Hardie & Lee): x = repeat purchases (``frequency``), t_x = time of the last
purchase since the first (``recency``), T = time since the first purchase (age); time is
in the periods of the summary (days or weeks).

Sources

* BG/NBD: P. S. Fader, B. G. S. Hardie, K. L. Lee (2005), "'Counting Your Customers' the
  Easy Way: An Alternative to the Pareto/NBD Model", *Marketing Science* 24(2), eq. (6),
  (10), (13); P(alive) from Fader-Hardie-Lee note "Computing P(alive) using the BG/NBD".
* MBG/NBD: E. P. Batislam, M. Denizel, A. Filiztekin (2007), "Empirical validation and
  comparison of models for customer base analysis", *IJRM* 24(3); U. Wagner, D. Hoppe
  (2008) for the conditional expectation.
* Pareto/NBD: D. C. Schmittlein, D. G. Morrison, R. Colombo (1987); likelihood, P(alive)
  and conditional expectation from P. S. Fader, B. G. S. Hardie (2005), "A Note on Deriving
  the Pareto/NBD Model and Related Expressions", eq. (18)-(20), (34), (41).
* Gamma-Gamma: P. S. Fader, B. G. S. Hardie, K. L. Lee (2005), "RFM and CLV: Using Iso-Value
  Curves for Customer Base Analysis", *JMR* 42(4); B. G. S. Hardie, "The Gamma-Gamma Model
  of Monetary Value" (2013 note), eq. (1)-(5).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from scipy import optimize, special  # type: ignore[import-untyped]

from patron.analytics.clv_data import (
    CalibrationHoldout,
    Summary,
    calibration_and_holdout,
    summary_from_transactions,
)

FloatArr = npt.NDArray[np.float64]
IntArr = npt.NDArray[np.int64]
ArrayLike = npt.ArrayLike

__all__ = [
    "BetaGeo",
    "CalibrationHoldout",
    "ConvergenceError",
    "FitDiagnostics",
    "GammaGamma",
    "HoldoutReport",
    "HoldoutRow",
    "ModifiedBetaGeo",
    "ParetoNBD",
    "Patterns",
    "Summary",
    "calibration_and_holdout",
    "compress",
    "customer_lifetime_value",
    "holdout_report",
    "summary_from_transactions",
]

LOG_BOUND = 18.0  # parameters live in [e^-18, e^18] ≈ [1.5e-8, 6.6e7]
SAMPLE_CUSTOMERS = 20_000  # multi-start sample size
PERIODS_PER_MONTH: dict[str, float] = {"h": 720.0, "D": 30.0, "W": 4.345, "M": 1.0}


# --------------------------------------------------------------------------- diagnostics


@dataclass(frozen=True)
class FitDiagnostics:
    """How a fit went.

    ``converged`` means: the optimiser stopped at a stationary point (scipy's success, or a
    stalled line search with a gradient below 1e-6), no parameter is on its bound, and the
    Hessian is negative definite (a proper, identified maximum). ``gradient_norm`` is the
    largest |∂(mean log-likelihood)/∂log θ| there.
    """

    converged: bool
    message: str
    iterations: int
    evaluations: int
    gradient_norm: float
    log_likelihood: float  # total over customers, in the summary's time unit
    customers: int
    patterns: int  # distinct rows after compression
    seconds: float
    start: tuple[float, ...]  # the winning starting point (natural scale)
    starts_tried: int
    hessian_ok: bool  # False: standard errors are NaN (Hessian not negative definite)
    at_bound: tuple[str, ...]  # parameters that ended on a bound


class ConvergenceError(RuntimeError):
    """No starting point gave a finite likelihood; ``diagnostics`` says what was tried."""

    def __init__(self, message: str, diagnostics: FitDiagnostics | None = None) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Patterns:
    """Distinct (x, t_x, T) rows with the number of customers ``n`` having each."""

    x: FloatArr
    t: FloatArr
    T: FloatArr
    n: FloatArr

    @property
    def customers(self) -> float:
        return float(self.n.sum())

    def sample(self, size: int, rng: np.random.Generator) -> Patterns:
        """A random sample of ``size`` customers, drawn without regard to pattern."""
        drawn = rng.multinomial(size, self.n / self.n.sum()).astype(np.float64)
        keep = drawn > 0
        return Patterns(self.x[keep], self.t[keep], self.T[keep], drawn[keep])


def _as_float(values: ArrayLike, name: str) -> FloatArr:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return arr


def _check_summary(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[FloatArr, FloatArr, FloatArr]:
    x, t, age = _as_float(frequency, "frequency"), _as_float(recency, "recency"), _as_float(T, "T")
    if not (x.shape == t.shape == age.shape):
        raise ValueError("frequency, recency and T must have the same length")
    if (x < 0).any() or (x != np.floor(x)).any():
        raise ValueError("frequency must be a non-negative whole number")
    if (t < 0).any() or (t > age).any():
        raise ValueError("recency must be in [0, T]")
    if (t[x == 0] != 0).any():
        raise ValueError("recency must be 0 for customers with frequency 0")
    return x, t, age


def compress(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None
) -> Patterns:
    """Group identical (x, t_x, T) rows, summing their weights (1 per customer by default)."""
    x, t, age = _check_summary(frequency, recency, T)
    w = np.ones(x.size) if weights is None else _as_float(weights, "weights")
    if w.shape != x.shape or (w < 0).any():
        raise ValueError("weights must be non-negative and as long as frequency")
    if x.size == 0 or w.sum() <= 0:
        raise ValueError("no customers")
    top_x, top_t = int(x.max()) + 1, int(age.max()) + 1
    integral = (t == np.floor(t)).all() and (age == np.floor(age)).all()
    if integral and float(top_x) * top_t * top_t < 2.0**62:
        # period data: one int64 key per row, a single sort
        key = (age.astype(np.int64) * top_t + t.astype(np.int64)) * top_x + x.astype(np.int64)
        uniq, inverse = np.unique(key, return_inverse=True)
        counts = _bincount(inverse.ravel(), weights=w, minlength=uniq.size)
        ux = (uniq % top_x).astype(np.float64)
        rest = uniq // top_x
        ut, uT = (rest % top_t).astype(np.float64), (rest // top_t).astype(np.float64)
    else:
        rows, inverse = np.unique(np.stack([x, t, age], axis=1), axis=0, return_inverse=True)
        counts = _bincount(inverse.ravel(), weights=w, minlength=rows.shape[0])
        ux, ut, uT = rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy()
    keep = counts > 0
    return Patterns(ux[keep], ut[keep], uT[keep], counts[keep])


@dataclass(frozen=True)
class _Index:
    """Unique x / t_x / T values of the patterns and each pattern's position in them."""

    pat: Patterns
    ux: FloatArr
    ix: IntArr
    ut: FloatArr
    it: IntArr
    uT: FloatArr
    iT: IntArr
    n_x: FloatArr  # customers per unique x
    nx_x: FloatArr  # Σ n·x per unique x

    @classmethod
    def build(cls, pat: Patterns) -> _Index:
        ux, ix = np.unique(pat.x, return_inverse=True)
        ut, it = np.unique(pat.t, return_inverse=True)
        uT, iT = np.unique(pat.T, return_inverse=True)
        ix, it, iT = ix.ravel(), it.ravel(), iT.ravel()
        n_x = _bincount(ix, weights=pat.n, minlength=ux.size)
        return cls(pat, ux, ix, ut, it, uT, iT, n_x, n_x * ux)


# --------------------------------------------------------------------------- numerics


def _bincount(idx: IntArr, weights: FloatArr, minlength: int) -> FloatArr:
    return np.asarray(np.bincount(idx, weights=weights, minlength=minlength), dtype=np.float64)


def _vdot(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """Σ a·b. ``np.vdot``: ``np.dot`` on long vectors can go through a threaded BLAS that is
    slow on a shared 2-core machine."""
    return float(np.multiply(a, b).sum())


def _logaddexp(a: FloatArr | float, b: FloatArr) -> FloatArr:
    """log(e^a + e^b), ~4× faster than ``np.logaddexp``; a or b may be −inf (not both)."""
    hi = np.maximum(a, b)
    return np.asarray(hi + np.log1p(np.exp(-np.abs(np.subtract(a, b)))))


def _hyp2f1(a: Any, b: Any, c: Any, z: Any) -> FloatArr:
    """``scipy.special.hyp2f1`` with a series fallback where it returns NaN/inf.

    scipy gives NaN in some corners (e.g. ₂F₁(0.4, 2; 502.4; 0.94)) where the Gauss series
    still converges fast because c is large; every ₂F₁ here has c > 0 and 0 ≤ z < 1.
    """
    out = np.asarray(special.hyp2f1(a, b, c, z), dtype=np.float64)
    bad = ~np.isfinite(out)
    if not bad.any():
        return out
    a_, b_, c_, z_ = (np.broadcast_to(v, out.shape)[bad].astype(np.float64) for v in (a, b, c, z))
    total = np.ones(a_.size)
    term = np.ones(a_.size)
    for k in range(100_000):
        term = term * (a_ + k) * (b_ + k) / ((c_ + k) * (k + 1)) * z_
        total += term
        if np.all(np.abs(term) <= 1e-17 * np.abs(total)):
            break
    out = out.copy()
    out[bad] = total
    return out


def _log1mexp(u: FloatArr) -> FloatArr:
    """log(1 − e^u) for u ≤ 0 (−inf at u = 0), accurate everywhere (Mächler 2012)."""
    u = np.minimum(u, 0.0)
    out = np.full(u.shape, -np.inf)
    near = (u > -np.log(2.0)) & (u < 0)
    far = u <= -np.log(2.0)
    out[near] = np.log(-np.expm1(u[near]))
    out[far] = np.log1p(-np.exp(u[far]))
    return out


def _minimize(
    fun: Callable[[FloatArr], tuple[float, FloatArr]],
    theta0: FloatArr,
    maxiter: int,
    ftol: float,
    gtol: float,
) -> Any:
    bounds = [(-LOG_BOUND, LOG_BOUND)] * theta0.size
    with np.errstate(all="ignore"):
        return optimize.minimize(
            fun,
            np.clip(theta0, -LOG_BOUND, LOG_BOUND),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": maxiter, "ftol": ftol, "gtol": gtol, "maxcor": 20},
        )


def _objective(
    loglik: Callable[[FloatArr, bool], tuple[FloatArr, FloatArr]], total: float
) -> Callable[[FloatArr], tuple[float, FloatArr]]:
    """−mean log-likelihood and its gradient in log-parameters; +inf where not finite."""

    def fun(theta: FloatArr) -> tuple[float, FloatArr]:
        params = np.exp(theta)
        ll, grad = loglik(params, True)
        value = float(ll) / total
        g = -grad * params / total
        if not np.isfinite(value) or not np.isfinite(g).all():
            return np.inf, np.zeros_like(theta)
        return -value, g

    return fun


def _hessian_se(
    loglik_grad: Callable[[FloatArr], FloatArr], params: FloatArr
) -> tuple[FloatArr, FloatArr, bool]:
    """Covariance and standard errors (natural scale) from a numerical Hessian in log θ."""
    theta = np.log(params)
    k = theta.size
    hess = np.empty((k, k))
    for j in range(k):
        h = 1e-4
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        g_up = loglik_grad(np.exp(up)) * np.exp(up)
        g_down = loglik_grad(np.exp(down)) * np.exp(down)
        hess[:, j] = (g_up - g_down) / (2 * h)
    hess = (hess + hess.T) / 2
    nan = np.full(k, np.nan)
    if not np.isfinite(hess).all():
        return np.full((k, k), np.nan), nan, False
    try:
        np.linalg.cholesky(-hess)
    except np.linalg.LinAlgError:
        return np.full((k, k), np.nan), nan, False
    cov_log = np.linalg.inv(-hess)
    jac = np.diag(params)
    cov = jac @ cov_log @ jac  # delta method: θ = log p
    return cov, np.sqrt(np.diag(cov)), True


# --------------------------------------------------------------------------- base


class _Model:
    """Parameters, standard errors and the fitting loop shared by all models."""

    names: ClassVar[tuple[str, ...]]

    def __init__(self, *values: float) -> None:
        if len(values) != len(self.names):
            raise TypeError(f"{type(self).__name__} takes {len(self.names)} parameters")
        if not all(np.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"parameters must be positive and finite: {values}")
        self.values: FloatArr = np.asarray(values, dtype=np.float64)
        self.standard_errors: FloatArr = np.full(len(values), np.nan)
        self.covariance: FloatArr = np.full((len(values), len(values)), np.nan)
        self.diagnostics: FitDiagnostics | None = None

    @property
    def params(self) -> dict[str, float]:
        return dict(zip(self.names, (float(v) for v in self.values), strict=True))

    @property
    def se(self) -> dict[str, float]:
        return dict(zip(self.names, (float(v) for v in self.standard_errors), strict=True))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v:.6g}" for k, v in self.params.items())
        return f"{type(self).__name__}({inner})"

    @classmethod
    def _run_fit(
        cls,
        make_loglik: Callable[[Any], Callable[[FloatArr, bool], tuple[FloatArr, FloatArr]]],
        full: Any,
        sample: Any | None,
        customers: float,
        sample_customers: float,
        patterns: int,
        starts: Sequence[Sequence[float]],
        maxiter: int,
        started: float,
    ) -> Self:
        full_ll = make_loglik(full)

        def total(p: FloatArr) -> float:
            with np.errstate(all="ignore"):
                return float(full_ll(p, False)[0])

        # 1. every start on the sample (or on everything when it is small)
        pool = []
        if sample is not None:
            fun = _objective(make_loglik(sample), sample_customers)
            for s in starts:
                res = _minimize(fun, np.log(np.asarray(s, dtype=np.float64)), 200, 1e-10, 1e-6)
                pool.append((float(res.fun), np.exp(res.x), np.asarray(s, dtype=np.float64)))
        else:
            pool = [
                (0.0, np.asarray(s, dtype=np.float64), np.asarray(s, dtype=np.float64))
                for s in starts
            ]
        pool.sort(key=lambda item: item[0] if np.isfinite(item[0]) else np.inf)

        # 2. polish on all customers; in small data every start is a full fit
        fun = _objective(full_ll, customers)
        best: tuple[float, Any, FloatArr] | None = None
        tried = 0
        for _, init, origin in pool:
            tried += 1
            res = _minimize(fun, np.log(init), maxiter, 1e-13, 1e-9)
            if np.isfinite(res.fun) and (best is None or res.fun < best[0]):
                best = (float(res.fun), res, origin)
            if sample is not None and best is not None and _ok(best[1]):
                break  # the best sample start converged on the full data
        if best is None:
            raise ConvergenceError(
                f"{cls.__name__}: the likelihood is not finite at any of "
                f"{len(starts)} starting points"
            )
        res, origin = best[1], best[2]
        params = np.exp(res.x)
        model = cls(*params)
        model.covariance, model.standard_errors, hess_ok = _hessian_se(
            lambda p: full_ll(p, True)[1], params
        )
        grad_norm = float(np.max(np.abs(res.jac))) if res.jac is not None else np.nan
        at_bound = tuple(
            n for n, th in zip(cls.names, res.x, strict=True) if abs(th) >= LOG_BOUND - 1e-6
        )
        message = str(res.message)
        if at_bound:
            message += f"; at bound: {', '.join(at_bound)}"
        if not hess_ok:
            message += (
                "; Hessian not negative definite: parameters not identified by the data"
                " (standard errors are NaN)"
            )
        model.diagnostics = FitDiagnostics(
            converged=_ok(res) and not at_bound and hess_ok,
            message=message,
            iterations=int(res.nit),
            evaluations=int(res.nfev),
            gradient_norm=grad_norm,
            log_likelihood=total(params),
            customers=round(customers),
            patterns=patterns,
            seconds=time.perf_counter() - started,
            start=tuple(float(v) for v in origin),
            starts_tried=tried,
            hessian_ok=hess_ok,
            at_bound=at_bound,
        )
        return model


def _ok(res: Any) -> bool:
    """Converged: scipy says so, or the line search stalled at a stationary point."""
    if not np.isfinite(res.fun):
        return False
    grad = float(np.max(np.abs(res.jac))) if res.jac is not None else np.inf
    return bool(res.success) or grad < 1e-6


class _CountModel(_Model):
    """A purchase-count model fitted on (x, t_x, T)."""

    @classmethod
    def _prepare(cls, pat: Patterns) -> Any:
        return _Index.build(pat)

    @classmethod
    def _loglik(cls, params: FloatArr, data: Any, grad: bool) -> tuple[FloatArr, FloatArr]:
        """(per-pattern log-likelihood, gradient of the weighted total in natural params)."""
        raise NotImplementedError

    @classmethod
    def _default_starts(cls, pat: Patterns) -> list[list[float]]:
        raise NotImplementedError

    @classmethod
    def fit(
        cls,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
        *,
        starts: Sequence[Sequence[float]] | None = None,
        maxiter: int = 1000,
        seed: int = 0,
    ) -> Self:
        """Maximum-likelihood fit; see the module docstring for the procedure."""
        started = time.perf_counter()
        pat = compress(frequency, recency, T, weights)
        return cls.fit_patterns(pat, starts=starts, maxiter=maxiter, seed=seed, started=started)

    @classmethod
    def fit_patterns(
        cls,
        pat: Patterns,
        *,
        starts: Sequence[Sequence[float]] | None = None,
        maxiter: int = 1000,
        seed: int = 0,
        started: float | None = None,
    ) -> Self:
        started = time.perf_counter() if started is None else started
        full = cls._prepare(pat)
        sample = None
        sample_customers = pat.customers
        if pat.customers > 2 * SAMPLE_CUSTOMERS and pat.x.size > SAMPLE_CUSTOMERS // 2:
            sub = pat.sample(SAMPLE_CUSTOMERS, np.random.default_rng(seed))
            sample, sample_customers = cls._prepare(sub), sub.customers

        def make(data: Any) -> Callable[[FloatArr, bool], tuple[FloatArr, FloatArr]]:
            n = data.pat.n

            def loglik(params: FloatArr, grad: bool) -> tuple[FloatArr, FloatArr]:
                rows, g = cls._loglik(params, data, grad)
                return np.asarray(_vdot(n, rows)), g

            return loglik

        return cls._run_fit(
            make,
            full,
            sample,
            pat.customers,
            sample_customers,
            int(pat.x.size),
            starts if starts is not None else cls._default_starts(pat),
            maxiter,
            started,
        )

    def log_likelihood(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArr:
        """Per-customer log-likelihood of (x, t_x, T) under the parameters."""
        x, t, age = _check_summary(frequency, recency, T)
        pat = Patterns(x, t, age, np.ones(x.size))
        with np.errstate(all="ignore"):
            return self._loglik(self.values, self._prepare(pat), False)[0]

    def total_log_likelihood(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> float:
        pat = compress(frequency, recency, T, weights)
        with np.errstate(all="ignore"):
            rows = self._loglik(self.values, self._prepare(pat), False)[0]
        return _vdot(pat.n, rows)

    def gradient(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> tuple[float, FloatArr]:
        """Total log-likelihood and its analytic gradient in the natural parameters."""
        pat = compress(frequency, recency, T)
        rows, g = self._loglik(self.values, self._prepare(pat), True)
        return _vdot(pat.n, rows), g


def _rate_scale(pat: Patterns) -> float:
    """Mean time per repeat purchase: a data-informed scale for α (and β)."""
    purchases = _vdot(pat.n, pat.x)
    exposure = _vdot(pat.n, pat.T)
    return max(exposure / max(purchases, 1.0), 1e-3)


# --------------------------------------------------------------------------- BG/NBD


class BetaGeo(_CountModel):
    r"""BG/NBD (Fader, Hardie & Lee 2005).

    While alive a customer buys as a Poisson process with rate λ ~ Gamma(r, rate α); after
    each repeat purchase they leave for good with probability p ~ Beta(a, b). Per customer

    .. math::
        L = \frac{B(a, b+x)}{B(a, b)} \frac{\Gamma(r+x)\,\alpha^r}{\Gamma(r)}
            \left[(\alpha+T)^{-(r+x)} + \delta_{x>0}\frac{a}{b+x-1}(\alpha+t_x)^{-(r+x)}\right]

    computed as ``gammaln``/``betaln`` terms plus a ``logaddexp`` of the bracket's two logs.
    """

    names = ("r", "alpha", "a", "b")
    modified: ClassVar[bool] = False  # MBG/NBD: may also leave at time 0

    @property
    def r(self) -> float:
        return float(self.values[0])

    @property
    def alpha(self) -> float:
        return float(self.values[1])

    @property
    def a(self) -> float:
        return float(self.values[2])

    @property
    def b(self) -> float:
        return float(self.values[3])

    @classmethod
    def _default_starts(cls, pat: Patterns) -> list[list[float]]:
        scale = _rate_scale(pat)
        return [
            [1.0, scale, 1.0, 3.0],
            [0.3, 0.3 * scale, 0.5, 1.5],
            [3.0, 3.0 * scale, 3.0, 10.0],
            [1.0, 1.0, 1.0, 1.0],  # lifetimes' default start
        ]

    @classmethod
    def _loglik(cls, params: FloatArr, data: Any, grad: bool) -> tuple[FloatArr, FloatArr]:
        d: _Index = data
        r, alpha, a, b = (float(v) for v in params)
        ux = d.ux
        shift = 1.0 if cls.modified else 0.0  # MBG/NBD has x+1 dropout opportunities
        bx = b + ux + shift - 1.0  # denominator of a/(b+x-1) (BG) or a/(b+x) (MBG)
        has = ux > 0 if not cls.modified else np.ones(ux.size, dtype=bool)
        c4 = np.full(ux.size, -np.inf)
        c4[has] = np.log(a) - np.log(bx[has])
        const_x = (
            special.gammaln(r + ux)
            - special.gammaln(r)
            + r * np.log(alpha)
            + special.betaln(a, b + ux + shift)
            - special.betaln(a, b)
        )
        lT = np.log(alpha + d.uT)
        lt = np.log(alpha + d.ut)
        pat = d.pat
        rx = r + pat.x
        lT_row = lT[d.iT]
        diff = lt[d.it] - lT_row  # ≤ 0
        D = c4[d.ix] - rx * diff  # log of (second bracket term / first)
        rows = const_x[d.ix] - rx * lT_row + _logaddexp(0.0, D)
        if not grad:
            return rows, np.zeros(4)
        n = pat.n
        w = special.expit(D)  # share of the "dropped out at t_x" term
        nw = n * w
        psi = special.digamma
        g_r = _vdot(d.n_x, psi(r + ux) - psi(r)) + pat.customers * np.log(alpha)
        g_r -= _vdot(n, lT_row) + _vdot(nw, diff)
        inv_T = 1.0 / (alpha + d.uT)
        inv_t = 1.0 / (alpha + d.ut)
        g_alpha = pat.customers * r / alpha - _vdot(n * rx, inv_T[d.iT])
        g_alpha -= _vdot(nw * rx, inv_t[d.it] - inv_T[d.iT])
        nw_x = _bincount(d.ix, weights=nw, minlength=ux.size)
        dA2_a = psi(a + b) - psi(a + b + ux + shift)
        dA2_b = psi(b + ux + shift) - psi(a + b + ux + shift) - psi(b) + psi(a + b)
        g_a = _vdot(d.n_x, dA2_a) + float(nw_x.sum()) / a
        inv_bx = np.zeros(ux.size)
        inv_bx[has] = 1.0 / bx[has]
        g_b = _vdot(d.n_x, dA2_b) - _vdot(nw_x, inv_bx)
        return rows, np.array([g_r, g_alpha, g_a, g_b])

    # -- predictions -------------------------------------------------------------------

    def _odds_dropped(self, x: FloatArr, t: FloatArr, age: FloatArr) -> FloatArr:
        """log of P(dropped at t_x) / P(alive) for each customer (−inf when x = 0 in BG/NBD)."""
        r, alpha, a, b = self.values
        bx = b + x - (0.0 if self.modified else 1.0)
        out = np.full(x.shape, -np.inf)
        has = np.ones(x.shape, dtype=bool) if self.modified else x > 0
        out[has] = (
            np.log(a)
            - np.log(bx[has])
            + (r + x[has]) * (np.log(alpha + age[has]) - np.log(alpha + t[has]))
        )
        return out

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArr:
        """P(alive at T | x, t_x, T) = 1 / (1 + δ a/(b+x−1) ((α+T)/(α+t_x))^(r+x))."""
        x, t, age = _check_summary(frequency, recency, T)
        return np.asarray(special.expit(-self._odds_dropped(x, t, age)))

    def _a_minus_1(self) -> float:
        a1 = float(self.values[2]) - 1.0
        return a1 if abs(a1) > 1e-9 else 1e-9  # removable singularity at a = 1

    def expected_purchases(self, t: ArrayLike) -> FloatArr:
        """E[X(t)]: expected repeat purchases in (0, t] of a new customer.

        BG/NBD: (a+b−1)/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b; a+b−1; t/(α+t))], evaluated after
        Euler's transformation as 1 − (1−z)^(a−1) ₂F₁(a+b−1−r, a−1; a+b−1; z) (no overflow).
        """
        r, alpha, a, b = self.values
        tt = np.asarray(t, dtype=np.float64)
        z = tt / (alpha + tt)
        am1 = self._a_minus_1()
        if self.modified:
            c = a + b
            lead = b / am1
            g = _hyp2f1(a + b - r, am1, c, z)
        else:
            c = a + b - 1
            lead = (a + b - 1) / am1
            g = _hyp2f1(a + b - 1 - r, am1, c, z)
        return np.asarray(lead * -np.expm1(am1 * np.log1p(-z) + np.log(g)))

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArr:
        """E[Y(t) | x, t_x, T]: expected repeat purchases in (T, T+t] (FHL 2005 eq. 10)."""
        x, tx, age = _check_summary(frequency, recency, T)
        r, alpha, a, b = self.values
        tt = np.asarray(t, dtype=np.float64)
        z = tt / (alpha + age + tt)
        am1 = self._a_minus_1()
        if self.modified:
            lead = (a + b + x) / am1
            g = _hyp2f1(a + b - r, am1, a + b + x, z)
        else:
            lead = (a + b + x - 1) / am1
            g = _hyp2f1(a + b - 1 - r, am1, a + b + x - 1, z)
        bracket = -np.expm1(am1 * np.log1p(-z) + np.log(g))
        return np.asarray(lead * bracket * special.expit(-self._odds_dropped(x, tx, age)))


class ModifiedBetaGeo(BetaGeo):
    r"""MBG/NBD (Batislam et al. 2007; Wagner & Hoppe 2008).

    As :class:`BetaGeo`, but the customer can also leave right after the first purchase, so
    x+1 dropout opportunities and no δ:

    .. math::
        L = \frac{B(a, b+x+1)}{B(a, b)} \frac{\Gamma(r+x)\,\alpha^r}{\Gamma(r)}
            \left[(\alpha+T)^{-(r+x)} + \frac{a}{b+x}(\alpha+t_x)^{-(r+x)}\right]
    """

    modified = True


# --------------------------------------------------------------------------- Pareto/NBD


@dataclass(frozen=True)
class _ParetoIndex:
    base: _Index
    pair_x: FloatArr  # unique (x, τ) pairs, τ ∈ {t_x} ∪ {T}
    pair_tau: FloatArr
    p_t: IntArr  # each pattern's (x, t_x) pair
    p_T: IntArr  # each pattern's (x, T) pair

    @property
    def pat(self) -> Patterns:
        return self.base.pat


def _pareto_log_tail(
    r: float, alpha: float, s: float, beta: float, x: FloatArr, tau: FloatArr, grad: bool
) -> tuple[FloatArr, FloatArr]:
    r"""log F(τ) with F(τ) = ∫_τ^∞ (α+u)^{-(r+x)} (β+u)^{-(s+1)} du, and ∂/∂(r, α, s, β).

    With A = max(α, β) carrying exponent p_A and B = min(α, β) carrying p_B,

    .. math::
        F(τ) = \frac{(A+τ)^{-p_A} (B+τ)^{1-p_B}}{p_A+p_B-1}\,
               {}_2F_1\!\left(1, p_A; p_A+p_B; \frac{A-B}{A+τ}\right)

    which is Fader-Hardie's eq. (19)/(20) after Euler's transformation: the ₂F₁ now has
    first parameter 1, argument in [0, 1) and stays in [1, (p_A+p_B−1)/(p_B−1)] for
    α ≥ β, so nothing overflows for any x. The Pareto/NBD's second likelihood term is
    s·(F(t_x) − F(T)).

    The ₂F₁'s parameter partials have no closed form: they are central differences of
    log ₂F₁ (relative step 1e-5, error ~1e-10); ∂/∂z is the closed form
    (b/c)·₂F₁(2, b+1; c+1; z).
    """
    if alpha >= beta:
        big, small = alpha, beta
        p_a, p_b = r + x, np.full(x.shape, s + 1.0)
    else:
        big, small = beta, alpha
        p_a, p_b = np.full(x.shape, s + 1.0), r + x
    c = p_a + p_b
    z = (big - small) / (big + tau)
    log_big, log_small = np.log(big + tau), np.log(small + tau)
    h = _hyp2f1(1.0, p_a, c, z)
    log_h = np.log(h)
    lf = -p_a * log_big - (p_b - 1.0) * log_small + log_h - np.log(c - 1.0)
    if not grad:
        return lf, np.zeros((x.size, 4))
    step_a = 1e-5 * (1.0 + p_a)
    step_b = 1e-5 * (1.0 + p_b)
    dh_a = (
        np.log(_hyp2f1(1.0, p_a + step_a, c + step_a, z))
        - np.log(_hyp2f1(1.0, p_a - step_a, c - step_a, z))
    ) / (2 * step_a)
    dh_b = (np.log(_hyp2f1(1.0, p_a, c + step_b, z)) - np.log(_hyp2f1(1.0, p_a, c - step_b, z))) / (
        2 * step_b
    )
    dh_z = (p_a / c) * _hyp2f1(2.0, p_a + 1.0, c + 1.0, z) / h
    d_pa = -log_big + dh_a - 1.0 / (c - 1.0)
    d_pb = -log_small + dh_b - 1.0 / (c - 1.0)
    d_big = -p_a / (big + tau) + dh_z * (small + tau) / (big + tau) ** 2
    d_small = -(p_b - 1.0) / (small + tau) - dh_z / (big + tau)
    out = np.empty((x.size, 4))
    if alpha >= beta:
        out[:, 0], out[:, 1], out[:, 2], out[:, 3] = d_pa, d_big, d_pb, d_small
    else:
        out[:, 0], out[:, 1], out[:, 2], out[:, 3] = d_pb, d_small, d_pa, d_big
    return lf, out


class ParetoNBD(_CountModel):
    r"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987).

    Purchases are Poisson(λ), λ ~ Gamma(r, rate α), during an exponential lifetime with rate
    μ ~ Gamma(s, rate β). Following Fader & Hardie's 2005 note, eq. (18),

    .. math::
        L = \frac{\Gamma(r+x)\,\alpha^r\beta^s}{\Gamma(r)}\left[
            (\alpha+T)^{-(r+x)}(\beta+T)^{-s} + s\,\bigl(F(t_x) - F(T)\bigr)\right]

    with F from :func:`_pareto_log_tail` (the hyp2f1 branch for α ≥ β / α < β), all in log
    space: log(F(t_x) − F(T)) = log F(t_x) + log1mexp(log F(T) − log F(t_x)).

    The gradient is analytic except for the partials of log ₂F₁ with respect to its
    parameters (no closed form exists), which are central differences of the exact function.
    They are taken on the unique (x, τ) pairs only, so they cost little.
    """

    names = ("r", "alpha", "s", "beta")

    @property
    def r(self) -> float:
        return float(self.values[0])

    @property
    def alpha(self) -> float:
        return float(self.values[1])

    @property
    def s(self) -> float:
        return float(self.values[2])

    @property
    def beta(self) -> float:
        return float(self.values[3])

    @classmethod
    def _prepare(cls, pat: Patterns) -> _ParetoIndex:
        base = _Index.build(pat)
        utau = np.union1d(base.ut, base.uT)
        code_t = np.searchsorted(utau, base.ut)[base.it]
        code_T = np.searchsorted(utau, base.uT)[base.iT]
        m = utau.size
        keys = np.concatenate((base.ix * m + code_t, base.ix * m + code_T))
        uniq, inverse = np.unique(keys, return_inverse=True)
        inverse = inverse.ravel()
        k = pat.x.size
        return _ParetoIndex(
            base=base,
            pair_x=base.ux[uniq // m],
            pair_tau=utau[uniq % m],
            p_t=inverse[:k],
            p_T=inverse[k:],
        )

    @classmethod
    def _default_starts(cls, pat: Patterns) -> list[list[float]]:
        scale = _rate_scale(pat)
        age = _vdot(pat.n, pat.T) / float(pat.n.sum())
        return [
            [1.0, scale, 1.0, max(age, 1e-3)],
            [0.5, 0.5 * scale, 0.5, max(0.5 * age, 1e-3)],
            [2.0, 2.0 * scale, 2.0, max(4.0 * age, 1e-3)],
            [1.0, 1.0, 1.0, 1.0],  # lifetimes' default start
        ]

    @classmethod
    def _terms(
        cls, params: FloatArr, d: _ParetoIndex, grad: bool
    ) -> tuple[FloatArr, FloatArr, FloatArr, FloatArr, FloatArr, FloatArr]:
        r, alpha, s, beta = (float(v) for v in params)
        b = d.base
        lf, dlf = _pareto_log_tail(r, alpha, s, beta, d.pair_x, d.pair_tau, grad)
        lf_t, lf_T = lf[d.p_t], lf[d.p_T]
        u = np.minimum(lf_T - lf_t, 0.0)  # F(T) ≤ F(t_x)
        log_second = np.log(s) + lf_t + _log1mexp(u)
        la_T, lb_T = np.log(alpha + b.uT), np.log(beta + b.uT)
        x = d.pat.x
        log_first = -(r + x) * la_T[b.iT] - s * lb_T[b.iT]
        return log_first, log_second, u, dlf, la_T, lb_T

    @classmethod
    def _loglik(cls, params: FloatArr, data: Any, grad: bool) -> tuple[FloatArr, FloatArr]:
        d: _ParetoIndex = data
        b = d.base
        r, alpha, s, beta = (float(v) for v in params)
        log_first, log_second, u, dlf, la_T, lb_T = cls._terms(params, d, grad)
        const_x = special.gammaln(r + b.ux) - special.gammaln(r)
        const = r * np.log(alpha) + s * np.log(beta)
        rows = const_x[b.ix] + const + _logaddexp(log_first, log_second)
        if not grad:
            return rows, np.zeros(4)
        pat = d.pat
        n, x = pat.n, pat.x
        w2 = special.expit(log_second - log_first)  # share of "left between t_x and T"
        nw1 = n * (1.0 - w2)
        nw2 = n * w2
        psi = special.digamma
        g = np.zeros(4)
        g[0] = _vdot(b.n_x, psi(r + b.ux) - psi(r)) + pat.customers * np.log(alpha)
        g[1] = pat.customers * r / alpha
        g[2] = pat.customers * np.log(beta) + float(nw2.sum()) / s
        g[3] = pat.customers * s / beta
        # first term: −(r+x) log(α+T) − s log(β+T)
        w1_T = _bincount(b.iT, weights=nw1, minlength=b.uT.size)
        w1x_T = _bincount(b.iT, weights=nw1 * x, minlength=b.uT.size)
        g[0] -= _vdot(w1_T, la_T)
        g[1] -= _vdot(r * w1_T + w1x_T, 1.0 / (alpha + b.uT))
        g[2] -= _vdot(w1_T, lb_T)
        g[3] -= _vdot(s * w1_T, 1.0 / (beta + b.uT))
        # second term: ∂ log(F_t − F_T) = (∂lF_t − q ∂lF_T) / (1 − q), q = F_T / F_t
        live = np.isfinite(log_second) & (nw2 > 0)
        q = np.exp(u[live])
        one_minus_q = -np.expm1(u[live])
        coef_t = nw2[live] / one_minus_q
        coef_T = -nw2[live] * q / one_minus_q
        m = d.pair_x.size
        weights = _bincount(d.p_t[live], weights=coef_t, minlength=m) + _bincount(
            d.p_T[live], weights=coef_T, minlength=m
        )
        g += (weights[:, None] * dlf).sum(axis=0)
        return rows, g

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArr:
        """P(alive at T | x, t_x, T) = first term / (first + s·(F(t_x) − F(T))) (eq. 34)."""
        x, t, age = _check_summary(frequency, recency, T)
        d = self._prepare(Patterns(x, t, age, np.ones(x.size)))
        with np.errstate(divide="ignore"):
            log_first, log_second, *_ = self._terms(self.values, d, False)
        return np.asarray(special.expit(log_first - log_second))

    def expected_purchases(self, t: ArrayLike) -> FloatArr:
        """E[X(t)] = rβ/(α(s−1)) · [1 − (β/(β+t))^(s−1)] (eq. 27; limit log at s = 1)."""
        r, alpha, s, beta = self.values
        tt = np.asarray(t, dtype=np.float64)
        return np.asarray(r / alpha * beta * _pow_m1_over(np.log1p(tt / beta), s - 1.0))

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArr:
        """E[Y(t) | x, t_x, T] (eq. 41).

        = P(alive) · (r+x)(β+T)/(α+T) · [1 − ((β+T)/(β+T+t))^(s−1)]/(s−1).
        """
        x, tx, age = _check_summary(frequency, recency, T)
        r, alpha, s, beta = self.values
        tt = np.asarray(t, dtype=np.float64)
        alive = self.probability_alive(x, tx, age)
        horizon = _pow_m1_over(np.log1p(tt / (beta + age)), s - 1.0)
        return np.asarray(alive * (r + x) * (beta + age) / (alpha + age) * horizon)


def _pow_m1_over(log_ratio: FloatArr, e: float) -> FloatArr:
    """[1 − exp(−e·L)] / e for L = log((β+T+t)/(β+T)) ≥ 0, → L as e → 0."""
    if abs(e) < 1e-10:
        return np.asarray(log_ratio, dtype=np.float64)
    return np.asarray(-np.expm1(-e * log_ratio) / e)


# --------------------------------------------------------------------------- Gamma-Gamma


@dataclass(frozen=True)
class _SpendData:
    ux: FloatArr  # unique x
    n_x: FloatArr  # weight per unique x
    x: FloatArr  # rows (x > 0 only)
    xm: FloatArr  # x · mean spend
    n: FloatArr
    sum_n_x_logm: float  # Σ n x log m
    sum_n_logm: float  # Σ n log m
    sum_n_x_logx: float  # Σ n x log x
    customers: float


class GammaGamma(_Model):
    r"""Gamma-Gamma spend model (Fader, Hardie & Lee 2005; Hardie's 2013 note).

    A customer's transaction values are Gamma(p, rate ν) with ν ~ Gamma(q, rate v); the
    mean m of x values has likelihood

    .. math::
        L = \frac{\Gamma(px+q)}{\Gamma(px)\Gamma(q)}
            \frac{v^q\, m^{px-1} x^{px}}{(v + m x)^{px+q}}

    Fitted on customers with at least one repeat purchase (x > 0, m > 0). Assumes spend is
    independent of the purchase process.
    """

    names = ("p", "q", "v")

    @property
    def p(self) -> float:
        return float(self.values[0])

    @property
    def q(self) -> float:
        return float(self.values[1])

    @property
    def v(self) -> float:
        return float(self.values[2])

    @staticmethod
    def _prepare_spend(x: FloatArr, m: FloatArr, n: FloatArr) -> _SpendData:
        ux, ix = np.unique(x, return_inverse=True)
        n_x = _bincount(ix.ravel(), weights=n, minlength=ux.size)
        logm = np.log(m)
        return _SpendData(
            ux=ux,
            n_x=n_x,
            x=x,
            xm=x * m,
            n=n,
            sum_n_x_logm=_vdot(n * x, logm),
            sum_n_logm=_vdot(n, logm),
            sum_n_x_logx=_vdot(n * x, np.log(x)),
            customers=float(n.sum()),
        )

    @staticmethod
    def _loglik_total(params: FloatArr, d: _SpendData, grad: bool) -> tuple[FloatArr, FloatArr]:
        p, q, v = (float(val) for val in params)
        px = p * d.ux
        per_x = special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q)
        log_den = np.log(v + d.xm)
        pxq = p * d.x + q
        total = (
            _vdot(d.n_x, per_x)
            + d.customers * q * np.log(v)
            + p * d.sum_n_x_logm
            - d.sum_n_logm
            + p * d.sum_n_x_logx
            - _vdot(d.n * pxq, log_den)
        )
        if not grad:
            return np.asarray(total), np.zeros(3)
        psi = special.digamma
        g_p = _vdot(d.n_x * d.ux, psi(px + q) - psi(px))
        g_p += d.sum_n_x_logm + d.sum_n_x_logx - _vdot(d.n * d.x, log_den)
        g_q = _vdot(d.n_x, psi(px + q) - psi(q)) + d.customers * np.log(v)
        g_q -= _vdot(d.n, log_den)
        g_v = d.customers * q / v - _vdot(d.n * pxq, 1.0 / (v + d.xm))
        return np.asarray(total), np.array([g_p, g_q, g_v])

    @staticmethod
    def _spend_rows(
        frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None
    ) -> tuple[FloatArr, FloatArr, FloatArr]:
        x = _as_float(frequency, "frequency")
        m = _as_float(monetary_value, "monetary_value")
        n = np.ones(x.size) if weights is None else _as_float(weights, "weights")
        if not (x.shape == m.shape == n.shape):
            raise ValueError("frequency, monetary_value and weights must have the same length")
        if (m < 0).any():
            raise ValueError("monetary_value must be non-negative")
        keep = (x > 0) & (m > 0) & (n > 0)
        if not keep.any():
            raise ValueError("no customer with a repeat purchase and positive spend")
        return x[keep], m[keep], n[keep]

    @classmethod
    def fit(
        cls,
        frequency: ArrayLike,
        monetary_value: ArrayLike,
        weights: ArrayLike | None = None,
        *,
        starts: Sequence[Sequence[float]] | None = None,
        maxiter: int = 1000,
    ) -> Self:
        """Maximum likelihood on the customers with x > 0 and m > 0."""
        started = time.perf_counter()
        x, m, n = cls._spend_rows(frequency, monetary_value, weights)
        data = cls._prepare_spend(x, m, n)
        mean = _vdot(n, m) / float(n.sum())
        if starts is None:
            starts = [[1.0, 1.0, 1.0], [5.0, 3.0, 2.0 * mean / 5.0], [2.0, 5.0, 4.0 * mean / 2.0]]

        def make(d: _SpendData) -> Callable[[FloatArr, bool], tuple[FloatArr, FloatArr]]:
            return lambda params, grad: cls._loglik_total(params, d, grad)

        return cls._run_fit(
            make, data, None, data.customers, data.customers, int(x.size), starts, maxiter, started
        )

    def log_likelihood(self, frequency: ArrayLike, monetary_value: ArrayLike) -> float:
        """Total log-likelihood of the customers with x > 0 and m > 0."""
        x, m, n = self._spend_rows(frequency, monetary_value, None)
        return float(self._loglik_total(self.values, self._prepare_spend(x, m, n), False)[0])

    def gradient(self, frequency: ArrayLike, monetary_value: ArrayLike) -> tuple[float, FloatArr]:
        x, m, n = self._spend_rows(frequency, monetary_value, None)
        total, g = self._loglik_total(self.values, self._prepare_spend(x, m, n), True)
        return float(total), g

    def mean_spend(self) -> float:
        """Population mean transaction value E[Z] = p·v/(q−1) (infinite for q ≤ 1)."""
        p, q, v = self.values
        return float(p * v / (q - 1.0)) if q > 1 else float("inf")

    def conditional_expected_average_profit(
        self, frequency: ArrayLike, monetary_value: ArrayLike
    ) -> FloatArr:
        """E[Z | x, m] = (p·v + p·x·m)/(p·x + q − 1): a weighted mean of the population mean
        p·v/(q−1) and the customer's own mean m (Fader-Hardie-Lee 2005, eq. 5)."""
        x = _as_float(frequency, "frequency")
        m = _as_float(monetary_value, "monetary_value")
        p, q, v = self.values
        return np.asarray(p * (v + x * m) / (p * x + q - 1.0))


# --------------------------------------------------------------------------- CLV


def customer_lifetime_value(
    model: BetaGeo | ParetoNBD,
    spend: GammaGamma,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    *,
    months: int = 12,
    discount_rate: float = 0.01,
    margin: float = 1.0,
    freq: str = "D",
) -> FloatArr:
    """Discounted expected profit over the next ``months`` months, per customer.

    As lifetimes' ``customer_lifetime_value``: for each month i = 1..months the expected
    purchases in that month (difference of the conditional cumulative expectation at
    i and i−1 months, in the summary's periods — 30 days, 4.345 weeks) times the expected
    spend per purchase times ``margin``, discounted by (1 + discount_rate)^i;
    ``discount_rate`` is per month.
    """
    if freq not in PERIODS_PER_MONTH:
        raise ValueError(f"freq must be one of {sorted(PERIODS_PER_MONTH)}")
    if months < 1 or discount_rate <= -1:
        raise ValueError("months must be ≥ 1 and discount_rate > −1")
    per_month = PERIODS_PER_MONTH[freq]
    value = spend.conditional_expected_average_profit(frequency, monetary_value) * margin
    clv = np.zeros(value.shape)
    previous = np.zeros(value.shape)
    for i in range(1, months + 1):
        cumulative = model.conditional_expected_purchases(i * per_month, frequency, recency, T)
        clv += value * (cumulative - previous) / (1.0 + discount_rate) ** i
        previous = cumulative
    return clv


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class HoldoutRow:
    bucket: str  # calibration frequency: "0", "1", …, "7+"
    customers: int
    actual: float  # mean holdout purchases per customer
    predicted: float


@dataclass(frozen=True)
class HoldoutReport:
    rows: tuple[HoldoutRow, ...]
    actual_total: float
    predicted_total: float
    duration: float  # holdout length in periods

    @property
    def total_error(self) -> float:
        """(predicted − actual) / actual over all customers."""
        return (self.predicted_total - self.actual_total) / max(self.actual_total, 1e-12)


def holdout_report(
    model: BetaGeo | ParetoNBD, data: CalibrationHoldout, top_bucket: int = 7
) -> HoldoutReport:
    """Predicted vs actual holdout purchases by calibration frequency 0, 1, …, ``top_bucket``+.

    The model should have been fitted on ``data.calibration``.
    """
    cal = data.calibration
    predicted = model.conditional_expected_purchases(
        data.duration_holdout, cal.frequency, cal.recency, cal.T
    )
    bucket = np.minimum(cal.frequency, top_bucket).astype(np.int64)
    count = np.bincount(bucket, minlength=top_bucket + 1)
    actual = _bincount(bucket, weights=data.frequency_holdout, minlength=top_bucket + 1)
    pred = _bincount(bucket, weights=predicted, minlength=top_bucket + 1)
    rows = tuple(
        HoldoutRow(
            bucket=f"{k}+" if k == top_bucket else str(k),
            customers=int(count[k]),
            actual=float(actual[k] / count[k]) if count[k] else 0.0,
            predicted=float(pred[k] / count[k]) if count[k] else 0.0,
        )
        for k in range(top_bucket + 1)
    )
    return HoldoutReport(
        rows=rows,
        actual_total=float(data.frequency_holdout.sum()),
        predicted_total=float(predicted.sum()),
        duration=data.duration_holdout,
    )
