"""Every ledger query. Writes happen under the account's row lock (see ``lock_account``)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from patron.customers.models import Customer
from patron.kit.repository import (
    chunks,
    insert_ignoring_conflicts,
    insert_rows,
    select_by_keys,
    table_of,
    update_by_id,
)
from patron.loyalty.models import (
    Currency,
    EntryKind,
    HoldState,
    LoyaltyAccount,
    LoyaltyEntry,
    LoyaltyHold,
    LoyaltyLot,
    LoyaltyLotUse,
)

# The hot path reads and writes with Core statements on the tables, never ORM objects:
# no identity map can go stale between events of one transaction, and no flush runs
# behind a query. The mapped classes declare the schema.
ACCOUNTS = table_of(LoyaltyAccount)
ENTRIES = table_of(LoyaltyEntry)
LOTS = table_of(LoyaltyLot)
HOLDS = table_of(LoyaltyHold)


class Account(NamedTuple):
    id: int
    store_id: int
    customer_id: int
    points_available: int
    points_pending: int
    points_held: int
    debt: int
    growth: int
    growth_pending: int
    growth_debt: int
    version: int


BALANCE_COLUMNS = (
    "points_available",
    "points_pending",
    "points_held",
    "debt",
    "growth",
    "growth_pending",
    "growth_debt",
)
_ACCOUNT = select(*(ACCOUNTS.c[name] for name in Account._fields))

# The single-member statements of the hot paths (an earn, a redemption, a balance) are
# built once with bound parameters: building a statement and its cache key costs more
# CPU than the round trip it makes.
_MEMBER_ACCOUNT = _ACCOUNT.where(
    ACCOUNTS.c.store_id == bindparam("store_id"),
    ACCOUNTS.c.customer_id == bindparam("customer_id"),
)
_LOCK_ACCOUNT = _MEMBER_ACCOUNT.with_for_update()
_CUSTOMER_BY_EXTERNAL_ID = select(Customer.__table__.c.id).where(
    Customer.__table__.c.store_id == bindparam("store_id"),
    Customer.__table__.c.external_id == bindparam("external_id"),
)
_CUSTOMER_IN_STORE = select(Customer.__table__.c.id).where(
    Customer.__table__.c.store_id == bindparam("store_id"),
    Customer.__table__.c.id == bindparam("customer_id"),
)

# -- accounts ------------------------------------------------------------------------


def _account(session: Session, query: Any, params: dict[str, Any] | None = None) -> Account | None:
    row = session.execute(query, params).first()
    return None if row is None else Account(*row)


def lock_account(session: Session, store_id: int, customer_id: int) -> Account | None:
    """The member's account, row-locked until the transaction ends.

    Every balance change goes through this lock, so changes of one account are serial:
    the cached balances, the lots and the idempotency check all read committed, current
    state. On PostgreSQL it is ``SELECT ... FOR UPDATE``; SQLite takes its database-wide
    write lock at ``BEGIN IMMEDIATE`` already.
    """
    return _account(session, _LOCK_ACCOUNT, {"store_id": store_id, "customer_id": customer_id})


def lock_accounts(session: Session, store_id: int, customer_ids: Sequence[int]) -> list[Account]:
    """Lock several members' accounts in one statement, in ascending id order (so that
    concurrent batches and jobs, which lock in the same order, cannot deadlock)."""
    query = (
        _ACCOUNT.where(ACCOUNTS.c.store_id == store_id, ACCOUNTS.c.customer_id.in_(customer_ids))
        .order_by(ACCOUNTS.c.id)
        .with_for_update()
    )
    return [Account(*row) for row in session.execute(query)]


def lock_accounts_by_id(session: Session, account_ids: Sequence[int]) -> list[Account]:
    query = _ACCOUNT.where(ACCOUNTS.c.id.in_(account_ids)).order_by(ACCOUNTS.c.id).with_for_update()
    return [Account(*row) for row in session.execute(query)]


def get_account(session: Session, store_id: int, customer_id: int) -> Account | None:
    return _account(session, _MEMBER_ACCOUNT, {"store_id": store_id, "customer_id": customer_id})


_EXPIRING = (
    LOTS.c.currency == Currency.points,
    LOTS.c.remaining > 0,
    LOTS.c.expires_at > bindparam("now"),
    LOTS.c.expires_at <= bindparam("until"),
)
# The account with its points expiring in (now, until], one row per expiry date (one row
# of NULLs when none): a balance answer in one round trip.
_ACCOUNT_AND_EXPIRING = (
    select(
        *(ACCOUNTS.c[name] for name in Account._fields),
        LOTS.c.expires_at,
        func.sum(LOTS.c.remaining),
    )
    .select_from(ACCOUNTS.outerjoin(LOTS, and_(LOTS.c.account_id == ACCOUNTS.c.id, *_EXPIRING)))
    .where(
        ACCOUNTS.c.store_id == bindparam("store_id"),
        ACCOUNTS.c.customer_id == bindparam("customer_id"),
    )
    .group_by(*(ACCOUNTS.c[name] for name in Account._fields), LOTS.c.expires_at)
    .order_by(LOTS.c.expires_at)
)


def account_and_expiring(
    session: Session, store_id: int, customer_id: int, now: datetime, until: datetime
) -> tuple[Account | None, list[tuple[datetime, int]]]:
    """``get_account`` and ``expiring_lots`` in one statement."""
    rows = session.execute(
        _ACCOUNT_AND_EXPIRING,
        {"store_id": store_id, "customer_id": customer_id, "now": now, "until": until},
    ).all()
    if not rows:
        return None, []
    width = len(Account._fields)
    account = Account(*rows[0][:width])
    expiring = [(r[width], int(r[width + 1])) for r in rows if r[width] is not None]
    return account, expiring


def create_account(session: Session, store_id: int, customer_id: int, now: datetime) -> None:
    """Insert the account unless a concurrent writer just did."""
    stmt = insert_ignoring_conflicts(session, ACCOUNTS, "store_id", "customer_id").values(
        store_id=store_id, customer_id=customer_id, created_at=now, updated_at=now
    )
    session.execute(stmt)


def create_accounts(
    session: Session, store_id: int, customer_ids: Sequence[int], now: datetime
) -> None:
    rows = [
        {"store_id": store_id, "customer_id": cid, "created_at": now, "updated_at": now}
        for cid in sorted(customer_ids)  # key order: concurrent inserts cannot deadlock
    ]
    session.execute(insert_ignoring_conflicts(session, ACCOUNTS, "store_id", "customer_id"), rows)


def update_balances(session: Session, rows: list[dict[str, Any]], now: datetime) -> None:
    """New cached balances by account id; each bumps the account's version."""
    if not rows:
        return
    params = [{**{n: r[n] for n in BALANCE_COLUMNS}, "_id": r["id"], "_now": now} for r in rows]
    session.connection().execute(_UPDATE_BALANCES, params[0] if len(params) == 1 else params)


