"""Campaigns: one-off sends to a segment and triggered messages per occasion, with a
random holdout, A/B variants, frequency caps and quiet hours, and measured uplift.

**A one-off** (``scheduled`` → ``sending`` → ``sent``): when ``scheduled_at`` has come,
``run_due`` walks the segment's members in batches (keyset on the customer id) and, for
each customer not yet a recipient, decides in this order: no consent on the channel
(``consents`` rules, checked for the whole batch at once) → ``suppressed``; the
frequency cap reached → ``capped``; the holdout group → ``held_out`` (never sent, but
measured from the time it would have been sent); else the variant's templates are
rendered in the customer's language and the message is queued in the outbox with the key
``campaign:<id>:<customer id>``, not before the end of the store's quiet hours →
``queued``. The campaign is ``sent`` once none of its messages waits in the outbox.

**Triggered** (``active``): each run finds the occasions that arose since the last one —
``welcome`` (customers created since), ``birthday`` (today in the store's time zone;
29 February is celebrated on the 28th in other years), ``points_expiring``,
``tier_upgrade`` (loyalty notices not handled yet), ``tier_downgrade_warning`` (members
whose tier review is within ``days_before`` days and whose qualifying value is below
what keeps the tier), ``win_back`` (customers in the at-risk RFM segments or with
``p_alive`` below a threshold, at most once per ``every_days``), and
``post_purchase_survey`` (delegated to the survey invitations of ``patron.feedback``) —
and handles each occasion like a one-off recipient, keyed
``campaign:<id>:<customer id>:<occasion>``.

**Exactly once.** A recipient row is unique per campaign, customer and occasion and an
outbox key per store; both are inserted with ``ON CONFLICT DO NOTHING``, and a run holds
the store's campaign lock (PostgreSQL advisory lock), so running twice, or at once,
sends nothing twice. Nothing here commits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    any_,
    bindparam,
    case,
    delete,
    extract,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from patron.analytics.models import CustomerScore
from patron.campaigns import domain, segments, templating
from patron.campaigns.consent import address_of, consents
from patron.campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignRecipient,
    CampaignSettings,
    CampaignStatus,
    CampaignTrigger,
    CampaignVariant,
    MessageStatus,
    OutboxMessage,
    RecipientStatus,
    Segment,
)
from patron.campaigns.outbox import Item, Rendered, outbox
from patron.customers.models import Channel, Customer
from patron.errors import Conflict, Invalid, NotFound, PatronError
from patron.feedback.service import lang_of, public_base
from patron.kit.clock import as_utc, as_utc_or_now, zone
from patron.kit.repository import (
    chunks,
    insert_rows,
    lock_store_job,
    select_by_keys,
    table_of,
)
from patron.kit.text import CleanText, Instant
from patron.loyalty.models import LoyaltyAccount, LoyaltyMember, LoyaltyNotice, NoticeKind
from patron.orders.models import Order, OrderStatus
from patron.referrals.domain import share_link
from patron.referrals.models import ReferralCode
from patron.stores.models import Store

log = logging.getLogger("patron.campaigns")
CAMPAIGN_JOB = 0x43_4D  # "CM": namespace of the per-store campaign-run lock
BATCH = 1000
CAP_PROBES = 2000  # cap counts of more customers: one grouped count of the store
KIND = "campaign"
KEY_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
VARIANT_RE = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,15}$"
RECIPIENTS = table_of(CampaignRecipient)
EDITABLE = (CampaignStatus.draft, CampaignStatus.paused)
OPEN_MESSAGES = (MessageStatus.queued, MessageStatus.sending)
WIN_BACK_SEGMENTS = ("at_risk", "cant_lose")
TRIGGER_PARAMS: dict[CampaignTrigger, dict[str, Any]] = {
    CampaignTrigger.tier_downgrade_warning: {"days_before": 14},
    CampaignTrigger.win_back: {
        "segments": list(WIN_BACK_SEGMENTS),
        "p_alive_below": 0.3,
        "every_days": 90,
    },
}


def message_prefix(campaign_id: int) -> str:
    """The outbox key prefix of a campaign's messages (for ``tracking``)."""
    return f"campaign:{campaign_id}:"


def message_key(campaign_id: int, customer_id: int, occasion: str) -> str:
    base = f"campaign:{campaign_id}:{customer_id}"
    return f"{base}:{occasion}" if occasion else base


# -- input shapes ---------------------------------------------------------------------------

Lang = Literal["en", "zh"]
Template = Field(max_length=50_000)


