"""Small helpers shared by the support services (``service``, ``recovery``, ``insights``):
a one-field error list and the audit event of a ticket.

Events are only added to the session: the caller's unit of work flushes and commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from patron.support.models import Ticket, TicketEvent


def field_errors(field: str, message: str) -> list[dict[str, str]]:
    """The ``errors`` of a problem document that refuses one field."""
    return [{"field": field, "message": message}]


def add_event(
    session: Session,
    ticket: Ticket,
    kind: str,
    actor: str | None,
    data: dict[str, Any],
    now: datetime,
) -> TicketEvent:
    """Add an event to the ticket's audit trail (``support_events``)."""
    event = TicketEvent(
        store_id=ticket.store_id,
        ticket_id=ticket.id,
        kind=kind,
        actor=actor[:128] if actor else None,
        data=data,
        created_at=now,
    )
    session.add(event)
    return event
