"""P2: the incident board/list with 100k incidents on PostgreSQL.

Measures ``GET /api/v1/incidents?limit=50`` and ``GET /api/v1/incidents?status=responding&limit=50``
(p50/p99, sequential requests after a warm-up) against the real app served by uvicorn in a
separate process, next to ``GET /api/v1/me`` (the same token authentication, a trivial query) as
the baseline from the same run. The caller is a DOE lead with an API token. Also: a walk of
status=responding pages with ``next_cursor`` (checked for order and repeats), and the server's
CPU time per request of each scenario, which the other load on a shared machine hardly moves.

Data (dedicated database, public schema dropped, real migrations, then bulk COPY / INSERT ...
SELECT): ~200 DOE/METI users, 100,000 incidents (about 15% responding), 1-3 minerals each,
owners on triaged and later incidents, some participants, ~300k response actions (when the
``actions`` table exists) and ~1M timeline events (chain hashes are not valid: the list does not
read them, only the table size matters). ``VACUUM ANALYZE`` afterwards, as autovacuum would.

Also printed (stderr): EXPLAIN (ANALYZE, BUFFERS) of every statement the status=responding list
runs, captured from the service itself (``list_visible`` + ``current_signoffs``), once as a
custom plan and once as the generic plan a long-lived prepared statement may switch to.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event, select

from app import migrate
from app.auth.models import User
from app.auth.security import hash_token, new_token
from app.db import Database
from app.incidents import service as incidents
from app.incidents.vocabulary import CATEGORIES, SECTORS
from bench.common import (
    BENCH_POSTGRES_URL,
    Figure,
    Server,
    continue_incident_numbers,
    median,
    percentile,
    rrg_server,
)

NAME = "incidents_list"
QUICK = os.environ.get("RRG_BENCH_QUICK") == "1"
INCIDENTS = 10_000 if QUICK else 100_000  # with 3 actions and 10 timeline events each
USERS_PER_MINISTRY = 100
EVENTS_MIN, EVENTS_MAX = 4, 16  # per incident: ~1M in all
WARMUP = 50
REQUESTS = 50 if QUICK else 300
CPU_REQUESTS = 50 if QUICK else 200
PAGES = 20
LIMIT = 50
LEAD_EMAIL = "bench.lead@doe.example"
REPO = Path(__file__).resolve().parent.parent

LIST_ALL = f"/api/v1/incidents?limit={LIMIT}"
LIST_RESPONDING = f"/api/v1/incidents?status=responding&limit={LIMIT}"
ME = "/api/v1/me"

STATUS_WEIGHTS = {
    "watch": 4,
    "reported": 8,
    "triaged": 8,
    "responding": 15,
    "monitoring": 10,
    "resolved": 5,
    "closed": 40,
    "rejected": 10,
}
TRIAGED = {"triaged", "responding", "monitoring", "resolved", "closed"}
TLP_WEIGHTS = {"CLEAR": 4, "GREEN": 46, "AMBER": 40, "AMBER+STRICT": 7, "RED": 3}
SEVERITY_WEIGHTS = {"SEV1": 5, "SEV2": 20, "SEV3": 45, "SEV4": 30}
ROLE_WEIGHTS = {"viewer": 35, "responder": 45, "lead": 15, "admin": 5}
MINERAL_WEIGHTS = {
    "Nd": 10, "Pr": 6, "Dy": 8, "Tb": 5, "Sm": 2, "Gd": 2, "Lu": 1, "Sc": 1, "Y": 3,
    "Ga": 9, "Ge": 7, "Sb": 5, "W": 5, "graphite": 9, "Li": 8, "Co": 7, "Ni": 6, "Mn": 3, "PGM": 3,
}  # fmt: skip
COUNTED = (
    "users",
    "incidents",
    "incident_minerals",
    "incident_participants",
    "timeline_events",
    "actions",
)
ORIGINS = ("CN", "CN", "CN", "CD", "ID", "RU", "ZA", "CL", "AU", "MM", "BR", "PH", None)


# Server-side generation of ~1M timeline events: seq 1..event_count per incident. The hashes
# follow the formula used for incidents.last_event_hash (sha256 of "<id>:<seq>"), not the chain.
EVENTS_SQL = """
INSERT INTO timeline_events
    (id, incident_id, seq, at, actor_kind, actor_user_id, actor_token_id, type, data,
     prev_hash, hash)
