"""SLA business time: Patron's ``support.sla`` beside businesstimedelta 1.0.1, and the SLA job.

    python -m bench.support                          # 100,000 instants, 20,000 open tickets
    python -m bench.support --instants 20000 --tickets 5000 --repeats 1
    python -m bench.support --no-peer --no-job       # only our arithmetic
    python -m bench.support --report-only            # only the attainment report

1. **Arithmetic**, one calendar on both sides: Asia/Shanghai, Monday–Friday 09:00–18:00,
   closed on China's 2025–2027 public holidays, given to both as the same explicit list
   of dates (taken from the ``holidays`` package here: ours as ``closed_dates`` with
   ``holidays_country=None``, the peer as a ``HolidayRule`` over a frozenset of the same
   dates, its fastest form). Workload: N ticket open instants, uniform over 2026 in
   whole seconds (a tenth snapped to a local 09:00, 18:00 or midnight, the corners), and
   (a) the due instant start + a target of 1–72 business hours (a tenth in whole hours,
   so some land exactly on a closing time), (b) the business time between the start and
   an instant up to ``--span-days`` later. Every result of both sides is compared (as
   whole seconds) and mismatches are counted; then ops/s (median of ``--repeats`` runs
   of the whole list, input conversion outside the timed loop) and the ratio.
   Ours is also timed with ``holidays_country="CN"``, which opens China's weekend makeup
   days (调休) with the weekday hours — something the peer cannot express (its
   ``WorkDayRule`` opens weekdays only); the results that differ from the list calendar
   are counted.

   businesstimedelta needs pytz, so it runs in its own venv (``bench/.venv-businesstimedelta``,
   created on first use with pip) in a subprocess that reads the same inputs from a JSON
   file and writes its results and timings back.

2. **The SLA job** (``run_sla_check``) on a real PostgreSQL store (a throw-away database,
   dropped after): M open tickets (new, open with or without a first reply, pending with
   an open pause) aged like a backlog (exponential, mean 36 h, at most 14 days),
   channels and priorities mixed, the store's hours as above with
   ``holidays_country: CN``, bulk-inserted by COPY with their due instants computed as
   ``tickets.open`` computes them, one ``opened`` event each. Timed per run, unit of
   work included (read, clocks, events, commit): a first run that has warnings,
   breaches and escalations to write, and a second run at the same ``now`` that has
   nothing to do. Between repeats the job's writes are undone (events deleted,
   escalation columns reset, ``VACUUM ANALYZE``), untimed.

3. **The attainment report** (``insights.report``, ``--report-only`` runs just this) on
   a throw-away PostgreSQL store: M tickets opened over the year before ``now`` (uniform),
   channels and priorities mixed as above; those opened in the last 14 days are half
   still open (new, open, pending, as in 2.), all others resolved or closed after a
   first reply (a third with a closed wait on the customer), their clocks re-timed by
   ``clock.retime`` as the service does (due instants and stored outcomes). Timed: the
   report over the year (unit of work included), and beside it the per-ticket
   computation it replaced (``sla_view`` of every ticket opened in the window, loaded
   through the ORM); both outputs are compared. A ``gc.collect()`` before each run,
   untimed, so neither pays for the other's garbage.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from rich.console import Console
from rich.table import Table
from sqlalchemy import select, text

from patron.db import unit_of_work
from patron.kit.repository import insert_rows, table_of
from patron.stores.service import stores
from patron.support import settings as support_settings
from patron.support.clock import retime, sla_view
from patron.support.insights import _Row, insights
from patron.support.models import Priority, Ticket, TicketChannel, TicketEvent, TicketStatus
from patron.support.schemas import SlaReportOut
from patron.support.service import PRIORITY_ORDER, run_sla_check
from patron.support.sla import BusinessCalendar, add_business_time, business_time

VENV = Path(__file__).parent / ".venv-businesstimedelta"
REQUIREMENTS = ["businesstimedelta==1.0.1", "pytz"]
TIMEZONE = "Asia/Shanghai"
ZONE = ZoneInfo(TIMEZONE)
OPEN_MIN, CLOSE_MIN = 9 * 60, 18 * 60
CLOSING = dt_time(18)
HOLIDAY_YEARS = (2025, 2026, 2027)
console = Console(width=160)

PEER_SCRIPT = r"""
import datetime as dt, json, sys, time
import pytz
import businesstimedelta as btd

