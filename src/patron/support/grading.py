"""Complaint grading (期望管理, seed 004): what a customer asks for, graded on four factors
into five levels, with the service, priority, answer and commitment that fit. Pure.

``grade(claim)`` reads no database and no clock. The caller passes what it knows of the
complaint and of the customer; the result explains every factor, so an agent (and the
customer, if asked) can see why a claim got the answer it got.

The four factors (seed 004: 合理性, 合法性, 重要性, 后果影响), each scored 0..3:

- **reasonableness** — does the request fit the store's own commitments, industry practice
  and consumer law? It compares the money asked for with the order's value (bands
  ``none`` / ``within`` ≤ 1× / ``above`` ≤ 3×, the statutory treble damages of 退一赔三 /
  ``far_above`` < 10× / ``excessive`` ≥ 10×, seed 004's 十倍 example; ``unknown`` when
  money is asked for but the order's value is unknown or zero — never auto-approvable)
  and reads ``backed_by_policy``:

  ================  ======  ======  =======  ==========  =========  =======
  backed_by_policy  none    within  unknown  above       far_above  excess.
  ================  ======  ======  =======  ==========  =========  =======
  True              3       3       3        3           3          3
  None (unknown)    2       2       2        1           0          0
  False             1       1       1        0           0          0
  ================  ======  ======  =======  ==========  =========  =======

- **legality** — 3 when the request is lawful, 0 when it is not (a fake invoice, a false
  review in exchange for a refund, ...). Legality is a gate, not a weight: a request earns
  nothing for being lawful, and an unlawful one is level 1 whatever else is true.
- **importance** — how much the need weighs on the customer's perception and on the store:
  1 for one customer's ordinary problem, 2 for privacy, +1 for a high-value customer (top
  20% by CLV — the 80/20 rule — or the top membership tier), +1 when 3 or more other
  customers reported the same problem on the same product in 30 days, +2 from 10 (nobody
  coordinated them: it is the product, not the customers), 3 for any health or safety harm
  (``safety_issue``, or the ``safety`` category).
  Capped at 3; never below 1 (every complaint matters to the one who makes it).
- **consequence** — what is at stake for other customers and the store's future in how
  this is handled: 1 for the customer and the ~25 people an unhappy customer tells (seed
  002), +2 when it is public (posted, media, regulator), +1 for privacy (regulator) and
  for a systemic problem (10+ reports), 3 for safety (the harm can recur). Capped at 3.

How they combine into the five levels (``Level``):

1. the request is unlawful (legality 0) or unreasonable (reasonableness 0) → level 1;
2. otherwise ``total = reasonableness + importance + consequence`` (3..9):
   ≤ 4 → level 2, 5 → level 3, 6–7 → level 4, 8–9 → level 5;
3. an **opportunistic** claim is capped at level 2: it is graded and verified, never
   escalated (seed 002: not every customer is a good customer; seed 003: watch for
   opportunistic customers). Opportunistic means any of: ≥ 10× the order's value asked for
   and no policy or law granting it (``excessive_compensation``), 4 or more other claims in
   90 days (``serial_claimant``), a customer flagged as abusive (``flagged_customer``), or
   half or more of the customer's orders refunded (``high_refund_rate``; read only over at
   least 4 orders when ``order_count`` is given). A 10× demand that the store's own
   假一赔十 promise or the law (e.g. food safety) does grant is a right, not opportunism:
   it is still flagged and never auto-approved, but graded like any other claim.

So a safety issue, public exposure, a high-value customer or more customers reporting the
same problem can only raise a level (they only raise importance and consequence), and
asking for more money, more prior claims or a flag can only lower it. A high-value
customer raises importance, never reasonableness or legality: it cannot lift an
unreasonable or unlawful demand out of level 1, nor make anything auto-approvable.

Levels and the tiered service they get (``Service``, 分级服务):

===== ================ ========== =====================================================
level  label           service    why
===== ================ ========== =====================================================
1      unreasonable    basic      explain and politely decline the excess; offer what
                                  policy and law do allow — nobody is left without help
2      minor           basic      the published standard remedy, in the standard time
3      standard        expected   resolved fully, as the customer expects, first time
4      important       expected   the same, with priority, a senior agent and follow-up
5      critical        surprise   escalate, resolve beyond what was asked, find the cause
===== ================ ========== =====================================================

Surprise (惊喜) is kept for level 5: seed 004 wants surprise service budget-capped and
irregular, and it buys the most where a failure was worst (service recovery). Levels 3
and 4 get what the customer rightly expects — giving more by routine would turn it into
the next expectation. Opportunistic claims never reach surprise (they are capped at 2).

Priority (``Priority``) says how fast to look, the level what to give: 1 → low, 2–3 →
normal, 4 → high, 5 → urgent, then raised to urgent for safety and to at least high for
public exposure, privacy and systemic problems — a safety report is looked at at once even
when the request attached to it is declined.

``auto_approvable`` is True only for a lawful, non-opportunistic claim that the store's
policy or the law clearly covers (``backed_by_policy=True``) asking for at most the
order's value, with no safety, privacy or public-exposure aspect (those need a person).
The service still applies the store's own auto-approval ceiling on top.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from typing import Any

CATEGORIES: tuple[str, ...] = (
    "quality",
    "damaged",
    "wrong_item",
    "missing",
    "delivery_late",
    "not_as_described",
    "price",
    "service",
    "privacy",
    "safety",
    "other",
)

FACTOR_NAMES: tuple[str, ...] = ("reasonableness", "legality", "importance", "consequence")

# Thresholds (documented in the module docstring).
EXCESSIVE_MULTIPLE = Decimal(10)  # 10x the order: seed 004's unreasonable example
STATUTORY_MULTIPLE = Decimal(3)  # treble damages (退一赔三): the most the law gives for fraud
HIGH_VALUE_PERCENTILE = 0.8  # top 20% of customers by CLV (80/20 rule)
MANY_CUSTOMERS = 3  # other customers' reports of the same problem in 30 days
SYSTEMIC_CUSTOMERS = 10
SERIAL_CLAIMS_90D = 4  # this customer's other claims in 90 days
HIGH_REFUND_RATE = 0.5
MIN_ORDERS_FOR_REFUND_RATE = 4  # one refunded order out of one says nothing


class Level(enum.IntEnum):
    """The grade of a customer's need, 1 (unreasonable or unlawful) to 5 (critical)."""

    UNREASONABLE = 1
    MINOR = 2
    STANDARD = 3
    IMPORTANT = 4
    CRITICAL = 5


