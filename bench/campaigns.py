"""A one-off campaign to 100,000 consented customers (PostgreSQL): ``run_due`` timed.

    python -m bench.campaigns                       # 100,000 customers
    python -m bench.campaigns --customers 10000     # a quicker run

Builds a scratch database (dropped afterwards) with a store of N customers, every one
with an email address, email consent granted and the address confirmed (double opt-in),
a quarter of them in English and the rest in Chinese, loyalty accounts for half, and a
few products bought together (so recommendations are not empty). Everything is generated
in the database with ``generate_series``, then ``VACUUM ANALYZE``.

Then a one-off email campaign to all of them (10% holdout, an A/B test of two variants
whose HTML has two links, the unsubscribe link and a recommendation) is scheduled and
``campaign_service.run_due`` is timed in one unit of work (commit included). Printed:
the time, recipients per second, the decisions, and the SQL statements the run sent
per recipient: those SQLAlchemy sees, plus the ones ``insert_rows`` sends on the raw
psycopg connection for a bulk insert (staging table, ``TRUNCATE``, ``COPY``, ``INSERT ...
SELECT``). Then the campaign is put back to ``scheduled`` and run again, as a retried
run would: every recipient is already decided, nothing may be queued twice. Last, a
second campaign to the same customers is timed (each has a message in the cap window).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import event, func, select, text, update

from bench.ingest import Database
from patron.campaigns import campaign as campaign_module
from patron.campaigns import outbox as outbox_module
from patron.campaigns.campaign import CampaignIn, campaign_service
from patron.campaigns.models import Campaign, CampaignRecipient, CampaignStatus, OutboxMessage
from patron.db import unit_of_work
from patron.kit.repository import FEW_ROWS
from patron.stores.service import stores

# 10:00 in Shanghai: outside the default quiet hours.
NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
console = Console()

LOAD_SQL = """
SELECT setseed(0.3);
INSERT INTO customers (store_id, external_id, email, phone, first_name, last_name, birthday,
    locale, timezone, attributes, traits, flagged, flagged_reason, is_stub, created_at,
    updated_at)
SELECT :store, 'c' || g, 'u' || g || '@example.com', NULL, 'F' || g, 'L' || (g % 97), NULL,
    CASE WHEN g % 4 = 0 THEN 'en-US' ELSE 'zh-CN' END, NULL, '{}'::jsonb, '{}'::jsonb,
    false, NULL, false, :now - (g % 1000) * interval '1 day', :now
FROM generate_series(1, :n) g;

INSERT INTO consents (store_id, customer_id, channel, granted, source, recorded_at)
SELECT :store, id, 'email', true, 'bench', :now FROM customers WHERE store_id = :store;

INSERT INTO consent_requests (store_id, customer_id, channel, address, address_hash, nonce,
    source, created_at, expires_at, confirmed_at)
SELECT :store, id, 'email', email,
    encode(sha256(convert_to('email:' || email, 'UTF8')), 'hex'), md5('n' || id), 'bench',
    :now, :now, :now
FROM customers WHERE store_id = :store;

INSERT INTO loyalty_accounts (store_id, customer_id, points_available, points_pending,
    points_held, debt, growth, growth_pending, growth_debt, version, created_at, updated_at)
SELECT :store, id, (id % 5000)::int, 0, 0, 0, 0, 0, 0, 1, :now, :now
FROM customers WHERE store_id = :store AND id % 2 = 0;

INSERT INTO products (store_id, sku, name, category, price_minor, currency, payload_hash,
    created_at, updated_at)
