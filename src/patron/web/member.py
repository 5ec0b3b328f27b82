"""The member page: ``/m/{store slug}/…``, a customer's own loyalty account on a phone.

The store's site asks the API for a member token (``POST /v1/customers/{id}/member-token``)
and sends the customer to ``/m/{store}/enter?token=pm_…``: the token is checked, kept in
an HttpOnly cookie scoped to ``/m/{store}`` and the browser is sent on (303) to the home
page, so the token leaves the address bar and the history. Every page reads the cookie;
a missing, expired, tampered or other store's token answers a bilingual 401 page.

Pages (server-rendered, no script needed, inline CSS, ``?lang=en|zh``):

- ``GET /m/{store}``: points (spendable, pending with the day they mature, expiring
  soon), growth, tier with progress and benefits, daily check-in, referral link and the
  surveys waiting for an answer.
- ``GET /m/{store}/history``: the ledger, newest first, ``?before=<id>`` pages on.
- ``GET /m/{store}/rewards``: the rewards mall and the member's redemptions.
- ``GET /m/{store}/rewards/{reward}``: the confirmation step (a one-time key in its form).
- ``POST /m/{store}/rewards/{reward}``: redeems once per key, then 303 to the result.
- ``GET /m/{store}/redemptions/{id}``: a redemption's result (its coupon code, ...).
- ``POST /m/{store}/check-in``: today's check-in, then 303 home.

Every form carries a CSRF token (an HMAC of the cookie's token under the store's signing
secret): a post without the right one answers 403 and changes nothing. Services are
called directly (the same ones the ``/v1/me/…`` API uses).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from patron.auth import SessionDep, issue_member_token, verify_member_token
from patron.config import get_settings
from patron.customers.models import Customer
from patron.errors import Conflict, PatronError, Unauthorized
from patron.feedback.models import Survey, SurveyInvitation
from patron.feedback.service import pick, token_of
from patron.kit.clock import as_utc, utcnow, zone
from patron.kit.money import exponent, from_minor
from patron.loyalty import actions, membership
from patron.loyalty import repository as ledger_repo
from patron.loyalty.models import (
    Currency,
    EntryKind,
    LoyaltyAccount,
    LoyaltyLot,
    LoyaltyMember,
)
from patron.loyalty.orders import active_program
from patron.loyalty.program import (
    CouponReward,
    EventKind,
    LocalText,
    LuckyDrawReward,
    PointsAsCashReward,
    PointsPlusCashReward,
    ProgramConfig,
    Reward,
    TierDef,
)
from patron.loyalty.rules import EarnEvent, MemberContext, evaluate
from patron.loyalty.service import EntryView, ledger
from patron.referrals.service import referrals
from patron.rewards.domain import Refusal, Why
from patron.rewards.models import CouponStatus, RedemptionStatus
from patron.rewards.service import CatalogueItem, Redeemed, rewards
from patron.stores.models import Store
from patron.web.i18n import accept_language, language_of_locale
from patron.web.pages import LangQuery, environment

router = APIRouter(include_in_schema=False)
ENV = environment("patron.web")
LANGUAGES = ("en", "zh")
COOKIE = "patron_member"
LANG_COOKIE = "patron_lang"
HISTORY_PAGE = 20
MAX_PENDING_DAYS = 3  # the next days pending points mature on
EXPIRING_WITHIN = timedelta(days=30)
MAX_FIELDS = 20
MAX_TOKEN = 1024  # a member token is ~100 characters
Slug = Annotated[str, Path(min_length=1, max_length=64)]
RewardId = Annotated[str, Path(min_length=1, max_length=64)]
Before = Annotated[int | None, Query(ge=1, le=2**62)]
SECTIONS = {
    "home.html": "home",
    "history.html": "history",
    "rewards.html": "rewards",
    "confirm.html": "rewards",
    "result.html": "rewards",
}

UI: dict[str, dict[str, str]] = {
    "en": {
        "language": "中文",
        "title": "My membership",
        "nav_home": "Home",
        "nav_history": "Points history",
        "nav_rewards": "Rewards",
        "points": "Points",
        "spendable": "available to spend",
        "pending": "pending",
        "pending_note": "{points} points become available on {day}",
        "expiring": "{points} points expire on {day}",
        "debt": "{points} points owed (paid back by your next points)",
        "growth": "Growth",
        "tier": "Your tier",
        "since": "since {day}",
        "top": "You are at the top tier.",
        "benefits": "Your benefits",
        "no_benefits": "Earn growth to reach the next tier and unlock benefits.",
        "b_multiplier": "×{x} points on every order",
        "b_price": "{off}% off member prices",
        "b_shipping": "Free shipping",
        "b_birthday": "{points} birthday points",
        "b_member_only": "Members-only rewards",
        "check_in": "Daily check-in",
        "check_in_button": "Check in: +{points} points",
        "checked_in": "Checked in today: +{points} points",
        "checked_in_button": "Checked in today",
        "streak": "Streak: {days} day(s)",
        "referral": "Invite friends",
        "referral_note": "Share your link: a friend who orders earns you {points} points.",
        "referral_plain": "Share your link with friends.",
        "referral_stats": "{invited} invited, {points} points earned",
        "copy_link": "Copy",
        "copied": "Copied",
        "surveys": "Tell us what you think",
        "survey_until": "open until {day}",
        "history": "Points history",
        "history_empty": "No points yet.",
        "older": "Older entries",
        "newest": "Newest entries",
        "growth_unit": "growth",
        "points_unit": "points",
        "matures": "available {day}",
        "mall": "Rewards",
        "mall_empty": "No rewards at the moment.",
        "cost": "{points} points",
        "cost_cash": "{points} points + {cash}",
        "stock_left": "{n} left",
        "redeem": "Redeem",
        "at_checkout": "Use your points at checkout: {n} points = {one}.",
        "confirm_title": "Confirm your redemption",
        "confirm_text": "Redeem “{name}” for {points} points?",
        "confirm_balance": "Your points after: {after}",
        "confirm": "Yes, redeem",
        "cancel": "Back to rewards",
        "done_title": "Redeemed!",
        "code": "Your coupon code",
        "valid": "Valid {start} to {end}",
        "coupon_fixed": "{amount} off",
        "coupon_percent": "{percent}% off",
        "min_spend": "on orders from {amount}",
        "gift": "Your gift will be prepared for you.",
        "cash_due": "To pay at checkout: {cash}",
        "prize": "You won: {name}",
        "prize_points": "{points} points have been added to your balance.",
        "no_prize": "No prize this time — thanks for playing!",
        "spent": "{points} points used. Balance: {balance} points.",
        "my_redemptions": "My redemptions",
        "no_redemptions": "You have not redeemed anything yet.",
        "s_active": "ready to use",
        "s_used": "used",
        "s_void": "cancelled",
        "s_completed": "done",
        "s_cancelled": "cancelled",
        "why_member_only": "For members only",
        "why_tier": "For {tiers} members",
        "why_limit_reached": "Limit reached",
        "why_out_of_stock": "Out of stock",
        "why_not_enough_points": "{n} more points needed",
        "why_inactive": "Not available",
        "failed_title": "Not redeemed",
        "failed": "Nothing was redeemed and your points are unchanged.",
        "key_reused": "This confirmation was already used for something else. Please try again.",
        "auth_title": "Please sign in again",
        "auth": "This member link has expired or is not valid. Open your membership page "
        "again from the store's website or app.",
        "csrf_title": "Please try again",
        "csrf": "This form has expired or was not sent from your membership page. "
        "Nothing was changed.",
        "missing_title": "Not found",
        "missing": "This page does not exist.",
        "no_program": "This store has no loyalty programme at the moment.",
        "back": "Back to my membership",
    },
    "zh": {
        "language": "English",
        "title": "我的会员",
        "nav_home": "首页",
        "nav_history": "积分明细",
        "nav_rewards": "积分商城",
        "points": "积分",
        "spendable": "可用积分",
        "pending": "待生效",
        "pending_note": "{points} 积分将于 {day} 生效",
        "expiring": "{points} 积分将于 {day} 过期",
        "debt": "待抵扣 {points} 积分(将从新获得的积分中扣除)",
        "growth": "成长值",
        "tier": "会员等级",
        "since": "自 {day} 起",
        "top": "您已是最高等级。",
        "benefits": "我的权益",
        "no_benefits": "累积成长值升级,即可解锁更多权益。",
        "b_multiplier": "购物享 {x} 倍积分",
        "b_price": "会员价 {off}% 折扣",
        "b_shipping": "免运费",
        "b_birthday": "生日礼 {points} 积分",
        "b_member_only": "会员专享礼品",
        "check_in": "每日签到",
        "check_in_button": "签到领 {points} 积分",
        "checked_in": "今日已签到:+{points} 积分",
        "checked_in_button": "今日已签到",
        "streak": "已连续签到 {days} 天",
        "referral": "邀请好友",
        "referral_note": "分享您的专属链接,好友下单后您可获得 {points} 积分。",
        "referral_plain": "把您的专属链接分享给好友。",
        "referral_stats": "已邀请 {invited} 人,获得 {points} 积分",
        "copy_link": "复制",
        "copied": "已复制",
        "surveys": "邀请您评价",
        "survey_until": "{day} 前有效",
        "history": "积分明细",
        "history_empty": "暂无积分记录。",
        "older": "更早的记录",
        "newest": "最新记录",
        "growth_unit": "成长值",
        "points_unit": "积分",
        "matures": "{day} 生效",
        "mall": "积分商城",
        "mall_empty": "暂无可兑换的礼品。",
        "cost": "{points} 积分",
        "cost_cash": "{points} 积分 + {cash}",
        "stock_left": "剩余 {n} 件",
        "redeem": "兑换",
        "at_checkout": "结账时可用积分抵现:{n} 积分 = {one}。",
        "confirm_title": "确认兑换",
        "confirm_text": "确定用 {points} 积分兑换“{name}”吗?",
        "confirm_balance": "兑换后剩余积分:{after}",
        "confirm": "确认兑换",
        "cancel": "返回积分商城",
        "done_title": "兑换成功!",
        "code": "您的优惠券码",
        "valid": "有效期 {start} 至 {end}",
        "coupon_fixed": "立减 {amount}",
        "coupon_percent": "{percent}% 折扣",
        "min_spend": "满 {amount} 可用",
        "gift": "我们将为您准备礼品。",
        "cash_due": "结账时需支付:{cash}",
        "prize": "恭喜您获得:{name}",
        "prize_points": "{points} 积分已存入您的账户。",
        "no_prize": "很遗憾没有中奖,谢谢参与!",
        "spent": "已使用 {points} 积分,剩余 {balance} 积分。",
        "my_redemptions": "我的兑换",
        "no_redemptions": "您还没有兑换记录。",
        "s_active": "可使用",
        "s_used": "已使用",
        "s_void": "已作废",
        "s_completed": "已完成",
        "s_cancelled": "已取消",
        "why_member_only": "会员专享",
        "why_tier": "{tiers}专享",
        "why_limit_reached": "已达兑换上限",
        "why_out_of_stock": "已兑完",
        "why_not_enough_points": "还差 {n} 积分",
        "why_inactive": "暂不可兑换",
        "failed_title": "兑换未成功",
        "failed": "未进行任何兑换,您的积分没有变化。",
        "key_reused": "此确认已被使用,请重新兑换。",
        "auth_title": "请重新登录",
        "auth": "此会员链接已过期或无效,请从商家网站或 App 重新打开会员页面。",
        "csrf_title": "请重试",
        "csrf": "此表单已过期或并非从您的会员页面提交,未做任何更改。",
        "missing_title": "未找到",
        "missing": "此页面不存在。",
        "no_program": "本店暂未开通会员积分计划。",
        "back": "返回我的会员",
    },
}

# Ledger reasons as Patron writes them, and their Chinese; anything else is shown as is
# (a store's own adjustment reasons are in the store's words already).
REASONS_ZH: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^order (.+) cancelled$"), r"订单 \1 已取消"),
    (re.compile(r"^refund (.+) of order (.+)$"), r"订单 \2 退款 \1"),
    (re.compile(r"^order (.+)$"), r"订单 \1"),
    (re.compile(r"^check-in (\S+)$"), r"签到 \1"),
    (re.compile(r"^birthday (\d+)$"), r"\1 年生日礼"),
    (re.compile(r"^redeemed: (.+)$"), r"兑换:\1"),
    (re.compile(r"^redemption cancelled: (.+)$"), r"取消兑换:\1"),
    (re.compile(r"^redemption cancelled$"), "取消兑换"),
    (re.compile(r"^lucky draw prize: (.+)$"), r"抽奖奖品:\1"),
    (re.compile(r"^lucky draw cancelled: (.+)$"), r"取消抽奖:\1"),
    (re.compile(r"^points as cash: checkout (.+)$"), r"积分抵现:结账 \1"),
    (re.compile(r"^referral: (.+) joined$"), r"推荐好友 \1 加入"),
    (re.compile(r"^referral: welcome from (.+)$"), r"好友 \1 推荐奖励"),
    (re.compile(r"^surprise: (.+)$"), r"惊喜礼:\1"),
    (re.compile(r"^surprise$"), "惊喜礼"),
    (re.compile(r"^points became available$"), "积分已生效"),
    (re.compile(r"^points expired$"), "积分过期"),
    (re.compile(r"^points returned to an expired lot expire$"), "退回的积分已过期"),
    (re.compile(r"^hold expired$"), "积分冻结已到期释放"),
    (re.compile(r"^checkout completed$"), "结账完成"),
    (re.compile(r"^checkout abandoned$"), "结账取消,积分已退回"),
    (re.compile(r"^sign up$"), "注册有礼"),
    (re.compile(r"^profile completed$"), "完善资料"),
    (re.compile(r"^review$"), "商品评价"),
    (re.compile(r"^share$"), "分享商品"),
    (re.compile(r"^earned$"), "获得积分"),
]


def reason_text(reason: str, lang: str) -> str:
    """A ledger entry's reason in ``lang``."""
    if lang == "zh":
        for pattern, replacement in REASONS_ZH:
            if pattern.match(reason):
                return pattern.sub(replacement, reason)
        return reason
    return reason[:1].upper() + reason[1:]