LEVEL_LABELS: dict[Level, dict[str, str]] = {
    Level.UNREASONABLE: {"en": "Unreasonable or unlawful request", "zh": "不合理或不合法需求"},
    Level.MINOR: {"en": "Minor need: standard handling", "zh": "一般需求(按标准处理)"},
    Level.STANDARD: {"en": "Standard need: resolve fully", "zh": "合理需求(完整解决)"},
    Level.IMPORTANT: {"en": "Important need: resolve with priority", "zh": "重要需求(优先处理)"},
    Level.CRITICAL: {
        "en": "Critical need: escalate and exceed expectations",
        "zh": "关键需求(升级处理,超越期望)",
    },
}


class Service(enum.StrEnum):
    """Tiered service (分级服务, seed 004)."""

    basic = "basic"
    expected = "expected"
    surprise = "surprise"


SERVICE_LABELS: dict[Service, dict[str, str]] = {
    Service.basic: {"en": "Basic service", "zh": "基本服务"},
    Service.expected: {"en": "Expected service", "zh": "期望服务"},
    Service.surprise: {"en": "Surprise service", "zh": "惊喜服务"},
}


class Priority(enum.StrEnum):
    """The ticket priority a grade suggests (same values as ``support.models.Priority``)."""

    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


_PRIORITY_ORDER = (Priority.low, Priority.normal, Priority.high, Priority.urgent)


