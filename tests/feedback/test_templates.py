"""The built-in survey templates: valid, bilingual, answerable."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patron.feedback.domain import (
    US,
    AnswerError,
    CesQuestion,
    ComparisonQuestion,
    CsatQuestion,
    ExpectationExperienceQuestion,
    LikertQuestion,
    MultipleChoiceQuestion,
    NpsQuestion,
    Question,
    RatingQuestion,
    SingleChoiceQuestion,
    SurveyDefinition,
    TextQuestion,
    attribute_gaps,
    validate_answers,
    value_analysis,
)
from patron.feedback.templates import (
    DEFAULT_COMPETITORS,
    TEMPLATE_NAMES,
    TEMPLATES,
    competitor_value,
    template,
)

CJK = re.compile(r"[\u4e00-\u9fff]")


def local_texts(node: Any, path: str = "") -> list[tuple[str, dict[str, str]]]:
    """Every LocalText (a dict keyed by en/zh) in a dumped definition."""
    found: list[tuple[str, dict[str, str]]] = []
    if isinstance(node, dict):
        if node and set(node) <= {"en", "zh"}:
            return [(path, node)]
        for key, value in node.items():
            found += local_texts(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += local_texts(value, f"{path}.{i}")
    return found


def answer_for(q: Question, rng: random.Random) -> Any:
    """A valid raw answer, as a form would send it."""
    if isinstance(q, NpsQuestion):
        return rng.randint(0, 10)
    if isinstance(q, CsatQuestion):
        return rng.randint(1, 5)
    if isinstance(q, CesQuestion):
        return str(rng.randint(1, 7))
    if isinstance(q, RatingQuestion):
        return rng.randint(q.min, q.max)
    if isinstance(q, LikertQuestion):
        return rng.randint(1, q.points)
    if isinstance(q, SingleChoiceQuestion):
        return rng.choice(q.options).id
    if isinstance(q, MultipleChoiceQuestion):
        k = rng.randint(1, q.max_choices or len(q.options))
        return [o.id for o in rng.sample(q.options, k)]
    if isinstance(q, TextQuestion):
        return rng.choice(["Great shop", "物流可以更快一些", "x" * q.max_length])
    if isinstance(q, ExpectationExperienceQuestion):
        return {"expectation": rng.randint(1, 7), "experience": rng.randint(1, 7)}
    if isinstance(q, ComparisonQuestion):
        ratings = {US: rng.randint(1, 10)}
        for name in q.competitors:
            if rng.random() < 0.8:  # some customers do not know every competitor
                ratings[name] = rng.randint(1, 10)
        return {"importance": rng.randint(1, 5), "ratings": ratings}
    raise AssertionError(q)


def complete(definition: SurveyDefinition, rng: random.Random) -> dict[str, Any]:
    return {q.id: answer_for(q, rng) for q in definition.questions}


@pytest.fixture(params=TEMPLATE_NAMES)
def definition(request: pytest.FixtureRequest) -> SurveyDefinition:
    return template(request.param)


def test_the_four_templates_are_registered() -> None:
    assert TEMPLATE_NAMES == ("post_purchase", "cosmetics", "after_ticket", "competitor_value")
    assert set(TEMPLATES) == set(TEMPLATE_NAMES)


def test_templates_are_valid_definitions(definition: SurveyDefinition) -> None:
    assert isinstance(definition, SurveyDefinition)
    # What is stored as JSON validates again to the same survey.
    again = SurveyDefinition.model_validate_json(definition.model_dump_json())
    assert again == definition
    assert SurveyDefinition.model_validate(definition.model_dump(mode="json")) == definition


def test_every_text_is_in_english_and_chinese(definition: SurveyDefinition) -> None:
    texts = local_texts(definition.model_dump(mode="json"))
    paths = {p for p, _ in texts}
    assert ".title" in paths
    assert ".thanks" in paths
    # Each question has its text, each option its text, each attribute its label.
    for i, q in enumerate(definition.questions):
        assert f".questions.{i}.text" in paths
        if isinstance(q, SingleChoiceQuestion | MultipleChoiceQuestion):
            for j in range(len(q.options)):
                assert f".questions.{i}.options.{j}.text" in paths
        if isinstance(q, ExpectationExperienceQuestion | ComparisonQuestion):
            assert f".questions.{i}.attribute_label" in paths
    for path, text in texts:
        assert set(text) == {"en", "zh"}, path
        assert text["en"].strip() and text["zh"].strip(), path
        assert not CJK.search(text["en"]), (path, text["en"])
        assert CJK.search(text["zh"]), (path, text["zh"])


def test_ids_are_unique(definition: SurveyDefinition) -> None:
    ids = [q.id for q in definition.questions]
    assert len(ids) == len(set(ids))
    for q in definition.questions:
        if isinstance(q, SingleChoiceQuestion | MultipleChoiceQuestion):
            options = [o.id for o in q.options]
            assert len(options) == len(set(options))
    attributes = [
        q.attribute for q in definition.questions if isinstance(q, ExpectationExperienceQuestion)
    ]
    assert len(attributes) == len(set(attributes))


def test_a_complete_answer_set_is_accepted(definition: SurveyDefinition) -> None:
    rng = random.Random(42)
    for _ in range(20):
        answers = validate_answers(definition, complete(definition, rng))
        assert [a.question_id for a in answers] == [q.id for q in definition.questions]


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(TEMPLATE_NAMES), st.integers(0, 2**32))
def test_random_complete_answer_sets_are_accepted(name: str, seed: int) -> None:
    definition = template(name)
    answers = validate_answers(definition, complete(definition, random.Random(seed)))
    assert len(answers) == len(definition.questions)


def test_only_the_required_answers_are_required(definition: SurveyDefinition) -> None:
    with pytest.raises(AnswerError) as caught:
        validate_answers(definition, {})
    required = [q.id for q in definition.questions if q.required]
    assert [p["question"] for p in caught.value.problems] == required
    rng = random.Random(1)
    raw = {q.id: answer_for(q, rng) for q in definition.questions if q.required}
    assert len(validate_answers(definition, raw)) == len(required)


def kinds(definition: SurveyDefinition) -> dict[str, str]:
    return {q.id: q.type for q in definition.questions}


def test_post_purchase_covers_the_seed_factors() -> None:
    d = template("post_purchase")
    pairs = [q.attribute for q in d.questions if isinstance(q, ExpectationExperienceQuestion)]
    assert pairs == [
        "product_quality",
        "price",
        "shop_design",
        "information",
        "delivery",
        "customer_service",
        "security",
        "after_sales",
    ]
    types = kinds(d)
    assert types["nps"] == "nps"
    assert types["csat"] == "csat"
    assert types["ces"] == "ces"
    assert "text" in types.values()
    gaps = attribute_gaps(validate_answers(d, complete(d, random.Random(5))))
    assert [g.attribute for g in gaps] == pairs


def test_cosmetics_is_a_cosmetics_questionnaire() -> None:
    d = template("cosmetics")
    types = kinds(d)
    assert types["nps"] == "nps"
    skin = d.question("skin_type")
    assert isinstance(skin, SingleChoiceQuestion)
    assert {o.id for o in skin.options} >= {"dry", "oily", "combination", "sensitive"}
    attributes = {q.attribute for q in d.questions if isinstance(q, ExpectationExperienceQuestion)}
    assert attributes >= {
        "efficacy",
        "ingredients_safety",
        "packaging",
        "authenticity",
        "samples",
        "beauty_advice",
        "price",
        "delivery",
    }
    assert types["skin_reaction"] == "single_choice"


def test_after_ticket() -> None:
    d = template("after_ticket")
    assert kinds(d) == {
        "csat": "csat",
        "ces": "ces",
        "resolved": "single_choice",
        "comments": "text",
    }
    resolved = d.question("resolved")
    assert isinstance(resolved, SingleChoiceQuestion)
    assert [o.id for o in resolved.options] == ["yes", "partly", "no"]
    comments = d.question("comments")
    assert comments is not None and not comments.required


def test_competitor_value_names_the_competitors() -> None:
    d = template("competitor_value")
    questions = [q for q in d.questions if isinstance(q, ComparisonQuestion)]
    assert len(questions) == len(d.questions) == 8
    assert all(q.competitors == list(DEFAULT_COMPETITORS) for q in questions)
    costs = {q.attribute for q in questions if q.cost}
    benefits = {q.attribute for q in questions if not q.cost}
    assert costs == {"price", "time_effort", "risk"}
    assert benefits == {"quality", "range", "service", "delivery_speed", "shop_experience"}
    named = template("competitor_value", competitors=["Tmall Store", "JD Store"])
    assert all(
        isinstance(q, ComparisonQuestion) and q.competitors == ["Tmall Store", "JD Store"]
        for q in named.questions
    )
    assert named == competitor_value(("Tmall Store", "JD Store"))


def test_competitor_value_answers_feed_the_value_analysis() -> None:
    d = template("competitor_value", competitors=["Shop A", "Shop B"])
    rng = random.Random(9)
    answers = [a for _ in range(30) for a in validate_answers(d, complete(d, rng))]
    result = value_analysis(answers)
    assert result.competitors == ["Shop A", "Shop B"]
    assert len(result.attributes) == 8
    assert {p.party for p in result.parties} == {"us", "Shop A", "Shop B"}
    assert sorted(result.ranking) == ["Shop A", "Shop B", "us"]


@pytest.mark.parametrize(
    "competitors",
    ["Shop A", ["us", "Shop A"], ["Shop A", "shop a"], [], [""]],
)
def test_competitor_value_refuses_bad_names(competitors: Any) -> None:
    with pytest.raises(ValueError):
        template("competitor_value", competitors=competitors)


def test_unknown_template_or_option() -> None:
    with pytest.raises(ValueError, match="known: post_purchase, cosmetics, after_ticket"):
        template("nope")
    with pytest.raises(ValueError, match="template `cosmetics`"):
        template("cosmetics", competitors=["A"])
