"""File imports: customers, products, orders and refunds from CSV or Parquet files.

`import_file` is the whole importer as a library function; the `patron import` command,
the tests and the benchmarks call it. The semantics are the REST API's, reusing its
services: idempotent upserts by external id, the same validation rules and messages,
touchpoints, stub customers, pending refunds.

How a file goes in:

1. **read** the file into an Arrow table; CSV columns are read as text.
2. **validate** every row. Orders are checked column-wise with pyarrow/numpy (no Python
   per row): amounts, integers and timestamps by regular expression, then exact casts to
   integer minor units and UTC microseconds; lines are grouped per order and the
   order-level columns must agree between the lines of one order. Customers, products
   and refunds go through the API's pydantic schemas record by record.
3. **write** in one transaction. New orders take a fast path (`importer_pg`: COPY on
   PostgreSQL, executemany on SQLite); orders already stored are compared with the file
   and, where they differ, sent through `orders.upsert_many` (status advanced: updated;
   immutable content changed: conflict). Everything else goes through its service.

Modes: ``all-or-nothing`` writes nothing if any row is bad (validation errors are found
before the transaction opens; conflicts found while writing roll it back).
``skip-bad-rows`` imports the good records and reports every skipped row; for orders and
refunds every row of a record with a bad row is skipped and reported.

Row numbers count the header as row 1, so the first data row is row 2 (for Parquet:
row index + 2). A CSV field that contains a line break makes the row number differ from
the line number of a text editor.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import rich.progress
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from patron.customers.models import Channel
from patron.customers.schemas import CustomerIn
from patron.customers.service import customers
from patron.db import session_factory
from patron.errors import NotFound, validation_errors
from patron.ingest import importer_pg as bulk
from patron.kit.bulk import RecordResult
from patron.kit.clock import utcnow
from patron.kit.money import MAX_MAJOR, MoneyError, from_minor, to_minor
from patron.kit.repository import chunks
from patron.orders import repository as orders_repo
from patron.orders.domain import TransitionError, next_status
from patron.orders.models import OrderStatus
from patron.orders.schemas import OrderIn, ProductIn, RefundIn
from patron.orders.service import orders, products, refunds
from patron.stores.models import Store
from patron.stores.service import stores

Kind = Literal["customers", "products", "orders", "refunds"]
KINDS: tuple[Kind, ...] = ("customers", "products", "orders", "refunds")
Mode = Literal["all-or-nothing", "skip-bad-rows"]
Format = Literal["csv", "parquet"]

IntArr = npt.NDArray[np.int64]
BoolArr = npt.NDArray[np.bool_]
M = TypeVar("M", bound=BaseModel)

HEADER_ROW = 1
_ORM_BATCH = 500  # records per service call where the service loads ORM objects per record
FIRST_ROW = 2
# Text limits: the API's (ExternalId 128, ShortText 255), or the column's where smaller.
ID_LEN, TEXT_LEN = 128, 255
_MAX_MINOR = 2**62  # per order and line: far below the 2^63 of a BIGINT
_MIN_US = -62135596800 * 10**6 + 86_400 * 10**6  # 0001-01-02: every offset stays >= year 1
_MAX_US = 253402300799 * 10**6 - 86_400 * 10**6  # 9999-12-30
_ORDER_STATUSES = tuple(s.value for s in OrderStatus if s != OrderStatus.refunded)
_CONSENTS = tuple(f"consent_{c.value}" for c in Channel)
_LINE_COLUMNS = ("line_external_id", "sku", "name", "category", "quantity", "unit_price")

COLUMNS: dict[Kind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "customers": (
        ("external_id",),
        (
            "email",
            "phone",
            "first_name",
            "last_name",
            "birthday",
            "locale",
            "timezone",
            "created_at",
            "attributes",
            "flagged",
            "flagged_reason",
            *_CONSENTS,
        ),
    ),
    "products": (("sku", "name", "price", "currency"), ("category",)),
    "orders": (
        ("external_id", "customer_external_id", "placed_at", "currency"),
        (
            "status",
            "channel",
            "discount_code",
            "shipping_total",
            "tax_total",
            "discount_total",
            "total",
            "paid_at",
            "fulfilled_at",
            "delivered_at",
            "cancelled_at",
            "sku",
            "quantity",
            "unit_price",
            "line_discount",
            "line_external_id",
            "name",
            "category",
        ),
    ),
    "refunds": (
        ("external_id", "order_external_id", "refunded_at"),
        ("amount", "sku", "quantity", "line_external_id", "reason"),
    ),
}
# The column naming each row's record, for error reports.
_KEY: dict[Kind, str] = {
    "customers": "external_id",
    "products": "sku",
    "orders": "external_id",
    "refunds": "external_id",
}


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    """One refused row. ``column`` is empty when the whole record is refused."""

    row: int
    column: str
    external_id: str | None
    reason: str


@dataclass
class ImportReport:
    """What an import did. Counts are records (an order of three lines counts once)."""

    kind: Kind
    path: Path
    format: Format
    mode: Mode
    rows: int = 0
    records: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    pending: int = 0
    failed: int = 0
    rows_skipped: int = 0
    committed: bool = False
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


class ImportFailed(Exception):
    """The import could not start: unknown store, unreadable file, unknown format."""


class Progress(Protocol):
    """Receives the progress of an import; `patron import` shows it as Rich bars."""

    def start(self, phase: str, total: int | None) -> None: ...

    def advance(self, count: int) -> None: ...


class _Silent:
    def start(self, phase: str, total: int | None) -> None:
        pass

    def advance(self, count: int) -> None:
        pass


class RichBars:
    """Progress as Rich bars, one task per phase (read, validate, write), counting rows."""

    def __init__(self, progress: rich.progress.Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, rich.progress.TaskID] = {}
        self.current: rich.progress.TaskID | None = None

    def start(self, phase: str, total: int | None) -> None:
        if phase in self.tasks:
            self.current = self.tasks[phase]
            self.progress.update(self.current, total=total)
            return
        self.finish()  # the previous phase is done
        self.current = self.tasks[phase] = self.progress.add_task(phase, total=total)

    def advance(self, count: int) -> None:
        if self.current is not None:
            self.progress.advance(self.current, count)

    def finish(self) -> None:
        if self.current is not None:
            task = self.progress.tasks[self.current]
            self.progress.update(self.current, total=task.completed)


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def detect_format(path: Path, fmt: str | None = None) -> Format:
    name = (fmt or path.suffix.lstrip(".")).lower()
    if name in ("csv", "txt"):
        return "csv"
    if name in ("parquet", "pq"):
        return "parquet"
    raise ImportFailed(f"cannot tell the format of {path.name}: use --format csv|parquet")


def import_file(
    engine: Engine,
    store_slug: str,
    kind: Kind,
    path: Path | str,
    mode: Mode = "all-or-nothing",
    batch_size: int = 10_000,
    progress: Progress | rich.progress.Progress | None = None,
    fmt: Format | None = None,
    fk_triggers: bool = False,
) -> ImportReport:
    """Import one file of `kind` into a store. See the module docstring for the rules.

    ``progress``: a `Progress`, or a Rich Progress (one bar per phase is added to it).
    ``fk_triggers``: on PostgreSQL, keep the per-row foreign-key triggers while new orders
    are loaded instead of checking and locking the references in bulk (see importer_pg).
    """
    if kind not in KINDS:
        raise ImportFailed(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    if mode not in ("all-or-nothing", "skip-bad-rows"):
        raise ImportFailed(f"unknown mode {mode!r}")
    started = time.perf_counter()
    path = Path(path)
    bars = None
    tracker: Progress
    if isinstance(progress, rich.progress.Progress):
        tracker = bars = RichBars(progress)
    else:
        tracker = progress or _Silent()
    try:
        return _import(
            engine,
            store_slug,
            kind,
            path,
            mode,
            max(1, batch_size),
            tracker,
            fmt,
            fk_triggers,
            started,
        )
    finally:
        if bars is not None:
            bars.finish()


def _import(
    engine: Engine,
    store_slug: str,
    kind: Kind,
    path: Path,
    mode: Mode,
    batch_size: int,
    progress: Progress,
    fmt: Format | None,
    fk_triggers: bool,
    started: float,
) -> ImportReport:
    report = ImportReport(kind, path, detect_format(path, fmt), mode)
    with session_factory(engine)() as session:
        _store(session, store_slug)  # fail fast, before reading a large file

    progress.start("read", None)
    table, rows, read_errors = _read(path, report.format, progress)
    report.rows = table.num_rows + sum(1 for e in read_errors if e.row >= 0)
    report.phases["read"] = time.perf_counter() - started
    header = _check_header(kind, table.column_names)
    if header:
        return _finish(report, header, started, written=False)

    sheet = _Sheet(table, rows, read_errors, _KEY[kind])
    mark = time.perf_counter()
    progress.start("validate", report.rows)
    job: _Job = (
        _OrdersJob(sheet, mode, fk_triggers) if kind == "orders" else _RecordsJob(sheet, kind, mode)
    )
    progress.advance(report.rows)
    report.records = job.records
    report.phases["validate"] = time.perf_counter() - mark
    if mode == "all-or-nothing" and sheet.any_errors:
        report.failed = job.failed
        return _finish(report, sheet.errors(), started, written=False)

    mark = time.perf_counter()
    progress.start("write", job.writes)
    session = session_factory(engine)()
    try:
        store = _store(session, store_slug)
        db_errors = job.write(session, store, report, batch_size, progress)
        commit = mode == "skip-bad-rows" or not db_errors
        if commit:
            session.commit()
        else:
            session.rollback()
    except DBAPIError as exc:
        session.rollback()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ImportFailed(
            f"the database refused the import; nothing was written: {reason}"
        ) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    report.failed += job.failed
    report.phases["write"] = time.perf_counter() - mark
    return _finish(report, sheet.errors() + db_errors, started, written=commit)


def _store(session: Session, slug: str) -> Store:
    try:
        return stores.get(session, slug)
    except NotFound as exc:
        raise ImportFailed(f"no store {slug!r}") from exc


def _finish(
    report: ImportReport, errors: list[RowError], started: float, written: bool
) -> ImportReport:
    report.errors = sorted(errors, key=lambda e: e.row)
    report.committed = written
    if not written:
        report.created = report.updated = report.unchanged = report.pending = 0
        report.rows_skipped = report.rows
    else:
        report.rows_skipped = len({e.row for e in report.errors})
    report.seconds = time.perf_counter() - started
    return report


def _check_header(kind: Kind, names: Sequence[str]) -> list[RowError]:
    required, optional = COLUMNS[kind]
    errors = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            errors.append(RowError(HEADER_ROW, name, None, "column appears twice"))
        elif name not in required and name not in optional:
            known = ", ".join((*required, *optional))
            errors.append(RowError(HEADER_ROW, name, None, f"unknown column (known: {known})"))
        seen.add(name)
    for name in required:
        if name not in seen:
            errors.append(RowError(HEADER_ROW, name, None, "required column is missing"))
    if kind == "orders" and "total" not in seen:
        for name in ("quantity", "unit_price"):
            if name not in seen:
                errors.append(
                    RowError(
                        HEADER_ROW,
                        name,
                        None,
                        "required column is missing (orders need lines, or a `total` column "
                        "for orders without lines)",
                    )
                )
    return errors


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ReadError:
    row: int
    column: str
    key: str | None  # the record's external id, when it could be made out
    reason: str


def _read(path: Path, fmt: Format, progress: Progress) -> tuple[pa.Table, IntArr, list[_ReadError]]:
    if not path.is_file():
        raise ImportFailed(f"no such file: {path}")
    if fmt == "parquet":
        return _read_parquet(path, progress)
    return _read_csv(path, progress)


def _read_parquet(path: Path, progress: Progress) -> tuple[pa.Table, IntArr, list[_ReadError]]:
    try:
        source = pq.ParquetFile(path)
        progress.start("read", source.metadata.num_rows)
        batches = []
        for batch in source.iter_batches(batch_size=65_536):
            batches.append(batch)
            progress.advance(batch.num_rows)
        table = pa.Table.from_batches(batches, schema=source.schema_arrow)
    except (pa.ArrowException, OSError) as exc:
        raise ImportFailed(f"cannot read {path.name} as Parquet: {exc}") from exc
    return table, np.arange(table.num_rows, dtype=np.int64) + FIRST_ROW, []


def _csv_header(path: Path) -> list[str]:
    try:
        # Bad bytes further down are row errors; in the header they make unknown columns.
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
            header = next(csv.reader(f), None)
    except csv.Error as exc:
        raise ImportFailed(f"{path.name}: unreadable header row: {exc}") from exc
    if not header:
        raise ImportFailed(f"{path.name} is empty: a CSV import needs a header row")
    return header


def _read_csv(path: Path, progress: Progress) -> tuple[pa.Table, IntArr, list[_ReadError]]:
    header = _csv_header(path)
    names = list(dict.fromkeys(header))
    # Every column as text: the importer parses values itself. Empty means absent.
    text_types = {name: pa.string() for name in names}
    broken: list[Any] = []

    def on_invalid(row: Any) -> str:
        broken.append(row)
        return "skip"

    def options(types: dict[str, pa.DataType]) -> dict[str, Any]:
        return {
            "parse_options": pa_csv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            "convert_options": pa_csv.ConvertOptions(
                column_types=types,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        }

    errors: list[_ReadError] = []
    try:
        reader = pa_csv.open_csv(
            path, read_options=pa_csv.ReadOptions(block_size=16 << 20), **options(text_types)
        )
        batches = []
        for batch in reader:
            batches.append(batch)
            progress.advance(batch.num_rows)
        table = pa.Table.from_batches(batches, schema=reader.schema)
        if broken:
            # The streaming reader does not number skipped rows: read once more, serially.
            broken.clear()
            table = pa_csv.read_csv(
                path, read_options=pa_csv.ReadOptions(use_threads=False), **options(text_types)
            )
    except pa.ArrowInvalid as exc:
        if "UTF8" not in str(exc):
            raise ImportFailed(f"cannot read {path.name} as CSV: {exc}") from exc
        broken.clear()
        raw = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(use_threads=False),
            **options({name: pa.binary() for name in names}),
        )
        table, errors = _decode_utf8(raw, broken)
    except pa.ArrowException as exc:
        raise ImportFailed(f"cannot read {path.name} as CSV: {exc}") from exc

    key_at = {name: i for i, name in enumerate(header)}
    numbers = []
    for row in broken:
        number = int(row.number) if row.number is not None else 0
        numbers.append(number)
        try:
            fields = next(csv.reader([row.text]))
        except (csv.Error, StopIteration):
            fields = []
        key = None
        for name in ("external_id", "sku"):
            if name in key_at and key_at[name] < len(fields):
                key = fields[key_at[name]].strip() or None
                break
        errors.append(
            _ReadError(
                number,
                "",
                key,
                f"has {row.actual_columns} fields but the header has {row.expected_columns}",
            )
        )
    rows = np.arange(FIRST_ROW, FIRST_ROW + table.num_rows + len(numbers), dtype=np.int64)
    if numbers:
        rows = np.setdiff1d(rows, np.array(numbers, dtype=np.int64))
    return table, rows, errors


def _decode_utf8(raw: pa.Table, broken: list[Any]) -> tuple[pa.Table, list[_ReadError]]:
    """Text columns from a CSV read as bytes; cells that are not UTF-8 become errors."""
    columns, errors = [], []
    bad_rows: dict[int, str] = {}
    for name in raw.column_names:
        col = raw.column(name).combine_chunks()
        try:
            columns.append(pc.cast(col, pa.string()))
            continue
        except pa.ArrowInvalid:
            pass
        values = []
        for index, value in enumerate(col.to_pylist()):
            try:
                values.append(None if value is None else value.decode("utf-8"))
            except UnicodeDecodeError:
                values.append(None)
                bad_rows.setdefault(index, name)
        columns.append(pa.array(values, pa.string()))
    table = pa.table(columns, names=raw.column_names)
    # Row numbers are known once the broken rows are (see _read_csv); use a placeholder.
    for index, name in sorted(bad_rows.items()):
        errors.append(_ReadError(-index - 1, name, None, "not valid UTF-8 text"))
    return table, errors


# ---------------------------------------------------------------------------------------
# Column-wise checks
# ---------------------------------------------------------------------------------------


def _mask(values: Any) -> BoolArr:
    """A numpy bool mask from an Arrow boolean array (null = False)."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _is_text(col: pa.Array) -> bool:
    return bool(pa.types.is_string(col.type) or pa.types.is_large_string(col.type))


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


