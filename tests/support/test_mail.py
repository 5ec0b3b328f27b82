"""Inbound e-mail: parsing (Chinese charsets, HTML, quoted replies), threading by ticket
number and by In-Reply-To, duplicates, and the three ways in: piped to the CLI, a polled
Maildir, and the API."""

from __future__ import annotations

import mailbox
from email.header import Header
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, parseaddr
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from patron.auth import Scope
from patron.cli import app as cli_app
from patron.db import unit_of_work
from patron.stores.models import Store
from patron.support import mail
from patron.support.models import TicketMessage
from patron.support.service import tickets
from tests.conftest import key_headers
from tests.support.test_tickets import count_tickets, customer, ticket_row

SUBJECT = "退款申请：订单破损"
BODY = "您好，我收到的面霜瓶子破了，请帮我退款。\n谢谢！"


def gb2312(
    msg_id: str,
    subject: str = SUBJECT,
    body: str = BODY,
    sender: str = "李雷 <Li.Lei@Example.com>",
    **headers: str,
) -> bytes:
    """A message as a Chinese mail client sends it: GB2312, base64, encoded subject."""
    m = MIMEText(body, "plain", "gb2312")
    m["Subject"] = Header(subject, "gb2312")
    name, address = parseaddr(sender)
    m["From"] = formataddr((name, address), charset="gb2312")
    m["To"] = "support@shop.example"
    m["Date"] = "Tue, 07 Apr 2026 10:00:00 +0800"
    m["Message-ID"] = msg_id
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    return m.as_bytes()


def plain(msg_id: str, subject: str, body: str, sender: str, **headers: str) -> bytes:
    m = EmailMessage()
    m["Subject"] = subject
    m["From"] = sender
    m["To"] = "support@shop.example"
    m["Message-ID"] = msg_id
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content(body)
    return m.as_bytes()


def messages_of(engine: Engine, ticket_id: int) -> list[TicketMessage]:
    with unit_of_work(engine) as session:
        rows = list(
            session.scalars(
                select(TicketMessage)
                .where(TicketMessage.ticket_id == ticket_id)
                .order_by(TicketMessage.id)
            )
        )
        session.expunge_all()
        return rows


def ingest(engine: Engine, store: Store, raw: bytes) -> mail.MailResult:
    with unit_of_work(engine) as session:
        return mail.ingest(session, session.merge(store), raw)


# -- parsing ------------------------------------------------------------------------------


def test_parse_gb2312_subject_and_body() -> None:
    parsed = mail.parse(gb2312("<a1@mail.example>"))
    assert parsed.subject == SUBJECT and parsed.body == BODY
    assert parsed.sender == "li.lei@example.com" and parsed.sender_name == "李雷"
    assert parsed.message_id == "<a1@mail.example>" and parsed.ticket_ref is None
    # GBK characters beyond GB2312 declared as GB2312 (common) still decode.
    raw = (
        b"From: a@example.com\r\nSubject: x\r\nContent-Type: text/plain; charset=gb2312\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "镕基".encode("gbk")
    )
    assert mail.parse(raw).body == "镕基"
    # A whole "name <address>" sent as one encoded word (some clients do) still parses.
    odd = MIMEText("x", "plain", "utf-8")
    odd["From"] = Header("李雷 <Li.Lei@Example.com>", "gb2312")
    assert mail.parse(odd.as_bytes()).sender == "li.lei@example.com"


def test_parse_utf8_html_and_alternatives() -> None:
    alt = MIMEMultipart("alternative")
    alt["Subject"] = Header("Re: [#42] 发货太慢", "utf-8")
    alt["From"] = "wang@example.com"
    alt["In-Reply-To"] = "<out-1@shop.example>"
    alt["References"] = "<a@x> <b@y>"
    alt.attach(MIMEText("纯文本", "plain", "utf-8"))
    alt.attach(MIMEText("<p>超文本</p>", "html", "utf-8"))
    parsed = mail.parse(alt.as_bytes())
    assert parsed.subject == "Re: [#42] 发货太慢" and parsed.ticket_ref == 42
    assert parsed.body == "纯文本"  # text/plain preferred
    assert parsed.in_reply_to == ["<out-1@shop.example>"]
    assert parsed.references == ["<a@x>", "<b@y>"]
    html = MIMEText(
        "<html><head><style>p{}</style></head><body><p>Hello&nbsp;there</p>"
        "<div>Line&amp;two<br>three</div><script>x()</script></body></html>",
        "html",
        "utf-8",
    )
    html["From"] = "x@example.com"
    body = mail.parse(html.as_bytes()).body
    assert body == "Hello there\n\nLine&two\nthree"


def test_parse_without_message_id_and_garbage() -> None:
    raw = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody"
    first, second = mail.parse(raw), mail.parse(raw)
    assert first.message_id == second.message_id and first.message_id.endswith("@patron.invalid>")
    with pytest.raises(mail.MailError):
        mail.parse(b"")
    with pytest.raises(mail.MailError):
        mail.parse(b"just some text, no headers at all")


