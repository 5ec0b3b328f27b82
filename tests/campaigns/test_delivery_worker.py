"""Delivery in the background: the per-store "survey invitations by Patron's mail" step
of the jobs, the delivery loop (its own thread, only when SMTP or a channel webhook is
configured), `patron worker --once` and the scheduler of `patron serve`."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from patron.campaigns import webhook
from patron.campaigns.mailer import DeliveryLoop, deliver_due, mail_configured
from patron.campaigns.models import MessageStatus, OutboxMessage
from patron.campaigns.outbox import Rendered, outbox
from patron.cli import app as cli
from patron.config import Settings
from patron.customers.models import Channel
from patron.db import unit_of_work
from patron.jobs import Scheduler, run_all
from patron.kit.clock import utcnow
from patron.stores.models import Store
from tests.campaigns.test_mailer import Mailbox, customer, queue, smtp  # noqa: F401
from tests.campaigns.test_webhook import Gateway, gateway  # noqa: F401
from tests.campaigns.test_webhook import customer as sms_customer
from tests.feedback.test_surveys_api import create_survey, invite


def statuses(engine: Engine, store: Store) -> list[MessageStatus]:
    with unit_of_work(engine) as session:
        return list(
            session.scalars(
                select(OutboxMessage.status)
                .where(OutboxMessage.store_id == store.id)
                .order_by(OutboxMessage.id)
            )
        )


def test_the_jobs_mail_survey_invitations_only_when_the_store_says_so(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    now = utcnow()
    customer(engine, store, "A")
    create_survey(engine, store, "s", recontact_days=0)
    invite(engine, store, "s", "A", now=now)
    res = client.get("/v1/delivery-settings", headers=admin)
    assert res.json() == {"survey_invitations_by_mail": False, "updated_at": None}

    total, failed = run_all(engine, store.slug, now)
    assert failed == [] and total.survey_mails == 0
    assert statuses(engine, store) == []  # off by default: the store sends them itself

    res = client.put(
        "/v1/delivery-settings", json={"survey_invitations_by_mail": True}, headers=admin
    )
    assert res.status_code == 200 and res.json()["survey_invitations_by_mail"] is True
    assert client.get("/v1/delivery-settings", headers=admin).json()["updated_at"] is not None
    total, _ = run_all(engine, store.slug, now + timedelta(seconds=1))
    assert total.survey_mails == 1
    total, _ = run_all(engine, store.slug, now + timedelta(seconds=2))
    assert total.survey_mails == 0  # queued once
    with unit_of_work(engine) as session:
        [msg] = session.scalars(select(OutboxMessage).where(OutboxMessage.store_id == store.id))
        assert msg.kind == "survey_invitation" and msg.status is MessageStatus.queued
    bad = client.put(
        "/v1/delivery-settings", json={"survey_invitations_by_mail": "maybe"}, headers=admin
    )
    assert bad.status_code == 422


def test_the_loop_delivers_mail_and_webhooks_only_when_configured(
    engine: Engine,
    store: Store,
    smtp: tuple[Mailbox, Settings],  # noqa: F811
    gateway: tuple[Gateway, str],  # noqa: F811
) -> None:
    box, configured = smtp
    gw, url = gateway
    now = utcnow() - timedelta(seconds=1)
    queue(engine, store, customer(engine, store, "Mail"), "m1", now)
    unset = Settings(smtp_port=configured.smtp_port)  # SMTP host not set: not configured
    assert not mail_configured(unset) and mail_configured(configured)

    mail, hooks = deliver_due(engine, settings=unset)
    assert (mail.claimed, hooks.claimed) == (0, 0)
    assert statuses(engine, store) == [MessageStatus.queued] and box.received == []

    phone_customer = sms_customer(engine, store, "Sms")
    with unit_of_work(engine) as session:
        s = session.merge(store)
        _, secret, _ = webhook.put_endpoint(session, s, Channel.sms, url, True)
        gw.secret = secret or ""
        c = session.merge(phone_customer)
        outbox.enqueue(
            session,
            s,
            customer=c,
            recipient=c.phone or "",
            kind="test",
            key="s1",
            mail=Rendered("", "hi"),
            channel=Channel.sms,
            now=now,
        )
    loop = DeliveryLoop(engine, 0.2, configured)
    loop.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and statuses(engine, store) != [MessageStatus.sent] * 2:
            time.sleep(0.1)
    finally:
        loop.stop()
    assert statuses(engine, store) == [MessageStatus.sent] * 2
    # (the loop serves every store: other tests' leftovers may go too)
    assert len(box.to("mail@example.com")) == 1
    assert [m["customer_external_id"] for m in gw.received] == ["Sms"]
    assert loop.runs >= 1 and loop.sent >= 2


def test_worker_once_delivers_the_mail(
    db_cli: CliRunner,
    engine: Engine,
    store: Store,
    smtp: tuple[Mailbox, Settings],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, settings = smtp
    monkeypatch.setenv("PATRON_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PATRON_SMTP_PORT", str(settings.smtp_port))
    queue(engine, store, customer(engine, store, "W"), "k1", utcnow() - timedelta(seconds=1))
    res = db_cli.invoke(cli, ["worker", "--once", "--store", store.slug])
    assert res.exit_code == 0, res.output
    assert "delivery:" in res.output
    assert [m["To"] for m in box.received] == ["w@example.com"]
    assert statuses(engine, store) == [MessageStatus.sent]


def test_the_scheduler_runs_a_delivery_loop_of_its_own(engine: Engine) -> None:
    scheduler = Scheduler(engine, 3600)
    scheduler.start()
    try:
        thread = scheduler.delivery._thread
        assert thread is not None and thread.is_alive() and thread.name == "patron-delivery"
    finally:
        scheduler.stop()
    assert scheduler.delivery._thread is None
