"""Built-in survey templates, every text in English and Chinese.

- ``post_purchase``: expectation vs experience over the satisfaction factors of the
  seeds (product quality, price, shop design and ease of use, information reliability,
  logistics and delivery, customer service, payment and privacy security, after-sales
  handling), then NPS, CSAT, CES and a free-text question.
- ``cosmetics``: the satisfaction questionnaire of a cosmetics e-shop (seed 000's
  exercise): skin type, what was bought, efficacy, ingredients and safety, authenticity,
  packaging, samples, beauty advice, price, delivery, skin reactions, NPS.
- ``after_ticket``: sent when a support ticket closes: resolved?, CSAT, CES, comments.
- ``competitor_value``: customer value analysis (seed 003) — importance and ratings of
  us and of the competitors named by the ``competitors`` parameter, over benefit
  attributes (quality, range, service, delivery speed, shop experience) and cost
  attributes (price, time and effort, risk).

``template(name, **params)`` builds one; each is a validated ``SurveyDefinition``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from patron.feedback.domain import (
    CesQuestion,
    ComparisonQuestion,
    CsatQuestion,
    ExpectationExperienceQuestion,
    MultipleChoiceQuestion,
    NpsQuestion,
    Option,
    Question,
    RatingQuestion,
    SingleChoiceQuestion,
    SurveyDefinition,
    TextQuestion,
)

DEFAULT_COMPETITORS = ("Competitor A", "Competitor B")


def _t(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh": zh}


def _options(*items: tuple[str, str, str]) -> list[Option]:
    return [Option(id=i, text=_t(en, zh)) for i, en, zh in items]


def _pair(
    attribute: str,
    label: tuple[str, str],
    hint: tuple[str, str],
    required: bool = True,
) -> ExpectationExperienceQuestion:
    """Expectation and experience of one attribute, both 1–7."""
    en, zh = label
    hint_en, hint_zh = hint
    skip_en = " Skip it if it did not apply to you." if not required else ""
    skip_zh = "如不适用可跳过。" if not required else ""
    return ExpectationExperienceQuestion(
        id=attribute,
        attribute=attribute,
        attribute_label=_t(en, zh),
        text=_t(
            f"{en} ({hint_en}): rate what you expected before buying and what you "
            f"experienced (1 = very poor, 7 = excellent).{skip_en}",
            f"{zh}({hint_zh}):请分别为您购买前的期望和实际体验打分(1 = 很差,7 = 非常好)。{skip_zh}",
        ),
        required=required,
    )


def _nps(subject_en: str = "our shop", subject_zh: str = "我们的店铺") -> NpsQuestion:
    return NpsQuestion(
        id="nps",
        text=_t(
            f"How likely are you to recommend {subject_en} to a friend or colleague? "
            "(0 = not at all likely, 10 = extremely likely)",
            f"您向朋友或同事推荐{subject_zh}的可能性有多大?(0 = 完全不可能,10 = 非常可能)",
        ),
    )


def _comments(question_id: str, en: str, zh: str) -> TextQuestion:
    return TextQuestion(id=question_id, text=_t(en, zh), required=False, max_length=2000)


_THANKS = _t(
    "Thank you! Your answers help us serve you better.",
    "感谢您的反馈!您的意见将帮助我们做得更好。",
)


# -- post_purchase -------------------------------------------------------------------------

# The satisfaction factors of the seeds (000, 003, DOMAIN.md §4).
PURCHASE_FACTORS: tuple[tuple[str, tuple[str, str], tuple[str, str], bool], ...] = (
    (
        "product_quality",
        ("Product quality", "商品质量"),
        ("the product matches its pictures and description", "商品与图片和描述相符,品质可靠"),
        True,
    ),
    ("price", ("Price", "价格"), ("value for the money you paid", "物有所值"), True),
    (
        "shop_design",
        ("Shop design and ease of use", "店铺设计与易用性"),
        ("finding products, browsing and checking out", "查找商品、浏览和下单是否方便"),
        True,
    ),
    (
        "information",
        ("Reliable information", "信息可靠性"),
        (
            "product details, stock and delivery times are accurate",
            "商品详情、库存和发货时间准确可靠",
        ),
        True,
    ),
    (
        "delivery",
        ("Logistics and delivery", "物流配送"),
        (
            "speed, tracking and the condition of your parcel",
            "配送速度、物流跟踪和包裹完好程度",
        ),
        True,
    ),
    (
        "customer_service",
        ("Customer service", "客户服务"),
        ("quick, friendly and helpful answers", "客服回复及时、热情、专业"),
        False,
    ),
    (
        "security",
        ("Payment and privacy security", "支付与隐私安全"),
        ("safe payment and care of your personal data", "支付安全,个人信息得到保护"),
        True,
    ),
    (
        "after_sales",
        ("After-sales handling", "售后处理"),
        (
            "returns, exchanges and problems solved quickly and fairly",
            "退换货及问题处理及时、公平",
        ),
        False,
    ),
)


def post_purchase() -> SurveyDefinition:
    """Sent after delivery: expectation vs experience per factor, NPS, CSAT, CES, text."""
    questions: list[Question] = [
        _pair(attribute, label, hint, required)
        for attribute, label, hint, required in PURCHASE_FACTORS
    ]
    questions += [
        _nps(),
        CsatQuestion(
            id="csat",
            text=_t(
                "Overall, how satisfied are you with this order? "
                "(1 = very dissatisfied, 5 = very satisfied)",
                "总体而言,您对本次购物的满意程度如何?(1 = 非常不满意,5 = 非常满意)",
            ),
        ),
        CesQuestion(
            id="ces",
            text=_t(
                "How easy was it to find what you wanted and place your order? "
                "(1 = very difficult, 7 = very easy)",
                "找到所需商品并完成下单有多容易?(1 = 非常困难,7 = 非常容易)",
            ),
        ),
        _comments(
            "improve",
            "What is the one thing we should improve?",
            "您最希望我们改进的一点是什么?",
        ),
    ]
    return SurveyDefinition(
        title=_t("How was your order?", "您对本次购物满意吗?"),
        intro=_t(
            "Thank you for shopping with us. This survey takes about 3 minutes.",
            "感谢您的惠顾!本问卷大约需要 3 分钟。",
        ),
        thanks=_THANKS,
        questions=questions,
    )


# -- cosmetics -----------------------------------------------------------------------------

COSMETICS_FACTORS: tuple[tuple[str, tuple[str, str], tuple[str, str], bool], ...] = (
    (
        "efficacy",
        ("Product efficacy", "产品功效"),
        ("the results you see on your skin", "使用后肌肤的实际效果"),
        True,
    ),
    (
        "ingredients_safety",
        ("Ingredients and safety", "成分与安全性"),
        ("clear ingredient lists, gentle on your skin", "成分标注清晰,温和不刺激"),
        True,
    ),
    (
        "authenticity",
        ("Authentic products", "正品保障"),
        (
            "genuine products with clear batch numbers and expiry dates",
            "正品货源,批号与保质期清晰",
        ),
        True,
    ),
    (
        "packaging",
        ("Packaging", "包装"),
        ("attractive, intact, nothing leaked or broken", "包装美观完好,无渗漏、无破损"),
        True,
    ),
    (
        "product_info",
        ("Product information", "商品信息"),
        (
            "shades, textures and pictures true to the product",
            "色号、质地和图片与实物相符",
        ),
        True,
    ),
    (
        "price",
        ("Price and promotions", "价格与优惠"),
        ("value for money and fair promotions", "物有所值,优惠活动实在"),
        True,
    ),
    (
        "samples",
        ("Samples and trial sizes", "小样与试用装"),
        ("a chance to try before buying a full size", "购买正装前有机会试用"),
        False,
    ),
    (
        "beauty_advice",
        ("Advice from our beauty consultants", "美容顾问的建议"),
        ("advice that fits your skin and needs", "针对您的肤质和需求给出专业建议"),
        False,
    ),
    (
        "delivery",
        ("Delivery", "物流配送"),
        ("speed, and products arriving undamaged", "配送速度,商品完好送达"),
        True,
    ),
    (
        "after_sales",
        ("After-sales service", "售后服务"),
        (
            "returns, exchanges and help with skin reactions",
            "退换货及过敏等问题的处理",
        ),
        False,
    ),
)


def cosmetics() -> SurveyDefinition:
    """The satisfaction questionnaire of a cosmetics e-shop (seed 000)."""
    not_used = ("not_used_yet", "I have not used them yet", "还未使用")
    questions: list[Question] = [
        SingleChoiceQuestion(
            id="skin_type",
            text=_t("What is your skin type?", "您的肤质是?"),
            required=False,
            options=_options(
                ("dry", "Dry", "干性"),
                ("oily", "Oily", "油性"),
                ("combination", "Combination", "混合性"),
                ("normal", "Normal", "中性"),
                ("sensitive", "Sensitive", "敏感性"),
                ("not_sure", "Not sure", "不确定"),
            ),
        ),
        SingleChoiceQuestion(
            id="age_group",
            text=_t("Your age group", "您的年龄段"),
            required=False,
            options=_options(
                ("under_25", "Under 25", "25 岁以下"),
                ("age_25_34", "25–34", "25–34 岁"),
                ("age_35_44", "35–44", "35–44 岁"),
                ("age_45_plus", "45 or over", "45 岁及以上"),
            ),
        ),
        MultipleChoiceQuestion(
            id="categories",
            text=_t("What did you buy in this order?", "您本次购买了哪些品类?(可多选)"),
            options=_options(
                ("skincare", "Skincare", "护肤"),
                ("makeup", "Make-up", "彩妆"),
                ("fragrance", "Fragrance", "香水"),
                ("hair_care", "Hair care", "美发护发"),
                ("body_care", "Body care", "身体护理"),
                ("tools", "Beauty tools", "美妆工具"),
            ),
        ),
    ]
    questions += [
        _pair(attribute, label, hint, required)
        for attribute, label, hint, required in COSMETICS_FACTORS
    ]
    questions += [
        SingleChoiceQuestion(
            id="suits_skin",
            text=_t("Did the products suit your skin?", "产品是否适合您的肤质?"),
            options=_options(
                ("yes", "Yes", "适合"),
                ("partly", "Partly", "部分适合"),
                ("no", "No", "不适合"),
                not_used,
            ),
        ),
        SingleChoiceQuestion(
            id="skin_reaction",
            text=_t(
                "Did you have any irritation or allergic reaction?",
                "使用后是否出现刺激或过敏反应?",
            ),
            options=_options(
                ("none", "No", "没有"),
                ("mild", "Mild (redness, itching)", "轻微(泛红、瘙痒)"),
                ("severe", "Severe", "严重"),
                not_used,
            ),
        ),
        RatingQuestion(
            id="repurchase",
            text=_t(
                "How likely are you to buy these products from us again?",
                "您再次在本店购买这些产品的可能性有多大?",
            ),
            min=1,
            max=5,
            min_label=_t("Not likely", "不太可能"),
            max_label=_t("Very likely", "非常可能"),
        ),
        _nps(),
        CsatQuestion(
            id="csat",
            text=_t(
                "Overall, how satisfied are you with our shop? "
                "(1 = very dissatisfied, 5 = very satisfied)",
                "总体而言,您对本店的满意程度如何?(1 = 非常不满意,5 = 非常满意)",
            ),
        ),
        _comments(
            "wishes",
            "Which products or brands would you like us to offer?",
            "您希望我们增加哪些产品或品牌?",
        ),
        _comments(
            "comments",
            "Anything else you would like to tell us?",
            "您还有其他意见或建议吗?",
        ),
    ]
    return SurveyDefinition(
        title=_t("Your beauty shopping experience", "美妆购物满意度调查"),
        intro=_t(
            "Thank you for your order. Tell us how our products and service met your "
            "expectations; it takes about 5 minutes.",
            "感谢您的订购!请告诉我们商品和服务是否符合您的期望,大约需要 5 分钟。",
        ),
        thanks=_THANKS,
        questions=questions,
    )


# -- after_ticket --------------------------------------------------------------------------


def after_ticket() -> SurveyDefinition:
    """Sent when a support ticket closes."""
    return SurveyDefinition(
        title=_t("How did we do?", "本次服务您满意吗?"),
        thanks=_THANKS,
        questions=[
            CsatQuestion(
                id="csat",
                text=_t(
                    "How satisfied are you with the help you received? "
                    "(1 = very dissatisfied, 5 = very satisfied)",
                    "您对本次获得的帮助满意吗?(1 = 非常不满意,5 = 非常满意)",
                ),
            ),
            CesQuestion(
                id="ces",
                text=_t(
                    "How easy was it to get your issue handled? "
                    "(1 = very difficult, 7 = very easy)",
                    "解决您的问题有多容易?(1 = 非常困难,7 = 非常容易)",
                ),
            ),
            SingleChoiceQuestion(
                id="resolved",
                text=_t("Was your issue resolved?", "您的问题解决了吗?"),
                options=_options(
                    ("yes", "Yes", "已解决"),
                    ("partly", "Partly", "部分解决"),
                    ("no", "No", "未解决"),
                ),
            ),
            _comments(
                "comments",
                "What could we have done better?",
                "我们还有哪些可以做得更好的地方?",
            ),
        ],
    )


# -- competitor_value ----------------------------------------------------------------------

VALUE_ATTRIBUTES: tuple[tuple[str, str, str, bool], ...] = (
    # benefits: rated 1 = very poor … 10 = excellent
    ("quality", "Product quality", "商品质量", False),
    ("range", "Product range", "商品种类", False),
    ("service", "Customer service", "客户服务", False),
    ("delivery_speed", "Delivery speed", "配送速度", False),
    ("shop_experience", "Shopping experience (website, app)", "购物体验(网站、App)", False),
    # costs: rated as a burden, 1 = very low … 10 = very high
    ("price", "Price", "价格", True),
    ("time_effort", "Time and effort to buy", "购买所花的时间与精力", True),
    ("risk", "Risk and worry (fakes, damage, returns)", "风险与顾虑(假货、破损、退货)", True),
)


def competitor_value(competitors: Sequence[str] = DEFAULT_COMPETITORS) -> SurveyDefinition:
    """Customer value analysis against ``competitors`` (names shown to the customer)."""
    if isinstance(competitors, str):
        raise ValueError("competitors: give a list of names")
    names = list(competitors)
    questions: list[Question] = []
    for attribute, en, zh, cost in VALUE_ATTRIBUTES:
        if cost:
            text = _t(
                f"{en}: how important is it to you (1–5), and how high is it at each shop? "
                "(1 = very low, 10 = very high)",
                f"{zh}:对您有多重要(1–5)?各店铺在这方面的成本有多高?(1 = 很低,10 = 很高)",
            )
        else:
            text = _t(
                f"{en}: how important is it to you (1–5), and how good is each shop? "
                "(1 = very poor, 10 = excellent)",
                f"{zh}:对您有多重要(1–5)?各店铺在这方面表现如何?(1 = 很差,10 = 非常好)",
            )
        questions.append(
            ComparisonQuestion(
                id=attribute,
                attribute=attribute,
                attribute_label=_t(en, zh),
                cost=cost,
                competitors=names,
                text=text,
            )
        )
    return SurveyDefinition(
        title=_t("How do we compare?", "我们与其他店铺相比如何?"),
        intro=_t(
            "For each aspect, tell us how much it matters to you and rate us and the other "
            "shops. Skip a shop you do not know.",
            "请就每一项告诉我们它对您有多重要,并为我们和其他店铺打分。不了解的店铺可以跳过。",
        ),
        thanks=_THANKS,
        questions=questions,
    )


# -- registry ------------------------------------------------------------------------------

TEMPLATES: dict[str, Callable[..., SurveyDefinition]] = {
    "post_purchase": post_purchase,
    "cosmetics": cosmetics,
    "after_ticket": after_ticket,
    "competitor_value": competitor_value,
}
TEMPLATE_NAMES: tuple[str, ...] = tuple(TEMPLATES)


def template(name: str, **params: Any) -> SurveyDefinition:
    """The built-in template ``name``; ``params`` are its options (``competitor_value``
    takes ``competitors``). An unknown name or option raises ``ValueError``."""
    builder = TEMPLATES.get(name)
    if builder is None:
        raise ValueError(f"unknown template `{name}`; known: {', '.join(TEMPLATE_NAMES)}")
    try:
        return builder(**params)
    except TypeError as exc:
        raise ValueError(f"template `{name}`: {exc}") from exc
