"""`patron import`: files in, with the API's rules, all-or-nothing or skipping bad rows.

Every test runs on SQLite and PostgreSQL (the `engine` fixture). Row numbers count the
header as row 1.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from patron.config import get_settings
from patron.customers.models import Consent, Customer, Touchpoint
from patron.customers.service import customers
from patron.db import default_engine, unit_of_work
from patron.demo.generator import GeneratorParams, generate, write_shop
from patron.ingest.files import ImportReport, Mode, import_file
from patron.orders.models import Order, OrderLine, Product, Refund
from patron.orders.service import orders, refunds
from patron.stores.models import Store
from patron.stores.service import stores
from tests.conftest import new_store

HEADER = [
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


def line(ext: str = "O-1", **over: str) -> dict[str, str]:
    row = {
        "external_id": ext,
        "customer_external_id": "C-1",
        "placed_at": "2026-01-05T10:00:00+08:00",
        "status": "placed",
        "currency": "CNY",
        "channel": "web",
        "discount_code": "",
        "shipping_total": "10.00",
        "paid_at": "",
        "delivered_at": "",
        "sku": "SKU-1",
        "quantity": "2",
        "unit_price": "50.00",
        "line_discount": "5.00",
    }
    row.update(over)
    return row


def sample() -> list[dict[str, str]]:
    """Three orders; O-1's two lines are not adjacent (rows 2 and 4)."""
    return [
        line("O-1"),
        line("O-2", customer_external_id="C-2", sku="SKU-3", quantity="1", unit_price="80"),
        line("O-1", sku="SKU-2", quantity="1", unit_price="30.00", line_discount="0"),
        line(
            "O-3",
            customer_external_id="C-1",
            currency="JPY",
            shipping_total="0",
            sku="SKU-9",
            quantity="3",
            unit_price="1200",
            line_discount="",
            status="paid",
            paid_at="2026-01-06T09:00:00Z",
        ),
    ]


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    header = header or list(rows[0]) if rows else header or HEADER
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        out.writeheader()
        out.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = {name: [r.get(name) or None for r in rows] for name in rows[0]}
    pq.write_table(pa.table(columns), path)
    return path


def run(
    engine: Engine, store: Store, kind: str, path: Path, mode: Mode = "all-or-nothing"
) -> ImportReport:
    return import_file(engine, store.slug, kind, path, mode=mode)  # type: ignore[arg-type]


def counts(engine: Engine, store: Store) -> dict[str, int]:
    with unit_of_work(engine) as s:
        sid = store.id
        return {
            "orders": s.scalar(select(func.count()).where(Order.store_id == sid)) or 0,
            "lines": s.scalar(
                select(func.count())
                .select_from(OrderLine)
                .join(Order, Order.id == OrderLine.order_id)
                .where(Order.store_id == sid)
            )
            or 0,
            "customers": s.scalar(select(func.count()).where(Customer.store_id == sid)) or 0,
            "touchpoints": s.scalar(select(func.count()).where(Touchpoint.store_id == sid)) or 0,
            "refunds": s.scalar(select(func.count()).where(Refund.store_id == sid)) or 0,
            "products": s.scalar(select(func.count()).where(Product.store_id == sid)) or 0,
        }


def order_json(engine: Engine, store: Store, ext: str) -> dict[str, Any]:
    with unit_of_work(engine) as s:
        out = orders.read(s, stores.get(s, store.slug), ext).model_dump(mode="json")
    out.pop("id")
    return out


def timeline(engine: Engine, store: Store) -> list[tuple[str, str | None, str, Any]]:
    with unit_of_work(engine) as s:
        rows = s.execute(
            select(Touchpoint, Customer.external_id)
            .join(Customer, Customer.id == Touchpoint.customer_id)
            .where(Touchpoint.store_id == store.id)
        ).all()
        # Consents given in a file are recorded at the time of the import.
        return sorted(
            (
                ext,
                t.ref,
                t.kind.value,
                (
                    "" if t.kind.value == "consent" else t.occurred_at.isoformat(),
                    sorted(t.data.items()),
                ),
            )
            for t, ext in rows
        )


def errors_of(report: ImportReport) -> list[tuple[int, str, str | None]]:
    return [(e.row, e.column, e.external_id) for e in report.errors]


