"""Surveys: versioned definitions, use-once invitations and the responses to them.

Services flush, never commit: the request, CLI command or job that calls them is the
unit of work.

**Links.** An invitation's token is ``<nonce>.<signature>``: the nonce is 128 random
bits (the invitation's unique ``nonce``), the signature the first 22 characters of the
base64url HMAC-SHA256 of ``survey-link:<nonce>`` under the store's ``signing_secret``.
A tampered token is refused (404) before anything else is looked at.

**Use once.** A response is accepted by a conditional ``UPDATE survey_invitations SET
used_at = :now WHERE id = :id AND used_at IS NULL``: only the transaction whose update
matched the row goes on; a concurrent one waits for it (PostgreSQL row lock; SQLite's
``BEGIN IMMEDIATE``) and then matches nothing. The response's ``UNIQUE(invitation_id)``
is a second guard. An anonymous response keeps no invitation id, so the update alone
guards it.

**Closing the loop.** A detractor (NPS 0–6) or an expectation/experience pair at the
``very_dissatisfied`` level opens a support ticket for the customer (high priority for a
very dissatisfied pair), once per response (``source_ref = survey-response:<id>``).
Anonymous responses open none: there is nobody to call back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.customers import repository as customers_repo
from patron.customers.models import Customer, TouchpointKind
from patron.errors import Conflict, Invalid, NotFound, PatronError
from patron.feedback import domain
from patron.feedback import repository as repo
from patron.feedback.models import Survey, SurveyInvitation, SurveyResponse, Trigger
from patron.feedback.schemas import (
    DueItem,
    DuePage,
    InvitationOut,
    InviteOut,
    LinkOut,
    ResponseOut,
    Skipped,
    SurveyIn,
    SurveyList,
    SurveyOut,
    SurveySettings,
    TemplateList,
    TemplateOut,
    TriggerRunOut,
)
from patron.feedback.templates import TEMPLATE_NAMES, template
from patron.kit.clock import as_utc_or_now, local_date
from patron.kit.repository import add_and_flush, external_ids_by_id, rows_by_id
from patron.loyalty import membership
from patron.loyalty.orders import active_program
from patron.stores.models import Store

BATCH = 500
LOOKBACK_DAYS = 30  # a trigger looks this far past its delay, so a late job run catches up
DEFAULT_DELIVERY_DELAY = 7
SIG_CHARS = 22  # 132 bits of the HMAC
_TOKEN = re.compile(r"^([A-Za-z0-9_-]{16,32})\.([A-Za-z0-9_-]{22})$")
TEMPLATE_PARAMS: dict[str, dict[str, str]] = {
    "competitor_value": {"competitors": "list of competitor names shown to the customer"},
}
ALREADY_ANSWERED = "This survey link has already been answered; it can be used once."
# What a trigger asks about: (id, customer id, subject, channel) of the orders delivered
# (tickets closed) in [from, until] not yet asked about by the survey, after an id.
Candidates = Callable[
    [Session, int, str, datetime, datetime, int, int], list[tuple[int, int, str, str | None]]
]
TRIGGER_CANDIDATES: dict[Trigger, Candidates] = {
    Trigger.after_delivery: repo.delivered_orders_to_survey,
    Trigger.ticket_closed: repo.closed_tickets_to_survey,
}


class Gone(PatronError):
    status, slug, title = 410, "gone", "Gone"


def lang_of(locale: str | None) -> str:
    """The survey language of a locale: ``zh`` for any Chinese locale, else ``en``."""
    return "zh" if (locale or "").lower().startswith("zh") else "en"


def pick(text: Mapping[str, str] | None, lang: str) -> str | None:
    """A local text in ``lang``, or in the other language when it has only that one."""
    if not text:
        return None
    return text.get(lang) or next(iter(text.values()), None)


def _is_local_text(value: Mapping[str, Any]) -> bool:
    return bool(value) and set(value) <= set(domain.LANGUAGES)


def localize(value: Any, lang: str) -> Any:
    """A dumped definition (or part of one) with every local text in ``lang``."""
    if isinstance(value, Mapping):
        if _is_local_text(value):
            return pick(value, lang)
        return {k: localize(v, lang) for k, v in value.items()}
    if isinstance(value, list):
        return [localize(v, lang) for v in value]
    return value


def public_base(fallback: str | None = None) -> str:
    """Where survey links point: ``PATRON_SURVEY_BASE_URL`` when the settings have it,
    else the caller's base (the API's own URL), else the configured host and port."""
    settings = get_settings()
    configured: str | None = getattr(settings, "survey_base_url", None)
    return (configured or fallback or f"http://{settings.host}:{settings.port}").rstrip("/")


# -- tokens -------------------------------------------------------------------------------


def sign(secret: str, nonce: str) -> str:
    digest = hmac.new(secret.encode(), f"survey-link:{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:SIG_CHARS]


def token_of(store: Store, nonce: str) -> str:
    return f"{nonce}.{sign(store.signing_secret, nonce)}"


def link_of(base: str, store: Store, nonce: str) -> str:
    return f"{base.rstrip('/')}/s/{store.slug}/{token_of(store, nonce)}"


def split_token(token: str) -> tuple[str, str] | None:
    match = _TOKEN.match(token) if len(token) <= 64 else None
    return (match.group(1), match.group(2)) if match else None


def definition_of(survey: Survey) -> domain.SurveyDefinition:
    return domain.SurveyDefinition.model_validate(survey.definition)


def survey_out(s: Survey) -> SurveyOut:
    return SurveyOut(
        key=s.key,
        version=s.version,
        current=s.current,
        active=s.active,
        template=s.template,
        anonymous=s.anonymous,
        trigger=s.trigger,
        delay_days=s.delay_days,
        link_days=s.link_days,
        reminder_days=s.reminder_days,
        max_reminders=s.max_reminders,
        recontact_days=s.recontact_days,
        definition=s.definition,
        created_at=s.created_at,
    )


def _field(field: str, message: str) -> list[dict[str, str]]:
    return [{"field": field, "message": message}]


# -- surveys ------------------------------------------------------------------------------


class SurveyService:
    def templates(self) -> TemplateList:
        """The built-in templates with their definitions (defaults for their options)."""
        return TemplateList(
            items=[
                TemplateOut(
                    name=name,
                    params=TEMPLATE_PARAMS.get(name, {}),
                    definition=template(name).model_dump(mode="json", exclude_none=True),
                )
                for name in TEMPLATE_NAMES
            ]
        )

    def _definition(self, body: SurveySettings) -> domain.SurveyDefinition:
        if body.definition is not None:
            return body.definition
        assert body.template is not None
        if body.template not in TEMPLATE_NAMES:
            message = f"unknown template {body.template!r}; known: {', '.join(TEMPLATE_NAMES)}"
            raise Invalid(f"template: {message}", errors=_field("template", message))
        try:
            return template(body.template, **(body.params or {}))
        except ValidationError as exc:
            problems = [
                {
                    "field": ".".join(["params", *(str(p) for p in e["loc"])]),
                    "message": str(e["msg"]).removeprefix("Value error, "),
                }
                for e in exc.errors()
            ]
            first = problems[0]
            raise Invalid(f"{first['field']}: {first['message']}", errors=problems) from None
        except ValueError as exc:
            message = str(exc)
            raise Invalid(f"params: {message}", errors=_field("params", message)) from None

    def _row(
        self, store: Store, key: str, version: int, body: SurveySettings, now: datetime
    ) -> dict[str, Any]:
        definition = self._definition(body)
        delay = body.delay_days
        if delay is None:
            delay = DEFAULT_DELIVERY_DELAY if body.trigger is Trigger.after_delivery else 0
        return {
            "store_id": store.id,
            "key": key,
            "version": version,
            "current": True,
            "active": True,
            "template": body.template,
            "definition": definition.model_dump(mode="json", exclude_none=True),
            "anonymous": body.anonymous,
            "trigger": body.trigger.value,
            "delay_days": delay,
            "link_days": body.link_days,
            "reminder_days": body.reminder_days,
            "max_reminders": body.max_reminders,
            "recontact_days": body.recontact_days,
            "created_at": now,
        }

    def create(
        self, session: Session, store: Store, body: SurveyIn, now: datetime | None = None
    ) -> SurveyOut:
        """Publish version 1 of a new survey; a key in use is refused (409: update it)."""
        now = as_utc_or_now(now)
        row = self._row(store, body.key, 1, body, now)
        if repo.survey_versions(session, store.id, body.key):
            raise self._taken(body.key)
        survey_id = repo.insert_survey(session, row)
        if survey_id is None:
            raise self._taken(body.key)
        found = repo.survey_by_id(session, store.id, survey_id)
        assert found is not None
        return survey_out(found)

    def _taken(self, key: str) -> Conflict:
        message = f"survey {key!r} exists; PUT /v1/surveys/{key} publishes a new version"
        return Conflict(f"key: {message}", errors=_field("key", message))

    def update(
        self,
        session: Session,
        store: Store,
        key: str,
        body: SurveySettings,
        now: datetime | None = None,
    ) -> tuple[SurveyOut, bool]:
        """Publish a new version of a survey (active again); returns (survey, changed).

        Unchanged settings and questions publish nothing. Links sent for older versions
        keep answering those versions' questions."""
        now = as_utc_or_now(now)
        current = repo.current_survey_for_update(session, store.id, key)
        if current is None:
            if repo.survey_versions(session, store.id, key):
                raise Conflict(f"survey {key!r} was changed concurrently; retry")
            raise self._unknown(key)
        row = self._row(store, key, current.version + 1, body, now)
        same = all(
            getattr(current, name) == (row[name] if name != "trigger" else Trigger(row[name]))
            for name in (
                "template",
                "definition",
                "anonymous",
                "trigger",
                "delay_days",
                "link_days",
                "reminder_days",
                "max_reminders",
                "recontact_days",
            )
        )
        if same and current.active:
            return survey_out(current), False
        survey_id = repo.insert_survey(session, row)
        if survey_id is None:
            raise Conflict(f"survey {key!r} was changed concurrently; retry")
        repo.retire_versions(session, store.id, key, survey_id)
        repo.set_active(session, store.id, key, True)
        session.expire(current)  # written by the UPDATEs above
        found = repo.survey_by_id(session, store.id, survey_id)
        assert found is not None
        return survey_out(found), True

    def _unknown(self, key: str) -> NotFound:
        message = f"no survey {key!r} in this store"
        return NotFound(f"key: {message}", errors=_field("key", message))

    def current(self, session: Session, store: Store, key: str) -> Survey:
        found = repo.current_survey(session, store.id, key)
        if found is None:
            raise self._unknown(key)
        return found

    def get(
        self, session: Session, store: Store, key: str, version: int | None = None
    ) -> SurveyOut:
        if version is None:
            return survey_out(self.current(session, store, key))
        found = repo.survey_version(session, store.id, key, version)
        if found is None:
            message = f"survey {key!r} has no version {version}"
            raise NotFound(f"version: {message}", errors=_field("version", message))
        return survey_out(found)

    def list(self, session: Session, store: Store) -> SurveyList:
        """The current version of every survey."""
        return SurveyList(items=[survey_out(s) for s in repo.current_surveys(session, store.id)])

    def deactivate(self, session: Session, store: Store, key: str) -> SurveyOut:
        """Stop a survey: no new invitations, triggers or deliveries. Links already sent
        can still be answered until they expire."""
        current = self.current(session, store, key)
        repo.set_active(session, store.id, key, False)
        session.refresh(current)
        return survey_out(current)


