"""A store's support settings: business hours, SLA targets, breach warnings, compensation
caps. One validated document per store (``support_settings``), versioned on each change.

- ``hours``: when the store's clock runs (``sla.HoursSpec``; default 24/7).
- ``targets``: first-response and resolution targets per channel × priority, as business
  time ("30m", "8h", "3d"). A partial document is merged over the defaults, field by
  field: ``targets: {email: {normal: {first_response: 12h}}}`` changes one number.
  The default e-mail first response is 24 h (seed 001: "email answered within 24 hours").
- ``warn_at``: the share of a target used up when a breach warning is raised.
- ``caps``: the most compensation one role may grant without approval, in points and in
  coupon face value (major units of the programme's currency); ``null`` is no cap. Caps
  must grow with the role: agent ≤ lead ≤ manager.
"""

from __future__ import annotations

import copy
import enum
import itertools
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    ValidationError,
    model_validator,
)
from sqlalchemy.orm import Session

from patron.errors import Invalid, validation_errors
from patron.kit.clock import utcnow
from patron.kit.hashing import payload_hash
from patron.kit.money import MAX_MAJOR
from patron.kit.text import check_json_value
from patron.stores.models import Store
from patron.support import repository as repo
from patron.support.models import Priority, TicketChannel
from patron.support.sla import DEFAULT_HOURS, BusinessCalendar, HoursSpec

MAX_DURATION_S = 366 * 86_400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_PART = re.compile(r"(\d+)\s*([smhdw])")
_DURATION = re.compile(r"^(?:\s*\d+\s*[smhdw])+\s*$")


class Role(enum.StrEnum):
    """Who grants a compensation; each role's cap is at least the one below it."""

    agent = "agent"
    lead = "lead"
    manager = "manager"


ROLE_ORDER = (Role.agent, Role.lead, Role.manager)


def parse_duration(value: Any) -> int:
    """Seconds of a duration written ``30m``, ``8h``, ``3d``, ``1w`` or combined
    (``1d 4h``); units s, m, h, d, w. Business time, counted by the store's hours."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected a duration like '30m', '8h' or '3d', got {value!r}")
    if isinstance(value, int):
        raise ValueError(
            f"{value!r} has no unit: write a duration like '30m', '8h' or '3d' (s, m, h, d, w)"
        )
    text = value.strip().lower()
    if not _DURATION.match(text):
        raise ValueError(
            f"{value!r} is not a duration like '30m', '8h' or '3d' (units s, m, h, d, w)"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"{value!r}: a target must be longer than zero")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r}: a target may be at most 366 days")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact text of a duration: 86400 → ``1d``, 5400 → ``1h30m``."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Target(_Strict):
    """Business time allowed until the first reply, and until the ticket is resolved."""

    first_response: Duration
    resolution: Duration

    @model_validator(mode="after")
    def _ordered(self) -> Target:
        if self.resolution < self.first_response:
            raise ValueError(
                "resolution: must not be shorter than first_response "
                f"({format_duration(self.resolution)} < {format_duration(self.first_response)})"
            )
        return self


class Cap(_Strict):
    """The most one compensation may give without approval; None: no cap."""

    points: StrictInt | None = Field(None, ge=0, le=10**9)
    coupon_value: Decimal | None = Field(None, ge=0, lt=MAX_MAJOR, allow_inf_nan=False)


def _t(first: str, resolution: str) -> dict[str, str]:
    return {"first_response": first, "resolution": resolution}


# Asynchronous channels answer in hours, live ones in minutes. Resolution targets are the
# same for every channel of one priority: a problem takes as long to fix however it came.
_EMAIL = {
    "urgent": _t("4h", "24h"),
    "high": _t("8h", "48h"),
    "normal": _t("24h", "72h"),  # seed 001: e-mail answered within 24 hours
    "low": _t("48h", "5d"),
}
DEFAULT_TARGETS: dict[str, dict[str, dict[str, str]]] = {
    "email": _EMAIL,
    "survey": _EMAIL,  # follow-ups of unhappy answers and reviews: like e-mail
    "review": _EMAIL,
    "app": {
        "urgent": _t("2h", "24h"),
        "high": _t("4h", "48h"),
        "normal": _t("8h", "72h"),
        "low": _t("24h", "5d"),
    },
    "social": {  # public: answered fast (seed 004: keep reputation consistent)
        "urgent": _t("1h", "24h"),
        "high": _t("2h", "48h"),
        "normal": _t("4h", "72h"),
        "low": _t("8h", "5d"),
    },
    "chat": {
        "urgent": _t("2m", "4h"),
        "high": _t("5m", "8h"),
        "normal": _t("10m", "24h"),
        "low": _t("30m", "48h"),
    },
    "phone": {
        "urgent": _t("5m", "4h"),
        "high": _t("15m", "8h"),
        "normal": _t("30m", "24h"),
        "low": _t("1h", "48h"),
    },
}
DEFAULT_CAPS: dict[str, dict[str, Any]] = {
    "agent": {"points": 200, "coupon_value": "20"},
    "lead": {"points": 1000, "coupon_value": "100"},
    "manager": {"points": None, "coupon_value": None},
}


def _merge(base: Any, over: Any) -> Any:
    """``over`` laid on ``base``: mappings merged key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return over


def _above(lower: Any, higher: Any) -> bool:
    """Whether cap ``higher`` is below ``lower`` (None is no cap, above everything)."""
    if higher is None:
        return False
    return lower is None or higher < lower


