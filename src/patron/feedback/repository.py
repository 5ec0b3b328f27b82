"""Every query of feedback: surveys, invitations, responses, scores and reviews.

All of them take the store id: tenancy lives here. Scores read aggregates (counts per
value and group), never every answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Exists,
    String,
    case,
    cast,
    exists,
    func,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.orm import QueryableAttribute, Session

from patron.analytics.models import CustomerScore
from patron.customers.models import Customer
from patron.feedback.models import (
    Review,
    ReviewStatus,
    Survey,
    SurveyAnswer,
    SurveyInvitation,
    SurveyResponse,
    Trigger,
)
from patron.kit.repository import (
    aware_instant,
    chunks,
    insert_ignoring_conflicts,
    insert_rows,
    lock_store_job,
    table_of,
)
from patron.orders.models import Order, OrderLine, OrderStatus
from patron.support.models import Ticket, TicketStatus

FEEDBACK_JOB = 0x46_42  # "FB": namespace of the per-store trigger-job lock
SURVEYS = table_of(Survey)
INVITATIONS = table_of(SurveyInvitation)
ANSWERS = table_of(SurveyAnswer)
REVIEWS = table_of(Review)


def lock_job(session: Session, store_id: int) -> None:
    """Serialise the trigger job of one store until the transaction ends.

    Why: survey fatigue is a check over many rows (was this customer invited to anything
    lately?); two runs at once would both see the customer as free and invite twice
    under two subjects."""
    lock_store_job(session, FEEDBACK_JOB, store_id)


# -- customers ----------------------------------------------------------------------------


def segment_of(session: Session, store_id: int, customer_id: int) -> str | None:
    """The customer's RFM segment from the latest scoring run (None: not scored)."""
    return session.scalar(
        select(CustomerScore.segment).where(
            CustomerScore.store_id == store_id, CustomerScore.customer_id == customer_id
        )
    )


def bought_sku(session: Session, store_id: int, customer_id: int, sku: str) -> str | None:
    """The external id of a (not cancelled) order of the customer with a line of ``sku``."""
    return session.scalar(
        select(Order.external_id)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(
            Order.store_id == store_id,
            Order.customer_id == customer_id,
            Order.status != OrderStatus.cancelled,
            OrderLine.sku == sku,
        )
        .order_by(Order.placed_at, Order.id)
        .limit(1)
    )


# -- surveys ------------------------------------------------------------------------------


def current_survey(session: Session, store_id: int, key: str) -> Survey | None:
    return session.scalars(
        select(Survey).where(Survey.store_id == store_id, Survey.key == key, Survey.current)
    ).first()


def current_survey_for_update(session: Session, store_id: int, key: str) -> Survey | None:
    """The current version, row-locked: two concurrent updates of one survey write their
    versions one after the other (on SQLite ``BEGIN IMMEDIATE`` serialises them)."""
    return session.scalars(
        select(Survey)
        .where(Survey.store_id == store_id, Survey.key == key, Survey.current)
        .with_for_update()
    ).first()


def survey_by_id(session: Session, store_id: int, survey_id: int) -> Survey | None:
    return session.scalars(
        select(Survey).where(Survey.store_id == store_id, Survey.id == survey_id)
    ).first()


def survey_version(session: Session, store_id: int, key: str, version: int) -> Survey | None:
    return session.scalars(
        select(Survey).where(
            Survey.store_id == store_id, Survey.key == key, Survey.version == version
        )
    ).first()


def survey_versions(session: Session, store_id: int, key: str) -> Sequence[Survey]:
    return session.scalars(
        select(Survey)
        .where(Survey.store_id == store_id, Survey.key == key)
        .order_by(Survey.version)
    ).all()


def surveys_of_keys(session: Session, store_id: int, key: str | None) -> Sequence[Survey]:
    """Every version of every survey (of ``key``), oldest first."""
    query = select(Survey).where(Survey.store_id == store_id)
    if key is not None:
        query = query.where(Survey.key == key)
    return session.scalars(query.order_by(Survey.key, Survey.version)).all()


