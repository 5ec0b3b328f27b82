"""Customer segments: rules over profile, loyalty, analytics, orders, feedback and consent.

A definition is a tree of groups and conditions::

    {"all": [
        {"field": "rfm_segment", "op": "in", "value": ["at_risk", "cant_lose"]},
        {"field": "p_alive", "op": "gt", "value": 0.5},
        {"not": {"field": "tier", "op": "eq", "value": "bronze"}},
        {"any": [{"field": "contactable_email", "op": "eq", "value": true},
                 {"field": "contactable_sms", "op": "eq", "value": true}]}
    ]}

``all`` is AND (an empty ``all`` matches every customer), ``any`` is OR (at least one
member), ``not`` negates. A condition is ``{"field", "op", "value"}``; :data:`FIELDS`
lists the fields, their types and operators. A condition is two-valued: a customer with
no value for the field (no score, no order, no NPS answer) matches ``is_null`` and no
comparison, so ``ne``/``not_in``/``lt`` never match unknown values, while ``not`` does.

The whole definition compiles to ONE SQL statement over ``customers``, joining only the
tables its fields use (loyalty rows, customer scores, ``customer_order_facts`` — one row
per customer kept current by triggers on ``orders``, so a new order counts in the next
preview; EXISTS for consent; one window over the answers for the latest NPS). Erased
customers (pseudonym ``erased-…``) and stub profiles (created by an order naming an
unknown customer) are never members. A condition that a customer without the joined row
cannot meet compares the column itself, so PostgreSQL may start from that table.

``..._days_ago`` fields count calendar days in the store's time zone (an order placed
yesterday at 23:59 store time is 1 day ago); ``birthday_month`` accepts ``this_month``
and ``next_month``, resolved in the store's time zone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    FromClause,
    Numeric,
    Select,
    String,
    and_,
    case,
    exists,
    extract,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from patron.analytics.loyalty_types import BEHAVIOUR_TYPES, LOYALTY_TYPES
from patron.analytics.models import CustomerScore
from patron.analytics.rfm import SEGMENTS
from patron.campaigns.models import ConsentRequest, Suppression
from patron.campaigns.privacy import PSEUDONYM_PREFIX
from patron.customers.models import Channel, Consent, Customer
from patron.errors import Invalid
from patron.feedback.models import SurveyAnswer, SurveyResponse
from patron.kit.clock import zone
from patron.kit.money import MoneyError, to_minor
from patron.loyalty.models import LoyaltyAccount, LoyaltyMember, ProgramVersion
from patron.orders.models import ELIGIBLE_PATTERN, CustomerOrderFacts
from patron.stores.models import Store

MAX_DEPTH = 8
MAX_CONDITIONS = 100
MAX_LIST = 1000
MAX_VALUES = 5000  # in all the lists of a definition (SQLite binds at most 32766)
NPS_CATEGORIES = ("promoter", "passive", "detractor")
_ATTR = re.compile(r"^attributes\.([A-Za-z0-9_\-]{1,64})$")
PREVIEW_SETTINGS = ("64MB", "1.1")  # PostgreSQL work_mem, random_page_cost of a count
_UNKNOWN: Any = object()  # a value the compiler does not know (read in SQL instead)
if f"'{PSEUDONYM_PREFIX}%'" != ELIGIBLE_PATTERN:  # the partial index's predicate
    raise RuntimeError("orders.models.ELIGIBLE_PATTERN does not match PSEUDONYM_PREFIX")

Kind = Literal["text", "enum", "bool", "int", "number", "money", "days", "month", "attribute"]
TEXT_OPS = ("eq", "ne", "in", "not_in", "is_null", "not_null")
ORDER_OPS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "is_null", "not_null")
BOOL_OPS = ("eq", "ne", "is_null", "not_null")
ALL_OPS = ORDER_OPS


@dataclass(frozen=True)
class FieldSpec:
    name: str
    group: str
    kind: Kind
    doc: str
    choices: tuple[str, ...] = ()  # enum values; tiers come from the store's programme
    low: float | None = None
    high: float | None = None
    extra: tuple[str, ...] = field(default=())  # special string values (birthday_month)

    @property
    def ops(self) -> tuple[str, ...]:
        if self.kind in ("text", "enum"):
            return TEXT_OPS
        if self.kind == "bool":
            return BOOL_OPS
        return ORDER_OPS


def _spec(name: str, group: str, kind: Kind, doc: str, **kw: Any) -> FieldSpec:
    return FieldSpec(name, group, kind, doc, **kw)


FIELDS: dict[str, FieldSpec] = {
    s.name: s
    for s in (
        _spec("email_domain", "profile", "text", "The part of the email after '@', lower-cased."),
        _spec("has_email", "profile", "bool", "The profile has an email address."),
        _spec("has_phone", "profile", "bool", "The profile has a phone number."),
        _spec("locale", "profile", "text", "The customer's locale, e.g. zh-CN (any case)."),
        _spec(
            "birthday_month",
            "profile",
            "month",
            "Month of the birthday, 1-12, or this_month / next_month (store time zone).",
            low=1,
            high=12,
            extra=("this_month", "next_month"),
        ),
        _spec(
            "signed_up_days_ago",
            "profile",
            "days",
            "Calendar days (store time zone) since the profile was created.",
        ),
        _spec(
            "attributes.<name>",
            "profile",
            "attribute",
            "A free attribute; compared as text, number or boolean after the value given "
            "(an attribute of another JSON type has no value).",
        ),
        _spec("flagged", "profile", "bool", "Flagged as abusive or opportunistic."),
        _spec(
            "tier",
            "loyalty",
            "enum",
            "Tier code in the store's programme; a customer without a member row holds "
            "the first tier.",
        ),
        _spec("points", "loyalty", "int", "Spendable points balance (0 without an account)."),
        _spec("growth", "loyalty", "int", "Growth value (成长值) qualifying tiers (0 without)."),
        _spec(
            "member_since_days",
            "loyalty",
            "days",
            "Calendar days since the customer joined the programme (null if never).",
        ),
        _spec("rfm_segment", "analytics", "enum", "RFM segment key.", choices=SEGMENTS),
        _spec("r", "analytics", "int", "RFM recency score 1-5.", low=1, high=5),
        _spec("f", "analytics", "int", "RFM frequency score 1-5.", low=1, high=5),
        _spec("m", "analytics", "int", "RFM monetary score 1-5.", low=1, high=5),
        _spec("clv", "analytics", "money", "Customer lifetime value, store currency."),
        _spec(
            "p_alive", "analytics", "number", "Probability the customer is alive.", low=0, high=1
        ),
        _spec(
            "expected_purchases",
            "analytics",
            "number",
            "Purchases expected over the run's horizon.",
        ),
        _spec(
            "loyalty_type",
            "analytics",
            "enum",
            "Loyalty type (attitude × behaviour).",
            choices=LOYALTY_TYPES,
        ),
        _spec("behaviour_type", "analytics", "enum", "Behavioural class.", choices=BEHAVIOUR_TYPES),
        _spec(
            "price_sensitivity",
            "analytics",
            "number",
            "Share of orders bought on discount, 0-1.",
            low=0,
            high=1,
        ),
        _spec(
            "last_purchase_days_ago",
            "orders",
            "days",
            "Calendar days since the last order that was not cancelled (null without one).",
        ),
        _spec("orders_count", "orders", "int", "Orders that were not cancelled."),
        _spec(
            "total_spent",
            "orders",
            "money",
            "Sum of (total - refunded) of orders not cancelled, in the store currency "
            "(orders in another currency are not counted).",
        ),
        _spec("nps", "feedback", "int", "The latest NPS answer, 0-10.", low=0, high=10),
        _spec(
            "nps_category",
            "feedback",
            "enum",
            "Of the latest NPS answer: promoter 9-10, passive 7-8, detractor 0-6.",
            choices=NPS_CATEGORIES,
        ),
        _spec(
            "contactable_email",
            "consent",
            "bool",
            "Email consent granted, address confirmed (double opt-in), not suppressed.",
        ),
        _spec(
            "contactable_sms",
            "consent",
            "bool",
            "SMS consent granted, a phone number, not suppressed.",
        ),
    )
}


# -- the definition ---------------------------------------------------------------------------


class SegmentDefinition(BaseModel):
    """One node: a group (``all``/``any``/``not``) or a condition (``field``/``op``/
    ``value``). Build it with :func:`parse_definition`; ``to_json`` gives it back."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    all: tuple[SegmentDefinition, ...] | None = None
    any: tuple[SegmentDefinition, ...] | None = None
    not_: SegmentDefinition | None = None
    field: str | None = None
    op: str | None = None
    value: Any = None

    def to_json(self) -> dict[str, Any]:
        if self.all is not None:
            return {"all": [n.to_json() for n in self.all]}
        if self.any is not None:
            return {"any": [n.to_json() for n in self.any]}
        if self.not_ is not None:
            return {"not": self.not_.to_json()}
        out: dict[str, Any] = {"field": self.field, "op": self.op}
        if self.op not in ("is_null", "not_null"):
            out["value"] = self.value
        return out

    def fields(self) -> set[str]:
        """The field names the definition uses."""
        if self.all is not None or self.any is not None:
            return set().union(*(n.fields() for n in (self.all or self.any or ())))
        if self.not_ is not None:
            return self.not_.fields()
        return {self.field} if self.field else set()

    def conditions(self, path: str = "") -> list[tuple[str, SegmentDefinition]]:
        """Every condition with its path."""
        for key, nodes in (("all", self.all), ("any", self.any)):
            if nodes is not None:
                return [c for i, n in enumerate(nodes) for c in n.conditions(f"{path}{key}[{i}].")]
        if self.not_ is not None:
            return self.not_.conditions(f"{path}not.")
        return [(path, self)]


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []
        self.conditions = 0
        self.values = 0

    def add(self, path: str, message: str) -> None:
        self.items.append({"field": path or "definition", "message": message})


