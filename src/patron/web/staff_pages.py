"""Staff (/dashboard/staff, owners only): the store's accounts, add one, disable one.
Disabling ends that person's sessions at once; an owner cannot disable themself (a
store must keep someone who can manage staff)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from patron.auth import SessionDep
from patron.errors import Conflict, Invalid, NotFound
from patron.web.dashboard import (
    NAV_ROLES,
    WRITE_ROLES,
    StaffContext,
    allow,
    error_page,
    render,
)
from patron.web.i18n import register
from patron.web.models import Role
from patron.web.security import MIN_PASSWORD_LENGTH
from patron.web.staff import staff_accounts

router = APIRouter(include_in_schema=False)
Owner = Annotated[StaffContext, allow(*NAV_ROLES["staff"])]
Manager = Annotated[StaffContext, allow(*WRITE_ROLES["staff"])]


def _page(ctx: StaffContext, session: SessionDep, status: int = 200, **extra: Any) -> HTMLResponse:
    context: dict[str, Any] = {
        "accounts": staff_accounts.list(session, ctx.store),
        "roles": list(Role),
        "min_password": MIN_PASSWORD_LENGTH,
        "errors": {},
        "values": {},
        "done": None,
    }
    context.update(extra)
    return render(ctx, "dashboard/staff.html", status, **context)


@router.get("/dashboard/staff")
def staff_page(ctx: Owner, session: SessionDep, done: str | None = None) -> HTMLResponse:
    return _page(ctx, session, done=done if done in ("added", "disabled") else None)


@router.post("/dashboard/staff")
def add_staff(
    ctx: Manager,
    session: SessionDep,
    email: Annotated[str, Form(max_length=400)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
    password: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    values = {"email": email, "name": name, "role": role}
    try:
        staff_accounts.create(session, ctx.store, email, name, role, password)
    except Invalid as exc:
        errors = {e["field"]: e["message"] for e in exc.errors}
        return _page(ctx, session, 422, errors=errors, values=values)
    except Conflict:
        errors = {"email": ctx.t("staff.exists")}
        return _page(ctx, session, 409, errors=errors, values=values)
    return RedirectResponse("/dashboard/staff?done=added", status_code=303)


@router.post("/dashboard/staff/{staff_id}/disable")
def disable_staff(ctx: Manager, session: SessionDep, staff_id: int) -> Response:
    try:
        target = staff_accounts.get(session, ctx.store, staff_id)
    except NotFound:
        return error_page(ctx, 404, "error.not_found_title", "error.not_found")
    if target.id == ctx.staff.id:
        return _page(ctx, session, 409, errors={"disable": ctx.t("staff.not_self")})
    staff_accounts.disable(session, ctx.store, target.email)
    return RedirectResponse("/dashboard/staff?done=disabled", status_code=303)


register(
    {
        "staff.title": {"en": "Staff accounts", "zh": "员工账号"},
        "staff.email": {"en": "E-mail", "zh": "邮箱"},
        "staff.name": {"en": "Name", "zh": "姓名"},
        "staff.role": {"en": "Role", "zh": "角色"},
        "staff.created": {"en": "Created", "zh": "创建时间"},
        "staff.last_login": {"en": "Last login", "zh": "最近登录"},
        "staff.state": {"en": "State", "zh": "状态"},
        "staff.active": {"en": "Active", "zh": "正常"},
        "staff.disabled": {"en": "Disabled", "zh": "已停用"},
        "staff.disable": {"en": "Disable", "zh": "停用"},
        "staff.you": {"en": "you", "zh": "您"},
        "staff.never": {"en": "never", "zh": "从未登录"},
        "staff.add": {"en": "Add a staff account", "zh": "添加员工账号"},
        "staff.password": {
            "en": "Password (at least {n} characters)",
            "zh": "密码(至少 {n} 个字符)",
        },
        "staff.add_button": {"en": "Add", "zh": "添加"},
        "staff.added": {"en": "Account added.", "zh": "账号已添加。"},
        "staff.disabled_ok": {
            "en": "Account disabled; its sessions have ended.",
            "zh": "账号已停用,其登录会话已失效。",
        },
        "staff.exists": {
            "en": "An account with this e-mail already exists in this store.",
            "zh": "本店铺已有使用此邮箱的账号。",
        },
        "staff.not_self": {
            "en": "You cannot disable your own account.",
            "zh": "不能停用自己的账号。",
        },
        "staff.roles_help": {
            "en": "Owner: everything, including staff. Manager: programme, campaigns, "
            "analytics. Support: customers and tickets. Analyst: read-only.",
            "zh": "店主:全部权限,包括员工管理。经理:会员计划、营销活动、数据分析。"
            "客服:客户与工单。分析师:只读。",
        },
        "staff.cli": {
            "en": "From the shell: patron staff create --store {slug} --email … --name … --role …",
            "zh": "命令行:patron staff create --store {slug} --email … --name … --role …",
        },
    }
)
