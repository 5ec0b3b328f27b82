"""The rules of listening to customers, as plain Python (no database).

- **Survey definitions** (``SurveyDefinition``): strict pydantic models, every text in
  English and/or Chinese (``LocalText``); ten question types, told apart by ``type``.
- **Answers** (``validate_answers``): a submitted form checked against its definition;
  every problem is reported at once (``AnswerError.problems``).
- **Scores** with 95% confidence intervals (``Estimate``): NPS (净推荐值, seed 003), CSAT
  (Wilson interval), CES and any mean (Student's t interval).
- **Expectation vs experience** (CRM triangle law, seed 004): satisfaction = experience −
  expectation, in five levels (``GapLevel``), per attribute (``attribute_gaps``).
- **Importance–performance analysis** (``importance_performance``, ``ipa_from_gaps``).
- **Customer value analysis** against competitors (seed 003, ``value_analysis``): customer
  perceived value (CPV) = total customer benefit − total customer cost.

Scales used by the answers:

=========================  ==============================================================
``nps``                     0–10, "how likely to recommend"; promoters 9–10, detractors 0–6
``csat``                    1–5, "how satisfied"; satisfied = 4 or 5
``ces``                     1–7, "how easy" (higher = easier)
``rating``                  ``min``–``max`` of the question (default 1–5)
``likert``                  1–``points`` (5 or 7)
``expectation_experience``  1–7 for the expectation and for the experience
``comparison``              importance 1–5; each party rated 1–10. On a *cost* attribute
                            (price, time/effort, risk) the rating is the burden:
                            1 = very low cost, 10 = very high cost.
=========================  ==============================================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)
from scipy import stats  # type: ignore[import-untyped]

from patron.kit.text import check_json_value

# -- scales --------------------------------------------------------------------------------

NPS_SCALE = (0, 10)
CSAT_SCALE = (1, 5)
CES_SCALE = (1, 7)
PAIR_SCALE = (1, 7)  # expectation and experience
IMPORTANCE_SCALE = (1, 5)  # comparison: how much an attribute matters
COMPARISON_SCALE = (1, 10)  # comparison: the rating of us and of each competitor
US = "us"  # the store itself, among the parties of a comparison
Z95 = 1.96  # the normal quantile of a two-sided 95% interval

MAX_PROBLEMS = 100  # problems reported for one response; the rest are counted

LANGUAGES = ("en", "zh")
MAX_LOCAL_TEXT = 2000

QuestionType = Literal[
    "nps",
    "csat",
    "ces",
    "rating",
    "likert",
    "single_choice",
    "multiple_choice",
    "text",
    "expectation_experience",
    "comparison",
]
QUESTION_TYPES: tuple[str, ...] = get_args(QuestionType)


# -- survey definitions --------------------------------------------------------------------


def _check_local_text(value: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(value) - set(LANGUAGES))
    if unknown:
        raise ValueError(f"unknown language {', '.join(unknown)}: use `en`, `zh` or both")
    out: dict[str, str] = {}
    for lang in LANGUAGES:
        if lang not in value:
            continue
        text = check_json_value(value[lang].strip())
        if not text:
            raise ValueError(f"{lang}: must not be empty")
        if len(text) > MAX_LOCAL_TEXT:
            raise ValueError(f"{lang}: at most {MAX_LOCAL_TEXT} characters")
        out[lang] = text
    if not out:
        raise ValueError("give `en`, `zh` or both")
    return out


# A text in English and/or Chinese: ``{"en": "...", "zh": "..."}`` (at least one).
LocalText = Annotated[dict[str, str], AfterValidator(_check_local_text)]
# Ids of questions, options and attributes: they are keys in stored answers and reports.
QuestionId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
AttributeId = QuestionId
OptionId = QuestionId
CompetitorName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(check_json_value),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Question(_Strict):
    id: QuestionId
    text: LocalText
    required: StrictBool = True


class NpsQuestion(_Question):
    """ "How likely are you to recommend us to a friend?" 0–10."""

    type: Literal["nps"] = "nps"


class CsatQuestion(_Question):
    """ "How satisfied are you with …?" 1–5."""

    type: Literal["csat"] = "csat"


class CesQuestion(_Question):
    """Customer effort: "How easy was it to …?" 1–7, higher = easier."""

    type: Literal["ces"] = "ces"


class RatingQuestion(_Question):
    """A rating on the scale ``min``–``max`` (whole numbers), with optional end labels."""

    type: Literal["rating"] = "rating"
    min: StrictInt = Field(1, ge=0, le=100)
    max: StrictInt = Field(5, ge=1, le=100)
    min_label: LocalText | None = None
    max_label: LocalText | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RatingQuestion:
        if self.max <= self.min:
            raise ValueError(f"max: {self.max} must be above min {self.min}")
        return self


class LikertQuestion(_Question):
    """Agreement on 5 or 7 points (1 = strongly disagree); ``labels`` name each point."""

    type: Literal["likert"] = "likert"
    points: Literal[5, 7] = 5
    labels: list[LocalText] | None = None

    @model_validator(mode="after")
    def _labels(self) -> LikertQuestion:
        if self.labels is not None and len(self.labels) != self.points:
            raise ValueError(f"labels: give one per point ({self.points}), not {len(self.labels)}")
        return self


class Option(_Strict):
    id: OptionId
    text: LocalText


def _unique_options(options: list[Option]) -> list[Option]:
    seen: set[str] = set()
    for option in options:
        if option.id in seen:
            raise ValueError(f"duplicate option id `{option.id}`")
        seen.add(option.id)
    return options


class SingleChoiceQuestion(_Question):
    """One option; the answer is its id."""

    type: Literal["single_choice"] = "single_choice"
    options: list[Option] = Field(min_length=2, max_length=50)

    _unique = field_validator("options")(_unique_options)


class MultipleChoiceQuestion(_Question):
    """Any number of options (at most ``max_choices``); the answer is a list of ids."""

    type: Literal["multiple_choice"] = "multiple_choice"
    options: list[Option] = Field(min_length=2, max_length=50)
    max_choices: StrictInt | None = Field(None, ge=1)

    _unique = field_validator("options")(_unique_options)

    @model_validator(mode="after")
    def _max(self) -> MultipleChoiceQuestion:
        if self.max_choices is not None and self.max_choices > len(self.options):
            raise ValueError(
                f"max_choices: {self.max_choices} is more than the {len(self.options)} options"
            )
        return self


class TextQuestion(_Question):
    """Free text, at most ``max_length`` characters."""

    type: Literal["text"] = "text"
    max_length: StrictInt = Field(2000, ge=1, le=10_000)


class ExpectationExperienceQuestion(_Question):
    """What the customer expected of ``attribute`` and what they got, each 1–7 (seed 004:
    satisfaction = experience − expectation). The answer is a pair."""

    type: Literal["expectation_experience"] = "expectation_experience"
    attribute: AttributeId
    attribute_label: LocalText


class ComparisonQuestion(_Question):
    """Customer value analysis (seed 003): how important ``attribute`` is (1–5) and a
    rating 1–10 of us and of each competitor. A ``cost`` attribute (price, time and
    effort, risk or psychological cost) is rated as a burden: 10 = very costly."""

    type: Literal["comparison"] = "comparison"
    attribute: AttributeId
    attribute_label: LocalText
    cost: StrictBool = False
    competitors: list[CompetitorName] = Field(min_length=1, max_length=10)

    @field_validator("competitors")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in value:
            if name.casefold() == US:
                raise ValueError(f"`{name}` is reserved for the store itself")
            if name.casefold() in seen:
                raise ValueError(f"duplicate competitor `{name}`")
            seen.add(name.casefold())
        return value


Question = Annotated[
    NpsQuestion
    | CsatQuestion
    | CesQuestion
    | RatingQuestion
    | LikertQuestion
    | SingleChoiceQuestion
    | MultipleChoiceQuestion
    | TextQuestion
    | ExpectationExperienceQuestion
    | ComparisonQuestion,
    Field(discriminator="type"),
]


class SurveyDefinition(_Strict):
    """A survey: its title, optional intro and thanks, and 1–100 questions."""

    title: LocalText
    intro: LocalText | None = None
    thanks: LocalText | None = None
    questions: list[Question] = Field(min_length=1, max_length=100)

    @field_validator("questions")
    @classmethod
    def _unique(cls, questions: list[Question]) -> list[Question]:
        ids: set[str] = set()
        attributes: dict[str, set[str]] = {"expectation_experience": set(), "comparison": set()}
        for q in questions:
            if q.id in ids:
                raise ValueError(f"duplicate question id `{q.id}`")
            ids.add(q.id)
            if isinstance(q, ExpectationExperienceQuestion | ComparisonQuestion):
                seen = attributes[q.type]
                if q.attribute in seen:
                    raise ValueError(
                        f"{q.id}: attribute `{q.attribute}` is already asked by another "
                        f"{q.type} question"
                    )
                seen.add(q.attribute)
        return questions

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.questions if q.id == question_id), None)


# -- answers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One validated answer. Which fields are set depends on ``type``:

    - nps, csat, ces, rating, likert: ``value``
    - single_choice, multiple_choice: ``choices`` (option ids)
    - text: ``text``
    - expectation_experience: ``expectation``, ``experience``, ``attribute``
    - comparison: ``importance``, ``ratings`` (``"us"`` and the competitors rated; a
      competitor the customer does not know is left out), ``attribute`` and ``cost``
    """

    question_id: str
    type: str
    value: float | None = None
    expectation: int | None = None
    experience: int | None = None
    choices: tuple[str, ...] = ()
    text: str | None = None
    ratings: dict[str, int] = field(default_factory=dict)
    importance: int | None = None
    attribute: str | None = None
    cost: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "question_id": self.question_id,
            "type": self.type,
            "value": self.value,
            "expectation": self.expectation,
            "experience": self.experience,
            "choices": list(self.choices),
            "text": self.text,
            "ratings": dict(self.ratings),
            "importance": self.importance,
            "attribute": self.attribute,
            "cost": self.cost,
        }


