"""Every query of permission marketing and privacy. All of them take the store id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, delete, select, update
from sqlalchemy.orm import Session

from patron.campaigns.models import ConsentRequest, PrivacyEvent, Suppression
from patron.customers.models import Channel, Consent, Customer, Touchpoint
from patron.feedback.models import Review, SurveyAnswer, SurveyResponse
from patron.kit.repository import insert_ignoring_conflicts, rows_as_dicts, table_of
from patron.loyalty.models import LoyaltyAccount, LoyaltyEntry, LoyaltyMember, TierChange
from patron.orders.models import Order, OrderLine, Refund
from patron.referrals.models import Referral, ReferralCode, SurpriseGift
from patron.rewards.models import Coupon, Redemption
from patron.stores.models import Store
from patron.support.models import Compensation, Ticket, TicketMessage


def customer(session: Session, store_id: int, customer_id: int) -> Customer | None:
    return session.scalars(
        select(Customer).where(Customer.store_id == store_id, Customer.id == customer_id)
    ).first()


def customer_by_external_id(session: Session, store_id: int, external_id: str) -> Customer | None:
    return session.scalars(
        select(Customer).where(Customer.store_id == store_id, Customer.external_id == external_id)
    ).first()


def consent(session: Session, customer_id: int, channel: Channel) -> Consent | None:
    return session.scalars(
        select(Consent).where(Consent.customer_id == customer_id, Consent.channel == channel)
    ).first()


def consents(session: Session, customer_id: int) -> dict[Channel, Consent]:
    rows = session.scalars(select(Consent).where(Consent.customer_id == customer_id))
    return {row.channel: row for row in rows}


def add(session: Session, obj: object) -> None:
    session.add(obj)
    session.flush()


def request_by_nonce(session: Session, nonce: str) -> ConsentRequest | None:
    return session.scalars(select(ConsentRequest).where(ConsentRequest.nonce == nonce)).first()


def is_confirmed(session: Session, customer_id: int, channel: Channel, address_hash: str) -> bool:
    found = session.scalars(
        select(ConsentRequest.id).where(
            ConsentRequest.customer_id == customer_id,
            ConsentRequest.channel == channel,
            ConsentRequest.address_hash == address_hash,
            ConsentRequest.confirmed_at.is_not(None),
        )
    ).first()
    return found is not None


def suppression(
    session: Session, store_id: int, channel: Channel, address_hash: str
) -> Suppression | None:
    return session.scalars(
        select(Suppression).where(
            Suppression.store_id == store_id,
            Suppression.channel == channel,
            Suppression.address_hash == address_hash,
        )
    ).first()


def insert_suppression(session: Session, row: dict[str, Any]) -> bool:
    """Insert unless the address is already suppressed; True if inserted."""
    stmt = insert_ignoring_conflicts(
        session, table_of(Suppression), "store_id", "channel", "address_hash"
    )
    inserted = session.execute(stmt.values(**row).returning(table_of(Suppression).c.id))
    return inserted.first() is not None


def delete_suppression(session: Session, store_id: int, channel: Channel, address_hash: str) -> int:
    result = session.execute(
        delete(Suppression).where(
            Suppression.store_id == store_id,
            Suppression.channel == channel,
            Suppression.address_hash == address_hash,
        )
    )
    return int(getattr(result, "rowcount", 0))


def suppressions_page(
    session: Session, store_id: int, channel: Channel | None, limit: int, after: int | None
) -> Sequence[Suppression]:
    query = select(Suppression).where(Suppression.store_id == store_id)
    if channel is not None:
        query = query.where(Suppression.channel == channel)
    if after is not None:
        query = query.where(Suppression.id > after)
    return session.scalars(query.order_by(Suppression.id).limit(limit)).all()


# -- privacy: everything held on one customer ------------------------------------------


def _rows(session: Session, table: Table, *where: Any, order: Any = None) -> list[dict[str, Any]]:
    query = select(table).where(*where)
    query = query.order_by(order if order is not None else table.c.id)
    return rows_as_dicts(session.execute(query))


def customer_data(session: Session, store_id: int, c: Customer) -> dict[str, Any]:
    """Every row Patron holds about one customer, by table, as plain column dicts."""
    t = table_of
    cid = c.id
    orders = _rows(session, t(Order), Order.store_id == store_id, Order.customer_id == cid)
    order_ids = [o["id"] for o in orders]
    lines = _rows(
        session,
        t(OrderLine),
        OrderLine.order_id.in_(order_ids),
        order=OrderLine.order_id,
    )
    for o in orders:
        o["lines"] = [line for line in lines if line["order_id"] == o["id"]]
    accounts = _rows(
        session,
        t(LoyaltyAccount),
        LoyaltyAccount.store_id == store_id,
        LoyaltyAccount.customer_id == cid,
    )
    account_ids = [a["id"] for a in accounts]
    responses = _rows(
        session,
        t(SurveyResponse),
        SurveyResponse.store_id == store_id,
        SurveyResponse.customer_id == cid,
    )
    answers = _rows(
        session,
        t(SurveyAnswer),
        SurveyAnswer.response_id.in_([r["id"] for r in responses]),
    )
    for r in responses:
        r["answers"] = [a for a in answers if a["response_id"] == r["id"]]
    tickets = _rows(session, t(Ticket), Ticket.store_id == store_id, Ticket.customer_id == cid)
    messages = _rows(
        session, t(TicketMessage), TicketMessage.ticket_id.in_([k["id"] for k in tickets])
    )
    for k in tickets:
        k["messages"] = [m for m in messages if m["ticket_id"] == k["id"]]
    return {
        "consents": _rows(session, t(Consent), Consent.customer_id == cid),
        "consent_requests": _rows(session, t(ConsentRequest), ConsentRequest.customer_id == cid),
        "touchpoints": _rows(
            session,
            t(Touchpoint),
            Touchpoint.store_id == store_id,
            Touchpoint.customer_id == cid,
            order=Touchpoint.occurred_at,
        ),
        "orders": orders,
        "refunds": _rows(session, t(Refund), Refund.order_id.in_(order_ids)),
        "loyalty_accounts": accounts,
        "ledger_entries": _rows(session, t(LoyaltyEntry), LoyaltyEntry.account_id.in_(account_ids)),
        "membership": _rows(
            session,
            t(LoyaltyMember),
            LoyaltyMember.store_id == store_id,
            LoyaltyMember.customer_id == cid,
        ),
        "tier_history": _rows(
            session, t(TierChange), TierChange.store_id == store_id, TierChange.customer_id == cid
        ),
        "redemptions": _rows(
            session, t(Redemption), Redemption.store_id == store_id, Redemption.customer_id == cid
        ),
        "coupons": _rows(
            session, t(Coupon), Coupon.store_id == store_id, Coupon.customer_id == cid
        ),
        "referral_codes": _rows(
            session,
            t(ReferralCode),
            ReferralCode.store_id == store_id,
            ReferralCode.customer_id == cid,
        ),
        "referrals": _rows(
            session,
            t(Referral),
            Referral.store_id == store_id,
            (Referral.referrer_id == cid) | (Referral.referee_id == cid),
        ),
        "surprise_gifts": _rows(
            session,
            t(SurpriseGift),
            SurpriseGift.store_id == store_id,
            SurpriseGift.customer_id == cid,
        ),
        # Anonymous responses keep no customer id, so none of them is found here.
        "survey_responses": responses,
        "reviews": _rows(
            session, t(Review), Review.store_id == store_id, Review.customer_id == cid
        ),
        "tickets": tickets,
        "compensations": _rows(
            session,
            t(Compensation),
            Compensation.store_id == store_id,
            Compensation.customer_id == cid,
        ),
    }


def erase_customer_data(session: Session, store_id: int, cid: int, placeholder: str) -> None:
    """Blank the personal texts a customer left in other tables; amounts stay as they are."""
    session.execute(
        update(Touchpoint)
        .where(Touchpoint.store_id == store_id, Touchpoint.customer_id == cid)
        .values(data={})
    )
    session.execute(
        update(Review)
        .where(Review.store_id == store_id, Review.customer_id == cid)
        .values(title=None, body=None)
    )
    responses = select(SurveyResponse.id).where(
        SurveyResponse.store_id == store_id, SurveyResponse.customer_id == cid
    )
    session.execute(
        update(SurveyAnswer)
        .where(SurveyAnswer.response_id.in_(responses), SurveyAnswer.question_type == "text")
        .values(data=None)
    )
    tickets = select(Ticket.id).where(Ticket.store_id == store_id, Ticket.customer_id == cid)
    session.execute(
        update(TicketMessage)
        .where(TicketMessage.ticket_id.in_(tickets))
        .values(body=placeholder, author=None)
    )
    session.execute(
        update(Ticket)
        .where(Ticket.store_id == store_id, Ticket.customer_id == cid)
        .values(subject=placeholder, requester=None)
    )
    order_ids = select(Order.id).where(Order.store_id == store_id, Order.customer_id == cid)
    session.execute(update(Refund).where(Refund.order_id.in_(order_ids)).values(payload={}))
    session.execute(
        update(ConsentRequest).where(ConsentRequest.customer_id == cid).values(address=None)
    )


def add_event(session: Session, event: PrivacyEvent) -> None:
    add(session, event)


def events(session: Session, store_id: int, customer_id: int) -> Sequence[PrivacyEvent]:
    return session.scalars(
        select(PrivacyEvent)
        .where(PrivacyEvent.store_id == store_id, PrivacyEvent.customer_id == customer_id)
        .order_by(PrivacyEvent.id)
    ).all()


def store_by_slug(session: Session, slug: str) -> Store | None:
    return session.scalars(select(Store).where(Store.slug == slug)).first()