def spec_of(name: str) -> FieldSpec | None:
    if _ATTR.match(name):
        return FIELDS["attributes.<name>"]
    return None if name == "attributes.<name>" else FIELDS.get(name)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_scalar(spec: FieldSpec, v: Any) -> str | None:
    """Why ``v`` is not a valid value of ``spec`` (None when it is)."""
    kind = spec.kind
    if kind in ("text", "enum"):
        if not isinstance(v, str) or not v or len(v) > 320 or "\x00" in v:
            return "must be a non-empty text of at most 320 characters"
        if spec.choices and v not in spec.choices:
            return f"unknown value {v!r} (one of: {', '.join(spec.choices)})"
        return None
    if kind == "bool":
        return None if isinstance(v, bool) else "must be true or false"
    if kind == "attribute":
        if isinstance(v, str):
            return None if len(v) <= 320 and "\x00" not in v else "at most 320 characters"
        if isinstance(v, bool) or (_is_number(v) and abs(float(v)) < 1e15):
            return None
        return "must be a text, a number or a boolean"
    if kind == "month" and isinstance(v, str):
        return None if v in spec.extra else f"must be 1-12 or one of: {', '.join(spec.extra)}"
    if kind == "money":
        if isinstance(v, str):
            try:
                d = Decimal(v)
            except InvalidOperation:
                return 'must be an amount such as 100 or "99.50"'
        elif _is_number(v):
            d = Decimal(str(v))
        else:
            return 'must be an amount such as 100 or "99.50"'
        return None if d.is_finite() and abs(d) < Decimal(10) ** 12 else "amount out of range"
    if kind in ("int", "days", "month"):
        if not isinstance(v, int) or isinstance(v, bool):
            return "must be a whole number"
        if abs(v) > 2**53:
            return "number out of range"
        if kind == "days" and not 0 <= v <= 100_000:
            return "must be a number of days between 0 and 100000"
    elif not _is_number(v):
        return "must be a number"
    elif abs(float(v)) > 1e15 or v != v:
        return "number out of range"
    if spec.low is not None and spec.high is not None and not spec.low <= v <= spec.high:
        return f"must be between {spec.low:g} and {spec.high:g}"
    return None


