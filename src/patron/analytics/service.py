"""Analyses of a store's own data: run, store the report, write the scores back, read them.

Flushes, never commits: a run is stored and its scores replaced in the caller's one
transaction, so a run that fails anywhere — reading, fitting, writing — changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
from sqlalchemy.orm import Session

from patron.analytics import repository as repo
from patron.analytics.frame import Engine
from patron.analytics.models import AnalyticsRun, CustomerScore, RunStatus
from patron.analytics.report import (
    REPORT_VERSION,
    AnalysisOptions,
    AnalysisReport,
    Progress,
    analyze_with_scores,
)
from patron.analytics.sources import open_source
from patron.errors import Invalid, NotFound
from patron.kit.clock import utcnow
from patron.stores.models import Store

NO_RUN = (
    "No analysis has been run for this store yet: POST /v1/analytics/runs "
    "(or `patron analyze --source db --store <slug> --write-back`) first."
)


@dataclass(frozen=True)
class StoredRun:
    run: AnalyticsRun
    report: AnalysisReport
    scores_written: int  # customer_scores rows
    unknown_customers: int  # score rows whose customer is not in the store (not written)


def database_url(session: Session) -> str:
    """The URL of the session's database, for a source that reads it on its own."""
    return session.get_bind().engine.url.render_as_string(hide_password=False)


class AnalyticsService:
    def run(
        self,
        session: Session,
        store: Store,
        options: AnalysisOptions,
        *,
        engine: Engine = "duckdb",
        progress: Progress | None = None,
    ) -> StoredRun:
        """Analyse the store's database, store the report and replace its scores.

        The analysis reads committed data through its own connection; the run and the
        scores are written in ``session`` (flushed, committed by the caller).
        """
        started = utcnow()
        try:
            frame = open_source(
                "db", engine=engine, database_url=database_url(session), store=store.slug
            )
            report, scores = analyze_with_scores(frame, options, progress)
        except (ValueError, RuntimeError) as exc:  # no data, bad options, no PySpark
            raise Invalid(f"The analysis cannot run: {exc}") from exc
        return self.save(session, store, report, scores, source="db", started_at=started)

    def save(
        self,
        session: Session,
        store: Store,
        report: AnalysisReport,
        scores: pa.Table,
        *,
        source: str,
        started_at: datetime,
    ) -> StoredRun:
        """Store ``report`` as the store's latest run and replace its customer scores."""
        finished = utcnow()
        document = report.to_json()
        run = repo.add_run(
            session,
            AnalyticsRun(
                store_id=store.id,
                started_at=started_at,
                finished_at=finished,
                source=source[:255],
                engine=report.engine,
                status=RunStatus.succeeded,
                options=report.options.to_json(),
                report=document,
            ),
        )
        written, unknown = repo.replace_scores(session, store.id, run.id, finished, scores)
        # What was written back belongs to the stored report (the API shows it).
        run.report = {**document, "scores": {"written": written, "unknown_customers": unknown}}
        session.flush()
        return StoredRun(run=run, report=report, scores_written=written, unknown_customers=unknown)

    def latest(self, session: Session, store: Store) -> AnalyticsRun:
        """The store's latest stored run, or a 404 saying how to make one."""
        run = repo.latest_run(session, store.id)
        if run is None or run.report is None:
            raise NotFound(NO_RUN)
        if run.report.get("version") != REPORT_VERSION:
            raise NotFound(
                f"The latest analysis (run {run.id}) was stored by an older version of "
                "Patron; run the analysis again."
            )
        return run

    def latest_report(self, session: Session, store: Store) -> dict[str, Any]:
        report: dict[str, Any] = self.latest(session, store).report or {}
        return report

    def scores_of(self, session: Session, store: Store, external_id: str) -> CustomerScore:
        """The customer's scores from the latest run that wrote scores back."""
        customer_id = repo.customer_by_external_id(session, store.id, external_id)
        if customer_id is None:
            raise NotFound(f"No customer {external_id!r} in this store.")
        score = repo.score_of(session, store.id, customer_id)
        if score is None:
            if repo.latest_run(session, store.id) is None:
                raise NotFound(NO_RUN)
            raise NotFound(
                f"Customer {external_id!r} has no scores: they had no orders before the "
                "latest analysis."
            )
        return score


analytics = AnalyticsService()
