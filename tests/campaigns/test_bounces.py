"""Bounces (RFC 3464 DSNs) and complaints (RFC 5965 ARF) read back: written by hand per
the RFCs around mail really sent through a local SMTP server, matched by the signed
X-Patron-Message header or the Message-ID; hard bounces and complaints suppress."""

from __future__ import annotations

import mailbox
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from patron.campaigns import bounces, tracking
from patron.campaigns.cli import campaigns_app
from patron.campaigns.consent import consents
from patron.campaigns.models import CampaignEvent, EventKind, OutboxMessage, Suppression
from patron.config import Settings
from patron.customers.models import Channel
from patron.db import unit_of_work
from patron.kit.clock import utcnow
from patron.stores.models import Store
from tests.campaigns.test_mailer import Mailbox, customer, queue, run, smtp  # noqa: F401

DSN_HARD = """\
From: Mail Delivery System <MAILER-DAEMON@mx.shop.example>
To: shop@example.com
Subject: Undelivered Mail Returned to Sender
Date: Thu, 26 Nov 2026 05:00:00 +0000
Message-ID: <20261126050000.A1@mx.shop.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="=_dsn_boundary_1"

This is a MIME-encapsulated message.

--=_dsn_boundary_1
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.shop.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{rcpt}>: host mail.example.com[192.0.2.10] said: 550 5.1.1
    <{rcpt}>: Recipient address rejected: User unknown

--=_dsn_boundary_1
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.shop.example
X-Postfix-Queue-ID: A1
Arrival-Date: Thu, 26 Nov 2026 04:59:58 +0000

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.example.com
Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User
    unknown

--=_dsn_boundary_1
Content-Description: Undelivered Message
Content-Type: message/rfc822

{original}
--=_dsn_boundary_1--
"""

DSN_SOFT = """\
From: MAILER-DAEMON@mx.shop.example
To: shop@example.com
Subject: Delayed Mail (still being retried)
Message-ID: <20261126050000.B2@mx.shop.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b2"

--b2
Content-Type: text/plain

Your message is delayed.

--b2
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.shop.example

Final-Recipient: rfc822; {rcpt}
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mail.example.com: Connection timed out

--b2
Content-Type: text/rfc822-headers

{headers}
--b2--
"""

ARF = """\
From: <abuse@mailbox.example>
Date: Thu, 26 Nov 2026 05:10:00 +0000
Subject: FW: {subject}
To: <abuse@shop.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 26 Nov 2026 05:00:00 +0000.
For more information about this format please see
http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: {feedback}
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <shop@example.com>
Original-Rcpt-To: <{rcpt}>
Arrival-Date: Thu, 26 Nov 2026 05:00:00 +0000
Reported-Domain: example.com
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

{original}
--part1_13d.2e68ed54_boundary--
"""


def sent_mail(
    engine: Engine, store: Store, server: tuple[Mailbox, Settings], ext: str, key: str = "k1"
) -> tuple[int, EmailMessage]:
    box, settings = server
    now = utcnow() - timedelta(minutes=1)
    c = customer(engine, store, ext)
    msg_id = queue(engine, store, c, key, now)
    assert run(store, settings, engine, now).sent == 1
    [mail] = box.to(c.email or "")
    return msg_id, mail


def headers_of(mail: EmailMessage) -> str:
    return "".join(f"{k}: {v}\n" for k, v in mail.items())


def suppression(engine: Engine, store: Store) -> list[tuple[str | None, str]]:
    with unit_of_work(engine) as session:
        rows = session.scalars(select(Suppression).where(Suppression.store_id == store.id))
        return [(r.address, r.reason.value) for r in rows]


def kinds(engine: Engine, msg_id: int) -> list[tuple[EventKind, bool | None]]:
    with unit_of_work(engine) as session:
        rows = session.scalars(select(CampaignEvent).where(CampaignEvent.message_id == msg_id))
        return [(e.kind, e.permanent) for e in rows]


