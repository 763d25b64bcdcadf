"""What one request costs in-process: CPU milliseconds and SQL statements, per endpoint.

Requests go through ``httpx.ASGITransport`` straight into the app (no sockets, no server),
one at a time, so the figures are the service's own work and do not depend on what else the
machine runs: CPU time is ``time.process_time()`` (this process only, the database server
excluded) and statements are counted with SQLAlchemy's ``before_cursor_execute`` event.

The baseline, measured in the same run and the same way, is a bare FastAPI app answering a
constant JSON body (for ``GET /me``) and the floor app (``bench/floor_app.py``: validation
and one Core insert, for creates).

``python -m bench.request_cost [--profile]``: ``--profile`` prints each scenario's
pyinstrument call tree instead (top frames by time).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import event

from app import caches, migrate
from app.auth import service as auth_service
from app.auth.schemas import TokenCreate, UserCreate
from app.auth.service import Principal
from app.config import Settings
from app.db import Database
from app.main import create_app
from bench.common import BENCH_POSTGRES_URL, Figure, fresh_database

NAME = "request_cost"
QUICK = os.environ.get("RRG_BENCH_QUICK") == "1"
N = int(os.environ.get("RRG_BENCH_COST_REQUESTS", "30" if QUICK else "300"))
AUDIT_KEY = "rrg-bench-audit-key"


def create_body(n: int, status: str = "reported") -> dict[str, Any]:
    return {
        "title": f"Cost probe {n}: export licensing on gallium",
        "summary": "Licensing now required for exports; volumes expected to fall.",
        "minerals": ["Ga", "Ge"] if n % 2 else ["Dy"],
        "category": "export_control",
        "tlp": "AMBER" if n % 3 else "GREEN",
        "severity": "SEV2",
        "status": status,
        "origin_country": "CN",
        "affected_sectors": ["defense", "semiconductors"],
        "supply_share_affected_pct": 40,
        "days_of_cover": {"US": 30, "JP": 45},
        "sources": [{"title": "Notice", "url": "https://example.org/notice"}],
    }


class StatementCounter:
    def __init__(self, db: Database) -> None:
        self.count = 0
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._on)

    def _on(self, *_: Any) -> None:
        self.count += 1


@dataclass
class Cost:
    cpu_ms: float
    statements: float


async def _user(db: Database, email: str, role: str, ministry: str) -> str:
    async with db.unit_of_work() as session:
        user = await auth_service.create_user(
            session,
            UserCreate(email=email, display_name=email, ministry=ministry, role=role),  # type: ignore[arg-type]
            by=None,
        )
        _, token = await auth_service.create_token(
            session, Principal(user=user), TokenCreate(name="cost")
        )
    return token


def bare_app() -> FastAPI:
    """The least a JSON GET can do in FastAPI: a route returning a constant dict."""
    bare = FastAPI()

    @bare.get("/me")
    async def me() -> dict[str, Any]:
        return {"id": "0", "email": "bare@example.org", "role": "responder", "ministry": "DOE"}

    return bare


async def _measure(
    counter: StatementCounter | None,
    call: Callable[[int], Awaitable[httpx.Response]],
    n: int,
    expect: int,
    profile: str | None = None,
) -> Cost:
    for i in range(min(20, n)):  # warm caches (compiled statements, pydantic, routes)
        response = await call(-1 - i)
        assert response.status_code == expect, response.text
    before_statements = counter.count if counter else 0
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
    start = time.process_time()
    for i in range(n):
        response = await call(i)
        assert response.status_code == expect, response.text
    cpu = time.process_time() - start
    if profiler is not None:
        profiler.stop()
        print(f"\n===== {profile} =====")
        print(profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False))
    statements = (counter.count - before_statements) / n if counter else 0.0
    return Cost(cpu / n * 1000, statements)


async def measure(url: str, backend: str, *, profile: bool = False) -> dict[str, Cost]:
    await asyncio.to_thread(migrate.upgrade, url, audit_key=AUDIT_KEY.encode())
    settings = Settings(
        env="test", database_url=url, scheduler="off", audit_key=SecretStr(AUDIT_KEY)
    )
    db = Database.from_settings(settings)
    counter = StatementCounter(db)
    reporter = await _user(db, "cost.reporter@doe.example", "responder", "DOE")
    lead = await _user(db, "cost.lead@doe.example", "lead", "DOE")
    app = create_app(settings, db=db)

    def client(asgi: Any, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi),
            base_url="http://rrg.test",
            headers={"Authorization": f"Bearer {token}"},
        )

    costs: dict[str, Cost] = {}
    tag = lambda name: f"{name} ({backend})" if profile else None  # noqa: E731
    # The lifespan runs as under a server (on PostgreSQL it connects the listener the token
    # cache relies on); the scheduler is off.
    async with (
        app.router.lifespan_context(app),
        client(app, reporter) as rc,
        client(app, lead) as lc,
        client(bare_app(), "x") as bc,
    ):
        await _listening(db)
        costs["bare GET (no database)"] = await _measure(
            None, lambda _: bc.get("/me"), N * 3, 200, tag("bare")
        )
        costs["GET /api/v1/me"] = await _measure(
            counter, lambda _: rc.get("/api/v1/me"), N * 3, 200, tag("me")
        )
        costs["POST /api/v1/incidents"] = await _measure(
            counter,
            lambda i: rc.post("/api/v1/incidents", json=create_body(i)),
            N,
            201,
            tag("create"),
        )
        watched: list[tuple[str, str]] = []
        for i in range(N + 20):
            r = await rc.post("/api/v1/incidents", json=create_body(i, "watch"))
            watched.append((r.json()["id"], r.headers.get("ETag") or '"1"'))

        async def transition(i: int) -> httpx.Response:
            incident_id, tag_ = watched[i + 20 if i >= 0 else -1 - i]
            return await lc.post(
                f"/api/v1/incidents/{incident_id}/transitions",
                json={"to": "reported"},
                headers={"If-Match": tag_},
            )

        costs["POST …/transitions (watch→reported)"] = await _measure(
            counter, transition, N, 200, tag("transition")
        )
        costs["GET /api/v1/incidents?limit=50"] = await _measure(
            counter,
            lambda _: lc.get("/api/v1/incidents", params={"limit": 50}),
            N,
            200,
            tag("list"),
        )
    await db.dispose()
    return costs


async def _listening(db: Database) -> None:
    """Wait (up to 5 s) until process caches may serve (PostgreSQL: the listener is up)."""
    for _ in range(250):
        if caches.serving(db.dialect):
            return
        await asyncio.sleep(0.02)


def _floor_cost(url: str) -> float:
    """CPU ms of one floor-app create in-process (validation and one Core insert)."""
    os.environ["RRG_DATABASE_URL"] = url
    sys.modules.pop("bench.floor_app", None)
    from bench import floor_app

    async def go() -> float:
        async with (
            floor_app.lifespan(floor_app.app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=floor_app.app), base_url="http://floor"
            ) as c,
        ):
            cost = await _measure(
                None, lambda i: c.post("/api/v1/incidents", json=create_body(i)), N, 201
            )
        return cost.cpu_ms

    return asyncio.run(go())


def _backends(tmp: str) -> list[tuple[str, str]]:
    pg = BENCH_POSTGRES_URL + "_cost"
    asyncio.run(fresh_database(pg))
    return [("SQLite", f"sqlite:///{Path(tmp) / 'cost.db'}"), ("PostgreSQL", pg)]


def run() -> list[Figure]:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend, url in _backends(tmp):
            costs = asyncio.run(measure(url, backend))
            floor_url = (
                f"sqlite:///{Path(tmp) / 'cost_floor.db'}"
                if backend == "SQLite"
                else BENCH_POSTGRES_URL + "_cost"
            )
            floor = _floor_cost(floor_url)
            bare = costs.pop("bare GET (no database)")
            for name, cost in costs.items():
                baseline, baseline_name = (None, "")
                if name == "GET /api/v1/me":
                    baseline, baseline_name = bare.cpu_ms, "bare FastAPI JSON GET"
                elif name == "POST /api/v1/incidents":
                    baseline, baseline_name = floor, "floor app create"
                figures.append(
                    Figure(
                        NAME,
                        f"{backend} {name} CPU",
                        cost.cpu_ms,
                        "ms",
                        baseline,
                        baseline_name,
                    )
                )
                figures.append(Figure(NAME, f"{backend} {name} statements", cost.statements, ""))
            me = costs["GET /api/v1/me"]
            figures.append(
                Figure(
                    NAME,
                    f"{backend} GET /me throughput vs bare (CPU ratio)",
                    bare.cpu_ms / me.cpu_ms,
                    "x",
                )
            )
    return figures


def main() -> None:
    profile = "--profile" in sys.argv
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    with tempfile.TemporaryDirectory() as tmp:
        for backend, url in _backends(tmp):
            if only and backend.lower() not in only:
                continue
            costs = asyncio.run(measure(url, backend, profile=profile))
            print(f"\n{backend}: CPU ms and statements per request (n={N})")
            for name, cost in costs.items():
                print(f"  {name:45s} {cost.cpu_ms:8.2f} ms {cost.statements:6.1f} stmts")


if __name__ == "__main__":
    main()
