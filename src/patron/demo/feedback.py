"""The demo store's voice of the customer: survey answers, reviews and support tickets.

Everything goes through the same services the API uses, at the instants it would have
happened (orders delivered over the last year), so the scores, gaps, value analysis,
review alerts, SLA report and the follow-up tickets opened by unhappy answers are all real
numbers. A customer's "mood" drives every answer: it rises with how often they buy (loyal
customers are happier) and falls for flagged customers, with noise, so scores differ by
tier and segment the way a merchant would expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.customers.models import Customer
from patron.errors import PatronError
from patron.feedback import domain
from patron.feedback.reviews import reviews
from patron.feedback.schemas import ModerationIn, ReviewIn, SurveyIn
from patron.feedback.service import invitations, responses, run_triggers, surveys
from patron.kit.clock import utcnow
from patron.orders.models import Order, OrderLine, OrderStatus
from patron.stores.models import Store
from patron.support import settings as support_settings
from patron.support.models import (
    CompensationKind,
    Direction,
    Ticket,
    TicketChannel,
    TicketStatus,
)
from patron.support.recovery import recovery
from patron.support.schemas import ClaimIn, MessageIn, TicketIn
from patron.support.service import run_sla_check, tickets
from patron.support.settings import Role

COMPETITORS = ("丝芙兰 Sephora", "天猫旗舰店 Tmall flagship")
# How far each attribute's experience sits from what customers expected, on 1–7: the
# demo shop is strong on authenticity and packaging, weak on delivery and samples: wide
# enough apart (the answers' good mood lifts every gap by about half a point) that the
# gaps chart shows satisfied and dissatisfied attributes, not only neutral ones (±1).
ATTRIBUTE_BIAS = {
    "efficacy": 0.0,
    "ingredients_safety": 0.2,
    "authenticity": 1.3,
    "packaging": 0.9,
    "product_info": 0.1,
    "price": -0.6,
    "samples": -1.1,
    "beauty_advice": 0.2,
    "delivery": -1.5,
    "after_sales": -0.3,
}
# Where the shop and its competitors stand on each value attribute (1–10; cost
# attributes rate the burden, so lower is better).
VALUE_LEVELS: dict[str, tuple[float, float, float]] = {
    "quality": (7.8, 8.2, 7.0),
    "range": (6.9, 8.6, 7.9),
    "service": (8.1, 7.2, 6.6),
    "delivery_speed": (6.2, 6.9, 8.4),
    "shop_experience": (7.4, 7.8, 7.1),
    "price": (5.6, 7.4, 5.2),
    "time_effort": (4.1, 4.8, 3.6),
    "risk": (3.2, 3.0, 4.6),
}
COMMENTS = (
    "物流太慢了，等了一周。",
    "包装很精致，送人很合适。",
    "希望多送一些小样。",
    "客服回复很快，很满意。",
    "价格有点贵，希望多些优惠活动。",
    "Delivery took too long.",
    "Lovely packaging, will buy again.",
)
TICKET_TOPICS: tuple[tuple[str, str, str], ...] = (
    # (category, subject, first message)
    ("delivery_late", "订单还没有到", "我的订单已经一周了还没收到，请帮忙查一下物流。"),
    ("damaged", "收到的面霜瓶子碎了", "快递到的时候瓶子已经碎了，能否补发？"),
    ("wrong_item", "发错色号了", "我买的是 02 色号，收到的是 05。"),
    ("quality", "精华用了过敏", "用了两天脸上起红疹，想退货。"),
    ("not_as_described", "和描述不一样", "容量比页面上写的少。"),
    ("service", "Points not credited", "I ordered last week and got no points for it."),
    ("price", "刚买就降价了", "昨天买的今天便宜了 50 元，可以退差价吗？"),
    ("other", "How do I use the serum?", "Should I apply the serum before or after toner?"),
)
CHANNEL_WEIGHTS = {
    TicketChannel.email: 0.38,
    TicketChannel.chat: 0.27,
    TicketChannel.phone: 0.14,
    TicketChannel.social: 0.11,
    TicketChannel.app: 0.10,
}
# Business hours the demo's service team keeps (Asia/Shanghai, Chinese holidays off).
SUPPORT_SETTINGS: dict[str, Any] = {
    "hours": {
        "timezone": "Asia/Shanghai",
        "hours": {
            **{d: ["09:00-21:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "sat": ["10:00-18:00"],
            "sun": ["10:00-18:00"],
        },
        "holidays_country": "CN",
    },
}


@dataclass(frozen=True)
class FeedbackFilled:
    responses: int
    reviews: int
    tickets: int
    follow_ups: int  # tickets opened by unhappy answers and reviews


def _clip(value: float, low: int, high: int) -> int:
    return int(min(high, max(low, round(value))))


def answers_for(
    definition: domain.SurveyDefinition, mood: float, rng: np.random.Generator
) -> dict[str, Any]:
    """A plausible answer to any survey: each type of question from the customer's mood
    (about -1 unhappy .. +1 delighted)."""
    raw: dict[str, Any] = {}
    for q in definition.questions:
        if not q.required and rng.random() < 0.35:
            continue
        if isinstance(q, domain.NpsQuestion):
            raw[q.id] = _clip(7.7 + 2.6 * mood + rng.normal(0, 1.4), 0, 10)
        elif isinstance(q, domain.CsatQuestion):
            raw[q.id] = _clip(3.9 + 1.3 * mood + rng.normal(0, 0.7), 1, 5)
        elif isinstance(q, domain.CesQuestion):
            raw[q.id] = _clip(5.3 + 1.3 * mood + rng.normal(0, 0.9), 1, 7)
        elif isinstance(q, domain.RatingQuestion):
            mid = (q.min + q.max) / 2
            raw[q.id] = _clip(mid + (q.max - mid) * (0.4 + 0.6 * mood), q.min, q.max)
        elif isinstance(q, domain.LikertQuestion):
            raw[q.id] = _clip((q.points + 1) / 2 + mood * q.points / 3, 1, q.points)
        elif isinstance(q, domain.SingleChoiceQuestion):
            raw[q.id] = q.options[int(rng.integers(len(q.options)))].id
        elif isinstance(q, domain.MultipleChoiceQuestion):
            count = int(rng.integers(1, min(3, len(q.options)) + 1))
            picked = rng.choice(len(q.options), size=count, replace=False)
            raw[q.id] = [q.options[int(i)].id for i in picked]
        elif isinstance(q, domain.TextQuestion):
            if rng.random() < 0.4:
                raw[q.id] = COMMENTS[int(rng.integers(len(COMMENTS)))]
        elif isinstance(q, domain.ExpectationExperienceQuestion):
            expectation = _clip(rng.normal(5.4, 0.9), 1, 7)
            bias = ATTRIBUTE_BIAS.get(q.attribute, 0.0)
            experience = _clip(expectation + bias + 1.3 * mood + rng.normal(0, 0.9), 1, 7)
            raw[q.id] = {"expectation": expectation, "experience": experience}
        elif isinstance(q, domain.ComparisonQuestion):
            levels = VALUE_LEVELS.get(q.attribute, (6.5, 6.5, 6.5))
            sign = -1 if q.cost else 1
            ratings = {"us": _clip(levels[0] + sign * mood + rng.normal(0, 1.1), 1, 10)}
            for i, name in enumerate(q.competitors[:2]):
                ratings[name] = _clip(levels[i + 1] + rng.normal(0, 1.1), 1, 10)
            importance = 4.4 if q.attribute in ("quality", "price", "risk") else 3.4
            raw[q.id] = {
                "importance": _clip(importance + rng.normal(0, 0.7), 1, 5),
                "ratings": ratings,
            }
    return raw


def _moods(session: Session, store: Store, rng: np.random.Generator) -> dict[int, float]:
    """Each buying customer's mood: loyal (frequent) buyers happier, flagged ones not."""
    rows = session.execute(
        select(Order.customer_id, func.count(), Customer.flagged)
        .join(Customer, Customer.id == Order.customer_id)
        .where(Order.store_id == store.id)
        .group_by(Order.customer_id, Customer.flagged)
    ).all()
    counts = np.array([r[1] for r in rows], dtype=float)
    ranks = counts.argsort().argsort() / max(len(counts) - 1, 1)
    moods = {}
    for (cid, _, flagged), rank in zip(rows, ranks, strict=True):
        mood = 0.9 * (rank - 0.35) + rng.normal(0, 0.45) - (0.8 if flagged else 0.0)
        moods[int(cid)] = float(np.clip(mood, -1.2, 1.2))
    return moods


