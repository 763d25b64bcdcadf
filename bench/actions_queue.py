"""The action queue with 300,000 actions on PostgreSQL (the P2 board's sibling read path).

Measures ``GET /api/v1/actions?limit=50``, ``?assignee=me&limit=50`` and ``?overdue=true&limit=50``
(p50/p99 of sequential requests after a warm-up, interleaved) against the real app served by
uvicorn in a separate process, next to ``GET /api/v1/me`` (the same token authentication, a
trivial query) as the baseline from the same run. The caller is a DOE lead with an API token.

Data: the escalation-sweep seeding (``bench.escalation_sweep.seed``) in its own database
(``<bench db>_queue``): ~300 users, 20,000 incidents, 120,000 open actions of which 6,000 overdue
(already escalated to the level their lateness warrants), 180,000 terminal actions, then
``VACUUM ANALYZE``.

Also printed (stderr): EXPLAIN (ANALYZE, BUFFERS) summaries of each queue's statements, captured
from the service itself (``app.actions.service.queue``), as custom plans and as the generic
plan a long-lived prepared statement may switch to after five executions.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import asyncpg
import httpx
from sqlalchemy import select

from app.actions import service as actions
from app.auth.models import User
from app.db import Database
from bench.common import Figure, Server, percentile, rrg_server
from bench.escalation_sweep import (
    Shape,
    create_token,
    database_url,
    describe,
    fresh_database,
    profiled,
    seed,
)
from bench.incidents_list import _get, _literal, _summary

NAME = "actions_queue"
QUICK = os.environ.get("RRG_BENCH_QUICK") == "1"
SHAPE = (
    Shape(
        incidents=2_000, open_actions=12_000, overdue=600, terminal=18_000, overdue_escalated=True
    )
    if QUICK
    else Shape(open_actions=120_000, overdue=6_000, terminal=180_000, overdue_escalated=True)
)
CALLER = "doe.user002@rrg.example"  # a DOE lead, not a co-chair
WARMUP = 50
REQUESTS = 50 if QUICK else 200
CPU_REQUESTS = 50 if QUICK else 200
LIMIT = 50

ME = "/api/v1/me"
QUEUES = {
    "all": f"/api/v1/actions?limit={LIMIT}",
    "mine": f"/api/v1/actions?assignee=me&limit={LIMIT}",
    "overdue": f"/api/v1/actions?overdue=true&limit={LIMIT}",
}
FILTERS = {"all": (False, False), "mine": (True, False), "overdue": (False, True)}


def _check(name: str, body: Any, caller_id: str) -> None:
    items = body["items"]
    if len(items) != LIMIT or body["next_cursor"] is None:
        raise RuntimeError(f"{name}: expected a full page with a cursor, got {len(items)} items")
    if name == "mine" and any((i["assignee"] or {}).get("id") != caller_id for i in items):
        raise RuntimeError("assignee=me returned an action assigned to someone else")
    if name == "overdue" and not all(i["overdue"] for i in items):
        raise RuntimeError("overdue=true returned an action that is not overdue")


def _measure(server: Server, token: str) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Latency samples per scenario (ms), and server CPU per request (ms) per scenario."""
    scenarios = {"me": ME, **QUEUES}
    samples: dict[str, list[float]] = {name: [] for name in scenarios}
    cpu: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
        caller_id = _get(client, ME)[1]["id"]
        for name, path in QUEUES.items():
            _check(name, _get(client, path)[1], caller_id)
        for _ in range(WARMUP):
            for path in scenarios.values():
                _get(client, path)
        # Interleaved, so drift on this (shared) machine hits every scenario alike.
        for _ in range(REQUESTS):
            for name, path in scenarios.items():
                samples[name].append(_get(client, path)[0])
        # Server CPU per request, a block per scenario: it hardly depends on the machine's load.
        for name, path in scenarios.items():
            before = server.cpu_seconds()
            for _ in range(CPU_REQUESTS):
                _get(client, path)
            cpu[name] = (server.cpu_seconds() - before) * 1000 / CPU_REQUESTS
    return samples, cpu