def test_strip_quoted() -> None:
    text = "Thanks, it works.\n\nOn Tue, 7 Apr 2026, Shop <s@shop> wrote:\n> old\n> text"
    assert mail.strip_quoted(text) == "Thanks, it works."
    assert mail.strip_quoted("好的\n\n在 2026年4月7日，客服 写道：\n> 旧") == "好的"
    assert mail.strip_quoted("new\n> old\n> older") == "new"
    assert mail.strip_quoted("> only quoted") == "> only quoted"


# -- threading ----------------------------------------------------------------------------


def test_threading_by_number_and_reply_headers(engine: Engine, store: Store) -> None:
    cid = customer(engine, store, "C-1", email="li.lei@example.com")
    first = ingest(engine, store, gb2312("<a1@mail.example>"))
    assert first.action == "opened"
    t = ticket_row(engine, first.ticket_id)
    assert (t.channel.value, t.source, t.customer_id, t.subject) == ("email", "email", cid, SUBJECT)
    assert t.requester == "li.lei@example.com"
    # Piped twice: one message.
    again = ingest(engine, store, gb2312("<a1@mail.example>"))
    assert (again.action, again.ticket_id) == ("duplicate", first.ticket_id)
    # The store answers (its Message-ID recorded), waiting on the customer.
    with unit_of_work(engine) as session:
        tickets.reply(
            session,
            session.merge(store),
            first.ticket_id,
            body="请提供照片",
            wait_for_customer=True,
            message_id="<out-1@shop.example>",
        )
    assert ticket_row(engine, first.ticket_id).status.value == "pending"
    # The customer's reply quotes it: threaded, and the clock resumes.
    reply = ingest(
        engine,
        store,
        gb2312(
            "<a2@mail.example>",
            subject="回复：" + SUBJECT,
            body="照片在附件。\n\n在 2026年4月7日，客服 写道：\n> 请提供照片",
            In_Reply_To="<out-1@shop.example>",
        ),
    )
    assert (reply.action, reply.ticket_id) == ("threaded", first.ticket_id)
    assert ticket_row(engine, first.ticket_id).status.value == "open"
    # By the ticket number in the subject, from the same sender.
    by_number = ingest(
        engine,
        store,
        plain(
            "<a3@mail.example>",
            f"Re: [#{first.ticket_id}] refund",
            "Any news?",
            "Li Lei <LI.LEI@example.com>",
        ),
    )
    assert (by_number.action, by_number.ticket_id) == ("threaded", first.ticket_id)
    bodies = [(m.direction.value, m.body) for m in messages_of(engine, first.ticket_id)]
    assert bodies == [
        ("inbound", BODY),
        ("outbound", "请提供照片"),
        ("inbound", "照片在附件。"),
        ("inbound", "Any news?"),
    ]
    # A ticket number from someone else opens a ticket of its own.
    stranger = ingest(
        engine,
        store,
        plain("<z1@evil.example>", f"[#{first.ticket_id}] hi", "hello", "eve@evil.example"),
    )
    assert stranger.action == "opened" and stranger.ticket_id != first.ticket_id
    assert ticket_row(engine, stranger.ticket_id).customer_id is None
    # A reply to a closed ticket opens a follow-up.
    with unit_of_work(engine) as session:
        from patron.support.models import TicketStatus

        tickets.set_status(session, session.merge(store), first.ticket_id, TicketStatus.closed)
    late = ingest(
        engine,
        store,
        plain(
            "<a4@mail.example>",
            "Re: thanks",
            "Thanks!",
            "li.lei@example.com",
            In_Reply_To="<a3@mail.example>",
        ),
    )
    assert late.action == "opened" and late.ticket_id not in (first.ticket_id, stranger.ticket_id)
    assert count_tickets(engine, store) == 3


# -- the ways in --------------------------------------------------------------------------


def test_piped_into_the_cli(
    db_cli: CliRunner, engine: Engine, store: Store, tmp_path: Path
) -> None:
    customer(engine, store, "C-1", email="li.lei@example.com")
    res = db_cli.invoke(
        cli_app, ["support", "mail", "--store", store.slug], input=gb2312("<p1@mail.example>")
    )
    assert res.exit_code == 0, res.output
    assert res.output.startswith("opened: ticket #")
    tid = int(res.output.split("#")[1].split()[0])
    assert ticket_row(engine, tid).subject == SUBJECT
    again = db_cli.invoke(
        cli_app, ["support", "mail", "--store", store.slug], input=gb2312("<p1@mail.example>")
    )
    assert again.exit_code == 0 and again.output.startswith("duplicate:")
    file = tmp_path / "reply.eml"
    file.write_bytes(plain("<p2@mail.example>", f"Re: [#{tid}]", "more", "li.lei@example.com"))
    res = db_cli.invoke(cli_app, ["support", "mail", str(file), "--store", store.slug])
    assert res.exit_code == 0 and res.output.startswith(f"threaded: ticket #{tid}"), res.output
    res = db_cli.invoke(cli_app, ["support", "mail", "--store", store.slug], input=b"")
    assert res.exit_code == 1 and "cannot read the message" in res.output
    res = db_cli.invoke(
        cli_app, ["support", "mail", "--store", "no-such-store"], input=gb2312("<p3@x>")
    )
    assert res.exit_code == 1 and "no store" in res.output


