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

One call builds the matrices once (``scipy.sparse``) and answers a whole batch: a
campaign asks for 100,000 customers at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]
from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session

from patron.orders.models import Order, OrderLine, OrderStatus, Product

MIN_SUPPORT = 2
NEIGHBOURS = 50  # similar products kept per product
CHUNK = 10_000  # customers scored at once (bounds memory)
MAX_LIMIT = 50


@dataclass(frozen=True)
class Suggestion:
    product_id: int
    sku: str
    name: str
    score: float


@dataclass(frozen=True)
class _Model:
    customer_row: dict[int, int]
    x: sp.csr_matrix  # customers × products, 0/1
    sim: sp.csr_matrix  # products × products, cosine with min support, zero diagonal
    popular: np.ndarray  # product columns, most buyers first
    popularity: np.ndarray  # share of buyers per product column
    products: list[tuple[int, str, str]]  # column -> (id, sku, name)


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


def _int_pairs(session: Session, statement: Select[tuple[int, int]]) -> np.ndarray:
    """The rows of a two-integer query as an (n, 2) array, through the driver's cursor:
    a million rows without a million result objects. The statement's values are
    rendered inline (an integer store id and fixed statuses: nothing from a caller)."""
    connection = session.connection()
    sql = str(statement.compile(connection, compile_kwargs={"literal_binds": True}))
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def _load(session: Session, store_id: int) -> _Model:
    products = session.execute(
        select(Product.id, Product.sku, Product.name)
        .where(Product.store_id == store_id)
        .order_by(Product.id)
    ).all()
    ids = np.array([pid for pid, _, _ in products], dtype=np.int64)  # ascending
    o, line, p = Order.__table__, OrderLine.__table__, Product.__table__
    statement = (
        select(o.c.customer_id, p.c.id)
        .distinct()
        .select_from(
            line.join(o, o.c.id == line.c.order_id).join(
                p, and_(p.c.store_id == o.c.store_id, p.c.sku == line.c.sku)
            )
        )
        .where(
            o.c.status.not_in([OrderStatus.cancelled, OrderStatus.refunded]),
            line.c.quantity > line.c.refunded_quantity,
        )
    )
    pairs = _int_pairs(session, statement.where(o.c.store_id == int(store_id)))
    n_products = len(products)
    cids = pairs[:, 0]
    cols = np.searchsorted(ids, pairs[:, 1])
    uniq, rows_idx = np.unique(cids, return_inverse=True)
    x = sp.csr_matrix(
        (np.ones(len(cols), np.float64), (rows_idx, cols)), shape=(len(uniq), n_products)
    )
    x.sum_duplicates()
    x.data[:] = 1.0
    buyers = np.asarray(x.sum(axis=0)).ravel()
    co = (x.T @ x).tocoo()
    keep = (co.row != co.col) & (co.data >= MIN_SUPPORT)
    r, c, d = co.row[keep], co.col[keep], co.data[keep]
    sim = _nearest(
        sp.csr_matrix((d / np.sqrt(buyers[r] * buyers[c]), (r, c)), shape=(n_products, n_products))
    )
    popular = np.lexsort((np.arange(n_products), -buyers))
    popular = popular[buyers[popular] > 0]
    share = buyers / max(len(uniq), 1)
    return _Model(
        customer_row={int(cid): i for i, cid in enumerate(uniq)},
        x=x,
        sim=sim,
        popular=popular,
        popularity=share,
        products=[(int(pid), sku, name) for pid, sku, name in products],
    )


def for_customers(
    session: Session, store_id: int, customer_ids: Sequence[int], *, limit: int = 3
) -> dict[int, list[Suggestion]]:
    """Up to ``limit`` suggestions per customer, best first; every id requested is a key
    (an empty list when the store has nothing left to suggest)."""
    limit = max(0, min(limit, MAX_LIMIT))
    model = _load(session, store_id)
    out: dict[int, list[Suggestion]] = {}
    wanted = list(dict.fromkeys(int(c) for c in customer_ids))
    known = [c for c in wanted if c in model.customer_row]
    cold = [_suggestion(model, int(c), model.popularity[c]) for c in model.popular[:limit]]
    for cid in wanted:
        if cid not in model.customer_row or limit == 0:
            out[cid] = list(cold)
    if limit == 0:
        return out
    for at in range(0, len(known), CHUNK):
        chunk = known[at : at + CHUNK]
        bought = model.x[[model.customer_row[c] for c in chunk]]
        raw = (bought @ model.sim).tocsr()
        scores = (raw - raw.multiply(bought)).tocsr()
        scores.eliminate_zeros()
        for i, cid in enumerate(chunk):
            out[cid] = _pick(model, scores, bought, i, limit)
    return {cid: out[cid] for cid in wanted}


def _suggestion(model: _Model, col: int, score: float) -> Suggestion:
    pid, sku, name = model.products[col]
    return Suggestion(product_id=pid, sku=sku, name=name, score=round(float(score), 6))


def _pick(
    model: _Model, scores: sp.csr_matrix, bought: sp.csr_matrix, i: int, limit: int
) -> list[Suggestion]:
    """Row ``i``'s best ``limit`` products, topped up with best sellers not bought."""
    start, end = scores.indptr[i], scores.indptr[i + 1]
    cols, vals = scores.indices[start:end], scores.data[start:end]
    order = np.lexsort((cols, -vals))[:limit]
    picked = [_suggestion(model, int(cols[j]), vals[j]) for j in order if vals[j] > 0]
    if len(picked) < limit:
        taken = set(bought.indices[bought.indptr[i] : bought.indptr[i + 1]].tolist())
        taken.update(int(cols[j]) for j in order)
        for col in model.popular:
            if len(picked) >= limit:
                break
            if int(col) not in taken:
                picked.append(_suggestion(model, int(col), model.popularity[col]))
    return picked