async def _explain(url: str, out: list[str]) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) each statement each queue runs: custom and generic plan."""
    db = Database(url, pool_size=1, max_overflow=0)
    captured: dict[str, list[tuple[str, Any]]] = {}
    try:
        async with db.unit_of_work(readonly=True) as session:
            user = await session.scalar(select(User).where(User.email == CALLER))
            assert user is not None
            for name, (mine, overdue) in FILTERS.items():
                filters = actions.QueueFilters(assignee=user.id if mine else None, overdue=overdue)
                with profiled(db) as profile:
                    await actions.queue(session, user, filters, limit=LIMIT)
                captured[name] = profile.statements
            conn = await session.connection()
            for name, statements in captured.items():
                for n, (statement, params) in enumerate(statements):
                    result = await conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, params
                    )
                    plan = "\n".join(str(r[0]) for r in result)
                    if n == 0:
                        out.append(f"-- {name}: statement 1, custom plan:")
                        out.append(plan)
                    out.append(
                        f"-- {name}: statement {n + 1}/{len(statements)}, custom plan: "
                        f"{_summary(plan)}"
                    )
    finally:
        await db.dispose()
    raw = await asyncpg.connect(url)
    try:
        await raw.execute("SET plan_cache_mode = force_generic_plan")
        for name, statements in captured.items():
            statement, params = statements[0]
            await raw.execute(f"PREPARE bench_queue AS {statement}")
            args = ", ".join(_literal(p) for p in params)
            rows = await raw.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_queue({args})")
            await raw.execute("DEALLOCATE bench_queue")
            plan = "\n".join(str(r[0]) for r in rows)
            out.append(f"-- {name}: statement 1, generic plan:")
            out.append(plan)
            out.append(f"-- {name}: statement 1, generic plan: {_summary(plan)}")
    finally:
        await raw.close()


async def _assigned(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM actions a JOIN users u ON u.id = a.assignee_id "
                "WHERE u.email = $1",
                CALLER,
            )
        )
    finally:
        await conn.close()


def run() -> list[Figure]:
    url = database_url("queue")
    started = time.perf_counter()
    fresh_database(url)
    world = asyncio.run(seed(url, SHAPE))
    token = asyncio.run(create_token(url, CALLER))
    print(
        f"{NAME}: seeded in {time.perf_counter() - started:.1f} s ({describe(world)}); "
        f"{asyncio.run(_assigned(url)):,} actions assigned to the caller",
        file=sys.stderr,
    )
    explain: list[str] = []
    asyncio.run(_explain(url, explain))
    print("\n".join(explain), file=sys.stderr)
    with rrg_server(url) as server:
        load = os.getloadavg()[0]
        samples, cpu = _measure(server, token)
        load = max(load, os.getloadavg()[0])
    print(
        f"{NAME}: 1-min load average up to {load:.1f} on {os.cpu_count()} CPUs while measuring "
        "(client, server and PostgreSQL share them)",
        file=sys.stderr,
    )
    me50, me99 = percentile(samples["me"], 50), percentile(samples["me"], 99)
    baseline = "GET /me"
    figures: list[Figure] = []
    for name, path in QUEUES.items():
        query = "?" + path.split("?", 1)[1]
        p50, p99 = percentile(samples[name], 50), percentile(samples[name], 99)
        figures.append(Figure(NAME, f"{query} p50", p50, "ms", me50, baseline))
        figures.append(Figure(NAME, f"{query} p99", p99, "ms", me99, baseline))
    for name, path in QUEUES.items():
        query = "?" + path.split("?", 1)[1]
        figures.append(
            Figure(NAME, f"{query} server CPU/request", cpu[name], "ms", cpu["me"], baseline)
        )
    return figures
