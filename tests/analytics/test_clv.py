"""CLV models: published estimates, parameter recovery, numerics, predictions, the generator.

Pure and fast (numpy/scipy only, no database).
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate

from patron.analytics.clv import (
    BetaGeo,
    GammaGamma,
    ModifiedBetaGeo,
    ParetoNBD,
    calibration_and_holdout,
    compress,
    customer_lifetime_value,
    holdout_report,
    summary_from_transactions,
)
from patron.analytics.clv_simulate import (
    simulate_bgnbd,
    simulate_gamma_gamma,
    simulate_mbgnbd,
    simulate_pareto_nbd,
)

DATA = Path(__file__).parent / "data"
CountModel = type[BetaGeo] | type[ParetoNBD]


def load_cdnow() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 2,357-customer CDNOW summary (weeks) with mean repeat spend, as shipped by
    lifetimes (from Fader & Hardie's public CDNOW sample)."""
    with (DATA / "cdnow_customers_summary_with_transactions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return tuple(np.array([float(r[k]) for r in rows]) for k in ("x", "t_x", "T", "zbar"))  # type: ignore[return-value]


# --------------------------------------------------------------------------- published


@pytest.mark.parametrize(
    ("model", "published", "ll"),
    [
        # Fader, Hardie & Lee (2005), Marketing Science, table in section 4
        (BetaGeo, (0.243, 4.414, 0.793, 2.426), -9582.4),
        # Fader & Hardie's Pareto/NBD note / Excel workbook on the same data
        (ParetoNBD, (0.553, 10.578, 0.606, 11.669), -9595.0),
        # BTYDplus / lifetimes reference values for MBG/NBD on CDNOW
        (ModifiedBetaGeo, (0.525, 6.183, 0.891, 1.614), None),
    ],
)
def test_cdnow_published_estimates(
    model: CountModel, published: tuple[float, ...], ll: float | None
):
    x, t, T, _ = load_cdnow()
    fitted = model.fit(x, t, T)
    assert fitted.diagnostics is not None and fitted.diagnostics.converged
    # published to 3 decimals
    np.testing.assert_allclose(fitted.values, published, rtol=2e-3, atol=1e-3)
    if ll is not None:
        assert fitted.diagnostics.log_likelihood == pytest.approx(ll, abs=0.1)
    assert fitted.diagnostics.hessian_ok
    assert np.all(fitted.standard_errors > 0)


def test_cdnow_gamma_gamma_published():
    x, _, _, m = load_cdnow()
    fitted = GammaGamma.fit(x, m)
    # Fader, Hardie & Lee (2005) "RFM and CLV", on the 946 repeat buyers
    np.testing.assert_allclose(fitted.values, (6.25, 3.74, 15.44), rtol=3e-3)
    assert fitted.diagnostics is not None and fitted.diagnostics.customers == int((x > 0).sum())


# --------------------------------------------------------------------------- recovery


def _ages(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(10.0, 80.0, n)  # weeks, like a few cohorts of a young shop


@pytest.mark.parametrize(
    ("model", "simulate", "truth"),
    [
        (BetaGeo, simulate_bgnbd, (0.24, 4.41, 0.79, 2.43)),
        (ModifiedBetaGeo, simulate_mbgnbd, (0.5, 6.2, 0.9, 1.6)),
        (ParetoNBD, simulate_pareto_nbd, (0.55, 10.58, 0.61, 11.67)),
    ],
)
def test_recovers_simulated_parameters(model: CountModel, simulate, truth: tuple[float, ...]):
    """40,000 customers from the model's own process: every parameter within 20% and within
    4 standard errors of the truth (so the standard errors are not wildly small either)."""
    rng = np.random.default_rng(11)
    x, t, T = simulate(rng, _ages(rng, 40_000), *truth)
    fitted = model.fit(x, t, T)
    d = fitted.diagnostics
    assert d is not None and d.converged and d.gradient_norm < 1e-5, d
    np.testing.assert_allclose(fitted.values, truth, rtol=0.2)
    z = np.abs(fitted.values - np.asarray(truth)) / fitted.standard_errors
    assert np.all(z < 4), (fitted, fitted.se)


def test_gamma_gamma_recovers_simulated_parameters():
    rng = np.random.default_rng(5)
    x, _, _ = simulate_bgnbd(rng, _ages(rng, 60_000), 0.24, 4.41, 0.79, 2.43)
    m = simulate_gamma_gamma(rng, x, 6.25, 3.74, 15.44)
    fitted = GammaGamma.fit(x, m)
    np.testing.assert_allclose(fitted.values, (6.25, 3.74, 15.44), rtol=0.2)
    z = np.abs(fitted.values - np.array([6.25, 3.74, 15.44])) / fitted.standard_errors
    assert np.all(z < 4)
    assert fitted.mean_spend() == pytest.approx(6.25 * 15.44 / 2.74, rel=0.05)


def test_expected_purchases_match_simulation():
    """E[X(t)] of a new customer equals the simulated mean count (3 standard errors)."""
    rng = np.random.default_rng(2)
    cases = [
        (BetaGeo(0.24, 4.41, 0.79, 2.43), simulate_bgnbd),
        (ModifiedBetaGeo(0.5, 6.2, 0.9, 1.6), simulate_mbgnbd),
        (BetaGeo(0.8, 3.0, 2.5, 4.0), simulate_bgnbd),  # a > 1
        (ParetoNBD(0.55, 10.58, 0.61, 11.67), simulate_pareto_nbd),
        (ParetoNBD(0.9, 5.0, 1.0, 20.0), simulate_pareto_nbd),  # s = 1 limit
    ]
    for model, simulate in cases:
        horizon = 52.0
        x, _, _ = simulate(rng, np.full(200_000, horizon), *model.values)
        expected = float(model.expected_purchases(horizon))
        assert abs(x.mean() - expected) < 3 * x.std() / np.sqrt(x.size), (model, x.mean())


def test_conditional_expectation_matches_simulation():
    """E[Y(t) | x, t_x, T]: simulate a long history, cut it at T, and compare the model's
    prediction for (T, T+t] with what the same simulated customers then did — grouped by x."""
    rng = np.random.default_rng(8)
    model = BetaGeo(0.24, 4.41, 0.79, 2.43)
    n, age, horizon = 300_000, 39.0, 39.0
    # simulate to T + t, then read the calibration part from the full path
    lam = rng.gamma(model.r, 1 / model.alpha, n)
    p = rng.beta(model.a, model.b, n)
    gaps = rng.exponential(1.0, (n, 60)) / lam[:, None]
    times = np.cumsum(gaps, axis=1)
    dies_after = rng.geometric(p)  # leaves after this many repeat purchases
    alive_idx = np.arange(60)[None, :] < dies_after[:, None]
    cal = (times <= age) & alive_idx
    hold = (times > age) & (times <= age + horizon) & alive_idx
    x = cal.sum(axis=1).astype(float)
    t = np.where(x > 0, np.max(np.where(cal, times, 0.0), axis=1), 0.0)
    y = hold.sum(axis=1)
    pred = model.conditional_expected_purchases(horizon, x, t, np.full(n, age))
    for k in range(4):
        sel = x == k
        assert abs(y[sel].mean() - pred[sel].mean()) < 4 * y[sel].std() / np.sqrt(sel.sum()) + 1e-3


# --------------------------------------------------------------------------- numerics


PARAM_POINTS = {
    BetaGeo: [(0.24, 4.41, 0.79, 2.43), (2.0, 50.0, 3.0, 0.4)],
    ModifiedBetaGeo: [(0.5, 6.2, 0.9, 1.6), (1.5, 0.7, 0.2, 8.0)],
    ParetoNBD: [(0.55, 10.58, 0.61, 11.67), (0.55, 30.0, 0.61, 3.0), (2.0, 1.0, 0.3, 40.0)],
}


def _extreme_summary() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.array([0, 0, 1, 1, 1, 5, 50, 500, 500, 500, 200, 3, 0])
    T = np.array([0, 2000, 2000, 2000, 0.5, 10, 2000, 2000, 2000, 600, 2000, 1e-3, 1e-6])
    t = np.array([0, 0, 0, 2000, 0.5, 0, 1, 0, 2000, 599.9, 1000, 1e-3, 0])
    return x.astype(float), t, T


@pytest.mark.parametrize("model", [BetaGeo, ModifiedBetaGeo, ParetoNBD])
def test_no_nan_or_inf_for_extreme_inputs(model: CountModel):
    x, t, T = _extreme_summary()
    for params in PARAM_POINTS[model]:
        m = model(*params)
        for values in (
            m.log_likelihood(x, t, T),
            m.probability_alive(x, t, T),
            m.conditional_expected_purchases(52.0, x, t, T),
            m.conditional_expected_purchases(1e4, x, t, T),
            m.expected_purchases(np.array([0.0, 1.0, 1e4])),
        ):
            assert np.all(np.isfinite(values)), (params, values)
        total, grad = m.gradient(x, t, T)
        assert np.isfinite(total) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("model", [BetaGeo, ModifiedBetaGeo, ParetoNBD])
def test_gradient_matches_finite_differences(model: CountModel):
    rng = np.random.default_rng(3)
    for params in PARAM_POINTS[model]:
        x, t, T = simulate_bgnbd(rng, rng.uniform(1, 100, 400), 0.5, 5.0, 0.8, 2.0)
        x, t, T = np.append(x, [300, 0]), np.append(t, [80, 0]), np.append(T, [90, 1500])
        _, grad = model(*params).gradient(x, t, T)
        numeric = np.empty(4)
        for j in range(4):
            h = 1e-6 * params[j]
            up, down = np.array(params), np.array(params)
            up[j] += h
            down[j] -= h
            numeric[j] = (
                model(*up).total_log_likelihood(x, t, T)
                - model(*down).total_log_likelihood(x, t, T)
            ) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=2e-5, atol=1e-4 * np.abs(numeric).max())


def test_gamma_gamma_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    x = rng.integers(1, 40, 300).astype(float)
    m = rng.gamma(3.0, 20.0, 300)
    params = np.array([4.0, 2.5, 30.0])
    _, grad = GammaGamma(*params).gradient(x, m)
    for j in range(3):
        h = 1e-6 * params[j]
        up, down = params.copy(), params.copy()
        up[j] += h
        down[j] -= h
        numeric = (
            GammaGamma(*up).log_likelihood(x, m) - GammaGamma(*down).log_likelihood(x, m)
        ) / (2 * h)
        assert grad[j] == pytest.approx(numeric, rel=1e-5)


def test_pareto_likelihood_equals_its_defining_integral():
    """The hyp2f1 closed form (both branches) against direct quadrature of
    L = ∫∫ [λ^x e^{-(λ+μ)T} + λ^x μ ∫_{t_x}^T e^{-(λ+μ)τ} dτ] over the Gamma mixings,
    after integrating λ and μ out analytically:
    Γ(r+x)α^r β^s/Γ(r) [(α+T)^{-(r+x)}(β+T)^{-s} + s ∫_{t_x}^T (α+u)^{-(r+x)} (β+u)^{-(s+1)} du]."""
    from scipy.special import gammaln

    for r, alpha, s, beta in [(0.55, 10.58, 0.61, 11.67), (0.55, 30.0, 0.61, 3.0)]:
        model = ParetoNBD(r, alpha, s, beta)
        for x, t, T in [(0, 0, 38.9), (2, 30.4, 38.9), (7, 5.0, 60.0), (40, 20.0, 21.0)]:
            const = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
            first = (alpha + T) ** -(r + x) * (beta + T) ** -s
            integral, _ = integrate.quad(
                lambda u, x=x, p=(r, alpha, s, beta): (
                    (p[1] + u) ** -(p[0] + x) * (p[3] + u) ** -(p[2] + 1)
                ),
                t,
                T,
                epsrel=1e-12,
            )
            expected = const + np.log(first + s * integral)
            got = model.log_likelihood([x], [t], [T])[0]
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("model", [BetaGeo, ModifiedBetaGeo, ParetoNBD])
def test_probability_alive_properties(model: CountModel):
    for params in PARAM_POINTS[model]:
        m = model(*params)
        x, t, T = _extreme_summary()
        alive = m.probability_alive(x, t, T)
        assert np.all((alive >= 0) & (alive <= 1))
        # a longer silence since the last purchase means less likely alive
        recency = np.linspace(0, 100, 21)
        for freq in (1, 4, 20):
            p = m.probability_alive(np.full(21, freq), recency, np.full(21, 100.0))
            assert np.all(np.diff(p) > 0), (params, freq, p)
    if model is BetaGeo:
        # no repeat purchase, no chance yet to drop out
        assert np.all(
            BetaGeo(0.24, 4.41, 0.79, 2.43).probability_alive([0, 0], [0, 0], [5, 900]) == 1
        )


def test_compressed_fit_equals_uncompressed_likelihood():
    rng = np.random.default_rng(9)
    x, t, T = simulate_bgnbd(rng, rng.integers(1, 60, 5000).astype(float), 0.5, 8.0, 0.8, 2.0)
    t = np.floor(t)
    pat = compress(x, t, T)
    assert pat.x.size < x.size / 2 and pat.customers == x.size
    model = BetaGeo(0.5, 8.0, 0.8, 2.0)
    assert model.total_log_likelihood(x, t, T) == pytest.approx(
        model.log_likelihood(x, t, T).sum(), rel=1e-12
    )


def test_degenerate_data_gives_diagnostics_not_nan():
    """Nobody ever came back: a and b are not identified (the likelihood is flat in them)
    and λ → 0; the fit returns finite numbers and says it did not find a proper maximum."""
    T = np.linspace(1, 50, 300)
    fitted = BetaGeo.fit(np.zeros(300), np.zeros(300), T)
    d = fitted.diagnostics
    assert d is not None
    assert np.all(np.isfinite(fitted.values)) and np.isfinite(d.log_likelihood)
    assert not d.converged and not d.hessian_ok and "not identified" in d.message
    assert np.all(np.isnan(fitted.standard_errors))


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="recency"):
        BetaGeo.fit([1, 2], [5, 1], [4, 3])
    with pytest.raises(ValueError, match="NaN"):
        ParetoNBD.fit([1, np.nan], [1, 1], [4, 3])
    with pytest.raises(ValueError, match="repeat purchase"):
        GammaGamma.fit([0, 0], [0.0, 0.0])


