"""Customers (/dashboard/customers): search by external id, e-mail, name or phone, and
the customer 360 (/dashboard/customers/{external id}) from ``support.insights``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from patron.auth import SessionDep
from patron.errors import NotFound
from patron.loyalty.orders import active_program
from patron.loyalty.tiers import threshold_value
from patron.support.insights import insights
from patron.web import repository as repo
from patron.web.dashboard import NAV_ROLES, StaffContext, allow, error_page, render
from patron.web.i18n import register

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
Viewer = Annotated[StaffContext, allow(*NAV_ROLES["customers"])]


@router.get("/dashboard/customers")
def customers_page(
    ctx: Viewer,
    session: SessionDep,
    q: Annotated[str, Query(max_length=200)] = "",
    after: Annotated[int | None, Query(ge=0, lt=2**63)] = None,
) -> HTMLResponse:
    rows = repo.search_customers(session, ctx.store.id, q, after, PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    program = active_program(session, ctx.store)
    tier_names = {
        tier.code: (tier.name.zh if ctx.lang == "zh" else tier.name.en) or tier.name.display()
        for tier in (program.tiers if program else [])
    }
    return render(
        ctx,
        "dashboard/customers.html",
        q=q,
        rows=rows,
        next_after=rows[-1][0].id if more and rows else None,
        first_page=after is None,
        tier_names=tier_names,
        first_tier=program.tiers[0].code if program else "",
    )


@router.get("/dashboard/customers/{external_id:path}")
def customer_360_page(ctx: Viewer, session: SessionDep, external_id: str) -> HTMLResponse:
    try:
        view = insights.customer_360(session, ctx.store, external_id)
    except NotFound:
        return error_page(ctx, 404, "error.not_found_title", "cust.not_found")
    progress = None
    tier = view.loyalty.tier if view.loyalty else None
    program = active_program(session, ctx.store)
    if tier and tier.next and program:
        nxt = next((t for t in program.tiers if t.code == tier.next), None)
        if nxt is not None:
            target = threshold_value(nxt, program.currency)
            if target > 0:
                progress = max(0.0, min(1.0, (target - tier.missing) / target))
    return render(ctx, "dashboard/customer_360.html", c=view, progress=progress)


register(
    {
        "cust.title": {"en": "Customers", "zh": "客户"},
        "cust.search": {"en": "Search customers", "zh": "搜索客户"},
        "cust.search_hint": {
            "en": "External id, e-mail, name or phone (beginning is enough)",
            "zh": "外部编号、邮箱、姓名或电话(输入开头即可)",
        },
        "cust.search_button": {"en": "Search", "zh": "搜索"},
        "cust.clear": {"en": "Show all", "zh": "显示全部"},
        "cust.none": {"en": "No customer matches.", "zh": "没有匹配的客户。"},
        "cust.next": {"en": "Next page →", "zh": "下一页 →"},
        "cust.first": {"en": "← First page", "zh": "← 第一页"},
        "cust.external_id": {"en": "External id", "zh": "外部编号"},
        "cust.name": {"en": "Name", "zh": "姓名"},
        "cust.email": {"en": "E-mail", "zh": "邮箱"},
        "cust.phone": {"en": "Phone", "zh": "电话"},
        "cust.tier": {"en": "Tier", "zh": "会员等级"},
        "cust.segment": {"en": "Segment", "zh": "客户分群"},
        "cust.since": {"en": "Customer since", "zh": "成为客户"},
        "cust.not_found": {
            "en": "No customer with this external id in this store.",
            "zh": "本店铺没有此外部编号的客户。",
        },
        "cust.flagged": {"en": "Flagged", "zh": "已标记"},
        "c360.profile": {"en": "Profile", "zh": "客户档案"},
        "c360.birthday": {"en": "Birthday", "zh": "生日"},
        "c360.locale": {"en": "Language", "zh": "语言"},
        "c360.timezone": {"en": "Time zone", "zh": "时区"},
        "c360.traits": {"en": "Traits", "zh": "客户特征"},
        "c360.orders": {"en": "Orders", "zh": "订单"},
        "c360.orders_count": {"en": "Orders", "zh": "订单数"},
        "c360.spent": {"en": "Spent (net of refunds)", "zh": "消费金额(扣除退款)"},
        "c360.first_last": {"en": "First / last order", "zh": "首单 / 最近一单"},
        "c360.cancelled_refunded": {"en": "Cancelled / refunded", "zh": "取消 / 退款"},
        "c360.order": {"en": "Order", "zh": "订单号"},
        "c360.status": {"en": "Status", "zh": "状态"},
        "c360.total": {"en": "Total", "zh": "金额"},
        "c360.placed": {"en": "Placed", "zh": "下单时间"},
        "c360.no_orders": {"en": "No orders yet.", "zh": "暂无订单。"},
        "c360.loyalty": {"en": "Points and tier", "zh": "积分与等级"},
        "c360.points_available": {"en": "Points available", "zh": "可用积分"},
        "c360.points_pending": {"en": "Pending", "zh": "待生效"},
        "c360.points_held": {"en": "Held", "zh": "冻结"},
        "c360.debt": {"en": "Debt", "zh": "欠分"},
        "c360.growth": {"en": "Growth value", "zh": "成长值"},
        "c360.tier_since": {"en": "since {date}", "zh": "自 {date} 起"},
        "c360.top_tier": {"en": "Highest tier reached.", "zh": "已达最高等级。"},
        "c360.no_program": {"en": "The store runs no programme.", "zh": "本店铺未设置会员计划。"},
        "c360.value": {"en": "Value", "zh": "客户价值"},
        "c360.clv": {"en": "Customer lifetime value (CLV)", "zh": "客户终身价值(CLV)"},
        "c360.clv_pct": {"en": "more than {p} of customers", "zh": "高于 {p} 的客户"},
        "c360.p_alive": {"en": "P(alive)", "zh": "活跃概率 P(alive)"},
        "c360.loyalty_type": {"en": "Loyalty type", "zh": "忠诚类型"},
        "c360.no_scores": {
            "en": "Not scored yet: the latest analysis did not include this customer.",
            "zh": "暂无评分:最近一次分析未包含该客户。",
        },
        "c360.nps": {"en": "NPS answers", "zh": "NPS 回答"},
        "c360.no_nps": {"en": "No NPS answers.", "zh": "暂无 NPS 回答。"},
        "c360.tickets": {"en": "Tickets", "zh": "工单"},
        "c360.no_tickets": {"en": "No tickets.", "zh": "暂无工单。"},
        "c360.subject": {"en": "Subject", "zh": "主题"},
        "c360.created": {"en": "Opened", "zh": "创建时间"},
        "c360.sla": {"en": "SLA", "zh": "服务时效"},
        "c360.reviews": {"en": "Reviews", "zh": "评价"},
        "c360.reviews_line": {
            "en": "{n} reviews, mean rating {mean}",
            "zh": "{n} 条评价,平均 {mean} 星",
        },
        "c360.date": {"en": "Date", "zh": "日期"},
        "c360.score": {"en": "Score", "zh": "分数"},
        "c360.survey": {"en": "Survey", "zh": "问卷"},
        "c360.back": {"en": "← Customers", "zh": "← 客户列表"},
    }
)