class AnswerError(ValueError):
    """Answers refused; ``problems`` lists every one: ``{"question": id, "message": …}``."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p['question']}: {p['message']}" for p in problems))


class _Bad(Exception):
    def __init__(self, *messages: str) -> None:
        self.messages = list(messages)


_NUMBER = re.compile(r"^[+-]?[0-9]+(?:\.[0-9]+)?$")


def _whole(value: Any, low: int, high: int) -> int:
    """A whole number in low..high; numeric strings from HTML forms are accepted."""
    if isinstance(value, bool):
        raise _Bad("must be a number")
    number: float | int
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad("must be a number")
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if not _NUMBER.match(text) or len(text) > 32:
            raise _Bad("must be a number")
        number = float(text) if "." in text else int(text)
    else:
        raise _Bad("must be a number")
    if isinstance(number, float):
        if not number.is_integer():
            raise _Bad("must be a whole number")
        number = int(number)
    if not low <= number <= high:
        raise _Bad(f"must be between {low} and {high}")
    return number


def _blank(value: Any, depth: int = 0) -> bool:
    """Unanswered: null, blank text, or a list/object of unanswered parts (2 levels deep,
    as in ``{"importance": null, "ratings": {}}``)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | Mapping):
        if depth >= 2:
            return not value
        items = value.values() if isinstance(value, Mapping) else value
        return all(_blank(v, depth + 1) for v in items)
    return False


