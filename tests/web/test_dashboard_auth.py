"""Staff login, session cookie, CSRF, roles and language of the merchant dashboard."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from patron.db import unit_of_work
from patron.stores.models import Store
from patron.web import dashboard, security
from patron.web.dashboard import NAV, SESSION_COOKIE
from patron.web.i18n import CATALOGUE, LANG_COOKIE, LANGS, choose_lang, translator
from patron.web.models import Role, StaffUser
from patron.web.staff import staff_accounts
from tests.conftest import new_store
from tests.test_auth import api_routes
from tests.web.conftest import STAFF_PASSWORD, csrf_of, login_client, login_token, make_staff


@pytest.fixture(autouse=True)
def _fresh_limiter() -> None:
    dashboard.limiter.reset()


def fresh(client: TestClient) -> TestClient:
    return TestClient(client.app, raise_server_exceptions=False)


def post_login(c: TestClient, store: Store, email: str, password: str) -> object:
    return c.post(
        "/login",
        data={"store": store.slug, "email": email, "password": password, **login_token(c)},
        follow_redirects=False,
    )


# --- passwords ------------------------------------------------------------------------


def test_password_hash_is_salted_self_describing_and_checked() -> None:
    a, b = (
        security.hash_password("long enough secret"),
        security.hash_password("long enough secret"),
    )
    assert a != b and a.startswith("scrypt$16384$8$1$")
    assert security.verify_password("long enough secret", a)
    assert not security.verify_password("long enough secreT", a)
    assert not security.verify_password("x", "not-a-hash")
    assert not security.verify_password("x", "scrypt$16384$8$1$!!$??")


def test_short_password_and_bad_fields_are_refused(engine: Engine, store: Store) -> None:
    from patron.errors import Conflict, Invalid

    with unit_of_work(engine) as session, pytest.raises(Invalid) as exc:
        staff_accounts.create(session, session.merge(store), "a@b.co", "A", "owner", "short")
    assert exc.value.errors[0]["field"] == "password"
    with unit_of_work(engine) as session, pytest.raises(Invalid) as exc:
        staff_accounts.create(session, session.merge(store), "nope", "", "boss", "x" * 12)
    assert {e["field"] for e in exc.value.errors} == {"email", "name", "role"}
    make_staff(engine, store, email="Ann@Example.com")
    with unit_of_work(engine) as session:
        found = staff_accounts.by_email(session, session.merge(store), " ANN@example.COM ")
        assert found is not None and found.email == "ann@example.com"
    with unit_of_work(engine) as session, pytest.raises(Conflict):
        staff_accounts.create(
            session, session.merge(store), "ann@EXAMPLE.com", "A", "owner", "x" * 12
        )


# --- login ----------------------------------------------------------------------------


def test_login_ok_sets_a_safe_cookie_and_opens_the_dashboard(
    client: TestClient, engine: Engine, store: Store
) -> None:
    email = make_staff(engine, store, Role.manager)
    c = fresh(client)
    assert c.get("/dashboard", follow_redirects=False).headers["location"] == (
        "/login?next=%2Fdashboard"
    )
    res = c.post(
        "/login",
        data={
            "store": store.slug,
            "email": email.upper(),
            "password": STAFF_PASSWORD,
            "next": "/dashboard/customers?q=x",
            **login_token(c),
        },
        follow_redirects=False,
    )
    assert res.status_code == 303 and res.headers["location"] == "/dashboard/customers?q=x"
    cookie = res.headers["set-cookie"]
    assert cookie.startswith(SESSION_COOKIE) and "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower() and "Secure" not in cookie  # plain http
    page = c.get("/dashboard")
    assert page.status_code == 200 and "Test manager" in page.text
    with unit_of_work(engine) as session:
        staff = session.scalars(select(StaffUser).where(StaffUser.email == email)).one()
        assert staff.last_login_at is not None


def test_login_cookie_is_secure_over_https(
    client: TestClient, engine: Engine, store: Store
) -> None:
    email = make_staff(engine, store)
    c = TestClient(client.app, base_url="https://testserver")
    res = post_login(c, store, email, STAFF_PASSWORD)
    assert res.status_code == 303 and "Secure" in res.headers["set-cookie"]


def test_open_redirects_are_refused(client: TestClient, engine: Engine, store: Store) -> None:
    email = make_staff(engine, store)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        c = fresh(client)
        form = {"store": store.slug, "email": email, "password": STAFF_PASSWORD, "next": target}
        res = c.post("/login", data={**form, **login_token(c)}, follow_redirects=False)
        assert res.headers["location"] == "/dashboard", target


def test_bad_login_says_so_and_sets_no_cookie(
    client: TestClient, engine: Engine, store: Store
) -> None:
    email = make_staff(engine, store)
    c = fresh(client)
    for who, password in ((email, "wrong password!"), ("nobody@example.com", STAFF_PASSWORD)):
        res = post_login(c, store, who, password)
        assert res.status_code == 401
        assert "Wrong e-mail or password" in res.text
        assert SESSION_COOKIE not in res.headers.get("set-cookie", "")
    # an unknown store, and missing fields: the form again, never a 500
    other = Store(slug="no-such-store", name="x")
    assert post_login(c, other, email, STAFF_PASSWORD).status_code == 422
    assert c.post("/login", data=login_token(c)).status_code == 422
    long = {"email": "a" * 5000, "password": "b" * 5000, **login_token(c)}
    assert c.post("/login", data=long).status_code in (
        401,
        422,
    )


def test_failed_logins_are_rate_limited_per_store_and_email(
    client: TestClient, engine: Engine, store: Store
) -> None:
    email = make_staff(engine, store)
    other = make_staff(engine, store)
    c = fresh(client)
    for _ in range(10):
        assert post_login(c, store, email, "wrong password!").status_code == 401
    res = post_login(c, store, email, STAFF_PASSWORD)  # even the right password now
    assert res.status_code == 429 and "Too many failed attempts" in res.text
    assert post_login(fresh(client), store, other, STAFF_PASSWORD).status_code == 303


def test_limiter_forgets_old_failures() -> None:
    limiter = security.LoginLimiter(limit=2, window=60)
    limiter.failed(1, "a", now=0)
    limiter.failed(1, "a", now=10)
    assert limiter.retry_after(1, "a", now=11) == 49
    assert limiter.retry_after(2, "a", now=11) == 0
    assert limiter.retry_after(1, "a", now=61) == 0


def test_with_several_stores_the_login_asks_for_the_slug(
    client: TestClient, engine: Engine, store: Store
) -> None:
    new_store(engine)  # at least two stores
    assert 'name="store"' in fresh(client).get("/login").text


def test_logout_needs_csrf_and_clears_the_cookie(staff_client: Callable[..., TestClient]) -> None:
    c = staff_client()
    assert c.post("/logout", data={}, follow_redirects=False).status_code == 403
    res = c.post("/logout", data={"csrf": c.csrf}, follow_redirects=False)  # type: ignore[attr-defined]
    assert res.status_code == 303 and res.headers["location"] == "/login"
    assert c.get("/dashboard", follow_redirects=False).status_code == 303


# --- the session cookie ----------------------------------------------------------------


def test_tampered_or_expired_cookie_is_refused(
    client: TestClient, engine: Engine, store: Store, staff_client: Callable[..., TestClient]
) -> None:
    c = staff_client()
    cookie = c.cookies[SESSION_COOKIE]
    body, sig = cookie.split(".")
    claims = security.read_claims(cookie)
    assert claims is not None
    forged = security._b64(
        f'{{"u":{claims.staff_id + 1},"s":{claims.store_id},"e":{claims.expires},'
        f'"n":"{claims.nonce}","p":"{claims.fingerprint}"}}'.encode()
    )
    with unit_of_work(engine) as session:
        secret = session.get(Store, store.id).signing_secret  # type: ignore[union-attr]
        staff = session.get(StaffUser, claims.staff_id)
        assert staff is not None
        expired = security.issue_session(
            secret, staff.id, store.id, staff.password_hash, now=time.time() - 13 * 3600
        )
    for bad in (f"{forged}.{sig}", f"{body}.{sig[:-2]}xx", "garbage", "a.b.c", expired):
        d = fresh(client)
        d.cookies.set(SESSION_COOKIE, bad)
        assert d.get("/dashboard", follow_redirects=False).status_code == 303, bad


def test_cookie_of_another_store_opens_nothing(
    client: TestClient, engine: Engine, staff_client: Callable[..., TestClient]
) -> None:
    c = staff_client()
    claims = security.read_claims(c.cookies[SESSION_COOKIE])
    assert claims is not None
    other = new_store(engine)
    # the same claims pointed at another store fail its key
    body, sig = c.cookies[SESSION_COOKIE].split(".")
    raw = security._unb64(body).replace(
        f'"s":{claims.store_id}'.encode(), f'"s":{other.id}'.encode()
    )
    d = fresh(client)
    d.cookies.set(SESSION_COOKIE, f"{security._b64(raw)}.{sig}")
    assert d.get("/dashboard", follow_redirects=False).status_code == 303


def test_disabled_staff_and_changed_password_end_sessions(
    client: TestClient, engine: Engine, store: Store
) -> None:
    email = make_staff(engine, store, Role.support)
    c = login_client(client.app, store, email)
    with unit_of_work(engine) as session:
        staff = staff_accounts.by_email(session, session.merge(store), email)
        assert staff is not None
        staff_accounts.set_password(session, staff, "another long password")
    assert c.get("/dashboard", follow_redirects=False).status_code == 303
    c = login_client(client.app, store, email, "another long password")
    with unit_of_work(engine) as session:
        staff_accounts.disable(session, session.merge(store), email)
    assert c.get("/dashboard", follow_redirects=False).status_code == 303
    res = post_login(fresh(client), store, email, "another long password")
    assert res.status_code == 401


def test_every_dashboard_page_needs_the_staff_cookie(client: TestClient) -> None:
    routes = [(p, m) for p, m in api_routes(client.app) if p.startswith("/dashboard")]
    assert any(p == "/dashboard" for p, _ in routes)
    c = fresh(client)
    for template, methods in routes:
        path = re.sub(r"\{[^}]+\}", "1", template)
        for method in methods - {"HEAD"}:
            res = c.request(method, path, follow_redirects=False)
            assert res.status_code == 303, f"{method} {template}: {res.status_code}"
            assert res.headers["location"].startswith("/login?next=")
    hx = c.get("/dashboard", headers={"HX-Request": "true"}, follow_redirects=False)
    assert hx.status_code == 401 and hx.headers["hx-redirect"].startswith("/login")


# --- CSRF and roles ---------------------------------------------------------------------


def test_post_without_or_with_a_foreign_csrf_token_is_refused(
    staff_client: Callable[..., TestClient],
) -> None:
    owner, other = staff_client("owner"), staff_client("owner")
    url = "/logout"
    assert owner.post(url, data={"csrf": ""}, follow_redirects=False).status_code == 403
    res = owner.post(url, data={"csrf": other.csrf}, follow_redirects=False)  # type: ignore[attr-defined]
    assert res.status_code == 403 and "Form expired" in res.text
    res = owner.post(url, headers={"X-CSRF-Token": owner.csrf}, follow_redirects=False)  # type: ignore[attr-defined]
    assert res.status_code == 303


def test_a_role_not_allowed_gets_the_403_page_in_its_language(
    staff_client: Callable[..., TestClient],
) -> None:
    support = staff_client("support")
    res = support.get("/dashboard/staff")
    assert res.status_code == 403 and "Not allowed" in res.text
    assert 'href="/dashboard/staff"' not in res.text  # not offered in the nav either
    res = support.get("/dashboard/staff?lang=zh")
    assert res.status_code == 403 and "无权访问" in res.text
    assert staff_client("owner").get("/dashboard/staff").status_code == 200


def test_nav_shows_each_role_what_it_may_open(staff_client: Callable[..., TestClient]) -> None:
    for role in Role:
        html = staff_client(role).get("/dashboard").text
        for item in NAV:
            shown = f'data-nav="{item.key}"' in html
            assert shown == (role in item.roles), (role, item.key)


# --- language ----------------------------------------------------------------------------


def test_language_from_query_then_cookie_then_browser() -> None:
    assert choose_lang("zh", "en", "en-US") == "zh"
    assert choose_lang(None, "zh", "en-US") == "zh"
    assert choose_lang("xx", None, "zh-TW,zh;q=0.9") == "zh"
    assert choose_lang(None, None, "fr-FR, en;q=0.8") == "en"
    assert choose_lang(None, None, None) == "en"


def test_lang_switch_is_remembered(staff_client: Callable[..., TestClient]) -> None:
    c = staff_client()
    res = c.get("/dashboard?lang=zh")
    assert '<html lang="zh-CN">' in res.text and "总览" in res.text
    assert f"{LANG_COOKIE}=zh" in res.headers["set-cookie"]
    assert '<html lang="zh-CN">' in c.get("/dashboard/customers").text  # from the cookie
    assert '<html lang="en">' in c.get("/dashboard", params={"lang": "en"}).text
    browser = fresh(c)
    assert "登录" in browser.get("/login", headers={"Accept-Language": "zh-CN,zh"}).text
    # a link with ?lang= to a page behind the login keeps its language through the login
    res = browser.get("/?lang=zh", follow_redirects=False)
    assert res.headers["location"] == "/dashboard?lang=zh"
    res = browser.get("/dashboard?lang=zh", follow_redirects=False)
    assert res.headers["location"] == "/login?next=%2Fdashboard%3Flang%3Dzh&lang=zh"
    assert '<html lang="zh-CN">' in browser.get(res.headers["location"]).text


def test_every_registered_key_has_both_languages() -> None:
    import patron.app  # noqa: F401  (imports every page module, so all keys are registered)

    assert len(CATALOGUE) > 30
    for lang in LANGS:
        t = translator(lang)
        for key in CATALOGUE:
            assert t(key).strip(), (key, lang)
    with pytest.raises(KeyError):
        translator("en")("no.such.key")


def test_formatter_per_language() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from patron.web.i18n import Formatter

    en, zh = Formatter("en", "CNY", "Asia/Shanghai"), Formatter("zh", "USD", "UTC")
    assert en.number(1234567) == "1,234,567"
    assert en.money(Decimal("-1234.5")) == "-¥1,234.50"
    assert zh.minor(123456) == "$1,234.56"
    assert en.percent(0.2534) == "25.3%"
    late = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)  # already the 27th in Shanghai
    assert en.date(late) == "27 Nov 2026" and zh.date(late) == "2026年11月26日"
    assert en.number(None) == "—"
    assert en.price(Decimal("0.01")) == "¥0.01" and en.price(Decimal("0.0125")) == "¥0.0125"


# --- the CLI ---------------------------------------------------------------------------


def test_cli_create_list_disable(db_cli: object, engine: Engine, store: Store) -> None:
    from typer.testing import CliRunner

    from patron.cli import app

    runner = db_cli
    assert isinstance(runner, CliRunner)
    args = ["staff", "create", "--store", store.slug, "--email", "Bo@Example.com"]
    args += ["--name", "Bo", "--role", "support", "--password-stdin"]
    res = runner.invoke(app, args, input="a very long password\n")
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, args, input="a very long password\n")
    assert res.exit_code == 1 and "already exists" in res.output
    short = runner.invoke(app, [*args[:5], "c@example.com", *args[6:]], input="short\n")
    assert short.exit_code == 1 and "password" in short.output
    listed = runner.invoke(app, ["staff", "list", "--store", store.slug])
    assert "bo@example.com" in listed.output and "support" in listed.output
    res = runner.invoke(
        app, ["staff", "disable", "--store", store.slug, "--email", "bo@example.com"]
    )
    assert res.exit_code == 0
    with unit_of_work(engine) as session:
        bo = staff_accounts.by_email(session, session.merge(store), "bo@example.com")
        assert bo is not None and bo.disabled_at is not None
    assert runner.invoke(app, ["staff", "list", "--store", "no-such"]).exit_code == 1


def test_static_files_are_served_and_vendor_cached(client: TestClient) -> None:
    res = client.get("/static/vendor/htmx.min.js")
    assert res.status_code == 200 and "immutable" in res.headers["cache-control"]
    assert client.get("/static/dashboard.css").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_csrf_helper_reads_the_meta_tag(staff_client: Callable[..., TestClient]) -> None:
    c = staff_client()
    assert csrf_of(c.get("/dashboard").text) == c.csrf  # type: ignore[attr-defined]


def test_with_a_single_store_the_slug_is_implied(tmp_path: Path) -> None:
    from patron.app import create_app
    from patron.db import make_engine
    from patron.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    upgrade(engine)
    only = new_store(engine)
    email = make_staff(engine, only)
    c = TestClient(create_app(engine), raise_server_exceptions=False)
    form = c.get("/login").text
    assert 'name="store"' not in form and "Test store" in form
    res = c.post(
        "/login",
        data={"email": email, "password": STAFF_PASSWORD, **login_token(c)},
        follow_redirects=False,
    )
    assert res.status_code == 303
    assert c.get("/dashboard").status_code == 200
    engine.dispose()


def test_login_without_the_form_token_is_refused(
    client: TestClient, engine: Engine, store: Store
) -> None:
    """Login CSRF: a form posted from another site carries no valid token."""
    email = make_staff(engine, store)
    c = fresh(client)
    form = {"store": store.slug, "email": email, "password": STAFF_PASSWORD}
    res = c.post("/login", data=form, follow_redirects=False)
    assert res.status_code == 403 and "login form expired" in res.text
    assert SESSION_COOKIE not in res.headers.get("set-cookie", "")
    res = c.post("/login", data={**form, "login_token": "x" * 32}, follow_redirects=False)
    assert res.status_code == 403
    # the refused page set a token: sending the form again works
    assert post_login(c, store, email, STAFF_PASSWORD).status_code == 303


def test_demo_accounts_are_created_once_and_log_in(
    client: TestClient, engine: Engine, store: Store
) -> None:
    from patron.web.staff import DEMO_PASSWORD, ensure_demo_staff

    for _ in range(2):  # a restarted demo reuses them
        with unit_of_work(engine) as session:
            made = ensure_demo_staff(session, session.merge(store))
    assert [role for _, role in made] == [Role.owner, Role.support]
    with unit_of_work(engine) as session:
        assert len(staff_accounts.list(session, session.merge(store))) == 2
    owner = login_client(client.app, store, made[0][0], DEMO_PASSWORD)
    assert owner.get("/dashboard/staff").status_code == 200


def test_cli_asks_for_the_password_when_not_piped(db_cli: object, store: Store) -> None:
    from typer.testing import CliRunner

    from patron.cli import app

    assert isinstance(db_cli, CliRunner)
    args = ["staff", "create", "-s", store.slug, "--email", "p@example.com", "--name", "P"]
    res = db_cli.invoke(
        app,
        [*args, "--role", "analyst"],
        input="a long password\nmistyped!!\na long password\na long password\n",
    )
    assert res.exit_code == 0, res.output
    assert "do not match" in res.output  # the confirmation caught the typo, asked again
    assert "created analyst p@example.com" in res.output