# -- language -----------------------------------------------------------------------------


def choose_language(request: Request, asked: str | None, customer_locale: str | None = None) -> str:
    """``?lang``, then the language cookie, then the customer's locale, then the
    browser's Accept-Language; English otherwise."""
    for candidate in (
        asked,
        request.cookies.get(LANG_COOKIE),
        language_of_locale(customer_locale),
        accept_language(request.headers.get("accept-language")),
    ):
        if candidate in LANGUAGES:
            return candidate
    return "en"


# -- formatting ---------------------------------------------------------------------------


def money(minor: int, currency: str) -> str:
    amount = from_minor(minor, currency)
    return f"¥{amount}" if currency == "CNY" else f"{amount} {currency}"


def money_major(amount: Decimal, currency: str) -> str:
    return money(int(amount.scaleb(exponent(currency))), currency)


def local_day(value: datetime, tz: str) -> str:
    return as_utc(value).astimezone(zone(tz)).date().isoformat()


def name_in(text: LocalText | None, lang: str) -> str:
    if text is None:
        return ""
    return (text.zh or text.en or "") if lang == "zh" else (text.en or text.zh or "")


def _fill(template: str, **values: Any) -> str:
    return template.format(**values)


# -- the member's session -----------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    store: Store
    customer: Customer
    token: str
    lang: str
    path: str  # this page's own path, for the language switch

    @property
    def ui(self) -> dict[str, str]:
        return UI[self.lang]

    @property
    def base(self) -> str:
        return f"/m/{self.store.slug}"


