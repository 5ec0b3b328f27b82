"""The ledger's rules, in plain Python over one member's balances, lots and holds.

A ``Book`` is a member's account loaded into memory. Each operation on it (earn, take,
hold, capture, release, restore, clawback, mature, expire, settle) checks its rule,
changes balances, lots and holds, and stages the entries that record it. The service
loads a book under the account's lock, runs operations, and stores what was staged.

Balances per currency are four buckets:

- ``available``: spendable now;
- ``pending``: earned but inside the return window (``available_at`` not reached);
- ``held``: reserved by a checkout hold (taken out of its lots, not yet redeemed);
- ``debt``: owed after a clawback found too few points; paid from the next points
  that become available. ``debt > 0`` implies ``available == 0``.

An entry's ``amount`` is the change of what the member owns:
``available + pending + held - debt``. Rules:

- Redemptions, holds, negative adjustments and settlements take points from AVAILABLE
  lots, soonest expiry first, never-expiring lots last (then oldest first).
- A clawback takes from the lots earned by its ``ref`` first (pending ones first), then
  from other available lots; what is still missing becomes debt.
- A reversal (cancelled redemption) or release (of a hold) gives the points back to
  exactly the lots they came from. A lot that has expired meanwhile does not revive: the
  points returned to it expire at once, with an ``expire`` entry of the same event.
- Whenever points become available while a debt is open, they pay it first (``settle``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from patron.loyalty.models import Currency, EntryKind, HoldState

# Largest amount of one entry: far beyond any programme, and sums still fit BIGINT.
MAX_AMOUNT = 10**12


class LedgerRuleError(ValueError):
    """An operation the ledger's rules refuse."""


class Shortfall(LedgerRuleError):
    def __init__(self, currency: Currency, requested: int, available: int) -> None:
        super().__init__(
            f"insufficient {currency.value}: {requested} requested, {available} available"
        )
        self.currency = currency
        self.requested = requested
        self.available = available


class HoldNotOpen(LedgerRuleError):
    pass


@dataclass
class Buckets:
    available: int = 0
    pending: int = 0
    held: int = 0
    debt: int = 0

    @property
    def owned(self) -> int:
        return self.available + self.pending + self.held - self.debt


@dataclass(frozen=True)
class Delta:
    available: int = 0
    pending: int = 0
    held: int = 0
    debt: int = 0

    @property
    def amount(self) -> int:
        return self.available + self.pending + self.held - self.debt


@dataclass(eq=False)
class Lot:
    """An earned lot. ``id`` is negative until the lot is stored."""

    id: int
    currency: Currency
    amount: int
    remaining: int
    pending: bool
    available_at: datetime
    expires_at: datetime | None
    ref: str | None = None
    created_by: Staged | None = None  # the staged entry that creates it

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def spendable(self, now: datetime) -> bool:
        return not self.pending and self.remaining > 0 and not self.expired(now)


@dataclass(eq=False)
class Hold:
    id: int  # negative until stored
    entry_id: int | None  # the hold entry; None until stored
    amount: int
    expires_at: datetime | None
    state: HoldState
    uses: list[tuple[int, int]]  # (lot id, points taken)
    staged: Staged | None = None  # the hold entry, when created in this book
    resolved_by: Staged | None = None


@dataclass(eq=False)
class Staged:
    """An entry staged by an operation, stored by the service."""

    kind: EntryKind
    currency: Currency
    delta: Delta
    reason: str
    ref: str | None = None
    target_id: int | None = None
    available_at: datetime | None = None
    expires_at: datetime | None = None
    uses: list[tuple[Lot, int]] = field(default_factory=list)
    creates: Lot | None = None
    id: int | None = None  # set once stored


@dataclass
class Changes:
    """What one event staged: entries in order, and the lots and holds it touched."""

    entries: list[Staged]
    new_lots: list[Lot]
    changed_lots: list[Lot]
    new_holds: list[Hold]
    changed_holds: list[Hold]


def spend_order(lots: list[Lot], now: datetime) -> list[Lot]:
    """Available lots in the order redemptions consume them: soonest expiry first,
    never-expiring last, then the oldest (earliest available, lowest id)."""
    return sorted(
        (lot for lot in lots if lot.spendable(now)),
        key=lambda lot: (
            lot.expires_at is None,
            lot.expires_at or lot.available_at,
            lot.available_at,
            lot.id if lot.id > 0 else 2**62 - lot.id,
        ),
    )