def reminding_surveys(session: Session, store_id: int) -> Sequence[Survey]:
    """Every version (old ones still have open links) of active surveys with reminders."""
    return session.scalars(
        select(Survey)
        .where(Survey.store_id == store_id, Survey.active, Survey.reminder_days.is_not(None))
        .order_by(Survey.id)
    ).all()


def current_surveys(
    session: Session, store_id: int, *, active_only: bool = False, trigger: Trigger | None = None
) -> Sequence[Survey]:
    query = select(Survey).where(Survey.store_id == store_id, Survey.current)
    if active_only:
        query = query.where(Survey.active)
    if trigger is not None:
        query = query.where(Survey.trigger == trigger)
    return session.scalars(query.order_by(Survey.key)).all()


def insert_survey(session: Session, row: dict[str, Any]) -> int | None:
    """Insert a version unless that (key, version) exists (a concurrent create); its id,
    or None when another writer got there first."""
    stmt = insert_ignoring_conflicts(session, SURVEYS, "store_id", "key", "version")
    result = session.execute(stmt.values(**row).returning(SURVEYS.c.id))
    found = result.scalar()
    return int(found) if found is not None else None


def retire_versions(session: Session, store_id: int, key: str, keep_id: int) -> None:
    session.execute(
        update(SURVEYS)
        .where(SURVEYS.c.store_id == store_id, SURVEYS.c.key == key, SURVEYS.c.id != keep_id)
        .values(current=False)
    )


def set_active(session: Session, store_id: int, key: str, active: bool) -> None:
    session.execute(
        update(SURVEYS)
        .where(SURVEYS.c.store_id == store_id, SURVEYS.c.key == key)
        .values(active=active)
    )


# -- invitations --------------------------------------------------------------------------


def _invited_among(
    session: Session, store_id: int, customer_ids: Sequence[int], *where: ColumnElement[bool]
) -> set[int]:
    """Which of ``customer_ids`` have an invitation of the store that matches ``where``."""
    found: set[int] = set()
    for chunk in chunks(sorted(set(customer_ids))):
        found.update(
            session.scalars(
                select(SurveyInvitation.customer_id)
                .where(
                    SurveyInvitation.store_id == store_id,
                    SurveyInvitation.customer_id.in_(chunk),
                    *where,
                )
                .distinct()
            )
        )
    return found


def invited_since(
    session: Session, store_id: int, customer_ids: Sequence[int], since: datetime
) -> set[int]:
    """Customers invited to any survey at or after ``since`` (survey fatigue)."""
    return _invited_among(session, store_id, customer_ids, SurveyInvitation.created_at >= since)


def invited_subjects(
    session: Session, store_id: int, survey_key: str, subject: str, customer_ids: Sequence[int]
) -> set[int]:
    """Customers already invited to this survey about this subject."""
    return _invited_among(
        session,
        store_id,
        customer_ids,
        SurveyInvitation.survey_key == survey_key,
        SurveyInvitation.subject == subject,
    )


def insert_invitation(session: Session, row: dict[str, Any]) -> int | None:
    """Insert an invitation unless this customer has one for this survey and subject (a
    concurrent trigger run or a retried call): its id, or None."""
    stmt = insert_ignoring_conflicts(
        session, INVITATIONS, "store_id", "survey_key", "customer_id", "subject"
    )
    found = session.execute(stmt.values(**row).returning(INVITATIONS.c.id)).scalar()
    return int(found) if found is not None else None


def invitation(session: Session, store_id: int, invitation_id: int) -> SurveyInvitation | None:
    return session.scalars(
        select(SurveyInvitation).where(
            SurveyInvitation.store_id == store_id, SurveyInvitation.id == invitation_id
        )
    ).first()


def invitation_by_nonce(session: Session, nonce: str) -> SurveyInvitation | None:
    """The invitation of a link, across stores: the caller checks the signature with the
    store's secret before trusting it."""
    return session.scalars(select(SurveyInvitation).where(SurveyInvitation.nonce == nonce)).first()