SELECT :store, 'P' || g, 'Product ' || g, NULL, 1000 + g, 'CNY', NULL, :now, :now
FROM generate_series(1, 20) g;
"""

BODY_EN = (
    "<html><body><p>Hello {{ customer.first_name }},</p>"
    '<p>Spring sale at {{ store.name }}: <a href="https://shop.example.com/sale">shop</a>'
    ' or <a href="https://shop.example.com/new">see what is new</a>.</p>'
    "<p>{{ customer.points }} points.</p>"
    "{% if recommendations %}<p>You may like: {{ recommendations[0].name }}</p>{% endif %}"
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)
BODY_ZH = (
    "<html><body><p>{{ customer.name }}，您好！</p>"
    '<p>{{ store.name }}春季特卖：<a href="https://shop.example.com/sale">去看看</a>'
    ' <a href="https://shop.example.com/new">新品</a></p>'
    "{% if recommendations %}<p>为您推荐：{{ recommendations[0].name }}</p>{% endif %}"
    '<p><a href="{{ unsubscribe_url }}">退订</a></p></body></html>'
)


def campaign_in() -> CampaignIn:
    return CampaignIn.model_validate(
        {
            "key": "spring",
            "name": "Spring sale",
            "holdout_percent": 10,
            "variants": [
                {
                    "key": key,
                    "subject": {"en": subject, "zh": "春季特卖"},
                    "body": {"en": BODY_EN, "zh": BODY_ZH},
                }
                for key, subject in (
                    ("A", "Spring sale, {{ customer.first_name }}"),
                    ("B", "20% off for you"),
                )
            ],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="Keep the scratch database.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database("postgresql", Path(tmp))
        try:
            run(db, args.customers)
        finally:
            if not args.keep:
                db.close()


def run(db: Database, n: int) -> None:
    with unit_of_work(db.engine) as session:
        store = stores.create(session, "bench-campaigns", "bench", "CNY", "Asia/Shanghai")
        store_id = store.id
    started = time.perf_counter()
    with db.engine.begin() as conn:
        for statement in LOAD_SQL.split(";\n"):
            if statement.strip():
                conn.execute(text(statement), {"store": store_id, "n": n, "now": NOW})
        _orders(conn, store_id)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    console.print(f"built {n:,} consented customers in {time.perf_counter() - started:.0f} s")

    with unit_of_work(db.engine) as session:
        store = stores.get(session, "bench-campaigns")
        campaign_service.create(session, store, campaign_in(), now=NOW)
        campaign_service.schedule(session, store, "spring", NOW, now=NOW)

    statements: Counter[str] = Counter()

    def count(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        statements[sql.lstrip().split(None, 1)[0].upper()] += 1

    raw = Counter[str]()
    originals = {m: m.insert_rows for m in (campaign_module, outbox_module)}

    def counting(original: Any) -> Any:
        def insert_rows(session: Any, table: Any, rows: Any, **kw: Any) -> Any:
            if len(rows) > FEW_ROWS:  # COPY path: four statements SQLAlchemy does not see
                raw["bulk insert (4 raw statements)"] += 1
            return original(session, table, rows, **kw)

        return insert_rows

    for module, original in originals.items():
        module.insert_rows = counting(original)
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        first, out = _timed_run(db)
        counted = sum(statements.values()) + 4 * sum(raw.values())
        seen = statements + raw
        with unit_of_work(db.engine) as session:
            session.execute(update(Campaign).values(status=CampaignStatus.scheduled))
        again, second = _timed_run(db)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
        for module, original in originals.items():
            module.insert_rows = original

    with unit_of_work(db.engine) as session:
        messages = session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
        recipients = session.scalar(select(func.count()).select_from(CampaignRecipient)) or 0
    decided = out.queued + out.held_out + out.suppressed + out.capped + out.failed
    console.print(
        f"run_due, one-off to {n:,} customers (10% holdout, A/B): {first:.1f} s "
        f"({decided / first:,.0f} recipients/s)"
    )
    console.print(
        f"  queued {out.queued:,}, held out {out.held_out:,}, suppressed {out.suppressed:,}, "
        f"capped {out.capped:,}, failed {out.failed:,}; outbox {messages:,} messages, "
        f"{recipients:,} recipient rows"
    )
    console.print(
        f"  SQL statements: {counted:,} ({counted / max(decided, 1):.3f} per recipient): "
        + ", ".join(f"{k} {v:,}" for k, v in seen.most_common())
    )
    console.print(
        f"run again (all {n:,} decided before): {again:.1f} s, queued {second.queued:,} (must be 0)"
    )
    with unit_of_work(db.engine) as session:
        store = stores.get(session, "bench-campaigns")
        autumn = campaign_in().model_copy(update={"key": "autumn"})
        campaign_service.create(session, store, autumn, now=NOW)
        campaign_service.schedule(session, store, "autumn", NOW, now=NOW)
    took, third = _timed_run(db)
    console.print(
        f"a second campaign to the same customers (a message each in the cap window): "
        f"{took:.1f} s, queued {third.queued:,}, held out {third.held_out:,}"
    )


def _timed_run(db: Database) -> tuple[float, Any]:
    started = time.perf_counter()
    with unit_of_work(db.engine) as session:
        store = stores.get(session, "bench-campaigns")
        out = campaign_service.run_due(session, store, NOW)
    return time.perf_counter() - started, out


def _orders(conn: Any, store_id: int) -> None:
    """A few orders of two or three products each, so co-occurrence recommends."""
    conn.execute(
        text(
            """
            INSERT INTO orders (store_id, external_id, customer_id, status, channel, currency,
                discount_code, subtotal_minor, discount_minor, shipping_minor, tax_minor,
                total_minor, refunded_minor, placed_at, paid_at, fulfilled_at, delivered_at,
                cancelled_at, payload_hash, created_at, updated_at)
            SELECT :store, 'o' || c.id, c.id, 'delivered', NULL, 'CNY', NULL, 3000, 0, 0, 0,
                3000, 0, :now - interval '10 days', NULL, NULL, NULL, NULL, NULL, :now, :now
            FROM customers c WHERE c.store_id = :store AND c.id % 5 = 0
            """
        ),
        {"store": store_id, "now": NOW},
    )
    conn.execute(
        text(
            """
            INSERT INTO order_lines (order_id, line_no, external_id, sku, name, category,
                quantity, unit_price_minor, discount_minor, total_minor, refunded_quantity,
                refunded_minor)
            SELECT o.id, l, NULL, 'P' || (1 + (o.customer_id * l) % 20),
                'Product ' || (1 + (o.customer_id * l) % 20), NULL, 1, 1000, 0, 1000, 0, 0
            FROM orders o, generate_series(1, 3) l WHERE o.store_id = :store
            """
        ),
        {"store": store_id},
    )


if __name__ == "__main__":
    main()
