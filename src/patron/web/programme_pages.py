"""The programme (/dashboard/programme): tiers, earning rules and rewards of the active
programme version, and "simulate an order" (htmx POST answering a partial; without
JavaScript the whole page comes back with the result) through the loyalty programme's
own simulation, which says which rules fired and why."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from patron.auth import SessionDep
from patron.errors import Invalid
from patron.kit.clock import zone
from patron.loyalty.orders import active_program
from patron.loyalty.program import LocalText, ProgramConfig
from patron.loyalty.programs import SimulateIn, SimulateOut, active_row, programs
from patron.web.dashboard import NAV_ROLES, StaffContext, allow, render
from patron.web.i18n import register

router = APIRouter(include_in_schema=False)
Viewer = Annotated[StaffContext, allow(*NAV_ROLES["programme"])]


def local_name(text: LocalText | None, lang: str, fallback: str = "") -> str:
    if text is None:
        return fallback
    return (text.zh if lang == "zh" else text.en) or text.display() or fallback


def summary(model: BaseModel | None) -> str:
    """A compact "key: value; …" of a model's non-default fields (conditions, effects,
    caps, benefits)."""
    if model is None:
        return ""
    data = model.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    parts = []
    for key, value in data.items():
        if isinstance(value, bool):
            value = "✓" if value else "✗"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


class SimForm(BaseModel):
    amount: str = ""
    category: str = ""
    channel: str = ""
    tier: str = ""
    first_order: str = ""
    birthday: str = ""
    day: str = ""


def _simulate(
    session: Session, ctx: StaffContext, program: ProgramConfig, form: SimForm
) -> tuple[SimulateOut | None, list[str]]:
    """Run the programme's simulation on the form; (result, problems)."""
    problems: list[str] = []
    order: dict[str, Any] = {"kind": "order"}
    try:
        amount = Decimal(form.amount.strip() or "x")
        if not amount.is_finite() or amount < 0:
            raise InvalidOperation
    except InvalidOperation:
        problems.append(ctx.t("prog.bad_amount"))
        amount = Decimal(0)
    if form.category.strip():
        order["lines"] = [{"category": form.category.strip(), "net": str(amount)}]
    else:
        order["amount"] = str(amount)
    if form.channel.strip():
        order["channel"] = form.channel.strip()
    if form.day.strip():
        try:
            day = date.fromisoformat(form.day.strip())
            order["occurred_at"] = datetime.combine(day, time(12), zone(ctx.store.timezone))
        except ValueError:
            problems.append(ctx.t("prog.bad_day"))
    member: dict[str, Any] = {"first_order": bool(form.first_order)}
    if form.tier:
        if form.tier not in {tier.code for tier in program.tiers}:
            problems.append(ctx.t("prog.bad_tier", tier=form.tier))
        member["tier"] = form.tier
    if form.birthday.strip():
        try:
            member["birthday"] = date.fromisoformat(form.birthday.strip())
        except ValueError:
            problems.append(ctx.t("prog.bad_birthday"))
    if problems:
        return None, problems
    try:
        body = SimulateIn.model_validate({"order": order, "member": member})
        return programs.simulate(session, ctx.store, body), []
    except ValidationError as exc:
        return None, [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    except Invalid as exc:
        return None, [exc.detail]


def _page_context(session: Session, ctx: StaffContext) -> dict[str, Any]:
    row = active_row(session, ctx.store.id)
    program: ProgramConfig | None = active_program(session, ctx.store)
    return {"row": row, "program": program}


@router.get("/dashboard/programme")
def programme_page(ctx: Viewer, session: SessionDep) -> HTMLResponse:
    return render(
        ctx,
        "dashboard/programme.html",
        **_page_context(session, ctx),
        form=SimForm(amount="299.00"),
        result=None,
        problems=[],
        name=lambda text, fallback="": local_name(text, ctx.lang, fallback),
        summary=summary,
    )


@router.post("/dashboard/programme/simulate")
def simulate_order(
    request: Request,
    ctx: Viewer,
    session: SessionDep,
    amount: Annotated[str, Form(max_length=40)] = "",
    category: Annotated[str, Form(max_length=128)] = "",
    channel: Annotated[str, Form(max_length=32)] = "",
    tier: Annotated[str, Form(max_length=64)] = "",
    first_order: Annotated[str, Form(max_length=8)] = "",
    birthday: Annotated[str, Form(max_length=20)] = "",
    day: Annotated[str, Form(max_length=20)] = "",
) -> HTMLResponse:
    form = SimForm(
        amount=amount,
        category=category,
        channel=channel,
        tier=tier,
        first_order=first_order,
        birthday=birthday,
        day=day,
    )
    context = _page_context(session, ctx)
    result, problems = (None, [ctx.t("prog.none")])
    if context["program"] is not None:
        result, problems = _simulate(session, ctx, context["program"], form)
    status = 200 if result is not None else 422
    extra: dict[str, Any] = {
        "form": form,
        "result": result,
        "problems": problems,
        "name": lambda text, fallback="": local_name(text, ctx.lang, fallback),
        "summary": summary,
    }
    if request.headers.get("hx-request"):
        # htmx swaps only 2xx answers by default: the problems come back as a 200 partial
        return render(ctx, "dashboard/_simulation.html", **context, **extra)
    return render(ctx, "dashboard/programme.html", status, **context, **extra)


register(
    {
        "prog.title": {"en": "Loyalty programme", "zh": "会员计划"},
        "prog.none": {
            "en": "This store has no loyalty programme yet. Apply one with "
            "`patron program apply program.yaml` (see docs/loyalty-program.md).",
            "zh": "本店铺尚未设置会员计划。请用 `patron program apply program.yaml` 设置"
            "(见 docs/loyalty-program.md)。",
        },
        "prog.version": {
            "en": "Version {v}, applied {at}",
            "zh": "第 {v} 版,{at} 生效",
        },
        "prog.earn": {"en": "Earning", "zh": "积分规则"},
        "prog.earn_line": {
            "en": "{points} point(s) per {unit} {currency} ({basis}), pending {days} days "
            "after delivery",
            "zh": "每 {unit} {currency} 得 {points} 积分({basis}),签收后 {days} 天生效",
        },
        "prog.expiry": {"en": "Expiry", "zh": "积分有效期"},
        "prog.tiers": {"en": "Tiers", "zh": "会员等级"},
        "prog.code": {"en": "Code", "zh": "代码"},
        "prog.name": {"en": "Name", "zh": "名称"},
        "prog.threshold": {"en": "Threshold", "zh": "门槛"},
        "prog.retain": {"en": "Keep at", "zh": "保级门槛"},
        "prog.qualify_on": {"en": "Counts", "zh": "计算依据"},
        "prog.benefits": {"en": "Benefits", "zh": "权益"},
        "prog.rules": {"en": "Earning rules", "zh": "积分生成规则"},
        "prog.event": {"en": "Event", "zh": "事件"},
        "prog.priority": {"en": "Priority", "zh": "优先级"},
        "prog.when": {"en": "When", "zh": "条件"},
        "prog.effect": {"en": "Effect", "zh": "效果"},
        "prog.caps": {"en": "Caps", "zh": "上限"},
        "prog.active": {"en": "Active", "zh": "启用"},
        "prog.inactive": {"en": "off", "zh": "停用"},
        "prog.rewards": {"en": "Rewards", "zh": "积分兑换"},
        "prog.type": {"en": "Type", "zh": "类型"},
        "prog.cost": {"en": "Points", "zh": "所需积分"},
        "prog.for_tiers": {"en": "Tiers", "zh": "适用等级"},
        "prog.all": {"en": "all", "zh": "全部"},
        "prog.no_rules": {"en": "No rules.", "zh": "暂无规则。"},
        "prog.no_rewards": {"en": "No rewards.", "zh": "暂无兑换项目。"},
        "prog.simulate": {"en": "Simulate an order", "zh": "模拟下单"},
        "prog.simulate_hint": {
            "en": "What would this order earn under the active programme? Nothing is written.",
            "zh": "在当前会员计划下这笔订单能得多少积分?不会写入任何数据。",
        },
        "prog.amount": {"en": "Amount (after discounts)", "zh": "金额(折后)"},
        "prog.category": {"en": "Product category", "zh": "商品类目"},
        "prog.channel": {"en": "Channel", "zh": "渠道"},
        "prog.tier": {"en": "Member tier", "zh": "会员等级"},
        "prog.first_order": {"en": "First order", "zh": "首单"},
        "prog.birthday": {"en": "Birthday", "zh": "生日"},
        "prog.day": {"en": "Order date", "zh": "下单日期"},
        "prog.run": {"en": "Simulate", "zh": "模拟"},
        "prog.optional": {"en": "optional", "zh": "选填"},
        "prog.result": {
            "en": "{points} points and {growth} growth",
            "zh": "{points} 积分,{growth} 成长值",
        },
        "prog.base": {
            "en": "Base {base} points, tier bonus {tier} points, on {amount} ({date})",
            "zh": "基础 {base} 积分,等级加成 {tier} 积分,计算金额 {amount}({date})",
        },
        "prog.fired": {"en": "Fired", "zh": "已触发"},
        "prog.not_fired": {"en": "Not fired", "zh": "未触发"},
        "prog.rule": {"en": "Rule", "zh": "规则"},
        "prog.why": {"en": "Why", "zh": "原因"},
        "prog.gain": {"en": "Points", "zh": "积分"},
        "prog.bad_amount": {
            "en": "Amount: a number such as 299.00.",
            "zh": "金额:请输入数字,例如 299.00。",
        },
        "prog.bad_day": {"en": "Order date: YYYY-MM-DD.", "zh": "下单日期:格式为 YYYY-MM-DD。"},
        "prog.bad_tier": {
            "en": "Member tier: no tier {tier!r}.",
            "zh": "会员等级:没有等级 {tier!r}。",
        },
        "prog.bad_birthday": {
            "en": "Birthday: YYYY-MM-DD.",
            "zh": "生日:格式为 YYYY-MM-DD。",
        },
    }
)
