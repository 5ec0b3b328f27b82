"""Programme versions of a store: apply, read, list, and simulate an event against one.

Applying validates the whole document first (every problem named by its field, nothing
written on any), then appends a version and makes it the store's only active one. The
same configuration as the active one (equal ``fingerprint()``) is a no-op that returns
the active version. Services flush, never commit: the caller's unit of work does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from patron.errors import Invalid, NotFound
from patron.kit.clock import utcnow
from patron.kit.money import MAX_MAJOR, MoneyError, exponent, from_minor, to_minor
from patron.kit.text import (
    Attributes,
    Category,
    ExternalId,
    Instant,
    Label,
    check_json_value,
)
from patron.loyalty.models import ProgramVersion
from patron.loyalty.program import (
    EventKind,
    Problem,
    ProgramConfig,
    ProgramError,
    Slug,
    parse,
)
from patron.loyalty.rules import EarnEvent, Evaluation, Line, MemberContext, evaluate
from patron.stores.models import Store

Source = Literal["api", "cli"]


# -- repository ----------------------------------------------------------------------------


def active_row(session: Session, store_id: int) -> ProgramVersion | None:
    return session.scalars(
        select(ProgramVersion).where(
            ProgramVersion.store_id == store_id, ProgramVersion.active.is_(True)
        )
    ).first()


def version_rows(
    session: Session, store_id: int, limit: int, before: int | None = None
) -> Sequence[ProgramVersion]:
    query = select(ProgramVersion).where(ProgramVersion.store_id == store_id)
    if before is not None:
        query = query.where(ProgramVersion.version < before)
    return session.scalars(query.order_by(ProgramVersion.version.desc()).limit(limit)).all()


def _lock_store(session: Session, store_id: int) -> None:
    """Serialise applies of one store (SQLite: BEGIN IMMEDIATE already does)."""
    session.execute(select(Store.id).where(Store.id == store_id).with_for_update())


def _last_version(session: Session, store_id: int) -> int:
    found = session.scalar(
        select(func.max(ProgramVersion.version)).where(ProgramVersion.store_id == store_id)
    )
    return int(found or 0)


# -- service -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    version: int
    fingerprint: str
    created: bool


def invalid(exc: ProgramError) -> Invalid:
    """The API error of an invalid programme: every problem with its field."""
    errors = [{"field": p.path or "body", "message": p.message} for p in exc.problems]
    first = exc.problems[0] if exc.problems else Problem("", "invalid programme")
    return Invalid(f"invalid loyalty programme: {first}", errors=errors)


def load(row: ProgramVersion) -> ProgramConfig:
    """The configuration of a stored version, with its version number."""
    return parse({**row.config, "version": row.version})


# Parsed configurations by (fingerprint, version): a version's configuration never
# changes once applied, so a hit needs only the active version's number and fingerprint
# (read with the request's other data); an apply in any process is seen at once.
_CONFIGS: dict[tuple[str, int], ProgramConfig] = {}
_CONFIGS_SIZE = 64


def _version_row(session: Session, store_id: int, version: int) -> ProgramVersion | None:
    return session.scalars(
        select(ProgramVersion).where(
            ProgramVersion.store_id == store_id, ProgramVersion.version == version
        )
    ).first()


def config_of(session: Session, store_id: int, version: int, fingerprint: str) -> ProgramConfig:
    """The parsed configuration of a store's programme version, read and parsed once per
    process (a miss reads the version's row)."""
    found = _CONFIGS.get((fingerprint, version))
    if found is not None:
        return found
    row = _version_row(session, store_id, version)
    if row is None:
        raise NotFound(f"This store has no loyalty programme version {version}.")
    program = load(row)
    if len(_CONFIGS) >= _CONFIGS_SIZE:
        _CONFIGS.clear()  # a handful of programmes are live at a time
    _CONFIGS[(row.fingerprint, row.version)] = program
    return program


class ProgramService:
    def validate(self, data: Any) -> ProgramConfig:
        """Parse a programme document (parsed JSON or YAML); raises Invalid."""
        if isinstance(data, ProgramConfig):
            return data
        try:
            check_json_value(data)
        except ValueError as exc:
            raise Invalid(f"body: {exc}") from None
        try:
            return parse(data)
        except ProgramError as exc:
            raise invalid(exc) from None

    def apply(
        self,
        session: Session,
        store: Store,
        data: Any,
        *,
        source: Source = "api",
        api_key_id: int | None = None,
    ) -> Applied:
        """Validate and apply a programme; the active one again changes nothing."""
        program = self.validate(data)
        fingerprint = program.fingerprint()
        _lock_store(session, store.id)
        current = active_row(session, store.id)
        if current is not None and current.fingerprint == fingerprint:
            return Applied(current.version, fingerprint, created=False)
        version = _last_version(session, store.id) + 1
        session.execute(
            update(ProgramVersion)
            .where(ProgramVersion.store_id == store.id, ProgramVersion.active.is_(True))
            .values(active=False)
        )
        session.add(
            ProgramVersion(
                store_id=store.id,
                version=version,
                config=program.model_dump(mode="json", exclude={"version"}),
                fingerprint=fingerprint,
                active=True,
                source=source,
                api_key_id=api_key_id,
                created_at=utcnow(),
            )
        )
        session.flush()
        return Applied(version, fingerprint, created=True)

    def active(self, session: Session, store: Store) -> tuple[ProgramVersion, ProgramConfig]:
        row = active_row(session, store.id)
        if row is None:
            raise NotFound("This store has no loyalty programme: apply one first.")
        return row, load(row)

    def versions(
        self, session: Session, store: Store, limit: int = 100, before: int | None = None
    ) -> Sequence[ProgramVersion]:
        """Newest first."""
        return version_rows(session, store.id, limit, before)

    def simulate(
        self, session: Session, store: Store, body: SimulateIn, program: ProgramConfig | None = None
    ) -> SimulateOut:
        """What ``body`` would earn under ``program`` (default: the active one)."""
        version: int | None = None
        if program is None:
            row, program = self.active(session, store)
            version = row.version
        evaluation = simulate(program, body, store.timezone)
        return SimulateOut.of(evaluation, version, program.fingerprint())


programs = ProgramService()


# -- simulation ----------------------------------------------------------------------------

Amount = Annotated[Decimal, Field(ge=0, lt=MAX_MAJOR, allow_inf_nan=False, max_digits=20)]


class SimLineIn(BaseModel):
    """An order line: its ``net`` amount, or ``quantity`` × ``unit_price`` − ``discount``."""

    model_config = ConfigDict(extra="forbid")

    sku: ExternalId | None = None
    category: Category | None = None
    net: Amount | None = None
    quantity: int = Field(1, ge=1, le=1_000_000)
    unit_price: Amount | None = None
    discount: Amount = Decimal(0)

    @model_validator(mode="after")
    def _amount(self) -> SimLineIn:
        if (self.net is None) == (self.unit_price is None):
            raise ValueError("net: give `net` or `unit_price` (with `quantity`), not both")
        return self

    def amount(self) -> Decimal:
        if self.net is not None:
            return self.net
        assert self.unit_price is not None
        return self.unit_price * self.quantity - self.discount


class SimEventIn(BaseModel):
    """An order (or another member action) to simulate. ``amount`` is the merchandise net
    of discounts, shipping and tax excluded; default: the sum of the lines."""

    model_config = ConfigDict(extra="forbid")

    kind: EventKind = EventKind.order
    amount: Amount | None = None
    currency: str | None = Field(
        None, min_length=3, max_length=3, description="Default: the programme's."
    )
    lines: list[SimLineIn] = Field(default_factory=list, max_length=500)
    channel: Label | None = None
    shipping: Amount = Decimal(0)
    tax: Amount = Decimal(0)
    occurred_at: Instant | None = Field(None, description="Default: now.")
    referral_role: Literal["referrer", "referee"] | None = None


class SimMemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: Slug | None = Field(None, description="Tier code; default: the first tier.")
    first_order: bool = False
    birthday: date | None = None
    attributes: Attributes = Field(default_factory=dict)


class SimulateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order: SimEventIn
    member: SimMemberIn = SimMemberIn()


class RuleTraceOut(BaseModel):
    rule_id: str
    label: str
    priority: int
    stacking: str
    fired: bool
    reason: str
    points: int
    growth: int
    cap: str | None
    condition: str | None


class SimulateOut(BaseModel):
    program_version: int | None = Field(description="Null: a programme not applied.")
    fingerprint: str
    kind: EventKind
    points: int
    growth: int
    base_points: int
    base_growth: int
    tier_points: int
    tier: str | None
    timezone: str
    local_date: date
    amount: Decimal | None
    currency: str | None
    notes: list[str]
    rules: list[RuleTraceOut]
    explanation: str

    @classmethod
    def of(cls, ev: Evaluation, version: int | None, fingerprint: str) -> SimulateOut:
        return cls(
            program_version=version,
            fingerprint=fingerprint,
            kind=ev.kind,
            points=ev.points,
            growth=ev.growth,
            base_points=ev.base_points,
            base_growth=ev.base_growth,
            tier_points=ev.tier_points,
            tier=ev.tier,
            timezone=ev.timezone,
            local_date=ev.local_date,
            amount=None if ev.currency is None else from_minor(ev.basis_minor, ev.currency),
            currency=ev.currency,
            notes=list(ev.notes),
            rules=[
                RuleTraceOut(
                    rule_id=t.rule_id,
                    label=t.label,
                    priority=t.priority,
                    stacking=t.stacking,
                    fired=t.fired,
                    reason=t.reason,
                    points=t.points,
                    growth=t.growth,
                    cap=t.cap,
                    condition=t.condition,
                )
                for t in ev.rules
            ],
            explanation=ev.explain(),
        )


def _minor(value: Decimal, currency: str, field: str) -> int:
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        raise Invalid(f"{field}: {exc}") from None


def simulate(
    program: ProgramConfig, body: SimulateIn, timezone: str, now: datetime | None = None
) -> Evaluation:
    """Evaluate a simulated event in the store's time zone; raises Invalid."""
    order = body.order
    currency = (order.currency or program.currency).upper()
    if currency != program.currency:
        raise Invalid(f"order.currency: the programme is in {program.currency}, not {currency}")
    for i, line in enumerate(order.lines):
        if line.amount() < 0:
            raise Invalid(f"order.lines.{i}.discount: larger than the line amount")
    lines = [
        Line(line.sku, line.category, _minor(line.amount(), currency, f"order.lines.{i}"))
        for i, line in enumerate(order.lines)
    ]
    if order.amount is not None:
        amount = _minor(order.amount, currency, "order.amount")
    else:
        amount = sum(line.net_minor for line in lines)
    scale = 10 ** exponent(currency)
    if amount >= MAX_MAJOR * scale:
        raise Invalid("order.amount: out of range")
    member = body.member
    try:
        event = EarnEvent(
            kind=order.kind,
            occurred_at=order.occurred_at or now or utcnow(),
            amount_minor=amount if order.kind in (EventKind.order, EventKind.referral) else 0,
            currency=currency,
            lines=lines,
            channel=order.channel,
            shipping_minor=_minor(order.shipping, currency, "order.shipping"),
            tax_minor=_minor(order.tax, currency, "order.tax"),
            referral_role=order.referral_role,
        )
        context = MemberContext(
            timezone=timezone,
            tier=member.tier,
            first_order=member.first_order,
            birthday=member.birthday,
            attributes=member.attributes,
        )
        return evaluate(program, event, context)
    except ValueError as exc:
        raise Invalid(f"order.{exc}" if ": " in str(exc) else f"order: {exc}") from None
