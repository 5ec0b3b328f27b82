"""API shapes of customers and consent."""

from __future__ import annotations

import re
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from patron.customers.models import Channel
from patron.kit.clock import zone
from patron.kit.text import Attributes, Code, ExternalId, Instant, ShortText

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ()\-.]{3,31}$")
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel
    granted: bool
    source: Code = Field("api", description="Where consent was given, e.g. `checkout`.")
    recorded_at: Instant | None = Field(None, description="Defaults to the time of receipt.")


class CustomerIn(BaseModel):
    """A customer as the store knows it. Upserted by `external_id`."""

    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    email: ShortText | None = None
    phone: ShortText | None = None
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    birthday: date | None = None
    locale: ShortText | None = Field(None, examples=["zh-CN"])
    timezone: ShortText | None = Field(None, examples=["Asia/Shanghai"])
    attributes: Attributes = Field(default_factory=dict)
    flagged: bool = False
    flagged_reason: ShortText | None = None
    created_at: Instant | None = Field(None, description="Sign-up time at the store.")
    consents: list[ConsentIn] = Field(default_factory=list, max_length=8)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if len(value) > 320 or not _EMAIL.match(value):
            raise ValueError("not an email address")
        return value.lower()

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _PHONE.match(value):
            raise ValueError("not a phone number (digits, spaces, +()-. only)")
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if len(value) > 16 or not _LOCALE.match(value):
            raise ValueError("not a locale tag like `zh-CN` or `en`")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        zone(value)
        return value

    @field_validator("birthday")
    @classmethod
    def _birthday(cls, value: date | None) -> date | None:
        if value is not None and not (date(1900, 1, 1) <= value <= date.today()):
            raise ValueError("birthday must be between 1900-01-01 and today")
        return value

    @field_validator("consents")
    @classmethod
    def _one_per_channel(cls, value: list[ConsentIn]) -> list[ConsentIn]:
        channels = [c.channel for c in value]
        if len(channels) != len(set(channels)):
            raise ValueError("one consent per channel")
        return value


class ConsentOut(BaseModel):
    channel: Channel
    granted: bool
    source: str
    recorded_at: datetime


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    external_id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    birthday: date | None
    locale: str | None
    timezone: str | None
    attributes: dict[str, object]
    traits: dict[str, object]
    flagged: bool
    flagged_reason: str | None
    is_stub: bool
    created_at: datetime
    updated_at: datetime
    consents: list[ConsentOut] = Field(default_factory=list)


class TouchpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    occurred_at: datetime
    ref: str | None
    data: dict[str, object]
