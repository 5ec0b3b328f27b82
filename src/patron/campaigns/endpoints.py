"""Consent, suppression and privacy routes (the customer-facing pages are in pages.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder

from patron.auth import Principal, Scope, SessionDep, require
from patron.campaigns import bounces, privacy, webhook
from patron.campaigns import repository as repo
from patron.campaigns.consent import consents
from patron.campaigns.models import ChannelEndpoint
from patron.campaigns.outbox import outbox
from patron.campaigns.pages import router as pages_router
from patron.campaigns.schemas import (
    BounceIn,
    BounceOut,
    ChannelEndpointIn,
    ChannelEndpointOut,
    ConsentChange,
    ConsentsOut,
    DeliverySettingsIn,
    DeliverySettingsOut,
    ErasureOut,
    ExportOut,
    OptInOut,
    SuppressionIn,
    SuppressionOut,
)
from patron.campaigns.tracking import router as tracking_router
from patron.config import get_settings
from patron.customers.models import Channel
from patron.kit.pagination import Page
from patron.kit.text import CleanText

router = APIRouter(tags=["consent"])
router.include_router(pages_router)
router.include_router(tracking_router)
Ingest = Annotated[Principal, require(Scope.ingest)]
Read = Annotated[Principal, require(Scope.read)]
Admin = Annotated[Principal, require(Scope.admin)]
ExtId = Annotated[CleanText, Path(min_length=1, max_length=128)]
Address = Annotated[CleanText, Path(min_length=3, max_length=320)]


def public_base(request: Request) -> str:
    """Where links point: ``PATRON_SURVEY_BASE_URL`` (the store's public host) when set,
    else this API's own URL."""
    return get_settings().survey_base_url or str(request.base_url)


def actor(who: Principal) -> str:
    return f"api-key:{who.key_id}"


@router.get("/v1/customers/{external_id}/consents", response_model=ConsentsOut)
def read_consents(external_id: ExtId, session: SessionDep, who: Read) -> ConsentsOut:
    """Each channel's consent, its confirmation (email), suppression, and `may_contact`."""
    customer = consents.customer(session, who.store, external_id)
    return ConsentsOut(
        external_id=customer.external_id, consents=consents.state(session, who.store, customer)
    )


@router.post("/v1/customers/{external_id}/consents/{channel}/opt-in", response_model=OptInOut)
def opt_in(
    external_id: ExtId,
    channel: Channel,
    body: ConsentChange,
    session: SessionDep,
    who: Ingest,
    request: Request,
) -> OptInOut:
    """Grant a channel. Email is *pending* until the returned `confirm_url` is opened
    (double opt-in): send it to the customer's address."""
    customer = consents.customer(session, who.store, external_id)
    return consents.opt_in(session, who.store, customer, channel, body.source, public_base(request))


@router.post("/v1/customers/{external_id}/consents/{channel}/opt-out", response_model=OptInOut)
def opt_out(
    external_id: ExtId, channel: Channel, body: ConsentChange, session: SessionDep, who: Ingest
) -> OptInOut:
    """Withdraw a channel's consent (the address is not suppressed: see unsubscribe)."""
    customer = consents.customer(session, who.store, external_id)
    changed = consents.withdraw(session, who.store, customer, channel, body.source)
    return OptInOut(channel=channel, status="withdrawn" if changed else "unchanged")


@router.get("/v1/customers/{external_id}/unsubscribe-headers", response_model=dict[str, str])
def unsubscribe_headers(
    external_id: ExtId, session: SessionDep, who: Read, request: Request, channel: Channel
) -> dict[str, str]:
    """The `List-Unsubscribe` and `List-Unsubscribe-Post` headers (RFC 8058) of a message
    to this customer on this channel."""
    customer = consents.customer(session, who.store, external_id)
    return consents.unsubscribe_headers(who.store, customer, channel, public_base(request))


@router.get("/v1/suppressions", response_model=Page[SuppressionOut], tags=["suppression"])
def list_suppressions(
    session: SessionDep,
    who: Admin,
    channel: Channel | None = None,
    limit: int = Query(50, ge=1, le=500),
    after: int | None = Query(None, ge=0, lt=2**63),
) -> Page[SuppressionOut]:
    """The store's suppression list, oldest first."""
    rows = repo.suppressions_page(session, who.store.id, channel, limit, after)
    return Page(
        items=[SuppressionOut.model_validate(r) for r in rows],
        next_after=rows[-1].id if len(rows) == limit else None,
    )


@router.post(
    "/v1/suppressions",
    response_model=SuppressionOut,
    responses={201: {"model": SuppressionOut}},
    tags=["suppression"],
)
def add_suppression(
    body: SuppressionIn, session: SessionDep, who: Admin, response: Response
) -> SuppressionOut:
    """Suppress an address (a hard bounce, a complaint, a manual block). 201 when new,
    200 with the existing entry when already suppressed."""
    row, created = consents.suppress(
        session, who.store, body.channel, body.address, body.reason, body.note
    )
    response.status_code = 201 if created else 200
    return SuppressionOut.model_validate(row)


@router.delete("/v1/suppressions/{channel}/{address}", status_code=204, tags=["suppression"])
def remove_suppression(
    channel: Channel, address: Address, session: SessionDep, who: Admin
) -> Response:
    """Lift a suppression (404 if the address is not suppressed)."""
    consents.unsuppress(session, who.store, channel, address)
    return Response(status_code=204)


@router.get("/v1/customers/{external_id}/export", response_model=ExportOut, tags=["privacy"])
def export_customer(external_id: ExtId, session: SessionDep, who: Admin) -> Any:
    """Everything Patron holds on the customer (PIPL / GDPR access and portability)."""
    return jsonable_encoder(privacy.export(session, who.store, external_id, actor(who)))


@router.post("/v1/customers/{external_id}/erase", response_model=ErasureOut, tags=["privacy"])
def erase_customer(external_id: ExtId, session: SessionDep, who: Admin) -> ErasureOut:
    """Erase the customer's personal data; the ledger and the store's totals stay true.
    Idempotent: the original external id still answers, with `already_erased`."""
    return privacy.erase(session, who.store, external_id, actor(who))


# -- delivery: channel webhooks, bounces, settings ------------------------------------------


@router.get("/v1/channels/{channel}", response_model=ChannelEndpointOut, tags=["delivery"])
def read_channel(channel: Channel, session: SessionDep, who: Admin) -> ChannelEndpointOut:
    """The webhook endpoint of an SMS, WeChat or push channel (its secret is not shown)."""
    return _endpoint_out(webhook.get_endpoint(session, who.store, channel), None)


def _endpoint_out(row: ChannelEndpoint, secret: str | None) -> ChannelEndpointOut:
    return ChannelEndpointOut(
        channel=row.channel,
        url=row.url,
        enabled=row.enabled,
        secret=secret,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.put(
    "/v1/channels/{channel}",
    response_model=ChannelEndpointOut,
    responses={201: {"model": ChannelEndpointOut}},
    tags=["delivery"],
)
def put_channel(
    channel: Channel,
    body: ChannelEndpointIn,
    session: SessionDep,
    who: Admin,
    response: Response,
) -> ChannelEndpointOut:
    """Set where a channel's messages are POSTed. 201 on creation, with the signing
    `secret` shown this once (also on `rotate_secret`); keep it to verify
    `Patron-Signature`."""
    row, secret, created = webhook.put_endpoint(
        session, who.store, channel, body.url, body.enabled, rotate_secret=body.rotate_secret
    )
    response.status_code = 201 if created else 200
    return _endpoint_out(row, secret)


@router.post("/v1/bounces", response_model=BounceOut, tags=["delivery"])
def post_bounce(body: BounceIn, session: SessionDep, who: Admin) -> BounceOut:
    """A provider's bounce or complaint: hard and complaint suppress the address; each is
    recorded on the message (by `message_id`, else the latest mail to the address)."""
    out = bounces.report_from_provider(session, who.store, body.email, body.type, body.message_id)
    return BounceOut(action=out.action, message=out.message, suppressed=out.suppressed)


@router.get("/v1/delivery-settings", response_model=DeliverySettingsOut, tags=["delivery"])
def read_delivery_settings(session: SessionDep, who: Admin) -> DeliverySettingsOut:
    """The store's delivery choices (the defaults until set)."""
    return outbox.delivery_settings(session, who.store)


@router.put("/v1/delivery-settings", response_model=DeliverySettingsOut, tags=["delivery"])
def put_delivery_settings(
    body: DeliverySettingsIn, session: SessionDep, who: Admin
) -> DeliverySettingsOut:
    """`survey_invitations_by_mail`: the jobs queue due survey invitations in Patron's
    outbox (default off: the store sends them from its own system)."""
    return outbox.set_delivery_settings(session, who.store, body.survey_invitations_by_mail)
