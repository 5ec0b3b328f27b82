"""Recommendations: purchase histories built so the right answer follows by reasoning."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from patron.auth import Scope
from patron.campaigns import recommend
from patron.cli import app as cli_app
from patron.customers.models import Customer
from patron.db import unit_of_work
from patron.orders.models import Order, OrderLine, OrderStatus, Product
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
    ) -> None:
        cid = self.customer(ext)
        with unit_of_work(self.engine) as s:
            o = Order(
                store_id=self.store.id,
                external_id=f"o{next(_order_no)}",
                customer_id=cid,
                status=status,
                channel=None,
                currency="CNY",
                discount_code=None,
                subtotal_minor=0,
                discount_minor=0,
                shipping_minor=0,
                tax_minor=0,
                total_minor=0,
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