def plan_take(lots: list[Lot], amount: int) -> list[tuple[Lot, int]]:
    """Split ``amount`` over ``lots`` in their order; less if they hold less."""
    plan: list[tuple[Lot, int]] = []
    left = amount
    for lot in lots:
        if left == 0:
            break
        take = min(left, lot.remaining)
        if take > 0:
            plan.append((lot, take))
            left -= take
    return plan


def check_amount(name: str, value: int, *, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_AMOUNT:
        raise LedgerRuleError(f"{name}: must be an integer from {low} to {MAX_AMOUNT}")


def check_window(now: datetime, available_at: datetime, expires_at: datetime | None) -> None:
    if expires_at is not None and expires_at <= max(now, available_at):
        raise LedgerRuleError("expires_at: must be later than now and than available_at")


def breakage(expired: int, earned: int) -> Decimal | None:
    """Share of earned points that expired unused; None before anything was earned."""
    if earned <= 0:
        return None
    return (Decimal(expired) / Decimal(earned)).quantize(Decimal("0.0001"))


class Book:
    """One member's balances, lots and holds in memory, with the ledger's rules."""

    def __init__(
        self,
        balances: dict[Currency, Buckets],
        lots: list[Lot],
        holds: list[Hold],
    ) -> None:
        self.balances = {c: dataclasses.replace(balances.get(c, Buckets())) for c in Currency}
        self.lots: dict[int, Lot] = {lot.id: lot for lot in lots}
        self.holds: dict[int, Hold] = {hold.id: hold for hold in holds}
        self._next_tmp = -1
        self._reset()

    # -- bookkeeping -------------------------------------------------------------------

    def _reset(self) -> None:
        self._staged: list[Staged] = []
        self._new_lots: list[Lot] = []
        self._changed_lots: dict[int, Lot] = {}
        self._new_holds: list[Hold] = []
        self._changed_holds: dict[int, Hold] = {}

    def add_lots(self, lots: list[Lot]) -> None:
        for lot in lots:
            self.lots.setdefault(lot.id, lot)

    def drain(self) -> Changes:
        """What was staged since the last drain; the book keeps its new state."""
        changes = Changes(
            self._staged,
            self._new_lots,
            [lot for lot in self._changed_lots.values() if lot.id > 0],
            self._new_holds,
            [hold for hold in self._changed_holds.values() if hold.id > 0],
        )
        self._reset()
        return changes

    def lot_stored(self, lot: Lot, lot_id: int) -> None:
        del self.lots[lot.id]
        lot.id = lot_id
        self.lots[lot_id] = lot

    def hold_stored(self, hold: Hold, hold_id: int, entry_id: int) -> None:
        del self.holds[hold.id]
        hold.id, hold.entry_id = hold_id, entry_id
        self.holds[hold_id] = hold

    def hold_of_entry(self, entry_id: int) -> Hold | None:
        return next((h for h in self.holds.values() if h.entry_id == entry_id), None)

    def _tmp_id(self) -> int:
        self._next_tmp -= 1
        return self._next_tmp

    def _post(self, entry: Staged) -> Staged:
        b = self.balances[entry.currency]
        d = entry.delta
        b.available += d.available
        b.pending += d.pending
        b.held += d.held
        b.debt += d.debt
        if min(b.available, b.pending, b.held, b.debt) < 0:  # a bug, never a user error
            raise AssertionError(f"{entry.kind} would make a {entry.currency} balance negative")
        for lot, amount in entry.uses:
            lot.remaining -= amount
            if not 0 <= lot.remaining <= lot.amount:
                raise AssertionError(f"{entry.kind} would take lot {lot.id} out of bounds")
            self._touch(lot)
        self._staged.append(entry)
        return entry

    def _touch(self, lot: Lot) -> None:
        if lot.id > 0:
            self._changed_lots[lot.id] = lot

    def _lots(self, currency: Currency) -> list[Lot]:
        return [lot for lot in self.lots.values() if lot.currency == currency]

    # -- operations --------------------------------------------------------------------

    def earn(
        self,
        currency: Currency,
        amount: int,
        now: datetime,
        *,
        available_at: datetime,
        expires_at: datetime | None,
        reason: str,
        ref: str | None,
        kind: EntryKind = EntryKind.earn,
    ) -> Staged:
        """Credit a new lot, pending until ``available_at``; pays a debt if available."""
        pending = available_at > now
        lot = Lot(self._tmp_id(), currency, amount, amount, pending, available_at, expires_at, ref)
        delta = Delta(pending=amount) if pending else Delta(available=amount)
        entry = Staged(
            kind,
            currency,
            delta,
            reason,
            ref,
            available_at=available_at,
            expires_at=expires_at,
            creates=lot,
        )
        lot.created_by = entry
        self.lots[lot.id] = lot
        self._new_lots.append(lot)
        self._post(entry)
        if not pending:
            self.settle(currency, now)
        return entry

    def take(
        self,
        currency: Currency,
        amount: int,
        now: datetime,
        *,
        kind: EntryKind,
        reason: str,
        ref: str | None = None,
        into_held: bool = False,
    ) -> Staged:
        """Take available points (redeem, hold, negative adjust), or raise Shortfall."""
        available = self.balances[currency].available
        if amount > available:
            raise Shortfall(currency, amount, available)
        plan = plan_take(spend_order(self._lots(currency), now), amount)
        if sum(n for _, n in plan) != amount:  # cached balance and lots disagree: a bug
            raise AssertionError(f"lots of {currency} hold less than the available balance")
        delta = Delta(available=-amount, held=amount if into_held else 0)
        return self._post(Staged(kind, currency, delta, reason, ref, uses=plan))

    def hold(
        self,
        amount: int,
        now: datetime,
        *,
        expires_at: datetime | None,
        reason: str,
        ref: str | None,
    ) -> Hold:
        entry = self.take(
            Currency.points,
            amount,
            now,
            kind=EntryKind.hold,
            reason=reason,
            ref=ref,
            into_held=True,
        )
        entry.expires_at = expires_at
        hold = Hold(
            self._tmp_id(),
            None,
            amount,
            expires_at,
            HoldState.open,
            [(lot.id, n) for lot, n in entry.uses],
            staged=entry,
        )
        self.holds[hold.id] = hold
        self._new_holds.append(hold)
        return hold

    def capture(self, hold: Hold, now: datetime, *, reason: str, ref: str | None) -> Staged:
        """The held points become a redemption."""
        self._resolve(hold, HoldState.captured)
        entry = self._post(
            Staged(
                EntryKind.redeem,
                Currency.points,
                Delta(held=-hold.amount),
                reason,
                ref,
                target_id=hold.entry_id,
            )
        )
        hold.resolved_by = entry
        return entry

    def release(self, hold: Hold, now: datetime, *, reason: str) -> Staged:
        """The held points go back to their lots (and expire there if the lot has)."""
        self._resolve(hold, HoldState.released)
        entry = self.restore(
            hold.uses,
            now,
            kind=EntryKind.release,
            reason=reason,
            target_id=hold.entry_id,
            from_held=True,
        )
        hold.resolved_by = entry
        return entry

    def _resolve(self, hold: Hold, state: HoldState) -> None:
        if hold.state != HoldState.open:
            raise HoldNotOpen(f"the hold is already {hold.state.value}")
        hold.state = state
        if hold.id > 0:
            self._changed_holds[hold.id] = hold

    def restore(
        self,
        uses: list[tuple[int, int]],
        now: datetime,
        *,
        kind: EntryKind,
        reason: str,
        target_id: int | None,
        from_held: bool = False,
    ) -> Staged:
        """Give points back to exactly the lots they were taken from (reversal, release)."""
        back = [(self.lots[lot_id], -n) for lot_id, n in uses]
        total = sum(n for _, n in uses)
        delta = Delta(available=total, held=-total if from_held else 0)
        entry = self._post(
            Staged(kind, Currency.points, delta, reason, target_id=target_id, uses=back)
        )
        for lot in dict.fromkeys(lot for lot, _ in back):
            if lot.expired(now) and lot.remaining > 0:
                self.expire(lot, now, reason="points returned to an expired lot expire")
        self.settle(Currency.points, now)
        return entry

    def clawback(
        self, currency: Currency, amount: int, now: datetime, *, ref: str | None, reason: str
    ) -> Staged:
        """Take back earned points (refund, cancellation); what is missing becomes debt."""
        lots = self._lots(currency)
        own = [lot for lot in lots if ref is not None and lot.ref == ref]
        own_pending = sorted(
            (lot for lot in own if lot.pending and lot.remaining > 0), key=lambda lot: lot.id
        )
        order = own_pending + spend_order(own, now)
        order += [lot for lot in spend_order(lots, now) if lot not in order]
        plan = plan_take(order, amount)
        from_pending = sum(n for lot, n in plan if lot.pending)
        from_available = sum(n for lot, n in plan if not lot.pending)
        owed = amount - from_pending - from_available
        delta = Delta(available=-from_available, pending=-from_pending, debt=owed)
        return self._post(Staged(EntryKind.clawback, currency, delta, reason, ref, uses=plan))

    def nothing(self, currency: Currency, kind: EntryKind, reason: str, ref: str | None) -> Staged:
        """An entry that moves nothing: records an event (and its key) that had no effect."""
        return self._post(Staged(kind, currency, Delta(), reason, ref))

    def mature(self, lot: Lot, now: datetime) -> Staged | None:
        """A pending lot becomes available; pays a debt first."""
        lot.pending = False
        self._touch(lot)
        if lot.remaining == 0:  # clawed back before it matured
            return None
        delta = Delta(available=lot.remaining, pending=-lot.remaining)
        entry = self._post(
            Staged(EntryKind.mature, lot.currency, delta, "points became available", lot.ref)
        )
        self.settle(lot.currency, now)
        return entry

    def expire(self, lot: Lot, now: datetime, *, reason: str = "points expired") -> Staged:
        n = lot.remaining
        delta = Delta(pending=-n) if lot.pending else Delta(available=-n)
        return self._post(
            Staged(EntryKind.expire, lot.currency, delta, reason, lot.ref, uses=[(lot, n)])
        )

    def settle(self, currency: Currency, now: datetime) -> Staged | None:
        """Pay an open debt from available points."""
        b = self.balances[currency]
        n = min(b.debt, b.available)
        if n <= 0:
            return None
        plan = plan_take(spend_order(self._lots(currency), now), n)
        return self._post(
            Staged(
                EntryKind.settle,
                currency,
                Delta(available=-n, debt=-n),
                "debt paid from new points",
                uses=plan,
            )
        )

    # -- what is due -------------------------------------------------------------------

    def due_to_mature(self, now: datetime) -> list[Lot]:
        due = [lot for lot in self.lots.values() if lot.pending and lot.available_at <= now]
        return sorted(due, key=lambda lot: (lot.available_at, lot.id))

    def due_to_expire(self, now: datetime) -> list[Lot]:
        due = [lot for lot in self.lots.values() if lot.remaining > 0 and lot.expired(now)]
        return sorted(due, key=lambda lot: (lot.expires_at, lot.id))

    def due_holds(self, now: datetime) -> list[Hold]:
        due = [
            hold
            for hold in self.holds.values()
            if hold.state == HoldState.open
            and hold.expires_at is not None
            and hold.expires_at <= now
        ]
        return sorted(due, key=lambda hold: (hold.expires_at, hold.id))

    def open_holds(self) -> list[Hold]:
        return [hold for hold in self.holds.values() if hold.state == HoldState.open]


def invariant_violations(
    cached: dict[Currency, Buckets],
    from_entries: dict[Currency, Buckets],
    lots: list[Lot],
    lot_used: dict[int, int],
    open_holds: list[Hold],
    entry_moves: list[tuple[int, int, int, int]],
) -> list[str]:
    """Everything that disagrees between the cached balances, the entries and the lots.

    ``lot_used`` is the net amount the entries took from each lot. ``entry_moves`` has,
    per entry, (id, available + pending delta, amount of the lot it created, net amount
    it took from lots): an entry moves in or out of the lots exactly what its deltas say.
    """
    problems = [
        f"entry {entry_id}: available+pending moved {moved} but lots moved {created - used}"
        for entry_id, moved, created, used in entry_moves
        if moved != created - used
    ]
    for currency in Currency:
        c = cached.get(currency, Buckets())
        e = from_entries.get(currency, Buckets())
        for name in ("available", "pending", "held", "debt"):
            if getattr(c, name) < 0:
                problems.append(f"{currency} {name} is negative: {getattr(c, name)}")
            if getattr(c, name) != getattr(e, name):
                problems.append(
                    f"{currency} {name}: cached {getattr(c, name)} != entries {getattr(e, name)}"
                )
        mine = [lot for lot in lots if lot.currency == currency]
        in_lots = sum(lot.remaining for lot in mine if not lot.pending)
        if c.available != in_lots:
            problems.append(f"{currency} available {c.available} != available lots {in_lots}")
        pending = sum(lot.remaining for lot in mine if lot.pending)
        if c.pending != pending:
            problems.append(f"{currency} pending {c.pending} != pending lots {pending}")
        if c.debt > 0 and c.available > 0:
            problems.append(f"{currency} has debt {c.debt} and {c.available} available")
    held = sum(hold.amount for hold in open_holds)
    if cached.get(Currency.points, Buckets()).held != held:
        problems.append(f"points held != open holds {held}")
    for lot in lots:
        if not 0 <= lot.remaining <= lot.amount:
            problems.append(f"lot {lot.id}: remaining {lot.remaining} of {lot.amount}")
        if lot.remaining != lot.amount - lot_used.get(lot.id, 0):
            problems.append(
                f"lot {lot.id}: remaining {lot.remaining} != amount {lot.amount} - "
                f"uses {lot_used.get(lot.id, 0)}"
            )
    return problems
