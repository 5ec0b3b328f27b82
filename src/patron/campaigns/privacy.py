"""A customer's data export and erasure (PIPL art. 45 / 47, GDPR art. 15, 17, 20).

**Export** gathers every row Patron holds on the customer, table by table, as JSON.

**Erasure** removes what identifies the person and keeps what the store's books need:

- *kept*: the customer row's id (every order, ledger entry, redemption and score points
  at it), orders with their amounts and lines, refunds' amounts, the whole points
  ledger, tiers, redemptions, coupons, referrals, ratings and scores. Deleting them would
  make the points liability, revenue and retention figures lie, and the ledger is
  append-only by design;
- *removed*: name, email, phone, birthday, locale, time zone, free attributes and
  derived traits; the external id becomes ``erased-<hmac>`` (a pseudonym that no one
  can turn back into the store's id, but the same on every call: erasure is idempotent);
  touchpoints' data; review titles and texts; free-text survey answers; ticket subjects,
  requesters, message bodies and authors; refund payloads; confirmed addresses; the
  address, subject, bodies and links of the customer's outbox messages (queued ones are
  never sent) and the URLs of their tracking events (the rows and their kinds stay, so
  a campaign's counts stay true);
- *added*: every address the customer had is suppressed by its hash only, so the store's
  next import can never make Patron write to them again; all consents are withdrawn;
  and a ``privacy_events`` row records who erased whom, and when.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.campaigns import repository as repo
from patron.campaigns.consent import address_of, consents
from patron.campaigns.models import (
    CampaignEvent,
    MessageStatus,
    OutboxMessage,
    PrivacyAction,
    PrivacyEvent,
    SuppressionReason,
)
from patron.campaigns.schemas import ErasureOut
from patron.customers.models import Channel, Customer
from patron.errors import NotFound
from patron.kit.clock import utcnow
from patron.loyalty.service import ledger
from patron.stores.models import Store

PSEUDONYM_PREFIX = "erased-"
PLACEHOLDER = "[erased]"


def pseudonym(store: Store, external_id: str) -> str:
    digest = hmac.new(
        store.signing_secret.encode(), f"erase:{external_id}".encode(), hashlib.sha256
    ).hexdigest()
    return PSEUDONYM_PREFIX + digest[:24]


def _customer(session: Session, store: Store, external_id: str) -> tuple[Customer, bool]:
    """The customer and whether it is already erased (found by its pseudonym)."""
    found = repo.customer_by_external_id(session, store.id, external_id)
    if found is not None:
        return found, found.external_id.startswith(PSEUDONYM_PREFIX)
    found = repo.customer_by_external_id(session, store.id, pseudonym(store, external_id))
    if found is None:
        raise NotFound(f"No customer with external id {external_id!r} in this store.")
    return found, True


def _audit(
    session: Session, store: Store, customer_id: int, action: PrivacyAction, actor: str
) -> None:
    repo.add_event(
        session,
        PrivacyEvent(
            store_id=store.id,
            customer_id=customer_id,
            action=action,
            actor=actor[:128],
            occurred_at=utcnow(),
        ),
    )


def _columns(customer: Customer) -> dict[str, Any]:
    return {c.key: getattr(customer, c.key) for c in Customer.__mapper__.column_attrs}


_MESSAGE_FIELDS = (
    "id",
    "kind",
    "key",
    "channel",
    "recipient",
    "subject",
    "body_text",
    "body_html",
    "message_id",
    "status",
    "attempts",
    "last_error",
    "created_at",
    "sent_at",
)
_EVENT_FIELDS = ("message_id", "kind", "url", "permanent", "machine", "detail", "occurred_at")


def delivery_data(session: Session, store_id: int, customer_id: int) -> dict[str, Any]:
    """The customer's outbox messages (as rendered) and their tracking events."""
    messages = list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.store_id == store_id, OutboxMessage.customer_id == customer_id)
            .order_by(OutboxMessage.id)
        )
    )
    events = session.scalars(
        select(CampaignEvent)
        .where(CampaignEvent.message_id.in_([m.id for m in messages]))
        .order_by(CampaignEvent.id)
    )
    return {
        "campaign_messages": [{f: getattr(m, f) for f in _MESSAGE_FIELDS} for m in messages],
        "campaign_events": [{f: getattr(e, f) for f in _EVENT_FIELDS} for e in events],
    }