SELECT gen_random_uuid(), i.id, s.seq, i.reported_at + (s.seq - 1) * interval '5 hours',
       'user', CASE WHEN s.seq > 2 AND i.doe_owner_id IS NOT NULL
                    THEN i.doe_owner_id ELSE i.reporter_id END,
       NULL,
       CASE WHEN s.seq = 1 THEN 'incident.created'
            WHEN s.seq % 3 = 0 THEN 'comment.created'
            ELSE 'incident.updated' END,
       CASE WHEN s.seq = 1 THEN jsonb_build_object('key', i.key, 'title', i.title)
            WHEN s.seq % 3 = 0 THEN jsonb_build_object('body',
                'Update from the working group on ' || i.key || ': supplier outreach continues, '
                || 'stockpile position reviewed, next call scheduled. Note ' || s.seq)
            ELSE jsonb_build_object('before', jsonb_build_object('severity', 'SEV3'),
                                    'after', jsonb_build_object('severity', i.severity)) END,
       CASE WHEN s.seq = 1 THEN repeat('0', 64)
            ELSE encode(sha256(convert_to(i.id::text || ':' || (s.seq - 1), 'UTF8')), 'hex') END,
       encode(sha256(convert_to(i.id::text || ':' || s.seq, 'UTF8')), 'hex')
FROM incidents i CROSS JOIN LATERAL generate_series(1, i.event_count) AS s(seq)
"""

# ~300k response actions on triaged and later incidents (1-7 each, ~4 on average).
ACTIONS_SQL = """
WITH u AS (SELECT array_agg(id ORDER BY email) AS ids FROM users)
INSERT INTO actions
    (id, incident_id, title, description, kind, owning_ministry, assignee_id, priority, due_at,
     status, escalation_level, created_by_id, approved_at, completed_at, version,
     created_at, updated_at)
SELECT gen_random_uuid(), i.id, 'Action ' || n || ' on ' || i.key,
       'Coordinate the response with suppliers and the other ministry.',
       (ARRAY['stockpile_release', 'alternative_sourcing', 'joint_procurement', 'financing',
              'permit_fast_track', 'diplomatic_outreach', 'recycling', 'demand_management',
              'information_sharing', 'other'])[1 + (i.number + n) % 10],
       (ARRAY['DOE', 'METI', 'JOINT'])[1 + (i.number + n) % 3],
       u.ids[1 + floor(random() * array_length(u.ids, 1))::int],
       (ARRAY['high', 'medium', 'low'])[1 + (i.number * 7 + n) % 3],
       i.reported_at + (n * 3 + 7) * interval '1 day',
       CASE WHEN i.status IN ('resolved', 'closed')
                THEN (ARRAY['completed', 'completed', 'completed', 'cancelled', 'rejected'])
                     [1 + (i.number + n) % 5]
            WHEN i.status = 'triaged' THEN (ARRAY['proposed', 'approved'])[1 + n % 2]
            ELSE (ARRAY['approved', 'in_progress', 'in_progress', 'blocked', 'completed',
                        'proposed'])[1 + (i.number + n) % 6] END,
       0, i.reporter_id, i.triaged_at, NULL, 1, i.triaged_at, i.triaged_at
