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

**Read back.** Every mail carries ``X-Patron-Message: <outbox id>.<signature>``
(``patron_tag``), by which ``bounces`` matches a DSN or complaint to its message. SMS,
WeChat and push messages are claimed by ``webhook.deliver`` (``claim(webhook=True)``),
not here. ``DeliveryLoop`` runs both on a thread of its own for ``patron worker`` and
``patron serve``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, TypeVar

import aiosmtplib
from sqlalchemy import Engine, exists, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from patron.campaigns import tracking
from patron.campaigns.consent import address_of, consents
from patron.campaigns.models import (
    ChannelEndpoint,
    EventKind,
    MessageStatus,
    OutboxMessage,
    SuppressionReason,
)
from patron.config import Settings, get_settings
from patron.customers.models import Channel, Customer
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


def patron_tag(store: Store, message_id: int) -> str:
    """The ``X-Patron-Message`` header of a message: its outbox id, signed with the
    store's secret, so a bounce or complaint quoting it finds the message and a forged
    one finds nothing (see ``bounces``)."""
    digest = hmac.new(
        store.signing_secret.encode(), f"message:{message_id}".encode(), hashlib.sha256
    ).digest()
    return f"{message_id}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()[:22]}"


def build_message(msg: OutboxMessage, sender: str, store: Store | None = None) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = msg.recipient
    mail["Subject"] = msg.subject
    mail["Message-ID"] = msg.message_id
    mail["Date"] = format_datetime(msg.created_at)
    if store is not None:
        mail["X-Patron-Message"] = patron_tag(store, msg.id)
    for name, value in msg.headers.items():
        mail[name] = str(value)
    mail.set_content(msg.body_text)
    if msg.body_html:
        mail.add_alternative(msg.body_html, subtype="html")
    return mail


