"""What the dashboard's analytics, surveys and tickets pages draw: chart specs and tables
built from the existing services, in the page's language.

Every chart comes from a number defined elsewhere, never recomputed here:

* the store's latest stored analysis run (``analytics_runs.report``): the cohort
  retention matrix, the value concentration (Pareto) curve and the overview;
* SQL aggregates over ``customer_scores`` (the same run's scores): the RFM grid (count by
  R × FM, ``patron.analytics.rfm.SEGMENT_GRID``) and the CLV histogram (1-2-5 buckets);
* the feedback scores (``patron.feedback.scores``): the NPS trend with its 95% interval,
  the satisfaction gaps per attribute and the customer value analysis against the
  competitors;
* the support service (``patron.support``): the SLA attainment report and the tickets
  with their clocks.

A chart is a :class:`Chart`: a JSON spec the browser draws with the bundled Chart.js
(``static/patron-charts.js``), a title, a one-line summary and a small table — the text
alternative. Without an analysis run (or without answers) a chart is *empty*: it carries
a message instead of data, and the page says what to do. Labels arrive translated: the
messages live in :data:`MESSAGES` (English and Chinese) and every builder takes ``lang``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from patron.analytics import repository as analytics_repo
from patron.analytics.models import CustomerScore
from patron.analytics.report import REPORT_VERSION
from patron.analytics.rfm import SEGMENT_GRID, SEGMENT_NAMES
from patron.feedback.domain import GAP_LABELS, US, GapLevel
from patron.feedback.models import SurveyResponse
from patron.feedback.schemas import EstimateOut, ScoresOut
from patron.feedback.scores import scores
from patron.feedback.service import surveys
from patron.kit.clock import as_utc_or_now
from patron.stores.models import Store
from patron.support import settings as support_settings
from patron.support.insights import insights
from patron.support.models import Priority, Ticket, TicketChannel, TicketStatus
from patron.support.schemas import SlaClockOut, SlaOut, SlaReportOut, TicketDetail, TicketOut
from patron.support.service import tickets
from patron.web.i18n import SYMBOLS

Lang = Literal["en", "zh"]
LANGS: tuple[Lang, ...] = ("en", "zh")

# Every label the charts and their pages show, in both languages (the pages register
# them with the dashboard's translations).
MESSAGES: dict[str, dict[str, str]] = {
    # empty states
    "charts.no_run": {
        "en": "No analysis has been run for this store yet: run `patron analyze --source db "
        "--store <slug> --write-back` (or POST /v1/analytics/runs).",
        "zh": "本店尚未运行分析：请运行 `patron analyze --source db --store <slug> "
        "--write-back`（或 POST /v1/analytics/runs）。",
    },
    "charts.no_scores": {
        "en": "The latest analysis wrote no customer scores.",
        "zh": "最近一次分析没有写回客户评分。",
    },
    "charts.no_clv": {
        "en": "No customer lifetime value: the CLV models could not be fitted.",
        "zh": "没有顾客终身价值：CLV 模型未能拟合。",
    },
    "charts.no_revenue": {
        "en": "No positive revenue to rank customers by.",
        "zh": "没有可用于排序客户的正收入。",
    },
    "charts.no_answers": {
        "en": "No survey answers yet.",
        "zh": "尚无问卷回答。",
    },
    "charts.no_gaps": {
        "en": "No expectation/experience answers yet.",
        "zh": "尚无期望/体验评分。",
    },
    "charts.no_comparison": {
        "en": "No competitor comparison answers yet.",
        "zh": "尚无竞争对手比较评分。",
    },
    # titles
    "charts.cohorts.title": {"en": "Cohort retention", "zh": "客户保持率（同期群）"},
    "charts.rfm.title": {"en": "RFM grid", "zh": "RFM 客户分群"},
    "charts.clv.title": {
        "en": "Customer lifetime value distribution",
        "zh": "顾客终身价值分布",
    },
    "charts.pareto.title": {"en": "Pareto curve (80/20)", "zh": "帕累托曲线（二八法则）"},
    "charts.nps.title": {"en": "NPS trend", "zh": "净推荐值趋势"},
    "charts.csat.title": {"en": "CSAT trend", "zh": "客户满意度（CSAT）趋势"},
    "charts.ces.title": {"en": "CES trend", "zh": "客户费力度（CES）趋势"},
    "charts.gaps.title": {
        "en": "Satisfaction gaps (experience − expectation)",
        "zh": "满意度差距（体验 − 期望）",
    },
    "charts.compare.title": {"en": "Competitor comparison", "zh": "竞争对手比较"},
    # axes and series
    "charts.cohort": {"en": "Cohort", "zh": "同期群"},
    "charts.customers": {"en": "Customers", "zh": "客户数"},
    "charts.age": {"en": "Periods after the first order", "zh": "首单后的周期"},
    "charts.recency": {"en": "Recency score R", "zh": "最近购买得分 R"},
    "charts.fm": {"en": "Frequency & monetary score FM", "zh": "频次与金额得分 FM"},
    "charts.segment": {"en": "Segment", "zh": "客户分群"},
    "charts.clv": {"en": "CLV", "zh": "顾客终身价值"},
    "charts.clv_range": {"en": "CLV range", "zh": "终身价值区间"},
    "charts.total_clv": {"en": "Total CLV", "zh": "终身价值合计"},
    "charts.decile": {"en": "Customer decile (best first)", "zh": "客户十分位（由高到低）"},
    "charts.revenue_share": {"en": "Share of revenue", "zh": "收入占比"},
    "charts.cumulative": {"en": "Cumulative share", "zh": "累计占比"},
    "charts.eighty": {"en": "80% of revenue", "zh": "80% 收入"},
    "charts.month": {"en": "Month", "zh": "月份"},
    "charts.nps": {"en": "NPS", "zh": "净推荐值"},
    "charts.csat": {"en": "CSAT %", "zh": "满意度 CSAT %"},
    "charts.ces": {"en": "CES (1–7)", "zh": "费力度 CES（1–7）"},
    "charts.ci": {"en": "95% interval", "zh": "95% 置信区间"},
    "charts.answers": {"en": "Answers", "zh": "回答数"},
    "charts.attribute": {"en": "Attribute", "zh": "属性"},
    "charts.gap": {"en": "Mean gap", "zh": "平均差距"},
    "charts.level": {"en": "Level", "zh": "满意度等级"},
    "charts.rating": {"en": "Mean rating (1–10)", "zh": "平均评分（1–10）"},
    "charts.us": {"en": "Our store", "zh": "本店"},
    "charts.value": {"en": "Perceived value (CPV)", "zh": "顾客感知价值"},
    "charts.cost_attribute": {"en": "cost: lower is better", "zh": "成本：越低越好"},
    # summaries
    "charts.cohorts.summary": {
        "en": "{cohorts} cohorts; customers still buying one period after their first: {first}.",
        "zh": "共 {cohorts} 个同期群；首单后下一周期仍购买的客户：{first}。",
    },
    "charts.rfm.summary": {
        "en": "{customers} customers scored; largest cell R{r} FM{fm} ({segment}): {count}.",
        "zh": "已评分客户 {customers} 位；最大单元 R{r} FM{fm}（{segment}）：{count} 位。",
    },
    "charts.clv.summary": {
        "en": "{customers} customers with a CLV, median {median}, total {total} {currency}.",
        "zh": "{customers} 位客户有终身价值，中位数 {median}，合计 {total} {currency}。",
    },
    "charts.pareto.summary": {
        "en": "The top 20% of customers bring {top20} of the revenue; the top 10% earn "
        "{ratio}× what the next 10% do.",
        "zh": "前 20% 的客户贡献了 {top20} 的收入；前 10% 的客户是其后 10% 的 {ratio} 倍。",
    },
    "charts.trend.summary": {
        "en": "{measure} {value} over {n} answers (95% interval {low} to {high}); latest "
        "month {month}: {latest}.",
        "zh": "{measure} {value}，共 {n} 个回答（95% 置信区间 {low} 至 {high}）；最近月份 "
        "{month}：{latest}。",
    },
    "charts.gaps.summary": {
        "en": "Widest shortfall: {worst} ({gap}); best: {best} ({best_gap}).",
        "zh": "差距最大：{worst}（{gap}）；表现最好：{best}（{best_gap}）。",
    },
    "charts.compare.summary": {
        "en": "Perceived value ranking: {ranking}.",
        "zh": "顾客感知价值排名：{ranking}。",
    },
    "charts.none": {"en": "—", "zh": "—"},
    # SLA timers (business time)
    "charts.timer.left": {"en": "{d} left", "zh": "剩余 {d}"},
    "charts.timer.overdue": {"en": "overdue by {d}", "zh": "已超时 {d}"},
    "charts.timer.paused": {"en": "paused, {d} left", "zh": "已暂停，剩余 {d}"},
    "charts.timer.met": {"en": "met in {used}", "zh": "已达标（用时 {used}）"},
    "charts.timer.missed": {"en": "missed by {over}", "zh": "未达标（超时 {over}）"},
}
for _level, _text in GAP_LABELS.items():
    MESSAGES[f"charts.level.{_level.value}"] = dict(_text)
# RFM segments and order statuses by name, for the customer pages.
for _key, _name in SEGMENT_NAMES.items():
    MESSAGES[f"seg.{_key}"] = {"en": _name.en, "zh": _name.zh}
MESSAGES.update(
    {
        "order.st.placed": {"en": "placed", "zh": "已下单"},
        "order.st.paid": {"en": "paid", "zh": "已付款"},
        "order.st.fulfilled": {"en": "shipped", "zh": "已发货"},
        "order.st.delivered": {"en": "delivered", "zh": "已签收"},
        "order.st.cancelled": {"en": "cancelled", "zh": "已取消"},
        "order.st.refunded": {"en": "refunded", "zh": "已退款"},
    }
)

# The five satisfaction levels' colours, very satisfied to very dissatisfied.
LEVEL_COLOURS: dict[str, str] = {
    GapLevel.very_satisfied.value: "#1a7f37",
    GapLevel.satisfied.value: "#7fbf7b",
    GapLevel.neutral.value: "#b8b8b8",
    GapLevel.dissatisfied.value: "#f4a261",
    GapLevel.very_dissatisfied.value: "#c0392b",
}
# Cohorts and NPS months shown at most (the newest).
MAX_COHORTS = 24
MAX_MONTHS = 24
# Tickets listed at most on the tickets page.
MAX_TICKETS = 200


def lang_of(value: str | None) -> Lang:
    """``zh`` for any Chinese tag (zh, zh-CN, zh-Hans…), else ``en``."""
    return "zh" if value and value.lower().startswith("zh") else "en"


def t(key: str, lang: Lang, **values: Any) -> str:
    """The message ``key`` in ``lang``, with ``values`` filled in."""
    text = MESSAGES[key][lang]
    return text.format(**values) if values else text


def pct(value: float | None, digits: int = 1) -> str:
    """A share 0–1 as a percentage, ``—`` for None."""
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def num(value: float | int | Decimal | None, digits: int = 0) -> str:
    """A number with thousands separators, ``—`` for None."""
    return "—" if value is None else f"{float(value):,.{digits}f}"


def _columns(text: str) -> int:
    """Display width: a CJK character takes two columns."""
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def wrap_label(label: str, width: int = 26) -> str | list[str]:
    """A long axis label as lines of at most ``width`` columns (a Chinese character is
    two; Chart.js draws a list as lines), so that a horizontal bar chart does not cut it
    at the canvas's edge. Lines break at spaces; a longer word (Chinese has no spaces)
    is cut where it fills a line."""
    if _columns(label) <= width:
        return label
    words: list[str] = []
    for word in label.split(" "):
        while _columns(word) > width:
            cut, used = 0, 0
            while used + _columns(word[cut]) <= width:
                used += _columns(word[cut])
                cut += 1
            words.append(word[:cut])
            word = word[cut:]
        words.append(word)
    lines: list[str] = []
    for word in words:
        if lines and _columns(lines[-1]) + 1 + _columns(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _money(value: float | None, currency: str, digits: int) -> str:
    """An amount with the currency's symbol (``¥3,935,812``), ``—`` for None."""
    if value is None:
        return "—"
    symbol = SYMBOLS.get(currency, currency + " ")
    return f"{'-' if value < 0 else ''}{symbol}{abs(float(value)):,.{digits}f}"


