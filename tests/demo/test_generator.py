"""The synthetic shop generator: formats, internal consistency and recovery of the truth."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from patron.demo.generator import (
    MONEY,
    GeneratedShop,
    GeneratorParams,
    generate,
    write_shop,
)

CUSTOMER_COLUMNS = [
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "birthday",
    "locale",
    "created_at",
    "attributes",
    "flagged",
    "consent_email",
    "consent_sms",
]
PRODUCT_COLUMNS = ["sku", "name", "category", "price", "currency"]
ORDER_COLUMNS = [
    "external_id",
    "customer_external_id",
    "placed_at",
    "status",
    "currency",
    "channel",
    "discount_code",
    "shipping_total",
    "paid_at",
    "delivered_at",
    "sku",
    "quantity",
    "unit_price",
    "line_discount",
]
REFUND_COLUMNS = [
    "external_id",
    "order_external_id",
    "refunded_at",
    "amount",
    "sku",
    "quantity",
    "reason",
]
TRUTH_COLUMNS = [
    "customer_external_id",
    "lambda_",
    "p_dropout",
    "dropout_at",
    "alive_at_end",
    "mean_spend",
    "flagged",
]


@pytest.fixture(scope="module")
def shop() -> GeneratedShop:
    return generate(GeneratorParams())  # 5,000 customers / 50,000 orders


@pytest.fixture(scope="module")
def big() -> GeneratedShop:
    return generate(GeneratorParams(customers=20_000, orders=200_000, seed=7))


@pytest.fixture(scope="module")
def orders(shop: GeneratedShop) -> dict[str, dict[str, Any]]:
    """Order-level view of the line table: header + lines + totals (Decimal)."""
    out: dict[str, dict[str, Any]] = {}
    for row in shop.orders.to_pylist():
        o = out.get(row["external_id"])
        if o is None:
            o = out[row["external_id"]] = {**row, "lines": [], "merch": Decimal("0.00")}
        for col in ORDER_COLUMNS[:10]:
            assert o[col] == row[col], f"{col} differs between lines of {row['external_id']}"
        total = row["quantity"] * row["unit_price"] - row["line_discount"]
        o["lines"].append((row["sku"], row["quantity"], total))
        o["merch"] += total
    return out


def test_columns_and_types(shop: GeneratedShop) -> None:
    assert shop.customers.column_names == CUSTOMER_COLUMNS
    assert shop.products.column_names == PRODUCT_COLUMNS
    assert shop.orders.column_names == ORDER_COLUMNS
    assert shop.refunds.column_names == REFUND_COLUMNS
    assert shop.truth.column_names[: len(TRUTH_COLUMNS)] == TRUTH_COLUMNS
    for table, col in [
        (shop.products, "price"),
        (shop.orders, "shipping_total"),
        (shop.orders, "unit_price"),
        (shop.orders, "line_discount"),
        (shop.refunds, "amount"),
    ]:
        assert table.schema.field(col).type == MONEY
    for table, col in [
        (shop.customers, "created_at"),
        (shop.orders, "placed_at"),
        (shop.orders, "paid_at"),
        (shop.orders, "delivered_at"),
        (shop.refunds, "refunded_at"),
        (shop.truth, "dropout_at"),
    ]:
        assert table.schema.field(col).type == pa.timestamp("ms", tz="UTC")
    assert shop.customers.column("external_id")[0].as_py() == "C000001"
    assert shop.orders.column("external_id")[0].as_py() == "O0000001"
    assert shop.refunds.column("external_id")[0].as_py() == "R000001"
    assert shop.products.column("sku")[0].as_py() == "SKU-0001"
    json.dumps(shop.params)  # JSON-serialisable


def test_deterministic(tmp_path: Path) -> None:
    params = GeneratorParams(customers=400, orders=2500, seed=3)
    a, b = generate(params), generate(params)
    for name in ("customers", "products", "orders", "refunds", "truth"):
        assert getattr(a, name).equals(getattr(b, name)), name
    assert a.params == b.params
    for fmt in ("csv", "parquet"):
        pa_ = write_shop(a, tmp_path / f"a-{fmt}", fmt)  # type: ignore[arg-type]
        pb = write_shop(b, tmp_path / f"b-{fmt}", fmt)  # type: ignore[arg-type]
        for name in pa_:
            assert pa_[name].read_bytes() == pb[name].read_bytes(), (fmt, name)
    other = generate(GeneratorParams(customers=400, orders=2500, seed=4))
    assert not other.orders.equals(a.orders)


def test_order_count_hits_target(shop: GeneratedShop, big: GeneratedShop) -> None:
    for s, target in ((shop, 50_000), (big, 200_000)):
        n = pc.count_distinct(s.orders.column("external_id")).as_py()
        assert abs(n / target - 1) <= 0.03
        assert n == s.params["orders_generated"]
        assert s.params["orders_expected"] == pytest.approx(target, rel=1e-6)
        assert s.params["alpha"] == pytest.approx(
            s.params["alpha_requested"] / s.params["lambda_scale"]
        )
    # order ids are numbered chronologically and each order's lines are contiguous
    ids = shop.orders.column("external_id").to_numpy(zero_copy_only=False)
    first = np.r_[True, ids[1:] != ids[:-1]]
    assert len(set(ids[first])) == first.sum()
    placed = shop.orders.column("placed_at").to_numpy()[first]
    assert (np.diff(placed.astype(np.int64)) >= 0).all()


def test_lines_and_totals(shop: GeneratedShop, orders: dict[str, dict[str, Any]]) -> None:
    price = dict(
        zip(
            shop.products.column("sku").to_pylist(),
            shop.products.column("price").to_pylist(),
            strict=True,
        )
    )
    codes = 0
    for o in orders.values():
        skus = [sku for sku, _, _ in o["lines"]]
        assert 1 <= len(skus) <= 4 and len(set(skus)) == len(skus)
        assert o["shipping_total"] in (Decimal("0.00"), Decimal("10.00"))
        assert o["merch"] > 0 and o["merch"] == o["merch"].quantize(Decimal("0.01"))
        codes += o["discount_code"] is not None
    assert 0.2 < codes / len(orders) < 0.3
    for row in shop.orders.to_pylist():
        assert row["quantity"] >= 1
        assert row["unit_price"] == price[row["sku"]]
        assert Decimal(0) <= row["line_discount"] < row["quantity"] * row["unit_price"]
        assert (row["line_discount"] > 0) == (row["discount_code"] is not None)
        assert row["currency"] == "CNY"


def test_statuses_and_timestamps(shop: GeneratedShop, orders: dict[str, dict[str, Any]]) -> None:
    end = dt.datetime.fromisoformat(shop.params["history_end"])
    start = dt.datetime.fromisoformat(shop.params["history_start"])
    count: dict[str, int] = defaultdict(int)
    for o in orders.values():
        count[o["status"]] += 1
        assert start <= o["placed_at"] < end
        if o["status"] in ("placed", "cancelled"):
            assert o["paid_at"] is None
        else:
            assert o["placed_at"] < o["paid_at"] < end
        if o["status"] == "delivered":
            assert o["paid_at"] <= o["delivered_at"] < end
        else:
            assert o["delivered_at"] is None
    assert count["delivered"] / len(orders) > 0.9
    assert 0.01 < count["cancelled"] / len(orders) < 0.03
    assert count["paid"] + count["fulfilled"] > 0


def test_refunds(shop: GeneratedShop, orders: dict[str, dict[str, Any]]) -> None:
    end = dt.datetime.fromisoformat(shop.params["history_end"])
    assert shop.refunds.num_rows > 0
    full = 0
    for r in shop.refunds.to_pylist():
        o = orders[r["order_external_id"]]
        assert o["status"] == "delivered"  # never on a cancelled (or undelivered) order
        assert o["delivered_at"] < r["refunded_at"] < end
        total = o["merch"] + o["shipping_total"]
        assert Decimal("0.00") < r["amount"] <= total
        if r["sku"] is None:
            full += 1
            assert r["quantity"] is None and r["amount"] == total
        else:
            (line,) = [ln for ln in o["lines"] if ln[0] == r["sku"]]
            assert 1 <= r["quantity"] <= line[1]
            assert r["amount"] <= line[2]
    assert len({r for r in shop.refunds.column("order_external_id").to_pylist()}) == (
        shop.refunds.num_rows
    )
    assert 0.35 < full / shop.refunds.num_rows < 0.7


def test_flagged_customers_refund_far_more(
    shop: GeneratedShop, orders: dict[str, dict[str, Any]]
) -> None:
    flagged = {
        c
        for c, f in zip(
            shop.truth.column("customer_external_id").to_pylist(),
            shop.truth.column("flagged").to_pylist(),
            strict=True,
        )
        if f
    }
    assert len(flagged) == round(0.005 * 5000)
    assert shop.customers.column("flagged").equals(shop.truth.column("flagged"))
    refunded = set(shop.refunds.column("order_external_id").to_pylist())
    n = {True: 0, False: 0}
    k = {True: 0, False: 0}
    for oid, o in orders.items():
        f = o["customer_external_id"] in flagged
        n[f] += 1
        k[f] += oid in refunded
    assert k[True] / n[True] > 0.5
    assert k[False] / n[False] < 0.05
    delivered = sum(o["status"] == "delivered" for o in orders.values())
    assert k[False] / delivered == pytest.approx(0.04, abs=0.01)


def test_truth_consistent_with_orders(shop: GeneratedShop) -> None:
    o = shop.orders
    cust = o.column("customer_external_id").to_numpy(zero_copy_only=False)
    placed = o.column("placed_at").to_numpy().astype("datetime64[ms]").astype(np.int64)
    last: dict[str, int] = {}
    first: dict[str, int] = {}
    for c, t in zip(cust.tolist(), placed.tolist(), strict=True):
        last[c] = max(last.get(c, t), t)
        first[c] = min(first.get(c, t), t)
    t = shop.truth
    ids = t.column("customer_external_id").to_pylist()
    assert set(ids) == set(last)  # every customer has at least the first purchase
    drop = t.column("dropout_at").to_numpy(zero_copy_only=False)
    alive = t.column("alive_at_end").to_pylist()
    created = dict(
        zip(
            shop.customers.column("external_id").to_pylist(),
            shop.customers.column("created_at").to_numpy().astype(np.int64).tolist(),
            strict=True,
        )
    )
    for c, d, a in zip(ids, drop.tolist(), alive, strict=True):
        assert created[c] <= first[c]
        if a:
            assert d is None
        else:
            # the dropout happens right after the last purchase: nothing after dropout_at
            assert d is not None and last[c] == d.timestamp() * 1000
    assert 0.1 < np.mean(alive) < 0.5
    lam = t.column("lambda_").to_numpy()
    p = t.column("p_dropout").to_numpy()
    assert (lam > 0).all() and ((p > 0) & (p <= 1)).all()


def test_recovers_ground_truth(big: GeneratedShop) -> None:
    """Tolerances: counts 3%, spend 3%, parameter means 5% (20k customers, 200k orders)."""
    t, prm = big.truth, big.params
    n_cust = t.num_rows
    # purchases per customer vs the analytic BG/NBD expectation
    oid = big.orders.column("external_id").to_numpy(zero_copy_only=False)
    first = np.r_[True, oid[1:] != oid[:-1]]
    cust = big.orders.column("customer_external_id").to_numpy(zero_copy_only=False)[first]
    counts = dict(zip(*np.unique(cust, return_counts=True), strict=True))
    realised = np.array([counts[c] for c in t.column("customer_external_id").to_pylist()])
    expected = t.column("expected_orders").to_numpy()
    assert realised.mean() == pytest.approx(expected.mean(), rel=0.03)
    assert np.corrcoef(realised, expected)[0, 1] > 0.7
    # heavier (more frequent) customers buy more
    lam = t.column("lambda_").to_numpy()
    assert realised[lam > np.quantile(lam, 0.9)].mean() > 3 * realised[lam < np.median(lam)].mean()
    # the drawn parameters follow their priors
    assert lam.mean() == pytest.approx(prm["r"] / prm["alpha"], rel=0.05)
    p = t.column("p_dropout").to_numpy()
    assert p.mean() == pytest.approx(prm["a"] / (prm["a"] + prm["b"]), rel=0.05)
    mean_spend = t.column("mean_spend").to_numpy()
    assert mean_spend.mean() == pytest.approx(prm["p"] * prm["gamma"] / (prm["q"] - 1), rel=0.05)
    # spend: realised net merchandise value per order vs the customer's true mean spend
    o = big.orders
    cents = (
        pc.multiply(pc.cast(o.column("unit_price"), pa.float64()), 100).to_numpy()
        * o.column("quantity").to_numpy()
        - pc.multiply(pc.cast(o.column("line_discount"), pa.float64()), 100).to_numpy()
    )
    order_index = np.cumsum(first) - 1
    merch = np.bincount(order_index, weights=cents) / 100
    truth_of = dict(zip(t.column("customer_external_id").to_pylist(), mean_spend, strict=True))
    truth_per_order = np.array([truth_of[c] for c in cust])
    assert merch.mean() == pytest.approx(truth_per_order.mean(), rel=0.03)
    assert np.corrcoef(merch, truth_per_order)[0, 1] > 0.4
    assert n_cust == 20_000


def _local(ts: pa.ChunkedArray) -> Any:
    """Asia/Shanghai wall-clock times (UTC+08:00, no DST) as naive datetime64[s]."""
    return ts.to_numpy().astype("datetime64[s]") + np.timedelta64(8, "h")


def test_seasonality_and_daytime(big: GeneratedShop) -> None:
    oid = big.orders.column("external_id").to_numpy(zero_copy_only=False)
    first = np.r_[True, oid[1:] != oid[:-1]]
    local = _local(big.orders.column("placed_at"))[first]
    month = local.astype("datetime64[M]").astype(np.int64) % 12 + 1
    share = np.bincount(month, minlength=13) / local.shape[0]
    assert share[11] > 1.5 * share[2]  # November (Singles' Day) vs February (Spring Festival)
    days = local.astype("datetime64[D]")
    singles_day = (days == np.datetime64("2025-11-11")).sum()
    ordinary = (days == np.datetime64("2025-10-15")).sum()
    assert singles_day > 2.5 * ordinary
    hour = (local - days).astype(np.int64) // 3600
    night = np.isin(hour, [2, 3, 4, 5]).mean()
    evening = np.isin(hour, [19, 20, 21, 22]).mean()
    assert night < 0.03 and evening > 0.25
    # acquisition: more customers early on
    created = _local(big.customers.column("created_at")).astype("datetime64[D]")
    first_q = (created < np.datetime64("2025-02-25")).mean()
    assert first_q > 0.18  # vs 3/24 = 0.125 if acquisition were uniform


def test_customer_fields(shop: GeneratedShop) -> None:
    c = shop.customers
    n = c.num_rows
    emails = [e for e in c.column("email").to_pylist() if e is not None]
    phones = [p for p in c.column("phone").to_pylist() if p is not None]
    assert 0.9 * n < len(emails) < n and 0.8 * n < len(phones) < n
    assert len(set(emails)) == len(emails) and len(set(phones)) == len(phones)
    assert all(p.startswith(("+861", "+1")) for p in phones)
    births = c.column("birthday").to_pylist()
    assert 0.65 < sum(b is not None for b in births) / n < 0.75
    assert 0.75 < c.column("locale").to_pylist().count("zh-CN") / n < 0.85
    for attrs in c.column("attributes").to_pylist()[:500]:
        data = json.loads(attrs)
        assert set(data) == {"skin_type", "source"}
    consent = zip(c.column("email").to_pylist(), c.column("consent_email").to_pylist(), strict=True)
    assert all(e is not None for e, ok in consent if ok)
    cats = set(shop.products.column("category").to_pylist())
    assert {"skincare", "makeup", "fragrance", "gift_sets"} <= cats


def test_write_shop_round_trip(tmp_path: Path) -> None:
    s = generate(GeneratorParams(customers=300, orders=2000, seed=11))
    tables = {
        "customers": s.customers,
        "products": s.products,
        "orders": s.orders,
        "refunds": s.refunds,
        "truth": s.truth,
    }
    pq_paths = write_shop(s, tmp_path / "pq", "parquet")
    for name, table in tables.items():
        assert pq_paths[name].name == f"{name}.parquet"
        assert pq.read_table(pq_paths[name]).equals(table), name
    csv_paths = write_shop(s, tmp_path / "csv", "csv")
    for name, table in tables.items():
        opts = pa_csv.ConvertOptions(
            column_types=table.schema, strings_can_be_null=True, quoted_strings_can_be_null=True
        )
        back = pa_csv.read_csv(csv_paths[name], convert_options=opts)
        assert back.equals(table), name
    header = csv_paths["orders"].read_text(encoding="utf-8").splitlines()[:2]
    assert header[0].replace('"', "").split(",") == ORDER_COLUMNS
    placed = header[1].split(",")[2].strip('"')
    assert dt.datetime.fromisoformat(placed).utcoffset() == dt.timedelta(0)
    assert "T" in placed and placed.endswith("Z")
    meta = json.loads(csv_paths["ground_truth"].read_text(encoding="utf-8"))
    assert meta["rows"]["orders"] == s.orders.num_rows
    assert meta["params"]["alpha"] == s.params["alpha"]
    assert set(csv_paths) == {"customers", "products", "orders", "refunds", "truth", "ground_truth"}


def test_rejects_impossible_targets() -> None:
    with pytest.raises(ValueError):
        generate(GeneratorParams(customers=1000, orders=900))
    with pytest.raises(ValueError):
        generate(GeneratorParams(customers=0))


def _cents(col: pa.ChunkedArray) -> Any:
    return np.rint(pc.cast(col, pa.float64()).to_numpy() * 100).astype(np.int64)


def check_invariants(s: GeneratedShop) -> None:
    """Vectorised consistency checks, usable on shops of any size."""
    o = s.orders
    oid = o.column("external_id").to_numpy(zero_copy_only=False)
    first = np.r_[True, oid[1:] != oid[:-1]]
    n_orders = int(first.sum())
    assert n_orders == s.params["orders_generated"] == len(np.unique(oid))
    order_index = np.cumsum(first) - 1
    placed = o.column("placed_at").to_numpy().astype(np.int64)
    assert (np.diff(placed[first]) >= 0).all()
    for col in ORDER_COLUMNS[:10]:  # order-level columns repeat on each line
        arr = o.column(col).combine_chunks()
        again = arr.filter(pa.array(first)).take(pa.array(order_index))
        assert pc.all(pc.equal(arr, again)).as_py() in (True, None)
        assert pc.all(pc.equal(pc.is_null(arr), pc.is_null(again))).as_py()
    gross = _cents(o.column("unit_price")) * o.column("quantity").to_numpy()
    disc = _cents(o.column("line_discount"))
    assert ((disc >= 0) & (disc < gross)).all()
    merch = np.bincount(order_index, weights=gross - disc).astype(np.int64)
    total = merch + _cents(o.column("shipping_total"))[first]
    # refunds: bounded by the order total, only on delivered orders, after delivery
    r = s.refunds
    ridx = pc.index_in(r.column("order_external_id"), pa.array(oid[first])).to_numpy()
    assert (ridx >= 0).all()
    amount = _cents(r.column("amount"))
    assert ((amount > 0) & (amount <= total[ridx])).all()
    status = o.column("status").to_numpy(zero_copy_only=False)[first]
    assert (status[ridx] == "delivered").all()
    delivered = o.column("delivered_at").to_numpy().astype(np.int64)[first]
    assert (r.column("refunded_at").to_numpy().astype(np.int64) > delivered[ridx]).all()
    # truth: every customer's last purchase is its dropout, if it dropped out
    t = s.truth
    cust = pc.index_in(
        o.column("customer_external_id"), t.column("customer_external_id")
    ).to_numpy()[first]
    last = np.full(t.num_rows, np.iinfo(np.int64).min)
    np.maximum.at(last, cust, placed[first])
    dropped = ~t.column("alive_at_end").to_numpy(zero_copy_only=False)
    dropout = t.column("dropout_at").to_numpy().astype(np.int64)
    assert (last[dropped] == dropout[dropped]).all()
    assert (np.bincount(cust, minlength=t.num_rows) >= 1).all()


def test_invariants_hold_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large shops are built in chunks; force many small ones here."""
    import patron.demo.generator as generator

    monkeypatch.setattr(generator, "_CHUNK", 997)
    s = generate(GeneratorParams(customers=2000, orders=15_000, seed=5))
    assert s.orders.column("external_id").num_chunks > 10
    check_invariants(s)
    assert abs(s.params["orders_generated"] / 15_000 - 1) <= 0.03


def test_invariants_default(shop: GeneratedShop) -> None:
    check_invariants(shop)