# ---------------------------------------------------------------------------------------
# Orders
# ---------------------------------------------------------------------------------------


def test_orders_land_exactly_as_through_the_api(
    engine: Engine, store: Store, tmp_path: Path, client: TestClient
) -> None:
    report = run(engine, store, "orders", write_csv(tmp_path / "o.csv", sample()))
    assert report.committed and not report.errors
    assert (report.rows, report.records, report.created) == (4, 3, 3)

    # The same orders through the REST API, into another store.
    other = new_store(engine)
    from patron.auth import Scope
    from tests.conftest import key_headers

    headers = key_headers(engine, other, Scope.admin)
    bodies = {
        "O-1": {
            "external_id": "O-1",
            "customer_external_id": "C-1",
            "currency": "CNY",
            "channel": "web",
            "placed_at": "2026-01-05T10:00:00+08:00",
            "shipping_total": "10.00",
            "lines": [
                {"sku": "SKU-1", "quantity": 2, "unit_price": "50.00", "discount": "5.00"},
                {"sku": "SKU-2", "quantity": 1, "unit_price": "30.00"},
            ],
        },
        "O-2": {
            "external_id": "O-2",
            "customer_external_id": "C-2",
            "currency": "CNY",
            "channel": "web",
            "placed_at": "2026-01-05T10:00:00+08:00",
            "shipping_total": "10.00",
            "lines": [{"sku": "SKU-3", "quantity": 1, "unit_price": "80", "discount": "5.00"}],
        },
        "O-3": {
            "external_id": "O-3",
            "customer_external_id": "C-1",
            "currency": "JPY",
            "channel": "web",
            "status": "paid",
            "placed_at": "2026-01-05T10:00:00+08:00",
            "paid_at": "2026-01-06T09:00:00Z",
            "lines": [{"sku": "SKU-9", "quantity": 3, "unit_price": "1200"}],
        },
    }
    for ext, body in bodies.items():
        res = client.put(f"/v1/orders/{ext}", json=body, headers=headers)
        assert res.status_code == 201, res.text
    for ext in bodies:
        assert order_json(engine, store, ext) == order_json(engine, other, ext)
    got = order_json(engine, store, "O-1")
    assert got["total"] == "135.00" and [ln["sku"] for ln in got["lines"]] == ["SKU-1", "SKU-2"]
    assert order_json(engine, store, "O-3")["total"] == "3600"
    # the same timeline (order touchpoints) and stub customers
    assert timeline(engine, store) == timeline(engine, other)
    with unit_of_work(engine) as s:
        stub = customers.read(s, stores.get(s, store.slug), "C-2")
    assert stub.is_stub


def test_order_without_lines_takes_its_total(engine: Engine, store: Store, tmp_path: Path) -> None:
    rows = [
        line("O-1", sku="", quantity="", unit_price="", line_discount="", total="80.00"),
        line("O-2", total="105.00"),
    ]
    report = run(engine, store, "orders", write_csv(tmp_path / "o.csv", rows))
    assert report.committed, report.errors
    got = order_json(engine, store, "O-1")
    assert (got["total"], got["subtotal"], got["lines"]) == ("80.00", "70.00", [])


def test_all_or_nothing_writes_nothing_on_one_bad_row(
    engine: Engine, store: Store, tmp_path: Path
) -> None:
    rows = [*sample(), line("O-4", unit_price="12,50")]
    before = counts(engine, store)
    report = run(engine, store, "orders", write_csv(tmp_path / "o.csv", rows))
    assert not report.committed
    assert errors_of(report) == [(6, "unit_price", "O-4")]
    assert "not a decimal amount" in report.errors[0].reason
    assert report.created == 0 and report.failed == 1 and report.rows_skipped == 5
    assert counts(engine, store) == before  # no orders, no stub customers, no touchpoints


