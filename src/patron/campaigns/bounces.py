"""Bounces and complaints read back: delivery status notifications (RFC 3464) and abuse
reports (ARF, RFC 5965), from the MTA (``patron campaigns bounce``, a Maildir) or a
provider's JSON (``POST /v1/bounces``).

**Reading.** A DSN is ``multipart/report; report-type=delivery-status`` whose
``message/delivery-status`` part has a block per recipient: ``Action: failed`` with
``Status: 5.x.x`` is a *hard* bounce, ``4.x.x`` (or ``Action: delayed``) a *soft* one;
``delivered``, ``relayed`` and ``expanded`` are not bounces. An ARF report is
``multipart/report; report-type=feedback-report`` whose ``message/feedback-report`` part
says ``Feedback-Type: abuse`` (any other feedback type is recorded as a complaint too,
with its type in the detail, except ``not-spam``).

**Matching.** The returned original (``message/rfc822`` or ``text/rfc822-headers``)
carries the ``X-Patron-Message`` header Patron puts on every mail (``<outbox id>.<HMAC
under the store's secret>``: a forged one matches nothing) and its ``Message-ID``
(random, fixed when queued); a DSN's ``Original-Envelope-Id`` is tried as a tag too.
Nothing else is trusted: a report that matches no message changes nothing.

**Effect.** A hard bounce or a complaint suppresses the message's address
(``hard_bounce`` / ``complaint``) and records an event; a soft bounce only records an
event (the outbox's own retries handle temporary failures).
"""

from __future__ import annotations

import email
import email.policy
import hmac
import mailbox
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLTimeoutError
from sqlalchemy.orm import Session

from patron.campaigns import tracking
from patron.campaigns.consent import consents, normalize
from patron.campaigns.mailer import patron_tag
from patron.campaigns.models import EventKind, OutboxMessage, SuppressionReason
from patron.customers.models import Channel
from patron.kit.clock import as_utc_or_now
from patron.stores.models import Store

Kind = Literal["hard", "soft", "complaint"]
MAX_BYTES = 10 * 1024 * 1024


class NotAReport(ValueError):
    """The message is neither a DSN nor an ARF report (e.g. an auto-reply)."""


@dataclass(frozen=True)
class Report:
    kind: Kind
    recipient: str | None = None
    status: str | None = None  # e.g. 5.1.1, or the feedback type of a complaint
    diagnostic: str | None = None
    tag: str | None = None  # X-Patron-Message (or Original-Envelope-Id)
    message_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    action: Literal["hard_bounce", "soft_bounce", "complaint", "unmatched"]
    message: int | None = None  # the outbox id matched
    suppressed: bool = False  # a new suppression


# -- parsing --------------------------------------------------------------------------------


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    return [HeaderParser().parsestr(chunk) for chunk in text.replace("\r\n", "\n").split("\n\n")]


def _original(report: Message) -> Message | None:
    for part in report.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if ctype == "text/rfc822-headers":
            return HeaderParser().parsestr(str(part.get_payload(decode=False)))
    return None


def _address(value: str | None) -> str | None:
    """``rfc822; a@b.c`` → ``a@b.c``."""
    if not value:
        return None
    address = value.split(";", 1)[-1].strip().strip("<>")
    return address or None


def parse(raw: bytes) -> Report:
    """The report in a DSN or ARF message; ``NotAReport`` for anything else."""
    if len(raw) > MAX_BYTES:
        raise NotAReport("too large for a report")
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if msg.get_content_type() != "multipart/report":
        raise NotAReport("not a multipart/report")
    report_type = str(msg.get_param("report-type") or "").lower()
    original = _original(msg)
    tag = original.get("X-Patron-Message") if original is not None else None
    message_id = original.get("Message-ID") if original is not None else None
    tag = tag.strip() if tag else None
    message_id = message_id.strip() if message_id else None
    for part in msg.walk():
        ctype = part.get_content_type()
        if report_type == "delivery-status" and ctype == "message/delivery-status":
            blocks = _blocks(part)
            envelope = next((b.get("Original-Envelope-Id") for b in blocks if b), None)
            for block in blocks[1:] or blocks:
                action = (block.get("Action") or "").strip().lower()
                status = (block.get("Status") or "").strip().split(" ", 1)[0]
                if action not in ("failed", "delayed"):
                    continue
                kind: Kind = "hard" if action == "failed" and status.startswith("5") else "soft"
                return Report(
                    kind=kind,
                    recipient=_address(block.get("Final-Recipient"))
                    or _address(block.get("Original-Recipient")),
                    status=status or None,
                    diagnostic=(block.get("Diagnostic-Code") or "").strip()[:200] or None,
                    tag=tag or (envelope.strip() if envelope else None),
                    message_id=message_id,
                )
            raise NotAReport("a delivery status without a failed recipient")
        if report_type == "feedback-report" and ctype == "message/feedback-report":
            fields: dict[str, str] = {}
            for block in _blocks(part):
                for name, value in block.items():
                    fields.setdefault(name.lower(), str(value).strip())
            feedback = fields.get("feedback-type", "").lower()
            if not feedback or feedback == "not-spam":
                raise NotAReport(f"feedback type {feedback or 'missing'}")
            original_rcpt = fields.get("original-rcpt-to") or (
                original.get("To") if original is not None else None
            )
            return Report(
                kind="complaint",
                recipient=_address(original_rcpt),
                status=feedback,
                tag=tag,
                message_id=message_id,
            )
    raise NotAReport(f"report type {report_type or 'missing'} without its report part")


