"""The signed webhook channel (SMS, WeChat, push) against a real local HTTP server that
checks every signature, counts deliveries by Idempotency-Key, and answers as scripted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from patron.campaigns import webhook
from patron.campaigns.consent import consents
from patron.campaigns.models import MessageStatus, OutboxMessage
from patron.campaigns.outbox import Rendered, outbox
from patron.config import Settings
from patron.customers.models import Channel, Customer
from patron.db import unit_of_work
from patron.kit.clock import utcnow
from patron.stores.models import Store
from tests.campaigns.test_mailer import crash_at_third


@dataclass
class Gateway:
    """What the provider's gateway saw. ``script``: statuses to answer in turn (then 200);
    ``delay``: seconds to wait before answering."""

    secret: str = ""
    script: list[int] = field(default_factory=list)
    delay: float = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_key(self, key: str) -> int:
        return self.keys.count(key)


@pytest.fixture
def gateway() -> Iterator[tuple[Gateway, str]]:
    gw = Gateway()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if gw.delay:
                time.sleep(gw.delay)
            if not webhook.verify(gw.secret, body, self.headers.get("Patron-Signature", "")):
                with gw.lock:
                    gw.bad_signatures += 1
                self.send_response(401)
                self.end_headers()
                return
            with gw.lock:
                gw.keys.append(self.headers["Idempotency-Key"])
                status = gw.script.pop(0) if gw.script else 200
                if 200 <= status < 300:
                    gw.received.append(json.loads(body))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield gw, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


SETTINGS = Settings(mail_retry_seconds=60, mail_max_attempts=3, webhook_timeout_seconds=0.5)


def endpoint(engine: Engine, store: Store, gw: Gateway, url: str, channel: Channel) -> None:
    with unit_of_work(engine) as session:
        _, secret, created = webhook.put_endpoint(session, session.merge(store), channel, url, True)
    assert created and secret is not None
    gw.secret = secret


def customer(engine: Engine, store: Store, ext: str, *, consent: bool = True) -> Customer:
    with unit_of_work(engine) as session:
        s = session.merge(store)
        row = Customer(store_id=s.id, external_id=ext, phone="+86 138-0000-0000")
        session.add(row)
        session.flush()
        if consent:
            for channel in (Channel.sms, Channel.wechat):
                consents.record(session, s, row, channel, True, "test")
        return row


def queue(
    engine: Engine, store: Store, c: Customer, key: str, now: datetime, channel: Channel
) -> int:
    with unit_of_work(engine) as session:
        s = session.merge(store)
        row = session.merge(c)
        address = row.phone if channel is Channel.sms else f"customer:{row.id}"
        new_id, _ = outbox.enqueue(
            session,
            s,
            customer=row,
            recipient=address or "",
            kind="test",
            key=key,
            mail=Rendered(subject="", text=f"Hello {key} 你好"),
            channel=channel,
            now=now,
        )
        return new_id


def statuses(engine: Engine, store: Store) -> list[MessageStatus]:
    with unit_of_work(engine) as session:
        return list(
            session.scalars(
                select(OutboxMessage.status)
                .where(OutboxMessage.store_id == store.id)
                .order_by(OutboxMessage.id)
            )
        )


def run(engine: Engine, store: Store, now: datetime, **kw: Any) -> webhook.DeliveryRun:
    return webhook.deliver(engine, store.slug, now=now, settings=SETTINGS, **kw)


def test_a_message_is_posted_signed_with_its_idempotency_key(
    engine: Engine, store: Store, gateway: tuple[Gateway, str]
) -> None:
    gw, url = gateway
    now = utcnow()
    endpoint(engine, store, gw, url, Channel.sms)
    c = customer(engine, store, "Sms1")
    msg_id = queue(engine, store, c, "k1", now, Channel.sms)
    queue(engine, store, c, "w1", now, Channel.wechat)  # no wechat endpoint: waits

    out = run(engine, store, now)
    assert (out.claimed, out.sent) == (1, 1)
    assert gw.bad_signatures == 0
    [got] = gw.received
    with unit_of_work(engine) as session:
        row = session.get(OutboxMessage, msg_id)
        assert row is not None
        assert got == {
            "id": msg_id,
            "message_id": row.message_id,
            "channel": "sms",
            "to": "+8613800000000",
            "text": "Hello k1 你好",
            "customer_external_id": "Sms1",
            "sent_at": now.isoformat(),
        }
        assert gw.keys == [row.message_id]
    assert statuses(engine, store) == [MessageStatus.sent, MessageStatus.queued]
    assert run(engine, store, now + timedelta(hours=1)).claimed == 0


def test_a_server_error_is_retried_with_the_same_key_then_sent(
    engine: Engine, store: Store, gateway: tuple[Gateway, str]
) -> None:
    gw, url = gateway
    now = utcnow()
    endpoint(engine, store, gw, url, Channel.sms)
    queue(engine, store, customer(engine, store, "R"), "k1", now, Channel.sms)
    gw.script = [500]

    out = run(engine, store, now)
    assert (out.sent, out.retried) == (0, 1)
    with unit_of_work(engine) as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.store_id == store.id)).one()
        assert row.status is MessageStatus.queued and row.attempts == 1
        assert row.next_attempt_at == now + timedelta(seconds=60)
        assert row.last_error is not None and row.last_error.startswith("HTTP 500")
    assert run(engine, store, now + timedelta(seconds=30)).claimed == 0  # backoff
    assert run(engine, store, now + timedelta(seconds=60)).sent == 1
    assert len(gw.keys) == 2 and gw.keys[0] == gw.keys[1]  # one key for both attempts
    assert len(gw.received) == 1
    assert statuses(engine, store) == [MessageStatus.sent]


def test_a_client_error_fails_and_429_and_timeouts_retry(
    engine: Engine, store: Store, gateway: tuple[Gateway, str]
) -> None:
    gw, url = gateway
    now = utcnow()
    endpoint(engine, store, gw, url, Channel.sms)
    c = customer(engine, store, "C")
    queue(engine, store, c, "k1", now, Channel.sms)
    queue(engine, store, c, "k2", now, Channel.sms)
    gw.script = [400, 429]
    out = run(engine, store, now)
    assert (out.failed, out.retried) == (1, 1)
    assert statuses(engine, store) == [MessageStatus.failed, MessageStatus.queued]

    gw.delay = 1.5  # longer than the client's timeout (0.5 s)
    out = run(engine, store, now + timedelta(minutes=1))
    assert (out.sent, out.retried) == (0, 1)
    with unit_of_work(engine) as session:
        row = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.store_id == store.id, OutboxMessage.key == "k2"
            )
        ).one()
        assert row.last_error is not None and "Timeout" in row.last_error
    gw.delay = 0
    out = run(engine, store, now + timedelta(minutes=3))  # attempt 3 of 3
    assert out.sent == 1
    assert statuses(engine, store) == [MessageStatus.failed, MessageStatus.sent]


def test_out_of_attempts_fails(engine: Engine, store: Store, gateway: tuple[Gateway, str]) -> None:
    gw, url = gateway
    now = utcnow()
    endpoint(engine, store, gw, url, Channel.sms)
    queue(engine, store, customer(engine, store, "Down"), "k1", now, Channel.sms)
    gw.script = [503, 502, 500]
    outcomes = [run(engine, store, now + timedelta(hours=h)) for h in range(3)]
    assert [(o.retried, o.failed) for o in outcomes] == [(1, 0), (1, 0), (0, 1)]
    assert statuses(engine, store) == [MessageStatus.failed]


def test_a_disabled_endpoint_holds_and_no_consent_suppresses(
    client: TestClient,
    engine: Engine,
    store: Store,
    admin: dict[str, str],
    gateway: tuple[Gateway, str],
) -> None:
    gw, url = gateway
    now = utcnow()
    res = client.put("/v1/channels/sms", json={"url": url, "enabled": False}, headers=admin)
    assert res.status_code == 201
    gw.secret = res.json()["secret"]
    queue(engine, store, customer(engine, store, "Yes"), "k1", now, Channel.sms)
    queue(engine, store, customer(engine, store, "No", consent=False), "k2", now, Channel.sms)
    assert run(engine, store, now).claimed == 0  # disabled: nothing claimed, nothing lost
    res = client.put("/v1/channels/sms", json={"url": url, "enabled": True}, headers=admin)
    assert res.status_code == 200 and res.json()["secret"] is None
    out = run(engine, store, now)
    assert (out.sent, out.suppressed) == (1, 1)
    assert [m["customer_external_id"] for m in gw.received] == ["Yes"]
    assert statuses(engine, store) == [MessageStatus.sent, MessageStatus.suppressed]


@pytest.mark.parametrize("where", ["before_send", "after_accept"])
def test_no_double_send_after_a_crash_mid_batch(
    engine: Engine,
    store: Store,
    gateway: tuple[Gateway, str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    gw, url = gateway
    now = utcnow()
    endpoint(engine, store, gw, url, Channel.wechat)
    people = [customer(engine, store, f"P{i}") for i in range(5)]
    for i, p in enumerate(people):
        queue(engine, store, p, f"k{i}", now, Channel.wechat)
    crash_at_third(monkeypatch, webhook, where, lambda **kw: run(engine, store, now, **kw))
    assert len(gw.keys) == (2 if where == "before_send" else 3)
    assert statuses(engine, store) == [MessageStatus.sent] * 2 + [MessageStatus.sending] * 3
    assert run(engine, store, now + timedelta(minutes=5)).claimed == 0  # leased
    out = run(engine, store, now + timedelta(minutes=11))
    assert (out.claimed, out.sent) == (3, 3)
    assert statuses(engine, store) == [MessageStatus.sent] * 5
    counts = sorted(gw.by_key(k) for k in set(gw.keys))
    assert len(set(gw.keys)) == 5
    # after_accept: the one accepted before the crash arrives twice, with the same key
    assert counts == ([1] * 5 if where == "before_send" else [1, 1, 1, 1, 2])


def test_channel_api(client: TestClient, store: Store, admin: dict[str, str]) -> None:
    assert client.get("/v1/channels/push", headers=admin).status_code == 404
    res = client.put("/v1/channels/push", json={"url": "https://push.example/hook"}, headers=admin)
    assert res.status_code == 201
    secret = res.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    got = client.get("/v1/channels/push", headers=admin).json()
    assert got["url"] == "https://push.example/hook" and got["enabled"] is True
    assert got["secret"] is None  # shown once
    res = client.put(
        "/v1/channels/push",
        json={"url": "https://push.example/v2", "rotate_secret": True},
        headers=admin,
    )
    assert res.status_code == 200 and res.json()["secret"] not in (None, secret)
    for channel, body in (
        ("email", {"url": "https://x.example/"}),
        ("sms", {"url": "ftp://x.example/"}),
        ("sms", {"url": "https://x.example/", "extra": 1}),
        ("fax", {"url": "https://x.example/"}),
    ):
        res = client.put(f"/v1/channels/{channel}", json=body, headers=admin)
        assert res.status_code == 422, (channel, res.text)
    assert client.get("/v1/channels/sms", headers=admin).status_code == 404  # nothing made


def test_verify_refuses_tampering_and_replays() -> None:
    body = b'{"id":1}'
    now = int(time.time())
    header = webhook.signature("whsec_x", body, now)
    assert webhook.verify("whsec_x", body, header)
    assert not webhook.verify("whsec_y", body, header)
    assert not webhook.verify("whsec_x", b'{"id":2}', header)
    assert not webhook.verify("whsec_x", body, webhook.signature("whsec_x", body, now - 600))
    assert not webhook.verify("whsec_x", body, "t=abc,v1=00")
    assert not webhook.verify("whsec_x", body, "")
