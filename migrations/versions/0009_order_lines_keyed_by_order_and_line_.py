"""order lines keyed by order and line number

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 19:26:56.699631
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A line is keyed by its order and line number: the surrogate id and its index go.
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_constraint("uq_order_lines_order_id_line_no", type_="unique")
        batch_op.drop_constraint("pk_order_lines", type_="primary")
        batch_op.drop_column("id")
        batch_op.create_primary_key("pk_order_lines", ["order_id", "line_no"])


def downgrade() -> None:
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_constraint("pk_order_lines", type_="primary")
        batch_op.add_column(sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False))
        batch_op.create_primary_key("pk_order_lines", ["id"])
        batch_op.create_unique_constraint(
            "uq_order_lines_order_id_line_no", ["order_id", "line_no"]
        )
