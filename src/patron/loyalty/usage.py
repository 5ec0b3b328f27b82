"""What capped earning rules already gave, across events: per member per period
(``caps.per_customer``) and per campaign (``caps.budget``).

``UsageBook.open`` loads and locks the usage rows a batch of events can touch (creating
them at zero first), so two transactions can never both spend the last of a budget or
of a member's cap: the second waits for the first to commit and then reads what it
recorded. Lock order: usage rows (by id), then ledger accounts — every caller takes
them in that order. Without capped rules nothing is read or locked.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from functools import lru_cache

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from patron.kit.clock import as_utc, zone
from patron.kit.repository import chunks, insert_ignoring_conflicts, table_of
from patron.loyalty.models import RuleUsage
from patron.loyalty.program import Period, ProgramConfig, Rule
from patron.loyalty.rules import Evaluation, period_bounds

USAGE = table_of(RuleUsage)
EVER = datetime(1970, 1, 1, tzinfo=UTC)  # period_start of "ever" and of budgets
BUDGET = 0  # customer_id of a campaign budget row

Key = tuple[str, int, datetime]  # rule id, customer id (0: budget), period start


class UsageBook:
    def __init__(
        self, store_id: int, program: ProgramConfig, tz: str, used: dict[Key, int]
    ) -> None:
        self._store_id = store_id
        self._tz = tz
        self._used = used
        self._added: dict[Key, int] = {}
        self._capped = [r for r in program.rules if capped_rule(r)]

    @classmethod
    def open(
        cls,
        session: Session,
        store_id: int,
        program: ProgramConfig,
        tz: str,
        events: Iterable[tuple[int, datetime]],
    ) -> UsageBook:
        """Load and lock the usage of capped rules for these (customer id, event time)."""
        capped = [r for r in program.rules if capped_rule(r)]
        if not capped:
            return cls(store_id, program, tz, {})
        keys = sorted({k for cid, at in events for r in capped for k in _keys(r, cid, at, tz)})
        for chunk in chunks(keys, 1000):
            session.execute(
                insert_ignoring_conflicts(
                    session, USAGE, "store_id", "rule_id", "customer_id", "period_start"
                ),
                [
                    {
                        "store_id": store_id,
                        "rule_id": rule,
                        "customer_id": cid,
                        "period_start": start,
                        "points": 0,
                    }
                    for rule, cid, start in chunk
                ],
            )
        # By the unique index's columns (rule, member, period), filtered to the keys here:
        # a list of row values would be matched against every row of the store.
        wanted = set(keys)
        rule_ids = sorted({k[0] for k in keys})
        starts = sorted({k[2] for k in keys})
        used: dict[Key, int] = {}
        for members in chunks(sorted({k[1] for k in keys}), 1000):
            rows = session.execute(
                select(USAGE.c.rule_id, USAGE.c.customer_id, USAGE.c.period_start, USAGE.c.points)
                .where(
                    USAGE.c.store_id == store_id,
                    USAGE.c.rule_id.in_(rule_ids),
                    USAGE.c.customer_id.in_(members),
                    USAGE.c.period_start.in_(starts),
                )
                .order_by(USAGE.c.id)
                .with_for_update()
            )
            for rule, cid, start, points in rows:
                key = (rule, cid, _utc(start))
                if key in wanted:
                    used[key] = int(points)
        return cls(store_id, program, tz, used)

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
            {"r": r, "c": c, "p": p, "n": self._used.get((r, c, p), 0)} for (r, c, p) in self._added
        ]
        session.execute(
            update(USAGE)
            .where(
                USAGE.c.store_id == self._store_id,
                USAGE.c.rule_id == bindparam("r"),
                USAGE.c.customer_id == bindparam("c"),
                USAGE.c.period_start == bindparam("p"),
            )
            .values(points=bindparam("n")),
            rows,
        )
        self._added.clear()

    def _get(self, key: Key) -> int:
        return self._used.get(key, 0)

    def _add(self, key: Key, points: int) -> None:
        if key not in self._used:
            raise AssertionError(f"usage row {key} was not opened")
        self._used[key] = self._used.get(key, 0) + points
        self._added[key] = 1


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
