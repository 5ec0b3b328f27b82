"""Scheduled loyalty jobs: pending points mature, due lots expire, timed-out holds release,
tiers are reviewed (period ends, and pending growth that starts to count).

``run_due`` brings one store up to date; ``patron worker`` runs it for every store on a
schedule. Each job is idempotent (reserved per-lot / per-hold keys under the account
lock), so running twice, or concurrently, writes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from patron.kit.clock import as_utc, utcnow
from patron.loyalty import membership
from patron.loyalty.orders import active_program
from patron.loyalty.service import ledger
from patron.stores.models import Store

MAX_ROUNDS = 10_000  # a guard: each round handles up to 500 accounts


@dataclass(frozen=True)
class JobRun:
    matured: int = 0
    expired: int = 0
    released: int = 0
    tiers: int = 0  # members whose tier was looked at

    @property
    def total(self) -> int:
        return self.matured + self.expired + self.released + self.tiers

    def __add__(self, other: JobRun) -> JobRun:
        return JobRun(
            self.matured + other.matured,
            self.expired + other.expired,
            self.released + other.released,
            self.tiers + other.tiers,
        )


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
    reviewed = 0
    program = active_program(session, store)
    if program is not None:
        for _ in range(MAX_ROUNDS):
            n = membership.review_due(session, store, program, now)
            reviewed += n
            if n == 0:
                break
    matured, expired, released = counts
    return JobRun(matured, expired, released, reviewed)
