"""A simple in-memory model of one member's points, written apart from the code under test.

Lots are a list; every rule is spelled out the obvious way. The stateful test runs the
same events against the model and the real ledger and compares balances.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime

CURRENCIES = ("points", "growth")
BUCKETS = ("available", "pending", "held", "debt")


class ModelShortfall(Exception):
    pass


class ModelConflict(Exception):
    pass


@dataclass
class MLot:
    n: int  # creation order
    cur: str
    amount: int
    remaining: int
    pending: bool
    available_at: datetime
    expires_at: datetime | None
    ref: str | None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass
class MHold:
    n: int
    amount: int
    uses: list[tuple[int, int]]  # (lot n, amount)
    expires_at: datetime
    state: str = "open"


@dataclass
class Member:
    lots: list[MLot] = field(default_factory=list)
    bal: dict[str, dict[str, int]] = field(
        default_factory=lambda: {c: dict.fromkeys(BUCKETS, 0) for c in CURRENCIES}
    )
    holds: dict[str, MHold] = field(default_factory=dict)  # by hold key
    redeemed: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # key -> uses
    reversed: set[str] = field(default_factory=set)
    by_ref: dict[tuple[str, str], int] = field(default_factory=dict)  # earned - clawed back
    counter: int = 0

    def copy(self) -> Member:
        return copy.deepcopy(self)

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _lot(self, n: int) -> MLot:
        return next(lot for lot in self.lots if lot.n == n)

    def spendable(self, cur: str, now: datetime) -> list[MLot]:
        lots = [
            lot
            for lot in self.lots
            if lot.cur == cur and not lot.pending and lot.remaining > 0 and not lot.expired(now)
        ]
        never = [lot for lot in lots if lot.expires_at is None]
        dated = [lot for lot in lots if lot.expires_at is not None]
        dated.sort(key=lambda lot: (lot.expires_at, lot.available_at, lot.n))
        never.sort(key=lambda lot: (lot.available_at, lot.n))
        return dated + never

    def _take_from(self, lots: list[MLot], n: int) -> list[tuple[int, int]]:
        uses = []
        for lot in lots:
            if n == 0:
                break
            k = min(n, lot.remaining)
            if k:
                lot.remaining -= k
                uses.append((lot.n, k))
                n -= k
        return uses

    # -- due transitions -------------------------------------------------------------

    def catch_up(self, now: datetime) -> None:
        # In the order things happened, as the ledger does: a debt is settled from a lot
        # that matured before it expired, never from one already expired.
        while True:
            maturing = sorted(
                (lot for lot in self.lots if lot.pending and lot.available_at <= now),
                key=lambda lot: (lot.available_at, lot.n),
            )
            expiring = sorted(
                (lot for lot in self.lots if lot.remaining > 0 and lot.expired(now)),
                key=lambda lot: (lot.expires_at or now, lot.n),
            )
            first_m = maturing[0] if maturing else None
            first_e = expiring[0] if expiring else None
            if first_m is None and first_e is None:
                break
            if first_m is not None and (
                first_e is None
                or first_e.expires_at is None
                or first_m.available_at <= first_e.expires_at
            ):
                first_m.pending = False
                b = self.bal[first_m.cur]
                b["pending"] -= first_m.remaining
                b["available"] += first_m.remaining
                self.settle(first_m.cur, first_m.available_at)
            else:
                assert first_e is not None
                self._expire(first_e)
        for hold in sorted(
            (h for h in self.holds.values() if h.state == "open" and h.expires_at <= now),
            key=lambda h: (h.expires_at, h.n),
        ):
            self._release(hold, now)

    def due(self, now: datetime) -> dict[str, bool]:
        return {
            "mature": any(lot.pending and lot.available_at <= now for lot in self.lots),
            "expire": any(lot.remaining > 0 and lot.expired(now) for lot in self.lots),
            "holds": any(h.state == "open" and h.expires_at <= now for h in self.holds.values()),
        }

    def _expire(self, lot: MLot) -> None:
        self.bal[lot.cur]["pending" if lot.pending else "available"] -= lot.remaining
        lot.remaining = 0

    def settle(self, cur: str, now: datetime) -> None:
        b = self.bal[cur]
        n = min(b["debt"], b["available"])
        if n > 0:
            self._take_from(self.spendable(cur, now), n)
            b["available"] -= n
            b["debt"] -= n

    # -- events (called after catch_up) ---------------------------------------------

    def earn(
        self,
        cur: str,
        amount: int,
        now: datetime,
        available_at: datetime,
        expires_at: datetime | None,
        ref: str | None,
    ) -> None:
        pending = available_at > now
        self.lots.append(
            MLot(self._next(), cur, amount, amount, pending, available_at, expires_at, ref)
        )
        self.bal[cur]["pending" if pending else "available"] += amount
        if ref is not None:
            self.by_ref[(ref, cur)] = self.by_ref.get((ref, cur), 0) + amount
        if not pending:
            self.settle(cur, now)

    def take(self, cur: str, n: int, now: datetime) -> list[tuple[int, int]]:
        if n > self.bal[cur]["available"]:
            raise ModelShortfall
        uses = self._take_from(self.spendable(cur, now), n)
        assert sum(k for _, k in uses) == n
        self.bal[cur]["available"] -= n
        return uses

    def redeem(self, key: str, n: int, now: datetime) -> None:
        self.redeemed[key] = self.take("points", n, now)

    def hold(self, key: str, n: int, now: datetime, expires_at: datetime) -> None:
        uses = self.take("points", n, now)
        self.bal["points"]["held"] += n
        self.holds[key] = MHold(self._next(), n, uses, expires_at)

    def capture(self, key: str, hold_key: str) -> None:
        hold = self.holds[hold_key]
        if hold.state != "open":
            raise ModelConflict
        hold.state = "captured"
        self.bal["points"]["held"] -= hold.amount
        self.redeemed[key] = hold.uses

    def release(self, hold_key: str, now: datetime) -> None:
        hold = self.holds[hold_key]
        if hold.state != "open":
            raise ModelConflict
        self._release(hold, now)

    def _release(self, hold: MHold, now: datetime) -> None:
        hold.state = "released"
        self.bal["points"]["held"] -= hold.amount
        self._give_back(hold.uses, now)

    def reverse(self, original_key: str, now: datetime) -> None:
        if original_key in self.reversed:
            raise ModelConflict
        self.reversed.add(original_key)
        self._give_back(self.redeemed[original_key], now)

    def _give_back(self, uses: list[tuple[int, int]], now: datetime) -> None:
        for n, k in uses:
            self._lot(n).remaining += k
            self.bal["points"]["available"] += k
        for n in dict.fromkeys(n for n, _ in uses):
            lot = self._lot(n)
            if lot.expired(now) and lot.remaining > 0:
                self._expire(lot)
        self.settle("points", now)

    def clawback(self, cur: str, amount: int, ref: str, now: datetime) -> int:
        amount = min(amount, max(self.by_ref.get((ref, cur), 0), 0))
        if amount == 0:
            return 0
        self.by_ref[(ref, cur)] = self.by_ref.get((ref, cur), 0) - amount
        own_pending = sorted(
            (
                lot
                for lot in self.lots
                if lot.cur == cur and lot.ref == ref and lot.pending and lot.remaining > 0
            ),
            key=lambda lot: lot.n,
        )
        own = [lot for lot in self.spendable(cur, now) if lot.ref == ref]
        others = [lot for lot in self.spendable(cur, now) if lot.ref != ref]
        b = self.bal[cur]
        left = amount
        for lot in own_pending + own + others:
            k = min(left, lot.remaining)
            lot.remaining -= k
            b["pending" if lot.pending else "available"] -= k
            left -= k
        b["debt"] += left
        return amount

    def adjust(self, cur: str, amount: int, now: datetime) -> None:
        if amount > 0:
            self.lots.append(MLot(self._next(), cur, amount, amount, False, now, None, None))
            self.bal[cur]["available"] += amount
            self.settle(cur, now)
        else:
            self.take(cur, -amount, now)
