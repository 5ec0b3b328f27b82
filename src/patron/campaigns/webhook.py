"""The signed webhook channel: SMS, WeChat and push messages POSTed to the store's
provider gateway (one endpoint per store and channel, ``channel_endpoints``).

**The request.** ``POST <url>`` with the JSON body ``{"id", "message_id", "channel",
"to", "text", "customer_external_id", "sent_at"}`` and the headers

- ``Patron-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
  (Stripe-style: the receiver recomputes it over the raw body, compares in constant time
  and refuses an old ``t``; see ``verify``),
- ``Idempotency-Key: <message_id>``: the same on every attempt of one message, so the
  receiver can drop a duplicate.

**Answers.** 2xx → ``sent``. 429, 5xx, a timeout or a connection error → queued again
with the mail backoff (``mail_retry_seconds · 2^(attempts−1)``), ``failed`` after
``mail_max_attempts``. Any other status → ``failed``.

**Claims.** The same as mail (``mailer.claim`` with ``webhook=True``): a batch is claimed
in its own transaction, each answer recorded at once if the run still holds the claim;
a crash re-sends after the lease only what was not recorded, with the same
``Idempotency-Key``. A message of a channel whose endpoint is missing or disabled stays
queued until it is enabled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from patron.campaigns.mailer import (
    Claimed,
    DeliveryRun,
    _finish,
    claim_batch,
    mark_sent,
    recheck,
    retry_later,
)
from patron.campaigns.models import ChannelEndpoint, MessageStatus, OutboxMessage
from patron.config import Settings, get_settings
from patron.customers.models import Channel, Customer
from patron.db import unit_of_work
from patron.errors import Invalid, NotFound
from patron.kit.clock import as_utc_or_now
from patron.stores.models import Store

log = logging.getLogger("patron.webhook")
CHANNELS = (Channel.sms, Channel.wechat, Channel.push)
SIGNATURE_HEADER = "Patron-Signature"
TOLERANCE_SECONDS = 300


# -- signing --------------------------------------------------------------------------------


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Patron-Signature`` header value of a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: the header's ``v1`` is the HMAC of ``"<t>.<body>"`` and
    ``t`` is recent (a replayed request is refused)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts.get("v1", ""))


# -- endpoints (per store and channel) --------------------------------------------------------


def _channel(channel: Channel) -> Channel:
    if channel not in CHANNELS:
        message = "email is delivered over SMTP; webhooks serve sms, wechat and push"
        raise Invalid(f"channel: {message}", errors=[{"field": "channel", "message": message}])
    return channel


def get_endpoint(session: Session, store: Store, channel: Channel) -> ChannelEndpoint:
    found = session.scalar(
        select(ChannelEndpoint).where(
            ChannelEndpoint.store_id == store.id, ChannelEndpoint.channel == _channel(channel)
        )
    )
    if found is None:
        raise NotFound(f"No {channel.value} endpoint in this store.")
    return found


def put_endpoint(
    session: Session,
    store: Store,
    channel: Channel,
    url: str,
    enabled: bool,
    *,
    rotate_secret: bool = False,
    now: datetime | None = None,
) -> tuple[ChannelEndpoint, str | None, bool]:
    """Create or change a channel's endpoint. Returns (the row, the new secret when one
    was issued — on creation or rotation, shown this once —, whether it is new)."""
    now = as_utc_or_now(now)
    _channel(channel)
    row = session.scalar(
        select(ChannelEndpoint).where(
            ChannelEndpoint.store_id == store.id, ChannelEndpoint.channel == channel
        )
    )
    issued: str | None = None
    created = row is None
    if row is None:
        issued = "whsec_" + secrets.token_urlsafe(32)
        row = ChannelEndpoint(
            store_id=store.id,
            channel=channel,
            url=url,
            secret=issued,
            enabled=enabled,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
    else:
        row.url, row.enabled, row.updated_at = url, enabled, now
        if rotate_secret:
            issued = row.secret = "whsec_" + secrets.token_urlsafe(32)
    session.flush()
    return row, issued, created


def any_enabled(engine: Engine | None = None) -> bool:
    with unit_of_work(engine) as session:
        return (
            session.scalar(select(ChannelEndpoint.id).where(ChannelEndpoint.enabled.is_(True)))
            is not None
        )


# -- delivering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    url: str
    secret: str
    message_id: str
    payload: dict[str, object]


def _prepare(engine: Engine | None, c: Claimed, now: datetime) -> Outgoing | str:
    """The request to make, or why not: "suppressed" (marked so), "lost" (another run
    holds it), "disabled" (queued again until its endpoint is enabled)."""
    with unit_of_work(engine) as session:
        msg = session.get(OutboxMessage, c.id)
        store = session.get(Store, c.store_id)
        if msg is None or store is None:
            return "lost"
        if msg.status is not MessageStatus.sending or msg.claimed_at != c.claimed_at:
            return "lost"
        endpoint = session.scalar(
            select(ChannelEndpoint).where(
                ChannelEndpoint.store_id == store.id, ChannelEndpoint.channel == msg.channel
            )
        )
        if endpoint is None or not endpoint.enabled:
            msg.status, msg.claimed_at = MessageStatus.queued, None
            msg.attempts = max(msg.attempts - 1, 0)
            return "disabled"
        reason = recheck(session, store, msg)
        if reason is not None:
            msg.status, msg.last_error = MessageStatus.suppressed, reason
            return "suppressed"
        customer = session.get(Customer, msg.customer_id) if msg.customer_id else None
        return Outgoing(
            url=endpoint.url,
            secret=endpoint.secret,
            message_id=msg.message_id,
            payload={
                "id": msg.id,
                "message_id": msg.message_id,
                "channel": msg.channel.value,
                "to": msg.recipient,
                "text": msg.body_text,
                "customer_external_id": customer.external_id if customer else None,
                "sent_at": now.isoformat(),
            },
        )


def send(client: httpx.Client, out: Outgoing) -> httpx.Response:
    """POST one message, signed, with its idempotency key."""
    body = json.dumps(out.payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(out.secret, body, int(time.time())),
        "Idempotency-Key": out.message_id,
        "User-Agent": "Patron-Webhook/1",
    }
    return client.post(out.url, content=body, headers=headers)


def deliver(
    engine: Engine | None = None,
    store_slug: str | None = None,
    limit: int = 100,
    now: datetime | None = None,
    *,
    settings: Settings | None = None,
    on_sent: Callable[[Engine | None, Claimed, datetime], bool] = mark_sent,
) -> DeliveryRun:
    """Claim and POST up to ``limit`` due SMS, WeChat and push messages (every store, or
    one by slug) to their stores' enabled endpoints."""
    now = as_utc_or_now(now)
    settings = settings or get_settings()
    batch = claim_batch(engine, store_slug, now, limit, settings, webhook=True)
    if not batch:
        return DeliveryRun()
    sent = retried = failed = suppressed = 0
    timeout = httpx.Timeout(settings.webhook_timeout_seconds)
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for c in batch:
            out = _prepare(engine, c, now)
            if out == "suppressed":
                suppressed += 1
            if not isinstance(out, Outgoing):
                continue
            try:
                res = send(client, out)
            except httpx.HTTPError as exc:  # timeouts, refused connections, bad answers
                error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("webhook %s: %s", c.id, error)
                if retry_later(engine, c, settings, now, error):
                    retried += 1
                else:
                    failed += 1
                continue
            if res.is_success:
                on_sent(engine, c, now)
                sent += 1
                continue
            error = f"HTTP {res.status_code}: {res.text[:200]}"[:500]
            log.warning("webhook %s: %s", c.id, error)
            if res.status_code == 429 or res.status_code >= 500:
                if retry_later(engine, c, settings, now, error):
                    retried += 1
                    continue
            else:
                _finish(engine, c, status=MessageStatus.failed, last_error=error)
            failed += 1
    return DeliveryRun(len(batch), sent, retried, failed, 0, suppressed)