def _scale_of(q: Question) -> tuple[int, int]:
    if isinstance(q, NpsQuestion):
        return NPS_SCALE
    if isinstance(q, CsatQuestion):
        return CSAT_SCALE
    if isinstance(q, CesQuestion):
        return CES_SCALE
    if isinstance(q, RatingQuestion):
        return (q.min, q.max)
    if isinstance(q, LikertQuestion):
        return (1, q.points)
    raise TypeError(q.type)  # pragma: no cover


def _sub(value: Any, key: str, messages: list[str], low: int, high: int) -> int | None:
    """Read ``value[key]`` as a whole number, noting a problem (prefixed by the key)."""
    if _blank(value.get(key)):
        messages.append(f"{key}: required")
        return None
    try:
        return _whole(value[key], low, high)
    except _Bad as bad:
        messages.extend(f"{key}: {m}" for m in bad.messages)
        return None


def _parse(q: Question, raw: Any) -> Answer:
    if isinstance(q, NpsQuestion | CsatQuestion | CesQuestion | RatingQuestion | LikertQuestion):
        low, high = _scale_of(q)
        return Answer(q.id, q.type, value=float(_whole(raw, low, high)))
    if isinstance(q, SingleChoiceQuestion):
        if not isinstance(raw, str):
            raise _Bad("must be an option id")
        choice = raw.strip()
        if choice not in {o.id for o in q.options}:
            raise _Bad(f"`{choice[:64]}` is not an option")
        return Answer(q.id, q.type, choices=(choice,))
    if isinstance(q, MultipleChoiceQuestion):
        items = [raw] if isinstance(raw, str) else raw  # one ticked box of an HTML form
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise _Bad("must be a list of option ids")
        if len(items) > len(q.options):
            raise _Bad(f"at most {q.max_choices or len(q.options)} choices")
        known = {o.id for o in q.options}
        chosen = [i.strip() for i in items if i.strip()]
        messages = [f"`{c[:64]}` is not an option" for c in chosen if c not in known]
        if len(set(chosen)) != len(chosen):
            messages.append("an option is chosen twice")
        if q.max_choices is not None and len(chosen) > q.max_choices:
            messages.append(f"at most {q.max_choices} choices")
        if messages:
            raise _Bad(*messages)
        order = {o.id: i for i, o in enumerate(q.options)}
        return Answer(q.id, q.type, choices=tuple(sorted(chosen, key=order.__getitem__)))
    if isinstance(q, TextQuestion):
        if not isinstance(raw, str):
            raise _Bad("must be text")
        text = raw.strip()
        try:
            check_json_value(text)
        except ValueError as exc:
            raise _Bad(str(exc)) from exc
        if len(text) > q.max_length:
            raise _Bad(f"at most {q.max_length} characters")
        return Answer(q.id, q.type, text=text)
    if isinstance(q, ExpectationExperienceQuestion):
        if not isinstance(raw, Mapping):
            raise _Bad("must be {expectation, experience}")
        messages = [f"{k}: unknown field" for k in raw if k not in ("expectation", "experience")]
        expectation = _sub(raw, "expectation", messages, *PAIR_SCALE)
        experience = _sub(raw, "experience", messages, *PAIR_SCALE)
        if messages:
            raise _Bad(*messages)
        return Answer(
            q.id, q.type, expectation=expectation, experience=experience, attribute=q.attribute
        )
    if isinstance(q, ComparisonQuestion):
        if not isinstance(raw, Mapping):
            raise _Bad("must be {importance, ratings}")
        messages = [f"{k}: unknown field" for k in raw if k not in ("importance", "ratings")]
        importance = _sub(raw, "importance", messages, *IMPORTANCE_SCALE)
        ratings: dict[str, int] = {}
        given = raw.get("ratings")
        if _blank(given):
            messages.append(f"ratings: rate {US}")
        elif not isinstance(given, Mapping):
            messages.append("ratings: must be {party: rating}")
        else:
            parties = [US, *q.competitors]
            messages.extend(f"ratings.{k}: unknown party" for k in given if k not in parties)
            if _blank(given.get(US)):
                messages.append(f"ratings.{US}: required")
            for party in parties:
                if _blank(given.get(party)):
                    continue  # a competitor the customer does not know
                try:
                    ratings[party] = _whole(given[party], *COMPARISON_SCALE)
                except _Bad as bad:
                    messages.extend(f"ratings.{party}: {m}" for m in bad.messages)
        if messages:
            raise _Bad(*messages)
        return Answer(
            q.id,
            q.type,
            ratings=ratings,
            importance=importance,
            attribute=q.attribute,
            cost=q.cost,
        )
    raise TypeError(q.type)  # pragma: no cover