class NotSignedIn(Exception):
    pass


def csrf_token(store: Store, token: str) -> str:
    """The CSRF token of the member's forms: bound to their cookie and the store."""
    mac = hmac.new(store.signing_secret.encode(), f"member-csrf:{token}".encode(), hashlib.sha256)
    return mac.hexdigest()[:40]


def _check_csrf(member: Member, form: FormData) -> bool:
    sent = form.get("csrf")
    if not isinstance(sent, str) or not sent.isascii():
        return False
    return hmac.compare_digest(sent, csrf_token(member.store, member.token))


def _signed_in(session: Session, store_slug: str, token: str | None) -> tuple[Store, Customer]:
    """The store and customer of a member token, which must be this store's."""
    if not token:
        raise Unauthorized("Not signed in.")
    principal = verify_member_token(session, token)
    store = principal.store
    if store.slug != store_slug or principal.customer_id is None:
        raise Unauthorized("This member token is another store's.")
    customer = session.get(Customer, principal.customer_id)
    if customer is None or customer.store_id != store.id:
        raise Unauthorized("This member no longer exists.")
    return store, customer


def _member(
    request: Request, session: Session, store_slug: str, asked: str | None
) -> Member | HTMLResponse:
    token = request.cookies.get(COOKIE)
    try:
        store, customer = _signed_in(session, store_slug, token)
    except Unauthorized:
        return _bilingual("auth", 401, choose_language(request, asked))
    assert token is not None
    lang = choose_language(request, asked, customer.locale)
    return Member(store, customer, token, lang, request.url.path)


