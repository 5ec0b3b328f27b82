"""Customer-facing pages of permission marketing, credentialed by the signed token in
the path (no login, no script, inline CSS, mobile-first, ``?lang=en|zh``).

- ``GET /c/{store}/{token}``: confirms an email opt-in (double opt-in); idempotent.
- ``GET /u/{store}/{token}``: the preference page, a switch per channel.
- ``POST /u/{store}/{token}``: with the body ``List-Unsubscribe=One-Click`` (RFC 8058, as
  a mail client sends it) unsubscribes the link's channel; otherwise saves the form of
  the preference page (``channel`` repeated for each channel left on).

Statuses: 200 a page, 404 an unknown or tampered link, 410 an expired confirmation.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from patron.auth import SessionDep
from patron.campaigns import repository as repo
from patron.campaigns.consent import UnsubscribeLink, address_of, consents
from patron.customers.models import Channel
from patron.errors import PatronError
from patron.kit.clock import utcnow
from patron.web.pages import LangQuery, environment

router = APIRouter(include_in_schema=False)
LANGUAGES = ("en", "zh")
MAX_FIELDS = 20

ENV = environment("patron.campaigns")

UI: dict[str, dict[str, str]] = {
    "en": {
        "language": "中文",
        "confirm_title": "Confirm your subscription",
        "confirm_intro": "Please confirm that you want to receive our emails at this address.",
        "confirm": "Yes, subscribe me",
        "confirmed_title": "Subscription confirmed",
        "confirmed": "Thank you! You will receive our emails at this address.",
        "already_title": "Already confirmed",
        "already": "This address was already confirmed. Nothing else to do.",
        "expired_title": "This link has expired",
        "expired": "Please sign up again to receive a new confirmation link.",
        "missing_title": "Link not found",
        "missing": "This link is not valid. Please check that the whole link was copied.",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed": "You will no longer receive these messages.",
        "prefs_title": "Your communication preferences",
        "prefs_intro": "Choose how we may contact you. You can change this at any time.",
        "saved": "Your preferences have been saved.",
        "save": "Save my preferences",
        "email": "Email",
        "sms": "Text messages (SMS)",
        "push": "App notifications",
        "wechat": "WeChat messages",
        "on": "On",
        "pending": "waiting for your confirmation email",
    },
    "zh": {
        "language": "English",
        "confirm_title": "确认订阅",
        "confirm_intro": "请确认您希望通过此邮箱接收我们的邮件。",
        "confirm": "确认订阅",
        "confirmed_title": "订阅已确认",
        "confirmed": "谢谢!我们将通过此邮箱与您联系。",
        "already_title": "已确认",
        "already": "此邮箱已确认,无需其他操作。",
        "expired_title": "链接已过期",
        "expired": "请重新订阅以获取新的确认链接。",
        "missing_title": "未找到链接",
        "missing": "此链接无效,请确认链接已完整复制。",
        "unsubscribed_title": "已退订",
        "unsubscribed": "您将不再收到此类消息。",
        "prefs_title": "消息订阅设置",
        "prefs_intro": "请选择我们可以联系您的方式,您可以随时更改。",
        "saved": "您的设置已保存。",
        "save": "保存设置",
        "email": "电子邮件",
        "sms": "短信",
        "push": "App 推送通知",
        "wechat": "微信消息",
        "on": "开启",
        "pending": "等待您确认邮件",
    },
}


def _lang(value: str | None, locale: str | None = None) -> str:
    if value in LANGUAGES:
        return str(value)
    return "zh" if (locale or "").lower().startswith("zh") else "en"


def _html(name: str, status: int, lang: str, **context: Any) -> HTMLResponse:
    body = ENV.get_template(name).render(
        lang=lang, other="zh" if lang == "en" else "en", ui=UI[lang], **context
    )
    return HTMLResponse(body, status_code=status)


def _message(kind: str, status: int, lang: str, store: str = "") -> HTMLResponse:
    ui = UI[lang]
    return _html(
        "message.html", status, lang, store=store, title=ui[f"{kind}_title"], text=ui[kind]
    )


def _failure(exc: PatronError, lang: str) -> HTMLResponse:
    return _message("expired", 410, lang) if exc.status == 410 else _message("missing", 404, lang)


@router.get("/c/{store_slug}/{token}", response_class=HTMLResponse)
def confirm_page(
    store_slug: str, token: str, session: SessionDep, lang: LangQuery = None
) -> HTMLResponse:
    """Ask the customer to confirm an e-mail opt-in with a button. Opening the link
    changes nothing: mail scanners open links, and only the customer may confirm."""
    try:
        store, already = consents.confirm(session, store_slug, token, utcnow(), apply=False)
    except PatronError as exc:
        known = repo.store_by_slug(session, store_slug)
        return _failure(exc, _lang(lang, known.locale if known else None))
    lang = _lang(lang, store.locale)
    if already:
        return _message("already", 200, lang, store.name)
    return _html("confirm.html", 200, lang, store=store.name)


@router.post("/c/{store_slug}/{token}", response_class=HTMLResponse)
def confirm(
    store_slug: str, token: str, session: SessionDep, lang: LangQuery = None
) -> HTMLResponse:
    """Confirm an e-mail opt-in (idempotent: confirming again says so)."""
    try:
        store, already = consents.confirm(session, store_slug, token, utcnow())
    except PatronError as exc:
        known = repo.store_by_slug(session, store_slug)
        return _failure(exc, _lang(lang, known.locale if known else None))
    lang = _lang(lang, store.locale)
    return _message("already" if already else "confirmed", 200, lang, store.name)


def _preferences(
    session: Session, link: UnsubscribeLink, lang: str, saved: bool = False
) -> HTMLResponse:
    states = consents.state(session, link.store, link.customer)
    channels = [
        {
            "value": s.channel.value,
            "label": UI[lang][s.channel.value],
            "on": s.granted and not s.suppressed,
            "pending": s.granted and s.confirmed is False and not s.suppressed,
        }
        for s in states
        if address_of(link.customer, s.channel) is not None
    ]
    return _html(
        "preferences.html",
        200,
        lang,
        store=link.store.name,
        channels=channels,
        saved=saved,
    )


@router.get("/u/{store_slug}/{token}", response_class=HTMLResponse)
def preferences_page(
    store_slug: str, token: str, session: SessionDep, lang: LangQuery = None
) -> HTMLResponse:
    """The preference page of an unsubscribe link."""
    try:
        link = consents.open_unsubscribe(session, store_slug, token)
    except PatronError as exc:
        return _failure(exc, _lang(lang))
    return _preferences(session, link, _lang(lang, link.customer.locale))


async def posted_form(request: Request) -> FormData:
    """The posted fields (urlencoded or multipart, as mail clients send RFC 8058)."""
    return await request.form(max_files=0, max_fields=MAX_FIELDS)


@router.post("/u/{store_slug}/{token}", response_class=HTMLResponse)
def unsubscribe_post(
    store_slug: str,
    token: str,
    session: SessionDep,
    form: Annotated[FormData, Depends(posted_form)],
    lang: LangQuery = None,
) -> HTMLResponse:
    """One-click unsubscribe (RFC 8058), or the preference page's form."""
    try:
        link = consents.open_unsubscribe(session, store_slug, token)
    except PatronError as exc:
        return _failure(exc, _lang(lang))
    lang = _lang(lang, link.customer.locale)
    now = utcnow()
    if form.get("List-Unsubscribe") == "One-Click":
        consents.withdraw(
            session, link.store, link.customer, link.channel, "one_click", now, suppress=True
        )
        return _message("unsubscribed", 200, lang, link.store.name)
    chosen = {v for k, v in form.multi_items() if k == "channel" and isinstance(v, str)}
    for state in consents.state(session, link.store, link.customer):
        channel = state.channel
        if address_of(link.customer, channel) is None:
            continue
        wanted = channel.value in chosen
        if wanted and not (state.granted and not state.suppressed):
            # The link proves the address it was sent to, and only that one: email
            # switched on from an SMS link still waits for its confirmation.
            proven = channel is not Channel.email or link.channel is Channel.email
            consents.grant_from_link(session, link.store, link.customer, channel, proven, now)
        elif not wanted and state.granted:
            consents.withdraw(
                session, link.store, link.customer, channel, "preferences", now, suppress=True
            )
    return _preferences(session, link, lang, saved=True)
