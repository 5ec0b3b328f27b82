"""Dashboard pages: analytics (seven charts), surveys (scores with their intervals) and
tickets (SLA timers, attainment, a ticket's thread). Parse the query, call
``patron.web.charts``, render; the charts are drawn in the browser by the bundled
Chart.js from JSON specs (``static/patron-charts.js``).

Query filters are forgiving: an unknown value falls back to "all" (a page never answers
a 422 for a stale bookmark), and the page shows which filters apply.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from patron.auth import SessionDep
from patron.errors import NotFound
from patron.feedback.scores import scores
from patron.feedback.service import surveys
from patron.support.models import Priority, TicketChannel, TicketStatus
from patron.web import charts
from patron.web.dashboard import NAV_ROLES, StaffContext, allow, error_page, render
from patron.web.i18n import register

router = APIRouter(include_in_schema=False)
Analyst = Annotated[StaffContext, allow(*NAV_ROLES["analytics"])]
Surveys = Annotated[StaffContext, allow(*NAV_ROLES["surveys"])]
Tickets = Annotated[StaffContext, allow(*NAV_ROLES["tickets"])]
MONTHS = (6, 12, 24)
E = TypeVar("E", bound=StrEnum)


def _choice(enum: type[E], value: str | None) -> E | None:
    """``value`` as a member of ``enum``; None when absent or unknown."""
    if not value:
        return None
    try:
        return enum(value)
    except ValueError:
        return None


def _months(value: str | None) -> int:
    return int(value) if value in {str(m) for m in MONTHS} else charts.MAX_MONTHS


def _survey(request: Request, keys: list[str]) -> str | None:
    value = request.query_params.get("survey")
    return value if value in keys else None


@router.get("/dashboard/analytics")
def analytics_page(ctx: Analyst, session: SessionDep, request: Request) -> HTMLResponse:
    lang = charts.lang_of(ctx.lang)
    survey_keys = [s.key for s in surveys.list(session, ctx.store).items]
    months = _months(request.query_params.get("months"))
    survey = _survey(request, survey_keys)
    view = charts.analytics_view(session, ctx.store, lang, months=months, survey_key=survey)
    return render(
        ctx,
        "dashboard/analytics.html",
        view=view,
        months=months,
        month_choices=MONTHS,
        survey=survey,
        survey_keys=survey_keys,
    )


@router.get("/dashboard/surveys")
def surveys_page(ctx: Surveys, session: SessionDep, request: Request) -> HTMLResponse:
    lang = charts.lang_of(ctx.lang)
    rows = charts.survey_rows(session, ctx.store, lang)
    survey = _survey(request, [r.key for r in rows])
    out = scores.report(session, ctx.store, survey_key=survey)
    trends = [charts.score_trend_chart(out, m, lang) for m in ("nps", "csat", "ces")]
    return render(
        ctx,
        "dashboard/surveys.html",
        rows=rows,
        survey=survey,
        overall=out.overall,
        responses=out.responses,
        trends=trends,
    )


@router.get("/dashboard/tickets")
def tickets_page(ctx: Tickets, session: SessionDep, request: Request) -> HTMLResponse:
    lang = charts.lang_of(ctx.lang)
    q = request.query_params
    status = _choice(TicketStatus, q.get("status"))
    channel = _choice(TicketChannel, q.get("channel"))
    priority = _choice(Priority, q.get("priority"))
    view = charts.tickets_view(
        session,
        ctx.store,
        lang,
        status=[status] if status else None,
        channel=channel,
        priority=priority,
    )
    return render(
        ctx,
        "dashboard/tickets.html",
        view=view,
        status_filter=status,
        channel=channel,
        priority=priority,
        statuses=list(TicketStatus),
        channels=list(TicketChannel),
        priorities=list(Priority),
        max_tickets=charts.MAX_TICKETS,
        report_days=charts.REPORT_DAYS,
    )


@router.get("/dashboard/tickets/{ticket_id}")
def ticket_page(
    ctx: Tickets, session: SessionDep, ticket_id: Annotated[str, Path(max_length=32)]
) -> HTMLResponse:
    """A ticket's thread and clocks; an id that is no ticket of the store (or no number:
    a mistyped address) is the 404 page."""
    lang = charts.lang_of(ctx.lang)
    try:
        number = int(ticket_id) if ticket_id.isdigit() else 0
        if not 1 <= number <= 2**62:
            raise NotFound(f"No ticket {ticket_id!r} in this store.")
        view = charts.ticket_view(session, ctx.store, number, lang)
    except NotFound:
        return error_page(ctx, 404, "error.not_found_title", "error.not_found")
    return render(ctx, "dashboard/ticket.html", view=view)


register(charts.MESSAGES)
register(
    {
        # analytics
        "an.title": {"en": "Analytics", "zh": "数据分析"},
        "an.run": {
            "en": "From analysis run {run} (data up to {as_of}, {timezone}).",
            "zh": "来自第 {run} 次分析（数据截至 {as_of}，{timezone}）。",
        },
        "an.sections": {"en": "Sections", "zh": "章节"},
        "an.filters": {"en": "Filters", "zh": "筛选"},
        "an.months": {"en": "NPS months", "zh": "净推荐值月数"},
        "an.survey": {"en": "Survey", "zh": "问卷"},
        "an.all_surveys": {"en": "All surveys", "zh": "全部问卷"},
        "an.apply": {"en": "Apply", "zh": "应用"},
        "an.kpi.customers": {"en": "Customers with orders", "zh": "有订单的客户"},
        "an.kpi.orders": {"en": "Orders", "zh": "订单数"},
        "an.kpi.net_revenue": {"en": "Net revenue", "zh": "净收入"},
        "an.kpi.top20_share": {"en": "Revenue from the top 20%", "zh": "前 20% 客户收入占比"},
        "an.kpi.crr": {
            "en": "Customer retention rate (last full month)",
            "zh": "客户保持率（最近完整月份）",
        },
        "an.kpi.median_clv": {"en": "Median CLV", "zh": "顾客终身价值中位数"},
        "an.heatmap.caption": {
            "en": "Share of each monthly cohort still ordering k periods after its first "
            "order (darker = higher).",
            "zh": "各同期群在首单后第 k 个周期仍下单的客户比例（颜色越深越高）。",
        },
        "an.table": {"en": "Data table", "zh": "数据表"},
        "an.sec.retention": {"en": "Retention", "zh": "客户保持"},
        "an.sec.value": {"en": "Customer value", "zh": "客户价值"},
        "an.sec.voice": {"en": "Satisfaction", "zh": "满意度"},
        # surveys
        "sv.title": {"en": "Surveys", "zh": "问卷调查"},
        "sv.key": {"en": "Survey", "zh": "问卷"},
        "sv.version": {"en": "Version", "zh": "版本"},
        "sv.state": {"en": "State", "zh": "状态"},
        "sv.active": {"en": "active", "zh": "启用中"},
        "sv.inactive": {"en": "stopped", "zh": "已停用"},
        "sv.responses": {"en": "Responses", "zh": "回答数"},
        "sv.nps": {"en": "NPS (95% CI)", "zh": "净推荐值（95% 置信区间）"},
        "sv.csat": {"en": "CSAT % (95% CI)", "zh": "满意度 CSAT %（95% 置信区间）"},
        "sv.ces": {"en": "CES 1–7 (95% CI)", "zh": "费力度 CES 1–7（95% 置信区间）"},
        "sv.none": {"en": "No surveys yet.", "zh": "尚无问卷。"},
        "sv.trend_of": {"en": "Trends: {survey}", "zh": "趋势：{survey}"},
        "sv.all": {"en": "all surveys", "zh": "全部问卷"},
        "sv.show": {"en": "Trend", "zh": "趋势"},
        "sv.overall": {"en": "In scope: {n} responses", "zh": "范围内：{n} 份回答"},
        "sv.gaps_link": {
            "en": "Satisfaction gaps and competitor comparison →",
            "zh": "满意度差距与竞争对手比较 →",
        },
        "sv.answers": {"en": "{n} answers", "zh": "{n} 个回答"},
        # tickets
        "tk.title": {"en": "Tickets", "zh": "工单"},
        "tk.attainment": {
            "en": "SLA attainment, tickets opened in the last {days} days",
            "zh": "服务时效达成率（近 {days} 天创建的工单）",
        },
        "tk.first_met": {"en": "First response on time", "zh": "首次响应按时"},
        "tk.resolution_met": {"en": "Resolved on time", "zh": "按时解决"},
        "tk.median_first": {"en": "Median first response", "zh": "首次响应中位时长"},
        "tk.breaches_open": {"en": "Open and overdue", "zh": "未结且已超时"},
        "tk.hours": {"en": "{h} business h", "zh": "{h} 工作小时"},
        "tk.met_of": {"en": "{met} of {all}", "zh": "{all} 单中 {met} 单"},
        "tk.by_channel": {"en": "By channel and priority", "zh": "按渠道和优先级"},
        "tk.status": {"en": "Status", "zh": "状态"},
        "tk.channel": {"en": "Channel", "zh": "渠道"},
        "tk.priority": {"en": "Priority", "zh": "优先级"},
        "tk.active": {"en": "Active (new, open, pending)", "zh": "处理中（新建、处理中、待回复）"},
        "tk.all": {"en": "All", "zh": "全部"},
        "tk.filter": {"en": "Filter", "zh": "筛选"},
        "tk.id": {"en": "#", "zh": "编号"},
        "tk.subject": {"en": "Subject", "zh": "主题"},
        "tk.customer": {"en": "Customer", "zh": "客户"},
        "tk.opened": {"en": "Opened", "zh": "创建时间"},
        "tk.due": {"en": "Due (business time)", "zh": "时限（工作时间）"},
        "tk.clock.first_response": {"en": "First response", "zh": "首次响应"},
        "tk.clock.resolution": {"en": "Resolution", "zh": "解决"},
        "tk.count": {
            "en": "{shown} of {total} tickets, soonest due first.",
            "zh": "共 {total} 张工单，显示 {shown} 张，按时限先后排列。",
        },
        "tk.none": {"en": "No tickets match.", "zh": "没有符合条件的工单。"},
        "tk.back": {"en": "← All tickets", "zh": "← 全部工单"},
        "tk.thread": {"en": "Conversation", "zh": "对话记录"},
        "tk.events": {"en": "History", "zh": "处理记录"},
        "tk.clocks": {"en": "SLA clocks (business time)", "zh": "服务时效计时（工作时间）"},
        "tk.target": {"en": "Target", "zh": "目标"},
        "tk.due_at": {"en": "Due at", "zh": "截止时间"},
        "tk.used": {"en": "Used", "zh": "已用"},
        "tk.assignee": {"en": "Assignee", "zh": "处理人"},
        "tk.grade": {"en": "Grade", "zh": "诉求等级"},
        "tk.category": {"en": "Category", "zh": "类别"},
        "tk.order": {"en": "Order", "zh": "订单"},
        "tk.no_messages": {"en": "No messages.", "zh": "暂无消息。"},
        "tk.dir.inbound": {"en": "Customer", "zh": "客户"},
        "tk.dir.outbound": {"en": "Store", "zh": "店铺"},
        "tk.dir.note": {"en": "Internal note", "zh": "内部备注"},
        "tk.st.new": {"en": "New", "zh": "新建"},
        "tk.st.open": {"en": "Open", "zh": "处理中"},
        "tk.st.pending": {"en": "Pending (customer)", "zh": "待客户回复"},
        "tk.st.resolved": {"en": "Resolved", "zh": "已解决"},
        "tk.st.closed": {"en": "Closed", "zh": "已关闭"},
        "tk.ch.email": {"en": "E-mail", "zh": "邮件"},
        "tk.ch.phone": {"en": "Phone", "zh": "电话"},
        "tk.ch.chat": {"en": "Online chat", "zh": "在线客服"},
        "tk.ch.social": {"en": "Social media", "zh": "社交媒体"},
        "tk.ch.app": {"en": "Mobile app", "zh": "手机应用"},
        "tk.ch.survey": {"en": "Survey follow-up", "zh": "问卷回访"},
        "tk.ch.review": {"en": "Review follow-up", "zh": "评价回访"},
        "tk.pr.low": {"en": "Low", "zh": "低"},
        "tk.pr.normal": {"en": "Normal", "zh": "普通"},
        "tk.pr.high": {"en": "High", "zh": "高"},
        "tk.pr.urgent": {"en": "Urgent", "zh": "紧急"},
        "tk.pr.all": {"en": "All", "zh": "全部"},
    }
)