# -- responses ----------------------------------------------------------------------------


def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def _html(name: str, status: int, **context: Any) -> HTMLResponse:
    body = ENV.get_template(f"member/{name}").render(**context)
    response = HTMLResponse(body, status_code=status)
    _headers(response)
    return response


def _bilingual(kind: str, status: int, lang: str) -> HTMLResponse:
    """A message in both languages, the chosen one first (no member to go back to)."""
    other = "zh" if lang == "en" else "en"
    return _html(
        "message.html",
        status,
        lang=lang,
        ui=UI[lang],
        member=None,
        title=UI[lang][f"{kind}_title"],
        texts=[UI[lang][kind]],
        second=(UI[other][f"{kind}_title"], UI[other][kind]),
    )


def _page(
    member: Member, name: str, status: int = 200, asked: str | None = None, **context: Any
) -> HTMLResponse:
    other = "zh" if member.lang == "en" else "en"
    response = _html(
        name,
        status,
        lang=member.lang,
        other=other,
        ui=member.ui,
        member=member,
        base=member.base,
        store=member.store.name,
        csrf=csrf_token(member.store, member.token),
        section=SECTIONS.get(name, ""),
        **context,
    )
    if asked in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE, asked, max_age=365 * 86400, path=member.base, samesite="lax"
        )
    return response


def _message(
    member: Member, kind: str, status: int, texts: list[str] | None = None
) -> HTMLResponse:
    ui = member.ui
    return _page(
        member,
        "message.html",
        status,
        title=ui[f"{kind}_title"],
        texts=texts or [ui[kind]],
        second=None,
    )


def _see_other(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    _headers(response)
    return response


async def posted_form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=MAX_FIELDS)


Form = Annotated[FormData, Depends(posted_form)]


# -- what the pages show ------------------------------------------------------------------


def _pending_lots(session: Session, store: Store, customer_id: int) -> list[tuple[str, int]]:
    """(local day, points) of pending points by the day they become available."""
    account = ledger_repo.get_account(session, store.id, customer_id)
    if account is None:
        return []
    rows = session.execute(
        select(LoyaltyLot.available_at, LoyaltyLot.remaining).where(
            LoyaltyLot.account_id == account.id,
            LoyaltyLot.currency == Currency.points,
            LoyaltyLot.pending.is_(True),
            LoyaltyLot.remaining > 0,
        )
    ).all()
    by_day: dict[str, int] = {}
    for available_at, remaining in rows:
        day = local_day(available_at, store.timezone)
        by_day[day] = by_day.get(day, 0) + int(remaining)
    return sorted(by_day.items())


def _benefits(tier: TierDef, ui: dict[str, str]) -> list[str]:
    b = tier.benefits
    out = []
    if b.earn_multiplier > 1:
        out.append(_fill(ui["b_multiplier"], x=f"{b.earn_multiplier.normalize():f}"))
    if b.member_price_percent < 100:
        out.append(_fill(ui["b_price"], off=100 - b.member_price_percent))
    if b.free_shipping:
        out.append(ui["b_shipping"])
    if b.birthday_gift_points:
        out.append(_fill(ui["b_birthday"], points=b.birthday_gift_points))
    if b.member_only_rewards:
        out.append(ui["b_member_only"])
    return out


