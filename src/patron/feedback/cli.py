"""`patron feedback ...`: surveys, invitations, scores and reviews from the shell.

Exit codes: 0 done; 2 an error (unknown store, survey or review, invalid input), with
the reason on stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import typer
import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from patron.db import unit_of_work
from patron.errors import PatronError, validation_errors
from patron.feedback.domain import US, SurveyDefinition
from patron.feedback.models import ReviewStatus, Trigger
from patron.feedback.reviews import reviews
from patron.feedback.schemas import (
    EstimateOut,
    GapsOut,
    ModerationIn,
    SurveyIn,
    SurveyOut,
    SurveySettings,
    ValueAnalysisOut,
)
from patron.feedback.scores import BY_VALUES, scores
from patron.feedback.service import invitations, run_triggers, surveys
from patron.kit.cli import StoreOpt, WhenOpt, option_instant
from patron.stores.models import Store
from patron.stores.service import stores

feedback_app = typer.Typer(
    help="Feedback: surveys (NPS, CSAT, CES, expectation vs experience, competitor "
    "comparison), their scores, and product reviews.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
survey_app = typer.Typer(help="Survey definitions (versioned).", no_args_is_help=True)
feedback_app.add_typer(survey_app, name="survey")

SurveyOpt = Annotated[str | None, typer.Option("--survey", help="Only this survey key.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def console() -> Console:
    """A console per command: one made at import keeps the width of that moment."""
    return Console()


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _failed(exc: PatronError) -> typer.Exit:
    lines = [exc.detail]
    lines += [f"  {e['field']}: {e['message']}" for e in exc.errors[1:20]]
    return _fail("\n".join(lines))


def _invalid(exc: ValidationError, prefix: str = "") -> typer.Exit:
    lines = [f"{prefix}{e['field']}: {e['message']}" for e in validation_errors(exc.errors())]
    return _fail("invalid input\n  " + "\n  ".join(lines[:20]))


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _num(value: float | None, places: int = 1) -> str:
    return "–" if value is None else f"{value:.{places}f}"


def _estimate(e: EstimateOut, places: int = 1) -> str:
    if e.value is None:
        return "–"
    if e.low is None or e.high is None:
        return _num(e.value, places)
    return f"{_num(e.value, places)} [{_num(e.low, places)}, {_num(e.high, places)}]"


# -- templates and surveys ----------------------------------------------------------------


@feedback_app.command("templates")
def templates_command(as_json: JsonOpt = False) -> None:
    """The built-in survey templates (English and Chinese)."""
    found = surveys.templates()
    if as_json:
        _print_json(found.model_dump(mode="json"))
        return
    table = Table("name", "title (en)", "title (zh)", "questions", "options")
    for t in found.items:
        title = t.definition["title"]
        table.add_row(
            t.name,
            title.get("en", ""),
            title.get("zh", ""),
            str(len(t.definition["questions"])),
            ", ".join(t.params) or "–",
        )
    console().print(table)


def _settings(
    file: Path | None,
    template: str | None,
    competitors: list[str] | None,
    trigger: Trigger,
    delay_days: int | None,
    link_days: int,
    reminder_days: int | None,
    max_reminders: int,
    recontact_days: int,
    anonymous: bool,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "trigger": trigger,
        "delay_days": delay_days,
        "link_days": link_days,
        "reminder_days": reminder_days,
        "max_reminders": max_reminders,
        "recontact_days": recontact_days,
        "anonymous": anonymous,
    }
    if (file is None) == (template is None):
        raise _fail("give --template NAME or --file DEFINITION.yaml (one of them)")
    if file is not None:
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise _fail(f"cannot read {file}: {exc}") from None
        try:
            data["definition"] = SurveyDefinition.model_validate(raw)
        except ValidationError as exc:
            raise _invalid(exc, "definition.") from None
    else:
        data["template"] = template
        if competitors:
            data["params"] = {"competitors": competitors}
    return data


FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file", exists=True, dir_okay=False, readable=True, help="A definition (YAML/JSON)."
    ),
]
TemplateOpt = Annotated[str | None, typer.Option("--template", help="A built-in template.")]
CompetitorOpt = Annotated[
    list[str] | None,
    typer.Option("--competitor", help="competitor_value: a competitor's name (repeat)."),
]
TriggerOpt = Annotated[Trigger, typer.Option(help="manual, after_delivery, ticket_closed.")]
DelayOpt = Annotated[int | None, typer.Option(min=0, max=365, help="Days after delivery/closing.")]
LinkDaysOpt = Annotated[int, typer.Option(min=1, max=365, help="Days a link stays valid.")]
ReminderOpt = Annotated[
    int | None, typer.Option(min=1, max=90, help="Remind after N days without answer.")
]
MaxRemindersOpt = Annotated[int, typer.Option(min=0, max=5)]
RecontactOpt = Annotated[
    int, typer.Option(min=0, max=365, help="Survey fatigue: days between invitations.")
]
AnonymousOpt = Annotated[bool, typer.Option(help="Keep no customer with the responses.")]


def _survey_row(table: Table, s: Any) -> None:
    table.add_row(
        s.key,
        str(s.version),
        "yes" if s.active else "no",
        s.trigger.value,
        str(s.delay_days),
        s.template or "(custom)",
        str(len(s.definition.get("questions", []))),
        "yes" if s.anonymous else "no",
        f"{s.created_at:%Y-%m-%d %H:%M}",
    )


def _survey_table(title: str) -> Table:
    return Table(
        "key",
        "version",
        "active",
        "trigger",
        "delay",
        "template",
        "questions",
        "anonymous",
        "published (UTC)",
        title=title,
    )


Body = TypeVar("Body", bound=SurveySettings)


def _survey_publish_command(
    name: str,
    key_help: str,
    doc: str,
    body_of: Callable[[str, dict[str, Any]], Body],
    publish: Callable[[Session, Store, str, Body], tuple[SurveyOut, str]],
) -> None:
    """Register `survey NAME KEY`: publish a survey from the settings options.

    ``body_of`` validates the options (before the database is touched); ``publish``
    publishes the survey and returns it with the title of the table printing it."""

    def command(
        # A default, not an annotation: the help is this command's (the other parameters
        # are keyword-only so they can follow it without defaults).
        key: str = typer.Argument(..., help=key_help),
        *,
        store: StoreOpt,
        template: TemplateOpt = None,
        file: FileOpt = None,
        competitor: CompetitorOpt = None,
        trigger: TriggerOpt = Trigger.manual,
        delay_days: DelayOpt = None,
        link_days: LinkDaysOpt = 30,
        reminder_days: ReminderOpt = None,
        max_reminders: MaxRemindersOpt = 1,
        recontact_days: RecontactOpt = 30,
        anonymous: AnonymousOpt = False,
    ) -> None:
        data = _settings(
            file,
            template,
            competitor,
            trigger,
            delay_days,
            link_days,
            reminder_days,
            max_reminders,
            recontact_days,
            anonymous,
        )
        try:
            body = body_of(key, data)
        except ValidationError as exc:
            raise _invalid(exc) from None
        try:
            with unit_of_work() as session:
                out, title = publish(session, stores.get(session, store), key, body)
        except PatronError as exc:
            raise _failed(exc) from None
        table = _survey_table(title)
        _survey_row(table, out)
        console().print(table)

    command.__doc__ = doc
    survey_app.command(name)(command)


def _publish_first(
    session: Session, store: Store, key: str, body: SurveyIn
) -> tuple[SurveyOut, str]:
    return surveys.create(session, store, body), f"Survey published in {store.slug}"


def _publish_next(
    session: Session, store: Store, key: str, body: SurveySettings
) -> tuple[SurveyOut, str]:
    out, changed = surveys.update(session, store, key, body)
    return out, "New version published" if changed else "Unchanged"


_survey_publish_command(
    "create",
    "Survey key, e.g. post-purchase.",
    "Publish a survey from a template or a definition file.",
    lambda key, data: SurveyIn.model_validate({"key": key, **data}),
    _publish_first,
)
_survey_publish_command(
    "update",
    "Survey key.",
    "Publish a new version of a survey (links already sent keep their version).",
    lambda key, data: SurveySettings.model_validate(data),
    _publish_next,
)


@survey_app.command("list")
def survey_list(store: StoreOpt, as_json: JsonOpt = False) -> None:
    """The current version of every survey."""
    try:
        with unit_of_work() as session:
            found = surveys.list(session, stores.get(session, store))
    except PatronError as exc:
        raise _failed(exc) from None
    if as_json:
        _print_json(found.model_dump(mode="json"))
        return
    table = _survey_table(f"Surveys of {store}")
    for s in found.items:
        _survey_row(table, s)
    console().print(table)


@survey_app.command("deactivate")
def survey_deactivate(
    key: Annotated[str, typer.Argument(help="Survey key.")], store: StoreOpt
) -> None:
    """Stop inviting to a survey; links already sent stay answerable."""
    try:
        with unit_of_work() as session:
            surveys.deactivate(session, stores.get(session, store), key)
    except PatronError as exc:
        raise _failed(exc) from None
    typer.echo(f"survey {key} deactivated")


# -- invitations --------------------------------------------------------------------------


@feedback_app.command("invite")
def invite_command(
    key: Annotated[str, typer.Argument(help="Survey key.")],
    customers: Annotated[list[str], typer.Argument(help="Customer external ids.")],
    store: StoreOpt,
    subject: Annotated[
        str | None, typer.Option(help="What it asks about (default manual:<date>).")
    ] = None,
    locale: Annotated[str | None, typer.Option(help="en or zh (default: customer's).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Base of the links.")] = None,
) -> None:
    """Invite customers to a survey: one signed, use-once link each (survey fatigue
    applies). The links are printed; `GET /v1/survey-invitations/due` lists them too."""
    if locale is not None and locale not in ("en", "zh"):
        raise _fail("--locale: en or zh")
    try:
        with unit_of_work() as session:
            out = invitations.invite(
                session,
                stores.get(session, store),
                key,
                customers,
                subject,
                locale=locale,
                base_url=base_url,
            )
    except PatronError as exc:
        raise _failed(exc) from None
    table = Table("customer", "invitation", "locale", "expires (UTC)", "link", title="Invited")
    for i in out.invited:
        table.add_row(
            i.customer_external_id, str(i.id), i.locale, f"{i.expires_at:%Y-%m-%d}", i.link
        )
    console().print(table)
    if out.skipped:
        skipped = Table("customer", "reason", "detail", title="Skipped")
        for s in out.skipped:
            skipped.add_row(s.customer_external_id, s.reason, s.detail or "")
        console().print(skipped)


@feedback_app.command("run-triggers")
def run_triggers_command(store: StoreOpt) -> None:
    """Run the survey trigger job once (delivered orders, closed tickets, reminders);
    `patron worker` runs it on a schedule."""
    try:
        with unit_of_work() as session:
            run = run_triggers(session, stores.get(session, store))
    except PatronError as exc:
        raise _failed(exc) from None
    typer.echo(
        f"invited after delivery: {run.after_delivery}; after a closed ticket: "
        f"{run.ticket_closed}; skipped (survey fatigue): {run.skipped}; "
        f"reminders due: {run.reminders}"
    )


# -- scores -------------------------------------------------------------------------------


@feedback_app.command("scores")
def scores_command(
    store: StoreOpt,
    by: Annotated[
        str | None, typer.Option(help="month, week, channel, tier, segment or survey.")
    ] = None,
    survey: SurveyOpt = None,
    since: WhenOpt = None,
    until: WhenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """NPS, CSAT and CES with 95% intervals: overall, by a dimension, and by month."""
    if by is not None and by not in BY_VALUES:
        raise _fail(f"--by: one of {', '.join(BY_VALUES)}")
    try:
        with unit_of_work() as session:
            out = scores.report(
                session,
                stores.get(session, store),
                survey_key=survey,
                by=by,
                since=option_instant(since),
                until=option_instant(until),
            )
    except PatronError as exc:
        raise _failed(exc) from None
    if as_json:
        _print_json(out.model_dump(mode="json"))
        return
    title = f"Scores of {store}" + (f", survey {survey}" if survey else "")
    table = Table(by or "", "NPS [95% CI]", "n", "CSAT % [95% CI]", "n", "CES [95% CI]", "n")
    table.title = f"{title}: {out.responses} responses"
    rows = [("overall", out.overall)] + [(g.key or "(none)", g) for g in out.groups]
    for label, s in rows:
        table.add_row(
            label,
            _estimate(s.nps),
            str(s.nps.n),
            _estimate(s.csat),
            str(s.csat.n),
            _estimate(s.ces, 2),
            str(s.ces.n),
        )
    console().print(table)
    if by != "month" and out.trend:
        trend = Table("month", "NPS", "CSAT %", "CES", title="Trend by month (store time)")
        for g in out.trend:
            trend.add_row(g.key or "", _estimate(g.nps), _estimate(g.csat), _estimate(g.ces, 2))
        console().print(trend)


Report = TypeVar("Report", bound=BaseModel, covariant=True)


class _SurveyReport(Protocol[Report]):
    """A report of the answers to the surveys (or one) submitted in [since, until)."""

    def __call__(
        self,
        session: Session,
        store: Store,
        *,
        survey_key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Report: ...


def _survey_report_command(
    name: str, doc: str, report: _SurveyReport[Report], show: Callable[[Report, str], None]
) -> None:
    """Register `NAME`: ``report`` over the options, printed as JSON or by ``show`` (given
    the report and the store's slug)."""

    def command(
        store: StoreOpt,
        survey: SurveyOpt = None,
        since: WhenOpt = None,
        until: WhenOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        try:
            with unit_of_work() as session:
                out = report(
                    session,
                    stores.get(session, store),
                    survey_key=survey,
                    since=option_instant(since),
                    until=option_instant(until),
                )
        except PatronError as exc:
            raise _failed(exc) from None
        if as_json:
            _print_json(out.model_dump(mode="json"))
            return
        show(out, store)

    command.__doc__ = doc
    feedback_app.command(name)(command)


def _show_gaps(out: GapsOut, store: str) -> None:
    levels = [level.level for level in out.levels]
    table = Table(
        "attribute",
        "n",
        "expected",
        "experienced",
        "gap [95% CI]",
        "level",
        *[f"{level.en} {level.zh}" for level in out.levels],
        title=f"Expectation vs experience in {store}",
    )
    for g in out.attributes:
        name = (g.label or {}).get("en") or g.attribute
        table.add_row(
            name,
            str(g.n),
            _num(g.expectation_mean, 2),
            _num(g.experience_mean, 2),
            _estimate(g.gap, 2),
            f"{g.level_label['en']} {g.level_label['zh']}",
            *[str(g.distribution.get(level, 0)) for level in levels],
        )
    console().print(table)


def _show_value_analysis(out: ValueAnalysisOut, store: str) -> None:
    parties = [US, *out.competitors]
    table = Table(
        "attribute",
        "kind",
        "importance",
        "weight",
        *parties,
        *[f"us − {c}" for c in out.competitors],
        title=f"Customer value analysis of {store} ({out.n} answers)",
    )
    for a in out.attributes:
        table.add_row(
            (a.label or {}).get("en") or a.attribute,
            "cost" if a.cost else "benefit",
            _num(a.importance, 2),
            _num(a.weight, 3),
            *[_num(a.ratings.get(p), 2) for p in parties],
            *[f"{_estimate(c.difference, 2)} {c.verdict}" for c in a.comparisons],
        )
    console().print(table)
    value = Table("party", "benefit", "cost", "perceived value", "rank", title="Perceived value")
    for p in out.parties:
        value.add_row(
            p.party,
            _num(p.benefit, 2),
            _num(p.cost, 2),
            _num(p.value, 2),
            str(p.rank) if p.rank else "–",
        )
    console().print(value)


_survey_report_command(
    "gaps",
    "Satisfaction = experience − expectation per attribute, in five levels.",
    scores.gaps,
    _show_gaps,
)
_survey_report_command(
    "value-analysis",
    "Customer value analysis against competitors (seed 003) over [since, until).",
    scores.value_analysis,
    _show_value_analysis,
)


# -- reviews ------------------------------------------------------------------------------


@feedback_app.command("reviews")
def reviews_command(
    store: StoreOpt,
    status: Annotated[
        ReviewStatus | None, typer.Option(help="pending, approved, rejected.")
    ] = None,
    product: Annotated[str | None, typer.Option(help="Only this product SKU.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Product reviews, oldest first."""
    try:
        with unit_of_work() as session:
            page = reviews.list(
                session, stores.get(session, store), status=status, product_sku=product, limit=limit
            )
    except PatronError as exc:
        raise _failed(exc) from None
    if as_json:
        _print_json(page.model_dump(mode="json"))
        return
    table = Table(
        "review", "product", "stars", "customer", "verified", "status", "points", "ticket", "title"
    )
    for r in page.items:
        table.add_row(
            r.external_id,
            r.product_sku,
            "★" * r.rating,
            r.customer_external_id or "",
            "yes" if r.verified_purchase else "no",
            r.status.value,
            str(r.points),
            str(r.ticket_id or ""),
            r.title or "",
        )
    console().print(table)


@feedback_app.command("moderate")
def moderate_command(
    external_id: Annotated[str, typer.Argument(help="The review's external id.")],
    store: StoreOpt,
    approve: Annotated[bool, typer.Option("--approve", help="Approve (credits points).")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject.")] = False,
    note: Annotated[str | None, typer.Option(help="A moderation note.")] = None,
) -> None:
    """Approve or reject a review."""
    if approve == reject:
        raise _fail("give --approve or --reject")
    try:
        body = ModerationIn(decision="approve" if approve else "reject", note=note)
    except ValidationError as exc:
        raise _invalid(exc) from None
    try:
        with unit_of_work() as session:
            out = reviews.moderate(session, stores.get(session, store), external_id, body)
    except PatronError as exc:
        raise _failed(exc) from None
    typer.echo(f"review {out.external_id}: {out.status.value}; points credited: {out.points}")