@dataclass(frozen=True)
class Claim:
    """What a customer asks for, and what the store knows around it. Validated on creation
    (``ValueError`` naming the field)."""

    category: str
    requested_compensation: Decimal | None = None  # money asked for, store currency
    order_amount: Decimal | None = None  # value of the order concerned
    backed_by_policy: bool | None = None  # store policy or consumer law covers it; None = ?
    lawful: bool = True  # the request itself is lawful
    safety_issue: bool = False  # health or safety harm
    public_exposure: bool = False  # posted publicly / media / regulator threatened
    customer_clv_percentile: float | None = None  # 0..1, 1 = most valuable
    customer_tier_rank: int | None = None  # 0 = lowest tier
    tier_count: int = 0
    same_issue_count: int = 0  # other customers' tickets, same category and product, 30 days
    prior_claims_90d: int = 0  # this customer's other claims in 90 days
    refund_rate: float | None = None  # share of this customer's orders refunded
    flagged: bool = False  # customer flagged as abusive/opportunistic
    order_count: int | None = None  # the customer's orders (refund_rate's denominator)

    def __post_init__(self) -> None:
        if not isinstance(self.category, str) or self.category not in CATEGORIES:
            raise ValueError(
                f"category: unknown category {self.category!r}; expected one of "
                + ", ".join(CATEGORIES)
            )
        for name in ("requested_compensation", "order_amount"):
            object.__setattr__(self, name, _amount(name, getattr(self, name)))
        if self.backed_by_policy is not None:
            _boolean("backed_by_policy", self.backed_by_policy)
        for name in ("lawful", "safety_issue", "public_exposure", "flagged"):
            _boolean(name, getattr(self, name))
        for name in ("customer_clv_percentile", "refund_rate"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _share(name, value))
        for name in ("tier_count", "same_issue_count", "prior_claims_90d"):
            _count(name, getattr(self, name))
        if self.order_count is not None:
            _count("order_count", self.order_count)
        if self.customer_tier_rank is not None:
            _count("customer_tier_rank", self.customer_tier_rank)
            if self.customer_tier_rank >= self.tier_count:
                raise ValueError(
                    f"customer_tier_rank: {self.customer_tier_rank} is not below "
                    f"tier_count ({self.tier_count}); give tier_count with the rank"
                )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (amounts as strings, as everywhere in Patron)."""
        data = asdict(self)
        for name in ("requested_compensation", "order_amount"):
            if data[name] is not None:
                data[name] = str(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Claim:
        """The inverse of ``as_dict``; amounts may be strings, ints or Decimals."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown claim field")
        values = dict(data)
        for name in ("requested_compensation", "order_amount"):
            if isinstance(values.get(name), str):
                values[name] = _parse_decimal(name, values[name])
        return cls(**values)


