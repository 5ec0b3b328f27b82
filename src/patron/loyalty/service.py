"""The points ledger: every change of a member's points and growth goes through here.

Each write is one business event with an idempotency key. It locks the member's account,
replays the first result if the key was seen (or refuses a different payload with 409),
brings the account up to date (matures, expires, releases expired holds), applies the
ledger rules of ``ledger.py`` and appends the entries. Services flush, never commit: the
caller's unit of work makes the event atomic with whatever else it does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.orm import Session

from patron.errors import Conflict, Invalid, NotFound
from patron.kit.clock import as_utc, utcnow
from patron.kit.hashing import payload_hash
from patron.kit.money import exponent
from patron.loyalty import repository as repo
from patron.loyalty.ledger import (
    Book,
    Buckets,
    Changes,
    Hold,
    HoldNotOpen,
    LedgerRuleError,
    Lot,
    Shortfall,
    Staged,
    breakage,
    check_amount,
    check_window,
    invariant_violations,
)
from patron.loyalty.models import Currency, EntryKind, HoldState
from patron.loyalty.repository import BALANCE_COLUMNS, Account
from patron.stores.models import Store

# Keys of events the ledger writes itself (maturity, expiry, hold timeouts).
RESERVED_PREFIX = "patron:"
HOLD_TTL = timedelta(minutes=30)
MAX_KEY = 255


class InsufficientPoints(Conflict):
    slug, title = "insufficient-points", "Insufficient points"


class KeyReused(Conflict):
    slug, title = "idempotency-key-reused", "Idempotency key reused"


@dataclass(frozen=True)
class EntryView:
    id: int
    kind: EntryKind
    currency: Currency
    amount: int
    available_delta: int
    pending_delta: int
    held_delta: int
    debt_delta: int
    reason: str
    ref: str | None
    target_id: int | None
    available_at: datetime | None
    expires_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, e: Any) -> EntryView:
        """From an entry row."""
        return cls(
            e.id,
            e.kind,
            e.currency,
            e.amount,
            e.available_delta,
            e.pending_delta,
            e.held_delta,
            e.debt_delta,
            e.reason,
            e.ref,
            e.target_id,
            e.available_at,
            e.expires_at,
            e.created_at,
        )


@dataclass(frozen=True)
class Posting:
    """The result of one event: its entries, and whether this call was a replay."""

    key: str
    replayed: bool
    entries: list[EntryView]

    @property
    def entry_ids(self) -> list[int]:
        return [e.id for e in self.entries]


@dataclass(frozen=True)
class Balance:
    customer_id: int
    points_available: int = 0
    points_pending: int = 0
    points_held: int = 0
    debt: int = 0
    growth: int = 0
    growth_pending: int = 0
    growth_debt: int = 0
    version: int = 0


@dataclass(frozen=True)
class ExpiringPoints:
    customer_id: int
    points: int
    first_expiry: datetime


@dataclass(frozen=True)
class Liability:
    currency: str
    cost_per_point: Decimal
    members: int
    points_outstanding: int  # available + held: redeemable now or at checkout
    points_pending: int
    points_debt: int
    outstanding_value: Decimal
    pending_value: Decimal
    points_earned: int
    points_redeemed: int  # net of reversals
    points_expired: int
    points_clawed_back: int
    points_adjusted: int  # net
    breakage_rate: Decimal | None  # expired / earned


def _now(now: datetime | None) -> datetime:
    return utcnow() if now is None else as_utc(now)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


def _check_key(key: str, name: str = "idempotency_key") -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY:
        raise Invalid(f"{name}: must be 1 to {MAX_KEY} characters")
    if key.startswith(RESERVED_PREFIX):
        raise Invalid(f"{name}: keys starting with {RESERVED_PREFIX!r} are reserved")


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason or len(reason) > 255:
        raise Invalid("reason: required, at most 255 characters")
    return reason


def _amount(name: str, value: int, *, allow_zero: bool = False, signed: bool = False) -> None:
    try:
        check_amount(name, abs(value) if signed else value, allow_zero=allow_zero)
    except LedgerRuleError as exc:
        raise Invalid(str(exc)) from exc


def _lot(row: Any) -> Lot:
    return Lot(
        row.id,
        row.currency,
        row.amount,
        row.remaining,
        row.pending,
        row.available_at,
        row.expires_at,
        row.ref,
    )


def _buckets(account: Account) -> dict[Currency, Buckets]:
    return {
        Currency.points: Buckets(
            account.points_available, account.points_pending, account.points_held, account.debt
        ),
        Currency.growth: Buckets(account.growth, account.growth_pending, 0, account.growth_debt),
    }


@dataclass(frozen=True)
class Earning:
    """One earning of ``earn_many`` (the arguments of ``earn``)."""

    customer_id: int
    key: str
    points: int = 0
    growth: int = 0
    reason: str = "earned"
    ref: str | None = None
    available_at: datetime | None = None
    expires_at: datetime | None = None
    growth_expires_at: datetime | None = None


def _balance(customer_id: int, account: Account | None) -> Balance:
    if account is None:
        return Balance(customer_id)
    return Balance(
        customer_id,
        account.points_available,
        account.points_pending,
        account.points_held,
        account.debt,
        account.growth,
        account.growth_pending,
        account.growth_debt,
        account.version,
    )


def _earning_payload(e: Earning) -> dict[str, Any]:
    """Check an earning; what identifies it for idempotency."""
    reason = _check_reason(e.reason)
    _amount("points", e.points, allow_zero=True)
    _amount("growth", e.growth, allow_zero=True)
    if e.points == 0 and e.growth == 0:
        raise Invalid("points: points or growth must be positive")
    return {
        "points": e.points,
        "growth": e.growth,
        "reason": reason,
        "ref": e.ref,
        "available_at": _iso(e.available_at),
        "expires_at": _iso(e.expires_at),
        "growth_expires_at": _iso(e.growth_expires_at),
    }


def _apply_earning(book: Book, e: Earning, now: datetime) -> None:
    start = now if e.available_at is None else as_utc(e.available_at)
    for currency, amount, expiry in (
        (Currency.points, e.points, e.expires_at),
        (Currency.growth, e.growth, e.growth_expires_at),
    ):
        if amount:
            expires = None if expiry is None else as_utc(expiry)
            check_window(now, start, expires)
            book.earn(
                currency,
                amount,
                now,
                available_at=start,
                expires_at=expires,
                reason=e.reason.strip(),
                ref=e.ref,
            )


class LedgerService:
    # -- events --------------------------------------------------------------------------

    def earn(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        *,
        key: str,
        points: int = 0,
        growth: int = 0,
        reason: str,
        ref: str | None = None,
        available_at: datetime | None = None,
        expires_at: datetime | None = None,
        growth_expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> Posting:
        """Credit points and/or growth, pending until ``available_at`` (the return window,
        default now), each lot expiring at ``expires_at`` (None: never)."""
        earning = Earning(
            customer_id,
            key,
            points,
            growth,
            reason,
            ref,
            available_at,
            expires_at,
            growth_expires_at,
        )
        payload = _earning_payload(earning)
        now = _now(now)

        def apply(book: Book, account: Account) -> None:
            _apply_earning(book, earning, now)

        return self._event(session, store, customer_id, "earn", key, payload, now, apply)

    def earn_many(
        self,
        session: Session,
        store: Store,
        earnings: Sequence[Earning],
        now: datetime | None = None,
    ) -> list[Posting]:
        """Many earnings at once (bulk imports, order batches), in a few statements.

        Same rules and results as calling ``earn`` for each in turn (replays included,
        also of a key repeated within the batch); all or nothing: an invalid earning
        raises, naming its index. The members' accounts are locked together, in id order.
        """
        now = _now(now)
        digests: list[str] = []
        for index, earning in enumerate(earnings):
            try:
                _check_key(earning.key)
                payload = _earning_payload(earning)
            except Invalid as exc:
                raise Invalid(f"earnings.{index}.{exc.detail}") from exc
            digests.append(
                payload_hash({"op": "earn", "customer_id": earning.customer_id, **payload})
            )
        customer_ids = sorted({e.customer_id for e in earnings})
        accounts = self._lock_many(session, store, customer_ids, now) if earnings else {}
        seen = repo.entries_by_keys(session, store.id, [e.key for e in earnings])
        results: list[Posting | None] = [None] * len(earnings)
        first: dict[str, int] = {}
        fresh: list[int] = []
        for index, earning in enumerate(earnings):
            if earning.key in seen:
                results[index] = _replay(earning.key, digests[index], seen[earning.key])
            elif earning.key in first:
                if digests[first[earning.key]] != digests[index]:
                    raise KeyReused(
                        f"earnings.{index}: idempotency key {earning.key!r} is used for "
                        "two different events in this batch"
                    )
            else:
                first[earning.key] = index
                fresh.append(index)
        touched = sorted({accounts[earnings[i].customer_id] for i in fresh}, key=lambda a: a.id)
        books = self._load_books(session, touched, due_by=now)
        events = [e for a in touched for e in self._catch_up(a, books[a.id], now)]
        mains: dict[int, _Event] = {}
        for index in fresh:
            earning = earnings[index]
            account = accounts[earning.customer_id]
            book = books[account.id]
            try:
                _apply_earning(book, earning, now)
            except LedgerRuleError as exc:
                raise Invalid(f"earnings.{index}.{exc}") from exc
            mains[index] = _Event(
                account, book, earning.key, digests[index], book.drain(), claim=True
            )
            events.append(mains[index])
        stored = self._store(session, events, now)
        self._save(session, [(a, books[a.id]) for a in touched], now)
        position = {id(event): n for n, event in enumerate(events)}
        for index, event in mains.items():
            results[index] = Posting(event.key, False, stored[position[id(event)]])
        for index, earning in enumerate(earnings):
            if results[index] is None:  # a repeat, within the batch, of an earlier earning
                done = results[first[earning.key]]
                assert done is not None
                results[index] = Posting(earning.key, True, done.entries)
        return [r for r in results if r is not None]

    def redeem(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        *,
        key: str,
        points: int,
        reason: str,
        ref: str | None = None,
        now: datetime | None = None,
    ) -> Posting:
        """Spend available points at once (a reward, points-as-cash without a hold)."""
        now = _now(now)
        reason = _check_reason(reason)
        _amount("points", points)
        payload = {"points": points, "reason": reason, "ref": ref}

        def apply(book: Book, account: Account) -> None:
            book.take(Currency.points, points, now, kind=EntryKind.redeem, reason=reason, ref=ref)

        return self._event(session, store, customer_id, "redeem", key, payload, now, apply)

    def hold(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        *,
        key: str,
        points: int,
        reason: str,
        ref: str | None = None,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> Posting:
        """Reserve points for a checkout until captured or released (or ``expires_at``,
        default 30 minutes). The hold is named by ``key`` in capture and release."""
        now = _now(now)
        reason = _check_reason(reason)
        _amount("points", points)
        until = now + HOLD_TTL if expires_at is None else as_utc(expires_at)
        payload = {"points": points, "reason": reason, "ref": ref, "expires_at": _iso(expires_at)}

        def apply(book: Book, account: Account) -> None:
            if until <= now:
                raise Invalid("expires_at: must be in the future")
            book.hold(points, now, expires_at=until, reason=reason, ref=ref)

        return self._event(session, store, customer_id, "hold", key, payload, now, apply)

    def capture(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        *,
        key: str,
        hold_key: str,
        reason: str = "checkout completed",
        ref: str | None = None,
        now: datetime | None = None,
    ) -> Posting:
        """The held points become a redemption (reversible with ``reverse``)."""
        now = _now(now)
        reason = _check_reason(reason)
        payload = {"hold_key": hold_key, "reason": reason, "ref": ref}

        def apply(book: Book, account: Account) -> None:
            hold = self._open_hold(session, store, account, book, hold_key)
            _resolve(lambda: book.capture(hold, now, reason=reason, ref=ref))

        return self._event(session, store, customer_id, "capture", key, payload, now, apply)

    def release(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        *,
        key: str,
        hold_key: str,
        reason: str = "checkout abandoned",
        now: datetime | None = None,
    ) -> Posting:
        """The held points go back to the lots they came from."""
        now = _now(now)
        reason = _check_reason(reason)
        payload = {"hold_key": hold_key, "reason": reason}

        def apply(book: Book, account: Account) -> None:
            hold = self._open_hold(session, store, account, book, hold_key)
            _resolve(lambda: book.release(hold, now, reason=reason))

        return self._event(session, store, customer_id, "release", key, payload, now, apply)

    def reverse(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        *,
        key: str,
        original_key: str,
        reason: str = "redemption cancelled",
        now: datetime | None = None,
    ) -> Posting:
        """Undo a redemption (direct or a captured hold) exactly: its points go back to the
        lots they came from; points of a lot that expired meanwhile expire at once."""
        now = _now(now)
        reason = _check_reason(reason)
        payload = {"original_key": original_key, "reason": reason}

        def apply(book: Book, account: Account) -> None:
            original = [
                e
                for e in repo.entries_by_key(session, store.id, original_key)
                if e.account_id == account.id
            ]
            redeem = next((e for e in original if e.kind == EntryKind.redeem), None)
            if redeem is None:
                if not original:
                    raise NotFound(f"no event with key {original_key!r} for this member")
                raise Invalid("original_key: only a redemption can be reversed")
            done = repo.entry_resolving(session, redeem.id)
            if done is not None:
                raise Conflict(
                    f"the redemption {original_key!r} was already reversed "
                    f"(key {done.idempotency_key!r})"
                )
            source = redeem.target_id or redeem.id  # a capture's points left at the hold
            uses = repo.uses_of_entries(session, [source])[source]
            self._load_lots(session, book, [lot_id for lot_id, _ in uses])
            book.restore(uses, now, kind=EntryKind.reverse, reason=reason, target_id=redeem.id)

        return self._event(session, store, customer_id, "reverse", key, payload, now, apply)

    def clawback(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        *,
        key: str,
        points: int = 0,
        growth: int = 0,
        ref: str | None,
        reason: str,
        limit_to_ref: bool = True,
        now: datetime | None = None,
    ) -> Posting:
        """Take back earned points and growth (refund, cancellation), once per ``key``.

        Takes from the lots earned by ``ref`` (the ORDER's external id) first, then from
        other available points; what is missing becomes debt, paid from the next points
        that become available. With ``limit_to_ref`` (default) never takes back more than
        ``ref`` earned net of earlier clawbacks.
        """
        now = _now(now)
        reason = _check_reason(reason)
        _amount("points", points, allow_zero=True)
        _amount("growth", growth, allow_zero=True)
        if points == 0 and growth == 0:
            raise Invalid("points: points or growth must be positive")
        payload = {
            "points": points,
            "growth": growth,
            "ref": ref,
            "reason": reason,
            "limit_to_ref": limit_to_ref,
        }

        def apply(book: Book, account: Account) -> None:
            net = repo.net_by_ref(session, account.id, ref) if limit_to_ref and ref else None
            posted = False
            for currency, amount in ((Currency.points, points), (Currency.growth, growth)):
                if net is not None:
                    amount = min(amount, max(net.get(currency, 0), 0))
                if amount > 0:
                    book.clawback(currency, amount, now, ref=ref, reason=reason)
                    posted = True
            if not posted:  # nothing left to take back: the event is still recorded once
                book.nothing(Currency.points, EntryKind.clawback, reason, ref)

        return self._event(session, store, customer_id, "clawback", key, payload, now, apply)

    def adjust(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        *,
        key: str,
        points: int = 0,
        growth: int = 0,
        reason: str,
        api_key_id: int | None = None,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> Posting:
        """An admin correction (+/-), with a reason and the API key that made it.

        A credit is a new lot (expiring at ``expires_at``, default never); a debit takes
        available points and is refused beyond them.
        """
        now = _now(now)
        reason = _check_reason(reason)
        _amount("points", points, allow_zero=True, signed=True)
        _amount("growth", growth, allow_zero=True, signed=True)
        if points == 0 and growth == 0:
            raise Invalid("points: points or growth must be non-zero")
        payload = {
            "points": points,
            "growth": growth,
            "reason": reason,
            "expires_at": _iso(expires_at),
        }

        def apply(book: Book, account: Account) -> None:
            check_window(now, now, None if expires_at is None else as_utc(expires_at))
            for currency, amount in ((Currency.points, points), (Currency.growth, growth)):
                if amount > 0:
                    book.earn(
                        currency,
                        amount,
                        now,
                        available_at=now,
                        expires_at=None if expires_at is None else as_utc(expires_at),
                        reason=reason,
                        ref=None,
                        kind=EntryKind.adjust,
                    )
                elif amount < 0:
                    book.take(currency, -amount, now, kind=EntryKind.adjust, reason=reason)

        return self._event(
            session, store, customer_id, "adjust", key, payload, now, apply, api_key_id
        )

    # -- jobs ----------------------------------------------------------------------------

    def mature(
        self,
        session: Session,
        now: datetime | None = None,
        store_id: int | None = None,
        limit: int = 500,
    ) -> int:
        """Job: pending points whose ``available_at`` passed become available (paying any
        debt first). Brings each affected account fully up to date. Returns the number of
        entries written; run again while it is > 0. Safe to run twice or concurrently."""
        now = _now(now)
        ids = repo.accounts_due_to_mature(session, now, store_id, limit)
        return self._catch_up_accounts(session, ids, now)

    def expire(
        self,
        session: Session,
        now: datetime | None = None,
        store_id: int | None = None,
        limit: int = 500,
    ) -> int:
        """Job: what is left of lots past ``expires_at`` expires, one entry per lot."""
        now = _now(now)
        ids = repo.accounts_due_to_expire(session, now, store_id, limit)
        return self._catch_up_accounts(session, ids, now)

    def release_expired_holds(
        self,
        session: Session,
        now: datetime | None = None,
        store_id: int | None = None,
        limit: int = 500,
    ) -> int:
        """Job: open holds past their ``expires_at`` are released."""
        now = _now(now)
        ids = repo.accounts_with_expired_holds(session, now, store_id, limit)
        return self._catch_up_accounts(session, ids, now)

    def expiring_soon(
        self,
        session: Session,
        store: Store,
        within: timedelta = timedelta(days=30),
        now: datetime | None = None,
        limit: int = 1000,
        after_customer_id: int | None = None,
    ) -> list[ExpiringPoints]:
        """Members with points expiring within ``within``: for reminders (page by
        ``after_customer_id``)."""
        now = _now(now)
        rows = repo.expiring_by_customer(
            session, store.id, now, now + within, limit, after_customer_id
        )
        return [ExpiringPoints(cid, int(points), as_utc(first)) for cid, points, first in rows]

    # -- reads ---------------------------------------------------------------------------

    def customer_id(self, session: Session, store: Store, external_id: str) -> int:
        found = repo.customer_id_by_external_id(session, store.id, external_id)
        if found is None:
            raise NotFound(f"No customer with external id {external_id!r} in this store.")
        return found

    def require_member(self, session: Session, store: Store, customer_id: int) -> None:
        if not repo.customer_in_store(session, store.id, customer_id):
            raise NotFound("This member no longer exists.")

    def balance(self, session: Session, store: Store, customer_id: int) -> Balance:
        """Cached balances (zeros before the first entry)."""
        return _balance(customer_id, repo.get_account(session, store.id, customer_id))

    def expiring(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        within: timedelta = timedelta(days=30),
        now: datetime | None = None,
    ) -> list[tuple[datetime, int]]:
        """(expiry, points) of the member's points expiring within ``within``."""
        return self.balance_and_expiring(session, store, customer_id, within, now)[1]

    def balance_and_expiring(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        within: timedelta = timedelta(days=30),
        now: datetime | None = None,
    ) -> tuple[Balance, list[tuple[datetime, int]]]:
        """``balance`` and ``expiring`` together, reading the account once."""
        now = _now(now)
        account, expiring = repo.account_and_expiring(
            session, store.id, customer_id, now, now + within
        )
        return _balance(customer_id, account), [(as_utc(at), n) for at, n in expiring]

    def history(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        limit: int = 50,
        before: int | None = None,
    ) -> list[EntryView]:
        """The member's entries, newest first; page with ``before`` = last id seen."""
        account = repo.get_account(session, store.id, customer_id)
        if account is None:
            return []
        return [EntryView.of(e) for e in repo.history(session, store.id, account.id, limit, before)]

    def liability(self, session: Session, store: Store, cost_per_point: Decimal) -> Liability:
        """Outstanding points valued at ``cost_per_point`` (store currency), and breakage."""
        sums = repo.store_balances(session, store.id)
        kinds = repo.store_totals_by_kind(session, store.id, Currency.points)
        quantum = Decimal(1).scaleb(-exponent(store.currency))

        def value(points: int) -> Decimal:
            return (cost_per_point * points).quantize(quantum, rounding=ROUND_HALF_UP)

        outstanding = sums["points_available"] + sums["points_held"]
        earned = kinds.get(EntryKind.earn, 0)
        expired = -kinds.get(EntryKind.expire, 0)
        return Liability(
            currency=store.currency,
            cost_per_point=cost_per_point,
            members=sums["members"],
            points_outstanding=outstanding,
            points_pending=sums["points_pending"],
            points_debt=sums["debt"],
            outstanding_value=value(outstanding),
            pending_value=value(sums["points_pending"]),
            points_earned=earned,
            points_redeemed=-(kinds.get(EntryKind.redeem, 0) + kinds.get(EntryKind.reverse, 0)),
            points_expired=expired,
            points_clawed_back=-kinds.get(EntryKind.clawback, 0),
            points_adjusted=kinds.get(EntryKind.adjust, 0),
            breakage_rate=breakage(expired, earned),
        )

    def check_invariants(self, session: Session, store: Store, customer_id: int) -> list[str]:
        """What disagrees between the cached balances, the entries, the lots and the holds
        of one member; an empty list when the ledger is consistent. Reads under the
        account lock: a change committing between two of its reads would look like a
        mismatch."""
        account = repo.lock_account(session, store.id, customer_id)
        if account is None:
            return []
        sums = repo.bucket_sums(session, account.id)
        from_entries = {c: Buckets(*sums.get(c, (0, 0, 0, 0))) for c in Currency}
        lots = [_lot(row) for row in repo.all_lots(session, account.id)]
        holds = [
            Hold(h.id, h.entry_id, h.amount, h.expires_at, h.state, [])
            for h in repo.open_holds(session, [account.id])
        ]
        problems = invariant_violations(
            _buckets(account),
            from_entries,
            lots,
            repo.used_by_lot(session, account.id),
            holds,
            repo.entry_moves(session, account.id),
        )
        problems += [
            f"entry {i}: amount is not the sum of its deltas"
            for i in repo.amount_mismatches(session, account.id)
        ]
        return problems

    # -- machinery -----------------------------------------------------------------------

    def _event(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        op: str,
        key: str,
        payload: dict[str, Any],
        now: datetime,
        apply: Callable[[Book, Account], None],
        api_key_id: int | None = None,
    ) -> Posting:
        _check_key(key)
        digest = payload_hash({"op": op, "customer_id": customer_id, **payload})
        account = self._lock(session, store, customer_id, now)
        first = repo.entries_by_key(session, store.id, key)
        if first:
            return _replay(key, digest, first)
        # An earning only adds lots: it needs those due by now, not the member's history.
        due_by = now if op == "earn" else None
        book = self._load_books(session, [account], due_by=due_by)[account.id]
        events = self._catch_up(account, book, now)
        try:
            apply(book, account)
        except Shortfall as exc:
            raise InsufficientPoints(
                str(exc), available=exc.available, requested=exc.requested
            ) from exc
        except LedgerRuleError as exc:
            raise Invalid(str(exc)) from exc
        main = _Event(account, book, key, digest, book.drain(), claim=True, api_key_id=api_key_id)
        stored = self._store(session, [*events, main], now)
        self._save(session, [(account, book)], now)
        return Posting(key, False, stored[-1])

    def _lock(self, session: Session, store: Store, customer_id: int, now: datetime) -> Account:
        account = repo.lock_account(session, store.id, customer_id)
        if account is None:
            if not repo.customer_in_store(session, store.id, customer_id):
                raise NotFound(f"no customer {customer_id} in this store")
            repo.create_account(session, store.id, customer_id, now)
            account = repo.lock_account(session, store.id, customer_id)
            assert account is not None
        return account

    def _lock_many(
        self, session: Session, store: Store, customer_ids: list[int], now: datetime
    ) -> dict[int, Account]:
        """Lock the accounts of these members (creating missing ones), in id order."""
        found = {a.customer_id: a for a in repo.lock_accounts(session, store.id, customer_ids)}
        missing = sorted(set(customer_ids) - set(found))
        if missing:
            known = repo.customers_in_store(session, store.id, missing)
            if len(known) != len(missing):
                unknown = sorted(set(missing) - known)
                raise NotFound(f"no customer {unknown[0]} in this store")
            repo.create_accounts(session, store.id, missing, now)
            found.update((a.customer_id, a) for a in repo.lock_accounts(session, store.id, missing))
        return found

    def _load_books(
        self, session: Session, accounts: Sequence[Account], due_by: datetime | None = None
    ) -> dict[int, Book]:
        """Each account's balances, live lots and open holds (with the lots they used).

        ``due_by`` (for earnings, which only add lots): an account without debt or held
        points gets only its lots due by then (to mature or expire) — an earning needs no
        other lot, and members with years of history are not read in full every batch.
        """
        ids = [a.id for a in accounts]
        lots: dict[int, list[Lot]] = {i: [] for i in ids}
        if due_by is None:
            full, due = ids, []
        else:
            full = [a.id for a in accounts if a.debt or a.growth_debt or a.points_held]
            due = [a.id for a in accounts if not (a.debt or a.growth_debt or a.points_held)]
        for row in repo.live_lots(session, full) if full else []:
            lots[row.account_id].append(_lot(row))
        for row in repo.due_lots(session, due, due_by) if due and due_by else []:
            lots[row.account_id].append(_lot(row))
        holds: dict[int, list[Hold]] = {i: [] for i in ids}
        holding = [a.id for a in accounts if a.points_held > 0]
        if holding:
            rows = repo.open_holds(session, holding)
            uses = repo.uses_of_entries(session, [h.entry_id for h in rows])
            for h in rows:
                holds[h.account_id].append(
                    Hold(h.id, h.entry_id, h.amount, h.expires_at, h.state, uses[h.entry_id])
                )
        books = {a.id: Book(_buckets(a), lots[a.id], holds[a.id]) for a in accounts}
        for account_id in holding:
            book = books[account_id]
            self._load_lots(session, book, [i for h in holds[account_id] for i, _ in h.uses])
        return books

    def _load_lots(self, session: Session, book: Book, lot_ids: Sequence[int]) -> None:
        missing = sorted({i for i in lot_ids if i not in book.lots})
        if missing:
            book.add_lots([_lot(row) for row in repo.lots_by_ids(session, missing)])

    def _catch_up(self, account: Account, book: Book, now: datetime) -> list[_Event]:
        """Stage what became due by ``now``: maturity, then expiry, then expired holds.

        Each step is an event of its own with a reserved key naming the lot or hold; a
        lot matures once and expires once (points given back to an expired lot later
        expire within the event that gives them back), so no key can repeat.
        """
        events: list[_Event] = []

        def staged(name: str) -> None:
            changes = book.drain()
            key = RESERVED_PREFIX + name
            events.append(_Event(account, book, key, payload_hash({"op": name}), changes))

        # In the order things happened, each at its own time: a job that runs late (or a
        # member untouched for months) must settle a debt from a lot that matured before
        # it expired, not from what is left once every due lot has expired.
        while True:
            maturing = book.due_to_mature(now)
            expiring = book.due_to_expire(now)
            first_m = maturing[0] if maturing else None
            first_e = expiring[0] if expiring else None
            if first_m is None and first_e is None:
                break
            if first_m is not None and (
                first_e is None
                or first_e.expires_at is None
                or first_m.available_at <= first_e.expires_at
            ):
                book.mature(first_m, first_m.available_at)
                staged(f"mature:{first_m.id}")
            else:
                assert first_e is not None and first_e.expires_at is not None
                book.expire(first_e, first_e.expires_at)
                staged(f"expire:{first_e.id}")
        for hold in book.due_holds(now):
            book.release(hold, now, reason="hold expired")
            staged(f"release:{hold.id}")
        return events

    def _catch_up_accounts(self, session: Session, account_ids: list[int], now: datetime) -> int:
        # Ascending ids, locked in one statement: concurrent jobs and batches cannot
        # deadlock.
        accounts = repo.lock_accounts_by_id(session, account_ids)
        books = self._load_books(session, accounts)
        events = [e for a in accounts for e in self._catch_up(a, books[a.id], now)]
        stored = self._store(session, events, now)
        self._save(session, [(a, books[a.id]) for a in accounts], now)
        return sum(len(entries) for entries in stored)

    def _open_hold(
        self, session: Session, store: Store, account: Account, book: Book, hold_key: str
    ) -> Hold:
        entries = repo.entries_by_key(session, store.id, hold_key)
        entry = entries[0] if entries else None
        if entry is None or entry.kind != EntryKind.hold or entry.account_id != account.id:
            raise NotFound(f"no hold with key {hold_key!r} for this member")
        hold = book.hold_of_entry(entry.id)
        if hold is None:
            state = repo.hold_state(session, entry.id)
            raise Conflict(f"the hold {hold_key!r} is already {state or 'resolved'}")
        if hold.state == HoldState.released and hold.resolved_by is not None:
            raise Conflict(f"the hold {hold_key!r} expired and was released")
        return hold

    def _store(
        self, session: Session, events: list[_Event], now: datetime
    ) -> list[list[EntryView]]:
        """Append the staged events' entries, then store the lots, lot uses and holds they
        created or changed. The first entry of a caller's event claims its key: if another
        transaction holds it (for another member), the event is refused."""
        rows = [
            _entry_row(e.account, entry, e.key, seq, e.digest, now, e.api_key_id)
            for e in events
            for seq, entry in enumerate(e.changes.entries)
        ]
        ids = repo.insert_entries(session, rows)
        for e in events:
            if e.changes.entries and (e.key, 0) not in ids:
                if not e.claim:  # reserved keys are written under the account lock
                    raise AssertionError(f"system event {e.key} written twice")
                _replay(e.key, e.digest, repo.entries_by_key(session, e.account.store_id, e.key))
                raise Conflict(f"the event {e.key!r} was applied concurrently; retry to replay")
            for seq, entry in enumerate(e.changes.entries):
                entry.id = ids[(e.key, seq)]
        new_lots = [(e, lot) for e in events for lot in e.changes.new_lots]
        lot_ids = repo.insert_lots(
            session,
            [
                {
                    "store_id": e.account.store_id,
                    "account_id": e.account.id,
                    "entry_id": _stored(lot.created_by),
                    "currency": lot.currency,
                    "ref": lot.ref,
                    "amount": lot.amount,
                    "remaining": lot.remaining,
                    "pending": lot.pending,
                    "available_at": lot.available_at,
                    "expires_at": lot.expires_at,
                }
                for e, lot in new_lots
            ],
        )
        for e, lot in new_lots:
            e.book.lot_stored(lot, lot_ids[_stored(lot.created_by)])
        changed = {lot.id: lot for e in events for lot in e.changes.changed_lots}
        repo.update_lots(
            session,
            [
                {"id": i, "remaining": lot.remaining, "pending": lot.pending}
                for i, lot in changed.items()
            ],
        )
        repo.insert_lot_uses(
            session,
            [
                {"lot_id": lot.id, "entry_id": _stored(entry), "amount": amount}
                for e in events
                for entry in e.changes.entries
                for lot, amount in entry.uses
            ],
        )
        new_holds = [(e, hold) for e in events for hold in e.changes.new_holds]
        hold_ids = repo.insert_holds(
            session,
            [
                {
                    "store_id": e.account.store_id,
                    "account_id": e.account.id,
                    "entry_id": _stored(hold.staged),
                    "amount": hold.amount,
                    "state": hold.state,
                    "expires_at": hold.expires_at,
                    "resolved_entry_id": hold.resolved_by and _stored(hold.resolved_by),
                    "resolved_at": hold.resolved_by and now,
                }
                for e, hold in new_holds
            ],
        )
        for e, hold in new_holds:
            entry_id = _stored(hold.staged)
            e.book.hold_stored(hold, hold_ids[entry_id], entry_id)
        resolved = {hold.id: hold for e in events for hold in e.changes.changed_holds}
        repo.update_holds(
            session,
            [
                {
                    "id": hold.id,
                    "state": hold.state,
                    "resolved_entry_id": _stored(hold.resolved_by),
                    "resolved_at": now,
                }
                for hold in resolved.values()
            ],
        )
        return [[_view(entry, now) for entry in e.changes.entries] for e in events]

    def _save(self, session: Session, books: Sequence[tuple[Account, Book]], now: datetime) -> None:
        """Write the accounts' new cached balances (those that changed)."""
        rows = []
        for account, book in books:
            points, growth = book.balances[Currency.points], book.balances[Currency.growth]
            values = (
                points.available,
                points.pending,
                points.held,
                points.debt,
                growth.available,
                growth.pending,
                growth.debt,
            )
            if values != tuple(getattr(account, name) for name in BALANCE_COLUMNS):
                rows.append({"id": account.id, **dict(zip(BALANCE_COLUMNS, values, strict=True))})
        repo.update_balances(session, rows, now)


@dataclass
class _Event:
    """An event staged on a member's book, waiting to be stored."""

    account: Account
    book: Book
    key: str
    digest: str
    changes: Changes
    claim: bool = False  # a caller's key (may race); False for the reserved keys
    api_key_id: int | None = None


def _resolve(action: Callable[[], Staged]) -> None:
    try:
        action()
    except HoldNotOpen as exc:
        raise Conflict(str(exc)) from exc


def _replay(key: str, digest: str, entries: Sequence[Any]) -> Posting:
    if entries[0].payload_hash != digest:
        raise KeyReused(
            f"idempotency key {key!r} was already used for a different event; "
            "send a new key for a new event"
        )
    return Posting(key, True, [EntryView.of(e) for e in entries])


def _stored(entry: Staged | None) -> int:
    assert entry is not None and entry.id is not None, "entry not stored yet"
    return entry.id


def _entry_row(
    account: Account,
    entry: Staged,
    key: str,
    seq: int,
    digest: str,
    now: datetime,
    api_key_id: int | None,
) -> dict[str, Any]:
    d = entry.delta
    return {
        "store_id": account.store_id,
        "account_id": account.id,
        "kind": entry.kind,
        "currency": entry.currency,
        "amount": d.amount,
        "available_delta": d.available,
        "pending_delta": d.pending,
        "held_delta": d.held,
        "debt_delta": d.debt,
        "idempotency_key": key,
        "seq": seq,
        "payload_hash": digest,
        "reason": entry.reason[:255],
        "ref": entry.ref,
        "target_id": entry.target_id,
        "api_key_id": api_key_id,
        "available_at": entry.available_at,
        "expires_at": entry.expires_at,
        "created_at": now,
    }


def _view(entry: Staged, now: datetime) -> EntryView:
    d = entry.delta
    return EntryView(
        _stored(entry),
        entry.kind,
        entry.currency,
        d.amount,
        d.available,
        d.pending,
        d.held,
        d.debt,
        entry.reason[:255],
        entry.ref,
        entry.target_id,
        entry.available_at,
        entry.expires_at,
        now,
    )


ledger = LedgerService()