def validate_answers(definition: SurveyDefinition, raw: Mapping[str, Any]) -> list[Answer]:
    """The answers of one response, in the order of the questions.

    ``raw`` maps question ids to answers: a number for nps/csat/ces/rating/likert, an
    option id for single_choice, a list of ids for multiple_choice, a string for text,
    ``{"expectation": n, "experience": n}`` for a pair, ``{"importance": n, "ratings":
    {"us": n, "<competitor>": n}}`` for a comparison. Numeric strings ("7") are accepted.
    An unanswered optional question (absent, null, blank) gives no answer. Any missing
    required answer, unknown question id, wrong type or out-of-range value raises
    ``AnswerError`` with all the problems.
    """
    if not isinstance(raw, Mapping):
        raise AnswerError([{"question": "*", "message": "answers must be an object"}])
    problems: list[dict[str, str]] = []
    answers: list[Answer] = []
    for q in definition.questions:
        value = raw.get(q.id)
        if _blank(value):
            if q.required:
                problems.append({"question": q.id, "message": "required"})
            continue
        try:
            answers.append(_parse(q, value))
        except _Bad as bad:
            problems.extend({"question": q.id, "message": m} for m in bad.messages)
    known = {q.id for q in definition.questions}
    problems.extend(
        {"question": str(k)[:64], "message": "unknown question"} for k in raw if k not in known
    )
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS
        problems = [*problems[:MAX_PROBLEMS], {"question": "*", "message": f"{more} more"}]
    if problems:
        raise AnswerError(problems)
    return answers


# -- scores --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A score and its 95% confidence interval over ``n`` answers (``None`` when there
    is nothing to estimate: no answers, or one answer for a t-interval)."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


EMPTY = Estimate(None, None, None, 0)


def _checked(values: Iterable[float], low: float, high: float, name: str) -> list[float]:
    out: list[float] = []
    for v in values:
        f = float(v)
        if not math.isfinite(f) or not low <= f <= high:
            raise ValueError(f"{name} scores are {low:g}–{high:g}, not {v!r}")
        out.append(f)
    return out


