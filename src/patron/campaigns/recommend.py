"""Product recommendations from purchase history: item-to-item co-occurrence.

**Baskets are customers, not orders.** Two products co-occur when the same customer
bought both, in one order or in different ones. Orders of an online store hold about 1.3
lines, so same-order pairs are too rare to learn from; a customer's whole history also
captures what people come back for (the case after the phone, the refill after the
starter kit).

**Scores.** ``X`` is the customers × products 0/1 matrix of purchases that were neither
cancelled nor refunded (a line counts unless its whole quantity was refunded; an order in
status ``refunded`` counts for nothing). ``C = Xᵀ X`` counts, per pair of products, the
customers who bought both; pairs bought together by fewer than :data:`MIN_SUPPORT`
customers are dropped (noise). The similarity is the cosine ``C[i,j] / √(n_i · n_j)``
(``n_i`` the buyers of ``i``), which divides out popularity: a best seller bought by
everyone is not everyone's neighbour. A customer's score for ``j`` is the sum of the
similarities of ``j`` to the products the customer bought; products already bought are
never suggested.

**Fallback.** Slots the co-occurrence leaves empty (a customer without history, or whose
products have no neighbours) are filled with the store's best sellers (most distinct
buyers) that the customer has not bought; their score is their share of buyers (0-1) and
they always come after co-occurrence suggestions.

**Persisted model.** The product side — each product's :data:`NEIGHBOURS` nearest
products with their similarity, and each product's buyers — depends on every order of
the store; :func:`rebuild` computes it (``scipy.sparse``) and stores it in
``product_neighbours``, ``product_buyers`` and ``recommendation_states``. The job step
:func:`run_step` rebuilds when the store's order watermark moved and the last build is
older than :data:`FRESH`. The customer side is read live: :func:`for_customers` reads the
requested customers' purchases (so an order or refund since the build already counts for
that customer) and the neighbours of what they bought, and scores exactly as
:func:`in_memory` (the reference, which builds everything from the orders on each call).
A store never built is built on its first call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]
from sqlalchemy import Select, and_, delete, func, select
from sqlalchemy.orm import Session

from patron.campaigns.models import ProductBuyers, ProductNeighbour, RecommendationState
from patron.kit.clock import utcnow
from patron.kit.repository import aware_instant, lock_store_job
from patron.orders.models import Order, OrderLine, OrderStatus, Product

MIN_SUPPORT = 2
NEIGHBOURS = 50  # similar products kept per product
CHUNK = 10_000  # customers scored at once (bounds memory)
MAX_LIMIT = 50
RECOMMEND_JOB = 0x52_43  # "RC": namespace of the per-store rebuild lock
FRESH = timedelta(hours=6)  # a build younger than this is kept even if orders changed
CHECK_EVERY = timedelta(hours=1)  # an unchanged watermark is compared again after this
WHOLE_STORE = 2_000  # batches above this read the store's purchases in one pass
IN_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class Suggestion:
    product_id: int
    sku: str
    name: str
    score: float


@dataclass(frozen=True)
class _Model:
    """What scoring needs, over columns that are product ids in ascending order."""

    customer_row: dict[int, int]  # customers with a purchase that counts -> row of x
    x: sp.csr_matrix  # customers × products, 0/1
    sim: sp.csr_matrix  # products × products, cosine with min support, zero diagonal
    popular: np.ndarray  # product columns, most buyers first (ties: the older product)
    popularity: np.ndarray  # share of buyers per product column
    product_ids: np.ndarray  # column -> product id
    names: dict[int, tuple[str, str]] | None = None  # product id -> (sku, name), if read


@dataclass(frozen=True)
class Watermark:
    """What a build saw of the store: any order, line, refund or product change moves it."""

    max_order_id: int
    orders_updated_at: datetime | None
    order_lines: int
    refunded_units: int
    products: int
    max_product_id: int


@dataclass(frozen=True)
class Build:
    store_id: int
    customers: int
    products: int  # products with at least one buyer
    neighbours: int  # product_neighbours rows
    computed_at: datetime


def _nearest(sim: sp.csr_matrix, n: int = NEIGHBOURS) -> sp.csr_matrix:
    """Each product's ``n`` most similar products (ties: the older product), the rest
    dropped: a customer's scores then touch at most ``n`` products per product bought."""
    sim.sort_indices()
    rows, cols, vals = [], [], []
    for i in range(sim.shape[0]):
        start, end = sim.indptr[i], sim.indptr[i + 1]
        c, v = sim.indices[start:end], sim.data[start:end]
        if len(c) > n:
            keep = np.lexsort((c, -v))[:n]
            c, v = c[keep], v[keep]
        rows.append(np.full(len(c), i))
        cols.append(c)
        vals.append(v)
    if not rows:
        return sim
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=sim.shape
    )


