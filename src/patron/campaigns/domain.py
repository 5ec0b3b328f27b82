"""The rules of campaigns, with no database: who gets which variant (or is held out),
when a message may go (quiet hours, frequency cap), what counts as a conversion, and
the measured uplift against the holdout with its confidence interval.

**Assignment.** ``u = sha256("<campaign key>:<customer id>")`` read as a number in
[0, 1). ``u < holdout_percent / 100`` puts the customer in the holdout; otherwise the
rest of the interval is split among the variants by weight. The same customer always
lands in the same group of a campaign, however often (or on however many occasions) it
runs, and groups of different campaigns are independent.

**Quiet hours** are a local-time window in the store's time zone (``21:00``–``09:00``
crosses midnight); a send due inside it moves to its end, computed in local time, so a
DST change in between keeps the local end (a local end that does not exist, inside a
spring-forward gap, becomes the instant just after the gap).

**Frequency cap.** At most ``messages`` marketing messages per customer in any rolling
``days`` window; transactional mail (opt-in confirmations) does not count.

**Uplift.** A recipient converts when they place an order (not cancelled, not refunded
in full) within ``attribution_days`` after the send — for the holdout, after the time it
would have been sent. Conversion uplift is ``p_t − p_h`` with the normal (Wald) 95%
interval ``± 1.96·√(p_t(1−p_t)/n_t + p_h(1−p_h)/n_h)``; revenue per recipient uplift is
``m_t − m_h`` with Welch's interval ``± t_{0.975, ν}·√(s_t²/n_t + s_h²/n_h)``, ``ν`` by
Welch–Satterthwaite. Revenue is net of refunds, in minor units.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from scipy import stats  # type: ignore[import-untyped]

from patron.kit.clock import as_utc, zone

HOLDOUT = "holdout"
DEFAULT_CAP_MESSAGES = 3
DEFAULT_CAP_DAYS = 7
DEFAULT_QUIET_START = "21:00"
DEFAULT_QUIET_END = "09:00"
Z_95 = 1.959963984540054


# -- assignment ---------------------------------------------------------------------------


def unit_hash(campaign_key: str, customer_id: int) -> float:
    """A stable number in [0, 1) for a customer in a campaign."""
    digest = hashlib.sha256(f"{campaign_key}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(
    campaign_key: str,
    customer_id: int,
    holdout_percent: int,
    variants: Sequence[tuple[str, int]],
) -> str:
    """The customer's group: ``HOLDOUT`` or a variant key (``variants``: key and weight,
    in a fixed order)."""
    if not variants:
        raise ValueError("a campaign needs at least one variant")
    u = unit_hash(campaign_key, customer_id)
    share = holdout_percent / 100
    if u < share:
        return HOLDOUT
    rest = (u - share) / (1 - share)  # uniform on [0, 1) again
    total = sum(w for _, w in variants)
    point = rest * total
    upto = 0.0
    for key, weight in variants:
        upto += weight
        if point < upto:
            return key
    return variants[-1][0]


# -- quiet hours --------------------------------------------------------------------------


def parse_clock(text: str) -> time:
    """``HH:MM`` (24 h) as a time; ValueError otherwise."""
    hours, sep, minutes = text.partition(":")
    if not sep or len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError("expected HH:MM")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    @classmethod
    def of(cls, start: str, end: str) -> QuietHours:
        return cls(parse_clock(start), parse_clock(end))

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def _local_instant(day: date, at: time, tz: str) -> datetime:
    """``at`` on the local ``day``, as UTC (a wall time in a DST gap: just after it)."""
    return datetime.combine(day, at, tzinfo=zone(tz)).astimezone(UTC)


def after_quiet_hours(when: datetime, tz: str, quiet: QuietHours) -> datetime:
    """``when`` if it is outside the quiet hours in ``tz``, else the end of them."""
    when = as_utc(when)
    local = when.astimezone(zone(tz))
    wall = local.time().replace(tzinfo=None)
    if not quiet.contains(wall):
        return when
    day = local.date()
    if quiet.start > quiet.end and wall >= quiet.start:  # evening part: ends tomorrow
        day += timedelta(days=1)
    return max(when, _local_instant(day, quiet.end, tz))


# -- frequency cap ------------------------------------------------------------------------


@dataclass(frozen=True)
class Cap:
    messages: int = DEFAULT_CAP_MESSAGES
    days: int = DEFAULT_CAP_DAYS

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.days)

    def allows(self, already: int) -> bool:
        """Whether one more message fits, ``already`` being the customer's marketing
        messages in the window before (and after) the send."""
        return already < self.messages


# -- conversions --------------------------------------------------------------------------


def is_conversion(
    *,
    status: str,
    total_minor: int,
    refunded_minor: int,
    placed_at: datetime,
    send_at: datetime,
    attribution_days: int,
) -> bool:
    """Whether an order counts as a conversion of a recipient sent at ``send_at``."""
    if status == "cancelled" or (total_minor > 0 and refunded_minor >= total_minor):
        return False
    if status == "refunded":
        return False
    return send_at < placed_at <= send_at + timedelta(days=attribution_days)


# -- uplift -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupStats:
    """A group's recipients, converted recipients and revenue per recipient (sum and sum
    of squares, minor units)."""

    recipients: int = 0
    conversions: int = 0
    revenue: int = 0
    revenue_sq: int = 0

    @property
    def conversion_rate(self) -> float | None:
        return self.conversions / self.recipients if self.recipients else None

    @property
    def revenue_per_recipient(self) -> float | None:
        return self.revenue / self.recipients if self.recipients else None

    @property
    def revenue_variance(self) -> float | None:
        """The sample variance of revenue per recipient (n − 1)."""
        n = self.recipients
        if n < 2:
            return None
        mean = self.revenue / n
        return max((self.revenue_sq - n * mean * mean) / (n - 1), 0.0)

    def __add__(self, other: GroupStats) -> GroupStats:
        return GroupStats(
            self.recipients + other.recipients,
            self.conversions + other.conversions,
            self.revenue + other.revenue,
            self.revenue_sq + other.revenue_sq,
        )


@dataclass(frozen=True)
class Difference:
    """``estimate`` = treatment − control, with its 95% interval; None when a group is too
    small to tell."""

    estimate: float | None
    low: float | None
    high: float | None

    @property
    def significant(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


NONE = Difference(None, None, None)


def proportion_difference(c1: int, n1: int, c2: int, n2: int) -> Difference:
    """``p1 − p2`` with the normal 95% interval (two independent proportions)."""
    if n1 == 0 or n2 == 0:
        return NONE
    p1, p2 = c1 / n1, c2 / n2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    diff = p1 - p2
    return Difference(diff, diff - Z_95 * se, diff + Z_95 * se)


def welch_difference(treatment: GroupStats, control: GroupStats) -> Difference:
    """Difference of mean revenue per recipient with Welch's 95% interval."""
    m1, m2 = treatment.revenue_per_recipient, control.revenue_per_recipient
    if m1 is None or m2 is None:
        return NONE
    diff = m1 - m2
    v1, v2 = treatment.revenue_variance, control.revenue_variance
    if v1 is None or v2 is None:
        return Difference(diff, None, None)
    a, b = v1 / treatment.recipients, v2 / control.recipients
    se2 = a + b
    if se2 == 0:
        return Difference(diff, diff, diff)
    dof = se2**2 / (a**2 / (treatment.recipients - 1) + b**2 / (control.recipients - 1))
    t = float(stats.t.ppf(0.975, dof))
    se = math.sqrt(se2)
    return Difference(diff, diff - t * se, diff + t * se)


@dataclass(frozen=True)
class Uplift:
    conversion: Difference
    revenue_per_recipient: Difference


def uplift(treatment: GroupStats, control: GroupStats) -> Uplift:
    """Treatment against control (the holdout, or another variant for A/B)."""
    return Uplift(
        proportion_difference(
            treatment.conversions, treatment.recipients, control.conversions, control.recipients
        ),
        welch_difference(treatment, control),
    )
