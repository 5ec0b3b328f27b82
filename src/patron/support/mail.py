"""Inbound e-mail: a message (RFC 5322 bytes) becomes a ticket, or a message on one.

Two ways in, one rule (``ingest``):

- **piped**: an MTA alias delivers each message to ``patron support mail --store SLUG``
  on stdin (``support: "|patron support mail --store acme"``);
- **polled**: ``patron support poll-maildir DIR --store SLUG`` reads the new messages of
  a Maildir (``poll_maildir``), then files each in ``cur`` marked seen (or deletes it).
  A message that cannot be read is moved aside to ``DIR/failed`` and reported; it never
  blocks the others.

Threading: a subject carrying ``[#<ticket id>]`` (from the same sender as the ticket's),
or an ``In-Reply-To``/``References`` naming a stored Message-ID, adds the message to that
ticket (a closed ticket gets a follow-up ticket instead). Anything else opens an e-mail
ticket, the customer found by the sender's address. A Message-ID seen before is a no-op,
so a message piped twice or polled twice is one message.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import mailbox
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLTimeoutError
from sqlalchemy.orm import Session

from patron.customers import repository as customers_repo
from patron.errors import PatronError
from patron.stores.models import Store
from patron.support import repository as repo
from patron.support.models import Direction, Ticket, TicketStatus
from patron.support.schemas import MessageIn
from patron.support.service import tickets

MAX_BODY = 100_000
MAX_MAIL_BYTES = 10 * 1024 * 1024
_TICKET_REF = re.compile(r"\[#(\d{1,18})\]")
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_MSG_ID = re.compile(r"<[^<>\s]{1,250}>")
# Where a reply's quoted history starts (the customer's new text is above it).
_QUOTE_MARKERS = re.compile(
    r"^(?:On .{1,200} wrote:|-{2,}\s*Original Message\s*-{2,}|-{2,}\s*原始邮件\s*-{2,}"
    r"|在.{1,200}写道[:：]|From: .+|发件人[:：].+)\s*$",
    re.MULTILINE,
)
# Charsets whose real-world mail uses characters of a superset.
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030"}


class MailError(ValueError):
    """Not a message Patron can read."""


@dataclass(frozen=True)
class ParsedMail:
    message_id: str
    subject: str
    sender: str | None  # the From address, lower case
    sender_name: str | None
    in_reply_to: list[str]
    references: list[str]
    body: str
    ticket_ref: int | None  # [#123] in the subject


@dataclass(frozen=True)
class MailResult:
    action: Literal["opened", "threaded", "duplicate"]
    ticket_id: int
    message_id: str


@dataclass
class PollReport:
    processed: list[tuple[str, MailResult]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


# -- parsing ------------------------------------------------------------------------------


class _Text(HTMLParser):
    """HTML to plain text: the visible text, a line break per block element."""

    _BLOCKS = frozenset(
        {"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table"}
    )
    _HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = (re.sub(r"[ \t\xa0]+", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _decode(part: Message) -> str:
    """A text part's content as str, whatever its charset claims."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = (part.get_content_charset() or "utf-8").lower()
    charset = _SUPERSETS.get(charset, charset)
    for candidate in (charset, "utf-8", "gb18030"):
        try:
            return payload.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return payload.decode("utf-8", errors="replace")


def _body(msg: EmailMessage) -> str:
    plain = msg.get_body(preferencelist=("plain",))
    if plain is not None:
        return _decode(plain)
    html = msg.get_body(preferencelist=("html",))
    if html is not None:
        return html_to_text(_decode(html))
    if msg.get_content_maintype() == "text":
        return _decode(msg)
    return ""


def strip_quoted(text: str) -> str:
    """The new text of a reply: what precedes the quoted history (``On … wrote:``,
    ``-----Original Message-----``, ``在…写道：``, a block of ``>`` lines). Kept whole when
    nothing would be left."""
    match = _QUOTE_MARKERS.search(text)
    head = text[: match.start()] if match else text
    lines = head.rstrip().split("\n")
    while lines and lines[-1].lstrip().startswith(">"):
        lines.pop()
    head = "\n".join(lines).strip()
    return head or text.strip()


def _clean(text: str, limit: int) -> str:
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    # Lone surrogates (from surrogateescape'd headers) cannot be stored.
    text = text.encode("utf-8", errors="replace").decode("utf-8")
    return text[:limit]


def _header(msg: EmailMessage, name: str) -> str:
    """A header's decoded text ("" when absent); a header the parser refuses is decoded
    from its raw form instead."""
    try:
        value = msg.get(name)
        return "" if value is None else str(value)
    except Exception:
        pass
    for key, raw in msg.raw_items():
        if key.lower() == name.lower():
            try:
                return str(make_header(decode_header(str(raw))))
            except Exception:
                return str(raw)
    return ""


def _sender(msg: EmailMessage) -> tuple[str | None, str | None]:
    text = _header(msg, "From")
    name, address = email.utils.parseaddr(text)
    address = address.strip()
    if not _ADDRESS.fullmatch(address):
        # E.g. a whole "name <address>" sent as one encoded word: find the address in it.
        found = _ADDRESS.search(text)
        address = found.group(0) if found else ""
        name = text[: found.start()].strip(" <\"'") if found else name
    if not address or len(address) > 320:
        return None, name.strip() or None
    return address.lower(), (name.strip() or None)


def _ids(text: str) -> list[str]:
    return list(dict.fromkeys(_MSG_ID.findall(text)))


