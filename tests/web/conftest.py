"""Dashboard test helpers: staff accounts and a TestClient logged in as one of them.

``staff_client("manager")`` returns a fresh TestClient (its own cookie jar, the shared
app) logged in to the test's store through the real /login form; ``client.csrf`` is the
token to send with POSTs (form field ``csrf`` or header ``X-CSRF-Token``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from patron.db import unit_of_work
from patron.stores.models import Store
from patron.web.models import Role
from patron.web.staff import staff_accounts

STAFF_PASSWORD = "correct-horse-battery"


def make_staff(
    engine: Engine, store: Store, role: Role | str = Role.owner, *, email: str | None = None
) -> str:
    """Create a staff account in ``store``; returns its e-mail (password STAFF_PASSWORD)."""
    email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    with unit_of_work(engine) as session:
        staff_accounts.create(
            session, session.merge(store), email, f"Test {role}", role, STAFF_PASSWORD
        )
    return email


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def login_token(c: TestClient) -> dict[str, str]:
    """Open the login form (its cookie lands in ``c``); the form's token field."""
    match = re.search(r'name="login_token" value="([^"]+)"', c.get("/login").text)
    assert match, "the login form carries no token"
    return {"login_token": match.group(1)}


def login_client(app: Any, store: Store, email: str, password: str = STAFF_PASSWORD) -> TestClient:
    c = TestClient(app, raise_server_exceptions=False)
    res = c.post(
        "/login",
        data={"store": store.slug, "email": email, "password": password, **login_token(c)},
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text
    page = c.get("/dashboard")
    assert page.status_code == 200, page.text
    c.csrf = csrf_of(page.text)  # type: ignore[attr-defined]
    return c


@pytest.fixture
def staff_client(client: TestClient, engine: Engine, store: Store) -> Callable[..., TestClient]:
    """``staff_client(role="owner")``: a TestClient logged in to ``store`` with ``role``."""

    def make(role: Role | str = Role.owner) -> TestClient:
        return login_client(client.app, store, make_staff(engine, store, role))

    return make
