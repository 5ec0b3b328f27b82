"""Analysis sources: order files read by the engine, and the Patron database.

Files: column aliases, time-zone conversion across daylight-saving changes, naive times
kept, cancelled orders dropped, the generator's order lines aggregated (checked against
decimal arithmetic in Python), customer and refund files, and clear errors. Database: one
store's orders and customers on SQLite and PostgreSQL, amounts in minor units scaled by
the currency, local time, cancelled orders left out, members, NPS and complaints.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine as SqlEngine

from patron.analytics.frame import Engine, Frame
from patron.analytics.sources import open_source
from patron.customers.models import Customer, Touchpoint, TouchpointKind
from patron.db import unit_of_work
from patron.demo.generator import GeneratorParams, generate, write_shop
from patron.loyalty.models import LoyaltyMember
from patron.orders.models import Order, OrderLine, OrderStatus
from patron.stores.models import Store
from tests.conftest import new_store


def orders_of(frame: Frame) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = frame.orders.to_pyarrow().to_pylist()
    return sorted(rows, key=lambda r: (r["placed_at"], r["amount"]))


def customers_of(frame: Frame) -> dict[str, dict[str, Any]]:
    return {r.pop("customer_id"): r for r in frame.customers.to_pyarrow().to_pylist()}


def write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


# --- files ---------------------------------------------------------------------------------


def test_csv_aliases_zones_and_cancellations(
    analytics_engine: Engine, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Paris: CET (+1) until 2024-03-31 01:00Z, CEST (+2) until 2024-10-27 01:00Z.
    orders = write(
        tmp_path / "orders.csv",
        """
Customer,ts,Total,status,discount_code,channel
c1,2024-03-31T00:30:00Z,10.50,paid,,web
c1,2024-03-31T01:30:00Z,20.00,delivered,SAVE10,app
c2,2024-10-27T00:30:00Z,30.00,Delivered,,
c2,2024-10-27T01:30:00Z,40.00,refunded, ,web
c3,2024-06-01T12:00:00+08:00,50.00,paid,,web
c3,2024-06-02T12:00:00+08:00,999.00,Cancelled,,web
""",
    )
    frame = open_source(orders, engine=analytics_engine, timezone="Europe/Paris", currency="EUR")
    assert capfd.readouterr().out == ""  # a source never prints
    assert (frame.timezone, frame.currency) == ("Europe/Paris", "EUR")
    got = [
        (r["customer_id"], r["placed_at"], r["amount"], r["discounted"], r["channel"])
        for r in orders_of(frame)
    ]
    assert got == [
        ("c1", datetime(2024, 3, 31, 1, 30), 10.5, False, "web"),
        ("c1", datetime(2024, 3, 31, 3, 30), 20.0, True, "app"),
        ("c3", datetime(2024, 6, 1, 6, 0), 50.0, False, "web"),
        ("c2", datetime(2024, 10, 27, 2, 30), 30.0, False, None),  # still summer time
        ("c2", datetime(2024, 10, 27, 2, 30), 40.0, False, "web"),  # the hour again
    ]
    row = orders_of(frame)[0]
    assert (row["order_id"], row["refunded_amount"], row["cost"]) == (None, 0.0, None)
    assert frame.as_of == datetime(2024, 10, 28)
    assert customers_of(frame) == {
        c: {"is_member": False, "nps": None, "complained_at": None} for c in ("c1", "c2", "c3")
    }


def test_zones_without_changes_shift_by_their_fixed_offset(tmp_path: Path) -> None:
    orders = write(
        tmp_path / "orders.csv",
        """
customer_id,placed_at,amount
a,2024-07-01T22:30:00Z,1
a,1960-01-01T00:00:00+02:00,1
""",
    )
    in_utc = open_source(orders)  # the default zone
    assert in_utc.timezone == "UTC"
    assert [r["placed_at"] for r in orders_of(in_utc)] == [
        datetime(1959, 12, 31, 22, 0),
        datetime(2024, 7, 1, 22, 30),
    ]
    # Etc/GMT-3 is UTC+3 at every date.
    east = open_source(orders, timezone="Etc/GMT-3")
    assert [r["placed_at"] for r in orders_of(east)] == [
        datetime(1960, 1, 1, 1, 0),
        datetime(2024, 7, 2, 1, 30),
    ]


def test_naive_times_and_dates_are_taken_as_local(tmp_path: Path) -> None:
    dates = write(
        tmp_path / "orders.csv",
        """
