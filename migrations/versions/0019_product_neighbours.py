"""Product neighbours for recommendations: nearest products, best sellers, build state.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-26 05:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "product_neighbours",
        sa.Column("store_id", ID, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("neighbour_id", ID, nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
            name=op.f("fk_product_neighbours_store_id_stores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "store_id", "product_id", "neighbour_id", name=op.f("pk_product_neighbours")
        ),
    )
    op.create_table(
        "product_buyers",
        sa.Column("store_id", ID, nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("buyers", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
            name=op.f("fk_product_buyers_store_id_stores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("store_id", "rank", name=op.f("pk_product_buyers")),
    )
    op.create_table(
        "recommendation_states",
        sa.Column("store_id", ID, nullable=False),
        sa.Column("computed_at", patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("checked_at", patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("neighbours", sa.Integer(), nullable=False),
        sa.Column("max_order_id", sa.BigInteger(), nullable=False),
        sa.Column("orders_updated_at", patron.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("order_lines", sa.BigInteger(), nullable=False),
        sa.Column("refunded_units", sa.BigInteger(), nullable=False),
        sa.Column("products", sa.Integer(), nullable=False),
        sa.Column("max_product_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
            name=op.f("fk_recommendation_states_store_id_stores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("store_id", name=op.f("pk_recommendation_states")),
    )


def downgrade() -> None:
    op.drop_table("recommendation_states")
    op.drop_table("product_buyers")
    op.drop_table("product_neighbours")
