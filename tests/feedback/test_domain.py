"""The pure feedback rules: definitions, answers, scores, gaps, IPA, value analysis."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import stats

from patron.feedback.domain import (
    GAP_LABELS,
    Answer,
    AnswerError,
    Estimate,
    GapLevel,
    Quadrant,
    SurveyDefinition,
    Verdict,
    attribute_gaps,
    ces,
    csat,
    gap_level,
    importance_performance,
    ipa_crosshairs,
    ipa_from_gaps,
    level_of_gap,
    mean_score,
    nps,
    nps_breakdown,
    validate_answers,
    value_analysis,
)


def t(en: str = "Question?") -> dict[str, str]:
    return {"en": en, "zh": "问题?"}


def survey(*questions: dict[str, Any]) -> SurveyDefinition:
    return SurveyDefinition.model_validate({"title": t("Survey"), "questions": list(questions)})


def q(qid: str, qtype: str, **extra: Any) -> dict[str, Any]:
    return {"id": qid, "type": qtype, "text": t(), **extra}


OPTIONS = [{"id": "red", "text": t("Red")}, {"id": "green", "text": t("Green")}]
OPTIONS3 = [*OPTIONS, {"id": "blue", "text": t("Blue")}]


def pair(qid: str, attribute: str | None = None, **extra: Any) -> dict[str, Any]:
    return q(
        qid,
        "expectation_experience",
        attribute=attribute or qid,
        attribute_label=t(qid),
        **extra,
    )


def comparison(qid: str, cost: bool = False, **extra: Any) -> dict[str, Any]:
    return q(
        qid,
        "comparison",
        attribute=qid,
        attribute_label=t(qid),
        cost=cost,
        competitors=["Shop A", "Shop B"],
        **extra,
    )


FULL = survey(
    q("nps", "nps"),
    q("csat", "csat"),
    q("ces", "ces"),
    q("rating", "rating"),
    q("rating10", "rating", min=0, max=10, required=False),
    q("likert", "likert", points=7),
    q("color", "single_choice", options=OPTIONS),
    q("colors", "multiple_choice", options=OPTIONS3, max_choices=2),
    q("comment", "text", max_length=10, required=False),
    pair("quality"),
    comparison("price", cost=True),
)

GOOD: dict[str, Any] = {
    "nps": 9,
    "csat": 4,
    "ces": 6,
    "rating": 5,
    "likert": 7,
    "color": "red",
    "colors": ["blue", "red"],
    "comment": "  great  ",
    "quality": {"expectation": 5, "experience": 6},
    "price": {"importance": 4, "ratings": {"us": 3, "Shop A": 8}},
}


def problems(raw: dict[str, Any], definition: SurveyDefinition = FULL) -> list[dict[str, str]]:
    with pytest.raises(AnswerError) as caught:
        validate_answers(definition, raw)
    return caught.value.problems


def messages_for(raw: dict[str, Any], question: str) -> list[str]:
    return [p["message"] for p in problems(raw) if p["question"] == question]


# -- definitions ---------------------------------------------------------------------------


def test_a_definition_round_trips_through_json() -> None:
    again = SurveyDefinition.model_validate_json(FULL.model_dump_json())
    assert again == FULL
    assert [x.type for x in FULL.questions][:3] == ["nps", "csat", "ces"]
    assert FULL.question("price") is not None
    assert FULL.question("nope") is None


def test_duplicate_question_ids_are_named() -> None:
    with pytest.raises(ValidationError, match="duplicate question id `nps`"):
        survey(q("nps", "nps"), q("csat", "csat"), q("nps", "csat"))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ({"fr": "Bonjour"}, "unknown language fr"),
        ({}, "give `en`, `zh` or both"),
        ({"en": "  "}, "en: must not be empty"),
        ({"en": "a\x00b"}, "NUL"),
        ({"en": "x" * 2001}, "at most 2000"),
        ("plain", "dict"),
    ],
)
def test_local_text_is_checked(text: Any, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        SurveyDefinition.model_validate({"title": text, "questions": [q("nps", "nps")]})


def test_local_text_is_stripped_and_one_language_is_enough() -> None:
    d = SurveyDefinition.model_validate(
        {"title": {"zh": " 调查 "}, "questions": [{"id": "n", "type": "nps", "text": {"en": "x"}}]}
    )
    assert d.title == {"zh": "调查"}


@pytest.mark.parametrize(
    ("question", "error"),
    [
        (q("Bad", "nps"), "pattern"),
        (q("1abc", "nps"), "pattern"),
        (q("a" * 65, "nps"), "pattern"),
        (q("x", "stars"), "does not match any of the expected tags"),
        (q("x", "nps", colour="red"), "Extra inputs are not permitted"),
        (q("x", "rating", min=5, max=5), "max: 5 must be above min 5"),
        (q("x", "likert", points=6), "points"),
        (q("x", "likert", points=5, labels=[t("a")] * 4), "labels: give one per point"),
        (q("x", "single_choice", options=OPTIONS[:1]), "at least 2"),
        (q("x", "single_choice", options=[OPTIONS[0], OPTIONS[0]]), "duplicate option id `red`"),
        (q("x", "multiple_choice", options=OPTIONS, max_choices=3), "max_choices: 3 is more"),
        (q("x", "text", max_length=0), "greater than or equal to 1"),
        (q("x", "nps", required="yes"), "valid boolean"),
        ({**comparison("x"), "competitors": ["Us"]}, "reserved for the store"),
        ({**comparison("x"), "competitors": ["A", "a"]}, "duplicate competitor `a`"),
        ({**comparison("x"), "competitors": []}, "at least 1"),
        ({**pair("x"), "attribute": "Not A Slug"}, "pattern"),
    ],
)
def test_bad_questions_are_refused(question: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        survey(question)


def test_question_counts_and_attribute_uniqueness() -> None:
    with pytest.raises(ValidationError, match="at least 1"):
        survey()
    with pytest.raises(ValidationError, match="at most 100"):
        survey(*(q(f"q{i}", "nps") for i in range(101)))
    assert len(survey(*(q(f"q{i}", "nps") for i in range(100))).questions) == 100
    with pytest.raises(ValidationError, match="attribute `price` is already asked"):
        survey(pair("a", "price"), pair("b", "price"))
    # A pair and a comparison may share an attribute.
    survey(pair("a", "price"), {**comparison("b"), "attribute": "price"})


# -- answers -------------------------------------------------------------------------------


def test_a_complete_good_response() -> None:
    answers = validate_answers(FULL, GOOD)
    by_id = {a.question_id: a for a in answers}
    assert [a.question_id for a in answers] == [
        x.id for x in FULL.questions if x.id in GOOD
    ]  # in question order; the optional rating10 is absent
    assert by_id["nps"] == Answer("nps", "nps", value=9.0)
    assert by_id["colors"].choices == ("red", "blue")  # in option order
    assert by_id["color"].choices == ("red",)
    assert by_id["comment"].text == "great"
    assert by_id["quality"].expectation == 5
    assert by_id["quality"].experience == 6
    assert by_id["quality"].attribute == "quality"
    price = by_id["price"]
    assert price.ratings == {"us": 3, "Shop A": 8}  # Shop B unknown to this customer
    assert (price.importance, price.attribute, price.cost) == (4, "price", True)
    assert json.loads(json.dumps(price.as_dict()))["ratings"] == {"us": 3, "Shop A": 8}


def test_numeric_strings_from_html_forms() -> None:
    raw = {
        **GOOD,
        "nps": "7",
        "csat": " 5 ",
        "ces": "3.0",
        "rating": 2.0,
        "rating10": "0",
        "likert": "+1",
        "colors": "green",  # one ticked checkbox arrives as a string
        "quality": {"expectation": "1", "experience": "7"},
        "price": {"importance": "5", "ratings": {"us": "10", "Shop B": "1"}},
    }
    by_id = {a.question_id: a for a in validate_answers(FULL, raw)}
    assert by_id["nps"].value == 7.0
    assert by_id["csat"].value == 5.0
    assert by_id["ces"].value == 3.0
    assert by_id["rating"].value == 2.0
    assert by_id["rating10"].value == 0.0
    assert by_id["likert"].value == 1.0
    assert by_id["colors"].choices == ("green",)
    assert (by_id["quality"].expectation, by_id["quality"].experience) == (1, 7)
    assert by_id["price"].ratings == {"us": 10, "Shop B": 1}


@pytest.mark.parametrize(
    ("question", "value", "message"),
    [
        ("nps", 11, "must be between 0 and 10"),
        ("nps", -1, "must be between 0 and 10"),
        ("nps", 7.5, "must be a whole number"),
        ("nps", "7.5", "must be a whole number"),
        ("nps", "seven", "must be a number"),
        ("nps", "1e1", "must be a number"),
        ("nps", True, "must be a number"),
        ("nps", [7], "must be a number"),
        ("nps", float("nan"), "must be a number"),
        ("csat", 0, "must be between 1 and 5"),
        ("csat", 6, "must be between 1 and 5"),
        ("ces", 8, "must be between 1 and 7"),
        ("ces", 0, "must be between 1 and 7"),
        ("rating", 6, "must be between 1 and 5"),
        ("rating10", 11, "must be between 0 and 10"),
        ("likert", 8, "must be between 1 and 7"),
        ("color", "blue", "`blue` is not an option"),
        ("color", ["red"], "must be an option id"),
        ("colors", ["red", "pink"], "`pink` is not an option"),
        ("colors", ["red", "red"], "an option is chosen twice"),
        ("colors", ["red", "green", "blue"], "at most 2 choices"),
        ("colors", 3, "must be a list of option ids"),
        ("colors", ["red", 3], "must be a list of option ids"),
        ("comment", "x" * 11, "at most 10 characters"),
        ("comment", 12, "must be text"),
        ("comment", "a\x00", "NUL"),
        ("quality", 5, "must be {expectation, experience}"),
        ("quality", {"expectation": 5}, "experience: required"),
        ("quality", {"expectation": 0, "experience": 8}, "expectation: must be between 1 and 7"),
        ("quality", {"expectation": 5, "experience": 8}, "experience: must be between 1 and 7"),
        ("quality", {"expectation": 5, "experience": 5, "x": 1}, "x: unknown field"),
        ("price", [1], "must be {importance, ratings}"),
        ("price", {"ratings": {"us": 5}}, "importance: required"),
        ("price", {"importance": 6, "ratings": {"us": 5}}, "importance: must be between 1 and 5"),
        ("price", {"importance": 3}, "ratings: rate us"),
        ("price", {"importance": 3, "ratings": [5]}, "ratings: must be {party: rating}"),
        ("price", {"importance": 3, "ratings": {"Shop A": 5}}, "ratings.us: required"),
        ("price", {"importance": 3, "ratings": {"us": 11}}, "ratings.us: must be between 1"),
        ("price", {"importance": 3, "ratings": {"us": 5, "Shop C": 5}}, "unknown party"),
        ("price", {"importance": 3, "ratings": {"us": 5, "Shop A": 0}}, "ratings.Shop A: must"),
        ("price", {"importance": 3, "ratings": {"us": 5}, "note": 1}, "note: unknown field"),
    ],
)
def test_bad_answers(question: str, value: Any, message: str) -> None:
    found = messages_for({**GOOD, question: value}, question)
    assert any(message in m for m in found), found


@pytest.mark.parametrize("blank", [None, "", "   ", [], {}, {"expectation": None}])
def test_blank_required_answers_are_missing(blank: Any) -> None:
    for question in ("nps", "color", "colors", "quality", "price"):
        assert messages_for({**GOOD, question: blank}, question) == ["required"]
    # Absent altogether, too.
    raw = dict(GOOD)
    del raw["csat"]
    assert messages_for(raw, "csat") == ["required"]


def test_blank_optional_answers_give_no_answer() -> None:
    for blank in (None, "", "  "):
        answers = validate_answers(FULL, {**GOOD, "comment": blank, "rating10": blank})
        assert {a.question_id for a in answers}.isdisjoint({"comment", "rating10"})


def test_every_problem_is_reported() -> None:
    raw = {
        "nps": 12,
        "csat": "x",
        "rating": 3,
        "likert": 4,
        "color": "red",
        "colors": ["pink", "pink"],
        "quality": {"expectation": 9},
        "price": {"importance": 0, "ratings": {"Shop Z": 1}},
        "extra": 1,
        "other": "y",
    }
    found = problems(raw)
    assert found == [
        {"question": "nps", "message": "must be between 0 and 10"},
        {"question": "csat", "message": "must be a number"},
        {"question": "ces", "message": "required"},
        {"question": "colors", "message": "`pink` is not an option"},
        {"question": "colors", "message": "`pink` is not an option"},
        {"question": "colors", "message": "an option is chosen twice"},
        {"question": "quality", "message": "expectation: must be between 1 and 7"},
        {"question": "quality", "message": "experience: required"},
        {"question": "price", "message": "importance: must be between 1 and 5"},
        {"question": "price", "message": "ratings.Shop Z: unknown party"},
        {"question": "price", "message": "ratings.us: required"},
        {"question": "extra", "message": "unknown question"},
        {"question": "other", "message": "unknown question"},
    ]


def test_hostile_input_is_bounded() -> None:
    raw = {**GOOD, **{f"junk{i}": 1 for i in range(500)}}
    found = problems(raw)
    assert len(found) == 101
    assert found[-1] == {"question": "*", "message": "400 more"}
    assert messages_for({**GOOD, "colors": ["red"] * 10_000}, "colors") == ["at most 2 choices"]
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    assert messages_for({**GOOD, "nps": deep}, "nps") == ["must be a number"]


def test_answer_error_is_a_value_error_with_a_readable_message() -> None:
    with pytest.raises(ValueError, match=r"nps: required; zz: unknown question"):
        validate_answers(survey(q("nps", "nps")), {"zz": 1})
    with pytest.raises(AnswerError, match="answers must be an object"):
        validate_answers(FULL, ["nps"])  # type: ignore[arg-type]


# -- NPS -----------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 10), max_size=300))
def test_nps_is_promoters_minus_detractors(scores: list[int]) -> None:
    promoters = len([s for s in scores if s in (9, 10)])
    detractors = len([s for s in scores if s in (0, 1, 2, 3, 4, 5, 6)])
    passives = len([s for s in scores if s in (7, 8)])
    b = nps_breakdown(scores)
    assert (b.promoters, b.passives, b.detractors, b.n) == (
        promoters,
        passives,
        detractors,
        len(scores),
    )
    e = nps(scores)
    assert e.n == len(scores)
    if not scores:
        assert e == Estimate(None, None, None, 0)
        return
    expected = 100 * promoters / len(scores) - 100 * detractors / len(scores)
    assert e.value == pytest.approx(expected)
    assert e.low is not None and e.high is not None
    assert -100 <= e.low <= e.value <= e.high <= 100


def test_nps_examples_and_interval_formula() -> None:
    e = nps([10, 9, 0, 5, 8])
    assert e.value == pytest.approx(0.0)
    half = 1.96 * math.sqrt((0.4 + 0.4 - 0.0) / 5) * 100
    assert (e.low, e.high) == (pytest.approx(-half), pytest.approx(half))
    # All promoters: 100 with no spread.
    assert nps([9, 10, 10]) == Estimate(100.0, 100.0, 100.0, 3)
    # 60% promoters, 10% detractors, n = 100.
    scores = [10] * 60 + [7] * 30 + [3] * 10
    e = nps(scores)
    var = (0.6 + 0.1 - 0.5**2) / 100
    assert e.value == pytest.approx(50.0)
    assert e.low == pytest.approx(50 - 196 * math.sqrt(var))
    assert e.high == pytest.approx(50 + 196 * math.sqrt(var))
    assert nps_breakdown(scores).as_dict() == {
        "promoters": 60,
        "passives": 30,
        "detractors": 10,
        "n": 100,
    }


def test_nps_interval_is_clipped() -> None:
    e = nps([10] * 9 + [0])  # 80 ± 37
    assert e.high == 100.0
    assert e.low is not None and e.low < 80


def test_nps_interval_shrinks_with_n() -> None:
    base = [10, 10, 9, 8, 7, 6, 3, 0, 10, 9]
    widths = []
    for k in (1, 4, 16, 64):
        e = nps(base * k)
        assert e.value == pytest.approx(nps(base).value)
        assert e.low is not None and e.high is not None
        widths.append(e.high - e.low)
    assert widths == sorted(widths, reverse=True)
    assert widths[-1] < widths[0] / 7


@pytest.mark.parametrize("bad", [[11], [-1], [float("nan")]])
def test_nps_refuses_out_of_range_scores(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="NPS scores"):
        nps(bad)


def test_nps_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    rng = random.Random(20240601)
    truth = 100 * (0.5 - 0.2)
    covered = 0
    runs = 400
    for _ in range(runs):
        scores = rng.choices([10, 8, 2], weights=[0.5, 0.3, 0.2], k=200)
        e = nps(scores)
        assert e.low is not None and e.high is not None
        covered += e.low <= truth <= e.high
    assert 0.91 <= covered / runs <= 0.99


# -- CSAT ----------------------------------------------------------------------------------


@given(st.lists(st.integers(1, 5), min_size=1, max_size=300))
def test_csat_is_the_share_of_4_and_5(scores: list[int]) -> None:
    satisfied = len([s for s in scores if s in (4, 5)])
    e = csat(scores)
    assert e.value == pytest.approx(100 * satisfied / len(scores))
    assert e.low is not None and e.high is not None
    assert 0 <= e.low <= e.value <= e.high <= 100
    assert e.n == len(scores)


def test_csat_wilson_interval_known_values() -> None:
    e = csat([5] * 50 + [2] * 50)
    assert e.value == pytest.approx(50.0)
    assert e.low == pytest.approx(40.383, abs=1e-3)
    assert e.high == pytest.approx(59.617, abs=1e-3)
    # All satisfied: the Wilson interval is not degenerate (unlike the Wald one).
    e = csat([4] * 10)
    assert e.value == 100.0
    assert e.high == pytest.approx(100.0)
    assert e.low == pytest.approx(72.25, abs=0.01)
    assert csat([]) == Estimate(None, None, None, 0)
    with pytest.raises(ValueError, match="CSAT scores"):
        csat([0])


def test_csat_interval_shrinks_with_n() -> None:
    widths = []
    for k in (1, 10, 100):
        e = csat([5, 4, 3, 1] * k)
        assert e.low is not None and e.high is not None
        widths.append(e.high - e.low)
    assert widths[0] > widths[1] > widths[2]


# -- CES and means ------------------------------------------------------------------------


@given(st.lists(st.integers(1, 7), min_size=2, max_size=200))
def test_ces_is_the_mean_with_a_t_interval(scores: list[int]) -> None:
    e = ces(scores)
    n = len(scores)
    mean = sum(scores) / n
    assert e.value == pytest.approx(mean)
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    if sd == 0:
        low = high = mean
    else:
        low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n))
    assert e.low == pytest.approx(max(1.0, low))
    assert e.high == pytest.approx(min(7.0, high))
    assert e.low is not None and e.high is not None
    assert 1 <= e.low <= e.value <= e.high <= 7


def test_ces_and_mean_edge_cases() -> None:
    assert ces([6]) == Estimate(6.0, None, None, 1)
    assert ces([]) == Estimate(None, None, None, 0)
    with pytest.raises(ValueError, match="CES scores"):
        ces([8])
    e = mean_score([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert e.value == 3.0
    assert (e.low, e.high) == (pytest.approx(3 - half), pytest.approx(3 + half))
    assert mean_score([-3, 1000]).n == 2  # a generic mean has no scale
    with pytest.raises(ValueError, match="finite"):
        mean_score([1, float("inf")])


def test_mean_interval_shrinks_with_n_and_covers() -> None:
    rng = random.Random(7)
    widths = []
    for n in (5, 50, 500):
        e = mean_score(rng.gauss(4, 1) for _ in range(n))
        assert e.low is not None and e.high is not None
        widths.append(e.high - e.low)
    assert widths[0] > widths[1] > widths[2]
    covered = 0
    for _ in range(400):
        e = mean_score(rng.gauss(4, 1) for _ in range(12))
        assert e.low is not None and e.high is not None
        covered += e.low <= 4 <= e.high
    assert 0.91 <= covered / 400 <= 0.99


# -- expectation vs experience -------------------------------------------------------------

LEVELS = [
    GapLevel.very_dissatisfied,
    GapLevel.dissatisfied,
    GapLevel.neutral,
    GapLevel.satisfied,
    GapLevel.very_satisfied,
]
MIRROR = dict(zip(LEVELS, reversed(LEVELS), strict=True))


def test_gap_labels_follow_seed_004() -> None:
    assert [GAP_LABELS[level]["zh"] for level in reversed(LEVELS)] == [
        "非常满意",
        "比较满意",
        "一般",
        "比较不满意",
        "非常不满意",
    ]
    assert all(set(label) == {"en", "zh"} for label in GAP_LABELS.values())


@pytest.mark.parametrize(
    ("gap", "level"),
    [
        (6, GapLevel.very_satisfied),
        (2, GapLevel.very_satisfied),
        (1.999, GapLevel.satisfied),
        (1, GapLevel.satisfied),
        (0.999, GapLevel.neutral),
        (0, GapLevel.neutral),
        (-0.999, GapLevel.neutral),
        (-1, GapLevel.dissatisfied),
        (-1.999, GapLevel.dissatisfied),
        (-2, GapLevel.very_dissatisfied),
        (-6, GapLevel.very_dissatisfied),
    ],
)
def test_gap_thresholds_on_1_to_7(gap: float, level: GapLevel) -> None:
    assert level_of_gap(gap) == level


def test_gap_level_of_every_pair_on_1_to_7() -> None:
    for expectation in range(1, 8):
        for experience in range(1, 8):
            gap = experience - expectation
            expected = (
                GapLevel.very_satisfied
                if gap >= 2
                else GapLevel.satisfied
                if gap == 1
                else GapLevel.neutral
                if gap == 0
                else GapLevel.dissatisfied
                if gap == -1
                else GapLevel.very_dissatisfied
            )
            assert gap_level(expectation, experience) == expected
            # Swapping expectation and experience mirrors the level.
            assert gap_level(experience, expectation) == MIRROR[expected]


@pytest.mark.parametrize(
    ("scale", "gap", "level"),
    [
        (5, 0.5, GapLevel.neutral),
        (5, 1, GapLevel.satisfied),  # threshold 2/3
        (5, 2, GapLevel.very_satisfied),  # threshold 4/3
        (5, -1, GapLevel.dissatisfied),
        (5, -2, GapLevel.very_dissatisfied),
        (10, 1, GapLevel.neutral),
        (10, 1.5, GapLevel.satisfied),
        (10, 3, GapLevel.very_satisfied),
        (10, -1.5, GapLevel.dissatisfied),
        (10, -3, GapLevel.very_dissatisfied),
    ],
)
def test_gap_thresholds_scale_with_the_scale(scale: int, gap: float, level: GapLevel) -> None:
    assert level_of_gap(gap, scale) == level


@given(st.integers(2, 11), st.floats(-1, 1, allow_nan=False))
def test_gap_levels_are_symmetric_and_monotone(scale: int, fraction: float) -> None:
    gap = fraction * (scale - 1)
    assert level_of_gap(-gap, scale) == MIRROR[level_of_gap(gap, scale)]
    bigger = min(gap + 0.25, scale - 1)
    assert LEVELS.index(level_of_gap(bigger, scale)) >= LEVELS.index(level_of_gap(gap, scale))


def test_gap_level_refuses_impossible_inputs() -> None:
    with pytest.raises(ValueError, match="expectation must be between 1 and 7"):
        gap_level(0, 3)
    with pytest.raises(ValueError, match="experience must be between 1 and 5"):
        gap_level(3, 6, scale=5)
    with pytest.raises(ValueError, match="within ±6"):
        level_of_gap(6.5)
    with pytest.raises(ValueError, match="at least 2"):
        level_of_gap(0, scale=1)


def pair_answer(attribute: str, expectation: int, experience: int) -> Answer:
    return Answer(
        attribute,
        "expectation_experience",
        expectation=expectation,
        experience=experience,
        attribute=attribute,
    )


def test_attribute_gaps() -> None:
    answers = [
        pair_answer("delivery", 6, 3),
        Answer("nps", "nps", value=9.0),  # ignored
        pair_answer("quality", 5, 7),
        pair_answer("delivery", 5, 4),
        pair_answer("delivery", 4, 4),
        pair_answer("quality", 5, 6),
    ]
    delivery, quality = attribute_gaps(answers)
    assert delivery.attribute == "delivery"
    assert delivery.n == 3
    assert delivery.expectation_mean == pytest.approx(5.0)
    assert delivery.experience_mean == pytest.approx(11 / 3)
    assert delivery.gap_mean == pytest.approx(-4 / 3)
    assert delivery.gap == mean_score([-3, -1, 0])
    assert delivery.level == GapLevel.dissatisfied
    assert delivery.distribution == {
        GapLevel.very_satisfied: 0,
        GapLevel.satisfied: 0,
        GapLevel.neutral: 1,
        GapLevel.dissatisfied: 1,
        GapLevel.very_dissatisfied: 1,
    }
    assert quality.gap_mean == pytest.approx(1.5)
    assert quality.level == GapLevel.satisfied
    assert quality.distribution[GapLevel.very_satisfied] == 1
    assert quality.distribution[GapLevel.satisfied] == 1
    as_json = json.loads(json.dumps(quality.as_dict()))
    assert as_json["level"] == "satisfied"
    assert as_json["distribution"]["very_satisfied"] == 1
    assert attribute_gaps([]) == []


# -- importance–performance ----------------------------------------------------------------


def test_ipa_quadrants_around_the_means() -> None:
    points = [
        ("price", 9.0, 3.0),  # important, weak
        ("quality", 8.0, 8.0),  # important, strong
        ("packaging", 2.0, 2.0),  # unimportant, weak
        ("gift_wrap", 1.0, 9.0),  # unimportant, strong
    ]
    assert ipa_crosshairs(points) == (5.0, 5.5)
    result = {p.attribute: p.quadrant for p in importance_performance(points)}
    assert result == {
        "price": Quadrant.concentrate_here,
        "quality": Quadrant.keep_up,
        "packaging": Quadrant.low_priority,
        "gift_wrap": Quadrant.possible_overkill,
    }


def test_ipa_ties_at_the_mean_count_as_high() -> None:
    [only] = importance_performance([("x", 3.0, 3.0)])
    assert only.quadrant == Quadrant.keep_up
    points = importance_performance([("a", 4.0, 2.0), ("b", 4.0, 4.0)])
    assert [p.quadrant for p in points] == [Quadrant.concentrate_here, Quadrant.keep_up]


def test_ipa_edge_cases() -> None:
    assert importance_performance([]) == []
    assert ipa_crosshairs([]) is None
    with pytest.raises(ValueError, match="given twice"):
        importance_performance([("a", 1.0, 1.0), ("a", 2.0, 2.0)])
    with pytest.raises(ValueError, match="finite"):
        importance_performance([("a", float("nan"), 1.0)])
    assert importance_performance([("a", 1.0, 2.0)])[0].as_dict() == {
        "attribute": "a",
        "importance": 1.0,
        "performance": 2.0,
        "quadrant": "keep_up",
    }


def test_ipa_from_gaps_uses_expectation_as_importance() -> None:
    answers = [
        pair_answer("delivery", 7, 3),  # expected a lot, got little
        pair_answer("quality", 6, 6),
        pair_answer("packaging", 2, 6),  # expected little, got a lot
        pair_answer("forum", 2, 2),
    ]
    points = {p.attribute: p for p in ipa_from_gaps(attribute_gaps(answers))}
    assert points["delivery"].importance == 7.0
    assert points["delivery"].performance == 3.0
    assert points["delivery"].quadrant == Quadrant.concentrate_here
    assert points["quality"].quadrant == Quadrant.keep_up
    assert points["packaging"].quadrant == Quadrant.possible_overkill
    assert points["forum"].quadrant == Quadrant.low_priority


# -- customer value analysis ---------------------------------------------------------------


def compare(attribute: str, importance: int, cost: bool = False, **ratings: int | None) -> Answer:
    given_ratings = {
        ("us" if k == "us" else f"Shop {k}"): v for k, v in ratings.items() if v is not None
    }
    return Answer(
        attribute,
        "comparison",
        ratings=given_ratings,
        importance=importance,
        attribute=attribute,
        cost=cost,
    )


def column(attribute: str, importance: int, cost: bool, **columns: list[int]) -> list[Answer]:
    n = len(columns["us"])
    return [
        compare(attribute, importance, cost, **{k: v[i] for k, v in columns.items()})
        for i in range(n)
    ]


# Five customers rate us, Shop A and Shop B on three attributes.
EXAMPLE = [
    # quality (benefit): far better than A, the same as B on average.
    *column("quality", 5, False, us=[8, 9, 8, 9, 8], A=[5, 6, 5, 6, 5], B=[7, 10, 8, 8, 9]),
    # service (benefit): like A, clearly worse than B.
    *column("service", 3, False, us=[5, 5, 6, 5, 5], A=[5, 6, 5, 5, 5], B=[8, 9, 8, 8, 9]),
    # price (cost, 10 = very expensive): A costs more, B about the same.
    *column("price", 4, True, us=[4, 5, 4, 5, 4], A=[7, 8, 7, 8, 7], B=[5, 4, 4, 5, 4]),
    Answer("nps", "nps", value=10.0),  # ignored
]


def test_value_analysis_on_a_constructed_example() -> None:
    result = value_analysis(EXAMPLE)
    assert result.n == 15
    assert result.competitors == ["Shop A", "Shop B"]
    attrs = {a.attribute: a for a in result.attributes}
    # Steps 1–2: importance and weights, normalised per kind.
    assert attrs["quality"].weight == pytest.approx(5 / 8)
    assert attrs["service"].weight == pytest.approx(3 / 8)
    assert attrs["price"].weight == pytest.approx(1.0)
    assert attrs["quality"].importance == 5.0
    assert attrs["price"].cost is True
    assert attrs["quality"].ratings == {
        "us": pytest.approx(8.4),
        "Shop A": pytest.approx(5.4),
        "Shop B": pytest.approx(8.4),
    }
    # Step 4: attribute by attribute against each competitor.
    verdicts = {
        (a.attribute, c.competitor): c.verdict for a in result.attributes for c in a.comparisons
    }
    assert verdicts == {
        ("quality", "Shop A"): Verdict.ahead,
        ("quality", "Shop B"): Verdict.even,
        ("service", "Shop A"): Verdict.even,
        ("service", "Shop B"): Verdict.behind,
        ("price", "Shop A"): Verdict.ahead,  # we cost less
        ("price", "Shop B"): Verdict.even,
    }
    quality_a = attrs["quality"].comparisons[0].difference
    assert quality_a == mean_score([3, 3, 3, 3, 3])
    assert attrs["price"].comparisons[0].difference.value == pytest.approx(-3.0)
    # Step 3: weighted benefit and cost, CPV = benefit − cost, ranked.
    parties = {p.party: p for p in result.parties}
    assert [p.party for p in result.parties] == ["us", "Shop A", "Shop B"]
    assert parties["us"].benefit == pytest.approx(5 / 8 * 8.4 + 3 / 8 * 5.2)
    assert parties["us"].cost == pytest.approx(4.4)
    assert parties["us"].value == pytest.approx(7.2 - 4.4)
    assert parties["Shop A"].value == pytest.approx(5 / 8 * 5.4 + 3 / 8 * 5.2 - 7.4)
    assert parties["Shop B"].value == pytest.approx(8.4 - 4.4)
    assert result.ranking == ["Shop B", "us", "Shop A"]
    assert [parties[p].rank for p in ("Shop B", "us", "Shop A")] == [1, 2, 3]
    # JSON-ready.
    data = json.loads(json.dumps(result.as_dict()))
    assert data["ranking"] == ["Shop B", "us", "Shop A"]
    assert data["attributes"][1]["comparisons"][1]["verdict"] == "behind"


def test_value_analysis_weights_sum_to_one_per_kind() -> None:
    rng = random.Random(3)
    answers = []
    for attribute, cost in (("a", False), ("b", False), ("c", False), ("d", True), ("e", True)):
        for _ in range(8):
            answers.append(
                compare(
                    attribute,
                    rng.randint(1, 5),
                    cost,
                    us=rng.randint(1, 10),
                    A=rng.randint(1, 10),
                )
            )
    result = value_analysis(answers)
    for kind in (False, True):
        assert math.fsum(a.weight for a in result.attributes if a.cost is kind) == pytest.approx(1)


def test_value_analysis_with_unknown_competitors_and_ties() -> None:
    answers = [
        compare("quality", 4, us=8, A=6),
        compare("quality", 2, us=6, A=8, B=None),  # B unknown to everyone
        compare("range", 5, us=5),  # A not rated here
        compare("range", 5, us=7, A=7),
    ]
    result = value_analysis(answers)
    assert result.competitors == ["Shop A"]
    range_ = result.attributes[1]
    assert range_.ratings == {"us": 6.0, "Shop A": 7.0}
    assert range_.comparisons[0].difference.n == 1  # the one paired rating
    assert range_.comparisons[0].verdict == Verdict.even  # too little data
    parties = {p.party: p for p in result.parties}
    assert parties["us"].cost == 0.0  # no cost attribute asked
    assert parties["us"].value == pytest.approx((3 * 7 + 5 * 6) / 8)
    assert parties["Shop A"].value == pytest.approx((3 * 7 + 5 * 7) / 8)
    # A competitor nobody rated on some attribute gets no score and no rank.
    partial = value_analysis([compare("quality", 3, us=5, A=5), compare("range", 3, us=5)])
    a = {p.party: p for p in partial.parties}["Shop A"]
    assert (a.benefit, a.value, a.rank) == (None, None, None)
    assert partial.ranking == ["us"]
    # Equal values share a rank.
    tied = value_analysis([compare("quality", 3, us=5, A=5, B=7)])
    assert tied.ranking == ["Shop B", "us", "Shop A"]
    assert [p.rank for p in tied.parties] == [2, 2, 1]


def test_value_analysis_edge_cases() -> None:
    empty = value_analysis([])
    assert (empty.attributes, empty.parties, empty.ranking, empty.n) == ([], [], [], 0)
    with pytest.raises(ValueError, match="both a cost and a benefit"):
        value_analysis([compare("price", 3, False, us=5), compare("price", 3, True, us=5)])


def test_value_analysis_from_validated_answers() -> None:
    definition = survey(comparison("quality"), comparison("price", cost=True))
    responses = [
        {
            "quality": {"importance": "5", "ratings": {"us": "9", "Shop A": "4"}},
            "price": {"importance": 3, "ratings": {"us": 3, "Shop A": 6, "Shop B": 2}},
        },
        {
            "quality": {"importance": 4, "ratings": {"us": 8, "Shop A": 5, "Shop B": 8}},
            "price": {"importance": 5, "ratings": {"us": 4, "Shop A": 8, "Shop B": 3}},
        },
        {
            "quality": {"importance": 5, "ratings": {"us": 9, "Shop A": 3, "Shop B": 9}},
            "price": {"importance": 4, "ratings": {"us": 2, "Shop A": 7, "Shop B": 3}},
        },
    ]
    answers = [a for raw in responses for a in validate_answers(definition, raw)]
    result = value_analysis(answers)
    assert result.competitors == ["Shop A", "Shop B"]
    quality, price = result.attributes
    assert quality.comparisons[0].verdict == Verdict.ahead
    assert price.cost is True
    assert price.comparisons[0].verdict == Verdict.ahead
    assert result.ranking[-1] == "Shop A"