d = json.load(open(sys.argv[1]))
tz = pytz.timezone(d["timezone"])
closed = frozenset(dt.date.fromisoformat(x) for x in d["holidays"])
rule = btd.Rules([
    btd.WorkDayRule(start_time=dt.time(9), end_time=dt.time(18), working_days=[0, 1, 2, 3, 4],
                    tz=tz),
    btd.HolidayRule(closed, tz=tz),
])
starts = [dt.datetime.fromtimestamp(x, pytz.utc) for x in d["starts"]]
deltas = [btd.BusinessTimeDelta(rule, timedelta=dt.timedelta(seconds=s)) for s in d["targets"]]
ends = [dt.datetime.fromtimestamp(x, pytz.utc) for x in d["ends"]]
out = {"due_s": [], "between_s": []}
for _ in range(d["repeats"]):
    started = time.perf_counter()
    due = [start + delta for start, delta in zip(starts, deltas)]
    out["due_s"].append(time.perf_counter() - started)
    print("businesstimedelta: due", round(out["due_s"][-1], 1), "s", file=sys.stderr, flush=True)
for _ in range(d["repeats"]):
    started = time.perf_counter()
    between = [rule.difference(a, b) for a, b in zip(starts, ends)]
    out["between_s"].append(time.perf_counter() - started)
    print("businesstimedelta: between", round(out["between_s"][-1], 1), "s", file=sys.stderr,
          flush=True)
out["due"] = [int(x.timestamp()) if x.microsecond == 0 else x.timestamp() for x in due]
out["between"] = [int(x.timedelta.total_seconds()) for x in between]
json.dump(out, open(sys.argv[2], "w"))
"""


# -- the workload -------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    starts: list[int]  # epoch seconds
    targets: list[int]  # business seconds
    ends: list[int]  # epoch seconds, >= start


def holiday_dates() -> list[date]:
    """China's public holidays (days off, substituted days included) of 2025–2027."""
    return sorted(holidays.country_holidays("CN", years=HOLIDAY_YEARS))


