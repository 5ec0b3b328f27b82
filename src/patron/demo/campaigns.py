"""Campaigns for the demo store: a past newsletter (A/B, 10% holdout) and a win-back (20%
holdout), both measured against the demo's real orders; an active birthday trigger; and a
draft.

The demo's customers imported email consent as granted but never confirmed it (double
opt-in); in this synthetic store they are taken to have confirmed it when they signed
up, so that campaigns have someone to reach. The past sends are recorded as delivered
(nothing leaves the machine).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.campaigns.campaign import CampaignIn, campaign_service, message_prefix
from patron.campaigns.consent import address_hash
from patron.campaigns.models import ConsentRequest, MessageStatus, OutboxMessage
from patron.customers.models import Channel, Consent, Customer
from patron.kit.clock import utcnow
from patron.kit.repository import insert_rows, table_of
from patron.stores.models import Store

GREETING_ZH = "<p>{{ customer.name or '亲爱的顾客' }}，您好！</p>"
GREETING_EN = "<p>Hello {{ customer.first_name or 'there' }},</p>"
PICKS_ZH = (
    "{% if recommendations %}<p>为您推荐：</p><ul>{% for r in recommendations %}"
    "<li>{{ r.name }}</li>{% endfor %}</ul>{% endif %}"
)
PICKS_EN = (
    "{% if recommendations %}<p>Picked for you:</p><ul>{% for r in recommendations %}"
    "<li>{{ r.name }}</li>{% endfor %}</ul>{% endif %}"
)
FOOT_ZH = '<p style="color:#888"><a href="{{ unsubscribe_url }}">退订</a></p>'
FOOT_EN = '<p style="color:#888"><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'


@dataclass(frozen=True)
class CampaignsFilled:
    campaigns: int
    sent: int
    held_out: int


def _variant(key: str, subject: dict[str, str], en: str, zh: str) -> dict[str, Any]:
    return {
        "key": key,
        "subject": subject,
        "body": {
            "en": GREETING_EN + en + PICKS_EN + FOOT_EN,
            "zh": GREETING_ZH + zh + PICKS_ZH + FOOT_ZH,
        },
    }


CAMPAIGNS: list[dict[str, Any]] = [
    {
        "key": "autumn-newsletter",
        "name": "Autumn newsletter 秋季新品",
        "trigger": "newsletter",
        "holdout_percent": 10,
        "segment_definition": {"all": [{"field": "orders_count", "op": "gte", "value": 1}]},
        "variants": [
            _variant(
                "A",
                {"en": "New for autumn at {{ store.name }}", "zh": "{{ store.name }}秋季新品上市"},
                "<p>Our autumn range has arrived.</p>",
                "<p>秋季新品已经上市。</p>",
            ),
            _variant(
                "B",
                {
                    "en": "{{ customer.first_name or 'Hi' }}, your {{ customer.points }} points "
                    "are waiting",
                    "zh": "您有 {{ customer.points }} 积分可以使用",
                },
                "<p>Use your points on the autumn range.</p>",
                "<p>秋季新品可用积分抵扣。</p>",
            ),
        ],
    },
    {
        "key": "win-back",
        "name": "Win-back 老客召回",
        "kind": "triggered",
        "trigger": "win_back",
        "holdout_percent": 20,
        "attribution_days": 30,
        "trigger_params": {"p_alive_below": 0.3, "every_days": 90},
        "variants": [
            _variant(
                "A",
                {"en": "We miss you, {{ customer.first_name or 'friend' }}", "zh": "好久不见"},
                "<p>It has been a while: here is 15% off your next order.</p>",
                "<p>好久不见，下单立享八五折。</p>",
            )
        ],
    },
    {
        "key": "birthday",
        "name": "Birthday 生日祝福",
        "kind": "triggered",
        "trigger": "birthday",
        "variants": [
            _variant(
                "A",
                {
                    "en": "Happy birthday, {{ customer.first_name or 'friend' }}!",
                    "zh": "生日快乐！",
                },
                "<p>Double points on everything this week.</p>",
                "<p>生日当周购物享双倍积分。</p>",
            )
        ],
    },
    {
        "key": "spring-preview",
        "name": "Spring preview 春季预告 (draft)",
        "trigger": "newsletter",
        "holdout_percent": 10,
        "variants": [
            _variant(
                "A",
                {"en": "Spring is coming to {{ store.name }}", "zh": "春季预告"},
                "<p>A first look at spring.</p>",
                "<p>春季新品抢先看。</p>",
            )
        ],
    },
]


def _confirm_email_consents(session: Session, store: Store, at: datetime) -> int:
    rows = session.execute(
        select(Customer.id, Customer.email)
        .join(Consent, Consent.customer_id == Customer.id)
        .where(
            Customer.store_id == store.id,
            Customer.email.is_not(None),
            Consent.channel == Channel.email,
            Consent.granted.is_(True),
        )
    ).all()
    insert_rows(
        session,
        table_of(ConsentRequest),
        [
            {
                "store_id": store.id,
                "customer_id": cid,
                "channel": Channel.email.value,
                "address": (email or "").lower(),
                "address_hash": address_hash(Channel.email, email or ""),
                "nonce": uuid.uuid4().hex,
                "source": "demo",
                "created_at": at,
                "expires_at": at + timedelta(days=7),
                "confirmed_at": at,
            }
            for cid, email in rows
        ],
    )
    return len(rows)


def _delivered(session: Session, store: Store, campaign_id: int) -> None:
    """Record the demo's past sends as delivered (nothing is mailed)."""
    session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.store_id == store.id,
            OutboxMessage.key.like(message_prefix(campaign_id) + "%"),
            OutboxMessage.status == MessageStatus.queued,
        )
        .values(status=MessageStatus.sent, sent_at=OutboxMessage.next_attempt_at, attempts=1)
        .execution_options(synchronize_session=False)
    )


def fill_campaigns(session: Session, store: Store, now: datetime | None = None) -> CampaignsFilled:
    """The demo store's four campaigns (see the module docstring)."""
    now = now or utcnow()
    _confirm_email_consents(session, store, now - timedelta(days=400))
    sent = held = 0
    newsletter_at = now - timedelta(days=30)
    win_back_at = now - timedelta(days=150)
    for spec in CAMPAIGNS:
        created = now - timedelta(days=200)
        campaign = campaign_service.create(
            session, store, CampaignIn.model_validate(spec), now=created
        )
        if spec["key"] == "autumn-newsletter":
            campaign_service.schedule(session, store, campaign.key, newsletter_at, now=created)
            run = campaign_service.run_due(session, store, newsletter_at)
            _delivered(session, store, campaign.id)
            campaign_service.run_due(session, store, newsletter_at + timedelta(days=1))
        elif spec["key"] == "win-back":
            campaign_service.schedule(session, store, campaign.key, now=win_back_at)
            run = campaign_service.run_due(session, store, win_back_at)
            _delivered(session, store, campaign.id)
        elif spec["key"] == "birthday":
            campaign_service.schedule(session, store, campaign.key, now=now)
            continue
        else:
            continue
        sent += run.queued
        held += run.held_out
    session.flush()
    return CampaignsFilled(len(CAMPAIGNS), sent, held)
