"""What capped earning rules already gave, across events: per member per period
(``caps.per_customer``) and per campaign (``caps.budget``).

``UsageBook.open`` loads and locks the usage rows a batch of events can touch (creating
them at zero first), so two transactions can never both spend the last of a budget or
of a member's cap: the second waits for the first to commit and then reads what it
recorded. Lock order: usage rows (by rule, member, period start), then ledger accounts
— every caller takes them in that order. Without capped rules nothing is read or
locked; a single action locks only the rules that can fire for it (``candidates``), so
a share does not queue behind every order on a campaign's budget row. A single action
whose points no cap cuts counts them in one statement (``spend_uncut``): the row's count
is raised only if it stays within the cap, else the action takes the ``UsageBook`` path.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache

from sqlalchemy import Insert, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from patron.kit.clock import as_utc, zone
from patron.kit.repository import chunks, table_of
from patron.loyalty.models import RuleUsage
from patron.loyalty.program import Period, ProgramConfig, Rule
from patron.loyalty.rules import Evaluation, period_bounds

USAGE = table_of(RuleUsage)
EVER = datetime(1970, 1, 1, tzinfo=UTC)  # period_start of "ever" and of budgets
BUDGET = 0  # customer_id of a campaign budget row

Key = tuple[str, int, datetime]  # rule id, customer id (0: budget), period start


class UsageBook:
    def __init__(
        self,
        store_id: int,
        program: ProgramConfig,
        tz: str,
        used: dict[Key, int],
        capped: list[Rule] | None = None,
    ) -> None:
        self._store_id = store_id
        self._tz = tz
        self._used = used
        self._added: dict[Key, int] = {}
        self._capped = [r for r in program.rules if capped_rule(r)] if capped is None else capped

    @classmethod
    def open(
        cls,
        session: Session,
        store_id: int,
        program: ProgramConfig,
        tz: str,
        events: Iterable[tuple[int, datetime]],
        rules: Collection[str] | None = None,
    ) -> UsageBook:
        """Load and lock the usage of capped rules for these (customer id, event time):
        of every capped rule, or only of ``rules`` (those that can give points to these
        events: see ``candidates``)."""
        capped = [r for r in program.rules if capped_rule(r) and (rules is None or r.id in rules)]
        if not capped:
            return cls(store_id, program, tz, {}, capped)
        keys = sorted({k for cid, at in events for r in capped for k in _keys(r, cid, at, tz)})
        # One statement per 1000 rows creates the missing rows at zero, locks every row
        # (a no-op update: a concurrent holder is waited for, then its committed count is
        # read) and returns the counts. Rows are locked in key order, by every caller.
        used: dict[Key, int] = {}
        upsert = _upsert(session)
        for chunk in chunks(keys, 1000):
            params = [
                {"store_id": store_id, "rule_id": rule, "customer_id": cid, "period_start": start}
                for rule, cid, start in chunk
            ]
            rows = session.execute(upsert, params[0] if len(params) == 1 else params)
            for rule, cid, start, points in rows:
                used[(rule, cid, _utc(start))] = int(points)
        return cls(store_id, program, tz, used, capped)

    def context(self, customer_id: int, at: datetime) -> tuple[dict[str, int], dict[str, int]]:
        """``MemberContext.rule_usage`` and ``budget_left`` for an event at ``at``."""
        usage: dict[str, int] = {}
        left: dict[str, int] = {}
        for rule in self._capped:
            caps = rule.caps
            if caps.per_customer is not None:
                usage[rule.id] = self._get((rule.id, customer_id, _start(rule, at, self._tz)))
            if caps.budget is not None:
                left[rule.id] = caps.budget - self._get((rule.id, BUDGET, EVER))
        return usage, left

    def record(self, customer_id: int, at: datetime, evaluation: Evaluation) -> None:
        """Count what the capped rules of ``evaluation`` gave."""
        given = evaluation.points_by_rule()
        for rule in self._capped:
            points = given.get(rule.id, 0)
            if points <= 0:
                continue
            if rule.caps.per_customer is not None:
                self._add((rule.id, customer_id, _start(rule, at, self._tz)), points)
            if rule.caps.budget is not None:
                self._add((rule.id, BUDGET, EVER), points)

    def save(self, session: Session) -> None:
        """Write what ``record`` counted (the rows are locked by ``open``)."""
        if not self._added:
            return
        rows = [
            {"s": self._store_id, "r": r, "c": c, "p": p, "n": self._used.get((r, c, p), 0)}
            for (r, c, p) in self._added
        ]
        session.execute(_SAVE, rows[0] if len(rows) == 1 else rows)
        self._added.clear()

    def _get(self, key: Key) -> int:
        return self._used.get(key, 0)

    def _add(self, key: Key, points: int) -> None:
        if key not in self._used:
            raise AssertionError(f"usage row {key} was not opened")
        self._used[key] = self._used.get(key, 0) + points
        self._added[key] = 1


def candidates(program: ProgramConfig, uncapped: Evaluation) -> set[str]:
    """The capped rules whose usage an event can touch, from its evaluation without any
    usage (``MemberContext`` with no ``rule_usage`` nor ``budget_left``). A rule that
    failed one of its conditions there (event kind, dates, channel, tier, birthday, ...)
    fails it whatever the usage; any other (fired, stopped by an exclusive rule that a cap
    may silence, added nothing) might give points once the usage is known."""
    capped = {r.id: r for r in program.rules if capped_rule(r)}
    return {
        t.rule_id
        for t in uncapped.rules
        if t.rule_id in capped
        and t.condition in _UNSETTLED
        and capped[t.rule_id].event == uncapped.kind  # a stopped rule's event: unchecked
    }


# Trace conditions that depend on what capped rules already gave (None: fired).
_UNSETTLED = frozenset({None, "stacking", "effect", "caps"})


_SAVE = (
    update(USAGE)
    .where(
        USAGE.c.store_id == bindparam("s"),
        USAGE.c.rule_id == bindparam("r"),
        USAGE.c.customer_id == bindparam("c"),
        USAGE.c.period_start == bindparam("p"),
    )
    .values(points=bindparam("n"))
)
_UNDO = (
    update(USAGE)
    .where(
        USAGE.c.store_id == bindparam("s"),
        USAGE.c.rule_id == bindparam("r"),
        USAGE.c.customer_id == bindparam("c"),
        USAGE.c.period_start == bindparam("p"),
    )
    .values(points=USAGE.c.points - bindparam("n"))
)
_UPSERTS: dict[str, Insert] = {}
_SPENDS: dict[str, Insert] = {}


def _spend(session: Session) -> Insert:
    """INSERT (points) ... ON CONFLICT DO UPDATE SET points = points + the new ones WHERE
    that stays within the cap, RETURNING the count (no row: over the cap)."""
    dialect = session.get_bind().dialect.name
    found = _SPENDS.get(dialect)
    if found is not None:
        return found
    index = [USAGE.c.store_id, USAGE.c.rule_id, USAGE.c.customer_id, USAGE.c.period_start]
    if dialect == "postgresql":
        pg = postgresql.insert(USAGE)
        raised = USAGE.c.points + pg.excluded.points
        found = pg.on_conflict_do_update(
            index_elements=index, set_={"points": raised}, where=raised <= bindparam("cap")
        )
    elif dialect == "sqlite":
        lite = sqlite.insert(USAGE)
        raised = USAGE.c.points + lite.excluded.points
        found = lite.on_conflict_do_update(
            index_elements=index, set_={"points": raised}, where=raised <= bindparam("cap")
        )
    else:
        raise NotImplementedError(f"unsupported database: {dialect}")
    found = _SPENDS[dialect] = found.returning(USAGE.c.points)
    return found


def _upsert(session: Session) -> Insert:
    """INSERT (points 0) ... ON CONFLICT DO UPDATE SET points = points RETURNING the
    counts, built once per dialect."""
    dialect = session.get_bind().dialect.name
    found = _UPSERTS.get(dialect)
    if found is not None:
        return found
    index = [USAGE.c.store_id, USAGE.c.rule_id, USAGE.c.customer_id, USAGE.c.period_start]
    same = {"points": USAGE.c.points}
    upsert: Insert
    if dialect == "postgresql":
        upsert = postgresql.insert(USAGE).on_conflict_do_update(index_elements=index, set_=same)
    elif dialect == "sqlite":
        upsert = sqlite.insert(USAGE).on_conflict_do_update(index_elements=index, set_=same)
    else:
        raise NotImplementedError(f"unsupported database: {dialect}")
    found = _UPSERTS[dialect] = upsert.returning(
        USAGE.c.rule_id, USAGE.c.customer_id, USAGE.c.period_start, USAGE.c.points
    )
    return found


@dataclass(frozen=True)
class Spent:
    """What ``spend_uncut`` counted: (usage row, points), none when no capped rule gave
    points."""

    store_id: int
    given: tuple[tuple[Key, int], ...] = ()

    def undo(self, session: Session) -> None:
        """Take the points back (the event turned out to be a replay)."""
        for (rule, cid, start), points in self.given:
            params = {"s": self.store_id, "r": rule, "c": cid, "p": start, "n": points}
            session.execute(_UNDO, params)


def spend_uncut(
    session: Session,
    store_id: int,
    program: ProgramConfig,
    tz: str,
    customer_id: int,
    at: datetime,
    uncapped: Evaluation,
) -> Spent | None:
    """Count what an event's evaluation without usage (``candidates``) gave, when no cap
    binds — then the evaluation with the real usage is the same one. One statement: the
    usage row is created with the points, or its count raised if that stays within the
    cap (locking it, after any concurrent holder committed). None: a cap may bind, or
    more than that one row can be touched; use ``UsageBook`` (no row but that one is
    locked yet, so the lock order holds)."""
    capped = {r.id: r for r in program.rules if capped_rule(r)}
    wanted: list[tuple[Key, int, int]] = []  # usage row, points, cap
    for rule_id, points in uncapped.points_by_rule().items():
        rule = capped.get(rule_id)
        if rule is None or points <= 0:
            continue
        if rule.caps.per_customer is not None:
            key = (rule.id, customer_id, _start(rule, at, tz))
            wanted.append((key, points, rule.caps.per_customer))
        if rule.caps.budget is not None:
            wanted.append(((rule.id, BUDGET, EVER), points, rule.caps.budget))
    if not wanted:  # capped rules that did not give points give none with any usage
        return Spent(store_id)
    touched = {
        k for r in candidates(program, uncapped) for k in _keys(capped[r], customer_id, at, tz)
    }
    if len(wanted) != 1 or touched != {wanted[0][0]}:
        return None
    ((rule_id, cid, start), points, cap) = wanted[0]
    params = {
        "store_id": store_id,
        "rule_id": rule_id,
        "customer_id": cid,
        "period_start": start,
        "points": points,
        "cap": cap,
    }
    if session.execute(_spend(session), params).first() is None:
        return None  # the cap binds (the row is locked now): evaluate with the usage
    return Spent(store_id, (((rule_id, cid, start), points),))


def capped_rule(rule: Rule) -> bool:
    """Whether the rule has a cap that counts across events (per member, or a budget)."""
    return rule.active and (rule.caps.per_customer is not None or rule.caps.budget is not None)


def _start(rule: Rule, at: datetime, tz: str) -> datetime:
    """The first instant of the rule's cap period containing ``at`` (EVER: unbounded)."""
    period = rule.caps.period or "ever"
    if period == "ever":
        return EVER
    return _period_start(period, as_utc(at).astimezone(zone(tz)).date(), tz)


@lru_cache(maxsize=4096)
def _period_start(period: Period, day: date, tz: str) -> datetime:
    # Per store-time day, not per instant: a batch has thousands of events, few days.
    start, _ = period_bounds(period, datetime.combine(day, time(12), zone(tz)), tz)
    assert start is not None
    return start


def _keys(rule: Rule, customer_id: int, at: datetime, tz: str) -> list[Key]:
    keys: list[Key] = []
    if rule.caps.per_customer is not None:
        keys.append((rule.id, customer_id, _start(rule, at, tz)))
    if rule.caps.budget is not None:
        keys.append((rule.id, BUDGET, EVER))
    return keys


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
