"""Members' tiers end to end: placed, upgraded when growth counts, reviewed at period ends,
refunds inside the return window never lift a tier, tier multipliers apply to earnings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from patron.auth import Scope
from patron.db import unit_of_work
from patron.loyalty import membership
from patron.loyalty.jobs import run_due
from patron.loyalty.models import LoyaltyMember, LoyaltyNotice, TierChange
from patron.loyalty.program import ProgramConfig, parse
from patron.loyalty.programs import programs
from patron.orders.schemas import OrderIn, RefundIn
from patron.orders.service import orders, refunds
from patron.stores.models import Store
from patron.stores.service import stores

PLACED = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
DELIVERED = PLACED + timedelta(days=2)
PENDING_DAYS = 15


def config(**over: Any) -> ProgramConfig:
    data: dict[str, Any] = {
        "currency": "CNY",
        "pending_days": PENDING_DAYS,
        "tiers": [
            {"code": "member", "name": {"en": "Member", "zh": "普通会员"}, "threshold": 0},
            {
                "code": "silver",
                "name": {"en": "Silver", "zh": "银卡"},
                "threshold": 1000,
                "retain_threshold": 800,
            },
            {
                "code": "gold",
                "name": {"en": "Gold", "zh": "金卡"},
                "threshold": 5000,
                "retain_threshold": 4000,
                "benefits": {"earn_multiplier": 2},
            },
        ],
    }
    data.update(over)
    return parse(data)


@pytest.fixture
def program(engine: Engine, store: Store) -> ProgramConfig:
    cfg = config()
    with unit_of_work(engine) as session:
        programs.apply(session, session.merge(store), cfg)
    return cfg


def deliver(
    engine: Engine,
    store: Store,
    ext: str,
    amount: str,
    delivered: datetime = DELIVERED,
    customer: str = "C-1",
) -> None:
    body = {
        "external_id": ext,
        "customer_external_id": customer,
        "status": "delivered",
        "currency": "CNY",
        "placed_at": (delivered - timedelta(days=2)).isoformat(),
        "paid_at": (delivered - timedelta(days=2)).isoformat(),
        "delivered_at": delivered.isoformat(),
        "lines": [{"sku": "S", "quantity": 1, "unit_price": amount}],
    }
    with unit_of_work(engine) as session:
        results = orders.upsert_many(
            session, session.merge(store), [OrderIn.model_validate(body)], now=delivered
        )
    assert results[0].status == "created", results


def refund(
    engine: Engine, store: Store, ext: str, order_ext: str, amount: str, at: datetime
) -> None:
    body = {
        "external_id": ext,
        "order_external_id": order_ext,
        "refunded_at": at.isoformat(),
        "amount": amount,
    }
    with unit_of_work(engine) as session:
        results = refunds.upsert_many(
            session, session.merge(store), [RefundIn.model_validate(body)], now=at
        )
    assert results[0].status == "created", results


def jobs(engine: Engine, store: Store, now: datetime) -> int:
    with unit_of_work(engine) as session:
        return run_due(session, session.merge(store), now).tiers


def tier_of(engine: Engine, store: Store, ext: str = "C-1") -> str | None:
    with unit_of_work(engine) as session:
        cid = _cid(session, store, ext)
        return membership.member_tier(session, store.id, cid)


def _cid(session: Any, store: Store, ext: str) -> int:
    from patron.loyalty.service import ledger

    return ledger.customer_id(session, store, ext)


def changes(engine: Engine, store: Store, ext: str = "C-1") -> list[tuple[str | None, str, str]]:
    with unit_of_work(engine) as session:
        cid = _cid(session, store, ext)
        rows = session.scalars(
            select(TierChange)
            .where(TierChange.store_id == store.id, TierChange.customer_id == cid)
            .order_by(TierChange.id)
        )
        return [(r.from_tier, r.to_tier, r.change) for r in rows]


def test_growth_counts_after_the_return_window_then_upgrades_at_once(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    deliver(engine, store, "O-1", "1200.00")
    # The 1,200 growth is pending: nothing can change yet, the member holds the first
    # tier (not placed: the job looks at them when the growth counts).
    assert tier_of(engine, store) is None
    assert changes(engine, store) == []
    # The day before the window ends nothing is due; the job changes nothing.
    assert jobs(engine, store, DELIVERED + timedelta(days=PENDING_DAYS - 1)) == 0
    assert tier_of(engine, store) is None
    # Once the window has passed the growth counts: placed at Silver by the job.
    assert jobs(engine, store, DELIVERED + timedelta(days=PENDING_DAYS, minutes=1)) == 1
    assert tier_of(engine, store) == "silver"
    assert changes(engine, store) == [(None, "silver", "enter")]
    # Running the job again changes nothing.
    assert jobs(engine, store, DELIVERED + timedelta(days=PENDING_DAYS, minutes=2)) == 0
    assert len(changes(engine, store)) == 1
    # A later order in the same year upgrades once its growth counts.
    later = DELIVERED + timedelta(days=40)
    deliver(engine, store, "O-2", "4000.00", delivered=later)
    jobs(engine, store, later + timedelta(days=PENDING_DAYS, minutes=1))
    assert changes(engine, store)[-1] == ("silver", "gold", "upgrade")


def test_a_purchase_returned_inside_the_window_never_lifts_the_tier(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    deliver(engine, store, "O-1", "1200.00")
    refund(engine, store, "R-1", "O-1", "1200.00", DELIVERED + timedelta(days=3))
    jobs(engine, store, DELIVERED + timedelta(days=PENDING_DAYS + 1))
    assert tier_of(engine, store) == "member"
    assert changes(engine, store) == [(None, "member", "enter")]


def test_partial_refund_leaves_growth_below_the_threshold(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    deliver(engine, store, "O-1", "1100.00")
    refund(engine, store, "R-1", "O-1", "200.00", DELIVERED + timedelta(days=3))
    jobs(engine, store, DELIVERED + timedelta(days=PENDING_DAYS + 1))
    assert tier_of(engine, store) == "member"
    with unit_of_work(engine) as session:
        s = session.merge(store)
        standing = membership.standing(
            session, s, program, _cid(session, s, "C-1"), DELIVERED + timedelta(days=20)
        )
    assert standing.value == 900
    assert standing.progress.missing == 100
    assert standing.progress.message == "earn 100 more growth to reach 银卡 Silver"
    assert "银卡" in standing.progress.message_zh


def test_downgrade_only_at_the_period_end_below_the_retain_threshold(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    deliver(engine, store, "O-1", "6000.00")
    jobs(engine, store, DELIVERED + timedelta(days=PENDING_DAYS + 1))
    assert tier_of(engine, store) == "gold"
    # Mid-year nothing changes, whatever happens to the value.
    assert jobs(engine, store, datetime(2026, 12, 30, tzinfo=UTC)) == 0
    assert tier_of(engine, store) == "gold"
    # 1 January 2027 (Shanghai): 2026 had 6,000 ≥ retain 4,000: kept.
    jobs(engine, store, datetime(2027, 1, 2, tzinfo=UTC))
    assert tier_of(engine, store) == "gold"
    assert changes(engine, store)[-1] == ("gold", "gold", "keep")
    # 2027 had nothing: on 1 January 2028 the member drops to the tier 0 qualifies for.
    jobs(engine, store, datetime(2028, 1, 2, tzinfo=UTC))
    assert tier_of(engine, store) == "member"
    assert changes(engine, store)[-1] == ("gold", "member", "downgrade")
    with unit_of_work(engine) as session:
        row = session.scalars(select(LoyaltyMember).where(LoyaltyMember.store_id == store.id)).one()
        # The next review is 1 January 2029, Shanghai time.
        assert row.review_at == datetime(2028, 12, 31, 16, 0, tzinfo=UTC)


def test_missed_reviews_are_caught_up_in_order(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    deliver(engine, store, "O-1", "6000.00")
    jobs(engine, store, DELIVERED + timedelta(days=PENDING_DAYS + 1))
    # The worker was down for two years: both reviews are recorded, in order.
    jobs(engine, store, datetime(2028, 6, 1, tzinfo=UTC))
    assert [c[2] for c in changes(engine, store)] == ["enter", "keep", "downgrade"]
    assert tier_of(engine, store) == "member"


def test_the_tier_multiplier_applies_to_later_orders(
    engine: Engine, store: Store, program: ProgramConfig
) -> None:
    from patron.loyalty.service import ledger

    deliver(engine, store, "O-1", "6000.00")
    jobs(engine, store, DELIVERED + timedelta(days=PENDING_DAYS + 1))
    assert tier_of(engine, store) == "gold"
    later = DELIVERED + timedelta(days=30)
    deliver(engine, store, "O-2", "100.00", delivered=later)
    with unit_of_work(engine) as session:
        s = session.merge(store)
        balance = ledger.balance(session, s, _cid(session, s, "C-1"))
    # 6,000 points for O-1 (now available) + 200 pending for O-2 (gold: × 2).
    assert balance.points_available == 6000
    assert balance.points_pending == 200


def test_orders_tiers_count_delivered_orders_net_of_refunds(engine: Engine, store: Store) -> None:
    cfg = config(
        growth={"pending": "immediate"},
        tiers=[
            {"code": "member", "name": "Member", "qualify_on": "orders", "threshold": 0},
            {"code": "regular", "name": "Regular", "qualify_on": "orders", "threshold": 2},
        ],
    )
    with unit_of_work(engine) as session:
        programs.apply(session, session.merge(store), cfg)
    deliver(engine, store, "O-1", "10.00")
    assert tier_of(engine, store) == "member"
    deliver(engine, store, "O-2", "10.00", delivered=DELIVERED + timedelta(hours=1))
    # Immediate: the second delivered order upgrades at once, no job needed.
    assert tier_of(engine, store) == "regular"


def test_tier_api_shows_tier_progress_and_history(
    engine: Engine, store: Store, client: TestClient
) -> None:
    # The API reads the real clock: a rolling window, dates relative to today.
    rolling = {"rolling_days": 365}
    cfg = config()
    tiers = [t.model_dump(mode="json") for t in cfg.tiers]
    for tier in tiers:
        tier["window"] = rolling
    with unit_of_work(engine) as session:
        programs.apply(session, session.merge(store), config(tiers=tiers))
    delivered = datetime.now(UTC) - timedelta(days=PENDING_DAYS + 5)
    deliver(engine, store, "O-1", "1200.00", delivered=delivered)
    jobs(engine, store, datetime.now(UTC))
    with unit_of_work(engine) as session:
        _, key = stores.create_key(session, session.merge(store), "t", [Scope.read])
    headers = {"Authorization": f"Bearer {key}"}
    res = client.get("/v1/customers/C-1/tier", headers=headers)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["tier"]["code"] == "silver"
    assert body["tier"]["name"] == {"en": "Silver", "zh": "银卡"}
    assert body["window"] == "rolling 365 days"
    assert body["next_tier"]["code"] == "gold"
    assert float(body["value"]) == 1200
    assert float(body["missing"]) == 3800
    assert body["message"] == "earn 3,800 more growth to reach 金卡 Gold"
    history = client.get("/v1/customers/C-1/tier/history", headers=headers)
    assert [(h["to_tier"], h["change"]) for h in history.json()["items"]] == [("silver", "enter")]
    missing = client.get("/v1/customers/NOPE/tier", headers=headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


def test_notices_of_expiring_points_and_tier_changes_are_written_once(
    engine: Engine, store: Store, client: TestClient
) -> None:
    cfg = config(
        expiry={"policy": "rolling_months", "months": 2},
        expiry_reminder_days=[30, 7],
    )
    with unit_of_work(engine) as session:
        programs.apply(session, session.merge(store), cfg)
    deliver(engine, store, "O-1", "1200.00")
    available = DELIVERED + timedelta(days=PENDING_DAYS, minutes=1)
    jobs(engine, store, available)  # placed at Silver: entered, not upgraded
    expires = DELIVERED + timedelta(days=61)  # two months after delivery (store time)
    # 40 days before expiry: nothing; 30 days before: the first reminder; again: nothing.
    for days, expected in ((40, []), (29, [30]), (28, [30]), (6, [30, 7]), (5, [30, 7])):
        jobs(engine, store, expires - timedelta(days=days))
        with unit_of_work(engine) as session:
            rows = session.scalars(
                select(LoyaltyNotice)
                .where(LoyaltyNotice.store_id == store.id, LoyaltyNotice.kind == "points_expiring")
                .order_by(LoyaltyNotice.id)
            ).all()
            assert [r.data["days_before"] for r in rows] == expected
            assert all(r.data["points"] == 1200 for r in rows)
    # A later order lifts the member to Gold: a tier_changed notice, listed by the API.
    later = DELIVERED + timedelta(days=20)
    deliver(engine, store, "O-2", "4000.00", delivered=later)
    jobs(engine, store, later + timedelta(days=PENDING_DAYS, minutes=1))
    with unit_of_work(engine) as session:
        _, key = stores.create_key(session, session.merge(store), "t", [Scope.read])
    res = client.get(
        "/v1/loyalty/notices",
        params={"kind": "tier_changed"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert res.status_code == 200, res.text
    items = res.json()["items"]
    assert [(n["data"]["from_tier"], n["data"]["to_tier"]) for n in items] == [("silver", "gold")]