# -- applying -------------------------------------------------------------------------------


def find_message(
    session: Session, tag: str | None, message_id: str | None, store: Store | None = None
) -> tuple[OutboxMessage, Store] | None:
    """The outbox message a report is about (by signed tag, then Message-ID)."""
    if tag:
        head, _, _ = tag.partition(".")
        msg = session.get(OutboxMessage, int(head)) if head.isdigit() and len(head) < 19 else None
        found = session.get(Store, msg.store_id) if msg is not None else None
        if (
            msg is not None
            and found is not None
            and (store is None or found.id == store.id)
            and hmac.compare_digest(patron_tag(found, msg.id), tag)
        ):
            return msg, found
    if message_id:
        wanted = message_id if message_id.startswith("<") else f"<{message_id}>"
        query = select(OutboxMessage).where(OutboxMessage.message_id == wanted[:128])
        if store is not None:
            query = query.where(OutboxMessage.store_id == store.id)
        msg = session.scalars(query.limit(1)).first()
        found = session.get(Store, msg.store_id) if msg is not None else None
        if msg is not None and found is not None:
            return msg, found
    return None


def apply(
    session: Session,
    report: Report,
    now: datetime | None = None,
    *,
    store: Store | None = None,
    address: str | None = None,
) -> Outcome:
    """Suppress and record what a report says (flushes, never commits). ``address``: the
    address reported (the provider's JSON) when no message matches."""
    now = as_utc_or_now(now)
    found = find_message(session, report.tag, report.message_id, store)
    msg, store = found if found is not None else (None, store)
    detail = " ".join(x for x in (report.status, report.diagnostic) if x) or None
    action: Literal["hard_bounce", "soft_bounce", "complaint"] = (
        "complaint"
        if report.kind == "complaint"
        else ("hard_bounce" if report.kind == "hard" else "soft_bounce")
    )
    target = msg.recipient if msg is not None and msg.recipient else address
    channel = msg.channel if msg is not None else Channel.email
    if msg is None and (store is None or not address):
        return Outcome("unmatched")
    suppressed = False
    if report.kind != "soft" and target and store is not None:
        reason = (
            SuppressionReason.complaint
            if report.kind == "complaint"
            else SuppressionReason.hard_bounce
        )
        _, suppressed = consents.suppress(session, store, channel, target, reason, detail, now)
    if msg is not None:
        kind = EventKind.complaint if report.kind == "complaint" else EventKind.bounce
        tracking.add_event(
            session,
            msg,
            kind,
            now,
            permanent=None if report.kind == "complaint" else report.kind == "hard",
            detail=detail,
        )
    return Outcome(action, msg.id if msg is not None else None, suppressed)


def report_from_provider(
    session: Session,
    store: Store,
    address: str,
    kind: Kind,
    message_id: str | None = None,
    now: datetime | None = None,
) -> Outcome:
    """A provider's bounce or complaint (``POST /v1/bounces``): matched by Message-ID,
    else the latest message to the address; the address is suppressed in any case (hard
    and complaint)."""
    report = Report(kind=kind, recipient=address, status=f"provider:{kind}", message_id=message_id)
    if find_message(session, None, message_id, store) is None:
        latest = session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.store_id == store.id,
                OutboxMessage.channel == Channel.email,
                OutboxMessage.recipient == normalize(Channel.email, address),
                OutboxMessage.sent_at.is_not(None),
            )
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        ).first()
        if latest is not None:
            report = Report(
                kind=kind,
                recipient=address,
                status=f"provider:{kind}",
                message_id=latest.message_id,
            )
    return apply(session, report, now, store=store, address=address)


# -- a Maildir of reports -------------------------------------------------------------------


@dataclass
class PollReport:
    outcomes: list[Outcome]
    skipped: list[tuple[str, str]]  # (key, why): not a report


def poll_maildir(path: Path, handle: Callable[[Report], Outcome]) -> PollReport:
    """Apply every new message of a Maildir (each in the caller's transaction per call
    of ``handle``), then move it to ``cur`` marked seen. A message that is not a report
    is moved too, and listed as skipped. A database outage stops the poll and leaves the
    rest in ``new``."""
    try:
        box = mailbox.Maildir(str(path), factory=None, create=False)
    except (mailbox.NoSuchMailboxError, OSError) as exc:
        raise NotAReport(f"{path}: not a Maildir: {exc}") from None
    if not (path / "new").is_dir() or not (path / "cur").is_dir():
        raise NotAReport(f"{path}: not a Maildir (needs cur/, new/ and tmp/)")
    out = PollReport([], [])
    for key in sorted(box.iterkeys()):
        try:
            message = box.get_message(key)
            if message.get_subdir() != "new":
                continue
            raw = box.get_bytes(key)
        except (KeyError, OSError):
            continue  # taken by a concurrent poller
        try:
            out.outcomes.append(handle(parse(raw)))
        except NotAReport as exc:
            out.skipped.append((key, str(exc)))
        except (OperationalError, SQLTimeoutError):
            raise
        message.set_subdir("cur")
        message.add_flag("S")
        box[key] = message
    return out