_UPDATE_BALANCES = (
    update(ACCOUNTS)
    .where(ACCOUNTS.c.id == bindparam("_id"))
    .values(
        {
            **{name: bindparam(name) for name in BALANCE_COLUMNS},
            "version": ACCOUNTS.c.version + 1,
            "updated_at": bindparam("_now", type_=ACCOUNTS.c.updated_at.type),
        }
    )
)


def customer_in_store(session: Session, store_id: int, customer_id: int) -> bool:
    params = {"store_id": store_id, "customer_id": customer_id}
    return session.scalar(_CUSTOMER_IN_STORE, params) is not None


def customers_in_store(session: Session, store_id: int, customer_ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    for chunk in chunks(list(customer_ids)):
        found.update(
            session.scalars(
                select(Customer.id).where(Customer.store_id == store_id, Customer.id.in_(chunk))
            )
        )
    return found


def customer_id_by_external_id(session: Session, store_id: int, external_id: str) -> int | None:
    params = {"store_id": store_id, "external_id": external_id}
    found: int | None = session.scalar(_CUSTOMER_BY_EXTERNAL_ID, params)
    return found


# -- entries -------------------------------------------------------------------------


_ENTRIES_BY_KEY = (
    select(ENTRIES)
    .where(
        ENTRIES.c.store_id == bindparam("store_id"), ENTRIES.c.idempotency_key == bindparam("key")
    )
    .order_by(ENTRIES.c.seq)
)


def entries_by_key(session: Session, store_id: int, key: str) -> Sequence[Any]:
    """The entries of one event (rows with every column), in order."""
    return session.execute(_ENTRIES_BY_KEY, {"store_id": store_id, "key": key}).all()


def _insert_many(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    conflict: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """INSERT rows in list order (ids ascend with it) [ON CONFLICT (conflict) DO NOTHING]
    [RETURNING]."""
    plain = [{name: _plain(value) for name, value in row.items()} for row in rows]
    if len(plain) == 1:  # the single events of the API: one prebuilt statement
        stmt = _insert_one(session, table, tuple(conflict), tuple(returning))
        result = session.execute(stmt, plain[0])
        return [tuple(row) for row in result] if returning else []
    found = insert_rows(
        session, table, plain, conflict=conflict, returning=returning, in_list_order=True
    )
    return [tuple(row) for row in found]


_INSERTS: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], Executable] = {}


