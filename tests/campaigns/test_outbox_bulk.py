"""Queueing many messages at once (``outbox.enqueue_many``) and deciding consent for many
customers at once (``consents.may_contact_many``), against their one-at-a-time forms."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from patron.campaigns import outbox as outbox_module
from patron.campaigns import tracking
from patron.campaigns.consent import consents
from patron.campaigns.models import OutboxMessage, SuppressionReason
from patron.campaigns.outbox import Item, Rendered, outbox
from patron.customers.models import Channel, Customer
from patron.db import unit_of_work
from patron.kit.clock import utcnow
from patron.stores.models import Store
from tests.conftest import new_store

BASE = "http://patron.test"


def people(engine: Engine, store: Store, n: int) -> list[Customer]:
    with unit_of_work(engine) as session:
        rows = [
            Customer(store_id=store.id, external_id=f"p{i}", email=f"p{i}@example.com")
            for i in range(n)
        ]
        session.add_all(rows)
        session.flush()
        return rows


def item(c: Customer, key: str, *, n: int | None = None) -> Item:
    """A mail linking to a page of its own (``/p/<n>``) and with an unsubscribe link."""
    page = f"https://shop.example/p/{c.id if n is None else n}"
    html = (
        f'<html><body><a href="{page}">Yours</a> <a href="https://shop.example/all">All</a>'
        f' <a href="{BASE}/u/x/1.email.sig">Unsubscribe</a></body></html>'
    )
    headers = {"List-Unsubscribe": f"<{BASE}/u/x/1.email.sig>"}
    return Item(c.email or "", key, Rendered("Hi", f"See {page}", html), "test", c.id, headers)


def enqueue(engine: Engine, store: Store, items: list[Item], **kw: Any) -> list[tuple[int, bool]]:
    with unit_of_work(engine) as session:
        out = outbox.enqueue_many(session, session.merge(store), items, base_url=BASE, **kw)
        return [(q.id, q.new) for q in out]


def count(engine: Engine, store: Store) -> int:
    with unit_of_work(engine) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.store_id == store.id)
            )
            or 0
        )


@pytest.mark.parametrize("chunk", [1000, 2])
def test_enqueue_many_queues_each_key_once_and_says_which_are_new(
    engine: Engine, store: Store, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(outbox_module, "CHUNK", chunk)  # 2: several statements per call
    cs = people(engine, store, 6)
    first = enqueue(engine, store, [item(c, f"k{i}") for i, c in enumerate(cs[:3])])
    assert [new for _, new in first] == [True, True, True]
    assert len({i for i, _ in first}) == 3

    # Mixed: k1, k2 exist, k3..k5 are new; k5 twice in one call is queued once.
    items = [item(c, f"k{i}") for i, c in enumerate(cs) if i >= 1] + [item(cs[5], "k5", n=99)]
    second = enqueue(engine, store, items)
    assert [i for i, _ in second[:2]] == [i for i, _ in first[1:]]  # the existing ones
    assert [new for _, new in second] == [False, False, True, True, True, False]
    assert second[-1][0] == second[-2][0]
    assert count(engine, store) == 6

    # Running it all again changes nothing.
    again = enqueue(engine, store, [item(c, f"k{i}") for i, c in enumerate(cs)])
    assert [new for _, new in again] == [False] * 6
    assert [i for i, _ in again] == [i for i, _ in first] + [i for i, _ in second[2:5]]
    assert count(engine, store) == 6

    # The one-at-a-time form agrees with what the bulk form queued.
    with unit_of_work(engine) as session:
        one = outbox.enqueue(
            session,
            session.merge(store),
            customer=None,
            recipient="p0@example.com",
            kind="test",
            key="k0",
            mail=Rendered("x", "y"),
        )
    assert one == (first[0][0], False)


def test_enqueued_links_are_tracked_per_message_and_redirect(
    engine: Engine, store: Store, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "CHUNK", 3)
    cs = people(engine, store, 5)
    now = utcnow()
    later = now + timedelta(hours=9)
    enqueue(engine, store, [item(cs[0], "old")])  # an existing key in the first chunk
    queued = enqueue(
        engine,
        store,
        [item(c, "old" if i == 0 else f"m{i}") for i, c in enumerate(cs)],
        now=now,
        not_before=later,
    )
    with unit_of_work(engine) as session:
        rows = {r.id: r for r in session.scalars(select(OutboxMessage))}
    tokens: dict[int, list[str]] = {}
    for (msg_id, new), c in zip(queued, cs, strict=True):
        row = rows[msg_id]
        assert row.customer_id == c.id and row.body_html is not None
        assert row.links == [f"https://shop.example/p/{c.id}", "https://shop.example/all"]
        hrefs = re.findall(r'href="([^"]+)"', row.body_html)
        assert hrefs[2] == f"{BASE}/u/x/1.email.sig"  # the unsubscribe link is not tracked
        tokens[msg_id] = [h.removeprefix(f"{BASE}/t/c/") for h in hrefs[:2]]
        assert all(t.startswith(f"{msg_id}.") for t in tokens[msg_id])
        assert f"/t/o/{tracking.open_token(store, msg_id)}.gif" in row.body_html
        if new:
            assert row.next_attempt_at == later  # quiet hours: not before
    for msg_id, (mine, _) in tokens.items():
        res = client.get(f"/t/c/{mine}", follow_redirects=False)
        assert res.status_code == 302
        assert res.headers["location"] == rows[msg_id].links[0]  # type: ignore[index]
    # A token signed for one message does not open another's link.
    a, b = list(tokens)[:2]
    forged = tokens[a][0].replace(f"{a}.", f"{b}.", 1)
    assert client.get(f"/t/c/{forged}", follow_redirects=False).status_code == 404


def test_enqueue_many_on_other_channels_and_untracked(engine: Engine, store: Store) -> None:
    cs = people(engine, store, 2)
    sms = Item("+86 138 0000 0001", "s1", Rendered("", "Sale today"), "test", cs[0].id)
    ((msg_id, new),) = enqueue(engine, store, [sms], channel=Channel.sms)
    plain = enqueue(engine, store, [item(cs[1], "u1")], track=False)
    with unit_of_work(engine) as session:
        row = session.get(OutboxMessage, msg_id)
        assert row is not None and new
        assert (row.recipient, row.body_html, row.links, row.headers) == (
            "+8613800000001",
            None,
            None,
            {},
        )
        untracked = session.get(OutboxMessage, plain[0][0])
        assert untracked is not None and untracked.links is None
        assert untracked.body_html is not None and "/t/c/" not in untracked.body_html


def test_may_contact_many_gives_the_verdicts_of_may_contact(engine: Engine) -> None:
    store, other = new_store(engine), new_store(engine)
    now = utcnow()
    with unit_of_work(engine) as session:
        s, o = session.merge(store), session.merge(other)

        def add(
            ext: str,
            granted: tuple[Channel, ...] = (),
            proven: bool = True,
            shop: Store | None = None,
            **fields: str,
        ) -> Customer:
            at = shop or s
            row = Customer(store_id=at.id, external_id=ext, **fields)
            session.add(row)
            session.flush()
            for channel in granted:
                if proven and channel is Channel.email:
                    consents.grant_from_link(session, at, row, channel, proven=True, now=now)
                else:
                    consents.record(session, at, row, channel, True, "test", now)
            return row

        everyone = [
            add(
                "ok",
                (Channel.email, Channel.sms, Channel.push),
                email="ok@example.com",
                phone="+86 1",
            ),
            add("none", email="none@example.com", phone="+86 2"),
            add("pending", (Channel.email,), proven=False, email="pending@example.com"),
            add("no-address", (Channel.email, Channel.sms)),
            add("suppressed", (Channel.email, Channel.sms), email="Sup@Example.com", phone="+86 3"),
            add("moved", (Channel.email,), email="old@example.com"),
            add("withdrawn", (Channel.email, Channel.wechat), email="w@example.com"),
            add("elsewhere", (Channel.email,), shop=o, email="e@example.com"),
        ]
        by_ext = {c.external_id: c for c in everyone}
        consents.suppress(
            session, s, Channel.email, "sup@example.com", SuppressionReason.manual, "t", now
        )
        consents.suppress(session, s, Channel.sms, "+86 3", SuppressionReason.manual, "t", now)
        by_ext["moved"].email = "new@example.com"  # the new address is not confirmed
        consents.withdraw(session, s, by_ext["withdrawn"], Channel.email, "test", now)
        session.flush()
        ids = [c.id for c in everyone] + [max(c.id for c in everyone) + 1000]  # + unknown
        verdicts: dict[Channel, set[int]] = {}
        for channel in Channel:
            got = consents.may_contact_many(session, s, ids, channel)
            want = {i for i in ids if consents.may_contact(session, s, i, channel)}
            assert got == want, channel
            verdicts[channel] = got
    assert verdicts[Channel.email] == {by_ext["ok"].id}
    assert verdicts[Channel.sms] == {by_ext["ok"].id}
    assert verdicts[Channel.push] == {by_ext["ok"].id}
    assert verdicts[Channel.wechat] == {by_ext["withdrawn"].id}
