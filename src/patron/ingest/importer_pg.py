"""Bulk writes and look-ups of the file import's fast path for new orders.

This is the repository of `ingest/files.py`: every query of the fast path lives here.
New orders, their lines and their `order` touchpoints are written column-wise, straight
from Arrow arrays, inside the caller's transaction (so all-or-nothing holds):

* PostgreSQL: order ids are taken from the table's sequence up front, then the three
  tables are loaded with ``COPY ... FROM STDIN (FORMAT csv)`` on the session's own
  psycopg connection; pyarrow writes the CSV of the next batch (in a thread) while the
  server loads the current one. Touchpoints are loaded sorted by customer, so their
  (customer, time) index grows at its right edge instead of at random places.
* Foreign keys: per-row FK triggers cost PostgreSQL about as much as the inserts. When
  the role may (superuser, or SET granted on ``session_replication_role``) and no
  other trigger exists on the three tables, the writer checks the references itself —
  the store and every customer are locked ``FOR KEY SHARE`` in one statement each,
  exactly the lock an FK trigger takes, and order lines point at orders inserted in
  this transaction — and loads with ``session_replication_role = replica`` for the
  COPYs only (``SET LOCAL``, reset right after). ``fk_triggers=True`` keeps the
  triggers (about twice the load time).
* SQLite: ``executemany`` on the raw sqlite3 connection, with a large page cache for
  the load. The session began with ``BEGIN IMMEDIATE``: it holds the write lock, so
  ids follow ``MAX(id)`` and no other writer can race it.

The look-ups of the import (orders and customers by external id, stored orders for a
re-import) are here too: on PostgreSQL one statement joined with ``unnest(array)``
instead of thousands of chunked ``IN`` lists.

Everything that decides *what* is written (validation, money, status rules) happens
before, in `files.py` and the order services; this module only moves validated columns.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from patron.customers.models import TouchpointKind
from patron.customers.repository import states_by_external_id
from patron.kit.money import exponent
from patron.kit.repository import chunks
from patron.orders import repository as orders_repo
from patron.orders.models import Order, OrderStatus, Refund, RefundState

IntArr = npt.NDArray[np.int64]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Columns written for a new order, in COPY / INSERT order.
_ORDER_COLUMNS = (
    "id",
    "store_id",
    "external_id",
    "customer_id",
    "status",
    "channel",
    "currency",
    "discount_code",
    "subtotal_minor",
    "discount_minor",
    "shipping_minor",
    "tax_minor",
    "total_minor",
    "refunded_minor",
    "placed_at",
    "paid_at",
    "fulfilled_at",
    "delivered_at",
    "cancelled_at",
    "payload_hash",
    "created_at",
    "updated_at",
)
_LINE_COLUMNS = (
    "order_id",
    "line_no",
    "external_id",
    "sku",
    "name",
    "category",
    "quantity",
    "unit_price_minor",
    "discount_minor",
    "total_minor",
    "refunded_quantity",
    "refunded_minor",
)
_TOUCHPOINT_COLUMNS = ("store_id", "customer_id", "kind", "occurred_at", "ref", "data")


SQLITE_CACHE_KIB = 512 * 1024  # page cache of the SQLite connection while loading


class OrdersExist(Exception):
    """Another writer inserted some of these orders after they were looked up."""


@dataclass
class NewOrders:
    """Validated new orders of one store, column-wise; lines sorted by order.

    Timestamps are naive ``timestamp('us')`` arrays holding UTC; money is integer minor
    units. ``line_order`` indexes the order of each line.
    """

    store_id: int
    external_id: pa.Array
    customer_id: IntArr
    status: pa.Array
    channel: pa.Array
    currency: pa.Array
    discount_code: pa.Array
    subtotal: IntArr
    discount: IntArr
    shipping: IntArr
    tax: IntArr
    total: IntArr
    placed_at: pa.Array
    paid_at: pa.Array
    fulfilled_at: pa.Array
    delivered_at: pa.Array
    cancelled_at: pa.Array
    line_order: IntArr
    line_no: IntArr
    line_external_id: pa.Array
    sku: pa.Array
    name: pa.Array
    category: pa.Array
    quantity: IntArr
    unit_price: IntArr
    line_discount: IntArr
    line_total: IntArr

    def __len__(self) -> int:
        return len(self.external_id)


def insert_new_orders(
    session: Session,
    orders: NewOrders,
    now: datetime,
    batch_size: int,
    advance: Callable[[int], None] = lambda _: None,
    fk_triggers: bool = False,
) -> None:
    """Write new orders, their lines and `order` touchpoints. Raises OrdersExist (and
    writes nothing) if another writer created one of these orders in the meantime."""
    if not len(orders):
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        _PgWriter(session, orders, now, batch_size, advance, fk_triggers).write()
    elif dialect == "sqlite":
        _SqliteWriter(session, orders, now, batch_size, advance).write()
    else:
        raise NotImplementedError(f"unsupported database: {dialect}")


# ---------------------------------------------------------------------------------------
# Column helpers
# ---------------------------------------------------------------------------------------


def money_text(minor: IntArr, currency: pa.Array) -> pa.Array:
    """Minor units as decimal strings with the currency's places ("135.00", "980")."""
    exps = exponents(currency)
    out = pa.nulls(len(minor), pa.string())
    for exp in np.unique(exps).tolist():
        sel = exps == exp
        scale = 10**exp
        whole = pc.cast(pa.array(minor // scale), pa.string())
        if exp:
            frac = pc.utf8_lpad(pc.cast(pa.array(minor % scale), pa.string()), exp, "0")
            text = pc.binary_join_element_wise(whole, frac, ".")
        else:
            text = whole
        out = pc.if_else(pa.array(sel), text, out)
    return out


def exponents(currency: pa.Array) -> IntArr:
    """The minor-unit exponent of each row's currency (2 where the currency is null)."""
    uniq = pc.unique(currency).drop_null()
    table = np.array([exponent(c) for c in uniq.to_pylist()] + [2], dtype=np.int64)
    idx = pc.fill_null(pc.index_in(currency, value_set=uniq), len(uniq))
    return table[np.asarray(idx, dtype=np.int64)]


def _utc_text(stamps: pa.Array, suffix: str) -> pa.Array:
    """Naive UTC timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' (+ suffix), nulls kept."""
    text = pc.cast(stamps, pa.string())
    return pc.binary_join_element_wise(text, suffix, "") if suffix else text


def _const(value: Any, n: int, type_: pa.DataType) -> pa.Array:
    return pa.array([value], type_).take(pa.array(np.zeros(n, dtype=np.int64)))


def _touchpoint_data(orders: NewOrders) -> pa.Array:
    total = money_text(orders.total, orders.currency)
    return pc.binary_join_element_wise(
        '{"total": "', total, '", "currency": "', orders.currency, '"}', ""
    )


def _batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    size = max(1, size)
    for start in range(0, n, size):
        yield start, min(n, start + size)


class _Tables:
    """The three tables of a new-order load as Arrow, built slice by slice."""

    def __init__(self, orders: NewOrders, now: datetime, ts_suffix: str) -> None:
        self.o = orders
        self.suffix = ts_suffix
        self.now_text = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") + ts_suffix
        self.ids: IntArr = np.zeros(0, dtype=np.int64)
        self.line_starts = np.searchsorted(orders.line_order, np.arange(len(orders) + 1))
        # Touchpoints by customer, then time: their index is (customer_id, occurred_at).
        placed = np.asarray(
            pc.cast(orders.placed_at, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64
        )
        by_customer = np.lexsort((placed, orders.customer_id))
        pick = pa.array(by_customer)
        self.tp_customer = orders.customer_id[by_customer]
        self.tp_placed = orders.placed_at.take(pick)
        self.tp_ref = orders.external_id.take(pick)
        self.tp_data = _touchpoint_data(orders).take(pick)

    def orders(self, start: int, stop: int) -> pa.Table:
        o, n, sl = self.o, stop - start, slice(start, stop)
        ts = self.suffix
        return pa.table(
            [
                pa.array(self.ids[sl]),
                _const(o.store_id, n, pa.int64()),
                o.external_id[start:stop],
                pa.array(o.customer_id[sl]),
                o.status[start:stop],
                o.channel[start:stop],
                o.currency[start:stop],
                o.discount_code[start:stop],
                pa.array(o.subtotal[sl]),
                pa.array(o.discount[sl]),
                pa.array(o.shipping[sl]),
                pa.array(o.tax[sl]),
                pa.array(o.total[sl]),
                _const(0, n, pa.int64()),
                _utc_text(o.placed_at[start:stop], ts),
                _utc_text(o.paid_at[start:stop], ts),
                _utc_text(o.fulfilled_at[start:stop], ts),
                _utc_text(o.delivered_at[start:stop], ts),
                _utc_text(o.cancelled_at[start:stop], ts),
                pa.nulls(n, pa.string()),
                _const(self.now_text, n, pa.string()),
                _const(self.now_text, n, pa.string()),
            ],
            names=list(_ORDER_COLUMNS),
        )

    def lines(self, start: int, stop: int) -> pa.Table:
        """Lines of orders [start, stop)."""
        o = self.o
        lo, hi = int(self.line_starts[start]), int(self.line_starts[stop])
        n, sl = hi - lo, slice(lo, hi)
        return pa.table(
            [
                pa.array(self.ids[o.line_order[sl]]),
                pa.array(o.line_no[sl]),
                o.line_external_id[lo:hi],
                o.sku[lo:hi],
                o.name[lo:hi],
                o.category[lo:hi],
                pa.array(o.quantity[sl]),
                pa.array(o.unit_price[sl]),
                pa.array(o.line_discount[sl]),
                pa.array(o.line_total[sl]),
                _const(0, n, pa.int64()),
                _const(0, n, pa.int64()),
            ],
            names=list(_LINE_COLUMNS),
        )

    def touchpoints(self, start: int, stop: int) -> pa.Table:
        """Touchpoints [start, stop) in customer order."""
        n = stop - start
        return pa.table(
            [
                _const(self.o.store_id, n, pa.int64()),
                pa.array(self.tp_customer[start:stop]),
                _const(TouchpointKind.order.value, n, pa.string()),
                _utc_text(self.tp_placed[start:stop], self.suffix),
                self.tp_ref[start:stop],
                self.tp_data[start:stop],
            ],
            names=list(_TOUCHPOINT_COLUMNS),
        )


# ---------------------------------------------------------------------------------------
# PostgreSQL: COPY
# ---------------------------------------------------------------------------------------


def _csv(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pa_csv.write_csv(table, buf, pa_csv.WriteOptions(include_header=False))
    return buf.getvalue()


class _PgWriter:
    def __init__(
        self,
        session: Session,
        orders: NewOrders,
        now: datetime,
        batch_size: int,
        advance: Callable[[int], None],
        fk_triggers: bool,
    ) -> None:
        self.conn: Any = session.connection().connection.driver_connection
        self.orders = orders
        self.tables = _Tables(orders, now, "+00")
        self.n = len(orders)
        self.batch_size = batch_size
        self.advance = advance
        self.fk_triggers = fk_triggers

    def write(self) -> None:
        import psycopg

        self.tables.ids = self._allocate_ids()
        with self.conn.cursor() as cur:
            bypass = not self.fk_triggers and self._lock_references(cur)
            # A savepoint, so that losing a race on an order's external id leaves the
            # transaction usable: the caller re-checks and retries.
            cur.execute("SAVEPOINT patron_import_orders")
            try:
                self._copy(cur, "orders", _ORDER_COLUMNS, self.tables.orders, track=True)
            except psycopg.errors.UniqueViolation as exc:
                cur.execute("ROLLBACK TO SAVEPOINT patron_import_orders")
                raise OrdersExist(str(exc)) from exc
            cur.execute("RELEASE SAVEPOINT patron_import_orders")
            self._copy(cur, "order_lines", _LINE_COLUMNS, self.tables.lines)
            self._copy(cur, "touchpoints", _TOUCHPOINT_COLUMNS, self.tables.touchpoints)
            if bypass:
                cur.execute("SET LOCAL session_replication_role = origin")

    def _lock_references(self, cur: Any) -> bool:
        """Check and lock what the new rows point at, then switch FK triggers off for
        this transaction. False (triggers stay on) if the role may not, or if the tables
        have triggers of their own that must not be skipped."""
        import psycopg

        (own,) = cur.execute(
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = ANY("
            "ARRAY['orders', 'order_lines', 'touchpoints']::regclass[])"
        ).fetchone()
        if own:
            return False
        cur.execute("SAVEPOINT patron_import_role")
        try:
            cur.execute("SET LOCAL session_replication_role = replica")
        except psycopg.Error:
            cur.execute("ROLLBACK TO SAVEPOINT patron_import_role")
            return False
        cur.execute("RELEASE SAVEPOINT patron_import_role")
        store_id = self.orders.store_id
        found = cur.execute(
            "SELECT id FROM stores WHERE id = %s FOR KEY SHARE", (store_id,)
        ).fetchone()
        wanted = np.unique(self.orders.customer_id).tolist()
        (locked,) = cur.execute(
            "SELECT count(*) FROM (SELECT c.id FROM customers AS c "
            "JOIN unnest(%s::bigint[]) AS w(id) ON c.id = w.id "
            "WHERE c.store_id = %s FOR KEY SHARE OF c) AS locked",
            (wanted, store_id),
        ).fetchone()
        if found is None or locked != len(wanted):
            raise RuntimeError("a store or customer of the import vanished while writing")
        return True

    def _allocate_ids(self) -> IntArr:
        """``n`` fresh ids from the orders sequence; contiguous unless another writer
        drew ids at the same moment, in which case the exact values are fetched."""
        with self.conn.cursor() as cur:
            seq = cur.execute("SELECT pg_get_serial_sequence('orders', 'id')").fetchone()[0]
            draw = "SELECT nextval(%s::regclass) AS v FROM generate_series(1, %s)"
            lo, hi = cur.execute(
                f"SELECT min(v), max(v) FROM ({draw}) AS ids", (seq, self.n)
            ).fetchone()
            if hi - lo + 1 == self.n:
                return np.arange(lo, hi + 1, dtype=np.int64)
            values = [v for (v,) in cur.execute(draw, (seq, self.n))]
            return np.array(values, dtype=np.int64)

    def _copy(
        self,
        cur: Any,
        table: str,
        columns: Sequence[str],
        build: Callable[[int, int], pa.Table],
        track: bool = False,
    ) -> None:
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)"
        batches = list(_batches(self.n, self.batch_size))
        with cur.copy(sql) as copy, ThreadPoolExecutor(max_workers=1) as pool:
            # pyarrow releases the GIL: the next batch is rendered while this one is sent.
            ahead = pool.submit(_csv, build(*batches[0])) if batches else None
            for k, (start, stop) in enumerate(batches):
                assert ahead is not None
                data = ahead.result()
                if k + 1 < len(batches):
                    ahead = pool.submit(_csv, build(*batches[k + 1]))
                copy.write(data)
                if track:
                    self.advance(stop - start)


# ---------------------------------------------------------------------------------------
# SQLite: executemany
# ---------------------------------------------------------------------------------------


class _SqliteWriter:
    def __init__(
        self,
        session: Session,
        orders: NewOrders,
        now: datetime,
        batch_size: int,
        advance: Callable[[int], None],
    ) -> None:
        self.dbapi: Any = session.connection().connection.driver_connection
        self.tables = _Tables(orders, now, "")
        self.n = len(orders)
        self.batch_size = batch_size
        self.advance = advance

    def write(self) -> None:
        # A page cache that holds the indexes being grown (the default is 2 MB).
        (cache,) = self.dbapi.execute("PRAGMA cache_size").fetchone()
        self.dbapi.execute(f"PRAGMA cache_size = {-SQLITE_CACHE_KIB}")
        try:
            self._write()
        finally:
            self.dbapi.execute(f"PRAGMA cache_size = {int(cache)}")

    def _write(self) -> None:
        # The session holds SQLite's write lock (BEGIN IMMEDIATE): MAX(id) cannot move.
        (top,) = self.dbapi.execute("SELECT COALESCE(MAX(id), 0) FROM orders").fetchone()
        self.tables.ids = np.arange(top + 1, top + 1 + self.n, dtype=np.int64)
        found = self.dbapi.execute("SELECT 1 FROM orders WHERE id > ? LIMIT 1", (top,)).fetchone()
        if found is not None:  # pragma: no cover - impossible under the write lock
            raise OrdersExist("orders were inserted concurrently")
        for start, stop in _batches(self.n, self.batch_size):
            self._insert("orders", _ORDER_COLUMNS, self.tables.orders(start, stop))
            self._insert("order_lines", _LINE_COLUMNS, self.tables.lines(start, stop))
            self._insert("touchpoints", _TOUCHPOINT_COLUMNS, self.tables.touchpoints(start, stop))
            self.advance(stop - start)

    def _insert(self, table: str, columns: Sequence[str], data: pa.Table) -> None:
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        self.dbapi.executemany(sql, zip(*(c.to_pylist() for c in data.columns), strict=True))


# ---------------------------------------------------------------------------------------
# Look-ups
# ---------------------------------------------------------------------------------------


class StoredOrder(NamedTuple):
    """What a re-import compares: immutable content, status and the mutable fields."""

    id: int
    customer_id: int
    status: str
    currency: str
    channel: str | None
    discount_code: str | None
    discount: int
    shipping: int
    tax: int
    total: int
    placed_at: int  # microseconds since the epoch, UTC
    paid_at: int | None
    fulfilled_at: int | None
    delivered_at: int | None
    cancelled_at: int | None
    # (external_id, sku, quantity, unit_price_minor, discount_minor) per line, in order
    lines: tuple[tuple[str | None, str | None, int, int, int], ...]


def micros(value: datetime | None) -> int | None:
    if value is None:
        return None
    return (value - EPOCH) // timedelta(microseconds=1)


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# On PostgreSQL a look-up of many keys is one statement joined with unnest(array):
# `IN (2,000 parameters)` chunks cost ~0.1 s each there (planning and binding), and
# `= ANY(array)` may be evaluated row by row. SQLite runs the repositories' chunked IN.


def order_states(
    session: Session, store_id: int, external_ids: Sequence[str]
) -> dict[str, orders_repo.OrderState]:
    """The store's orders among these external ids (as orders.repository.order_states)."""
    if not external_ids:
        return {}
    if not _is_pg(session):
        return orders_repo.order_states(session, store_id, external_ids)
    rows = session.execute(
        text(
            "SELECT o.external_id, o.id, o.payload_hash, o.status, o.customer_id "
            "FROM orders AS o JOIN unnest(CAST(:keys AS text[])) AS k(ext) "
            "ON o.external_id = k.ext WHERE o.store_id = :store"
        ),
        {"keys": list(external_ids), "store": store_id},
    )
    return {
        ext: orders_repo.OrderState(oid, digest, OrderStatus(status), cid)
        for ext, oid, digest, status, cid in rows
    }


def customer_ids(session: Session, store_id: int, external_ids: Sequence[str]) -> dict[str, int]:
    """Ids of the store's customers among these external ids (no stubs are created)."""
    if not external_ids:
        return {}
    if not _is_pg(session):
        found = states_by_external_id(session, store_id, external_ids)
        return {ext: cid for ext, (cid, _) in found.items()}
    rows = session.execute(
        text(
            "SELECT c.external_id, c.id FROM customers AS c "
            "JOIN unnest(CAST(:keys AS text[])) AS k(ext) ON c.external_id = k.ext "
            "WHERE c.store_id = :store"
        ),
        {"keys": list(external_ids), "store": store_id},
    )
    return {ext: cid for ext, cid in rows}


_LINES_OF = (
    "SELECT l.order_id, l.external_id, l.sku, l.quantity, l.unit_price_minor, "
    "l.discount_minor FROM order_lines AS l "
    "JOIN unnest(CAST(:ids AS bigint[])) AS k(id) ON l.order_id = k.id "
    "ORDER BY l.order_id, l.line_no"
)
_US = "(EXTRACT(EPOCH FROM o.{0}) * 1000000)::bigint"
_ORDERS_OF = (
    "SELECT o.id, o.customer_id, o.status, o.currency, o.channel, o.discount_code, "
    "o.discount_minor, o.shipping_minor, o.tax_minor, o.total_minor, "
    + ", ".join(
        _US.format(c)
        for c in ("placed_at", "paid_at", "fulfilled_at", "delivered_at", "cancelled_at")
    )
    + " FROM orders AS o JOIN unnest(CAST(:ids AS bigint[])) AS k(id) ON o.id = k.id"
)


_LINES_OF_SQLITE = (
    "SELECT order_id, external_id, sku, quantity, unit_price_minor, discount_minor "
    "FROM order_lines WHERE order_id IN :ids ORDER BY order_id, line_no"
)
_US_SQLITE = (
    "CAST(strftime('%s', o.{0}) AS INTEGER) * 1000000 + CAST(substr(o.{0}, 21, 6) AS INTEGER)"
)
_ORDERS_OF_SQLITE = (
    "SELECT o.id, o.customer_id, o.status, o.currency, o.channel, o.discount_code, "
    "o.discount_minor, o.shipping_minor, o.tax_minor, o.total_minor, "
    + ", ".join(
        _US_SQLITE.format(c)
        for c in ("placed_at", "paid_at", "fulfilled_at", "delivered_at", "cancelled_at")
    )
    + " FROM orders AS o WHERE o.id IN :ids"
)


def stored_orders(session: Session, order_ids: Sequence[int]) -> dict[int, StoredOrder]:
    """The stored state of these orders, for the re-import comparison."""
    lines: dict[int, list[tuple[str | None, str | None, int, int, int]]] = {}
    found: dict[int, StoredOrder] = {}
    if not order_ids:
        return found
    if _is_pg(session):
        ids = list(order_ids)
        for oid, ext, sku, qty, unit, disc in session.execute(text(_LINES_OF), {"ids": ids}):
            lines.setdefault(oid, []).append((ext, sku, qty, unit, disc))
        for row in session.execute(text(_ORDERS_OF), {"ids": ids}):
            found[row[0]] = StoredOrder._make((*row, tuple(lines.get(row[0], ()))))
        return found
    # SQLite keeps UTC as 'YYYY-MM-DD HH:MM:SS.ffffff' (patron.db): microseconds in SQL.
    ids_param: BindParameter[list[int]] = bindparam("ids", expanding=True)
    lines_of = text(_LINES_OF_SQLITE).bindparams(ids_param)
    orders_of = text(_ORDERS_OF_SQLITE).bindparams(ids_param)
    for chunk in chunks(order_ids):
        for oid, ext, sku, qty, unit, disc in session.execute(lines_of, {"ids": list(chunk)}):
            lines.setdefault(oid, []).append((ext, sku, qty, unit, disc))
    for chunk in chunks(order_ids):
        for row in session.execute(orders_of, {"ids": list(chunk)}):
            found[row[0]] = StoredOrder._make((*row, tuple(lines.get(row[0], ()))))
    return found


def orders_with_pending_refunds(session: Session, store_id: int) -> set[str]:
    """External ids of the store's orders that refunds are waiting for."""
    return set(
        session.scalars(
            select(Refund.order_external_id)
            .where(Refund.store_id == store_id, Refund.state == RefundState.pending_order)
            .distinct()
        )
    )


def store_has_orders(session: Session, store_id: int) -> bool:
    return session.scalar(select(Order.id).where(Order.store_id == store_id).limit(1)) is not None