def parse(raw: bytes) -> ParsedMail:
    """Read one message. ``MailError`` when it is not an e-mail at all."""
    if not raw.strip():
        raise MailError("empty message")
    if len(raw) > MAX_MAIL_BYTES:
        raise MailError(f"message larger than {MAX_MAIL_BYTES // (1024 * 1024)} MB")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    if not any(name in msg for name in ("From", "Message-ID", "Subject", "Date")):
        raise MailError("not an e-mail message: no From, Subject, Date or Message-ID header")
    found = _ids(_header(msg, "Message-ID"))
    message_id = found[0] if found else f"<{hashlib.sha256(raw).hexdigest()[:40]}@patron.invalid>"
    subject = " ".join(_header(msg, "Subject").split())
    sender, name = _sender(msg)
    try:
        body = _body(msg)
    except (LookupError, ValueError, KeyError) as exc:
        raise MailError(f"unreadable body: {exc}") from exc
    ref = _TICKET_REF.search(subject)
    return ParsedMail(
        message_id=_clean(message_id, 255),
        subject=_clean(subject, 255),
        sender=sender,
        sender_name=_clean(name, 255) if name else None,
        in_reply_to=_ids(_header(msg, "In-Reply-To")),
        references=_ids(_header(msg, "References")),
        body=_clean(body.strip(), MAX_BODY),
        ticket_ref=int(ref.group(1)) if ref else None,
    )


# -- ingesting ----------------------------------------------------------------------------


def ingest(
    session: Session, store: Store, raw: bytes, *, now: datetime | None = None
) -> MailResult:
    """File one message: on the ticket it answers, or as a new e-mail ticket. Flushes,
    never commits."""
    mail = parse(raw)
    seen = repo.message_by_message_id(session, store.id, mail.message_id)
    if seen is not None:
        return MailResult("duplicate", seen.ticket_id, mail.message_id)
    ticket = None
    if mail.ticket_ref is not None:
        ticket = repo.ticket(session, store.id, mail.ticket_ref)
        # A ticket number in a subject is easy to guess: it threads only mail from the
        # ticket's own requester or customer.
        if ticket is not None and not _same_sender(session, store, ticket, mail.sender):
            ticket = None
    if ticket is None:
        threaded = repo.ticket_of_message_ids(
            session, store.id, [*mail.in_reply_to, *reversed(mail.references)]
        )
        ticket = repo.ticket(session, store.id, threaded) if threaded is not None else None
    body = mail.body or "(empty message)"
    if ticket is not None and ticket.status != TicketStatus.closed:
        tickets.add_message(
            session,
            store,
            ticket.id,
            MessageIn(
                direction=Direction.inbound,
                body=strip_quoted(body),
                author=mail.sender,
                message_id=mail.message_id,
            ),
            actor="email",
            now=now,
        )
        return MailResult("threaded", ticket.id, mail.message_id)
    opened, _ = tickets.open_from_email(
        session,
        store,
        sender=mail.sender,
        subject=mail.subject,
        body=strip_quoted(body) if ticket is not None else body,
        message_id=mail.message_id,
        follow_up_of=ticket.id if ticket is not None else None,
        now=now,
    )
    return MailResult("opened", opened.id, mail.message_id)


def _same_sender(session: Session, store: Store, ticket: Ticket, sender: str | None) -> bool:
    if sender is None:
        return False
    if ticket.requester and ticket.requester.strip().lower() == sender:
        return True
    if ticket.customer_id is not None:
        customer = customers_repo.get(session, store.id, ticket.customer_id)
        return customer is not None and (customer.email or "").strip().lower() == sender
    return False


# -- a Maildir ----------------------------------------------------------------------------


def poll_maildir(
    path: Path,
    handle: Callable[[bytes], MailResult],
    *,
    delete: bool = False,
    failed_dir: Path | None = None,
) -> PollReport:
    """Hand each new message of the Maildir at ``path`` to ``handle`` (which files it in
    its own transaction), then move it to ``cur`` marked seen (``S``), or delete it. A
    message ``handle`` refuses is moved to ``failed_dir`` (default ``path/failed``) with
    the reason reported; the others go on."""
    try:
        box = mailbox.Maildir(str(path), factory=None, create=False)
    except (mailbox.NoSuchMailboxError, OSError) as exc:
        raise MailError(f"{path}: not a Maildir (no cur/new/tmp): {exc}") from None
    if not (path / "new").is_dir() or not (path / "cur").is_dir():
        raise MailError(f"{path}: not a Maildir (needs cur/, new/ and tmp/)")
    failed_dir = failed_dir or path / "failed"
    report = PollReport()
    for key in sorted(box.iterkeys()):
        try:
            message = box.get_message(key)
        except (KeyError, OSError):
            continue  # taken by a concurrent poller
        if message.get_subdir() != "new":
            continue
        try:
            raw = box.get_bytes(key)
        except (KeyError, OSError):
            continue
        try:
            result = handle(raw)
        except (OperationalError, SQLTimeoutError):
            raise  # the database is away: leave every message in new/ for the next poll
        except Exception as exc:
            reason = exc.detail if isinstance(exc, PatronError) else f"{type(exc).__name__}: {exc}"
            report.failed.append((key, reason))
            _move_aside(box, key, raw, failed_dir)
            continue
        report.processed.append((key, result))
        if delete:
            box.discard(key)
        else:
            message.set_subdir("cur")
            message.add_flag("S")
            box[key] = message
    return report


def _move_aside(box: mailbox.Maildir, key: str, raw: bytes, failed_dir: Path) -> None:
    failed_dir.mkdir(parents=True, exist_ok=True)
    (failed_dir / key).write_bytes(raw)
    box.discard(key)