@dataclass(frozen=True)
class NpsBreakdown:
    promoters: int  # 9–10
    passives: int  # 7–8
    detractors: int  # 0–6
    n: int

    def as_dict(self) -> dict[str, int]:
        return {
            "promoters": self.promoters,
            "passives": self.passives,
            "detractors": self.detractors,
            "n": self.n,
        }


def nps_breakdown(scores: Iterable[float]) -> NpsBreakdown:
    """Promoters (9–10), passives (7–8) and detractors (0–6) among 0–10 scores."""
    values = _checked(scores, *NPS_SCALE, "NPS")
    promoters = sum(1 for v in values if v >= 9)
    detractors = sum(1 for v in values if v <= 6)
    return NpsBreakdown(promoters, len(values) - promoters - detractors, detractors, len(values))


def nps(scores: Iterable[float]) -> Estimate:
    """Net promoter score: % promoters − % detractors, in −100..100.

    The interval is the normal one for a difference of two multinomial shares:
    var = (p_P + p_D − (p_P − p_D)²) / n, value ± 1.96·√var (×100), clipped to
    [−100, 100]. A sample where everyone answers alike has a zero-width interval.
    """
    return nps_estimate(nps_breakdown(scores))


def nps_estimate(b: NpsBreakdown) -> Estimate:
    """The NPS of a breakdown and its 95% interval (see ``nps``)."""
    if b.n == 0:
        return EMPTY
    p_p, p_d = b.promoters / b.n, b.detractors / b.n
    var = max(0.0, (p_p + p_d - (p_p - p_d) ** 2) / b.n)
    value = 100 * (p_p - p_d)
    half = 100 * Z95 * math.sqrt(var)
    return Estimate(value, max(-100.0, value - half), min(100.0, value + half), b.n)


def csat(scores: Iterable[float]) -> Estimate:
    """Customer satisfaction: % of 1–5 answers that are 4 or 5, with a Wilson interval."""
    values = _checked(scores, *CSAT_SCALE, "CSAT")
    return csat_estimate(sum(1 for v in values if v >= 4), len(values))


def csat_estimate(satisfied: int, n: int) -> Estimate:
    """CSAT from counts: ``satisfied`` answers of 4–5 among ``n``, Wilson interval."""
    if n == 0:
        return EMPTY
    p = satisfied / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    value = 100 * p
    # At p = 0 or 1 one bound is exactly 0 or 100; keep rounding from leaving the value out.
    low = min(value, max(0.0, 100 * (centre - half)))
    high = max(value, min(100.0, 100 * (centre + half)))
    return Estimate(value, low, high, n)


def mean_score(values: Iterable[float]) -> Estimate:
    """The mean and its Student's t 95% interval; one value has no interval."""
    xs = [float(v) for v in values]
    if any(not math.isfinite(x) for x in xs):
        raise ValueError("scores must be finite numbers")
    n = len(xs)
    if n == 0:
        return EMPTY
    mean = math.fsum(xs) / n
    if n == 1:
        return Estimate(mean, None, None, 1)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    return t_estimate(mean, sd, n)


def t_estimate(mean: float, sd: float, n: int) -> Estimate:
    """The mean of ``n`` (at least 2) values whose sample standard deviation is ``sd``,
    with its Student's t 95% interval."""
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def clipped(e: Estimate, scale: tuple[int, int]) -> Estimate:
    """``e`` with its interval clipped to the scale of the answers."""
    if e.low is None or e.high is None:
        return e
    low, high = scale
    return Estimate(e.value, max(float(low), e.low), min(float(high), e.high), e.n)


def ces(scores: Iterable[float]) -> Estimate:
    """Customer effort score: the mean of 1–7 answers (higher = easier), t-interval
    (clipped to the scale)."""
    return clipped(mean_score(_checked(scores, *CES_SCALE, "CES")), CES_SCALE)


# -- expectation vs experience (CRM triangle law, seed 004) --------------------------------


class GapLevel(StrEnum):
    """Satisfaction = experience − expectation, in five levels."""

    very_satisfied = "very_satisfied"
    satisfied = "satisfied"
    neutral = "neutral"
    dissatisfied = "dissatisfied"
    very_dissatisfied = "very_dissatisfied"


GAP_LABELS: dict[GapLevel, dict[str, str]] = {
    GapLevel.very_satisfied: {"en": "Very satisfied", "zh": "非常满意"},
    GapLevel.satisfied: {"en": "Satisfied", "zh": "比较满意"},
    GapLevel.neutral: {"en": "Neutral", "zh": "一般"},
    GapLevel.dissatisfied: {"en": "Dissatisfied", "zh": "比较不满意"},
    GapLevel.very_dissatisfied: {"en": "Very dissatisfied", "zh": "非常不满意"},
}


