"""Ledger jobs: pending points mature after the window, lots expire, holds time out;
running them twice changes nothing. ``patron worker --once`` runs them for every store."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from patron.app import create_app
from patron.cli import app
from patron.db import unit_of_work
from patron.loyalty.jobs import JobRun, run_due
from patron.loyalty.service import Balance, ledger
from patron.stores.models import Store
from tests.loyalty.conftest import T0

DAY = timedelta(days=1)


def run(engine: Engine, store: Store, days: float) -> JobRun:
    with unit_of_work(engine) as session:
        return run_due(session, session.merge(store), T0 + timedelta(days=days))


def balance(engine: Engine, store: Store, member: int) -> Balance:
    with unit_of_work(engine) as session:
        assert ledger.check_invariants(session, store, member) == []
        return ledger.balance(session, store, member)


def test_jobs_mature_expire_release_and_are_idempotent(
    engine: Engine, store: Store, member: int
) -> None:
    with unit_of_work(engine) as session:
        s = session.merge(store)
        ledger.earn(
            session, s, member, key="o-1", points=100, growth=100, reason="order",
            available_at=T0 + 15 * DAY, expires_at=T0 + 100 * DAY, now=T0,
        )  # fmt: skip
        ledger.adjust(session, s, member, key="a-1", points=50, reason="gift", now=T0)
    assert run(engine, store, 1) == JobRun()
    assert balance(engine, store, member).points_pending == 100
    first = run(engine, store, 16)
    assert first.matured > 0 and first.expired == 0
    b = balance(engine, store, member)
    assert (b.points_available, b.points_pending, b.growth, b.growth_pending) == (150, 0, 100, 0)
    assert run(engine, store, 16) == JobRun()  # twice: nothing more
    with unit_of_work(engine) as session:
        ledger.hold(
            session, session.merge(store), member, key="h-1", points=30, reason="checkout",
            now=T0 + 20 * DAY,
        )  # fmt: skip
    released = run(engine, store, 21)
    assert released.released > 0 and released.matured == released.expired == 0
    assert balance(engine, store, member).points_held == 0
    expired = run(engine, store, 101)
    assert expired.expired > 0
    assert balance(engine, store, member).points_available == 50
    assert run(engine, store, 101) == JobRun()


def test_worker_once(db_cli: CliRunner, engine: Engine, store: Store, member: int) -> None:
    with unit_of_work(engine) as session:
        ledger.earn(
            session, session.merge(store), member, key="o-1", points=10, reason="order",
            available_at=T0 + DAY, now=T0,
        )  # fmt: skip
    result = db_cli.invoke(app, ["worker", "--once", "--store", store.slug])
    assert result.exit_code == 0, result.output
    assert "worker:" in result.output and "matured" in result.output
    assert balance(engine, store, member).points_available == 10
    again = db_cli.invoke(app, ["worker", "--once", "--store", store.slug, "--backfill"])
    assert again.exit_code == 0, again.output
    assert "worker: 0 matured" in again.output
    missing = db_cli.invoke(app, ["worker", "--once", "--store", "no-such-store"])
    assert missing.exit_code == 1


def test_the_server_runs_the_jobs_on_a_schedule(engine: Engine, store: Store, member: int) -> None:
    """`patron serve` needs no separate worker: the app's scheduler matures due points."""
    now = datetime.now(UTC)
    with unit_of_work(engine) as session:
        ledger.earn(
            session, session.merge(store), member, key="o-1", points=10, reason="order",
            available_at=now - DAY, now=now - 2 * DAY,
        )  # fmt: skip
    app_ = create_app(engine, jobs_interval=0.05)
    with TestClient(app_):
        scheduler = app_.state.scheduler
        # Generous: a pass runs every store of the test database (hundreds, on a busy
        # machine), and this store's turn may come late in it.
        deadline = time.monotonic() + 60
        while balance(engine, store, member).points_available != 10:
            assert time.monotonic() < deadline, "the scheduler did not run the jobs"
            time.sleep(0.05)
        assert scheduler.runs >= 1
    # Stopped with the app: no run after shutdown.
    runs = scheduler.runs
    time.sleep(0.2)
    assert scheduler.runs == runs
    assert create_app(engine).state.__dict__.get("scheduler") is None


def test_a_late_job_settles_debt_before_the_lot_that_paid_it_expired(
    engine: Engine, store: Store, member: int
) -> None:
    """Catching up months late replays maturing and expiry in time order: a debt is paid
    from a lot when it matured, and only the rest of that lot expires later."""
    with unit_of_work(engine) as session:
        s = session.merge(store)
        ledger.earn(session, s, member, key="o-1", points=10, reason="order", ref="O-1", now=T0)
        ledger.clawback(
            session, s, member, key="r-1", points=18, ref=None, reason="refund",
            limit_to_ref=False, now=T0,
        )  # fmt: skip
        ledger.earn(
            session, s, member, key="o-2", points=41, reason="order", ref="O-2",
            available_at=T0 + 5 * DAY, expires_at=T0 + 10 * DAY, now=T0,
        )  # fmt: skip
    before = balance(engine, store, member)
    assert (before.points_available, before.points_pending, before.debt) == (0, 41, 8)
    run(engine, store, 100)  # the worker was down for three months
    after = balance(engine, store, member)
    assert (after.points_available, after.points_pending, after.debt) == (0, 0, 0)
    with unit_of_work(engine) as session:
        kinds = [e.kind for e in ledger.history(session, session.merge(store), member, 10)]
    # Newest first: 33 expired after 8 paid the debt when the lot matured.
    assert kinds[:3] == ["expire", "settle", "mature"]
