"""The response page: every question type rendered in both languages, a posted form
with problems shown again with its answers, the thanks, and the pages of used, expired
and unknown links."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from patron.db import unit_of_work
from patron.feedback.models import SurveyAnswer
from patron.stores.models import Store
from tests.feedback.test_surveys_api import (
    DAY,
    NOW,
    add_customer,
    count_responses,
    create_survey,
    one_token,
    text,
)

EVERY_TYPE: dict[str, Any] = {
    "title": text("Your <b>visit</b> <script>alert(1)</script>", "您的购物体验"),
    "intro": text("Two minutes, promised.", "只需两分钟。"),
    "thanks": text("Thank you very much!", "非常感谢!"),
    "questions": [
        {"id": "nps", "type": "nps", "text": text("Recommend us?", "您会推荐我们吗?")},
        {"id": "csat", "type": "csat", "text": text("Satisfied?", "您满意吗?")},
        {"id": "ces", "type": "ces", "text": text("Easy?", "容易吗?")},
        {
            "id": "stars",
            "type": "rating",
            "text": text("Stars?", "星级?"),
            "min": 1,
            "max": 5,
            "min_label": text("Poor", "差"),
            "max_label": text("Great", "好"),
        },
        {
            "id": "agree",
            "type": "likert",
            "text": text("The site is clear.", "网站清晰易用。"),
            "points": 5,
            "labels": [text(f"L{n}", f"级{n}") for n in range(1, 6)],
        },
        {
            "id": "how",
            "type": "single_choice",
            "text": text("How did you find us?", "您如何找到我们?"),
            "options": [
                {"id": "search", "text": text("Search", "搜索")},
                {"id": "friend", "text": text("A friend", "朋友")},
            ],
        },
        {
            "id": "bought",
            "type": "multiple_choice",
            "text": text("What did you buy?", "您买了什么?"),
            "options": [
                {"id": "skin", "text": text("Skincare", "护肤")},
                {"id": "makeup", "text": text("Make-up", "彩妆")},
                {"id": "hair", "text": text("Hair", "美发")},
            ],
        },
        {
            "id": "quality",
            "type": "expectation_experience",
            "attribute": "quality",
            "attribute_label": text("Quality", "质量"),
            "text": text("Quality", "质量"),
        },
        {
            "id": "price",
            "type": "comparison",
            "attribute": "price",
            "attribute_label": text("Price", "价格"),
            "cost": True,
            "competitors": ["JD", "<Tmall>"],
            "text": text("Price", "价格"),
        },
        {
            "id": "comments",
            "type": "text",
            "text": text("Anything else?", "其他?"),
            "required": False,
        },
    ],
}

GOOD: dict[str, Any] = {
    "nps": "9",
    "csat": "4",
    "ces": "6",
    "stars": "5",
    "agree": "4",
    "how": "friend",
    "bought": ["skin", "hair"],
    "quality.expectation": "5",
    "quality.experience": "6",
    "price.importance": "4",
    "price.r0": "5",
    "price.r1": "7",
    "price.r2": "",
    "comments": "Great <service> & fast",
}


def page_link(engine: Engine, store: Store, customer: str = "A", **kw: Any) -> str:
    add_customer(engine, store, customer)
    tok = one_token(engine, store, "page", customer, now=kw.pop("now", NOW), **kw)
    return f"/s/{store.slug}/{tok}"


def setup(engine: Engine, store: Store, **kw: Any) -> str:
    create_survey(engine, store, "page", definition=EVERY_TYPE, recontact_days=0)
    return page_link(engine, store, **kw)


def test_the_page_renders_every_question_type_in_both_languages(
    client: TestClient, engine: Engine, store: Store
) -> None:
    url = setup(engine, store)
    res = client.get(url)
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("text/html")
    html = res.text
    # The store's locale (zh-CN) is the invitation's language.
    assert '<html lang="zh-CN">' in html and "您的购物体验" in html and "提交答案" in html
    assert 'name="viewport"' in html and "<style>" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no external asset
    assert "<script" not in html
    for n in range(11):
        assert f'name="nps" value="{n}"' in html
    for field in (
        'name="csat" value="5"',
        'name="ces" value="7"',
        'name="stars" value="1"',
        "级3",
        'type="radio" name="how" value="friend"',
        'type="checkbox" name="bought" value="makeup"',
        'name="quality.expectation" value="7"',
        'name="quality.experience" value="1"',
        'name="price.importance" value="5"',
        'name="price.r0"',
        'name="price.r2"',
        "&lt;Tmall&gt;",
        "不了解",
        '<textarea name="comments"',
    ):
        assert field in html, field
    en = client.get(url, params={"lang": "en"}).text
    assert '<html lang="en">' in en and "Send my answers" in en and "Two minutes" in en
    assert "Your &lt;b&gt;visit&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt;" in en
    assert "Not at all likely" in en and "Don&#39;t know" in en


def test_a_form_with_problems_comes_back_with_its_answers(
    client: TestClient, engine: Engine, store: Store
) -> None:
    url = setup(engine, store)
    partial = {**GOOD, "csat": "", "quality.experience": "", "price.r1": "11", "lang": "en"}
    res = client.post(url, data=partial)
    assert res.status_code == 422, res.text
    html = res.text
    assert 'id="err-csat"' in html and "This question needs an answer." in html
    assert 'id="err-quality"' in html and 'id="err-price"' in html
    assert 'id="err-nps"' not in html
    assert 'name="nps" value="9" checked' in html
    assert 'name="bought" value="skin" checked' in html
    assert 'name="bought" value="makeup">' in html
    assert 'name="quality.expectation" value="5" checked' in html
    assert '<option value="5" selected>' in html
    assert "Great &lt;service&gt; &amp; fast</textarea>" in html
    assert count_responses(engine, store) == 0
    zh = client.post(url, data={**partial, "lang": "zh"})
    assert zh.status_code == 422 and "此题为必答题。" in zh.text


def test_a_good_form_thanks_and_a_second_post_is_refused(
    client: TestClient, engine: Engine, store: Store
) -> None:
    url = setup(engine, store)
    res = client.post(url, data={**GOOD, "lang": "en"})
    assert res.status_code == 200, res.text
    assert "Thank you very much!" in res.text
    with unit_of_work(engine) as session:
        rows = {
            a.question_id: a
            for a in session.scalars(select(SurveyAnswer).where(SurveyAnswer.store_id == store.id))
        }
    assert rows["nps"].value == 9 and rows["bought"].data == {"choices": ["skin", "hair"]}
    assert (rows["quality"].expectation, rows["quality"].experience) == (5, 6)
    assert rows["price"].importance == 4
    assert rows["price"].data is not None and rows["price"].data["ratings"] == {"us": 5, "JD": 7}
    assert rows["comments"].data == {"text": "Great <service> & fast"}
    again = client.post(url, data=GOOD)
    assert again.status_code == 409 and "此问卷链接已被使用过" in again.text
    assert client.get(url, params={"lang": "en"}).status_code == 409
    assert count_responses(engine, store) == 1


def test_expired_unknown_and_foreign_links(
    client: TestClient, engine: Engine, store: Store
) -> None:
    create_survey(engine, store, "page", definition=EVERY_TYPE, recontact_days=0, link_days=2)
    old = page_link(engine, store, "A", now=NOW - 3 * DAY)
    res = client.get(old, params={"lang": "en"})
    assert res.status_code == 410 and "expired" in res.text
    assert client.post(old, data=GOOD).status_code == 410
    fresh = page_link(engine, store, "B")
    tok = fresh.rsplit("/", 1)[1]
    assert client.get(f"/s/another-store/{tok}").status_code == 404
    forged = tok[:-1] + ("y" if tok.endswith("x") else "x")
    assert client.get(f"/s/{store.slug}/{forged}").status_code == 404
    missing = client.get(f"/s/{store.slug}/nonsense", params={"lang": "zh"})
    assert missing.status_code == 404 and "未找到问卷" in missing.text
    assert client.post(f"/s/{store.slug}/nonsense", data=GOOD).status_code == 404
    assert client.get(fresh, params={"lang": "xx"}).status_code == 200


def test_hostile_forms_are_refused_without_a_server_error(
    client: TestClient, engine: Engine, store: Store
) -> None:
    url = setup(engine, store)
    for data in (
        {"nps": "1e400", "csat": "NaN", "ces": "-0", "comments": "a\x00b"},
        {"how": "x" * 5000, "bought": ["skin", "skin", "nope"], "price.r1": "11"},
        {"quality.expectation": "7.5", "price.importance": "0x1F", "stars": "9" * 400},
        {"agree": "<script>", "unknown.field": "1", "lang": "<zh>"},
    ):
        res = client.post(url, data=data)
        assert res.status_code == 422, (data, res.text[:300])
        assert "<script>" not in res.text
    files = client.post(url, files={"nps": ("a.txt", b"9")})
    assert files.status_code < 500
    assert count_responses(engine, store) == 0
