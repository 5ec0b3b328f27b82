"""Migration 0015 (staff_users) matches the model and goes up and down on both
databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from patron.db import Base, make_engine
from patron.migrate import alembic_config
from tests.conftest import _create_pg_database


def test_model_and_migration_agree(engine: Engine) -> None:
    import patron.models  # noqa: F401  (every table in the metadata)

    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    mine = [d for d in diffs if "staff_users" in repr(d)]
    assert mine == []
    columns = {c["name"] for c in inspect(engine).get_columns("staff_users")}
    assert columns == {
        "id",
        "store_id",
        "email",
        "name",
        "role",
        "password_hash",
        "created_at",
        "last_login_at",
        "disabled_at",
    }


@pytest.fixture
def scratch(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An empty database of the same backend."""
    drop: Callable[[], None] = lambda: None  # noqa: E731
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('mig') / 'm.db'}"
    else:
        url, drop = _create_pg_database()
    eng = make_engine(url)
    yield eng
    eng.dispose()
    drop()


def _at(engine: Engine, revision: str, down: bool = False) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def test_upgrade_and_downgrade(scratch: Engine) -> None:
    _at(scratch, "0015")
    assert "staff_users" in inspect(scratch).get_table_names()
    uniques = inspect(scratch).get_unique_constraints("staff_users")
    assert any(set(u["column_names"]) == {"store_id", "email"} for u in uniques)
    _at(scratch, "0014", down=True)
    assert "staff_users" not in inspect(scratch).get_table_names()