def claim(
    session: Session,
    now: datetime,
    limit: int,
    lease: timedelta,
    store_id: int | None = None,
    *,
    webhook: bool = False,
) -> list[Claimed]:
    """Take up to ``limit`` due messages for this run (see the module docstring): email
    ones, or with ``webhook`` those of the other channels whose store has that channel's
    endpoint enabled (the others wait, queued, until it is)."""
    channel_ok: ColumnElement[bool]
    if webhook:
        channel_ok = exists().where(
            ChannelEndpoint.store_id == OutboxMessage.store_id,
            ChannelEndpoint.channel == OutboxMessage.channel,
            ChannelEndpoint.enabled.is_(True),
        )
    else:
        channel_ok = OutboxMessage.channel == Channel.email
    query = (
        select(OutboxMessage.id, OutboxMessage.store_id)
        .where(
            channel_ok,
            or_(
                (OutboxMessage.status == MessageStatus.queued)
                & (OutboxMessage.next_attempt_at <= now),
                (OutboxMessage.status == MessageStatus.sending)
                & (OutboxMessage.claimed_at < now - lease),
            ),
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


def recheck(session: Session, store: Store, msg: OutboxMessage) -> str | None:
    """Why a claimed message may no longer go (None: it may), asked just before sending."""
    if not msg.recipient:
        return "erased"
    if consents.is_suppressed(session, store, msg.channel, msg.recipient):
        return "address suppressed"
    if msg.needs_consent:
        customer = session.get(Customer, msg.customer_id) if msg.customer_id else None
        if customer is None or address_of(customer, msg.channel) != msg.recipient:
            return "address changed since queued"
        if not consents.may_contact(session, store, customer.id, msg.channel):
            return "no consent"
    return None


def _prepare(engine: Engine | None, c: Claimed, sender: str) -> EmailMessage | None:
    """The message to send, or None when it may no longer go (then marked suppressed)."""
    with unit_of_work(engine) as session:
        msg = session.get(OutboxMessage, c.id)
        store = session.get(Store, c.store_id)
        if msg is None or store is None:
            return None
        if msg.status is not MessageStatus.sending or msg.claimed_at != c.claimed_at:
            return None  # another run took it over
        reason = recheck(session, store, msg)
        if reason is None:
            return build_message(msg, sender, store)
        msg.status, msg.last_error = MessageStatus.suppressed, reason
        return None


def _backoff(settings: Settings, attempts: int) -> timedelta:
    return timedelta(seconds=settings.mail_retry_seconds * 2 ** max(attempts - 1, 0))


def retry_later(
    engine: Engine | None, c: Claimed, settings: Settings, now: datetime, error: str
) -> bool:
    """After a temporary failure: queued again with backoff (True), or failed when out
    of attempts (False)."""
    with unit_of_work(engine) as session:
        attempts = session.scalar(select(OutboxMessage.attempts).where(OutboxMessage.id == c.id))
    attempts = attempts or 1
    if attempts >= settings.mail_max_attempts:
        _finish(engine, c, status=MessageStatus.failed, last_error=error)
        return False
    _finish(
        engine,
        c,
        status=MessageStatus.queued,
        next_attempt_at=now + _backoff(settings, attempts),
        last_error=error,
    )
    return True


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
                if retry_later(engine, c, settings, now, error):
                    retried += 1
                else:
                    failed += 1
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
        tracking.add_event(session, msg, EventKind.bounce, now, permanent=True, detail=error)
        return True


def claim_batch(
    engine: Engine | None,
    store_slug: str | None,
    now: datetime,
    limit: int,
    settings: Settings,
    *,
    webhook: bool = False,
) -> list[Claimed]:
    """:func:`claim` in a unit of work of its own (committed before anything is sent),
    for every store or the one of ``store_slug`` (unknown: 404)."""
    with unit_of_work(engine) as session:
        store_id: int | None = None
        if store_slug is not None:
            store_id = session.scalar(select(Store.id).where(Store.slug == store_slug))
            if store_id is None:
                raise NotFound(f"No store {store_slug!r}.")
        lease = timedelta(seconds=settings.mail_lease_seconds)
        return claim(session, now, limit, lease, store_id, webhook=webhook)


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
    batch = claim_batch(engine, store_slug, now, limit, settings)
    if not batch:
        return DeliveryRun()
    return run_coroutine(_deliver_batch(engine, batch, now, settings, on_sent))


# -- the delivery loop (patron worker, patron serve) ----------------------------------------


def mail_configured(settings: Settings) -> bool:
    """Whether SMTP is configured: ``PATRON_SMTP_HOST`` is set (the default host is only
    a default, and a worker must not pile up retries against a relay nobody set up)."""
    return "smtp_host" in settings.model_fields_set


def deliver_due(
    engine: Engine | None = None,
    *,
    limit: int = 100,
    now: datetime | None = None,
    settings: Settings | None = None,
    store_slug: str | None = None,
) -> tuple[DeliveryRun, DeliveryRun]:
    """One delivery pass over every store (or one): mail over SMTP when it is configured,
    and the messages of channels whose webhook is enabled. Returns (mail, webhook)."""
    from patron.campaigns import webhook

    settings = settings or get_settings()
    mail = DeliveryRun()
    if mail_configured(settings):
        mail = deliver(engine, store_slug, limit=limit, now=now, settings=settings)
    hooks = webhook.deliver(engine, store_slug, limit=limit, now=now, settings=settings)
    return mail, hooks


class DeliveryLoop:
    """Delivers the outbox on a thread of its own, every ``interval`` seconds (at once
    again when a batch was full). Not inside the jobs' per-store transactions: delivery
    commits per message and waits on the network. Does nothing while neither SMTP
    (``PATRON_SMTP_HOST``) nor any channel webhook is configured."""

    def __init__(
        self, engine: Engine | None, interval: float, settings: Settings | None = None
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.settings = settings or get_settings()
        self.runs = 0
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="patron-delivery", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(
        self, limit: int = 100, store_slug: str | None = None
    ) -> tuple[DeliveryRun, DeliveryRun]:
        mail, hooks = deliver_due(
            self.engine, limit=limit, settings=self.settings, store_slug=store_slug
        )
        self.runs += 1
        self.sent += mail.sent + hooks.sent
        return mail, hooks

    def _loop(self) -> None:
        limit = 100
        while not self._stop.is_set():
            full = False
            try:
                mail, hooks = self.run_once(limit)
                if mail.claimed or hooks.claimed:
                    log.info("delivery: mail %s; webhooks %s", mail, hooks)
                full = mail.claimed >= limit or hooks.claimed >= limit
            except Exception:
                log.exception("delivery failed")
            if not full:
                self._stop.wait(self.interval)