BAD_ROWS: list[tuple[dict[str, str], str, str]] = [
    ({"unit_price": "12,50"}, "unit_price", "not a decimal amount"),
    ({"unit_price": "1.234"}, "unit_price", "more decimal places than CNY allows (2)"),
    ({"shipping_total": "-1"}, "shipping_total", "must not be negative"),
    ({"unit_price": "99999999999999999"}, "unit_price", "out of range"),
    ({"quantity": "0"}, "quantity", "between 1 and 1,000,000"),
    ({"quantity": "99999999999999999999"}, "quantity", "between 1 and 1,000,000"),
    ({"quantity": "1.5"}, "quantity", "not a whole number"),
    ({"placed_at": "2026-13-01T00:00:00Z"}, "placed_at", "not an ISO 8601 timestamp"),
    ({"placed_at": "2026-01-05T10:00:00"}, "placed_at", "time zone offset"),
    ({"paid_at": "2026-02-30T10:00:00Z"}, "paid_at", "no such day"),
    ({"status": "shipped"}, "status", "not one of placed, paid"),
    ({"status": "refunded"}, "status", "set by refunds"),
    ({"currency": "yuan"}, "currency", "ISO 4217"),
    ({"customer_external_id": ""}, "customer_external_id", "required"),
    ({"sku": "SKU\x00-1"}, "sku", "NUL"),
    ({"external_id": "O-4" + "x" * 200}, "external_id", "at most 128 characters"),
    ({"channel": "c" * 40}, "channel", "at most 32 characters"),
    ({"line_discount": "200.00"}, "line_discount", "larger than the line amount"),
    ({"unit_price": ""}, "unit_price", "required for an order line"),
]


@pytest.mark.parametrize(("change", "column", "reason"), BAD_ROWS)
def test_skip_bad_rows_reports_row_column_and_reason(
    engine: Engine,
    store: Store,
    tmp_path: Path,
    change: dict[str, str],
    column: str,
    reason: str,
) -> None:
    rows = [*sample(), line("O-4", **change)]
    report = run(engine, store, "orders", write_csv(tmp_path / "o.csv", rows), "skip-bad-rows")
    assert report.committed
    assert [(e.row, e.column) for e in report.errors] == [(6, column)]
    assert reason in report.errors[0].reason
    assert (report.created, report.failed, report.rows_skipped) == (3, 1, 1)
    assert counts(engine, store)["orders"] == 3


def test_all_rows_of_an_order_with_a_bad_row_are_skipped_and_reported(
    engine: Engine, store: Store, tmp_path: Path
) -> None:
    rows = sample()
    rows[2]["unit_price"] = "abc"  # the second line of O-1 (row 4)
    report = run(engine, store, "orders", write_csv(tmp_path / "o.csv", rows), "skip-bad-rows")
    assert errors_of(report) == [(2, "", "O-1"), (4, "unit_price", "O-1")]
    assert "skipped with its order 'O-1': row 4 is invalid" in report.errors[0].reason
    assert report.rows_skipped == 2 and report.created == 2
    assert counts(engine, store)["lines"] == 2  # O-2 and O-3 only


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("currency", "USD"),
        ("placed_at", "2026-01-05T11:00:00+08:00"),
        ("status", "paid"),
        ("shipping_total", "0.00"),
        ("customer_external_id", "C-9"),
    ],
)
def test_lines_of_one_order_must_agree(
    engine: Engine, store: Store, tmp_path: Path, column: str, value: str
) -> None:
    rows = sample()
    rows[2][column] = value
    report = run(engine, store, "orders", write_csv(tmp_path / "o.csv", rows), "skip-bad-rows")
    bad = [e for e in report.errors if e.column]
    assert [(e.row, e.column) for e in bad] == [(4, column)]
    assert "differs from row 2 of the same order" in bad[0].reason
    assert report.created == 2


def test_equal_amounts_written_differently_agree(
    engine: Engine, store: Store, tmp_path: Path
) -> None:
    rows = sample()
    rows[2]["shipping_total"] = "10.0"  # row 2 says 10.00
    rows[2]["placed_at"] = "2026-01-05T02:00:00Z"  # the same instant as +08:00 10:00
    report = run(engine, store, "orders", write_csv(tmp_path / "o.csv", rows))
    assert report.committed, report.errors


def test_wrong_total_is_refused(engine: Engine, store: Store, tmp_path: Path) -> None:
    rows = [{**r, "total": "135.00"} for r in sample()[:1]]
    rows.append({**line("O-1", sku="SKU-2", quantity="1", unit_price="30.00"), "total": "135"})
    report = run(engine, store, "orders", write_csv(tmp_path / "o.csv", rows))
    assert [(e.row, e.column) for e in report.errors] == [(2, "total")]
    assert "does not equal lines − discount + shipping + tax (130.00)" in report.errors[0].reason