# -- invitations --------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerRun:
    after_delivery: int = 0
    ticket_closed: int = 0
    skipped: int = 0  # survey fatigue
    reminders: int = 0

    def out(self) -> TriggerRunOut:
        return TriggerRunOut(**asdict(self))


def _invitation_out(
    base: str, store: Store, inv: SurveyInvitation, version: int, external_id: str
) -> InvitationOut:
    return InvitationOut(
        id=inv.id,
        survey_key=inv.survey_key,
        survey_version=version,
        customer_external_id=external_id,
        subject=inv.subject,
        locale=inv.locale,
        channel=inv.channel,
        link=link_of(base, store, inv.nonce),
        created_at=inv.created_at,
        expires_at=inv.expires_at,
        next_send_at=inv.next_send_at,
        sent_count=inv.sent_count,
        last_sent_at=inv.last_sent_at,
        used_at=inv.used_at,
    )


class InvitationService:
    def _insert(
        self,
        session: Session,
        store: Store,
        survey: Survey,
        customer: Customer,
        subject: str,
        channel: str | None,
        locale: str | None,
        now: datetime,
    ) -> int | None:
        return repo.insert_invitation(
            session,
            {
                "store_id": store.id,
                "survey_id": survey.id,
                "survey_key": survey.key,
                "customer_id": customer.id,
                "subject": subject[:128],
                "nonce": secrets.token_urlsafe(16),
                "locale": locale or lang_of(customer.locale or store.locale),
                "channel": channel[:32] if channel else None,
                "created_at": now,
                "expires_at": now + timedelta(days=survey.link_days),
                "next_send_at": now,
                "sent_count": 0,
            },
        )

    def invite(
        self,
        session: Session,
        store: Store,
        survey_key: str,
        customer_external_ids: Sequence[str],
        subject: str | None = None,
        *,
        locale: str | None = None,
        base_url: str | None = None,
        now: datetime | None = None,
    ) -> InviteOut:
        """Invite customers to the current version of a survey, one invitation per
        customer and subject (default ``manual:<store-time date>``).

        Skipped, with the reason: unknown customers, those invited to this survey about
        this subject already, and those invited to any survey within the survey's
        ``recontact_days`` (survey fatigue). Consent is not checked here: delivering the
        links is the sender's job, on the channels the customer agreed to."""
        now = as_utc_or_now(now)
        survey = surveys.current(session, store, survey_key)
        if not survey.active:
            message = f"survey {survey_key!r} is deactivated"
            raise Conflict(f"key: {message}", errors=_field("key", message))
        subject = subject or f"manual:{local_date(now, store.timezone).isoformat()}"
        base = public_base(base_url)
        wanted = list(dict.fromkeys(customer_external_ids))
        found = customers_repo.by_external_ids(session, store.id, wanted)
        ids = [c.id for c in found.values()]
        done = repo.invited_subjects(session, store.id, survey.key, subject, ids)
        tired = (
            repo.invited_since(session, store.id, ids, now - timedelta(days=survey.recontact_days))
            if survey.recontact_days > 0
            else set()
        )
        invited: list[InvitationOut] = []
        skipped: list[Skipped] = []
        for ext in wanted:
            customer = found.get(ext)
            if customer is None:
                skipped.append(Skipped(customer_external_id=ext, reason="unknown_customer"))
                continue
            if customer.id in done:
                skipped.append(
                    Skipped(
                        customer_external_id=ext,
                        reason="already_invited",
                        detail=f"already invited to {survey.key!r} about {subject!r}",
                    )
                )
                continue
            if customer.id in tired:
                skipped.append(
                    Skipped(
                        customer_external_id=ext,
                        reason="recently_invited",
                        detail=f"invited to a survey within {survey.recontact_days} days",
                    )
                )
                continue
            new_id = self._insert(session, store, survey, customer, subject, None, locale, now)
            if new_id is None:  # a concurrent call invited them first
                skipped.append(Skipped(customer_external_id=ext, reason="already_invited"))
                continue
            row = repo.invitation(session, store.id, new_id)
            assert row is not None
            invited.append(_invitation_out(base, store, row, survey.version, ext))
            if survey.recontact_days > 0:
                tired.add(customer.id)
        return InviteOut(invited=invited, skipped=skipped)

    # -- triggers -------------------------------------------------------------------------

    def run_triggers(
        self, session: Session, store: Store, now: datetime | None = None
    ) -> TriggerRun:
        """Invite for delivered orders and closed tickets, and make reminders due.

        Idempotent: an order or ticket is asked about once per survey (its subject,
        ``order:<external id>`` or ``ticket:<id>``, is unique per customer and survey).
        Candidates are looked for ``LOOKBACK_DAYS`` past the delay, so a job that did not
        run for a while catches up; a customer caught by survey fatigue is tried again on
        later runs while the candidate is in that window."""
        now = as_utc_or_now(now)
        repo.lock_job(session, store.id)
        invited = dict.fromkeys(TRIGGER_CANDIDATES, 0)
        skipped = 0
        for survey in repo.current_surveys(session, store.id, active_only=True):
            if survey.trigger in TRIGGER_CANDIDATES:
                n, s = self._triggered(session, store, survey, now)
                invited[survey.trigger] += n
                skipped += s
        reminders = self.remind(session, store, now)
        return TriggerRun(
            invited[Trigger.after_delivery], invited[Trigger.ticket_closed], skipped, reminders
        )

    def _window(self, survey: Survey, now: datetime) -> tuple[datetime, datetime]:
        until = now - timedelta(days=survey.delay_days)
        return until - timedelta(days=LOOKBACK_DAYS), until

    def _candidates(
        self,
        session: Session,
        store: Store,
        survey: Survey,
        rows: Sequence[tuple[int, int, str, str | None]],
        tired: set[int],
        now: datetime,
    ) -> tuple[int, int]:
        """Invite for each (id, customer id, subject, channel) unless fatigue stops it."""
        customers = rows_by_id(session, Customer, store.id, [cid for _, cid, _, _ in rows])
        if survey.recontact_days > 0:
            since = now - timedelta(days=survey.recontact_days)
            tired |= repo.invited_since(session, store.id, list(customers), since)
        invited = skipped = 0
        for _, customer_id, subject, channel in rows:
            customer = customers.get(customer_id)
            if customer is None:
                continue
            if customer_id in tired:
                skipped += 1
                continue
            if self._insert(session, store, survey, customer, subject, channel, None, now):
                invited += 1
                if survey.recontact_days > 0:
                    tired.add(customer_id)
        return invited, skipped

    def _triggered(
        self, session: Session, store: Store, survey: Survey, now: datetime
    ) -> tuple[int, int]:
        """Invite for the orders delivered (or tickets closed) in the survey's window, a
        batch at a time; returns (invited, skipped for fatigue)."""
        candidates = TRIGGER_CANDIDATES[survey.trigger]
        start, end = self._window(survey, now)
        invited = skipped = after = 0
        tired: set[int] = set()
        while batch := candidates(session, store.id, survey.key, start, end, after, BATCH):
            after = batch[-1][0]
            n, s = self._candidates(session, store, survey, batch, tired, now)
            invited, skipped = invited + n, skipped + s
        return invited, skipped

    def remind(self, session: Session, store: Store, now: datetime | None = None) -> int:
        """Unanswered invitations whose last delivery is ``reminder_days`` old, with
        reminders left (``sent_count <= max_reminders``), become due again. Idempotent:
        a due invitation is not touched until it is sent."""
        now = as_utc_or_now(now)
        total = 0
        for survey in repo.reminding_surveys(session, store.id):
            assert survey.reminder_days is not None
            total += repo.schedule_reminders(
                session,
                store.id,
                survey.id,
                survey.max_reminders,
                now - timedelta(days=survey.reminder_days),
                now,
            )
        return total

    # -- the outbox -----------------------------------------------------------------------

    def due(
        self,
        session: Session,
        store: Store,
        now: datetime | None = None,
        limit: int = 100,
        *,
        after: int | None = None,
        base_url: str | None = None,
    ) -> DuePage:
        """Invitations to deliver now (first sends and reminders) with their link and the
        customer's contact; mark each delivery with ``mark_sent``."""
        now = as_utc_or_now(now)
        base = public_base(base_url)
        rows = repo.due_invitations(session, store.id, now, limit, after)
        return DuePage(
            items=[
                DueItem(
                    invitation_id=inv.id,
                    survey_key=inv.survey_key,
                    customer_external_id=customer.external_id,
                    email=customer.email,
                    phone=customer.phone,
                    locale=inv.locale,
                    subject=inv.subject,
                    link=link_of(base, store, inv.nonce),
                    reminder=inv.sent_count > 0,
                    sent_count=inv.sent_count,
                    expires_at=inv.expires_at,
                )
                for inv, _, customer in rows
            ],
            next_after=rows[-1][0].id if len(rows) == limit else None,
        )

    def mark_sent(
        self,
        session: Session,
        store: Store,
        invitation_id: int,
        now: datetime | None = None,
        *,
        base_url: str | None = None,
    ) -> InvitationOut:
        """Record a delivery: ``sent_count`` + 1, ``last_sent_at``, no longer due. Marking
        an invitation that is not due (a retried call) changes nothing."""
        now = as_utc_or_now(now)
        inv = repo.invitation(session, store.id, invitation_id)
        if inv is None:
            message = f"no survey invitation {invitation_id} in this store"
            raise NotFound(f"id: {message}", errors=_field("id", message))
        if repo.mark_sent(session, store.id, invitation_id, now):
            session.refresh(inv)
        survey = repo.survey_by_id(session, store.id, inv.survey_id)
        ids = external_ids_by_id(session, Customer, store.id, [inv.customer_id])
        ext = ids.get(inv.customer_id, "")
        return _invitation_out(
            public_base(base_url), store, inv, survey.version if survey else 0, ext
        )


