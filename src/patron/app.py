"""The HTTP application: API routes, problem+json errors, health and Prometheus metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from sqlalchemy import Engine, text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patron import __version__, errors
from patron.analytics.endpoints import router as analytics_router
from patron.campaigns.campaign_endpoints import router as campaign_router
from patron.campaigns.endpoints import router as campaigns_router
from patron.campaigns.segment_endpoints import router as segments_router
from patron.customers.endpoints import router as customers_router
from patron.db import default_engine, session_factory
from patron.feedback.endpoints import router as feedback_router
from patron.ingest.endpoints import router as webhooks_router
from patron.jobs import Scheduler
from patron.loyalty.endpoints import router as loyalty_router
from patron.loyalty.member_endpoints import router as tiers_router
from patron.loyalty.program_endpoints import router as program_router
from patron.orders.endpoints import router as orders_router
from patron.referrals.endpoints import router as referrals_router
from patron.rewards.endpoints import router as rewards_router
from patron.support.endpoints import router as support_router
from patron.web.analytics_pages import router as analytics_pages_router
from patron.web.campaign_pages import router as campaign_pages_router
from patron.web.dashboard import install as install_dashboard
from patron.web.member import router as member_router
from patron.web.routes import router as dashboard_router

LATENCY = Histogram(
    "patron_http_request_duration_seconds", "HTTP request latency", ["method", "route", "status"]
)

DESCRIPTION = """
Patron receives a store's customers, products, orders and refunds and runs its loyalty
programme on them.

Authenticate with `Authorization: Bearer <API key>` (create one with
`patron keys create`). Scopes: `admin`, `ingest`, `read`; member endpoints take a signed
member token. Errors are RFC 9457 `application/problem+json`.
"""


class MeasureLatency:
    """Records each request's latency by route template and status (Prometheus).

    A plain ASGI middleware: ``@app.middleware("http")`` runs every request through extra
    tasks and stream wrappers, which costs more than the histogram itself.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(scope["method"], path, str(status)).observe(time.perf_counter() - start)


class AdmissionLimit:
    """At most a worker-thread pool's worth of requests in progress; more wait here, on
    the event loop, in arrival order.

    A sync route runs in several worker-thread hops (dependencies, the route, its answer)
    and holds its database connection and row locks between them. Without a limit, a
    burst can fill every worker thread with requests waiting for a lock (or a pooled
    connection) that a request needing one more thread hop holds: nothing moves until
    the pool times out. With fewer requests in progress than threads, a request holding
    locks always finds a thread for its next hop.
    """

    MARGIN = 8  # threads left to everything else (``run_in_threadpool`` callers)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._slots: anyio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            threads = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
            self._slots = anyio.Semaphore(max(1, threads - self.MARGIN))
        async with self._slots:
            await self.app(scope, receive, send)


log = logging.getLogger(__name__)


def warm_up() -> None:
    """Load, once per process, what the first dashboard page would otherwise load while
    its visitor waits: every country's public-holiday calendar (support settings check
    the store's country against them: about 280 modules, 0.2–1 s) and the compiled page
    templates. Run in a thread at startup; a failure here only leaves the work to the
    first request."""
    try:
        import holidays

        holidays.list_supported_countries()
        from patron.web.dashboard import ENV as DASHBOARD
        from patron.web.member import ENV as MEMBER

        for env, prefix in ((DASHBOARD, "dashboard/"), (MEMBER, "member/")):
            for name in env.list_templates():
                if name.startswith(prefix):
                    env.get_template(name)
    except Exception:  # pragma: no cover - an optimisation, never a reason to fail
        log.warning("warm-up failed", exc_info=True)


def create_app(engine: Engine | None = None, *, jobs_interval: float | None = None) -> FastAPI:
    """The API. ``jobs_interval``: also run the loyalty jobs (maturing, expiry, tiers,
    birthdays, referrals, surprises) every that many seconds while the app is up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = None
        if jobs_interval:
            scheduler = Scheduler(app.state.engine, jobs_interval)
            scheduler.start()
        app.state.scheduler = scheduler
        threading.Thread(target=warm_up, name="patron-warm-up", daemon=True).start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()

    app = FastAPI(
        title="Patron",
        version=__version__,
        description=DESCRIPTION,
        default_response_class=errors.SafeJSONResponse,
        lifespan=lifespan,
    )
    app.state.engine = engine or default_engine()
    app.state.sessionmaker = session_factory(app.state.engine)
    errors.install(app)

    app.add_middleware(AdmissionLimit)
    app.add_middleware(MeasureLatency)  # outermost: latency includes waiting for a slot

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness and database reachability."""
        with app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(customers_router)
    app.include_router(orders_router)
    app.include_router(webhooks_router)
    app.include_router(loyalty_router)
    app.include_router(tiers_router)
    app.include_router(program_router)
    app.include_router(rewards_router)
    app.include_router(referrals_router)
    app.include_router(analytics_router)
    app.include_router(support_router)
    app.include_router(feedback_router)
    app.include_router(campaigns_router)
    app.include_router(campaign_router)
    app.include_router(segments_router)
    app.include_router(member_router)
    install_dashboard(app)  # /login, /logout, /static, the dashboard's error pages
    app.include_router(dashboard_router)  # overview, customers, programme, staff
    app.include_router(campaign_pages_router)
    app.include_router(analytics_pages_router)  # analytics, surveys, tickets

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = errors.document_problems(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
