"""The analysis frame: canonical order and customer tables on an Ibis engine.

Every analysis in ``patron.analytics`` is written once, as Ibis expressions over two
tables with the columns below, so the same code runs on DuckDB (embedded default) and on
PySpark (a store that outgrows one machine). Sources (the Patron database, order files)
only have to produce these two tables; see ``patron.analytics.sources``.

Times are **naive timestamps in the store's local time**: "day", "month" and "cohort" are
the store's, and neither engine's session time zone can shift them. Money is ``float64``
in major units (yuan, euros): these are statistics and model inputs, not balances; reports
round money to cents.

``orders`` — one row per order that counts (cancelled orders are left out by the source):

=================  =========  ===========================================================
order_id           string     the store's order id
customer_id        string     the store's customer id
placed_at          timestamp  when it was placed, store-local, naive
amount             float64    what the customer paid (after discounts), major units
refunded_amount    float64    refunded so far (0 when none)
discounted         boolean    bought with a discount (code or line/order discount)
cost               float64    cost of goods where known, else null (margin analyses)
channel            string     sales channel, null when unknown
=================  =========  ===========================================================

``customers`` — one row per known customer (customers without orders may appear):

=================  =========  ===========================================================
customer_id        string     the store's customer id
is_member          boolean    enrolled in the loyalty programme
nps                int64      latest recommendation answer 0–10, null when never asked
complained_at      timestamp  first complaint / support ticket, store-local, null if none
=================  =========  ===========================================================
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import ibis
import ibis.expr.datatypes as dt
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

Engine = Literal["duckdb", "spark"]
ENGINES: tuple[Engine, ...] = ("duckdb", "spark")

ORDER_SCHEMA = pa.schema(
    [
        ("order_id", pa.string()),
        ("customer_id", pa.string()),
        ("placed_at", pa.timestamp("us")),
        ("amount", pa.float64()),
        ("refunded_amount", pa.float64()),
        ("discounted", pa.bool_()),
        ("cost", pa.float64()),
        ("channel", pa.string()),
    ]
)
CUSTOMER_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("is_member", pa.bool_()),
        ("nps", pa.int64()),
        ("complained_at", pa.timestamp("us")),
    ]
)
IBIS_ORDER_SCHEMA = ibis.schema({f.name: dt.dtype(f.type) for f in ORDER_SCHEMA})
IBIS_CUSTOMER_SCHEMA = ibis.schema({f.name: dt.dtype(f.type) for f in CUSTOMER_SCHEMA})


@dataclass(frozen=True)
class Frame:
    """The two canonical tables on one engine, plus what every analysis needs to know."""

    engine: Engine
    con: BaseBackend
    orders: ibis.Table
    customers: ibis.Table
    timezone: str  # the store's IANA zone, in which ``placed_at`` is expressed
    currency: str
    as_of: datetime  # naive store-local end of the data (exclusive)


_spark_lock = threading.Lock()


def connect(engine: Engine) -> BaseBackend:
    """A fresh Ibis backend: an in-memory DuckDB, or a local-mode PySpark session.

    Spark runs with the session time zone pinned to UTC so naive local timestamps are
    never shifted; one JVM per process is reused (starting one costs seconds). Arrow
    transfer keeps nullable integers (pandas would turn them into NaN floats, which Spark
    then reads as nulls), the warehouse lives in the temp directory rather than the
    working directory, and no progress bars are drawn on the console.
    """
    if engine == "duckdb":
        return ibis.duckdb.connect()
    if engine == "spark":
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "the spark engine needs PySpark: pip install 'patron[spark]'"
            ) from exc
        with _spark_lock:
            session = (
                SparkSession.builder.master("local[*]")
                .appName("patron-analytics")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.shuffle.partitions", "8")
                .config("spark.driver.memory", "4g")
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config(
                    "spark.sql.warehouse.dir", f"{tempfile.gettempdir()}/patron-spark-warehouse"
                )
                .config("spark.ui.showConsoleProgress", "false")
                .getOrCreate()
            )
            session.sparkContext.setLogLevel("ERROR")
        return ibis.pyspark.connect(session)
    raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in order; missing optional ones null."""
    columns: list[Any] = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def from_arrow(
    orders: pa.Table,
    customers: pa.Table | None = None,
    *,
    engine: Engine = "duckdb",
    timezone: str = "UTC",
    currency: str = "EUR",
    as_of: datetime | None = None,
    con: BaseBackend | None = None,
) -> Frame:
    """A frame from Arrow tables already in the canonical shape (columns may be missing
    where they are optional: ``refunded_amount`` → 0, ``discounted`` → false, others null).

    ``customers`` defaults to the distinct customers of ``orders``, none members.
    ``as_of`` defaults to the day after the last order (local midnight).
    """
    orders = conform(orders, ORDER_SCHEMA)
    orders = orders.set_column(
        orders.schema.get_field_index("refunded_amount"),
        "refunded_amount",
        orders.column("refunded_amount").fill_null(0.0),
    ).set_column(
        orders.schema.get_field_index("discounted"),
        "discounted",
        orders.column("discounted").fill_null(False),
    )
    if customers is None:
        ids = pc.unique(orders.column("customer_id"))
        customers = pa.table({"customer_id": ids})
    customers = conform(customers, CUSTOMER_SCHEMA)
    customers = customers.set_column(
        customers.schema.get_field_index("is_member"),
        "is_member",
        customers.column("is_member").fill_null(False),
    )
    if as_of is None:
        last = pc.max(orders.column("placed_at")).as_py()
        as_of = (
            datetime(last.year, last.month, last.day) + timedelta(days=1)
            if last
            else datetime(1970, 1, 1)
        )
    con = con or connect(engine)
    # Unique per frame: several frames may share one backend (and Spark one session).
    suffix = uuid.uuid4().hex
    return Frame(
        engine=engine,
        con=con,
        orders=register_arrow(con, f"orders_{suffix}", orders),
        customers=register_arrow(con, f"customers_{suffix}", customers),
        timezone=timezone,
        currency=currency,
        as_of=as_of,
    )


def register_arrow(con: BaseBackend, name: str, table: pa.Table) -> ibis.Table:
    """``table`` as a table ``name`` of ``con``, held in memory by the engine.

    Spark's ``create_table`` would write a managed table into the warehouse on disk; a
    temporary view over the in-memory data is all an analysis needs.
    """
    if con.name == "pyspark":
        view: ibis.Table = con.create_view(name, ibis.memtable(table), overwrite=True)
        return view
    created: ibis.Table = con.create_table(name, table, overwrite=True)
    return created