def test_polled_from_a_maildir(
    db_cli: CliRunner, engine: Engine, store: Store, tmp_path: Path
) -> None:
    customer(engine, store, "C-1", email="li.lei@example.com")
    box = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    box.add(gb2312("<m1@mail.example>"))
    box.add(plain("<m2@mail.example>", "Order late", "Where is it?", "wang@example.com"))
    box.add(b"")  # unreadable
    box.add(
        plain(
            "<m3@mail.example>",
            "Re: Order late",
            "Still waiting",
            "wang@example.com",
            In_Reply_To="<m2@mail.example>",
        )
    )
    root = tmp_path / "Maildir"
    res = db_cli.invoke(cli_app, ["support", "poll-maildir", str(root), "--store", store.slug])
    assert res.exit_code == 1, res.output  # one message failed, the others went through
    assert "3 processed: 2 opened, 1 threaded, 0 duplicates; 1 failed" in res.output
    assert "empty message" in res.output
    assert list((root / "new").iterdir()) == []
    seen = sorted(p.name for p in (root / "cur").iterdir())
    assert len(seen) == 3 and all(name.endswith(":2,S") for name in seen)
    assert len(list((root / "failed").iterdir())) == 1
    assert count_tickets(engine, store) == 2
    # Nothing new: nothing done. Already seen messages stay where they are.
    res = db_cli.invoke(cli_app, ["support", "poll-maildir", str(root), "--store", store.slug])
    assert res.exit_code == 0 and "0 processed" in res.output
    # --delete removes what it filed; a message delivered twice is filed once.
    box.add(gb2312("<m1@mail.example>"))
    box.add(plain("<m4@mail.example>", "Hi", "hello", "new@example.com"))
    res = db_cli.invoke(
        cli_app, ["support", "poll-maildir", str(root), "--store", store.slug, "--delete"]
    )
    assert res.exit_code == 0 and "2 processed: 1 opened, 0 threaded, 1 duplicates" in res.output
    assert list((root / "new").iterdir()) == [] and len(list((root / "cur").iterdir())) == 3
    assert count_tickets(engine, store) == 3
    res = db_cli.invoke(cli_app, ["support", "poll-maildir", str(tmp_path), "--store", store.slug])
    assert res.exit_code == 1 and "not a Maildir" in res.output


def test_poll_maildir_never_blocks_on_one_message(tmp_path: Path) -> None:
    box = mailbox.Maildir(str(tmp_path / "box"), create=True)
    keys = [box.add(plain(f"<k{i}@x>", "s", "b", "a@example.com")) for i in range(3)]
    calls: list[bytes] = []

    def handle(raw: bytes) -> mail.MailResult:
        calls.append(raw)
        if b"<k1@x>" in raw:
            raise RuntimeError("boom")
        return mail.MailResult("opened", 1, "<x>")

    report = mail.poll_maildir(tmp_path / "box", handle)
    assert len(calls) == 3 and len(report.processed) == 2
    assert [k for k, _ in report.failed] == [keys[1]] and "boom" in report.failed[0][1]


def test_inbound_email_endpoint(
    client: TestClient, engine: Engine, store: Store, admin: dict[str, str]
) -> None:
    ingest_key = key_headers(engine, store, Scope.ingest)
    headers = {**ingest_key, "Content-Type": "message/rfc822"}
    raw = gb2312("<api1@mail.example>")
    res = client.post("/v1/support/inbound-email", content=raw, headers=headers)
    assert res.status_code == 200, res.text
    assert res.json()["action"] == "opened" and res.json()["message_id"] == "<api1@mail.example>"
    tid = res.json()["ticket_id"]
    t = client.get(f"/v1/tickets/{tid}", headers=admin).json()
    assert t["subject"] == SUBJECT and t["messages"][0]["body"] == BODY
    assert t["customer_external_id"] is None and t["requester"] == "li.lei@example.com"
    res = client.post("/v1/support/inbound-email", content=raw, headers=headers)
    assert res.json()["action"] == "duplicate"
    res = client.post("/v1/support/inbound-email", content=b"nonsense", headers=headers)
    assert res.status_code == 422 and res.headers["content-type"] == "application/problem+json"
    read = {**key_headers(engine, store, Scope.read), "Content-Type": "message/rfc822"}
    assert client.post("/v1/support/inbound-email", content=raw, headers=read).status_code == 403
    assert count_tickets(engine, store) == 1