# -- responses ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    store: Store
    survey: Survey
    invitation: SurveyInvitation
    definition: domain.SurveyDefinition


def _answer_row(store_id: int, response_id: int, a: domain.Answer) -> dict[str, Any]:
    data: dict[str, Any] | None = None
    value = a.value
    if a.type == "expectation_experience" and a.expectation is not None:
        assert a.experience is not None
        value = float(a.experience - a.expectation)
        data = {"level": domain.gap_level(a.expectation, a.experience).value}
    elif a.type == "comparison":
        data = {
            "ratings": dict(a.ratings),
            "cost": a.cost,
            "k": {repo.party_key(p): r for p, r in a.ratings.items()},
        }
    elif a.type in ("single_choice", "multiple_choice"):
        data = {"choices": list(a.choices)}
    elif a.type == "text":
        data = {"text": a.text}
    return {
        "store_id": store_id,
        "response_id": response_id,
        "question_id": a.question_id,
        "question_type": a.type,
        "attribute": a.attribute,
        "value": value,
        "expectation": a.expectation,
        "experience": a.experience,
        "importance": a.importance,
        "data": data,
    }


def problems_of(exc: domain.AnswerError) -> Invalid:
    errors = [{"field": f"answers.{p['question']}", "message": p["message"]} for p in exc.problems]
    first = errors[0] if errors else {"field": "answers", "message": "invalid"}
    return Invalid(f"{first['field']}: {first['message']}", errors=errors)


