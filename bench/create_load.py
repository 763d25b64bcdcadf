"""P1 and P5: creating incidents under load, beside a floor app, and memory after many requests.

P1. The real service (``rrg serve``: one uvicorn worker, scheduler off) and the floor
(``bench/floor_app.py``: the same body validation and one Core insert, nothing else) each
serve ``POST /api/v1/incidents`` from the same database engine, one after the other, on
SQLite and on PostgreSQL. Load comes from separate processes:
- saturation: ``wrk -t2 -c32`` for RRG_BENCH_SECONDS (default 20) s, bodies varied by a Lua
  script; throughput and latency;
- steady load: ``hey`` at 300 requests/s offered (30 workers x 10/s) for the same time;
  p50/p99 of the requests served and how many of the offered ones were not answered 201.
The ratio rrg / floor is the P1 figure (target ≥ 0.6); both are measured in this run.

P5. A fresh ``rrg serve`` on PostgreSQL takes RRG_BENCH_P5_REQUESTS (default 100,000; 2,000
with QUICK=1) requests — 10% incident lists, 85% ``GET /me``, 5% creates — and its resident
memory is read from /proc afterwards (target ≤ 150 MB); the baseline is the floor app's after
as many bare GETs and creates.

``wrk`` and ``hey`` are Debian packages; they are installed here when missing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from app import migrate
from app.auth import service as auth_service
from app.auth.schemas import TokenCreate, UserCreate
from app.db import Database
from app.incidents.vocabulary import CATEGORIES
from bench.common import (
    BENCH_POSTGRES_URL,
    Figure,
    Server,
    median,
    percentile,
    rrg_server,
    serve,
)

NAME = "create_load"
QUICK = os.environ.get("RRG_BENCH_QUICK") == "1"
SECONDS = int(os.environ.get("RRG_BENCH_SECONDS", "2" if QUICK else "20"))
P5_REQUESTS = int(os.environ.get("RRG_BENCH_P5_REQUESTS", "2000" if QUICK else "100000"))
WARMUP = 50 if QUICK else 200  # creates before measuring
CONNECTIONS = 32
RATE_WORKERS, RATE_PER_WORKER = 30, 10  # 300 requests/s offered
PATH = "/api/v1/incidents"
MINERALS = ["Ga", "Ge", "Dy", "Tb", "Nd", "Sb", "graphite", "Co", "Li", "W"]


def ensure_load_tools() -> None:
    missing = [tool for tool in ("wrk", "hey") if shutil.which(tool) is None]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def bodies(count: int, seed: int = 7) -> list[str]:
    """Realistic create bodies: one or two minerals, any category, a source."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        out.append(
            json.dumps(
                {
                    "title": f"Load test shortage {n}: export licensing on {rng.choice(MINERALS)}",
                    "summary": "Licensing now required for exports; volumes expected to fall.",
                    "minerals": rng.sample(MINERALS, rng.randint(1, 2)),
                    "category": rng.choice(CATEGORIES),
                    "tlp": rng.choice(["GREEN", "AMBER"]),
                    "severity": rng.choice(["SEV2", "SEV3"]),
                    "origin_country": "CN",
                    "affected_sectors": ["defense", "semiconductors"],
                    "supply_share_affected_pct": rng.randint(5, 90),
                    "days_of_cover": {"US": rng.randint(10, 90), "JP": rng.randint(10, 90)},
                    "sources": [
                        {"title": "Notice", "url": "https://example.org/notice"},
                    ],
                }
            )
        )
    return out


# --- databases ----------------------------------------------------------------------------


async def _reset_postgres(url: str) -> None:
    server = Database(url.rsplit("/", 1)[0] + "/postgres")
    name = url.rsplit("/", 1)[1]
    async with server.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await server.dispose()


async def _reporter_token(url: str) -> str:
    db = Database(url)
    try:
        async with db.unit_of_work() as session:
            user = await auth_service.create_user(
                session,
                UserCreate(
                    email="load.reporter@doe.example",
                    display_name="Load reporter",
                    ministry="DOE",
                    role="responder",
                ),
                by=None,
            )
            _, token = await auth_service.create_token(
                session, auth_service.Principal(user=user), TokenCreate(name="load")
            )
        return token
    finally:
        await db.dispose()


async def _incidents(url: str) -> int:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            return int(await conn.scalar(text("SELECT count(*) FROM incidents")) or 0)
    finally:
        await db.dispose()


@dataclass
class Backend:
    name: str
    rrg_url: str
    floor_url: str
    token: str


