"""The response page a survey link opens: ``/s/{store slug}/{token}``.

A mobile-first HTML form (no script, no external asset: the CSS is inline) in the
invitation's language, ``?lang=en|zh`` to switch. Every question type is rendered; a
posted form (``application/x-www-form-urlencoded``) is validated like the API's JSON and
shown again with the problems next to their questions and the answers kept. Statuses:
200 the form or the thanks, 422 the form with problems, 404 an unknown or tampered link,
409 a link already answered, 410 an expired one. Everything is escaped (autoescape).

Form fields: ``<question id>`` for scales, choices and text (repeated for multiple
choice); ``<id>.expectation`` and ``<id>.experience`` for a pair; ``<id>.importance`` and
``<id>.r<n>`` for a comparison (``r0`` is us, ``r1`` the first competitor, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData

from patron.auth import SessionDep
from patron.errors import PatronError
from patron.feedback import domain
from patron.feedback.service import ALREADY_ANSWERED, Link, pick, responses
from patron.kit.clock import utcnow
from patron.web.pages import LangQuery, environment

router = APIRouter(include_in_schema=False)
MAX_FIELDS = 2000
MAX_VALUE = 20_000  # characters kept from one posted field

ENV = environment("patron.feedback")

UI: dict[str, dict[str, str]] = {
    "en": {
        "submit": "Send my answers",
        "required": "This question needs an answer.",
        "optional": "optional",
        "check": "Some answers need another look: see the questions marked below.",
        "expectation": "What you expected",
        "experience": "What you experienced",
        "pair_low": "Very poor",
        "pair_high": "Excellent",
        "importance": "How important is it to you?",
        "importance_low": "Not important",
        "importance_high": "Very important",
        "us": "Us",
        "dont_know": "Don't know",
        "cost_hint": "1 = very low, 10 = very high",
        "benefit_hint": "1 = very poor, 10 = excellent",
        "nps_low": "Not at all likely",
        "nps_high": "Extremely likely",
        "csat_low": "Very dissatisfied",
        "csat_high": "Very satisfied",
        "ces_low": "Very difficult",
        "ces_high": "Very easy",
        "likert_low": "Strongly disagree",
        "likert_high": "Strongly agree",
        "choose_any": "Choose all that apply.",
        "thanks_title": "Thank you!",
        "thanks": "Your answers have been received.",
        "used_title": "Already answered",
        "used": "This survey link has already been used to answer. Thank you for your time!",
        "expired_title": "This link has expired",
        "expired": "Sorry, this survey is closed.",
        "missing_title": "Survey not found",
        "missing": "This survey link is not valid. Please check that the whole link was copied.",
        "language": "中文",
    },
    "zh": {
        "submit": "提交答案",
        "required": "此题为必答题。",
        "optional": "选填",
        "check": "部分回答需要修改,请查看下方标出的问题。",
        "expectation": "您的期望",
        "experience": "实际体验",
        "pair_low": "很差",
        "pair_high": "非常好",
        "importance": "这一项对您有多重要?",
        "importance_low": "不重要",
        "importance_high": "非常重要",
        "us": "我们",
        "dont_know": "不了解",
        "cost_hint": "1 = 很低,10 = 很高",
        "benefit_hint": "1 = 很差,10 = 非常好",
        "nps_low": "完全不可能",
        "nps_high": "非常可能",
        "csat_low": "非常不满意",
        "csat_high": "非常满意",
        "ces_low": "非常困难",
        "ces_high": "非常容易",
        "likert_low": "非常不同意",
        "likert_high": "非常同意",
        "choose_any": "可多选。",
        "thanks_title": "谢谢您!",
        "thanks": "我们已收到您的回答。",
        "used_title": "您已回答过",
        "used": "此问卷链接已被使用过。感谢您抽出宝贵时间!",
        "expired_title": "链接已过期",
        "expired": "抱歉,此问卷已结束。",
        "missing_title": "未找到问卷",
        "missing": "此问卷链接无效,请确认链接已完整复制。",
        "language": "English",
    },
}
_SCALE_ENDS = {"nps": "nps", "csat": "csat", "ces": "ces", "likert": "likert"}


def _lang(value: str | None, fallback: str) -> str:
    return value if value in domain.LANGUAGES else fallback


def _html(name: str, status: int, **context: Any) -> HTMLResponse:
    body = ENV.get_template(name).render(**context)
    return HTMLResponse(body, status_code=status)


def _message(kind: str, status: int, lang: str, text: str | None = None) -> HTMLResponse:
    ui = UI[lang]
    return _html(
        "message.html",
        status,
        lang=lang,
        ui=ui,
        title=ui[f"{kind}_title"],
        text=text or ui[kind],
    )


def _failure(exc: PatronError, lang: str) -> HTMLResponse:
    if exc.status == 409 and exc.detail == ALREADY_ANSWERED:
        return _message("used", 409, lang)
    if exc.status == 410:
        return _message("expired", 410, lang)
    return _message("missing", 404, lang)


def question_views(definition: domain.SurveyDefinition, lang: str) -> list[dict[str, Any]]:
    """What the template needs to draw each question, texts in ``lang``."""
    ui = UI[lang]
    views: list[dict[str, Any]] = []
    for q in definition.questions:
        view: dict[str, Any] = {
            "id": q.id,
            "type": q.type,
            "text": pick(q.text, lang),
            "required": q.required,
        }
        if isinstance(q, domain.NpsQuestion | domain.CsatQuestion | domain.CesQuestion):
            scale = {"nps": domain.NPS_SCALE, "csat": domain.CSAT_SCALE}.get(
                q.type, domain.CES_SCALE
            )
            view.update(
                kind="scale",
                points=_points(scale),
                low=ui[f"{q.type}_low"],
                high=ui[f"{q.type}_high"],
            )
        elif isinstance(q, domain.RatingQuestion):
            view.update(
                kind="scale",
                points=_points((q.min, q.max)),
                low=pick(q.min_label, lang) or "",
                high=pick(q.max_label, lang) or "",
            )
        elif isinstance(q, domain.LikertQuestion):
            labels = [pick(t, lang) or "" for t in q.labels] if q.labels else None
            view.update(
                kind="scale",
                points=[
                    (v, f"{v} {labels[v - 1]}" if labels else str(v))
                    for v in range(1, q.points + 1)
                ],
                low="" if labels else ui["likert_low"],
                high="" if labels else ui["likert_high"],
                wide=bool(labels),
            )
        elif isinstance(q, domain.SingleChoiceQuestion | domain.MultipleChoiceQuestion):
            view.update(
                kind="multi" if q.type == "multiple_choice" else "choice",
                options=[(o.id, pick(o.text, lang)) for o in q.options],
            )
        elif isinstance(q, domain.TextQuestion):
            view.update(kind="text", max_length=q.max_length)
        elif isinstance(q, domain.ExpectationExperienceQuestion):
            view.update(
                kind="pair",
                label=pick(q.attribute_label, lang),
                points=_points(domain.PAIR_SCALE),
                low=ui["pair_low"],
                high=ui["pair_high"],
            )
        elif isinstance(q, domain.ComparisonQuestion):
            low, high = domain.COMPARISON_SCALE
            view.update(
                kind="comparison",
                label=pick(q.attribute_label, lang),
                importance=_points(domain.IMPORTANCE_SCALE),
                ratings=list(range(low, high + 1)),
                parties=[(0, ui["us"], True)]
                + [(i, name, False) for i, name in enumerate(q.competitors, start=1)],
                hint=ui["cost_hint" if q.cost else "benefit_hint"],
            )
        views.append(view)
    return views


def _points(scale: tuple[int, int]) -> list[tuple[int, str]]:
    """(value, label) of every point of a scale, both ends included."""
    return [(v, str(v)) for v in range(scale[0], scale[1] + 1)]


def _first(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name) or []
    value = values[0].strip() if values else ""
    return value or None


def raw_answers(
    definition: domain.SurveyDefinition, form: Mapping[str, list[str]]
) -> dict[str, Any]:
    """A posted form as the answers ``domain.validate_answers`` reads; unknown fields are
    ignored (the form is ours), blank ones left out."""
    raw: dict[str, Any] = {}
    for q in definition.questions:
        if isinstance(q, domain.MultipleChoiceQuestion):
            chosen = [v.strip() for v in form.get(q.id, []) if v.strip()]
            if chosen:
                raw[q.id] = chosen
        elif isinstance(q, domain.ExpectationExperienceQuestion):
            pair = {
                "expectation": _first(form, f"{q.id}.expectation"),
                "experience": _first(form, f"{q.id}.experience"),
            }
            if any(pair.values()):
                raw[q.id] = pair
        elif isinstance(q, domain.ComparisonQuestion):
            parties = [domain.US, *q.competitors]
            ratings = {
                party: value
                for i, party in enumerate(parties)
                if (value := _first(form, f"{q.id}.r{i}")) is not None
            }
            importance = _first(form, f"{q.id}.importance")
            if importance is not None or ratings:
                raw[q.id] = {"importance": importance, "ratings": ratings}
        elif (value := _first(form, q.id)) is not None:
            raw[q.id] = value
    return raw


def _messages(problems: list[dict[str, str]], lang: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in problems:
        message = p["message"]
        if message == "required" or (lang == "zh" and message.endswith(": required")):
            text = UI[lang]["required"]
        elif lang == "zh":
            text = "请检查此题的回答。"
        else:
            text = message[:1].upper() + message[1:] + "."
        if text not in out.setdefault(p["question"], []):
            out[p["question"]].append(text)
    return out


def _form_page(
    link: Link,
    lang: str,
    status: int = 200,
    values: Mapping[str, list[str]] | None = None,
    errors: Mapping[str, list[str]] | None = None,
) -> HTMLResponse:
    d = link.definition
    other = "zh" if lang == "en" else "en"
    return _html(
        "survey.html",
        status,
        lang=lang,
        other=other,
        ui=UI[lang],
        store=link.store.name,
        title=pick(d.title, lang),
        intro=pick(d.intro, lang),
        questions=question_views(d, lang),
        values=values or {},
        errors=errors or {},
    )


async def posted_form(request: Request) -> FormData:
    """The posted fields (parsed by Starlette: urlencoded or multipart)."""
    return await request.form(max_files=0, max_fields=MAX_FIELDS)


@router.get("/s/{store_slug}/{token}", response_class=HTMLResponse)
def survey_page(
    store_slug: str, token: str, session: SessionDep, lang: LangQuery = None
) -> HTMLResponse:
    """The survey form of a link."""
    try:
        link = responses.open_link(session, token, utcnow(), slug=store_slug)
    except PatronError as exc:
        return _failure(exc, _lang(lang, responses.locale(session, token) or "en"))
    return _form_page(link, _lang(lang, link.invitation.locale))


@router.post("/s/{store_slug}/{token}", response_class=HTMLResponse)
def submit_page(
    store_slug: str,
    token: str,
    session: SessionDep,
    form: Annotated[FormData, Depends(posted_form)],
    lang: LangQuery = None,
) -> HTMLResponse:
    """A posted form: the thanks, or the form again with its problems."""
    values: dict[str, list[str]] = {}
    for name, value in form.multi_items():
        if isinstance(value, str):
            values.setdefault(name[:200], []).append(value[:MAX_VALUE])
    now = utcnow()
    try:
        link = responses.open_link(session, token, now, slug=store_slug)
    except PatronError as exc:
        fallback = responses.locale(session, token) or "en"
        return _failure(exc, _lang(lang or _first(values, "lang"), fallback))
    lang = _lang(lang or _first(values, "lang"), link.invitation.locale)
    try:
        answers = domain.validate_answers(link.definition, raw_answers(link.definition, values))
    except domain.AnswerError as exc:
        return _form_page(link, lang, 422, values, _messages(exc.problems, lang))
    try:
        out = responses.record(session, link, answers, lang, now)
    except PatronError as exc:
        session.rollback()
        return _failure(exc, lang)
    return _message("thanks", 200, lang, out.thanks)