class ResponseService:
    def open_link(
        self, session: Session, token: str, now: datetime | None = None, *, slug: str | None = None
    ) -> Link:
        """The store, survey version and invitation of a link.

        Raises 404 for a token that is malformed, unknown or badly signed (or of another
        store than ``slug``), 409 when it was answered, 410 when it expired."""
        now = as_utc_or_now(now)
        genuine = self._genuine(session, token)
        if genuine is None or (slug is not None and slug != genuine[1].slug):
            raise NotFound("No such survey link: check that the whole link was copied.")
        inv, store = genuine
        if inv.used_at is not None:
            raise Conflict(ALREADY_ANSWERED)
        if inv.expires_at <= now:
            raise Gone("This survey link has expired.")
        survey = repo.survey_by_id(session, store.id, inv.survey_id)
        if survey is None:  # pragma: no cover - cascades with its invitations
            raise NotFound("No such survey link.")
        return Link(store, survey, inv, definition_of(survey))

    def locale(self, session: Session, token: str) -> str | None:
        """The language of a genuine link's invitation, used or expired alike (to refuse
        it in the customer's language); None for an unknown or tampered token."""
        genuine = self._genuine(session, token)
        return genuine[0].locale if genuine is not None else None

    def _genuine(self, session: Session, token: str) -> tuple[SurveyInvitation, Store] | None:
        """The invitation of a token and its store, if the token is well formed, its
        nonce known and its signature the store's; None otherwise."""
        parts = split_token(token)
        inv = repo.invitation_by_nonce(session, parts[0]) if parts else None
        store = session.get(Store, inv.store_id) if inv is not None else None
        if parts is None or inv is None or store is None:
            return None
        if not hmac.compare_digest(sign(store.signing_secret, parts[0]), parts[1]):
            return None
        return inv, store

    def view(
        self, session: Session, token: str, lang: str | None = None, now: datetime | None = None
    ) -> LinkOut:
        """The survey of a link, its texts in ``lang`` (default: the invitation's)."""
        link = self.open_link(session, token, now)
        lang = lang or link.invitation.locale
        d = link.definition
        dumped = d.model_dump(mode="json", exclude_none=True)
        return LinkOut(
            survey_key=link.survey.key,
            version=link.survey.version,
            locale=lang,
            anonymous=link.survey.anonymous,
            title=pick(d.title, lang) or "",
            intro=pick(d.intro, lang),
            thanks=pick(d.thanks, lang),
            questions=[localize(q, lang) for q in dumped["questions"]],
            expires_at=link.invitation.expires_at,
        )

    def submit(
        self,
        session: Session,
        token: str,
        raw_answers: Mapping[str, Any],
        locale: str | None = None,
        now: datetime | None = None,
        *,
        slug: str | None = None,
    ) -> ResponseOut:
        """Record the one response of a link (see the module's docstring): 404/409/410 as
        ``open_link``, 422 listing every problem of the answers."""
        now = as_utc_or_now(now)
        link = self.open_link(session, token, now, slug=slug)
        try:
            answers = domain.validate_answers(link.definition, raw_answers)
        except domain.AnswerError as exc:
            raise problems_of(exc) from None
        return self.record(session, link, answers, locale, now)

    def record(
        self,
        session: Session,
        link: Link,
        answers: Sequence[domain.Answer],
        locale: str | None,
        now: datetime,
    ) -> ResponseOut:
        store, survey, inv = link.store, link.survey, link.invitation
        anonymous = survey.anonymous
        # An anonymous response is stamped to the hour (and so is its invitation's use),
        # so the two cannot be matched by their instants.
        when = now.replace(minute=0, second=0, microsecond=0) if anonymous else now
        if not repo.claim(session, inv.id, when):
            raise Conflict(ALREADY_ANSWERED)
        tier, segment = self._context(session, store, inv.customer_id)
        response = SurveyResponse(
            store_id=store.id,
            survey_id=survey.id,
            survey_key=survey.key,
            invitation_id=None if anonymous else inv.id,
            customer_id=None if anonymous else inv.customer_id,
            submitted_at=when,
            locale=lang_of(locale or inv.locale),
            channel=inv.channel,
            tier=tier,
            segment=segment,
            subject=None if anonymous else inv.subject,
        )
        try:
            add_and_flush(session, response)
        except sa_exc.IntegrityError:  # the second guard: UNIQUE(invitation_id)
            raise Conflict(ALREADY_ANSWERED) from None
        repo.insert_answers(session, [_answer_row(store.id, response.id, a) for a in answers])
        if not anonymous:
            nps = next((a.value for a in answers if a.type == "nps"), None)
            customers_repo.insert_touchpoints(
                session,
                [
                    {
                        "store_id": store.id,
                        "customer_id": inv.customer_id,
                        "kind": TouchpointKind.survey_answer.value,
                        "occurred_at": now,
                        "ref": inv.subject[:128],
                        "data": {
                            "survey_key": survey.key,
                            "version": survey.version,
                            "response_id": response.id,
                            **({"nps": nps} if nps is not None else {}),
                        },
                    }
                ],
            )
            response.ticket_id = self._close_loop(session, link, response, answers, now)
            session.flush()
        return ResponseOut(
            id=response.id,
            survey_key=survey.key,
            version=survey.version,
            submitted_at=when,
            thanks=pick(link.definition.thanks, response.locale or "en"),
        )

    def _context(
        self, session: Session, store: Store, customer_id: int
    ) -> tuple[str | None, str | None]:
        """The member's tier and RFM segment now (for scores by tier and segment)."""
        tier = membership.member_tier(session, store.id, customer_id)
        if tier is None:
            program = active_program(session, store)
            tier = program.tiers[0].code if program is not None and program.tiers else None
        return tier, repo.segment_of(session, store.id, customer_id)

    def _close_loop(
        self,
        session: Session,
        link: Link,
        response: SurveyResponse,
        answers: Sequence[domain.Answer],
        now: datetime,
    ) -> int | None:
        """Open a follow-up ticket for a detractor or a very dissatisfied pair."""
        reasons = unhappy(link.definition, answers)
        if not reasons.any:
            return None
        from patron.support.models import Priority, TicketChannel
        from patron.support.service import tickets

        inv = link.invitation
        subject = inv.subject
        order = subject.removeprefix("order:") if subject.startswith("order:") else None
        ticket, _ = tickets.open_for_customer(
            session,
            link.store,
            customer_id=inv.customer_id,
            channel=TicketChannel.survey,
            subject=reasons.title(link.survey.key)[:255],
            body=reasons.body(answers, link.definition),
            source="survey",
            source_ref=f"survey-response:{response.id}",
            priority=Priority.high if reasons.very_dissatisfied else None,
            order_external_id=order,
            now=now,
        )
        return ticket.id


