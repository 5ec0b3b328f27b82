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
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Select,
    String,
    and_,
    bindparam,
    cast,
    exists,
    extract,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from patron.customers.models import Customer
from patron.errors import Invalid, NotFound
from patron.kit.clock import as_utc, utcnow, zone
from patron.kit.repository import insert_ignoring_conflicts, table_of
from patron.loyalty import membership
from patron.loyalty import repository as ledger_repo
from patron.loyalty.models import LoyaltyAccount, LoyaltyEntry, LoyaltyMember, ProgramVersion
from patron.loyalty.orders import active_program, require_program
from patron.loyalty.program import EventKind, ProgramConfig
from patron.loyalty.programs import config_of
from patron.loyalty.rules import EarnEvent, Evaluation, MemberContext, evaluate
from patron.loyalty.service import Posting, ledger
from patron.loyalty.usage import UsageBook, candidates, spend_uncut
from patron.stores.models import Store

MEMBERS = table_of(LoyaltyMember)
CUSTOMERS = table_of(Customer)
ENTRIES = table_of(LoyaltyEntry)
PROGRAMS = table_of(ProgramVersion)
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


@dataclass(frozen=True)
class _Member:
    """What the rules look at of a member."""

    id: int
    birthday: date | None
    attributes: Mapping[str, Any]
    tier: str | None  # None: never placed (the programme's first tier)


def _member(session: Session, store: Store, customer_id: int) -> _Member:
    customer = session.get(Customer, customer_id)
    if customer is None or customer.store_id != store.id:
        raise NotFound("This member no longer exists.")
    tier = membership.member_tier(session, store.id, customer_id)
    return _Member(customer.id, customer.birthday, customer.attributes or {}, tier)


def _reported(by_external_id: bool) -> Select[Any]:
    """A reported action's one read: the member (by external id or id), its tier, the
    store's active programme version and whether the action's key was posted before
    (``member:<id>:<tail>``)."""
    c, m, p = CUSTOMERS.c, MEMBERS.c, PROGRAMS.c
    key = bindparam("head", type_=String) + cast(c.id, String) + bindparam("tail", type_=String)
    seen = exists().where(ENTRIES.c.store_id == c.store_id, ENTRIES.c.idempotency_key == key)
    found = c.external_id == bindparam("ref") if by_external_id else c.id == bindparam("ref")
    return (
        select(c.id, c.birthday, c.attributes, m.tier, p.version, p.fingerprint, seen.label("seen"))
        .select_from(
            CUSTOMERS.outerjoin(
                MEMBERS, and_(m.store_id == c.store_id, m.customer_id == c.id)
            ).outerjoin(PROGRAMS, and_(p.store_id == c.store_id, p.active.is_(True)))
        )
        .where(c.store_id == bindparam("store_id"), found)
    )


_REPORTED_BY_EXTERNAL_ID = _reported(True)
_REPORTED_BY_ID = _reported(False)


def _credit(
    session: Session,
    store: Store,
    program: ProgramConfig,
    member: _Member,
    event: EarnEvent,
    key: str,
    reason: str,
    ref: str | None,
    now: datetime,
    *,
    last_check_in: date | None = None,
    streak: int = 0,
) -> tuple[Evaluation, Posting | None]:
    context = MemberContext(
        timezone=store.timezone,
        tier=member.tier,
        birthday=member.birthday,
        attributes=member.attributes,
        last_check_in=last_check_in,
        streak=streak,
    )
    # First without cap usage. When no cap binds that is the answer, and its capped
    # points are counted in one statement; else only the capped rules that can still fire
    # for this event have their usage rows read and locked (a share never waits on a
    # campaign's budget row) and the event is evaluated again with that usage.
    result = evaluate(program, event, context)
    at, tz = event.occurred_at, store.timezone
    usage: UsageBook | None = None
    spent = spend_uncut(session, store.id, program, tz, member.id, at, result)
    if spent is None:
        rules = candidates(program, result)
        usage = UsageBook.open(session, store.id, program, tz, [(member.id, at)], rules)
        rule_usage, budget_left = usage.context(member.id, at)
        result = evaluate(
            program, event, replace(context, rule_usage=rule_usage, budget_left=budget_left)
        )
    if result.points <= 0 and result.growth <= 0:
        return result, None
    posting = ledger.earn(
        session,
        store,
        member.id,
        key=key,
        points=result.points,
        growth=result.growth,
        reason=reason,
        ref=ref,
        expires_at=program.expires_at(now, store.timezone) if result.points else None,
        now=now,
    )
    if posting.replayed:  # a replay's points were counted the first time
        if spent is not None:
            spent.undo(session)
    elif usage is not None:
        usage.record(member.id, at, result)
        usage.save(session)
    if result.growth:
        membership.refresh(session, store, program, [member.id], now)
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
    member = _member(session, store, customer_id)
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
        member,
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
    return _report(session, store, customer_id, False, kind, key, ref, now)[1]


def report_for(
    session: Session,
    store: Store,
    external_id: str,
    kind: EventKind,
    key: str,
    ref: str | None = None,
    now: datetime | None = None,
) -> tuple[int, ActionResult]:
    """``report`` for the member with this external id: (its customer id, the result)."""
    return _report(session, store, external_id, True, kind, key, ref, now)


def _report(
    session: Session,
    store: Store,
    member_ref: int | str,
    by_external_id: bool,
    kind: EventKind,
    key: str,
    ref: str | None,
    now: datetime | None,
) -> tuple[int, ActionResult]:
    if kind not in REPORTED:
        allowed = ", ".join(k.value for k in REPORTED)
        raise Invalid(f"kind: {kind.value!r} is not reported this way (one of {allowed})")
    now = utcnow() if now is None else as_utc(now)
    # Sign-up and profile completion happen once per member, whatever key is sent.
    once = kind in (EventKind.sign_up, EventKind.profile_completed)
    tail = f":{kind.value}" + ("" if once else f":{key}")
    query = _REPORTED_BY_EXTERNAL_ID if by_external_id else _REPORTED_BY_ID
    params = {"store_id": store.id, "ref": member_ref, "head": "member:", "tail": tail}
    row = session.execute(query, params).first()
    if row is None:
        if by_external_id:
            raise NotFound(f"No customer with external id {member_ref!r} in this store.")
        raise NotFound("This member no longer exists.")
    if row.version is None:
        raise NotFound("This store has no loyalty programme yet (PUT /v1/loyalty/program).")
    program = config_of(session, store.id, row.version, row.fingerprint)
    customer_id = int(row.id)
    full_key = f"member:{customer_id}{tail}"
    if row.seen:
        done = _replayed(session, store, full_key, kind)
        if done is not None:
            return customer_id, done
    member = _Member(customer_id, row.birthday, row.attributes or {}, row.tier or None)
    event = EarnEvent(kind=kind, occurred_at=now)
    result, posting = _credit(
        session, store, program, member, event, full_key, kind.value.replace("_", " "), ref, now
    )
    replayed = posting.replayed if posting is not None else False
    return customer_id, ActionResult(kind, full_key, result.points, result.growth, replayed, result)


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
        member = _Member(
            customer.id,
            customer.birthday,
            customer.attributes or {},
            membership.member_tier(session, store.id, customer.id),
        )
        _, posting = _credit(
            session, store, program, member, event, key, f"birthday {today.year}", None, now
        )
        credited += posting is not None and not posting.replayed
    return credited
