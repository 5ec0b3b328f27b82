"""Delivery: webhook channel endpoints, opens/clicks/bounces, per-store delivery settings.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-26 04:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import patron.db

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
CHANNEL = sa.Enum(
    "email", "sms", "push", "wechat", name="consent_channel", native_enum=False, length=32
)


def upgrade() -> None:
    with op.batch_alter_table("campaign_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("links", JSON_DOC, nullable=True))
        batch_op.create_index("ix_campaign_messages_message_id", ["message_id"], unique=False)

    op.create_table(
        "campaign_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("store_id", BIG_ID, nullable=False),
        sa.Column("message_id", BIG_ID, nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "open",
                "click",
                "bounce",
                "complaint",
                name="campaign_event_kind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("permanent", sa.Boolean(), nullable=True),
        sa.Column("machine", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("ua_hash", sa.String(length=16), nullable=True),
        sa.Column("occurred_at", patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["campaign_messages.id"],
            name=op.f("fk_campaign_events_message_id_campaign_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
            name=op.f("fk_campaign_events_store_id_stores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_events")),
    )
    with op.batch_alter_table("campaign_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaign_events_message_kind", ["message_id", "kind"], unique=False
        )

    op.create_table(
        "channel_endpoints",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("store_id", BIG_ID, nullable=False),
        sa.Column("channel", CHANNEL, nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
            name=op.f("fk_channel_endpoints_store_id_stores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_endpoints")),
        sa.UniqueConstraint(
            "store_id", "channel", name=op.f("uq_channel_endpoints_store_id_channel")
        ),
    )

    op.create_table(
        "delivery_settings",
        sa.Column("store_id", BIG_ID, nullable=False),
        sa.Column("survey_invitations_by_mail", sa.Boolean(), nullable=False),
        sa.Column("updated_at", patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
            name=op.f("fk_delivery_settings_store_id_stores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("store_id", name=op.f("pk_delivery_settings")),
    )


def downgrade() -> None:
    op.drop_table("delivery_settings")
    op.drop_table("channel_endpoints")
    with op.batch_alter_table("campaign_events", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_events_message_kind")
    op.drop_table("campaign_events")
    with op.batch_alter_table("campaign_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_messages_message_id")
        batch_op.drop_column("links")
