"""The priority-sorted incident list at 10k and 100k incidents on PostgreSQL.

Measures ``GET /api/v1/incidents?sort=-priority&limit=50`` (p50/p99, sequential requests
after a warm-up) against the real app served by uvicorn in a separate process, next to
``GET /api/v1/me`` (the same token authentication, a trivial query) as the baseline from the
same run, for a DOE lead with an API token. Also: the server's CPU time per request (which
other load on a shared machine hardly moves), a walk of 20 pages with ``next_cursor``
(checked for order and repeats), and the worker's queued recompute (``run_recompute_jobs``,
batches of 1000) that gives every open incident its score, in incidents per second.

Data (dedicated database, public schema dropped, real migrations, COPY): the users and the
incidents of ``bench.incidents_list`` (one generated population of 100k; the 10k case takes
its first 10k), without timeline events or actions, which this list does not read. Every
incident is then scored by the service's own recompute (closed and rejected ones too, so the
sort has 100k distinct positions), and ``VACUUM ANALYZE`` runs, as autovacuum would.

The plan of the list's statement is printed (stderr) with the indexes it uses.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event, select

from app import migrate
from app.auth.models import User
from app.auth.security import hash_token, new_token
from app.db import Database
from app.incidents import service as incidents
from app.incidents.models import Incident
from app.incidents.states import OPEN_STATUSES
from app.priority.models import PriorityRecomputeJob
from app.priority.service import recompute_priority, run_recompute_jobs
from bench import incidents_list as population
from bench.common import (
    BENCH_POSTGRES_URL,
    Figure,
    Server,
    continue_incident_numbers,
    percentile,
    rrg_server,
)

NAME = "priority_list"
QUICK = os.environ.get("RRG_BENCH_QUICK") == "1"
SIZES = (1_000, 3_000) if QUICK else (10_000, 100_000)
WARMUP = 50
REQUESTS = 50 if QUICK else 300
CPU_REQUESTS = 100 if QUICK else 200
PAGES = 20
LIMIT = 50
LIST = f"/api/v1/incidents?sort=-priority&limit={LIMIT}"
ME = "/api/v1/me"


async def _seed(url: str, size: int) -> str:
    """Users and the first ``size`` incidents of the shared population; returns the token."""
    rng = random.Random(20261128)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(url)
    try:
        found = await conn.fetch("SELECT code, id FROM ministries")
        ministries = {r["code"]: r["id"] for r in found}
        users = population._users(rng, ministries, now)
        rows, links, participants = population._incidents(rng, users, now)
        rows = rows[:size]
        kept = {row["id"] for row in rows}
        links = [link for link in links if link["incident_id"] in kept]
        participants = [p for p in participants if p["incident_id"] in kept]
        for row in rows:
            row["last_activity_at"] = row["updated_at"]
        token = new_token()
        lead_id = next(u["id"] for u in users if u["email"] == population.LEAD_EMAIL)
        for user in users:
            del user["ministry"]  # a helper key, not a column
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            await population._skip_foreign_key_checks(conn)
            await population._copy(conn, "users", users)
            await conn.execute(
                "INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, created_at) "
                "VALUES ($1, $2, 'bench', $3, $4, $5)",
                *(uuid.uuid4(), lead_id, hash_token(token), token[:8], now),
            )
            async with population._indexes_built_after(conn, "incidents"):
                await population._copy(conn, "incidents", rows)
            async with population._indexes_built_after(conn, "incident_minerals"):
                await population._copy(conn, "incident_minerals", links)
            await population._copy(conn, "incident_participants", participants)
            await continue_incident_numbers(conn, size)
    finally:
        await conn.close()
    return token


async def _score_all(url: str) -> tuple[int, float]:
    """Queue a recompute of every open incident and run it as the worker does; returns how
    many it scored and how long that took (seconds). Ended incidents are scored after (the
    same function), so every row has its place in the order."""
    db = Database(url, pool_size=2, max_overflow=0)
    try:
        async with db.unit_of_work() as session:
            session.add(
                PriorityRecomputeJob(
                    reason="bench", minerals=None, requested_at=datetime.now(UTC), recomputed=0
                )
            )
        start = time.perf_counter()
        done = await run_recompute_jobs(db)
        took = time.perf_counter() - start
        async with db.unit_of_work() as session:
            ended = await session.scalars(
                select(Incident.id).where(Incident.status.not_in(OPEN_STATUSES))
            )
            await recompute_priority(session, ended.all())
    finally:
        await db.dispose()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return done, took


async def _explain(url: str, email: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the list's statement, captured from the service."""
    db = Database(url, pool_size=1, max_overflow=0)
    captured: list[tuple[str, Any]] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool
    ) -> None:
        captured.append((statement, parameters))

    try:
        async with db.unit_of_work(readonly=True) as session:
            user = await session.scalar(select(User).where(User.email == email))
            assert user is not None
            captured.clear()
            await incidents.list_visible(
                session, user, incidents.IncidentFilters(), sort="-priority", limit=LIMIT
            )
            statement, params = captured[0]
            conn = await session.connection()
            result = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
            plan = "\n".join(str(r[0]) for r in result)
    finally:
        await db.dispose()
    return f"{statement}\n{plan}\n-- {population._summary(plan)}"


