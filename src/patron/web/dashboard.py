"""The merchant dashboard's foundation: staff login, the session cookie, roles, CSRF,
language, and the ``render`` helper every dashboard page uses.

A page module::

    router = APIRouter(prefix="/dashboard", include_in_schema=False)

    @router.get("/things")
    def things(ctx: Annotated[StaffContext, allow(Role.owner, Role.manager)],
               session: SessionDep) -> HTMLResponse:
        return render(ctx, "dashboard/things.html", rows=...)

Unauthenticated GETs are sent to ``/login?next=<path>``; a role not allowed gets the
bilingual 403 page; every POST/PUT/PATCH/DELETE must carry the CSRF token (form field
``csrf`` or header ``X-CSRF-Token``; htmx requests get the header from base.html).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.staticfiles import StaticFiles
from starlette.types import Scope as AsgiScope

from patron.auth import SessionDep
from patron.stores import repository as store_repo
from patron.stores.models import Store
from patron.web import security
from patron.web.i18n import LANG_COOKIE, LANGS, Formatter, Translate, choose_lang, register
from patron.web.i18n import translator as _translator
from patron.web.models import Role, StaffUser
from patron.web.pages import environment
from patron.web.staff import normal_email, staff_accounts

SESSION_COOKIE = "patron_staff"
LOGIN_COOKIE = "patron_login"  # login-form CSRF token (path /login)
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
STATIC_DIR = Path(__file__).parent / "static"
ALL_ROLES: tuple[Role, ...] = tuple(Role)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

ENV = environment("patron.web")
limiter = security.LoginLimiter()
router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class NavItem:
    key: str
    href: str
    roles: tuple[Role, ...]


# The sidebar, in order; an item shows only to the roles that may open it. Page modules
# guard their routes with the same roles (``allow(*NAV_ROLES["tickets"])``).
NAV: tuple[NavItem, ...] = (
    NavItem("overview", "/dashboard", ALL_ROLES),
    NavItem("customers", "/dashboard/customers", ALL_ROLES),
    NavItem("programme", "/dashboard/programme", (Role.owner, Role.manager, Role.analyst)),
    NavItem("analytics", "/dashboard/analytics", (Role.owner, Role.manager, Role.analyst)),
    NavItem("surveys", "/dashboard/surveys", ALL_ROLES),
    NavItem("tickets", "/dashboard/tickets", ALL_ROLES),
    NavItem("campaigns", "/dashboard/campaigns", (Role.owner, Role.manager, Role.analyst)),
    NavItem("staff", "/dashboard/staff", (Role.owner,)),
)
NAV_ROLES: dict[str, tuple[Role, ...]] = {item.key: item.roles for item in NAV}
# Who may change things (POST) in each area; analysts only read.
WRITE_ROLES: dict[str, tuple[Role, ...]] = {
    "programme": (Role.owner, Role.manager),
    "campaigns": (Role.owner, Role.manager),
    "analytics": (Role.owner, Role.manager),
    "surveys": (Role.owner, Role.manager),
    "customers": (Role.owner, Role.support),
    "tickets": (Role.owner, Role.support),
    "staff": (Role.owner,),
}


@dataclass
class StaffContext:
    """The logged-in staff member of one request, and what a page renders with."""

    request: Request
    staff: StaffUser
    store: Store
    lang: str
    t: Translate
    csrf: str
    fmt: Formatter
    lang_from_query: bool = False

    def can(self, *roles: Role) -> bool:
        return self.staff.role in roles

    def can_write(self, area: str) -> bool:
        return self.staff.role in WRITE_ROLES.get(area, ())


class LoginRequired(Exception):
    def __init__(self, path: str, htmx: bool, lang: str | None = None) -> None:
        super().__init__(path)
        self.path, self.htmx, self.lang = path, htmx, lang


class PageExit(Exception):
    """Ends a request with a page already rendered (while the request's session is still
    open: an exception handler runs after it is closed)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def refuse(ctx: StaffContext, reason: str = "forbidden") -> PageExit:
    """``raise refuse(ctx)``: the bilingual 403 page (``reason="csrf"``: a bad token)."""
    if reason == "csrf":
        return PageExit(error_page(ctx, 403, "error.csrf_title", "error.csrf"))
    return PageExit(error_page(ctx, 403, "error.forbidden_title", "error.forbidden"))


