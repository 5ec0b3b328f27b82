"""Campaigns end to end, on SQLite and PostgreSQL: a one-off to a segment with a holdout
and A/B variants (each recipient once, consent, caps, quiet hours, mail received in the
customer's language with a recommendation), triggered campaigns firing once per occasion,
uplift against the holdout matching a hand computation, the API and the CLI."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from typer.testing import CliRunner

from patron.analytics.models import CustomerScore
from patron.auth import Scope
from patron.campaigns import domain
from patron.campaigns.campaign import CampaignIn, campaign_service
from patron.campaigns.consent import consents
from patron.campaigns.models import (
    CampaignRecipient,
    CampaignStatus,
    MessageStatus,
    OutboxMessage,
    RecipientStatus,
)
from patron.campaigns.outbox import Rendered, outbox
from patron.cli import app as cli_app
from patron.config import Settings
from patron.customers.models import Channel, Customer
from patron.db import unit_of_work
from patron.loyalty.models import LoyaltyNotice, NoticeKind
from patron.orders.models import Order, OrderLine, OrderStatus, Product
from patron.stores.models import Store
from tests.campaigns.test_mailer import Mailbox, smtp  # noqa: F401 (fixture)
from tests.conftest import key_headers, new_store

# 22:30 in Shanghai: inside the default quiet hours (21:00-09:00); they end at 01:00 UTC.
NOW = datetime(2026, 5, 1, 14, 30, tzinfo=UTC)
MORNING = datetime(2026, 5, 2, 1, 0, tzinfo=UTC)

BODY_EN = (
    "<p>Hello {{ customer.first_name }},</p><p>Spring sale at {{ store.name }}!</p>"
    "{% if recommendations %}<p>You may like: {{ recommendations[0].name }}</p>{% endif %}"
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
)
BODY_ZH = (
    "<p>{{ customer.name }}，您好！</p><p>{{ store.name }}春季特卖</p>"
    "{% if recommendations %}<p>为您推荐：{{ recommendations[0].name }}</p>{% endif %}"
)


def variants(b: bool = True) -> list[dict[str, Any]]:
    out = [
        {
            "key": "A",
            "subject": {"en": "Spring sale, {{ customer.first_name }}", "zh": "春季特卖"},
            "body": {"en": BODY_EN, "zh": BODY_ZH},
        }
    ]
    if b:
        out.append(
            {
                "key": "B",
                "subject": {"en": "20% off for you", "zh": "专属八折"},
                "body": {"en": BODY_EN, "zh": BODY_ZH},
            }
        )
    return out


def shop(engine: Engine) -> Store:
    return new_store(engine, timezone="Asia/Shanghai")


def add_customer(
    engine: Engine,
    store: Store,
    ext: str,
    *,
    consent: bool = True,
    created_at: datetime | None = None,
    **fields: Any,
) -> Customer:
    with unit_of_work(engine) as session:
        s = session.merge(store)
        fields.setdefault("email", f"{ext.lower()}@example.com")
        row = Customer(
            store_id=s.id,
            external_id=ext,
            created_at=created_at or NOW - timedelta(days=60),
            **fields,
        )
        session.add(row)
        session.flush()
        if consent:
            consents.grant_from_link(session, s, row, Channel.email, proven=True)
        return row


def add_products(engine: Engine, store: Store) -> None:
    with unit_of_work(engine) as session:
        for sku, name in (("TEA", "Green tea"), ("POT", "Teapot"), ("CUP", "Tea cup")):
            session.add(
                Product(store_id=store.id, sku=sku, name=name, price_minor=1000, currency="CNY")
            )


def add_order(
    engine: Engine,
    store: Store,
    customer_id: int,
    ext: str,
    at: datetime,
    total: int,
    *,
    skus: tuple[str, ...] = (),
    status: OrderStatus = OrderStatus.delivered,
    refunded: int = 0,
) -> None:
    with unit_of_work(engine) as session:
        o = Order(
            store_id=store.id,
            external_id=ext,
            customer_id=customer_id,
            status=status,
            currency="CNY",
            subtotal_minor=total,
            discount_minor=0,
            shipping_minor=0,
            tax_minor=0,
            total_minor=total,
            refunded_minor=refunded,
            placed_at=at,
        )
        session.add(o)
        session.flush()
        for n, sku in enumerate(skus, 1):
            session.add(
                OrderLine(
                    order_id=o.id,
                    line_no=n,
                    sku=sku,
                    name=sku,
                    quantity=1,
                    unit_price_minor=total,
                    discount_minor=0,
                    total_minor=total,
                )
            )


def create(engine: Engine, store: Store, **over: Any) -> str:
    body: dict[str, Any] = {
        "key": "spring",
        "name": "Spring sale",
        "holdout_percent": 10,
        "variants": variants(),
        **over,
    }
    with unit_of_work(engine) as session:
        campaign_service.create(session, session.merge(store), CampaignIn.model_validate(body))
    return str(body["key"])


def schedule(engine: Engine, store: Store, key: str, at: datetime | None = None) -> None:
    with unit_of_work(engine) as session:
        campaign_service.schedule(session, session.merge(store), key, at, now=at or NOW)


def run(engine: Engine, store: Store, now: datetime = NOW) -> Any:
    with unit_of_work(engine) as session:
        return campaign_service.run_due(session, session.merge(store), now)


def recipients(engine: Engine, store: Store, key: str) -> list[CampaignRecipient]:
    with unit_of_work(engine) as session:
        c = campaign_service.get(session, session.merge(store), key)
        return list(
            session.scalars(
                select(CampaignRecipient)
                .where(CampaignRecipient.campaign_id == c.id)
                .order_by(CampaignRecipient.customer_id, CampaignRecipient.occasion)
            )
        )


def messages(engine: Engine, store: Store, prefix: str = "campaign:") -> list[OutboxMessage]:
    with unit_of_work(engine) as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.store_id == store.id, OutboxMessage.key.startswith(prefix))
                .order_by(OutboxMessage.id)
            )
        )


def prior_marketing(engine: Engine, store: Store, c: Customer, n: int, at: datetime) -> None:
    with unit_of_work(engine) as session:
        s = session.merge(store)
        for i in range(n):
            outbox.enqueue(
                session,
                s,
                customer=session.merge(c),
                recipient=c.email or "",
                kind="newsletter",
                key=f"earlier:{c.id}:{i}",
                mail=Rendered("Earlier", "earlier", ""),
                now=at,
            )


# -- a one-off to a segment -----------------------------------------------------------------


def test_one_off_with_holdout_ab_consent_caps_and_quiet_hours(
    engine: Engine,
    smtp: tuple[Mailbox, Settings],  # noqa: F811
) -> None:
    box, settings = smtp
    store = shop(engine)
    add_products(engine, store)
    people: dict[int, Customer] = {}
    for n in range(1, 101):
        people[n] = add_customer(
            engine,
            store,
            f"C{n}",
            consent=n <= 85,
            first_name=f"Ann{n}",
            last_name="王" if n % 2 == 0 else "Lee",
            locale="zh-CN" if n % 2 == 0 else "en-GB",
            attributes={"vip": n != 100},  # the segment leaves out C100
        )
    # Co-occurrence: two earlier customers bought tea and a teapot; every recipient bought
    # tea: a teapot is what they are recommended (C1 and C2 have both already).
    for n in (1, 2):
        add_order(
            engine,
            store,
            people[n].id,
            f"h{n}",
            NOW - timedelta(days=30),
            2000,
            skus=("TEA", "POT"),
        )
    for n in range(3, 101):
        add_order(
            engine, store, people[n].id, f"t{n}", NOW - timedelta(days=30), 1000, skus=("TEA",)
        )
    # 81-85: three marketing messages within the last 7 days already: capped (default 3/7).
    for n in range(81, 86):
        prior_marketing(engine, store, people[n], 3, NOW - timedelta(days=2))
    # An opt-in confirmation is transactional: it does not count towards the cap.
    with unit_of_work(engine) as session:
        outbox.enqueue_opt_in_confirmation(
            session, session.merge(store), session.merge(people[3]), "http://x/c/s/n.sig", now=NOW
        )

    key = create(
        engine,
        store,
        segment_definition={"all": [{"field": "attributes.vip", "op": "eq", "value": True}]},
    )
    schedule(engine, store, key, NOW - timedelta(minutes=5))
    first = run(engine, store)
    assert run(engine, store).campaigns == 0  # now sending: not due again
    with unit_of_work(engine) as session:  # even run again (a crash before the status
        c = campaign_service.get(session, session.merge(store), key)  # was saved, say),
        c.status = CampaignStatus.scheduled  # nobody gets it twice
    again = run(engine, store)
    assert again.total == 0 and again.campaigns == 1

    rows = recipients(engine, store, key)
    assert len(rows) == 99 == len({r.customer_id for r in rows})  # C100 not in the segment
    by_status: dict[RecipientStatus, set[int]] = {}
    ids = {c.id: n for n, c in people.items()}
    for r in rows:
        by_status.setdefault(r.status, set()).add(ids[r.customer_id])
    assert by_status[RecipientStatus.suppressed] == set(range(86, 100))  # no consent
    assert by_status[RecipientStatus.capped] == set(range(81, 86))
    held = by_status.get(RecipientStatus.held_out, set())
    queued = by_status[RecipientStatus.queued]
    assert held and held | queued == set(range(1, 81))
    for n in held:  # the holdout is the hash's choice, not chance
        assert domain.assign(key, people[n].id, 10, [("A", 1), ("B", 1)]) == domain.HOLDOUT
    assert {r.arm for r in rows if r.status is RecipientStatus.queued} == {"A", "B"}
    assert (first.queued, first.held_out, first.capped, first.suppressed) == (
        len(queued),
        len(held),
        5,
        14,
    )
    # Every send, and the holdout's would-be send, waits for the end of quiet hours.
    assert {r.send_at for r in rows} == {MORNING}
    sent_msgs = messages(engine, store, "campaign:")
    assert len(sent_msgs) == len(queued)
    assert {m.customer_id for m in sent_msgs} == {people[n].id for n in queued}
    assert {m.next_attempt_at for m in sent_msgs} == {MORNING}
    assert all(m.key == f"campaign:{rows[0].campaign_id}:{m.customer_id}" for m in sent_msgs)

    # Still night: the mailer sends only the earlier mail (15 + an opt-in confirmation).
    assert mailer_run(engine, store, settings, NOW).sent == 16
    earlier = len(box.received)
    out = mailer_run(engine, store, settings, MORNING)
    assert out.sent == len(queued)
    received = {m["To"]: m for m in box.received[earlier:]}
    assert set(received) == {f"c{n}@example.com" for n in queued}  # once each, none held out
    for n in queued:
        mail = received[f"c{n}@example.com"]
        html = mail.get_body(("html",))
        text = mail.get_body(("plain",))
        assert html is not None and text is not None
        if n % 2 == 0:
            assert mail["Subject"] in ("春季特卖", "专属八折")
            assert n < 3 or "为您推荐：Teapot" in text.get_content()
            assert f"王Ann{n}，您好" in text.get_content()
        else:
            assert mail["Subject"] in (f"Spring sale, Ann{n}", "20% off for you")
            assert n < 3 or "You may like: Teapot" in text.get_content()
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with unit_of_work(engine) as session:
        assert campaign_service.run_due(session, session.merge(store), MORNING).finished == 1
        c = campaign_service.get(session, session.merge(store), key)
        assert c.status is CampaignStatus.sent


def mailer_run(engine: Engine, store: Store, settings: Settings, now: datetime) -> Any:
    from patron.campaigns.mailer import deliver

    return deliver(engine, store.slug, limit=500, now=now, settings=settings)


def test_batch_consent_check_agrees_with_may_contact(engine: Engine) -> None:
    store = shop(engine)
    a = add_customer(engine, store, "A")
    b = add_customer(engine, store, "B", consent=False)
    c = add_customer(engine, store, "C")
    d = add_customer(engine, store, "D", email=None)
    added = add_customer(engine, store, "E")
    with unit_of_work(engine) as session:
        s = session.merge(store)
        consents.suppress(
            session, s, Channel.email, "c@example.com", consents_reason(), "test", NOW
        )
        e = session.merge(added)
        e.email = "new-e@example.com"  # a new address is not confirmed
        session.flush()
        everyone = [session.merge(x) for x in (a, b, c, d)] + [e]
        got = consents.contactable(session, s, everyone, Channel.email)
        want = {x.id for x in everyone if consents.may_contact(session, s, x.id, Channel.email)}
    assert got == want == {a.id}


def consents_reason() -> Any:
    from patron.campaigns.models import SuppressionReason

    return SuppressionReason.manual


def test_cap_and_quiet_hours_follow_store_settings(engine: Engine) -> None:
    store = new_store(engine, timezone="UTC")
    c = add_customer(engine, store, "A")
    prior_marketing(engine, store, c, 1, NOW - timedelta(days=1))
    with unit_of_work(engine) as session:
        from patron.campaigns.campaign import SettingsIn

        campaign_service.save_settings(
            session,
            session.merge(store),
            SettingsIn(cap_messages=1, cap_days=2, quiet_start="14:00", quiet_end="15:00"),
        )
    create(engine, store, key="one", holdout_percent=0, variants=variants(False))
    schedule(engine, store, "one", NOW)
    assert run(engine, store).capped == 1  # one message yesterday: 1 per 2 days reached
    create(engine, store, key="two", holdout_percent=0, variants=variants(False))
    later = NOW + timedelta(days=3)  # 14:30 UTC: quiet until 15:00
    schedule(engine, store, "two", later)
    assert run(engine, store, later).queued == 1
    [msg] = messages(engine, store, "campaign:")
    assert msg.next_attempt_at == later.replace(hour=15, minute=0)


def test_cap_counts_by_probe_and_by_grouped_count_agree(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few customers are probed one by one, many counted in one grouped query: the
    same counts, whatever the messages (in or out of the window, transactional, failed,
    another store's)."""
    from patron.campaigns import campaign as campaign_module

    store, other = new_store(engine, timezone="UTC"), new_store(engine, timezone="UTC")
    people = [add_customer(engine, store, f"K{i}") for i in range(6)]
    stranger = add_customer(engine, other, "X")
    prior_marketing(engine, store, people[0], 3, NOW - timedelta(days=1))
    prior_marketing(engine, store, people[1], 1, NOW - timedelta(days=1))
    prior_marketing(engine, store, people[2], 2, NOW - timedelta(days=30))  # out of window
    prior_marketing(engine, other, stranger, 2, NOW - timedelta(days=1))
    with unit_of_work(engine) as session:
        s = session.merge(store)
        for i, status in enumerate((MessageStatus.failed, MessageStatus.queued)):
            outbox.enqueue(
                session,
                s,
                customer=session.merge(people[3]),
                recipient=people[3].email or "",
                kind="test",
                key=f"other:{i}",
                mail=Rendered("x", "y"),
                needs_consent=status is MessageStatus.failed,  # failed, or transactional
                now=NOW - timedelta(hours=1),
            )
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.key == "other:0")
            .values(status=MessageStatus.failed)
        )
    create(engine, store, key="cap", holdout_percent=0, variants=variants(False))
    with unit_of_work(engine) as session:
        s = session.merge(store)
        campaign = campaign_service.get(session, s, "cap")
        settings = campaign_service.settings(session, s)
        sender = campaign_module._Sender(session, s, campaign, settings, NOW)
        ids = [p.id for p in people] + [stranger.id]
        monkeypatch.setattr(campaign_module, "CAP_PROBES", 10**6)
        probed = sender.cap_counts(ids)
        monkeypatch.setattr(campaign_module, "CAP_PROBES", 0)
        grouped = sender.cap_counts(ids)
    assert probed == grouped == {people[0].id: 3, people[1].id: 1}


