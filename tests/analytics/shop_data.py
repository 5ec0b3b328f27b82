"""A generated shop in the canonical frame shape, for the report and CLV tests.

A deliberately simple conversion of the demo generator's files (order lines → orders,
refunds summed per order, UTC → Asia/Shanghai local time, members and NPS drawn at
random): enough to exercise every analysis without depending on the file sources.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from patron.demo.generator import GeneratedShop, GeneratorParams, generate, write_shop
from patron.ingest.files import import_file

LOCAL_OFFSET_MS = 8 * 3600 * 1000


def generated(customers: int = 1500, orders: int = 9000, seed: int = 5) -> GeneratedShop:
    return generate(GeneratorParams(customers=customers, orders=orders, seed=seed))


def _local(ts: pa.ChunkedArray) -> pa.Array:
    ms = pc.add(pc.cast(ts, pa.int64()), LOCAL_OFFSET_MS)
    return pc.cast(pc.cast(ms, pa.timestamp("ms")), pa.timestamp("us"))


def canonical(shop: GeneratedShop, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """(orders, customers) in the frame's canonical schemas."""
    o = shop.orders
    f64 = pa.float64()
    line = pc.subtract(
        pc.multiply(pc.cast(o["unit_price"], f64), pc.cast(o["quantity"], f64)),
        pc.cast(o["line_discount"], f64),
    )
    lines = pa.table(
        {
            "order_id": o["external_id"],
            "customer_id": o["customer_external_id"],
            "placed_at": o["placed_at"],
            "status": o["status"],
            "channel": o["channel"],
            "discounted": pc.is_valid(o["discount_code"]),
            "line": line,
        }
    )
    orders = lines.group_by(
        ["order_id", "customer_id", "placed_at", "status", "channel", "discounted"]
    ).aggregate([("line", "sum")])
    orders = orders.filter(pc.not_equal(orders["status"], "cancelled"))
    refunds = shop.refunds.group_by("order_external_id").aggregate([("amount", "sum")])
    refunds = pa.table(
        {
            "order_id": refunds["order_external_id"],
            "refunded": pc.cast(refunds["amount_sum"], f64),
        }
    )
    orders = orders.join(refunds, "order_id", join_type="left outer")
    amount = orders["line_sum"]
    canonical_orders = pa.table(
        {
            "order_id": orders["order_id"],
            "customer_id": orders["customer_id"],
            "placed_at": _local(orders["placed_at"]),
            "amount": amount,
            "refunded_amount": pc.min_element_wise(orders["refunded"].fill_null(0.0), amount),
            "discounted": orders["discounted"],
            "channel": orders["channel"],
        }
    ).sort_by("order_id")
    rng = np.random.default_rng(seed)
    ids = shop.customers["external_id"]
    n = len(ids)
    answered = rng.random(n) < 0.4
    customers = pa.table(
        {
            "customer_id": ids,
            "is_member": pa.array(rng.random(n) < 0.5),
            "nps": pa.array(rng.integers(0, 11, n), pa.int64(), mask=~answered),
        }
    )
    return canonical_orders, customers


def fill_store(engine: Engine, slug: str, directory: Path, shop: GeneratedShop) -> dict[str, Path]:
    """Import ``shop`` (customers, products, orders, refunds) into the store ``slug``;
    returns the Parquet files it was imported from."""
    paths = write_shop(shop, directory, "parquet")
    for kind in ("customers", "products", "orders", "refunds"):
        report = import_file(engine, slug, kind, paths[kind], mode="all-or-nothing")
        assert not report.failed, report.errors[:5]
    return paths