def _delivered(session: Session, store: Store, since: datetime) -> list[Any]:
    return list(
        session.execute(
            select(Order.id, Order.external_id, Order.customer_id, Order.delivered_at)
            .where(
                Order.store_id == store.id,
                Order.status == OrderStatus.delivered,
                Order.delivered_at >= since,
            )
            .order_by(Order.delivered_at)
        ).all()
    )


def _externals(session: Session, ids: set[int]) -> dict[int, str]:
    rows = session.execute(select(Customer.id, Customer.external_id).where(Customer.id.in_(ids)))
    return {int(i): str(e) for i, e in rows}


def fill_feedback(session: Session, store: Store, seed: int = 42) -> FeedbackFilled:
    """Surveys with a year of answers, reviews and tickets for the demo store."""
    rng = np.random.default_rng(seed + 5)
    now = utcnow()
    support_settings.apply(session, store, SUPPORT_SETTINGS)
    year_ago = now - timedelta(days=365)
    for key, name, trigger, extra in (
        ("cosmetics", "cosmetics", "after_delivery", {"delay_days": 7, "reminder_days": 3}),
        ("after-ticket", "after_ticket", "ticket_closed", {"reminder_days": 2}),
        ("value", "competitor_value", "manual", {"recontact_days": 0}),
    ):
        params = {"competitors": list(COMPETITORS)} if name == "competitor_value" else {}
        surveys.create(
            session,
            store,
            SurveyIn.model_validate(
                {"key": key, "template": name, "params": params or None, "trigger": trigger} | extra
            ),
            now=year_ago,
        )
    moods = _moods(session, store, rng)
    delivered = _delivered(session, store, year_ago)
    externals = _externals(session, {int(r.customer_id) for r in delivered})
    answered = 0

    # Post-purchase survey: a sample of the year's deliveries, about half answered.
    picks = sorted(rng.choice(len(delivered), size=min(900, len(delivered)), replace=False))
    definition = domain.SurveyDefinition.model_validate(
        surveys.current(session, store, "cosmetics").definition
    )
    for i in picks:
        order = delivered[int(i)]
        invited_at = order.delivered_at + timedelta(days=7)
        answered_at = invited_at + timedelta(hours=float(rng.uniform(1, 72)))
        if answered_at >= now:
            continue
        out = invitations.invite(
            session,
            store,
            "cosmetics",
            [externals[int(order.customer_id)]],
            f"order:{order.external_id}",
            now=invited_at,
        )
        if not out.invited or rng.random() > 0.5:
            continue
        mood = moods.get(int(order.customer_id), 0.0)
        token = out.invited[0].link.rsplit("/", 1)[1]
        responses.submit(session, token, answers_for(definition, mood, rng), now=answered_at)
        answered += 1

    # Customer value analysis against two competitors, asked twice this year (step 5).
    value = domain.SurveyDefinition.model_validate(
        surveys.current(session, store, "value").definition
    )
    panel = list(moods)
    for months_ago in (7, 1):
        asked_at = now - timedelta(days=30 * months_ago)
        chosen = rng.choice(len(panel), size=min(120, len(panel)), replace=False)
        for j in chosen:
            cid = panel[int(j)]
            if cid not in externals:
                continue
            out = invitations.invite(
                session, store, "value", [externals[cid]], f"value:{months_ago}", now=asked_at
            )
            if out.invited:
                token = out.invited[0].link.rsplit("/", 1)[1]
                responses.submit(
                    session,
                    token,
                    answers_for(value, moods[cid], rng),
                    now=asked_at + timedelta(hours=6),
                )
                answered += 1

    # Reviews of what was bought; older ones moderated, 1–2 stars answered.
    lines = session.execute(
        select(Order.external_id, Order.customer_id, Order.delivered_at, OrderLine.sku)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(
            Order.store_id == store.id,
            Order.status == OrderStatus.delivered,
            Order.delivered_at >= year_ago,
        )
        .limit(20_000)
    ).all()
    review_count = 0
    for i in rng.choice(len(lines), size=min(800, len(lines)), replace=False):
        line = lines[int(i)]
        written = line.delivered_at + timedelta(days=float(rng.uniform(1, 12)))
        if written >= now:
            continue
        mood = moods.get(int(line.customer_id), 0.0)
        rating = _clip(4.2 + 1.2 * mood + rng.normal(0, 0.9), 1, 5)
        ext = f"R-{line.external_id}-{line.sku}"
        _, created = reviews.submit(
            session,
            store,
            ReviewIn(
                external_id=ext,
                customer_external_id=externals.get(int(line.customer_id)),
                product_sku=line.sku,
                order_external_id=line.external_id,
                rating=rating,
                title=None,
                body=COMMENTS[int(rng.integers(len(COMMENTS)))] if rng.random() < 0.6 else None,
                channel="app",
                created_at=written,
            ),
            now=written,
        )
        if not created:
            continue
        review_count += 1
        if written < now - timedelta(days=7):
            decision = "reject" if rng.random() < 0.04 else "approve"
            reviews.moderate(session, store, ext, ModerationIn(decision=decision), now=now)
            if decision == "approve" and rating <= 2 and rng.random() < 0.6:
                reviews.reply(
                    session, store, ext, "非常抱歉给您带来不好的体验，客服已联系您处理。", now=now
                )

    ticket_count = _tickets(session, store, rng, externals, now)
    # Tickets closed lately get their after-ticket survey; some answer it today.
    run_triggers(session, store, now)
    after = domain.SurveyDefinition.model_validate(
        surveys.current(session, store, "after-ticket").definition
    )
    for item in invitations.due(session, store, now, limit=200).items:
        if item.survey_key != "after-ticket" or rng.random() > 0.5:
            continue
        token = item.link.rsplit("/", 1)[1]
        responses.submit(
            session, token, answers_for(after, float(rng.normal(0.2, 0.5)), rng), now=now
        )
        answered += 1
    run_sla_check(session, store, now)
    follow_ups = session.scalar(
        select(func.count())
        .select_from(Ticket)
        .where(Ticket.store_id == store.id, Ticket.source.in_(("survey", "review")))
    )
    return FeedbackFilled(answered, review_count, ticket_count, follow_ups or 0)


