"""Campaign routes: create, edit, schedule, pause, cancel, preview, test, results.

Writes need an ``admin`` key, reads a ``read`` key. The service decides; routes parse
and answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from patron.auth import Principal, Scope, SessionDep, require
from patron.campaigns.campaign import KEY_RE, CampaignIn, SettingsIn, campaign_service
from patron.campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    CampaignTrigger,
)
from patron.customers.models import Channel
from patron.kit.pagination import Page
from patron.kit.text import CleanText, Instant

router = APIRouter(tags=["campaigns"])
Read = Annotated[Principal, require(Scope.read)]
Admin = Annotated[Principal, require(Scope.admin)]
Key = Annotated[str, Path(pattern=KEY_RE)]


class VariantOut(BaseModel):
    key: str
    weight: int
    subject: dict[str, str]
    body: dict[str, str]


class CampaignOut(BaseModel):
    key: str
    name: str
    kind: CampaignKind
    trigger: CampaignTrigger | None
    trigger_params: dict[str, Any]
    channel: Channel
    segment: str | None
    segment_definition: dict[str, Any] | None
    status: CampaignStatus
    scheduled_at: datetime | None
    holdout_percent: int
    attribution_days: int
    active_since: datetime | None
    last_run_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime
    variants: list[VariantOut]
    recipients: dict[str, int] = Field(description="Recipients by status.")
    id: int = Field(description="The id in outbox keys `campaign:<id>:<customer id>`.")


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scheduled_at: Instant | None = Field(
        None, description="One-off: when to send (default now). Triggered: leave out."
    )


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer: CleanText = Field(min_length=1, max_length=128, description="External id.")
    variant: str | None = Field(None, max_length=16)
    lang: str | None = Field(None, pattern=r"^(en|zh)$")


class PreviewOut(BaseModel):
    variant: str
    lang: str
    subject: str
    text: str
    html: str


class TestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: CleanText = Field(min_length=3, max_length=320)
    customer: CleanText | None = Field(None, min_length=1, max_length=128)
    variant: str | None = Field(None, max_length=16)
    lang: str | None = Field(None, pattern=r"^(en|zh)$")


class TestOut(BaseModel):
    message_id: int
    variant: str


def campaign_out(session: Any, campaign: Campaign) -> CampaignOut:
    return CampaignOut(
        id=campaign.id,
        key=campaign.key,
        name=campaign.name,
        kind=campaign.kind,
        trigger=campaign.trigger,
        trigger_params=campaign.trigger_params,
        channel=campaign.channel,
        segment=campaign_service.segment_key(session, campaign),
        segment_definition=campaign.segment_definition,
        status=campaign.status,
        scheduled_at=campaign.scheduled_at,
        holdout_percent=campaign.holdout_percent,
        attribution_days=campaign.attribution_days,
        active_since=campaign.active_since,
        last_run_at=campaign.last_run_at,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
        variants=[
            VariantOut(key=v.key, weight=v.weight, subject=v.subject, body=v.body)
            for v in campaign_service.variants(session, campaign)
        ],
        recipients=campaign_service.recipient_counts(session, campaign),
    )


@router.get("/v1/campaign-settings", response_model=SettingsIn)
def read_settings(session: SessionDep, who: Read) -> SettingsIn:
    """The frequency cap and quiet hours (store time zone) every campaign obeys."""
    return campaign_service.settings(session, who.store)


@router.put("/v1/campaign-settings", response_model=SettingsIn)
def write_settings(body: SettingsIn, session: SessionDep, who: Admin) -> SettingsIn:
    """Set the frequency cap (`cap_messages` per `cap_days`) and quiet hours."""
    return campaign_service.save_settings(session, who.store, body)


@router.get("/v1/campaigns", response_model=Page[CampaignOut])
def list_campaigns(
    session: SessionDep,
    who: Read,
    status: CampaignStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Page[CampaignOut]:
    rows = campaign_service.find(session, who.store, status=status, limit=limit + 1, after=after)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(
        items=[campaign_out(session, c) for c in rows],
        next_after=rows[-1].id if more and rows else None,
    )


@router.post("/v1/campaigns", response_model=CampaignOut, status_code=201)
def create_campaign(body: CampaignIn, session: SessionDep, who: Admin) -> CampaignOut:
    """A new campaign, as a draft. Templates are checked: a syntax error or an unknown
    name answers 422 naming the variant, part and language (`variants.B.body.zh`)."""
    return campaign_out(session, campaign_service.create(session, who.store, body))


@router.get("/v1/campaigns/{key}", response_model=CampaignOut)
def read_campaign(key: Key, session: SessionDep, who: Read) -> CampaignOut:
    return campaign_out(session, campaign_service.get(session, who.store, key))


@router.put("/v1/campaigns/{key}", response_model=CampaignOut)
def replace_campaign(key: Key, body: CampaignIn, session: SessionDep, who: Admin) -> CampaignOut:
    """Replace a draft or paused campaign (variants included)."""
    return campaign_out(session, campaign_service.update(session, who.store, key, body))


@router.delete("/v1/campaigns/{key}", status_code=204)
def delete_campaign(key: Key, session: SessionDep, who: Admin) -> Response:
    """Delete a draft (others are cancelled instead, keeping their results)."""
    campaign_service.delete(session, who.store, key)
    return Response(status_code=204)


@router.post("/v1/campaigns/{key}/schedule", response_model=CampaignOut)
def schedule_campaign(key: Key, body: ScheduleIn, session: SessionDep, who: Admin) -> CampaignOut:
    """One-off: send at `scheduled_at` (default now). Triggered: start firing."""
    campaign = campaign_service.schedule(session, who.store, key, body.scheduled_at)
    return campaign_out(session, campaign)


@router.post("/v1/campaigns/{key}/pause", response_model=CampaignOut)
def pause_campaign(key: Key, session: SessionDep, who: Admin) -> CampaignOut:
    return campaign_out(session, campaign_service.pause(session, who.store, key))


@router.post("/v1/campaigns/{key}/cancel", response_model=CampaignOut)
def cancel_campaign(key: Key, session: SessionDep, who: Admin) -> CampaignOut:
    """Stop for good; its messages still waiting in the outbox are withdrawn."""
    return campaign_out(session, campaign_service.cancel(session, who.store, key))


@router.post("/v1/campaigns/{key}/preview", response_model=PreviewOut)
def preview_campaign(key: Key, body: PreviewIn, session: SessionDep, who: Read) -> PreviewOut:
    """The message as a customer would get it (their variant unless one is given)."""
    variant, msg = campaign_service.preview(
        session, who.store, key, body.customer, variant=body.variant, lang=body.lang
    )
    return PreviewOut(
        variant=variant, lang=msg.lang, subject=msg.subject, text=msg.text, html=msg.html
    )


@router.post("/v1/campaigns/{key}/test", response_model=TestOut, status_code=202)
def test_campaign(key: Key, body: TestIn, session: SessionDep, who: Admin) -> TestOut:
    """Queue a test to any address (subject prefixed `[TEST]`; not counted in results)."""
    message_id, variant = campaign_service.send_test(
        session,
        who.store,
        key,
        body.address,
        body.customer,
        variant=body.variant,
        lang=body.lang,
    )
    return TestOut(message_id=message_id, variant=variant)


@router.get("/v1/campaigns/{key}/results")
def campaign_results(key: Key, session: SessionDep, who: Read) -> dict[str, Any]:
    """Recipients by status; messages sent, opened, clicked, bounced; conversions and
    revenue per recipient (minor units) of each group within the attribution window;
    uplift against the holdout with 95% intervals, overall and per variant; each variant
    against the first (A/B)."""
    return campaign_service.results(session, who.store, key)
