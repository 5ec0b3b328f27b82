"""Dashboard pages: campaigns (status, recipients, conversion against the holdout, uplift
with its 95% interval) and a campaign's detail (groups, variants, A/B). Owners and
managers may also schedule, pause and cancel from here."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from patron.auth import SessionDep
from patron.campaigns.campaign import campaign_service
from patron.errors import PatronError
from patron.web.dashboard import NAV_ROLES, WRITE_ROLES, StaffContext, allow, error_page, render
from patron.web.i18n import register

router = APIRouter(include_in_schema=False)
Viewer = Annotated[StaffContext, allow(*NAV_ROLES["campaigns"])]
Writer = Annotated[StaffContext, allow(*WRITE_ROLES["campaigns"])]

register(
    {
        "cp.title": {"en": "Campaigns", "zh": "营销活动"},
        "cp.none": {
            "en": "No campaigns yet. Create one with the API or `patron campaigns create`.",
            "zh": "还没有营销活动。可通过 API 或 `patron campaigns create` 创建。",
        },
        "cp.name": {"en": "Campaign", "zh": "活动"},
        "cp.kind": {"en": "Type", "zh": "类型"},
        "cp.status": {"en": "Status", "zh": "状态"},
        "cp.recipients": {"en": "Sent to", "zh": "发送人数"},
        "cp.held_out": {"en": "Held out", "zh": "对照组"},
        "cp.conv_t": {"en": "Conversion (sent)", "zh": "转化率（发送组）"},
        "cp.conv_h": {"en": "Conversion (holdout)", "zh": "转化率（对照组）"},
        "cp.uplift": {"en": "Uplift (95% CI)", "zh": "提升（95% 置信区间）"},
        "cp.rpr_uplift": {"en": "Revenue / recipient uplift", "zh": "人均收入提升"},
        "cp.no_holdout": {"en": "no holdout", "zh": "无对照组"},
        "cp.significant": {"en": "significant at 95%", "zh": "95% 水平显著"},
        "cp.kind.one_off": {"en": "One-off", "zh": "单次"},
        "cp.kind.triggered": {"en": "Triggered", "zh": "触发式"},
        "cp.st.draft": {"en": "Draft", "zh": "草稿"},
        "cp.st.scheduled": {"en": "Scheduled", "zh": "已排期"},
        "cp.st.sending": {"en": "Sending", "zh": "发送中"},
        "cp.st.sent": {"en": "Sent", "zh": "已发送"},
        "cp.st.active": {"en": "Active", "zh": "运行中"},
        "cp.st.paused": {"en": "Paused", "zh": "已暂停"},
        "cp.st.cancelled": {"en": "Cancelled", "zh": "已取消"},
        "cp.tr.newsletter": {"en": "Newsletter", "zh": "电子报"},
        "cp.tr.welcome": {"en": "Welcome", "zh": "欢迎"},
        "cp.tr.birthday": {"en": "Birthday", "zh": "生日"},
        "cp.tr.points_expiring": {"en": "Points expiring", "zh": "积分即将过期"},
        "cp.tr.tier_upgrade": {"en": "Tier upgrade", "zh": "会员升级"},
        "cp.tr.tier_downgrade_warning": {"en": "Downgrade warning", "zh": "降级提醒"},
        "cp.tr.win_back": {"en": "Win-back", "zh": "流失召回"},
        "cp.tr.post_purchase_survey": {"en": "Post-purchase survey", "zh": "购后调查"},
        "cp.back": {"en": "All campaigns", "zh": "全部活动"},
        "cp.attribution": {
            "en": "A conversion is an order (not cancelled or refunded in full) within {days} "
            "days after the send; for the holdout, after the time it would have been sent.",
            "zh": "转化指发送后 {days} 天内下单（未取消、未全额退款）；"
            "对照组从本应发送的时间起算。",
        },
        "cp.queued": {"en": "Queued", "zh": "已排队"},
        "cp.suppressed": {"en": "No consent", "zh": "未授权"},
        "cp.capped": {"en": "Frequency cap", "zh": "频次上限"},
        "cp.failed": {"en": "Template failed", "zh": "模板出错"},
        "cp.delivered": {"en": "Delivered", "zh": "已送达"},
        "cp.opened": {"en": "Opened", "zh": "已打开"},
        "cp.clicked": {"en": "Clicked", "zh": "已点击"},
        "cp.groups": {"en": "Groups", "zh": "分组"},
        "cp.group": {"en": "Group", "zh": "分组"},
        "cp.treatment": {"en": "All sent", "zh": "全部发送组"},
        "cp.holdout": {"en": "Holdout", "zh": "对照组"},
        "cp.variant": {"en": "Variant {name}", "zh": "版本 {name}"},
        "cp.members": {"en": "Recipients", "zh": "人数"},
        "cp.converted": {"en": "Converted", "zh": "转化人数"},
        "cp.conversion": {"en": "Conversion", "zh": "转化率"},
        "cp.rpr": {"en": "Revenue / recipient", "zh": "人均收入"},
        "cp.vs_holdout": {"en": "vs holdout", "zh": "对比对照组"},
        "cp.vs_first": {"en": "vs variant {name}", "zh": "对比版本 {name}"},
        "cp.subject": {"en": "Subject", "zh": "标题"},
        "cp.schedule": {"en": "Send / activate now", "zh": "立即发送 / 启用"},
        "cp.pause": {"en": "Pause", "zh": "暂停"},
        "cp.cancel": {"en": "Cancel", "zh": "取消"},
        "cp.pp": {"en": "{v} pp", "zh": "{v} 个百分点"},
        "cp.conflict_title": {"en": "Not possible now", "zh": "当前无法操作"},
        "cp.conflict": {
            "en": "The campaign's status does not allow this any more.",
            "zh": "该活动当前的状态不允许此操作。",
        },
    }
)


def _pp(ctx: StaffContext, x: float | None) -> str:
    if x is None:
        return ctx.fmt.DASH
    return ctx.t("cp.pp", v=f"{x * 100:+.1f}")


def _money(ctx: StaffContext, x: float | None) -> str:
    if x is None:
        return ctx.fmt.DASH
    text = ctx.fmt.minor(round(x))
    return text if x < 0 or text.startswith("-") else "+" + text


def interval(ctx: StaffContext, d: dict[str, Any] | None, money: bool = False) -> dict[str, Any]:
    """An estimate with its interval as display text (and whether it is significant)."""

    def show(v: float | None) -> str:
        return _money(ctx, v) if money else _pp(ctx, v)

    if not d or d["estimate"] is None:
        return {"text": ctx.fmt.DASH, "ci": "", "significant": False, "sign": 0}
    ci = "" if d["low"] is None else f"[{show(d['low'])}, {show(d['high'])}]"
    sign = 0 if not d["significant"] else (1 if d["estimate"] > 0 else -1)
    return {"text": show(d["estimate"]), "ci": ci, "significant": d["significant"], "sign": sign}


@router.get("/dashboard/campaigns")
def campaigns_page(ctx: Viewer, session: SessionDep) -> HTMLResponse:
    rows = []
    for c in campaign_service.find(session, ctx.store, limit=200):
        out = campaign_service.results(session, ctx.store, c.key)
        up = out["uplift"] or {}
        rows.append(
            {
                "c": c,
                "out": out,
                "conv": interval(ctx, up.get("conversion")),
                "rpr": interval(ctx, up.get("revenue_per_recipient_minor"), money=True),
            }
        )
    return render(ctx, "dashboard/campaigns.html", rows=rows)


@router.get("/dashboard/campaigns/{key}")
def campaign_page(key: str, ctx: Viewer, session: SessionDep) -> HTMLResponse:
    try:
        campaign = campaign_service.get(session, ctx.store, key)
    except PatronError:
        return error_page(ctx, 404, "error.not_found_title", "error.not_found")
    out = campaign_service.results(session, ctx.store, key)
    variants = campaign_service.variants(session, campaign)
    lang = "zh" if ctx.lang == "zh" else "en"
    subjects = {v.key: v.subject.get(lang) or next(iter(v.subject.values()), "") for v in variants}
    groups: list[tuple[str, Any, dict[str, Any] | None, dict[str, Any] | None]] = [
        ("treatment", out["treatment"], out["uplift"], None)
    ]
    first = variants[0].key if variants else ""
    for v in out["variants"]:
        groups.append((v["group"], v, v["uplift"], v["against_first"]))
    if out["holdout"]:
        groups.append(("holdout", out["holdout"], None, None))
    shown = [
        {
            "group": name,
            "g": g,
            "vs_holdout": interval(ctx, (up or {}).get("conversion")),
            "vs_holdout_rpr": interval(ctx, (up or {}).get("revenue_per_recipient_minor"), True),
            "vs_first": interval(ctx, (ab or {}).get("conversion")),
            "vs_first_rpr": interval(ctx, (ab or {}).get("revenue_per_recipient_minor"), True),
        }
        for name, g, up, ab in groups
    ]
    return render(
        ctx,
        "dashboard/campaign.html",
        c=campaign,
        out=out,
        groups=shown,
        first=first,
        subjects=subjects,
        can_write=ctx.can_write("campaigns"),
    )


def _act(ctx: StaffContext, session: Any, key: str, action: str) -> Response:
    try:
        if action == "schedule":
            campaign_service.schedule(session, ctx.store, key)
        elif action == "pause":
            campaign_service.pause(session, ctx.store, key)
        else:
            campaign_service.cancel(session, ctx.store, key)
    except PatronError:
        return error_page(ctx, 409, "cp.conflict_title", "cp.conflict")
    return RedirectResponse(f"/dashboard/campaigns/{key}", status_code=303)


@router.post("/dashboard/campaigns/{key}/schedule")
def schedule_action(key: str, ctx: Writer, session: SessionDep) -> Response:
    return _act(ctx, session, key, "schedule")


@router.post("/dashboard/campaigns/{key}/pause")
def pause_action(key: str, ctx: Writer, session: SessionDep) -> Response:
    return _act(ctx, session, key, "pause")


@router.post("/dashboard/campaigns/{key}/cancel")
def cancel_action(key: str, ctx: Writer, session: SessionDep) -> Response:
    return _act(ctx, session, key, "cancel")