customer_external_id,order_date,value
a,2024-01-05,12.5
b,2024-02-29,7
""",
    )
    frame = open_source(dates, timezone="Asia/Shanghai")
    assert [(r["placed_at"], r["amount"]) for r in orders_of(frame)] == [
        (datetime(2024, 1, 5), 12.5),
        (datetime(2024, 2, 29), 7.0),
    ]
    assert frame.currency == "XXX"  # none given, none in the file
    naive = tmp_path / "naive.parquet"
    pq.write_table(
        pa.table(
            {
                "customer": ["a"],
                "timestamp": pa.array([datetime(2024, 7, 1, 23, 59)], pa.timestamp("ms")),
                "revenue": [3.0],
                "currency": ["CNY"],
            }
        ),
        naive,
    )
    frame = open_source(naive, timezone="Asia/Shanghai", as_of=datetime(2025, 1, 1))
    assert orders_of(frame)[0]["placed_at"] == datetime(2024, 7, 1, 23, 59)
    assert (frame.currency, frame.as_of) == ("CNY", datetime(2025, 1, 1))


def expected_generator_orders(shop: Any) -> dict[str, tuple[str, datetime, Decimal, Decimal, bool]]:
    """Order id -> (customer, Shanghai local time, amount, refunded, discounted), computed
    with decimals from the generator's tables."""
    orders: dict[str, list[Any]] = {}
    for line in shop.orders.to_pylist():
        if line["status"] == "cancelled":
            continue
        total = line["unit_price"] * line["quantity"] - line["line_discount"]
        discounted = line["discount_code"] is not None or line["line_discount"] > 0
        if line["external_id"] not in orders:
            local = line["placed_at"].astimezone(UTC).replace(tzinfo=None) + timedelta(hours=8)
            orders[line["external_id"]] = [
                line["customer_external_id"],
                local,
                line["shipping_total"],
                Decimal(0),
                False,
            ]
        orders[line["external_id"]][2] += total
        orders[line["external_id"]][4] |= discounted
    for refund in shop.refunds.to_pylist():
        if refund["order_external_id"] in orders:
            orders[refund["order_external_id"]][3] += refund["amount"]
    return {k: (v[0], v[1], v[2], v[3], v[4]) for k, v in orders.items()}


@pytest.fixture(scope="module")
def small_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    shop = generate(GeneratorParams(customers=150, orders=900, seed=9))
    root = tmp_path_factory.mktemp("shop")
    for fmt in ("csv", "parquet"):
        write_shop(shop, root / fmt, fmt)
    yield shop, root


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_generator_order_lines_are_aggregated_per_order(
    analytics_engine: Engine, small_shop: tuple[Any, Path], fmt: str
) -> None:
    shop, root = small_shop
    frame = open_source(
        root / fmt / f"orders.{fmt}",
        engine=analytics_engine,
        refunds_file=root / fmt / f"refunds.{fmt}",
        timezone="Asia/Shanghai",
    )
    expected = expected_generator_orders(shop)
    got = {r["order_id"]: r for r in frame.orders.to_pyarrow().to_pylist()}
    assert got.keys() == expected.keys()  # cancelled orders are gone
    for order_id, (customer, placed_at, amount, refunded, discounted) in expected.items():
        row = got[order_id]
        assert (row["customer_id"], row["placed_at"], row["discounted"]) == (
            customer,
            placed_at,
            discounted,
        )
        assert row["amount"] == pytest.approx(float(amount), abs=1e-9)
        assert row["refunded_amount"] == pytest.approx(float(refunded), abs=1e-9)
    assert sum(1 for r in got.values() if r["refunded_amount"] > 0) > 0
    assert frame.currency == "CNY"
    last = max(p for _, p, _, _, _ in expected.values())
    assert frame.as_of == datetime(last.year, last.month, last.day) + timedelta(days=1)


def test_customer_file_members_scores_and_complaints(tmp_path: Path) -> None:
    orders = write(
        tmp_path / "orders.csv",
        """
order_id,customer_id,placed_at,amount,discounted
1,a,2024-01-01 10:00:00,10,true
2,b,2024-01-02 10:00:00,20,false
3,z,2024-01-03 10:00:00,30,
""",
    )
    customers = write(
        tmp_path / "customers.csv",
        """
external_id,member,nps,complained_at
a,true,9,2024-01-05T02:00:00Z
b,false,,
c,true,3,
""",
    )
    frame = open_source(orders, customers_file=customers, timezone="Asia/Shanghai")
    assert customers_of(frame) == {
        "a": {"is_member": True, "nps": 9, "complained_at": datetime(2024, 1, 5, 10)},
        "b": {"is_member": False, "nps": None, "complained_at": None},
        "c": {"is_member": True, "nps": 3, "complained_at": None},  # no orders, still known
        "z": {"is_member": False, "nps": None, "complained_at": None},  # ordered, not listed
    }
    assert [r["discounted"] for r in orders_of(frame)] == [True, False, False]
    assert [r["order_id"] for r in orders_of(frame)] == ["1", "2", "3"]