def level_of_gap(gap: float, scale: int = PAIR_SCALE[1]) -> GapLevel:
    """The level of a signed gap (experience − expectation) on a 1–``scale`` scale.

    The thresholds are 1/6 and 2/6 of the span (scale − 1), symmetric around 0. On the
    1–7 scale (span 6) that is whole points:

    - gap ≥ +2 very satisfied
    - +1 ≤ gap < +2 satisfied
    - −1 < gap < +1 neutral
    - −2 < gap ≤ −1 dissatisfied
    - gap ≤ −2 very dissatisfied

    On 1–5 the thresholds are ±2/3 and ±4/3, on 1–10 ±1.5 and ±3. A mean gap (a
    fraction) falls in the level whose band holds it.
    """
    if scale < 2:
        raise ValueError(f"scale must be at least 2, not {scale}")
    span = scale - 1
    if not math.isfinite(gap) or abs(gap) > span:
        raise ValueError(f"a gap on a 1–{scale} scale is within ±{span}, not {gap!r}")
    g = 6 * gap  # compared with multiples of the span: exact for whole gaps
    if g >= 2 * span:
        return GapLevel.very_satisfied
    if g >= span:
        return GapLevel.satisfied
    if g > -span:
        return GapLevel.neutral
    if g > -2 * span:
        return GapLevel.dissatisfied
    return GapLevel.very_dissatisfied


def gap_level(expectation: int, experience: int, scale: int = PAIR_SCALE[1]) -> GapLevel:
    """The level of one answer: experience − expectation, both on 1–``scale``."""
    for name, v in (("expectation", expectation), ("experience", experience)):
        if not 1 <= v <= scale:
            raise ValueError(f"{name} must be between 1 and {scale}, not {v!r}")
    return level_of_gap(experience - expectation, scale)


@dataclass(frozen=True)
class AttributeGap:
    """Expectation vs experience of one attribute over ``n`` answers."""

    attribute: str
    n: int
    expectation_mean: float
    experience_mean: float
    gap_mean: float
    gap: Estimate  # the mean gap with its t-interval
    level: GapLevel  # the level of the mean gap
    distribution: dict[GapLevel, int]  # answers per level, every level present

    def as_dict(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "n": self.n,
            "expectation_mean": self.expectation_mean,
            "experience_mean": self.experience_mean,
            "gap_mean": self.gap_mean,
            "gap": self.gap.as_dict(),
            "level": self.level.value,
            "distribution": {k.value: v for k, v in self.distribution.items()},
        }


def attribute_gaps(answers: Iterable[Answer], scale: int = PAIR_SCALE[1]) -> list[AttributeGap]:
    """Per attribute (in order of first appearance), the gaps of the expectation/experience
    answers among ``answers``; other answers are ignored."""
    pairs: dict[str, list[tuple[int, int]]] = {}
    for a in answers:
        if a.type != "expectation_experience" or a.expectation is None or a.experience is None:
            continue
        pairs.setdefault(a.attribute or a.question_id, []).append((a.expectation, a.experience))
    out: list[AttributeGap] = []
    for attribute, items in pairs.items():
        n = len(items)
        distribution = dict.fromkeys(GapLevel, 0)
        for expectation, experience in items:
            distribution[gap_level(expectation, experience, scale)] += 1
        estimate = mean_score(e2 - e1 for e1, e2 in items)
        assert estimate.value is not None
        out.append(
            AttributeGap(
                attribute=attribute,
                n=n,
                expectation_mean=math.fsum(e for e, _ in items) / n,
                experience_mean=math.fsum(x for _, x in items) / n,
                gap_mean=estimate.value,
                gap=estimate,
                level=level_of_gap(estimate.value, scale),
                distribution=distribution,
            )
        )
    return out


# -- importance–performance analysis -------------------------------------------------------


class Quadrant(StrEnum):
    concentrate_here = "concentrate_here"  # important, performing below the others
    keep_up = "keep_up"  # important, performing well
    low_priority = "low_priority"  # less important, performing below the others
    possible_overkill = "possible_overkill"  # less important, performing well


@dataclass(frozen=True)
class IpaPoint:
    attribute: str
    importance: float
    performance: float
    quadrant: Quadrant

    def as_dict(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "importance": self.importance,
            "performance": self.performance,
            "quadrant": self.quadrant.value,
        }


def ipa_crosshairs(points: Sequence[tuple[str, float, float]]) -> tuple[float, float] | None:
    """Where the quadrants meet: the mean importance and the mean performance."""
    if not points:
        return None
    n = len(points)
    return math.fsum(p[1] for p in points) / n, math.fsum(p[2] for p in points) / n