_NULL_TEXT = pa.scalar(None, pa.string())
_TS = (
    r"^(?P<y>[0-9]{4})-(?P<m>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12][0-9]|3[01])[T ]"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)$"
)
_TS_NAIVE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+)?$"
_DECIMAL = r"^(?P<whole>[0-9]*)(?:\.(?P<frac>[0-9]*))?$"
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


class _Sheet:
    """The rows of one file under validation, and the errors found in them so far."""

    def __init__(
        self, table: pa.Table, rows: IntArr, read_errors: list[_ReadError], key: str
    ) -> None:
        self.table = table
        self.n = table.num_rows
        self.rows = rows
        self.bad = np.zeros(self.n, dtype=bool)
        self.key = key
        self.keys: pa.Array = pa.nulls(self.n, pa.string())
        self._found: list[tuple[IntArr, str, list[str] | str]] = []
        self._text: dict[str, pa.Array] = {}
        self.read_errors: list[RowError] = []
        self.broken_keys: dict[str, int] = {}  # external id -> row of a row not readable
        for err in read_errors:
            if err.row < 0:  # a cell that is not UTF-8: the row is in the table
                self.flag_at(-err.row - 1, err.column, err.reason)
                continue
            self.read_errors.append(RowError(err.row, err.column, err.key, err.reason))
            if err.key is not None:
                self.broken_keys.setdefault(err.key, err.row)

    @property
    def any_errors(self) -> bool:
        return bool(self.read_errors) or bool(self.bad.any())

    def has(self, name: str) -> bool:
        return name in self.table.column_names

    def column(self, name: str) -> pa.Array | None:
        if name not in self.table.column_names:
            return None
        col = self.table.column(name)
        return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col

    def flag(
        self,
        mask: BoolArr,
        column: str,
        reason: str | Callable[[int], str],
        show: pa.Array | None = None,
    ) -> None:
        """Record an error on every row of `mask`; `show` adds each row's bad value."""
        idx = np.flatnonzero(mask)
        if not idx.size:
            return
        self.bad[idx] = True
        if callable(reason):
            self._found.append((idx, column, [reason(int(i)) for i in idx]))
        elif show is not None:
            values = pc.take(show, pa.array(idx)).to_pylist()
            self._found.append((idx, column, [f"{reason} (got {_show(v)})" for v in values]))
        else:
            self._found.append((idx, column, reason))

    def flag_at(self, index: int, column: str, reason: str) -> None:
        self.bad[index] = True
        self._found.append((np.array([index], dtype=np.int64), column, [reason]))

    def errors(self) -> list[RowError]:
        out = list(self.read_errors)
        for idx, column, reasons in self._found:
            keys = pc.take(self.keys, pa.array(idx)).to_pylist()
            texts = [reasons] * len(idx) if isinstance(reasons, str) else reasons
            out.extend(
                RowError(int(self.rows[i]), column, k, r)
                for i, k, r in zip(idx.tolist(), keys, texts, strict=True)
            )
        return out

    # --- parsers: each returns parsed values and flags the rows it cannot parse ---------

    def raw_text(self, name: str) -> pa.Array:
        """The column as trimmed text, empty -> null (for parsing and error messages)."""
        cached = self._text.get(name)
        if cached is not None:
            return cached
        col = self.column(name)
        if col is None:
            text = pa.nulls(self.n, pa.string())
        else:
            if not pa.types.is_string(col.type):
                col = pc.cast(col, pa.string())  # numbers, decimals, dictionaries ...
            col = pc.utf8_trim_whitespace(col)
            text = pc.if_else(pc.equal(col, ""), _NULL_TEXT, col)
        self._text[name] = text
        return text

    def present(self, name: str) -> BoolArr:
        """Rows with a value in this column (empty text counts as absent)."""
        col = self.column(name)
        if col is None:
            return np.zeros(self.n, dtype=bool)
        if _is_text(col):
            return _mask(self.raw_text(name).is_valid())
        return _mask(col.is_valid())

    def shown(self, name: str) -> pa.Array:
        """The column's values for error messages (not cast: only shown rows are read)."""
        col = self.column(name)
        if col is None or _is_text(col):
            return self.raw_text(name)
        return col

    def text(self, name: str, max_len: int, *, required: bool = False) -> pa.Array:
        col = self.raw_text(name)
        present = _mask(col.is_valid())
        nul = _mask(pc.match_substring(col, "\x00"))
        self.flag(nul, name, "must not contain NUL characters")
        long = _mask(pc.greater(pc.utf8_length(col), max_len)) & ~nul
        self.flag(long, name, f"at most {max_len} characters")
        if required:
            self.flag(~present, name, "required")
        return pc.if_else(pa.array(nul | long), _NULL_TEXT, col)

    def currency(self, name: str) -> pa.Array:
        col = self.text(name, TEXT_LEN, required=True)
        upper = pc.utf8_upper(col)
        ok = _mask(pc.match_substring_regex(upper, r"^[A-Z]{3}$"))
        present = _mask(col.is_valid())
        self.flag(present & ~ok, name, "not an ISO 4217 currency code like `CNY`", show=col)
        return pc.if_else(pa.array(ok), upper, _NULL_TEXT)

    def status(self, name: str) -> pa.Array:
        col = self.text(name, TEXT_LEN)
        present = _mask(col.is_valid())
        ok = _mask(pc.is_in(col, value_set=pa.array(_ORDER_STATUSES)))
        refunded = _mask(pc.equal(col, OrderStatus.refunded.value))
        self.flag(refunded, name, "`refunded` is set by refunds, not sent on an order")
        self.flag(
            present & ~ok & ~refunded,
            name,
            f"not one of {', '.join(_ORDER_STATUSES)}",
            show=col,
        )
        placed = pa.scalar(OrderStatus.placed.value, pa.string())
        return pc.if_else(pa.array(present), pc.if_else(pa.array(ok), col, _NULL_TEXT), placed)

    def amount(self, name: str, exps: IntArr, currency: pa.Array) -> tuple[IntArr, BoolArr]:
        """Integer minor units (0 where absent or bad) and where a good value was given.

        The rules of kit.money.to_minor and the API's `Amount`: a finite decimal, not
        negative, below 10^13, with no more places than the currency has. A strict Arrow
        cast to decimal(38, exponent) checks a whole column at once; only a column with
        a bad value is looked at row by row, to say which rows and why.
        """
        minor = np.zeros(self.n, dtype=np.int64)
        given = np.zeros(self.n, dtype=bool)
        col = self.column(name)
        if col is None:
            return minor, given
        present = self.present(name)
        show = self.shown(name)
        source = col if pa.types.is_decimal(col.type) else self.raw_text(name)
        for exp in np.unique(exps[present]).tolist():
            sel = present & (exps == exp)
            part = source
            if not np.array_equal(sel, present):
                part = pc.if_else(pa.array(sel), source, pa.scalar(None, source.type))
            limit = int(MAX_MAJOR) * 10**exp
            try:
                units, fits = _unscaled(pc.cast(part, pa.decimal128(38, exp)))
            except pa.ArrowInvalid:
                text = self.raw_text(name)
                units, good = self._amount_slowly(name, text, sel, exp, currency)
            else:
                fits &= sel
                negative = fits & (units < 0)
                self.flag(negative, name, "must not be negative", show=show)
                big = (sel & ~fits) | (fits & ~negative & (units >= limit))
                self.flag(big, name, f"out of range (must be below {MAX_MAJOR:,})", show=show)
                good = fits & ~negative & ~big
            minor[good] = units[good]
            given |= good
        return minor, given

    def _amount_slowly(
        self, name: str, text: pa.Array, sel: BoolArr, exp: int, currency: pa.Array
    ) -> tuple[IntArr, BoolArr]:
        """Amounts of a column that failed the cast: plain decimals column-wise, anything
        else (exponents, signs, garbage) through kit.money.to_minor itself."""
        parts = pc.extract_regex(text, _DECIMAL)
        whole = pc.utf8_ltrim(parts.field("whole"), "0")
        frac = pc.utf8_rtrim(parts.field("frac"), "0")
        digits = _lengths(parts.field("whole")) + _lengths(parts.field("frac"))
        plain = sel & _mask(parts.is_valid()) & (digits > 0)
        big = plain & (_lengths(whole) > 13)
        self.flag(big, name, f"out of range (must be below {MAX_MAJOR:,})", show=text)
        precise = _lengths(frac) <= exp

        def too_precise(i: int) -> str:
            cur = currency[i].as_py() or "the currency"
            return f"{text[i].as_py()} has more decimal places than {cur} allows ({exp})"

        self.flag(plain & ~big & ~precise, name, too_precise)
        good = plain & ~big & precise
        number = pc.binary_join_element_wise(whole, pc.utf8_rpad(frac, exp, "0"), "")
        number = pc.if_else(pa.array(good), number, "0")
        number = pc.if_else(pc.equal(number, ""), "0", number)
        units = np.asarray(pc.cast(number, pa.int64()).to_numpy(zero_copy_only=False))
        units = np.where(good, units, 0)
        for i in np.flatnonzero(sel & ~plain).tolist():
            value = text[i].as_py()
            try:
                amount = Decimal(value)
            except InvalidOperation:
                self.flag_at(i, name, f"not a decimal amount (got {_show(value)})")
                continue
            if amount.is_finite() and amount < 0:
                self.flag_at(i, name, f"must not be negative (got {_show(value)})")
                continue
            try:
                units[i] = to_minor(amount, currency[i].as_py() or "XXX")
            except MoneyError as exc:
                self.flag_at(i, name, str(exc))
                continue
            good[i] = True
        return units, good

    def integer(self, name: str, low: int, high: int) -> tuple[IntArr, BoolArr]:
        values = np.zeros(self.n, dtype=np.int64)
        if not self.has(name):
            return values, np.zeros(self.n, dtype=bool)
        col = self.column(name)
        present = self.present(name)
        show = self.shown(name)
        try:
            numeric = col is not None and pa.types.is_integer(col.type)
            parsed = pc.cast(col if numeric else self.raw_text(name), pa.int64())
            ok = present
        except pa.ArrowInvalid:
            text = self.raw_text(name)
            whole = _mask(pc.match_substring_regex(text, r"^[+-]?[0-9]+(\.0*)?$"))
            self.flag(present & ~whole, name, "not a whole number", show=text)
            digits = pc.replace_substring_regex(text, r"^[+]|\.0*$", "")
            long = whole & (_lengths(digits) > 18)
            ok = whole & ~long
            parsed = pc.cast(pc.if_else(pa.array(ok), digits, "0"), pa.int64())
            self.flag(long, name, f"must be between {low:,} and {high:,}", show=text)
        values = np.where(ok, np.asarray(pc.fill_null(parsed, 0).to_numpy(zero_copy_only=False)), 0)
        out = ok & ((values < low) | (values > high))
        self.flag(out, name, f"must be between {low:,} and {high:,}", show=show)
        return values, ok & ~out

    def timestamp(self, name: str, *, required: bool = False) -> tuple[pa.Array, BoolArr]:
        """Naive UTC ``timestamp('us')`` values (null where absent or bad), and validity.

        ISO 8601 with a zone offset, as the API's AwareDatetime. A strict Arrow cast
        checks the whole column; only a column with a bad value is diagnosed row by row.
        """
        col = self.column(name)
        nothing = pa.nulls(self.n, pa.timestamp("us"))
        if col is None:
            if required:
                self.flag(np.ones(self.n, dtype=bool), name, "required")
            return nothing, np.zeros(self.n, dtype=bool)
        present = _mask(col.is_valid())
        if pa.types.is_timestamp(col.type):
            if col.type.tz is None:
                self.flag(present, name, "needs a time zone: the column holds naive timestamps")
                return nothing, np.zeros(self.n, dtype=bool)
            micros = pc.cast(pc.cast(col, pa.timestamp("us", col.type.tz), safe=False), pa.int64())
            ok = present
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            text = self.raw_text(name)
            present = _mask(text.is_valid())
            try:
                micros = pc.cast(pc.cast(text, pa.timestamp("us", "UTC")), pa.int64())
                ok = present
            except pa.ArrowInvalid:
                micros, ok = self._timestamp_slowly(name, text, present)
        else:
            self.flag(present, name, f"not a timestamp (a {col.type} column)")
            return nothing, np.zeros(self.n, dtype=bool)
        us = np.asarray(pc.fill_null(micros, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        out = ok & ((us < _MIN_US) | (us > _MAX_US))
        self.flag(out, name, "out of range (years 0001 to 9999)")
        ok = ok & ~out
        if required:
            self.flag(~present, name, "required")
        return pa.array(us, pa.timestamp("us"), mask=~ok), ok

    def _timestamp_slowly(
        self, name: str, text: pa.Array, present: BoolArr
    ) -> tuple[pa.Array, BoolArr]:
        """Per-row diagnosis of timestamps that failed the column cast."""
        parts = pc.extract_regex(text, _TS)
        ok = _mask(parts.is_valid())
        naive = present & ~ok & _mask(pc.match_substring_regex(text, _TS_NAIVE))
        self.flag(naive, name, "needs a time zone offset, like +08:00 or Z", show=text)
        self.flag(
            present & ~ok & ~naive,
            name,
            "not an ISO 8601 timestamp like 2026-01-05T10:00:00+08:00",
            show=text,
        )
        year = _ints(parts.field("y"), ok)
        month = _ints(parts.field("m"), ok)
        day = _ints(parts.field("d"), ok)
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        last = _DAYS_IN_MONTH[np.where(ok, month, 1)] + ((month == 2) & leap)
        no_day = ok & (day > last)
        self.flag(no_day, name, "no such day", show=text)
        ok &= ~no_day & (year > 0)
        good = pc.if_else(pa.array(ok), text, _NULL_TEXT)
        return pc.cast(pc.cast(good, pa.timestamp("us", "UTC")), pa.int64()), ok


def _lengths(text: pa.Array) -> IntArr:
    return np.asarray(
        pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False), dtype=np.int64
    )


def _unscaled(decimals: pa.Array) -> tuple[IntArr, BoolArr]:
    """The unscaled integers of a decimal128 array, and where they fit an int64."""
    n, offset = len(decimals), decimals.offset
    words = np.frombuffer(decimals.buffers()[1], dtype="<i8")[2 * offset : 2 * (offset + n)]
    low, high = words[0::2], words[1::2]
    valid = _mask(decimals.is_valid())
    return np.where(valid, low, 0).astype(np.int64), valid & (high == (low >> 63))


def _ints(text: pa.Array, ok: BoolArr) -> IntArr:
    safe = pc.if_else(pa.array(ok), text, "0")
    return np.asarray(pc.cast(safe, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


@dataclass
class _Groups:
    """Rows grouped by a key (order or refund external id), groups in file order."""

    keys: pa.Array  # distinct keys, in order of first appearance
    of_row: IntArr  # group of each row
    order: IntArr  # row indexes sorted by group, then by file order
    starts: IntArr  # where each group starts in `order`
    sizes: IntArr
    first: IntArr  # first row of each group

    @classmethod
    def of(cls, keys: pa.Array) -> _Groups:
        encoded = pc.dictionary_encode(keys)
        of_row = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        order = np.argsort(of_row, kind="stable")
        sizes = np.bincount(of_row, minlength=len(encoded.dictionary)).astype(np.int64)
        starts = np.zeros_like(sizes)
        np.cumsum(sizes[:-1], out=starts[1:])
        return cls(encoded.dictionary, of_row, order, starts, sizes, order[starts])

    def __len__(self) -> int:
        return len(self.sizes)

    def any(self, rows: BoolArr) -> BoolArr:
        """Per group: whether any of its rows is in the mask."""
        return np.bincount(self.of_row, weights=rows, minlength=len(self)) > 0


def _keys_for_grouping(keys: pa.Array) -> pa.Array:
    """Keys with a unique stand-in for rows without a usable key (they fail on their own)."""
    stand_in = pc.binary_join_element_wise(
        "\x00", pc.cast(pa.array(np.arange(len(keys))), pa.string()), ""
    )
    return pc.if_else(keys.is_valid(), keys, stand_in)


def _agree(
    sheet: _Sheet,
    groups: _Groups,
    name: str,
    values: Sequence[Any],
    noun: str,
    clean: BoolArr,
) -> None:
    """Flag rows whose value of a record-level column differs from their group's first row.

    ``values`` are the parsed forms of the column (numpy arrays or Arrow arrays, e.g.
    minor units and a given-mask), so "10.0" and "10.00" agree. Only rows that were
    `clean` before these checks are compared (a bad value is reported once, as bad).
    """
    if not sheet.has(name):
        return
    ref = groups.first[groups.of_row]
    same = np.ones(sheet.n, dtype=bool)
    for value in values:
        if isinstance(value, np.ndarray):
            same &= value == value[ref]
        else:
            other = pc.take(value, pa.array(ref))
            equal = _mask(pc.equal(value, other))
            both_null = _mask(pc.and_(value.is_null(), other.is_null()))
            same &= equal | both_null
    differ = clean & clean[ref] & ~same
    if not differ.any():
        return
    shown = sheet.shown(name)

    def reason(i: int) -> str:
        j = int(ref[i])
        return (
            f"differs from row {sheet.rows[j]} of the same {noun} "
            f"({_show(shown[i].as_py())} here, {_show(shown[j].as_py())} there)"
        )

    sheet.flag(differ, name, reason)


# ---------------------------------------------------------------------------------------
# Jobs: one per kind of file
# ---------------------------------------------------------------------------------------


class _Job(Protocol):
    records: int  # records in the file (orders, customers ...)
    failed: int  # records refused by validation
    writes: int  # records to write (for the progress bar)

    def write(
        self,
        session: Session,
        store: Store,
        report: ImportReport,
        batch_size: int,
        progress: Progress,
    ) -> list[RowError]: ...


class _OrdersJob:
    """Orders: column-wise validation, then the fast path for new orders."""

    def __init__(self, sheet: _Sheet, mode: Mode, fk_triggers: bool = False) -> None:
        self.sheet = sheet
        self.mode = mode
        self.fk_triggers = fk_triggers
        s = sheet
        ext = s.text("external_id", ID_LEN, required=True)
        s.keys = ext
        cust = s.text("customer_external_id", ID_LEN, required=True)
        status = s.status("status")
        currency = s.currency("currency")
        exps = bulk.exponents(currency)
        # Channel and discount code: the orders table's column widths.
        channel = s.text("channel", 32)
        code = s.text("discount_code", 64)
        ship, _ = s.amount("shipping_total", exps, currency)
        tax, _ = s.amount("tax_total", exps, currency)
        disc, _ = s.amount("discount_total", exps, currency)
        total, total_given = s.amount("total", exps, currency)
        stamps = {
            name: s.timestamp(name, required=name == "placed_at")[0]
            for name in ("placed_at", "paid_at", "fulfilled_at", "delivered_at", "cancelled_at")
        }
        line_ext = s.text("line_external_id", ID_LEN)
        sku = s.text("sku", ID_LEN)
        name = s.text("name", TEXT_LEN)
        category = s.text("category", 128)
        qty, _ = s.integer("quantity", 1, 1_000_000)
        unit, _ = s.amount("unit_price", exps, currency)
        ldisc, _ = s.amount("line_discount", exps, currency)

        # Which rows carry a line: any line column filled in.
        has_line = np.zeros(s.n, dtype=bool)
        for col in (*_LINE_COLUMNS, "line_discount"):
            has_line |= s.present(col)
        for col in ("quantity", "unit_price"):
            missing = has_line & ~s.present(col)
            s.flag(missing, col, "required for an order line")

        groups = self.groups = _Groups.of(_keys_for_grouping(ext))
        g = groups.of_row
        clean = ~s.bad
        for col, values in (
            ("customer_external_id", [cust]),
            ("status", [status]),
            ("currency", [currency]),
            ("channel", [channel]),
            ("discount_code", [code]),
            ("shipping_total", [ship]),
            ("tax_total", [tax]),
            ("discount_total", [disc]),
            ("total", [total, total_given]),
            *((n, [v]) for n, v in stamps.items()),
        ):
            _agree(s, groups, col, values, "order", clean)

        lines_per = np.bincount(g, weights=has_line, minlength=len(groups)).astype(np.int64)
        self._check_structure(ext, has_line, lines_per)
        line_total = self._line_money(has_line, unit, qty, ldisc)
        subtotal, total_out = self._order_money(
            lines_per, line_total, disc, ship, tax, total, total_given, currency
        )

        bad_order = groups.any(s.bad)
        if mode == "skip-bad-rows":
            self._report_siblings(ext, bad_order)
        self.records = len(groups)
        self.failed = int(bad_order.sum())

        # The valid orders, column-wise, and their lines sorted by order then file order.
        keep = self.keep = np.flatnonzero(~bad_order)
        first = groups.first
        pick = pa.array(first[keep])
        renumber = np.full(len(groups), -1, dtype=np.int64)
        renumber[keep] = np.arange(len(keep))
        line_rows = groups.order[(has_line & ~bad_order[g])[groups.order]]
        line_order = renumber[g[line_rows]]
        starts = np.flatnonzero(np.r_[True, line_order[1:] != line_order[:-1]])
        sizes = np.diff(np.r_[starts, len(line_rows)])
        line_no = np.arange(len(line_rows)) - np.repeat(starts, sizes)
        take = pa.array(line_rows)
        self.total_given = total_given[first][keep]
        self.customer_external_id = cust.take(pick)
        self.new = bulk.NewOrders(
            store_id=0,
            external_id=ext.take(pick),
            customer_id=np.zeros(len(keep), dtype=np.int64),
            status=status.take(pick),
            channel=channel.take(pick),
            currency=currency.take(pick),
            discount_code=code.take(pick),
            subtotal=subtotal[keep],
            discount=disc[first][keep],
            shipping=ship[first][keep],
            tax=tax[first][keep],
            total=total_out[keep],
            placed_at=stamps["placed_at"].take(pick),
            paid_at=stamps["paid_at"].take(pick),
            fulfilled_at=stamps["fulfilled_at"].take(pick),
            delivered_at=stamps["delivered_at"].take(pick),
            cancelled_at=stamps["cancelled_at"].take(pick),
            line_order=line_order.astype(np.int64),
            line_no=line_no.astype(np.int64),
            line_external_id=line_ext.take(take),
            sku=sku.take(take),
            name=name.take(take),
            category=category.take(take),
            quantity=qty[line_rows],
            unit_price=unit[line_rows],
            line_discount=ldisc[line_rows],
            line_total=line_total[line_rows],
        )
        self.writes = len(keep)

    def _check_structure(self, ext: pa.Array, has_line: BoolArr, lines_per: IntArr) -> None:
        """An order is lines, or a single row without a line (and with a `total`)."""
        s, groups = self.sheet, self.groups
        g = groups.of_row
        is_first = np.arange(s.n) == groups.first[g]
        s.flag(
            (lines_per[g] > 0) & ~has_line,
            "",
            lambda i: (
                "has no line (quantity, unit_price empty) while other rows of order "
                f"{ext[i].as_py()!r} have lines"
            ),
        )
        s.flag(
            (lines_per[g] == 0) & ~is_first,
            "",
            lambda i: (
                f"repeats order {ext[i].as_py()!r}, which has no lines: an order without "
                "lines takes a single row"
            ),
        )
        s.flag((lines_per > 500)[g] & is_first, "", "an order has at most 500 lines")
        if s.broken_keys:
            lost = np.array([k in s.broken_keys for k in groups.keys.to_pylist()], dtype=bool)
            s.flag(
                lost[g] & is_first,
                "",
                lambda i: (
                    "the order has a row that could not be read "
                    f"(row {s.broken_keys[ext[i].as_py()]})"
                ),
            )

    def _line_money(self, has_line: BoolArr, unit: IntArr, qty: IntArr, ldisc: IntArr) -> IntArr:
        """Net amount of each line (the API's LineIn rules); float estimates catch
        int64 overflow before any integer product is taken."""
        s = self.sheet
        huge = has_line & (unit.astype(np.float64) * qty >= _MAX_MINOR)
        s.flag(huge & ~s.bad, "unit_price", "unit_price × quantity is out of range")
        gross = unit * np.where(huge | ~has_line, 0, qty)
        over = has_line & ~s.bad & (ldisc > gross)
        s.flag(over, "line_discount", "larger than the line amount (unit_price × quantity)")
        return np.where(has_line & ~huge, gross - ldisc, 0)

    def _order_money(
        self,
        lines_per: IntArr,
        line_total: IntArr,
        disc: IntArr,
        ship: IntArr,
        tax: IntArr,
        total: IntArr,
        total_given: BoolArr,
        currency: pa.Array,
    ) -> tuple[IntArr, IntArr]:
        """Subtotal and total of each order, checked as OrderIn.minor checks them."""
        s, groups = self.sheet, self.groups
        g, first = groups.of_row, groups.first
        estimate = np.zeros(len(groups))
        np.add.at(estimate, g, line_total.astype(np.float64))
        fits = estimate < _MAX_MINOR
        subtotal = np.zeros(len(groups), dtype=np.int64)
        np.add.at(subtotal, g, np.where(fits[g], line_total, 0))
        with_lines = lines_per > 0
        o_disc, o_ship, o_tax = disc[first], ship[first], tax[first]
        o_total, o_given, o_cur = total[first], total_given[first], currency.take(first)
        calc = subtotal - o_disc + o_ship + o_tax
        clean = ~groups.any(s.bad)
        is_first = np.zeros(s.n, dtype=bool)
        is_first[first] = True

        def at_first(mask: BoolArr) -> BoolArr:
            return is_first & (clean & mask)[g]

        def money(values: IntArr, i: int) -> str:
            return str(from_minor(int(values[g[i]]), o_cur[int(g[i])].as_py()))

        s.flag(at_first(~fits), "", "the order amount is out of range")
        clean &= fits
        s.flag(at_first(with_lines & (calc < 0)), "discount_total", "larger than the order amount")
        s.flag(
            at_first(with_lines & (calc >= 0) & o_given & (o_total != calc)),
            "total",
            lambda i: (
                f"{money(o_total, i)} does not equal lines − discount + shipping + tax "
                f"({money(calc, i)})"
            ),
        )
        s.flag(
            at_first(~with_lines & ~o_given),
            "total",
            "required when an order has no lines (quantity, unit_price empty)",
        )
        no_lines_sub = o_total + o_disc - o_ship - o_tax
        s.flag(
            at_first(~with_lines & o_given & (no_lines_sub < 0)),
            "total",
            "smaller than shipping + tax − discount",
        )
        subtotal = np.where(with_lines, subtotal, no_lines_sub)
        return subtotal, np.where(with_lines, calc, o_total)

    def _report_siblings(self, ext: pa.Array, bad_order: BoolArr) -> None:
        """Skip mode: every other row of a refused order is reported as skipped."""
        s, g = self.sheet, self.groups.of_row
        first_bad = np.full(len(self.groups), s.n, dtype=np.int64)
        bad_rows = np.flatnonzero(s.bad)
        np.minimum.at(first_bad, g[bad_rows], bad_rows)
        s.flag(
            bad_order[g] & ~s.bad,
            "",
            lambda i: (
                f"skipped with its order {ext[i].as_py()!r}: row "
                f"{s.rows[first_bad[g[i]]]} is invalid"
            ),
        )

    # --- writing ------------------------------------------------------------------------

    def write(
        self,
        session: Session,
        store: Store,
        report: ImportReport,
        batch_size: int,
        progress: Progress,
    ) -> list[RowError]:
        now = utcnow()
        o = self.new
        o.store_id = store.id
        exts: list[str] = o.external_id.to_pylist()
        known: dict[str, orders_repo.OrderState] = {}
        is_new = np.ones(len(o), dtype=bool)
        for _attempt in range(3):
            if len(o) and bulk.store_has_orders(session, store.id):
                ask = [e for e, new in zip(exts, is_new.tolist(), strict=True) if new]
                known.update(bulk.order_states(session, store.id, ask))
                is_new = np.array([e not in known for e in exts], dtype=bool)
            new = np.flatnonzero(is_new)
            fresh = _subset(o, new)
            fresh.customer_id = self._customer_ids(
                session, store, self.customer_external_id.take(pa.array(new)), now
            )
            try:
                bulk.insert_new_orders(
                    session, fresh, now, batch_size, progress.advance, self.fk_triggers
                )
                break
            except bulk.OrdersExist:
                continue  # lost a race with another writer: look again
        else:
            raise ImportFailed("orders kept being created concurrently; try again")
        report.created += len(new)
        waiting = bulk.orders_with_pending_refunds(session, store.id)
        if waiting:
            arrived = waiting.intersection(fresh.external_id.to_pylist())
            if arrived:
                refunds.apply_pending(session, store, arrived)
        old = np.flatnonzero(~is_new)
        if not len(old):
            return []
        return self._existing(session, store, old, known, report, batch_size, progress, now)

    def _customer_ids(
        self, session: Session, store: Store, external_ids: pa.Array, now: datetime
    ) -> IntArr:
        """Customer id per order; unknown customers get stub profiles (customers.ensure)."""
        encoded = pc.dictionary_encode(external_ids)
        names: list[str] = encoded.dictionary.to_pylist()
        ids = bulk.customer_ids(session, store.id, names)
        missing = [n for n in names if n not in ids]
        if missing:  # stub profiles, made by the service
            ids.update(customers.ensure(session, store, missing, now))
        table = np.array([ids[n] for n in names] + [0], dtype=np.int64)
        return table[np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]

    def _existing(
        self,
        session: Session,
        store: Store,
        old: IntArr,
        states: dict[str, orders_repo.OrderState],
        report: ImportReport,
        batch_size: int,
        progress: Progress,
        now: datetime,
    ) -> list[RowError]:
        """Orders already stored: unchanged when the file says nothing new, otherwise the
        exact path through `orders.upsert_many` (status advances, conflicts)."""
        listed = _Listed(_subset(self.new, old), self.customer_external_id.take(pa.array(old)))
        ids = [states[ext].id for ext in listed.ext]
        stored = bulk.stored_orders(session, ids)
        customer_ids = bulk.customer_ids(session, store.id, list(dict.fromkeys(listed.customer)))
        differ: list[int] = []
        for k, oid in enumerate(ids):
            if listed.same(k, stored[oid], customer_ids.get(listed.customer[k])):
                report.unchanged += 1
            else:
                differ.append(k)
        progress.advance(len(old) - len(differ))
        errors: list[RowError] = []
        given = self.total_given[old]
        for batch in chunks(differ, min(batch_size, _ORM_BATCH)):
            built = [(k, OrderIn.model_validate(listed.body(k, bool(given[k])))) for k in batch]
            results = orders.upsert_many(
                session, store, [r for _, r in built], stale_ok=True, now=now
            )
            for (k, _), result in zip(built, results, strict=True):
                if result.status == "error":
                    errors += self._refused(int(old[k]), result.error or "refused")
                    report.failed += 1
                elif result.status == "created":  # pragma: no cover - deleted meanwhile
                    report.created += 1
                elif result.status == "updated":
                    report.updated += 1
                else:
                    report.unchanged += 1
            _forget(session, store)
            progress.advance(len(batch))
        return errors

    def _refused(self, j: int, reason: str) -> list[RowError]:
        """Errors for every row of valid order j, refused while writing."""
        s, groups = self.sheet, self.groups
        group = int(self.keep[j])
        start = int(groups.starts[group])
        rows = groups.order[start : start + int(groups.sizes[group])]
        ext = self.new.external_id[j].as_py()
        first = int(s.rows[rows[0]])
        out = [RowError(first, "", ext, reason)]
        if self.mode == "skip-bad-rows":
            out += [
                RowError(int(s.rows[i]), "", ext, f"skipped with its order {ext!r}: row {first}")
                for i in rows[1:].tolist()
            ]
        return out


Line = tuple[str | None, str | None, str | None, str | None, int, int, int]


class _Listed:
    """Some orders as Python values, for comparing with stored orders and the slow path."""

    def __init__(self, o: bulk.NewOrders, customer: pa.Array) -> None:
        def us(col: pa.Array) -> list[int | None]:
            values: list[int | None] = pc.cast(col, pa.int64()).to_pylist()
            return values

        self.ext: list[str] = o.external_id.to_pylist()
        self.customer: list[str] = customer.to_pylist()
        self.status: list[str] = o.status.to_pylist()
        self.channel: list[str | None] = o.channel.to_pylist()
        self.currency: list[str] = o.currency.to_pylist()
        self.code: list[str | None] = o.discount_code.to_pylist()
        self.discount = o.discount.tolist()
        self.shipping = o.shipping.tolist()
        self.tax = o.tax.tolist()
        self.total = o.total.tolist()
        self.placed = us(o.placed_at)
        self.stamps = {
            "paid_at": us(o.paid_at),
            "fulfilled_at": us(o.fulfilled_at),
            "delivered_at": us(o.delivered_at),
            "cancelled_at": us(o.cancelled_at),
        }
        self.lines: list[list[Line]] = [[] for _ in self.ext]
        for line in zip(
            o.line_order.tolist(),
            o.line_external_id.to_pylist(),
            o.sku.to_pylist(),
            o.name.to_pylist(),
            o.category.to_pylist(),
            o.quantity.tolist(),
            o.unit_price.tolist(),
            o.line_discount.tolist(),
            strict=True,
        ):
            self.lines[line[0]].append(line[1:])

    def same(self, k: int, stored: bulk.StoredOrder, customer_id: int | None) -> bool:
        """Whether upserting order k would change nothing (so it need not be sent)."""
        lines = tuple((ext, sku, q, u, d) for ext, sku, _, _, q, u, d in self.lines[k])
        if (
            customer_id != stored.customer_id
            or self.currency[k] != stored.currency
            or self.placed[k] != stored.placed_at
            or self.discount[k] != stored.discount
            or self.shipping[k] != stored.shipping
            or self.tax[k] != stored.tax
            or self.total[k] != stored.total
            or lines != stored.lines
        ):
            return False  # a conflict: the service words it
        try:
            moved = next_status(OrderStatus(stored.status), OrderStatus(self.status[k]))
        except TransitionError:
            return False
        if moved is None:
            return True  # older news than what is stored: a no-op, as for webhooks
        if moved.value != stored.status:
            return False
        if self.channel[k] != stored.channel or self.code[k] != stored.discount_code:
            return False
        for name, values in self.stamps.items():
            given = values[k]
            if given is not None and given != getattr(stored, name):
                return False  # an omitted timestamp keeps the stored one
        return True

    def body(self, k: int, total_given: bool) -> dict[str, Any]:
        """Order k as the API's OrderIn body."""
        cur = self.currency[k]

        def stamp(value: int | None) -> datetime | None:
            return None if value is None else bulk.EPOCH + timedelta(microseconds=value)

        body: dict[str, Any] = {
            "external_id": self.ext[k],
            "customer_external_id": self.customer[k],
            "status": self.status[k],
            "channel": self.channel[k],
            "currency": cur,
            "discount_code": self.code[k],
            "discount_total": from_minor(self.discount[k], cur),
            "shipping_total": from_minor(self.shipping[k], cur),
            "tax_total": from_minor(self.tax[k], cur),
            "placed_at": stamp(self.placed[k]),
            **{name: stamp(values[k]) for name, values in self.stamps.items()},
            "lines": [
                {
                    "external_id": ext,
                    "sku": sku,
                    "name": name,
                    "category": category,
                    "quantity": quantity,
                    "unit_price": from_minor(unit, cur),
                    "discount": from_minor(disc, cur),
                }
                for ext, sku, name, category, quantity, unit, disc in self.lines[k]
            ],
        }
        if total_given:
            body["total"] = from_minor(self.total[k], cur)
        return body


def _subset(o: bulk.NewOrders, idx: IntArr) -> bulk.NewOrders:
    """Orders `idx` (sorted) of `o`, with their lines."""
    if len(idx) == len(o):
        return o
    pick = pa.array(idx)
    renumber = np.full(len(o), -1, dtype=np.int64)
    renumber[idx] = np.arange(len(idx))
    keep = renumber[o.line_order] >= 0
    lines = pa.array(np.flatnonzero(keep))
    return bulk.NewOrders(
        store_id=o.store_id,
        external_id=o.external_id.take(pick),
        customer_id=o.customer_id[idx],
        status=o.status.take(pick),
        channel=o.channel.take(pick),
        currency=o.currency.take(pick),
        discount_code=o.discount_code.take(pick),
        subtotal=o.subtotal[idx],
        discount=o.discount[idx],
        shipping=o.shipping[idx],
        tax=o.tax[idx],
        total=o.total[idx],
        placed_at=o.placed_at.take(pick),
        paid_at=o.paid_at.take(pick),
        fulfilled_at=o.fulfilled_at.take(pick),
        delivered_at=o.delivered_at.take(pick),
        cancelled_at=o.cancelled_at.take(pick),
        line_order=renumber[o.line_order[keep]],
        line_no=o.line_no[keep],
        line_external_id=o.line_external_id.take(lines),
        sku=o.sku.take(lines),
        name=o.name.take(lines),
        category=o.category.take(lines),
        quantity=o.quantity[keep],
        unit_price=o.unit_price[keep],
        line_discount=o.line_discount[keep],
        line_total=o.line_total[keep],
    )


# ---------------------------------------------------------------------------------------
# Customers, products, refunds: record by record through the API's schemas and services
# ---------------------------------------------------------------------------------------


@dataclass
class _Record:
    rows: list[int]  # table row indexes; the first one names the record
    data: dict[str, Any]
    line_rows: list[int] = field(default_factory=list)  # refunds: row of each line
    consents: list[str] = field(default_factory=list)  # customers: column of each consent


class _RecordsJob:
    """Customers, products and refunds: pydantic per record, services in batches."""

    def __init__(self, sheet: _Sheet, kind: Kind, mode: Mode) -> None:
        self.sheet = sheet
        self.kind = kind
        self.mode = mode
        sheet.keys = sheet.raw_text(_KEY[kind])
        values = {name: sheet.column(name) for name in sheet.table.column_names}
        self.lists = {name: _python_values(col) for name, col in values.items() if col is not None}
        if kind == "refunds":
            records = self._refunds()
        else:
            records = [self._single(i) for i in range(sheet.n)]
        model = _MODELS[kind]
        self.valid: list[tuple[_Record, Any]] = []
        bad_records = 0
        for record in records:
            try:
                checked = model.model_validate(record.data)
            except ValidationError as exc:
                for err in validation_errors(list(exc.errors())):
                    row, column = self._locate(record, err["field"])
                    sheet.flag_at(row, column, err["message"])
            if any(sheet.bad[i] for i in record.rows):
                bad_records += 1
            else:
                self.valid.append((record, checked))
        if mode == "skip-bad-rows" and kind == "refunds":
            self._skip_siblings(records)
        self.records = len(records)
        self.failed = bad_records
        self.writes = len(self.valid)

    def _skip_siblings(self, records: list[_Record]) -> None:
        s = self.sheet
        for record in records:
            bad = [i for i in record.rows if s.bad[i]]
            if not bad:
                continue
            first_bad = int(s.rows[bad[0]])
            for i in record.rows:
                if not s.bad[i]:
                    s.flag_at(i, "", f"skipped with its refund: row {first_bad} is invalid")

    # --- building records -----------------------------------------------------------

    def _value(self, name: str, i: int) -> Any:
        values = self.lists.get(name)
        if values is None:
            return None
        value = values[i]
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    def _single(self, i: int) -> _Record:
        data: dict[str, Any] = {}
        record = _Record([i], data)
        for name in self.lists:
            value = self._value(name, i)
            if value is None:
                continue
            if name in _CONSENTS:
                data.setdefault("consents", []).append(
                    {"channel": name.removeprefix("consent_"), "granted": value, "source": "import"}
                )
                record.consents.append(name)
            elif name == "attributes" and isinstance(value, str):
                try:
                    parsed = json.loads(value)
                except json.JSONDecodeError as exc:
                    self.sheet.flag_at(i, name, f"not valid JSON: {exc.msg}")
                    continue
                if not isinstance(parsed, dict):
                    self.sheet.flag_at(i, name, "must be a JSON object like {}")
                    continue
                data[name] = parsed
            else:
                limit = _DB_WIDTHS.get((self.kind, name))
                if limit is not None and isinstance(value, str) and len(value) > limit:
                    self.sheet.flag_at(i, name, f"at most {limit} characters")
                    continue
                data[name] = value
        return record

    def _refunds(self) -> list[_Record]:
        s = self.sheet
        keys = s.keys
        groups = _Groups.of(_keys_for_grouping(keys))
        clean = ~s.bad
        for name in ("order_external_id", "refunded_at", "amount", "reason"):
            _agree(s, groups, name, [s.raw_text(name)], "refund", clean)
        records = []
        for gi in range(len(groups)):
            rows = groups.order[groups.starts[gi] : groups.starts[gi] + groups.sizes[gi]].tolist()
            first = rows[0]
            data: dict[str, Any] = {}
            for name in ("external_id", "order_external_id", "refunded_at", "amount", "reason"):
                value = self._value(name, first)
                if value is not None:
                    data[name] = value
            record = _Record(rows, data)
            lines = []
            for i in rows:
                line = {
                    k: v
                    for k in ("line_external_id", "sku", "quantity")
                    if (v := self._value(k, i)) is not None
                }
                if line:
                    lines.append(line)
                    record.line_rows.append(i)
                elif len(rows) > 1:
                    s.flag_at(
                        i,
                        "sku",
                        "a refund of several rows needs a line (sku, quantity) on each row",
                    )
            if lines:
                data["lines"] = lines
            key = keys[first].as_py()
            if key is not None and key in s.broken_keys:
                s.flag_at(
                    first,
                    "",
                    f"the refund has a row that could not be read (row {s.broken_keys[key]})",
                )
            records.append(record)
        return records

    def _locate(self, record: _Record, path: str) -> tuple[int, str]:
        """The row and column of a pydantic error at `path` (e.g. `lines.1.quantity`)."""
        parts = path.split(".") if path else []
        head = parts[0] if parts else ""
        if head == "consents" and len(parts) > 1 and parts[1].isdigit():
            return record.rows[0], record.consents[int(parts[1])]
        if head == "lines" and len(parts) > 1 and parts[1].isdigit():
            row = record.line_rows[int(parts[1])]
            column = parts[2] if len(parts) > 2 else "sku"
            return row, column
        if not head and self.kind == "refunds":
            return record.rows[0], "amount"
        return record.rows[0], head

    # --- writing ----------------------------------------------------------------------

    def write(
        self,
        session: Session,
        store: Store,
        report: ImportReport,
        batch_size: int,
        progress: Progress,
    ) -> list[RowError]:
        apply = _APPLY[self.kind]
        errors: list[RowError] = []
        if self.kind == "refunds":  # one row lock and ORM load per refund: keep batches small
            batch_size = min(batch_size, _ORM_BATCH)
        for batch in chunks(self.valid, batch_size):
            results = apply(session, store, [model for _, model in batch])
            for (record, _), result in zip(batch, results, strict=True):
                if result.status == "error":
                    report.failed += 1
                    rows = [int(self.sheet.rows[i]) for i in record.rows]
                    ext = result.external_id
                    errors.append(RowError(rows[0], "", ext, result.error or "refused"))
                    if self.mode == "skip-bad-rows":
                        errors += [
                            RowError(r, "", ext, f"skipped with its record: row {rows[0]}")
                            for r in rows[1:]
                        ]
                elif result.status == "created":
                    report.created += 1
                elif result.status == "updated":
                    report.updated += 1
                elif result.status == "pending":
                    report.pending += 1
                else:
                    report.unchanged += 1
            _forget(session, store)
            progress.advance(len(batch))
        return errors


def _forget(session: Session, store: Store) -> None:
    """Write out and drop the ORM objects a service batch loaded (all but the store), so
    that the session's identity map does not grow with the file."""
    session.flush()
    for obj in list(session):
        if obj is not store:
            session.expunge(obj)


# Columns narrower in the database than in the API schemas (PostgreSQL would refuse the
# whole transaction): checked here so that such a value is one row error.
_DB_WIDTHS: dict[tuple[Kind, str], int] = {
    ("customers", "locale"): 16,
    ("products", "category"): 128,
}

_MODELS: dict[Kind, type[BaseModel]] = {
    "customers": CustomerIn,
    "products": ProductIn,
    "refunds": RefundIn,
}
Apply = Callable[[Session, Store, Sequence[Any]], list[RecordResult]]
_APPLY: dict[Kind, Apply] = {
    "customers": customers.upsert_many,
    "products": products.upsert_many,
    "refunds": refunds.upsert_many,
}


def _python_values(col: pa.Array) -> list[Any]:
    """Python values of a column; timestamps and dates as the API accepts them."""
    return list(col.to_pylist())
