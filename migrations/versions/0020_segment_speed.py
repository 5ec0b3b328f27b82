"""Segment speed: per-customer order facts, kept current by triggers on orders.

``customer_order_facts`` holds, per customer with orders, what segments read of them
(orders not cancelled, the latest ``placed_at``, ``total - refunded`` summed over those in
the store's currency). Triggers on ``orders`` recompute the rows of the customers a
statement touched (PostgreSQL: once per statement from its transition tables, so a COPY
or a 5,000-row insert costs one grouped merge — inserts only add to the rows, updates and
deletes recompute the customers they touched; SQLite: per row). Existing orders are
summed once here. Plus a partial index of the customers a segment may contain.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-26 05:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The facts of the customers whose ids are in ``ids`` (PostgreSQL) — customers still
# present, their own store's orders only.
_FACTS_OF = """
    SELECT c.id AS customer_id,
           count(o.id) AS orders_count,
           coalesce(sum(CASE WHEN o.currency = s.currency
                        THEN o.total_minor - o.refunded_minor ELSE 0 END), 0) AS spent_minor,
           max(o.placed_at) AS last_placed_at
    FROM customers c
    JOIN stores s ON s.id = c.store_id
    LEFT JOIN orders o ON o.store_id = c.store_id AND o.customer_id = c.id
        AND o.status <> 'cancelled'
    WHERE {where}
    GROUP BY c.id
"""

PG_FUNCTIONS = (
    """
CREATE OR REPLACE FUNCTION patron_refresh_order_facts(ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Lock the customers' rows first (creating missing ones), in id order; the sums are
    -- read by the next statement, whose snapshot then includes every order committed by
    -- a transaction that held these locks before us (READ COMMITTED).
    INSERT INTO customer_order_facts (customer_id, orders_count, spent_minor, last_placed_at)
    SELECT c.id, 0, 0, NULL FROM customers c WHERE c.id = ANY (ids) ORDER BY c.id
    ON CONFLICT (customer_id) DO NOTHING;
    PERFORM 1 FROM customer_order_facts f WHERE f.customer_id = ANY (ids)
    ORDER BY f.customer_id FOR UPDATE;
    UPDATE customer_order_facts f
    SET orders_count = n.orders_count, spent_minor = n.spent_minor,
        last_placed_at = n.last_placed_at
    FROM ("""
    + _FACTS_OF.format(where="c.id = ANY (ids)")
    + """) n
    WHERE f.customer_id = n.customer_id
      AND (f.orders_count, f.spent_minor, f.last_placed_at)
          IS DISTINCT FROM (n.orders_count, n.spent_minor, n.last_placed_at);
END $$
""",
    """
CREATE OR REPLACE FUNCTION patron_order_facts_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- New orders only add: count, sum and latest are merged into the rows (in
        -- customer order, so concurrent writers lock them in one order) without reading
        -- the customers' other orders.
        INSERT INTO customer_order_facts AS f
            (customer_id, orders_count, spent_minor, last_placed_at)
        SELECT n.customer_id,
               count(*) FILTER (WHERE n.status <> 'cancelled'),
               coalesce(sum(n.total_minor - n.refunded_minor)
                   FILTER (WHERE n.status <> 'cancelled' AND n.currency = s.currency), 0),
               max(n.placed_at) FILTER (WHERE n.status <> 'cancelled')
        FROM new_orders n
        JOIN customers c ON c.id = n.customer_id AND c.store_id = n.store_id
        JOIN stores s ON s.id = c.store_id
        GROUP BY n.customer_id
        ORDER BY n.customer_id
        ON CONFLICT (customer_id) DO UPDATE SET
            orders_count = f.orders_count + excluded.orders_count,
            spent_minor = f.spent_minor + excluded.spent_minor,
            last_placed_at = greatest(f.last_placed_at, excluded.last_placed_at);
        RETURN NULL;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT customer_id) INTO ids FROM old_orders;
    ELSE
        SELECT array_agg(DISTINCT x) INTO ids FROM (
            SELECT unnest(ARRAY[o.customer_id, n.customer_id]) AS x
            FROM old_orders o JOIN new_orders n ON n.id = o.id
            WHERE (o.customer_id, o.store_id, o.status = 'cancelled', o.currency,
                   o.total_minor, o.refunded_minor, o.placed_at)
                  IS DISTINCT FROM (n.customer_id, n.store_id, n.status = 'cancelled',
                   n.currency, n.total_minor, n.refunded_minor, n.placed_at)
        ) changed;
    END IF;
    IF ids IS NOT NULL THEN
        PERFORM patron_refresh_order_facts(ids);
    END IF;
    RETURN NULL;
