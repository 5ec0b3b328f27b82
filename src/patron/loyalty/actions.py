"""Points for what members do besides ordering: daily check-in (签到) with streaks,
sign-up, profile completion, reviews, shares, and the birthday gift.

Each action is evaluated by the programme's rules (``rules.evaluate``; caps and budgets
from ``usage.py``) and credited once, under an idempotency key naming the business
event: ``check-in:<store-time day>``, ``action:<kind>:<key>``, ``birthday:<year>``,
each prefixed by the member. Points from actions are available at once (there is no
return window to wait for) and expire like every earned lot.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, extract, or_, select, update
from sqlalchemy.orm import Session

from patron.customers.models import Customer
from patron.errors import Invalid, NotFound
from patron.kit.clock import as_utc, utcnow, zone
from patron.kit.repository import insert_ignoring_conflicts, table_of
from patron.loyalty import membership
from patron.loyalty import repository as ledger_repo
from patron.loyalty.models import LoyaltyAccount, LoyaltyMember
from patron.loyalty.orders import active_program, require_program
from patron.loyalty.program import EventKind, ProgramConfig
from patron.loyalty.rules import EarnEvent, Evaluation, MemberContext, evaluate
from patron.loyalty.service import Posting, ledger
from patron.loyalty.usage import UsageBook
from patron.stores.models import Store

MEMBERS = table_of(LoyaltyMember)
# Actions a store reports for a member (check-ins and birthdays have their own paths;
# orders and referrals are earned by their own bridges).
REPORTED = (
    EventKind.sign_up,
    EventKind.profile_completed,
    EventKind.review,
    EventKind.share,
)


@dataclass(frozen=True)
class ActionResult:
    kind: EventKind
    key: str
    points: int
    growth: int
    replayed: bool
    evaluation: Evaluation | None  # None on a replay
    streak: int | None = None


def _member(session: Session, store: Store, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None or customer.store_id != store.id:
        raise NotFound("This member no longer exists.")
    return customer


def _credit(
    session: Session,
    store: Store,
    program: ProgramConfig,
    customer: Customer,
    event: EarnEvent,
    key: str,
    reason: str,
    ref: str | None,
    now: datetime,
    *,
    last_check_in: date | None = None,
    streak: int = 0,
) -> tuple[Evaluation, Posting | None]:
    usage = UsageBook.open(
        session, store.id, program, store.timezone, [(customer.id, event.occurred_at)]
    )
    rule_usage, budget_left = usage.context(customer.id, event.occurred_at)
    context = MemberContext(
        timezone=store.timezone,
        tier=membership.member_tier(session, store.id, customer.id),
        birthday=customer.birthday,
        attributes=customer.attributes or {},
        rule_usage=rule_usage,
        budget_left=budget_left,
        last_check_in=last_check_in,
        streak=streak,
    )
    result = evaluate(program, event, context)
    if result.points <= 0 and result.growth <= 0:
        return result, None
    usage.record(customer.id, event.occurred_at, result)
    usage.save(session)
    posting = ledger.earn(
        session,
        store,
        customer.id,
        key=key,
        points=result.points,
        growth=result.growth,
        reason=reason,
        ref=ref,
        expires_at=program.expires_at(now, store.timezone) if result.points else None,
        now=now,
    )
    if result.growth:
        membership.refresh(session, store, program, [customer.id], now)
    return result, posting


def _replayed(session: Session, store: Store, key: str, kind: EventKind) -> ActionResult | None:
    entries = ledger_repo.entries_by_key(session, store.id, key)
    if not entries:
        return None
    points = sum(e.amount for e in entries if e.currency == "points" and e.kind == "earn")
    growth = sum(e.amount for e in entries if e.currency == "growth" and e.kind == "earn")
    return ActionResult(kind, key, int(points), int(growth), True, None)


def check_in(
    session: Session, store: Store, customer_id: int, now: datetime | None = None
) -> ActionResult:
    """The member checks in for today (store time): once a day, streaks counted. A second
    check-in the same day changes nothing and says so (``replayed``)."""
    now = utcnow() if now is None else as_utc(now)
    program = require_program(session, store)
    customer = _member(session, store, customer_id)
    today = now.astimezone(zone(store.timezone)).date()
    key = f"member:{customer_id}:check-in:{today.isoformat()}"
    # The member row is the check-in's lock: two check-ins of one member run in turn.
    session.execute(
        insert_ignoring_conflicts(session, MEMBERS, "store_id", "customer_id"),
        [membership.new_member_row(store.id, customer_id, now)],
    )
    row = session.execute(
        select(MEMBERS.c.id, MEMBERS.c.last_check_in, MEMBERS.c.streak)
        .where(MEMBERS.c.store_id == store.id, MEMBERS.c.customer_id == customer_id)
        .with_for_update()
    ).one()
    if row.last_check_in is not None and row.last_check_in >= today:
        done = _replayed(session, store, key, EventKind.check_in)
        if done is None:
            done = ActionResult(EventKind.check_in, key, 0, 0, True, None)
        return ActionResult(
            done.kind, done.key, done.points, done.growth, True, None, streak=row.streak
        )
    event = EarnEvent(kind=EventKind.check_in, occurred_at=now)
    result, _ = _credit(
        session,
        store,
        program,
        customer,
        event,
        key,
        f"check-in {today.isoformat()}",
        None,
        now,
        last_check_in=row.last_check_in,
        streak=row.streak,
    )
    streak = result.streak or 1
    session.execute(
        update(MEMBERS)
        .where(MEMBERS.c.id == row.id)
        .values(last_check_in=today, streak=streak, updated_at=now)
    )
    if membership.member_tier(session, store.id, customer_id) is None:
        membership.refresh(session, store, program, [customer_id], now)
    return ActionResult(
        EventKind.check_in, key, result.points, result.growth, False, result, streak
    )


def report(
    session: Session,
    store: Store,
    customer_id: int,
    kind: EventKind,
    key: str,
    ref: str | None = None,
    now: datetime | None = None,
) -> ActionResult:
    """A store reports that the member did ``kind`` (sign-up, profile completed, review,
    share); ``key`` names the business event (the review's id, ...) so a repeat earns
    nothing more."""
    if kind not in REPORTED:
        allowed = ", ".join(k.value for k in REPORTED)
        raise Invalid(f"kind: {kind.value!r} is not reported this way (one of {allowed})")
    now = utcnow() if now is None else as_utc(now)
    program = require_program(session, store)
    customer = _member(session, store, customer_id)
    # Sign-up and profile completion happen once per member, whatever key is sent.
    once = kind in (EventKind.sign_up, EventKind.profile_completed)
    full_key = f"member:{customer_id}:{kind.value}" + ("" if once else f":{key}")
    done = _replayed(session, store, full_key, kind)
    if done is not None:
        return done
    event = EarnEvent(kind=kind, occurred_at=now)
    result, posting = _credit(
        session, store, program, customer, event, full_key, kind.value.replace("_", " "), ref, now
    )
    replayed = posting.replayed if posting is not None else False
    return ActionResult(kind, full_key, result.points, result.growth, replayed, result)


def birthdays(session: Session, store: Store, now: datetime | None = None) -> int:
    """Job: members whose birthday is today (store time) get their tier's birthday gift
    and what birthday rules give, once a year. Returns how many were credited."""
    now = utcnow() if now is None else as_utc(now)
    program = active_program(session, store)
    if program is None:
        return 0
    today = now.astimezone(zone(store.timezone)).date()
    days = [(today.month, today.day)]
    if (today.month, today.day) == (2, 28) and calendar.isleap(today.year) is False:
        days.append((2, 29))  # a 29 February birthday is kept on the 28th
    born_today = or_(
        *(
            and_(extract("month", Customer.birthday) == m, extract("day", Customer.birthday) == d)
            for m, d in days
        )
    )
    rows = session.scalars(
        select(Customer)
        .join(
            LoyaltyAccount,
            and_(LoyaltyAccount.store_id == store.id, LoyaltyAccount.customer_id == Customer.id),
        )
        .where(
            Customer.store_id == store.id,
            Customer.birthday.is_not(None),
            born_today,
        )
        .order_by(Customer.id)
    ).all()
    credited = 0
    for customer in rows:
        key = f"member:{customer.id}:birthday:{today.year}"
        if _replayed(session, store, key, EventKind.birthday) is not None:
            continue
        event = EarnEvent(kind=EventKind.birthday, occurred_at=now)
        _, posting = _credit(
            session, store, program, customer, event, key, f"birthday {today.year}", None, now
        )
        credited += posting is not None and not posting.replayed
    return credited