def _known_keys(name: str, given: dict[Any, Any]) -> None:
    """Unknown channels, priorities and roles named plainly (before the defaults are
    merged in, which would add confusing "missing" errors under them)."""
    if name == "caps":
        levels: list[tuple[str, list[str]]] = [("role", [r.value for r in Role])]
    else:
        levels = [
            ("channel", [c.value for c in TicketChannel]),
            ("priority", [p.value for p in Priority]),
        ]
    what, allowed = levels[0]
    for key, inner in given.items():
        if key not in allowed:
            raise ValueError(f"{name}.{key}: unknown {what} (use {', '.join(allowed)})")
        if len(levels) > 1 and isinstance(inner, dict):
            sub, sub_allowed = levels[1]
            for key2 in inner:
                if key2 not in sub_allowed:
                    raise ValueError(
                        f"{name}.{key}.{key2}: unknown {sub} (use {', '.join(sub_allowed)})"
                    )


class SupportConfig(_Strict):
    hours: HoursSpec = DEFAULT_HOURS
    targets: dict[TicketChannel, dict[Priority, Target]]
    warn_at: float = Field(0.8, gt=0, lt=1, allow_inf_nan=False)
    caps: dict[Role, Cap]

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = dict(value)
        for name, defaults in (("targets", DEFAULT_TARGETS), ("caps", DEFAULT_CAPS)):
            given = out.get(name)
            if given is None:
                out[name] = copy.deepcopy(defaults)
            elif isinstance(given, dict):
                _known_keys(name, given)
                out[name] = _merge(copy.deepcopy(defaults), given)
        return out

    @model_validator(mode="after")
    def _complete(self) -> SupportConfig:
        for channel in TicketChannel:
            for priority in Priority:
                if priority not in self.targets.get(channel, {}):
                    raise ValueError(f"targets.{channel}.{priority}: missing")
        for lower, higher in itertools.pairwise(ROLE_ORDER):
            a, b = self.caps[lower], self.caps[higher]
            for field in ("points", "coupon_value"):
                if _above(getattr(a, field), getattr(b, field)):
                    raise ValueError(
                        f"caps.{higher}.{field}: must not be below the {lower}'s cap "
                        f"({getattr(b, field)} < {getattr(a, field)})"
                    )
        return self

    def target(self, channel: TicketChannel, priority: Priority) -> Target:
        return self.targets[channel][priority]

    def cap(self, role: Role) -> Cap:
        return self.caps[role]

    def calendar(self) -> BusinessCalendar:
        return _calendar(self.hours)

    def document(self) -> dict[str, Any]:
        """The JSON form stored and shown (durations as text)."""
        return self.model_dump(mode="json")


_CALENDARS: dict[str, BusinessCalendar] = {}
_CONFIGS: dict[str, SupportConfig] = {}


def _calendar(hours: HoursSpec) -> BusinessCalendar:
    key = hours.model_dump_json()
    found = _CALENDARS.get(key)
    if found is None:
        if len(_CALENDARS) > 256:
            _CALENDARS.clear()
        found = _CALENDARS[key] = hours.calendar()
    return found


def parse(raw: Any) -> SupportConfig:
    """A validated configuration; ``Invalid`` naming every refused field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise Invalid("body: expected a mapping of support settings")
    try:
        # Lone surrogates or NUL in keys would crash the validator's own messages.
        check_json_value(raw)
    except ValueError as exc:
        raise Invalid(f"body: {exc}") from None
    try:
        return SupportConfig.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {**e, "field": _collapse(e["field"])} for e in validation_errors(list(exc.errors()))
        ]
        first = errors[0]
        raise Invalid(f"{first['field']}: {first['message']}", errors=errors) from None


def _collapse(field: str) -> str:
    """``hours.timezone.timezone`` (a nested model naming its own field) → ``hours.timezone``."""
    parts = field.split(".")
    while len(parts) > 1 and parts[-1] == parts[-2]:
        parts.pop()
    return ".".join(parts)


def defaults() -> SupportConfig:
    return parse({})


def load(session: Session, store: Store) -> SupportConfig:
    """The store's settings (the defaults until some are applied)."""
    row = repo.settings_row(session, store.id)
    doc: dict[str, Any] = {} if row is None else row.config
    key = payload_hash(doc)
    found = _CONFIGS.get(key)
    if found is None:
        if len(_CONFIGS) > 256:
            _CONFIGS.clear()
        found = _CONFIGS[key] = SupportConfig.model_validate(doc)
    return found


def version(session: Session, store: Store) -> int:
    """The stored version (0: defaults, nothing applied yet)."""
    row = repo.settings_row(session, store.id)
    return 0 if row is None else row.version


def apply(session: Session, store: Store, raw: Any) -> tuple[SupportConfig, int]:
    """Validate and store a (partial) configuration; returns it merged over the defaults
    and its version. Invalid: ``Invalid`` naming the field, nothing written. The same
    configuration again is a no-op that keeps the version."""
    config = parse(raw)
    doc = config.document()
    row = repo.settings_row(session, store.id, for_update=True)
    now = utcnow()
    if row is None:
        row = repo.add_settings(session, store.id, doc, now)
        return config, row.version
    if row.config != doc:
        row.config = doc
        row.version += 1
        row.updated_at = now
        session.flush()
    return config, row.version