def _condition(raw: dict[str, Any], path: str, errors: _Errors) -> SegmentDefinition | None:
    errors.conditions += 1
    if isinstance(raw.get("value"), list):
        errors.values += len(raw["value"])
    unknown = set(raw) - {"field", "op", "value"}
    if unknown:
        errors.add(f"{path}{sorted(unknown)[0]}", "unknown key (a condition has field, op, value)")
        return None
    name, op = raw.get("field"), raw.get("op")
    if not isinstance(name, str) or (spec := spec_of(name)) is None:
        errors.add(f"{path}field", f"unknown field {name!r} (see GET /v1/segments/fields)")
        return None
    if op not in spec.ops:
        errors.add(f"{path}op", f"{op!r} is not an operator of {name} ({', '.join(spec.ops)})")
        return None
    value = raw.get("value")
    vpath = f"{path}value"
    if op in ("is_null", "not_null"):
        if value is not None:
            errors.add(vpath, f"{op} takes no value")
            return None
    elif op in ("in", "not_in"):
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
            errors.add(vpath, f"must be a list of 1 to {MAX_LIST} values")
            return None
        for i, v in enumerate(value):
            if (why := _check_scalar(spec, v)) is not None:
                errors.add(f"{vpath}[{i}]", why)
                return None
    elif op == "between":
        if not isinstance(value, list) or len(value) != 2:
            errors.add(vpath, "must be a list [low, high]")
            return None
        for i, v in enumerate(value):
            if (why := _check_scalar(spec, v)) is not None:
                errors.add(f"{vpath}[{i}]", why)
                return None
        if spec.kind == "month" and any(isinstance(v, str) for v in value):
            errors.add(vpath, "between takes month numbers")
            return None
        lo, hi = (Decimal(str(v)) for v in value)
        if lo > hi:
            errors.add(vpath, "low must not be above high")
            return None
        if spec.kind == "attribute" and not all(_is_number(v) for v in value):
            errors.add(vpath, "between compares numbers")
            return None
    else:
        if value is None:
            errors.add(vpath, "required")
            return None
        if (why := _check_scalar(spec, value)) is not None:
            errors.add(vpath, why)
            return None
        if spec.kind == "attribute" and op in ("gt", "gte", "lt", "lte") and not _is_number(value):
            errors.add(vpath, f"{op} compares numbers")
            return None
    return SegmentDefinition(field=name, op=op, value=value)