def signed(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Table:
    """A small data table: the text alternative of a chart."""

    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Chart:
    """One chart: ``spec`` is the JSON ``static/patron-charts.js`` draws; ``empty`` the
    translated message shown instead when there is nothing to draw."""

    id: str
    kind: str  # line_ci | histogram | pareto | rfm | gaps | compare
    title: str
    summary: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    table: Table | None = None
    empty: str | None = None


@dataclass(frozen=True)
class HeatCell:
    value: float | None  # share 0–1; None beyond the data end
    text: str
    level: int | None  # 0–10, the colour class (10: the acquisition period)


@dataclass(frozen=True)
class HeatRow:
    cohort: str
    size: int
    cells: list[HeatCell]


@dataclass(frozen=True)
class Heatmap:
    """The cohort retention matrix as an HTML table (rendered server-side)."""

    id: str
    title: str
    period: str
    ages: list[int]
    rows: list[HeatRow]
    summary: str = ""
    empty: str | None = None


@dataclass(frozen=True)
class RunInfo:
    run_id: int
    finished_at: datetime | None
    as_of: str
    currency: str
    timezone: str


# --------------------------------------------------------------------------- the run


def latest_report(session: Session, store: Store) -> tuple[RunInfo, dict[str, Any]] | None:
    """The store's latest stored analysis report (None: no run, or one from an older
    report version that the pages cannot read)."""
    run = analytics_repo.latest_run(session, store.id)
    if run is None or not run.report or run.report.get("version") != REPORT_VERSION:
        return None
    report = run.report
    info = RunInfo(
        run_id=run.id,
        finished_at=run.finished_at,
        as_of=str(report.get("as_of", ""))[:10],
        currency=str(report.get("currency", store.currency)),
        timezone=str(report.get("timezone", store.timezone)),
    )
    return info, report


def _cohort_label(day: str, period: str) -> str:
    d = date.fromisoformat(day[:10])
    if period == "quarter":
        return f"{d.year} Q{(d.month - 1) // 3 + 1}"
    if period == "year":
        return str(d.year)
    return f"{d.year}-{d.month:02d}"


def cohort_heatmap(report: dict[str, Any] | None, lang: Lang) -> Heatmap:
    """The newest :data:`MAX_COHORTS` acquisition cohorts and the share of each still
    ordering k periods later. Colour level: the acquisition period (always 100%) is 10;
    the other cells 0–9 relative to the largest of them, so a store whose month-1
    retention is 15% still shows its pattern."""
    title = t("charts.cohorts.title", lang)
    if report is None:
        return Heatmap("cohorts", title, "month", [], [], empty=t("charts.no_run", lang))
    cohorts = report["cohorts"]
    period = str(cohorts["period"])
    keep = slice(-MAX_COHORTS, None)
    days: list[str] = list(cohorts["cohorts"])[keep]
    sizes: list[int] = list(cohorts["sizes"])[keep]
    cells: list[list[float | None]] = [list(row) for row in cohorts["cells"]][keep]
    if not days:
        return Heatmap("cohorts", title, period, [], [], empty=t("charts.no_run", lang))
    width = max((len(r) for r in cells), default=0)
    later = [v for r in cells for v in r[1:] if v is not None]
    top = max(later, default=0.0) or 1.0
    rows: list[HeatRow] = []
    for day, size, row in zip(days, sizes, cells, strict=True):
        out: list[HeatCell] = []
        for age in range(width):
            v = row[age] if age < len(row) else None
            if v is None:
                out.append(HeatCell(None, "", None))
            else:
                level = 10 if age == 0 else min(9, round(9 * v / top))
                out.append(HeatCell(float(v), pct(v, 0 if v >= 0.1 else 1), level))
        rows.append(HeatRow(_cohort_label(day, period), int(size), out))
    firsts = [r[1] for r in cells if len(r) > 1 and r[1] is not None]
    weights = [s for s, r in zip(sizes, cells, strict=True) if len(r) > 1 and r[1] is not None]
    first = (
        sum(f * w for f, w in zip(firsts, weights, strict=True)) / sum(weights)
        if sum(weights)
        else None
    )
    return Heatmap(
        "cohorts",
        title,
        period,
        list(range(width)),
        rows,
        summary=t("charts.cohorts.summary", lang, cohorts=len(rows), first=pct(first)),
    )


def _curve(points: Sequence[Mapping[str, float]], x: float) -> float:
    """The concentration curve L(x), linear between the stored points."""
    xs = [float(p["customer_share"]) for p in points]
    ys = [float(p["revenue_share"]) for p in points]
    if x <= xs[0]:
        return ys[0]
    for i in range(1, len(xs)):
        if x <= xs[i] + 1e-12:
            span = xs[i] - xs[i - 1]
            w = 0.0 if span <= 0 else (x - xs[i - 1]) / span
            return ys[i - 1] + w * (ys[i] - ys[i - 1])
    return ys[-1]


def pareto_chart(report: dict[str, Any] | None, lang: Lang) -> Chart:
    """Revenue share of each customer decile (bars) and the cumulative share (line), with
    the 80% mark: seed 002's 80/20 rule at a glance."""
    title = t("charts.pareto.title", lang)
    if report is None:
        return Chart("pareto", "pareto", title, empty=t("charts.no_run", lang))
    c = report["concentration"]
    points = c.get("pareto") or []
    if len(points) < 2:
        return Chart("pareto", "pareto", title, empty=t("charts.no_revenue", lang))
    cumulative = [_curve(points, k / 10) for k in range(11)]
    shares = [cumulative[k] - cumulative[k - 1] for k in range(1, 11)]
    labels = [f"{10 * (k - 1)}–{10 * k}%" for k in range(1, 11)]
    spec = {
        "labels": labels,
        "bars": {"label": t("charts.revenue_share", lang), "data": [_r(100 * s) for s in shares]},
        "line": {
            "label": t("charts.cumulative", lang),
            "data": [_r(100 * v) for v in cumulative[1:]],
        },
        "mark": {"label": t("charts.eighty", lang), "value": 80},
        "x": t("charts.decile", lang),
        "y": "%",
    }
    ratio = c.get("top10_to_next10")
    table = Table(
        [t("charts.decile", lang), t("charts.revenue_share", lang), t("charts.cumulative", lang)],
        [
            [label, pct(s), pct(v)]
            for label, s, v in zip(labels, shares, cumulative[1:], strict=True)
        ],
    )
    return Chart(
        "pareto",
        "pareto",
        title,
        summary=t(
            "charts.pareto.summary",
            lang,
            top20=pct(c.get("top20_share")),
            ratio=num(ratio, 1),
        ),
        spec=spec,
        table=table,
    )


def _r(value: float, digits: int = 2) -> float:
    return round(value, digits)


# --------------------------------------------------------------------------- scores (SQL)


def rfm_counts(session: Session, store_id: int) -> dict[tuple[int, int], int]:
    """Customers per (R, FM) cell of the store's scores, FM = ⌊(F + M) / 2⌋ as the
    segments use it; one GROUP BY over at most 125 (r, f, m) groups."""
    rows = session.execute(
        select(CustomerScore.r, CustomerScore.f, CustomerScore.m, func.count())
        .where(
            CustomerScore.store_id == store_id,
            CustomerScore.r.is_not(None),
            CustomerScore.f.is_not(None),
            CustomerScore.m.is_not(None),
        )
        .group_by(CustomerScore.r, CustomerScore.f, CustomerScore.m)
    ).all()
    grid: dict[tuple[int, int], int] = {}
    for r, f, m, n in rows:
        assert r is not None and f is not None and m is not None  # filtered above
        key = (int(r), (int(f) + int(m)) // 2)
        grid[key] = grid.get(key, 0) + int(n)
    return grid


def rfm_chart(session: Session, store: Store, lang: Lang, *, has_run: bool) -> Chart:
    """The R × FM grid: a bubble per cell (size: customers), coloured by its segment."""
    title = t("charts.rfm.title", lang)
    if not has_run:
        return Chart("rfm", "rfm", title, empty=t("charts.no_run", lang))
    grid = rfm_counts(session, store.id)
    total = sum(grid.values())
    if not total:
        return Chart("rfm", "rfm", title, empty=t("charts.no_scores", lang))
    segments: dict[str, list[dict[str, Any]]] = {}
    for r in range(5, 0, -1):
        for fm in range(1, 6):
            n = grid.get((r, fm), 0)
            segment = SEGMENT_GRID[(r, fm)]
            segments.setdefault(segment, []).append({"x": fm, "y": r, "n": n})
    names = {k: getattr(v, lang) for k, v in SEGMENT_NAMES.items()}
    spec = {
        "x": t("charts.fm", lang),
        "y": t("charts.recency", lang),
        "max": max(grid.values()),
        "series": [
            {"key": key, "label": names[key], "data": cells} for key, cells in segments.items()
        ],
    }
    (r_big, fm_big), biggest = max(grid.items(), key=lambda kv: (kv[1], kv[0]))
    table = Table(
        ["R \\ FM", *[str(fm) for fm in range(1, 6)]],
        [
            [
                str(r),
                *[
                    f"{grid.get((r, fm), 0):,} · {names[SEGMENT_GRID[(r, fm)]]}"
                    for fm in range(1, 6)
                ],
            ]
            for r in range(5, 0, -1)
        ],
    )
    return Chart(
        "rfm",
        "rfm",
        title,
        summary=t(
            "charts.rfm.summary",
            lang,
            customers=f"{total:,}",
            r=r_big,
            fm=fm_big,
            segment=names[SEGMENT_GRID[(r_big, fm_big)]],
            count=f"{biggest:,}",
        ),
        spec=spec,
        table=table,
    )


def nice_edges(top: float) -> list[float]:
    """0, 1, 2, 5, 10, 20, 50, … up to the first edge above ``top`` (the report's CLV
    buckets: 1-2-5 steps in the store currency)."""
    edges = [0.0]
    step = 1.0
    while edges[-1] <= top:
        for k in (1.0, 2.0, 5.0):
            edges.append(k * step)
            if edges[-1] > top:
                break
        step *= 10.0
    return edges


def clv_buckets(session: Session, store_id: int) -> list[tuple[float, float, int, float]]:
    """(lower, upper, customers, Σ CLV) per 1-2-5 bucket of the store's CLVs; a CLV below
    0 counts in the first bucket. Two queries: the range, then one GROUP BY on a CASE."""
    low_high = session.execute(
        select(func.count(CustomerScore.clv), func.max(CustomerScore.clv)).where(
            CustomerScore.store_id == store_id, CustomerScore.clv.is_not(None)
        )
    ).one()
    if not low_high[0]:
        return []
    edges = nice_edges(max(float(low_high[1] or 0), 0.0))
    bucket = case(
        *[(CustomerScore.clv < edges[i + 1], i) for i in range(len(edges) - 2)],
        else_=len(edges) - 2,
    ).label("bucket")
    rows = session.execute(
        select(bucket, func.count(), func.sum(CustomerScore.clv))
        .where(CustomerScore.store_id == store_id, CustomerScore.clv.is_not(None))
        .group_by(bucket)
    ).all()
    found = {int(b): (int(n), float(s or 0)) for b, n, s in rows}
    return [(edges[i], edges[i + 1], *found.get(i, (0, 0.0))) for i in range(len(edges) - 1)]


def _money_range(lower: float, upper: float) -> str:
    return f"{num(lower)}–{num(upper)}"


def clv_chart(session: Session, store: Store, lang: Lang, report: dict[str, Any] | None) -> Chart:
    """Customers per CLV bucket (empty buckets at both ends left out)."""
    title = t("charts.clv.title", lang)
    if report is None:
        return Chart("clv", "histogram", title, empty=t("charts.no_run", lang))
    buckets = clv_buckets(session, store.id)
    filled = [i for i, b in enumerate(buckets) if b[2]]
    if not filled:
        return Chart("clv", "histogram", title, empty=t("charts.no_clv", lang))
    shown = buckets[filled[0] : filled[-1] + 1]
    currency = str(report.get("currency", store.currency))
    labels = [_money_range(lo, hi) for lo, hi, _, _ in shown]
    customers = sum(n for _, _, n, _ in shown)
    total = sum(s for _, _, _, s in shown)
    median = (report.get("clv") or {}).get("median_clv")
    return Chart(
        "clv",
        "histogram",
        title,
        summary=t(
            "charts.clv.summary",
            lang,
            customers=f"{customers:,}",
            median=num(median, 2),
            total=num(total),
            currency=currency,
        ),
        spec={
            "labels": labels,
            "series": {"label": t("charts.customers", lang), "data": [n for _, _, n, _ in shown]},
            "x": f"{t('charts.clv', lang)} ({currency})",
            "y": t("charts.customers", lang),
        },
        table=Table(
            [
                f"{t('charts.clv_range', lang)} ({currency})",
                t("charts.customers", lang),
                t("charts.total_clv", lang),
            ],
            [[label, f"{n:,}", num(s)] for label, (_, _, n, s) in zip(labels, shown, strict=True)],
        ),
    )


# --------------------------------------------------------------------------- feedback


def _label(labels: Mapping[str, str] | None, key: str, lang: Lang) -> str:
    if not labels:
        return key
    text = labels.get(lang) or labels.get("en")
    return str(text) if text else key


def _ci(e: EstimateOut) -> tuple[float | None, float | None, float | None]:
    return (
        None if e.value is None else _r(e.value, 1),
        None if e.low is None else _r(e.low, 1),
        None if e.high is None else _r(e.high, 1),
    )


def nps_trend_chart(
    session: Session,
    store: Store,
    lang: Lang,
    *,
    survey_key: str | None = None,
    months: int = MAX_MONTHS,
) -> Chart:
    """NPS per month of the store's calendar with its 95% interval as a band."""
    out = scores.report(session, store, survey_key=survey_key)
    return score_trend_chart(out, "nps", lang, months=months)


# The scale and the y range of each score's trend.
MEASURES: dict[str, tuple[float, float]] = {"nps": (-100, 100), "csat": (0, 100), "ces": (1, 7)}


def score_trend_chart(
    out: ScoresOut, measure: str, lang: Lang, *, months: int = MAX_MONTHS, chart_id: str = ""
) -> Chart:
    """``measure`` (nps, csat or ces) per month of ``out``'s trend with its 95% interval
    as a band: the newest ``months`` months from the first answer in scope."""
    chart_id = chart_id or measure
    title = t(f"charts.{measure}.title", lang)
    trend = out.trend[-months:]
    overall: EstimateOut = getattr(out.overall, measure)
    if not overall.n or not trend:
        return Chart(chart_id, "line_ci", title, empty=t("charts.no_answers", lang))
    estimates: list[EstimateOut] = [getattr(g, measure) for g in trend]
    values = [_ci(e) for e in estimates]
    labels = [str(g.key) for g in trend]
    latest_i = max((i for i, e in enumerate(estimates) if e.n), default=len(trend) - 1)
    low, high = MEASURES[measure]
    name = t(f"charts.{measure}", lang)
    return Chart(
        chart_id,
        "line_ci",
        title,
        summary=t(
            "charts.trend.summary",
            lang,
            measure=name,
            value=num(overall.value, 1),
            n=f"{overall.n:,}",
            low=num(overall.low, 1),
            high=num(overall.high, 1),
            month=labels[latest_i],
            latest=num(estimates[latest_i].value, 1),
        ),
        spec={
            "labels": labels,
            "value": {"label": name, "data": [v[0] for v in values]},
            "low": [v[1] for v in values],
            "high": [v[2] for v in values],
            "band": t("charts.ci", lang),
            "x": t("charts.month", lang),
            "y": name,
            "min": low,
            "max": high,
        },
        table=Table(
            [
                t("charts.month", lang),
                name,
                t("charts.ci", lang),
                t("charts.answers", lang),
            ],
            [
                [label, num(v[0], 1), f"{num(v[1], 1)} … {num(v[2], 1)}", f"{e.n:,}"]
                for label, v, e in zip(labels, values, estimates, strict=True)
            ],
        ),
    )


def gaps_chart(
    session: Session, store: Store, lang: Lang, *, survey_key: str | None = None
) -> Chart:
    """Mean experience − expectation per attribute as diverging bars, each coloured by
    its satisfaction level (非常满意 … 非常不满意), with its 95% interval in the table."""
    title = t("charts.gaps.title", lang)
    out = scores.gaps(session, store, survey_key=survey_key)
    if not out.attributes:
        return Chart("gaps", "gaps", title, empty=t("charts.no_gaps", lang))
    labels = [_label(a.label, a.attribute, lang) for a in out.attributes]
    worst = min(out.attributes, key=lambda a: a.gap_mean)
    best = max(out.attributes, key=lambda a: a.gap_mean)
    return Chart(
        "gaps",
        "gaps",
        title,
        summary=t(
            "charts.gaps.summary",
            lang,
            worst=_label(worst.label, worst.attribute, lang),
            gap=signed(worst.gap_mean, 2),
            best=_label(best.label, best.attribute, lang),
            best_gap=signed(best.gap_mean, 2),
        ),
        spec={
            "labels": [wrap_label(label) for label in labels],
            "series": {
                "label": t("charts.gap", lang),
                "data": [_r(a.gap_mean) for a in out.attributes],
                "colours": [LEVEL_COLOURS[a.level] for a in out.attributes],
                "levels": [t(f"charts.level.{a.level}", lang) for a in out.attributes],
            },
            "legend": [
                {"label": t(f"charts.level.{level}", lang), "colour": colour}
                for level, colour in LEVEL_COLOURS.items()
            ],
            "x": t("charts.gap", lang),
            "y": t("charts.attribute", lang),
        },
        table=Table(
            [
                t("charts.attribute", lang),
                t("charts.gap", lang),
                t("charts.ci", lang),
                t("charts.level", lang),
                t("charts.answers", lang),
            ],
            [
                [
                    label,
                    signed(a.gap_mean, 2),
                    f"{signed(a.gap.low, 2)} … {signed(a.gap.high, 2)}",
                    t(f"charts.level.{a.level}", lang),
                    f"{a.n:,}",
                ]
                for label, a in zip(labels, out.attributes, strict=True)
            ],
        ),
    )


def compare_chart(
    session: Session, store: Store, lang: Lang, *, survey_key: str | None = None
) -> Chart:
    """Customer value analysis (seed 003): the mean rating of us and of each competitor
    per attribute (grouped bars; on a cost attribute lower is better), and the ranking by
    perceived value CPV = benefit − cost."""
    title = t("charts.compare.title", lang)
    out = scores.value_analysis(session, store, survey_key=survey_key)
    if not out.attributes:
        return Chart("compare", "compare", title, empty=t("charts.no_comparison", lang))
    parties = [US, *out.competitors]

    def party(name: str) -> str:
        return t("charts.us", lang) if name == US else name

    labels = [
        _label(a.label, a.attribute, lang)
        + (f" ({t('charts.cost_attribute', lang)})" if a.cost else "")
        for a in out.attributes
    ]
    ranking = " > ".join(party(p) for p in out.ranking)
    value_of = {p.party: p.value for p in out.parties}
    return Chart(
        "compare",
        "compare",
        title,
        summary=t("charts.compare.summary", lang, ranking=ranking or "—"),
        spec={
            "labels": [wrap_label(label) for label in labels],
            "series": [
                {
                    "label": party(p),
                    "us": p == US,
                    "data": [
                        None if a.ratings.get(p) is None else _r(float(a.ratings[p] or 0), 2)
                        for a in out.attributes
                    ],
                }
                for p in parties
            ],
            "x": t("charts.attribute", lang),
            "y": t("charts.rating", lang),
        },
        table=Table(
            [t("charts.attribute", lang), *[party(p) for p in parties]],
            [
                [label, *[num(a.ratings.get(p), 2) for p in parties]]
                for label, a in zip(labels, out.attributes, strict=True)
            ]
            + [[t("charts.value", lang), *[num(value_of.get(p), 2) for p in parties]]],
        ),
    )


# --------------------------------------------------------------------------- the pages


@dataclass(frozen=True)
class Kpi:
    key: str
    value: str
    sub: str = ""


@dataclass(frozen=True)
class AnalyticsView:
    run: RunInfo | None
    kpis: list[Kpi]
    heatmap: Heatmap
    charts: list[Chart]
    empty: str | None  # no analysis run: what to do


def _latest_complete(series: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    done = [p for p in series if p.get("complete") and p.get("retention_rate") is not None]
    return done[-1] if done else None


def analytics_view(
    session: Session,
    store: Store,
    lang: Lang,
    *,
    months: int = MAX_MONTHS,
    survey_key: str | None = None,
) -> AnalyticsView:
    """All seven charts of the analytics page and its headline numbers; ``months`` and
    ``survey_key`` narrow the NPS trend, the gaps and the competitor comparison."""
    found = latest_report(session, store)
    info, report = found if found is not None else (None, None)
    kpis: list[Kpi] = []
    if report is not None:
        overview = report["overview"]
        month = _latest_complete(report["retention"]["month"]["all"])
        kpis = [
            Kpi("customers", f"{overview['customers']:,}"),
            Kpi("orders", f"{overview['orders']:,}"),
            Kpi("net_revenue", _money(overview["net_revenue"], report["currency"], 0)),
            Kpi("top20_share", pct(report["concentration"].get("top20_share"))),
            Kpi(
                "crr",
                "—" if month is None else f"{month['retention_rate']:.1f}%",
                "" if month is None else str(month["period_start"])[:7],
            ),
            Kpi(
                "median_clv",
                _money((report.get("clv") or {}).get("median_clv"), report["currency"], 2),
            ),
        ]
    charts = [
        rfm_chart(session, store, lang, has_run=report is not None),
        clv_chart(session, store, lang, report),
        pareto_chart(report, lang),
        nps_trend_chart(session, store, lang, survey_key=survey_key, months=months),
        gaps_chart(session, store, lang, survey_key=survey_key),
        compare_chart(session, store, lang, survey_key=survey_key),
    ]
    return AnalyticsView(
        run=info,
        kpis=kpis,
        heatmap=cohort_heatmap(report, lang),
        charts=charts,
        empty=None if report is not None else t("charts.no_run", lang),
    )


@dataclass(frozen=True)
class SurveyRow:
    key: str
    title: str
    version: int
    active: bool
    responses: int
    nps: EstimateOut
    csat: EstimateOut
    ces: EstimateOut


def responses_by_survey(session: Session, store_id: int) -> dict[str, int]:
    rows = session.execute(
        select(SurveyResponse.survey_key, func.count(SurveyResponse.id))
        .where(SurveyResponse.store_id == store_id)
        .group_by(SurveyResponse.survey_key)
    ).all()
    return {str(k): int(n) for k, n in rows}


def survey_rows(session: Session, store: Store, lang: Lang) -> list[SurveyRow]:
    """Every survey (its current version) with its answers and scores with 95% intervals:
    one scores query grouped by survey, one count."""
    listed = surveys.list(session, store).items
    by_survey = {g.key: g for g in scores.report(session, store, by="survey").groups}
    counts = responses_by_survey(session, store.id)
    out: list[SurveyRow] = []
    empty = EstimateOut(value=None, low=None, high=None, n=0)
    for s in listed:
        g = by_survey.get(s.key)
        title = s.definition.get("title")
        out.append(
            SurveyRow(
                key=s.key,
                title=_label(title, s.key, lang) if isinstance(title, dict) else s.key,
                version=s.version,
                active=s.active,
                responses=counts.get(s.key, 0),
                nps=g.nps if g else empty,
                csat=g.csat if g else empty,
                ces=g.ces if g else empty,
            )
        )
    return out


# --------------------------------------------------------------------------- tickets

ACTIVE = (TicketStatus.new, TicketStatus.open, TicketStatus.pending)


def due_column() -> Any:
    """The instant a ticket is next due: the first response's while it has none, then the
    resolution's (the stored due instants; pauses move them when they end)."""
    return case(
        (Ticket.first_responded_at.is_(None), Ticket.first_response_due_at),
        else_=Ticket.resolution_due_at,
    )


def tickets_by_due(
    session: Session,
    store_id: int,
    *,
    status: Sequence[TicketStatus] | None = None,
    channel: TicketChannel | None = None,
    priority: Priority | None = None,
    limit: int = MAX_TICKETS,
) -> tuple[list[Ticket], int]:
    """The store's tickets (default: the active ones) soonest due first, and how many
    match in all."""
    conds = [Ticket.store_id == store_id, Ticket.status.in_(list(status or ACTIVE))]
    if channel is not None:
        conds.append(Ticket.channel == channel)
    if priority is not None:
        conds.append(Ticket.priority == priority)
    due = due_column()
    rows = session.scalars(
        select(Ticket).where(*conds).order_by(due.is_(None), due, Ticket.id).limit(limit)
    ).all()
    total = int(session.scalar(select(func.count(Ticket.id)).where(*conds)) or 0)
    return list(rows), total


def business_duration(seconds: int, lang: Lang) -> str:
    """Whole business minutes as ``2 d 3 h`` / ``3 h 5 min`` / ``12 min`` (zh: 天/小时/分钟)."""
    seconds = abs(int(seconds))
    minutes = seconds // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    units = ("天", "小时", "分钟") if lang == "zh" else (" d", " h", " min")
    sep = "" if lang == "zh" else " "
    if days:
        return f"{days}{units[0]}{sep}{hours}{units[1]}"
    if hours:
        return f"{hours}{units[1]}{sep}{mins}{units[2]}"
    return f"{mins}{units[2]}"


@dataclass(frozen=True)
class Timer:
    """One SLA clock as the pages show it: business time left, or over."""

    clock: str  # first_response | resolution
    state: str  # ok | warning | paused | breached | met
    text: str
    colour: str  # green | amber | red | grey
    remaining_s: int


COLOURS = {"ok": "green", "met": "green", "warning": "amber", "paused": "grey", "breached": "red"}


def timer(clock: SlaClockOut, which: str, lang: Lang) -> Timer:
    """``clock`` as text: "3 h 5 min left", "overdue by 1 h", "paused, 2 h left", or for
    a stopped clock "met in 40 min" / "missed by 2 h" (business time)."""
    left = business_duration(clock.remaining_s, lang)
    if clock.done_at is not None:
        key = "charts.timer.met" if clock.state == "met" else "charts.timer.missed"
        text = t(key, lang, used=business_duration(clock.used_s, lang), over=left)
    elif clock.remaining_s <= 0:
        text = t("charts.timer.overdue", lang, d=left)
    elif clock.state == "paused":
        text = t("charts.timer.paused", lang, d=left)
    else:
        text = t("charts.timer.left", lang, d=left)
    return Timer(which, clock.state, text, COLOURS.get(clock.state, "grey"), clock.remaining_s)


def next_timer(sla: SlaOut, lang: Lang) -> Timer:
    """The clock that runs now: the first response's until it is met, then the
    resolution's."""
    if sla.first_response.done_at is None:
        return timer(sla.first_response, "first_response", lang)
    return timer(sla.resolution, "resolution", lang)


@dataclass(frozen=True)
class TicketRow:
    ticket: TicketOut
    timer: Timer


@dataclass(frozen=True)
class TicketsView:
    rows: list[TicketRow]
    total: int  # tickets matching the filters (the list shows at most MAX_TICKETS)
    report: SlaReportOut  # attainment of the tickets opened in the last REPORT_DAYS
    now: datetime


REPORT_DAYS = 30


def tickets_view(
    session: Session,
    store: Store,
    lang: Lang,
    *,
    status: Sequence[TicketStatus] | None = None,
    channel: TicketChannel | None = None,
    priority: Priority | None = None,
    now: datetime | None = None,
) -> TicketsView:
    """The tickets page: the SLA attainment of the last :data:`REPORT_DAYS` days, and the
    tickets (default: the active ones) soonest due first, each with its running clock."""
    now = as_utc_or_now(now)
    config = support_settings.load(session, store)
    rows, total = tickets_by_due(
        session, store.id, status=status, channel=channel, priority=priority
    )
    outs = tickets.out(session, store, rows, now, config)
    report = insights.report(session, store, now - timedelta(days=REPORT_DAYS), None, now)
    return TicketsView(
        rows=[TicketRow(o, next_timer(o.sla, lang)) for o in outs],
        total=total,
        report=report,
        now=now,
    )


@dataclass(frozen=True)
class TicketPageView:
    ticket: TicketDetail
    first_response: Timer
    resolution: Timer


def ticket_view(
    session: Session, store: Store, ticket_id: int, lang: Lang, now: datetime | None = None
) -> TicketPageView:
    """One ticket with its thread and both SLA clocks (NotFound when not in the store)."""
    detail = tickets.detail(session, store, ticket_id, now)
    return TicketPageView(
        ticket=detail,
        first_response=timer(detail.sla.first_response, "first_response", lang),
        resolution=timer(detail.sla.resolution, "resolution", lang),
    )
