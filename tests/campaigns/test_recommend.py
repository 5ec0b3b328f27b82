"""Recommendations: purchase histories built so the right answer follows by reasoning."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from patron import jobs
from patron.auth import Scope
from patron.campaigns import privacy, recommend
from patron.campaigns.models import ProductBuyers, ProductNeighbour, RecommendationState
from patron.cli import app as cli_app
from patron.customers.models import Customer
from patron.db import unit_of_work
from patron.orders.models import Order, OrderLine, OrderStatus, Product
from patron.orders.schemas import RefundIn, RefundLineIn
from patron.orders.service import refunds
from patron.stores.models import Store
from tests.conftest import key_headers, new_store

NOW = datetime(2026, 6, 1, tzinfo=UTC)
_order_no = itertools.count()


class Shop:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store: Store = new_store(engine)
        self.ids: dict[str, int] = {}
        self.products: dict[str, int] = {}

    def product(self, *skus: str) -> None:
        with unit_of_work(self.engine) as s:
            for sku in skus:
                p = Product(
                    store_id=self.store.id,
                    sku=sku,
                    name=f"Product {sku}",
                    category=None,
                    price_minor=1000,
                    currency="CNY",
                )
                s.add(p)
                s.flush()
                self.products[sku] = p.id

    def customer(self, ext: str) -> int:
        if ext not in self.ids:
            with unit_of_work(self.engine) as s:
                c = Customer(store_id=self.store.id, external_id=ext)
                s.add(c)
                s.flush()
                self.ids[ext] = c.id
        return self.ids[ext]

    def order(
        self,
        ext: str,
        skus: list[str],
        status: OrderStatus = OrderStatus.delivered,
        refunded: tuple[str, ...] = (),
    ) -> str:
        cid = self.customer(ext)
        order_ext = f"o{next(_order_no)}"
        with unit_of_work(self.engine) as s:
            o = Order(
                store_id=self.store.id,
                external_id=order_ext,
                customer_id=cid,
                status=status,
                channel=None,
                currency="CNY",
                discount_code=None,
                subtotal_minor=1000 * len(skus),
                discount_minor=0,
                shipping_minor=0,
                tax_minor=0,
                total_minor=1000 * len(skus),
                refunded_minor=0,
                placed_at=NOW,
                paid_at=None,
                fulfilled_at=None,
                delivered_at=None,
                cancelled_at=None,
                payload_hash=None,
            )
            s.add(o)
            s.flush()
            for n, sku in enumerate(skus, 1):
                qty = 2
                s.add(
                    OrderLine(
                        order_id=o.id,
                        line_no=n,
                        external_id=None,
                        sku=sku,
                        name=sku,
                        category=None,
                        quantity=qty,
                        unit_price_minor=500,
                        discount_minor=0,
                        total_minor=1000,
                        refunded_quantity=qty if sku in refunded else 0,
                        refunded_minor=1000 if sku in refunded else 0,
                    )
                )
        return order_ext

    def recommend(self, *exts: str, limit: int = 3) -> dict[str, list[str]]:
        with unit_of_work(self.engine) as s:
            got = recommend.for_customers(
                s, self.store.id, [self.customer(e) for e in exts], limit=limit
            )
        by_id = {v: k for k, v in self.ids.items()}
        return {by_id[cid]: [x.sku for x in items] for cid, items in got.items()}


@pytest.fixture
def shop(engine: Engine) -> Shop:
    """Five customers bought A and B together; four bought C and D, two more D alone;
    most bought the best seller P; E was bought by three A-buyers but all three refunded
    it; Q only in orders that were cancelled or refunded as a whole."""
    s = Shop(engine)
    s.product("A", "B", "C", "D", "E", "P", "Q", "Z")
    for i in range(5):
        s.order(f"ab{i}", ["A", "B", "P"], refunded=("E",))
    for i in range(3):
        s.order(f"ab{i}", ["E"], refunded=("E",))
    for i in range(4):
        s.order(f"cd{i}", ["C"])
        s.order(f"cd{i}", ["D", "P"])  # different orders: still the same customer's basket
    for i in range(2):
        s.order(f"dp{i}", ["D", "P"])
    for i in range(6):
        s.order(f"p{i}", ["P"])
        s.order(f"p{i}", ["Q"], status=OrderStatus.cancelled if i % 2 else OrderStatus.refunded)
    s.order("alice", ["A"])  # bought A only
    s.order("carl", ["C", "P"])
    s.order("both", ["A", "B"])
    s.order("dan", ["D"])
    s.order("refunder", ["A"], refunded=("A",))
    s.customer("newbie")
    return s


def test_co_bought_product_comes_first_and_best_seller_does_not_dominate(shop: Shop) -> None:
    got = shop.recommend("alice", "carl", "dan", limit=2)
    # A's 7 buyers: 6 also bought B, 5 the best seller P.
    assert got["alice"] == ["B", "P"]
    # carl bought C and P: D is C's neighbour (4 of C's 5 buyers) and P's.
    assert got["carl"][0] == "D"
    # dan bought D. More D-buyers bought P (6) than C (4), but P is bought by 18 of the
    # shop's customers and C by 5: relative to their popularity, C is D's neighbour.
    assert got["dan"] == ["C", "P"]


def test_already_bought_is_excluded(shop: Shop) -> None:
    got = shop.recommend("both", "ab0", limit=8)
    assert not {"A", "B"} & set(got["both"])
    assert not {"A", "B", "P"} & set(got["ab0"])


def test_refunded_and_cancelled_lines_do_not_count(shop: Shop) -> None:
    got = shop.recommend("alice", "refunder", limit=8)
    # E was only ever refunded, Q only in cancelled/refunded orders: never suggested.
    assert "E" not in got["alice"] and "Q" not in got["alice"]
    # The refunder's only line was refunded: no history, so the best sellers, A included.
    assert got["refunder"] == shop.recommend("newbie", limit=8)["newbie"]
    assert "A" in got["refunder"]


def test_cold_start_gets_popular_products(shop: Shop) -> None:
    got = shop.recommend("newbie", limit=4)["newbie"]
    # buyers: P 5+4+2+6+1=18, A 5+1+1=7, D 4+2+1=7 (a tie: the older product first),
    # B 5+1=6, C 4+1=5
    assert got == ["P", "A", "D", "B"]


def test_limit_is_honoured_and_every_id_is_answered(shop: Shop, engine: Engine) -> None:
    for limit in (1, 2, 3):
        got = shop.recommend("alice", "newbie", "carl", limit=limit)
        assert all(len(v) == limit for v in got.values())
    # Five products were ever bought (P, A, B, C, D): alice, who bought A, has four left.
    assert len(shop.recommend("alice", limit=50)["alice"]) == 4
    with unit_of_work(engine) as s:
        out = recommend.for_customers(s, shop.store.id, [999_999_999], limit=3)
    assert list(out) == [999_999_999]


def test_nothing_left_to_suggest(engine: Engine) -> None:
    shop = Shop(engine)
    shop.product("A")
    shop.order("x", ["A"])
    assert shop.recommend("x", limit=3) == {"x": []}


def test_batch_equals_single_calls(shop: Shop) -> None:
    everyone = list(shop.ids)
    batch = shop.recommend(*everyone, limit=4)
    for ext in everyone:
        assert shop.recommend(ext, limit=4)[ext] == batch[ext]


def test_api_and_cli(shop: Shop, client: TestClient, engine: Engine, db_cli: CliRunner) -> None:
    read = key_headers(engine, shop.store, Scope.read)
    r = client.get("/v1/customers/alice/recommendations?limit=2", headers=read)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["items"][0]["sku"] == "B" and len(body["items"]) == 2
    assert body["items"][0]["product_id"] == shop.products["B"]
    assert client.get("/v1/customers/nobody/recommendations", headers=read).status_code == 404
    assert (
        client.get("/v1/customers/alice/recommendations?limit=0", headers=read).status_code == 422
    )
    r = db_cli.invoke(cli_app, ["segments", "recommend", "-s", shop.store.slug, "alice"])
    assert r.exit_code == 0, r.output
    assert "B" in r.output


# --- the persisted neighbours ------------------------------------------------------------


def _both(
    engine: Engine, store_id: int, customer_ids: list[int], limit: int
) -> tuple[dict[int, list[recommend.Suggestion]], dict[int, list[recommend.Suggestion]]]:
    """(persisted, in-memory) answers for the same customers."""
    with unit_of_work(engine) as s:
        persisted = recommend.for_customers(s, store_id, customer_ids, limit=limit)
        reference = recommend.in_memory(s, store_id, customer_ids, limit=limit)
    return persisted, reference


def _state(engine: Engine, store_id: int) -> RecommendationState | None:
    with unit_of_work(engine) as s:
        return s.get(RecommendationState, store_id)


def _rows(
    engine: Engine, model: type[ProductNeighbour] | type[ProductBuyers], store_id: int
) -> int:
    with unit_of_work(engine) as s:
        return (
            s.scalar(select(func.count()).select_from(model).where(model.store_id == store_id)) or 0
        )


def test_first_call_builds_and_persists(shop: Shop, engine: Engine) -> None:
    assert _state(engine, shop.store.id) is None
    shop.recommend("alice")
    state = _state(engine, shop.store.id)
    assert state is not None
    # Pairs bought by two customers or more: A-B, A-P, B-P, C-D, C-P, D-P, both ways.
    assert state.neighbours == _rows(engine, ProductNeighbour, shop.store.id) == 12
    assert _rows(engine, ProductBuyers, shop.store.id) == 5  # P, A, B, C, D
    # 21 customers have a purchase that counts: 5 ab, 4 cd, 2 dp, 6 p, alice, carl,
    # both, dan (the refunder and newbie have none).
    assert state.customers == 21


@pytest.mark.parametrize("whole_store", [False, True], ids=["by-customer", "whole-store"])
def test_persisted_equals_in_memory_on_the_shop(
    shop: Shop, engine: Engine, whole_store: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if whole_store:  # the big-batch path: the store's purchases in one pass
        monkeypatch.setattr(recommend, "WHOLE_STORE", 0)
    everyone = [*shop.ids.values(), 999_999_999]
    for limit in (1, 3, 8):
        persisted, reference = _both(engine, shop.store.id, everyone, limit)
        assert persisted == reference
        for cid in everyone[:6]:
            single, _ = _both(engine, shop.store.id, [cid], limit)
            assert single[cid] == reference[cid]


@pytest.mark.parametrize("seed", [1, 2])
def test_persisted_equals_in_memory_on_random_data(
    engine: Engine, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    shop = Shop(engine)
    skus = [f"S{i}" for i in range(60)]
    shop.product(*skus)
    # 6 "categories" of 10 products; each customer mostly buys in one, Zipf-like within.

    def pick(fav: int) -> str:
        cat = fav if rng.random() < 0.8 else rng.randrange(6)
        return f"S{cat * 10 + min(int(rng.paretovariate(1.2)) - 1, 9)}"

    for c in range(90):
        fav = rng.randrange(6)
        for _ in range(rng.choice([1, 1, 2, 3, 4])):
            size = rng.choice([1, 1, 2, 3])
            basket = {pick(fav) for _ in range(size)}
            status = OrderStatus.cancelled if rng.random() < 0.05 else OrderStatus.delivered
            refunded = tuple(sku for sku in basket if rng.random() < 0.1)
            shop.order(f"c{c}", sorted(basket), status=status, refunded=refunded)
    for c in range(5):
        shop.customer(f"new{c}")
    everyone = list(shop.ids.values())
    for limit in (3, 12):
        persisted, reference = _both(engine, shop.store.id, everyone, limit)
        assert persisted == reference
        assert any(len(v) == limit for v in persisted.values())
    monkeypatch.setattr(recommend, "WHOLE_STORE", 0)
    persisted, reference = _both(engine, shop.store.id, everyone, 5)
    assert persisted == reference
    # Same-score ties and the popular fill are exercised: scores repeat across customers.
    assert len({x.score for v in persisted.values() for x in v}) > 10


def test_job_rebuilds_only_when_orders_changed(shop: Shop, engine: Engine) -> None:
    t0 = datetime(2026, 6, 2, 8, tzinfo=UTC)
    with unit_of_work(engine) as s:
        store = s.get(Store, shop.store.id)
        assert store is not None
        assert jobs.run_store(s, store, t0).recommendations == 1  # never built: built
        assert jobs.run_store(s, store, t0 + timedelta(minutes=5)).recommendations == 0

    def step(at: datetime) -> bool:
        with unit_of_work(engine) as s:
            return recommend.run_step(s, shop.store.id, at) is not None

    assert not step(t0 + timedelta(hours=7))  # old enough, but nothing changed
    state = _state(engine, shop.store.id)
    assert state is not None
    assert state.computed_at == t0 and state.checked_at == t0 + timedelta(hours=7)
    # New orders: two customers buy C and Z together; Z becomes a neighbour of C.
    shop.order("z0", ["C", "Z"])
    shop.order("z1", ["C", "Z"])
    assert "Z" not in shop.recommend("carl", limit=8)["carl"]  # the stored build is older
    assert not step(t0 + timedelta(hours=7, minutes=30))  # compared less than 1 h ago
    assert step(t0 + timedelta(hours=8, minutes=1))
    state = _state(engine, shop.store.id)
    assert state is not None and state.computed_at == t0 + timedelta(hours=8, minutes=1)
    assert "Z" in shop.recommend("carl", limit=8)["carl"]
    persisted, reference = _both(engine, shop.store.id, list(shop.ids.values()), 4)
    assert persisted == reference
    shop.order("alice", ["C"])
    assert not step(t0 + timedelta(hours=10))  # changed, but the build is 2 h old
    assert step(t0 + timedelta(hours=14, minutes=2))
    # A refund alone moves the watermark too.
    with unit_of_work(engine) as s:
        line = s.scalars(
            select(OrderLine)
            .join(Order, Order.id == OrderLine.order_id)
            .where(Order.store_id == shop.store.id, OrderLine.sku == "C")
            .limit(1)
        ).one()
        line.refunded_quantity = line.quantity
    assert step(t0 + timedelta(hours=21))


def test_purchases_and_refunds_after_the_build_count_at_once(shop: Shop, engine: Engine) -> None:
    newbie_list = shop.recommend("newbie", limit=3)["newbie"]
    assert shop.recommend("alice", limit=2)["alice"] == ["B", "P"]  # built here
    # alice's only purchase, A, is refunded after the build: she has no history now.
    alice_order = next(o for o in _orders_of(engine, shop.ids["alice"]))
    with unit_of_work(engine) as s:
        store = s.get(Store, shop.store.id)
        assert store is not None
        [result] = refunds.upsert_many(
            s,
            store,
            [
                RefundIn(
                    external_id=f"r-{alice_order}",
                    order_external_id=alice_order,
                    refunded_at=NOW,
                    lines=[RefundLineIn(sku="A", quantity=2)],
                )
            ],
        )
        assert result.status == "created", result
    assert shop.recommend("alice", limit=3)["alice"] == newbie_list
    # dan buys C after the build: C is no longer suggested to him, its neighbours count.
    shop.order("dan", ["C"])
    got = shop.recommend("dan", limit=8)["dan"]
    assert "C" not in got and "D" not in got
    assert got[0] == "P"  # P is a neighbour of both C and D


def _orders_of(engine: Engine, cid: int) -> list[str]:
    with unit_of_work(engine) as s:
        return list(s.scalars(select(Order.external_id).where(Order.customer_id == cid)))


def test_erased_customer(shop: Shop, engine: Engine, client: TestClient) -> None:
    before = shop.recommend("alice", "carl", limit=3)
    with unit_of_work(engine) as s:
        store = s.get(Store, shop.store.id)
        assert store is not None
        privacy.erase(s, store, "alice", "test")
        recommend.rebuild(s, shop.store.id)
    # Orders stay (anonymised), so the erased customer's purchases still shape the
    # neighbours; by id the erased customer is answered as before, by the old external
    # id not at all; nothing persisted names a customer.
    assert shop.recommend("alice", "carl", limit=3) == before
    read = key_headers(engine, shop.store, Scope.read)
    assert client.get("/v1/customers/alice/recommendations", headers=read).status_code == 404
    for model in (ProductNeighbour, ProductBuyers, RecommendationState):
        assert not [c for c in model.__table__.c if "customer" in c.name and c.foreign_keys]


def test_store_isolation(engine: Engine) -> None:
    one, two = Shop(engine), Shop(engine)
    for shop in (one, two):
        shop.product("A", "B", "C")
    for i in range(3):
        one.order(f"x{i}", ["A", "B"])
        two.order(f"x{i}", ["A", "C"])
    one.order("me", ["A"])
    two.order("me", ["A"])
    assert one.recommend("me", limit=1) == {"me": ["B"]}
    assert two.recommend("me", limit=1) == {"me": ["C"]}
    rows_two = _rows(engine, ProductNeighbour, two.store.id)
    with unit_of_work(engine) as s:
        recommend.rebuild(s, one.store.id)
        # one's customer asked of store two has no purchases there: the cold list.
        got = recommend.for_customers(s, two.store.id, [one.ids["me"]], limit=1)
    assert [x.sku for x in got[one.ids["me"]]] == ["A"]
    assert _rows(engine, ProductNeighbour, two.store.id) == rows_two == 2
    assert two.recommend("me", limit=1) == {"me": ["C"]}


def test_cli_rebuild(shop: Shop, db_cli: CliRunner, engine: Engine) -> None:
    r = db_cli.invoke(cli_app, ["segments", "recommend", "-s", shop.store.slug, "--rebuild"])
    assert r.exit_code == 0, r.output
    assert "rebuilt: 12 neighbours of 5 products from 21 customers" in r.output
    state = _state(engine, shop.store.id)
    assert state is not None and state.neighbours == 12
    r = db_cli.invoke(cli_app, ["segments", "recommend", "-s", shop.store.slug])
    assert r.exit_code == 2
