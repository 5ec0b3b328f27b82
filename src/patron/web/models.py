"""Staff accounts of the merchant dashboard: who may log in to a store, with which role."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, BigId
from patron.kit.clock import utcnow


class Role(enum.StrEnum):
    """What a staff member may do in the dashboard.

    owner: everything, including managing staff; manager: programme, campaigns,
    analytics; support: customers and tickets; analyst: read-only views.
    """

    owner = "owner"
    manager = "manager"
    support = "support"
    analyst = "analyst"


class StaffUser(Base):
    """A person who logs in to a store's dashboard. The e-mail is stored lower-case and
    is unique per store; the password is a self-describing scrypt hash."""

    __tablename__ = "staff_users"
    __table_args__ = (UniqueConstraint("store_id", "email"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[Role] = mapped_column(
        Enum(
            Role,
            name="staff_role",
            native_enum=False,
            length=16,
            validate_strings=True,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
