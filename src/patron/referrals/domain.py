"""The rules of word of mouth and surprise rewards, as plain Python (no database).

- Referral codes: 8 characters of Crockford's base 32 (no I, L, O, U), shown as typed;
  a code read back is normalised (case, spaces, dashes, I/L→1, O→0) so a code copied by
  hand still works. 32^8 ≈ 10^12 codes: unguessable by enumeration at API rates.
- Fraud rules (``check``): each returns the rule that refuses a referral and its evidence.
- Viral coefficient (``viral_coefficient``).
- Surprise gifts: a seeded delay and amount (``surprise_draw``) and the limits a gift must
  pass when it is due (``gift_refusal``).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from patron.kit.clock import as_utc, zone

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base 32
CODE_LENGTH = 8
_CONFUSABLE = str.maketrans({"I": "1", "L": "1", "O": "0"})
_CODE = re.compile(rf"^[{ALPHABET}]{{{CODE_LENGTH}}}$")
_GMAIL = {"gmail.com", "googlemail.com"}
MAX_RING_DEPTH = 64  # ancestors walked to find a referral ring


def new_code() -> str:
    """A fresh random code (cryptographic randomness)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str | None:
    """The canonical form of a code as a person might type it; None: cannot be a code."""
    cleaned = re.sub(r"[\s\-_]", "", text).upper().translate(_CONFUSABLE)
    return cleaned if _CODE.match(cleaned) else None


def share_link(base: str, code: str) -> str:
    return f"{base.rstrip('/')}/r/{code}"


# -- identities ---------------------------------------------------------------------------


def normalize_email(email: str | None) -> str | None:
    """Lower case; for Gmail the dots and ``+tag`` of the local part are dropped (Gmail
    delivers ``J.Doe+x@gmail.com`` to ``jdoe@gmail.com``); other providers lose only a
    ``+tag``."""
    if not email or "@" not in email:
        return None
    local, _, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in _GMAIL:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}" if local else None


def phone_digits(phone: str | None) -> str | None:
    """The digits of a phone number, compared on the last 9 (country prefixes and a
    trunk 0 differ between ways of writing one number); None below 6 digits."""
    digits = re.sub(r"\D", "", phone or "")
    return digits[-9:] if len(digits) >= 6 else None


_ADDRESS_KEYS = ("address", "shipping_address", "default_address")
_ADDRESS_PARTS = ("line1", "address1", "line2", "address2", "city", "zip", "postal_code")


def normalize_address(attributes: Mapping[str, Any] | None) -> str | None:
    """A comparable address from a customer's attributes (``address``, ``shipping_address``
    or ``default_address``; a string or a mapping of line1/line2/city/zip/...): lower
    case, letters and digits only. None when there is none."""
    for key in _ADDRESS_KEYS:
        value = (attributes or {}).get(key)
        if isinstance(value, Mapping):
            value = " ".join(str(value[p]) for p in _ADDRESS_PARTS if value.get(p))
        if isinstance(value, str):
            text = re.sub(r"[\W_]+", "", value.lower())
            if len(text) >= 6:
                return text
    return None


@dataclass(frozen=True)
class Party:
    """What the fraud rules know of a referrer or a referee."""

    id: int
    email: str | None = None
    phone: str | None = None
    attributes: Mapping[str, Any] | None = None
    flagged: bool = False


@dataclass(frozen=True)
class Refusal:
    rule: str  # self_referral | not_new | flagged | ring | cap_reached
    detail: str


def same_person(referrer: Party, referee: Party) -> Refusal | None:
    """Self-referral: one customer, or two profiles sharing an email, a phone, an address."""
    if referrer.id == referee.id:
        return Refusal("self_referral", "the referee is the referrer")
    pairs = (
        ("email", normalize_email(referrer.email), normalize_email(referee.email)),
        ("phone", phone_digits(referrer.phone), phone_digits(referee.phone)),
        (
            "address",
            normalize_address(referrer.attributes),
            normalize_address(referee.attributes),
        ),
    )
    for what, a, b in pairs:
        if a is not None and a == b:
            return Refusal("self_referral", f"the referrer and the referee share one {what}")
    return None


def check(
    referrer: Party,
    referee: Party,
    *,
    ordered_before: str | None = None,
    referrer_ancestors: tuple[int, ...] = (),
    rewarded: int | None = None,
    cap: int | None = None,
) -> Refusal | None:
    """The first fraud rule that refuses this referral, or None.

    ``ordered_before``: an order of the referee placed before the attribution (the
    referee is not new). ``referrer_ancestors``: who referred the referrer, who referred
    them, ...: a referee among them closes a ring. ``rewarded`` referrals of this referrer
    against ``cap`` (checked only when both are given).
    """
    refusal = same_person(referrer, referee)
    if refusal is not None:
        return refusal
    if referrer.flagged:
        return Refusal("flagged", "the referrer is flagged")
    if referee.flagged:
        return Refusal("flagged", "the referee is flagged")
    if referee.id in referrer_ancestors:
        return Refusal("ring", "the referee is an upline of the referrer (a referral ring)")
    if ordered_before is not None:
        return Refusal("not_new", f"the referee ordered before ({ordered_before})")
    if cap is not None and rewarded is not None and rewarded >= cap:
        return Refusal("cap_reached", f"the referrer has {rewarded} rewarded referrals (cap {cap})")
    return None


