"""Support routes: tickets, messages, states, grades, compensations, the customer 360,
the SLA report, settings and inbound e-mail. Parse, call the services, answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response

from patron.auth import Principal, Scope, SessionDep, require
from patron.errors import Invalid, PayloadTooLarge
from patron.kit.text import CleanText, Instant
from patron.support import mail
from patron.support import settings as support_settings
from patron.support.insights import insights
from patron.support.models import Priority, TicketChannel, TicketStatus
from patron.support.recovery import recovery
from patron.support.schemas import (
    ClaimIn,
    CompensationIn,
    CompensationOut,
    Customer360Out,
    DecisionIn,
    GradeIn,
    MailOut,
    MessageIn,
    SettingsOut,
    SlaReportOut,
    StatusIn,
    TicketDetail,
    TicketIn,
    TicketPage,
    TicketPatch,
)
from patron.support.service import tickets

router = APIRouter(tags=["support"])
Read = Annotated[Principal, require(Scope.read)]
Admin = Annotated[Principal, require(Scope.admin)]
Ingest = Annotated[Principal, require(Scope.ingest)]
TicketId = Annotated[int, Path(ge=1, le=2**62)]
CompensationId = Annotated[int, Path(ge=1, le=2**62)]
ExtId = Annotated[CleanText, Path(min_length=1, max_length=128)]
Limit = Annotated[int, Query(ge=1, le=500)]
After = Annotated[int | None, Query(ge=0, le=2**62)]
REPLAY: dict[int | str, dict[str, Any]] = {
    200: {"model": TicketDetail, "description": "A replay of the idempotency key"}
}


@router.post("/v1/tickets", response_model=TicketDetail, status_code=201, responses=REPLAY)
def open_ticket(
    body: TicketIn, session: SessionDep, who: Ingest, response: Response
) -> TicketDetail:
    """Open a ticket from any channel, with the customer's first message. A `claim`
    is graded (level 1–5, service, suggested response) with the customer's context; the
    SLA clocks start from the store's targets for the channel and priority. With an
    `idempotency_key` a retry answers 200 with the first ticket; the key with another body
    is refused (409)."""
    ticket, created = tickets.open(session, who.store, body)
    if not created:
        response.status_code = 200
    return tickets.detail(session, who.store, ticket.id)


@router.get("/v1/tickets", response_model=TicketPage)
def list_tickets(
    session: SessionDep,
    who: Read,
    status: Annotated[list[TicketStatus] | None, Query()] = None,
    channel: TicketChannel | None = None,
    priority: Priority | None = None,
    customer: Annotated[
        CleanText | None,
        Query(min_length=1, max_length=128, description="A customer's external id."),
    ] = None,
    breached: Annotated[
        bool | None,
        Query(description="true: open tickets past a due instant; false: the others."),
    ] = None,
    limit: Limit = 50,
    after: After = None,
) -> TicketPage:
    """Tickets, oldest first, with their SLA state (repeat `status` for several)."""
    return tickets.page(
        session,
        who.store,
        status=status,
        channel=channel,
        priority=priority,
        customer_external_id=customer,
        breached=breached,
        limit=limit,
        after=after,
    )


@router.get("/v1/tickets/{ticket_id}", response_model=TicketDetail)
def get_ticket(ticket_id: TicketId, session: SessionDep, who: Read) -> TicketDetail:
    """A ticket with its messages, audit events, SLA view, grade and compensations."""
    return tickets.detail(session, who.store, ticket_id)


@router.patch("/v1/tickets/{ticket_id}", response_model=TicketDetail)
def update_ticket(
    ticket_id: TicketId, body: TicketPatch, session: SessionDep, who: Admin
) -> TicketDetail:
    """Change the priority (the running clocks take the new targets), the assignee or the
    category."""
    tickets.update(session, who.store, ticket_id, body)
    return tickets.detail(session, who.store, ticket_id)


@router.post("/v1/tickets/{ticket_id}/messages", response_model=TicketDetail, status_code=201)
def add_message(
    ticket_id: TicketId, body: MessageIn, session: SessionDep, who: Ingest, response: Response
) -> TicketDetail:
    """Add a message: `inbound` from the customer (resumes a pending ticket, reopens a
    resolved one), `outbound` from the store (the first stops the first-response clock;
    `wait_for_customer` pauses the clocks), or an internal `note`. A `message_id` already
    recorded answers 200 and adds nothing."""
    _, _, created = tickets.add_message(session, who.store, ticket_id, body)
    if not created:
        response.status_code = 200
    return tickets.detail(session, who.store, ticket_id)


@router.post("/v1/tickets/{ticket_id}/status", response_model=TicketDetail)
def set_status(
    ticket_id: TicketId, body: StatusIn, session: SessionDep, who: Admin
) -> TicketDetail:
    """Move a ticket: new → open | pending | resolved | closed; open → pending | resolved
    | closed; pending → open | resolved | closed; resolved → open (reopen) | closed. Other
    moves are refused with 409."""
    tickets.set_status(session, who.store, ticket_id, body.status, actor=body.actor, note=body.note)
    return tickets.detail(session, who.store, ticket_id)


@router.post("/v1/tickets/{ticket_id}/grade", response_model=TicketDetail)
def grade_ticket(
    ticket_id: TicketId, body: GradeIn, session: SessionDep, who: Admin
) -> TicketDetail:
    """Grade (again) the ticket's claim with the customer's current context."""
    claim = ClaimIn.model_validate(body.model_dump(exclude={"actor"}))
    tickets.regrade(session, who.store, ticket_id, claim, actor=body.actor)
    return tickets.detail(session, who.store, ticket_id)


@router.post(
    "/v1/tickets/{ticket_id}/compensations",
    response_model=CompensationOut,
    status_code=201,
    responses={200: {"model": CompensationOut, "description": "A replay of the key"}},
)
def compensate(
    ticket_id: TicketId,
    body: CompensationIn,
    session: SessionDep,
    who: Admin,
    response: Response,
) -> CompensationOut:
    """Service recovery in points or a coupon: granted at once within the role's cap,
    else `pending_approval` (above the cap, an opportunistic claim, a flagged customer)."""
    result = recovery.compensate(
        session, who.store, ticket_id, **body.model_dump(), api_key_id=who.key_id
    )
    if result.replayed:
        response.status_code = 200
    return recovery.compensation_outs(session, who.store, [result.row])[0]


@router.post("/v1/compensations/{compensation_id}/decision", response_model=CompensationOut)
def decide_compensation(
    compensation_id: CompensationId, body: DecisionIn, session: SessionDep, who: Admin
) -> CompensationOut:
    """Approve (grant) or reject a compensation held for approval; the approver's cap
    must cover it, and nobody approves their own request."""
    row = recovery.decide(
        session,
        who.store,
        compensation_id,
        approve=body.approve,
        role=body.role,
        actor=body.actor,
        note=body.note,
    )
    return recovery.compensation_outs(session, who.store, [row])[0]


@router.get("/v1/customers/{external_id}/360", response_model=Customer360Out)
def customer_360(external_id: ExtId, session: SessionDep, who: Read) -> Customer360Out:
    """The customer at a glance: profile, orders, points and tier, CLV and segment, NPS
    answers, tickets with their SLA state, reviews."""
    return insights.customer_360(session, who.store, external_id)


@router.get("/v1/support/report", response_model=SlaReportOut)
def sla_report(
    session: SessionDep, who: Read, since: Instant | None = None, until: Instant | None = None
) -> SlaReportOut:
    """SLA attainment of the tickets opened in [since, until) by channel × priority."""
    return insights.report(session, who.store, since, until)


@router.get("/v1/support/settings", response_model=SettingsOut)
def get_settings(session: SessionDep, who: Read) -> SettingsOut:
    """Business hours, SLA targets, warning threshold and compensation caps in force."""
    config = support_settings.load(session, who.store)
    version = support_settings.version(session, who.store)
    return SettingsOut(version=version, config=config.document())


@router.put("/v1/support/settings", response_model=SettingsOut)
def put_settings(
    session: SessionDep, who: Admin, body: Annotated[dict[str, Any], Body()]
) -> SettingsOut:
    """Replace the settings. A partial document is merged over the defaults (not over
    the current settings); every refused field is named and nothing is written."""
    config, version = support_settings.apply(session, who.store, body)
    return SettingsOut(version=version, config=config.document())


@router.post(
    "/v1/support/inbound-email",
    response_model=MailOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def inbound_email(
    session: SessionDep,
    who: Ingest,
    body: Annotated[bytes, Body(media_type="message/rfc822", include_in_schema=False)],
) -> MailOut:
    """An e-mail message (`Content-Type: message/rfc822`, the raw RFC 5322 bytes), e.g.
    from a mail provider's inbound hook: threaded on its ticket or opened as one. A
    Message-ID seen before changes nothing."""
    if len(body) > mail.MAX_MAIL_BYTES:
        raise PayloadTooLarge(f"body: a message may be at most {mail.MAX_MAIL_BYTES} bytes")
    try:
        result = mail.ingest(session, who.store, body)
    except mail.MailError as exc:
        raise Invalid(f"body: {exc}") from None
    return MailOut(action=result.action, ticket_id=result.ticket_id, message_id=result.message_id)