FROM incidents i CROSS JOIN u CROSS JOIN LATERAL generate_series(1, 1 + i.number % 7) AS s(n)
WHERE i.status IN ('triaged', 'responding', 'monitoring', 'resolved', 'closed')
"""


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _maybe(rng: random.Random, chance: float, low: float, high: float) -> float | None:
    return round(rng.uniform(low, high), 1) if rng.random() < chance else None


@dataclass
class Seeded:
    token: str
    lead_email: str
    phases: dict[str, float]  # seconds per seeding step
    counts: dict[str, int]


# --- database ---------------------------------------------------------------------------


async def _reset_schema(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE")
        await conn.execute("CREATE SCHEMA public")
    finally:
        await conn.close()


Row = dict[str, Any]


async def _copy(conn: asyncpg.Connection, table: str, rows: Sequence[Row]) -> None:
    columns = tuple(rows[0])
    records = [tuple(row[c] for c in columns) for row in rows]
    await conn.copy_records_to_table(table, records=records, columns=columns)


def _users(rng: random.Random, ministries: dict[str, uuid.UUID], now: datetime) -> list[Row]:
    rows: list[Row] = []
    for code, timezone in (("DOE", "America/New_York"), ("METI", "Asia/Tokyo")):
        for n in range(USERS_PER_MINISTRY):
            lead = code == "DOE" and n == 0
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "email": LEAD_EMAIL if lead else f"{code.lower()}.user{n:03d}@rrg.example",
                    "display_name": f"{code} User {n:03d}",
                    "ministry_id": ministries[code],
                    "ministry": code,
                    "role": "lead" if lead else _pick(rng, ROLE_WEIGHTS),
                    "language": "en" if code == "DOE" else "ja",
                    "timezone": timezone,
                    "co_chair": False,
                    "active": True,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    return rows


def _incidents(
    rng: random.Random, users: Sequence[Row], now: datetime
) -> tuple[list[Row], list[Row], list[Row]]:
    """Incident rows (oldest first), their mineral links and their participants."""
    workers = [u for u in users if u["role"] != "viewer"]
    doe = [u["id"] for u in workers if u["ministry"] == "DOE"]
    meti = [u["id"] for u in workers if u["ministry"] == "METI"]
    everyone = [u["id"] for u in users]
    minerals, mineral_weights = list(MINERAL_WEIGHTS), list(MINERAL_WEIGHTS.values())
    start = now - timedelta(days=3 * 365)
    step = (now - start - timedelta(days=1)).total_seconds() / INCIDENTS
    rows: list[Row] = []
    links: list[Row] = []
    participants: list[Row] = []
    for number in range(1, INCIDENTS + 1):
        incident_id = uuid.uuid4()
        status = _pick(rng, STATUS_WEIGHTS)
        category = rng.choice(CATEGORIES)
        codes = list(dict.fromkeys(rng.choices(minerals, mineral_weights, k=rng.randint(1, 3))))
        origin = rng.choice(ORIGINS)
        reporter = rng.choice(workers)
        reported = start + timedelta(seconds=(number - 1 + rng.random() * 0.9) * step)
        triaged = status in TRIAGED
        triaged_at = reported + timedelta(hours=rng.uniform(1, 48)) if triaged else None
        resolved_at = (
            reported + timedelta(days=rng.uniform(5, 60))
            if status in ("resolved", "closed")
            else None
        )
        closed_at = resolved_at + timedelta(days=rng.uniform(1, 10)) if resolved_at else None
        doe_owner = rng.choice(doe) if triaged else None
        meti_owner = rng.choice(meti) if triaged else None
        updated = max(t for t in (reported, triaged_at, resolved_at, closed_at) if t is not None)
        severity = (
            _pick(rng, SEVERITY_WEIGHTS) if triaged or rng.random() < 0.4 else None
        )  # proposed by the reporter sometimes
        events = rng.randint(EVENTS_MIN, EVENTS_MAX)
        key = incidents.format_key(number)
        title = f"{', '.join(codes)}: {category.replace('_', ' ')} ({origin or 'global'}) #{number}"
        summary = (
            f"{title}. Reported disruption affecting {', '.join(codes)} supply. "
            "Initial assessment by the working group: downstream manufacturers report "
            "longer lead times; alternative sources are being contacted and stockpile "
            "positions reviewed in both capitals. " * rng.randint(1, 3)
        )
        sources = [
            {"title": f"Source {k} on {key}", "url": f"https://news.example.org/{number}/{k}"}
            for k in range(rng.randint(0, 2))
        ]
        cover = {"US": rng.randint(10, 180), "JP": rng.randint(10, 180)}
        rows.append(
            {
                "id": incident_id,
                "number": number,
                "key": key,
                "title": title,
                "summary": summary,
                "category": category,
                "origin_country": origin,
                "affected_sectors": json.dumps(rng.sample(SECTORS, rng.randint(1, 3))),
                "estimated_shortfall_tonnes_per_month": _maybe(rng, 0.6, 1, 500),
                "supply_share_affected_pct": _maybe(rng, 0.7, 1, 90),
                "days_of_cover": json.dumps(cover if rng.random() < 0.6 else {}),
                "price_change_pct": _maybe(rng, 0.5, -10, 300),
                "effective_at": (
                    reported + timedelta(days=rng.uniform(0, 30)) if rng.random() < 0.5 else None
                ),
                "expected_duration_days": rng.randint(7, 365) if rng.random() < 0.4 else None,
                "sources": json.dumps(sources),
                "tlp": _pick(rng, TLP_WEIGHTS),
                "severity": severity,
                "status": status,
                "reporter_id": reporter["id"],
                "reporter_ministry_id": reporter["ministry_id"],
                "doe_owner_id": doe_owner,
                "meti_owner_id": meti_owner,
                "resolution_summary": "Supply restored via alternative sourcing."
                if resolved_at
                else None,
                "resolution_round": 1 if resolved_at else 0,
                "rejection_reason": "Not a supply disruption." if status == "rejected" else None,
                "reported_at": reported,
                "triaged_at": triaged_at,
                "resolved_at": resolved_at,
                "closed_at": closed_at,
                "version": rng.randint(1, 12),
                "event_count": events,
                "last_event_hash": hashlib.sha256(f"{incident_id}:{events}".encode()).hexdigest(),
                "created_at": reported,
                "updated_at": updated,
            }
        )
        links.extend({"incident_id": incident_id, "mineral_code": code} for code in codes)
        if triaged and rng.random() < 0.35:
            participants.extend(
                {
                    "incident_id": incident_id,
                    "user_id": user_id,
                    "added_at": triaged_at,
                    "added_by_id": doe_owner,
                }
                for user_id in rng.sample(everyone, rng.randint(1, 4))
            )
    return rows, links, participants


async def _skip_foreign_key_checks(conn: asyncpg.Connection) -> None:
    """Skip the per-row foreign-key triggers for this transaction (a superuser may): the rows
    are generated consistent, and ~4M referential checks would dominate the load time."""
    try:
        async with conn.transaction():  # a savepoint: a refusal leaves the load going
            await conn.execute("SET LOCAL session_replication_role = replica")
    except asyncpg.InsufficientPrivilegeError:
        print(f"{NAME}: not a superuser, foreign keys are checked (slower)", file=sys.stderr)


# The plain indexes and unique/primary keys of a table that no foreign key depends on. Partial
# and expression indexes stay: rebuilt from their deparsed text, they would not be identical.
INDEXES_SQL = """
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS indexdef,
       c.conname, pg_get_constraintdef(c.oid) AS condef