# -- triggered ------------------------------------------------------------------------------


def triggered(engine: Engine, store: Store, key: str, trigger: str, **over: Any) -> None:
    body = {
        "key": key,
        "name": key,
        "kind": "triggered",
        "trigger": trigger,
        "variants": [
            {
                "key": "A",
                "subject": {"en": "For you, {{ customer.first_name }}"},
                "body": {
                    "en": "<p>{{ customer.first_name }}: {{ occasion.points|default('') }} "
                    "{{ customer.expiring_date or '' }}</p>"
                },
            }
        ],
        **over,
    }
    with unit_of_work(engine) as session:
        s = session.merge(store)
        campaign_service.create(session, s, CampaignIn.model_validate(body), now=NOW)
        campaign_service.schedule(session, s, key, now=NOW)


def test_birthday_fires_once_per_year_in_store_time(engine: Engine) -> None:
    store = shop(engine)
    # 1 May 22:30 in Shanghai is 1 May: C1's birthday; C2's is 2 May (UTC's 1 May is
    # irrelevant); C3 was born on 29 February.
    c1 = add_customer(engine, store, "C1", first_name="May", birthday=date(1990, 5, 1))
    add_customer(engine, store, "C2", birthday=date(1991, 5, 2))
    c3 = add_customer(engine, store, "C3", birthday=date(1992, 2, 29))
    triggered(engine, store, "bday", "birthday")
    assert run(engine, store).queued == 1
    assert run(engine, store, NOW + timedelta(hours=1)).queued == 0  # same day: once
    [row] = recipients(engine, store, "bday")
    assert (row.customer_id, row.occasion) == (c1.id, "birthday:2026")
    assert row.send_at == MORNING  # 22:30 is quiet
    next_year = NOW + timedelta(days=365)
    assert run(engine, store, next_year).queued == 1
    # 28 Feb 2027 (not a leap year) celebrates 29 February.
    feb28 = datetime(2027, 2, 28, 4, 0, tzinfo=UTC)
    assert run(engine, store, feb28).queued == 1
    assert {r.customer_id for r in recipients(engine, store, "bday")} == {c1.id, c3.id}