def _parse_decimal(name: str, text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except ArithmeticError as exc:  # decimal.InvalidOperation
        raise ValueError(f"{name}: not a number: {text!r}") from exc


def _amount(name: str, value: object) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ValueError(f"{name}: must be a Decimal amount, got {type(value).__name__}")
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError(f"{name}: must be a finite amount, got {amount}")
    if amount < 0:
        raise ValueError(f"{name}: must not be negative, got {amount}")
    return amount


def _boolean(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: must be true or false, got {value!r}")


def _share(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, float | int):
        raise ValueError(f"{name}: must be a number between 0 and 1, got {value!r}")
    share = float(value)
    if math.isnan(share) or not 0.0 <= share <= 1.0:
        raise ValueError(f"{name}: must be between 0 and 1, got {value!r}")
    return share


def _count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: must be a whole number ≥ 0, got {value!r}")


@dataclass(frozen=True)
class Factor:
    """One of the four dimensions, scored 0..3 and explained."""

    name: str
    score: int
    reason: str


@dataclass(frozen=True)
class Grade:
    level: Level
    factors: tuple[Factor, ...]
    service: Service
    priority: Priority
    opportunistic: bool
    flags: tuple[str, ...]
    auto_approvable: bool
    suggested_response: dict[str, str]
    commitment: dict[str, str]

    def factor(self, name: str) -> Factor:
        for item in self.factors:
            if item.name == name:
                return item
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what ``support_tickets.grade`` stores and the API returns."""
        return {
            "level": int(self.level),
            "label": dict(LEVEL_LABELS[self.level]),
            "factors": [
                {"name": f.name, "score": f.score, "reason": f.reason} for f in self.factors
            ],
            "service": str(self.service),
            "service_label": dict(SERVICE_LABELS[self.service]),
            "priority": str(self.priority),
            "opportunistic": self.opportunistic,
            "flags": list(self.flags),
            "auto_approvable": self.auto_approvable,
            "suggested_response": dict(self.suggested_response),
            "commitment": dict(self.commitment),
        }


# -- the factors -----------------------------------------------------------------------------

_REASONABLENESS: dict[bool | None, dict[str, int]] = {
    True: {"none": 3, "within": 3, "unknown": 3, "above": 3, "far_above": 3, "excessive": 3},
    None: {"none": 2, "within": 2, "unknown": 2, "above": 1, "far_above": 0, "excessive": 0},
    False: {"none": 1, "within": 1, "unknown": 1, "above": 0, "far_above": 0, "excessive": 0},
}

_BAND_TEXT = {
    "none": "no money is asked for",
    "within": "the money asked for is within the order's value",
    "unknown": "money is asked for but the order's value is not known",
    "above": "the money asked for exceeds the order's value (up to 3x)",
    "far_above": "the money asked for is 3x to 10x the order's value",
    "excessive": "the money asked for is 10x the order's value or more",
}

_POLICY_TEXT: dict[bool | None, str] = {
    True: "the store's policy or consumer law covers it",
    None: "no policy or law is known to cover it",
    False: "the store's policy does not cover it",
}


def _band(claim: Claim) -> str:
    asked = claim.requested_compensation
    if asked is None or asked == 0:
        return "none"
    order = claim.order_amount
    if order is None or order == 0:
        return "unknown"
    if asked <= order:
        return "within"
    if asked <= order * STATUTORY_MULTIPLE:
        return "above"
    if asked < order * EXCESSIVE_MULTIPLE:
        return "far_above"
    return "excessive"


def _high_value(claim: Claim) -> bool:
    by_clv = (
        claim.customer_clv_percentile is not None
        and claim.customer_clv_percentile >= HIGH_VALUE_PERCENTILE
    )
    by_tier = (
        claim.customer_tier_rank is not None
        and claim.tier_count >= 2
        and claim.customer_tier_rank == claim.tier_count - 1
    )
    return by_clv or by_tier


def _high_refund_rate(claim: Claim) -> bool:
    if claim.refund_rate is None or claim.refund_rate < HIGH_REFUND_RATE:
        return False
    return claim.order_count is None or claim.order_count >= MIN_ORDERS_FOR_REFUND_RATE


def _importance(claim: Claim, safety: bool, high_value: bool) -> Factor:
    if safety:
        return Factor("importance", 3, "a health or safety harm always weighs most")
    score = 2 if claim.category == "privacy" else 1
    reasons = ["privacy" if score == 2 else "one customer's problem"]
    if high_value:
        score += 1
        reasons.append("a high-value customer (top 20% by value or top tier)")
    if claim.same_issue_count >= SYSTEMIC_CUSTOMERS:
        score += 2
        reasons.append(f"{claim.same_issue_count} other customers reported the same problem")
    elif claim.same_issue_count >= MANY_CUSTOMERS:
        score += 1
        reasons.append(f"{claim.same_issue_count} other customers reported the same problem")
    return Factor("importance", min(score, 3), "; ".join(reasons))


def _consequence(claim: Claim, safety: bool, unreasonable: bool) -> Factor:
    if safety:
        score = 3
        reasons = ["the harm can happen to other customers"]
    else:
        score = 1
        reasons = ["an unhappy customer tells about 25 others"]
        if claim.public_exposure:
            score += 2
            reasons.append("it is public (posted, media or regulator)")
        if claim.category == "privacy":
            score += 1
            reasons.append("personal data is concerned (regulator)")
        if claim.same_issue_count >= SYSTEMIC_CUSTOMERS:
            score += 1
            reasons.append("a systemic problem with the product")
    if safety and claim.public_exposure:
        reasons.append("it is public")
    if unreasonable:
        reasons.append("granting it would set a precedent that raises every customer's claims")
    return Factor("consequence", min(score, 3), "; ".join(reasons))


# -- answers and commitments ---------------------------------------------------------------

_Text = dict[str, str]

_RESPONSES: dict[Level, _Text] = {
    Level.UNREASONABLE: {
        "en": "Acknowledge the problem and apologise for the trouble; explain what the store's "
        "commitment and the law provide, offer exactly that, and decline the rest politely, "
        "without blaming the customer.",
        "zh": "承认问题并为带来的不便致歉;说明店铺承诺和法律规定的范围,提供相应的解决方案,"
        "其余要求礼貌婉拒,不要指责顾客。",
    },
    Level.MINOR: {
        "en": "Apologise, take responsibility and resolve it with the standard remedy of the "
        "store's policy within the normal response time; explain clearly what it provides.",
        "zh": "致歉并承担责任,在正常响应时间内按店铺政策的标准方案解决,清楚说明政策内容。",
    },
    Level.STANDARD: {
        "en": "Take responsibility and resolve it fully, as the customer expects, the first "
        "time (refund, replacement or re-shipment per policy); confirm when it is done.",
        "zh": "承担责任,一次性完整解决,达到顾客的合理期望"
        "(按政策退款、换货或补发),完成后向顾客确认。",
    },
    Level.IMPORTANT: {
        "en": "Handle it with priority through a senior agent: take responsibility, resolve it "
        "fully and quickly, and follow up to make sure the customer is satisfied.",
        "zh": "由资深客服优先处理:承担责任,快速完整解决,并主动回访确认顾客满意。",
    },
    Level.CRITICAL: {
        "en": "Escalate to the service lead now: take responsibility, resolve it beyond what "
        "was asked (a recovery gesture from the surprise budget), reach out to any other "
        "customer affected and get the root cause fixed.",
        "zh": "立即升级至客服主管:承担责任,超出顾客所求地解决(从惊喜预算中给予补救),"
        "主动联系其他受影响的顾客,并推动根本原因的整改。",
    },
}

_UNLAWFUL: _Text = {
    "en": "The request cannot be met lawfully: decline it politely, say why, and offer the "
    "help the law and the store's policy do allow, without blaming the customer.",
    "zh": "该要求无法合法满足:礼貌拒绝并说明原因,提供法律和店铺政策允许的帮助,不要指责顾客。",
}

_OPPORTUNISTIC: _Text = {
    "en": "Verify before deciding (order, photos, delivery record, claim history) and offer "
    "what the policy allows, no more; stay polite and factual and accuse no one.",
    "zh": "先核实再决定(订单、照片、物流记录、历史索赔),只提供政策允许的补偿;"
    "保持礼貌、就事论事,不指责顾客。",
}

_ADDENDA: dict[str, _Text] = {
    "safety": {
        "en": "Treat the safety report on its own: ask about any harm, suspend sale of the "
        "item until checked, and tell the quality team.",
        "zh": "安全问题单独处理:询问是否造成伤害,暂停该商品销售直至检查完毕,并通知质量团队。",
    },
    "privacy": {
        "en": "Involve the data-protection owner and find out what data was exposed.",
        "zh": "通知数据保护负责人,查明哪些数据被泄露。",
    },
    "public_exposure": {
        "en": "Answer publicly, briefly and factually, and move the details to a private channel.",
        "zh": "公开简短、如实回应,并将具体细节转到私下渠道沟通。",
    },
    "many_customers_affected": {
        "en": "Others reported the same problem: check the product or batch and tell the "
        "product team.",
        "zh": "其他顾客也反映了同样的问题:检查该商品或批次,并通知商品团队。",
    },
}

_REMEDIES: dict[str, _Text] = {
    "quality": {
        "en": "Remedy: replacement or refund; record the defect for the quality team.",
        "zh": "处理:换货或退款;记录质量问题并反馈质量团队。",
    },
    "damaged": {
        "en": "Remedy: ask for a photo, then replace or refund; for a low-value item do not "
        "require it back.",
        "zh": "处理:请顾客提供照片后换货或退款;低值商品无需寄回。",
    },
    "wrong_item": {
        "en": "Remedy: send the right item now, with a prepaid return label for the wrong one.",
        "zh": "处理:立即补发正确商品,并提供错发商品的免费退回。",
    },
    "missing": {
        "en": "Remedy: check the carrier's record, then re-ship or refund the missing part.",
        "zh": "处理:核查物流记录,补发或退还缺失部分的款项。",
    },
    "delivery_late": {
        "en": "Remedy: give the tracking status and a firm new delivery date.",
        "zh": "处理:告知物流状态和明确的新送达时间。",
    },
    "not_as_described": {
        "en": "Remedy: return or refund per policy; get the product page corrected.",
        "zh": "处理:按政策退货或退款;更正商品描述页面。",
    },
    "price": {
        "en": "Remedy: explain the pricing; apply price protection if the store offers it.",
        "zh": "处理:解释价格情况;如店铺提供价格保护则予以执行。",
    },
    "service": {
        "en": "Remedy: apologise for how the customer was treated and review the conversation.",
        "zh": "处理:为服务态度致歉,并复查相关沟通记录。",
    },
    "privacy": {
        "en": "Remedy: stop the misuse and tell the customer what was done.",
        "zh": "处理:停止不当使用个人信息,并告知顾客处理结果。",
    },
    "safety": {
        "en": "Remedy: refund without requiring the item back and cover reasonable costs of "
        "any harm, as the law requires.",
        "zh": "处理:退款且无需寄回商品,并依法承担由此造成的合理损失。",
    },
    "other": {
        "en": "Remedy: find out what the customer needs and what the policy provides.",
        "zh": "处理:了解顾客的具体需求以及政策可提供的方案。",
    },
}

_COMMITMENTS: dict[Level, _Text] = {
    Level.UNREASONABLE: {
        "en": "Promise only what the published policy and the law provide; no exception and "
        "no promise beyond them.",
        "zh": "只承诺公开政策和法律规定的内容;不破例,不做超出范围的承诺。",
    },
    Level.MINOR: {
        "en": "Promise the standard remedy and the standard response time stated in the policy.",
        "zh": "承诺政策规定的标准处理方案和标准响应时间。",
    },
    Level.STANDARD: {
        "en": "Promise the full remedy and the date by which it will be done.",
        "zh": "承诺完整的解决方案及完成日期。",
    },
    Level.IMPORTANT: {
        "en": "Promise a named agent, a resolution date within the priority target and a "
        "follow-up.",
        "zh": "承诺专人负责、在优先时限内解决,并进行回访。",
    },
    Level.CRITICAL: {
        "en": "Promise that a lead owns the case and that the cause will be fixed; do not "
        "announce the recovery gesture in advance — deliver it, so that it surprises.",
        "zh": "承诺由主管负责跟进并整改根本原因;补救惊喜不提前承诺,直接兑现,才能形成惊喜。",
    },
}

_OPPORTUNISTIC_COMMITMENT: _Text = {
    "en": "Promise only a review of the claim, and what the policy allows once it is verified.",
    "zh": "只承诺对索赔进行核实,核实后按政策给予相应处理。",
}


def _join(parts: list[_Text]) -> _Text:
    return {"en": " ".join(p["en"] for p in parts), "zh": "".join(p["zh"] for p in parts)}


# -- grading -------------------------------------------------------------------------------

_LEVEL_PRIORITY = {
    Level.UNREASONABLE: Priority.low,
    Level.MINOR: Priority.normal,
    Level.STANDARD: Priority.normal,
    Level.IMPORTANT: Priority.high,
    Level.CRITICAL: Priority.urgent,
}

_SERVICE = {
    Level.UNREASONABLE: Service.basic,
    Level.MINOR: Service.basic,
    Level.STANDARD: Service.expected,
    Level.IMPORTANT: Service.expected,
    Level.CRITICAL: Service.surprise,
}


def _level_for_total(total: int) -> Level:
    if total <= 4:
        return Level.MINOR
    if total == 5:
        return Level.STANDARD
    if total <= 7:
        return Level.IMPORTANT
    return Level.CRITICAL


def _at_least(priority: Priority, floor: Priority) -> Priority:
    return max(priority, floor, key=_PRIORITY_ORDER.index)


def grade(claim: Claim) -> Grade:
    """Grade a claim: the four factors, the level, the service, priority and answer."""
    safety = claim.safety_issue or claim.category == "safety"
    high_value = _high_value(claim)
    band = _band(claim)
    many = claim.same_issue_count >= MANY_CUSTOMERS
    systemic = claim.same_issue_count >= SYSTEMIC_CUSTOMERS

    flags: list[str] = []
    if not claim.lawful:
        flags.append("unlawful_request")
    if band == "excessive":
        flags.append("excessive_compensation")
    elif band in ("above", "far_above"):
        flags.append("above_order_value")
    elif band == "unknown":
        flags.append("amount_unverified")
    if claim.backed_by_policy is False:
        flags.append("beyond_policy")
    serial = claim.prior_claims_90d >= SERIAL_CLAIMS_90D
    refunds = _high_refund_rate(claim)
    if serial:
        flags.append("serial_claimant")
    if claim.flagged:
        flags.append("flagged_customer")
    if refunds:
        flags.append("high_refund_rate")
    if safety:
        flags.append("safety")
    if claim.public_exposure:
        flags.append("public_exposure")
    if claim.category == "privacy":
        flags.append("privacy")
    if many:
        flags.append("many_customers_affected")
    if systemic:
        flags.append("systemic_issue")
    if high_value:
        flags.append("high_value_customer")

    excessive_unbacked = band == "excessive" and claim.backed_by_policy is not True
    opportunistic = excessive_unbacked or serial or claim.flagged or refunds

    r_score = _REASONABLENESS[claim.backed_by_policy][band]
    reasonableness = Factor(
        "reasonableness",
        r_score,
        f"{_BAND_TEXT[band]}; {_POLICY_TEXT[claim.backed_by_policy]}",
    )
    legality = Factor(
        "legality",
        3 if claim.lawful else 0,
        "the request is lawful" if claim.lawful else "the request itself is unlawful",
    )
    importance = _importance(claim, safety, high_value)
    consequence = _consequence(claim, safety, unreasonable=r_score < 2)
    factors = (reasonableness, legality, importance, consequence)

    if legality.score == 0 or reasonableness.score == 0:
        level = Level.UNREASONABLE
    else:
        level = _level_for_total(reasonableness.score + importance.score + consequence.score)
        if opportunistic:
            level = min(level, Level.MINOR)

    priority = _LEVEL_PRIORITY[level]
    if safety:
        priority = Priority.urgent
    elif claim.public_exposure or claim.category == "privacy" or systemic:
        priority = _at_least(priority, Priority.high)

    auto_approvable = (
        claim.lawful
        and not opportunistic
        and reasonableness.score == 3
        and band in ("none", "within")
        and not safety
        and not claim.public_exposure
        and claim.category != "privacy"
    )

    if not claim.lawful:
        parts = [_UNLAWFUL]
    elif opportunistic:
        parts = [_OPPORTUNISTIC]
    else:
        parts = [_RESPONSES[level]]
    parts += [_ADDENDA[flag] for flag in _ADDENDA if flag in flags]
    parts.append(_REMEDIES["safety" if safety else claim.category])
    commitment = (
        dict(_OPPORTUNISTIC_COMMITMENT)
        if opportunistic and level > Level.UNREASONABLE
        else dict(_COMMITMENTS[level])
    )

    return Grade(
        level=level,
        factors=factors,
        service=_SERVICE[level],
        priority=priority,
        opportunistic=opportunistic,
        flags=tuple(flags),
        auto_approvable=auto_approvable,
        suggested_response=_join(parts),
        commitment=commitment,
    )