def _node(raw: object, path: str, depth: int, errors: _Errors) -> SegmentDefinition | None:
    if not isinstance(raw, dict):
        errors.add(
            path.rstrip("."), "must be an object: {all|any: [...]}, {not: ...} or a condition"
        )
        return None
    if depth > MAX_DEPTH:
        errors.add(path.rstrip("."), f"nested deeper than {MAX_DEPTH} levels")
        return None
    groups = [k for k in ("all", "any", "not") if k in raw]
    if not groups:
        return _condition(raw, path, errors)
    if len(raw) != 1:
        errors.add(path.rstrip(".") or groups[0], "a group has exactly one key: all, any or not")
        return None
    key = groups[0]
    inner = raw[key]
    if key == "not":
        node = _node(inner, f"{path}not.", depth + 1, errors)
        return None if node is None else SegmentDefinition(not_=node)
    if not isinstance(inner, list):
        errors.add(f"{path}{key}", "must be a list")
        return None
    if key == "any" and not inner:
        errors.add(f"{path}{key}", "must have at least one member")
        return None
    nodes = [_node(n, f"{path}{key}[{i}].", depth + 1, errors) for i, n in enumerate(inner)]
    if any(n is None for n in nodes):
        return None
    kept = tuple(n for n in nodes if n is not None)
    return SegmentDefinition(all=kept) if key == "all" else SegmentDefinition(any=kept)


def parse_definition(raw: object) -> SegmentDefinition:
    """Validate a definition; :class:`Invalid` names every bad path (``all[2].value``)."""
    errors = _Errors()
    node = _node(raw, "", 1, errors)
    if errors.conditions > MAX_CONDITIONS:
        errors.add("definition", f"more than {MAX_CONDITIONS} conditions")
    if errors.values > MAX_VALUES:
        errors.add("definition", f"more than {MAX_VALUES} values in lists in all")
    if node is None or errors.items:
        first = errors.items[0] if errors.items else {"field": "definition", "message": "invalid"}
        raise Invalid(f"{first['field']}: {first['message']}", errors=errors.items)
    return node


# -- store-dependent checks --------------------------------------------------------------------


def programme_tiers(session: Session, store_id: int) -> list[str]:
    """Tier codes of the store's active programme, lowest first ([] without one)."""
    config = session.scalar(
        select(ProgramVersion.config).where(
            ProgramVersion.store_id == store_id, ProgramVersion.active.is_(True)
        )
    )
    tiers = (config or {}).get("tiers") or []
    return [str(t.get("code")) for t in tiers if isinstance(t, dict) and t.get("code")]


def check_for_store(session: Session, store: Store, definition: SegmentDefinition) -> None:
    """Values that depend on the store: tier codes of its programme."""
    errors = _Errors()
    tiers: list[str] | None = None
    for path, cond in definition.conditions():
        if cond.field != "tier" or cond.op in ("is_null", "not_null"):
            continue
        if tiers is None:
            tiers = programme_tiers(session, store.id)
        values = cond.value if isinstance(cond.value, list) else [cond.value]
        for i, v in enumerate(values):
            if v not in tiers:
                where = f"{path}value" + (f"[{i}]" if isinstance(cond.value, list) else "")
                known = ", ".join(tiers) if tiers else "the store has no loyalty programme"
                errors.add(where, f"unknown tier {v!r} ({known})")
    if errors.items:
        first = errors.items[0]
        raise Invalid(f"{first['field']}: {first['message']}", errors=errors.items)


# -- SQL constructs that differ between PostgreSQL and SQLite ------------------------------


class _JsonAttr(FunctionElement[Any]):
    """A customer attribute of one JSON type, NULL when missing or of another type."""

    inherit_cache = True

    def __init__(self, column: Any, key: str, want: str) -> None:
        self.want = want
        super().__init__(column, literal(key), literal(f'$."{key}"'))


class attr_text(_JsonAttr):
    type = String()
    inherit_cache = True


class attr_number(_JsonAttr):
    type = Float()
    inherit_cache = True


class attr_bool(_JsonAttr):
    type = Boolean()
    inherit_cache = True


def _args(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(c, **kw) for c in element.clauses]


@compiles(attr_text, "postgresql")
def _attr_text_pg(element: attr_text, compiler: SQLCompiler, **kw: Any) -> str:
    c, k, _ = _args(element, compiler, **kw)
    return f"(CASE WHEN jsonb_typeof({c} -> {k}) = 'string' THEN {c} ->> {k} END)"


@compiles(attr_number, "postgresql")
def _attr_number_pg(element: attr_number, compiler: SQLCompiler, **kw: Any) -> str:
    c, k, _ = _args(element, compiler, **kw)
    return (
        f"(CASE WHEN jsonb_typeof({c} -> {k}) = 'number' "
        f"THEN CAST({c} ->> {k} AS DOUBLE PRECISION) END)"
    )


@compiles(attr_bool, "postgresql")
def _attr_bool_pg(element: attr_bool, compiler: SQLCompiler, **kw: Any) -> str:
    c, k, _ = _args(element, compiler, **kw)
    return f"(CASE WHEN jsonb_typeof({c} -> {k}) = 'boolean' THEN ({c} ->> {k}) = 'true' END)"