def test_welcome_fires_for_new_customers_only(engine: Engine) -> None:
    store = shop(engine)
    add_customer(engine, store, "OLD", created_at=NOW - timedelta(days=3))
    triggered(engine, store, "hello", "welcome")
    new = add_customer(engine, store, "NEW", created_at=NOW + timedelta(minutes=10))
    later = NOW + timedelta(hours=1)
    assert run(engine, store, later).queued == 1
    assert run(engine, store, later + timedelta(hours=2)).queued == 0
    assert [(r.customer_id, r.occasion) for r in recipients(engine, store, "hello")] == [
        (new.id, "welcome")
    ]


def test_points_expiring_and_tier_upgrade_fire_once_per_notice(engine: Engine) -> None:
    store = new_store(engine, timezone="UTC")
    a = add_customer(engine, store, "A", first_name="Ann")
    b = add_customer(engine, store, "B", first_name="Bo")
    triggered(engine, store, "expiring", "points_expiring")
    triggered(engine, store, "upgrade", "tier_upgrade")
    expires = datetime(2026, 5, 31, 15, 59, tzinfo=UTC)
    with unit_of_work(engine) as session:
        for i, (cid, kind, data) in enumerate(
            [
                (
                    a.id,
                    NoticeKind.points_expiring,
                    {"points": 321, "expires_at": expires.isoformat()},
                ),
                (b.id, NoticeKind.tier_changed, {"change": "upgrade", "to_tier": "gold"}),
                (a.id, NoticeKind.tier_changed, {"change": "downgrade", "to_tier": "base"}),
            ]
        ):
            session.add(
                LoyaltyNotice(
                    store_id=store.id,
                    customer_id=cid,
                    kind=kind,
                    key=f"n{i}",
                    data=data,
                    created_at=NOW + timedelta(minutes=1),
                )
            )
    noon = NOW.replace(hour=12) + timedelta(days=1)
    first = run(engine, store, noon)
    assert first.queued == 2  # the expiring points to A, the upgrade to B (not the downgrade)
    assert run(engine, store, noon).queued == 0
    [exp] = messages(engine, store, "campaign:")[:1]
    assert exp.customer_id == a.id and "321" in exp.body_text and "2026-05-31" in exp.body_text
    assert [r.customer_id for r in recipients(engine, store, "upgrade")] == [b.id]


