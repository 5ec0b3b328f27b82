"""API shapes of consent, suppression and privacy."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from patron.campaigns.models import SuppressionReason
from patron.customers.models import Channel
from patron.kit.text import Code, ShortText


class ConsentState(BaseModel):
    channel: Channel
    granted: bool
    source: str | None
    recorded_at: datetime | None
    confirmed: bool | None = Field(
        None, description="Email only: the current address was confirmed (double opt-in)."
    )
    suppressed: bool
    may_contact: bool = Field(description="Granted, confirmed (email), not suppressed.")


class ConsentsOut(BaseModel):
    external_id: str
    consents: list[ConsentState]


class ConsentChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Code = Field("api", min_length=1, description="Where it was given, e.g. `checkout`.")


class OptInOut(BaseModel):
    channel: Channel
    status: Literal["granted", "pending", "withdrawn", "unchanged"]
    confirm_url: str | None = Field(
        None, description="Pending email: the double opt-in link to send to the address."
    )
    expires_at: datetime | None = None


class SuppressionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel
    address: ShortText = Field(min_length=3, description="Email, phone, or `customer:<id>`.")
    reason: SuppressionReason = SuppressionReason.manual
    note: ShortText | None = None


class SuppressionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    channel: Channel
    address: str | None = Field(description="Null when only its hash is kept (an erasure).")
    reason: SuppressionReason
    note: str | None
    created_at: datetime


class ErasureOut(BaseModel):
    customer_id: int
    pseudonym: str
    already_erased: bool
    suppressed: int = Field(description="Addresses added to the suppression list.")
    erased_at: datetime


class ExportOut(BaseModel):
    """Everything Patron holds on one customer, by table."""

    model_config = ConfigDict(extra="allow")

    exported_at: datetime
    store: str
    customer: dict[str, Any]
    points_balance: dict[str, Any]


# -- delivery: channel webhooks, bounces, settings ------------------------------------------


class ChannelEndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2048, description="The provider gateway (https).")
    enabled: bool = True
    rotate_secret: bool = Field(False, description="Issue a new signing secret (shown once).")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        return value.strip()


class ChannelEndpointOut(BaseModel):
    channel: Channel
    url: str
    enabled: bool
    secret: str | None = Field(
        None, description="The signing secret: only when issued (creation or rotation)."
    )
    created_at: datetime
    updated_at: datetime


class BounceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: ShortText = Field(min_length=3, description="The address that bounced.")
    type: Literal["hard", "soft", "complaint"]
    message_id: ShortText | None = Field(None, description="The mail's Message-ID, if known.")


class BounceOut(BaseModel):
    action: Literal["hard_bounce", "soft_bounce", "complaint", "unmatched"]
    message: int | None = Field(None, description="The outbox message matched, if any.")
    suppressed: bool = Field(description="The address was newly suppressed.")


class DeliverySettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    survey_invitations_by_mail: bool


class DeliverySettingsOut(DeliverySettingsIn):
    updated_at: datetime | None