def request_lang(request: Request) -> tuple[str, bool]:
    """The page language and whether it came from ``?lang=`` (then it is remembered)."""
    query = request.query_params.get("lang")
    lang = choose_lang(
        query, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
    )
    return lang, query in LANGS


def _verified(session: Session, cookie: str | None) -> tuple[StaffUser, Store] | None:
    if not cookie:
        return None
    claims = security.read_claims(cookie)
    if claims is None or claims.expires < time.time():
        return None
    store = session.get(Store, claims.store_id)
    if store is None or not security.signature_ok(store.signing_secret, cookie):
        return None
    staff = session.get(StaffUser, claims.staff_id)
    if (
        staff is None
        or staff.store_id != store.id
        or staff.disabled_at is not None
        or security.fingerprint(store.signing_secret, staff.password_hash) != claims.fingerprint
    ):
        return None
    return staff, store


def _staff_context(request: Request, session: SessionDep) -> StaffContext:
    cookie = request.cookies.get(SESSION_COOKIE)
    found = _verified(session, cookie)
    if found is None or cookie is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        lang = request.query_params.get("lang")
        raise LoginRequired(
            path, bool(request.headers.get("hx-request")), lang if lang in LANGS else None
        )
    staff, store = found
    lang, from_query = request_lang(request)
    return StaffContext(
        request=request,
        staff=staff,
        store=store,
        lang=lang,
        t=_translator(lang),
        csrf=security.csrf_token(store.signing_secret, cookie),
        fmt=Formatter(lang, store.currency, store.timezone),
        lang_from_query=from_query,
    )


async def _checked_context(
    request: Request, ctx: Annotated[StaffContext, Depends(_staff_context)]
) -> StaffContext:
    """The staff context, with the CSRF token checked on every state-changing request."""
    if request.method not in SAFE_METHODS:
        token = request.headers.get(CSRF_HEADER)
        if token is None:
            content_type = request.headers.get("content-type", "")
            if content_type.startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                value = (await request.form()).get(CSRF_FIELD)
                token = value if isinstance(value, str) else None
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if not security.csrf_ok(ctx.store.signing_secret, cookie, token):
            raise refuse(ctx, "csrf")
    return ctx


StaffDep = Annotated[StaffContext, Depends(_checked_context)]


def allow(*roles: Role) -> Any:
    """``ctx: Annotated[StaffContext, allow(Role.owner, Role.manager)]``: the staff
    context when the staff member has one of ``roles``, else the 403 page."""
    allowed = frozenset(roles)

    def dependency(ctx: StaffDep) -> StaffContext:
        if ctx.staff.role not in allowed:
            raise refuse(ctx)
        return ctx

    return Depends(dependency)


def _nav_key(path: str) -> str | None:
    best: NavItem | None = None
    for item in NAV:
        if (path == item.href or path.startswith(item.href + "/")) and (
            best is None or len(item.href) > len(best.href)
        ):
            best = item
    return best.key if best else None


def lang_url(request: Request, lang: str) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    params.append(("lang", lang))
    return f"{request.url.path}?{urlencode(params)}"


def _remember_lang(response: Response, request: Request, lang: str, from_query: bool) -> None:
    if from_query and request.cookies.get(LANG_COOKIE) != lang:
        response.set_cookie(
            LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="lax", path="/"
        )


