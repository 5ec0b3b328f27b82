"""Survey scores at scale: SQL aggregates (``feedback.scores``) beside fetching every answer.

    python -m bench.feedback                          # 1,000,000 responses, ~10M answers
    python -m bench.feedback --responses 200000 --repeats 1

A throw-away PostgreSQL database (dropped after) gets one store with two surveys made
from the built-in templates and R responses bulk-inserted by COPY
(``kit.repository.insert_rows``, 200,000 rows a call), submitted over 2025-01 .. 2026-11,
with a channel, a loyalty tier (none for a fifth: non-members) and a segment each:

* 95% answer ``post_purchase``: NPS 0–10, CSAT 1–5, CES 1–7 and expectation/experience
  pairs 1–7 for the six required factors and, half the time, each of the two optional
  ones (~10 answers a response);
* 5% answer ``competitor_value``: 8 comparison answers (importance 1–5, ratings 1–10 of
  us and of two competitors; a competitor the customer does not know, a fifth of the
  time, is left out).

Rows are as ``responses.submit`` writes them (the pair's gap in ``value`` and its level
in ``data``, the comparison's ratings in ``data``). Then ``VACUUM ANALYZE``, as
autovacuum would do after such a load.

Timed (wall clock per call, median of ``--repeats``), each in its own session:

* **Patron**: ``scores.report`` overall (it always adds the monthly trend and the
  response count), ``by`` month, tier and channel; ``scores.gaps``;
  ``scores.value_analysis``. The database returns counts per value and group, or sums.
* **the obvious alternative**: fetch every answer the call needs (one query, with the
  response's submission time and group column, through the raw psycopg cursor — the
  fastest way to get rows into Python) and compute the same figures with the domain
  functions on the lists: ``domain.nps``/``csat``/``ces`` per group and per month
  (months bucketed by the same store-time bounds, ``scores.period_edges``),
  ``domain.attribute_gaps`` and ``domain.value_analysis`` on ``domain.Answer`` objects.

Both results are compared figure by figure (every count, score and interval bound of
every group); counts and scores are exact, interval bounds may differ in the last bits
(Σx² form vs a two-pass variance), so the largest difference is printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.orm import Session

from patron.db import unit_of_work
from patron.feedback import domain
from patron.feedback.models import SurveyAnswer, SurveyResponse
from patron.feedback.repository import party_key
from patron.feedback.schemas import SurveyIn
from patron.feedback.scores import period_edges, scores
from patron.feedback.service import surveys
from patron.feedback.templates import DEFAULT_COMPETITORS, PURCHASE_FACTORS, VALUE_ATTRIBUTES
from patron.kit.repository import insert_rows, table_of
from patron.stores.models import Store
from patron.stores.service import stores

console = Console(width=160)
CHUNK = 200_000
TIMEZONE = "Asia/Shanghai"  # the store's (stores.create's default)
FIRST = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
LAST = datetime(2026, 11, 25, tzinfo=UTC).timestamp()
CHANNELS = ("web", "app", "wechat", "tmall", "store")
TIERS = (None, "bronze", "silver", "gold", "platinum")
SEGMENTS = ("champions", "loyal", "potential", "at_risk", "hibernating", "new")
PARTIES = ("us", *DEFAULT_COMPETITORS)
KEYS = {p: party_key(p) for p in PARTIES}


def level_of(expectation: int, experience: int) -> str:
    return str(domain.gap_level(expectation, experience).value)


LEVELS = {(e, x): level_of(e, x) for e in range(1, 8) for x in range(1, 8)}


# -- the store ----------------------------------------------------------------------------


def response_batches(
    n: int, value_share: float, survey_ids: dict[str, int], store_id: int, seed: int
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """(responses, answers) in chunks of CHUNK responses, ids given here."""
    rng = np.random.default_rng(seed)
    nps_p = np.array([2, 1, 1, 2, 2, 5, 6, 12, 20, 24, 25], float)
    csat_p = np.array([4, 6, 15, 40, 35], float)
    ces_p = np.array([3, 4, 8, 15, 25, 25, 20], float)
    answer_id = 0
    for lo in range(0, n, CHUNK):
        size = min(CHUNK, n - lo)
        ids = np.arange(lo + 1, lo + size + 1)
        when = rng.uniform(FIRST, LAST, size)
        is_value = rng.random(size) < value_share
        channel = rng.integers(0, len(CHANNELS), size)
        tier = rng.choice(len(TIERS), size, p=[0.2, 0.35, 0.25, 0.15, 0.05])
        segment = rng.integers(0, len(SEGMENTS), size)
        nps = rng.choice(11, size, p=nps_p / nps_p.sum())
        csat = rng.choice(5, size, p=csat_p / csat_p.sum()) + 1
        ces = rng.choice(7, size, p=ces_p / ces_p.sum()) + 1
        expect = rng.integers(3, 8, (size, len(PURCHASE_FACTORS)))
        shift = rng.integers(-3, 3, (size, len(PURCHASE_FACTORS)))
        answered = rng.random((size, len(PURCHASE_FACTORS))) < 0.5
        importance = rng.integers(1, 6, (size, len(VALUE_ATTRIBUTES)))
        ratings = rng.integers(1, 11, (size, len(VALUE_ATTRIBUTES), len(PARTIES)))
        known = rng.random((size, len(VALUE_ATTRIBUTES), len(PARTIES))) >= 0.2
        responses: list[dict[str, Any]] = []
        answers: list[dict[str, Any]] = []

        def answer(
            rid: int, qid: str, qtype: str, out: list[dict[str, Any]] = answers, **fields: Any
        ) -> None:
            nonlocal answer_id
            answer_id += 1
            out.append(
                {
                    "id": answer_id,
                    "store_id": store_id,
                    "response_id": rid,
                    "question_id": qid,
                    "question_type": qtype,
                    "attribute": fields.get("attribute"),
                    "value": fields.get("value"),
                    "expectation": fields.get("expectation"),
                    "experience": fields.get("experience"),
                    "importance": fields.get("importance"),
                    "data": fields.get("data"),
                }
            )

        for i in range(size):
            rid = int(ids[i])
            key = "value" if is_value[i] else "post-purchase"
            responses.append(
                {
                    "id": rid,
                    "store_id": store_id,
                    "survey_id": survey_ids[key],
                    "survey_key": key,
                    "submitted_at": datetime.fromtimestamp(float(when[i]), UTC),
                    "locale": "zh",
                    "channel": CHANNELS[channel[i]],
                    "tier": TIERS[tier[i]],
                    "segment": SEGMENTS[segment[i]],
                }
            )
            if is_value[i]:
                for j, (attribute, _, _, cost) in enumerate(VALUE_ATTRIBUTES):
                    given = {
                        p: int(ratings[i, j, k])
                        for k, p in enumerate(PARTIES)
                        if k == 0 or known[i, j, k]
                    }
                    answer(
                        rid,
                        attribute,
                        "comparison",
                        attribute=attribute,
                        importance=int(importance[i, j]),
                        data={
                            "ratings": given,
                            "cost": cost,
                            "k": {KEYS[p]: r for p, r in given.items()},
                        },
                    )
                continue
            for j, (attribute, _, _, required) in enumerate(PURCHASE_FACTORS):
                if required or answered[i, j]:
                    e = int(expect[i, j])
                    x = min(7, max(1, e + int(shift[i, j])))
                    answer(
                        rid,
                        attribute,
                        "expectation_experience",
                        attribute=attribute,
                        value=float(x - e),
                        expectation=e,
                        experience=x,
                        data={"level": LEVELS[e, x]},
                    )
            answer(rid, "nps", "nps", value=float(nps[i]))
            answer(rid, "csat", "csat", value=float(csat[i]))
            answer(rid, "ces", "ces", value=float(ces[i]))
        yield responses, answers


def build_store(engine: Any, db: Any, args: argparse.Namespace) -> tuple[str, int, int]:
    """The store's slug and id, and the answers written."""
    slug, _ = db.new_store()
    with unit_of_work(engine) as session:
        store = stores.get(session, slug)
        survey_ids = {}
        for key, template in (("post-purchase", "post_purchase"), ("value", "competitor_value")):
            surveys.create(session, store, SurveyIn(key=key, template=template))
            survey_ids[key] = int(
                session.execute(
                    text("SELECT id FROM surveys WHERE store_id = :s AND key = :k"),
                    {"s": store.id, "k": key},
                ).scalar_one()
            )
        store_id = store.id
    started = time.perf_counter()
    n_answers = 0
    for responses, answers in response_batches(
        args.responses, args.value_share, survey_ids, store_id, args.seed
    ):
        with unit_of_work(engine) as session:
            insert_rows(session, table_of(SurveyResponse), responses)
            insert_rows(session, table_of(SurveyAnswer), answers)
        n_answers += len(answers)
        console.print(
            f"  {responses[-1]['id']:,} responses, {n_answers:,} answers "
            f"({time.perf_counter() - started:.0f} s)"
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("survey_responses", "survey_answers"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
            )
        conn.execute(text("VACUUM ANALYZE survey_responses, survey_answers"))
    console.print(
        f"loaded {args.responses:,} responses / {n_answers:,} answers "
        f"in {time.perf_counter() - started:.0f} s (COPY, then VACUUM ANALYZE)"
    )
    return slug, store_id, n_answers


# -- the alternative: every answer into Python ---------------------------------------------


def fetch(session: Session, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def estimate(e: domain.Estimate) -> dict[str, Any]:
    return {"value": e.value, "low": e.low, "high": e.high, "n": e.n}


def score_set(values: Mapping[str, list[float]]) -> dict[str, Any]:
    nps = values.get("nps", [])
    b = domain.nps_breakdown(nps)
    return {
        "nps": {
            **estimate(domain.nps(nps)),
            "promoters": b.promoters,
            "passives": b.passives,
            "detractors": b.detractors,
        },
        "csat": estimate(domain.csat(values.get("csat", []))),
        "ces": estimate(domain.ces(values.get("ces", []))),
    }


GROUP_COLUMNS = {"tier": "r.tier", "channel": "r.channel", "segment": "r.segment"}


def peer_report(session: Session, store: Store, by: str | None) -> dict[str, Any]:
    column = GROUP_COLUMNS.get(by or "", "NULL")
    rows = fetch(
        session,
        f"SELECT a.question_type, a.value, r.submitted_at, {column} FROM survey_answers a"
        " JOIN survey_responses r ON r.id = a.response_id"
        " WHERE a.store_id = %(s)s AND r.store_id = %(s)s"
        " AND a.question_type IN ('nps', 'csat', 'ces') AND a.value IS NOT NULL",
        {"s": store.id},
    )
    responses = fetch(
        session, "SELECT count(*) FROM survey_responses WHERE store_id = %(s)s", {"s": store.id}
    )[0][0]
    first = min(r[2] for r in rows)
    last = max(r[2] for r in rows)
    labels, edges = period_edges("month", first, last, store.timezone)
    overall: dict[str, list[float]] = {}
    months: dict[str, dict[str, list[float]]] = {label: {} for label in labels}
    groups: dict[Any, dict[str, list[float]]] = {}
    for kind, value, submitted, group in rows:
        overall.setdefault(kind, []).append(value)
        i = bisect_right(edges, submitted) - 1
        if 0 <= i < len(labels):
            months[labels[i]].setdefault(kind, []).append(value)
        if by in GROUP_COLUMNS:
            groups.setdefault(group, {}).setdefault(kind, []).append(value)
    trend = {label: score_set(months[label]) for label in labels}
    if by == "month":
        grouped = trend
    else:
        keys = sorted(groups, key=lambda k: (k is None, str(k)))
        grouped = {k: score_set(groups[k]) for k in keys}
    return {
        "responses": responses,
        "overall": score_set(overall),
        "groups": grouped,
        "trend": trend,
    }


def peer_gaps(session: Session, store: Store) -> dict[str, Any]:
    rows = fetch(
        session,
        "SELECT a.question_id, a.attribute, a.expectation, a.experience FROM survey_answers a"
        " JOIN survey_responses r ON r.id = a.response_id"
        " WHERE a.store_id = %(s)s AND r.store_id = %(s)s"
        " AND a.question_type = 'expectation_experience'",
        {"s": store.id},
    )
    answers = [
        domain.Answer(q, "expectation_experience", expectation=e, experience=x, attribute=a)
        for q, a, e, x in rows
    ]
    return {g.attribute: gap_dict(g) for g in domain.attribute_gaps(answers)}


def peer_value(session: Session, store: Store) -> dict[str, Any]:
    rows = fetch(
        session,
        "SELECT a.question_id, a.attribute, a.importance, a.data FROM survey_answers a"
        " JOIN survey_responses r ON r.id = a.response_id"
        " WHERE a.store_id = %(s)s AND r.store_id = %(s)s AND a.question_type = 'comparison'",
        {"s": store.id},
    )
    answers = [
        domain.Answer(
            q,
            "comparison",
            ratings=data["ratings"],
            importance=importance,
            attribute=attribute,
            cost=data["cost"],
        )
        for q, attribute, importance, data in rows
    ]
    return value_dict(domain.value_analysis(answers))


# -- our answers in the same shape -----------------------------------------------------------


def gap_dict(g: Any) -> dict[str, Any]:
    distribution = {getattr(k, "value", k): v for k, v in g.distribution.items()}
    gap = g.gap if isinstance(g.gap, domain.Estimate) else None
    return {
        "n": g.n,
        "expectation_mean": g.expectation_mean,
        "experience_mean": g.experience_mean,
        "gap": estimate(gap) if gap else g.gap.model_dump(),
        "level": getattr(g.level, "value", g.level),
        "distribution": distribution,
    }


def value_dict(v: Any) -> dict[str, Any]:
    attributes = {}
    for a in v.attributes:
        comparisons = {}
        for c in a.comparisons:
            d = c.difference
            comparisons[c.competitor] = {
                "difference": estimate(d) if isinstance(d, domain.Estimate) else d.model_dump(),
                "verdict": getattr(c.verdict, "value", c.verdict),
            }
        attributes[a.attribute] = {
            "cost": a.cost,
            "n": a.n,
            "importance": a.importance,
            "weight": a.weight,
            "ratings": dict(a.ratings),
            "comparisons": comparisons,
        }
    return {
        "n": v.n,
        "attributes": attributes,
        "parties": {
            p.party: {"benefit": p.benefit, "cost": p.cost, "value": p.value, "rank": p.rank}
            for p in v.parties
        },
        "ranking": list(v.ranking),
    }


def ours_report(session: Session, store: Store, by: str | None) -> dict[str, Any]:
    out = scores.report(session, store, by=by)
    dump = out.model_dump(mode="python")

    def keyed(items: list[dict[str, Any]]) -> dict[Any, Any]:
        return {g.pop("key"): g for g in items}

    return {
        "responses": dump["responses"],
        "overall": dump["overall"],
        "groups": keyed(dump["groups"]),
        "trend": keyed(dump["trend"]),
    }


def ours_gaps(session: Session, store: Store) -> dict[str, Any]:
    out = scores.gaps(session, store)
    return {g.attribute: gap_dict(g) for g in out.attributes}


def ours_value(session: Session, store: Store) -> dict[str, Any]:
    return value_dict(scores.value_analysis(session, store))


# -- comparing -----------------------------------------------------------------------------


def flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from flatten(v, f"{path}/{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from flatten(v, f"{path}[{i}]")
    else:
        yield path, value


def compare(ours: Any, theirs: Any) -> tuple[int, int, float, list[str]]:
    """(figures, figures not exactly equal, largest |difference|, structural mismatches)."""
    a, b = dict(flatten(ours)), dict(flatten(theirs))
    problems = sorted(set(a) ^ set(b))
    inexact, largest = 0, 0.0
    for key in set(a) & set(b):
        x, y = a[key], b[key]
        if x == y:
            continue
        if isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool):
            inexact += 1
            largest = max(largest, abs(x - y))
            if abs(x - y) > 1e-9 * max(1.0, abs(x), abs(y)):
                problems.append(f"{key}: {x!r} vs {y!r}")
        else:
            problems.append(f"{key}: {x!r} vs {y!r}")
    return len(a), inexact, largest, problems


def timed(engine: Any, slug: str, fn: Callable[[Session, Store], Any], repeats: int) -> Any:
    seconds = []
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        with unit_of_work(engine) as session:
            result = fn(session, stores.get(session, slug))
        seconds.append(time.perf_counter() - started)
    return result, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--value-share", type=float, default=0.05, help="competitor_value share")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    from bench.ingest import Database  # a throw-away PostgreSQL database, dropped after

    db = Database("postgresql", Path(tempfile.gettempdir()))
    try:
        slug, _, n_answers = build_store(db.engine, db, args)
        calls: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
            (
                "report (overall + monthly trend)",
                lambda s, st: ours_report(s, st, None),
                lambda s, st: peer_report(s, st, None),
            ),
            *(
                (
                    f"report by {by}",
                    lambda s, st, by=by: ours_report(s, st, by),
                    lambda s, st, by=by: peer_report(s, st, by),
                )
                for by in ("month", "tier", "channel")
            ),
            ("gaps (8 attributes)", ours_gaps, peer_gaps),
            ("value_analysis (8 attributes, 3 parties)", ours_value, peer_value),
        ]
        table = Table(
            title=f"Survey scores, {args.responses:,} responses / {n_answers:,} answers, "
            f"PostgreSQL; wall clock per call, median of {args.repeats}",
            caption="figures: every count, score and interval bound compared; Δ max: the "
            "largest difference among those not bit-identical (interval bounds)",
        )
        for col in ("call", "Patron s", "fetch-all s", "speed-up", "figures", "equal", "Δ max"):
            table.add_column(col, justify="left" if col == "call" else "right")
        for label, ours_fn, peer_fn in calls:
            ours, ours_s = timed(db.engine, slug, ours_fn, args.repeats)
            theirs, peer_s = timed(db.engine, slug, peer_fn, args.repeats)
            figures, inexact, largest, problems = compare(ours, theirs)
            for p in problems[:5]:
                console.print(f"  [red]{label}: {p}")
            console.print(f"{label}: ours {ours_s:.2f} s, fetch-all {peer_s:.2f} s")
            table.add_row(
                label,
                f"{ours_s:.2f}",
                f"{peer_s:.2f}",
                f"{peer_s / ours_s:.1f}×",
                f"{figures:,}",
                "yes" if not problems else f"[red]{len(problems)} differ",
                f"{largest:.1e}" if inexact else "0",
            )
        console.print(table)
    finally:
        db.close()


if __name__ == "__main__":
    main()