def test_a_hard_bounce_suppresses_and_counts(
    engine: Engine,
    store: Store,
    smtp: tuple[Mailbox, Settings],  # noqa: F811
) -> None:
    msg_id, mail = sent_mail(engine, store, smtp, "Gone")
    assert mail["X-Patron-Message"].startswith(f"{msg_id}.")
    raw = DSN_HARD.format(rcpt="gone@example.com", original=mail.as_string()).encode()
    report = bounces.parse(raw)
    assert (report.kind, report.status, report.recipient) == ("hard", "5.1.1", "gone@example.com")
    assert report.tag == mail["X-Patron-Message"]
    with unit_of_work(engine) as session:
        out = bounces.apply(session, report)
        assert (out.action, out.message, out.suppressed) == ("hard_bounce", msg_id, True)
        row = session.get(OutboxMessage, msg_id)
        assert row is not None and row.customer_id is not None
        assert not consents.may_contact(
            session, session.merge(store), row.customer_id, Channel.email
        )
    assert suppression(engine, store) == [("gone@example.com", "hard_bounce")]
    assert kinds(engine, msg_id) == [(EventKind.bounce, True)]
    with unit_of_work(engine) as session:  # the same DSN again: no new suppression
        assert bounces.apply(session, bounces.parse(raw)).suppressed is False
        assert tracking.counts_by_key_prefix(session, store.id, "k")["bounced"] == 1


def test_a_soft_bounce_is_only_recorded_matched_by_message_id(
    engine: Engine,
    store: Store,
    smtp: tuple[Mailbox, Settings],  # noqa: F811
) -> None:
    msg_id, mail = sent_mail(engine, store, smtp, "Slow")
    headers = f"From: {mail['From']}\nTo: {mail['To']}\nMessage-ID: {mail['Message-ID']}\n"
    report = bounces.parse(DSN_SOFT.format(rcpt="slow@example.com", headers=headers).encode())
    assert (report.kind, report.status, report.tag) == ("soft", "4.4.1", None)
    with unit_of_work(engine) as session:
        out = bounces.apply(session, report)
    assert (out.action, out.message, out.suppressed) == ("soft_bounce", msg_id, False)
    assert suppression(engine, store) == []
    assert kinds(engine, msg_id) == [(EventKind.bounce, False)]


def test_an_abuse_report_suppresses_as_complaint(
    engine: Engine,
    store: Store,
    smtp: tuple[Mailbox, Settings],  # noqa: F811
) -> None:
    msg_id, mail = sent_mail(engine, store, smtp, "Angry")
    raw = ARF.format(
        subject=mail["Subject"], feedback="abuse", rcpt="angry@example.com", original=mail
    ).encode()
    report = bounces.parse(raw)
    assert (report.kind, report.status, report.recipient) == (
        "complaint",
        "abuse",
        "angry@example.com",
    )
    with unit_of_work(engine) as session:
        out = bounces.apply(session, report)
        counts = tracking.counts_by_key_prefix(session, store.id, "k1")
    assert (out.action, out.message, out.suppressed) == ("complaint", msg_id, True)
    assert suppression(engine, store) == [("angry@example.com", "complaint")]
    assert counts["complained"] == 1
    not_spam = ARF.format(subject="x", feedback="not-spam", rcpt="a@b.c", original=mail)
    with pytest.raises(bounces.NotAReport):
        bounces.parse(not_spam.encode())


def test_a_forged_or_unknown_report_changes_nothing(
    engine: Engine,
    store: Store,
    smtp: tuple[Mailbox, Settings],  # noqa: F811
) -> None:
    msg_id, _ = sent_mail(engine, store, smtp, "Victim")
    forged = (
        f"From: shop@example.com\nTo: victim@example.com\n"
        f"Message-ID: <not-ours@example.com>\nX-Patron-Message: {msg_id}.{'A' * 22}\n\nhi\n"
    )
    raw = DSN_HARD.format(rcpt="victim@example.com", original=forged).encode()
    with unit_of_work(engine) as session:
        assert bounces.apply(session, bounces.parse(raw)).action == "unmatched"
    assert suppression(engine, store) == [] and kinds(engine, msg_id) == []
    for junk in (
        b"From: a@b.c\nSubject: Out of office\n\nI am away.\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x--\n",
    ):
        with pytest.raises(bounces.NotAReport):
            bounces.parse(junk)