def make_workload(n: int, span_days: int, seed: int) -> Workload:
    rng = random.Random(seed)
    year_start = int(datetime(2026, 1, 1, tzinfo=ZONE).timestamp())
    year_end = int(datetime(2027, 1, 1, tzinfo=ZONE).timestamp())

    def instant(lo: int, hi: int) -> int:
        t = rng.randrange(lo, hi)
        if rng.random() < 0.1:  # a corner: exactly opening, closing or midnight, local
            day = datetime.fromtimestamp(t, ZONE).date()
            minute = rng.choice((OPEN_MIN, CLOSE_MIN, 0))
            local = datetime(day.year, day.month, day.day, tzinfo=ZONE)
            t = int((local + timedelta(minutes=minute)).timestamp())
        return max(lo, t)

    starts = [instant(year_start, year_end) for _ in range(n)]
    targets = []
    for _ in range(n):
        seconds = rng.randint(3600, 72 * 3600)
        targets.append(seconds // 3600 * 3600 if rng.random() < 0.1 else seconds)
    ends = [instant(s, s + span_days * 86_400 + 1) for s in starts]
    return Workload(starts, targets, ends)


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        console.print(f"creating {VENV} with {' '.join(REQUIREMENTS)} …")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    return python


def run_peer(work: Workload, closed: Sequence[date], repeats: int) -> dict[str, Any]:
    python = ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.json", Path(tmp) / "out.json"
        inp.write_text(
            json.dumps(
                {
                    "timezone": TIMEZONE,
                    "holidays": [d.isoformat() for d in closed],
                    "starts": work.starts,
                    "targets": work.targets,
                    "ends": work.ends,
                    "repeats": repeats,
                }
            )
        )
        console.print("businesstimedelta 1.0.1 (subprocess) …")
        subprocess.run([str(python), "-c", PEER_SCRIPT, str(inp), str(out)], check=True)
        result: dict[str, Any] = json.loads(out.read_text())
    return result


def time_ours(
    cal: BusinessCalendar, work: Workload, repeats: int
) -> tuple[list[int], list[int], list[float], list[float]]:
    starts = [datetime.fromtimestamp(x, UTC) for x in work.starts]
    targets = [timedelta(seconds=s) for s in work.targets]
    ends = [datetime.fromtimestamp(x, UTC) for x in work.ends]
    due_s, between_s = [], []
    due: list[datetime | None] = []
    between: list[timedelta] = []
    for _ in range(repeats):
        started = time.perf_counter()
        due = [add_business_time(cal, s, t) for s, t in zip(starts, targets, strict=True)]
        due_s.append(time.perf_counter() - started)
    for _ in range(repeats):
        started = time.perf_counter()
        between = [business_time(cal, a, b) for a, b in zip(starts, ends, strict=True)]
        between_s.append(time.perf_counter() - started)
    due_epoch = [-1 if d is None else int(d.timestamp()) for d in due]
    return due_epoch, [int(b.total_seconds()) for b in between], due_s, between_s


def mismatches(ours: Sequence[Any], theirs: Sequence[Any]) -> list[int]:
    return [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]


def rate(n: int, seconds: Sequence[float]) -> float:
    return n / statistics.median(seconds)


def show_mismatch(work: Workload, i: int, what: str, ours: Any, theirs: Any) -> None:
    start = datetime.fromtimestamp(work.starts[i], ZONE).isoformat()
    if what == "due":
        args = f"start {start} + {work.targets[i]} s"
        ours, theirs = (datetime.fromtimestamp(x, ZONE).isoformat() for x in (ours, theirs))
    else:
        args = f"{start} → {datetime.fromtimestamp(work.ends[i], ZONE).isoformat()}"
    console.print(f"  [yellow]{what} #{i}: {args}: ours {ours}, businesstimedelta {theirs}")


def bench_arithmetic(args: argparse.Namespace) -> None:
    closed = holiday_dates()
    week = (((OPEN_MIN, CLOSE_MIN),),) * 5 + ((), ())
    listed = BusinessCalendar(TIMEZONE, week, closed_dates=frozenset(closed))
    china = BusinessCalendar(TIMEZONE, week, holidays_country="CN")
    # The two calendars differ on the makeup working days only.
    day, differ = date(2025, 1, 1), 0
    while day < date(2028, 1, 1):
        if listed.day_hours(day) != china.day_hours(day):
            differ += 1
            assert day.weekday() >= 5 and not listed.day_hours(day), day
        day += timedelta(days=1)

    work = make_workload(args.instants, args.span_days, args.seed)
    n = len(work.starts)
    console.print(
        f"{n:,} instants over 2026; {len(closed)} holiday dates 2025–2027; "
        f"{differ} makeup weekend days open only in the CN calendar"
    )
    due, between, due_s, between_s = time_ours(listed, work, args.repeats)
    corners = {OPEN_MIN: 0, CLOSE_MIN: 0, 0: 0}
    for t in work.starts:
        local = datetime.fromtimestamp(t, ZONE)
        if local.second == 0 and (minute := local.hour * 60 + local.minute) in corners:
            corners[minute] += 1
    at_close = sum(1 for t in due if datetime.fromtimestamp(t, ZONE).time() == CLOSING)
    console.print(
        f"corners: {corners[OPEN_MIN]:,} starts at 09:00:00, {corners[CLOSE_MIN]:,} at "
        f"18:00:00, {corners[0]:,} at midnight (local); {at_close:,} due instants exactly at "
        "closing time"
    )
    cn_due, cn_between, cn_due_s, cn_between_s = time_ours(china, work, args.repeats)
    theirs = None if args.no_peer else run_peer(work, closed, args.repeats)

    table = Table(
        title=f"Business-time arithmetic, {n:,} operations each, {TIMEZONE} Mon–Fri 09–18, "
        f"CN holidays 2025–27; median of {args.repeats}",
        caption="mismatches: results (whole seconds) that differ from businesstimedelta's",
    )
    for col in ("operation", "calendar", "Patron ops/s", "businesstimedelta ops/s", "ratio"):
        table.add_column(col, justify="left" if col in ("operation", "calendar") else "right")
    table.add_column("mismatches", justify="right")
    for label, ours_r, ours_s, cn_r, cn_s, key in (
        ("due = start + target (a)", due, due_s, cn_due, cn_due_s, "due"),
        ("business time between (b)", between, between_s, cn_between, cn_between_s, "between"),
    ):
        row = [label, "holiday list (both)", f"{rate(n, ours_s):,.0f}"]
        if theirs is not None:
            bad = mismatches(ours_r, theirs[key])
            peer = rate(n, theirs[f"{key}_s"])
            row += [f"{peer:,.0f}", f"{rate(n, ours_s) / peer:,.0f}×", f"{len(bad):,}"]
            for i in bad[:5]:
                show_mismatch(work, i, key, ours_r[i], theirs[key][i])
        else:
            row += ["-", "-", "-"]
        table.add_row(*row)
        changed = len(mismatches(ours_r, cn_r))
        table.add_row(
            "",
            'holidays_country="CN" (ours)',
            f"{rate(n, cn_s):,.0f}",
            "cannot open makeup days",
            "",
            f"{changed:,} differ from the list calendar",
        )
    console.print(table)


# -- the SLA job --------------------------------------------------------------------------

STATUS_MIX = ((TicketStatus.new, 0.35), (TicketStatus.open, 0.45), (TicketStatus.pending, 0.2))
CHANNEL_MIX = (
    (TicketChannel.email, 0.45),
    (TicketChannel.chat, 0.2),
    (TicketChannel.phone, 0.1),
    (TicketChannel.app, 0.15),
    (TicketChannel.social, 0.1),
)
PRIORITY_MIX = (
    (Priority.low, 0.15),
    (Priority.normal, 0.6),
    (Priority.high, 0.2),
    (Priority.urgent, 0.05),
)
DONE_STATUSES = (TicketStatus.resolved, TicketStatus.closed)
SETTINGS = {
    "hours": {
        "timezone": TIMEZONE,
        "hours": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "holidays_country": "CN",
    }
}


def pick(rng: random.Random, mix: Sequence[tuple[Any, float]]) -> Any:
    return rng.choices([v for v, _ in mix], weights=[w for _, w in mix])[0]


def ticket_rows(
    store_id: int, cal: BusinessCalendar, config: Any, m: int, now: datetime, seed: int
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(m):
        # Ages of an open backlog: most tickets recent, a tail of old ones (≤ 14 days).
        age = min(14 * 86_400, 60 + rng.expovariate(1 / (36 * 3600)))
        created = now - timedelta(seconds=int(age))
        channel, priority = pick(rng, CHANNEL_MIX), pick(rng, PRIORITY_MIX)
        status = pick(rng, STATUS_MIX)
        target = config.target(channel, priority)
        pauses: list[tuple[datetime, datetime | None]] = []
        responded = None
        if status != TicketStatus.new and rng.random() < 0.6:
            responded = created + (now - created) * rng.random() * 0.5
        if status == TicketStatus.pending:
            pauses = [(created + (now - created) * (0.5 + 0.5 * rng.random()), None)]
        first_due = None
        if responded is None:
            first_due = add_business_time(
                cal, created, timedelta(seconds=target.first_response), pauses
            )
        rows.append(
            {
                "store_id": store_id,
                "channel": channel.value,
                "subject": f"bench ticket {i}",
                "status": status.value,
                "priority": priority.value,
                "source": "api",
                "source_ref": f"bench:{i}",
                "created_at": created,
                "updated_at": responded or created,
                "first_response_target_s": target.first_response,
                "resolution_target_s": target.resolution,
                "first_response_due_at": first_due,
                "resolution_due_at": add_business_time(
                    cal, created, timedelta(seconds=target.resolution), pauses
                ),
                "pauses": [
                    [a.isoformat(), None if b is None else b.isoformat()] for a, b in pauses
                ],
                "first_responded_at": responded,
                "escalation_level": 0,
                "opportunistic": False,
            }
        )
    return rows


def bench_job(args: argparse.Namespace) -> None:
    from bench.ingest import Database  # a throw-away PostgreSQL database, dropped after

    now = datetime(2026, 11, 26, 10, 30, tzinfo=ZONE).astimezone(UTC)  # a Thursday
    db = Database("postgresql", Path(tempfile.gettempdir()))
    try:
        slug, _ = db.new_store()
        with unit_of_work(db.engine) as session:
            store = stores.get(session, slug)
            store_id = store.id
            config, _ = support_settings.apply(session, store, SETTINGS)
            cal = config.calendar()
            started = time.perf_counter()
            rows = ticket_rows(store_id, cal, config, args.tickets, now, args.seed)
            insert_rows(session, table_of(Ticket), rows)
            ids = session.execute(
                text("SELECT id, created_at FROM support_tickets WHERE store_id = :s ORDER BY id"),
                {"s": store_id},
            ).all()
            insert_rows(
                session,
                table_of(TicketEvent),
                [
                    {
                        "store_id": store_id,
                        "ticket_id": tid,
                        "kind": "opened",
                        "actor": "api",
                        "data": {"source": "api"},
                        "created_at": created,
                    }
                    for tid, created in ids
                ],
            )
        console.print(
            f"{len(ids):,} open tickets and their events written in "
            f"{time.perf_counter() - started:.1f} s"
        )

        def vacuum() -> None:
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE support_tickets, support_events"))

        def reset() -> None:
            with unit_of_work(db.engine) as session:
                session.execute(
                    text("DELETE FROM support_events WHERE store_id = :s AND kind <> 'opened'"),
                    {"s": store_id},
                )
                session.execute(
                    text(
                        "UPDATE support_tickets SET escalation_level = 0, escalated_at = NULL,"
                        " warned_at = NULL WHERE store_id = :s"
                    ),
                    {"s": store_id},
                )
            vacuum()

        def run() -> tuple[Any, float]:
            started = time.perf_counter()
            with unit_of_work(db.engine) as session:
                done = run_sla_check(session, stores.get(session, slug), now)
            return done, time.perf_counter() - started

        vacuum()
        first: list[float] = []
        second: list[float] = []
        results: list[Any] = []
        for rep in range(args.repeats):
            if rep:
                reset()
            done, seconds = run()
            first.append(seconds)
            again, seconds2 = run()
            second.append(seconds2)
            assert again.warnings == again.breaches == again.escalated == 0, again
            results = [done, again]
            console.print(
                f"SLA job run {rep + 1}: {seconds:.2f} s ({done.warnings:,} warnings, "
                f"{done.breaches:,} breaches, {done.escalated:,} escalated); "
                f"again: {seconds2:.2f} s"
            )
    finally:
        db.close()

    table = Table(
        title=f"run_sla_check, {len(ids):,} open tickets, PostgreSQL, median of {args.repeats}",
        caption="wall clock of one unit of work: read tickets and events, clocks, writes, commit",
    )
    for col in ("run", "checked", "warnings", "breaches", "escalated", "seconds", "tickets/s"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for label, done, times in (
        ("first (events to write)", results[0], first),
        ("second, same now (nothing to do)", results[1], second),
    ):
        seconds = statistics.median(times)
        table.add_row(
            label,
            f"{done.checked:,}",
            f"{done.warnings:,}",
            f"{done.breaches:,}",
            f"{done.escalated:,}",
            f"{seconds:.2f}",
            f"{done.checked / seconds:,.0f}",
        )
    console.print(table)


def year_rows(
    store_id: int, cal: BusinessCalendar, config: Any, m: int, now: datetime, seed: int
) -> list[dict[str, Any]]:
    """A year of tickets, mostly done, re-timed (``clock.retime``) as the service does."""
    rng = random.Random(seed)
    columns = [c.key for c in Ticket.__table__.columns if c.key != "id"]
    rows = []
    for i in range(m):
        created = now - timedelta(seconds=rng.randrange(365 * 86_400))
        channel, priority = pick(rng, CHANNEL_MIX), pick(rng, PRIORITY_MIX)
        target = config.target(channel, priority)
        t = Ticket(
            store_id=store_id,
            channel=channel,
            subject=f"bench ticket {i}",
            status=TicketStatus.open,
            priority=priority,
            source="api",
            source_ref=f"bench:{i}",
            created_at=created,
            updated_at=created,
            first_response_target_s=target.first_response,
            resolution_target_s=target.resolution,
            pauses=[],
            escalation_level=0,
            opportunistic=False,
        )
        for name in ("customer_id", "requester", "category", "order_external_id"):
            setattr(t, name, None)
        active = now - created < timedelta(days=14) and rng.random() < 0.5
        if active:
            t.status = pick(rng, STATUS_MIX)
            if t.status != TicketStatus.new and rng.random() < 0.6:
                t.first_responded_at = created + (now - created) * rng.random() * 0.5
            if t.status == TicketStatus.pending:
                start = created + (now - created) * (0.5 + 0.5 * rng.random())
                t.pauses = [[start.isoformat(), None]]
        else:
            responded = created + timedelta(seconds=rng.expovariate(1 / (8 * 3600)))
            resolved = responded + timedelta(seconds=rng.expovariate(1 / (40 * 3600)))
            t.first_responded_at = responded
            pauses: list[list[str | None]] = []
            if rng.random() < 1 / 3:
                start = responded + (resolved - responded) * rng.random() * 0.5
                end = start + timedelta(seconds=rng.expovariate(1 / (20 * 3600)))
                resolved = max(resolved, end) + timedelta(hours=1)
                pauses.append([start.isoformat(), end.isoformat()])
            if resolved >= now:
                resolved = now - timedelta(minutes=1)
                responded = min(responded, resolved)
                t.first_responded_at = responded
                pauses = []
            retime(t, cal)  # the due instants, as while it was open
            pauses.append([resolved.isoformat(), None])  # resolution pauses the clocks
            t.pauses = pauses
            t.resolved_at = resolved
            t.status = TicketStatus.resolved
            if rng.random() < 0.6:
                t.status, t.closed_at = TicketStatus.closed, resolved + timedelta(days=2)
            t.updated_at = t.closed_at or resolved
        retime(t, cal)
        rows.append({c: getattr(t, c) for c in columns})
    return rows


def old_report(
    session: Any, store: Any, since: datetime, until: datetime, now: datetime
) -> SlaReportOut:
    """The report as computed before the clocks' outcomes were stored: ``sla_view`` of
    every ticket opened in the window (ORM, by id batches of 500), and of the active ones
    for the breaches open now."""
    config = support_settings.load(session, store)
    cal = config.calendar()
    acc: dict[tuple[str, str], _Row] = {}
    total = _Row()
    for done in (False, True):
        after = 0
        while True:
            query = select(Ticket).where(Ticket.store_id == store.id, Ticket.id > after)
            if done:
                query = query.where(Ticket.status.not_in(DONE_STATUSES))
            else:
                query = query.where(Ticket.created_at >= since, Ticket.created_at < until)
            batch = session.scalars(query.order_by(Ticket.id).limit(500)).all()
            if not batch:
                break
            after = batch[-1].id
            for t in batch:
                view = sla_view(cal, t, now, config.warn_at)
                key = (t.channel.value, t.priority.value)
                if not done:
                    for row in (acc.setdefault(key, _Row()), total):
                        row.add(view)
                elif (
                    view.first_response.state == "breached" and view.first_response.done_at is None
                ) or view.resolution.state == "breached":
                    for row in (acc.setdefault(key, _Row()), total):
                        row.breaches_open += 1
    order = {c.value: i for i, c in enumerate(TicketChannel)}
    prio = {p.value: i for i, p in enumerate(PRIORITY_ORDER)}
    rows = [
        acc[key].out(*key)
        for key in sorted(acc, key=lambda k: (order.get(k[0], 99), prio.get(k[1], 99)))
    ]
    return SlaReportOut(since=since, until=until, rows=rows, total=total.out("all", "all"))


def bench_report(args: argparse.Namespace) -> None:
    from bench.ingest import Database  # a throw-away PostgreSQL database, dropped after

    now = datetime(2026, 11, 26, 10, 30, tzinfo=ZONE).astimezone(UTC)  # a Thursday
    since = now - timedelta(days=365)
    db = Database("postgresql", Path(tempfile.gettempdir()))
    try:
        slug, _ = db.new_store()
        with unit_of_work(db.engine) as session:
            store = stores.get(session, slug)
            config, _ = support_settings.apply(session, store, SETTINGS)
            started = time.perf_counter()
            rows = year_rows(store.id, config.calendar(), config, args.tickets, now, args.seed)
            insert_rows(session, table_of(Ticket), rows)
        active = sum(r["status"] not in DONE_STATUSES for r in rows)
        console.print(
            f"{len(rows):,} tickets over a year ({active:,} still open) written in "
            f"{time.perf_counter() - started:.1f} s"
        )
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE support_tickets"))

        def timed(fn: Callable[..., SlaReportOut]) -> tuple[SlaReportOut, float]:
            # Untimed: the garbage of the previous run (ORM objects, cycles) is not this
            # run's to collect.
            gc.collect()
            started = time.perf_counter()
            with unit_of_work(db.engine) as session:
                out = fn(session, stores.get(session, slug), since, now, now)
            return out, time.perf_counter() - started

        def new_report(session: Any, store: Any, a: datetime, b: datetime, c: datetime) -> Any:
            return insights.report(session, store, a, b, now=c)

        times: dict[str, list[float]] = {"report": [], "per-ticket": []}
        outs: dict[str, SlaReportOut] = {}
        for rep in range(args.repeats):
            for label, fn in (("report", new_report), ("per-ticket", old_report)):
                outs[label], seconds = timed(fn)
                times[label].append(seconds)
            console.print(
                f"run {rep + 1}: report {times['report'][-1] * 1000:.0f} ms, "
                f"per-ticket {times['per-ticket'][-1] * 1000:.0f} ms"
            )
        same = outs["report"].model_dump() == outs["per-ticket"].model_dump()
    finally:
        db.close()
    total = outs["report"].total
    table = Table(
        title=(
            f"insights.report over a year, {len(rows):,} tickets ({active:,} open), "
            f"PostgreSQL, median of {args.repeats}"
        ),
        caption=f"one unit of work, settings read included; outputs equal: {same}",
    )
    for col in ("computation", "ms", "tickets/s"):
        table.add_column(col, justify="left" if col == "computation" else "right")
    for label in ("report", "per-ticket"):
        seconds = statistics.median(times[label])
        table.add_row(label, f"{seconds * 1000:.0f}", f"{total.tickets / seconds:,.0f}")
    console.print(table)
    console.print(
        f"total: {total.tickets:,} tickets, first response met {total.first_response_met_pct}"
        f" %, resolution met {total.resolution_met_pct} %, {total.breaches_open} breaches open"
    )
    assert same, "the report differs from the per-ticket computation"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instants", type=int, default=100_000, help="N operations of each kind")
    parser.add_argument("--span-days", type=int, default=14, help="(b): end up to this much later")
    parser.add_argument("--tickets", type=int, default=20_000, help="M open tickets for the job")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-peer", action="store_true", help="skip businesstimedelta")
    parser.add_argument("--no-job", action="store_true", help="skip the SLA job")
    parser.add_argument("--no-arithmetic", action="store_true", help="only the SLA job")
    parser.add_argument("--no-report", action="store_true", help="skip the attainment report")
    parser.add_argument("--report-only", action="store_true", help="only the attainment report")
    args = parser.parse_args()
    steps: list[Callable[[argparse.Namespace], None]] = []
    if not args.no_arithmetic and not args.report_only:
        steps.append(bench_arithmetic)
    if not args.no_job and not args.report_only:
        steps.append(bench_job)
    if not args.no_report:
        steps.append(bench_report)
    for step in steps:
        step(args)


if __name__ == "__main__":
    main()
