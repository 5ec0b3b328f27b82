"""Members' standing: the tier each member holds, its history, and progress to the next.

``tiers.py`` decides (pure); this module feeds it each member's history and records what
it decided. A customer without a ``loyalty_members`` row holds the programme's first
tier; a row whose ``tier`` is empty was created but not placed yet.

What counts, net of refunds and cancellations (``tiers.History``):

- **growth** tiers: the member's growth entries in the ledger, grouped by the business
  event they belong to (``ref``, e.g. an order), counted from when the growth became
  *available* — after the return window unless ``growth.pending: immediate`` — so a
  purchase returned inside the window never lifts a tier;
- **spend** and **orders** tiers: delivered orders, net of refunds, counted from the
  same moment (delivery + ``pending_days``, or delivery when growth is immediate).

When the tier is looked at: ``refresh`` after the member's growth or orders changed (the
orders bridge calls it after earning and clawing back), and the tier job (``review_due``)
for members whose ``check_at`` has come — a review at a period end (the only time a tier
goes down), or pending growth that just started to count (an upgrade "at once").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, case, cast, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from patron.kit.clock import as_utc, utcnow
from patron.kit.repository import chunks, insert_ignoring_conflicts, table_of, update_by_id
from patron.loyalty.models import (
    Currency,
    EntryKind,
    LoyaltyAccount,
    LoyaltyEntry,
    LoyaltyMember,
    LoyaltyNotice,
    NoticeKind,
    TierChange,
)
from patron.loyalty.program import ProgramConfig, TierDef
from patron.loyalty.tiers import (
    Activity,
    Progress,
    TierDecision,
    evaluate_tier,
    progress,
    qualifying_value,
    threshold_value,
)
from patron.orders.models import Order, OrderStatus
from patron.stores.models import Store

MEMBERS = table_of(LoyaltyMember)
CHANGES = table_of(TierChange)
NOTICES = table_of(LoyaltyNotice)
MAX_REVIEWS = 100  # missed reviews caught up in one refresh (a guard)
NOT_PLACED = ""


def new_member_row(store_id: int, customer_id: int, now: datetime) -> dict[str, Any]:
    """A ``loyalty_members`` row for a member not placed in a tier yet."""
    return {
        "store_id": store_id,
        "customer_id": customer_id,
        "tier": NOT_PLACED,
        "tier_since": now,
        "streak": 0,
        "created_at": now,
        "updated_at": now,
    }


def member_tier(session: Session, store_id: int, customer_id: int) -> str | None:
    """The tier code the member holds; None: never placed (the programme's first tier)."""
    tier = session.scalar(
        select(LoyaltyMember.tier).where(
            LoyaltyMember.store_id == store_id, LoyaltyMember.customer_id == customer_id
        )
    )
    return tier or None


def member_tiers(session: Session, store_id: int, customer_ids: Sequence[int]) -> dict[int, str]:
    """Tier codes of these members (those never placed are missing)."""
    out: dict[int, str] = {}
    for chunk in chunks(sorted(set(customer_ids))):
        rows = session.execute(
            select(LoyaltyMember.customer_id, LoyaltyMember.tier).where(
                LoyaltyMember.store_id == store_id, LoyaltyMember.customer_id.in_(chunk)
            )
        )
        out.update({cid: tier for cid, tier in rows if tier})
    return out


# -- history -------------------------------------------------------------------------------


def _counts_from(program: ProgramConfig) -> timedelta:
    """How long after delivery an order's value starts to count for tiers."""
    if program.growth.pending == "immediate":
        return timedelta(0)
    return timedelta(days=program.pending_days)


def _growth_history(
    session: Session, store_id: int, customer_ids: Sequence[int]
) -> dict[int, list[Activity]]:
    """Net growth per business event (ref), dated when it became available (summed in
    the database: one row per event, not one per entry)."""
    group = func.coalesce(LoyaltyEntry.ref, literal("#").concat(cast(LoyaltyEntry.id, String)))
    earned_at = func.min(
        case(
            (LoyaltyEntry.kind == EntryKind.earn, LoyaltyEntry.available_at),
            else_=None,
        )
    )
    out: dict[int, list[Activity]] = {cid: [] for cid in customer_ids}
    for chunk in chunks(sorted(set(customer_ids))):
        rows = session.execute(
            select(
                LoyaltyAccount.customer_id,
                func.sum(LoyaltyEntry.amount),
                earned_at,
                func.min(LoyaltyEntry.created_at),
            )
            .join(LoyaltyAccount, LoyaltyAccount.id == LoyaltyEntry.account_id)
            .where(
                LoyaltyAccount.store_id == store_id,
                LoyaltyAccount.customer_id.in_(chunk),
                LoyaltyEntry.currency == Currency.growth,
                LoyaltyEntry.amount != 0,
            )
            .group_by(LoyaltyAccount.customer_id, group)
        )
        for cid, amount, available_at, created_at in rows:
            at = available_at if available_at is not None else created_at
            out[cid].append(Activity(as_utc(at), growth=int(amount)))
    return out


def _order_history(
    session: Session, store_id: int, customer_ids: Sequence[int], counts_from: timedelta
) -> dict[int, list[Activity]]:
    """Delivered orders net of refunds, dated when they start to count."""
    out: dict[int, list[Activity]] = {cid: [] for cid in customer_ids}
    for chunk in chunks(sorted(set(customer_ids))):
        rows = session.execute(
            select(
                Order.customer_id, Order.delivered_at, Order.total_minor, Order.refunded_minor
            ).where(
                Order.store_id == store_id,
                Order.customer_id.in_(chunk),
                Order.status.in_((OrderStatus.delivered, OrderStatus.refunded)),
                Order.delivered_at.is_not(None),
            )
        )
        for cid, delivered_at, total, refunded in rows:
            assert delivered_at is not None  # filtered above
            net = max(int(total) - int(refunded), 0)
            out[cid].append(
                Activity(as_utc(delivered_at) + counts_from, spend_minor=net, orders=int(net > 0))
            )
    return out


def histories(
    session: Session, store: Store, program: ProgramConfig, customer_ids: Sequence[int]
) -> dict[int, list[Activity]]:
    """Each member's tier-qualifying history, net of refunds and cancellations."""
    if program.tiers[0].qualify_on == "growth":
        return _growth_history(session, store.id, customer_ids)
    return _order_history(session, store.id, customer_ids, _counts_from(program))


def _next_activity(history: list[Activity], now: datetime) -> datetime | None:
    later = [a.occurred_at for a in history if as_utc(a.occurred_at) > now]
    return min(later) if later else None


# -- decisions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """A member's tier as the API shows it."""

    customer_id: int
    tier: TierDef
    since: datetime | None
    review_at: datetime | None
    value: int  # qualifying value in the current window (minor units for spend)
    retain: int  # value needed by the review to keep the tier
    progress: Progress


def _decide(
    program: ProgramConfig,
    tz: str,
    tier: str | None,
    period_end: datetime | None,
    history: list[Activity],
    now: datetime,
) -> list[tuple[datetime, TierDecision]]:
    """Every decision due by ``now``, with when it took effect: each review whose period
    ended (kept, downgraded or upgraded), then an entry or upgrade as of ``now``."""
    decisions: list[tuple[datetime, TierDecision]] = []
    for _ in range(MAX_REVIEWS):
        if tier is not None and period_end is not None and period_end <= now:
            decision = evaluate_tier(program, tier, history, period_end, period_end, tz=tz)
            decisions.append((period_end, decision))
            tier, period_end = decision.tier, decision.next_review
            continue
        decision = evaluate_tier(program, tier, history, now, period_end, tz=tz)
        if decision.change != "keep":
            decisions.append((now, decision))
        break
    return decisions


def refresh(
    session: Session,
    store: Store,
    program: ProgramConfig,
    customer_ids: Sequence[int],
    now: datetime | None = None,
) -> list[TierDecision]:
    """Place, upgrade or review these members as of ``now``; record every change in the
    tier history. Returns the changes (entries, upgrades, downgrades, kept reviews)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return []
    now = utcnow() if now is None else as_utc(now)
    for chunk in chunks(ids):
        session.execute(
            insert_ignoring_conflicts(session, MEMBERS, "store_id", "customer_id"),
            [new_member_row(store.id, cid, now) for cid in chunk],
        )
    members: list[Any] = []
    for chunk in chunks(ids):
        query = (
            select(MEMBERS.c.id, MEMBERS.c.customer_id, MEMBERS.c.tier, MEMBERS.c.review_at)
            .where(MEMBERS.c.store_id == store.id, MEMBERS.c.customer_id.in_(chunk))
            .order_by(MEMBERS.c.id)
            .with_for_update()
        )
        members.extend(session.execute(query))
    history = histories(session, store, program, ids)
    changes: list[dict[str, Any]] = []
    updates: list[tuple[int, dict[str, Any]]] = []
    out: list[TierDecision] = []
    for member in members:
        past = history.get(member.customer_id, [])
        current = member.tier or None
        period_end = as_utc(member.review_at) if member.review_at else None
        decisions = _decide(program, store.timezone, current, period_end, past, now)
        tier, since, review = current, None, period_end
        for at, decision in decisions:
            changes.append(
                {
                    "store_id": store.id,
                    "customer_id": member.customer_id,
                    "from_tier": decision.previous or None,
                    "to_tier": decision.tier,
                    "change": decision.change,
                    "reason": decision.reason[:500],
                    "value": decision.value,
                    "program_version": program.version,
                    "occurred_at": at,
                }
            )
            if decision.tier != tier:
                since = at
            tier, review = decision.tier, decision.next_review
            out.append(decision)
        pending = _next_activity(past, now)
        check_at = min((t for t in (review, pending) if t is not None), default=None)
        row: dict[str, Any] = {
            "tier": tier or program.tiers[0].code,
            "review_at": review,
            "check_at": check_at,
            "updated_at": now,
        }
        if since is not None:
            row["tier_since"] = since
        updates.append((member.id, row))
    if changes:
        session.execute(CHANGES.insert(), changes)
        # Upgrades and downgrades are news for the member (campaigns send them).
        notify(
            session,
            store.id,
            [
                {
                    "customer_id": c["customer_id"],
                    "kind": NoticeKind.tier_changed,
                    "key": f"tier:{c['customer_id']}:{c['occurred_at'].isoformat()}:{c['to_tier']}",
                    "data": {
                        "from_tier": c["from_tier"],
                        "to_tier": c["to_tier"],
                        "change": c["change"],
                        "reason": c["reason"],
                    },
                }
                for c in changes
                if c["change"] in ("upgrade", "downgrade")
            ],
        )
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for member_id, row in updates:
        groups.setdefault(tuple(sorted(row)), []).append({"id": member_id, **row})
    for rows in groups.values():
        update_by_id(session, MEMBERS, rows)
    return out


def schedule(
    session: Session, store: Store, customer_ids_at: Sequence[tuple[int, datetime]]
) -> None:
    """These members' value changes only later (pending growth or orders, counting from
    the given time): have the tier job look at them then, instead of refreshing now. A
    member never placed is placed by the job at that time too (until then the programme's
    first tier applies, as for every unplaced member). One statement."""
    due: dict[int, datetime] = {}
    for cid, at in customer_ids_at:
        at = as_utc(at)
        due[cid] = min(at, due.get(cid, at))
    if not due:
        return
    now = utcnow()
    rows = [
        {**new_member_row(store.id, cid, now), "check_at": at} for cid, at in sorted(due.items())
    ]
    dialect = session.get_bind().dialect.name
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    for chunk in chunks(rows):
        stmt = insert_(MEMBERS)
        stmt = stmt.on_conflict_do_update(
            index_elements=["store_id", "customer_id"],
            set_={
                "check_at": case(
                    (MEMBERS.c.check_at.is_(None), stmt.excluded.check_at),
                    (stmt.excluded.check_at < MEMBERS.c.check_at, stmt.excluded.check_at),
                    else_=MEMBERS.c.check_at,
                )
            },
        )
        session.execute(stmt, list(chunk))


def review_due(
    session: Session,
    store: Store,
    program: ProgramConfig,
    now: datetime | None = None,
    limit: int = 500,
) -> int:
    """Job: members whose tier is due to be looked at (a period end, or pending value
    that now counts). Returns the number of tier decisions recorded; run again while
    members are due (``due_count``)."""
    now = utcnow() if now is None else as_utc(now)
    ids = list(
        session.scalars(
            select(MEMBERS.c.customer_id)
            .where(MEMBERS.c.store_id == store.id, MEMBERS.c.check_at <= now)
            .order_by(MEMBERS.c.check_at, MEMBERS.c.id)
            .limit(limit)
        )
    )
    if not ids:
        return 0
    refresh(session, store, program, ids, now)
    return len(ids)


# -- reads ---------------------------------------------------------------------------------


def standing(
    session: Session,
    store: Store,
    program: ProgramConfig,
    customer_id: int,
    now: datetime | None = None,
) -> Standing:
    """The member's tier, qualifying value and progress to the next tier."""
    now = utcnow() if now is None else as_utc(now)
    row = session.execute(
        select(MEMBERS.c.tier, MEMBERS.c.tier_since, MEMBERS.c.review_at).where(
            MEMBERS.c.store_id == store.id, MEMBERS.c.customer_id == customer_id
        )
    ).first()
    tier = program.tier(row.tier if row else None) or program.tiers[0]
    first = program.tiers[0]
    past = histories(session, store, program, [customer_id])[customer_id]
    value = qualifying_value(first, past, now, store.timezone)
    placed = row is not None and bool(row.tier)
    return Standing(
        customer_id,
        tier,
        as_utc(row.tier_since) if placed and row else None,
        as_utc(row.review_at) if row is not None and row.review_at else None,
        value,
        threshold_value(tier, program.currency, retain=True),
        progress(program, tier.code, value),
    )


def tier_history(
    session: Session, store: Store, customer_id: int, limit: int = 50
) -> list[TierChange]:
    return list(
        session.scalars(
            select(TierChange)
            .where(TierChange.store_id == store.id, TierChange.customer_id == customer_id)
            .order_by(TierChange.id.desc())
            .limit(limit)
        )
    )


# -- notices -------------------------------------------------------------------------------


def notify(session: Session, store_id: int, rows: Sequence[dict[str, Any]]) -> int:
    """Write notices (``customer_id``, ``kind``, ``key``, ``data``), each key once;
    returns how many were new."""
    if not rows:
        return 0
    now = utcnow()
    new = 0
    for chunk in chunks(list(rows), 1000):
        result = session.execute(
            insert_ignoring_conflicts(session, NOTICES, "store_id", "key").returning(NOTICES.c.id),
            [{"store_id": store_id, "created_at": now, **row} for row in chunk],
        )
        new += len(result.all())
    return new
