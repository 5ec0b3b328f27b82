"""A customer answers a survey link on a phone, in Chinese and in English, in Chromium."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from patron.stores.models import Store
from tests.browser.conftest import screenshot
from tests.feedback.test_surveys_api import add_customer, count_responses, one_token, text
from tests.feedback.test_surveys_api import create_survey as publish

SURVEY: dict[str, Any] = {
    "title": text("Your order", "您的订单"),
    "thanks": text("Thank you very much!", "非常感谢！"),
    "questions": [
        {"id": "nps", "type": "nps", "text": text("Recommend us?", "您会推荐我们吗？")},
        {
            "id": "delivery",
            "type": "expectation_experience",
            "attribute": "delivery",
            "attribute_label": text("Delivery", "物流"),
            "text": text("Delivery", "物流"),
        },
        {
            "id": "how",
            "type": "single_choice",
            "text": text("How did you find us?", "您如何找到我们？"),
            "options": [
                {"id": "search", "text": text("Search", "搜索")},
                {"id": "friend", "text": text("A friend", "朋友")},
            ],
        },
        {"id": "more", "type": "text", "text": text("Anything else?", "其他？"), "required": False},
    ],
}


def link(engine: Engine, store: Store, base: str, customer: str) -> str:
    add_customer(engine, store, customer)
    token = one_token(engine, store, "web", customer, now=datetime.now(UTC))
    return f"{base}/s/{store.slug}/{token}"


def pick(page: Any, name: str, value: str) -> None:
    """Tap a choice the way a customer does: on its visible label."""
    page.locator(f"label:has(input[name='{name}'][value='{value}'])").click()


def test_a_customer_answers_on_a_phone_in_both_languages(
    engine: Engine, store: Store, live_server: str, phone: Any
) -> None:
    publish(engine, store, "web", definition=SURVEY, recontact_days=0)
    url = link(engine, store, live_server, "WEB-1")

    phone.goto(url + "?lang=zh")
    assert phone.title() == "您的订单"
    # Nothing wider than the screen: no sideways scrolling on a phone.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "survey-zh")
    phone.get_by_role("link", name="English").click()
    assert phone.title() == "Your order"

    # Submitted half-answered: the problems are shown, what was chosen is kept.
    pick(phone, "nps", "9")
    phone.locator("button[type=submit]").click()
    phone.wait_for_load_state()
    assert phone.locator(".bad").count() == 2  # the pair and the choice are missing
    assert phone.locator("input[name='nps'][value='9']").is_checked()
    screenshot(phone, "survey-en-problems")
    assert count_responses(engine, store) == 0

    pick(phone, "delivery.expectation", "6")
    pick(phone, "delivery.experience", "3")
    pick(phone, "how", "friend")
    phone.locator("textarea[name='more']").fill("快递慢了 <b>两天</b>")
    phone.locator("button[type=submit]").click()
    phone.wait_for_load_state()
    assert "Thank you very much!" in phone.content()
    assert count_responses(engine, store) == 1
    screenshot(phone, "survey-en-thanks")

    # The link is used once: opening it again says so, and nothing more is recorded.
    response = phone.goto(url + "?lang=zh")
    assert response is not None and response.status == 409
    assert count_responses(engine, store) == 1
    screenshot(phone, "survey-zh-answered")
