"""Product reviews (口碑): submitted by the store, moderated, answered, scored.

- Submission is idempotent on the review's external id (a retry returns the first). A
  review is a *verified purchase* when its customer has an order (not cancelled) with a
  line of the product.
- A 1–2 star review opens a support ticket for its customer (``source_ref =
  review:<external id>``) at once, and stays on the alerts list until the store replies.
- Approval credits review points through the loyalty programme's rules
  (``actions.report(..., EventKind.review, key=<external id>)``): once per review, within
  the programme's caps; a store without a programme approves without points. Rejecting
  a review later keeps the points (take them back with a ledger adjustment if needed).

Services flush, never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from patron.customers import repository as customers_repo
from patron.customers.models import Customer, TouchpointKind
from patron.errors import Conflict, NotFound
from patron.feedback import repository as repo
from patron.feedback.models import Review, ReviewStatus
from patron.feedback.schemas import (
    ModerationIn,
    ProductRating,
    RatingSummary,
    ReviewIn,
    ReviewOut,
    ReviewPage,
    ReviewSummaryOut,
)
from patron.kit.clock import as_utc, as_utc_or_now
from patron.kit.repository import external_ids_by_id
from patron.loyalty import actions
from patron.loyalty.orders import active_program
from patron.loyalty.program import EventKind
from patron.stores.models import Store

NEGATIVE = 2  # 1–2 stars: a ticket, and an alert until answered
SUMMARY_PRODUCTS = 500
# What counts in the ratings by default: every review that was not rejected.
SHOWN = (ReviewStatus.pending, ReviewStatus.approved)


def _field(field: str, message: str) -> list[dict[str, str]]:
    return [{"field": field, "message": message}]


class ReviewService:
    def _outs(self, session: Session, store: Store, rows: Sequence[Review]) -> list[ReviewOut]:
        ids = external_ids_by_id(
            session, Customer, store.id, [r.customer_id for r in rows if r.customer_id is not None]
        )
        return [
            ReviewOut(
                external_id=r.external_id,
                customer_external_id=ids.get(r.customer_id) if r.customer_id else None,
                product_sku=r.product_sku,
                order_external_id=r.order_external_id,
                rating=r.rating,
                title=r.title,
                body=r.body,
                channel=r.channel,
                verified_purchase=r.verified_purchase,
                status=r.status,
                moderation_note=r.moderation_note,
                moderated_at=r.moderated_at,
                reply=r.reply,
                replied_at=r.replied_at,
                points=r.points,
                ticket_id=r.ticket_id,
                created_at=r.created_at,
            )
            for r in rows
        ]

    def _out(self, session: Session, store: Store, review: Review) -> ReviewOut:
        return self._outs(session, store, [review])[0]

    def _get(self, session: Session, store: Store, external_id: str, lock: bool = False) -> Review:
        found = repo.review(session, store.id, external_id, lock=lock)
        if found is None:
            message = f"no review {external_id!r} in this store"
            raise NotFound(f"external_id: {message}", errors=_field("external_id", message))
        return found

    def get(self, session: Session, store: Store, external_id: str) -> ReviewOut:
        return self._out(session, store, self._get(session, store, external_id))

    def submit(
        self, session: Session, store: Store, body: ReviewIn, now: datetime | None = None
    ) -> tuple[ReviewOut, bool]:
        """Record a review (pending moderation); returns (review, created). A 1–2 star
        review of a known customer opens a follow-up ticket."""
        now = as_utc_or_now(now)
        existing = repo.review(session, store.id, body.external_id)
        if existing is not None:
            return self._out(session, store, existing), False
        customer_id: int | None = None
        order = body.order_external_id
        verified = False
        if body.customer_external_id is not None:
            customer = customers_repo.get_by_external_id(
                session, store.id, body.customer_external_id
            )
            if customer is None:
                message = f"no customer {body.customer_external_id!r} in this store"
                raise NotFound(
                    f"customer_external_id: {message}",
                    errors=_field("customer_external_id", message),
                )
            customer_id = customer.id
            bought = repo.bought_sku(session, store.id, customer.id, body.product_sku)
            verified = bought is not None
            order = order or bought
        created_at = as_utc(body.created_at) if body.created_at is not None else now
        review_id = repo.insert_review(
            session,
            {
                "store_id": store.id,
                "external_id": body.external_id,
                "customer_id": customer_id,
                "product_sku": body.product_sku,
                "order_external_id": order,
                "rating": body.rating,
                "title": body.title,
                "body": body.body,
                "channel": body.channel,
                "verified_purchase": verified,
                "status": ReviewStatus.pending.value,
                "points": 0,
                "created_at": created_at,
                "updated_at": now,
            },
        )
        review = self._get(session, store, body.external_id)
        if review_id is None:  # a concurrent submission of the same review won
            return self._out(session, store, review), False
        if customer_id is not None:
            customers_repo.insert_touchpoints(
                session,
                [
                    {
                        "store_id": store.id,
                        "customer_id": customer_id,
                        "kind": TouchpointKind.review.value,
                        "occurred_at": created_at,
                        "ref": body.external_id,
                        "data": {"product_sku": body.product_sku, "rating": body.rating},
                    }
                ],
            )
            if body.rating <= NEGATIVE:
                review.ticket_id = self._open_ticket(session, store, review, customer_id, now)
                session.flush()
        return self._out(session, store, review), True

    def _open_ticket(
        self, session: Session, store: Store, review: Review, customer_id: int, now: datetime
    ) -> int:
        from patron.support.models import Priority, TicketChannel
        from patron.support.service import tickets

        text = "\n\n".join(t for t in (review.title, review.body) if t) or "(no text)"
        ticket, _ = tickets.open_for_customer(
            session,
            store,
            customer_id=customer_id,
            channel=TicketChannel.review,
            subject=f"{review.rating}-star review of {review.product_sku}"[:255],
            body=f"A {review.rating}-star review ({review.external_id}):\n\n{text}"[:10_000],
            source="review",
            source_ref=f"review:{review.external_id}",
            priority=Priority.high if review.rating == 1 else None,
            order_external_id=review.order_external_id,
            product_sku=review.product_sku,
            now=now,
        )
        return ticket.id

    def moderate(
        self,
        session: Session,
        store: Store,
        external_id: str,
        body: ModerationIn,
        now: datetime | None = None,
    ) -> ReviewOut:
        """Approve or reject a review with an optional note. Approval credits review
        points once (a repeat, or approving again after a rejection, credits nothing
        more); the same decision again changes nothing."""
        now = as_utc_or_now(now)
        review = self._get(session, store, external_id, lock=True)
        status = ReviewStatus.approved if body.decision == "approve" else ReviewStatus.rejected
        if review.status is status and (body.note is None or body.note == review.moderation_note):
            return self._out(session, store, review)
        review.status = status
        review.moderation_note = body.note
        review.moderated_at = now
        review.updated_at = now
        if status is ReviewStatus.approved and review.customer_id is not None:
            review.points = max(review.points, self._credit(session, store, review, now))
        session.flush()
        return self._out(session, store, review)

    def _credit(self, session: Session, store: Store, review: Review, now: datetime) -> int:
        if review.customer_id is None or active_program(session, store) is None:
            return 0
        result = actions.report(
            session,
            store,
            review.customer_id,
            EventKind.review,
            review.external_id,
            ref=f"review:{review.external_id}",
            now=now,
        )
        return result.points

    def reply(
        self,
        session: Session,
        store: Store,
        external_id: str,
        text: str,
        now: datetime | None = None,
    ) -> ReviewOut:
        """The store's public answer (replaces an earlier one); answered negative reviews
        leave the alerts list."""
        now = as_utc_or_now(now)
        review = self._get(session, store, external_id, lock=True)
        if review.status is ReviewStatus.rejected:
            message = "a rejected review is not shown: there is nothing to reply to"
            raise Conflict(f"external_id: {message}", errors=_field("external_id", message))
        review.reply = text
        review.replied_at = now
        review.updated_at = now
        session.flush()
        return self._out(session, store, review)

    def list(
        self,
        session: Session,
        store: Store,
        *,
        status: ReviewStatus | None = None,
        product_sku: str | None = None,
        rating: int | None = None,
        limit: int = 50,
        after: int | None = None,
    ) -> ReviewPage:
        rows = repo.reviews_page(
            session,
            store.id,
            status=status,
            product_sku=product_sku,
            rating=rating,
            limit=limit,
            after=after,
        )
        return self._page(session, store, rows, limit)

    def alerts(
        self, session: Session, store: Store, *, limit: int = 50, after: int | None = None
    ) -> ReviewPage:
        """Negative reviews (1–2 stars, not rejected) the store has not answered yet."""
        rows = repo.reviews_page(
            session, store.id, max_rating=NEGATIVE, unanswered=True, limit=limit, after=after
        )
        return self._page(session, store, rows, limit)

    def _page(
        self, session: Session, store: Store, rows: Sequence[Review], limit: int
    ) -> ReviewPage:
        """A keyset page of ``rows``, found with ``limit``: full, it may have a next one."""
        return ReviewPage(
            items=self._outs(session, store, rows),
            next_after=rows[-1].id if len(rows) == limit else None,
        )

    def summary(
        self,
        session: Session,
        store: Store,
        *,
        product_sku: str | None = None,
        statuses: Sequence[ReviewStatus] = SHOWN,
    ) -> ReviewSummaryOut:
        """Rating distribution and mean, store-wide and per product (most reviewed first,
        at most ``SUMMARY_PRODUCTS``)."""
        rows = repo.rating_counts(session, store.id, product_sku=product_sku, statuses=statuses)
        per: dict[str, dict[int, int]] = {}
        overall: dict[int, int] = {}
        for sku, rating, n in rows:
            per.setdefault(sku, {})[rating] = per.get(sku, {}).get(rating, 0) + n
            overall[rating] = overall.get(rating, 0) + n
        products = sorted(per.items(), key=lambda item: (-sum(item[1].values()), item[0]))
        return ReviewSummaryOut(
            statuses=list(statuses),
            overall=_summary(overall),
            products=[
                ProductRating(product_sku=sku, **_summary(counts).model_dump())
                for sku, counts in products[:SUMMARY_PRODUCTS]
            ],
        )


def _summary(counts: dict[int, int]) -> RatingSummary:
    n = sum(counts.values())
    mean = sum(r * c for r, c in counts.items()) / n if n else None
    return RatingSummary(
        count=n,
        mean=mean,
        distribution={str(star): counts.get(star, 0) for star in range(1, 6)},
    )


reviews = ReviewService()