@contextmanager
def backends() -> Iterator[list[Backend]]:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_rrg = f"sqlite:///{Path(tmp) / 'rrg.db'}"
        sqlite_floor = f"sqlite:///{Path(tmp) / 'floor.db'}"
        pg_rrg = BENCH_POSTGRES_URL + "_p1"
        pg_floor = BENCH_POSTGRES_URL + "_p1_floor"
        for url in (pg_rrg, pg_floor):
            asyncio.run(_reset_postgres(url))
        out = []
        for name, rrg_url, floor_url in (
            ("SQLite", sqlite_rrg, sqlite_floor),
            ("PostgreSQL", pg_rrg, pg_floor),
        ):
            migrate.upgrade(rrg_url)
            out.append(Backend(name, rrg_url, floor_url, asyncio.run(_reporter_token(rrg_url))))
        yield out


def floor_server(url: str) -> AbstractContextManager[Server]:
    return serve(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.floor_app:app",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        {"RRG_DATABASE_URL": url},
    )


# --- load ----------------------------------------------------------------------------------


@dataclass
class Saturation:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    failed: int  # non-2xx, socket errors and timeouts


_WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %f %f\\n", summary.requests,
    summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_get(token: str) -> str:
    return f"""
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer {token}"
{_WRK_DONE}
"""


def _lua_script(token: str, payloads: list[str]) -> str:
    quoted = ",\n".join(f"[==[{p}]==]" for p in payloads)
    return f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
local bodies = {{ {quoted} }}
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])
end
{_WRK_DONE}
"""


def saturate(
    server: Server, token: str, payloads: list[str] | None, path: str = PATH
) -> Saturation:
    """wrk at ``CONNECTIONS`` connections: POSTs of ``payloads`` or, without, GETs."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_lua_script(token, payloads) if payloads else _lua_get(token))
        script.flush()
        result = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{CONNECTIONS}",
                f"-d{SECONDS}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                server.base + path,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    fields = line.split()[1:]
    requests, duration_us = int(fields[0]), int(fields[1])
    connect, read, write, status, timeout = (int(x) for x in fields[2:7])
    p50_us, p99_us = float(fields[7]), float(fields[8])
    ok = requests - status
    return Saturation(
        requests_per_second=ok / (duration_us / 1e6),
        p50_ms=p50_us / 1000,
        p99_ms=p99_us / 1000,
        failed=status + connect + read + write + timeout,
    )


@dataclass
class Steady:
    offered: int
    served_ok: int
    p50_ms: float
    p99_ms: float


def hey(
    server: Server,
    path: str,
    *,
    token: str,
    body: str | None = None,
    requests: int | None = None,
    seconds: int | None = None,
    workers: int = CONNECTIONS,
    rate: int | None = None,
) -> list[tuple[float, int]]:
    """(latency seconds, status) of each request ``hey`` completed."""
    args = ["hey", "-o", "csv", "-H", f"Authorization: Bearer {token}"]
    if requests is not None:
        workers = min(workers, requests)  # hey refuses fewer requests than workers
        args += ["-n", str(requests)]
    args += ["-c", str(workers)]
    if seconds is not None:
        args += ["-z", f"{seconds}s"]
    if rate is not None:
        args += ["-q", str(rate)]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as payload:
        if body is not None:
            payload.write(body)
            payload.flush()
            args += ["-m", "POST", "-T", "application/json", "-D", payload.name]
        result = subprocess.run(
            [*args, server.base + path], check=True, capture_output=True, text=True
        )
    rows = csv.DictReader(io.StringIO(result.stdout))
    return [(float(r["response-time"]), int(r["status-code"])) for r in rows]


def steady(server: Server, token: str, body: str) -> Steady:
    samples = hey(
        server,
        PATH,
        token=token,
        body=body,
        seconds=SECONDS,
        workers=RATE_WORKERS,
        rate=RATE_PER_WORKER,
    )
    ok = [latency * 1000 for latency, status in samples if status == 201]
    return Steady(
        offered=RATE_WORKERS * RATE_PER_WORKER * SECONDS,
        served_ok=len(ok),
        p50_ms=median(ok) if ok else float("nan"),
        p99_ms=percentile(ok, 99) if ok else float("nan"),
    )


ME = "/api/v1/me"


def _measure_create(
    server: Server, token: str, payloads: list[str]
) -> tuple[Saturation, Steady, Saturation]:
    """Creates at saturation and at 300/s, then ``GET /api/v1/me`` at saturation."""
    hey(server, PATH, token=token, body=payloads[0], requests=WARMUP)
    server.settle()
    saturated = saturate(server, token, payloads)
    server.settle()
    held = steady(server, token, payloads[1])
    server.settle()
    return saturated, held, saturate(server, token, None, ME)