@compiles(attr_text)
def _attr_text_lite(element: attr_text, compiler: SQLCompiler, **kw: Any) -> str:
    c, _, p = _args(element, compiler, **kw)
    return f"(CASE WHEN json_type({c}, {p}) = 'text' THEN json_extract({c}, {p}) END)"


@compiles(attr_number)
def _attr_number_lite(element: attr_number, compiler: SQLCompiler, **kw: Any) -> str:
    c, _, p = _args(element, compiler, **kw)
    return f"(CASE WHEN json_type({c}, {p}) IN ('integer', 'real') THEN json_extract({c}, {p}) END)"


@compiles(attr_bool)
def _attr_bool_lite(element: attr_bool, compiler: SQLCompiler, **kw: Any) -> str:
    c, _, p = _args(element, compiler, **kw)
    return f"(CASE json_type({c}, {p}) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)"


class email_domain(FunctionElement[str]):
    type = String()
    inherit_cache = True


@compiles(email_domain, "postgresql")
def _domain_pg(element: email_domain, compiler: SQLCompiler, **kw: Any) -> str:
    (c,) = _args(element, compiler, **kw)
    return f"lower(substring({c} from position('@' in {c}) + 1))"


@compiles(email_domain)
def _domain_lite(element: email_domain, compiler: SQLCompiler, **kw: Any) -> str:
    (c,) = _args(element, compiler, **kw)
    return f"lower(substr({c}, instr({c}, '@') + 1))"


def phone_address(column: Any) -> ColumnElement[str]:
    """The SMS address of a phone in SQL, as ``consent.normalize`` writes suppressions:
    ``+`` when the number starts with one, then its digits (spaces, dashes, dots,
    slashes and brackets dropped)."""
    trimmed = func.trim(column)
    digits: Any = trimmed
    for ch in ("+", " ", "-", "(", ")", ".", "/"):
        digits = func.replace(digits, ch, "")
    plus = func.substr(trimmed, 1, 1) == "+"
    return case((plus, literal("+") + digits), else_=digits)


# -- compiling ---------------------------------------------------------------------------------


