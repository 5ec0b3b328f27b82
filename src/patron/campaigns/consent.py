"""Consent per customer and channel, double opt-in for email, unsubscribe, suppression.

**The one check.** :meth:`ConsentService.may_contact` is what every sender asks before a
message goes out: the channel's consent is granted, the customer has an address on it,
the address is not suppressed, and for email the address was confirmed (double opt-in).

**Tokens.** A confirmation link carries ``<nonce>.<signature>`` (the nonce of its
``consent_requests`` row, 128 random bits); an unsubscribe link ``<customer id>.<channel>.
<signature>``, stateless and without expiry (an unsubscribe link must work for as long as
the message that carries it is read). Signatures are the first 22 base64url characters
of HMAC-SHA256 under the store's ``signing_secret``, compared in constant time; a
tampered token is simply unknown (404).

Nothing here commits: the request, CLI command or job that calls it does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from patron.campaigns import repository as repo
from patron.campaigns.models import ConsentRequest, Suppression, SuppressionReason
from patron.campaigns.schemas import ConsentState, OptInOut
from patron.customers import repository as customers_repo
from patron.customers.models import Channel, Consent, Customer, TouchpointKind
from patron.errors import Conflict, Invalid, NotFound, PatronError
from patron.kit.clock import utcnow
from patron.kit.repository import rows_by_id, select_by_keys
from patron.stores.models import Store

SIG_CHARS = 22
CONFIRM_TTL = timedelta(days=7)
_CONFIRM = re.compile(r"^([A-Za-z0-9_-]{16,32})\.([A-Za-z0-9_-]{22})$")
_UNSUB = re.compile(r"^([1-9][0-9]{0,17})\.(email|sms|push|wechat)\.([A-Za-z0-9_-]{22})$")
_PHONE_CHARS = re.compile(r"[^0-9]")


class Gone(PatronError):
    status, slug, title = 410, "gone", "Link expired"


def sign(store: Store, message: str) -> str:
    """The first 22 base64url characters of HMAC-SHA256 of ``message`` under the store's
    ``signing_secret`` (consent, unsubscribe and tracking tokens)."""
    digest = hmac.digest(store.signing_secret.encode(), message.encode(), "sha256")
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:SIG_CHARS]


_sign = sign


def normalize(channel: Channel, address: str) -> str:
    """The form an address is compared in: email lower-cased, phone as ``+digits``."""
    address = address.strip()
    if channel is Channel.email:
        return address.lower()
    if channel is Channel.sms:
        digits = _PHONE_CHARS.sub("", address)
        return ("+" if address.startswith("+") else "") + digits
    return address


def address_hash(channel: Channel, address: str) -> str:
    return hashlib.sha256(f"{channel.value}:{normalize(channel, address)}".encode()).hexdigest()


def address_of(customer: Customer, channel: Channel) -> str | None:
    """Where a channel reaches a customer. Push and WeChat reach the customer's app or
    WeChat identity, held by the store: Patron keys them by customer id."""
    if channel is Channel.email:
        return normalize(channel, customer.email) if customer.email else None
    if channel is Channel.sms:
        return normalize(channel, customer.phone) if customer.phone else None
    return f"customer:{customer.id}"


@dataclass(frozen=True)
class UnsubscribeLink:
    store: Store
    customer: Customer
    channel: Channel


class ConsentService:
    # -- reading --------------------------------------------------------------------------

    def customer(self, session: Session, store: Store, external_id: str) -> Customer:
        found = repo.customer_by_external_id(session, store.id, external_id)
        if found is None:
            raise NotFound(f"No customer with external id {external_id!r} in this store.")
        return found

    def is_suppressed(self, session: Session, store: Store, channel: Channel, address: str) -> bool:
        return (
            repo.suppression(session, store.id, channel, address_hash(channel, address)) is not None
        )

    def state(self, session: Session, store: Store, customer: Customer) -> list[ConsentState]:
        """Every channel's consent, confirmation, suppression and the verdict."""
        current = repo.consents(session, customer.id)
        out: list[ConsentState] = []
        for channel in Channel:
            row = current.get(channel)
            address = address_of(customer, channel)
            suppressed = address is not None and self.is_suppressed(
                session, store, channel, address
            )
            confirmed: bool | None = None
            if channel is Channel.email:
                confirmed = address is not None and repo.is_confirmed(
                    session, customer.id, channel, address_hash(channel, address)
                )
            granted = row is not None and row.granted
            out.append(
                ConsentState(
                    channel=channel,
                    granted=granted,
                    source=row.source if row else None,
                    recorded_at=row.recorded_at if row else None,
                    confirmed=confirmed,
                    suppressed=suppressed,
                    may_contact=granted
                    and address is not None
                    and not suppressed
                    and confirmed is not False,
                )
            )
        return out

    def may_contact(
        self, session: Session, store: Store, customer_id: int, channel: Channel
    ) -> bool:
        """Whether a message may go to this customer on this channel now (许可营销).

        Granted, with an address, not suppressed, and for email confirmed (double opt-in)
        for the customer's current address. The single check every sender uses.
        """
        customer = repo.customer(session, store.id, customer_id)
        if customer is None:
            return False
        row = repo.consent(session, customer.id, channel)
        address = address_of(customer, channel)
        if row is None or not row.granted or address is None:
            return False
        digest = address_hash(channel, address)
        if repo.suppression(session, store.id, channel, digest) is not None:
            return False
        return channel is not Channel.email or repo.is_confirmed(
            session, customer.id, channel, digest
        )

    def may_contact_many(
        self, session: Session, store: Store, customer_ids: Sequence[int], channel: Channel
    ) -> set[int]:
        """The ids among ``customer_ids`` that :meth:`may_contact` allows on ``channel``
        (the same verdicts), decided in a few queries per chunk of customers rather than
        four per customer. Ids of other stores' or unknown customers are left out."""
        customers = rows_by_id(session, Customer, store.id, customer_ids)
        return self.contactable(session, store, list(customers.values()), channel)

    def contactable(
        self, session: Session, store: Store, customers: Sequence[Customer], channel: Channel
    ) -> set[int]:
        """:meth:`may_contact_many` for customers already loaded (of ``store``): consent
        granted, an address, not suppressed, and for email the current address confirmed
        (double opt-in), one query of each per chunk."""
        addresses = {c.id: address_of(c, channel) for c in customers}
        ids = [i for i, a in addresses.items() if a is not None]
        granted = {
            int(cid)
            for (cid,) in select_by_keys(
                session,
                (Consent.customer_id,),
                Consent.customer_id,
                ids,
                Consent.channel == channel,
                Consent.granted.is_(True),
            )
        }
        hashes = {i: address_hash(channel, addresses[i] or "") for i in granted}
        suppressed = {
            str(digest)
            for (digest,) in select_by_keys(
                session,
                (Suppression.address_hash,),
                Suppression.address_hash,
                sorted(set(hashes.values())),
                Suppression.store_id == store.id,
                Suppression.channel == channel,
            )
        }
        ok = {i for i in granted if hashes[i] not in suppressed}
        if channel is not Channel.email:
            return ok
        confirmed = {
            (int(cid), str(digest))
            for cid, digest in select_by_keys(
                session,
                (ConsentRequest.customer_id, ConsentRequest.address_hash),
                ConsentRequest.customer_id,
                sorted(ok),
                ConsentRequest.channel == channel,
                ConsentRequest.confirmed_at.is_not(None),
                one_per_key=False,
            )
        }
        return {i for i in ok if (i, hashes[i]) in confirmed}

    # -- changing -------------------------------------------------------------------------

    def record(
        self,
        session: Session,
        store: Store,
        customer: Customer,
        channel: Channel,
        granted: bool,
        source: str,
        now: datetime | None = None,
    ) -> bool:
        """Set a channel's consent, with its source and time, as a ``consent`` touchpoint.
        Unchanged consent keeps its original source and time; returns whether it changed."""
        now = now or utcnow()
        row = repo.consent(session, customer.id, channel)
        if row is not None and row.granted == granted:
            return False
        if row is None:
            repo.add(
                session,
                Consent(
                    store_id=store.id,
                    customer_id=customer.id,
                    channel=channel,
                    granted=granted,
                    source=source,
                    recorded_at=now,
                ),
            )
        else:
            row.granted, row.source, row.recorded_at = granted, source, now
        customers_repo.insert_touchpoints(
            session,
            [
                {
                    "store_id": store.id,
                    "customer_id": customer.id,
                    "kind": TouchpointKind.consent.value,
                    "occurred_at": now,
                    "ref": channel.value,
                    "data": {"granted": granted, "source": source},
                }
            ],
        )
        session.flush()
        return True

    def opt_in(
        self,
        session: Session,
        store: Store,
        customer: Customer,
        channel: Channel,
        source: str,
        base_url: str,
        now: datetime | None = None,
    ) -> OptInOut:
        """Grant a channel. Email stays *pending* until the link returned here is opened
        (double opt-in); an address already confirmed is granted at once."""
        now = now or utcnow()
        if channel is not Channel.email:
            self.record(session, store, customer, channel, True, source, now)
            self._lift_unsubscribe(session, store, customer, channel)
            return OptInOut(channel=channel, status="granted")
        address = address_of(customer, channel)
        if address is None:
            raise Invalid("email: the customer has no email address")
        digest = address_hash(channel, address)
        if repo.is_confirmed(session, customer.id, channel, digest):
            self.record(session, store, customer, channel, True, source, now)
            self._lift_unsubscribe(session, store, customer, channel)
            return OptInOut(channel=channel, status="granted")
        blocked = repo.suppression(session, store.id, channel, digest)
        if blocked is not None and blocked.reason is not SuppressionReason.unsubscribed:
            raise Conflict(f"This address is suppressed ({blocked.reason.value}).")
        request = ConsentRequest(
            store_id=store.id,
            customer_id=customer.id,
            channel=channel,
            address=address,
            address_hash=digest,
            nonce=secrets.token_urlsafe(16),
            source=source,
            created_at=now,
            expires_at=now + CONFIRM_TTL,
            confirmed_at=None,
        )
        repo.add(session, request)
        token = f"{request.nonce}.{_sign(store, 'consent-confirm:' + request.nonce)}"
        return OptInOut(
            channel=channel,
            status="pending",
            confirm_url=f"{base_url.rstrip('/')}/c/{store.slug}/{token}",
            expires_at=request.expires_at,
        )

    def confirm(
        self,
        session: Session,
        store_slug: str,
        token: str,
        now: datetime | None = None,
        *,
        apply: bool = True,
    ) -> tuple[Store, bool]:
        """Confirm a double opt-in. Returns (store, whether it was already confirmed).
        404 for an unknown or tampered token, 410 for an expired one. ``apply=False``
        checks the link and changes nothing (the page a GET shows: a mail scanner opening
        the link must not confirm for the customer)."""
        now = now or utcnow()
        match = _CONFIRM.match(token) if len(token) <= 64 else None
        request = repo.request_by_nonce(session, match.group(1)) if match else None
        store = session.get(Store, request.store_id) if request else None
        if (
            match is None
            or request is None
            or store is None
            or store.slug != store_slug
            or not hmac.compare_digest(
                _sign(store, "consent-confirm:" + request.nonce), match.group(2)
            )
        ):
            raise NotFound("Unknown confirmation link.")
        if request.confirmed_at is not None:
            return store, True
        if request.expires_at < now:
            raise Gone("This confirmation link has expired.")
        customer = repo.customer(session, store.id, request.customer_id)
        if customer is None or request.address is None:  # erased meanwhile
            raise NotFound("Unknown confirmation link.")
        if not apply:
            return store, False
        request.confirmed_at = now
        self.record(session, store, customer, request.channel, True, "double_opt_in", now)
        self._lift_unsubscribe(session, store, customer, request.channel)
        return store, False

    def grant_from_link(
        self,
        session: Session,
        store: Store,
        customer: Customer,
        channel: Channel,
        proven: bool,
        now: datetime | None = None,
    ) -> None:
        """A channel switched on from the preference page. ``proven``: the link reached
        this channel's address (an email link for email), so it counts as confirmed."""
        now = now or utcnow()
        address = address_of(customer, channel)
        if channel is Channel.email and proven and address is not None:
            digest = address_hash(channel, address)
            if not repo.is_confirmed(session, customer.id, channel, digest):
                repo.add(
                    session,
                    ConsentRequest(
                        store_id=store.id,
                        customer_id=customer.id,
                        channel=channel,
                        address=address,
                        address_hash=digest,
                        nonce=secrets.token_urlsafe(16),
                        source="preferences",
                        created_at=now,
                        expires_at=now,
                        confirmed_at=now,
                    ),
                )
        self.record(session, store, customer, channel, True, "preferences", now)
        if proven:
            self._lift_unsubscribe(session, store, customer, channel)

    def _lift_unsubscribe(
        self, session: Session, store: Store, customer: Customer, channel: Channel
    ) -> None:
        """A fresh, explicit opt-in undoes the customer's own unsubscribe (only that:
        bounces, complaints and erasures stay)."""
        address = address_of(customer, channel)
        if address is None:
            return
        found = repo.suppression(session, store.id, channel, address_hash(channel, address))
        if found is not None and found.reason is SuppressionReason.unsubscribed:
            session.delete(found)
            session.flush()

    def withdraw(
        self,
        session: Session,
        store: Store,
        customer: Customer,
        channel: Channel,
        source: str,
        now: datetime | None = None,
        *,
        suppress: bool = False,
    ) -> bool:
        """Withdraw a channel's consent; ``suppress`` also puts its address on the
        suppression list (an unsubscribe). Idempotent."""
        now = now or utcnow()
        changed = self.record(session, store, customer, channel, False, source, now)
        address = address_of(customer, channel)
        if suppress and address is not None:
            self.suppress(session, store, channel, address, SuppressionReason.unsubscribed, now=now)
        return changed

    # -- suppression ----------------------------------------------------------------------

    def suppress(
        self,
        session: Session,
        store: Store,
        channel: Channel,
        address: str,
        reason: SuppressionReason,
        note: str | None = None,
        now: datetime | None = None,
        *,
        keep_address: bool = True,
    ) -> tuple[Suppression, bool]:
        """Suppress an address (idempotent). Returns (the row, whether it is new)."""
        digest = address_hash(channel, address)
        created = repo.insert_suppression(
            session,
            {
                "store_id": store.id,
                "channel": channel.value,
                "address": normalize(channel, address) if keep_address else None,
                "address_hash": digest,
                "reason": reason.value,
                "note": note,
                "created_at": now or utcnow(),
            },
        )
        row = repo.suppression(session, store.id, channel, digest)
        assert row is not None
        return row, created

    def unsuppress(self, session: Session, store: Store, channel: Channel, address: str) -> None:
        if not repo.delete_suppression(session, store.id, channel, address_hash(channel, address)):
            raise NotFound("This address is not suppressed.")

    # -- unsubscribe ----------------------------------------------------------------------

    def unsubscribe_token(self, store: Store, customer_id: int, channel: Channel) -> str:
        body = f"{customer_id}.{channel.value}"
        return f"{body}.{_sign(store, f'unsubscribe:{store.id}:{body}')}"

    def unsubscribe_headers(
        self,
        store: Store,
        customer: Customer,
        channel: Channel,
        base_url: str,
        mailto: str | None = None,
        *,
        url: str | None = None,
    ) -> dict[str, str]:
        """The headers of a marketing message (RFC 2369 and RFC 8058 one-click); ``url``:
        the customer's :meth:`unsubscribe_url`, when already made."""
        url = url or self.unsubscribe_url(store, customer.id, channel, base_url)
        targets = [f"<{url}>"]
        if mailto:
            targets.append(f"<mailto:{mailto}?subject=unsubscribe>")
        return {
            "List-Unsubscribe": ", ".join(targets),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    def unsubscribe_url(
        self, store: Store, customer_id: int, channel: Channel, base_url: str
    ) -> str:
        token = self.unsubscribe_token(store, customer_id, channel)
        return f"{base_url.rstrip('/')}/u/{store.slug}/{token}"

    def open_unsubscribe(self, session: Session, store_slug: str, token: str) -> UnsubscribeLink:
        """The customer and channel of an unsubscribe token; 404 if unknown or tampered."""
        match = _UNSUB.match(token) if len(token) <= 64 else None
        store = repo.store_by_slug(session, store_slug)
        if match is None or store is None:
            raise NotFound("Unknown unsubscribe link.")
        body = f"{match.group(1)}.{match.group(2)}"
        if not hmac.compare_digest(_sign(store, f"unsubscribe:{store.id}:{body}"), match.group(3)):
            raise NotFound("Unknown unsubscribe link.")
        customer = repo.customer(session, store.id, int(match.group(1)))
        if customer is None:
            raise NotFound("Unknown unsubscribe link.")
        return UnsubscribeLink(store, customer, Channel(match.group(2)))


consents = ConsentService()