@dataclass(frozen=True)
class Unhappy:
    nps: float | None  # the score of a detractor
    very_dissatisfied: tuple[str, ...]  # attributes

    @property
    def any(self) -> bool:
        return self.nps is not None or bool(self.very_dissatisfied)

    def title(self, key: str) -> str:
        parts = []
        if self.nps is not None:
            parts.append(f"detractor (NPS {self.nps:g})")
        if self.very_dissatisfied:
            parts.append("very dissatisfied with " + ", ".join(self.very_dissatisfied))
        return f"Survey {key}: " + "; ".join(parts)

    def body(self, answers: Iterable[domain.Answer], definition: domain.SurveyDefinition) -> str:
        lines = ["A customer's survey answers call for a follow-up (closing the loop)."]
        for a in answers:
            q = definition.question(a.question_id)
            label = pick(q.text, "en") if q is not None else a.question_id
            if a.type == "expectation_experience":
                assert a.expectation is not None and a.experience is not None
                level = domain.gap_level(a.expectation, a.experience)
                shown = (
                    f"expected {a.expectation}, experienced {a.experience} "
                    f"({domain.GAP_LABELS[level]['en'].lower()})"
                )
                lines.append(f"- {a.attribute}: {shown}")
            elif a.value is not None:
                lines.append(f"- {a.question_id}: {a.value:g} — {label}")
            elif a.text:
                lines.append(f"- {a.question_id}: “{a.text}”")
            elif a.choices:
                lines.append(f"- {a.question_id}: {', '.join(a.choices)}")
        return "\n".join(lines)[:10_000]


def unhappy(definition: domain.SurveyDefinition, answers: Iterable[domain.Answer]) -> Unhappy:
    """Why a response needs a follow-up: an NPS of 0–6, and the attributes whose
    expectation/experience pair is at the very dissatisfied level."""
    nps: float | None = None
    attributes: list[str] = []
    for a in answers:
        if a.type == "nps" and a.value is not None and a.value <= 6:
            nps = a.value if nps is None else min(nps, a.value)
        if (
            a.type == "expectation_experience"
            and a.expectation is not None
            and a.experience is not None
            and domain.gap_level(a.expectation, a.experience) is domain.GapLevel.very_dissatisfied
        ):
            attributes.append(a.attribute or a.question_id)
    return Unhappy(nps, tuple(attributes))


surveys = SurveyService()
invitations = InvitationService()
responses = ResponseService()


def run_triggers(session: Session, store: Store, now: datetime | None = None) -> TriggerRun:
    """The feedback job of one store: invitations for delivered orders (``after_delivery``
    surveys) and closed tickets (``ticket_closed``), within survey fatigue; reminders
    made due. Idempotent; flushes, never commits."""
    return invitations.run_triggers(session, store, now)