def test_cli_bounce_from_stdin_and_a_database_outage(
    db_cli: CliRunner,
    engine: Engine,
    store: Store,
    smtp: tuple[Mailbox, Settings],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from patron.config import get_settings
    from patron.db import default_engine

    _, mail = sent_mail(engine, store, smtp, "Stdin")
    raw = DSN_HARD.format(rcpt="stdin@example.com", original=mail.as_string()).encode()
    res = db_cli.invoke(campaigns_app, ["bounce"], input=raw)
    assert res.exit_code == 0, res.output
    assert "hard_bounce" in res.output and "suppressed" in res.output
    assert suppression(engine, store) == [("stdin@example.com", "hard_bounce")]
    res = db_cli.invoke(campaigns_app, ["bounce"], input=b"Subject: hello\n\nhi\n")
    assert res.exit_code == 0 and "ignored" in res.output

    monkeypatch.setenv("PATRON_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:9/none")
    get_settings.cache_clear()
    default_engine.cache_clear()
    res = db_cli.invoke(campaigns_app, ["bounce"], input=raw)
    assert res.exit_code == 75, res.output  # EX_TEMPFAIL: the MTA keeps it and retries


def test_cli_poll_bounces_maildir(
    db_cli: CliRunner,
    engine: Engine,
    store: Store,
    smtp: tuple[Mailbox, Settings],  # noqa: F811
    tmp_path: Path,
) -> None:
    _, hard = sent_mail(engine, store, smtp, "M1", "k1")
    _, angry = sent_mail(engine, store, smtp, "M2", "k2")
    box = mailbox.Maildir(str(tmp_path / "bounces"), create=True)
    box.add(DSN_HARD.format(rcpt="m1@example.com", original=hard.as_string()).encode())
    box.add(ARF.format(subject="x", feedback="abuse", rcpt="m2@example.com", original=angry))
    box.add(b"Subject: vacation\n\nAway.\n")
    res = db_cli.invoke(campaigns_app, ["poll-bounces", "--maildir", str(tmp_path / "bounces")])
    assert res.exit_code == 0, res.output
    assert "2 reports" in res.output and "1 hard bounces" in res.output
    assert "1 complaints" in res.output and "1 not reports" in res.output
    assert sorted(suppression(engine, store)) == [
        ("m1@example.com", "hard_bounce"),
        ("m2@example.com", "complaint"),
    ]
    assert not list((tmp_path / "bounces" / "new").iterdir())  # all read, moved to cur/
    res = db_cli.invoke(campaigns_app, ["poll-bounces", "--maildir", str(tmp_path / "bounces")])
    assert "0 reports" in res.output


def test_provider_bounces_api(
    client: TestClient,
    engine: Engine,
    store: Store,
    admin: dict[str, str],
    smtp: tuple[Mailbox, Settings],  # noqa: F811
) -> None:
    msg_id, mail = sent_mail(engine, store, smtp, "Api")
    res = client.post(
        "/v1/bounces",
        json={"email": "API@example.com", "type": "soft", "message_id": mail["Message-ID"]},
        headers=admin,
    )
    assert res.json() == {"action": "soft_bounce", "message": msg_id, "suppressed": False}
    res = client.post(
        "/v1/bounces", json={"email": "api@example.com", "type": "hard"}, headers=admin
    )
    assert res.json() == {"action": "hard_bounce", "message": msg_id, "suppressed": True}
    res = client.post(
        "/v1/bounces", json={"email": "nobody@example.com", "type": "complaint"}, headers=admin
    )
    assert res.json() == {"action": "complaint", "message": None, "suppressed": True}
    assert kinds(engine, msg_id) == [(EventKind.bounce, False), (EventKind.bounce, True)]
    assert sorted(suppression(engine, store)) == [
        ("api@example.com", "hard_bounce"),
        ("nobody@example.com", "complaint"),
    ]
    for bad in ({"email": "x@y.z", "type": "bogus"}, {"type": "hard"}, {"email": "x@y.z"}):
        assert client.post("/v1/bounces", json=bad, headers=admin).status_code == 422