def test_missing_required_column_is_named_and_nothing_is_written(
    engine: Engine, store: Store, tmp_path: Path
) -> None:
    header = [h for h in HEADER if h != "placed_at"] + ["shipping"]
    path = write_csv(tmp_path / "o.csv", sample(), header)
    for mode in ("all-or-nothing", "skip-bad-rows"):
        report = run(engine, store, "orders", path, mode)  # type: ignore[arg-type]
        assert not report.committed
        assert [(e.row, e.column) for e in report.errors] == [(1, "shipping"), (1, "placed_at")]
        assert report.errors[0].reason.startswith("unknown column")
        assert report.errors[1].reason == "required column is missing"
    assert counts(engine, store)["orders"] == 0


def test_reimport_changes_nothing(engine: Engine, store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "o.csv", sample())
    first = run(engine, store, "orders", path)
    after_first = counts(engine, store)
    again = run(engine, store, "orders", path)
    assert (first.created, again.created, again.updated, again.unchanged) == (3, 0, 0, 3)
    assert again.committed and not again.errors
    assert counts(engine, store) == after_first  # no second touchpoint, line or stub


def test_a_later_file_advances_status_and_refuses_changed_content(
    engine: Engine, store: Store, tmp_path: Path
) -> None:
    run(engine, store, "orders", write_csv(tmp_path / "o.csv", sample()))
    advanced = sample()
    for row in advanced:
        if row["external_id"] == "O-1":
            row.update(status="paid", paid_at="2026-01-05T10:05:00+08:00")
    report = run(engine, store, "orders", write_csv(tmp_path / "o2.csv", advanced))
    assert (report.updated, report.unchanged, report.created) == (1, 2, 0)
    assert order_json(engine, store, "O-1")["status"] == "paid"

    changed = sample()
    changed[0]["quantity"] = "3"
    report = run(engine, store, "orders", write_csv(tmp_path / "o3.csv", changed))
    assert not report.committed
    assert errors_of(report) == [(2, "", "O-1")]
    assert "different total, lines" in report.errors[0].reason
    assert order_json(engine, store, "O-1")["total"] == "135.00"

    report = run(engine, store, "orders", tmp_path / "o3.csv", "skip-bad-rows")
    assert report.committed and report.unchanged == 2 and report.failed == 1
    assert errors_of(report) == [(2, "", "O-1"), (4, "", "O-1")]


def test_api_after_file_import(
    engine: Engine, store: Store, tmp_path: Path, client: TestClient, admin: dict[str, str]
) -> None:
    run(engine, store, "orders", write_csv(tmp_path / "o.csv", sample()))
    with unit_of_work(engine) as s:
        hashes = s.scalars(select(Order.payload_hash).where(Order.store_id == store.id)).all()
    assert hashes == [None, None, None]  # file imports store no API payload hash
    body: dict[str, Any] = {
        "external_id": "O-1",
        "customer_external_id": "C-1",
        "currency": "CNY",
        "channel": "web",
        "placed_at": "2026-01-05T10:00:00+08:00",
        "shipping_total": "10.00",
        "lines": [
            {"sku": "SKU-1", "quantity": 2, "unit_price": "50.00", "discount": "5.00"},
            {"sku": "SKU-2", "quantity": 1, "unit_price": "30.00"},
        ],
    }
    paid = {**body, "status": "paid", "paid_at": "2026-01-05T10:05:00+08:00"}
    res = client.put("/v1/orders/O-1", json=paid, headers=admin)
    assert res.status_code == 200 and res.json()["status"] == "updated", res.text
    changed = {**body, "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": "50.00"}]}
    res = client.put("/v1/orders/O-1", json=changed, headers=admin)
    assert res.status_code == 409 and "lines" in res.json()["detail"]