def erase_delivery_data(session: Session, store_id: int, customer_id: int) -> None:
    """Blank the customer's messages (address, subject, bodies, links) and their events'
    URLs and agents; queued ones will never go. The rows stay, with their status and
    event kinds, so a campaign's counts stay true."""
    mine = select(OutboxMessage.id).where(
        OutboxMessage.store_id == store_id, OutboxMessage.customer_id == customer_id
    )
    session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(mine),
            OutboxMessage.status.in_([MessageStatus.queued, MessageStatus.sending]),
        )
        .values(status=MessageStatus.suppressed)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(mine))
        .values(
            recipient="",
            subject="",
            body_text="",
            body_html=None,
            headers={},
            links=None,
            last_error=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(CampaignEvent)
        .where(CampaignEvent.message_id.in_(mine))
        .values(url=None, ua_hash=None, detail=None)
        .execution_options(synchronize_session=False)
    )


def export(session: Session, store: Store, external_id: str, actor: str) -> dict[str, Any]:
    """Everything Patron holds on a customer (JSON-ready after ``jsonable_encoder``)."""
    customer, _ = _customer(session, store, external_id)
    data = repo.customer_data(session, store.id, customer)
    profile = _columns(customer)
    profile.pop("payload_hash", None)
    out: dict[str, Any] = {
        "exported_at": utcnow(),
        "store": store.slug,
        "customer": profile,
        "points_balance": asdict(ledger.balance(session, store, customer.id)),
        **data,
        **delivery_data(session, store.id, customer.id),
        "privacy_events": [
            {"action": e.action.value, "actor": e.actor, "occurred_at": e.occurred_at}
            for e in repo.events(session, store.id, customer.id)
        ],
    }
    _audit(session, store, customer.id, PrivacyAction.export, actor)
    return out


def erase(session: Session, store: Store, external_id: str, actor: str) -> ErasureOut:
    """Erase a customer's personal data, keeping the ledger and the store's totals true.
    Idempotent: the second call finds the pseudonym and changes nothing."""
    customer, already = _customer(session, store, external_id)
    now = utcnow()
    if already:
        done = [e for e in repo.events(session, store.id, customer.id) if e.action == "erase"]
        return ErasureOut(
            customer_id=customer.id,
            pseudonym=customer.external_id,
            already_erased=True,
            suppressed=0,
            erased_at=done[-1].occurred_at if done else customer.updated_at,
        )
    repo.erase_customer_data(session, store.id, customer.id, PLACEHOLDER)
    erase_delivery_data(session, store.id, customer.id)
    suppressed = 0
    for channel in Channel:
        consents.record(session, store, customer, channel, False, "erasure", now)
        address = address_of(customer, channel)
        if address is not None:
            _, created = consents.suppress(
                session,
                store,
                channel,
                address,
                SuppressionReason.erased,
                now=now,
                keep_address=False,
            )
            suppressed += created
    customer.external_id = pseudonym(store, external_id)
    for field in ("email", "phone", "first_name", "last_name", "birthday", "locale", "timezone"):
        setattr(customer, field, None)
    customer.flagged_reason = None
    customer.attributes = {}
    customer.traits = {}
    customer.payload_hash = None
    customer.updated_at = now
    session.flush()
    _audit(session, store, customer.id, PrivacyAction.erase, actor)
    return ErasureOut(
        customer_id=customer.id,
        pseudonym=customer.external_id,
        already_erased=False,
        suppressed=suppressed,
        erased_at=now,
    )