def render(
    ctx: StaffContext,
    template_name: str,
    status: int = 200,
    *,
    nav: str | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render a dashboard template with the common context (``lang``, ``t``, ``staff``,
    ``store``, ``nav``, ``csrf``, ``fmt``, ``nav_items``, ``lang_url``) plus ``context``.
    ``nav`` defaults to the sidebar item whose href prefixes the request path."""
    request = ctx.request
    other = "zh" if ctx.lang == "en" else "en"
    body = ENV.get_template(template_name).render(
        lang=ctx.lang,
        t=ctx.t,
        staff=ctx.staff,
        store=ctx.store,
        nav=nav if nav is not None else _nav_key(request.url.path),
        nav_items=[item for item in NAV if ctx.staff.role in item.roles],
        csrf=ctx.csrf,
        fmt=ctx.fmt,
        ctx=ctx,
        lang_url=lang_url(request, other),
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(body, status_code=status, headers=headers)
    response.headers.setdefault("Cache-Control", "no-store")
    _remember_lang(response, request, ctx.lang, ctx.lang_from_query)
    return response


def error_page(ctx: StaffContext, status: int, title_key: str, message_key: str) -> HTMLResponse:
    """A dashboard page that says what went wrong (404 customer, 403 role, ...)."""
    return render(
        ctx,
        "dashboard/error.html",
        status,
        nav="",
        code=status,
        title=ctx.t(title_key),
        message=ctx.t(message_key),
    )


# -- login and logout ---------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and value.isprintable()
        and len(value) <= 2000
    ):
        return value
    return "/dashboard"


def _single_store(session: Session) -> Store | None:
    if session.scalar(select(func.count()).select_from(Store)) == 1:
        return session.scalars(select(Store)).first()
    return None


def _login_page(
    request: Request,
    session: Session,
    status: int = 200,
    *,
    error: str | None = None,
    email: str = "",
    store_slug: str = "",
    next_path: str = "/dashboard",
) -> HTMLResponse:
    lang, from_query = request_lang(request)
    single = _single_store(session)
    token = request.cookies.get(LOGIN_COOKIE) or ""
    fresh_token = not (16 <= len(token) <= 64 and token.isascii() and token.isprintable())
    if fresh_token:
        token = secrets.token_urlsafe(24)
    body = ENV.get_template("dashboard/login.html").render(
        lang=lang,
        t=_translator(lang),
        error=error,
        email=email,
        store_slug=store_slug,
        single_store=single,
        next_path=next_path,
        login_token=token,
        lang_url=lang_url(request, "zh" if lang == "en" else "en"),
    )
    response = HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
    if fresh_token:
        # Login CSRF: the form carries the token of this cookie, which another site's
        # form cannot read, so nobody can log a browser in to their own account.
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/login",
        )
    _remember_lang(response, request, lang, from_query)
    return response


@router.get("/")
def root(request: Request) -> RedirectResponse:
    query = request.url.query
    return RedirectResponse("/dashboard" + (f"?{query}" if query else ""), status_code=303)


@router.get("/login")
def login_form(request: Request, session: SessionDep) -> Response:
    next_path = _safe_next(request.query_params.get("next"))
    if _verified(session, request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(next_path, status_code=303)
    return _login_page(request, session, next_path=next_path)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    store: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
    login_token: Annotated[str, Form()] = "",
) -> Response:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not (cookie and login_token and hmac.compare_digest(cookie, login_token)):
        t = _translator(request_lang(request)[0])
        return _login_page(
            request,
            session,
            403,
            error=t("login.expired"),
            email=normal_email(email[:320]),
            store_slug=store[:64],
            next_path=_safe_next(next),
        )
    return _login_in(
        session,
        request,
        normal_email(email[:320]),
        password[:2000],
        store[:64].strip().lower(),
        _safe_next(next),
    )


def _login_in(
    session: Session, request: Request, email: str, password: str, slug: str, next_path: str
) -> Response:
    lang, _ = request_lang(request)
    t = _translator(lang)
    keep = {"email": email, "store_slug": slug, "next_path": next_path}
    store = store_repo.by_slug(session, slug) if slug else _single_store(session)
    if not email or not password or store is None:
        key = "login.missing_store" if store is None and email and password else "login.missing"
        return _login_page(request, session, 422, error=t(key), **keep)
    wait = limiter.retry_after(store.id, email)
    if wait:
        return _login_page(
            request, session, 429, error=t("login.too_many", minutes=(wait + 59) // 60), **keep
        )
    staff = staff_accounts.check_login(session, store, email, password)
    if staff is None:
        limiter.failed(store.id, email)
        return _login_page(request, session, 401, error=t("login.bad"), **keep)
    limiter.succeeded(store.id, email)
    cookie = security.issue_session(store.signing_secret, staff.id, store.id, staff.password_hash)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=security.SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout(ctx: StaffDep) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


# -- wiring -------------------------------------------------------------------------------


class _Static(StaticFiles):
    """/static: vendored files (versioned by name) are cached for a year, ours for an
    hour."""

    async def get_response(self, path: str, scope: AsgiScope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            vendored = path.replace("\\", "/").startswith("vendor/")
            response.headers["Cache-Control"] = (
                "public, max-age=31536000, immutable" if vendored else "public, max-age=3600"
            )
        return response


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    params = {"next": exc.path}
    if exc.lang:  # ?lang= on the page asked for: the login form speaks it too
        params["lang"] = exc.lang
    target = "/login?" + urlencode(params)
    if exc.htmx:  # htmx follows HX-Redirect; a 303 would be swapped into the page
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _page_exit(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageExit)
    return exc.response


def install(app: FastAPI, routers: Sequence[APIRouter] = ()) -> None:
    """Mount /static, add the login routes and the dashboard's error pages."""
    app.mount("/static", _Static(directory=STATIC_DIR), name="static")
    app.include_router(router)
    for extra in routers:
        app.include_router(extra)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(PageExit, _page_exit)


register(
    {
        "app.name": {"en": "Patron", "zh": "Patron"},
        "app.dashboard": {"en": "Dashboard", "zh": "管理后台"},
        "nav.overview": {"en": "Overview", "zh": "总览"},
        "nav.customers": {"en": "Customers", "zh": "客户"},
        "nav.programme": {"en": "Programme", "zh": "会员计划"},
        "nav.analytics": {"en": "Analytics", "zh": "数据分析"},
        "nav.surveys": {"en": "Surveys", "zh": "问卷调查"},
        "nav.tickets": {"en": "Tickets", "zh": "工单"},
        "nav.campaigns": {"en": "Campaigns", "zh": "营销活动"},
        "nav.staff": {"en": "Staff", "zh": "员工"},
        "nav.menu": {"en": "Menu", "zh": "菜单"},
        "nav.main": {"en": "Main navigation", "zh": "主导航"},
        "nav.skip": {"en": "Skip to content", "zh": "跳到正文"},
        "role.owner": {"en": "Owner", "zh": "店主"},
        "role.manager": {"en": "Manager", "zh": "经理"},
        "role.support": {"en": "Support", "zh": "客服"},
        "role.analyst": {"en": "Analyst", "zh": "分析师"},
        "login.title": {"en": "Log in to the dashboard", "zh": "登录管理后台"},
        "login.store": {"en": "Store (slug)", "zh": "店铺(标识)"},
        "login.email": {"en": "E-mail", "zh": "邮箱"},
        "login.password": {"en": "Password", "zh": "密码"},
        "login.submit": {"en": "Log in", "zh": "登录"},
        "login.logout": {"en": "Log out", "zh": "退出登录"},
        "login.missing": {
            "en": "Enter your e-mail and password.",
            "zh": "请输入邮箱和密码。",
        },
        "login.missing_store": {
            "en": "Unknown store: enter the store's slug (e.g. demo).",
            "zh": "未找到店铺:请输入店铺标识(例如 demo)。",
        },
        "login.expired": {
            "en": "The login form expired. Please enter your password again.",
            "zh": "登录表单已失效,请重新输入密码。",
        },
        "login.bad": {
            "en": "Wrong e-mail or password, or the account is disabled.",
            "zh": "邮箱或密码错误,或账号已停用。",
        },
        "login.too_many": {
            "en": "Too many failed attempts for this account. Try again in {minutes} min.",
            "zh": "该账号登录失败次数过多,请 {minutes} 分钟后再试。",
        },
        "error.forbidden_title": {"en": "Not allowed", "zh": "无权访问"},
        "error.forbidden": {
            "en": "Your role does not give access to this page. Ask the store owner.",
            "zh": "您的角色无权访问此页面,请联系店主。",
        },
        "error.csrf_title": {"en": "Form expired", "zh": "表单已失效"},
        "error.csrf": {
            "en": "This form was not sent from your current session. Reload the page and "
            "try again.",
            "zh": "此表单不是从当前会话提交的,请刷新页面后重试。",
        },
        "error.not_found_title": {"en": "Not found", "zh": "未找到"},
        "error.not_found": {
            "en": "There is nothing at this address in this store.",
            "zh": "本店铺中没有此内容。",
        },
        "error.back": {"en": "Back to the overview", "zh": "返回总览"},
    }
)