def test_refunds_before_their_orders(engine: Engine, store: Store, tmp_path: Path) -> None:
    refund_rows = [
        {
            "external_id": "R-1",
            "order_external_id": "O-1",
            "refunded_at": "2026-01-10T00:00:00Z",
            "amount": "",
            "sku": "SKU-1",
            "quantity": "1",
            "reason": "damaged",
        },
        {
            "external_id": "R-2",
            "order_external_id": "O-2",
            "refunded_at": "2026-01-11T00:00:00Z",
            "amount": "20.00",
            "sku": "",
            "quantity": "",
            "reason": "",
        },
    ]
    refunds_csv = write_csv(tmp_path / "r.csv", refund_rows)
    report = run(engine, store, "refunds", refunds_csv)
    assert (report.pending, report.created) == (2, 0)
    report = run(engine, store, "orders", write_csv(tmp_path / "o.csv", sample()))
    assert report.created == 3
    assert order_json(engine, store, "O-1")["refunded_total"] == "47.50"  # (2×50 − 5) / 2
    assert order_json(engine, store, "O-2")["refunded_total"] == "20.00"
    with unit_of_work(engine) as s:
        st = stores.get(s, store.slug)
        assert refunds.read(s, st, "R-1").state == "applied"
    kinds = [k for _, _, k, _ in timeline(engine, store)]
    assert kinds.count("refund") == 2 and kinds.count("order") == 3
    again = run(engine, store, "refunds", refunds_csv)
    assert (again.unchanged, again.created, again.pending) == (2, 0, 0)


def test_a_refund_of_several_rows_and_its_errors(
    engine: Engine, store: Store, tmp_path: Path
) -> None:
    run(engine, store, "orders", write_csv(tmp_path / "o.csv", sample()))
    base = {"order_external_id": "O-1", "refunded_at": "2026-01-10T00:00:00Z", "reason": "x"}
    rows = [
        {"external_id": "R-1", **base, "sku": "SKU-1", "quantity": "2"},
        {"external_id": "R-2", **base, "sku": "SKU-2", "quantity": "zero"},
        {"external_id": "R-1", **base, "sku": "SKU-2", "quantity": "1"},
        {"external_id": "R-2", **base, "sku": "SKU-1", "quantity": "1"},
    ]
    report = run(engine, store, "refunds", write_csv(tmp_path / "r.csv", rows), "skip-bad-rows")
    assert report.created == 1 and report.failed == 1
    assert errors_of(report) == [(3, "quantity", "R-2"), (5, "", "R-2")]
    assert order_json(engine, store, "O-1")["refunded_total"] == "125.00"  # both lines


def test_parquet_and_csv_give_the_same_result(engine: Engine, tmp_path: Path) -> None:
    shop = generate(GeneratorParams(customers=40, orders=250, seed=7, days=120))
    results = []
    for fmt in ("csv", "parquet"):
        paths = write_shop(shop, tmp_path / fmt, fmt)  # type: ignore[arg-type]
        store = new_store(engine)
        for kind in ("customers", "products", "refunds", "orders"):
            report = run(engine, store, kind, paths[kind])
            assert report.committed and not report.errors, (fmt, kind, report.errors[:3])
        with unit_of_work(engine) as s:
            st = stores.get(s, store.slug)
            listed = s.scalars(
                select(Order).where(Order.store_id == st.id).order_by(Order.external_id)
            ).all()
            out = [o.model_dump(mode="json") for o in orders.out_many(s, listed)]
            people = [customers.read(s, st, f"C{i:06d}").model_dump(mode="json") for i in (1, 2)]
        for o in out:
            o.pop("id")
        for p in people:
            for key in ("id", "created_at", "updated_at"):
                p.pop(key)
            for consent in p["consents"]:
                consent.pop("recorded_at")  # the time of each import
        results.append((out, people, counts(engine, store), timeline(engine, store)))
    assert results[0] == results[1]
    out, people, count, _ = results[0]
    assert len(out) == len(shop.orders.column("external_id").unique())
    assert count["refunds"] == shop.refunds.num_rows
    assert people[0]["attributes"] and people[0]["birthday"] is not None


# ---------------------------------------------------------------------------------------
# Customers and products
# ---------------------------------------------------------------------------------------


