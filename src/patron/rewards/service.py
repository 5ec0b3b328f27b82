"""Redeeming rewards: load the programme and the member, apply the rules of ``domain``,
write stock, points and redemptions. Flushes, never commits: the caller's unit of work
makes a redemption (stock + points + coupon + row) one transaction.

Locks, always in this order so that no two transactions wait on each other: the
customer's row (one redemption of a member at a time: limits hold), the member's ledger
account (``ledger``), then the stock counters of the rewards involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from patron.errors import Conflict, Invalid, NotFound
from patron.kit.clock import as_utc, utcnow
from patron.kit.hashing import payload_hash
from patron.kit.money import MoneyError, to_minor
from patron.loyalty.membership import member_tier
from patron.loyalty.orders import active_program
from patron.loyalty.program import (
    CouponReward,
    LuckyDrawReward,
    PointsAsCashReward,
    PointsPlusCashReward,
    ProgramConfig,
    Reward,
)
from patron.loyalty.service import KeyReused, ledger
from patron.rewards import domain
from patron.rewards import repository as repo
from patron.rewards.domain import CouponCheck, CouponState, CouponTerms, MemberState, Refusal
from patron.rewards.models import (
    CheckoutState,
    Coupon,
    CouponStatus,
    PointsCheckout,
    Redemption,
    RedemptionStatus,
)
from patron.stores.models import Store

MAX_KEY = 200  # room for the ledger's ``reward:<key>:cancel``
RESERVED = "patron:"  # keys of prizes issued by a draw


class NotEligible(Conflict):
    slug, title = "reward-not-eligible", "Not eligible for this reward"


class OutOfStock(Conflict):
    slug, title = "out-of-stock", "Out of stock"


class CouponRefused(Conflict):
    slug, title = "coupon-not-applicable", "Coupon not applicable"


@dataclass(frozen=True)
class CatalogueItem:
    reward: Reward
    cost_points: int
    issued: int
    stock_left: int | None
    refusals: list[Refusal] | None  # None: no member was asked about


@dataclass(frozen=True)
class Redeemed:
    """A redemption with what it issued: its coupon, and a draw's prize redemption."""

    redemption: Redemption
    coupon: Coupon | None
    prize: Redeemed | None
    replayed: bool = False


@dataclass(frozen=True)
class Validation:
    check: CouponCheck
    coupon: Coupon | None


@dataclass(frozen=True)
class CheckoutResult:
    checkout: PointsCheckout
    expires_at: datetime | None
    replayed: bool


def _now(now: datetime | None) -> datetime:
    return utcnow() if now is None else as_utc(now)


def _minor(value: Decimal, currency: str, field: str) -> int:
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        raise Invalid(f"{field}: {exc}") from exc


def _check_key(key: str) -> str:
    key = key.strip()
    if not 1 <= len(key) <= MAX_KEY:
        raise Invalid(f"Idempotency-Key: must be 1 to {MAX_KEY} characters")
    if key.startswith(RESERVED):
        raise Invalid(f"Idempotency-Key: keys starting with {RESERVED!r} are reserved")
    return key


def _name(reward: Reward) -> str:
    return reward.name.display()[:255]


def _terms(coupon: Coupon) -> CouponTerms:
    return CouponTerms(
        discount_type=coupon.discount_type,
        currency=coupon.currency,
        amount_minor=coupon.amount_minor,
        percent=None if coupon.percent is None else Decimal(coupon.percent),
        min_spend_minor=coupon.min_spend_minor,
        max_discount_minor=coupon.max_discount_minor,
    )


