"""The fast path of order imports agrees with the API's rules and services.

* the column-wise parsers accept and refuse exactly what kit.money / pydantic do;
* new orders written by COPY / executemany equal orders written by `orders.upsert_many`;
* losing a race on an external id, and PostgreSQL with or without FK triggers.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter, ValidationError
from sqlalchemy import Engine, select, text

from patron.db import unit_of_work
from patron.demo.generator import GeneratorParams, generate, write_shop
from patron.ingest import files
from patron.ingest import importer_pg as bulk
from patron.kit.money import MoneyError, to_minor
from patron.orders.models import Order
from patron.orders.schemas import OrderIn
from patron.orders.service import orders
from patron.stores.models import Store
from patron.stores.service import stores
from tests.conftest import new_store
from tests.ingest.test_import import counts, run, sample, timeline, write_csv


def sheet_of(**columns: list[Any]) -> files._Sheet:
    table = pa.table({k: pa.array(v) for k, v in columns.items()})
    rows = np.arange(table.num_rows, dtype=np.int64) + 2
    return files._Sheet(table, rows, [], "external_id")


# ---------------------------------------------------------------------------------------
# Parsers against the API's rules
# ---------------------------------------------------------------------------------------

amounts = st.one_of(
    st.decimals(
        min_value=Decimal("-1e14"), max_value=Decimal("1e14"), places=4, allow_nan=False
    ).map(str),
    st.from_regex(r"\A[+-]?[0-9]{0,16}(\.[0-9]{0,5})?([eE][+-]?[0-9])?\Z"),
    st.sampled_from(["", "abc", "1,5", "NaN", "Infinity", "--1", ".", "1e999", "0x10"]),
)


def api_minor(value: str, currency: str) -> int | None:
    """What the API makes of an amount: minor units, or None if it refuses it."""
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0:
        return None
    try:
        return to_minor(amount, currency)
    except MoneyError:
        return None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(amounts, st.sampled_from(["CNY", "JPY", "KWD"])), min_size=1))
def test_amounts_parse_as_kit_money_does(values: list[tuple[str, str]]) -> None:
    values = [(v, c) for v, c in values if v.strip() and len(v.lstrip("+-").replace(".", "")) < 21]
    if not values:
        return
    sheet = sheet_of(price=[v for v, _ in values], currency=[c for _, c in values])
    currency = pa.array([c for _, c in values])
    minor, ok = sheet.amount("price", bulk.exponents(currency), currency)
    for i, (value, cur) in enumerate(values):
        expected = api_minor(value, cur)
        assert (expected is not None) == bool(ok[i]), (value, cur)
        assert bool(sheet.bad[i]) == (expected is None), (value, cur)
        if expected is not None:
            assert int(minor[i]) == expected, (value, cur)


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
instants = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=offsets
)
AWARE = TypeAdapter(AwareDatetime)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(instants, st.sampled_from(["T", " "])), min_size=1, max_size=20))
def test_timestamps_parse_as_pydantic_does(values: list[tuple[datetime, str]]) -> None:
    texts = [d.isoformat(sep=sep).replace("+00:00", "Z") for d, sep in values]
    sheet = sheet_of(placed_at=texts)
    stamps, ok = sheet.timestamp("placed_at")
    assert ok.all() and not sheet.bad.any()
    for text_value, got in zip(texts, stamps.to_pylist(), strict=True):
        assert got.replace(tzinfo=UTC) == AWARE.validate_python(text_value)


@pytest.mark.parametrize(
    "value",
    ["2026-01-05T10:00:00", "2026-01-05", "2026-02-29T00:00:00Z", "05/01/2026 10:00+08:00", "x"],
)
def test_timestamps_the_api_refuses_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        AWARE.validate_python(value)
    sheet = sheet_of(placed_at=[value, "2026-01-05T10:00:00Z"])
    _, ok = sheet.timestamp("placed_at")
    assert ok.tolist() == [False, True]
    assert [e.row for e in sheet.errors()] == [2]


def test_parquet_native_types() -> None:
    stamps = pa.array(
        [datetime(2026, 1, 5, 2, tzinfo=UTC), None], pa.timestamp("ms", tz="Asia/Shanghai")
    )
    money = pa.array([Decimal("10.50"), Decimal("-1.00")], pa.decimal128(18, 2))
    sheet = sheet_of(placed_at=stamps, price=money, quantity=pa.array([3, 0], pa.int32()))
    got, ok = sheet.timestamp("placed_at")
    assert got.to_pylist()[0] == datetime(2026, 1, 5, 2) and ok.tolist() == [True, False]
    cur = pa.array(["CNY", "CNY"])
    minor, given_ = sheet.amount("price", bulk.exponents(cur), cur)
    assert minor.tolist()[0] == 1050 and given_.tolist() == [True, False]
    qty, good = sheet.integer("quantity", 1, 1_000_000)
    assert qty.tolist()[0] == 3 and good.tolist() == [True, False]
    assert [(e.row, e.column) for e in sheet.errors()] == [(3, "price"), (3, "quantity")]
    naive = sheet_of(placed_at=pa.array([datetime(2026, 1, 5)], pa.timestamp("us")))
    naive.timestamp("placed_at")
    assert "time zone" in naive.errors()[0].reason


# ---------------------------------------------------------------------------------------
# The fast path writes what the services write
# ---------------------------------------------------------------------------------------


def order_bodies(table: pa.Table) -> list[dict[str, Any]]:
    """OrderIn bodies from a generated orders table (one row per line)."""
    grouped: dict[str, dict[str, Any]] = {}
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in table.to_pylist():
        ext = row["external_id"]
        grouped.setdefault(
            ext,
            {
                "external_id": ext,
                "customer_external_id": row["customer_external_id"],
                "placed_at": row["placed_at"],
                "status": row["status"],
                "currency": row["currency"],
                "channel": row["channel"],
                "discount_code": row["discount_code"],
                "shipping_total": row["shipping_total"],
                "paid_at": row["paid_at"],
                "delivered_at": row["delivered_at"],
            },
        )
        lines[ext].append(
            {
                "sku": row["sku"],
                "quantity": row["quantity"],
                "unit_price": row["unit_price"],
                "discount": row["line_discount"],
            }
        )
    return [{**body, "lines": lines[ext]} for ext, body in grouped.items()]


def all_orders(engine: Engine, store: Store) -> list[dict[str, Any]]:
    with unit_of_work(engine) as s:
        listed = s.scalars(
            select(Order).where(Order.store_id == store.id).order_by(Order.external_id)
        ).all()
        out = [o.model_dump(mode="json") for o in orders.out_many(s, listed)]
    for o in out:
        o.pop("id")
    return out


def test_fast_path_equals_the_order_service(engine: Engine, tmp_path: Path) -> None:
    shop = generate(GeneratorParams(customers=60, orders=400, seed=3, days=90))
    paths = write_shop(shop, tmp_path, "parquet")
    by_file, by_service = new_store(engine), new_store(engine)
    report = run(engine, by_file, "orders", paths["orders"])
    assert report.committed and report.created == len(order_bodies(shop.orders))
    with unit_of_work(engine) as s:
        store = stores.get(s, by_service.slug)
        records = [OrderIn.model_validate(b) for b in order_bodies(shop.orders)]
        results = orders.upsert_many(s, store, records)
        assert {r.status for r in results} == {"created"}
    assert all_orders(engine, by_file) == all_orders(engine, by_service)
    assert timeline(engine, by_file) == timeline(engine, by_service)
    assert counts(engine, by_file) == counts(engine, by_service)


def test_losing_a_race_on_an_external_id(
    engine: Engine, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: the import holds the write lock")
    real = bulk.insert_new_orders
    calls: list[int] = []

    def racing(session: Any, new: bulk.NewOrders, *args: Any, **kwargs: Any) -> None:
        if not calls:  # another writer stores O-2 between the look-up and the COPY
            with unit_of_work(engine) as other:
                other.execute(text("SET LOCAL lock_timeout = '5s'"))
                body = {
                    "external_id": "O-2",
                    "customer_external_id": "C-2",
                    "currency": "CNY",
                    "channel": "web",
                    "placed_at": "2026-01-05T10:00:00+08:00",
                    "shipping_total": "10.00",
                    "lines": [
                        {"sku": "SKU-3", "quantity": 1, "unit_price": "80", "discount": "5.00"}
                    ],
                }
                st_ = stores.get(other, store.slug)
                orders.upsert_many(other, st_, [OrderIn.model_validate(body)])
        calls.append(len(new))
        real(session, new, *args, **kwargs)

    # The customers exist before: the import's own stubs would make the other writer
    # wait for the import, and the import wait for the other writer.
    people = [{"external_id": c} for c in ("C-1", "C-2")]
    run(engine, store, "customers", write_csv(tmp_path / "c.csv", people))
    monkeypatch.setattr(bulk, "insert_new_orders", racing)
    report = run(engine, store, "orders", write_csv(tmp_path / "o.csv", sample()))
    assert calls == [3, 2]  # the COPY was rolled back to its savepoint and redone
    assert report.committed and not report.errors
    assert (report.created, report.unchanged) == (2, 1)
    assert counts(engine, store)["orders"] == 3


@pytest.mark.parametrize("fk_triggers", [False, True])
def test_postgres_with_and_without_fk_triggers(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fk_triggers: bool
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    seen: list[str] = []
    real = bulk.orders_with_pending_refunds

    def spy(session: Any, store_id: int) -> set[str]:
        seen.append(session.execute(text("SHOW session_replication_role")).scalar_one())
        return real(session, store_id)

    monkeypatch.setattr(bulk, "orders_with_pending_refunds", spy)
    store = new_store(engine)
    path = write_csv(tmp_path / "o.csv", sample())
    report = files.import_file(engine, store.slug, "orders", path, fk_triggers=fk_triggers)
    assert report.created == 3
    assert seen == ["origin"]  # triggers are back on for everything after the COPY
    reference = new_store(engine)
    files.import_file(engine, reference.slug, "orders", path, fk_triggers=not fk_triggers)
    assert all_orders(engine, store) == all_orders(engine, reference)


def test_mixed_currencies_in_one_file(engine: Engine, store: Store, tmp_path: Path) -> None:
    rows = [
        {
            **sample()[0],
            "external_id": "O-K",
            "currency": "KWD",
            "unit_price": "1.234",
            "line_discount": "0.004",
            "shipping_total": "0.5",
        },
        {**sample()[0], "external_id": "O-J", "currency": "JPY", "unit_price": "1200.5"},
        {**sample()[0], "external_id": "O-C", "currency": "cny"},
    ]
    report = run(engine, store, "orders", write_csv(tmp_path / "o.csv", rows), "skip-bad-rows")
    assert [(e.row, e.column) for e in report.errors] == [(3, "unit_price")]  # 5.00 is fine
    assert "has more decimal places than JPY allows (0)" in report.errors[0].reason
    assert report.created == 2
    with unit_of_work(engine) as s:
        st_ = stores.get(s, store.slug)
        kwd = orders.read(s, st_, "O-K")
        assert (kwd.total, kwd.currency) == (Decimal("2.964"), "KWD")
        assert orders.read(s, st_, "O-C").currency == "CNY"