def test_win_back_at_most_once_per_period(engine: Engine) -> None:
    store = new_store(engine, timezone="UTC")
    a = add_customer(engine, store, "A")
    b = add_customer(engine, store, "B")
    add_customer(engine, store, "C")
    with unit_of_work(engine) as session:
        for c, seg, p in ((a, "at_risk", 0.8), (b, "champions", 0.1)):
            session.add(
                CustomerScore(
                    customer_id=c.id,
                    store_id=store.id,
                    run_id=1,
                    segment=seg,
                    p_alive=p,
                    computed_at=NOW,
                )
            )
    triggered(engine, store, "back", "win_back", trigger_params={"every_days": 30})
    noon = NOW.replace(hour=10)
    assert run(engine, store, noon).queued == 2
    assert run(engine, store, noon + timedelta(days=10)).queued == 0
    assert run(engine, store, noon + timedelta(days=31)).queued == 2


# -- measurement ----------------------------------------------------------------------------


def test_uplift_matches_a_hand_computation(engine: Engine) -> None:
    store = new_store(engine, timezone="UTC")
    noon = NOW.replace(hour=12)  # not quiet: sent at once
    people = [add_customer(engine, store, f"C{n}") for n in range(40)]
    create(engine, store, key="m", holdout_percent=50, attribution_days=7, variants=variants())
    schedule(engine, store, "m", noon)
    run(engine, store, noon)
    rows = {r.customer_id: r for r in recipients(engine, store, "m")}
    arms = {cid: r.arm for cid, r in rows.items()}
    assert set(arms.values()) == {"A", "B", domain.HOLDOUT}
    # Orders: every third customer buys 50.00 on day 2; every fifth also 30.00 on day 5
    # with 10.00 refunded. Noise that must not count: orders before the send, after the
    # window, cancelled, refunded in full.
    revenue: dict[int, int] = {}
    for i, c in enumerate(people):
        rev = 0
        if i % 3 == 0:
            add_order(engine, store, c.id, f"a{i}", noon + timedelta(days=2), 5000)
            rev += 5000
        if i % 5 == 0:
            add_order(engine, store, c.id, f"b{i}", noon + timedelta(days=5), 3000, refunded=1000)
            rev += 2000
        if i % 4 == 1:
            add_order(engine, store, c.id, f"x{i}", noon - timedelta(hours=1), 9000)
            add_order(engine, store, c.id, f"y{i}", noon + timedelta(days=8), 9000)
            add_order(
                engine,
                store,
                c.id,
                f"z{i}",
                noon + timedelta(days=1),
                9000,
                status=OrderStatus.cancelled,
            )
            add_order(
                engine,
                store,
                c.id,
                f"w{i}",
                noon + timedelta(days=1),
                9000,
                status=OrderStatus.refunded,
                refunded=9000,
            )
        revenue[c.id] = rev
    treat = [revenue[c] for c, arm in arms.items() if arm != domain.HOLDOUT]
    hold = [revenue[c] for c, arm in arms.items() if arm == domain.HOLDOUT]

    def mean(xs: list[int]) -> float:
        return sum(xs) / len(xs)

    def var(xs: list[int]) -> float:
        m = mean(xs)
        return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)

    pt = sum(1 for x in treat if x) / len(treat)
    ph = sum(1 for x in hold if x) / len(hold)
    se = math.sqrt(pt * (1 - pt) / len(treat) + ph * (1 - ph) / len(hold))

    with unit_of_work(engine) as session:
        out = campaign_service.results(session, session.merge(store), "m")
    assert out["treatment"]["recipients"] == len(treat)
    assert out["holdout"]["recipients"] == len(hold)
    assert out["treatment"]["conversions"] == sum(1 for x in treat if x)
    assert out["treatment"]["revenue_minor"] == sum(treat)
    assert out["holdout"]["revenue_minor"] == sum(hold)
    conv = out["uplift"]["conversion"]
    assert conv["estimate"] == pytest.approx(pt - ph)
    assert conv["low"] == pytest.approx(pt - ph - 1.959964 * se, abs=1e-6)
    rpr = out["uplift"]["revenue_per_recipient_minor"]
    assert rpr["estimate"] == pytest.approx(mean(treat) - mean(hold))
    from scipy import stats

    a, b = var(treat) / len(treat), var(hold) / len(hold)
    dof = (a + b) ** 2 / (a**2 / (len(treat) - 1) + b**2 / (len(hold) - 1))
    half = stats.t.ppf(0.975, dof) * math.sqrt(a + b)
    assert rpr["low"] == pytest.approx(mean(treat) - mean(hold) - half)
    assert rpr["high"] == pytest.approx(mean(treat) - mean(hold) + half)
    # Per variant, and B against A.
    va, vb = out["variants"]
    a_rev = [revenue[c] for c, arm in arms.items() if arm == "A"]
    b_rev = [revenue[c] for c, arm in arms.items() if arm == "B"]
    assert (va["recipients"], vb["recipients"]) == (len(a_rev), len(b_rev))
    assert vb["against_first"]["revenue_per_recipient_minor"]["estimate"] == pytest.approx(
        mean(b_rev) - mean(a_rev)
    )
    assert va["against_first"] is None