# --------------------------------------------------------------------------- CLV


def test_clv_monotone_in_margin_and_discount_rate():
    x, t, T, m = load_cdnow()
    bg = BetaGeo(0.243, 4.414, 0.793, 2.426)
    gg = GammaGamma(6.25, 3.74, 15.44)

    def clv(margin: float, rate: float) -> np.ndarray:
        return customer_lifetime_value(
            bg, gg, x, t, T, m, months=12, discount_rate=rate, margin=margin, freq="W"
        )

    base = clv(0.3, 0.01)
    assert np.all(base > 0)
    np.testing.assert_allclose(clv(0.6, 0.01), 2 * base, rtol=1e-12)
    assert np.all(clv(0.3, 0.05) < base) and np.all(clv(0.3, 0.0) > base)
    # undiscounted 12-month CLV = expected purchases in 52.14 weeks × spend × margin
    undiscounted = clv(1.0, 0.0)
    direct = bg.conditional_expected_purchases(12 * 4.345, x, t, T)
    direct *= gg.conditional_expected_average_profit(x, m)
    np.testing.assert_allclose(undiscounted, direct, rtol=1e-9)


# --------------------------------------------------------------------------- summaries


def _reference_summary(ids, days, amounts, end_day):
    """Straight from the definitions, one customer at a time."""
    out = {}
    for c in sorted(set(ids)):
        per = {}
        for i, d, a in zip(ids, days, amounts, strict=True):
            if i == c and d <= end_day:
                per[d] = per.get(d, 0.0) + a
        if not per:
            continue
        ds = sorted(per)
        repeat = [per[d] for d in ds[1:]]
        out[c] = (len(ds) - 1, ds[-1] - ds[0], end_day - ds[0], np.mean(repeat) if repeat else 0.0)
    return out


