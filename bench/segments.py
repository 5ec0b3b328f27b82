"""Segment preview counts on 1,000,000 customers (PostgreSQL), against pandas.

    python -m bench.segments                      # 1M customers, ~2M orders
    python -m bench.segments --customers 200000   # a quicker run
    python -m bench.segments --keep               # keep the database (prints its name)
    python -m bench.segments --db patron_bench_x  # time again on a kept database

Builds a scratch database (dropped afterwards) with what a store of that size holds for
segments: customers (profile, attributes), loyalty accounts and members (the example
programme: member/silver/gold/diamond), customer scores of an analytics run, orders,
consents with double opt-in confirmations and suppressions, NPS answers. Everything is
generated in the database with ``generate_series`` (seeded ``random()``), then
``VACUUM ANALYZE``.

Then, for each definition below, ``segments.count`` is timed: *cold* is the first run
(on a new connection, right after the load and the other definitions' runs; the OS
cache is not dropped), *warm* the median of the next three. The peer is pandas with the
same data already in memory as one flat frame per customer (the columns the fields
read, the order summary and the latest NPS precomputed, the consent verdicts too): its
time is a boolean mask and a sum. The time pandas needs to load that frame (one query,
``read_sql``) is printed too. Counts of both must agree.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from sqlalchemy import select, text

from bench.ingest import PG_ADMIN, Database
from patron.campaigns import segments as seg
from patron.db import make_engine, unit_of_work
from patron.loyalty.program import load_yaml
from patron.loyalty.programs import programs
from patron.migrate import upgrade
from patron.stores.models import Store
from patron.stores.service import stores

EXAMPLE = Path(__file__).parents[1] / "src/patron/loyalty/examples/program.yaml"
NOW = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
console = Console()

LOAD_SQL = """
SELECT setseed(0.6);
INSERT INTO customers (store_id, external_id, email, phone, first_name, last_name, birthday,
    locale, timezone, attributes, traits, flagged, flagged_reason, is_stub, created_at,
    updated_at)
SELECT :store, 'c' || g,
    CASE WHEN random() < 0.85 THEN 'u' || g || '@' ||
        (ARRAY['qq.com','163.com','gmail.com','example.com','outlook.com'])
            [1 + floor(random() * 5)::int]
    END,
    CASE WHEN random() < 0.6 THEN '+86 138 ' || lpad((g % 100000000)::text, 8, '0') END,
    'F' || g, 'L',
    CASE WHEN random() < 0.5 THEN DATE '1970-01-01' + floor(random() * 14000)::int END,
    (ARRAY['zh-CN','zh-CN','zh-CN','en-US'])[1 + floor(random() * 4)::int], NULL,
    CASE WHEN random() < 0.3 THEN jsonb_build_object('vip', random() < 0.2,
        'channel', (ARRAY['tmall','jd','app'])[1 + floor(random() * 3)::int]) ELSE '{}'::jsonb END,
    '{}'::jsonb, random() < 0.01, NULL, false,
    :now - (random() * 1500) * interval '1 day', :now
FROM generate_series(1, :n) g;

INSERT INTO loyalty_accounts (store_id, customer_id, points_available, points_pending,
    points_held, debt, growth, growth_pending, growth_debt, version, created_at, updated_at)
SELECT :store, id, floor(random() * random() * 5000)::int, 0, 0, 0,
    floor(random() * random() * 20000)::int, 0, 0, 1, created_at, :now
FROM customers WHERE store_id = :store AND random() < 0.6;

INSERT INTO loyalty_members (store_id, customer_id, tier, tier_since, review_at, check_at,
    last_check_in, streak, created_at, updated_at)
SELECT :store, customer_id,
    CASE WHEN growth > 10000 THEN 'diamond' WHEN growth > 4000 THEN 'gold'
         WHEN growth > 1000 THEN 'silver' ELSE 'member' END,
    created_at, NULL, NULL, NULL, 0, created_at, :now
FROM loyalty_accounts WHERE store_id = :store;

INSERT INTO customer_scores (customer_id, store_id, run_id, segment, r, f, m, clv, p_alive,
    expected_purchases, loyalty_type, behaviour_type, price_sensitivity, computed_at)