FROM pg_index i
LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
                         AND c.contype IN ('p', 'u')
WHERE i.indrelid = $1::regclass AND i.indpred IS NULL AND i.indexprs IS NULL
  AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid)
"""


@contextlib.asynccontextmanager
async def _indexes_built_after(conn: asyncpg.Connection, table: str) -> AsyncIterator[None]:
    """Load ``table`` without its indexes, then build them as the migrations defined them
    (same names and definitions): one sort per index instead of a million random inserts."""
    indexes = await conn.fetch(INDEXES_SQL, table)
    for index in indexes:
        if index["conname"]:
            await conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {_quoted(index['conname'])}")
        else:
            await conn.execute(f"DROP INDEX {index['name']}")
    yield
    for index in indexes:
        if index["conname"]:
            await conn.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {_quoted(index['conname'])} {index['condef']}"
            )
        else:
            await conn.execute(index["indexdef"])


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@contextlib.contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    phases[name] = time.perf_counter() - start


async def _seed(url: str) -> Seeded:
    rng = random.Random(20261128)
    now = datetime.now(UTC)
    phases: dict[str, float] = {}
    conn = await asyncpg.connect(url)
    try:
        with _timed(phases, "generate rows"):
            ministries = {
                r["code"]: r["id"] for r in await conn.fetch("SELECT code, id FROM ministries")
            }
            users = _users(rng, ministries, now)
            rows, links, participants = _incidents(rng, users, now)
            token = new_token()
            lead_id = next(u["id"] for u in users if u["email"] == LEAD_EMAIL)
            for user in users:
                del user["ministry"]  # a helper key, not a column
            if await conn.fetchval(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name = 'incidents' AND column_name = 'last_activity_at'"
            ):  # a later migration's column: filled as its migration backfills it
                for row in rows:
                    row["last_activity_at"] = row["updated_at"]
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
            await _skip_foreign_key_checks(conn)
            with _timed(phases, "COPY users, incidents, minerals, participants"):
                await _copy(conn, "users", users)
                await conn.execute(
                    "INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, created_at) "
                    "VALUES ($1, $2, 'bench', $3, $4, $5)",
                    *(uuid.uuid4(), lead_id, hash_token(token), token[:8], now),
                )
                async with _indexes_built_after(conn, "incidents"):
                    await _copy(conn, "incidents", rows)
                async with _indexes_built_after(conn, "incident_minerals"):
                    await _copy(conn, "incident_minerals", links)
                await _copy(conn, "incident_participants", participants)
            with _timed(phases, "INSERT ... SELECT timeline_events"):
                async with _indexes_built_after(conn, "timeline_events"):
                    await conn.execute(EVENTS_SQL)
            with _timed(phases, "INSERT ... SELECT actions"):
                if await conn.fetchval("SELECT to_regclass('public.actions') IS NOT NULL"):
                    async with _indexes_built_after(conn, "actions"):
                        await conn.execute(ACTIONS_SQL)
            await continue_incident_numbers(conn, INCIDENTS)
        with _timed(phases, "VACUUM ANALYZE"):
            await conn.execute("VACUUM ANALYZE")
        counts: dict[str, int] = {}
        for table in COUNTED:
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{table}"):
                counts[table] = int(await conn.fetchval(f'SELECT count(*) FROM "{table}"'))
        counts["responding"] = int(
            await conn.fetchval("SELECT count(*) FROM incidents WHERE status = 'responding'")
        )
    finally:
        await conn.close()
    return Seeded(token, LEAD_EMAIL, phases, counts)


# --- EXPLAIN ----------------------------------------------------------------------------

_INDEX_SCAN = re.compile(r"(Index Only Scan|Index Scan)(?: Backward)? using (\S+) on (\S+)")
_BITMAP_SCAN = re.compile(r"Bitmap Index Scan on (\S+)")
_SEQ_SCAN = re.compile(r"Seq Scan on (\S+)")
_EXEC_TIME = re.compile(r"Execution Time: ([\d.]+) ms")


def _summary(plan: str) -> str:
    indexes = sorted(
        {f"{m[1]} ({m[0].lower()})" for m in _INDEX_SCAN.findall(plan)}
        | {f"{m} (bitmap)" for m in _BITMAP_SCAN.findall(plan)}
    )
    seq = sorted(set(_SEQ_SCAN.findall(plan)))
    took = _EXEC_TIME.search(plan)
    return (
        f"indexes: {', '.join(indexes) or 'none'}; seq scans: {', '.join(seq) or 'none'}; "
        f"execution {took[1] if took else '?'} ms"
    )


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return "'" + str(value).replace("'", "''") + "'"


async def _explain(url: str, email: str, out: list[str]) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) each statement the status=responding list runs."""
    db = Database(url, pool_size=1, max_overflow=0)
    captured: list[tuple[str, Any]] = []
    capture = [False]

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool
    ) -> None:
        if capture[0]:
            captured.append((statement, parameters))

    try:
        async with db.unit_of_work(readonly=True) as session:
            user = await session.scalar(select(User).where(User.email == email))
            assert user is not None
            capture[0] = True
            rows, _ = await incidents.list_visible(
                session, user, incidents.IncidentFilters(status=["responding"]), limit=LIMIT
            )
            await incidents.current_signoffs(session, rows)
            capture[0] = False
            conn = await session.connection()
            for n, (statement, params) in enumerate(captured):
                result = await conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement, params
                )
                plan = "\n".join(str(r[0]) for r in result)
                first_line = " ".join(statement.split())[:110]
                out.append(f"-- statement {n + 1}/{len(captured)}: {first_line} ...")
                if n == 0:
                    out.append(statement)
                    out.append(f"-- parameters: {params}")
                    out.append(plan)
                out.append(f"-- custom plan: {_summary(plan)}")
    finally:
        await db.dispose()
    # The app's prepared statements may switch to a generic plan after five executions.
    statement, params = captured[0]
    raw = await asyncpg.connect(url)
    try:
        await raw.execute("SET plan_cache_mode = force_generic_plan")
        await raw.execute(f"PREPARE rrg_bench_list AS {statement}")
        args = ", ".join(_literal(p) for p in params)
        plan_rows = await raw.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE rrg_bench_list({args})")
        plan = "\n".join(str(r[0]) for r in plan_rows)
        out.append("-- statement 1, generic plan (plan_cache_mode = force_generic_plan):")
        out.append(plan)
        out.append(f"-- generic plan: {_summary(plan)}")
    finally:
        await raw.close()