def qualifies(status: str, total_minor: int, refunded_minor: int, min_minor: int) -> bool:
    """An order qualifies a referral when it is delivered and what is left of it after
    refunds is positive and at least the programme's ``qualifying_min_order``."""
    net = total_minor - refunded_minor
    return status == "delivered" and net > 0 and net >= min_minor


# -- viral coefficient --------------------------------------------------------------------


@dataclass(frozen=True)
class ViralStats:
    members: int
    invitations: int
    attributions: int
    qualified: int
    rewarded: int

    @property
    def invites_per_member(self) -> Fraction | None:
        return Fraction(self.invitations, self.members) if self.members else None

    @property
    def conversion(self) -> Fraction | None:
        return Fraction(self.qualified, self.invitations) if self.invitations else None

    @property
    def k(self) -> Fraction | None:
        """K = (invitations / members) × (qualified / invitations) = qualified / members."""
        i, c = self.invites_per_member, self.conversion
        if i is None:
            return None
        return i * c if c is not None else Fraction(0)


def ratio(value: Fraction | None, places: int = 4) -> Decimal | None:
    if value is None:
        return None
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
        Decimal(1).scaleb(-places)
    )


# -- surprise rewards ---------------------------------------------------------------------


def surprise_rng(secret: str, plan_id: int, customer_id: int) -> random.Random:
    """The random source of one gift: HMAC-SHA256 of the plan and the customer under the
    store's signing secret. Reproducible by whoever holds the secret (an audit), and not
    predictable by members (they do not)."""
    digest = hmac.new(
        secret.encode(), f"surprise:{plan_id}:{customer_id}".encode(), hashlib.sha256
    ).digest()
    return random.Random(int.from_bytes(digest, "big"))


@dataclass(frozen=True)
class Draw:
    delay: timedelta
    points: int


def surprise_draw(
    secret: str, plan_id: int, customer_id: int, points: int, days: int, amount_percent: int
) -> Draw:
    """When (a delay of 0 to ``days`` days, to the second) and how much (``points`` ±
    ``amount_percent`` %, rounded, at least 1) one member's gift of a plan is."""
    rng = surprise_rng(secret, plan_id, customer_id)
    delay = timedelta(seconds=rng.randint(0, days * 86_400))
    spread = rng.uniform(-amount_percent, amount_percent) / 100
    return Draw(delay, max(1, round(points * (1 + spread))))


def month_bounds(now: datetime, tz: str) -> tuple[datetime, datetime]:
    """The store-time calendar month of ``now``, as a UTC [start, end)."""
    local = as_utc(now).astimezone(zone(tz)).date()
    start = local.replace(day=1)
    end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return _instant(start, tz), _instant(end, tz)


def year_bounds(now: datetime, tz: str) -> tuple[datetime, datetime]:
    """The store-time calendar year of ``now``, as a UTC [start, end)."""
    year = as_utc(now).astimezone(zone(tz)).year
    return _instant(date(year, 1, 1), tz), _instant(date(year + 1, 1, 1), tz)


def _instant(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(), zone(tz)).astimezone(UTC)


@dataclass(frozen=True)
class GiftFacts:
    """What the limits need to know when a gift falls due."""

    flagged: bool
    given_this_year: int  # gifts given to this member in the store-time year
    last_given_at: datetime | None
    month_given: int  # points of all gifts given in the store-time month


def gift_refusal(
    points: int,
    facts: GiftFacts,
    now: datetime,
    *,
    budget_per_month: int,
    max_per_year: int,
    min_gap_days: int,
) -> Refusal | None:
    """The limit that stops a due gift, or None. Refused gifts are skipped, never moved:
    a gift postponed to the first day of next month would make surprises predictable."""
    if facts.flagged:
        return Refusal("flagged", "the member is flagged")
    if facts.given_this_year >= max_per_year:
        return Refusal(
            "yearly_limit", f"{facts.given_this_year} gifts this year (max {max_per_year})"
        )
    if facts.last_given_at is not None and as_utc(now) - facts.last_given_at < timedelta(
        days=min_gap_days
    ):
        return Refusal(
            "too_soon",
            f"last gift {facts.last_given_at.isoformat()} is within {min_gap_days} days",
        )
    if facts.month_given + points > budget_per_month:
        return Refusal(
            "budget",
            f"{facts.month_given} of {budget_per_month} points given this month; "
            f"{points} more would exceed it",
        )
    return None
