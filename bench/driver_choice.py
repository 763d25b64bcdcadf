"""asyncpg or psycopg 3 for PostgreSQL: the same unit-of-work workload through both.

Workload: 32 concurrent tasks, each running units of work of the shape the service
runs (an indexed read, an insert, a commit), through SQLAlchemy's async engine.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy import text

from app.db import Database
from bench.common import BENCH_POSTGRES_URL, Figure, percentile

CONCURRENCY = 32
UNITS_PER_TASK = 60


async def _workload(url: str) -> tuple[float, float]:
    db = Database(url, pool_size=CONCURRENCY, max_overflow=0)
    async with db.engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS driver_bench"))
        await conn.execute(
            text(
                "CREATE TABLE driver_bench (id uuid PRIMARY KEY, n int, body jsonb, at timestamptz)"
            )
        )
    latencies: list[float] = []

    async def worker(n: int) -> None:
        for i in range(UNITS_PER_TASK):
            start = time.perf_counter()
            async with db.unit_of_work() as session:
                await session.execute(
                    text("SELECT count(*) FROM driver_bench WHERE id = :id"), {"id": uuid.uuid4()}
                )
                await session.execute(
                    text("INSERT INTO driver_bench VALUES (:id, :n, CAST(:body AS jsonb), now())"),
                    {"id": uuid.uuid4(), "n": n * 1000 + i, "body": '{"title": "gallium"}'},
                )
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(CONCURRENCY)))
    elapsed = time.perf_counter() - start
    async with db.engine.begin() as conn:
        await conn.execute(text("DROP TABLE driver_bench"))
    await db.dispose()
    return CONCURRENCY * UNITS_PER_TASK / elapsed, percentile(latencies, 99) * 1000


def run() -> list[Figure]:
    asyncpg_tps, asyncpg_p99 = asyncio.run(_workload(BENCH_POSTGRES_URL))
    psycopg_url = BENCH_POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://")
    psycopg_tps, psycopg_p99 = asyncio.run(_workload(psycopg_url))
    return [
        Figure("driver", "asyncpg units of work/s", asyncpg_tps, "/s", psycopg_tps, "psycopg 3"),
        Figure("driver", "asyncpg unit of work p99", asyncpg_p99, "ms", psycopg_p99, "psycopg 3"),
    ]
