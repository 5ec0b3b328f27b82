"""The mail outbox delivered over SMTP to a real local server (aiosmtpd): bilingual
survey invitations with their link and List-Unsubscribe, unsubscribe honoured between
queueing and sending, hard bounces suppressed, temporary failures retried, and no double
send after a crash mid-batch (but for the documented at-least-once window)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from patron.campaigns import mailer
from patron.campaigns.cli import campaigns_app
from patron.campaigns.consent import consents
from patron.campaigns.mailer import Claimed, deliver
from patron.campaigns.models import MessageStatus, OutboxMessage, Suppression
from patron.campaigns.outbox import outbox, render
from patron.config import Settings
from patron.customers.models import Channel, Customer
from patron.db import unit_of_work
from patron.feedback.service import invitations
from patron.kit.clock import utcnow
from patron.stores.models import Store
from tests.feedback.test_surveys_api import create_survey, invite

BASE = "http://patron.test"


@dataclass
class Mailbox:
    """An aiosmtpd handler: keeps what it accepts; 550 for ``reject``, 451 once for
    ``defer_once``."""

    reject: set[str] = field(default_factory=set)
    defer_once: set[str] = field(default_factory=set)
    received: list[EmailMessage] = field(default_factory=list)
    deferred: set[str] = field(default_factory=set)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.reject:
            return "550 5.1.1 No such user"
        if address in self.defer_once and address not in self.deferred:
            self.deferred.add(address)
            return "451 4.7.1 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.received.append(msg)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.received if m["To"] == address]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, Settings]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        mail_from="Shop <shop@example.com>",
        mail_retry_seconds=60,
        mail_max_attempts=3,
    )
    yield box, settings
    controller.stop()


def customer(
    engine: Engine, store: Store, ext: str, *, consent: bool = True, **fields: Any
) -> Customer:
    with unit_of_work(engine) as session:
        s = session.merge(store)
        fields.setdefault("email", f"{ext.lower()}@example.com")
        row = Customer(store_id=s.id, external_id=ext, **fields)
        session.add(row)
        session.flush()
        if consent:
            consents.grant_from_link(session, s, row, Channel.email, proven=True)
        return row


def queue(engine: Engine, store: Store, c: Customer, key: str, now: datetime) -> int:
    with unit_of_work(engine) as session:
        s = session.merge(store)
        mail = render(
            "survey_invitation",
            "en",
            store=s.name,
            greeting="Hello,",
            reminder=False,
            link=f"{BASE}/s/{key}",
            expires="2099-01-01",
            unsubscribe=f"{BASE}/u/x",
        )
        headers = consents.unsubscribe_headers(s, c, Channel.email, BASE)
        new_id, _ = outbox.enqueue(
            session,
            s,
            customer=session.merge(c),
            recipient=c.email or "",
            kind="test",
            key=key,
            mail=mail,
            headers=headers,
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


def run(store: Store, settings: Settings, engine: Engine, now: datetime, **kw: Any) -> Any:
    return deliver(engine, store.slug, now=now, settings=settings, **kw)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_survey_invitations_are_mailed_in_the_customers_language(
    engine: Engine, store: Store, smtp: tuple[Mailbox, Settings]
) -> None:
    box, settings = smtp
    now = utcnow()
    customer(engine, store, "A", first_name="Ann", locale="en-GB")
    customer(engine, store, "B", first_name="明", last_name="王", locale="zh-CN")
    customer(engine, store, "C", consent=False, locale="en")
    create_survey(engine, store, "s", recontact_days=0)
    links = {
        i.customer_external_id: i.link
        for i in invite(engine, store, "s", "A", "B", "C", now=now).invited
    }

    with unit_of_work(engine) as session:
        first = outbox.enqueue_survey_invitations(session, session.merge(store), now, base_url=BASE)
    assert (first.queued, first.no_consent) == (2, 1)
    with unit_of_work(engine) as session:  # queued and marked sent together: once
        again = outbox.enqueue_survey_invitations(session, session.merge(store), now, base_url=BASE)
        left = invitations.due(session, session.merge(store), now, base_url=BASE).items
    assert (again.queued, again.no_consent) == (0, 1)
    assert [i.customer_external_id for i in left] == ["C"]  # no consent: still due

    out = run(store, settings, engine, now)
    assert (out.sent, out.failed, out.suppressed) == (2, 0, 0)
    [a] = box.to("a@example.com")
    [b] = box.to("b@example.com")
    assert box.to("c@example.com") == []
    assert a["Subject"] == f"{store.name}: how did we do?"
    assert a["From"] == "Shop <shop@example.com>"
    a_text = a.get_body(("plain",))
    assert a_text is not None and "Hello Ann," in a_text.get_content()
    assert links["A"] in a_text.get_content()
    a_html = a.get_body(("html",))
    assert a_html is not None
    # The HTML's links are tracked (tests/campaigns/test_tracking.py); the text's are not.
    assert f"{BASE}/t/c/" in a_html.get_content() and links["A"] not in a_html.get_content()
    assert a["X-Patron-Message"] is not None
    assert b["Subject"] == f"{store.name}邀请您评价本次体验"
    b_text = b.get_body(("plain",))
    assert b_text is not None and "王明，您好" in b_text.get_content()
    assert links["B"] in b_text.get_content()
    for msg in (a, b):
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # The header may be folded (RFC 5322): compare it unfolded.
        assert msg["List-Unsubscribe"].strip().startswith(f"<{BASE}/u/{store.slug}/")
        assert msg["Message-ID"].endswith("@patron>")
    with unit_of_work(engine) as session:
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.store_id == store.id)
        ).all()
        assert {r.status for r in rows} == {MessageStatus.sent}
        assert {r.message_id for r in rows} == {a["Message-ID"], b["Message-ID"]}
        assert all(r.kind == "survey_invitation" and r.attempts == 1 for r in rows)
    assert run(store, settings, engine, now + timedelta(hours=1)).claimed == 0
    assert len(box.received) == 2


def test_deliver_works_when_called_from_a_running_event_loop(
    engine: Engine, store: Store, smtp: tuple[Mailbox, Settings]
) -> None:
    box, settings = smtp
    now = utcnow()
    queue(engine, store, customer(engine, store, "Loop"), "k1", now)

    async def caller() -> Any:
        return run(store, settings, engine, now)  # synchronous, inside a running loop

    with ThreadPoolExecutor(1) as pool:  # a thread of its own: this one may run a loop
        assert pool.submit(asyncio.run, caller()).result().sent == 1
    assert len(box.received) == 1


def test_an_unsubscribe_after_queueing_is_honoured(
    client: TestClient, engine: Engine, store: Store, smtp: tuple[Mailbox, Settings]
) -> None:
    box, settings = smtp
    now = utcnow()
    c = customer(engine, store, "U")
    queue(engine, store, c, "k1", now)
    with unit_of_work(engine) as session:
        headers = consents.unsubscribe_headers(session.merge(store), c, Channel.email, BASE)
    link = headers["List-Unsubscribe"].strip("<>")
    res = client.post(path_of(link), data={"List-Unsubscribe": "One-Click"})
    assert res.status_code == 200

    out = run(store, settings, engine, now)
    assert (out.claimed, out.sent, out.suppressed) == (1, 0, 1)
    assert box.received == []
    assert statuses(engine, store) == [MessageStatus.suppressed]


def test_a_hard_bounce_fails_and_suppresses_the_address(
    engine: Engine, store: Store, smtp: tuple[Mailbox, Settings]
) -> None:
    box, settings = smtp
    now = utcnow()
    gone = customer(engine, store, "Gone")
    ok = customer(engine, store, "Ok")
    box.reject.add("gone@example.com")
    queue(engine, store, gone, "k1", now)
    queue(engine, store, ok, "k2", now)
    queue(engine, store, gone, "k3", now)  # the same address, later in the batch

    out = run(store, settings, engine, now)
    assert (out.sent, out.failed, out.bounced, out.suppressed) == (1, 1, 1, 1)
    assert [m["To"] for m in box.received] == ["ok@example.com"]  # the next one still went
    assert statuses(engine, store) == [
        MessageStatus.failed,
        MessageStatus.sent,
        MessageStatus.suppressed,
    ]
    with unit_of_work(engine) as session:
        row = session.scalars(select(Suppression).where(Suppression.store_id == store.id)).one()
        assert (row.address, row.reason.value) == ("gone@example.com", "hard_bounce")
        assert row.note is not None and row.note.startswith("550")
        assert not consents.may_contact(session, session.merge(store), gone.id, Channel.email)


def test_a_temporary_failure_is_retried_later_and_sent_once(
    engine: Engine, store: Store, smtp: tuple[Mailbox, Settings]
) -> None:
    box, settings = smtp
    now = utcnow()
    c = customer(engine, store, "Later")
    box.defer_once.add("later@example.com")
    queue(engine, store, c, "k1", now)

    out = run(store, settings, engine, now)
    assert (out.sent, out.retried) == (0, 1)
    with unit_of_work(engine) as session:
        msg = session.scalars(select(OutboxMessage).where(OutboxMessage.store_id == store.id)).one()
        assert msg.status is MessageStatus.queued and msg.attempts == 1
        assert msg.next_attempt_at == now + timedelta(seconds=60)
        assert msg.last_error is not None and msg.last_error.startswith("451")
    assert run(store, settings, engine, now + timedelta(seconds=30)).claimed == 0  # backoff
    out = run(store, settings, engine, now + timedelta(seconds=60))
    assert (out.sent, out.retried) == (1, 0)
    assert len(box.to("later@example.com")) == 1
    assert run(store, settings, engine, now + timedelta(hours=1)).claimed == 0


def test_out_of_attempts_fails(
    engine: Engine, store: Store, smtp: tuple[Mailbox, Settings]
) -> None:
    _, settings = smtp
    now = utcnow()
    c = customer(engine, store, "Down")
    queue(engine, store, c, "k1", now)
    down = settings.model_copy(update={"smtp_port": free_port()})  # nobody listening
    outcomes = [run(store, down, engine, now + timedelta(hours=h)) for h in range(3)]
    assert [(o.retried, o.failed) for o in outcomes] == [(1, 0), (1, 0), (0, 1)]
    assert statuses(engine, store) == [MessageStatus.failed]


class Crash(BaseException):
    """Like a kill: nothing catches it."""


def crash_at_third(
    monkeypatch: pytest.MonkeyPatch, module: Any, where: str, deliver_now: Callable[..., Any]
) -> None:
    """Run ``deliver_now`` with the process dying at the 3rd message of the batch:
    ``before_send`` (in ``module._prepare``) or ``after_accept`` (in ``mark_sent``, the
    message accepted but ``sent`` not committed); then undo the patch."""
    calls = 0

    def crash_on_third(step: Any) -> Any:
        def wrapped(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise Crash
            return step(*args)

        return wrapped

    if where == "before_send":
        monkeypatch.setattr(module, "_prepare", crash_on_third(module._prepare))
        with pytest.raises(Crash):
            deliver_now()
    else:
        with pytest.raises(Crash):
            deliver_now(on_sent=crash_on_third(mailer.mark_sent))
    monkeypatch.undo()


@pytest.mark.parametrize("where", ["before_send", "after_accept"])
def test_no_double_send_after_a_crash_mid_batch(
    engine: Engine,
    store: Store,
    smtp: tuple[Mailbox, Settings],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """The process dies at the 3rd of 5 messages: before sending it, or after the server
    accepted it but before ``sent`` was committed (the at-least-once window)."""
    box, settings = smtp
    now = utcnow()
    people = [customer(engine, store, f"P{i}") for i in range(5)]
    for i, p in enumerate(people):
        queue(engine, store, p, f"k{i}", now)
    crash_at_third(monkeypatch, mailer, where, lambda **kw: run(store, settings, engine, now, **kw))
    assert len(box.received) == (2 if where == "before_send" else 3)
    assert statuses(engine, store) == [MessageStatus.sent] * 2 + [MessageStatus.sending] * 3

    assert run(store, settings, engine, now + timedelta(minutes=5)).claimed == 0  # leased
    out = run(store, settings, engine, now + timedelta(minutes=11))
    assert (out.claimed, out.sent) == (3, 3)
    assert statuses(engine, store) == [MessageStatus.sent] * 5
    counts = [len(box.to(p.email or "")) for p in people]
    if where == "before_send":
        assert counts == [1, 1, 1, 1, 1]
    else:  # the documented window: accepted, then the crash; same Message-ID twice
        assert counts == [1, 1, 2, 1, 1]
        first, second = box.to(people[2].email or "")
        assert first["Message-ID"] == second["Message-ID"]
    assert run(store, settings, engine, now + timedelta(hours=1)).claimed == 0


def test_a_run_that_lost_its_claim_records_nothing(engine: Engine, store: Store) -> None:
    now = utcnow()
    msg_id = queue(engine, store, customer(engine, store, "L"), "k1", now)
    with unit_of_work(engine) as session:
        [mine] = mailer.claim(session, now, 10, timedelta(minutes=10), store.id)
    with unit_of_work(engine) as session:  # another run, after the lease
        [theirs] = mailer.claim(
            session, now + timedelta(minutes=11), 10, timedelta(minutes=10), store.id
        )
    assert mine.id == theirs.id == msg_id
    assert not mailer.mark_sent(engine, mine, now)
    assert mailer.mark_sent(engine, theirs, now)
    assert not mailer.mark_sent(engine, Claimed(msg_id, store.id, theirs.claimed_at), now)


def test_concurrent_claims_take_disjoint_batches(engine: Engine, store: Store) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has a single writer: claims queue, they cannot overlap")
    now = utcnow()
    c = customer(engine, store, "Q")
    ids = [queue(engine, store, c, f"k{i}", now) for i in range(3)]
    with unit_of_work(engine) as one, unit_of_work(engine) as two:
        first = mailer.claim(one, now, 2, timedelta(minutes=10), store.id)
        second = mailer.claim(two, now, 2, timedelta(minutes=10), store.id)  # skips locked
    assert [x.id for x in first] == ids[:2] and [x.id for x in second] == ids[2:]


def test_enqueue_is_idempotent_by_key(engine: Engine, store: Store) -> None:
    now = utcnow()
    c = customer(engine, store, "I")
    assert queue(engine, store, c, "same", now) == queue(engine, store, c, "same", now)
    assert statuses(engine, store) == [MessageStatus.queued]


def test_an_opt_in_confirmation_needs_no_consent(
    engine: Engine, store: Store, smtp: tuple[Mailbox, Settings]
) -> None:
    box, settings = smtp
    now = utcnow()
    c = customer(engine, store, "New", consent=False, locale="zh-CN")
    with unit_of_work(engine) as session:
        s = session.merge(store)
        row = session.merge(c)
        url = consents.opt_in(session, s, row, Channel.email, "test", BASE, now).confirm_url
        assert url is not None
        outbox.enqueue_opt_in_confirmation(session, s, row, url, now)
        outbox.enqueue_opt_in_confirmation(session, s, row, url, now)  # idempotent
    assert run(store, settings, engine, now).sent == 1
    [msg] = box.received
    assert msg["Subject"] == f"请确认订阅{store.name}" and msg["List-Unsubscribe"] is None
    body = msg.get_body(("plain",))
    assert body is not None and url in body.get_content()


def test_cli_outbox_and_deliver(
    db_cli: CliRunner,
    engine: Engine,
    store: Store,
    smtp: tuple[Mailbox, Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, settings = smtp
    monkeypatch.setenv("PATRON_SMTP_PORT", str(settings.smtp_port))
    monkeypatch.setenv("PATRON_MAIL_FROM", "cli@example.com")
    queue(engine, store, customer(engine, store, "Cli"), "k1", utcnow() - timedelta(seconds=1))
    res = db_cli.invoke(campaigns_app, ["outbox", "--store", store.slug])
    assert res.exit_code == 0, res.output
    assert "queued" in res.output and "│ 1 " in res.output
    res = db_cli.invoke(campaigns_app, ["deliver", "--store", store.slug, "--limit", "10"])
    assert res.exit_code == 0, res.output
    assert "sent 1" in res.output
    assert [m["From"] for m in box.received] == ["cli@example.com"]
    res = db_cli.invoke(campaigns_app, ["deliver", "--store", "no-such-store"])
    assert res.exit_code == 1 and "no-such-store" in res.output
