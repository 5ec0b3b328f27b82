"""Staff accounts: create, list, disable, and check a login (loads and flushes; the
caller commits)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.errors import Conflict, Invalid, NotFound
from patron.kit.clock import utcnow
from patron.stores.models import Store
from patron.web import security
from patron.web.models import Role, StaffUser

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def normal_email(email: str) -> str:
    return email.strip().lower()


class StaffService:
    def by_email(self, session: Session, store: Store, email: str) -> StaffUser | None:
        return session.scalars(
            select(StaffUser).where(
                StaffUser.store_id == store.id, StaffUser.email == normal_email(email)
            )
        ).first()

    def create(
        self,
        session: Session,
        store: Store,
        email: str,
        name: str,
        role: Role | str,
        password: str,
    ) -> StaffUser:
        email = normal_email(email)
        errors = []
        if not _EMAIL.match(email) or len(email) > 320:
            errors.append({"field": "email", "message": "an e-mail address like ann@example.com"})
        name = name.strip()
        if not name or len(name) > 128:
            errors.append({"field": "name", "message": "1 to 128 characters"})
        try:
            role = Role(role)
        except ValueError:
            errors.append(
                {"field": "role", "message": "one of " + ", ".join(r.value for r in Role)}
            )
        problem = security.password_problem(password)
        if problem:
            errors.append({"field": "password", "message": problem})
        if errors:
            raise Invalid("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)
        if self.by_email(session, store, email) is not None:
            raise Conflict(f"a staff account {email!r} already exists in this store")
        staff = StaffUser(
            store_id=store.id,
            email=email,
            name=name,
            role=Role(role),
            password_hash=security.hash_password(password),
        )
        session.add(staff)
        session.flush()
        return staff

    def list(self, session: Session, store: Store) -> Sequence[StaffUser]:
        return session.scalars(
            select(StaffUser).where(StaffUser.store_id == store.id).order_by(StaffUser.id)
        ).all()

    def get(self, session: Session, store: Store, staff_id: int) -> StaffUser:
        staff = session.get(StaffUser, staff_id)
        if staff is None or staff.store_id != store.id:
            raise NotFound(f"no staff account {staff_id}")
        return staff

    def disable(self, session: Session, store: Store, email: str) -> StaffUser:
        staff = self.by_email(session, store, email)
        if staff is None:
            raise NotFound(f"no staff account {normal_email(email)!r} in this store")
        if staff.disabled_at is None:
            staff.disabled_at = utcnow()
            session.flush()
        return staff

    def set_password(self, session: Session, staff: StaffUser, password: str) -> None:
        problem = security.password_problem(password)
        if problem:
            raise Invalid(
                f"password: {problem}", errors=[{"field": "password", "message": problem}]
            )
        staff.password_hash = security.hash_password(password)
        session.flush()

    def check_login(
        self, session: Session, store: Store, email: str, password: str
    ) -> StaffUser | None:
        """The active account whose password matches, or None (same cost either way)."""
        staff = self.by_email(session, store, email)
        ok = security.verify_password(
            password, staff.password_hash if staff else security.DUMMY_HASH
        )
        if staff is None or not ok or staff.disabled_at is not None:
            return None
        staff.last_login_at = utcnow()
        session.flush()
        return staff


staff_accounts = StaffService()


# The demo store's accounts (`patron demo`). The password is fixed and printed: fine for
# a synthetic shop on 127.0.0.1, never to be used for a real store.
DEMO_PASSWORD = "patron-demo-password"
DEMO_ACCOUNTS = (
    ("owner@demo.patron.test", "Demo Owner 店主", Role.owner),
    ("support@demo.patron.test", "Demo Support 客服", Role.support),
)


def ensure_demo_staff(session: Session, store: Store) -> list[tuple[str, Role]]:
    """Create the demo accounts that do not exist yet; (e-mail, role) of each."""
    out = []
    for email, name, role in DEMO_ACCOUNTS:
        if staff_accounts.by_email(session, store, email) is None:
            staff_accounts.create(session, store, email, name, role, DEMO_PASSWORD)
        out.append((email, role))
    return out
