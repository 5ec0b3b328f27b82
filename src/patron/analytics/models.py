"""Analysis runs (the stored report the API and dashboard read) and the per-customer scores
written back for campaigns to target."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Double, ForeignKey, Index, Numeric, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.customers.models import _enum
from patron.db import Base, BigId


class RunStatus(enum.StrEnum):
    # A run is stored in the transaction that writes its scores, so a stored run has
    # succeeded; a failed run leaves no row. The other states are for runs queued or
    # running in the background, which write their row first.
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class AnalyticsRun(Base):
    """One analysis of a store's data: its options and the whole report (JSON)."""

    __tablename__ = "analytics_runs"
    __table_args__ = (Index("ix_analytics_runs_store_latest", "store_id", "status", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(255))  # "db" or the file analysed
    engine: Mapped[str] = mapped_column(String(16))  # duckdb | spark
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus, "analytics_run_status"))
    options: Mapped[dict[str, Any]]
    report: Mapped[dict[str, Any] | None]


class CustomerScore(Base):
    """A customer's scores from the store's latest analysis run (one row per customer).

    Replaced wholesale by each run that writes scores back. ``store_id`` is implied by
    the customer (and cascades with it); it is kept for store-wide deletes and for
    campaign queries such as "the store's 重要挽留客户 with P(alive) > 0.5".
    """

    __tablename__ = "customer_scores"
    __table_args__ = (Index("ix_customer_scores_store_segment", "store_id", "segment"),)

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    store_id: Mapped[int] = mapped_column(BigId)
    # The run that wrote the row: always the store's latest scoring run. No foreign key:
    # it would cost an index on a million-row table (for cascades from a run that is
    # never deleted on its own) and a check per written row.
    run_id: Mapped[int] = mapped_column(BigId)
    segment: Mapped[str | None] = mapped_column(String(32))  # RFM segment key
    r: Mapped[int | None] = mapped_column(SmallInteger)  # RFM scores 1-5
    f: Mapped[int | None] = mapped_column(SmallInteger)
    m: Mapped[int | None] = mapped_column(SmallInteger)
    clv: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))  # store currency, major units
    p_alive: Mapped[float | None] = mapped_column(Double)
    expected_purchases: Mapped[float | None] = mapped_column(Double)  # over the run's horizon
    loyalty_type: Mapped[str | None] = mapped_column(String(32))
    behaviour_type: Mapped[str | None] = mapped_column(String(32))
    price_sensitivity: Mapped[float | None] = mapped_column(Double)
    computed_at: Mapped[datetime]