def importance_performance(points: Sequence[tuple[str, float, float]]) -> list[IpaPoint]:
    """Place each ``(attribute, importance, performance)`` in a quadrant.

    The cross-hairs are the means of the given points' importance and performance (a
    data-centred grid: each attribute is judged against the others, whatever the
    scale). A value equal to its mean counts as high. So: important and below the mean
    performance → concentrate here; important and at or above it → keep up the good
    work; less important and below → low priority; less important and above → possible
    overkill.
    """
    seen: set[str] = set()
    for attribute, importance, performance in points:
        if attribute in seen:
            raise ValueError(f"attribute `{attribute}` is given twice")
        seen.add(attribute)
        if not (math.isfinite(importance) and math.isfinite(performance)):
            raise ValueError(f"{attribute}: importance and performance must be finite")
    cross = ipa_crosshairs(points)
    if cross is None:
        return []
    mean_importance, mean_performance = cross
    out: list[IpaPoint] = []
    for attribute, importance, performance in points:
        high_importance = importance >= mean_importance
        high_performance = performance >= mean_performance
        if high_importance:
            quadrant = Quadrant.keep_up if high_performance else Quadrant.concentrate_here
        else:
            quadrant = Quadrant.possible_overkill if high_performance else Quadrant.low_priority
        out.append(IpaPoint(attribute, float(importance), float(performance), quadrant))
    return out


def ipa_from_gaps(gaps: Sequence[AttributeGap]) -> list[IpaPoint]:
    """IPA from expectation/experience answers: the mean expectation stands for the stated
    importance, the mean experience for the performance."""
    return importance_performance(
        [(g.attribute, g.expectation_mean, g.experience_mean) for g in gaps]
    )


# -- customer value analysis (seed 003) ----------------------------------------------------


class Verdict(StrEnum):
    ahead = "ahead"  # we do significantly better than the competitor
    behind = "behind"
    even = "even"  # the interval includes 0, or there is too little data to tell


@dataclass(frozen=True)
class Comparison:
    """Us against one competitor on one attribute. ``difference`` is the mean of the
    paired differences us − competitor (each customer rated both) with a t-interval. On
    a cost attribute a positive difference means we cost more, so we are behind."""

    competitor: str
    difference: Estimate
    verdict: Verdict

    def as_dict(self) -> dict[str, Any]:
        return {
            "competitor": self.competitor,
            "difference": self.difference.as_dict(),
            "verdict": self.verdict.value,
        }


@dataclass(frozen=True)
class AttributeValue:
    """One attribute: its mean importance (1–5), its weight among the attributes of its
    kind (benefit or cost; each kind's weights sum to 1), and the mean rating (1–10) of
    every party (``None``: nobody rated it)."""

    attribute: str
    cost: bool
    n: int
    importance: float
    weight: float
    ratings: dict[str, float | None]
    comparisons: list[Comparison]

    def as_dict(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "cost": self.cost,
            "n": self.n,
            "importance": self.importance,
            "weight": self.weight,
            "ratings": dict(self.ratings),
            "comparisons": [c.as_dict() for c in self.comparisons],
        }


@dataclass(frozen=True)
class PartyValue:
    """A party's weighted benefit and cost scores (1–10) and its perceived value
    (CPV = benefit − cost). ``None`` when the party is unrated on an attribute of
    that kind; an absent kind (no cost attribute asked) counts 0."""

    party: str
    benefit: float | None
    cost: float | None
    value: float | None
    rank: int | None  # 1 = highest perceived value; ties share a rank

    def as_dict(self) -> dict[str, Any]:
        return {
            "party": self.party,
            "benefit": self.benefit,
            "cost": self.cost,
            "value": self.value,
            "rank": self.rank,
        }


@dataclass(frozen=True)
class ValueAnalysis:
    attributes: list[AttributeValue]
    # us first, then the competitors in order of appearance; none without comparison answers
    parties: list[PartyValue]
    ranking: list[str]  # parties by perceived value, best first
    competitors: list[str]
    n: int  # comparison answers analysed

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "competitors": list(self.competitors),
            "attributes": [a.as_dict() for a in self.attributes],
            "parties": [p.as_dict() for p in self.parties],
            "ranking": list(self.ranking),
        }


def verdict(difference: Estimate, cost: bool) -> Verdict:
    """Ahead, behind or even on an attribute, from the difference us − competitor (on a
    cost attribute a positive difference is behind)."""
    if difference.low is None or difference.high is None:
        return Verdict.even
    if difference.low > 0:
        return Verdict.behind if cost else Verdict.ahead
    if difference.high < 0:
        return Verdict.ahead if cost else Verdict.behind
    return Verdict.even


