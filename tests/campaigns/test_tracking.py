"""Opens and clicks: links rewritten when queued, signed tokens (no forging, no open
redirect), prefetches and proxies not counted, and the counts campaigns read."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from patron.campaigns import tracking
from patron.campaigns.consent import consents
from patron.campaigns.models import CampaignEvent, EventKind, MessageStatus, OutboxMessage
from patron.campaigns.outbox import Rendered, outbox
from patron.customers.models import Channel, Customer
from patron.db import unit_of_work
from patron.kit.clock import utcnow
from patron.stores.models import Store
from tests.conftest import new_store

BASE = "http://patron.test"
HTML = """<html><body>
<p><a href="https://shop.example/sale?a=1&amp;b=2">Sale</a>
<a class="x" href='http://shop.example/p/1'>Product</a>
<a href="mailto:help@shop.example">Mail us</a> <a href="/relative">Here</a>
<a href="{unsubscribe}">Unsubscribe</a></p>
</body></html>"""


def customer(engine: Engine, store: Store, ext: str) -> Customer:
    with unit_of_work(engine) as session:
        s = session.merge(store)
        row = Customer(store_id=s.id, external_id=ext, email=f"{ext.lower()}@example.com")
        session.add(row)
        session.flush()
        consents.grant_from_link(session, s, row, Channel.email, proven=True)
        return row


def queue(engine: Engine, store: Store, c: Customer, key: str, now: datetime) -> int:
    with unit_of_work(engine) as session:
        s = session.merge(store)
        row = session.merge(c)
        headers = consents.unsubscribe_headers(s, row, Channel.email, BASE)
        unsubscribe = headers["List-Unsubscribe"].strip("<>")
        new_id, _ = outbox.enqueue(
            session,
            s,
            customer=row,
            recipient=row.email or "",
            kind="test",
            key=key,
            mail=Rendered(
                "Hi", "Sale: https://shop.example/sale", HTML.format(unsubscribe=unsubscribe)
            ),
            headers=headers,
            now=now,
            base_url=BASE,
        )
        return new_id


def mark_sent(engine: Engine, msg_id: int, at: datetime) -> OutboxMessage:
    with unit_of_work(engine) as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == msg_id)
            .values(status=MessageStatus.sent, sent_at=at)
        )
        row = session.get(OutboxMessage, msg_id)
        assert row is not None
        return row


def events(engine: Engine, msg_id: int) -> list[CampaignEvent]:
    with unit_of_work(engine) as session:
        return list(
            session.scalars(
                select(CampaignEvent)
                .where(CampaignEvent.message_id == msg_id)
                .order_by(CampaignEvent.id)
            )
        )


def local(url: str) -> str:
    return url.removeprefix(BASE)


def test_links_are_rewritten_except_unsubscribe_and_non_http(engine: Engine, store: Store) -> None:
    now = utcnow()
    msg_id = queue(engine, store, customer(engine, store, "A"), "k1", now)
    with unit_of_work(engine) as session:
        row = session.get(OutboxMessage, msg_id)
        assert row is not None and row.body_html is not None
        html = row.body_html
        assert row.links == ["https://shop.example/sale?a=1&b=2", "http://shop.example/p/1"]
        assert row.body_text == "Sale: https://shop.example/sale"  # text is left alone
    hrefs = re.findall(r"""href=["']([^"']+)""", html)
    assert hrefs[0].startswith(f"{BASE}/t/c/{msg_id}.0.")
    assert hrefs[1].startswith(f"{BASE}/t/c/{msg_id}.1.")
    assert hrefs[2:4] == ["mailto:help@shop.example", "/relative"]
    assert hrefs[4].startswith(f"{BASE}/u/{store.slug}/")  # unsubscribe untouched
    assert "shop.example/sale" not in html
    pixel = re.findall(r'<img src="([^"]+)"', html)
    assert pixel == [f"{BASE}/t/o/{tracking.open_token(store, msg_id)}.gif"]
    assert html.index("<img") < html.index("</body>")


def test_a_click_redirects_only_to_the_stored_link(
    client: TestClient, engine: Engine, store: Store
) -> None:
    now = utcnow()
    msg_id = queue(engine, store, customer(engine, store, "B"), "k1", now)
    mark_sent(engine, msg_id, now - timedelta(minutes=5))
    link = f"/t/c/{tracking.click_token(store, msg_id, 0)}"
    res = client.get(link, follow_redirects=False, headers={"User-Agent": "Firefox"})
    assert res.status_code == 302
    assert res.headers["location"] == "https://shop.example/sale?a=1&b=2"
    # HEAD (a prefetcher) answers the same and records nothing
    assert client.head(link, follow_redirects=False).status_code == 302
    [event] = events(engine, msg_id)
    assert (event.kind, event.url, event.machine) == (
        EventKind.click,
        "https://shop.example/sale?a=1&b=2",
        False,
    )
    assert event.ua_hash is not None and "Firefox" not in event.ua_hash

    sig = tracking.click_token(store, msg_id, 0).rsplit(".", 1)[1]
    other = queue(engine, store, customer(engine, store, "C"), "k2", now)
    for forged in (
        f"{msg_id}.1.{sig}",  # another link with link 0's signature
        f"{other}.0.{sig}",  # another message
        f"{msg_id}.0.{'A' * 22}",
        tracking.click_token(store, msg_id, 7),  # validly signed, no such link
        "1.0.x",
    ):
        res = client.get(f"/t/c/{forged}", follow_redirects=False)
        assert res.status_code == 404, forged
        assert "evil" not in res.headers.get("location", "")
    res = client.get(
        f"/t/c/{tracking.click_token(store, msg_id, 1)}?url=https://evil.example",
        follow_redirects=False,
    )
    assert res.headers["location"] == "http://shop.example/p/1"  # the query changes nothing
    stranger = new_store(engine)  # signed with another store's secret: nothing
    res = client.get(f"/t/c/{tracking.click_token(stranger, msg_id, 0)}", follow_redirects=False)
    assert res.status_code == 404
    own = tracking.click_token(store, other, 0)  # the other message's own token works
    assert client.get(f"/t/c/{own}", follow_redirects=False).status_code == 302


def test_opens_count_once_per_message_and_proxies_right_after_sending_do_not(
    client: TestClient, engine: Engine, store: Store
) -> None:
    now = utcnow()
    msg_id = queue(engine, store, customer(engine, store, "D"), "campaign:9:1", now)
    mark_sent(engine, msg_id, utcnow())
    pixel = f"/t/o/{tracking.open_token(store, msg_id)}.gif"
    proxy = {"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"}
    res = client.get(pixel, headers=proxy)  # within 2 s of sending
    assert res.status_code == 200 and res.headers["content-type"] == "image/gif"
    assert res.content.startswith(b"GIF89a") and "no-store" in res.headers["cache-control"]
    assert client.head(pixel).status_code == 200  # not recorded
    with unit_of_work(engine) as session:
        assert tracking.counts_by_key_prefix(session, store.id, "campaign:9:")["opened"] == 0
    mark_sent(engine, msg_id, now - timedelta(hours=1))  # later: the same proxy counts
    for _ in range(3):
        assert client.get(pixel, headers=proxy).status_code == 200
    kinds = [(e.kind, e.machine) for e in events(engine, msg_id)]
    assert kinds == [(EventKind.open, True)] + [(EventKind.open, False)] * 3
    with unit_of_work(engine) as session:
        counts = tracking.counts_by_key_prefix(session, store.id, "campaign:9:")
    assert counts["opened"] == 1  # messages, not events
    assert client.get(f"/t/o/{msg_id}.{'A' * 22}.gif").status_code == 404


def test_counts_by_key_prefix(engine: Engine, store: Store) -> None:
    now = utcnow()
    past = now - timedelta(hours=1)
    people = [customer(engine, store, f"P{i}") for i in range(6)]
    ids = [queue(engine, store, p, f"campaign:1:{p.id}", now) for p in people]
    other = queue(engine, store, people[0], "campaign:10:x", now)  # not campaign 1
    like = queue(engine, store, people[0], "campaign_1_x", now)  # `_` is no wildcard
    with unit_of_work(engine) as session:
        for i in [*ids[:4], other, like]:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == i)
                .values(status=MessageStatus.sent, sent_at=past)
            )
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == ids[4]).values(status="failed")
        )
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == ids[5]).values(status="suppressed")
        )
        rows = {i: session.get(OutboxMessage, i) for i in [*ids, other]}

        def add(i: int, kind: EventKind, **kw: object) -> None:
            msg = rows[i]
            assert msg is not None
            tracking.add_event(session, msg, kind, now, **kw)  # type: ignore[arg-type]

        add(ids[0], EventKind.open)
        add(ids[0], EventKind.open)
        add(ids[0], EventKind.click, url="https://x")
        add(ids[1], EventKind.click, url="https://x")  # a click without the pixel: opened
        add(ids[2], EventKind.open, machine=True)  # a scanner: not opened
        add(ids[2], EventKind.bounce, permanent=False)  # soft: not bounced
        add(ids[3], EventKind.bounce, permanent=True)
        add(ids[3], EventKind.complaint)
        add(other, EventKind.open)
        counts = tracking.counts_by_key_prefix(session, store.id, "campaign:1:")
        assert counts == {
            "sent": 4,
            "delivered_failed": 1,
            "suppressed": 1,
            "opened": 2,
            "clicked": 2,
            "bounced": 1,
            "complained": 1,
        }
        assert tracking.counts_by_key_prefix(session, store.id, "campaign_")["sent"] == 1
        assert tracking.counts_by_key_prefix(session, store.id + 10**9, "campaign:1:") == {
            k: 0 for k in tracking.COUNT_KEYS
        }


def test_events_per_message_are_capped(engine: Engine, store: Store) -> None:
    now = utcnow()
    msg_id = queue(engine, store, customer(engine, store, "Cap"), "k1", now)
    with unit_of_work(engine) as session:
        msg = session.get(OutboxMessage, msg_id)
        assert msg is not None
        added = [tracking.add_event(session, msg, EventKind.open, now) for _ in range(105)]
    assert sum(e is not None for e in added) == tracking.MAX_EVENTS
    assert len(events(engine, msg_id)) == tracking.MAX_EVENTS
