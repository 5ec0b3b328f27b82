"""`patron generate` and `patron demo` as a newcomer runs them (demo without serving)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from patron.analytics.models import CustomerScore
from patron.cli import app
from patron.config import get_settings
from patron.customers.models import Customer
from patron.db import default_engine, make_engine, unit_of_work
from patron.loyalty.models import Currency, LoyaltyAccount, LoyaltyEntry
from patron.loyalty.service import ledger
from patron.orders.models import Order, Refund, RefundState
from patron.rewards.models import Coupon, CouponStatus
from patron.stores.models import ApiKey, Store


@pytest.fixture
def isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The demo points PATRON_DATABASE_URL at its own file; undo that afterwards."""
    monkeypatch.delenv("PATRON_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    default_engine.cache_clear()
    yield
    get_settings.cache_clear()
    default_engine.cache_clear()


def test_generate_writes_the_documented_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--customers",
            "200",
            "--orders",
            "1500",
            "--seed",
            "3",
            "--out",
            str(tmp_path),
            "--format",
            "csv",
        ],
    )
    assert result.exit_code == 0, result.output
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    orders = pacsv.read_csv(tmp_path / "orders.csv")
    assert len(set(orders.column("external_id").to_pylist())) == truth["params"]["orders_generated"]
    assert pacsv.read_csv(tmp_path / "customers.csv").num_rows == 200


def test_demo_fills_a_store_and_restarts_without_reloading(
    tmp_path: Path, isolated_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "demo.db"
    args = ["demo", "--customers", "300", "--orders", "3000", "--db", str(db), "--no-serve"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "Admin API key" in first.output
    truth = json.loads((tmp_path / "demo-data" / "ground_truth.json").read_text())
    engine = make_engine(f"sqlite:///{db}")
    with unit_of_work(engine) as session:
        store = session.scalars(select(Store).where(Store.slug == "demo")).one()
        count = lambda model: session.scalar(  # noqa: E731
            select(func.count()).select_from(model).where(model.store_id == store.id)
        )
        assert count(Customer) == 300
        assert count(Order) == truth["params"]["orders_generated"]
        assert count(Refund) > 0
        assert (
            session.scalar(
                select(func.count()).select_from(Refund).where(Refund.state != RefundState.applied)
            )
            == 0
        )
        assert (
            session.scalar(select(func.count()).select_from(Customer).where(Customer.flagged)) >= 1
        )
        # Members spend their points: the 4R "Rewards" redemption rate is on target (≥ 20%),
        # coupons bought with points are used at later orders, and the ledger still adds up.
        liability = ledger.liability(session, store, Decimal("0.01"))
        assert liability.points_redeemed >= 0.2 * liability.points_earned
        used = session.scalars(select(Coupon).where(Coupon.status == CouponStatus.used)).all()
        assert used
        for coupon in used:
            order = session.scalars(
                select(Order).where(Order.external_id == coupon.order_external_id)
            ).one()
            assert order.customer_id == coupon.customer_id
            assert coupon.used_at is not None and coupon.used_at > coupon.created_at
        by_entries = dict(
            session.execute(
                select(LoyaltyEntry.account_id, func.sum(LoyaltyEntry.available_delta))
                .where(LoyaltyEntry.currency == Currency.points)
                .group_by(LoyaltyEntry.account_id)
            ).all()
        )
        accounts = session.scalars(select(LoyaltyAccount)).all()
        assert {a.id: a.points_available for a in accounts if a.id in by_entries} == by_entries
        assert min(a.points_available for a in accounts) >= 0
        # Most customers are still worth something (the demo's customers are not nearly
        # all long gone): the median CLV is well above ¥1.
        clvs = sorted(float(v) for v in session.scalars(select(CustomerScore.clv)) if v is not None)
        assert clvs and clvs[len(clvs) // 2] > 1
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "reusing the demo store" in again.output
    with unit_of_work(engine) as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == 300
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 2  # one per run