def test_a_directory_of_parquet_files(tmp_path: Path) -> None:
    folder = tmp_path / "orders"
    folder.mkdir()
    for part in range(2):
        pq.write_table(
            pa.table(
                {
                    "customer_id": [f"c{part}"],
                    "placed_at": pa.array([datetime(2024, 1, 1 + part)], pa.timestamp("us")),
                    "amount": [float(part + 1)],
                }
            ),
            folder / f"part-{part}.parquet",
        )
    frame = open_source(folder)
    assert [(r["customer_id"], r["amount"]) for r in orders_of(frame)] == [("c0", 1.0), ("c1", 2.0)]


def test_missing_columns_name_the_accepted_aliases(tmp_path: Path) -> None:
    no_amount = write(tmp_path / "orders.csv", "customer_id,placed_at\na,2024-01-01\n")
    with pytest.raises(ValueError, match=r"no amount column .*amount, total, revenue, value"):
        open_source(no_amount)
    no_customer = write(tmp_path / "o2.csv", "id,placed_at,amount\n1,2024-01-01,3\n")
    with pytest.raises(ValueError, match=r"no customer_id column .*customer_external_id"):
        open_source(no_customer)
    lines = write(
        tmp_path / "lines.csv", "customer_id,placed_at,unit_price,quantity\na,2024-01-01,3,1\n"
    )
    with pytest.raises(ValueError, match=r"no order_id column .*order_id, external_id"):
        open_source(lines)
    refunds = write(tmp_path / "refunds.csv", "order_id,amount\n1,2\n")
    with pytest.raises(ValueError, match="refunds need an order id column"):
        open_source(
            write(tmp_path / "o3.csv", "customer_id,placed_at,amount\na,2024-01-01,3\n"),
            refunds_file=refunds,
        )
    customers = write(tmp_path / "customers.csv", "name,is_member\nx,true\n")
    orders = write(tmp_path / "o4.csv", "customer_id,placed_at,amount\na,2024-01-01,3\n")
    with pytest.raises(ValueError, match=r"no customer_id column .*external_id"):
        open_source(orders, customers_file=customers)


def test_unreadable_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        open_source(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=r"unknown file type '\.xlsx'"):
        open_source(write(tmp_path / "orders.xlsx", "x"))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not a parquet file at all")
    with pytest.raises(ValueError, match=r"broken\.parquet: cannot be read"):
        open_source(broken)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ValueError, match="without Parquet files"):
        open_source(empty_dir)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        open_source(tmp_path / "missing.csv", timezone="Mars/Olympus")


# --- the Patron database -------------------------------------------------------------------


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add_order(session: Any, store: Store, customer: Customer, external_id: str, **kw: Any) -> None:
    values: dict[str, Any] = {
        "status": OrderStatus.paid,
        "channel": "web",
        "currency": store.currency,
        "discount_code": None,
        "subtotal_minor": kw.get("total_minor", 0),
        "discount_minor": 0,
        "shipping_minor": 0,
        "tax_minor": 0,
        "refunded_minor": 0,
    }
    values.update(kw)
    line_discount = values.pop("line_discount_minor", 0)
    order = Order(store_id=store.id, external_id=external_id, customer_id=customer.id, **values)
    session.add(order)
    session.flush()
    session.add(
        OrderLine(
            order_id=order.id,
            line_no=1,
            quantity=1,
            unit_price_minor=values["total_minor"] + line_discount,
            discount_minor=line_discount,
            total_minor=values["total_minor"],
        )
    )