class RewardService:
    # -- the programme -------------------------------------------------------------------

    def program(self, session: Session, store: Store) -> ProgramConfig:
        program = active_program(session, store)
        if program is None:
            raise NotFound("This store has no active loyalty programme.")
        return program

    def reward(self, program: ProgramConfig, reward_id: str) -> Reward:
        found = next((r for r in program.rewards if r.id == reward_id), None)
        if found is None:
            raise NotFound(f"No reward {reward_id!r} in the active programme.")
        return found

    def customer_id(self, session: Session, store: Store, external_id: str) -> int:
        found = repo.customer_id(session, store.id, external_id)
        if found is None:
            raise NotFound(f"No customer with external id {external_id!r} in this store.")
        return found

    def lock_customer(self, session: Session, store: Store, external_id: str) -> int:
        """``customer_id``, with the customer's row locked as ``redeem`` locks it (pass
        ``customer_locked=True`` there): one statement instead of two."""
        found = repo.lock_customer_by_external_id(session, store.id, external_id)
        if found is None:
            raise NotFound(f"No customer with external id {external_id!r} in this store.")
        return found

    # -- catalogue -----------------------------------------------------------------------

    def _member(
        self,
        session: Session,
        store: Store,
        program: ProgramConfig,
        customer_id: int,
        reward: Reward | None,
        now: datetime,
    ) -> MemberState:
        used = 0
        if reward is not None and reward.per_customer is not None:
            since = domain.limit_start(reward.per_customer, now, store.timezone)
            used = repo.count_redeemed(session, store.id, customer_id, reward.id, since)
        return MemberState(
            tier=domain.tier_code(program, member_tier(session, store.id, customer_id)),
            is_member=repo.is_member(session, store.id, customer_id),
            points_available=ledger.balance(session, store, customer_id).points_available,
            used_in_period=used,
        )

    def catalogue(
        self,
        session: Session,
        store: Store,
        customer_id: int | None = None,
        now: datetime | None = None,
    ) -> list[CatalogueItem]:
        """The active programme's rewards with cost and stock left; for a member, why
        each cannot be redeemed now (an empty list: it can). No programme: empty."""
        now = _now(now)
        program = active_program(session, store)
        if program is None:
            return []
        counts = repo.inventory(session, store.id)
        base = None
        if customer_id is not None:
            base = self._member(session, store, program, customer_id, None, now)
        items = []
        for reward in program.rewards:
            issued = counts.get(reward.id, (0, 0))[0]
            left = domain.stock_left(reward, issued)
            refusals = None
            if base is not None and customer_id is not None:
                member = base
                if reward.per_customer is not None:
                    since = domain.limit_start(reward.per_customer, now, store.timezone)
                    used = repo.count_redeemed(session, store.id, customer_id, reward.id, since)
                    member = MemberState(base.tier, base.is_member, base.points_available, used)
                refusals = domain.eligibility(program, reward, member, left)
            items.append(CatalogueItem(reward, domain.cost(reward), issued, left, refusals))
        return items

    # -- redeem --------------------------------------------------------------------------

    def redeem(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        reward_id: str,
        *,
        key: str,
        api_key_id: int | None = None,
        now: datetime | None = None,
        customer_locked: bool = False,
    ) -> Redeemed:
        """Redeem a reward for a member, once per ``key``: a replay returns the first
        result; the key with another reward or member is refused (409).

        ``customer_locked``: the caller locked the customer's row in this transaction
        already (``lock_customer``)."""
        now = _now(now)
        key = _check_key(key)
        digest = payload_hash({"op": "redeem", "reward_id": reward_id, "customer_id": customer_id})
        if not customer_locked and not repo.lock_customer(session, store.id, customer_id):
            raise NotFound("This customer does not exist in this store.")
        first = repo.redemption_by_key(session, store.id, key)
        if first is not None:
            return self._replay(session, first, digest)
        program = self.program(session, store)
        reward = self.reward(program, reward_id)
        if isinstance(reward, PointsAsCashReward):
            raise Invalid(
                f"reward_id: {reward_id!r} is points as cash, used at checkout "
                "(/v1/checkout/points/...)"
            )
        since = None
        if reward.per_customer is not None:
            since = domain.limit_start(reward.per_customer, now, store.timezone)
        state = repo.redeem_state(
            session,
            store.id,
            customer_id,
            reward.id,
            count=reward.per_customer is not None,
            since=since,
        )
        member = MemberState(
            tier=domain.tier_code(program, state.tier),
            is_member=state.is_member,
            points_available=state.points_available,
            used_in_period=state.used,
        )
        stock_left = domain.stock_left(reward, state.issued)
        refusals = domain.eligibility(program, reward, member, stock_left)
        if refusals:
            first_refusal = refusals[0]
            error = OutOfStock if first_refusal.code == domain.Why.out_of_stock else NotEligible
            raise error(
                f"Cannot redeem {reward.id!r}: {first_refusal.message}.",
                reason=first_refusal.code.value,
                reasons=[{"code": r.code.value, "message": r.message} for r in refusals],
            )
        points = domain.cost(reward)
        ledger_key = f"reward:{key}" if points > 0 else None
        row = self._new_row(
            session,
            store,
            program,
            customer_id,
            reward,
            key,
            digest,
            now,
            ledger_key=ledger_key,
            api_key_id=api_key_id,
        )
        if ledger_key is not None:
            ledger.redeem(
                session,
                store,
                customer_id,
                key=ledger_key,
                points=points,
                reason=f"redeemed: {_name(reward)}"[:255],
                ref=f"redemption:{row.id}",
                now=now,
            )
        coupon = self._issue(session, store, program, row, reward, now)
        prize = None
        if isinstance(reward, LuckyDrawReward):
            prize = self._draw(session, store, program, row, reward, key, now)
        session.flush()
        return Redeemed(row, coupon, prize)

    def grant(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        reward_id: str,
        *,
        key: str,
        now: datetime | None = None,
    ) -> Redeemed:
        """Give a member a reward free of points (service recovery, a goodwill gesture):
        its stock is taken and its coupon issued as if redeemed, once per ``key``.

        Eligibility rules (tier-only, per-customer limits) do not apply: the store chose
        to give it. Cancelling the redemption voids the coupon and returns the stock."""
        now = _now(now)
        full_key = f"{RESERVED}grant:{_check_key(key)}"
        digest = payload_hash({"op": "grant", "reward_id": reward_id, "customer_id": customer_id})
        if not repo.lock_customer(session, store.id, customer_id):
            raise NotFound("This customer does not exist in this store.")
        first = repo.redemption_by_key(session, store.id, full_key)
        if first is not None:
            return self._replay(session, first, digest)
        program = self.program(session, store)
        reward = self.reward(program, reward_id)
        if isinstance(reward, PointsAsCashReward | LuckyDrawReward):
            raise Invalid(f"reward_id: {reward_id!r} ({reward.type}) cannot be given away")
        row = self._new_row(session, store, program, customer_id, reward, full_key, digest, now)
        row.points = 0  # given, not bought: the caller keeps the reason (its audit)
        coupon = self._issue(session, store, program, row, reward, now)
        session.flush()
        return Redeemed(row, coupon, None)

    def _replay(self, session: Session, first: Redemption, digest: str) -> Redeemed:
        if first.payload_hash != digest:
            raise KeyReused(
                f"Idempotency key {first.idempotency_key!r} was already used to redeem another "
                "reward or for another customer; send a new key for a new redemption."
            )
        return self._load(session, first, replayed=True)

    def _load(self, session: Session, row: Redemption, replayed: bool = False) -> Redeemed:
        kids = repo.children(session, [row.id])
        coupons = repo.coupons_of(session, [row.id, *(k.id for k in kids)])
        prize = Redeemed(kids[0], coupons.get(kids[0].id), None) if kids else None
        return Redeemed(row, coupons.get(row.id), prize, replayed)

    def _new_row(
        self,
        session: Session,
        store: Store,
        program: ProgramConfig,
        customer_id: int,
        reward: Reward,
        key: str,
        digest: str,
        now: datetime,
        parent: Redemption | None = None,
        *,
        ledger_key: str | None = None,
        api_key_id: int | None = None,
    ) -> Redemption:
        """Insert the redemption row, claiming its key. The row is written by one Core
        INSERT (no savepoint, no flush) and joins the session as loaded: later changes
        to it (a draw's outcome) are written at the next flush."""
        cash = None
        if isinstance(reward, PointsPlusCashReward):
            cash = to_minor(reward.cash, program.currency)
        values: dict[str, Any] = dict(
            store_id=store.id,
            customer_id=customer_id,
            reward_id=reward.id,
            reward_type=reward.type,
            reward_name=_name(reward),
            program_version=program.version,
            idempotency_key=key,
            payload_hash=digest,
            status=RedemptionStatus.completed,
            points=0 if parent is not None else domain.cost(reward),
            cash_minor=cash,
            currency=program.currency,
            sku=getattr(reward, "sku", None),
            parent_id=None if parent is None else parent.id,
            prize_points=0,
            created_at=now,
            ledger_key=ledger_key,
            api_key_id=api_key_id,
            # Stock is taken in this transaction right after (``_issue``); a reward out
            # of stock raises there and the whole redemption rolls back.
            stock_taken=True,
        )
        # Another customer's request racing with this key: it waits for that one, then
        # finds the key taken.
        values.update(prize_id=None, draw=None, cancelled_at=None, cancel_reason=None)
        row = repo.insert_loaded(
            session, Redemption, values, conflict=("store_id", "idempotency_key")
        )
        if row is None:
            raise KeyReused(
                f"Idempotency key {key!r} was used concurrently for another redemption."
            )
        return row

    def _issue(
        self,
        session: Session,
        store: Store,
        program: ProgramConfig,
        row: Redemption,
        reward: Reward,
        now: datetime,
    ) -> Coupon | None:
        """Take the reward's stock and issue what it gives (a coupon)."""
        stock = domain.stock_of(reward)
        if not repo.take_stock(session, store.id, reward.id, stock):
            raise OutOfStock(f"{reward.id!r} is out of stock.", reason="out_of_stock")
        row.stock_taken = True
        if not isinstance(reward, CouponReward):
            return None
        terms = domain.terms_of(reward, program.currency)
        values: dict[str, Any] = dict(
            store_id=store.id,
            customer_id=row.customer_id,
            redemption_id=row.id,
            reward_id=reward.id,
            code=domain.new_code(),
            discount_type=terms.discount_type,
            amount_minor=terms.amount_minor,
            percent=None if terms.percent is None else format(terms.percent.normalize(), "f"),
            min_spend_minor=terms.min_spend_minor,
            max_discount_minor=terms.max_discount_minor,
            currency=terms.currency,
            status=CouponStatus.active,
            valid_from=now,
            valid_until=now + timedelta(days=reward.validity_days),
            created_at=now,
            used_at=None,
            order_external_id=None,
            discount_minor=None,
        )
        coupon = repo.insert_loaded(session, Coupon, values)
        assert coupon is not None  # no ON CONFLICT: a code collision raises
        return coupon

    def _draw(
        self,
        session: Session,
        store: Store,
        program: ProgramConfig,
        row: Redemption,
        reward: LuckyDrawReward,
        key: str,
        now: datetime,
    ) -> Redeemed | None:
        """Draw a prize. Excluded from the draw: points prizes the budget can no longer
        pay, and reward prizes that are gone, inactive or out of stock."""
        given = 0
        if reward.budget_points is not None:  # only a budget needs the draws serialised
            given = repo.lock_draw_budget(session, store.id, reward.id)
        counts = repo.inventory(session, store.id)
        excluded: dict[str, str] = {}
        for p in reward.prizes:
            budget = reward.budget_points
            if p.points and budget is not None and p.points > budget - given:
                excluded[p.id] = "budget exhausted"
            if p.reward is not None:
                target = next((r for r in program.rewards if r.id == p.reward), None)
                if target is None or not target.active:
                    excluded[p.id] = "reward unavailable"
                elif isinstance(target, PointsAsCashReward | LuckyDrawReward):
                    excluded[p.id] = "not a reward that can be issued"
                elif domain.stock_left(target, counts.get(target.id, (0, 0))[0]) == 0:
                    excluded[p.id] = "out of stock"
        try:
            result = domain.run_draw(reward, domain.draw_seed(store.signing_secret, key), excluded)
        except ValueError:
            raise OutOfStock(
                f"{reward.id!r}: no prize can be drawn now (budget or stock exhausted).",
                reason="out_of_stock",
            ) from None
        prize = next(p for p in reward.prizes if p.id == result.prize_id)
        row.draw = result.audit()
        row.prize_id = prize.id
        if prize.points:
            ledger.earn(
                session,
                store,
                row.customer_id,
                key=f"reward:{key}:prize",
                points=prize.points,
                reason=f"lucky draw prize: {prize.name.display()}"[:255],
                ref=f"redemption:{row.id}",
                expires_at=program.expires_at(now, store.timezone),
                now=now,
            )
            row.prize_points = prize.points
            repo.add_prize_points(session, store.id, reward.id, prize.points)
        if prize.reward is None:
            return None
        target = self.reward(program, prize.reward)
        child = self._new_row(
            session,
            store,
            program,
            row.customer_id,
            target,
            f"{RESERVED}prize:{row.id}",
            payload_hash({"op": "prize", "parent": row.id}),
            now,
            parent=row,
        )
        return Redeemed(child, self._issue(session, store, program, child, target, now), None)

    # -- reads ---------------------------------------------------------------------------

    def get(self, session: Session, store: Store, redemption_id: int) -> Redeemed:
        row = repo.redemption(session, store.id, redemption_id)
        if row is None:
            raise NotFound(f"No redemption {redemption_id} in this store.")
        return self._load(session, row)

    def history(
        self, session: Session, store: Store, customer_id: int, limit: int, before: int | None
    ) -> list[Redeemed]:
        rows = repo.redemptions_of(session, store.id, customer_id, limit, before)
        ids = [r.id for r in rows]
        kids = {k.parent_id: k for k in repo.children(session, ids)}
        coupons = repo.coupons_of(session, [*ids, *(k.id for k in kids.values())])
        out = []
        for row in rows:
            kid = kids.get(row.id)
            prize = None if kid is None else Redeemed(kid, coupons.get(kid.id), None)
            out.append(Redeemed(row, coupons.get(row.id), prize))
        return out

    def external_id(self, session: Session, store: Store, customer_id: int) -> str:
        return repo.external_ids(session, store.id, [customer_id]).get(customer_id, "")

    def member_external_id(self, session: Session, store: Store, customer_id: int) -> str:
        """The signed-in member's external id (404 once the customer is deleted)."""
        found = self.external_id(session, store, customer_id)
        if not found:
            raise NotFound("This member no longer exists.")
        return found

    # -- cancel --------------------------------------------------------------------------

    def cancel(
        self,
        session: Session,
        store: Store,
        redemption_id: int,
        reason: str = "cancelled by the store",
        now: datetime | None = None,
    ) -> Redeemed:
        """Undo a redemption exactly: its points back (``ledger.reverse``), stock back,
        its unused coupon void; a draw also takes back the prize points it gave and
        cancels the prize it issued. A used coupon makes it impossible (409). Cancelling
        twice returns the cancelled redemption."""
        now = _now(now)
        row = repo.redemption(session, store.id, redemption_id)
        if row is None:
            raise NotFound(f"No redemption {redemption_id} in this store.")
        if row.parent_id is not None:
            raise Conflict(
                f"Redemption {row.id} is a prize of lucky draw redemption {row.parent_id}: "
                "cancel that one."
            )
        repo.lock_customer(session, store.id, row.customer_id)
        session.refresh(row)  # as it is now that the member's redemptions wait on us
        if row.status == RedemptionStatus.cancelled:
            return self._load(session, row, replayed=True)
        kids = repo.children(session, [row.id])
        rows = [row, *kids]
        coupons = repo.coupons_of(session, [r.id for r in rows])
        for coupon in coupons.values():
            if coupon.status == CouponStatus.used:
                raise Conflict(
                    f"Coupon {coupon.code} was used on order {coupon.order_external_id!r}: "
                    "the redemption cannot be cancelled.",
                    reason="coupon_used",
                )
        reason = (reason or "").strip()[:255] or "cancelled by the store"
        if row.ledger_key is not None:
            ledger.reverse(
                session,
                store,
                row.customer_id,
                key=f"{row.ledger_key}:cancel",
                original_key=row.ledger_key,
                reason=f"redemption cancelled: {row.reward_name}"[:255],
                now=now,
            )
        if row.prize_points:
            ledger.clawback(
                session,
                store,
                row.customer_id,
                key=f"reward:{row.idempotency_key}:prize:cancel",
                points=row.prize_points,
                ref=f"redemption:{row.id}",
                reason=f"lucky draw cancelled: {row.reward_name}"[:255],
                now=now,
            )
            repo.add_prize_points(session, store.id, row.reward_id, -row.prize_points)
        for r in rows:
            if r.stock_taken:
                repo.return_stock(session, store.id, r.reward_id)
            r.status = RedemptionStatus.cancelled
            r.cancelled_at = now
            r.cancel_reason = reason
        for coupon in coupons.values():
            coupon.status = CouponStatus.void
        session.flush()
        return self._load(session, row)

    # -- coupons at checkout -------------------------------------------------------------

    def validate_coupon(
        self,
        session: Session,
        store: Store,
        code: str,
        customer_external_id: str,
        subtotal: Decimal,
        currency: str,
        now: datetime | None = None,
    ) -> Validation:
        """Whether a coupon applies to a checkout, and its discount. Changes nothing."""
        now = _now(now)
        currency = currency.strip().upper()
        subtotal_minor = _minor(subtotal, currency, "subtotal")
        coupon = repo.coupon_by_code(session, store.id, domain.normalize_code(code))
        if coupon is None:
            check = CouponCheck(False, 0, domain.CouponWhy.not_found, "no such coupon")
            return Validation(check, None)
        customer_id = repo.customer_id(session, store.id, customer_external_id) or 0
        state = CouponState(_terms(coupon), coupon.customer_id, coupon.status, coupon.valid_until)
        return Validation(
            domain.check_coupon(state, customer_id, subtotal_minor, currency, now), coupon
        )

    def use_coupon(
        self,
        session: Session,
        store: Store,
        code: str,
        order_external_id: str,
        customer_external_id: str,
        subtotal: Decimal,
        now: datetime | None = None,
    ) -> tuple[Coupon, bool]:
        """Mark a coupon used by an order, exactly once. The same order again: the first
        result (True: replayed); another order: 409."""
        now = _now(now)
        coupon = repo.coupon_by_code(
            session, store.id, domain.normalize_code(code), for_update=True
        )
        if coupon is None:
            raise NotFound(f"No coupon {code!r} in this store.")
        if coupon.status == CouponStatus.used:
            if coupon.order_external_id == order_external_id:
                return coupon, True
            raise CouponRefused(
                f"Coupon {coupon.code} was already used on order {coupon.order_external_id!r}.",
                reason=domain.CouponWhy.used.value,
            )
        customer_id = repo.customer_id(session, store.id, customer_external_id) or 0
        subtotal_minor = _minor(subtotal, coupon.currency, "subtotal")
        state = CouponState(_terms(coupon), coupon.customer_id, coupon.status, coupon.valid_until)
        check = domain.check_coupon(state, customer_id, subtotal_minor, coupon.currency, now)
        if not check.valid:
            assert check.reason is not None
            raise CouponRefused(
                f"Coupon {coupon.code} cannot be used: {check.message}.",
                reason=check.reason.value,
            )
        if not repo.mark_used(session, coupon.id, order_external_id, check.discount_minor, now):
            raise CouponRefused(  # pragma: no cover - the row lock above serialises uses
                f"Coupon {coupon.code} was used concurrently.", reason="used"
            )
        session.refresh(coupon)
        return coupon, False

    # -- points as cash at checkout ------------------------------------------------------

    def _cash_reward(
        self,
        session: Session,
        store: Store,
        program: ProgramConfig,
        customer_id: int,
        now: datetime,
    ) -> tuple[PointsAsCashReward | None, MemberState, str | None]:
        """The first points-as-cash reward of the programme the member may use."""
        member = self._member(session, store, program, customer_id, None, now)
        why = "the programme has no points-as-cash reward"
        for reward in program.rewards:
            if isinstance(reward, PointsAsCashReward):
                refusals = [
                    r
                    for r in domain.eligibility(program, reward, member, None)
                    if r.code != domain.Why.not_enough_points
                ]
                if not refusals:
                    return reward, member, None
                why = refusals[0].message
        return None, member, why

    def _currency(self, program: ProgramConfig, currency: str | None) -> str:
        if currency is not None and currency.strip().upper() != program.currency:
            raise Invalid(f"currency: the programme's currency is {program.currency}")
        return program.currency

    def quote(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        order_total: Decimal,
        currency: str | None,
        now: datetime | None = None,
    ) -> tuple[domain.Quote, PointsAsCashReward | None, int, str]:
        """The most points the member can use on an order, and their cash value."""
        now = _now(now)
        program = self.program(session, store)
        currency = self._currency(program, currency)
        total = _minor(order_total, currency, "order_total")
        reward, member, why = self._cash_reward(session, store, program, customer_id, now)
        if reward is None:
            return domain.Quote(0, 0, 1, why), None, member.points_available, currency
        q = domain.quote(reward, currency, total, member.points_available)
        return q, reward, member.points_available, currency

    def hold(
        self,
        session: Session,
        store: Store,
        customer_id: int,
        *,
        checkout_id: str,
        points: int,
        order_total: Decimal,
        now: datetime | None = None,
    ) -> CheckoutResult:
        """Hold points to pay part of a checkout (released after 30 minutes unless
        captured). Once per ``checkout_id``: the same hold again is a replay."""
        now = _now(now)
        if not repo.lock_customer(session, store.id, customer_id):
            raise NotFound("This customer does not exist in this store.")
        program = self.program(session, store)
        currency = program.currency
        total = _minor(order_total, currency, "order_total")
        existing = repo.checkout(session, store.id, checkout_id)
        if existing is not None:
            same = (existing.customer_id, existing.points, existing.order_total_minor) == (
                customer_id,
                points,
                total,
            )
            if not same:
                raise KeyReused(
                    f"checkout_id: {checkout_id!r} already holds points for another "
                    "customer, amount or order total."
                )
            return CheckoutResult(existing, None, True)
        reward, _, why = self._cash_reward(session, store, program, customer_id, now)
        if reward is None:
            raise NotEligible(f"Points cannot pay this checkout: {why}.", reason="not_eligible")
        problem = domain.check_use(reward, currency, total, 10**18, points)
        if problem is not None:
            raise Invalid(problem)
        cash = domain.CashRate(reward.points_per_unit, currency).cash(points)
        hold_key = f"checkout:{checkout_id}:hold"
        posting = ledger.hold(
            session,
            store,
            customer_id,
            key=hold_key,
            points=points,
            reason=f"points as cash: checkout {checkout_id}"[:255],
            ref=checkout_id,
            now=now,
        )
        row = PointsCheckout(
            store_id=store.id,
            customer_id=customer_id,
            checkout_id=checkout_id,
            reward_id=reward.id,
            points=points,
            cash_minor=cash,
            order_total_minor=total,
            currency=currency,
            hold_key=hold_key,
            state=CheckoutState.held,
            created_at=now,
        )
        repo.add(session, row)
        expires = next((e.expires_at for e in posting.entries if e.expires_at), None)
        return CheckoutResult(row, expires, False)

    def resolve(
        self,
        session: Session,
        store: Store,
        checkout_id: str,
        capture: bool,
        now: datetime | None = None,
    ) -> CheckoutResult:
        """Capture (the points are spent) or release (they go back) a checkout's hold,
        once. The same again is a replay; the other after one of them is a 409."""
        now = _now(now)
        row = repo.checkout(session, store.id, checkout_id)
        if row is None:
            raise NotFound(f"No points held for checkout {checkout_id!r}.")
        repo.lock_customer(session, store.id, row.customer_id)
        session.refresh(row)
        target = CheckoutState.captured if capture else CheckoutState.released
        if row.state == target:
            return CheckoutResult(row, None, True)
        if row.state != CheckoutState.held:
            raise Conflict(f"The points of checkout {checkout_id!r} were already {row.state}.")
        kwargs: dict[str, Any] = {"hold_key": row.hold_key, "now": now}
        if capture:
            ledger.capture(
                session,
                store,
                row.customer_id,
                key=f"checkout:{checkout_id}:capture",
                ref=checkout_id,
                **kwargs,
            )
        else:
            ledger.release(
                session, store, row.customer_id, key=f"checkout:{checkout_id}:release", **kwargs
            )
        repo.set_checkout_state(session, row, target, now)
        return CheckoutResult(row, None, False)


rewards = RewardService()
