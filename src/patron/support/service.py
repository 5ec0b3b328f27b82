"""Tickets: open (API, e-mail, feedback follow-ups), converse, move through their states
under SLA clocks (``clock.py``), grade claims, and the SLA job.

Services flush, never commit: the request, CLI command or job that calls them is the
unit of work. Compensation lives in ``recovery.py``, the read-only reports (attainment,
customer 360) in ``insights.py``; both build on this module, never the reverse.

**The SLA job** (``check_sla``): for each ticket still running, a breach warning once a
clock has used ``warn_at`` of its target, and once it is breached an escalation: level 1
for the first response, 2 for the resolution. Each warning and breach is an event, once
per ticket and clock: running the job twice changes nothing.

Other packages use only ``tickets.open_for_customer`` and ``run_sla_check``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.customers import repository as customers_repo
from patron.customers.models import Customer, TouchpointKind
from patron.errors import Conflict, Invalid, NotFound
from patron.kit.clock import as_utc_or_now
from patron.kit.hashing import payload_hash
from patron.kit.money import from_minor
from patron.kit.repository import (
    add_and_flush,
    external_ids_by_id,
    lock_store_job,
)
from patron.loyalty import membership
from patron.loyalty.orders import active_program
from patron.stores.models import Store
from patron.support import repository as repo
from patron.support import settings as support_settings
from patron.support.clock import (
    DONE,
    clock,
    close_pause,
    first_done,
    open_pause,
    pauses_of,
    retime,
    sla_view,
)
from patron.support.common import add_event, field_errors
from patron.support.grading import Claim, Grade, grade
from patron.support.models import (
    Compensation,
    CompensationKind,
    Direction,
    Priority,
    Ticket,
    TicketChannel,
    TicketMessage,
    TicketStatus,
)
from patron.support.schemas import (
    ClaimIn,
    CompensationOut,
    EventOut,
    MessageIn,
    MessageOut,
    SlaCheckOut,
    TicketDetail,
    TicketIn,
    TicketOut,
    TicketPage,
    TicketPatch,
)
from patron.support.settings import SupportConfig

BATCH = 500
SAME_ISSUE_WINDOW = timedelta(days=30)
CLAIMS_WINDOW = timedelta(days=90)
PRIORITY_ORDER = (Priority.low, Priority.normal, Priority.high, Priority.urgent)
# Allowed moves; staying in a state is a no-op. ``new`` is only ever a starting state.
TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    TicketStatus.new: frozenset(
        {TicketStatus.open, TicketStatus.pending, TicketStatus.resolved, TicketStatus.closed}
    ),
    TicketStatus.open: frozenset(
        {TicketStatus.pending, TicketStatus.resolved, TicketStatus.closed}
    ),
    TicketStatus.pending: frozenset(
        {TicketStatus.open, TicketStatus.resolved, TicketStatus.closed}
    ),
    TicketStatus.resolved: frozenset({TicketStatus.open, TicketStatus.closed}),
    TicketStatus.closed: frozenset(),
}
CLOCKS = ("first_response", "resolution")
WARNING = "sla_warning:"
BREACH = "sla_breach:"


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlaCheck:
    """What one run of the SLA job did."""

    checked: int = 0
    warnings: int = 0
    breaches: int = 0
    escalated: int = 0

    def out(self) -> SlaCheckOut:
        return SlaCheckOut(**asdict(self))


@dataclass(frozen=True)
class _Context:
    """The customer facts grading adds to a claim."""

    clv_percentile: float | None
    tier_rank: int | None
    tier_count: int
    same_issue: int
    prior_claims: int
    refund_rate: float | None
    order_count: int | None
    flagged: bool


def _higher(a: Priority, b: Priority) -> bool:
    return PRIORITY_ORDER.index(a) > PRIORITY_ORDER.index(b)


# -- compensations as answers -------------------------------------------------------------


def compensation_outs(
    session: Session, store: Store, rows: Iterable[Compensation]
) -> list[CompensationOut]:
    """Compensation rows as answers (``recovery.compensation_outs``). Here, not in
    ``recovery.py``, because a ticket's detail lists its compensations and this module
    does not import ``recovery``."""
    rows = list(rows)
    ids = external_ids_by_id(session, Customer, store.id, [r.customer_id for r in rows])
    program = active_program(session, store) if rows else None
    currency = program.currency if program is not None else store.currency
    out = []
    for r in rows:
        coupon = r.kind == CompensationKind.coupon
        out.append(
            CompensationOut(
                id=r.id,
                ticket_id=r.ticket_id,
                customer_external_id=ids.get(r.customer_id, ""),
                key=r.key,
                kind=r.kind,
                points=r.points,
                reward_id=r.reward_id,
                value=from_minor(r.value_minor, currency) if coupon and r.value_minor else None,
                currency=currency if coupon else None,
                status=r.status,
                reason=r.reason,
                role=r.role,
                actor=r.actor,
                ledger_key=r.ledger_key,
                redemption_id=r.redemption_id,
                coupon_code=r.coupon_code,
                created_at=r.created_at,
                decided_at=r.decided_at,
                decided_by=r.decided_by,
            )
        )
    return out


class TicketService:
    # -- reading --------------------------------------------------------------------------

    def get(self, session: Session, store: Store, ticket_id: int, *, lock: bool = False) -> Ticket:
        found = repo.ticket(session, store.id, ticket_id, for_update=lock)
        if found is None:
            raise NotFound(f"No ticket {ticket_id} in this store.")
        return found

    def out(
        self,
        session: Session,
        store: Store,
        tickets: Sequence[Ticket],
        now: datetime | None = None,
        config: SupportConfig | None = None,
    ) -> list[TicketOut]:
        now = as_utc_or_now(now)
        config = config or support_settings.load(session, store)
        cal = config.calendar()
        ids = external_ids_by_id(
            session, Customer, store.id, [t.customer_id for t in tickets if t.customer_id]
        )
        return [
            TicketOut(
                id=t.id,
                channel=t.channel,
                subject=t.subject,
                status=t.status,
                priority=t.priority,
                category=t.category,
                source=t.source,
                customer_external_id=ids.get(t.customer_id) if t.customer_id else None,
                requester=t.requester,
                order_external_id=t.order_external_id,
                product_sku=t.product_sku,
                assignee=t.assignee,
                created_at=t.created_at,
                updated_at=t.updated_at,
                first_responded_at=t.first_responded_at,
                resolved_at=t.resolved_at,
                closed_at=t.closed_at,
                grade_level=t.grade_level,
                opportunistic=t.opportunistic,
                sla=sla_view(cal, t, now, config.warn_at),
            )
            for t in tickets
        ]

    def detail(
        self, session: Session, store: Store, ticket_id: int, now: datetime | None = None
    ) -> TicketDetail:
        """A ticket with its messages, events (the audit trail), SLA view, grade and
        compensations."""
        t = self.get(session, store, ticket_id)
        base = self.out(session, store, [t], now)[0]
        return TicketDetail(
            **base.model_dump(),
            claim=t.claim,
            grade=t.grade,
            messages=[
                MessageOut.model_validate(m) for m in repo.messages_of(session, store.id, t.id)
            ],
            events=[EventOut.model_validate(e) for e in repo.events_of(session, store.id, t.id)],
            compensations=compensation_outs(
                session, store, repo.compensations_of(session, store.id, t.id)
            ),
        )

    def page(
        self,
        session: Session,
        store: Store,
        *,
        status: Sequence[TicketStatus] | None = None,
        channel: TicketChannel | None = None,
        priority: Priority | None = None,
        customer_external_id: str | None = None,
        breached: bool | None = None,
        limit: int = 50,
        after: int | None = None,
        now: datetime | None = None,
    ) -> TicketPage:
        """Tickets, oldest first (keyset pages on the id)."""
        now = as_utc_or_now(now)
        customer_id = None
        if customer_external_id is not None:
            found = customers_repo.get_by_external_id(session, store.id, customer_external_id)
            if found is None:
                return TicketPage(items=[], next_after=None)
            customer_id = found.id
        rows = repo.tickets_page(
            session,
            store.id,
            status=status,
            channel=channel,
            priority=priority,
            customer_id=customer_id,
            breached=breached,
            now=now,
            limit=limit,
            after=after,
        )
        return TicketPage(
            items=self.out(session, store, rows, now),
            next_after=rows[-1].id if len(rows) == limit else None,
        )

    # -- opening --------------------------------------------------------------------------

    def open(
        self,
        session: Session,
        store: Store,
        data: TicketIn,
        *,
        source: str = "api",
        actor: str | None = None,
        now: datetime | None = None,
    ) -> tuple[Ticket, bool]:
        """Open a ticket; returns (ticket, created). With an ``idempotency_key`` it opens
        once: the same key and body again returns the first ticket, the key with another
        body is refused (409)."""
        now = as_utc_or_now(now)
        digest = payload_hash(data.model_dump(mode="json", exclude={"idempotency_key"}))
        source_ref = None
        if data.idempotency_key is not None:
            source_ref = f"{source}:{data.idempotency_key}"[:255]
            existing = repo.ticket_by_source_ref(session, store.id, source_ref)
            if existing is not None:
                return self._replay(session, store, existing, digest), False
        customer = None
        if data.customer_external_id is not None:
            customer = customers_repo.get_by_external_id(
                session, store.id, data.customer_external_id
            )
            if customer is None:
                message = f"no customer with external id {data.customer_external_id!r}"
                raise NotFound(
                    f"customer_external_id: {message} in this store",
                    errors=field_errors("customer_external_id", message),
                )
        elif data.requester is not None and "@" in data.requester:
            customer = repo.customer_by_email(session, store.id, data.requester)
        requester = data.requester or (customer.email if customer else None)
        ticket, created = self._create(
            session,
            store,
            customer=customer,
            requester=requester,
            channel=data.channel,
            subject=data.subject,
            body=data.body,
            source=source,
            source_ref=source_ref,
            priority=data.priority,
            category=data.category,
            order_external_id=data.order_external_id,
            product_sku=data.product_sku,
            assignee=data.assignee,
            claim=data.claim,
            author=requester,
            digest=digest,
            actor=actor or source,
            now=now,
        )
        if not created:
            return self._replay(session, store, ticket, digest), False
        return ticket, True

    def open_for_customer(
        self,
        session: Session,
        store: Store,
        *,
        customer_id: int,
        channel: TicketChannel,
        subject: str,
        body: str,
        source: str,
        source_ref: str,
        priority: Priority | None = None,
        category: str | None = None,
        order_external_id: str | None = None,
        product_sku: str | None = None,
        now: datetime | None = None,
    ) -> tuple[Ticket, bool]:
        """Open a ticket for a known customer once per ``source_ref`` (feedback follow-ups:
        an unhappy survey answer, a low review). Returns (ticket, created); a repeat
        returns the first ticket."""
        now = as_utc_or_now(now)
        existing = repo.ticket_by_source_ref(session, store.id, source_ref)
        if existing is not None:
            return existing, False
        customer = customers_repo.get(session, store.id, customer_id)
        if customer is None:
            raise NotFound(f"No customer {customer_id} in this store.")
        return self._create(
            session,
            store,
            customer=customer,
            requester=customer.email,
            channel=channel,
            subject=(subject.strip() or "(no subject)")[:255],
            body=body or "(empty)",
            source=source[:32],
            source_ref=source_ref[:255],
            priority=priority,
            category=category[:32] if category else None,
            order_external_id=order_external_id,
            product_sku=product_sku,
            author=customer.email,
            actor=source[:128],
            now=now,
        )

    def open_from_email(
        self,
        session: Session,
        store: Store,
        *,
        sender: str | None,
        subject: str,
        body: str,
        message_id: str,
        follow_up_of: int | None = None,
        now: datetime | None = None,
    ) -> tuple[Ticket, bool]:
        """A new e-mail ticket, the customer found by the sender's address."""
        now = as_utc_or_now(now)
        source_ref = f"email:{message_id}"[:255]
        existing = repo.ticket_by_source_ref(session, store.id, source_ref)
        if existing is not None:
            return existing, False
        customer = repo.customer_by_email(session, store.id, sender) if sender else None
        ticket, created = self._create(
            session,
            store,
            customer=customer,
            requester=sender,
            channel=TicketChannel.email,
            subject=(subject.strip() or "(no subject)")[:255],
            body=body or "(empty)",
            source="email",
            source_ref=source_ref,
            author=sender,
            message_id=message_id,
            digest=None,
            actor="email",
            now=now,
            extra={"follow_up_of": follow_up_of} if follow_up_of else None,
        )
        return ticket, created

    def _replay(self, session: Session, store: Store, ticket: Ticket, digest: str) -> Ticket:
        opened = repo.first_event(session, store.id, ticket.id, "opened")
        first = opened.data.get("payload_hash") if opened is not None else None
        if first is not None and first != digest:
            message = "already used to open another ticket; send a new key for a new ticket"
            raise Conflict(
                f"idempotency_key: {message} (ticket {ticket.id})",
                errors=field_errors("idempotency_key", message),
                ticket_id=ticket.id,
            )
        return ticket

    def _create(
        self,
        session: Session,
        store: Store,
        *,
        customer: Customer | None,
        requester: str | None,
        channel: TicketChannel,
        subject: str,
        body: str,
        source: str,
        source_ref: str | None,
        author: str | None,
        actor: str,
        now: datetime,
        priority: Priority | None = None,
        category: str | None = None,
        order_external_id: str | None = None,
        product_sku: str | None = None,
        assignee: str | None = None,
        claim: ClaimIn | None = None,
        message_id: str | None = None,
        digest: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Ticket, bool]:
        config = support_settings.load(session, store)
        graded: tuple[Claim, Grade] | None = None
        if claim is not None:
            category = category or claim.category
            graded = self._grade(
                session,
                store,
                claim,
                customer=customer,
                order_external_id=order_external_id,
                product_sku=product_sku,
                ticket_id=None,
                now=now,
            )
        if priority is None:
            priority = Priority(graded[1].priority.value) if graded else Priority.normal
        target = config.target(channel, priority)
        ticket = Ticket(
            store_id=store.id,
            customer_id=customer.id if customer else None,
            requester=requester[:320] if requester else None,
            channel=channel,
            subject=subject,
            status=TicketStatus.new,
            priority=priority,
            category=category,
            source=source,
            source_ref=source_ref,
            order_external_id=order_external_id,
            product_sku=product_sku,
            assignee=assignee,
            created_at=now,
            updated_at=now,
            first_response_target_s=target.first_response,
            resolution_target_s=target.resolution,
            pauses=[],
            escalation_level=0,
            opportunistic=False,
        )
        if graded is not None:
            self._set_grade(ticket, *graded)
        retime(ticket, config.calendar())
        try:
            with session.begin_nested():  # a concurrent open with the same source_ref
                add_and_flush(session, ticket)
        except IntegrityError:
            existing = (
                repo.ticket_by_source_ref(session, store.id, source_ref) if source_ref else None
            )
            if existing is None:
                raise
            return existing, False
        add_and_flush(
            session,
            TicketMessage(
                store_id=store.id,
                ticket_id=ticket.id,
                direction=Direction.inbound,
                author=author[:320] if author else None,
                body=body,
                message_id=message_id,
                created_at=now,
            ),
        )
        data: dict[str, Any] = {
            "channel": channel.value,
            "priority": priority.value,
            "source": source,
            **(extra or {}),
        }
        if digest is not None:
            data["payload_hash"] = digest
        add_event(session, ticket, "opened", actor, data, now)
        if graded is not None:
            add_event(session, ticket, "graded", actor, self._grade_event(graded[1]), now)
        if customer is not None:
            customers_repo.insert_touchpoints(
                session,
                [
                    {
                        "store_id": store.id,
                        "customer_id": customer.id,
                        "kind": TouchpointKind.ticket.value,
                        "occurred_at": now,
                        "ref": str(ticket.id),
                        "data": {
                            "channel": channel.value,
                            "subject": subject,
                            "priority": priority.value,
                            "category": category,
                        },
                    }
                ],
            )
        session.flush()
        return ticket, True

    # -- conversation and states ----------------------------------------------------------

    def add_message(
        self,
        session: Session,
        store: Store,
        ticket_id: int,
        data: MessageIn,
        *,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> tuple[Ticket, TicketMessage, bool]:
        """Add a message; returns (ticket, message, created). A message whose
        ``message_id`` is stored already is not added twice.

        - inbound (the customer): resumes a pending ticket, reopens a resolved one;
        - outbound (the store): the first stops the first-response clock; with
          ``wait_for_customer`` the ticket becomes pending (the clocks pause);
        - note: internal, changes nothing else."""
        now = as_utc_or_now(now)
        ticket = self.get(session, store, ticket_id, lock=True)
        if data.message_id is not None:
            seen = repo.message_by_message_id(session, store.id, data.message_id)
            if seen is not None:
                if seen.ticket_id != ticket.id:
                    why = f"already recorded on ticket {seen.ticket_id}"
                    raise Conflict(f"message_id: {why}", errors=field_errors("message_id", why))
                return ticket, seen, False
        if ticket.status == TicketStatus.closed and data.direction != Direction.note:
            raise Conflict(
                f"Ticket {ticket.id} is closed: open a new ticket (a closed ticket takes only "
                "internal notes)."
            )
        if (
            data.wait_for_customer
            and ticket.status == TicketStatus.resolved
            and data.direction == Direction.outbound
        ):
            raise Conflict(
                f"Ticket {ticket.id} is resolved: reopen it before waiting on the customer."
            )
        config = support_settings.load(session, store)
        who = actor or data.author or data.direction.value
        message = TicketMessage(
            store_id=store.id,
            ticket_id=ticket.id,
            direction=data.direction,
            author=data.author,
            body=data.body,
            message_id=data.message_id,
            created_at=now,
        )
        add_and_flush(session, message)
        add_event(
            session,
            ticket,
            "message",
            who,
            {"direction": data.direction.value, "message": message.id},
            now,
        )
        if data.direction == Direction.inbound:
            if ticket.status in (TicketStatus.pending, TicketStatus.resolved):
                self._move(session, config, ticket, TicketStatus.open, who, now, "customer replied")
        elif data.direction == Direction.outbound:
            if ticket.first_responded_at is None:
                ticket.first_responded_at = now
                state = clock(config.calendar(), ticket, "first_response", now, config.warn_at)
                add_event(
                    session,
                    ticket,
                    "first_response",
                    who,
                    {
                        "used_s": state.used_s,
                        "target_s": state.target_s,
                        "met": state.state == "met",
                    },
                    now,
                )
                ticket.warned_at = None  # the running clock is now the resolution's
            # The reply says whose turn it is: the customer's (pending, the clocks pause)
            # or still the store's (open).
            if data.wait_for_customer:
                if ticket.status != TicketStatus.pending:
                    self._move(session, config, ticket, TicketStatus.pending, who, now, None)
            elif ticket.status in (TicketStatus.new, TicketStatus.pending):
                self._move(session, config, ticket, TicketStatus.open, who, now, None)
        self._save(session, config, ticket, now)
        return ticket, message, True

    def reply(
        self,
        session: Session,
        store: Store,
        ticket_id: int,
        *,
        body: str,
        author: str | None = None,
        wait_for_customer: bool = False,
        message_id: str | None = None,
        now: datetime | None = None,
    ) -> Ticket:
        """The store's answer (see ``add_message``)."""
        data = MessageIn(
            direction=Direction.outbound,
            body=body,
            author=author,
            wait_for_customer=wait_for_customer,
            message_id=message_id,
        )
        return self.add_message(session, store, ticket_id, data, now=now)[0]

    def set_status(
        self,
        session: Session,
        store: Store,
        ticket_id: int,
        status: TicketStatus,
        *,
        actor: str | None = None,
        note: str | None = None,
        now: datetime | None = None,
    ) -> Ticket:
        """Move a ticket to ``status`` (the same status: no-op). Impossible moves (back to
        new, out of closed, pending from resolved) are refused with 409."""
        now = as_utc_or_now(now)
        ticket = self.get(session, store, ticket_id, lock=True)
        if status == ticket.status:
            return ticket
        if status not in TRANSITIONS[ticket.status]:
            allowed = ", ".join(sorted(s.value for s in TRANSITIONS[ticket.status])) or "none"
            message = (
                f"a {ticket.status.value} ticket cannot become {status.value} (allowed: {allowed})"
            )
            if ticket.status == TicketStatus.closed:
                message += "; open a new ticket instead"
            raise Conflict(f"status: {message}", errors=field_errors("status", message))
        config = support_settings.load(session, store)
        self._move(session, config, ticket, status, actor or "api", now, note)
        return self._save(session, config, ticket, now)

    def _save(
        self, session: Session, config: SupportConfig, ticket: Ticket, now: datetime
    ) -> Ticket:
        """Stamp a changed ticket, re-time its SLA clocks (``retime``) and flush it."""
        ticket.updated_at = now
        retime(ticket, config.calendar())
        session.flush()
        return ticket

    def _move(
        self,
        session: Session,
        config: SupportConfig,
        ticket: Ticket,
        status: TicketStatus,
        actor: str,
        now: datetime,
        note: str | None,
    ) -> None:
        before = ticket.status
        data: dict[str, Any] = {"from": before.value, "to": status.value}
        reopened = before in DONE and status not in DONE
        if before == TicketStatus.pending or reopened:
            paused = close_pause(ticket, now)
            data["paused_s"] = int(paused.total_seconds())
        if reopened:
            ticket.resolved_at = None
        if status == TicketStatus.pending:
            open_pause(ticket, now)
        if status in DONE and before not in DONE:
            # Resolution stops the clock; while resolved it stays stopped (a pause) so a
            # reopened ticket continues where it was.
            ticket.resolved_at = now
            open_pause(ticket, now)
            state = clock(config.calendar(), ticket, "resolution", now, config.warn_at)
            data["resolution"] = {"used_s": state.used_s, "met": state.state == "met"}
        if status == TicketStatus.closed:
            ticket.closed_at = now
        if note:
            data["note"] = note
        ticket.status = status
        kind = "reopened" if reopened else "status_changed"
        add_event(session, ticket, kind, actor, data, now)

    def update(
        self,
        session: Session,
        store: Store,
        ticket_id: int,
        patch: TicketPatch,
        *,
        now: datetime | None = None,
    ) -> Ticket:
        """Change priority (re-targets the clocks still running), assignee or category."""
        now = as_utc_or_now(now)
        ticket = self.get(session, store, ticket_id, lock=True)
        actor = patch.actor or "api"
        config = support_settings.load(session, store)
        fields = patch.model_fields_set
        if "priority" in fields and patch.priority is not None:
            self._reprioritise(session, config, ticket, patch.priority, actor, now)
        for name, kind in (("assignee", "assigned"), ("category", "categorized")):
            before, after = getattr(ticket, name), getattr(patch, name)
            if name in fields and after != before:
                add_event(session, ticket, kind, actor, {"from": before, "to": after}, now)
                setattr(ticket, name, after)
        return self._save(session, config, ticket, now)

    def _reprioritise(
        self,
        session: Session,
        config: SupportConfig,
        ticket: Ticket,
        priority: Priority,
        actor: str,
        now: datetime,
    ) -> None:
        if priority == ticket.priority:
            return
        target = config.target(ticket.channel, priority)
        data: dict[str, Any] = {"from": ticket.priority.value, "to": priority.value}
        if first_done(ticket) is None:
            ticket.first_response_target_s = target.first_response
            data["first_response_target_s"] = target.first_response
        if ticket.status not in DONE:
            ticket.resolution_target_s = target.resolution
            data["resolution_target_s"] = target.resolution
        ticket.priority = priority
        add_event(session, ticket, "priority_changed", actor, data, now)

    # -- grading --------------------------------------------------------------------------

    def regrade(
        self,
        session: Session,
        store: Store,
        ticket_id: int,
        claim_in: ClaimIn,
        *,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> Ticket:
        """Grade (again) the ticket's claim with the customer's current context. A grade
        suggesting a higher priority raises the ticket's (never lowers it)."""
        now = as_utc_or_now(now)
        ticket = self.get(session, store, ticket_id, lock=True)
        if ticket.status == TicketStatus.closed:
            raise Conflict(f"Ticket {ticket.id} is closed: its grade can no longer change.")
        customer = (
            customers_repo.get(session, store.id, ticket.customer_id)
            if ticket.customer_id
            else None
        )
        claim, result = self._grade(
            session,
            store,
            claim_in,
            customer=customer,
            order_external_id=ticket.order_external_id,
            product_sku=ticket.product_sku,
            ticket_id=ticket.id,
            now=now,
        )
        self._set_grade(ticket, claim, result)
        who = actor or "api"
        if ticket.category is None:
            ticket.category = claim.category
        add_event(session, ticket, "graded", who, self._grade_event(result), now)
        config = support_settings.load(session, store)
        suggested = Priority(result.priority.value)
        if _higher(suggested, ticket.priority):
            self._reprioritise(session, config, ticket, suggested, "grading", now)
        return self._save(session, config, ticket, now)

    def _grade(
        self,
        session: Session,
        store: Store,
        claim_in: ClaimIn,
        *,
        customer: Customer | None,
        order_external_id: str | None,
        product_sku: str | None,
        ticket_id: int | None,
        now: datetime,
    ) -> tuple[Claim, Grade]:
        context = self._context(
            session, store, customer, claim_in.category, product_sku, ticket_id, now
        )
        order_amount = claim_in.order_amount
        if order_amount is None and order_external_id is not None:
            found = repo.order_total(session, store.id, order_external_id)
            if found is not None:
                order_amount = from_minor(found[0], found[1])
        try:
            claim = Claim(
                category=claim_in.category,
                requested_compensation=claim_in.requested_compensation,
                order_amount=order_amount,
                backed_by_policy=claim_in.backed_by_policy,
                lawful=claim_in.lawful,
                safety_issue=claim_in.safety_issue,
                public_exposure=claim_in.public_exposure,
                customer_clv_percentile=context.clv_percentile,
                customer_tier_rank=context.tier_rank,
                tier_count=context.tier_count,
                same_issue_count=context.same_issue,
                prior_claims_90d=context.prior_claims,
                refund_rate=context.refund_rate,
                flagged=context.flagged,
                order_count=context.order_count,
            )
        except ValueError as exc:
            raise Invalid(f"claim.{exc}") from None
        return claim, grade(claim)

    def _context(
        self,
        session: Session,
        store: Store,
        customer: Customer | None,
        category: str,
        product_sku: str | None,
        ticket_id: int | None,
        now: datetime,
    ) -> _Context:
        same = repo.same_issue_count(
            session,
            store.id,
            category=category,
            product_sku=product_sku,
            customer_id=customer.id if customer else None,
            exclude_ticket=ticket_id,
            since=now - SAME_ISSUE_WINDOW,
        )
        if customer is None:
            return _Context(None, None, 0, same, 0, None, None, False)
        scored = repo.score(session, store.id, customer.id)
        percentile = None
        if scored is not None and scored.clv is not None:
            percentile = repo.clv_percentile(session, store.id, scored.clv)
        tier_rank, tier_count = None, 0
        program = active_program(session, store)
        if program is not None and program.tiers:
            held = membership.member_tier(session, store.id, customer.id)
            codes = [t.code for t in program.tiers]
            tier_rank = codes.index(held) if held in codes else 0
            tier_count = len(codes)
        orders, refunded = repo.refund_counts(session, store.id, customer.id)
        return _Context(
            clv_percentile=percentile,
            tier_rank=tier_rank,
            tier_count=tier_count,
            same_issue=same,
            prior_claims=repo.prior_claims(
                session, store.id, customer.id, now - CLAIMS_WINDOW, ticket_id
            ),
            refund_rate=refunded / orders if orders else None,
            order_count=orders,
            flagged=customer.flagged,
        )

    def _set_grade(self, ticket: Ticket, claim: Claim, result: Grade) -> None:
        ticket.claim = claim.as_dict()
        ticket.grade = result.as_dict()
        ticket.grade_level = int(result.level)
        ticket.opportunistic = result.opportunistic

    def _grade_event(self, result: Grade) -> dict[str, Any]:
        return {
            "level": int(result.level),
            "service": result.service.value,
            "priority": result.priority.value,
            "opportunistic": result.opportunistic,
            "flags": list(result.flags),
        }

    # -- the SLA job ----------------------------------------------------------------------

    def check_sla(self, session: Session, store: Store, now: datetime | None = None) -> SlaCheck:
        """Warn of clocks near their target and escalate breached ones, once each.

        For every ticket still running (new, open, pending): a ``sla_warning:<clock>``
        event when a clock has used ``warn_at`` of its target (running clocks only), a
        ``sla_breach:<clock>`` event and an escalation (level 1 for the first response,
        2 for the resolution) when it is breached. Idempotent; flushes only."""
        now = as_utc_or_now(now)
        lock_store_job(session, repo.SLA_JOB, store.id)
        config = support_settings.load(session, store)
        cal = config.calendar()
        kinds = [p + c for p in (WARNING, BREACH) for c in CLOCKS]
        checked = warnings = breaches = escalated = 0
        after = 0
        while batch := repo.active_tickets(session, store.id, after, BATCH):
            after = batch[-1].id
            seen = repo.event_kinds(session, store.id, [t.id for t in batch], kinds)
            for t in batch:
                checked += 1
                pauses = pauses_of(t)
                level = t.escalation_level
                for which, to_level in (("first_response", 1), ("resolution", 2)):
                    state = clock(cal, t, which, now, config.warn_at, pauses)
                    if state.done_at is not None:
                        continue  # a late reply is a breach the report shows; no escalation
                    data = {
                        "clock": which,
                        "used_s": state.used_s,
                        "target_s": state.target_s,
                        "due_at": state.due_at.isoformat() if state.due_at else None,
                    }
                    if state.state == "breached" and (t.id, BREACH + which) not in seen:
                        add_event(session, t, BREACH + which, "sla", data, now)
                        breaches += 1
                        if level < to_level:
                            level = to_level
                    elif state.state == "warning" and (t.id, WARNING + which) not in seen:
                        add_event(session, t, WARNING + which, "sla", data, now)
                        t.warned_at = now
                        warnings += 1
                if level > t.escalation_level:
                    add_event(
                        session,
                        t,
                        "escalated",
                        "sla",
                        {"from": t.escalation_level, "to": level},
                        now,
                    )
                    t.escalation_level = level
                    t.escalated_at = now
                    escalated += 1
            session.flush()
        return SlaCheck(checked, warnings, breaches, escalated)


tickets = TicketService()


def run_sla_check(session: Session, store: Store, now: datetime | None = None) -> SlaCheck:
    """The SLA job of one store: breach warnings and escalations, once each. Flushes,
    never commits."""
    return tickets.check_sla(session, store, now)
