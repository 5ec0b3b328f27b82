"""The bridge from order events to points: deliveries earn, refunds and cancellations claw back.

Called by the orders service after its own writes, in the same transaction (services
flush, never commit), and by ``award_delivered`` for orders loaded by file import.

- **Delivery earns.** An order that is delivered (created delivered, or advanced to
  delivered) in a store with an active programme earns what ``rules.evaluate`` gives it
  (store time zone; the member's tier from ``loyalty_members``; first order = no
  earlier order of the customer; birthday; attributes; what capped rules already gave
  the member this period and what is left of campaign budgets, see ``usage.py``),
  as ``earn(key="order:<ext>:earn", ref=<ext>)``, pending until
  ``program.available_at(delivered_at)``, points expiring at
  ``program.expires_at(delivered_at)``, growth never. An order already earned is skipped
  before it is evaluated, so re-deliveries never count twice (and the key makes a race a
  replay). Flagged customers earn like everybody else: flags stop surprise rewards and
  referral rewards, not what an order earns.
- **Refunds already applied** when the order is delivered are netted: the order earns
  ``E - round(E x refunded / total)``.
- **A later refund** claws back its share of what the order still holds:
  ``round(net x refund / (total - refunded before))`` points and growth, as
  ``clawback(key="refund:<refund ext>", ref=<order ext>)`` — exactly once per refund;
  the last refund of an order takes back exactly what is left.
- **A cancelled order** claws back everything it still holds (``order:<ext>:cancel``).
  Cancelled orders never earn.

After earning or clawing back, the members' tiers are refreshed (``membership``).
Caps count what rules gave when the order earned; a later refund claws back points but
does not give cap room back. Not done: an order in another currency than the
programme's earns nothing; a points lot whose expiry has already passed (an old order
imported late) is not earned — its growth still is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from patron.customers.models import Customer
from patron.errors import NotFound
from patron.kit.clock import as_utc, utcnow, zone
from patron.kit.repository import chunks
from patron.loyalty import membership
from patron.loyalty import repository as ledger_repo
from patron.loyalty.membership import member_tiers
from patron.loyalty.models import Currency
from patron.loyalty.program import ProgramConfig
from patron.loyalty.programs import active_row, load
from patron.loyalty.rules import EarnEvent, Evaluation, EventKind, Line, MemberContext, evaluate
from patron.loyalty.service import Earning, ledger
from patron.loyalty.usage import UsageBook, capped_rule
from patron.orders.models import Order, OrderLine, OrderStatus
from patron.stores.models import Store

BATCH = 2000
# Only delivered orders earn: a fully refunded one would earn nothing once netted, and a
# status of `refunded` sent by a platform without refund records must not earn in full.
_EARNING = (OrderStatus.delivered,)
_PROGRAMS: dict[str, ProgramConfig] = {}


def earn_key(order_external_id: str) -> str:
    return f"order:{order_external_id}:earn"


def refund_key(refund_external_id: str) -> str:
    return f"refund:{refund_external_id}"


def cancel_key(order_external_id: str) -> str:
    return f"order:{order_external_id}:cancel"


def active_program(session: Session, store: Store) -> ProgramConfig | None:
    """The store's active programme (one query; parsed once per configuration)."""
    row = active_row(session, store.id)
    if row is None:
        return None
    program = _PROGRAMS.get(row.fingerprint)
    if program is None or program.version != row.version:
        if len(_PROGRAMS) > 64:
            _PROGRAMS.clear()
        program = _PROGRAMS[row.fingerprint] = load(row)
    return program


def require_program(session: Session, store: Store) -> ProgramConfig:
    """The store's active programme; a 404 problem when it has none."""
    program = active_program(session, store)
    if program is None:
        raise NotFound("This store has no loyalty programme yet (PUT /v1/loyalty/program).")
    return program