def _rows(session: Session, statement: Select[Any]) -> list[tuple[Any, ...]]:
    """A query's rows as plain tuples through the driver's cursor: a million rows without
    a million result objects. The statement's values are rendered inline (integer ids and
    fixed statuses: nothing from a caller)."""
    connection = session.connection()
    sql = str(statement.compile(connection, compile_kwargs={"literal_binds": True}))
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _int_pairs(session: Session, statement: Select[Any]) -> np.ndarray:
    return np.array(_rows(session, statement), dtype=np.int64).reshape(-1, 2)


def _purchases(store_id: int, *, distinct: bool = True) -> Select[Any]:
    """(customer, product) for every purchase that counts (repeats unless ``distinct``:
    a 0/1 matrix built from them does not care, and a million rows need no sort)."""
    o, line, p = Order.__table__, OrderLine.__table__, Product.__table__
    statement = (
        select(o.c.customer_id, p.c.id)
        .select_from(
            line.join(o, o.c.id == line.c.order_id).join(
                p, and_(p.c.store_id == o.c.store_id, p.c.sku == line.c.sku)
            )
        )
        .where(
            o.c.store_id == int(store_id),
            o.c.status.not_in([OrderStatus.cancelled, OrderStatus.refunded]),
            line.c.quantity > line.c.refunded_quantity,
        )
    )
    return statement.distinct() if distinct else statement


def _chunks(ids: Sequence[int], size: int = IN_CHUNK) -> Iterable[list[int]]:
    for at in range(0, len(ids), size):
        yield [int(i) for i in ids[at : at + size]]


def _matrix(pairs: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, sp.csr_matrix]:
    """The customers of ``pairs`` (ascending) and their 0/1 rows over ``columns``."""
    uniq, rows_idx = np.unique(pairs[:, 0], return_inverse=True)
    cols = np.searchsorted(columns, pairs[:, 1])
    x = sp.csr_matrix(
        (np.ones(len(cols), np.float64), (rows_idx, cols)), shape=(len(uniq), len(columns))
    )
    x.sum_duplicates()
    x.data[:] = 1.0
    return uniq, x


def _load(session: Session, store_id: int) -> tuple[_Model, np.ndarray]:
    """The whole model from the store's orders; also the buyers per product column."""
    ids = np.array(
        session.scalars(
            select(Product.id).where(Product.store_id == store_id).order_by(Product.id)
        ).all(),
        dtype=np.int64,
    )
    n_products = len(ids)
    uniq, x = _matrix(_int_pairs(session, _purchases(store_id)), ids)
    buyers = np.asarray(x.sum(axis=0)).ravel()
    co = (x.T @ x).tocoo()
    keep = (co.row != co.col) & (co.data >= MIN_SUPPORT)
    r, c, d = co.row[keep], co.col[keep], co.data[keep]
    sim = _nearest(
        sp.csr_matrix((d / np.sqrt(buyers[r] * buyers[c]), (r, c)), shape=(n_products, n_products))
    )
    popular = np.lexsort((np.arange(n_products), -buyers))
    popular = popular[buyers[popular] > 0]
    model = _Model(
        customer_row={int(cid): i for i, cid in enumerate(uniq)},
        x=x,
        sim=sim,
        popular=popular,
        popularity=buyers / max(len(uniq), 1),
        product_ids=ids,
    )
    return model, buyers


def in_memory(
    session: Session, store_id: int, customer_ids: Sequence[int], *, limit: int = 3
) -> dict[int, list[Suggestion]]:
    """:func:`for_customers` computed from the orders alone, nothing persisted read or
    written (the reference the persisted path must equal; seconds on a large store)."""
    limit = max(0, min(limit, MAX_LIMIT))
    model, _ = _load(session, store_id)
    return _answer(session, model, customer_ids, limit, reference=True)