def test_summary_from_transactions_matches_definitions():
    rng = np.random.default_rng(1)
    n = 3000
    ids = rng.choice([f"C{i:03d}" for i in range(200)], n)
    base = np.datetime64("2025-01-01T00:00:00")
    ts = base + (rng.uniform(0, 120, n) * 86400).astype("timedelta64[s]")
    ts[:50] = ts[50:100]  # same-day repeats by other customers and the same ones
    amounts = np.round(rng.gamma(2, 30, n), 2)
    end = np.datetime64("2025-04-01T12:00:00")
    s = summary_from_transactions(ids, ts, amounts, observation_end=end, freq="D")
    days = (ts.astype("datetime64[D]") - np.datetime64("2025-01-01")).astype(int)
    ref = _reference_summary(list(ids), list(days), list(amounts), 90)
    assert list(s.customer_ids) == list(ref)
    got = np.column_stack([s.frequency, s.recency, s.T, s.monetary_value])
    np.testing.assert_allclose(got, np.array(list(ref.values())), rtol=1e-12)
    # weekly periods start on Monday: Sunday 2025-01-05 and Monday 2025-01-06 differ
    w = summary_from_transactions(
        ["a", "a", "a"],
        np.array(["2025-01-05T23:00", "2025-01-06T01:00", "2025-01-12T10:00"], "datetime64[m]"),
        freq="W",
    )
    assert (w.frequency[0], w.recency[0], w.T[0]) == (1, 1, 1)