def test_customers_with_consents_attributes_and_errors(
    engine: Engine, store: Store, tmp_path: Path
) -> None:
    rows = [
        {
            "external_id": "C-1",
            "email": "Li.Jing@Example.com",
            "first_name": "静",
            "birthday": "1990-05-01",
            "created_at": "2025-01-01T08:00:00+08:00",
            "attributes": '{"skin_type": "dry"}',
            "flagged": "false",
            "consent_email": "true",
            "consent_sms": "",
        },
        {
            **dict.fromkeys(["email", "first_name", "birthday", "created_at"], ""),
            "external_id": "C-2",
            "attributes": "{oops",
            "flagged": "",
            "consent_email": "",
            "consent_sms": "maybe",
        },
        {
            "external_id": "C-3",
            "email": "not-an-email",
            "attributes": "",
            "flagged": "true",
            "consent_email": "",
            "consent_sms": "false",
            "first_name": "",
            "birthday": "",
            "created_at": "",
        },
    ]
    path = write_csv(tmp_path / "c.csv", rows, list(rows[0]))
    report = run(engine, store, "customers", path, "skip-bad-rows")
    assert errors_of(report) == [
        (3, "attributes", "C-2"),
        (3, "consent_sms", "C-2"),
        (4, "email", "C-3"),
    ]
    assert report.created == 1 and report.failed == 2
    with unit_of_work(engine) as s:
        got = customers.read(s, stores.get(s, store.slug), "C-1")
        assert got.email == "li.jing@example.com" and got.attributes == {"skin_type": "dry"}
        assert [(c.channel.value, c.granted, c.source) for c in got.consents] == [
            ("email", True, "import")
        ]
        assert s.scalar(select(func.count()).where(Consent.store_id == store.id)) == 1

    good = write_csv(tmp_path / "c1.csv", rows[:1], list(rows[0]))
    assert run(engine, store, "customers", good).unchanged == 1
    renamed = write_csv(tmp_path / "c2.csv", [{**rows[0], "first_name": "晶"}], list(rows[0]))
    assert run(engine, store, "customers", renamed).updated == 1


def test_products_and_a_bad_price(engine: Engine, store: Store, tmp_path: Path) -> None:
    rows = [
        {
            "sku": "SKU-1",
            "name": "玫瑰精华 Rose Serum",
            "category": "skincare",
            "price": "299.00",
            "currency": "CNY",
        },
        {"sku": "SKU-2", "name": "Cream", "category": "", "price": "-3", "currency": "CNY"},
    ]
    path = write_csv(tmp_path / "p.csv", rows)
    report = run(engine, store, "products", path)
    assert not report.committed and errors_of(report) == [(3, "price", "SKU-2")]
    report = run(engine, store, "products", path, "skip-bad-rows")
    assert report.created == 1 and counts(engine, store)["products"] == 1
    assert run(engine, store, "products", path, "skip-bad-rows").unchanged == 1


# ---------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------


def test_unreadable_rows_unicode_and_line_breaks(
    engine: Engine, store: Store, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "o.csv", sample())
    text = path.read_text(encoding="utf-8").splitlines()
    text.insert(2, '"O-2","C-2","2026-01-05T10:00:00Z",broken')  # row 3: too few fields
    text.append(
        '"O-5","C-5","2026-01-05T10:00:00Z","placed","CNY","web",,0,,,"SKU-\nline",1,9.90,0'
    )  # row 7: a quoted line break
    text.append('"O-6","顾客-6","2026-01-05T10:00:00Z","placed","CNY","微信",,0,,,"面霜",1,9.9,0')
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    report = run(engine, store, "orders", path, "skip-bad-rows")
    assert errors_of(report) == [(3, "", "O-2"), (4, "", "O-2")]
    assert "has 4 fields but the header has 14" in report.errors[0].reason
    assert "could not be read (row 3)" in report.errors[1].reason
    assert report.created == 4  # O-1, O-3, O-5, O-6; O-2 is refused with its broken row
    assert order_json(engine, store, "O-6")["lines"][0]["sku"] == "面霜"
    assert order_json(engine, store, "O-5")["lines"][0]["sku"] == "SKU-\nline"


def test_invalid_utf8_is_a_row_error(engine: Engine, store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "o.csv", sample())
    data = path.read_bytes().replace(b"SKU-3", b"SKU-\xff")
    path.write_bytes(data)
    report = run(engine, store, "orders", path, "skip-bad-rows")
    assert errors_of(report) == [(3, "sku", "O-2")]
    assert report.errors[0].reason == "not valid UTF-8 text"
    assert report.created == 2