SELECT id, :store, 1,
    (ARRAY['champions','loyal','potential_loyalists','new','promising','need_attention',
           'about_to_sleep','at_risk','cant_lose','hibernating','lost'])
        [1 + floor(random() * 11)::int],
    1 + floor(random() * 5)::int, 1 + floor(random() * 5)::int, 1 + floor(random() * 5)::int,
    round((random() * random() * 3000)::numeric, 2), random(), random() * 4,
    (ARRAY['true','latent','spurious','none'])[1 + floor(random() * 4)::int],
    (ARRAY['regular','deal_seeker','lapsed','occasional','one_time'])[1 + floor(random() * 5)::int],
    random(), :now
FROM customers WHERE store_id = :store AND random() < 0.8;

INSERT INTO orders (store_id, external_id, customer_id, status, channel, currency,
    discount_code, subtotal_minor, discount_minor, shipping_minor, tax_minor, total_minor,
    refunded_minor, placed_at, paid_at, fulfilled_at, delivered_at, cancelled_at,
    payload_hash, created_at, updated_at)
SELECT :store, 'o' || g, :first + floor(random() * :n)::bigint,
    (ARRAY['delivered','delivered','delivered','paid','cancelled','refunded'])
        [1 + floor(random() * 6)::int],
    NULL, 'CNY', NULL, t, 0, 0, 0, t, CASE WHEN random() < 0.05 THEN t / 2 ELSE 0 END,
    :now - (random() * 720) * interval '1 day', NULL, NULL, NULL, NULL, NULL, :now, :now
FROM (SELECT g, (1000 + floor(random() * 60000))::bigint AS t
      FROM generate_series(1, :orders) g) s;

INSERT INTO consents (store_id, customer_id, channel, granted, source, recorded_at)
SELECT :store, id, 'email', random() < 0.8, 'bench', :now
FROM customers WHERE store_id = :store AND email IS NOT NULL AND random() < 0.6;
INSERT INTO consents (store_id, customer_id, channel, granted, source, recorded_at)
SELECT :store, id, 'sms', true, 'bench', :now
FROM customers WHERE store_id = :store AND phone IS NOT NULL AND random() < 0.4;
INSERT INTO consent_requests (store_id, customer_id, channel, address, address_hash, nonce,
    source, created_at, expires_at, confirmed_at)
SELECT :store, customer_id, 'email', lower(c.email), md5(c.email), md5(c.email || 'n'),
    'bench', :now, :now, CASE WHEN random() < 0.85 THEN :now END
FROM consents k JOIN customers c ON c.id = k.customer_id
WHERE k.store_id = :store AND k.channel = 'email' AND k.granted;
INSERT INTO suppressions (store_id, channel, address, address_hash, reason, note, created_at)
SELECT :store, 'email', lower(email), md5('s' || email), 'hard_bounce', NULL, :now
FROM customers WHERE store_id = :store AND email IS NOT NULL AND random() < 0.01;

INSERT INTO surveys (store_id, key, version, current, active, template, definition,
    anonymous, trigger, delay_days, link_days, reminder_days, max_reminders, recontact_days,
    created_at)
VALUES (:store, 'nps', 1, true, true, NULL, '{}'::jsonb, false, 'manual', 0, 30, NULL, 1, 30,
    :now);
INSERT INTO survey_responses (store_id, survey_id, survey_key, invitation_id, customer_id,
    submitted_at, locale, channel, tier, segment, subject, ticket_id)
SELECT :store, (SELECT max(id) FROM surveys WHERE store_id = :store), 'nps', NULL, id,
    :now - (random() * 365) * interval '1 day', NULL, NULL, NULL, NULL, NULL, NULL
FROM customers WHERE store_id = :store AND random() < 0.12;
INSERT INTO survey_answers (store_id, response_id, question_id, question_type, attribute,
    value, expectation, experience, importance, data)