def for_customers(
    session: Session, store_id: int, customer_ids: Sequence[int], *, limit: int = 3
) -> dict[int, list[Suggestion]]:
    """Up to ``limit`` suggestions per customer, best first; every id requested is a key
    (an empty list when the store has nothing left to suggest). Reads the persisted
    neighbours (building them first if the store has none yet) and the customers' own
    purchases as they are now."""
    limit = max(0, min(limit, MAX_LIMIT))
    wanted = list(dict.fromkeys(int(c) for c in customer_ids))
    if limit == 0:
        return {cid: [] for cid in wanted}
    state = session.get(RecommendationState, store_id)
    if state is None:
        rebuild(session, store_id)
        state = session.get(RecommendationState, store_id)
        assert state is not None
    return _answer(session, _persisted(session, store_id, state, wanted, limit), wanted, limit)


def _persisted(
    session: Session, store_id: int, state: RecommendationState, wanted: list[int], limit: int
) -> _Model:
    """The model restricted to what the batch needs: its customers' purchases, the
    neighbours of the products they bought, and the best sellers that can fill a list."""
    n, b, p = ProductNeighbour.__table__.c, ProductBuyers.__table__.c, Product.__table__.c
    edges_q = select(n.product_id, n.neighbour_id, n.score).where(n.store_id == int(store_id))
    popular_q = select(b.product_id, b.buyers).where(b.store_id == int(store_id)).order_by(b.rank)
    names: dict[int, tuple[str, str]] | None = None
    if len(wanted) > WHOLE_STORE:  # one pass over the store, as the build does
        pairs = _int_pairs(session, _purchases(store_id, distinct=False))
        pairs = pairs[np.isin(pairs[:, 0], np.array(wanted, dtype=np.int64))]
        edges = _rows(session, edges_q)
        popular_rows = _rows(session, popular_q)
        names = {
            pid: (sku, name)
            for pid, sku, name in _rows(
                session, select(p.id, p.sku, p.name).where(p.store_id == int(store_id))
            )
        }
    else:  # by index: the customers' orders, the neighbours of what they bought
        o = Order.__table__
        pairs = np.array(
            [
                tuple(row)
                for chunk in _chunks(wanted)
                for row in session.execute(_purchases(store_id).where(o.c.customer_id.in_(chunk)))
            ],
            dtype=np.int64,
        ).reshape(-1, 2)
        names = {}
        edges = []
        for chunk in _chunks(np.unique(pairs[:, 1]).tolist()):
            for pid, qid, score, sku, name in session.execute(
                edges_q.add_columns(p.sku, p.name)
                .join_from(ProductNeighbour.__table__, Product.__table__, p.id == n.neighbour_id)
                .where(n.product_id.in_(chunk))
            ):
                edges.append((pid, qid, score))
                names[qid] = (sku, name)
        # A list is filled from at most (products bought + limit) best sellers.
        most = int(np.unique(pairs[:, 0], return_counts=True)[1].max(initial=0))
        popular_rows = []
        for pid, buyers, sku, name in session.execute(
            popular_q.add_columns(p.sku, p.name)
            .join_from(ProductBuyers.__table__, Product.__table__, p.id == b.product_id)
            .where(b.rank < most + limit)
        ):
            popular_rows.append((pid, buyers))
            names[pid] = (sku, name)
    bought = np.unique(pairs[:, 1])
    e = np.array([(src, dst) for src, dst, _ in edges], dtype=np.int64).reshape(-1, 2)
    scores = np.array([score for _, _, score in edges], dtype=np.float64)
    pop = np.array(popular_rows, dtype=np.int64).reshape(-1, 2)
    columns = np.unique(np.concatenate([bought, e[:, 0], e[:, 1], pop[:, 0]]))
    uniq, x = _matrix(pairs, columns)
    sim = sp.csr_matrix(
        (scores, (np.searchsorted(columns, e[:, 0]), np.searchsorted(columns, e[:, 1]))),
        shape=(len(columns), len(columns)),
    )
    popularity = np.zeros(len(columns))
    popular = np.searchsorted(columns, pop[:, 0])
    popularity[popular] = pop[:, 1] / max(state.customers, 1)
    return _Model(
        customer_row={int(cid): i for i, cid in enumerate(uniq)},
        x=x,
        sim=sim,
        popular=popular,
        popularity=popularity,
        product_ids=columns,
        names=names,
    )