def _tickets(
    session: Session,
    store: Store,
    rng: np.random.Generator,
    externals: dict[int, str],
    now: datetime,
) -> int:
    """Tickets over the last six months on every channel: answered within or past their
    targets, some waiting on the customer, most resolved; the last few days still open."""
    channels = list(CHANNEL_WEIGHTS)
    weights = np.array(list(CHANNEL_WEIGHTS.values()))
    customers = list(externals.items())
    opened = 0
    recent_claims: list[int] = []
    for n in range(260):
        # Most over six months, a sixth in the last five days (still being worked on).
        days = rng.uniform(0, 5) if n % 6 == 0 else rng.uniform(0, 180)
        created = now - timedelta(days=float(days))
        ext = customers[int(rng.integers(len(customers)))][1]
        category, subject, body = TICKET_TOPICS[int(rng.integers(len(TICKET_TOPICS)))]
        channel = channels[int(rng.choice(len(channels), p=weights / weights.sum()))]
        claim = None
        if category in ("damaged", "quality", "wrong_item", "price") and rng.random() < 0.7:
            amount = Decimal(int(rng.integers(80, 600)))
            ask = amount * (10 if rng.random() < 0.08 else 1)  # now and then 假一赔十
            claim = ClaimIn(
                category=category,
                requested_compensation=ask,
                order_amount=amount,
                backed_by_policy=bool(rng.random() < 0.6),
                safety_issue=category == "quality" and rng.random() < 0.2,
            )
        ticket, _ = tickets.open(
            session,
            store,
            TicketIn(
                channel=channel,
                subject=subject,
                body=body,
                customer_external_id=ext,
                category=category,
                claim=claim,
                idempotency_key=f"demo-ticket-{n}",
            ),
            now=created,
        )
        opened += 1
        if claim is not None and created > now - timedelta(days=14):
            recent_claims.append(ticket.id)
        _work(session, store, rng, ticket.id, created, now)
    # Service recovery today on the recent claims: within an agent's cap it is granted,
    # an opportunistic claim waits for a lead's approval.
    for ticket_id in recent_claims:
        try:
            recovery.compensate(
                session,
                store,
                ticket_id,
                key=f"demo-compensation-{ticket_id}",
                kind=CompensationKind.points,
                points=150,
                reason="补偿积分：给您添麻烦了",
                role=Role.agent,
                actor="客服小美",
                now=now,
            )
        except PatronError:
            continue  # e.g. a customer the programme does not know: nothing to give
    # The follow-ups opened by unhappy answers and reviews are worked on the same way.
    follow_ups = session.execute(
        select(Ticket.id, Ticket.created_at).where(
            Ticket.store_id == store.id,
            Ticket.source.in_(("survey", "review")),
            Ticket.status == TicketStatus.new,
        )
    ).all()
    for ticket_id, created in follow_ups:
        _work(session, store, rng, ticket_id, created, now)
    return opened