SELECT :store, id, 'nps', 'nps', NULL, floor(random() * 11), NULL, NULL, NULL, NULL
FROM survey_responses WHERE store_id = :store;
"""

DEFINITIONS: dict[str, dict[str, Any]] = {
    "win-back (RFM, P(alive), email ok)": {
        "all": [
            {"field": "rfm_segment", "op": "in", "value": ["at_risk", "cant_lose"]},
            {"field": "p_alive", "op": "gt", "value": 0.3},
            {"field": "contactable_email", "op": "eq", "value": True},
        ]
    },
    "gold+ with 1,000 points": {
        "all": [
            {"field": "tier", "op": "in", "value": ["gold", "diamond"]},
            {"field": "points", "op": "gte", "value": 1000},
        ]
    },
    "lapsed repeat buyers": {
        "all": [
            {"field": "last_purchase_days_ago", "op": "gt", "value": 90},
            {"field": "orders_count", "op": "gte", "value": 2},
        ]
    },
    "birthday this month, has email": {
        "all": [
            {"field": "birthday_month", "op": "eq", "value": "this_month"},
            {"field": "has_email", "op": "eq", "value": True},
        ]
    },
    "detractors, not flagged": {
        "all": [
            {"field": "nps_category", "op": "eq", "value": "detractor"},
            {"field": "flagged", "op": "eq", "value": False},
        ]
    },
    "big spenders, high CLV, sms ok": {
        "all": [
            {"field": "total_spent", "op": "gt", "value": 1000},
            {"field": "clv", "op": "gt", "value": 500},
            {"field": "contactable_sms", "op": "eq", "value": True},
        ]
    },
}

FRAME_SQL = """
WITH o AS (
    SELECT customer_id, count(*) AS orders_count, max(placed_at) AS last_placed_at,
           sum(total_minor - refunded_minor) AS spent_minor
    FROM orders WHERE store_id = :store AND status <> 'cancelled' GROUP BY customer_id),
n AS (
    SELECT DISTINCT ON (r.customer_id) r.customer_id, a.value AS nps
    FROM survey_answers a JOIN survey_responses r ON r.id = a.response_id
    WHERE r.store_id = :store AND a.question_type = 'nps' AND a.value IS NOT NULL
    ORDER BY r.customer_id, r.submitted_at DESC, r.id DESC, a.id DESC)
SELECT c.id, c.email IS NOT NULL AND c.email <> '' AS has_email,
    extract(month FROM c.birthday) AS birthday_month, c.flagged,
    coalesce(m.tier, 'member') AS tier, coalesce(a.points_available, 0) AS points,
    s.segment AS rfm_segment, s.p_alive, s.clv,
    o.last_placed_at, coalesce(o.orders_count, 0) AS orders_count,
    coalesce(o.spent_minor, 0) AS spent_minor, n.nps,
    (EXISTS (SELECT 1 FROM consents k WHERE k.customer_id = c.id AND k.channel = 'email'
             AND k.granted)
     AND EXISTS (SELECT 1 FROM consent_requests q WHERE q.customer_id = c.id
                 AND q.confirmed_at IS NOT NULL AND q.address = lower(trim(c.email)))
     AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.store_id = :store
                     AND x.channel = 'email' AND x.address = lower(trim(c.email))))
        AS contactable_email,
    (c.phone IS NOT NULL AND EXISTS (SELECT 1 FROM consents k WHERE k.customer_id = c.id
             AND k.channel = 'sms' AND k.granted)) AS contactable_sms
FROM customers c
LEFT JOIN loyalty_members m ON m.customer_id = c.id AND m.store_id = :store
LEFT JOIN loyalty_accounts a ON a.customer_id = c.id AND a.store_id = :store
LEFT JOIN customer_scores s ON s.customer_id = c.id
LEFT JOIN o ON o.customer_id = c.id
LEFT JOIN n ON n.customer_id = c.id
WHERE c.store_id = :store AND NOT c.is_stub
"""


def pandas_masks(df: pd.DataFrame) -> dict[str, Callable[[], int]]:
    today = NOW.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).date()
    boundary = pd.Timestamp(
        datetime.combine(today - timedelta(days=90), datetime.min.time()),
        tz="Asia/Shanghai",
    ).tz_convert("UTC")
    return {
        "win-back (RFM, P(alive), email ok)": lambda: int(
            (
                df.rfm_segment.isin(["at_risk", "cant_lose"])
                & (df.p_alive > 0.3)
                & df.contactable_email
            ).sum()
        ),
        "gold+ with 1,000 points": lambda: int(
            (df.tier.isin(["gold", "diamond"]) & (df.points >= 1000)).sum()
        ),
        "lapsed repeat buyers": lambda: int(
            ((df.last_placed_at < boundary) & (df.orders_count >= 2)).sum()
        ),
        "birthday this month, has email": lambda: int(
            ((df.birthday_month == today.month) & df.has_email).sum()
        ),
        "detractors, not flagged": lambda: int(((df.nps < 7) & ~df.flagged).sum()),
        "big spenders, high CLV, sms ok": lambda: int(
            ((df.spent_minor > 100000) & (df.clv > 500) & df.contactable_sms).sum()
        ),
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders-per-customer", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true", help="Keep the scratch database.")
    parser.add_argument(
        "--db",
        metavar="NAME",
        help="Reuse a database kept by --keep (migrated to head, built only if empty).",
    )
    parser.add_argument("--no-pandas", action="store_true", help="Skip the pandas peer.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db: Database | Kept = Kept(args.db) if args.db else Database("postgresql", Path(tmp))
        if args.keep and not args.db:
            console.print(f"database kept: {db.name} (reuse with --db {db.name})")
        try:
            run(
                db,
                args.customers,
                int(args.customers * args.orders_per_customer),
                not args.no_pandas,
            )
        finally:
            if not args.keep:
                db.close()


class Kept:
    """A database an earlier ``--keep`` run left behind (never dropped here)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.engine = make_engine(PG_ADMIN.rsplit("/", 1)[0] + "/" + name)
        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()