def _p1(backend: Backend, payloads: list[str]) -> list[Figure]:
    with floor_server(backend.floor_url) as floor:
        floor_sat, floor_steady, bare_me = _measure_create(floor, backend.token, payloads)
    with rrg_server(backend.rrg_url) as rrg:
        before = asyncio.run(_incidents(backend.rrg_url))
        cpu_before = rrg.cpu_seconds()
        hey(rrg, PATH, token=backend.token, body=payloads[0], requests=WARMUP)
        rrg.settle()
        rrg_sat = saturate(rrg, backend.token, payloads)
        rrg.settle()
        rrg_steady = steady(rrg, backend.token, payloads[1])
        # Requests a load gave up on may still be served afterwards: wait for them.
        rrg.settle()
        # CPU per create over every create since the warm-up began (as the database counts
        # them: a request its client gave up on may still have been served).
        created = asyncio.run(_incidents(backend.rrg_url)) - before
        cpu_ms = (rrg.cpu_seconds() - cpu_before) / created * 1000
        rrg_me = saturate(rrg, backend.token, None, ME)
    b = backend.name
    ratio = rrg_sat.requests_per_second / floor_sat.requests_per_second
    return [
        Figure(
            NAME,
            f"P1 {b} saturation, c={CONNECTIONS}",
            rrg_sat.requests_per_second,
            "req/s",
            floor_sat.requests_per_second,
            "floor app",
        ),
        Figure(NAME, f"P1 {b} saturation ratio rrg/floor", ratio, "x"),
        Figure(
            NAME,
            f"P1 {b} saturation p99",
            rrg_sat.p99_ms,
            "ms",
            floor_sat.p99_ms,
            "floor app",
        ),
        Figure(
            NAME,
            f"P1 {b} saturation failed (non-2xx, timeouts)",
            rrg_sat.failed,
            "req",
            floor_sat.failed,
            "floor app",
        ),
        Figure(
            NAME, f"P1 {b} 300 req/s p50", rrg_steady.p50_ms, "ms", floor_steady.p50_ms, "floor app"
        ),
        Figure(
            NAME,
            f"P1 {b} 300 req/s p99",
            rrg_steady.p99_ms,
            "ms",
            floor_steady.p99_ms,
            "floor app",
        ),
        Figure(
            NAME,
            f"P1 {b} 300 req/s not answered 201 (of {rrg_steady.offered})",
            rrg_steady.offered - rrg_steady.served_ok,
            "req",
            floor_steady.offered - floor_steady.served_ok,
            "floor app",
        ),
        Figure(NAME, f"P1 {b} server CPU per create", cpu_ms, "ms"),
        Figure(
            NAME,
            f"{b} GET /api/v1/me saturation",
            rrg_me.requests_per_second,
            "req/s",
            bare_me.requests_per_second,
            "bare FastAPI JSON GET",
        ),
        Figure(
            NAME,
            f"{b} GET /api/v1/me ratio rrg/bare",
            rrg_me.requests_per_second / bare_me.requests_per_second,
            "x",
        ),
    ]


def _p5(backend: Backend, payloads: list[str]) -> list[Figure]:
    # Mostly reads, as in use; lists and creates cost ~8x a GET /me, so they are the smaller
    # shares (with 30% and 10%, 100k requests took over 25 min on a busy 2-core machine).
    lists, creates = int(P5_REQUESTS * 0.1), int(P5_REQUESTS * 0.05)
    mes = P5_REQUESTS - lists - creates
    with rrg_server(backend.rrg_url) as rrg:
        hey(rrg, "/api/v1/incidents?limit=50", token=backend.token, requests=lists)
        hey(rrg, "/api/v1/me", token=backend.token, requests=mes)
        hey(rrg, PATH, token=backend.token, body=payloads[2], requests=creates)
        rss = rrg.rss_mb()
    with floor_server(backend.floor_url) as floor:
        hey(floor, "/api/v1/me", token=backend.token, requests=lists + mes)
        hey(floor, PATH, token=backend.token, body=payloads[2], requests=creates)
        floor_rss = floor.rss_mb()
    return [
        Figure(
            NAME,
            f"P5 {backend.name} server RSS after {P5_REQUESTS:,} requests",
            rss,
            "MB",
            floor_rss,
            "floor app, same count of reads and creates",
        )
    ]


def run() -> list[Figure]:
    ensure_load_tools()
    payloads = bodies(64)
    figures: list[Figure] = []
    with backends() as chosen:
        for backend in chosen:
            print(f"  P1 on {backend.name} ...", file=sys.stderr)
            figures.extend(_p1(backend, payloads))
        postgres = next(b for b in chosen if b.name == "PostgreSQL")
        print("  P5 ...", file=sys.stderr)
        figures.extend(_p5(postgres, payloads))
    return figures