class VariantIn(BaseModel):
    """A version of the message. ``subject`` and ``body`` are Jinja2 templates per
    language (``en``, ``zh``; a missing one falls back to the other). The body is HTML
    for email, plain text on SMS, WeChat and push."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field("A", pattern=VARIANT_RE)
    weight: int = Field(1, ge=1, le=1000)
    subject: dict[Lang, CleanText] = Field(default_factory=dict)
    body: dict[Lang, CleanText] = Field(default_factory=dict)

    @field_validator("subject", "body")
    @classmethod
    def _size(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            if len(text) > 50_000:
                raise ValueError("a template may have at most 50,000 characters")
        return value


class CampaignIn(BaseModel):
    """A campaign as created or replaced (see docs/campaigns.md)."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(pattern=KEY_RE)
    name: CleanText = Field(min_length=1, max_length=255)
    kind: CampaignKind = CampaignKind.one_off
    trigger: CampaignTrigger | None = None
    trigger_params: dict[str, Any] = Field(default_factory=dict)
    channel: Channel = Channel.email
    segment: str | None = Field(None, pattern=KEY_RE, description="A saved segment's key.")
    segment_definition: dict[str, Any] | None = Field(
        None, description="An inline segment definition (instead of `segment`)."
    )
    scheduled_at: Instant | None = None
    holdout_percent: int = Field(0, ge=0, le=50)
    attribution_days: int = Field(7, ge=1, le=90)
    variants: list[VariantIn] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _consistent(self) -> CampaignIn:
        keys = [v.key for v in self.variants]
        if len(set(keys)) != len(keys):
            raise ValueError("variants: variant keys must be unique")
        if self.segment and self.segment_definition is not None:
            raise ValueError("segment: give a saved segment or an inline definition, not both")
        if self.kind is CampaignKind.triggered:
            if self.trigger is None or self.trigger is CampaignTrigger.newsletter:
                raise ValueError("trigger: a triggered campaign needs a trigger (not newsletter)")
            if self.scheduled_at is not None:
                raise ValueError("scheduled_at: only a one-off campaign is scheduled")
        elif self.trigger not in (None, CampaignTrigger.newsletter):
            raise ValueError("trigger: a one-off campaign has no trigger (or newsletter)")
        allowed = TRIGGER_PARAMS.get(self.trigger) if self.trigger else None
        unknown = set(self.trigger_params) - set(allowed or {})
        if unknown:
            raise ValueError(
                f"trigger_params: unknown parameter(s) {', '.join(sorted(unknown))}"
                + (f"; allowed: {', '.join(sorted(allowed))}" if allowed else "")
            )
        params = {**(allowed or {}), **self.trigger_params}
        if self.trigger is CampaignTrigger.tier_downgrade_warning:
            days = params["days_before"]
            if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 90:
                raise ValueError("trigger_params.days_before: a whole number of days, 1 to 90")
        if self.trigger is CampaignTrigger.win_back:
            segs, below, every = params["segments"], params["p_alive_below"], params["every_days"]
            if not isinstance(segs, list) or not all(isinstance(s, str) for s in segs):
                raise ValueError("trigger_params.segments: a list of RFM segment keys")
            if not isinstance(below, int | float) or isinstance(below, bool) or not 0 <= below <= 1:
                raise ValueError("trigger_params.p_alive_below: a number from 0 to 1")
            if not isinstance(every, int) or isinstance(every, bool) or not 1 <= every <= 3650:
                raise ValueError("trigger_params.every_days: a whole number of days, 1 to 3650")
        self.trigger_params = params
        if (
            self.channel is not Channel.email
            and self.trigger is CampaignTrigger.post_purchase_survey
        ):
            raise ValueError("channel: survey invitations go by email")
        return self


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cap_messages: int = Field(domain.DEFAULT_CAP_MESSAGES, ge=1, le=100)
    cap_days: int = Field(domain.DEFAULT_CAP_DAYS, ge=1, le=90)
    quiet_start: str = Field(domain.DEFAULT_QUIET_START, pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    quiet_end: str = Field(domain.DEFAULT_QUIET_END, pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignRun:
    campaigns: int = 0  # campaigns that ran
    queued: int = 0
    suppressed: int = 0
    capped: int = 0
    held_out: int = 0
    failed: int = 0
    surveys: int = 0  # survey invitations queued (post_purchase_survey)
    finished: int = 0  # one-offs whose messages all left the outbox

    @property
    def total(self) -> int:
        return self.queued + self.suppressed + self.capped + self.held_out + self.failed

    def __add__(self, other: CampaignRun) -> CampaignRun:
        a, b = asdict(self), asdict(other)
        return CampaignRun(**{k: a[k] + b[k] for k in a})


@dataclass
class _Tally:
    counts: dict[RecipientStatus, int] = field(default_factory=dict)

    def add(self, status: RecipientStatus) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1

    def run(self, surveys: int = 0) -> CampaignRun:
        c = self.counts
        return CampaignRun(
            1,
            c.get(RecipientStatus.queued, 0),
            c.get(RecipientStatus.suppressed, 0),
            c.get(RecipientStatus.capped, 0),
            c.get(RecipientStatus.held_out, 0),
            c.get(RecipientStatus.failed, 0),
            surveys,
        )


@dataclass(frozen=True)
class Occasion:
    customer_id: int
    key: str  # "" for a one-off
    data: dict[str, Any] = field(default_factory=dict)


# -- the service ----------------------------------------------------------------------------


class CampaignService:
    # -- settings -----------------------------------------------------------------------

    def settings(self, session: Session, store: Store) -> SettingsIn:
        row = session.get(CampaignSettings, store.id)
        if row is None:
            return SettingsIn()
        return SettingsIn(
            cap_messages=row.cap_messages,
            cap_days=row.cap_days,
            quiet_start=row.quiet_start,
            quiet_end=row.quiet_end,
        )

    def save_settings(
        self, session: Session, store: Store, data: SettingsIn, now: datetime | None = None
    ) -> SettingsIn:
        now = as_utc_or_now(now)
        row = session.get(CampaignSettings, store.id)
        if row is None:
            row = CampaignSettings(store_id=store.id)
            session.add(row)
        row.cap_messages, row.cap_days = data.cap_messages, data.cap_days
        row.quiet_start, row.quiet_end = data.quiet_start, data.quiet_end
        row.updated_at = now
        session.flush()
        return data

    # -- reading ------------------------------------------------------------------------

    def get(self, session: Session, store: Store, key: str) -> Campaign:
        found = session.scalars(
            select(Campaign).where(Campaign.store_id == store.id, Campaign.key == key)
        ).first()
        if found is None:
            raise NotFound(f"No campaign {key!r} in this store.")
        return found

    def find(
        self,
        session: Session,
        store: Store,
        *,
        status: CampaignStatus | None = None,
        limit: int = 100,
        after: int | None = None,
    ) -> list[Campaign]:
        query = select(Campaign).where(Campaign.store_id == store.id)
        if status is not None:
            query = query.where(Campaign.status == status)
        if after is not None:
            query = query.where(Campaign.id > after)
        return list(session.scalars(query.order_by(Campaign.id).limit(limit)))

    def variants(self, session: Session, campaign: Campaign) -> list[CampaignVariant]:
        return list(
            session.scalars(
                select(CampaignVariant)
                .where(CampaignVariant.campaign_id == campaign.id)
                .order_by(CampaignVariant.key)
            )
        )

    def segment_key(self, session: Session, campaign: Campaign) -> str | None:
        if campaign.segment_id is None:
            return None
        return session.scalar(select(Segment.key).where(Segment.id == campaign.segment_id))

    def recipient_counts(self, session: Session, campaign: Campaign) -> dict[str, int]:
        rows = session.execute(
            select(CampaignRecipient.status, func.count())
            .where(CampaignRecipient.campaign_id == campaign.id)
            .group_by(CampaignRecipient.status)
        )
        found = {RecipientStatus(s).value: int(n) for s, n in rows}
        return {s.value: found.get(s.value, 0) for s in RecipientStatus}

    # -- writing ------------------------------------------------------------------------

    def _check(self, session: Session, store: Store, data: CampaignIn) -> int | None:
        """Validate what needs the store (segment, templates); the segment's id."""
        segment_id: int | None = None
        if data.segment:
            segment_id = session.scalar(
                select(Segment.id).where(Segment.store_id == store.id, Segment.key == data.segment)
            )
            if segment_id is None:
                raise Invalid(f"segment: no saved segment {data.segment!r} in this store")
        if data.segment_definition is not None:
            try:
                definition = segments.parse_definition(data.segment_definition)
                segments.check_for_store(session, store, definition)
            except Invalid as exc:
                errors = [
                    {**e, "field": f"segment_definition.{e['field']}".rstrip(".")}
                    for e in exc.errors
                ] or [{"field": "segment_definition", "message": exc.detail}]
                raise Invalid(
                    f"{errors[0]['field']}: {errors[0]['message']}", errors=errors
                ) from exc
        templating.validate_variants(
            {
                v.key: {
                    "subject": {str(k): t for k, t in v.subject.items()},
                    "body": {str(k): t for k, t in v.body.items()},
                }
                for v in data.variants
            },
            html=data.channel is Channel.email,
        )
        return segment_id

    def _apply(
        self, session: Session, campaign: Campaign, data: CampaignIn, segment_id: int | None
    ) -> None:
        campaign.name = data.name
        campaign.kind = data.kind
        campaign.trigger = data.trigger
        campaign.trigger_params = dict(data.trigger_params)
        campaign.channel = data.channel
        campaign.segment_id = segment_id
        campaign.segment_definition = data.segment_definition
        campaign.scheduled_at = data.scheduled_at
        campaign.holdout_percent = data.holdout_percent
        campaign.attribution_days = data.attribution_days
        session.execute(delete(CampaignVariant).where(CampaignVariant.campaign_id == campaign.id))
        for v in data.variants:
            session.add(
                CampaignVariant(
                    campaign_id=campaign.id,
                    key=v.key,
                    weight=v.weight,
                    subject=dict(v.subject),
                    body=dict(v.body),
                )
            )
        session.flush()

    def create(
        self, session: Session, store: Store, data: CampaignIn, now: datetime | None = None
    ) -> Campaign:
        now = as_utc_or_now(now)
        segment_id = self._check(session, store, data)
        exists = session.scalar(
            select(Campaign.id).where(Campaign.store_id == store.id, Campaign.key == data.key)
        )
        if exists is not None:
            raise Conflict(f"A campaign {data.key!r} exists already.")
        campaign = Campaign(
            store_id=store.id,
            key=data.key,
            name=data.name,
            kind=data.kind,
            trigger_params={},
            channel=data.channel,
            status=CampaignStatus.draft,
            holdout_percent=0,
            attribution_days=7,
            notice_cursor=0,
            created_at=now,
            updated_at=now,
        )
        session.add(campaign)
        session.flush()
        self._apply(session, campaign, data, segment_id)
        return campaign

    def update(
        self,
        session: Session,
        store: Store,
        key: str,
        data: CampaignIn,
        now: datetime | None = None,
    ) -> Campaign:
        now = as_utc_or_now(now)
        campaign = self.get(session, store, key)
        if data.key != key:
            raise Invalid("key: the key cannot change")
        if campaign.status not in EDITABLE:
            raise Conflict(f"A {campaign.status.value} campaign cannot be edited (pause it first).")
        if data.kind is not campaign.kind:
            raise Invalid("kind: cannot change between one-off and triggered")
        has_recipients = session.scalar(
            select(CampaignRecipient.id)
            .where(CampaignRecipient.campaign_id == campaign.id)
            .limit(1)
        )
        if has_recipients is not None and (
            data.holdout_percent != campaign.holdout_percent
            or data.attribution_days != campaign.attribution_days
            or data.trigger != campaign.trigger
        ):
            raise Conflict(
                "The holdout, attribution window and trigger are fixed once a campaign has "
                "recipients (its measurement depends on them)."
            )
        segment_id = self._check(session, store, data)
        self._apply(session, campaign, data, segment_id)
        campaign.updated_at = now
        return campaign

    def delete(self, session: Session, store: Store, key: str) -> None:
        campaign = self.get(session, store, key)
        if campaign.status is not CampaignStatus.draft:
            raise Conflict("Only a draft can be deleted; cancel the campaign instead.")
        session.delete(campaign)
        session.flush()

    def schedule(
        self,
        session: Session,
        store: Store,
        key: str,
        at: datetime | None = None,
        now: datetime | None = None,
    ) -> Campaign:
        """A one-off: send at ``at`` (default now). A triggered campaign: start firing
        (occasions from now on; a resumed one continues where it paused)."""
        now = as_utc_or_now(now)
        campaign = self.get(session, store, key)
        if campaign.status not in EDITABLE and campaign.status is not CampaignStatus.scheduled:
            raise Conflict(f"A {campaign.status.value} campaign cannot be scheduled.")
        if campaign.kind is CampaignKind.one_off:
            campaign.scheduled_at = as_utc(at) if at else campaign.scheduled_at or now
            campaign.status = CampaignStatus.scheduled
        else:
            if at is not None:
                raise Invalid("scheduled_at: a triggered campaign starts when activated")
            campaign.active_since = campaign.active_since or now
            campaign.status = CampaignStatus.active
        campaign.updated_at = now
        session.flush()
        return campaign

    def pause(
        self, session: Session, store: Store, key: str, now: datetime | None = None
    ) -> Campaign:
        now = as_utc_or_now(now)
        campaign = self.get(session, store, key)
        if campaign.status not in (CampaignStatus.scheduled, CampaignStatus.active):
            raise Conflict(f"A {campaign.status.value} campaign cannot be paused.")
        campaign.status, campaign.updated_at = CampaignStatus.paused, now
        session.flush()
        return campaign

    def cancel(
        self, session: Session, store: Store, key: str, now: datetime | None = None
    ) -> Campaign:
        """Stop for good; messages still waiting in the outbox are withdrawn."""
        now = as_utc_or_now(now)
        campaign = self.get(session, store, key)
        if campaign.status in (CampaignStatus.sent, CampaignStatus.cancelled):
            raise Conflict(f"A {campaign.status.value} campaign cannot be cancelled.")
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.store_id == store.id,
                OutboxMessage.status == MessageStatus.queued,
                OutboxMessage.key.like(message_prefix(campaign.id) + "%"),
            )
            .values(status=MessageStatus.suppressed, last_error="campaign cancelled")
            .execution_options(synchronize_session=False)
        )
        campaign.status, campaign.updated_at = CampaignStatus.cancelled, now
        campaign.finished_at = campaign.finished_at or now
        session.flush()
        return campaign

    # -- rendering ----------------------------------------------------------------------

    def preview(
        self,
        session: Session,
        store: Store,
        key: str,
        customer_external_id: str,
        *,
        variant: str | None = None,
        lang: str | None = None,
        now: datetime | None = None,
    ) -> tuple[str, templating.RenderedMessage]:
        """(variant key, the message) as the customer would get it."""
        now = as_utc_or_now(now)
        campaign = self.get(session, store, key)
        customer = consents.customer(session, store, customer_external_id)
        variants = {v.key: v for v in self.variants(session, campaign)}
        chosen = variant or domain.assign(
            campaign.key, customer.id, 0, [(v.key, v.weight) for v in variants.values()]
        )
        if chosen not in variants:
            raise Invalid(f"variant: no variant {chosen!r} (has {', '.join(variants)})")
        sender = _Sender(session, store, campaign, self.settings(session, store), now)
        context = sender.contexts([customer], {customer.id: {}})[customer.id]
        try:
            return chosen, sender.render(variants[chosen], context, lang or context["lang"])
        except templating.TemplateFailed as exc:
            raise Invalid(f"variants.{chosen}: {exc}") from exc

    def send_test(
        self,
        session: Session,
        store: Store,
        key: str,
        address: str,
        customer_external_id: str | None,
        *,
        variant: str | None = None,
        lang: str | None = None,
        now: datetime | None = None,
    ) -> tuple[int, str]:
        """Queue a test of the campaign to ``address`` (a customer's data, or the sample
        customer); not counted anywhere, no consent needed. (outbox id, variant)."""
        now = as_utc_or_now(now)
        campaign = self.get(session, store, key)
        if customer_external_id:
            chosen, msg = self.preview(
                session, store, key, customer_external_id, variant=variant, lang=lang, now=now
            )
        else:
            variants = {v.key: v for v in self.variants(session, campaign)}
            chosen = variant or next(iter(variants))
            if chosen not in variants:
                raise Invalid(f"variant: no variant {chosen!r}")
            sender = _Sender(session, store, campaign, self.settings(session, store), now)
            context = templating.sample_context()
            try:
                msg = sender.render(variants[chosen], context, lang or "en")
            except templating.TemplateFailed as exc:
                raise Invalid(f"variants.{chosen}: {exc}") from exc
        new_id, _ = outbox.enqueue(
            session,
            store,
            customer=None,
            recipient=address,
            kind="campaign_test",
            key=f"campaign-test:{campaign.id}:{now.timestamp():.6f}:{address}"[:128],
            mail=Rendered(f"[TEST] {msg.subject}", msg.text, msg.html),
            needs_consent=False,
            channel=campaign.channel,
            now=now,
            track=False,
        )
        return new_id, chosen

    # -- running ------------------------------------------------------------------------

    def run_due(self, session: Session, store: Store, now: datetime | None = None) -> CampaignRun:
        """Every due campaign of the store (see the module docstring). Flushes only."""
        now = as_utc_or_now(now)
        lock_store_job(session, CAMPAIGN_JOB, store.id)
        settings = self.settings(session, store)
        total = CampaignRun()
        due = session.scalars(
            select(Campaign)
            .where(
                Campaign.store_id == store.id,
                or_(
                    and_(
                        Campaign.status == CampaignStatus.scheduled,
                        Campaign.scheduled_at <= now,
                    ),
                    Campaign.status == CampaignStatus.active,
                ),
            )
            .order_by(Campaign.id)
        ).all()
        for campaign in due:
            # A campaign that cannot run (its saved segment no longer valid for the
            # store, say) is paused and logged; it must not stop the store's other jobs.
            try:
                with session.begin_nested():
                    sender = _Sender(session, store, campaign, settings, now)
                    if campaign.kind is CampaignKind.one_off:
                        campaign.status, campaign.started_at = CampaignStatus.sending, now
                        total += sender.send(sender.members())
                    else:
                        total += sender.fire()
            except (PatronError, ValueError) as exc:
                log.warning("campaign %s of store %s paused: %s", campaign.key, store.slug, exc)
                campaign.status = CampaignStatus.paused
            campaign.last_run_at = now
            campaign.updated_at = now
        total += CampaignRun(finished=self._finish(session, store, now))
        session.flush()
        return total

    def _finish(self, session: Session, store: Store, now: datetime) -> int:
        """One-offs in ``sending`` whose messages have all left the outbox become
        ``sent``."""
        done = 0
        for campaign in session.scalars(
            select(Campaign).where(
                Campaign.store_id == store.id, Campaign.status == CampaignStatus.sending
            )
        ):
            waiting = session.scalar(
                select(OutboxMessage.id)
                .where(
                    OutboxMessage.store_id == store.id,
                    OutboxMessage.status.in_(OPEN_MESSAGES),
                    OutboxMessage.key.like(message_prefix(campaign.id) + "%"),
                )
                .limit(1)
            )
            if waiting is None:
                campaign.status, campaign.finished_at = CampaignStatus.sent, now
                done += 1
        return done

    # -- measuring ----------------------------------------------------------------------

    def group_stats(self, session: Session, campaign: Campaign) -> dict[str, domain.GroupStats]:
        """Per group (variant key or ``holdout``): recipients measured (sent or held out),
        those who converted, and their revenue (net of refunds, minor units)."""
        r, o = CampaignRecipient, Order
        net = o.total_minor - o.refunded_minor
        per_recipient = (
            select(
                r.id.label("rid"),
                r.arm.label("arm"),
                func.count(o.id).label("orders"),
                func.coalesce(func.sum(net), 0).label("revenue"),
            )
            .select_from(r)
            .outerjoin(
                o,
                and_(
                    o.customer_id == r.customer_id,
                    o.store_id == campaign.store_id,
                    o.placed_at > r.send_at,
                    o.placed_at <= r.window_end,
                    o.status.not_in([OrderStatus.cancelled, OrderStatus.refunded]),
                    or_(o.total_minor <= 0, o.refunded_minor < o.total_minor),
                ),
            )
            .where(
                r.campaign_id == campaign.id,
                r.status.in_([RecipientStatus.queued, RecipientStatus.held_out]),
            )
            .group_by(r.id, r.arm)
            .subquery()
        )
        rows = session.execute(
            select(
                per_recipient.c.arm,
                func.count(),
                func.sum(case((per_recipient.c.orders > 0, 1), else_=0)),
                func.sum(per_recipient.c.revenue),
                func.sum(per_recipient.c.revenue * per_recipient.c.revenue),
            ).group_by(per_recipient.c.arm)
        )
        return {
            arm: domain.GroupStats(int(n), int(conv or 0), int(rev or 0), int(sq or 0))
            for arm, n, conv, rev, sq in rows
        }

    def results(self, session: Session, store: Store, key: str) -> dict[str, Any]:
        """Sent, suppressed, capped, held out; opens and clicks; conversions and revenue
        per group; uplift against the holdout with 95% intervals, overall and per
        variant; each variant against the first (A/B)."""
        from patron.campaigns import tracking

        campaign = self.get(session, store, key)
        variant_keys = [v.key for v in self.variants(session, campaign)]
        stats = self.group_stats(session, campaign)
        holdout = stats.get(domain.HOLDOUT)
        treatment = domain.GroupStats()
        for k in variant_keys:
            treatment += stats.get(k, domain.GroupStats())
        messages = tracking.counts_by_key_prefix(session, store.id, message_prefix(campaign.id))
        by_variant = dict(
            session.execute(
                select(CampaignRecipient.arm, func.count())
                .join(
                    OutboxMessage,
                    and_(
                        OutboxMessage.store_id == store.id,
                        OutboxMessage.key == CampaignRecipient.message_key,
                    ),
                )
                .where(
                    CampaignRecipient.campaign_id == campaign.id,
                    OutboxMessage.status == MessageStatus.sent,
                )
                .group_by(CampaignRecipient.arm)
            ).all()
        )

        def group(arm: str) -> dict[str, Any]:
            g = stats.get(arm, domain.GroupStats())
            return {
                "group": arm,
                "recipients": g.recipients,
                "conversions": g.conversions,
                "conversion_rate": g.conversion_rate,
                "revenue_minor": g.revenue,
                "revenue_per_recipient_minor": g.revenue_per_recipient,
            }

        def up(a: domain.GroupStats, b: domain.GroupStats | None) -> dict[str, Any] | None:
            if b is None or not b.recipients or not a.recipients:
                return None
            return uplift_json(domain.uplift(a, b))

        first = stats.get(variant_keys[0]) if variant_keys else None
        return {
            "key": campaign.key,
            "name": campaign.name,
            "status": campaign.status.value,
            "currency": store.currency,
            "attribution_days": campaign.attribution_days,
            "holdout_percent": campaign.holdout_percent,
            "recipients": self.recipient_counts(session, campaign),
            "messages": messages,
            "treatment": {**group("treatment"), **_group_numbers(treatment)},
            "holdout": group(domain.HOLDOUT) if holdout is not None else None,
            "uplift": up(treatment, holdout),
            "variants": [
                {
                    **group(k),
                    "sent": int(by_variant.get(k, 0)),
                    "uplift": up(stats.get(k, domain.GroupStats()), holdout),
                    "against_first": (up(stats.get(k, domain.GroupStats()), first) if i else None),
                }
                for i, k in enumerate(variant_keys)
            ],
        }


