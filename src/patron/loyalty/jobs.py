"""Scheduled loyalty jobs: pending points mature, due lots expire, timed-out holds release,
tiers are reviewed (period ends, and pending growth that starts to count), birthday gifts,
referral rewards past the return window, surprise gifts that are due, and notices of
points about to expire (``expiry_reminder_days``).

``run_due`` brings one store up to date; ``patron.jobs`` runs it, with the feedback and
support jobs, for every store on a schedule (``patron worker``, ``patron serve``). Each
job is idempotent (reserved per-lot / per-hold keys under the account lock), so running
twice, or concurrently, writes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from patron.kit.clock import as_utc, utcnow
from patron.loyalty import actions, membership
from patron.loyalty.models import NoticeKind
from patron.loyalty.orders import active_program
from patron.loyalty.service import ledger
from patron.referrals.service import run_referrals, run_surprises
from patron.stores.models import Store

MAX_ROUNDS = 10_000  # a guard: each round handles up to 500 accounts


@dataclass(frozen=True)
class JobRun:
    matured: int = 0
    expired: int = 0
    released: int = 0
    tiers: int = 0  # members whose tier was looked at
    birthdays: int = 0  # birthday gifts credited
    referrals: int = 0  # referrals rewarded (both sides)
    surprises: int = 0  # surprise gifts given
    reminders: int = 0  # points-expiring notices written

    @property
    def total(self) -> int:
        return sum(astuple(self))

    def __add__(self, other: JobRun) -> JobRun:
        return JobRun(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def run_due(session: Session, store: Store, now: datetime | None = None) -> JobRun:
    """Run maturity, expiry and hold release for one store until nothing is due.

    Returns the number of ledger entries each job wrote. Flushes, never commits."""
    now = utcnow() if now is None else as_utc(now)
    counts = []
    for job in (ledger.mature, ledger.expire, ledger.release_expired_holds):
        written = 0
        for _ in range(MAX_ROUNDS):
            n = job(session, now, store_id=store.id)
            written += n
            if n == 0:
                break
        counts.append(written)
    reviewed = gifts = rewarded = surprised = 0
    program = active_program(session, store)
    if program is not None:
        for _ in range(MAX_ROUNDS):
            n = membership.review_due(session, store, program, now)
            reviewed += n
            if n == 0:
                break
        gifts = actions.birthdays(session, store, now)
        rewarded = run_referrals(session, store, now)
        surprised = run_surprises(session, store, now)
        reminded = remind_expiring(session, store, program.expiry_reminder_days, now)
    else:
        reminded = 0
    matured, expired, released = counts
    return JobRun(matured, expired, released, reviewed, gifts, rewarded, surprised, reminded)


def remind_expiring(
    session: Session, store: Store, days_before: Sequence[int], now: datetime | None = None
) -> int:
    """Job: a ``points_expiring`` notice for each member with points expiring within each
    of ``days_before`` days — once per member, expiry day and reminder. Returns how many
    notices are new."""
    now = utcnow() if now is None else as_utc(now)
    written = 0
    for days in sorted(set(days_before), reverse=True):
        after: int | None = None
        while True:
            due = ledger.expiring_soon(
                session, store, timedelta(days=days), now, limit=1000, after_customer_id=after
            )
            if not due:
                break
            written += membership.notify(
                session,
                store.id,
                [
                    {
                        "customer_id": d.customer_id,
                        "kind": NoticeKind.points_expiring,
                        "key": f"expiring:{d.customer_id}:{d.first_expiry.date()}:{days}",
                        "data": {
                            "points": d.points,
                            "expires_at": d.first_expiry.isoformat(),
                            "days_before": days,
                        },
                    }
                    for d in due
                ],
            )
            after = due[-1].customer_id
    return written
