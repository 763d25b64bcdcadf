"""The web client (SPEC §9): server-rendered pages and htmx fragments calling the same
services as the API.

Layout: one router per page area (``auth_pages``, ``board``, ``room``, ``report``,
``inbox``, ``register``, ``admin``), templates in ``templates/`` (fragments in
``templates/fragments/``), the shared template context in ``templating.render``, security
(session cookie, CSRF, headers) in ``security``, catalogues and formatting in ``i18n``,
live updates in ``live``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from app.config import Settings
from app.web import admin, auth_pages, board, inbox, register, report, room
from app.web.errors import install_web_error_pages
from app.web.live import LiveBus
from app.web.security import SecurityHeaders, verify_csrf
from app.web.templating import load_catalogues

STATIC = Path(__file__).parent / "static"


def web_router() -> APIRouter:
    # Every web route checks CSRF on state-changing requests; none is in the API contract.
    router = APIRouter(dependencies=[Depends(verify_csrf)], include_in_schema=False)
    # /incidents/new before /incidents/{key}.
    for area in (auth_pages, report, board, room, inbox, register, admin):
        router.include_router(area.router)
    return router


def install_web(app: FastAPI, settings: Settings) -> None:
    load_catalogues()
    app.state.live_bus = LiveBus()
    app.include_router(web_router())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders)
    install_web_error_pages(app)


async def start_live_updates(app: FastAPI, settings: Settings) -> None:
    bus: LiveBus = app.state.live_bus
    url = settings.database_url
    postgres = url.split("://", 1)[1] if url.startswith(("postgresql", "postgres")) else None
    await bus.start(f"postgresql://{postgres}" if postgres is not None else None)


async def stop_live_updates(app: FastAPI) -> None:
    bus: LiveBus = app.state.live_bus
    await bus.stop()