# -- API ------------------------------------------------------------------------------------


def test_api_crud_schedule_preview_results_and_invalid_templates(
    client: TestClient, engine: Engine
) -> None:
    store = new_store(engine, timezone="UTC")
    admin = key_headers(engine, store, Scope.admin)
    read = key_headers(engine, store, Scope.read)
    add_customer(engine, store, "ZH1", first_name="明", last_name="王", locale="zh-CN")
    body = {"key": "news", "name": "Newsletter", "trigger": "newsletter", "variants": variants()}

    bad = {**body, "variants": [{**variants()[0], "body": {"en": "ok", "zh": "{{ customer.nme "}}]}
    r = client.post("/v1/campaigns", json=bad, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "variants.A.body.zh"
    bad = {**body, "variants": [{**variants()[0], "subject": {"en": "{{ secret }}"}}]}
    r = client.post("/v1/campaigns", json=bad, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "variants.A.subject.en"
    assert "secret" in r.json()["errors"][0]["message"]
    bad = {**body, "variants": [{**variants()[0], "body": {"en": "{{ customer.nope }}"}}]}
    r = client.post("/v1/campaigns", json=bad, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "variants.A.body.en"
    r = client.post("/v1/campaigns", json={**body, "segment": "missing"}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "segment"
    assert client.get("/v1/campaigns", headers=admin).json()["items"] == []  # nothing saved

    assert client.post("/v1/campaigns", json=body, headers=read).status_code == 403
    r = client.post("/v1/campaigns", json=body, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "draft"
    assert client.post("/v1/campaigns", json=body, headers=admin).status_code == 409

    r = client.post("/v1/campaigns/news/preview", json={"customer": "ZH1"}, headers=read)
    assert r.status_code == 200, r.text
    assert r.json()["lang"] == "zh" and "王明，您好" in r.json()["html"]
    r = client.post(
        "/v1/campaigns/news/preview",
        json={"customer": "ZH1", "lang": "en", "variant": "B"},
        headers=read,
    )
    assert r.json()["subject"] == "20% off for you" and "Hello 明" in r.json()["text"]
    r = client.post("/v1/campaigns/news/test", json={"address": "me@example.com"}, headers=admin)
    assert r.status_code == 202, r.text

    changed = {**body, "name": "Newsletter (May)"}
    assert client.put("/v1/campaigns/news", json=changed, headers=admin).json()["name"] == (
        "Newsletter (May)"
    )
    at = (NOW + timedelta(days=1)).isoformat()
    r = client.post("/v1/campaigns/news/schedule", json={"scheduled_at": at}, headers=admin)
    assert r.json()["status"] == "scheduled"
    assert client.put("/v1/campaigns/news", json=changed, headers=admin).status_code == 409
    r = client.get("/v1/campaigns/news/results", headers=read)
    assert r.status_code == 200 and r.json()["recipients"]["queued"] == 0
    assert client.post("/v1/campaigns/news/cancel", headers=admin).json()["status"] == "cancelled"
    assert client.delete("/v1/campaigns/news", headers=admin).status_code == 409
    assert client.get("/v1/campaigns/nope", headers=read).status_code == 404

    r = client.put(
        "/v1/campaign-settings",
        json={"cap_messages": 2, "cap_days": 7, "quiet_start": "25:00", "quiet_end": "08:00"},
        headers=admin,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.quiet_start"
    r = client.put(
        "/v1/campaign-settings",
        json={"cap_messages": 2, "cap_days": 7, "quiet_start": "22:00", "quiet_end": "08:00"},
        headers=admin,
    )
    assert r.status_code == 200
    assert client.get("/v1/campaign-settings", headers=read).json()["cap_messages"] == 2


# -- CLI ------------------------------------------------------------------------------------


def test_cli_create_schedule_run_results(db_cli: CliRunner, engine: Engine, tmp_path: Path) -> None:
    store = new_store(engine, timezone="UTC")
    for n in range(6):
        add_customer(engine, store, f"K{n}", first_name=f"K{n}")
    spec = tmp_path / "c.yaml"
    spec.write_text(
        "key: july\nname: July news\nholdout_percent: 0\nvariants:\n"
        "  - key: A\n    subject: {en: 'Hi {{ customer.first_name }}'}\n"
        "    body: {en: '<p>News</p>'}\n",
        encoding="utf-8",
    )
    r = db_cli.invoke(cli_app, ["campaigns", "create", "-s", store.slug, str(spec)])
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "key": "x",
                "name": "x",
                "variants": [{"key": "A", "subject": {"en": "{% for %}"}, "body": {"en": "b"}}],
            }
        )
    )
    r = db_cli.invoke(cli_app, ["campaigns", "create", "-s", store.slug, str(bad)])
    assert r.exit_code == 1 and "variants.A.subject.en" in r.output
    r = db_cli.invoke(cli_app, ["campaigns", "schedule", "-s", store.slug, "july"])
    assert r.exit_code == 0 and "scheduled" in r.output
    r = db_cli.invoke(cli_app, ["campaigns", "run-due", "-s", store.slug])
    assert r.exit_code == 0 and "queued 6" in r.output, r.output
    r = db_cli.invoke(cli_app, ["campaigns", "list", "-s", store.slug])
    assert "july" in r.output and "sending" in r.output
    r = db_cli.invoke(cli_app, ["campaigns", "results", "-s", store.slug, "july", "--json"])
    assert json.loads(r.output)["recipients"]["queued"] == 6
    r = db_cli.invoke(cli_app, ["campaigns", "show", "-s", store.slug, "july"])
    assert json.loads(r.output)["variants"][0]["key"] == "A"
    with unit_of_work(engine) as session:
        n = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.store_id == store.id, OutboxMessage.status == MessageStatus.queued)
        )
    assert n == 6


def test_tier_downgrade_warning_before_the_review(engine: Engine) -> None:
    from patron.loyalty.models import LoyaltyMember
    from patron.loyalty.program import load_yaml
    from patron.loyalty.programs import programs

    store = new_store(engine, timezone="UTC")
    example = Path(__file__).parents[2] / "src/patron/loyalty/examples/program.yaml"
    with unit_of_work(engine) as session:
        programs.apply(
            session, session.merge(store), load_yaml(example.read_text("utf-8")), source="cli"
        )
    silver = add_customer(engine, store, "S", first_name="Si", locale="zh-CN")
    later = add_customer(engine, store, "L")
    base = add_customer(engine, store, "M")
    with unit_of_work(engine) as session:
        for c, tier, days in ((silver, "silver", 5), (later, "silver", 40), (base, "member", 5)):
            session.add(
                LoyaltyMember(
                    store_id=store.id,
                    customer_id=c.id,
                    tier=tier,
                    tier_since=NOW - timedelta(days=300),
                    review_at=NOW + timedelta(days=days),
                    check_at=NOW + timedelta(days=days),
                    created_at=NOW - timedelta(days=300),
                )
            )
    body = {
        "key": "keep",
        "name": "Keep your tier",
        "kind": "triggered",
        "trigger": "tier_downgrade_warning",
        "trigger_params": {"days_before": 14},
        "variants": [
            {
                "key": "A",
                "subject": {"en": "Keep {{ customer.tier }}", "zh": "保持{{ customer.tier }}"},
                "body": {"en": "{{ occasion.missing }} to go", "zh": "还差 {{ occasion.missing }}"},
            }
        ],
    }
    with unit_of_work(engine) as session:
        s = session.merge(store)
        campaign_service.create(session, s, CampaignIn.model_validate(body), now=NOW)
        campaign_service.schedule(session, s, "keep", now=NOW)
    noon = NOW.replace(hour=12)
    assert run(engine, store, noon).queued == 1  # silver, reviewed in 5 days, 0 of 800
    assert run(engine, store, noon + timedelta(hours=2)).queued == 0
    [msg] = messages(engine, store)
    assert msg.customer_id == silver.id
    assert msg.subject == "保持银卡" and "还差 800" in msg.body_text


def test_post_purchase_survey_delegates_to_the_invitations(engine: Engine) -> None:
    from tests.feedback.test_surveys_api import create_survey, invite

    store = new_store(engine, timezone="UTC")
    add_customer(engine, store, "A")
    create_survey(engine, store, "s", recontact_days=0)
    invite(engine, store, "s", "A", now=NOW)
    triggered(engine, store, "survey", "post_purchase_survey")
    first = run(engine, store, NOW + timedelta(minutes=1))
    assert first.surveys == 1
    assert run(engine, store, NOW + timedelta(minutes=2)).surveys == 0
    assert [m.kind for m in messages(engine, store, "survey-invitation:")] == ["survey_invitation"]


def test_cancel_withdraws_queued_messages_and_sms_goes_to_the_phone(engine: Engine) -> None:
    store = new_store(engine, timezone="UTC")
    c = add_customer(engine, store, "P", consent=False, phone="+86 138 0000 0000")
    with unit_of_work(engine) as session:
        consents.grant_from_link(
            session, session.merge(store), session.merge(c), Channel.sms, proven=True
        )
    body = {
        "key": "sms",
        "name": "SMS",
        "channel": "sms",
        "variants": [
            {"key": "A", "subject": {"en": "Hi"}, "body": {"en": "<b>{{ store.name }}</b>"}}
        ],
    }
    with unit_of_work(engine) as session:
        campaign_service.create(session, session.merge(store), CampaignIn.model_validate(body))
    noon = NOW.replace(hour=12)
    schedule(engine, store, "sms", noon)
    assert run(engine, store, noon).queued == 1
    [msg] = messages(engine, store)
    # Text channels are not HTML-escaped or wrapped; the address is the normalised phone.
    assert (msg.channel, msg.recipient, msg.body_text) == (
        Channel.sms,
        "+8613800000000",
        f"<b>{store.name}</b>",
    )
    with unit_of_work(engine) as session:
        campaign_service.cancel(session, session.merge(store), "sms")
    [msg] = messages(engine, store)
    assert msg.status is MessageStatus.suppressed


def test_two_runs_at_once_send_each_recipient_once(engine: Engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = new_store(engine, timezone="UTC")
    for n in range(40):
        add_customer(engine, store, f"R{n}")
    create(engine, store, key="race", holdout_percent=0, variants=variants(False))
    noon = NOW.replace(hour=12)
    schedule(engine, store, "race", noon)
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: run(engine, store, noon), range(2)))
    assert sorted(r.queued for r in runs) == [0, 40]
    assert len(messages(engine, store)) == 40
    assert len(recipients(engine, store, "race")) == 40