def test_calibration_and_holdout_matches_definitions():
    rng = np.random.default_rng(2)
    n = 2000
    ids = rng.choice(np.arange(150), n)
    ts = np.datetime64("2025-01-01") + rng.integers(0, 200, n).astype("timedelta64[D]")
    amounts = rng.uniform(5, 50, n)
    res = calibration_and_holdout(ids, ts, amounts, "2025-04-10", dt.date(2025, 6, 30))
    days = (ts - np.datetime64("2025-01-01")).astype(int)
    cal_end, obs_end = 99, 180  # 2025-04-10 and 2025-06-30 as day numbers
    ref = _reference_summary(list(ids), list(days), list(amounts), cal_end)
    assert list(res.calibration.customer_ids) == list(ref)
    for k, c in enumerate(res.calibration.customer_ids):
        hold = {d for i, d in zip(ids, days, strict=True) if i == c and cal_end < d <= obs_end}
        assert res.frequency_holdout[k] == len(hold)
    assert res.duration_holdout == obs_end - cal_end


# --------------------------------------------------------------------------- generator


@pytest.fixture(scope="module")
def shop_orders():
    from patron.demo.generator import GeneratorParams, generate

    shop = generate(GeneratorParams(customers=5000, orders=50000, seed=3))
    o = shop.orders
    order_id = o.column("external_id").to_numpy(zero_copy_only=False)
    customer = o.column("customer_external_id").to_numpy(zero_copy_only=False)
    placed = o.column("placed_at").to_numpy().astype("datetime64[ms]")
    value = o.column("quantity").to_numpy() * o.column("unit_price").to_numpy().astype(float)
    value -= o.column("line_discount").to_numpy().astype(float)
    _, first, inverse = np.unique(order_id, return_index=True, return_inverse=True)
    amount = np.bincount(inverse.ravel(), weights=value)  # net merchandise value per order
    return shop, customer[first], placed[first], amount