END $$
""",
    """
CREATE TRIGGER orders_facts_insert AFTER INSERT ON orders
REFERENCING NEW TABLE AS new_orders
FOR EACH STATEMENT EXECUTE FUNCTION patron_order_facts_trigger()
""",
    """
CREATE TRIGGER orders_facts_update AFTER UPDATE ON orders
REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
FOR EACH STATEMENT EXECUTE FUNCTION patron_order_facts_trigger()
""",
    """
CREATE TRIGGER orders_facts_delete AFTER DELETE ON orders
REFERENCING OLD TABLE AS old_orders
FOR EACH STATEMENT EXECUTE FUNCTION patron_order_facts_trigger()
""",
)

_SQLITE_REFRESH = (
    """
    INSERT OR REPLACE INTO customer_order_facts
        (customer_id, orders_count, spent_minor, last_placed_at)
"""
    + _FACTS_OF.format(where="c.id = {row}.customer_id")
    + ";"
)
_SQLITE_CHANGED = (
    "OLD.customer_id IS NOT NEW.customer_id OR OLD.store_id IS NOT NEW.store_id"
    " OR (OLD.status = 'cancelled') IS NOT (NEW.status = 'cancelled')"
    " OR OLD.currency IS NOT NEW.currency"
    " OR OLD.total_minor IS NOT NEW.total_minor"
    " OR OLD.refunded_minor IS NOT NEW.refunded_minor OR OLD.placed_at IS NOT NEW.placed_at"
)
SQLITE_TRIGGERS = (
    "CREATE TRIGGER orders_facts_insert AFTER INSERT ON orders BEGIN"
    + _SQLITE_REFRESH.format(row="NEW")
    + " END",
    f"CREATE TRIGGER orders_facts_update AFTER UPDATE ON orders WHEN {_SQLITE_CHANGED} BEGIN"
    + _SQLITE_REFRESH.format(row="OLD")
    + _SQLITE_REFRESH.format(row="NEW")
    + " END",
    "CREATE TRIGGER orders_facts_delete AFTER DELETE ON orders BEGIN"
    + _SQLITE_REFRESH.format(row="OLD")
    + " END",
)


def upgrade() -> None:
    op.create_table(
        "customer_order_facts",
        sa.Column(
            "customer_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("orders_count", sa.Integer(), nullable=False),
        sa.Column("spent_minor", sa.BigInteger(), nullable=False),
        sa.Column("last_placed_at", patron.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_order_facts_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_order_facts")),
    )
    eligible = sa.text("is_stub IS false AND external_id NOT LIKE 'erased-%'")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_customers_segment_members",
            ["store_id", "id"],
            unique=False,
            postgresql_where=eligible,
            sqlite_where=eligible,
        )
    bind = op.get_bind()
    statements = PG_FUNCTIONS if bind.dialect.name == "postgresql" else SQLITE_TRIGGERS
    for statement in statements:
        op.execute(statement)
    op.execute(
        "INSERT INTO customer_order_facts (customer_id, orders_count, spent_minor, "
        "last_placed_at) "
        + _FACTS_OF.format(where="c.id IN (SELECT DISTINCT customer_id FROM orders)")
    )


def downgrade() -> None:
    for name in ("orders_facts_insert", "orders_facts_update", "orders_facts_delete"):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON orders")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS patron_order_facts_trigger()")
        op.execute("DROP FUNCTION IF EXISTS patron_refresh_order_facts(bigint[])")
    op.drop_table("customer_order_facts")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_segment_members")