# --- the server and the client ----------------------------------------------------------


def _get(client: httpx.Client, path: str) -> tuple[float, Any]:
    start = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:500]}")
    return elapsed, response.json()


def _check_page(body: Any, status: str | None) -> None:
    items = body["items"]
    if len(items) != LIMIT or body["next_cursor"] is None:
        raise RuntimeError(f"expected a full page with a cursor, got {len(items)} items")
    if status is not None and any(i["status"] != status for i in items):
        raise RuntimeError(f"an item without status {status} in the page")


def _walk(client: httpx.Client, first: str) -> tuple[list[float], int]:
    """Follow next_cursor for PAGES pages; check order and no repeats. Returns page latencies."""
    latencies: list[float] = []
    seen: set[str] = set()
    last: tuple[datetime, uuid.UUID] | None = None
    path = first
    for _ in range(PAGES):
        elapsed, body = _get(client, path)
        latencies.append(elapsed)
        for item in body["items"]:
            position = (datetime.fromisoformat(item["reported_at"]), uuid.UUID(item["id"]))
            if item["id"] in seen or (last is not None and position >= last):
                raise RuntimeError("pages overlap or are out of order")
            if item["status"] != "responding":
                raise RuntimeError("a page item without status responding")
            seen.add(item["id"])
            last = position
        if body["next_cursor"] is None:
            break
        path = f"{first}&cursor={body['next_cursor']}"
    return latencies, len(seen)


