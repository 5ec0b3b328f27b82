"""Sources of an analysis frame: the Patron database, or an order file of any size.

``open_source("db", store="shop")`` reads one store of the Patron database;
``open_source(Path("orders.parquet"))`` lets the engine read a CSV or Parquet file (or a
directory of Parquet files) itself, so a 10-million-order export never passes through
Python. Both give the canonical tables of ``patron.analytics.frame``.

Order files are matched by column name (case-insensitive), each canonical column
accepting a few aliases (``ORDER_COLUMNS``). A file with ``unit_price`` and ``quantity``
holds order *lines* (like the demo generator's ``orders`` file) and is aggregated to one
row per order::

    amount     = Σ (unit_price × quantity − line_discount) + shipping_total
    discounted = any line has a discount code or a line_discount > 0

(order-level columns — customer, time, status, channel, currency, refunded_amount,
shipping_total — repeat on every line of an order). Cancelled orders are dropped. A refunds
file's amounts, summed per order, replace any ``refunded_amount`` column; customers of the
orders missing from a customers file are added as non-members.

Timestamps that carry a time zone (an offset or ``Z`` in CSV, a zone in Parquet) are
converted to the store's zone (``timezone``, default UTC) and made naive; naive ones are
taken as store-local already. The conversion uses Python's IANA database through a small
table of UTC-offset segments joined on the year, so both engines shift every instant by
the same offset.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ibis
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_dataset
import pyarrow.parquet as pq
from sqlalchemy import and_, create_engine, exists, func, or_, select
from sqlalchemy.engine import Connection

from patron.analytics.frame import (
    CUSTOMER_SCHEMA,
    IBIS_CUSTOMER_SCHEMA,
    IBIS_ORDER_SCHEMA,
    ORDER_SCHEMA,
    Engine,
    Frame,
    connect,
    from_arrow,
    register_arrow,
)
from patron.kit.money import exponent

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

# Canonical column -> the names accepted for it in an order file, in order of preference.
ORDER_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "customer_id": ("customer_id", "customer_external_id", "customer"),
    "placed_at": ("placed_at", "timestamp", "ts", "order_date", "date"),
    "amount": ("amount", "total", "revenue", "value"),
    "order_id": ("order_id", "external_id"),
    "status": ("status",),
    "discounted": ("discounted",),
    "discount_code": ("discount_code",),
    "refunded_amount": ("refunded_amount",),
    "cost": ("cost",),
    "channel": ("channel",),
    "currency": ("currency",),
    # order lines
    "unit_price": ("unit_price",),
    "quantity": ("quantity",),
    "line_discount": ("line_discount",),
    "shipping_total": ("shipping_total",),
}
CUSTOMER_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "customer_id": ("customer_id", "customer_external_id", "external_id"),
    "is_member": ("is_member", "member"),
    "nps": ("nps",),
    "complained_at": ("complained_at",),
}
REFUND_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "order_id": ("order_external_id", "order_id"),
    "amount": ("amount",),
}
CANCELLED = ("cancelled", "canceled")
# Rows of Patron's database read per round trip.
DB_CHUNK_ROWS = 50_000


def open_source(
    source: str | Path,
    *,
    engine: Engine = "duckdb",
    database_url: str | None = None,
    store: str | None = None,
    customers_file: Path | None = None,
    refunds_file: Path | None = None,
    timezone: str | None = None,
    currency: str | None = None,
    as_of: datetime | None = None,
    con: BaseBackend | None = None,
) -> Frame:
    """The analysis frame of ``source``: ``"db"`` or the path of an order file.

    ``"db"`` reads the store ``store`` (a slug; optional when the database holds one
    store) from ``database_url`` (default: Patron's settings); its time zone and currency
    come from the store unless ``timezone`` / ``currency`` are given. A file is read by
    the engine; ``customers_file`` and ``refunds_file`` add members, NPS, complaints and
    refunds, ``timezone`` (default UTC) is the store's zone and ``currency`` the money's
    (default: the file's single ``currency`` value, else ``XXX``). ``as_of`` defaults to
    the local midnight after the last order. ``con`` reuses an Ibis backend of ``engine``.

    Raises ``ValueError`` for an unknown store, an unreadable file or a missing column.
    """
    if timezone is not None:
        _zone(timezone)
    if isinstance(source, str) and source == "db":
        return _open_database(
            database_url,
            store,
            engine=engine,
            timezone=timezone,
            currency=currency,
            as_of=as_of,
            con=con,
        )
    return _open_files(
        Path(source),
        customers_file=customers_file,
        refunds_file=refunds_file,
        engine=engine,
        timezone=timezone or "UTC",
        currency=currency,
        as_of=as_of,
        con=con,
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


# --- the Patron database -----------------------------------------------------------------


def _open_database(
    database_url: str | None,
    store_slug: str | None,
    *,
    engine: Engine,
    timezone: str | None,
    currency: str | None,
    as_of: datetime | None,
    con: BaseBackend | None,
) -> Frame:
    # Imported here: a file analysis needs no database models.
    from patron.config import get_settings

    url = database_url or get_settings().database_url
    # A plain engine, not patron.db.make_engine: its SQLite "BEGIN IMMEDIATE" would hold
    # the write lock for the whole read.
    db = create_engine(url)
    try:
        with db.connect() as conn:
            if conn.dialect.name == "postgresql":
                # One snapshot for the several reads below.
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            store_id, store_zone, store_currency = _store(conn, store_slug)
            zone = timezone or store_zone
            orders = _database_orders(conn, store_id, zone)
            customers = _database_customers(conn, store_id, zone)
    finally:
        db.dispose()
    return from_arrow(
        orders,
        customers,
        engine=engine,
        timezone=zone,
        currency=currency or store_currency,
        as_of=as_of,
        con=con,
    )


def _store(conn: Connection, slug: str | None) -> tuple[int, str, str]:
    from patron.stores.models import Store

    stores = Store.__table__
    rows = conn.execute(
        select(stores.c.id, stores.c.slug, stores.c.timezone, stores.c.currency).order_by(
            stores.c.slug
        )
    ).all()
    if slug is None:
        if len(rows) != 1:
            slugs = ", ".join(r.slug for r in rows) or "none"
            raise ValueError(f"the database holds {len(rows)} stores ({slugs}): name one")
        row = rows[0]
    else:
        found = [r for r in rows if r.slug == slug]
        if not found:
            raise ValueError(f"no store {slug!r} in the database")
        row = found[0]
    return int(row.id), str(row.timezone), str(row.currency)


def _stream(conn: Connection, statement: Any) -> Iterable[Sequence[Any]]:
    """Rows of ``statement`` in chunks, streamed (a server-side cursor on PostgreSQL)."""
    result = conn.execution_options(yield_per=DB_CHUNK_ROWS).execute(statement)
    yield from result.partitions()


def _local_naive(instants: Sequence[datetime | None], zone: str) -> pa.Array:
    """Aware instants as naive wall-clock times of ``zone``."""
    utc = pa.array(instants, pa.timestamp("us", tz="UTC"))
    return pc.local_timestamp(utc.cast(pa.timestamp("us", tz=zone)))


def _database_orders(conn: Connection, store_id: int, zone: str) -> pa.Table:
    from patron.customers.models import Customer
    from patron.orders.models import Order, OrderLine, OrderStatus

    orders, customers, lines = Order.__table__, Customer.__table__, OrderLine.__table__
    line_discount = exists().where(lines.c.order_id == orders.c.id, lines.c.discount_minor > 0)
    discounted = or_(
        and_(orders.c.discount_code.is_not(None), orders.c.discount_code != ""),
        orders.c.discount_minor > 0,
        line_discount,
    )
    statement = (
        select(
            orders.c.external_id,
            customers.c.external_id,
            orders.c.placed_at,
            orders.c.currency,
            orders.c.total_minor,
            orders.c.refunded_minor,
            discounted,
            orders.c.channel,
        )
        .select_from(orders.join(customers, customers.c.id == orders.c.customer_id))
        .where(orders.c.store_id == store_id, orders.c.status != OrderStatus.cancelled)
    )
    batches: list[pa.RecordBatch] = []
    for rows in _stream(conn, statement):
        order_ids, customer_ids, placed, currencies, totals, refunded, disc, channels = zip(
            *rows, strict=True
        )
        scale = pa.array([10.0 ** exponent(c) for c in currencies], pa.float64())
        batches.append(
            pa.RecordBatch.from_arrays(
                [
                    pa.array(order_ids, pa.string()),
                    pa.array(customer_ids, pa.string()),
                    _local_naive(placed, zone),
                    pc.divide(pa.array(totals, pa.float64()), scale),
                    pc.divide(pa.array(refunded, pa.float64()), scale),
                    # SQLite answers 0/1 for the boolean expression.
                    pa.array([bool(d) for d in disc], pa.bool_()),
                    pa.nulls(len(rows), pa.float64()),
                    pa.array(channels, pa.string()),
                ],
                schema=ORDER_SCHEMA,
            )
        )
    return pa.Table.from_batches(batches, schema=ORDER_SCHEMA)


def _valid_nps(data: Any) -> int | None:
    value = data.get("nps") if isinstance(data, dict) else None
    # bool is an int in Python; a JSON true is not a score.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10:
        return value
    return None


def _database_customers(conn: Connection, store_id: int, zone: str) -> pa.Table:
    from patron.customers.models import Customer, Touchpoint, TouchpointKind
    from patron.loyalty.models import LoyaltyMember

    customers, touchpoints = Customer.__table__, Touchpoint.__table__
    members = LoyaltyMember.__table__

    # Latest valid recommendation answer per customer: survey answers are few next to
    # orders, and "valid" (an integer 0–10 in a JSON document) is simplest said in Python.
    latest: dict[int, tuple[datetime, int, int]] = {}
    answers = select(
        touchpoints.c.customer_id, touchpoints.c.occurred_at, touchpoints.c.id, touchpoints.c.data
    ).where(
        touchpoints.c.store_id == store_id,
        touchpoints.c.kind == TouchpointKind.survey_answer,
    )
    for rows in _stream(conn, answers):
        for customer_id, occurred_at, touchpoint_id, data in rows:
            nps = _valid_nps(data)
            if nps is None:
                continue
            seen = latest.get(customer_id)
            if seen is None or (occurred_at, touchpoint_id) > seen[:2]:
                latest[customer_id] = (occurred_at, touchpoint_id, nps)

    first_ticket = (
        select(
            touchpoints.c.customer_id,
            func.min(touchpoints.c.occurred_at).label("complained_at"),
        )
        .where(touchpoints.c.store_id == store_id, touchpoints.c.kind == TouchpointKind.ticket)
        .group_by(touchpoints.c.customer_id)
        .subquery()
    )
    is_member = exists().where(
        members.c.store_id == store_id, members.c.customer_id == customers.c.id
    )
    statement = (
        select(
            customers.c.id,
            customers.c.external_id,
            is_member,
            first_ticket.c.complained_at,
        )
        .select_from(
            customers.outerjoin(first_ticket, first_ticket.c.customer_id == customers.c.id)
        )
        .where(customers.c.store_id == store_id)
    )
    batches: list[pa.RecordBatch] = []
    for rows in _stream(conn, statement):
        ids, external_ids, member_flags, complained = zip(*rows, strict=True)
        scores = [latest.get(i) for i in ids]
        batches.append(
            pa.RecordBatch.from_arrays(
                [
                    pa.array(external_ids, pa.string()),
                    pa.array([bool(m) for m in member_flags], pa.bool_()),
                    pa.array([s[2] if s else None for s in scores], pa.int64()),
                    _local_naive(complained, zone),
                ],
                schema=CUSTOMER_SCHEMA,
            )
        )
    return pa.Table.from_batches(batches, schema=CUSTOMER_SCHEMA)


# --- files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    """A file read by the engine, with what the engine cannot tell us the same way."""

    table: ibis.Table
    columns: dict[str, str]  # lower-case name -> the file's name
    aware: frozenset[str]  # the file's names of timestamp columns with a time zone

    def find(self, aliases: Iterable[str]) -> str | None:
        for alias in aliases:
            if alias in self.columns:
                return self.columns[alias]
        return None

    def need(self, canonical: str, aliases: Sequence[str], path: Path) -> str:
        name = self.find(aliases)
        if name is None:
            raise ValueError(
                f"{path.name}: no {canonical} column (accepted names: {', '.join(aliases)})"
            )
        return name


def _sniff_schema(path: Path) -> pa.Schema:
    """The file's Arrow schema from its metadata (Parquet) or its first block (CSV).

    Spark types every timestamp alike, so whether a column carries a time zone is decided
    here, once, the same way for both engines.
    """
    if path.is_dir():
        return pa_dataset.dataset(path, format="parquet").schema
    if path.suffix.lower() == ".parquet":
        return pq.read_schema(path)
    with pa_csv.open_csv(path) as reader:
        return reader.schema


def _parquet_files(path: Path) -> str:
    if not any(path.glob("*.parquet")):
        raise ValueError(f"{path}: a directory without Parquet files")
    # A glob both engines understand (Spark's Hadoop paths and DuckDB's).
    return str(path / "*.parquet")


def _read(con: BaseBackend, path: Path) -> _File:
    if not path.exists():
        raise ValueError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if not path.is_dir() and suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path.name}: unknown file type {suffix!r} (use .csv or .parquet)")
    name = f"patron_source_{uuid.uuid4().hex}"
    location = _parquet_files(path) if path.is_dir() else str(path)
    try:
        schema = _sniff_schema(path)
        if path.is_dir() or suffix == ".parquet":
            table = con.read_parquet(location, table_name=name)
        else:
            table = con.read_csv(location, table_name=name)
    except Exception as exc:  # each engine and pyarrow raise their own errors
        raise ValueError(f"{path.name}: cannot be read: {exc}") from exc
    aware = frozenset(
        f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.tz is not None
    )
    return _File(table, {c.lower(): c for c in table.columns}, aware)


@lru_cache(maxsize=16)
def _offset_segments(zone: str, first_year: int = 1970, last_year: int = 2100) -> pa.Table:
    """Spans of UTC time with one UTC offset in ``zone``, cut at UTC year boundaries.

    Columns: ``year`` (the UTC year, the join key), ``utc_from``, ``utc_to`` (naive UTC,
    end exclusive), ``offset_seconds``. Transitions are found by sampling each day and
    bisecting to the second: zones never change twice within a day.
    """
    tz = _zone(zone)

    def offset(epoch: int) -> int:
        delta = datetime.fromtimestamp(epoch, tz).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    day = 86_400
    start = int(datetime(first_year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(last_year + 1, 1, 1, tzinfo=UTC).timestamp())
    cuts = [
        int(datetime(y, 1, 1, tzinfo=UTC).timestamp()) for y in range(first_year, last_year + 2)
    ]
    current = offset(start)
    for low in range(start, end, day):
        if offset(low + day) == current:
            continue
        high = low + day  # offset(low) == current != offset(high): bisect to the second
        while high - low > 1:
            middle = (low + high) // 2
            if offset(middle) == current:
                low = middle
            else:
                high = middle
        cuts.append(high)
        current = offset(high)

    def naive_utc(epoch: int) -> datetime:
        return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)

    rows = [
        (naive_utc(lo).year, naive_utc(lo), naive_utc(hi), offset(lo))
        for lo, hi in pairwise(sorted(set(cuts)))
    ]
    years, starts, ends, offsets = zip(*rows, strict=True)
    return pa.table(
        {
            "year": pa.array(years, pa.int32()),
            "utc_from": pa.array(starts, pa.timestamp("us")),
            "utc_to": pa.array(ends, pa.timestamp("us")),
            "offset_seconds": pa.array(offsets, pa.int64()),
        }
    )


def _localize(con: BaseBackend, table: ibis.Table, columns: Sequence[str], zone: str) -> ibis.Table:
    """``columns`` (naive UTC wall-clock times) shifted to naive local times of ``zone``.

    Instants outside 1970–2100 keep the offset of the nearest end of that range.
    """
    segments = _offset_segments(zone)
    offsets = segments.column("offset_seconds")
    if pc.min(offsets).as_py() == pc.max(offsets).as_py():
        fixed = ibis.literal(offsets[0].as_py(), "int64").as_interval("s")
        return table.mutate(**{c: table[c] + fixed for c in columns})
    # A table of the backend, not a memtable: Spark's cache() does not register memtables.
    spans = register_arrow(con, f"patron_utc_offsets_{uuid.uuid4().hex}", segments)
    before, after = offsets[0].as_py(), offsets[-1].as_py()
    for column in columns:
        keyed = table.mutate(_utc_year=table[column].year().cast("int32"))
        joined = keyed.left_join(
            spans,
            [
                keyed._utc_year == spans.year,
                keyed[column] >= spans.utc_from,
                keyed[column] < spans.utc_to,
            ],
        )
        seconds = joined.offset_seconds.fill_null(
            ibis.ifelse(joined._utc_year < 1970, before, after)
        )
        shifted = joined[column] + seconds.as_interval("s")
        table = joined.mutate(**{column: shifted}).select(table.columns)
    return table


def _timestamp(column: ibis.Value) -> ibis.Value:
    """``column`` as a naive timestamp: its UTC wall clock if it has a zone (both engines
    run their sessions in UTC), else as written; dates become midnights."""
    return column.cast("timestamp")


def _money(column: ibis.Value) -> ibis.Value:
    return column.cast("float64")


def _non_empty(column: ibis.Value) -> ibis.Value:
    return column.notnull() & (column.cast("string").strip() != "")


def _any(flags: Sequence[ibis.Value]) -> ibis.Value:
    result = ibis.literal(False)
    for flag in flags:
        result = result | flag
    return result


def _file_orders(
    con: BaseBackend, file: _File, path: Path, refunds: ibis.Table | None, zone: str
) -> ibis.Table:
    """Canonical orders of ``file``, plus a ``currency`` column when the file has one."""
    t = file.table
    col = {c: file.find(aliases) for c, aliases in ORDER_COLUMNS.items()}
    customer = file.need("customer_id", ORDER_COLUMNS["customer_id"], path)
    placed = file.need("placed_at", ORDER_COLUMNS["placed_at"], path)
    if col["status"] is not None:
        status = t[col["status"]].cast("string").lower().strip()
        t = t.filter(status.isnull() | ~status.isin(CANCELLED))

    discount_flags: list[ibis.Value] = []
    if col["discounted"] is not None:
        discount_flags.append(t[col["discounted"]].cast("boolean").fill_null(False))
    if col["discount_code"] is not None:
        discount_flags.append(_non_empty(t[col["discount_code"]]))

    base: dict[str, ibis.Value] = {
        "customer_id": t[customer].cast("string"),
        "placed_at": _timestamp(t[placed]),
        "channel": (
            t[col["channel"]].cast("string") if col["channel"] else ibis.null().cast("string")
        ),
        "cost": _money(t[col["cost"]]) if col["cost"] else ibis.null().cast("float64"),
        "refunded_amount": (
            _money(t[col["refunded_amount"]]).fill_null(0.0)
            if col["refunded_amount"]
            else ibis.literal(0.0, "float64")
        ),
    }
    if col["currency"] is not None:
        base["currency"] = t[col["currency"]].cast("string")

    is_lines = col["unit_price"] is not None and col["quantity"] is not None
    if is_lines:
        order_id = file.need("order_id", ORDER_COLUMNS["order_id"], path)
        line_total = _money(t[col["unit_price"]]) * t[col["quantity"]].cast("float64")
        if col["line_discount"] is not None:
            line_discount = _money(t[col["line_discount"]]).fill_null(0.0)
            line_total = line_total - line_discount
            discount_flags.append(line_discount > 0)
        shipping = (
            _money(t[col["shipping_total"]]).fill_null(0.0)
            if col["shipping_total"]
            else ibis.literal(0.0, "float64")
        )
        lines = t.select(
            order_id=t[order_id].cast("string"),
            line_total=line_total,
            shipping=shipping,
            line_discounted=ibis.ifelse(_any(discount_flags), 1, 0),
            **base,
        )
        # Order-level values repeat on every line of an order; max() picks that value.
        aggregates: dict[str, ibis.Value] = {
            "customer_id": lines.customer_id.max(),
            "placed_at": lines.placed_at.min(),
            "amount": lines.line_total.sum() + lines.shipping.max(),
            "refunded_amount": lines.refunded_amount.max(),
            "discounted": lines.line_discounted.max() == 1,
            "cost": lines.cost.sum(),
            "channel": lines.channel.max(),
        }
        if "currency" in base:
            aggregates["currency"] = lines.currency.max()
        orders = lines.group_by("order_id").aggregate(**aggregates)
    else:
        amount = file.need("amount", ORDER_COLUMNS["amount"], path)
        orders = t.select(
            order_id=(
                t[col["order_id"]].cast("string") if col["order_id"] else ibis.null().cast("string")
            ),
            amount=_money(t[amount]),
            discounted=_any(discount_flags),
            **base,
        )

    if refunds is not None:
        if col["order_id"] is None:
            raise ValueError(
                f"{path.name}: refunds need an order id column "
                f"(accepted names: {', '.join(ORDER_COLUMNS['order_id'])})"
            )
        orders = (
            orders.left_join(refunds, orders.order_id == refunds.refunded_order_id)
            .mutate(refunded_amount=lambda j: j.refunds_total.fill_null(0.0))
            .drop("refunded_order_id", "refunds_total")
        )
    columns = [*IBIS_ORDER_SCHEMA.names, *(["currency"] if "currency" in base else [])]
    orders = orders.select(
        *[
            orders[c].cast(IBIS_ORDER_SCHEMA[c]).name(c) if c in IBIS_ORDER_SCHEMA else orders[c]
            for c in columns
        ]
    )
    if placed in file.aware:
        orders = _localize(con, orders, ["placed_at"], zone)
    return orders


def _file_refunds(con: BaseBackend, path: Path) -> ibis.Table:
    file = _read(con, path)
    order_id = file.need("order_id", REFUND_COLUMNS["order_id"], path)
    amount = file.need("amount", REFUND_COLUMNS["amount"], path)
    t = file.table
    return t.group_by(refunded_order_id=t[order_id].cast("string")).aggregate(
        refunds_total=_money(t[amount]).sum()
    )


def _file_customers(con: BaseBackend, path: Path, orders: ibis.Table, zone: str) -> ibis.Table:
    file = _read(con, path)
    t = file.table
    customer = file.need("customer_id", CUSTOMER_COLUMNS["customer_id"], path)
    member = file.find(CUSTOMER_COLUMNS["is_member"])
    nps = file.find(CUSTOMER_COLUMNS["nps"])
    complained = file.find(CUSTOMER_COLUMNS["complained_at"])
    listed = t.select(
        customer_id=t[customer].cast("string"),
        is_member=t[member].cast("boolean").fill_null(False) if member else ibis.literal(False),
        nps=t[nps].cast("int64") if nps else ibis.null().cast("int64"),
        complained_at=(_timestamp(t[complained]) if complained else ibis.null().cast("timestamp")),
    )
    if complained is not None and complained in file.aware:
        listed = _localize(con, listed, ["complained_at"], zone)
    # Customers who ordered but are missing from the file are known all the same.
    unlisted = (
        orders.select("customer_id")
        .distinct()
        .anti_join(listed, "customer_id")
        .mutate(
            is_member=ibis.literal(False),
            nps=ibis.null().cast("int64"),
            complained_at=ibis.null().cast("timestamp"),
        )
    )
    return listed.union(unlisted)


def _open_files(
    path: Path,
    *,
    customers_file: Path | None,
    refunds_file: Path | None,
    engine: Engine,
    timezone: str,
    currency: str | None,
    as_of: datetime | None,
    con: BaseBackend | None,
) -> Frame:
    con = con or connect(engine)
    file = _read(con, path)
    refunds = _file_refunds(con, refunds_file) if refunds_file is not None else None
    orders = _file_orders(con, file, path, refunds, timezone)
    # Parse (and aggregate) the file once: every analysis reads the cached table.
    cached = orders.cache()
    canonical = cached.select(*IBIS_ORDER_SCHEMA.names)
    if customers_file is not None:
        customers = _file_customers(con, customers_file, canonical, timezone)
    else:
        customers = (
            canonical.select("customer_id")
            .distinct()
            .mutate(
                is_member=ibis.literal(False),
                nps=ibis.null().cast("int64"),
                complained_at=ibis.null().cast("timestamp"),
            )
        )
    customers = customers.select(
        *[customers[c].cast(IBIS_CUSTOMER_SCHEMA[c]).name(c) for c in IBIS_CUSTOMER_SCHEMA.names]
    ).cache()

    summary = {"last": cached.placed_at.max()}
    if "currency" in cached.columns and currency is None:
        summary["currencies"] = cached.currency.nunique()
        summary["currency"] = cached.currency.max()
    found = cached.aggregate(**summary).to_pyarrow().to_pylist()[0]
    if currency is None:
        single = found.get("currencies") == 1 and found.get("currency")
        currency = str(found["currency"]) if single else "XXX"
    if as_of is None:
        last: datetime | None = found["last"]
        as_of = _day_after(last) if last is not None else datetime(1970, 1, 1)
    return Frame(
        engine=engine,
        con=con,
        orders=canonical,
        customers=customers,
        timezone=timezone,
        currency=currency,
        as_of=as_of,
    )


def _day_after(moment: datetime | date) -> datetime:
    return datetime(moment.year, moment.month, moment.day) + timedelta(days=1)