class _Compiler:
    def __init__(
        self, store: Store, now: datetime, fields: set[str], first_tier: Any = _UNKNOWN
    ) -> None:
        # The first tier's code when known (None: no programme), else read in SQL.
        self.first_tier = first_tier
        self.fields = fields
        self.store = store
        self.now = now
        self.tz = zone(store.timezone)
        self.today = now.astimezone(self.tz).date()
        self.c = Customer.__table__
        self.joins: dict[str, FromClause] = {}

    # -- tables, joined when a field needs them --

    def _account(self) -> Any:
        t = self.joins.setdefault("account", LoyaltyAccount.__table__)
        return t

    def _member(self) -> Any:
        return self.joins.setdefault("member", LoyaltyMember.__table__)

    def _scores(self) -> Any:
        return self.joins.setdefault("scores", CustomerScore.__table__)

    def _orders_summary(self) -> Any:
        """The customer's order facts (count, last order, amount spent), kept current by
        triggers on ``orders`` — one row per customer, no aggregate at preview time."""
        return self.joins.setdefault("orders", CustomerOrderFacts.__table__)

    def from_clause(self) -> FromClause:
        c = self.c
        out: FromClause = c
        for name, t in self.joins.items():
            if name == "account" or name == "member":
                on = and_(t.c.customer_id == c.c.id, t.c.store_id == self.store.id)
            else:
                on = t.c.customer_id == c.c.id
            out = out.outerjoin(t, on)
        return out

    # -- calendar days in the store's zone --

    def midnight(self, days_ago: int) -> datetime:
        """The UTC instant the store's day ``days_ago`` days before today began."""
        day = self.today - timedelta(days=days_ago)
        return datetime.combine(day, time(), tzinfo=self.tz).astimezone(UTC)

    def days(self, ts: ColumnElement[Any], op: str, value: Any) -> ColumnElement[bool]:
        def ge(n: int) -> ColumnElement[bool]:  # days_ago >= n
            return ts < self.midnight(n - 1)

        def le(n: int) -> ColumnElement[bool]:  # days_ago <= n
            return ts >= self.midnight(n)

        def eq(n: int) -> ColumnElement[bool]:
            return and_(ge(n), le(n))

        return self._ordered(ts, op, value, eq, ge, le)

    def _ordered(
        self,
        expr: Any,
        op: str,
        value: Any,
        eq: Callable[[Any], ColumnElement[bool]],
        ge: Callable[[Any], ColumnElement[bool]],
        le: Callable[[Any], ColumnElement[bool]],
        step: int = 1,
    ) -> ColumnElement[bool]:
        """Comparisons built from =, >= and <= on whole numbers (days)."""
        present = expr.is_not(None)
        if op == "eq":
            cond = eq(value)
        elif op == "ne":
            cond = not_(eq(value))
        elif op == "in":
            cond = or_(*(eq(v) for v in value))
        elif op == "not_in":
            cond = not_(or_(*(eq(v) for v in value)))
        elif op == "gt":
            cond = ge(value + step)
        elif op == "gte":
            cond = ge(value)
        elif op == "lt":
            cond = le(value - step)
        elif op == "lte":
            cond = le(value)
        else:  # between
            cond = and_(ge(value[0]), le(value[1]))
        return and_(present, cond)

    # -- one condition --

    def expr(self, name: str) -> Any:
        c = self.c.c
        if name == "email_domain":
            return email_domain(c.email)
        if name == "has_email":
            return and_(c.email.is_not(None), c.email != "")
        if name == "has_phone":
            return and_(c.phone.is_not(None), c.phone != "")
        if name == "locale":
            return func.lower(c.locale)
        if name == "birthday_month":
            return extract("month", c.birthday)
        if name == "signed_up_days_ago":
            return c.created_at
        if name == "flagged":
            return c.flagged
        if name == "tier":
            m = self._member()
            if self.first_tier is not _UNKNOWN:
                known = self.first_tier
                return m.c.tier if known is None else func.coalesce(m.c.tier, literal(known))
            first = (
                select(ProgramVersion.config[("tiers", 0, "code")].as_string())
                .where(ProgramVersion.store_id == self.store.id, ProgramVersion.active.is_(True))
                .limit(1)
                .scalar_subquery()
            )
            return func.coalesce(m.c.tier, first)
        if name == "points":
            return func.coalesce(self._account().c.points_available, 0)
        if name == "growth":
            return func.coalesce(self._account().c.growth, 0)
        if name == "member_since_days":
            return self._member().c.created_at
        if name == "rfm_segment":
            return self._scores().c.segment
        if name in ("r", "f", "m", "clv", "p_alive", "expected_purchases", "loyalty_type"):
            return self._scores().c[name]
        if name in ("behaviour_type", "price_sensitivity"):
            return self._scores().c[name]
        if name == "last_purchase_days_ago":
            return self._orders_summary().c.last_placed_at
        if name == "orders_count":
            return func.coalesce(self._orders_summary().c.orders_count, 0)
        if name == "total_spent":
            return func.coalesce(self._orders_summary().c.spent_minor, 0)
        if name in ("nps", "nps_category"):
            return self.nps()
        if name == "contactable_email":
            return self.contactable_email()
        if name == "contactable_sms":
            return self.contactable_sms()
        raise AssertionError(name)

    def nps(self) -> Any:
        """The latest NPS answer per customer: one pass over the store's answers (a
        window function), joined like a table — not a subquery per customer."""
        if "nps" not in self.joins:
            a, r = SurveyAnswer.__table__, SurveyResponse.__table__
            ranked = (
                select(
                    r.c.customer_id.label("customer_id"),
                    a.c.value.label("nps"),
                    func.row_number()
                    .over(
                        partition_by=r.c.customer_id,
                        order_by=(r.c.submitted_at.desc(), r.c.id.desc(), a.c.id.desc()),
                    )
                    .label("rank"),
                )
                .select_from(a.join(r, r.c.id == a.c.response_id))
                .where(
                    r.c.store_id == self.store.id,
                    r.c.customer_id.is_not(None),
                    a.c.question_type == "nps",
                    a.c.value.is_not(None),
                )
                .subquery("nps_ranked")
            )
            latest = (
                select(ranked.c.customer_id, ranked.c.nps)
                .where(ranked.c.rank == 1)
                .subquery("latest_nps")
            )
            self.joins["nps"] = latest
        return self.joins["nps"].c.nps

    def _granted(self, channel: Channel) -> ColumnElement[bool]:
        k = Consent.__table__
        return exists().where(
            k.c.customer_id == self.c.c.id, k.c.channel == channel, k.c.granted.is_(True)
        )

    def _suppressed(self, channel: Channel, address: Any) -> ColumnElement[bool]:
        s = Suppression.__table__
        return exists().where(
            s.c.store_id == self.store.id, s.c.channel == channel, s.c.address == address
        )

    def contactable_email(self) -> ColumnElement[bool]:
        c = self.c.c
        address = func.lower(func.trim(c.email))
        q = ConsentRequest.__table__
        confirmed = exists().where(
            q.c.customer_id == c.id,
            q.c.channel == Channel.email,
            q.c.confirmed_at.is_not(None),
            q.c.address == address,
        )
        return and_(
            c.email.is_not(None),
            c.email != "",
            self._granted(Channel.email),
            confirmed,
            not_(self._suppressed(Channel.email, address)),
        )

    def contactable_sms(self) -> ColumnElement[bool]:
        c = self.c.c
        return and_(
            c.phone.is_not(None),
            c.phone != "",
            self._granted(Channel.sms),
            not_(self._suppressed(Channel.sms, phone_address(c.phone))),
        )

    def condition(self, node: SegmentDefinition) -> ColumnElement[bool]:
        name, op, value = node.field or "", node.op or "", node.value
        m = _ATTR.match(name)
        if m:
            return self.attribute(m.group(1), op, value)
        spec = FIELDS[name]
        expr = self.expr(name)
        if op == "is_null":
            return expr.is_(None) if spec.kind != "bool" else false()
        if op == "not_null":
            return expr.is_not(None) if spec.kind != "bool" else true()
        if spec.kind == "bool":
            want = value if op == "eq" else not value
            cond: ColumnElement[bool] = expr if want else not_(expr)
            return cond
        if spec.kind == "days":
            return self.days(expr, op, value)
        if name == "nps_category":
            return self.nps_category(expr, op, value)
        if spec.kind == "month":
            value = self.months(value)
        elif name == "total_spent":
            value = self.minor(value)
        elif spec.kind == "money":
            value = (
                [Decimal(str(v)) for v in value]
                if isinstance(value, list)
                else (Decimal(str(value)))
            )
        elif name in ("email_domain", "locale"):
            value = [v.lower() for v in value] if isinstance(value, list) else value.lower()
        absent = self.absent(name)
        if absent is not _UNKNOWN and not holds(op, value, absent):
            # A customer without the row fails the condition: compare the column itself
            # (no COALESCE), which PostgreSQL reads as an inner join it may start from,
            # with row estimates from the column's statistics.
            expr = self.raw(name)
        return compare(expr, op, value)

    def absent(self, name: str) -> Any:
        """The value a customer without a loyalty / order-facts row has."""
        if name in ("points", "growth", "orders_count", "total_spent"):
            return 0
        if name == "tier":
            return self.first_tier
        return _UNKNOWN

    def raw(self, name: str) -> Any:
        if name == "tier":
            return self._member().c.tier
        if name in ("points", "growth"):
            return self._account().c["points_available" if name == "points" else "growth"]
        facts = self._orders_summary()
        return facts.c.orders_count if name == "orders_count" else facts.c.spent_minor

    def months(self, value: Any) -> Any:
        def one(v: Any) -> int:
            if v == "this_month":
                return self.today.month
            if v == "next_month":
                return self.today.month % 12 + 1
            return int(v)

        return [one(v) for v in value] if isinstance(value, list) else one(value)

    def minor(self, value: Any) -> Any:
        def one(v: Any) -> int:
            try:
                return to_minor(Decimal(str(v)), self.store.currency)
            except MoneyError as exc:
                raise Invalid(f"value: {exc}") from exc

        return [one(v) for v in value] if isinstance(value, list) else one(value)

    def nps_category(self, expr: ColumnElement[Any], op: str, value: Any) -> ColumnElement[bool]:
        def of(cat: str) -> ColumnElement[bool]:
            if cat == "promoter":
                return expr >= 9
            if cat == "passive":
                return and_(expr >= 7, expr < 9)
            return expr < 7

        values = value if isinstance(value, list) else [value]
        hit = or_(*(of(v) for v in values))
        return and_(expr.is_not(None), hit if op in ("eq", "in") else not_(hit))

    def attribute(self, key: str, op: str, value: Any) -> ColumnElement[bool]:
        col = self.c.c.attributes
        if op in ("is_null", "not_null"):
            present = or_(
                attr_text(col, key, "text").is_not(None),
                attr_number(col, key, "number").is_not(None),
                attr_bool(col, key, "bool").is_not(None),
            )
            return not_(present) if op == "is_null" else present
        sample = value[0] if isinstance(value, list) else value
        if isinstance(sample, bool):
            expr: Any = attr_bool(col, key, "bool")
        elif isinstance(sample, str):
            expr = attr_text(col, key, "text")
        else:
            expr = attr_number(col, key, "number")
        kinds = {_json_kind(v) for v in value} if isinstance(value, list) else set()
        if op in ("in", "not_in") and len(kinds) > 1:
            parts = [self.attribute(key, "eq", v) for v in value]
            hit = or_(*parts)
            return hit if op == "in" else and_(not_(hit), self.attribute(key, "not_null", None))
        return compare(expr, op, value)

    def where(self, node: SegmentDefinition) -> ColumnElement[bool]:
        if node.all is not None:
            return and_(true(), *(self.where(n) for n in node.all))
        if node.any is not None:
            return or_(false(), *(self.where(n) for n in node.any))
        if node.not_ is not None:
            return not_(self.where(node.not_))
        return self.condition(node)


