"""CLV scores from a frame: the engine-side summary equals the numpy reference on both
engines; scores equal the models applied by hand; failures are reported, never NaN."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from patron.analytics import clv_frame
from patron.analytics.clv import (
    BetaGeo,
    ConvergenceError,
    GammaGamma,
    ModifiedBetaGeo,
    customer_lifetime_value,
    summary_from_transactions,
)
from patron.analytics.clv_frame import DEFAULT_MARGIN, clv_scores, clv_summary
from patron.analytics.frame import Engine, Frame, from_arrow
from tests.analytics.shop_data import canonical, generated

AS_OF = datetime(2025, 5, 1)


def shop_orders(seed: int = 7, customers: int = 400) -> pa.Table:
    """Orders of a small shop: repeat buyers, several orders on one day, refunds (one larger
    than its order), and orders after AS_OF that must not count."""
    rng = np.random.default_rng(seed)
    counts = rng.geometric(0.3, customers)
    ids = np.repeat(np.array([f"c{i:04d}" for i in range(customers)]), counts)
    first = np.repeat(rng.integers(0, 150, customers), counts)
    day = first + rng.integers(0, 60, ids.size) * (rng.random(ids.size) < 0.8)
    minute = rng.integers(0, 24 * 60, ids.size)
    start = np.datetime64("2025-01-01T00:00", "m")
    placed = (start + day * 1440 + minute).astype("datetime64[us]")
    amount = np.round(rng.gamma(3.0, 30.0, ids.size), 2)
    refunded = np.round(amount * rng.choice([0, 0, 0, 0, 0.5, 1.0], ids.size), 2)
    refunded[0] = amount[0] + 5.0  # a refund larger than its order counts as 0, not negative
    columns: dict[str, object] = {
        "order_id": pa.array([f"o{i}" for i in range(ids.size)]),
        "customer_id": pa.array(ids),
        "placed_at": pa.array(placed, pa.timestamp("us")),
        "amount": pa.array(amount),
        "refunded_amount": pa.array(refunded),
    }
    return pa.table(columns)


def reference(orders: pa.Table, as_of: datetime) -> tuple[np.ndarray, ...]:
    ids = np.asarray(orders["customer_id"].to_numpy(zero_copy_only=False))
    ts = orders["placed_at"].to_numpy()
    net = np.clip(orders["amount"].to_numpy() - orders["refunded_amount"].to_numpy(), 0, None)
    keep = ts < np.datetime64(as_of)
    s = summary_from_transactions(ids[keep], ts[keep], net[keep], observation_end=as_of, freq="D")
    return s.customer_ids, s.frequency, s.recency, s.T, s.monetary_value


@pytest.fixture(scope="module")
def orders() -> pa.Table:
    return shop_orders()


@pytest.fixture(scope="module")
def shop() -> pa.Table:
    """Orders of the demo generator's shop: a true BG/NBD / Gamma-Gamma process."""
    return canonical(generated())[0]


@pytest.fixture(scope="module")
def duck(shop: pa.Table) -> Frame:
    return from_arrow(shop, engine="duckdb", timezone="Asia/Shanghai", currency="CNY")


@pytest.mark.parametrize("as_of", [AS_OF, datetime(2025, 4, 20, 15, 30)])
def test_summary_equals_summary_from_transactions(
    analytics_engine: Engine, orders: pa.Table, as_of: datetime
) -> None:
    ts = orders["placed_at"].to_numpy()
    ids = orders["customer_id"].to_numpy(zero_copy_only=False)
    days = ts.astype("datetime64[D]")
    pairs = {(c, d) for c, d in zip(ids, days, strict=True)}
    assert len(pairs) < len(ids)  # the data has several orders on one day
    assert (ts >= np.datetime64(as_of)).any()  # and orders the summary must leave out

    frame = from_arrow(orders, engine=analytics_engine, as_of=AS_OF)
    s = clv_summary(frame, as_of=as_of)
    ref_ids, x, t_x, T, m = reference(orders, as_of)
    assert s.customer_ids.tolist() == ref_ids.tolist()
    np.testing.assert_array_equal(s.frequency, x)
    np.testing.assert_array_equal(s.recency, t_x)
    np.testing.assert_array_equal(s.T, T)
    np.testing.assert_allclose(s.monetary_value, m, rtol=1e-12, atol=1e-9)
    assert (x > 0).sum() > 100 and (m[x > 0] > 0).mean() > 0.5


def test_scores_are_the_models_applied_to_the_summary(duck: Frame, shop: pa.Table) -> None:
    result = clv_scores(duck, horizon_days=30, months=6, discount_rate=0.02, margin=0.4)
    _, x, t_x, T, m = reference(shop, duck.as_of)
    bg = BetaGeo.fit(x, t_x, T)
    gg = GammaGamma.fit(x[x > 0], m[x > 0])
    table = result.table
    # Fits agree to the optimiser's tolerance (the engine sums spend in its own order).
    np.testing.assert_allclose(
        table["p_alive"].to_numpy(), bg.probability_alive(x, t_x, T), rtol=1e-6
    )
    np.testing.assert_allclose(
        table["expected_purchases"].to_numpy(),
        bg.conditional_expected_purchases(30, x, t_x, T),
        rtol=1e-6,
    )
    expected_clv = customer_lifetime_value(
        bg, gg, x, t_x, T, m, months=6, discount_rate=0.02, margin=0.4
    )
    np.testing.assert_allclose(table["clv"].to_numpy(), expected_clv, rtol=1e-6)
    fit = result.fit
    assert fit.purchases is not None and fit.purchases.model == "BG/NBD"
    assert fit.purchases.usable and fit.purchases.converged
    assert fit.purchases.params == pytest.approx(bg.params, rel=1e-6)
    assert all(v is not None and v > 0 for v in fit.purchases.se.values())
    assert fit.spend is not None and fit.spend.params == pytest.approx(gg.params, rel=1e-6)
    assert (fit.margin, fit.margin_source) == (0.4, "argument")
    assert fit.customers == x.size and fit.repeat_customers == int((x > 0).sum())
    assert fit.as_of == duck.as_of and fit.horizon_days == 30 and fit.months == 6
    assert fit.warnings == ()
    assert table.column_names == [f.name for f in clv_frame.SCORE_SCHEMA]


