"""Shared helpers for the benchmarks: timing and the results table."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass

BENCH_POSTGRES_URL = os.environ.get(
    "RRG_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/rrg_bench"
)


@dataclass
class Figure:
    benchmark: str
    metric: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def print_table(figures: list[Figure]) -> None:
    header = ("benchmark", "metric", "value", "baseline (same run)", "target")
    rows = [
        (
            f.benchmark,
            f.metric,
            f"{f.value:,.2f} {f.unit}",
            f"{f.baseline:,.2f} {f.unit} ({f.baseline_name})" if f.baseline is not None else "-",
            f.target or "-",
        )
        for f in figures
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def fresh_database(url: str) -> None:
    """Create the database if needed, then drop and recreate its public schema."""
    import asyncpg

    server, name = url.rsplit("/", 1)
    admin = await asyncpg.connect(server + "/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE")
        await conn.execute("CREATE SCHEMA public")
    finally:
        await conn.close()