def test_a_campaign_that_cannot_run_is_paused_without_stopping_the_others(
    engine: Engine,
) -> None:
    store = new_store(engine, timezone="UTC")
    add_customer(engine, store, "A")
    create(engine, store, key="broken", holdout_percent=0, variants=variants(False))
    create(engine, store, key="fine", holdout_percent=0, variants=variants(False))
    noon = NOW.replace(hour=12)
    schedule(engine, store, "broken", noon)
    schedule(engine, store, "fine", noon)
    with unit_of_work(engine) as session:  # stored before a change of the segment rules
        c = campaign_service.get(session, session.merge(store), "broken")
        c.segment_definition = {"all": [{"field": "no_such_field", "op": "eq", "value": 1}]}
    out = run(engine, store, noon)
    assert out.queued == 1
    with unit_of_work(engine) as session:
        s = session.merge(store)
        assert campaign_service.get(session, s, "broken").status is CampaignStatus.paused
        assert campaign_service.get(session, s, "fine").status is CampaignStatus.sending
    assert recipients(engine, store, "broken") == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"key": "a b"}, "body.key"),
        ({"holdout_percent": 80}, "body.holdout_percent"),
        ({"variants": []}, "body.variants"),
        ({"variants": [{"key": "A"}, {"key": "A"}]}, "body.variants"),
        ({"kind": "triggered"}, "body.trigger"),
        ({"trigger": "birthday"}, "body.trigger"),
        (
            {"kind": "triggered", "trigger": "win_back", "trigger_params": {"every_days": "x"}},
            "body.trigger_params.every_days",
        ),
        (
            {"kind": "triggered", "trigger": "birthday", "trigger_params": {"x": 1}},
            "body.trigger_params",
        ),
        (
            {"segment_definition": {"all": [{"field": "nope", "op": "eq", "value": 1}]}},
            "segment_definition.all[0].field",
        ),
        ({"segment": "s", "segment_definition": {"all": []}}, "body.segment"),
        ({"scheduled_at": "2026-05-01T10:00:00"}, "body.scheduled_at"),
        (
            {"variants": [{"key": "A", "subject": {"fr": "x"}, "body": {"en": "x"}}]},
            "body.variants.0.subject.fr.[key]",
        ),
        (
            {
                "variants": [
                    {"key": "A", "subject": {"en": "{{ customer.__class__ }}"}, "body": {"en": "x"}}
                ]
            },
            "variants.A.subject.en",
        ),
    ],
)
def test_bad_campaigns_are_422_naming_the_field(
    client: TestClient, engine: Engine, change: dict[str, Any], field: str
) -> None:
    store = new_store(engine)
    admin = key_headers(engine, store, Scope.admin)
    body = {"key": "k", "name": "n", "variants": variants(False), **change}
    r = client.post("/v1/campaigns", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field, r.json()
