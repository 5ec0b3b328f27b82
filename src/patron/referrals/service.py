"""Referrals and surprise rewards: load, apply the rules of ``domain.py``, write.

Services flush, never commit: the request, CLI command or job that calls them is the
unit of work. Points go through the ledger (``ledger.earn_many``) with keys that make a
credit happen once: ``referral:<id>:referrer``, ``referral:<id>:referee``,
``surprise:<plan>:<customer>``.

The jobs (``run_referrals``, ``run_surprises``) take a per-store lock first: their caps
(rewarded referrals per referrer, surprise points per month) are counts over many rows,
which two concurrent runs would both see room in. A second run waits, then finds nothing
left to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from patron.customers import repository as customers_repo
from patron.customers.models import Customer, TouchpointKind
from patron.errors import Conflict, Invalid, NotFound
from patron.kit.clock import as_utc, utcnow
from patron.kit.money import MoneyError, to_minor
from patron.loyalty.orders import active_program
from patron.loyalty.program import ProgramConfig, ReferralConfig, SurpriseConfig
from patron.loyalty.service import Earning, ledger
from patron.referrals import domain
from patron.referrals import repository as repo
from patron.referrals.models import (
    GiftStatus,
    Referral,
    ReferralStatus,
    SurprisePlan,
)
from patron.referrals.schemas import (
    GiftOut,
    GiftPage,
    MyReferralOut,
    PlanIn,
    PlanOut,
    ReferralCounts,
    ReferralIn,
    ReferralOut,
    ReferralPage,
    StatsOut,
    TreeNode,
    TreeOut,
)
from patron.stores.models import Store

BATCH = 500
MAX_TREE_DEPTH = 10
MAX_TREE_NODES = 5000


def _now(now: datetime | None) -> datetime:
    return utcnow() if now is None else as_utc(now)


def _party(customer: Customer) -> domain.Party:
    return domain.Party(
        customer.id, customer.email, customer.phone, customer.attributes, customer.flagged
    )


def _field(field: str, message: str) -> list[dict[str, str]]:
    return [{"field": field, "message": message}]


def _customer(session: Session, store: Store, external_id: str, field: str) -> Customer:
    customer = repo.customer_by_external_id(session, store.id, external_id)
    if customer is None:
        message = f"no customer with external id {external_id!r} in this store"
        raise NotFound(f"{field}: {message}", errors=_field(field, message))
    return customer


def _outs(session: Session, store: Store, rows: Sequence[Referral]) -> list[ReferralOut]:
    ids = repo.external_ids(
        session, store.id, [r.referrer_id for r in rows] + [r.referee_id for r in rows]
    )
    return [
        ReferralOut(
            id=r.id,
            code=r.code,
            referrer_external_id=ids.get(r.referrer_id, ""),
            referee_external_id=ids.get(r.referee_id, ""),
            status=r.status,
            reason=r.reason,
            detail=r.detail,
            attributed_at=r.attributed_at,
            order_external_id=r.order_external_id,
            qualified_at=r.qualified_at,
            reward_due_at=r.reward_due_at,
            rewarded_at=r.rewarded_at,
            rejected_at=r.rejected_at,
            referrer_points=r.referrer_points,
            referee_points=r.referee_points,
        )
        for r in rows
    ]


def _reject(r: Referral, refusal: domain.Refusal, now: datetime) -> None:
    r.status = ReferralStatus.rejected
    r.reason = refusal.rule
    r.detail = refusal.detail[:255]
    r.rejected_at = now
    r.updated_at = now


class ReferralService:
    # -- codes ----------------------------------------------------------------------------

    def code(
        self, session: Session, store: Store, customer_id: int, now: datetime | None = None
    ) -> str:
        """The member's referral code, created on the first ask (a concurrent first ask
        gets the same code)."""
        found = repo.code_of(session, store.id, customer_id)
        if found is not None:
            return found.code
        if customer_id not in repo.customers_by_ids(session, store.id, [customer_id]):
            raise NotFound("This member no longer exists.")
        code = domain.new_code()
        while repo.code_by_value(session, store.id, code) is not None:  # ~never: 32^8 codes
            code = domain.new_code()
        repo.insert_code(session, store.id, customer_id, code, _now(now))
        created = repo.code_of(session, store.id, customer_id)
        assert created is not None
        return created.code

    def summary(
        self, session: Session, store: Store, customer_id: int, base_url: str
    ) -> MyReferralOut:
        """A member's code, share link, referral counts and points earned by referring."""
        code = self.code(session, store, customer_id)
        counts = repo.counts_by_status(session, store.id, customer_id)
        program = active_program(session, store)
        config = program.referral if program is not None else None
        return MyReferralOut(
            code=code,
            link=domain.share_link(base_url, code),
            counts=ReferralCounts(invited=sum(counts.values()), **_status_counts(counts)),
            points_earned=repo.points_earned(session, store.id, customer_id),
            referrer_points=config.referrer_points if config else None,
            referee_points=config.referee_points if config else None,
        )

    def summary_of(
        self, session: Session, store: Store, external_id: str, base_url: str
    ) -> MyReferralOut:
        customer = _customer(session, store, external_id, "external_id")
        return self.summary(session, store, customer.id, base_url)

    # -- attribution ----------------------------------------------------------------------

    def _ancestors(self, session: Session, store: Store, customer_id: int) -> tuple[int, ...]:
        """Who referred this customer, who referred them, ... (bounded, cycle-safe)."""
        chain: list[int] = []
        current: int | None = customer_id
        for _ in range(domain.MAX_RING_DEPTH):
            current = repo.referrer_of(session, store.id, current) if current else None
            if current is None or current in chain:
                break
            chain.append(current)
        return tuple(chain)

    def attribute(
        self, session: Session, store: Store, body: ReferralIn, now: datetime | None = None
    ) -> tuple[ReferralOut, bool]:
        """Record that a customer came through a code; returns (referral, created).

        A customer is attributed once: the same code again is a no-op, another code is
        refused (409). The fraud rules that can be judged now (self-referral, flags, a
        ring, an order before today) record the referral as rejected, with its reason."""
        now = _now(now)
        code = domain.normalize_code(body.code)
        if code is None:
            raise Invalid("code: not a referral code (8 letters and digits)")
        code_row = repo.code_by_value(session, store.id, code)
        if code_row is None:
            message = f"no referral code {code!r} in this store"
            raise NotFound(f"code: {message}", errors=_field("code", message))
        referee = _customer(session, store, body.referee_external_id, "referee_external_id")
        existing = repo.referral_of_referee(session, store.id, referee.id)
        if existing is None:
            referrer = repo.customers_by_ids(session, store.id, [code_row.customer_id])[
                code_row.customer_id
            ]
            refusal = domain.check(
                _party(referrer),
                _party(referee),
                ordered_before=repo.order_before(session, store.id, referee.id, now),
                referrer_ancestors=self._ancestors(session, store, referrer.id),
            )
            created = repo.insert_referral(
                session,
                {
                    "store_id": store.id,
                    "code": code,
                    "referrer_id": referrer.id,
                    "referee_id": referee.id,
                    "status": ReferralStatus.rejected if refusal else ReferralStatus.pending,
                    "reason": refusal.rule if refusal else None,
                    "detail": refusal.detail if refusal else None,
                    "rejected_at": now if refusal else None,
                    "attributed_at": now,
                    "referrer_points": 0,
                    "referee_points": 0,
                    "updated_at": now,
                },
            )
            existing = repo.referral_of_referee(session, store.id, referee.id)
            assert existing is not None
        else:
            created = False
        if existing.referrer_id != code_row.customer_id:
            message = "this customer is already attributed to another referral code"
            raise Conflict(
                f"referee_external_id: {message}",
                errors=_field("referee_external_id", message),
                referral_id=existing.id,
            )
        if created:
            customers_repo.insert_touchpoints(
                session,
                [
                    {
                        "store_id": store.id,
                        "customer_id": referee.id,
                        "kind": TouchpointKind.referral.value,
                        "occurred_at": now,
                        "ref": code,
                        "data": {"referral_id": existing.id, "status": existing.status.value},
                    }
                ],
            )
        return _outs(session, store, [existing])[0], created

    # -- reads ----------------------------------------------------------------------------

    def list(
        self,
        session: Session,
        store: Store,
        *,
        status: ReferralStatus | None = None,
        referrer_external_id: str | None = None,
        limit: int = 50,
        after: int | None = None,
    ) -> ReferralPage:
        referrer_id = None
        if referrer_external_id is not None:
            referrer_id = _customer(session, store, referrer_external_id, "referrer").id
        rows = repo.list_page(
            session, store.id, status=status, referrer_id=referrer_id, limit=limit, after=after
        )
        return ReferralPage(
            items=_outs(session, store, rows),
            next_after=rows[-1].id if len(rows) == limit else None,
        )

    def tree(
        self,
        session: Session,
        store: Store,
        root_external_id: str,
        depth: int,
        max_nodes: int = MAX_TREE_NODES,
    ) -> TreeOut:
        """Who the root referred, who they referred, ... ``depth`` levels down (every
        status; each customer once)."""
        root = _customer(session, store, root_external_id, "root")
        top = TreeNode(external_id=root.external_id)
        level: dict[int, TreeNode] = {root.id: top}
        seen = {root.id}
        count, truncated = 0, False
        for _ in range(depth):
            if not level or truncated:
                break
            rows = repo.referrals_of_referrers(
                session, store.id, list(level), max_nodes - count + 1
            )
            rows = [r for r in rows if r.referee_id not in seen]
            if count + len(rows) > max_nodes:
                rows, truncated = rows[: max_nodes - count], True
            ids = repo.external_ids(session, store.id, [r.referee_id for r in rows])
            nxt: dict[int, TreeNode] = {}
            for r in rows:
                if r.referee_id in seen:
                    continue
                seen.add(r.referee_id)
                node = TreeNode(
                    external_id=ids.get(r.referee_id, ""),
                    referral_id=r.id,
                    status=r.status,
                    reason=r.reason,
                )
                level[r.referrer_id].children.append(node)
                nxt[r.referee_id] = node
                count += 1
            level = nxt
        return TreeOut(root=top, depth=depth, nodes=count, truncated=truncated)

    def stats(
        self,
        session: Session,
        store: Store,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> StatsOut:
        """Invitations, conversion and the viral coefficient of a window (docs/referrals.md)."""
        until = _now(until)
        since = as_utc(since) if since is not None else None
        if since is not None and since >= until:
            raise Invalid("since: must be before until")
        counts = repo.window_counts(session, store.id, since, until)
        rejected = counts.get("rejected", 0)
        invitations = sum(counts.values())
        qualified = counts.get("qualified", 0) + counts.get("rewarded", 0)
        viral = domain.ViralStats(
            members=repo.members_count(session, store.id, until),
            invitations=invitations,
            attributions=invitations - rejected,
            qualified=qualified,
            rewarded=counts.get("rewarded", 0),
        )
        return StatsOut(
            since=since,
            until=until,
            members=viral.members,
            code_holders=repo.code_holders(session, store.id, until),
            active_referrers=repo.active_referrers(session, store.id, since, until),
            invitations=viral.invitations,
            attributions=viral.attributions,
            qualified=viral.qualified,
            rewarded=viral.rewarded,
            rejected=rejected,
            conversion=domain.ratio(viral.conversion),
            invites_per_member=domain.ratio(viral.invites_per_member),
            viral_coefficient=domain.ratio(viral.k),
        )

    # -- the job --------------------------------------------------------------------------

    def run(self, session: Session, store: Store, now: datetime | None = None) -> int:
        """Qualify pending referrals on their referee's first qualifying order, and reward
        both sides of those whose order is past its return window. Returns the number of
        referrals rewarded. Idempotent; flushes, never commits."""
        now = _now(now)
        repo.lock_job(session, repo.REFERRAL_JOB, store.id)
        program = active_program(session, store)
        if program is None or program.referral is None:
            return 0
        config = program.referral
        min_minor = to_minor(config.qualifying_min_order, program.currency)
        after = 0
        while batch := repo.pending_with_delivered_orders(session, store.id, after, BATCH):
            after = batch[-1].id
            for r in batch:
                self._qualify(session, store, program, config, r, min_minor, now)
        rewarded = 0
        caps: dict[int, int] = {}
        after = 0
        while batch := repo.qualified_due(session, store.id, now, after, BATCH):
            after = batch[-1].id
            rewarded += self._reward(session, store, program, config, batch, min_minor, caps, now)
        return rewarded

    def _refusal(
        self,
        session: Session,
        store: Store,
        r: Referral,
        parties: dict[int, Customer],
        *,
        rewarded: int | None = None,
        cap: int | None = None,
    ) -> domain.Refusal | None:
        return domain.check(
            _party(parties[r.referrer_id]),
            _party(parties[r.referee_id]),
            ordered_before=repo.order_before(session, store.id, r.referee_id, r.attributed_at),
            referrer_ancestors=self._ancestors(session, store, r.referrer_id),
            rewarded=rewarded,
            cap=cap,
        )

    def _qualify(
        self,
        session: Session,
        store: Store,
        program: ProgramConfig,
        config: ReferralConfig,
        r: Referral,
        min_minor: int,
        now: datetime,
    ) -> None:
        orders = repo.delivered_orders_since(
            session, store.id, r.referee_id, r.attributed_at, program.currency
        )
        first = next(
            (
                o
                for o in orders
                if domain.qualifies(o.status.value, o.total_minor, o.refunded_minor, min_minor)
            ),
            None,
        )
        if first is None or first.delivered_at is None:
            return
        parties = repo.customers_by_ids(session, store.id, [r.referrer_id, r.referee_id])
        refusal = self._refusal(session, store, r, parties)
        if refusal is not None:
            _reject(r, refusal, now)
            return
        r.status = ReferralStatus.qualified
        r.order_id = first.id
        r.order_external_id = first.external_id
        r.qualified_at = now
        r.reward_due_at = _due(program, config, first.delivered_at)
        r.detail = None
        r.updated_at = now

    def _reward(
        self,
        session: Session,
        store: Store,
        program: ProgramConfig,
        config: ReferralConfig,
        batch: Sequence[Referral],
        min_minor: int,
        caps: dict[int, int],
        now: datetime,
    ) -> int:
        parties = repo.customers_by_ids(
            session, store.id, [r.referrer_id for r in batch] + [r.referee_id for r in batch]
        )
        expires_at = program.expires_at(now, store.timezone)
        earnings: list[Earning] = []
        rewarded = 0
        for r in batch:
            order = repo.order(session, store.id, r.order_id) if r.order_id else None
            if order is None or not domain.qualifies(
                order.status.value, order.total_minor, order.refunded_minor, min_minor
            ):
                # Refunded or cancelled inside its window: wait for another order.
                r.detail = f"order {r.order_external_id} was refunded or cancelled; waiting"[:255]
                r.status = ReferralStatus.pending
                r.order_id = r.order_external_id = None
                r.qualified_at = r.reward_due_at = None
                r.updated_at = now
                continue
            due = _due(program, config, order.delivered_at or now)
            if due > now:  # the delivery moved later
                r.reward_due_at = due
                continue
            if r.referrer_id not in caps:
                caps[r.referrer_id] = repo.rewarded_count(session, store.id, r.referrer_id)
            refusal = self._refusal(
                session,
                store,
                r,
                parties,
                rewarded=caps[r.referrer_id],
                cap=config.per_referrer_cap,
            )
            if refusal is not None:
                _reject(r, refusal, now)
                continue
            referee_ext = parties[r.referee_id].external_id
            referrer_ext = parties[r.referrer_id].external_id
            for side, customer_id, points, reason in (
                (
                    "referrer",
                    r.referrer_id,
                    config.referrer_points,
                    f"referral: {referee_ext} joined",
                ),
                (
                    "referee",
                    r.referee_id,
                    config.referee_points,
                    f"referral: welcome from {referrer_ext}",
                ),
            ):
                if points > 0:
                    earnings.append(
                        Earning(
                            customer_id,
                            f"referral:{r.id}:{side}",
                            points=points,
                            reason=reason,
                            ref=f"referral:{r.id}",
                            expires_at=expires_at,
                        )
                    )
            r.status = ReferralStatus.rewarded
            r.rewarded_at = now
            r.referrer_points = config.referrer_points
            r.referee_points = config.referee_points
            r.detail = None
            r.updated_at = now
            caps[r.referrer_id] += 1
            rewarded += 1
        if earnings:
            ledger.earn_many(session, store, earnings, now=now)
        return rewarded


def _due(program: ProgramConfig, config: ReferralConfig, delivered_at: datetime) -> datetime:
    return (
        program.available_at(delivered_at) if config.after_return_window else as_utc(delivered_at)
    )


def _status_counts(counts: dict[str, int]) -> dict[str, int]:
    return {s.value: counts.get(s.value, 0) for s in ReferralStatus}


# -- surprise rewards ---------------------------------------------------------------------


def _surprise_config(session: Session, store: Store) -> tuple[ProgramConfig, SurpriseConfig]:
    program = active_program(session, store)
    if program is None or program.surprise is None:
        raise Conflict(
            "The active programme has no `surprise` section (budget_points_per_month, "
            "max_per_customer_per_year, min_gap_days, jitter): no surprise can be planned."
        )
    return program, program.surprise


class SurpriseService:
    def plan(
        self,
        session: Session,
        store: Store,
        body: PlanIn,
        *,
        api_key_id: int | None = None,
        now: datetime | None = None,
    ) -> PlanOut:
        """Schedule one gift per member of the segment (flagged members left out), each
        with its own seeded delay and amount (``domain.surprise_draw``)."""
        now = _now(now)
        program, config = _surprise_config(session, store)
        if body.points > config.budget_points_per_month:
            raise Invalid(
                f"points: {body.points} is above the monthly budget of "
                f"{config.budget_points_per_month} points"
            )
        members = self._segment(session, store, program, body, now)
        eligible = sorted(c.id for c in members if not c.flagged)
        plan = SurprisePlan(
            store_id=store.id,
            points=body.points,
            note=body.note,
            segment=body.segment.model_dump(mode="json", exclude_none=True),
            scheduled=len(eligible),
            excluded=len(members) - len(eligible),
            api_key_id=api_key_id,
            created_at=now,
        )
        repo.add(session, plan)
        rows = []
        for customer_id in eligible:
            draw = domain.surprise_draw(
                store.signing_secret,
                plan.id,
                customer_id,
                body.points,
                config.jitter.days,
                config.jitter.amount_percent,
            )
            rows.append(
                {
                    "store_id": store.id,
                    "plan_id": plan.id,
                    "customer_id": customer_id,
                    "points": draw.points,
                    "due_at": now + draw.delay,
                    "status": GiftStatus.scheduled.value,
                    "updated_at": now,
                }
            )
        repo.insert_gifts(session, rows)
        first, last = repo.gift_due_range(session, plan.id)
        return PlanOut(
            id=plan.id,
            points=plan.points,
            note=plan.note,
            segment=plan.segment,
            scheduled=plan.scheduled,
            excluded=plan.excluded,
            first_due_at=first,
            last_due_at=last,
            created_at=plan.created_at,
        )

    def _segment(
        self, session: Session, store: Store, program: ProgramConfig, body: PlanIn, now: datetime
    ) -> list[Customer]:
        seg = body.segment
        if seg.customers is not None:
            found = repo.customers_by_external_ids(session, store.id, seg.customers)
            missing = [
                {"field": f"segment.customers.{i}", "message": f"no customer {ext!r}"}
                for i, ext in enumerate(seg.customers)
                if ext not in found
            ]
            if missing:
                raise Invalid(
                    f"{missing[0]['field']}: {missing[0]['message']} in this store",
                    errors=missing[:50],
                )
            return list(found.values())
        min_spend = None
        if seg.min_spend is not None:
            try:
                min_spend = to_minor(seg.min_spend, program.currency)
            except MoneyError as exc:
                raise Invalid(f"segment.min_spend: {exc}") from None
        since = None
        if seg.last_order_within_days is not None:
            since = now - timedelta(days=seg.last_order_within_days)
        ids = repo.segment_by_filter(
            session,
            store.id,
            min_orders=seg.min_orders,
            min_spend_minor=min_spend,
            last_order_since=since,
        )
        return list(repo.customers_by_ids(session, store.id, ids).values())

    def gifts(
        self,
        session: Session,
        store: Store,
        *,
        plan_id: int | None = None,
        status: GiftStatus | None = None,
        limit: int = 50,
        after: int | None = None,
    ) -> GiftPage:
        if plan_id is not None and repo.plan(session, store.id, plan_id) is None:
            message = f"no surprise plan {plan_id} in this store"
            raise NotFound(f"plan_id: {message}", errors=_field("plan_id", message))
        rows = repo.gifts_page(
            session, store.id, plan_id=plan_id, status=status, limit=limit, after=after
        )
        ids = repo.external_ids(session, store.id, [g.customer_id for g in rows])
        return GiftPage(
            items=[
                GiftOut(
                    id=g.id,
                    plan_id=g.plan_id,
                    customer_external_id=ids.get(g.customer_id, ""),
                    points=g.points,
                    due_at=g.due_at,
                    status=g.status,
                    reason=g.reason,
                    detail=g.detail,
                    given_at=g.given_at,
                )
                for g in rows
            ],
            next_after=rows[-1].id if len(rows) == limit else None,
        )

    def run(self, session: Session, store: Store, now: datetime | None = None) -> int:
        """Give the gifts that are due, within the limits; skip (with the reason) those
        a limit stops. Returns the number of gifts given. Idempotent; flushes only."""
        now = _now(now)
        repo.lock_job(session, repo.SURPRISE_JOB, store.id)
        program = active_program(session, store)
        if program is None or program.surprise is None:
            return 0
        config = program.surprise
        month_start, month_end = domain.month_bounds(now, store.timezone)
        year_start, _ = domain.year_bounds(now, store.timezone)
        month_given = repo.given_points(session, store.id, month_start, month_end)
        expires_at = program.expires_at(now, store.timezone)
        notes: dict[int, str | None] = {}
        given = 0
        while batch := repo.due_gifts(session, store.id, now, BATCH):
            ids = [g.customer_id for g in batch]
            customers = repo.customers_by_ids(session, store.id, ids)
            history = repo.gift_history(session, store.id, ids, year_start)
            earnings: list[Earning] = []
            for g in batch:
                count, last = history.get(g.customer_id, (0, None))
                customer = customers[g.customer_id]
                facts = domain.GiftFacts(customer.flagged, count, last, month_given)
                refusal = domain.gift_refusal(
                    g.points,
                    facts,
                    now,
                    budget_per_month=config.budget_points_per_month,
                    max_per_year=config.max_per_customer_per_year,
                    min_gap_days=config.min_gap_days,
                )
                g.updated_at = now
                if refusal is not None:
                    g.status, g.reason, g.detail = GiftStatus.skipped, refusal.rule, refusal.detail
                    continue
                if g.plan_id not in notes:
                    found = repo.plan(session, store.id, g.plan_id)
                    notes[g.plan_id] = found.note if found else None
                note = notes[g.plan_id]
                earnings.append(
                    Earning(
                        g.customer_id,
                        f"surprise:{g.plan_id}:{g.customer_id}",
                        points=g.points,
                        reason=f"surprise: {note}" if note else "surprise",
                        ref=f"surprise:{g.plan_id}",
                        expires_at=expires_at,
                    )
                )
                g.status, g.given_at = GiftStatus.given, now
                month_given += g.points
                history[g.customer_id] = (count + 1, now)
                given += 1
            if earnings:
                ledger.earn_many(session, store, earnings, now=now)
            session.flush()
        return given


referrals = ReferralService()
surprises = SurpriseService()


def run_referrals(session: Session, store: Store, now: datetime | None = None) -> int:
    """The referral job of one store: qualify, then reward what is due. Returns the number
    of referrals rewarded (both sides credited). Flushes, never commits."""
    return referrals.run(session, store, now)


def run_surprises(session: Session, store: Store, now: datetime | None = None) -> int:
    """The surprise job of one store: give due gifts within budget and limits. Returns
    the number of gifts given. Flushes, never commits."""
    return surprises.run(session, store, now)