def _share(value: int, part: int, whole: int) -> int:
    """round(value x part / whole), half up, within [0, value]."""
    if value <= 0 or part <= 0 or whole <= 0:
        return 0
    if part >= whole:
        return value
    return min(value, (2 * value * part + whole) // (2 * whole))


@dataclass(frozen=True)
class _Order:
    id: int
    external_id: str
    customer_id: int
    status: OrderStatus
    channel: str | None
    currency: str
    subtotal_minor: int
    discount_minor: int
    shipping_minor: int
    tax_minor: int
    total_minor: int
    refunded_minor: int
    placed_at: datetime
    delivered_at: datetime | None
    first_order: bool


def _load_orders(session: Session, store_id: int, condition: Any) -> list[_Order]:
    earlier = aliased(Order)
    first = ~exists().where(
        earlier.customer_id == Order.customer_id,
        or_(
            earlier.placed_at < Order.placed_at,
            and_(earlier.placed_at == Order.placed_at, earlier.id < Order.id),
        ),
    )
    rows = session.execute(
        select(
            Order.id,
            Order.external_id,
            Order.customer_id,
            Order.status,
            Order.channel,
            Order.currency,
            Order.subtotal_minor,
            Order.discount_minor,
            Order.shipping_minor,
            Order.tax_minor,
            Order.total_minor,
            Order.refunded_minor,
            Order.placed_at,
            Order.delivered_at,
            first.label("first_order"),
        )
        .where(Order.store_id == store_id, condition)
        .order_by(Order.id)
    )
    return [_Order(**row._mapping) for row in rows]


def _earnings(
    session: Session, store: Store, program: ProgramConfig, orders: list[_Order], now: datetime
) -> list[Earning]:
    """The earnings of delivered orders not earned yet (evaluated, refunds netted)."""
    if not orders:
        return []
    done = ledger_repo.entries_by_keys(session, store.id, [earn_key(o.external_id) for o in orders])
    todo = [o for o in orders if earn_key(o.external_id) not in done]
    if not todo:
        return []
    ids = [o.id for o in todo]
    lines: dict[int, list[Line]] = {i: [] for i in ids}
    for chunk in chunks(ids):
        for order_id, sku, category, total in session.execute(
            select(OrderLine.order_id, OrderLine.sku, OrderLine.category, OrderLine.total_minor)
            .where(OrderLine.order_id.in_(chunk))
            .order_by(OrderLine.order_id, OrderLine.line_no)
        ):
            lines[order_id].append(Line(sku, category, max(int(total), 0)))
    members: dict[int, tuple[Any, dict[str, Any]]] = {}
    for chunk in chunks(sorted({o.customer_id for o in todo})):
        for cid, birthday, attributes in session.execute(
            select(Customer.id, Customer.birthday, Customer.attributes).where(
                Customer.id.in_(chunk)
            )
        ):
            members[cid] = (birthday, attributes or {})
    tiers = member_tiers(session, store.id, [o.customer_id for o in todo])
    earning = [
        o for o in todo if o.delivered_at is not None and o.currency.upper() == program.currency
    ]
    capped = {r.id for r in program.rules if capped_rule(r)}

    def evaluate_order(o: _Order, usage: UsageBook | None) -> Evaluation:
        birthday, attributes = members.get(o.customer_id, (None, {}))
        event = EarnEvent(
            kind=EventKind.order,
            occurred_at=o.placed_at,
            currency=o.currency,
            amount_minor=max(o.subtotal_minor - o.discount_minor, 0),
            shipping_minor=max(o.shipping_minor, 0),
            tax_minor=max(o.tax_minor, 0),
            channel=o.channel,
            lines=lines[o.id],
        )
        rule_usage, budget_left = usage.context(o.customer_id, o.placed_at) if usage else ({}, {})
        context = MemberContext(
            timezone=store.timezone,
            tier=tiers.get(o.customer_id),
            first_order=bool(o.first_order),
            birthday=birthday,
            attributes=attributes,
            rule_usage=rule_usage,
            budget_left=budget_left,
        )
        return evaluate(program, event, context)

    # First without cap usage (caps only ever lower what a rule gives): only the orders
    # where a capped rule fires need the usage rows read, locked and counted.
    results = {o.id: evaluate_order(o, None) for o in earning}
    limited = [o for o in earning if capped & {t.rule_id for t in results[o.id].fired}]
    usage = UsageBook.open(
        session, store.id, program, store.timezone, [(o.customer_id, o.placed_at) for o in limited]
    )
    for o in limited:  # in order: each sees what the earlier ones used
        results[o.id] = result = evaluate_order(o, usage)
        usage.record(o.customer_id, o.placed_at, result)
    usage.save(session)
    tz = zone(store.timezone)
    expiry: dict[date, datetime | None] = {}  # by store-time day of delivery
    out: list[Earning] = []
    for o in earning:
        assert o.delivered_at is not None
        result = results[o.id]
        points = result.points - _share(result.points, o.refunded_minor, o.total_minor)
        growth = result.growth - _share(result.growth, o.refunded_minor, o.total_minor)
        day = o.delivered_at.astimezone(tz).date()
        if day not in expiry:
            expiry[day] = program.expires_at(o.delivered_at, store.timezone)
        expires_at = expiry[day]
        if expires_at is not None and expires_at <= as_utc(now):
            points = 0  # would already have expired
        if points <= 0 and growth <= 0:
            continue
        out.append(
            Earning(
                o.customer_id,
                earn_key(o.external_id),
                points=max(points, 0),
                growth=max(growth, 0),
                reason=f"order {o.external_id}",
                ref=o.external_id,
                available_at=program.available_at(o.delivered_at),
                expires_at=expires_at if points > 0 else None,
            )
        )
    return out


def _earn(
    session: Session, store: Store, program: ProgramConfig, orders: list[_Order], now: datetime
) -> int:
    earnings = _earnings(session, store, program, orders, now)
    if earnings:
        ledger.earn_many(session, store, earnings, now=now)
        # Value that counts now changes the tier now; pending value is scheduled for the
        # tier job at the moment it starts to count (no tier can change before).
        due: set[int] = set()
        later: dict[int, datetime] = {}
        for e in earnings:
            at = now if program.growth.pending == "immediate" else e.available_at
            if at is None or at <= now:
                due.add(e.customer_id)
            else:
                later[e.customer_id] = min(at, later.get(e.customer_id, at))
        membership.refresh(session, store, program, sorted(due), now)
        membership.schedule(session, store, sorted(later.items()))
    return len(earnings)


def _cancel(session: Session, store: Store, orders: list[_Order], now: datetime) -> None:
    done = ledger_repo.entries_by_keys(session, store.id, [earn_key(o.external_id) for o in orders])
    for o in orders:
        entries = done.get(earn_key(o.external_id))
        if not entries:
            continue
        net = ledger_repo.net_by_ref(session, entries[0].account_id, o.external_id)
        points, growth = net.get(Currency.points, 0), net.get(Currency.growth, 0)
        if points > 0 or growth > 0:
            ledger.clawback(
                session,
                store,
                o.customer_id,
                key=cancel_key(o.external_id),
                points=max(points, 0),
                growth=max(growth, 0),
                ref=o.external_id,
                reason=f"order {o.external_id} cancelled",
                now=now,
            )


def on_orders_changed(
    session: Session, store: Store, order_ids: Iterable[int], now: datetime | None = None
) -> int:
    """After orders were created or updated: delivered ones earn, cancelled ones give
    back what they earned. Without an active programme: one query, nothing else.
    Returns the number of orders that earned."""
    ids = sorted(set(order_ids))
    if not ids:
        return 0
    program = active_program(session, store)
    if program is None:
        return 0
    now = utcnow() if now is None else as_utc(now)
    earned = 0
    for chunk in chunks(ids, BATCH):
        orders = _load_orders(session, store.id, Order.id.in_(chunk))
        delivered = [o for o in orders if o.status in _EARNING and o.delivered_at is not None]
        earned += _earn(session, store, program, delivered, now)
        cancelled = [o for o in orders if o.status == OrderStatus.cancelled]
        if cancelled:
            _cancel(session, store, cancelled, now)
            membership.refresh(session, store, program, [o.customer_id for o in cancelled], now)
    return earned


def on_refund(
    session: Session,
    store: Store,
    order: Order,
    refund_external_id: str,
    amount_minor: int,
    now: datetime | None = None,
) -> None:
    """After a refund of ``amount_minor`` was applied to ``order`` (its ``refunded_minor``
    already includes it): claw back the refund's share of what the order still holds.
    Nothing if the order has not earned (it will earn net of the refund)."""
    if amount_minor <= 0:
        return
    entries = ledger_repo.entries_by_key(session, store.id, earn_key(order.external_id))
    if not entries:
        return
    net = ledger_repo.net_by_ref(session, entries[0].account_id, order.external_id)
    left = order.total_minor - (order.refunded_minor - amount_minor)
    points = _share(net.get(Currency.points, 0), amount_minor, left)
    growth = _share(net.get(Currency.growth, 0), amount_minor, left)
    if points <= 0 and growth <= 0:
        return
    program = active_program(session, store)
    ledger.clawback(
        session,
        store,
        order.customer_id,
        key=refund_key(refund_external_id),
        points=points,
        growth=growth,
        ref=order.external_id,
        reason=f"refund {refund_external_id} of order {order.external_id}",
        now=now,
    )
    if program is not None:
        membership.refresh(session, store, program, [order.customer_id], now)


def award_delivered(
    session: Session,
    store: Store,
    orders: Sequence[int] | datetime | None = None,
    now: datetime | None = None,
) -> int:
    """Earn for delivered orders that have not earned yet (file imports, backfills):
    the orders with these ids, or delivered since a time, or all (None). Idempotent.
    Returns the number of orders that earned; 0 without an active programme."""
    program = active_program(session, store)
    if program is None:
        return 0
    now = utcnow() if now is None else as_utc(now)
    if isinstance(orders, datetime):
        condition = Order.delivered_at >= as_utc(orders)
    elif orders is None:
        condition = Order.delivered_at.is_not(None)
    else:
        return on_orders_changed(session, store, orders, now)
    rows = session.execute(
        select(Order.id, Order.customer_id)
        .where(Order.store_id == store.id, Order.status.in_(_EARNING), condition)
        # By member, and a member's orders in one batch: their lots are read once and
        # their tier is decided once, on all of their history.
        .order_by(Order.customer_id, Order.id)
    ).all()
    earned = 0
    start = 0
    while start < len(rows):
        end = min(start + BATCH, len(rows))
        while end < len(rows) and rows[end].customer_id == rows[end - 1].customer_id:
            end += 1
        batch = [row.id for row in rows[start:end]]
        # Below SQLite's 32,766 bound parameters; split further only for a member with
        # tens of thousands of orders.
        for chunk in chunks(batch, 30_000):
            orders_ = _load_orders(session, store.id, Order.id.in_(chunk))
            earned += _earn(session, store, program, orders_, now)
        start = end
    return earned