def _json_kind(v: Any) -> str:
    return "bool" if isinstance(v, bool) else "text" if isinstance(v, str) else "number"


def holds(op: str, value: Any, x: Any) -> bool:
    """Whether ``x`` (a plain value, None for no value) meets the condition, as
    :func:`compare` would decide it in SQL."""
    if x is None:
        return False
    if op == "eq":
        return bool(x == value)
    if op == "ne":
        return bool(x != value)
    if op == "in":
        return x in value
    if op == "not_in":
        return x not in value
    if op == "gt":
        return bool(x > value)
    if op == "gte":
        return bool(x >= value)
    if op == "lt":
        return bool(x < value)
    if op == "lte":
        return bool(x <= value)
    if op == "between":
        return bool(value[0] <= x <= value[1])
    raise AssertionError(op)


def _as_column_type(expr: Any, value: Any) -> Any:
    """Values of a list in the column's own Python type: an IN list binds each element
    with the type of its first one on PostgreSQL (psycopg), so ``x IN (0, 1.5)`` on a
    float or numeric column would compare against 0 and 1 (found by the Hypothesis test).
    """
    kind = getattr(expr, "type", None)
    if not isinstance(value, list) or not isinstance(kind, Numeric | Float):
        return value
    to: Any = float if isinstance(kind, Float) else (lambda v: Decimal(str(v)))
    return [
        to(v) if isinstance(v, int | float | Decimal) and not isinstance(v, bool) else v
        for v in value
    ]


