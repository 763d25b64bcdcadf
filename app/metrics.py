"""The service's Prometheus metrics, in one place (prometheus-client), and ``GET /metrics``.

Three kinds of figure:
- what this process did (requests, sweeps, escalations, webhook attempts): counters and
  histograms updated where it happens; each replica and worker exposes its own and
  Prometheus sums them across targets;
- what this process holds now (requests in flight, database connections in use, SSE
  clients): gauges kept up to date by inc/dec;
- the shared state in the database (the webhook backlog and its lag): read at scrape time,
  the same from every process (aggregate those with ``max``, not ``sum``).

With several worker processes behind one port (``PROMETHEUS_MULTIPROC_DIR`` set, as
prometheus-client's multiprocess mode asks), the process figures are merged from every
process's files; gauges declare how (``livesum``: the sum over live processes).
"""

from __future__ import annotations

import hmac
import os
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app import clock
from app.auth.roles import at_least
from app.db import Database
from app.deps import bearer_credentials, get_database, principal_for
from app.errors import Forbidden

# --- HTTP -----------------------------------------------------------------------------------

# Requests that matched no route share one label, so the label set stays bounded.
UNMATCHED_ROUTE = "<unmatched>"
REQUEST_DURATION = Histogram(
    "rrg_http_request_duration_seconds",
    "HTTP requests by method, route template and status: latency (and, as _count, totals)",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REQUESTS_IN_FLIGHT = Gauge(
    "rrg_http_requests_in_flight", "HTTP requests being served", multiprocess_mode="livesum"
)
SSE_CLIENTS = Gauge(
    "rrg_sse_clients", "Connected server-sent-event clients", multiprocess_mode="livesum"
)

# --- database pool --------------------------------------------------------------------------

DB_CONNECTIONS_IN_USE = Gauge(
    "rrg_db_pool_connections_in_use",
    "Database connections checked out of this process's pools",
    multiprocess_mode="livesum",
)
DB_CONNECTIONS_OPEN = Gauge(
    "rrg_db_pool_connections_open",
    "Database connections this process's pools hold open (in use or idle)",
    multiprocess_mode="livesum",
)
DB_CONNECTIONS_LIMIT = Gauge(
    "rrg_db_pool_connections_limit",
    "The most connections this process's pools may open (pool size + overflow)",
    multiprocess_mode="livesum",
)

# --- escalation sweep -----------------------------------------------------------------------

SWEEP_DURATION = Histogram(
    "rrg_sweep_duration_seconds",
    "Escalation sweeps: duration (and, as _count, how many ran)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SWEEPS_FAILED = Counter("rrg_sweeps_failed_total", "Escalation sweeps that failed as a whole")
ESCALATIONS = Counter(
    "rrg_escalations_total", "Escalations by kind of item and level", ["item_type", "level"]
)
SWEEP_FAILURES = Counter(
    "rrg_sweep_failures_total",
    "What a sweep could not do (an item, a severity, a kind of item, a stored policy)",
    ["kind", "severity"],
)

# --- webhooks -------------------------------------------------------------------------------

WEBHOOK_ATTEMPTS = Counter(
    "rrg_webhook_attempts_total",
    "Webhook delivery attempts by outcome "
    "(delivered, http_error, timeout, network_error, blocked, error)",
    ["outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "rrg_webhook_deliveries_total",
    "Webhook attempts by what became of the delivery: delivered, retried (another attempt "
    "scheduled) or failed (schedule exhausted, subscription gone)",
    ["result"],
)
WEBHOOK_ATTEMPT_DURATION = Histogram(
    "rrg_webhook_attempt_duration_seconds",
    "Webhook attempt latency by outcome",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOK_DISPATCH_LAG = Histogram(
    "rrg_webhook_dispatch_lag_seconds",
    "From the event's commit to its delivery's first attempt",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


SCRAPE_DURATION = Histogram(
    "rrg_metrics_scrape_duration_seconds",
    "Time to read the database's figures for a scrape",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)


def record_delivery_outcomes(
    attempts: list[tuple[str, float | None]], results: dict[str, int], lags: list[float]
) -> None:
    """One batch of webhook attempts: each (outcome, latency in ms), the deliveries' results,
    and the commit-to-first-attempt lags (seconds)."""
    for outcome, latency_ms in attempts:
        WEBHOOK_ATTEMPTS.labels(outcome).inc()
        if latency_ms is not None:
            WEBHOOK_ATTEMPT_DURATION.labels(outcome).observe(latency_ms / 1000)
    for result, n in results.items():
        if n:
            WEBHOOK_DELIVERIES.labels(result).inc(n)
    for lag in lags:
        WEBHOOK_DISPATCH_LAG.observe(max(0.0, lag))


@contextmanager
def sse_client() -> Iterator[None]:
    """Count one connected server-sent-event client for as long as the block runs."""
    SSE_CLIENTS.inc()
    try:
        yield
    finally:
        SSE_CLIENTS.dec()


# --- database pool instrumentation ----------------------------------------------------------

_instrumented: weakref.WeakSet[Any] = weakref.WeakSet()


def instrument_database(db: Database) -> None:
    """Keep the pool gauges up to date for this database's engine (once per engine)."""
    engine: AsyncEngine = db.engine
    sync_engine = engine.sync_engine
    if sync_engine in _instrumented:
        return
    _instrumented.add(sync_engine)
    pool = sync_engine.pool
    size = getattr(pool, "size", None)
    overflow = getattr(pool, "_max_overflow", 0)
    if callable(size):
        DB_CONNECTIONS_LIMIT.inc(size() + max(0, overflow))

    @event.listens_for(sync_engine, "connect")
    def _connect(*_: Any) -> None:
        DB_CONNECTIONS_OPEN.inc()

    @event.listens_for(sync_engine, "close")
    def _close(*_: Any) -> None:
        DB_CONNECTIONS_OPEN.dec()

    @event.listens_for(sync_engine, "checkout")
    def _checkout(*_: Any) -> None:
        DB_CONNECTIONS_IN_USE.inc()

    @event.listens_for(sync_engine, "checkin")
    def _checkin(*_: Any) -> None:
        DB_CONNECTIONS_IN_USE.dec()


# --- the shared state, read at scrape time --------------------------------------------------


class Snapshot(Collector):
    """Figures read from the database for one scrape."""

    def __init__(self, values: dict[str, float], ok: bool) -> None:
        self.values, self.ok = values, ok

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "rrg_metrics_database_up",
            "1 if this scrape could read the database's figures (outbox), else 0",
            value=1 if self.ok else 0,
        )
        if not self.ok:
            return
        backlog = GaugeMetricFamily(
            "rrg_outbox_pending_deliveries",
            "Webhook deliveries not yet delivered or failed: due now, or waiting for a retry",
            labels=["state"],
        )
        backlog.add_metric(["due"], self.values["due"])
        backlog.add_metric(["waiting"], self.values["waiting"])
        yield backlog
        yield GaugeMetricFamily(
            "rrg_outbox_lag_seconds",
            "Age of the oldest undelivered webhook event (0 when none is pending)",
            value=self.values["oldest_age"],
        )
        yield GaugeMetricFamily(
            "rrg_webhook_dispatcher_lag_seconds",
            "How long the most overdue due delivery has been waiting for a dispatcher "
            "(0 when nothing is due)",
            value=self.values["due_lag"],
        )


async def read_snapshot(db: Database) -> Snapshot:
    from app.webhooks.dispatcher import IS_PENDING
    from app.webhooks.models import Delivery

    now = clock.now()
    due = Delivery.next_attempt_at <= now
    query = select(
        func.count().filter(due),
        func.count().filter(~due),
        func.min(Delivery.created_at),
        func.min(Delivery.next_attempt_at).filter(due),
    ).where(IS_PENDING)
    try:
        async with db.unit_of_work(readonly=True) as session:
            n_due, n_waiting, oldest, first_due = (await session.execute(query)).one()
    except Exception:
        return Snapshot({}, ok=False)

    def age(at: datetime | None) -> float:
        return max(0.0, (now - at).total_seconds()) if at is not None else 0.0

    values = {
        "due": float(n_due or 0),
        "waiting": float(n_waiting or 0),
        "oldest_age": age(oldest),
        "due_lag": age(first_due),
    }
    return Snapshot(values, ok=True)


def process_exposition() -> bytes:
    """This process's figures (or every process's, in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


# --- GET /metrics ---------------------------------------------------------------------------

router = APIRouter(tags=["health"])


async def metrics_reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_credentials)],
) -> None:
    """An admin's API token, or the scrape token ``RRG_METRICS_TOKEN`` (which opens only
    this endpoint, so a Prometheus server need not hold an admin's token)."""
    scrape_token = request.app.state.settings.metrics_token
    if scrape_token is not None and credentials is not None:
        expected = scrape_token.get_secret_value().encode()
        if hmac.compare_digest(credentials.credentials.encode(), expected):
            return
    principal = await principal_for(request, credentials.credentials if credentials else None)
    if not at_least(principal.user.role, "admin"):
        raise Forbidden("Metrics are for admins (or the scrape token)")


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(metrics_reader)],
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format): requests, database pool, escalation
    sweeps, webhook deliveries and the outbox backlog."""
    started = time.perf_counter()
    snapshot = await read_snapshot(get_database(request))
    scrape = CollectorRegistry()
    scrape.register(snapshot)
    SCRAPE_DURATION.observe(time.perf_counter() - started)
    return Response(process_exposition() + generate_latest(scrape), media_type=CONTENT_TYPE_LATEST)