def _answer(
    session: Session,
    model: _Model,
    customer_ids: Sequence[int],
    limit: int,
    *,
    reference: bool = False,
) -> dict[int, list[Suggestion]]:
    """Score, pick and name: ``reference`` picks row by row (:func:`_pick`), otherwise
    a chunk at once (:func:`_pick_all`, the same lists)."""
    picks: dict[int, list[tuple[int, float]]] = {}
    wanted = list(dict.fromkeys(int(c) for c in customer_ids))
    known = [c for c in wanted if c in model.customer_row]
    cold = [(int(c), float(model.popularity[c])) for c in model.popular[:limit]]
    for cid in wanted:
        if cid not in model.customer_row or limit == 0:
            picks[cid] = cold
    if limit > 0:
        for at in range(0, len(known), CHUNK):
            chunk = known[at : at + CHUNK]
            bought = model.x[[model.customer_row[c] for c in chunk]]
            raw = (bought @ model.sim).tocsr()
            scores = (raw - raw.multiply(bought)).tocsr()
            scores.eliminate_zeros()
            if reference:
                for i, cid in enumerate(chunk):
                    picks[cid] = _pick(model, scores, bought, i, limit)
            else:
                picks.update(zip(chunk, _pick_all(model, scores, bought, limit), strict=True))
    names = dict(model.names or {})
    used = {col for found in picks.values() for col, _ in found}
    missing = sorted(pid for pid in model.product_ids[sorted(used)].tolist() if pid not in names)
    for chunk in _chunks(missing):
        for pid, sku, name in session.execute(
            select(Product.id, Product.sku, Product.name).where(Product.id.in_(chunk))
        ):
            names[pid] = (sku, name)
    pids = model.product_ids.tolist()
    made: dict[tuple[int, float], Suggestion | None] = {}
    for found in picks.values():
        for key in found:
            if key not in made:
                col, score = key
                named = names.get(pids[col])  # None: deleted since the build
                made[key] = (
                    None if named is None else Suggestion(pids[col], *named, round(score, 6))
                )
    return {cid: [s for key in picks[cid] if (s := made[key]) is not None] for cid in wanted}


def _pick(
    model: _Model, scores: sp.csr_matrix, bought: sp.csr_matrix, i: int, limit: int
) -> list[tuple[int, float]]:
    """Row ``i``'s best ``limit`` products, topped up with best sellers not bought."""
    start, end = scores.indptr[i], scores.indptr[i + 1]
    cols, vals = scores.indices[start:end], scores.data[start:end]
    order = np.lexsort((cols, -vals))[:limit]
    picked = [(int(cols[j]), float(vals[j])) for j in order if vals[j] > 0]
    if len(picked) < limit:
        taken = set(bought.indices[bought.indptr[i] : bought.indptr[i + 1]].tolist())
        taken.update(int(cols[j]) for j in order)
        for col in model.popular:
            if len(picked) >= limit:
                break
            if int(col) not in taken:
                picked.append((int(col), float(model.popularity[col])))
    return picked


def _pick_all(
    model: _Model, scores: sp.csr_matrix, bought: sp.csr_matrix, limit: int
) -> list[list[tuple[int, float]]]:
    """:func:`_pick` for every row at once, without sorting a row: ``limit`` passes that
    each take every row's best remaining score (ties: the lowest column, the first one,
    as columns ascend within a row)."""
    scores.sort_indices()
    n = scores.shape[0]
    counts = np.diff(scores.indptr)
    row_of = np.repeat(np.arange(n), counts)
    starts = scores.indptr[:-1][counts > 0]
    data = scores.data.copy()
    got_rows, got_at = [], []
    for _ in range(limit):
        if not len(data):
            break
        best = np.full(n, -np.inf)
        best[counts > 0] = np.maximum.reduceat(data, starts)
        hit = np.flatnonzero((data == best[row_of]) & (data > 0))
        if not len(hit):
            break
        rows, first = np.unique(row_of[hit], return_index=True)
        got_rows.append(rows)
        got_at.append(hit[first])
        data[hit[first]] = -np.inf
    rows = np.concatenate(got_rows) if got_rows else np.zeros(0, np.int64)
    at = np.concatenate(got_at) if got_at else np.zeros(0, np.int64)
    by_row = np.argsort(rows, kind="stable")  # within a row: the order the passes took
    at = at[by_row]
    bounds = np.searchsorted(rows[by_row], np.arange(n + 1)).tolist()
    cols, vals = scores.indices[at].tolist(), scores.data[at].tolist()
    popular = model.popular.tolist()
    out = []
    for i in range(n):
        a, b = bounds[i], bounds[i + 1]
        picked = list(zip(cols[a:b], vals[a:b], strict=True))
        if len(picked) < limit:
            taken = set(bought.indices[bought.indptr[i] : bought.indptr[i + 1]].tolist())
            taken.update(col for col, _ in picked)
            for col in popular:
                if len(picked) >= limit:
                    break
                if col not in taken:
                    picked.append((col, float(model.popularity[col])))
        out.append(picked)
    return out


