"""The web board (``GET /``) with 10,000 open incidents: server time per page.

Seeds a dedicated database (real migrations, then bulk inserts): two co-lead leads, 10,000
open incidents spread over the open statuses, severities and markings (1-2 minerals each),
and one open action on every third incident (a third of those past due). The app is served
by ``rrg serve`` in its own process; a DOE lead signs in through the web form and loads
the board (all incidents, filtered by a mineral, overdue only) sequentially after a warm-up.
Reported: p50 and p99 latency on loopback, and the server's CPU time per page.
PostgreSQL at RRG_BENCH_WEB_POSTGRES_URL (default: the bench server, database rrg_bench_web);
SQLite in a temporary file.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from app import clock, migrate
from app.actions.models import Action
from app.auth import service as auth_service
from app.auth.schemas import UserCreate
from app.db import Database, table_of
from app.incidents.models import Counter, Incident, IncidentMineral
from app.incidents.states import OPEN_STATUSES
from bench.common import BENCH_POSTGRES_URL, Figure, fresh_database, median, percentile, rrg_server

NAME = "web_board"
QUICK = os.environ.get("RRG_BENCH_QUICK") == "1"
INCIDENTS = 500 if QUICK else 10_000
WARMUP = 3
REQUESTS = 3 if QUICK else 20
PASSWORD = "bench-password-not-secret"
POSTGRES_URL = os.environ.get(
    "RRG_BENCH_WEB_POSTGRES_URL", BENCH_POSTGRES_URL.rsplit("/", 1)[0] + "/rrg_bench_web"
)
PAGES = {"board": "/", "board?mineral=Ga": "/?mineral=Ga", "board?overdue=1": "/?overdue=1"}


async def seed(url: str) -> None:
    db = Database(url)
    rng = random.Random(12)
    now = clock.now()
    try:
        async with db.unit_of_work() as session:
            leads = [
                await auth_service.create_user(
                    session,
                    UserCreate(
                        email=f"bench.lead@{m.lower()}.example",
                        display_name=f"Bench {m} lead",
                        ministry=m,
                        role="lead",
                        password=PASSWORD,
                    ),
                    by=None,
                )
                for m in ("DOE", "METI")
            ]
        incidents: list[dict[str, Any]] = []
        minerals: list[dict[str, Any]] = []
        actions: list[dict[str, Any]] = []
        codes = ["Ga", "Ge", "Dy", "Tb", "Nd", "Li", "Co", "Ni", "W", "Sb"]
        for n in range(1, INCIDENTS + 1):
            incident_id = uuid.uuid4()
            reporter = leads[n % 2]
            reported = now - timedelta(minutes=rng.randint(1, 60 * 24 * 20))
            incidents.append(
                {
                    "id": incident_id,
                    "number": n,
                    "key": f"RRG-{n:04d}",
                    "title": f"Bench incident {n}",
                    "summary": "",
                    "category": "export_control",
                    "tlp": rng.choice(["GREEN", "GREEN", "AMBER", "AMBER", "AMBER+STRICT", "RED"]),
                    "severity": rng.choice(["SEV1", "SEV2", "SEV3", "SEV4", None]),
                    "status": rng.choice(OPEN_STATUSES),
                    "reporter_id": reporter.id,
                    "reporter_ministry_id": reporter.ministry_id,
                    "doe_owner_id": leads[0].id,
                    "meti_owner_id": leads[1].id if n % 3 else None,
                    "reported_at": reported,
                    "last_activity_at": reported,
                    "created_at": reported,
                    "updated_at": reported,
                    "priority_score": rng.uniform(0, 100),
                }
            )
            for code in rng.sample(codes, rng.randint(1, 2)):
                minerals.append({"incident_id": incident_id, "mineral_code": code})
            if n % 3 == 0:
                due = now + timedelta(hours=rng.randint(-48, 96))
                actions.append(
                    {
                        "id": uuid.uuid4(),
                        "incident_id": incident_id,
                        "title": "Bench action",
                        "kind": "other",
                        "owning_ministry": "DOE",
                        "assignee_id": leads[0].id,
                        "due_at": due,
                        "status": "approved",
                        "created_by_id": leads[0].id,
                        "created_at": reported,
                        "updated_at": reported,
                    }
                )
        async with db.unit_of_work() as session:
            await session.execute(insert(table_of(Incident)), incidents)
            await session.execute(insert(table_of(IncidentMineral)), minerals)
            await session.execute(insert(table_of(Action)), actions)
            await session.execute(
                table_of(Counter).update().where(table_of(Counter).c.name == "incident_key"),
                {"value": INCIDENTS},
            )
        if db.dialect == "postgresql":
            async with db.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("VACUUM ANALYZE")  # as autovacuum would after a load
    finally:
        await db.dispose()


def measure(base: str, pid_cpu: Any) -> dict[str, tuple[list[float], float]]:
    out = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        page = client.get("/signin")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        signed = client.post(
            "/signin",
            data={
                "email": "bench.lead@doe.example",
                "password": PASSWORD,
                "csrf_token": token.group(1),
            },
        )
        assert signed.status_code == 303, signed.text
        for name, path in PAGES.items():
            for _ in range(WARMUP):
                assert client.get(path).status_code == 200
            samples = []
            cpu_before = pid_cpu()
            for _ in range(REQUESTS):
                started = time.perf_counter()
                response = client.get(path)
                samples.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200 and 'id="board"' in response.text
            out[name] = (samples, (pid_cpu() - cpu_before) / REQUESTS * 1000)
    return out


def _run_one(backend: str, url: str) -> list[Figure]:
    migrate.upgrade(url)
    asyncio.run(seed(url))
    figures = []
    with rrg_server(url) as server:
        for name, (samples, cpu_ms) in measure(server.base, server.cpu_seconds).items():
            label = f"{NAME} ({backend}, {INCIDENTS:,} open)"
            figures += [
                Figure(label, f"GET {name} p50", median(samples), "ms"),
                Figure(label, f"GET {name} p99", percentile(samples, 99), "ms"),
                Figure(label, f"GET {name} server CPU", cpu_ms, "ms"),
            ]
    return figures


def run() -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory() as folder:
        figures += _run_one("sqlite", f"sqlite:///{Path(folder) / 'board.db'}")
    asyncio.run(fresh_database(POSTGRES_URL))
    figures += _run_one("postgresql", POSTGRES_URL)
    return figures