def weighted_score(attributes: Sequence[AttributeValue], party: str) -> float | None:
    """The party's ratings weighted by the attributes' weights (None: unrated on one)."""
    total = 0.0
    for a in attributes:
        rating = a.ratings.get(party)
        if rating is None:
            return None
        total += a.weight * rating
    return total


def value_analysis(answers: Sequence[Answer]) -> ValueAnalysis:
    """Customer value analysis (seed 003, steps 1–4) over the comparison answers among
    ``answers`` (others are ignored); step 5, repeating it periodically, is the caller's:
    pass the answers of one period.

    1–2. The attributes asked and their importance: the mean importance, normalised into
    weights over the benefit attributes and, separately, over the cost attributes.
    3. The mean rating of us and of each competitor on each attribute, and per party the
    weighted benefit score, the weighted cost score and the perceived value
    CPV = benefit − cost, ranked. 4. Attribute by attribute, us − each competitor with
    a 95% interval and a verdict (ahead / behind / even when the interval includes 0).
    """
    groups: dict[str, list[Answer]] = {}
    competitors: list[str] = []
    for a in answers:
        if a.type != "comparison" or US not in a.ratings:
            continue
        groups.setdefault(a.attribute or a.question_id, []).append(a)
        competitors.extend(p for p in a.ratings if p != US and p not in competitors)
    if not groups:
        return ValueAnalysis(attributes=[], parties=[], ranking=[], competitors=[], n=0)
    parties = [US, *competitors]

    draft: list[tuple[str, bool, list[Answer], float]] = []
    for attribute, items in groups.items():
        kinds = {a.cost for a in items}
        if len(kinds) > 1:
            raise ValueError(f"attribute `{attribute}` is both a cost and a benefit")
        importances = [a.importance for a in items if a.importance is not None]
        importance = math.fsum(importances) / len(importances) if importances else 0.0
        draft.append((attribute, kinds.pop(), items, importance))
    totals = {kind: math.fsum(imp for _, c, _, imp in draft if c is kind) for kind in (False, True)}

    attributes: list[AttributeValue] = []
    for attribute, cost, items, importance in draft:
        ratings: dict[str, float | None] = {}
        for party in parties:
            given = [a.ratings[party] for a in items if party in a.ratings]
            ratings[party] = math.fsum(given) / len(given) if given else None
        comparisons = []
        for competitor in competitors:
            difference = mean_score(
                a.ratings[US] - a.ratings[competitor] for a in items if competitor in a.ratings
            )
            comparisons.append(Comparison(competitor, difference, verdict(difference, cost)))
        total = totals[cost]
        attributes.append(
            AttributeValue(
                attribute=attribute,
                cost=cost,
                n=len(items),
                importance=importance,
                weight=importance / total if total > 0 else 0.0,
                ratings=ratings,
                comparisons=comparisons,
            )
        )
    ranked, ranking = rank_parties(attributes, parties)
    return ValueAnalysis(
        attributes=attributes,
        parties=ranked,
        ranking=ranking,
        competitors=competitors,
        n=sum(len(items) for items in groups.values()),
    )


def rank_parties(
    attributes: Sequence[AttributeValue], parties: Sequence[str]
) -> tuple[list[PartyValue], list[str]]:
    """Step 3 of the value analysis: each party's weighted benefit and cost scores and
    its perceived value (CPV = benefit − cost), ranked, ties sharing a rank; and the
    parties by perceived value, best first."""
    benefit_attributes = [a for a in attributes if not a.cost]
    cost_attributes = [a for a in attributes if a.cost]
    scored: list[tuple[str, float | None, float | None, float | None]] = []
    for party in parties:
        benefit = weighted_score(benefit_attributes, party)
        burden = weighted_score(cost_attributes, party)
        value = None if benefit is None or burden is None else benefit - burden
        scored.append((party, benefit, burden, value))
    ranked = sorted(
        ((p, v) for p, _, _, v in scored if v is not None),
        key=lambda item: -item[1],  # stable: us first among equals
    )
    ranks: dict[str, int] = {}
    for i, (party, value) in enumerate(ranked):
        previous = ranked[i - 1] if i else None
        tie = previous is not None and math.isclose(previous[1], value, abs_tol=1e-9)
        ranks[party] = ranks[previous[0]] if tie and previous is not None else i + 1
    return [PartyValue(p, b, c, v, ranks.get(p)) for p, b, c, v in scored], [p for p, _ in ranked]