# --- the persisted model: build, freshness, the job step ---------------------------------


def watermark(session: Session, store_id: int) -> Watermark:
    """The store's orders and products as a few aggregates (a scan of its order lines:
    about 0.3 s for a million)."""
    orders = session.execute(
        select(func.coalesce(func.max(Order.id), 0), func.max(Order.updated_at)).where(
            Order.store_id == store_id
        )
    ).one()
    lines = session.execute(
        select(func.count(), func.coalesce(func.sum(OrderLine.refunded_quantity), 0))
        .select_from(OrderLine)
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.store_id == store_id)
    ).one()
    products = session.execute(
        select(func.count(), func.coalesce(func.max(Product.id), 0)).where(
            Product.store_id == store_id
        )
    ).one()
    return Watermark(
        max_order_id=int(orders[0]),
        orders_updated_at=aware_instant(orders[1]),
        order_lines=int(lines[0]),
        refunded_units=int(lines[1]),
        products=int(products[0]),
        max_product_id=int(products[1]),
    )


def _watermark_of(state: RecommendationState) -> Watermark:
    return Watermark(
        max_order_id=state.max_order_id,
        orders_updated_at=aware_instant(state.orders_updated_at),
        order_lines=state.order_lines,
        refunded_units=state.refunded_units,
        products=state.products,
        max_product_id=state.max_product_id,
    )


def rebuild(session: Session, store_id: int, now: datetime | None = None) -> Build:
    """Compute the store's neighbours and best sellers from its orders and replace the
    stored ones, in the caller's transaction (flushes, never commits; one build per store
    at a time)."""
    now = utcnow() if now is None else now
    lock_store_job(session, RECOMMEND_JOB, store_id)
    mark = watermark(session, store_id)
    model, buyers = _load(session, store_id)
    ids = model.product_ids
    sim = model.sim.tocoo()
    neighbours = [
        (store_id, int(p), int(q), float(s))
        for p, q, s in zip(ids[sim.row], ids[sim.col], sim.data, strict=True)
    ]
    ranked = [(store_id, r, int(ids[c]), int(buyers[c])) for r, c in enumerate(model.popular)]
    session.execute(delete(ProductNeighbour).where(ProductNeighbour.store_id == store_id))
    session.execute(delete(ProductBuyers).where(ProductBuyers.store_id == store_id))
    _bulk(
        session,
        "product_neighbours",
        ("store_id", "product_id", "neighbour_id", "score"),
        neighbours,
    )
    _bulk(session, "product_buyers", ("store_id", "rank", "product_id", "buyers"), ranked)
    state = session.get(RecommendationState, store_id)
    values = {
        "computed_at": now,
        "checked_at": now,
        "customers": len(model.customer_row),
        "neighbours": len(neighbours),
        **asdict(mark),
    }
    if state is None:
        session.add(RecommendationState(store_id=store_id, **values))
    else:
        for key, value in values.items():
            setattr(state, key, value)
    session.flush()
    return Build(store_id, len(model.customer_row), len(ranked), len(neighbours), now)


def _bulk(
    session: Session, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """Insert many rows in the session's transaction: COPY on PostgreSQL, one
    ``executemany`` on SQLite."""
    if not rows:
        return
    connection = session.connection()
    cursor = connection.connection.cursor()
    try:
        if connection.dialect.name == "postgresql":
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
    finally:
        cursor.close()


def run_step(session: Session, store_id: int, now: datetime | None = None) -> Build | None:
    """The job step: build a store never built; rebuild one whose last build is older
    than :data:`FRESH` when its watermark moved (compared at most every
    :data:`CHECK_EVERY`). Returns the build made, if any."""
    now = utcnow() if now is None else now
    state = session.get(RecommendationState, store_id)
    if state is None:
        return rebuild(session, store_id, now)
    if now - aware(state.computed_at) < FRESH or now - aware(state.checked_at) < CHECK_EVERY:
        return None
    lock_store_job(session, RECOMMEND_JOB, store_id)
    session.refresh(state)
    if now - aware(state.checked_at) < CHECK_EVERY:  # another run just compared it
        return None
    if watermark(session, store_id) == _watermark_of(state):
        state.checked_at = now
        session.flush()
        return None
    return rebuild(session, store_id, now)


def aware(when: datetime) -> datetime:
    at = aware_instant(when)
    assert at is not None
    return at
