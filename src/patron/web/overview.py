"""The overview (/dashboard): the 4R scorecard and the headline KPIs — CRR, NPS with
its interval, members by tier, points liability."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from patron.auth import SessionDep
from patron.web import health
from patron.web.dashboard import NAV_ROLES, StaffContext, allow, render
from patron.web.i18n import register
from patron.web.scorecard import Measure, Target

router = APIRouter(include_in_schema=False)


def value_text(ctx: StaffContext, kind: str, value: float | None) -> str:
    fmt, t = ctx.fmt, ctx.t
    if value is None:
        return fmt.DASH
    if kind == "pct":
        return fmt.pct_points(value)
    if kind == "months":
        return t("unit.months", n=fmt.number(value, 1))
    if kind == "hours":
        return t("unit.hours", n=fmt.number(value, 1))
    if kind == "money":
        return fmt.money(value)
    return fmt.number(value)


def target_text(ctx: StaffContext, m: Measure) -> str:
    target: Target | None = m.target
    if target is None:
        return ""
    sign = "≥" if target.higher_is_better else "≤"
    return f"{sign} {value_text(ctx, m.kind, target.green)}"


@router.get("/dashboard")
def overview_page(
    ctx: Annotated[StaffContext, allow(*NAV_ROLES["overview"])], session: SessionDep
) -> HTMLResponse:
    data = health.overview(session, ctx.store)
    return render(
        ctx,
        "dashboard/overview.html",
        o=data,
        value_text=lambda kind, value: value_text(ctx, kind, value),
        target_text=lambda m: target_text(ctx, m),
    )


register(
    {
        "ov.title": {"en": "Overview", "zh": "总览"},
        "ov.kpis": {"en": "Headline figures", "zh": "核心指标"},
        "ov.crr": {"en": "Customer retention rate (CRR)", "zh": "客户保留率(CRR)"},
        "ov.crr_sub": {
            "en": "(E − N) / S × 100, month starting {period}",
            "zh": "(E − N) / S × 100,{period} 起的一个月",
        },
        "ov.nps": {"en": "Net Promoter Score (NPS)", "zh": "净推荐值(NPS)"},
        "ov.nps_sub": {
            "en": "95% interval {low} to {high}; {n} answers in 12 months",
            "zh": "95% 置信区间 {low} 至 {high};近 12 个月 {n} 份回答",
        },
        "ov.nps_none": {
            "en": "No NPS answers in the last 12 months.",
            "zh": "近 12 个月没有 NPS 回答。",
        },
        "ov.members": {"en": "Members", "zh": "会员"},
        "ov.members_sub": {"en": "by tier below", "zh": "各等级人数见下方"},
        "ov.liability": {"en": "Points liability", "zh": "积分负债"},
        "ov.liability_sub": {
            "en": "{points} points outstanding at {cost} a point",
            "zh": "未兑换积分 {points},按每分 {cost} 计",
        },
        "ov.no_program": {
            "en": "No loyalty programme yet: apply one with `patron program apply`.",
            "zh": "尚未设置会员计划:请用 `patron program apply` 设置。",
        },
        "ov.tiers": {"en": "Members by tier", "zh": "各等级会员"},
        "ov.scorecard": {"en": "4R health scorecard", "zh": "4R 健康记分卡"},
        "ov.scorecard_note": {
            "en": "Each R shows its weakest measure's light; grey means no data yet.",
            "zh": "每个 R 显示其最弱指标的信号灯;灰色表示暂无数据。",
        },
        "ov.no_analysis": {
            "en": "No analysis has been run for this store yet, so CRR and segment "
            "coverage are missing. Run it with:",
            "zh": "本店铺尚未运行数据分析,因此缺少客户保留率和分群覆盖率。运行命令:",
        },
        "ov.old_analysis": {
            "en": "The latest analysis was stored by an older version of Patron. Run it "
            "again with:",
            "zh": "最近一次分析由旧版 Patron 保存,请重新运行:",
        },
        "ov.computed": {"en": "Figures of {at}", "zh": "数据时间 {at}"},
        "ov.analysis_of": {
            "en": "Analysis run {run} of {at}",
            "zh": "数据分析第 {run} 次运行,{at}",
        },
        "ov.target": {"en": "target", "zh": "目标"},
        "ov.measure": {"en": "Measure", "zh": "指标"},
        "ov.value": {"en": "Value", "zh": "数值"},
        "light.green": {"en": "Healthy", "zh": "健康"},
        "light.amber": {"en": "Watch", "zh": "关注"},
        "light.red": {"en": "Act now", "zh": "需行动"},
        "light.grey": {"en": "No data", "zh": "暂无数据"},
        "4r.relationship": {"en": "Relationship", "zh": "关系 Relationship"},
        "4r.relevance": {"en": "Relevance", "zh": "关联 Relevance"},
        "4r.responsiveness": {"en": "Responsiveness", "zh": "反应 Responsiveness"},
        "4r.rewards": {"en": "Rewards", "zh": "回报 Rewards"},
        "4r.relationship.about": {
            "en": "Do customers stay and come back?",
            "zh": "客户是否留下并再次购买?",
        },
        "4r.relevance.about": {
            "en": "Do we know customers well enough to speak to them personally?",
            "zh": "我们是否足够了解客户、能进行个性化沟通?",
        },
        "4r.responsiveness.about": {
            "en": "Do we answer customers within our service targets?",
            "zh": "我们是否在服务目标时间内回应客户?",
        },
        "4r.rewards.about": {
            "en": "Do members earn and use their points?",
            "zh": "会员是否在获得并使用积分?",
        },
        "4r.on_target": {
            "en": "Every measure with data is on target.",
            "zh": "所有有数据的指标均达标。",
        },
        "4r.no_data": {
            "en": "Not enough data yet to judge.",
            "zh": "数据不足,暂无法评估。",
        },
        "4r.watch": {
            "en": "Weakest: {measure} at {value} (target {target}).",
            "zh": "最弱指标:{measure} 为 {value}(目标 {target})。",
        },
        "m.crr": {"en": "CRR, last full month", "zh": "上个完整月的客户保留率"},
        "m.repeat_rate": {
            "en": "Repeat buyers, last 12 months",
            "zh": "近 12 个月复购客户占比",
        },
        "m.tenure_months": {
            "en": "Median tenure of last month's buyers",
            "zh": "上月购买客户的中位客龄",
        },
        "m.segment_coverage": {
            "en": "Buyers with an RFM segment",
            "zh": "有 RFM 分群的客户占比",
        },
        "m.profile_birthday": {
            "en": "Profiles with a birthday",
            "zh": "填写生日的客户档案占比",
        },
        "m.consent_reach": {
            "en": "Reachable with consent",
            "zh": "已授权可联系的客户占比",
        },
        "m.sla_first": {
            "en": "First responses on time (90 days)",
            "zh": "按时首次响应(近 90 天)",
        },
        "m.sla_resolution": {
            "en": "Resolutions on time (90 days)",
            "zh": "按时解决(近 90 天)",
        },
        "m.first_response_h": {
            "en": "Median first response",
            "zh": "首次响应时间中位数",
        },
        "m.follow_ups_closed": {
            "en": "Unhappy-answer follow-ups closed",
            "zh": "不满意回访工单已处理",
        },
        "m.active_members": {
            "en": "Members who ordered in 90 days",
            "zh": "近 90 天有下单的会员",
        },
        "m.redemption_rate": {
            "en": "Redemption rate (redeemed / earned)",
            "zh": "积分兑换率(已兑换 / 已发放)",
        },
        "m.breakage": {"en": "Breakage (expired / earned)", "zh": "积分过期率(过期 / 发放)"},
        "m.liability": {"en": "Outstanding liability", "zh": "未兑换积分负债"},
        "unit.months": {"en": "{n} months", "zh": "{n} 个月"},
        "unit.hours": {"en": "{n} h", "zh": "{n} 小时"},
    }
)