def _insert_one(
    session: Session, table: Table, conflict: tuple[str, ...], returning: tuple[str, ...]
) -> Executable:
    """INSERT [ON CONFLICT (conflict) DO NOTHING] [RETURNING returning], built once per
    table and dialect; the row's values come as parameters."""
    key = (session.get_bind().dialect.name, table.name, conflict, returning)
    stmt = _INSERTS.get(key)
    if stmt is None:
        base = insert_ignoring_conflicts(session, table, *conflict) if conflict else table.insert()
        stmt = base.returning(*(table.c[c] for c in returning)) if returning else base
        _INSERTS[key] = stmt
    return stmt


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def insert_entries(session: Session, rows: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """Insert entries whose (key, seq) is free; (key, seq) -> id of those inserted.

    A concurrent writer of the same key makes this wait until it commits or rolls back.
    Rows are inserted in list order: ids ascend with it.
    """
    found = _insert_many(
        session,
        ENTRIES,
        rows,
        conflict=("store_id", "idempotency_key", "seq"),
        returning=("idempotency_key", "seq", "id"),
    )
    return {(key, seq): entry_id for key, seq, entry_id in found}


def entries_by_keys(session: Session, store_id: int, keys: Sequence[str]) -> dict[str, list[Any]]:
    """key -> the entries of that event, in order, for the keys already used."""
    found: dict[str, list[Any]] = {}
    rows = select_by_keys(
        session,
        tuple(ENTRIES.c),
        ENTRIES.c.idempotency_key,
        keys,
        ENTRIES.c.store_id == store_id,
        one_per_key=False,
    )
    for row in sorted(rows, key=lambda r: (r.idempotency_key, r.seq)):
        found.setdefault(row.idempotency_key, []).append(row)
    return found


def entry_resolving(session: Session, target_id: int) -> Any | None:
    """The entry that reversed, captured or released ``target_id``, if any."""
    return session.execute(select(ENTRIES).where(ENTRIES.c.target_id == target_id)).first()


def history(
    session: Session, store_id: int, account_id: int, limit: int, before: int | None
) -> Sequence[Any]:
    query = select(ENTRIES).where(
        ENTRIES.c.store_id == store_id, ENTRIES.c.account_id == account_id
    )
    if before is not None:
        query = query.where(ENTRIES.c.id < before)
    return session.execute(query.order_by(ENTRIES.c.id.desc()).limit(limit)).all()


def net_by_ref(session: Session, account_id: int, ref: str) -> dict[Currency, int]:
    """Per currency: points earned for ``ref`` less those already clawed back for it."""
    rows = session.execute(
        select(LoyaltyEntry.currency, func.sum(LoyaltyEntry.amount))
        .where(
            LoyaltyEntry.account_id == account_id,
            LoyaltyEntry.ref == ref,
            LoyaltyEntry.kind.in_([EntryKind.earn, EntryKind.clawback]),
        )
        .group_by(LoyaltyEntry.currency)
    )
    return {currency: int(total or 0) for currency, total in rows}


# -- lots ----------------------------------------------------------------------------


_LOT = select(
    *(
        LOTS.c[name]
        for name in (
            "id",
            "currency",
            "amount",
            "remaining",
            "pending",
            "available_at",
            "expires_at",
            "ref",
        )
    )
)
_HOLD = select(*(HOLDS.c[n] for n in ("id", "entry_id", "amount", "expires_at", "state")))


_LIVE_LOTS_OF_ONE = _LOT.add_columns(LOTS.c.account_id).where(
    LOTS.c.account_id == bindparam("account_id"), or_(LOTS.c.remaining > 0, LOTS.c.pending)
)
_DUE_LOTS_OF_ONE = _LOT.add_columns(LOTS.c.account_id).where(
    LOTS.c.account_id == bindparam("account_id"),
    or_(
        and_(LOTS.c.pending, LOTS.c.available_at <= bindparam("now")),
        and_(LOTS.c.remaining > 0, LOTS.c.expires_at <= bindparam("now")),
    ),
)


def live_lots(session: Session, account_ids: Sequence[int]) -> list[Any]:
    """Lots with points left or still pending (those the rules can touch)."""
    if len(account_ids) == 1:
        return list(session.execute(_LIVE_LOTS_OF_ONE, {"account_id": account_ids[0]}))
    found: list[Any] = []
    for chunk in chunks(list(account_ids)):
        query = _LOT.add_columns(LOTS.c.account_id).where(
            LOTS.c.account_id.in_(chunk), or_(LOTS.c.remaining > 0, LOTS.c.pending)
        )
        found.extend(session.execute(query))
    return found


def due_lots(session: Session, account_ids: Sequence[int], now: datetime) -> list[Any]:
    """The lots of these accounts that are due by ``now``: pending ones whose return
    window has passed, and ones with points left whose expiry has passed."""
    if len(account_ids) == 1:
        params = {"account_id": account_ids[0], "now": now}
        return list(session.execute(_DUE_LOTS_OF_ONE, params))
    found: list[Any] = []
    for chunk in chunks(list(account_ids)):
        query = _LOT.add_columns(LOTS.c.account_id).where(
            LOTS.c.account_id.in_(chunk),
            or_(
                and_(LOTS.c.pending, LOTS.c.available_at <= now),
                and_(LOTS.c.remaining > 0, LOTS.c.expires_at <= now),
            ),
        )
        found.extend(session.execute(query))
    return found


def lots_by_ids(session: Session, lot_ids: Sequence[int]) -> list[Any]:
    found: list[Any] = []
    for chunk in chunks(list(lot_ids)):
        found.extend(session.execute(_LOT.where(LOTS.c.id.in_(chunk))))
    return found


def all_lots(session: Session, account_id: int) -> Sequence[Any]:
    return session.execute(_LOT.where(LOTS.c.account_id == account_id)).all()


def insert_lots(session: Session, rows: list[dict[str, Any]]) -> dict[int, int]:
    """entry id -> id of the lot it created."""
    return dict(_insert_many(session, LOTS, rows, returning=("entry_id", "id")))


def update_lots(session: Session, rows: list[dict[str, Any]]) -> None:
    update_by_id(session, table_of(LoyaltyLot), rows)


def insert_lot_uses(session: Session, rows: list[dict[str, Any]]) -> None:
    _insert_many(session, table_of(LoyaltyLotUse), rows)


def uses_of_entries(session: Session, entry_ids: Sequence[int]) -> dict[int, list[tuple[int, int]]]:
    """entry id -> [(lot id, amount)] in the order they were taken."""
    found: dict[int, list[tuple[int, int]]] = {eid: [] for eid in entry_ids}
    for chunk in chunks(list(entry_ids)):
        rows = session.execute(
            select(LoyaltyLotUse.entry_id, LoyaltyLotUse.lot_id, LoyaltyLotUse.amount)
            .where(LoyaltyLotUse.entry_id.in_(chunk))
            .order_by(LoyaltyLotUse.id)
        )
        for entry_id, lot_id, amount in rows:
            found[entry_id].append((lot_id, amount))
    return found


def expiring_lots(
    session: Session, account_id: int, now: datetime, until: datetime
) -> list[tuple[datetime, int]]:
    """(expiry, points) of the member's points expiring in (now, until], soonest first."""
    rows = session.execute(
        select(LoyaltyLot.expires_at, func.sum(LoyaltyLot.remaining))
        .where(
            LoyaltyLot.account_id == account_id,
            LoyaltyLot.currency == Currency.points,
            LoyaltyLot.remaining > 0,
            LoyaltyLot.expires_at > now,
            LoyaltyLot.expires_at <= until,
        )
        .group_by(LoyaltyLot.expires_at)
        .order_by(LoyaltyLot.expires_at)
    )
    return [(expires_at, int(total)) for expires_at, total in rows if expires_at is not None]


def expiring_by_customer(
    session: Session, store_id: int, now: datetime, until: datetime, limit: int, after: int | None
) -> Sequence[Any]:
    """(customer id, points, first expiry) of members with points expiring in (now, until]."""
    query = (
        select(
            LoyaltyAccount.customer_id,
            func.sum(LoyaltyLot.remaining),
            func.min(LoyaltyLot.expires_at),
        )
        .join(LoyaltyAccount, LoyaltyAccount.id == LoyaltyLot.account_id)
        .where(
            LoyaltyLot.store_id == store_id,
            LoyaltyLot.currency == Currency.points,
            LoyaltyLot.remaining > 0,
            LoyaltyLot.expires_at > now,
            LoyaltyLot.expires_at <= until,
        )
    )
    if after is not None:
        query = query.where(LoyaltyAccount.customer_id > after)
    return session.execute(
        query.group_by(LoyaltyAccount.customer_id).order_by(LoyaltyAccount.customer_id).limit(limit)
    ).all()


# -- holds ---------------------------------------------------------------------------


def open_holds(session: Session, account_ids: Sequence[int]) -> list[Any]:
    found: list[Any] = []
    for chunk in chunks(list(account_ids)):
        query = (
            _HOLD.add_columns(HOLDS.c.account_id)
            .where(HOLDS.c.account_id.in_(chunk), HOLDS.c.state == HoldState.open)
            .order_by(HOLDS.c.id)
        )
        found.extend(session.execute(query))
    return found


def hold_state(session: Session, entry_id: int) -> HoldState | None:
    """The state of the hold made by entry ``entry_id``."""
    return session.scalar(select(LoyaltyHold.state).where(LoyaltyHold.entry_id == entry_id))


def insert_holds(session: Session, rows: list[dict[str, Any]]) -> dict[int, int]:
    """entry id -> id of the hold it made."""
    return dict(_insert_many(session, HOLDS, rows, returning=("entry_id", "id")))


def update_holds(session: Session, rows: list[dict[str, Any]]) -> None:
    update_by_id(session, table_of(LoyaltyHold), rows)


# -- jobs ----------------------------------------------------------------------------


def _due_accounts(
    session: Session, model: Any, condition: Any, store_id: int | None, limit: int
) -> list[int]:
    query = select(model.account_id).where(condition).distinct()
    if store_id is not None:
        query = query.where(model.store_id == store_id)
    # Ascending ids: concurrent job runs lock accounts in the same order.
    return list(session.scalars(query.order_by(model.account_id).limit(limit)))


def accounts_due_to_mature(
    session: Session, now: datetime, store_id: int | None, limit: int
) -> list[int]:
    condition = LoyaltyLot.pending & (LoyaltyLot.available_at <= now)
    return _due_accounts(session, LoyaltyLot, condition, store_id, limit)


def accounts_due_to_expire(
    session: Session, now: datetime, store_id: int | None, limit: int
) -> list[int]:
    condition = (LoyaltyLot.remaining > 0) & (LoyaltyLot.expires_at <= now)
    return _due_accounts(session, LoyaltyLot, condition, store_id, limit)


def accounts_with_expired_holds(
    session: Session, now: datetime, store_id: int | None, limit: int
) -> list[int]:
    condition = (LoyaltyHold.state == HoldState.open) & (LoyaltyHold.expires_at <= now)
    return _due_accounts(session, LoyaltyHold, condition, store_id, limit)


# -- reports and checks --------------------------------------------------------------


def store_balances(session: Session, store_id: int) -> dict[str, int]:
    a = LoyaltyAccount
    columns = (
        a.points_available,
        a.points_pending,
        a.points_held,
        a.debt,
        a.growth,
        a.growth_pending,
        a.growth_debt,
    )
    row = session.execute(
        select(func.count(a.id), *(func.coalesce(func.sum(c), 0) for c in columns)).where(
            a.store_id == store_id
        )
    ).one()
    names = ["members"] + [c.key for c in columns]
    return {name: int(value) for name, value in zip(names, row, strict=True)}


def store_totals_by_kind(
    session: Session, store_id: int, currency: Currency
) -> dict[EntryKind, int]:
    rows = session.execute(
        select(LoyaltyEntry.kind, func.sum(LoyaltyEntry.amount))
        .where(LoyaltyEntry.store_id == store_id, LoyaltyEntry.currency == currency)
        .group_by(LoyaltyEntry.kind)
    )
    return {kind: int(total or 0) for kind, total in rows}


def bucket_sums(session: Session, account_id: int) -> dict[Currency, tuple[int, int, int, int]]:
    e = LoyaltyEntry
    rows = session.execute(
        select(
            e.currency,
            func.sum(e.available_delta),
            func.sum(e.pending_delta),
            func.sum(e.held_delta),
            func.sum(e.debt_delta),
        )
        .where(e.account_id == account_id)
        .group_by(e.currency)
    )
    return {
        currency: (int(a or 0), int(p or 0), int(h or 0), int(d or 0))
        for currency, a, p, h, d in rows
    }


def used_by_lot(session: Session, account_id: int) -> dict[int, int]:
    rows = session.execute(
        select(LoyaltyLotUse.lot_id, func.sum(LoyaltyLotUse.amount))
        .join(LoyaltyLot, LoyaltyLot.id == LoyaltyLotUse.lot_id)
        .where(LoyaltyLot.account_id == account_id)
        .group_by(LoyaltyLotUse.lot_id)
    )
    return {lot_id: int(total or 0) for lot_id, total in rows}


def entry_moves(session: Session, account_id: int) -> list[tuple[int, int, int, int]]:
    """Per entry: (id, available + pending delta, lot amount created, net taken from lots)."""
    used = (
        select(LoyaltyLotUse.entry_id, func.sum(LoyaltyLotUse.amount).label("used"))
        .join(LoyaltyEntry, LoyaltyEntry.id == LoyaltyLotUse.entry_id)
        .where(LoyaltyEntry.account_id == account_id)
        .group_by(LoyaltyLotUse.entry_id)
        .subquery()
    )
    rows = session.execute(
        select(
            LoyaltyEntry.id,
            LoyaltyEntry.available_delta + LoyaltyEntry.pending_delta,
            func.coalesce(LoyaltyLot.amount, 0),
            func.coalesce(used.c.used, 0),
        )
        .outerjoin(LoyaltyLot, LoyaltyLot.entry_id == LoyaltyEntry.id)
        .outerjoin(used, used.c.entry_id == LoyaltyEntry.id)
        .where(LoyaltyEntry.account_id == account_id)
        .order_by(LoyaltyEntry.id)
    )
    return [(int(i), int(m), int(c), int(u)) for i, m, c, u in rows]


def amount_mismatches(session: Session, account_id: int) -> list[int]:
    """Entries whose amount is not the sum of their deltas (the CHECK forbids them)."""
    e = LoyaltyEntry
    return list(
        session.scalars(
            select(e.id).where(
                e.account_id == account_id,
                e.amount != e.available_delta + e.pending_delta + e.held_delta - e.debt_delta,
            )
        )
    )