def _group_numbers(g: domain.GroupStats) -> dict[str, Any]:
    return {
        "recipients": g.recipients,
        "conversions": g.conversions,
        "conversion_rate": g.conversion_rate,
        "revenue_minor": g.revenue,
        "revenue_per_recipient_minor": g.revenue_per_recipient,
    }


def uplift_json(u: domain.Uplift) -> dict[str, Any]:
    def diff(d: domain.Difference) -> dict[str, Any]:
        return {"estimate": d.estimate, "low": d.low, "high": d.high, "significant": d.significant}

    return {
        "conversion": diff(u.conversion),
        "revenue_per_recipient_minor": diff(u.revenue_per_recipient),
    }


# -- one run of one campaign ----------------------------------------------------------------


class _Sender:
    """Decides, renders and queues for one campaign in one run."""

    def __init__(
        self,
        session: Session,
        store: Store,
        campaign: Campaign,
        settings: SettingsIn,
        now: datetime,
    ) -> None:
        self.session, self.store, self.campaign, self.now = session, store, campaign, now
        self.cap = domain.Cap(settings.cap_messages, settings.cap_days)
        self.quiet = domain.QuietHours.of(settings.quiet_start, settings.quiet_end)
        self.send_at = domain.after_quiet_hours(now, store.timezone, self.quiet)
        self.window_end = self.send_at + timedelta(days=campaign.attribution_days)
        self.base = public_base()
        self.variant_rows = {v.key: v for v in campaign_service.variants(session, campaign)}
        self.weights = [(v.key, v.weight) for v in self.variant_rows.values()]
        self._definition: segments.SegmentDefinition | None = None
        self._tier_names: dict[str, Any] | None = None
        self.suggestions: dict[int, list[Any]] | None = None
        self.sent_before: dict[int, int] = {}
        self.done: set[tuple[int, str]] = set()

    # -- audience -----------------------------------------------------------------------

    def definition(self) -> segments.SegmentDefinition | None:
        if self._definition is None:
            raw: object = self.campaign.segment_definition
            if self.campaign.segment_id is not None:
                raw = self.session.scalar(
                    select(Segment.definition).where(Segment.id == self.campaign.segment_id)
                )
            if raw is None:
                return None
            self._definition = segments.parse_definition(raw)
        return self._definition

    def audience(self) -> Select[Any]:
        definition = self.definition()
        if definition is None:
            return select(Customer.id).where(segments.eligible(self.store))
        query: Select[Any] = segments.members_query(self.store, definition, now=self.now)
        return query

    def members(self) -> Iterator[list[Occasion]]:
        """The segment's members in batches, by customer id."""
        ident = table_of(Customer).c.id
        after = 0
        while True:
            ids = [
                int(i)
                for i in self.session.scalars(
                    self.audience().where(ident > after).order_by(ident).limit(BATCH)
                )
            ]
            if not ids:
                return
            after = ids[-1]
            yield [Occasion(i, "") for i in ids]

    def in_audience(self, occasions: list[Occasion]) -> list[Occasion]:
        """The occasions whose customer is in the campaign's segment (if it has one)."""
        if self.definition() is None or not occasions:
            return occasions
        ident = table_of(Customer).c.id
        keep: set[int] = set()
        for chunk in chunks(sorted({o.customer_id for o in occasions})):
            keep.update(self.session.scalars(self.audience().where(ident.in_(chunk))))
        return [o for o in occasions if o.customer_id in keep]

    # -- triggers -----------------------------------------------------------------------

    def fire(self) -> CampaignRun:
        trigger = self.campaign.trigger
        if trigger is CampaignTrigger.post_purchase_survey:
            run = outbox.enqueue_survey_invitations(self.session, self.store, self.now)
            return CampaignRun(campaigns=1, surveys=run.queued)
        sources = {
            CampaignTrigger.welcome: self.welcome,
            CampaignTrigger.birthday: self.birthdays,
            CampaignTrigger.points_expiring: self.notices,
            CampaignTrigger.tier_upgrade: self.notices,
            CampaignTrigger.tier_downgrade_warning: self.downgrade_warnings,
            CampaignTrigger.win_back: self.win_back,
        }
        source = sources.get(trigger) if trigger else None
        if source is None:
            return CampaignRun()
        return self.send(self.in_audience(batch) for batch in source())

    def _since(self) -> datetime:
        since = self.campaign.active_since or self.now
        # Rows committed by a slower transaction may carry an earlier timestamp: look
        # back an hour past the last run (recipients are unique, so overlap is harmless).
        if self.campaign.last_run_at is not None:
            since = max(since, self.campaign.last_run_at - timedelta(hours=1))
        return since

    def customers_where(self, *where: ColumnElement[bool]) -> Iterator[list[int]]:
        """The ids of the store's eligible customers matching ``where``, in batches."""
        after = 0
        while True:
            ids = list(
                self.session.scalars(
                    select(Customer.id)
                    .where(segments.eligible(self.store), *where, Customer.id > after)
                    .order_by(Customer.id)
                    .limit(BATCH)
                )
            )
            if not ids:
                return
            after = ids[-1]
            yield ids

    def welcome(self) -> Iterator[list[Occasion]]:
        for ids in self.customers_where(Customer.created_at >= self._since()):
            yield [Occasion(i, "welcome") for i in ids]

    def birthdays(self) -> Iterator[list[Occasion]]:
        today = self.now.astimezone(zone(self.store.timezone)).date()
        days = [(today.month, today.day)]
        if (today.month, today.day) == (2, 28) and not _leap(today.year):
            days.append((2, 29))
        on_the_day = or_(
            *(
                and_(
                    extract("month", Customer.birthday) == m, extract("day", Customer.birthday) == d
                )
                for m, d in days
            )
        )
        for ids in self.customers_where(Customer.birthday.is_not(None), on_the_day):
            yield [Occasion(i, f"birthday:{today.year}", {"year": today.year}) for i in ids]

    def notices(self) -> Iterator[list[Occasion]]:
        """Loyalty notices written since the campaign became active, once each."""
        kind = (
            NoticeKind.points_expiring
            if self.campaign.trigger is CampaignTrigger.points_expiring
            else NoticeKind.tier_changed
        )
        since = self.campaign.active_since or self.now
        while True:
            rows = list(
                self.session.execute(
                    select(LoyaltyNotice.id, LoyaltyNotice.customer_id, LoyaltyNotice.data)
                    .where(
                        LoyaltyNotice.store_id == self.store.id,
                        LoyaltyNotice.kind == kind,
                        LoyaltyNotice.id > self.campaign.notice_cursor,
                        LoyaltyNotice.created_at >= since,
                    )
                    .order_by(LoyaltyNotice.id)
                    .limit(BATCH)
                )
            )
            if not rows:
                return
            self.campaign.notice_cursor = rows[-1].id
            batch = [
                Occasion(r.customer_id, f"notice:{r.id}", dict(r.data or {}))
                for r in rows
                if kind is NoticeKind.points_expiring or (r.data or {}).get("change") == "upgrade"
            ]
            if batch:
                yield batch

    def downgrade_warnings(self) -> Iterator[list[Occasion]]:
        """Members reviewed within ``days_before`` days whose value would not keep their
        tier (the first tier cannot be lost)."""
        from patron.loyalty import membership
        from patron.loyalty.orders import active_program

        program = active_program(self.session, self.store)
        if program is None:
            return
        days = int(self.campaign.trigger_params.get("days_before", 14))
        lowest = program.tiers[0].code
        after = 0
        while True:
            rows = list(
                self.session.execute(
                    select(LoyaltyMember.customer_id, LoyaltyMember.review_at)
                    .where(
                        LoyaltyMember.store_id == self.store.id,
                        LoyaltyMember.review_at > self.now,
                        LoyaltyMember.review_at <= self.now + timedelta(days=days),
                        LoyaltyMember.tier != lowest,
                        LoyaltyMember.tier != "",
                        LoyaltyMember.customer_id > after,
                    )
                    .order_by(LoyaltyMember.customer_id)
                    .limit(BATCH)
                )
            )
            if not rows:
                return
            after = rows[-1].customer_id
            batch = []
            for r in rows:
                standing = membership.standing(
                    self.session, self.store, program, r.customer_id, self.now
                )
                if standing.value >= standing.retain:
                    continue
                review = as_utc(r.review_at)
                batch.append(
                    Occasion(
                        r.customer_id,
                        f"review:{review.date().isoformat()}",
                        {
                            "review_at": review.isoformat(),
                            "tier": standing.tier.code,
                            "value": standing.value,
                            "retain": standing.retain,
                            "missing": standing.retain - standing.value,
                        },
                    )
                )
            if batch:
                yield batch

    def win_back(self) -> Iterator[list[Occasion]]:
        params = self.campaign.trigger_params
        segs = list(params.get("segments", WIN_BACK_SEGMENTS))
        below = float(params.get("p_alive_below", 0.3))
        every = timedelta(days=int(params.get("every_days", 90)))
        today = self.now.astimezone(zone(self.store.timezone)).date().isoformat()
        after = 0
        while True:
            ids = list(
                self.session.scalars(
                    select(CustomerScore.customer_id)
                    .where(
                        CustomerScore.store_id == self.store.id,
                        or_(CustomerScore.segment.in_(segs), CustomerScore.p_alive < below),
                        CustomerScore.customer_id > after,
                    )
                    .order_by(CustomerScore.customer_id)
                    .limit(BATCH)
                )
            )
            if not ids:
                return
            after = ids[-1]
            recent = set(
                self.session.scalars(
                    select(CampaignRecipient.customer_id).where(
                        CampaignRecipient.campaign_id == self.campaign.id,
                        CampaignRecipient.customer_id.in_(ids),
                        CampaignRecipient.assigned_at > self.now - every,
                    )
                )
            )
            yield [Occasion(i, f"win-back:{today}") for i in ids if i not in recent]

    # -- deciding and queueing -----------------------------------------------------------

    def send(self, batches: Iterable[list[Occasion]]) -> CampaignRun:
        """Decide and queue every occasion. Recommendations are computed once for the
        whole run (one co-occurrence model, every customer at once)."""
        from patron.campaigns import recommend

        occasions = [o for batch in batches for o in batch]
        tally = _Tally()
        if not occasions:
            return tally.run()
        ids = list(dict.fromkeys(o.customer_id for o in occasions))
        self.done = {
            (int(c), str(k))
            for c, k in select_by_keys(
                self.session,
                (CampaignRecipient.customer_id, CampaignRecipient.occasion),
                CampaignRecipient.customer_id,
                ids,
                CampaignRecipient.campaign_id == self.campaign.id,
                one_per_key=False,
            )
        }
        # A run again (after one that failed part way, say) decides only what is left.
        occasions = [o for o in occasions if (o.customer_id, o.key) not in self.done]
        if not occasions:
            return tally.run()
        ids = list(dict.fromkeys(o.customer_id for o in occasions))
        # Read before anything of this run is queued, then kept up to date in memory: one
        # probe per customer, whatever the planner knows of the rows this run inserts.
        self.sent_before = self.cap_counts(ids)
        self.suggestions = recommend.for_customers(self.session, self.store.id, ids, limit=3)
        for start in range(0, len(occasions), BATCH):
            self.send_batch(occasions[start : start + BATCH], tally)
        return tally.run()

    def send_batch(self, batch: list[Occasion], tally: _Tally) -> None:
        if not batch:
            return
        todo = [o for o in batch if (o.customer_id, o.key) not in self.done]
        if not todo:
            return
        ids = sorted({o.customer_id for o in todo})
        customers = {
            c.id: c
            for c in self.session.scalars(
                select(Customer).where(
                    Customer.store_id == self.store.id, self.among(Customer.id, ids)
                )
            )
        }
        channel = self.campaign.channel
        reachable = consents.contactable(
            self.session, self.store, list(customers.values()), channel
        )
        sent_before = self.sent_before
        decided: list[tuple[Occasion, str, RecipientStatus]] = []
        for o in todo:
            arm = domain.assign(
                self.campaign.key, o.customer_id, self.campaign.holdout_percent, self.weights
            )
            if o.customer_id not in reachable:
                status = RecipientStatus.suppressed
            elif not self.cap.allows(sent_before.get(o.customer_id, 0)):
                status = RecipientStatus.capped
            elif arm == domain.HOLDOUT:
                status = RecipientStatus.held_out
            else:
                status = RecipientStatus.queued
                sent_before[o.customer_id] = sent_before.get(o.customer_id, 0) + 1
            decided.append((o, arm, status))
        to_send = [customers[o.customer_id] for o, _, s in decided if s is RecipientStatus.queued]
        contexts = self.contexts(
            to_send, {o.customer_id: o.data for o, _, s in decided if s is RecipientStatus.queued}
        )
        rows: list[dict[str, Any]] = []
        items: list[Item] = []
        for o, arm, status in decided:
            key: str | None = None
            if status is RecipientStatus.queued:
                key = message_key(self.campaign.id, o.customer_id, o.key)
                context = {**contexts[o.customer_id], "occasion": o.data}
                item = self.message(customers[o.customer_id], self.variant_rows[arm], context, key)
                if item is None:
                    status, key = RecipientStatus.failed, None
                else:
                    items.append(item)
            tally.add(status)
            rows.append(
                {
                    "campaign_id": self.campaign.id,
                    "customer_id": o.customer_id,
                    "occasion": o.key,
                    "arm": arm,
                    "status": status.value,
                    "send_at": self.send_at,
                    "window_end": self.window_end,
                    "message_key": key,
                    "assigned_at": self.now,
                }
            )
        outbox.enqueue_many(
            self.session,
            self.store,
            items,
            channel=channel,
            now=self.now,
            not_before=self.send_at,
            base_url=self.base,
        )
        insert_rows(
            self.session, RECIPIENTS, rows, conflict=("campaign_id", "customer_id", "occasion")
        )

    def cap_counts(self, ids: Sequence[int]) -> dict[int, int]:
        """Marketing messages per customer scheduled in the cap window around the send.

        A few customers (a triggered campaign's occasions): a probe per customer. Many (a
        one-off to a segment): one grouped count of the store's messages in the window.
        Probes are planned from statistics that do not know of the messages just queued
        (by the previous campaign to the same audience, say), and an id list filtered
        row by row is compared with every row: at 100,000 customers with a message each,
        150 s and 55 s, against a second or two for the one grouped count."""
        since = self.send_at - self.cap.window
        when = func.coalesce(OutboxMessage.sent_at, OutboxMessage.next_attempt_at)
        where = (
            OutboxMessage.store_id == self.store.id,
            OutboxMessage.needs_consent.is_(True),
            OutboxMessage.status.in_(
                [MessageStatus.queued, MessageStatus.sending, MessageStatus.sent]
            ),
            when > since,
        )
        counts: dict[int, int] = {}
        if len(ids) <= CAP_PROBES:
            for cid, _ in select_by_keys(
                self.session,
                (OutboxMessage.customer_id, OutboxMessage.id),
                OutboxMessage.customer_id,
                list(ids),
                *where,
                one_per_key=False,
            ):
                counts[int(cid)] = counts.get(int(cid), 0) + 1
            return counts
        wanted = set(ids)
        for cid, n in self.session.execute(
            select(OutboxMessage.customer_id, func.count())
            .where(*where, OutboxMessage.customer_id.is_not(None))
            .group_by(OutboxMessage.customer_id)
        ):
            if cid in wanted:
                counts[int(cid)] = int(n)
        return counts

    def render(
        self, variant: CampaignVariant, context: dict[str, Any], lang: str
    ) -> templating.RenderedMessage:
        return templating.render_message(
            variant.subject,
            variant.body,
            context,
            lang,
            html_body=self.campaign.channel is Channel.email,
        )

    def message(
        self, customer: Customer, variant: CampaignVariant, context: dict[str, Any], key: str
    ) -> Item | None:
        """The customer's message rendered in their language (None: no address on the
        channel, or the template failed for this customer)."""
        channel = self.campaign.channel
        address = address_of(customer, channel)
        if address is None:
            return None
        try:
            msg = self.render(variant, context, context["lang"])
        except templating.TemplateFailed as exc:
            log.warning("campaign %s, customer %s: %s", self.campaign.key, customer.id, exc)
            return None
        headers = None
        if channel is Channel.email:
            url = context.get("unsubscribe_url")
            headers = consents.unsubscribe_headers(
                self.store, customer, channel, self.base, url=url
            )
        mail = Rendered(msg.subject, msg.text, msg.html)
        return Item(address, key, mail, KIND, customer.id, headers)

    # -- template context ----------------------------------------------------------------

    def tier_names(self) -> dict[str, Any]:
        if self._tier_names is None:
            from patron.loyalty.orders import active_program

            program = active_program(self.session, self.store)
            self._tier_names = {t.code: t.name for t in program.tiers} if program else {}
        return self._tier_names

    def among(self, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
        """``column IN ids`` (a batch's ids): on PostgreSQL ``= ANY`` of one array
        parameter, so that the driver does not parse a placeholder per id each time."""
        if self.session.get_bind().dialect.name == "postgresql":
            return cast(
                ColumnElement[bool],
                column == any_(bindparam(None, list(ids), type_=postgresql.ARRAY(BigInteger()))),
            )
        return cast(ColumnElement[bool], column.in_(ids))

    def per_customer(self, model: Any, column: str, ids: Sequence[int]) -> dict[int, Any]:
        """customer id -> ``column`` of the store's ``model`` rows (one per customer)."""
        found: dict[int, Any] = {}
        for chunk in chunks(ids):
            found.update(
                self.session.execute(
                    select(model.customer_id, getattr(model, column)).where(
                        model.store_id == self.store.id, self.among(model.customer_id, chunk)
                    )
                ).all()
            )
        return found

    def contexts(
        self, customers: Sequence[Customer], data: dict[int, dict[str, Any]]
    ) -> dict[int, dict[str, Any]]:
        """The template context of each customer (one query per kind of data)."""
        if not customers:
            return {}
        from patron.campaigns import recommend

        ids = [c.id for c in customers]
        points = self.per_customer(LoyaltyAccount, "points_available", ids)
        tiers = self.per_customer(LoyaltyMember, "tier", ids)
        codes = self.per_customer(ReferralCode, "code", ids)
        suggestions = self.suggestions
        if suggestions is None or any(i not in suggestions for i in ids):
            suggestions = recommend.for_customers(self.session, self.store.id, ids, limit=3)
        names = self.tier_names()
        from patron.config import get_settings

        referral_base = get_settings().referral_base_url or self.base
        out: dict[int, dict[str, Any]] = {}
        for c in customers:
            lang = lang_of(c.locale or self.store.locale)
            extra = data.get(c.id) or {}
            tier_code = tiers.get(c.id) or None
            tier_name = names.get(tier_code) if tier_code else None
            tier_text = (
                (getattr(tier_name, lang, None) or tier_name.display()) if tier_name else tier_code
            )
            expires = extra.get("expires_at")
            out[c.id] = {
                "customer": {
                    "external_id": c.external_id,
                    "first_name": c.first_name or "",
                    "last_name": c.last_name or "",
                    "name": _full_name(c, lang),
                    "email": c.email or "",
                    "locale": c.locale or "",
                    "birthday": c.birthday.isoformat() if c.birthday else None,
                    "tier": tier_text,
                    "points": int(points.get(c.id, 0)),
                    "expiring_points": extra.get("points"),
                    "expiring_date": _local_day(expires, self.store.timezone),
                    "referral_link": (
                        share_link(referral_base, codes[c.id]) if c.id in codes else None
                    ),
                },
                "store": {"name": self.store.name, "currency": self.store.currency},
                "recommendations": [
                    {"name": s.name, "sku": s.sku} for s in suggestions.get(c.id, [])
                ],
                "unsubscribe_url": consents.unsubscribe_url(
                    self.store, c.id, self.campaign.channel, self.base
                ),
                "lang": lang,
                "occasion": extra,
            }
        return out


def _full_name(customer: Customer, lang: str) -> str:
    first, last = customer.first_name or "", customer.last_name or ""
    if lang == "zh":
        return last + first
    return " ".join(x for x in (first, last) if x)


def _local_day(value: Any, tz: str) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(value)).astimezone(zone(tz)).date().isoformat()
    except ValueError:
        return None


def _leap(year: int) -> bool:
    try:
        date(year, 2, 29)
    except ValueError:
        return False
    return True


campaign_service = CampaignService()


def run_due(session: Session, store: Store, now: datetime | None = None) -> CampaignRun:
    """The campaigns job of one store (for ``patron.jobs``)."""
    return campaign_service.run_due(session, store, now)


__all__ = ["CampaignIn", "CampaignRun", "SettingsIn", "campaign_service", "run_due"]