def _measure(server: Server, token: str) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Latency samples per scenario (ms), and server CPU per request (ms) per scenario."""
    scenarios = {"me": ME, "list": LIST_ALL, "responding": LIST_RESPONDING}
    samples: dict[str, list[float]] = {name: [] for name in scenarios}
    cpu: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
        _check_page(_get(client, LIST_ALL)[1], None)
        _check_page(_get(client, LIST_RESPONDING)[1], "responding")
        for _ in range(WARMUP):
            for path in scenarios.values():
                _get(client, path)
        # Interleaved, so drift on this (shared) machine hits every scenario alike.
        for _ in range(REQUESTS):
            for name, path in scenarios.items():
                samples[name].append(_get(client, path)[0])
        # Server CPU per request, in a block per scenario: unlike latency, it hardly
        # depends on what else the machine is running.
        for name, path in scenarios.items():
            before = server.cpu_seconds()
            for _ in range(CPU_REQUESTS):
                _get(client, path)
            cpu[name] = (server.cpu_seconds() - before) * 1000 / CPU_REQUESTS
        pages, seen = _walk(client, LIST_RESPONDING)
        print(
            f"{NAME}: walked {len(pages)} pages ({seen} incidents) of status=responding "
            "with next_cursor: in order, no repeats",
            file=sys.stderr,
        )
        samples["pages"] = pages[1:]  # pages 2.. (the ones that use a cursor)
    return samples, cpu


# --- the benchmark ----------------------------------------------------------------------


def run() -> list[Figure]:
    url = BENCH_POSTGRES_URL
    start = time.perf_counter()
    asyncio.run(_reset_schema(url))
    migrate.upgrade(url)
    migrated = time.perf_counter() - start
    seeded = asyncio.run(_seed(url))
    counts = ", ".join(f"{k} {v:,}" for k, v in seeded.counts.items())
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in seeded.phases.items())
    print(
        f"{NAME}: schema + migrations {migrated:.1f} s; seeded in "
        f"{sum(seeded.phases.values()):.1f} s ({steps}): {counts}",
        file=sys.stderr,
    )
    explain: list[str] = []
    asyncio.run(_explain(url, seeded.lead_email, explain))
    print("\n".join(explain), file=sys.stderr)
    with rrg_server(url) as server:
        load = os.getloadavg()[0]
        samples, cpu = _measure(server, seeded.token)
        load = max(load, os.getloadavg()[0])
    print(
        f"{NAME}: 1-min load average up to {load:.1f} on {os.cpu_count()} CPUs while measuring "
        "(client, server and PostgreSQL share them)",
        file=sys.stderr,
    )
    me, plain, responding = samples["me"], samples["list"], samples["responding"]
    me50, me99 = percentile(me, 50), percentile(me, 99)
    baseline = "GET /me"
    pages = f"responding, next_cursor pages 2-{len(samples['pages']) + 1}"
    return [
        Figure(NAME, "?limit=50 p50", percentile(plain, 50), "ms", me50, baseline),
        Figure(NAME, "?limit=50 p99", percentile(plain, 99), "ms", me99, baseline),
        Figure(NAME, "?status=responding p50", percentile(responding, 50), "ms", me50, baseline),
        Figure(
            NAME,
            "?status=responding p99",
            percentile(responding, 99),
            "ms",
            me99,
            baseline,
        ),
        Figure(NAME, f"{pages} median", median(samples["pages"]), "ms", me50, baseline),
        Figure(NAME, f"{pages} max", max(samples["pages"]), "ms", me99, f"{baseline} p99"),
        Figure(NAME, "?limit=50 server CPU/request", cpu["list"], "ms", cpu["me"], baseline),
        Figure(
            NAME,
            "?status=responding server CPU/request",
            cpu["responding"],
            "ms",
            cpu["me"],
            baseline,
        ),
    ]