def claim(session: Session, invitation_id: int, now: datetime) -> bool:
    """The use-once guarantee: mark the invitation used if, and only if, nobody has.

    A conditional UPDATE: on PostgreSQL a second transaction blocks on the row lock of the
    first and, once it commits, re-reads ``used_at`` and matches nothing; on SQLite
    writers are serialised by ``BEGIN IMMEDIATE``. True: this caller won the link."""
    result = session.execute(
        update(INVITATIONS)
        .where(INVITATIONS.c.id == invitation_id, INVITATIONS.c.used_at.is_(None))
        .values(used_at=now)
    )
    return getattr(result, "rowcount", 0) == 1


def due_invitations(
    session: Session, store_id: int, now: datetime, limit: int, after: int | None
) -> list[tuple[SurveyInvitation, Survey, Customer]]:
    """Invitations to deliver now (a first send or a reminder): not answered, not
    expired, of an active survey; oldest due first."""
    query = (
        select(SurveyInvitation, Survey, Customer)
        .join(Survey, Survey.id == SurveyInvitation.survey_id)
        .join(Customer, Customer.id == SurveyInvitation.customer_id)
        .where(
            SurveyInvitation.store_id == store_id,
            SurveyInvitation.used_at.is_(None),
            SurveyInvitation.next_send_at <= now,
            SurveyInvitation.expires_at > now,
            Survey.active,
        )
    )
    if after is not None:
        query = query.where(SurveyInvitation.id > after)
    rows = session.execute(query.order_by(SurveyInvitation.id).limit(limit))
    return [(i, s, c) for i, s, c in rows]


def mark_sent(session: Session, store_id: int, invitation_id: int, now: datetime) -> bool:
    """Record one delivery of a due invitation; False when it was not due (a repeated
    call), which changes nothing."""
    result = session.execute(
        update(INVITATIONS)
        .where(
            INVITATIONS.c.store_id == store_id,
            INVITATIONS.c.id == invitation_id,
            INVITATIONS.c.next_send_at.is_not(None),
        )
        .values(sent_count=INVITATIONS.c.sent_count + 1, last_sent_at=now, next_send_at=null())
    )
    return getattr(result, "rowcount", 0) == 1