def _work(
    session: Session,
    store: Store,
    rng: np.random.Generator,
    ticket_id: int,
    created: datetime,
    now: datetime,
) -> None:
    """A ticket's life up to now: a first answer (late one time in eight), sometimes a
    wait for the customer, then resolved and, three days later, closed."""
    late = rng.random() < 0.12
    answer_at = created + timedelta(
        hours=float(rng.uniform(24, 60) if late else rng.uniform(0.1, 6))
    )
    if answer_at >= now:
        return
    waits = rng.random() < 0.3
    tickets.reply(
        session,
        store,
        ticket_id,
        body="您好，已经收到您的反馈，正在为您处理。",
        author="客服小美",
        wait_for_customer=waits,
        now=answer_at,
    )
    last = answer_at
    if waits:
        back = answer_at + timedelta(hours=float(rng.uniform(4, 40)))
        if back >= now:
            return
        tickets.add_message(
            session,
            store,
            ticket_id,
            MessageIn(direction=Direction.inbound, body="好的，订单号已经发给你们了。"),
            now=back,
        )
        last = back
    solved = last + timedelta(hours=float(rng.uniform(1, 50)))
    if solved >= now:
        return
    tickets.set_status(
        session, store, ticket_id, TicketStatus.resolved, actor="客服小美", now=solved
    )
    if solved + timedelta(days=3) < now:
        tickets.set_status(
            session,
            store,
            ticket_id,
            TicketStatus.closed,
            actor="system",
            now=solved + timedelta(days=3),
        )