def test_generated_shop_recovers_ground_truth(shop_orders):
    """BG/NBD + Gamma-Gamma on the demo shop's orders (calendar time, hourly periods).

    The generator runs an exact BG/NBD in *operational* time (seasonality, weekdays, hours:
    docs/generator.md), so calendar-time estimates carry a small misspecification on top of
    the sampling error of 5,000 customers (SE ≈ 2% for r, 3% α, 4% a, 6% b). Tolerance
    15% ≈ 3 SE plus that. Hourly periods because the heavy-tailed buyers (r < 1) place many
    orders on one day: daily periods merge ~11% of repeat orders away and bias α by ~20%.
    Gamma-Gamma: z is the order's net value after product-price rounding, which adds
    within-customer noise: p and v (strongly correlated) within 25%, q within 15% and the
    population mean spend p·v/(q−1) within 3% of the documented mean order value.
    """
    shop, customer, placed, amount = shop_orders
    truth = shop.params
    local = placed + np.timedelta64(8, "h")  # Asia/Shanghai
    end = np.datetime64(dt.date.fromisoformat(truth["start"])) + np.timedelta64(truth["days"], "D")
    s = summary_from_transactions(
        customer, local, amount, observation_end=end - np.timedelta64(1, "ms"), freq="h"
    )
    bg = BetaGeo.fit(s.frequency, s.recency, s.T)
    hours = np.array([1, 24, 1, 1])  # α is per hour here
    np.testing.assert_allclose(
        bg.values / hours, [truth["r"], truth["alpha"], truth["a"], truth["b"]], rtol=0.15
    )
    # in-sample: expected repeat purchases over each customer's history ≈ what happened
    assert bg.expected_purchases(s.T).sum() == pytest.approx(s.frequency.sum(), rel=0.03)
    gg = GammaGamma.fit(s.frequency, s.monetary_value)
    assert gg.mean_spend() == pytest.approx(truth["mean_order_value"], rel=0.03)
    assert gg.q == pytest.approx(truth["q"], rel=0.15)
    np.testing.assert_allclose([gg.p, gg.v], [truth["p"], truth["gamma"]], rtol=0.25)