# ---------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(engine: Engine) -> Iterator[None]:
    old = os.environ.get("PATRON_DATABASE_URL")
    os.environ["PATRON_DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
    get_settings.cache_clear()
    default_engine.cache_clear()
    yield
    default_engine().dispose()
    if old is None:
        os.environ.pop("PATRON_DATABASE_URL", None)
    else:
        os.environ["PATRON_DATABASE_URL"] = old
    get_settings.cache_clear()
    default_engine.cache_clear()


def test_cli_exit_codes_tables_and_error_file(
    engine: Engine, store: Store, tmp_path: Path, cli_env: None
) -> None:
    from patron.cli import app

    runner = CliRunner()
    bad = write_csv(tmp_path / "bad.csv", [*sample(), line("O-4", quantity="0")])
    errors = tmp_path / "errors.csv"
    res = runner.invoke(app, ["import", "orders", str(bad), "--store", store.slug])
    assert res.exit_code == 1, res.output
    assert "Nothing was written" in res.output and "quantity" in res.output
    assert counts(engine, store)["orders"] == 0

    args = ["import", "orders", str(bad), "-s", store.slug, "--skip-bad-rows", "--errors"]
    res = runner.invoke(app, [*args, str(errors)])
    assert res.exit_code == 3, res.output
    assert "1 rows skipped" in res.output
    with errors.open(encoding="utf-8") as f:
        assert list(csv.reader(f)) == [
            ["row", "column", "external_id", "reason"],
            ["6", "quantity", "O-4", "must be between 1 and 1,000,000 (got '0')"],
        ]
    res = runner.invoke(app, ["import", "orders", str(bad), "-s", store.slug, "--skip-bad-rows"])
    assert res.exit_code == 3 and "unchanged" in res.output

    good = write_parquet(tmp_path / "good.parquet", [line("O-9")])
    res = runner.invoke(
        app, ["import", "orders", str(good), "-s", store.slug, "--keep-fk-triggers"]
    )
    assert res.exit_code == 0, res.output
    assert "All 1 rows imported" in res.output
    res = runner.invoke(app, ["import", "orders", str(good), "-s", "no-such-store"])
    assert res.exit_code == 1 and "no store 'no-such-store'" in res.output


def test_a_refund_refused_by_the_service_reports_all_its_rows(
    engine: Engine, store: Store, tmp_path: Path
) -> None:
    run(engine, store, "orders", write_csv(tmp_path / "o.csv", sample()))
    base = {"order_external_id": "O-2", "refunded_at": "2026-01-10T00:00:00Z", "reason": "x"}
    rows = [
        {"external_id": "R-9", **base, "amount": "500.00", "sku": "SKU-3", "quantity": "1"},
        {"external_id": "R-9", **base, "amount": "500.00", "sku": "SKU-3", "quantity": "1"},
    ]
    path = write_csv(tmp_path / "r.csv", rows)
    report = run(engine, store, "refunds", path, "skip-bad-rows")
    assert errors_of(report) == [(2, "", "R-9"), (3, "", "R-9")]
    assert "exceeds" in report.errors[0].reason or "left to refund" in report.errors[0].reason
    assert report.failed == 1 and counts(engine, store)["refunds"] == 0


def test_values_wider_than_their_database_column_are_row_errors(
    engine: Engine, store: Store, tmp_path: Path
) -> None:
    rows = [
        {"external_id": "C-1", "locale": "zh-Hans-CN-x-private"},  # 20 > 16 characters
        {"external_id": "C-2", "locale": "zh-CN"},
    ]
    report = run(engine, store, "customers", write_csv(tmp_path / "c.csv", rows), "skip-bad-rows")
    assert errors_of(report) == [(2, "locale", "C-1")]
    assert report.created == 1


def test_a_database_refusal_fails_cleanly(
    engine: Engine, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import DataError

    from patron.ingest import files

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise DataError("INSERT ...", {}, Exception("value too long for type character(3)"))

    monkeypatch.setitem(files._APPLY, "products", refuse)
    rows = [{"sku": "SKU-1", "name": "x", "price": "1.00", "currency": "CNY"}]
    with pytest.raises(files.ImportFailed, match="nothing was written: value too long"):
        run(engine, store, "products", write_csv(tmp_path / "p.csv", rows))
    assert counts(engine, store)["products"] == 0