def _get(client: httpx.Client, path: str) -> tuple[float, Any]:
    start = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:500]}")
    return elapsed, response.json()


def _walk(client: httpx.Client) -> tuple[list[float], int]:
    """Follow next_cursor for PAGES pages; check the order and that nothing repeats."""
    latencies: list[float] = []
    seen: set[str] = set()
    last: tuple[float, uuid.UUID] | None = None
    path = LIST
    for _ in range(PAGES):
        elapsed, body = _get(client, path)
        latencies.append(elapsed)
        for item in body["items"]:
            position = (float(item["priority_score"]), uuid.UUID(item["id"]))
            if item["id"] in seen or (last is not None and position >= last):
                raise RuntimeError("pages overlap or are out of order")
            seen.add(item["id"])
            last = position
        if body["next_cursor"] is None:
            break
        path = f"{LIST}&cursor={body['next_cursor']}"
    return latencies, len(seen)


def _measure(server: Server, token: str) -> dict[str, list[float]]:
    """Latency samples (ms) per scenario, and the server's CPU per request (ms), which the
    other load on a shared machine hardly moves."""
    samples: dict[str, list[float]] = {"me": [], "list": []}
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
        for _ in range(WARMUP):
            _get(client, LIST)
            _get(client, ME)
        # Interleaved, so drift on a shared machine hits both alike.
        for _ in range(REQUESTS):
            samples["list"].append(_get(client, LIST)[0])
            samples["me"].append(_get(client, ME)[0])
        pages, seen = _walk(client)
        samples["pages"] = pages[1:]  # the pages read with a cursor
        for name, path in (("cpu_list", LIST), ("cpu_me", ME)):
            before = server.cpu_seconds()
            for _ in range(CPU_REQUESTS):
                _get(client, path)
            samples[name] = [(server.cpu_seconds() - before) * 1000 / CPU_REQUESTS]
    print(f"{NAME}: walked {len(pages)} pages ({seen} incidents) in order", file=sys.stderr)
    return samples


def _one_size(url: str, size: int) -> list[Figure]:
    asyncio.run(population._reset_schema(url))
    migrate.upgrade(url)
    token = asyncio.run(_seed(url, size))
    scored, took = asyncio.run(_score_all(url))
    print(asyncio.run(_explain(url, population.LEAD_EMAIL)), file=sys.stderr)
    with rrg_server(url) as server:
        load = os.getloadavg()[0]
        samples = _measure(server, token)
        load = max(load, os.getloadavg()[0])
    print(f"{NAME} {size:,}: 1-min load average up to {load:.1f}", file=sys.stderr)
    me50, me99 = percentile(samples["me"], 50), percentile(samples["me"], 99)
    label = f"{size // 1000}k"
    return [
        Figure(NAME, f"{label} ?sort=-priority p50", percentile(samples["list"], 50), "ms", me50,
               "GET /me"),
        Figure(NAME, f"{label} ?sort=-priority p99", percentile(samples["list"], 99), "ms", me99,
               "GET /me"),
        Figure(NAME, f"{label} next_cursor pages 2-{PAGES} p99", percentile(samples["pages"], 99),
               "ms", me99, "GET /me"),
        Figure(NAME, f"{label} ?sort=-priority server CPU/request", samples["cpu_list"][0], "ms",
               samples["cpu_me"][0], "GET /me"),
        Figure(NAME, f"{label} worker recompute ({scored:,} open)", scored / took,
               "incidents/s"),
    ]  # fmt: skip


def run() -> list[Figure]:
    figures: list[Figure] = []
    for size in SIZES:
        figures += _one_size(BENCH_POSTGRES_URL, size)
    return figures