def compare(expr: Any, op: str, value: Any) -> ColumnElement[bool]:
    present = expr.is_not(None)
    value = _as_column_type(expr, value)
    if op == "eq":
        cond = expr == value
    elif op == "ne":
        cond = expr != value
    elif op == "in":
        cond = expr.in_(value)
    elif op == "not_in":
        cond = expr.not_in(value)
    elif op == "gt":
        cond = expr > value
    elif op == "gte":
        cond = expr >= value
    elif op == "lt":
        cond = expr < value
    elif op == "lte":
        cond = expr <= value
    elif op == "between":
        cond = and_(expr >= value[0], expr <= value[1])
    else:
        raise AssertionError(op)
    return and_(present, cond)


def eligible(store: Store) -> ColumnElement[bool]:
    """Customers a segment may contain: of the store, neither stubs nor erased."""
    c = Customer.__table__.c
    return and_(
        c.store_id == store.id,
        c.is_stub.is_(False),
        # A literal pattern (not a bound one), the predicate of the partial index
        # ix_customers_segment_members: counts read (store, id) from it alone.
        not_(c.external_id.like(literal_column(ELIGIBLE_PATTERN))),
    )


def _compiled(
    store: Store, definition: SegmentDefinition, now: datetime, first_tier: Any = _UNKNOWN
) -> tuple[FromClause, ColumnElement[bool]]:
    comp = _Compiler(store, now, definition.fields(), first_tier)
    where = comp.where(definition)
    return comp.from_clause(), and_(eligible(store), where)


def members_query(
    store: Store, definition: SegmentDefinition, *, now: datetime
) -> Select[tuple[int]]:
    """The ids (``customers.id``) of the store's customers the definition matches."""
    from_, where = _compiled(store, definition, now)
    return select(Customer.__table__.c.id).select_from(from_).where(where)


def count(session: Session, store: Store, definition: SegmentDefinition, *, now: datetime) -> int:
    """How many customers match (tier values are checked against the programme first)."""
    check_for_store(session, store, definition)
    first = first_tier(session, store.id) if "tier" in definition.fields() else _UNKNOWN
    from_, where = _compiled(store, definition, now, first)
    query = select(func.count()).select_from(from_).where(where)
    if session.get_bind().dialect.name != "postgresql":
        return int(session.scalar(query) or 0)
    # The joins of a count over a million customers hash or sort a few hundred thousand
    # rows: give this one statement the memory to do it without spilling to disk, then
    # put the transaction's setting back.
    # Also price random reads as the cached reads they are here, so that narrow indexes
    # (index-only scans, merge joins in customer order) win over sequential scans.
    names = ("work_mem", "random_page_cost")
    before = [session.scalar(select(func.current_setting(n))) for n in names]
    for name, value in zip(names, PREVIEW_SETTINGS, strict=True):
        session.execute(select(func.set_config(name, value, True)))
    try:
        return int(session.scalar(query) or 0)
    finally:
        for name, old in zip(names, before, strict=True):
            session.execute(select(func.set_config(name, old, True)))


def first_tier(session: Session, store_id: int) -> str | None:
    """The code of the first tier of the store's active programme (None without one):
    what a customer without a member row holds."""
    config = session.scalar(
        select(ProgramVersion.config)
        .where(ProgramVersion.store_id == store_id, ProgramVersion.active.is_(True))
        .limit(1)
    )
    tiers = (config or {}).get("tiers")
    if not isinstance(tiers, list) or not tiers or not isinstance(tiers[0], dict):
        return None
    code = tiers[0].get("code")
    if code is None or isinstance(code, dict | list):
        return None
    return code if isinstance(code, str) else json.dumps(code)


def local_today(store: Store, now: datetime) -> date:
    return now.astimezone(zone(store.timezone)).date()


__all__ = [
    "FIELDS",
    "SegmentDefinition",
    "check_for_store",
    "count",
    "members_query",
    "parse_definition",
]
