"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL.

Each test gets its own store, so tests are isolated by Patron's own tenancy and can
commit like production code does. PostgreSQL comes from PATRON_TEST_POSTGRES_URL
(default: the local server, trust auth); a fresh database is created per test session
(and per xdist worker) and dropped afterwards. PATRON_TEST_BACKENDS=sqlite limits a
run to SQLite for quick local iterations; CI always runs both.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron.app import create_app
from patron.auth import Scope
from patron.config import get_settings
from patron.db import default_engine, make_engine, unit_of_work
from patron.migrate import upgrade
from patron.stores.models import Store
from patron.stores.service import stores

PG_URL = os.environ.get(
    "PATRON_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = [
    b.strip()
    for b in os.environ.get("PATRON_TEST_BACKENDS", "sqlite,postgresql").split(",")
    if b.strip()
]


def _create_pg_database() -> tuple[str, Callable[[], None]]:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"patron_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session", params=BACKENDS)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A migrated database of each backend."""
    drop: Callable[[], None] = lambda: None  # noqa: E731
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'patron.db'}"
    else:
        url, drop = _create_pg_database()
    eng = make_engine(url)
    upgrade(eng)
    yield eng
    eng.dispose()
    drop()


@pytest.fixture
def backend(engine: Engine) -> str:
    return engine.dialect.name


@pytest.fixture
def db(engine: Engine) -> Callable[[], Iterator[Session]]:
    """`with db() as session:` — one committed unit of work on the test database."""
    return lambda: unit_of_work(engine)  # type: ignore[return-value]


def new_store(engine: Engine, **kwargs: str) -> Store:
    with unit_of_work(engine) as session:
        return stores.create(session, f"s-{uuid.uuid4().hex[:12]}", "Test store", **kwargs)


@pytest.fixture
def store(engine: Engine) -> Store:
    return new_store(engine)


@pytest.fixture(scope="session")
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine), raise_server_exceptions=False) as c:
        yield c


def key_headers(engine: Engine, store: Store, *scopes: Scope) -> dict[str, str]:
    with unit_of_work(engine) as session:
        _, full = stores.create_key(session, session.merge(store), "test", list(scopes))
    return {"Authorization": f"Bearer {full}"}


@pytest.fixture
def admin(engine: Engine, store: Store) -> dict[str, str]:
    """Headers with an admin key of `store`."""
    return key_headers(engine, store, Scope.admin)


@pytest.fixture
def fixtures_dir() -> Path:
    return Path(__file__).parent / "fixtures"


@pytest.fixture
def db_cli(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A CLI runner whose commands use the test database (settings and engine reset)."""
    monkeypatch.setenv("PATRON_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("COLUMNS", "240")
    get_settings.cache_clear()
    default_engine.cache_clear()
    yield CliRunner()
    if default_engine.cache_info().currsize:
        default_engine().dispose()
    get_settings.cache_clear()
    default_engine.cache_clear()