def _tier_view(
    session: Session, member: Member, program: ProgramConfig, now: datetime
) -> dict[str, Any]:
    store, lang = member.store, member.lang
    found = membership.standing(session, store, program, member.customer.id, now)
    tier, progress = found.tier, found.progress
    percent = 100
    if progress.target:
        percent = max(0, min(100, progress.value * 100 // progress.target))
    return {
        "name": name_in(tier.name, lang),
        "since": local_day(found.since, store.timezone) if found.since else None,
        "message": member.ui["top"]
        if progress.next is None
        else (progress.message_zh if lang == "zh" else progress.message),
        "top": progress.next is None,
        "percent": percent,
        "benefits": _benefits(tier, member.ui),
    }


def _check_in_view(
    session: Session, member: Member, program: ProgramConfig, now: datetime
) -> dict[str, Any] | None:
    if not any(r.event == EventKind.check_in for r in program.rules):
        return None
    store, customer = member.store, member.customer
    today = now.astimezone(zone(store.timezone)).date()
    row = session.execute(
        select(LoyaltyMember.last_check_in, LoyaltyMember.streak, LoyaltyMember.tier).where(
            LoyaltyMember.store_id == store.id, LoyaltyMember.customer_id == customer.id
        )
    ).first()
    last: date | None = row.last_check_in if row else None
    streak = row.streak if row else 0
    if last is not None and last >= today:
        key = f"member:{customer.id}:check-in:{today.isoformat()}"
        entries = ledger_repo.entries_by_key(session, store.id, key)
        points = sum(
            e.amount for e in entries if e.currency == Currency.points and e.kind == EntryKind.earn
        )
        return {"done": True, "points": int(points), "streak": streak}
    # What checking in now would give (the programme's rules, evaluated without writing).
    context = MemberContext(
        timezone=store.timezone,
        tier=row.tier if row else None,
        birthday=customer.birthday,
        attributes=customer.attributes or {},
        last_check_in=last,
        streak=streak,
    )
    result = evaluate(program, EarnEvent(kind=EventKind.check_in, occurred_at=now), context)
    current = streak if last is not None and today - last == timedelta(days=1) else 0
    return {"done": False, "points": result.points, "streak": current}


def _surveys(session: Session, member: Member, now: datetime) -> list[dict[str, str]]:
    store = member.store
    rows = session.execute(
        select(SurveyInvitation.nonce, SurveyInvitation.expires_at, Survey.definition)
        .join(Survey, Survey.id == SurveyInvitation.survey_id)
        .where(
            SurveyInvitation.store_id == store.id,
            SurveyInvitation.customer_id == member.customer.id,
            SurveyInvitation.used_at.is_(None),
            SurveyInvitation.expires_at > now,
            SurveyInvitation.created_at <= now,
            Survey.active.is_(True),
        )
        .order_by(SurveyInvitation.created_at.desc())
        .limit(5)
    ).all()
    out = []
    for nonce, expires_at, definition in rows:
        title = definition.get("title") if isinstance(definition, dict) else None
        out.append(
            {
                "title": pick(title, member.lang) or "",
                "url": f"/s/{store.slug}/{token_of(store, nonce)}?lang={member.lang}",
                "until": _fill(
                    member.ui["survey_until"], day=local_day(expires_at, store.timezone)
                ),
            }
        )
    return out


def _referral_view(request: Request, session: Session, member: Member) -> dict[str, Any]:
    base = get_settings().referral_base_url or str(request.base_url)
    summary = referrals.summary(session, member.store, member.customer.id, base)
    ui = member.ui
    note = (
        _fill(ui["referral_note"], points=summary.referrer_points)
        if summary.referrer_points
        else ui["referral_plain"]
    )
    return {
        "link": summary.link,
        "note": note,
        "stats": _fill(
            ui["referral_stats"], invited=summary.counts.invited, points=summary.points_earned
        ),
    }


def _cost(reward: Reward, points: int, currency: str, ui: dict[str, str]) -> str:
    if isinstance(reward, PointsPlusCashReward):
        return _fill(ui["cost_cash"], points=f"{points:,}", cash=money_major(reward.cash, currency))
    return _fill(ui["cost"], points=f"{points:,}")


def _refusal(
    refusal: Refusal, program: ProgramConfig, reward: Reward, points: int, lang: str
) -> str:
    ui = UI[lang]
    if refusal.code == Why.tier:
        names = [name_in(t.name, lang) for t in program.tiers if t.code in (reward.tiers or [])]
        return _fill(ui["why_tier"], tiers=("/" if lang == "zh" else " / ").join(names))
    if refusal.code == Why.not_enough_points:
        cost = getattr(reward, "cost_points", 0)
        return _fill(ui["why_not_enough_points"], n=f"{max(0, cost - points):,}")
    return ui[f"why_{refusal.code.value}"]


def _mall(
    session: Session, member: Member, program: ProgramConfig, balance: int
) -> tuple[list[dict[str, Any]], list[str]]:
    items: list[dict[str, Any]] = []
    notes: list[str] = []
    ui, lang = member.ui, member.lang
    for item in rewards.catalogue(session, member.store, member.customer.id):
        reward = item.reward
        if not reward.active:
            continue
        if isinstance(reward, PointsAsCashReward):
            notes.append(
                _fill(
                    ui["at_checkout"],
                    n=reward.points_per_unit,
                    one=money(10 ** exponent(program.currency), program.currency),
                )
            )
            continue
        items.append(_item_view(item, program, balance, lang))
    return items, notes


def _item_view(
    item: CatalogueItem, program: ProgramConfig, balance: int, lang: str
) -> dict[str, Any]:
    reward, ui = item.reward, UI[lang]
    refusals = item.refusals or []
    return {
        "id": reward.id,
        "name": name_in(reward.name, lang),
        "cost": _cost(reward, item.cost_points, program.currency, ui),
        "points": item.cost_points,
        "affordable": item.cost_points <= balance,
        "stock": _fill(ui["stock_left"], n=f"{item.stock_left:,}")
        if item.stock_left is not None
        else None,
        "can": not refusals,
        "why": [_refusal(r, program, reward, balance, lang) for r in refusals],
        "detail": _reward_detail(reward, program.currency, ui),
    }


def _reward_detail(reward: Reward, currency: str, ui: dict[str, str]) -> str:
    if isinstance(reward, CouponReward):
        if reward.discount_type == "fixed":
            text = _fill(ui["coupon_fixed"], amount=money_major(reward.value, currency))
        else:
            text = _fill(ui["coupon_percent"], percent=f"{reward.value.normalize():f}")
        if reward.min_spend > 0:
            text += " · " + _fill(ui["min_spend"], amount=money_major(reward.min_spend, currency))
        return text
    return ""


def _reward_name(program: ProgramConfig | None, reward_id: str, fallback: str, lang: str) -> str:
    if program is not None:
        for reward in program.rewards:
            if reward.id == reward_id:
                return name_in(reward.name, lang)
    return fallback


def _redemption_view(
    found: Redeemed, program: ProgramConfig | None, member: Member
) -> dict[str, Any]:
    row, coupon, ui, tz = found.redemption, found.coupon, member.ui, member.store.timezone
    view: dict[str, Any] = {
        "id": row.id,
        "name": _reward_name(program, row.reward_id, row.reward_name, member.lang),
        "day": local_day(row.created_at, tz),
        "points": row.points,
        "type": row.reward_type,
        "code": None,
        "state": ui[f"s_{row.status.value}"],
        "cancelled": row.status == RedemptionStatus.cancelled,
        "lines": [],
    }
    if coupon is not None:
        view["code"] = coupon.code
        view["state"] = ui[f"s_{coupon.status.value}"]
        view["usable"] = coupon.status == CouponStatus.active
        if coupon.discount_type == "fixed" and coupon.amount_minor is not None:
            terms = _fill(ui["coupon_fixed"], amount=money(coupon.amount_minor, coupon.currency))
        else:
            terms = _fill(ui["coupon_percent"], percent=coupon.percent or "")
        if coupon.min_spend_minor:
            terms += " · " + _fill(
                ui["min_spend"], amount=money(coupon.min_spend_minor, coupon.currency)
            )
        view["lines"].append(terms)
        view["lines"].append(
            _fill(
                ui["valid"],
                start=local_day(coupon.valid_from, tz),
                end=local_day(coupon.valid_until, tz),
            )
        )
    if row.reward_type in ("gift", "product", "points_plus_cash"):
        view["lines"].append(ui["gift"])
    if row.cash_minor:
        view["lines"].append(_fill(ui["cash_due"], cash=money(row.cash_minor, row.currency)))
    prize = found.prize
    if row.reward_type == "lucky_draw":
        draw_prize = _draw_prize(program, row.reward_id, row.prize_id)
        if prize is not None:
            view["lines"].append(_fill(ui["prize"], name=name_in(draw_prize, member.lang)))
            if prize.coupon is not None:
                view["code"] = prize.coupon.code
                view["state"] = ui[f"s_{prize.coupon.status.value}"]
        elif row.prize_points:
            view["lines"].append(_fill(ui["prize"], name=name_in(draw_prize, member.lang)))
            view["lines"].append(_fill(ui["prize_points"], points=f"{row.prize_points:,}"))
        else:
            view["lines"].append(ui["no_prize"])
    return view


def _draw_prize(
    program: ProgramConfig | None, reward_id: str, prize_id: str | None
) -> LocalText | None:
    if program is None or prize_id is None:
        return None
    for reward in program.rewards:
        if isinstance(reward, LuckyDrawReward) and reward.id == reward_id:
            for prize in reward.prizes:
                if prize.id == prize_id:
                    return prize.name
    return None


def _entry_view(entry: EntryView, member: Member) -> dict[str, Any]:
    tz, ui = member.store.timezone, member.ui
    net = entry.available_delta + entry.pending_delta + entry.held_delta - entry.debt_delta
    unit = ui["growth_unit"] if entry.currency == Currency.growth else ui["points_unit"]
    sign = "plus" if net > 0 else "minus" if net < 0 else "zero"
    amount = f"{net:+,}" if net else f"{entry.amount:,}"
    note = None
    if entry.pending_delta > 0 and entry.available_at is not None:
        note = _fill(ui["matures"], day=local_day(entry.available_at, tz))
    return {
        "day": local_day(entry.created_at, tz),
        "reason": reason_text(entry.reason, member.lang),
        "amount": amount,
        "unit": unit,
        "sign": sign,
        "note": note,
    }


# -- routes -------------------------------------------------------------------------------


@router.get("/m/{store_slug}/enter", response_class=HTMLResponse)
def enter(
    store_slug: Slug,
    request: Request,
    session: SessionDep,
    token: str | None = None,
    lang: LangQuery = None,
) -> Response:
    """The link a store sends its customer to: keeps the token in a cookie, then home."""
    try:
        if token is not None and len(token) > MAX_TOKEN:
            raise Unauthorized("Malformed member token.")
        store, _customer = _signed_in(session, store_slug, token)
    except Unauthorized:
        return _bilingual("auth", 401, choose_language(request, lang))
    assert token is not None
    base = f"/m/{store.slug}"
    target = base + (f"?lang={lang}" if lang in LANGUAGES else "")
    response = _see_other(target)
    # A session cookie: the token's own expiry is checked on every request.
    response.set_cookie(
        COOKIE,
        token,
        path=base,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/m/{store_slug}", response_class=HTMLResponse)
def home(
    store_slug: Slug, request: Request, session: SessionDep, lang: LangQuery = None
) -> Response:
    """The member's home: points, tier, check-in, referral link, surveys."""
    member = _member(request, session, store_slug, lang)
    if isinstance(member, HTMLResponse):
        return member
    store, ui = member.store, member.ui
    now = utcnow()
    balance, expiring = ledger.balance_and_expiring(
        session, store, member.customer.id, EXPIRING_WITHIN, now
    )
    program = active_program(session, store)
    return _page(
        member,
        "home.html",
        asked=lang,
        balance=balance,
        pending=[
            _fill(ui["pending_note"], points=f"{n:,}", day=day)
            for day, n in _pending_lots(session, store, member.customer.id)[:MAX_PENDING_DAYS]
        ],
        expiring=[
            _fill(ui["expiring"], points=f"{n:,}", day=local_day(at, store.timezone))
            for at, n in expiring
        ],
        debt=_fill(ui["debt"], points=f"{balance.debt:,}") if balance.debt else None,
        tier=_tier_view(session, member, program, now) if program else None,
        check_in=_check_in_view(session, member, program, now) if program else None,
        referral=_referral_view(request, session, member),
        surveys=_surveys(session, member, now),
        no_program=program is None,
    )


@router.get("/m/{store_slug}/history", response_class=HTMLResponse)
def history(
    store_slug: Slug,
    request: Request,
    session: SessionDep,
    lang: LangQuery = None,
    before: Before = None,
) -> Response:
    """The member's ledger entries, newest first."""
    member = _member(request, session, store_slug, lang)
    if isinstance(member, HTMLResponse):
        return member
    rows = ledger.history(session, member.store, member.customer.id, HISTORY_PAGE, before)
    return _page(
        member,
        "history.html",
        asked=lang,
        entries=[_entry_view(e, member) for e in rows],
        older=rows[-1].id if len(rows) == HISTORY_PAGE else None,
        paged=before is not None,
    )


def _mall_page(
    session: Session, member: Member, asked: str | None, status: int = 200, error: str = ""
) -> HTMLResponse:
    program = active_program(session, member.store)
    balance = ledger.balance(session, member.store, member.customer.id).points_available
    items, notes = _mall(session, member, program, balance) if program else ([], [])
    mine = rewards.history(session, member.store, member.customer.id, 20, None)
    return _page(
        member,
        "rewards.html",
        status,
        asked=asked,
        points=balance,
        items=items,
        notes=notes,
        error=error,
        redemptions=[_redemption_view(r, program, member) for r in mine],
        no_program=program is None,
    )


@router.get("/m/{store_slug}/rewards", response_class=HTMLResponse)
def mall(
    store_slug: Slug, request: Request, session: SessionDep, lang: LangQuery = None
) -> Response:
    """The rewards mall and the member's redemptions."""
    member = _member(request, session, store_slug, lang)
    if isinstance(member, HTMLResponse):
        return member
    return _mall_page(session, member, lang)


def _find_item(session: Session, member: Member, reward_id: str) -> CatalogueItem | None:
    for item in rewards.catalogue(session, member.store, member.customer.id):
        if item.reward.id == reward_id and not isinstance(item.reward, PointsAsCashReward):
            return item
    return None


@router.get("/m/{store_slug}/rewards/{reward_id}", response_class=HTMLResponse)
def confirm(
    store_slug: Slug,
    reward_id: RewardId,
    request: Request,
    session: SessionDep,
    lang: LangQuery = None,
) -> Response:
    """The confirmation step: what it costs, the balance after, a one-time key."""
    member = _member(request, session, store_slug, lang)
    if isinstance(member, HTMLResponse):
        return member
    program = active_program(session, member.store)
    item = _find_item(session, member, reward_id) if program else None
    if program is None or item is None or not item.reward.active:
        return _message(member, "missing", 404)
    balance = ledger.balance(session, member.store, member.customer.id).points_available
    view = _item_view(item, program, balance, member.lang)
    return _page(
        member,
        "confirm.html",
        asked=lang,
        item=view,
        text=_fill(member.ui["confirm_text"], name=view["name"], points=f"{item.cost_points:,}"),
        after=_fill(member.ui["confirm_balance"], after=f"{balance - item.cost_points:,}"),
        key=secrets.token_urlsafe(18),
    )


def _redemption_key(member: Member, sent: object) -> str | None:
    """The redemption's idempotency key: the confirmation form's one-time key, bound to
    the member (one member's key can never replay another's redemption)."""
    if not isinstance(sent, str) or not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", sent):
        return None
    return f"member-page:{member.customer.id}:{sent}"


@router.post("/m/{store_slug}/rewards/{reward_id}", response_class=HTMLResponse)
def redeem(
    store_slug: Slug,
    reward_id: RewardId,
    request: Request,
    session: SessionDep,
    form: Form,
    lang: LangQuery = None,
) -> Response:
    """Redeem (once per confirmation key), then the result page."""
    member = _member(request, session, store_slug, lang)
    if isinstance(member, HTMLResponse):
        return member
    if not _check_csrf(member, form):
        return _message(member, "csrf", 403)
    key = _redemption_key(member, form.get("key"))
    if key is None:
        return _message(member, "csrf", 403)
    try:
        found = rewards.redeem(session, member.store, member.customer.id, reward_id, key=key)
    except PatronError as exc:
        session.rollback()
        return _refused(session, member, reward_id, exc, lang)
    return _see_other(f"{member.base}/redemptions/{found.redemption.id}")


def _refused(
    session: Session, member: Member, reward_id: str, exc: PatronError, lang: str | None
) -> HTMLResponse:
    """The mall again with why nothing was redeemed (the transaction was rolled back)."""
    ui = member.ui
    if exc.slug == "idempotency-key-reused":
        return _mall_page(session, member, lang, 409, ui["key_reused"])
    if not isinstance(exc, Conflict):
        return _message(member, "missing", 404)
    program = active_program(session, member.store)
    reward = next((r for r in program.rewards if r.id == reward_id), None) if program else None
    balance = ledger.balance(session, member.store, member.customer.id).points_available
    words = []
    for r in exc.extra.get("reasons") or []:
        code = r.get("code") if isinstance(r, dict) else None
        if program is not None and reward is not None and code in Why.__members__:
            refusal = Refusal(Why(str(code)), str(r.get("message", "")))
            words.append(_refusal(refusal, program, reward, balance, member.lang))
    text = " · ".join(words) if words else ui["failed_title"]
    return _mall_page(session, member, lang, 409, f"{text}. {ui['failed']}")


@router.get("/m/{store_slug}/redemptions/{redemption_id}", response_class=HTMLResponse)
def redemption(
    store_slug: Slug,
    redemption_id: Annotated[int, Path(ge=1, le=2**62)],
    request: Request,
    session: SessionDep,
    lang: LangQuery = None,
) -> Response:
    """A redemption's result: its coupon code, gift or prize."""
    member = _member(request, session, store_slug, lang)
    if isinstance(member, HTMLResponse):
        return member
    try:
        found = rewards.get(session, member.store, redemption_id)
    except PatronError:
        return _message(member, "missing", 404)
    if found.redemption.customer_id != member.customer.id:
        return _message(member, "missing", 404)
    program = active_program(session, member.store)
    balance = ledger.balance(session, member.store, member.customer.id).points_available
    return _page(
        member,
        "result.html",
        asked=lang,
        r=_redemption_view(found, program, member),
        spent=_fill(
            member.ui["spent"],
            points=f"{found.redemption.points:,}",
            balance=f"{balance:,}",
        ),
    )


@router.post("/m/{store_slug}/check-in", response_class=HTMLResponse)
def check_in(
    store_slug: Slug,
    request: Request,
    session: SessionDep,
    form: Form,
    lang: LangQuery = None,
) -> Response:
    """Today's check-in (once a store-time day), then home showing what it gave."""
    member = _member(request, session, store_slug, lang)
    if isinstance(member, HTMLResponse):
        return member
    if not _check_csrf(member, form):
        return _message(member, "csrf", 403)
    try:
        actions.check_in(session, member.store, member.customer.id)
    except PatronError:
        session.rollback()
        return _message(member, "missing", 404, [member.ui["no_program"]])
    return _see_other(member.base + "#check-in")


def member_link(base_url: str, store: Store, token: str) -> str:
    """The address that signs a member in (what a store's site redirects to)."""
    return f"{base_url.rstrip('/')}/m/{store.slug}/enter?token={quote(token)}"


DEMO_TOKEN_DAYS = 30


def demo_member_link(session: Session, store: Store, base_url: str) -> str | None:
    """For ``patron demo`` only: a sign-in link of the member with the most points,
    valid DEMO_TOKEN_DAYS (a store's own links live minutes: member_token_ttl_seconds)."""
    customer_id = session.scalars(
        select(LoyaltyAccount.customer_id)
        .where(LoyaltyAccount.store_id == store.id)
        .order_by(LoyaltyAccount.points_available.desc(), LoyaltyAccount.customer_id)
        .limit(1)
    ).first()
    if customer_id is None:
        return None
    token, _ = issue_member_token(store, customer_id, DEMO_TOKEN_DAYS * 86400)
    return member_link(base_url, store, token)
