"""Ledger fixtures: a member (customer) of the test store, and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from patron.customers.models import Customer
from patron.db import unit_of_work
from patron.stores.models import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def new_member(engine: Engine, store: Store, external_id: str = "C-1") -> int:
    with unit_of_work(engine) as session:
        customer = Customer(store_id=store.id, external_id=external_id)
        session.add(customer)
        session.flush()
        return customer.id


@pytest.fixture
def member(engine: Engine, store: Store) -> int:
    return new_member(engine, store)
