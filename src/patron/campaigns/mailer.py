"""Delivery of the outbox over SMTP (aiosmtplib).

**A run.** ``deliver`` *claims* a batch first, in its own committed transaction: due
``queued`` messages (and ``sending`` ones whose claim is older than the lease, left by a
crashed run) become ``sending`` with ``claimed_at`` = the run's instant and
``attempts`` + 1. PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``, so concurrent runs
take disjoint batches; SQLite has one writer at a time (``BEGIN IMMEDIATE``). Then each
message is sent over one SMTP connection and recorded in its own small transaction right
after the server's answer, guarded by its claim (``status = 'sending' AND claimed_at =
<this run's claim>``) so a run that lost its lease writes nothing.

**Answers.** Accepted → ``sent`` (``sent_at``). A temporary failure (4xx, connection
error, timeout) → ``queued`` again after ``mail_retry_seconds * 2 ** (attempts - 1)``;
after ``mail_max_attempts`` → ``failed``. A permanent rejection of the recipient (5xx to
``RCPT``) → ``failed`` and the address is suppressed (``hard_bounce``); another 5xx
(sender or content refused) → ``failed`` without suppression.

**Consent, again.** Just before sending, ``consents.may_contact`` is asked again (for a
transactional message: only whether the address is suppressed); a customer who
unsubscribed, or whose address changed, since the message was queued is not mailed: the
message becomes ``suppressed``.

**No double send, and its limit.** A message marked ``sent`` is never claimed again.
The one window left is at-least-once: the server accepted a message and the process died
before its ``sent`` was committed. After the lease (``mail_lease_seconds``, default 10
minutes) that message is sent again, with the same ``Message-ID`` (fixed when queued),
so a receiving system can recognise the duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, TypeVar

import aiosmtplib
from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from patron.campaigns.consent import address_of, consents
from patron.campaigns.models import MessageStatus, OutboxMessage, SuppressionReason
from patron.config import Settings, get_settings
from patron.customers.models import Customer
from patron.db import unit_of_work
from patron.errors import NotFound
from patron.kit.clock import as_utc_or_now
from patron.stores.models import Store

log = logging.getLogger("patron.mailer")
T = TypeVar("T")


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, also when this thread already
    runs an event loop (an async caller): then on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="patron-mailer") as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass(frozen=True)
class DeliveryRun:
    claimed: int = 0
    sent: int = 0
    retried: int = 0  # temporary failure, queued again
    failed: int = 0
    bounced: int = 0  # of the failed: hard bounces, now suppressed
    suppressed: int = 0  # not sent: no consent or a suppressed address


@dataclass(frozen=True)
class Claimed:
    id: int
    store_id: int
    claimed_at: datetime


def build_message(msg: OutboxMessage, sender: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = msg.recipient
    mail["Subject"] = msg.subject
    mail["Message-ID"] = msg.message_id
    mail["Date"] = format_datetime(msg.created_at)
    for name, value in msg.headers.items():
        mail[name] = str(value)
    mail.set_content(msg.body_text)
    if msg.body_html:
        mail.add_alternative(msg.body_html, subtype="html")
    return mail


def claim(
    session: Session, now: datetime, limit: int, lease: timedelta, store_id: int | None = None
) -> list[Claimed]:
    """Take up to ``limit`` due messages for this run (see the module docstring)."""
    query = (
        select(OutboxMessage.id, OutboxMessage.store_id)
        .where(
            or_(
                (OutboxMessage.status == MessageStatus.queued)
                & (OutboxMessage.next_attempt_at <= now),
                (OutboxMessage.status == MessageStatus.sending)
                & (OutboxMessage.claimed_at < now - lease),
            )
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if store_id is not None:
        query = query.where(OutboxMessage.store_id == store_id)
    rows = list(session.execute(query))
    if rows:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([r.id for r in rows]))
            .values(
                status=MessageStatus.sending,
                claimed_at=now,
                attempts=OutboxMessage.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
    return [Claimed(r.id, r.store_id, now) for r in rows]


def _finish(engine: Engine | None, c: Claimed, **values: object) -> bool:
    """Record a message's outcome if this run still holds its claim."""
    with unit_of_work(engine) as session:
        result = session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == c.id,
                OutboxMessage.status == MessageStatus.sending,
                OutboxMessage.claimed_at == c.claimed_at,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return getattr(result, "rowcount", 0) == 1


def mark_sent(engine: Engine | None, c: Claimed, now: datetime) -> bool:
    return _finish(engine, c, status=MessageStatus.sent, sent_at=now, last_error=None)