def schedule_reminders(
    session: Session,
    store_id: int,
    survey_id: int,
    max_reminders: int,
    cutoff: datetime,
    now: datetime,
) -> int:
    """Invitations of one survey version sent last before ``cutoff``, unanswered, still
    valid, with reminders left (``sent_count <= max_reminders``), become due again."""
    result = session.execute(
        update(INVITATIONS)
        .where(
            INVITATIONS.c.store_id == store_id,
            INVITATIONS.c.survey_id == survey_id,
            INVITATIONS.c.used_at.is_(None),
            INVITATIONS.c.next_send_at.is_(None),
            INVITATIONS.c.sent_count >= 1,
            INVITATIONS.c.sent_count <= max_reminders,
            INVITATIONS.c.last_sent_at <= cutoff,
            INVITATIONS.c.expires_at > now,
        )
        .values(next_send_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# -- triggers -----------------------------------------------------------------------------


def _invited(
    store_id: int,
    survey_key: str,
    customer_id: QueryableAttribute[Any],
    subject: ColumnElement[str],
) -> Exists:
    """The customer (``customer_id``, a column of the outer query) has an invitation to
    this survey about ``subject``."""
    return exists().where(
        SurveyInvitation.store_id == store_id,
        SurveyInvitation.survey_key == survey_key,
        SurveyInvitation.customer_id == customer_id,
        SurveyInvitation.subject == subject,
    )


def delivered_orders_to_survey(
    session: Session,
    store_id: int,
    survey_key: str,
    delivered_from: datetime,
    delivered_until: datetime,
    after: int,
    limit: int,
) -> list[tuple[int, int, str, str | None]]:
    """(order id, customer id, subject ``order:<external id>``, channel) of orders
    delivered in [from, until] without an invitation to this survey about them; by
    order id."""
    invited = _invited(
        store_id, survey_key, Order.customer_id, literal("order:") + Order.external_id
    )
    rows = session.execute(
        select(Order.id, Order.external_id, Order.customer_id, Order.channel)
        .where(
            Order.store_id == store_id,
            Order.status == OrderStatus.delivered,
            Order.delivered_at >= delivered_from,
            Order.delivered_at <= delivered_until,
            Order.id > after,
            ~invited,
        )
        .order_by(Order.id)
        .limit(limit)
    )
    return [(oid, cid, f"order:{ext}", channel) for oid, ext, cid, channel in rows]


def closed_tickets_to_survey(
    session: Session,
    store_id: int,
    survey_key: str,
    closed_from: datetime,
    closed_until: datetime,
    after: int,
    limit: int,
) -> list[tuple[int, int, str, str | None]]:
    """(ticket id, customer id, subject ``ticket:<id>``, channel) of tickets resolved or
    closed in [from, until], with a customer, not yet asked about by this survey; by
    ticket id."""
    closed_at = func.coalesce(Ticket.closed_at, Ticket.resolved_at)
    invited = _invited(
        store_id, survey_key, Ticket.customer_id, literal("ticket:") + cast(Ticket.id, String)
    )
    rows = session.execute(
        select(Ticket.id, Ticket.customer_id, Ticket.channel)
        .where(
            Ticket.store_id == store_id,
            Ticket.status.in_((TicketStatus.resolved, TicketStatus.closed)),
            Ticket.customer_id.is_not(None),
            closed_at >= closed_from,
            closed_at <= closed_until,
            Ticket.id > after,
            ~invited,
        )
        .order_by(Ticket.id)
        .limit(limit)
    )
    out: list[tuple[int, int, str, str | None]] = []
    for tid, cid, channel in rows:
        if cid is not None:
            out.append((tid, cid, f"ticket:{tid}", str(getattr(channel, "value", channel))))
    return out


# -- responses ----------------------------------------------------------------------------


def insert_answers(session: Session, rows: list[dict[str, Any]]) -> None:
    insert_rows(session, ANSWERS, rows)


# -- scores -------------------------------------------------------------------------------


def _responses_in_scope(
    store_id: int,
    survey_key: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    """The store's responses (to ``survey_key``) submitted in [since, until)."""
    where: list[ColumnElement[bool]] = [SurveyResponse.store_id == store_id]
    if survey_key is not None:
        where.append(SurveyResponse.survey_key == survey_key)
    if since is not None:
        where.append(SurveyResponse.submitted_at >= since)
    if until is not None:
        where.append(SurveyResponse.submitted_at < until)
    return where


def _scope(
    store_id: int,
    survey_key: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    """The answers of the responses in scope (joined to their response)."""
    return [
        SurveyAnswer.store_id == store_id,
        *_responses_in_scope(store_id, survey_key, since, until),
    ]


def period_case(edges: Sequence[datetime]) -> ColumnElement[Any]:
    """The index of the period [edges[i], edges[i+1]) a response falls in (periods of the
    store's calendar, computed in Python, so both databases bucket alike): the first i
    with ``submitted_at < edges[i + 1]``, -1 after the last (or for no periods).

    A balanced tree of CASEs (a binary search, ~log2 periods comparisons a row) rather
    than one CASE of every bound, since it is evaluated on every answer."""
    bounds = list(edges[1:])
    last = len(bounds)  # "after every bound": -1

    def node(lo: int, hi: int) -> ColumnElement[Any]:
        if lo == hi:
            return literal(lo if lo < last else -1)
        mid = (lo + hi) // 2
        return case(
            (SurveyResponse.submitted_at < bounds[mid], node(lo, mid)), else_=node(mid + 1, hi)
        )

    return node(0, last)


def group_column(by: str | None, edges: Sequence[datetime] | None = None) -> Any:
    if by == "channel":
        return SurveyResponse.channel
    if by == "tier":
        return SurveyResponse.tier
    if by == "segment":
        return SurveyResponse.segment
    if by == "survey":
        return SurveyResponse.survey_key
    if by in ("month", "week") and edges is not None:
        return period_case(edges)
    return literal("all")


def response_summary(
    session: Session,
    store_id: int,
    *,
    survey_key: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[int, datetime | None, datetime | None]:
    """The number of responses in scope, their first and last submission."""
    row = session.execute(
        select(
            func.count(SurveyResponse.id),
            func.min(SurveyResponse.submitted_at),
            func.max(SurveyResponse.submitted_at),
        ).where(*_responses_in_scope(store_id, survey_key, since, until))
    ).one()
    return int(row[0] or 0), aware_instant(row[1]), aware_instant(row[2])


SCORE_TYPES = ("nps", "csat", "ces")


def score_counts(
    session: Session,
    store_id: int,
    period: ColumnElement[Any],
    group: ColumnElement[Any] | None,
    *,
    survey_key: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[tuple[Any, Any, str, float, int]]:
    """(period, group, question type, value, count) of the NPS, CSAT and CES answers in
    scope, at the finest grain: a single read of the answers serves the overall scores,
    the trend and the groups, rolled up by the caller (a few thousand rows at most).
    ``group`` None: no grouping column (None in the rows)."""
    columns: list[ColumnElement[Any]] = [period.label("p")]
    keys: list[ColumnElement[Any]] = [period]
    if group is not None:
        columns.append(group.label("g"))
        keys.append(group)
    rows = session.execute(
        select(
            *columns, SurveyAnswer.question_type, SurveyAnswer.value, func.count(SurveyAnswer.id)
        )
        .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
        .where(
            *_scope(store_id, survey_key, since, until),
            SurveyAnswer.question_type.in_(SCORE_TYPES),
            SurveyAnswer.value.is_not(None),
        )
        .group_by(*keys, SurveyAnswer.question_type, SurveyAnswer.value)
    )
    out: list[tuple[Any, Any, str, float, int]] = []
    for row in rows:
        p, *g, t, v, n = tuple(row)
        out.append((p, g[0] if g else None, str(t), float(v), int(n)))
    return out


def pair_counts(
    session: Session,
    store_id: int,
    *,
    survey_key: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[tuple[str, int, int, int]]:
    """(attribute, expectation, experience, count) of expectation/experience answers."""
    rows = session.execute(
        select(
            SurveyAnswer.attribute,
            SurveyAnswer.expectation,
            SurveyAnswer.experience,
            func.count(SurveyAnswer.id),
        )
        .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
        .where(
            *_scope(store_id, survey_key, since, until),
            SurveyAnswer.question_type == "expectation_experience",
            SurveyAnswer.expectation.is_not(None),
            SurveyAnswer.experience.is_not(None),
            SurveyAnswer.attribute.is_not(None),
        )
        .group_by(SurveyAnswer.attribute, SurveyAnswer.expectation, SurveyAnswer.experience)
    )
    return [(str(a), int(e or 0), int(x or 0), int(n)) for a, e, x, n in rows]


def party_key(party: str) -> str:
    """The key of a party's rating in a comparison answer's ``data['k']``: a hash, so any
    competitor name (quotes, dots, CJK) is a safe JSON path step on both databases."""
    return "p" + hashlib.sha256(party.encode()).hexdigest()[:16]


def comparison_stats(
    session: Session,
    store_id: int,
    parties: Sequence[str],
    *,
    survey_key: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[dict[str, tuple[int, int, int]], dict[str, dict[str, tuple[int, int, int, int]]]]:
    """The sums of the comparison answers in scope, in one read of the answers.

    attribute -> (answers, Σ importance, importances given); and party -> attribute ->
    (n, Σ rating, Σ (us − rating), Σ (us − rating)²) over the answers rating both us and
    the party: what a mean and a paired difference need (a party without ratings of an
    attribute: n = 0). ``parties`` starts with us.

    The ratings are read out of ``data`` once a row, in a subquery materialised on
    PostgreSQL (inlined, each aggregate would extract them again)."""
    inner = (
        select(
            SurveyAnswer.attribute.label("attribute"),
            SurveyAnswer.importance.label("importance"),
            *(
                SurveyAnswer.data[("k", party_key(p))].as_integer().label(f"r{i}")
                for i, p in enumerate(parties)
            ),
        )
        .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
        .where(
            *_scope(store_id, survey_key, since, until),
            SurveyAnswer.question_type == "comparison",
            SurveyAnswer.attribute.is_not(None),
        )
        .cte("comparisons")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    us = inner.c.r0
    aggregates: list[ColumnElement[Any]] = [
        func.count(),
        func.sum(inner.c.importance),
        func.count(inner.c.importance),
    ]
    for i in range(len(parties)):
        rating = case((us.is_not(None), inner.c[f"r{i}"]))  # rated along with us
        diff = us - rating
        aggregates += [func.count(rating), func.sum(rating), func.sum(diff), func.sum(diff * diff)]
    rows = session.execute(select(inner.c.attribute, *aggregates).group_by(inner.c.attribute))
    importance: dict[str, tuple[int, int, int]] = {}
    sums: dict[str, dict[str, tuple[int, int, int, int]]] = {p: {} for p in parties}
    for attribute, n, total, given, *stats in rows:
        importance[str(attribute)] = (int(n), int(total or 0), int(given or 0))
        for i, party in enumerate(parties):
            k, s, d, d2 = stats[4 * i : 4 * i + 4]
            sums[party][str(attribute)] = (int(k or 0), int(s or 0), int(d or 0), int(d2 or 0))
    return importance, sums


# -- reviews ------------------------------------------------------------------------------


def insert_review(session: Session, row: dict[str, Any]) -> int | None:
    """Insert a review unless its external id exists (a retry): its id, or None."""
    stmt = insert_ignoring_conflicts(session, REVIEWS, "store_id", "external_id")
    found = session.execute(stmt.values(**row).returning(REVIEWS.c.id)).scalar()
    return int(found) if found is not None else None


def review(
    session: Session, store_id: int, external_id: str, *, lock: bool = False
) -> Review | None:
    query = select(Review).where(Review.store_id == store_id, Review.external_id == external_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def reviews_page(
    session: Session,
    store_id: int,
    *,
    status: ReviewStatus | None = None,
    product_sku: str | None = None,
    rating: int | None = None,
    max_rating: int | None = None,
    unanswered: bool = False,
    limit: int,
    after: int | None,
) -> Sequence[Review]:
    query = select(Review).where(Review.store_id == store_id)
    if status is not None:
        query = query.where(Review.status == status)
    if product_sku is not None:
        query = query.where(Review.product_sku == product_sku)
    if rating is not None:
        query = query.where(Review.rating == rating)
    if max_rating is not None:
        query = query.where(Review.rating <= max_rating)
    if unanswered:
        query = query.where(Review.reply.is_(None), Review.status != ReviewStatus.rejected)
    if after is not None:
        query = query.where(Review.id > after)
    return session.scalars(query.order_by(Review.id).limit(limit)).all()


def rating_counts(
    session: Session,
    store_id: int,
    *,
    product_sku: str | None,
    statuses: Sequence[ReviewStatus],
) -> list[tuple[str, int, int]]:
    """(product sku, rating, count) of the reviews in the given statuses."""
    query = (
        select(Review.product_sku, Review.rating, func.count(Review.id))
        .where(Review.store_id == store_id, Review.status.in_(list(statuses)))
        .group_by(Review.product_sku, Review.rating)
    )
    if product_sku is not None:
        query = query.where(Review.product_sku == product_sku)
    return [(str(s), int(r), int(n)) for s, r, n in session.execute(query)]
