"""The outbox: messages rendered and queued in the transaction that decides to send
them, delivered later by :mod:`patron.campaigns.mailer`.

**Exactly once in the outbox.** Every message has a ``key`` unique per store (e.g.
``survey-invitation:<id>:<sent_count>``); queueing is ``INSERT ... ON CONFLICT DO
NOTHING``, so a repeated or concurrent call queues nothing twice. Survey invitations are
queued and marked sent (``invitations.mark_sent``) in the same transaction: an
invitation (or a reminder of it) is queued exactly once, or not at all.

**Many at once.** ``enqueue_many`` queues a batch (a campaign's 1,000 recipients) with
one multi-row insert per ``CHUNK`` and says which messages are new. A tracked link's
token signs the message id, so the ids are taken from the table's sequence before the
insert on PostgreSQL (the HTML is inserted tracked); on SQLite the new rows' HTML is
rewritten in one executemany once their ids are known.

**Consent.** Survey mail is queued only when ``consents.may_contact`` allows email, and
the mailer asks again just before sending (an unsubscribe in between is honoured). It
carries ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` (RFC 2369, RFC 8058). An
opt-in confirmation is transactional: it only needs an address that is not suppressed.

Nothing here commits: the caller's unit of work does.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from patron.campaigns import tracking
from patron.campaigns.consent import address_of, consents, normalize
from patron.campaigns.models import DeliverySettings, MessageStatus, OutboxMessage
from patron.campaigns.schemas import DeliverySettingsOut
from patron.customers.models import Channel, Customer
from patron.feedback.service import invitations, lang_of, public_base
from patron.kit.clock import as_utc, as_utc_or_now, local_date, utcnow
from patron.kit.repository import chunks, insert_rows, table_of, update_by_id
from patron.stores.models import Store

KIND_SURVEY = "survey_invitation"
KIND_OPT_IN = "opt_in_confirmation"
BATCH = 200
CHUNK = 1000  # messages per statement in enqueue_many

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("patron.campaigns", "templates_mail"),
    autoescape=jinja2.select_autoescape(["html"]),
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)

SUBJECTS: dict[str, dict[str, str]] = {
    KIND_SURVEY: {"en": "{store}: how did we do?", "zh": "{store}邀请您评价本次体验"},
    "survey_reminder": {
        "en": "Reminder — {store}: how did we do?",
        "zh": "提醒：{store}邀请您评价本次体验",
    },
    KIND_OPT_IN: {"en": "Please confirm your subscription to {store}", "zh": "请确认订阅{store}"},
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str = ""  # none for SMS, WeChat and push: ``text`` is the message


def render(kind: str, lang: str, subject_key: str | None = None, **context: Any) -> Rendered:
    """A mail of ``kind`` in ``lang`` (``en`` or ``zh``) from ``templates_mail``."""
    lang = "zh" if lang == "zh" else "en"
    subject = SUBJECTS[subject_key or kind][lang].format(store=context["store"])
    return Rendered(
        subject=subject,
        text=_ENV.get_template(f"{kind}.txt").render(lang=lang, **context),
        html=_ENV.get_template(f"{kind}.html").render(lang=lang, **context),
    )


def greeting(customer: Customer, lang: str) -> str:
    if lang == "zh":
        name = (customer.last_name or "") + (customer.first_name or "")
        return f"{name}，您好：" if name else "您好："
    return f"Hello {customer.first_name}," if customer.first_name else "Hello,"


@dataclass(frozen=True)
class EnqueueRun:
    queued: int = 0
    no_consent: int = 0  # left due: no email consent (another channel may deliver it)


@dataclass(frozen=True)
class Item:
    """One message for :meth:`Outbox.enqueue_many`."""

    recipient: str
    key: str
    mail: Rendered
    kind: str
    customer_id: int | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Queued:
    id: int
    new: bool  # False: a message with its key was queued before (nothing changed)


class Outbox:
    def enqueue(
        self,
        session: Session,
        store: Store,
        *,
        customer: Customer | None,
        recipient: str,
        kind: str,
        key: str,
        mail: Rendered,
        headers: dict[str, str] | None = None,
        needs_consent: bool = True,
        channel: Channel = Channel.email,
        now: datetime | None = None,
        not_before: datetime | None = None,
        base_url: str | None = None,
        track: bool = True,
    ) -> tuple[int, bool]:
        """Queue a message unless one with ``key`` exists in the store; returns (its id,
        whether it is new). Idempotent under concurrency (the unique key decides).

        ``channel``: email goes over SMTP; SMS, WeChat and push to the store's channel
        webhook (``mail.text`` is the message). ``not_before``: not sent earlier (quiet
        hours). An email's HTML gets tracked links and an open pixel (``track``; links
        point at ``base_url``, default ``PATRON_SURVEY_BASE_URL`` or the API's URL)."""
        item = Item(recipient, key, mail, kind, customer.id if customer else None, headers)
        (one,) = self.enqueue_many(
            session,
            store,
            [item],
            needs_consent=needs_consent,
            channel=channel,
            now=now,
            not_before=not_before,
            base_url=base_url,
            track=track,
        )
        return one.id, one.new

    def enqueue_many(
        self,
        session: Session,
        store: Store,
        items: Sequence[Item],
        *,
        needs_consent: bool = True,
        channel: Channel = Channel.email,
        now: datetime | None = None,
        not_before: datetime | None = None,
        base_url: str | None = None,
        track: bool = True,
    ) -> list[Queued]:
        """:meth:`enqueue` for many messages on one channel: each queued unless one with
        its key exists in the store (an item repeating an earlier item's key is not new
        either); returns each item's message, in order.

        In chunks of ``CHUNK``: one multi-row ``INSERT ... ON CONFLICT (store_id, key) DO
        NOTHING RETURNING id, key`` (COPY into a staging table on PostgreSQL), plus, for
        tracked HTML, the message ids reserved beforehand in one query on PostgreSQL (the
        tracked body is inserted as it is) or one executemany UPDATE on SQLite; a chunk
        that met existing keys reads their ids in one more query."""
        now = as_utc_or_now(now)
        email = channel is Channel.email
        at = max(now, as_utc(not_before)) if not_before else now
        base = public_base(base_url) if email and track else ""
        first: dict[str, Item] = {}
        for item in items:
            first.setdefault(item.key[:128], item)
        out: dict[str, Queued] = {}
        for chunk in chunks(list(first.values()), CHUNK):
            keys = [item.key[:128] for item in chunk]
            tracked = [email and track and bool(item.mail.html) for item in chunk]
            ids = _reserve_ids(session, len(chunk)) if any(tracked) else None
            rows: list[dict[str, Any]] = []
            for n, item in enumerate(chunk):
                row: dict[str, Any] = {
                    "store_id": store.id,
                    "customer_id": item.customer_id,
                    "channel": channel.value,
                    "kind": item.kind,
                    "key": keys[n],
                    "needs_consent": needs_consent,
                    "recipient": normalize(channel, item.recipient),
                    "subject": item.mail.subject[:255],
                    "body_text": item.mail.text,
                    "body_html": (item.mail.html or None) if email else None,
                    "headers": dict(item.headers or {}) if email else {},
                    "links": None,
                    "message_id": f"<{uuid.uuid4().hex}@patron>",
                    "status": MessageStatus.queued.value,
                    "attempts": 0,
                    "next_attempt_at": at,
                    "created_at": now,
                }
                if ids is not None:
                    row["id"] = ids[n]
                    if tracked[n]:
                        row["body_html"], row["links"] = _tracked(store, ids[n], item, base)
                rows.append(row)
            new = {
                str(k): int(i)
                for i, k in insert_rows(
                    session, MESSAGES, rows, conflict=("store_id", "key"), returning=("id", "key")
                )
            }
            if ids is None and any(tracked):
                # SQLite: the new messages' ids are known now; rewrite their tracked HTML.
                retrack: list[dict[str, Any]] = []
                for n, item in enumerate(chunk):
                    if tracked[n] and keys[n] in new:
                        body, links = _tracked(store, new[keys[n]], item, base)
                        retrack.append({"id": new[keys[n]], "body_html": body, "links": links})
                update_by_id(session, MESSAGES, retrack)
            old = [key for key in keys if key not in new]
            found: dict[str, int] = {}
            if old:
                found = {
                    str(k): int(i)
                    for k, i in session.execute(
                        select(OutboxMessage.key, OutboxMessage.id).where(
                            OutboxMessage.store_id == store.id, OutboxMessage.key.in_(old)
                        )
                    )
                }
            for key in keys:
                out[key] = Queued(new[key], True) if key in new else Queued(found[key], False)
        result: list[Queued] = []
        for item in items:
            queued = out[item.key[:128]]
            result.append(queued)
            out[item.key[:128]] = Queued(queued.id, False)  # a repeated key is not new
        return result

    def enqueue_survey_invitations(
        self,
        session: Session,
        store: Store,
        now: datetime | None = None,
        *,
        base_url: str | None = None,
    ) -> EnqueueRun:
        """Queue the due survey invitations (first sends and reminders) of customers who
        may be emailed, and mark each sent, in the caller's transaction. The others stay
        due: a later consent (or another channel's sender) may still deliver them."""
        now = as_utc_or_now(now)
        base = public_base(base_url)
        queued = no_consent = 0
        after: int | None = None
        while True:
            page = invitations.due(session, store, now, BATCH, after=after, base_url=base)
            for item in page.items:
                after = item.invitation_id
                customer = session.scalar(
                    select(Customer).where(
                        Customer.store_id == store.id,
                        Customer.external_id == item.customer_external_id,
                    )
                )
                address = address_of(customer, Channel.email) if customer else None
                if (
                    customer is None
                    or address is None
                    or not consents.may_contact(session, store, customer.id, Channel.email)
                ):
                    no_consent += 1
                    continue
                lang = lang_of(item.locale)
                headers = consents.unsubscribe_headers(store, customer, Channel.email, base)
                mail = render(
                    KIND_SURVEY,
                    lang,
                    "survey_reminder" if item.reminder else None,
                    store=store.name,
                    greeting=greeting(customer, lang),
                    reminder=item.reminder,
                    link=item.link,
                    expires=local_date(item.expires_at, store.timezone).isoformat(),
                    unsubscribe=headers["List-Unsubscribe"].split(",")[0].strip(" <>"),
                )
                _, created = self.enqueue(
                    session,
                    store,
                    customer=customer,
                    recipient=address,
                    kind=KIND_SURVEY,
                    key=f"survey-invitation:{item.invitation_id}:{item.sent_count}",
                    mail=mail,
                    headers=headers,
                    now=now,
                    base_url=base,
                )
                invitations.mark_sent(session, store, item.invitation_id, now, base_url=base)
                queued += created
            if page.next_after is None:
                return EnqueueRun(queued, no_consent)
            after = page.next_after

    def enqueue_opt_in_confirmation(
        self,
        session: Session,
        store: Store,
        customer: Customer,
        confirm_url: str,
        now: datetime | None = None,
    ) -> tuple[int, bool]:
        """Queue the double opt-in mail for a ``consents.opt_in`` that returned
        ``pending`` (transactional: no consent needed, no List-Unsubscribe)."""
        address = address_of(customer, Channel.email)
        if address is None:
            raise ValueError("the customer has no email address")
        lang = lang_of(customer.locale or store.locale)
        mail = render(
            KIND_OPT_IN,
            lang,
            store=store.name,
            greeting=greeting(customer, lang),
            link=confirm_url,
        )
        nonce = confirm_url.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
        return self.enqueue(
            session,
            store,
            customer=customer,
            recipient=address,
            kind=KIND_OPT_IN,
            key=f"opt-in-confirmation:{nonce}",
            mail=mail,
            needs_consent=False,
            now=now,
        )

    # -- per-store delivery settings ------------------------------------------------------

    def delivery_settings(self, session: Session, store: Store) -> DeliverySettingsOut:
        row = session.get(DeliverySettings, store.id)
        if row is None:
            return DeliverySettingsOut(survey_invitations_by_mail=False, updated_at=None)
        return DeliverySettingsOut(
            survey_invitations_by_mail=row.survey_invitations_by_mail, updated_at=row.updated_at
        )

    def set_delivery_settings(
        self, session: Session, store: Store, survey_invitations_by_mail: bool
    ) -> DeliverySettingsOut:
        row = session.get(DeliverySettings, store.id)
        now = utcnow()
        if row is None:
            row = DeliverySettings(store_id=store.id, updated_at=now)
            session.add(row)
        row.survey_invitations_by_mail, row.updated_at = survey_invitations_by_mail, now
        session.flush()
        return self.delivery_settings(session, store)

    def run_step(self, session: Session, store: Store, now: datetime | None = None) -> int:
        """The jobs' step: queue the due survey invitations when the store lets Patron
        mail them (``survey_invitations_by_mail``); returns how many were queued."""
        row = session.get(DeliverySettings, store.id)
        if row is None or not row.survey_invitations_by_mail:
            return 0
        return self.enqueue_survey_invitations(session, store, now).queued

    def counts(self, session: Session, store: Store | None = None) -> dict[MessageStatus, int]:
        """Messages by status (every status present, zero included)."""
        query = select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        if store is not None:
            query = query.where(OutboxMessage.store_id == store.id)
        found = {MessageStatus(s): int(n) for s, n in session.execute(query)}
        return {s: found.get(s, 0) for s in MessageStatus}


MESSAGES = table_of(OutboxMessage)


def _reserve_ids(session: Session, n: int) -> list[int] | None:
    """``n`` new message ids from the table's sequence (PostgreSQL; None on SQLite, where
    ids are known only once inserted)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    return [
        int(i)
        for i in session.scalars(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": MESSAGES.name, "n": n},
        )
    ]


def _tracked(store: Store, message_id: int, item: Item, base: str) -> tuple[str, list[str]]:
    """A message's HTML with tracked links and an open pixel, and the original URLs (the
    unsubscribe links are never tracked)."""
    skip = [f"{base}/u/"]
    for target in (item.headers or {}).get("List-Unsubscribe", "").split(","):
        if target.strip().startswith("<http"):
            skip.append(target.strip(" <>"))
    return tracking.instrument(item.mail.html, store, message_id, base, skip=tuple(skip))


outbox = Outbox()