def _prepare(engine: Engine | None, c: Claimed, sender: str) -> EmailMessage | None:
    """The message to send, or None when it may no longer go (then marked suppressed)."""
    with unit_of_work(engine) as session:
        msg = session.get(OutboxMessage, c.id)
        store = session.get(Store, c.store_id)
        if msg is None or store is None:
            return None
        if msg.status is not MessageStatus.sending or msg.claimed_at != c.claimed_at:
            return None  # another run took it over
        reason: str | None = None
        if consents.is_suppressed(session, store, msg.channel, msg.recipient):
            reason = "address suppressed"
        elif msg.needs_consent:
            customer = session.get(Customer, msg.customer_id) if msg.customer_id else None
            if customer is None or address_of(customer, msg.channel) != msg.recipient:
                reason = "address changed since queued"
            elif not consents.may_contact(session, store, customer.id, msg.channel):
                reason = "no consent"
        if reason is None:
            return build_message(msg, sender)
        msg.status, msg.last_error = MessageStatus.suppressed, reason
        return None


def _backoff(settings: Settings, attempts: int) -> timedelta:
    return timedelta(seconds=settings.mail_retry_seconds * 2 ** max(attempts - 1, 0))


def _classify(exc: Exception) -> tuple[int | None, bool]:
    """(SMTP code, whether it rejected the recipient) of a failed send."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return exc.recipients[0].code, True
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return exc.code, True
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code, False
    return None, False


async def _deliver_batch(
    engine: Engine | None,
    batch: list[Claimed],
    now: datetime,
    settings: Settings,
    on_sent: Callable[[Engine | None, Claimed, datetime], bool],
) -> DeliveryRun:
    sent = retried = failed = bounced = suppressed = 0
    client: aiosmtplib.SMTP | None = None

    async def connect() -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user,
            password=settings.smtp_password,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )
        await smtp.connect()
        return smtp

    try:
        for c in batch:
            mail = _prepare(engine, c, settings.mail_from)
            if mail is None:
                suppressed += 1
                continue
            try:
                client = client or await connect()
                await client.send_message(mail)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                if client is not None:
                    client.close()  # start the next message on a clean connection
                    client = None
                code, recipient = _classify(exc)
                error = f"{code or type(exc).__name__}: {exc}"[:500]
                log.warning("mail %s: %s", c.id, error)
                if code is not None and code >= 500:
                    failed += 1
                    if _finish(engine, c, status=MessageStatus.failed, last_error=error):
                        bounced += recipient and _bounce(engine, c, error, now)
                    continue
                with unit_of_work(engine) as session:
                    attempts = session.scalar(
                        select(OutboxMessage.attempts).where(OutboxMessage.id == c.id)
                    )
                attempts = attempts or 1
                if attempts >= settings.mail_max_attempts:
                    failed += 1
                    _finish(engine, c, status=MessageStatus.failed, last_error=error)
                else:
                    retried += 1
                    _finish(
                        engine,
                        c,
                        status=MessageStatus.queued,
                        next_attempt_at=now + _backoff(settings, attempts),
                        last_error=error,
                    )
                continue
            on_sent(engine, c, now)
            sent += 1
    finally:
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()
    return DeliveryRun(len(batch), sent, retried, failed, bounced, suppressed)


def _bounce(engine: Engine | None, c: Claimed, error: str, now: datetime) -> bool:
    """Suppress the address of a hard-bounced message (once)."""
    with unit_of_work(engine) as session:
        msg = session.get(OutboxMessage, c.id)
        store = session.get(Store, c.store_id)
        if msg is None or store is None:
            return False
        consents.suppress(
            session, store, msg.channel, msg.recipient, SuppressionReason.hard_bounce, error, now
        )
        return True


def deliver(
    engine: Engine | None = None,
    store_slug: str | None = None,
    limit: int = 100,
    now: datetime | None = None,
    *,
    settings: Settings | None = None,
    on_sent: Callable[[Engine | None, Claimed, datetime], bool] = mark_sent,
) -> DeliveryRun:
    """Claim and send up to ``limit`` due messages (every store, or one by slug)."""
    now = as_utc_or_now(now)
    settings = settings or get_settings()
    with unit_of_work(engine) as session:
        store_id: int | None = None
        if store_slug is not None:
            store_id = session.scalar(select(Store.id).where(Store.slug == store_slug))
            if store_id is None:
                raise NotFound(f"No store {store_slug!r}.")
        batch = claim(session, now, limit, timedelta(seconds=settings.mail_lease_seconds), store_id)
    if not batch:
        return DeliveryRun()
    return run_coroutine(_deliver_batch(engine, batch, now, settings, on_sent))