def test_generated_shop_holdout_in_operational_time(shop_orders):
    """With the generator's seasonality undone (its operational clock), the process is an
    exact BG/NBD: predicted holdout purchases are within 10% of actual at several cut dates,
    overall and for the 0 and 7+ frequency buckets. (In calendar time the error swings with
    the season of the holdout, about −13% to +17% for cuts around Singles' Day.)"""
    from patron.demo.generator import _build_calendar  # the generator's own clock

    shop, customer, placed, _ = shop_orders
    start = dt.date.fromisoformat(shop.params["start"])
    days = shop.params["days"]
    origin = np.datetime64(start) - np.timedelta64(8, "h")  # local midnight, in UTC
    cal_days = (placed - origin).astype(np.float64) / 86_400_000
    op_days = _build_calendar(start, days).to_operational(cal_days)
    op_time = origin + (op_days * 86_400_000).astype("timedelta64[ms]")
    end = origin + np.timedelta64(days, "D") - np.timedelta64(1, "ms")
    for cut in (300, 420, 548):
        split = calibration_and_holdout(
            customer, op_time, None, origin + np.timedelta64(cut, "D"), end, freq="h"
        )
        cal = split.calibration
        model = BetaGeo.fit(cal.frequency, cal.recency, cal.T)
        report = holdout_report(model, split)
        assert abs(report.total_error) < 0.10, (cut, report)
        for row in (report.rows[0], report.rows[-1]):
            assert row.predicted == pytest.approx(row.actual, rel=0.15), (cut, row)
