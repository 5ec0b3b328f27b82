"""Analytics fixtures: every frame test runs on DuckDB and on PySpark (local mode)."""

from __future__ import annotations

import os

import pytest

from patron.analytics.frame import ENGINES, Engine

ANALYTICS_ENGINES = [
    e.strip() for e in os.environ.get("PATRON_TEST_ENGINES", ",".join(ENGINES)).split(",")
]


@pytest.fixture(scope="session", params=ANALYTICS_ENGINES)
def analytics_engine(request: pytest.FixtureRequest) -> Engine:
    """Each Ibis engine; PATRON_TEST_ENGINES=duckdb skips Spark for quick local runs."""
    engine: Engine = request.param
    return engine