def test_margin_from_cost_where_known(shop: pa.Table) -> None:
    rng = np.random.default_rng(3)
    amount = shop["amount"].to_numpy()
    known = rng.random(amount.size) < 0.7
    cost = np.round(amount * rng.uniform(0.5, 0.7, amount.size), 2)
    with_cost = shop.append_column("cost", pa.array(cost, mask=~known))
    result = clv_scores(from_arrow(with_cost, engine="duckdb"))
    assert result.fit.margin_source == "cost"
    assert result.fit.margin == pytest.approx(1 - cost[known].sum() / amount[known].sum())
    assert result.fit.margin == pytest.approx(0.4, abs=0.01)
    assert result.fit.costed_revenue_share == pytest.approx(amount[known].sum() / amount.sum())
    # without costs: the documented default; CLV is linear in the margin
    plain = clv_scores(from_arrow(shop, engine="duckdb"))
    assert (plain.fit.margin, plain.fit.margin_source) == (DEFAULT_MARGIN, "default")
    ratio = result.table["clv"].to_numpy() / plain.table["clv"].to_numpy()
    np.testing.assert_allclose(ratio, result.fit.margin / DEFAULT_MARGIN, rtol=1e-6)


def test_nobody_returns_reports_instead_of_nan() -> None:
    orders = pa.table(
        {
            "order_id": [f"o{i}" for i in range(50)],
            "customer_id": [f"c{i}" for i in range(50)],
            "placed_at": pa.array(
                [datetime(2025, 1, 1 + i % 28, 12) for i in range(50)], pa.timestamp("us")
            ),
            "amount": [10.0 + i for i in range(50)],
        }
    )
    result = clv_scores(from_arrow(orders, engine="duckdb"))
    fit = result.fit
    assert fit.repeat_customers == 0
    assert fit.spend is not None and not fit.spend.usable
    assert any("Gamma-Gamma could not be fitted" in w for w in fit.warnings)
    assert result.table["clv"].null_count == 50
    for name in ("p_alive", "expected_purchases"):
        values = result.table[name].drop_null().to_numpy()
        assert np.isfinite(values).all()
    assert fit.purchases is not None
    if not fit.purchases.converged:  # the likelihood is flat: say so
        assert any("BG/NBD" in w or "MBG/NBD" in w for w in fit.warnings)


def test_failed_purchase_models_leave_scores_null(
    duck: Frame, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> BetaGeo:
        raise ConvergenceError("the likelihood is not finite at any of 4 starting points")

    monkeypatch.setattr(BetaGeo, "fit", classmethod(boom))
    monkeypatch.setattr(ModifiedBetaGeo, "fit", classmethod(boom))
    result = clv_scores(duck)
    for name in ("p_alive", "expected_purchases", "clv"):
        assert result.table[name].null_count == result.table.num_rows
    assert result.fit.purchases is not None
    assert not result.fit.purchases.usable
    assert "not finite" in result.fit.purchases.message
    assert any("no purchase model could be fitted" in w for w in result.fit.warnings)
    assert result.fit.spend is not None and result.fit.spend.usable  # spend is independent


def test_mbg_nbd_takes_over_when_bg_nbd_fails(duck: Frame, monkeypatch: pytest.MonkeyPatch) -> None:
    real = BetaGeo.fit.__func__  # type: ignore[attr-defined]

    def only_modified(cls: type[BetaGeo], *args: object, **kwargs: object) -> BetaGeo:
        if cls is BetaGeo:
            raise ConvergenceError("BG/NBD refused")
        return real(cls, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(BetaGeo, "fit", classmethod(only_modified))
    result = clv_scores(duck)
    assert result.fit.purchases is not None and result.fit.purchases.model == "MBG/NBD"
    assert "purchases modelled with MBG/NBD: BG/NBD could not be fitted" in " ".join(
        result.fit.warnings
    )
    assert result.table["clv"].null_count == 0


def test_non_finite_predictions_become_null_with_a_warning(
    duck: Frame, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = BetaGeo.probability_alive

    def some_nan(self: BetaGeo, *args: object) -> np.ndarray:
        out = real(self, *args)  # type: ignore[arg-type]
        out[:3] = np.nan
        return out

    monkeypatch.setattr(BetaGeo, "probability_alive", some_nan)
    result = clv_scores(duck)
    assert result.table["p_alive"].null_count == 3
    assert "3 non-finite p_alive value(s) set to null" in result.fit.warnings


def test_bad_input_is_refused(duck: Frame) -> None:
    with pytest.raises(ValueError, match="no orders before 2020-01-01"):
        clv_scores(duck, as_of=datetime(2020, 1, 1))
    with pytest.raises(ValueError, match="margin"):
        clv_scores(duck, margin=1.5)
    with pytest.raises(ValueError, match="at least 1"):
        clv_scores(duck, months=0)