def fill_store(engine: SqlEngine, store: Store) -> None:
    with unit_of_work(engine) as session:
        a, b, c = (Customer(store_id=store.id, external_id=x) for x in ("A", "B", "C"))
        session.add_all([a, b, c])
        session.flush()
        # New York: EST (−5) until 2024-03-10 07:00Z, then EDT (−4).
        add_order(
            session,
            store,
            a,
            "A1",
            placed_at=utc(2024, 3, 10, 6, 30),
            total_minor=1500,
            refunded_minor=500,
            line_discount_minor=100,
        )
        add_order(
            session,
            store,
            a,
            "A2",
            placed_at=utc(2024, 3, 10, 7, 30),
            total_minor=2000,
            discount_code="SAVE",
        )
        add_order(
            session,
            store,
            b,
            "B1",
            placed_at=utc(2024, 7, 1, 3, 0),
            total_minor=999,
            discount_minor=50,
            channel=None,
        )
        add_order(
            session,
            store,
            b,
            "B2",
            placed_at=utc(2024, 7, 2, 12, 0),
            total_minor=100,
            refunded_minor=100,
            status=OrderStatus.refunded,
            discount_code="",
        )
        add_order(
            session,
            store,
            c,
            "C1",
            placed_at=utc(2024, 8, 1, 12, 0),
            total_minor=700,
            status=OrderStatus.cancelled,
        )
        session.add(
            LoyaltyMember(
                store_id=store.id, customer_id=a.id, tier="silver", tier_since=utc(2024, 1, 1)
            )
        )
        answers = [
            (a, utc(2024, 4, 1), {"nps": 3}),
            (a, utc(2024, 5, 1), {"nps": 9}),  # the latest valid answer
            (a, utc(2024, 6, 1), {"comment": "no score"}),
            (a, utc(2024, 6, 2), {"nps": "10"}),  # not an integer
            (a, utc(2024, 6, 3), {"nps": 11}),  # out of range
            (b, utc(2024, 6, 3), {"nps": True}),  # a JSON true is not a score
            (c, utc(2024, 6, 3), {"nps": 0}),
        ]
        for customer, at, data in answers:
            session.add(
                Touchpoint(
                    store_id=store.id,
                    customer_id=customer.id,
                    kind=TouchpointKind.survey_answer,
                    occurred_at=at,
                    data=data,
                )
            )
        for at in (utc(2024, 7, 5, 2, 0), utc(2024, 7, 4, 15, 0)):
            session.add(
                Touchpoint(
                    store_id=store.id,
                    customer_id=b.id,
                    kind=TouchpointKind.ticket,
                    occurred_at=at,
                    data={},
                )
            )


def database_url(engine: SqlEngine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_database_store_orders_and_customers(engine: SqlEngine) -> None:
    store = new_store(engine, currency="JPY", timezone="America/New_York")
    fill_store(engine, store)
    # Another store's data with the same customer ids stays out.
    other = new_store(engine)
    fill_store(engine, other)

    frame = open_source("db", database_url=database_url(engine), store=store.slug)
    assert (frame.timezone, frame.currency) == ("America/New_York", "JPY")
    got = [
        (
            r["order_id"],
            r["customer_id"],
            r["placed_at"],
            r["amount"],
            r["refunded_amount"],
            r["discounted"],
            r["channel"],
        )
        for r in orders_of(frame)
    ]
    assert got == [
        # JPY has no minor unit: 1500 minor units are 1,500 yen.
        ("A1", "A", datetime(2024, 3, 10, 1, 30), 1500.0, 500.0, True, "web"),  # line discount
        ("A2", "A", datetime(2024, 3, 10, 3, 30), 2000.0, 0.0, True, "web"),  # a code
        ("B1", "B", datetime(2024, 6, 30, 23, 0), 999.0, 0.0, True, None),  # order discount
        ("B2", "B", datetime(2024, 7, 2, 8, 0), 100.0, 100.0, False, "web"),  # refunded counts
    ]
    assert frame.as_of == datetime(2024, 7, 3)
    assert customers_of(frame) == {
        "A": {"is_member": True, "nps": 9, "complained_at": None},
        "B": {"is_member": False, "nps": None, "complained_at": datetime(2024, 7, 4, 11, 0)},
        "C": {"is_member": False, "nps": 0, "complained_at": None},  # only a cancelled order
    }


def test_database_amounts_use_the_currency_exponent(engine: SqlEngine) -> None:
    store = new_store(engine, currency="CNY", timezone="Asia/Shanghai")
    with unit_of_work(engine) as session:
        customer = Customer(store_id=store.id, external_id="X")
        session.add(customer)
        session.flush()
        add_order(
            session,
            store,
            customer,
            "X1",
            placed_at=utc(2024, 12, 31, 16, 0),
            total_minor=12345,
            refunded_minor=45,
        )
    frame = open_source("db", database_url=database_url(engine), store=store.slug)
    [row] = orders_of(frame)
    assert (row["placed_at"], row["amount"], row["refunded_amount"]) == (
        datetime(2025, 1, 1, 0, 0),
        123.45,
        0.45,
    )


def test_database_store_must_be_named_and_exist(engine: SqlEngine) -> None:
    new_store(engine)
    new_store(engine)
    with pytest.raises(ValueError, match=r"stores .*name one"):
        open_source("db", database_url=database_url(engine))
    with pytest.raises(ValueError, match="no store 'nowhere'"):
        open_source("db", database_url=database_url(engine), store="nowhere")


def test_a_single_store_database_needs_no_slug(tmp_path: Path) -> None:
    from patron.db import make_engine
    from patron.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'one.db'}"
    engine = make_engine(url)
    upgrade(engine)
    store = new_store(engine, currency="EUR", timezone="Europe/Paris")
    fill_store(engine, store)
    engine.dispose()
    frame = open_source("db", database_url=url)
    assert (frame.currency, frame.orders.count().execute()) == ("EUR", 4)
