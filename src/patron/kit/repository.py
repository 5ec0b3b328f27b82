"""Query helpers shared by every repository: chunked look-ups, dialect-aware upserts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

T = TypeVar("T")


def table_of(model: type[Any]) -> Table:
    """The Core table of a mapped class (typed; ``__table__`` is a FromClause to mypy)."""
    return cast(Table, model.__table__)


# Bound parameters per statement: SQLite allows 32,766, PostgreSQL 65,535.
CHUNK = 2000


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_ignoring_conflicts(session: Session, table: Table, *conflict_columns: str) -> Insert:
    """INSERT ... ON CONFLICT (cols) DO NOTHING on SQLite and PostgreSQL alike."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(
            index_elements=list(conflict_columns)
        )
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
    raise NotImplementedError(f"unsupported database: {dialect}")


def unique(values: Iterable[T]) -> list[T]:
    return list(dict.fromkeys(values))


def rows_as_dicts(rows: Iterable[Any]) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in rows]


def update_by_id(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Executemany UPDATE of the given columns, keyed by ``id``; all rows share columns."""
    if not rows:
        return
    columns = [c for c in rows[0] if c != "id"]
    stmt = (
        update(table)
        .where(table.c.id == bindparam("_id"))
        .values({c: bindparam(c) for c in columns})
    )
    session.connection().execute(
        stmt, [{**{c: r[c] for c in columns}, "_id": r["id"]} for r in rows]
    )
