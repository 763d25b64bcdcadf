"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from app import health, metrics
from app.actions.router import router as actions_router
from app.auth.router import router as auth_router
from app.config import Settings, get_settings
from app.contract import DESCRIPTION as API_DESCRIPTION
from app.contract import install_contract
from app.db import Database
from app.deps import refuse_unstorable_parameters
from app.errors import install_error_handlers
from app.escalation.router import router as escalation_router
from app.incidents.router import router as incidents_router
from app.middleware import BodySizeLimit, RequestObserver
from app.minerals.router import router as minerals_router
from app.ministries.router import router as ministries_router
from app.notifications.router import router as notifications_router
from app.priority.router import router as priority_router
from app.register.router import router as register_router
from app.revisions import head_revision
from app.sitrep.router import router as sitrep_router
from app.vulnerabilities.router import router as vulnerabilities_router
from app.web import install_web, start_live_updates, stop_live_updates
from app.webhooks.egress import EgressPolicy, system_resolve
from app.webhooks.openapi import publish_webhooks
from app.webhooks.router import router as webhooks_router
from app.webhooks.secrets import SecretBox
from app.webhooks.service import Egress
from app.worker import Worker

logger = logging.getLogger("rrg")


def _operation_id(route: APIRoute) -> str:
    # Stable, readable ids: the endpoint function's name (unique across the app).
    return route.name


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    owns_db = db is None
    database = db or Database.from_settings(settings)
    metrics.instrument_database(database)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = None
        await start_live_updates(app, settings)
        if settings.scheduler == "on":
            worker = Worker(settings, database)
            await worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await stop_live_updates(app)
            if owns_db:
                await database.dispose()

    app = FastAPI(
        title="RRG Coordination Service",
        version="1.0.0",
        summary="US-Japan Critical Minerals Supply Security Rapid Response Group",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        dependencies=[Depends(refuse_unstorable_parameters)],
    )
    app.state.settings = settings
    app.state.db = database
    app.state.migration_head = head_revision()
    app.state.webhook_box = SecretBox.from_settings(settings)
    app.state.webhook_egress = Egress(EgressPolicy.from_settings(settings), system_resolve)
    install_error_handlers(app)
    install_observability(app, settings)
    # Routes match in this order, so the most requested come first (the caller, incidents,
    # actions); the probes and metrics, asked rarely, come last.
    for router in (
        auth_router,
        incidents_router,
        actions_router,
        notifications_router,
        ministries_router,
        minerals_router,
        escalation_router,
        webhooks_router,
        register_router,
        priority_router,
        vulnerabilities_router,
        sitrep_router,
        health.router,
        metrics.router,
    ):
        app.include_router(router)
    install_web(app, settings)
    install_contract(app)
    publish_webhooks(app)
    return app


def install_observability(app: FastAPI, settings: Settings) -> None:
    """The body limit inside, outside it each request's id, metrics and access line (so
    everything inside logs with the id)."""
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestObserver)


def create_ops_app(settings: Settings, db: Database) -> FastAPI:
    """What a worker process serves: health checks and its metrics, nothing else."""
    metrics.instrument_database(db)
    app = FastAPI(title="RRG worker", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.db = db
    app.state.migration_head = head_revision()
    install_error_handlers(app)
    install_observability(app, settings)
    app.include_router(health.router)
    app.include_router(metrics.router)
    return app