def run(db: Database | Kept, n: int, n_orders: int, with_pandas: bool = True) -> None:
    with unit_of_work(db.engine) as session:
        store_id = session.scalar(select(Store.id).where(Store.slug == "bench-segments"))
    if store_id is not None:
        console.print("reusing the data already in the database")
    else:
        store_id = build(db, n, n_orders)

    db.engine.dispose()
    _measure(db, store_id, with_pandas)


def build(db: Database | Kept, n: int, n_orders: int) -> int:
    with unit_of_work(db.engine) as session:
        store = stores.create(session, "bench-segments", "bench", "CNY", "Asia/Shanghai")
        programs.apply(session, store, load_yaml(EXAMPLE.read_text(encoding="utf-8")))
        store_id = store.id
    started = time.perf_counter()
    with db.engine.begin() as conn:
        first = conn.execute(text("SELECT coalesce(max(id), 0) + 1 FROM customers")).scalar()
        params = {"store": store_id, "n": n, "orders": n_orders, "now": NOW, "first": first}
        for statement in LOAD_SQL.split(";\n"):
            if statement.strip():
                conn.execute(text(statement), params)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    console.print(
        f"built {n:,} customers, {n_orders:,} orders in {time.perf_counter() - started:.0f} s"
    )
    return int(store_id)


def _measure(db: Database | Kept, store_id: int, with_pandas: bool) -> None:
    results: dict[str, tuple[float, float, int]] = {}
    with unit_of_work(db.engine) as session:
        store = stores.get(session, "bench-segments")
        for name, raw in DEFINITIONS.items():
            d = seg.parse_definition(raw)
            cold, count = timed(lambda d=d: seg.count(session, store, d, now=NOW))
            warm = [timed(lambda d=d: seg.count(session, store, d, now=NOW))[0] for _ in range(3)]
            results[name] = (cold, statistics.median(warm), count)
            console.print(
                f"  {name}: {count:,} ({cold * 1000:.0f} / {statistics.median(warm) * 1000:.0f} ms)"
            )

    if not with_pandas:
        return
    load_s, df = timed(
        lambda: pd.read_sql(text(FRAME_SQL), db.engine.connect(), params={"store": store_id})
    )
    df["last_placed_at"] = pd.to_datetime(df["last_placed_at"], utc=True)
    df["clv"] = df["clv"].astype(float)
    masks = pandas_masks(df)
    n = len(df)
    table = Table(title=f"segment counts, {n:,} customers (PostgreSQL) vs pandas in memory")
    for col in ("definition", "members", "SQL cold ms", "SQL warm ms", "pandas ms", "agree"):
        table.add_column(col, justify="left" if col == "definition" else "right")
    for name, (cold, warm, count) in results.items():
        fn = masks[name]
        fn()
        pd_s = statistics.median(timed(fn)[0] for _ in range(5))
        table.add_row(
            name,
            f"{count:,}",
            f"{cold * 1000:.0f}",
            f"{warm * 1000:.0f}",
            f"{pd_s * 1000:.1f}",
            "yes" if fn() == count else f"NO ({fn():,})",
        )
    console.print(table)
    console.print(
        f"pandas: loading the flat frame ({len(df):,} rows × {len(df.columns)} columns) took "
        f"{load_s:.1f} s; memory {df.memory_usage(deep=True).sum() / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
