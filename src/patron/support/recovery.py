"""Service recovery: compensation in points or coupons for a ticket's customer.

Points go through the ledger (``ledger.adjust``, key ``support:compensation:<id>``),
coupons through the rewards service (``rewards.grant``, key
``support-compensation-<id>``). Within the acting role's cap, for a ticket that is not
opportunistic and a customer not flagged, it is granted at once; otherwise it waits for
a decision by a role whose cap covers it. Every step is an event of the ticket.

Flushes, never commits: the caller is the unit of work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.customers import repository as customers_repo
from patron.customers.models import Customer
from patron.errors import Conflict, Forbidden, Invalid, NotFound, validation_errors
from patron.kit.clock import as_utc_or_now
from patron.kit.money import MoneyError, exponent, from_minor, to_minor
from patron.kit.repository import add_and_flush
from patron.loyalty.orders import active_program
from patron.loyalty.program import CouponReward, ProgramConfig
from patron.loyalty.service import ledger
from patron.rewards.service import rewards
from patron.stores.models import Store
from patron.support import repository as repo
from patron.support import settings as support_settings
from patron.support.common import add_event, field_errors
from patron.support.models import (
    Compensation,
    CompensationKind,
    CompensationStatus,
    Ticket,
)
from patron.support.schemas import CompensationIn, CompensationOut
from patron.support.service import compensation_outs, tickets
from patron.support.settings import Role, SupportConfig


@dataclass(frozen=True)
class Compensated:
    """A compensation and whether this call only replayed it (same key, same request)."""

    row: Compensation
    replayed: bool = False


class RecoveryService:
    def compensate(
        self,
        session: Session,
        store: Store,
        ticket_id: int,
        *,
        key: str,
        kind: CompensationKind,
        reason: str,
        role: Role,
        actor: str,
        points: int | None = None,
        reward_id: str | None = None,
        api_key_id: int | None = None,
        now: datetime | None = None,
    ) -> Compensated:
        """Compensate the ticket's customer with ``points`` or the coupon reward
        ``reward_id``, once per ``key``: granted at once within the ``role``'s cap (ticket
        not opportunistic, customer not flagged), else held for approval (``decide``). A
        replay returns the first compensation; the key with another request is refused
        (409)."""
        now = as_utc_or_now(now)
        try:
            data = CompensationIn(
                key=key,
                kind=kind,
                reason=reason,
                role=role,
                actor=actor,
                points=points,
                reward_id=reward_id,
            )
        except ValidationError as exc:
            errors = validation_errors(list(exc.errors()))
            raise Invalid(f"{errors[0]['field']}: {errors[0]['message']}", errors=errors) from None
        first = repo.compensation_by_key(session, store.id, data.key)
        if first is not None:
            if (first.ticket_id, first.kind, first.points or None, first.reward_id) != (
                ticket_id,
                data.kind,
                data.points,
                data.reward_id,
            ):
                message = "already used for another compensation; send a new key"
                raise Conflict(
                    f"key: {message} (compensation {first.id})",
                    errors=field_errors("key", message),
                    compensation_id=first.id,
                )
            return Compensated(first, replayed=True)
        ticket = tickets.get(session, store, ticket_id, lock=True)
        if ticket.customer_id is None:
            raise Conflict(
                f"Ticket {ticket.id} has no known customer: link it to a customer before "
                "compensating."
            )
        customer = customers_repo.get(session, store.id, ticket.customer_id)
        assert customer is not None  # the foreign key nulls the id on delete
        program = active_program(session, store)
        value_minor, currency = self._value(program, data)
        config = support_settings.load(session, store)
        row = Compensation(
            store_id=store.id,
            ticket_id=ticket.id,
            customer_id=customer.id,
            key=data.key,
            kind=data.kind,
            points=data.points or 0,
            reward_id=data.reward_id,
            value_minor=value_minor or 0,
            status=CompensationStatus.pending_approval,
            reason=data.reason,
            role=data.role.value,
            actor=data.actor,
            api_key_id=api_key_id,
            created_at=now,
        )
        try:
            with session.begin_nested():  # a concurrent request with the same key
                add_and_flush(session, row)
        except IntegrityError:
            raced = repo.compensation_by_key(session, store.id, data.key)
            if raced is None:
                raise
            return Compensated(raced, replayed=True)
        held = self._hold_reasons(config, data.role, row, value_minor, currency, ticket, customer)
        add_event(
            session,
            ticket,
            "compensation_requested",
            data.actor,
            {
                "compensation": row.id,
                "kind": row.kind.value,
                "points": row.points,
                "reward_id": row.reward_id,
                "value_minor": value_minor,
                "role": data.role.value,
                "reason": data.reason,
            },
            now,
        )
        if held:
            add_event(
                session,
                ticket,
                "compensation_held",
                data.actor,
                {"compensation": row.id, "why": held},
                now,
            )
        else:
            self._grant(session, store, ticket, row, data.actor, api_key_id, now)
        session.flush()
        return Compensated(row)

    def _value(
        self, program: ProgramConfig | None, data: CompensationIn
    ) -> tuple[int | None, str | None]:
        """A coupon's face value in minor units (None: a percent coupon without a maximum
        has no bounded value) and its currency."""
        if program is None:
            what = "points" if data.kind == CompensationKind.points else "coupons"
            raise Conflict(
                f"This store runs no loyalty programme: {what} cannot be given "
                "(PUT /v1/loyalty/program first)."
            )
        if data.kind == CompensationKind.points:
            return None, None
        reward = next((r for r in program.rewards if r.id == data.reward_id), None)
        if reward is None:
            message = f"no reward {data.reward_id!r} in the active programme"
            raise NotFound(f"reward_id: {message}", errors=field_errors("reward_id", message))
        if not isinstance(reward, CouponReward):
            message = f"{data.reward_id!r} is a {reward.type} reward, not a coupon"
            raise Invalid(f"reward_id: {message}", errors=field_errors("reward_id", message))
        try:
            if reward.discount_type == "fixed":
                return to_minor(reward.value, program.currency), program.currency
            if reward.max_discount is not None:
                return to_minor(reward.max_discount, program.currency), program.currency
        except MoneyError as exc:  # pragma: no cover - the programme validated its amounts
            raise Invalid(f"reward_id: {exc}") from None
        return None, program.currency

    def _hold_reasons(
        self,
        config: SupportConfig,
        role: Role,
        row: Compensation,
        value_minor: int | None,
        currency: str | None,
        ticket: Ticket,
        customer: Customer,
    ) -> list[str]:
        """Why the compensation needs approval (empty: grant it)."""
        why = self._over_cap(config, role, row, value_minor, currency)
        if ticket.opportunistic:
            why.append("the claim was graded opportunistic")
        if customer.flagged:
            why.append("the customer is flagged")
        return why

    def _over_cap(
        self,
        config: SupportConfig,
        role: Role,
        row: Compensation,
        value_minor: int | None,
        currency: str | None,
    ) -> list[str]:
        cap = config.cap(role)
        if row.kind == CompensationKind.points:
            if cap.points is not None and row.points > cap.points:
                return [f"{row.points} points is above the {role.value}'s cap of {cap.points}"]
            return []
        if cap.coupon_value is None:
            return []
        assert currency is not None
        limit = int(cap.coupon_value.scaleb(exponent(currency)))
        if value_minor is None:
            return [f"a percent coupon without a maximum is above the {role.value}'s cap"]
        if value_minor > limit:
            value = from_minor(value_minor, currency)
            return [
                f"a coupon worth {value} {currency} is above the {role.value}'s cap of "
                f"{cap.coupon_value} {currency}"
            ]
        return []

    def _grant(
        self,
        session: Session,
        store: Store,
        ticket: Ticket,
        row: Compensation,
        actor: str,
        api_key_id: int | None,
        now: datetime,
    ) -> None:
        reason = f"service recovery, ticket #{ticket.id}: {row.reason}"[:255]
        if row.kind == CompensationKind.points:
            row.ledger_key = f"support:compensation:{row.id}"
            ledger.adjust(
                session,
                store,
                row.customer_id,
                key=row.ledger_key,
                points=row.points,
                reason=reason,
                api_key_id=api_key_id,
                now=now,
            )
        else:
            assert row.reward_id is not None
            given = rewards.grant(
                session,
                store,
                row.customer_id,
                row.reward_id,
                key=f"support-compensation-{row.id}",
                now=now,
            )
            row.redemption_id = given.redemption.id
            row.coupon_code = given.coupon.code if given.coupon is not None else None
        row.status = CompensationStatus.granted
        add_event(
            session,
            ticket,
            "compensation_granted",
            actor,
            {
                "compensation": row.id,
                "kind": row.kind.value,
                "points": row.points,
                "reward_id": row.reward_id,
                "coupon_code": row.coupon_code,
                "ledger_key": row.ledger_key,
            },
            now,
        )

    def decide(
        self,
        session: Session,
        store: Store,
        compensation_id: int,
        *,
        approve: bool,
        role: Role,
        actor: str,
        note: str | None = None,
        now: datetime | None = None,
    ) -> Compensation:
        """Approve (grant) or reject a compensation held for approval. The approver's cap
        must cover it, an opportunistic claim or a flagged customer needs a lead or a
        manager, and nobody approves their own request. Deciding the same way again is a
        no-op; the other way, 409."""
        now = as_utc_or_now(now)
        row = repo.compensation(session, store.id, compensation_id, for_update=True)
        if row is None:
            raise NotFound(f"No compensation {compensation_id} in this store.")
        done = {
            CompensationStatus.granted: True,
            CompensationStatus.rejected: False,
        }
        if row.status in done:
            if done[row.status] == approve and row.decided_at is not None:
                return row
            raise Conflict(
                f"Compensation {row.id} is already {row.status.value}; it cannot be "
                f"{'approved' if approve else 'rejected'} now."
            )
        ticket = tickets.get(session, store, row.ticket_id, lock=True)
        if approve:
            if actor == row.actor:
                raise Forbidden(
                    f"{actor!r} asked for compensation {row.id}: another person must approve it."
                )
            customer = customers_repo.get(session, store.id, row.customer_id)
            flagged = customer is not None and customer.flagged
            if (ticket.opportunistic or flagged) and role == Role.agent:
                raise Forbidden(
                    "An opportunistic claim or a flagged customer needs a lead or a manager "
                    "to approve compensation."
                )
            config = support_settings.load(session, store)
            program = active_program(session, store)
            currency = program.currency if program is not None else store.currency
            value = row.value_minor or None  # 0: an unbounded percent coupon
            over = self._over_cap(config, role, row, value, currency)
            if over:
                raise Forbidden(f"Cannot approve: {over[0]}.")
        row.decided_at = now
        row.decided_by = actor[:128]
        data: dict[str, Any] = {"compensation": row.id, "role": role.value, "approve": approve}
        if note:
            data["note"] = note
        if approve:
            add_event(session, ticket, "compensation_approved", actor, data, now)
            self._grant(session, store, ticket, row, actor, row.api_key_id, now)
        else:
            row.status = CompensationStatus.rejected
            add_event(session, ticket, "compensation_rejected", actor, data, now)
        session.flush()
        return row

    def compensation_outs(
        self, session: Session, store: Store, rows: Iterable[Compensation]
    ) -> list[CompensationOut]:
        """Compensations as answers, their coupon value in the programme's currency."""
        return compensation_outs(session, store, rows)


recovery = RecoveryService()
