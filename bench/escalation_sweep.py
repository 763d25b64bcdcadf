"""P3: the escalation sweep with 200k and 1M open actions, 2,000 of them overdue (PostgreSQL).

Data (a dedicated database, ``<bench db>_sweep``: public schema dropped, real migrations, then
bulk COPY / INSERT ... SELECT, then ``VACUUM ANALYZE``): ~300 DOE/METI users (assignees, 8 leads
per ministry, 2 co-chairs per ministry), 20,000 incidents with severities, TLP markings and
DOE/METI owners, ~200k timeline events, 100,000 terminal actions (history) and 200,000 open
actions due in the future, except 2,000 overdue at escalation level 0 whose lateness warrants
level 1, 2 or 3 under their incident's severity policy. Incidents give the other two phases
work to *look* at but none to do: reported incidents are already at the triage level they
warrant, responding incidents were active or reminded recently.

Measured: one call of ``app.escalation.sweep.sweep(db, now)`` (the first sweep: it escalates
the 2,000, i.e. every crossed level of each, checked against the seeded expectation), then a
second call at the same ``now`` (nothing left to do). Each is repeated ``RUNS`` times on one
long-lived ``Database`` (as the scheduler holds it), resetting the escalations in between;
the median is reported. Then 800,000 more open, not-yet-due actions are added (1M open, same
2,000 overdue) and the same is measured again: the sweep should grow with the overdue work,
not with the table. RRG_BENCH_QUICK=1 measures 40k and 80k open actions (same 2,000
overdue), once each.

Also printed (stderr): seeding times, a statement profile of one sweep (count and time per
statement shape, from a cursor-execute listener), and EXPLAIN (ANALYZE, BUFFERS) of the
sweep's action-claim query, captured from the sweep itself, before and after the sweep, as a
custom plan and as the generic plan a long-lived prepared statement may switch to.
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
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, text

from app import heap, migrate
from app.actions.vocabulary import KINDS
from app.auth.security import hash_token, new_token
from app.db import Database
from app.escalation import sweep as sweeper
from app.escalation.policies import FALLBACK_SEVERITY, Policy
from app.incidents import service as incidents
from app.incidents.vocabulary import CATEGORIES, SECTORS
from bench.common import (
    BENCH_POSTGRES_URL,
    Figure,
    audit_key,
    continue_incident_numbers,
    median,
)
from bench.incidents_list import EVENTS_SQL, _literal, _reset_schema, _summary

NAME = "escalation_sweep"
QUICK = os.environ.get("RRG_BENCH_QUICK") == "1"
RUNS = 1 if QUICK else 3
LARGE_OPEN = 80_000 if QUICK else 1_000_000  # open actions at the second size
CLAIM_INDEX = "ix_actions_escalatable_due_at"

SEVERITY_WEIGHTS = {"SEV1": 5, "SEV2": 20, "SEV3": 45, "SEV4": 30}
TLP_WEIGHTS = {"CLEAR": 4, "GREEN": 46, "AMBER": 40, "AMBER+STRICT": 7, "RED": 3}
INCIDENT_STATUS_WEIGHTS = {
    "reported": 3,
    "triaged": 10,
    "responding": 55,
    "monitoring": 15,
    "resolved": 5,
    "closed": 12,
}
WORKING = ("triaged", "responding", "monitoring")  # incidents with open actions
OPEN_STATUS_WEIGHTS = {"proposed": 15, "approved": 25, "in_progress": 50, "blocked": 10}
OVERDUE_STATUS_WEIGHTS = {"approved": 30, "in_progress": 55, "blocked": 15}
TERMINAL_STATUS_WEIGHTS = {"completed": 70, "cancelled": 20, "rejected": 10}
OVERDUE_LEVEL_WEIGHTS = {1: 45, 2: 30, 3: 25}
MINISTRIES = ("DOE", "METI")
ACTION_COLUMNS = (
    "id", "incident_id", "title", "description", "kind", "owning_ministry", "assignee_id",
    "priority", "due_at", "status", "escalation_level", "ladder_round", "blocked_reason",
    "outcome", "closing_reason", "created_by_id", "approved_at", "completed_at", "version",
    "created_at", "updated_at",
)  # fmt: skip
COUNTED = ("users", "incidents", "incident_participants", "timeline_events", "actions")

Row = tuple[Any, ...]


def database_url(suffix: str) -> str:
    """A dedicated database next to the bench database: ``rrg_bench`` -> ``rrg_bench_<suffix>``."""
    base, name = BENCH_POSTGRES_URL.rsplit("/", 1)
    return f"{base}/{name}_{suffix}"


async def ensure_database(url: str) -> None:
    base, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def fresh_database(url: str) -> None:
    """Create the database if needed, drop its public schema and migrate it to head."""
    asyncio.run(ensure_database(url))
    asyncio.run(_reset_schema(url))
    migrate.upgrade(url)


# --- seeding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    incidents: int = 20_000
    users_per_ministry: int = 150
    leads_per_ministry: int = 8
    co_chairs_per_ministry: int = 2
    open_actions: int = 200_000  # including the overdue ones
    overdue: int = 2_000
    terminal: int = 100_000
    # False: the overdue actions sit at level 0 (the sweep has work). True: at the level their
    # lateness warrants (a steady state, for read benchmarks).
    overdue_escalated: bool = False


# RRG_BENCH_QUICK=1: 40k then 80k open actions, the same 2,000 overdue, one run each.
QUICK_SHAPE = Shape(incidents=4_000, open_actions=40_000, terminal=20_000)


@dataclass(frozen=True)
class SeedUser:
    id: uuid.UUID
    email: str
    ministry: str
    role: str
    co_chair: bool


@dataclass(frozen=True)
class SeedIncident:
    id: uuid.UUID
    severity: str | None
    status: str
    doe_owner_id: uuid.UUID | None
    meti_owner_id: uuid.UUID | None


@dataclass
class World:
    """What the seeding made, for the benchmarks to use and check against."""

    now: datetime
    rng: random.Random
    policies: dict[str, Policy]
    users: list[SeedUser]
    incidents: list[SeedIncident]
    ministry_ids: dict[str, uuid.UUID]
    overdue_by_level: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    _assignable: dict[str, list[SeedUser]] = field(default_factory=dict)

    @property
    def expected_escalations(self) -> int:
        """Item-levels the first sweep must emit: every crossed level of every overdue action."""
        return sum(level * n for level, n in self.overdue_by_level.items())

    def policy(self, severity: str | None) -> Policy:
        return self.policies[severity or FALLBACK_SEVERITY]

    def assignable(self, ministry: str) -> list[SeedUser]:
        """Users an action of this owning ministry may be assigned to (cached)."""
        if ministry not in self._assignable:
            codes = MINISTRIES if ministry == "JOINT" else (ministry,)
            self._assignable[ministry] = [
                u for u in self.users if u.ministry in codes and u.role in ("responder", "lead")
            ]
        return self._assignable[ministry]


def _pick(rng: random.Random, weights: dict[Any, int]) -> Any:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _ago(rng: random.Random, now: datetime, low: timedelta, high: timedelta) -> datetime:
    return now - low - (high - low) * rng.random()


async def _copy(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], rows: list[Row]
) -> None:
    await conn.copy_records_to_table(table, records=rows, columns=list(columns))


def _users(shape: Shape, rng: random.Random, world: World, now: datetime) -> list[Row]:
    rows: list[Row] = []
    for code, timezone, language in (
        ("DOE", "America/New_York", "en"),
        ("METI", "Asia/Tokyo", "ja"),
    ):
        for n in range(shape.users_per_ministry):
            if n < shape.leads_per_ministry:
                role = "lead"
            elif n < shape.leads_per_ministry + 3:
                role = "admin"
            else:
                role = "viewer" if rng.random() < 0.2 else "responder"
            user = SeedUser(
                _uuid(rng),
                f"{code.lower()}.user{n:03d}@rrg.example",
                code,
                role,
                n < shape.co_chairs_per_ministry,
            )
            world.users.append(user)
            rows.append(
                (
                    user.id,
                    user.email,
                    f"{code} User {n:03d}",
                    world.ministry_ids[code],
                    role,
                    language,
                    timezone,
                    user.co_chair,
                    True,
                    now,
                    now,
                )
            )
    return rows


USER_COLUMNS = (
    "id", "email", "display_name", "ministry_id", "role", "language", "timezone", "co_chair",
    "active", "created_at", "updated_at",
)  # fmt: skip
INCIDENT_COLUMNS = (
    "id", "number", "key", "title", "summary", "category", "affected_sectors", "days_of_cover",
    "sources", "tlp", "severity", "status", "reporter_id", "reporter_ministry_id",
    "doe_owner_id", "meti_owner_id", "resolution_round", "reported_at", "triaged_at",
    "resolved_at", "closed_at", "version", "event_count", "last_event_hash", "created_at",
    "updated_at", "triage_level", "last_activity_at", "stale_reminded_at", "stale_reminders",
)  # fmt: skip


def _incidents(shape: Shape, rng: random.Random, world: World) -> tuple[list[Row], list[Row]]:
    now = world.now
    workers = [u for u in world.users if u.role != "viewer"]
    owners = {code: [u.id for u in workers if u.ministry == code] for code in MINISTRIES}
    rows: list[Row] = []
    participants: list[Row] = []
    for number in range(1, shape.incidents + 1):
        incident_id = _uuid(rng)
        status = _pick(rng, INCIDENT_STATUS_WEIGHTS)
        reporter = rng.choice(workers)
        triaged = status != "reported"
        severity = _pick(rng, SEVERITY_WEIGHTS) if triaged or rng.random() < 0.4 else None
        policy = world.policy(severity)
        resolved_at = closed_at = triaged_at = None
        triage_level = 0
        stale_reminded_at, stale_reminders = None, 0
        if status == "reported":
            # Already escalated as far as its wait warrants: no triage work for the sweep.
            reported = _ago(rng, now, timedelta(minutes=5), timedelta(days=20))
            triage_level = sweeper.triage_level(policy, reported, now)
            last_activity = reported
        elif status in WORKING:
            reported = _ago(rng, now, timedelta(days=2), timedelta(days=365))
            triaged_at = reported + timedelta(hours=rng.uniform(0.5, 24))
            last_activity = _ago(rng, now, timedelta(0), policy.update_every * 0.9)
            if status == "responding" and rng.random() < 0.25:
                # Silent for a while, but reminded within the current interval.
                silence = policy.update_every * rng.uniform(1.05, 5)
                last_activity = now - silence
                stale_reminders = max(1, int(silence / policy.update_every))
                stale_reminded_at = now - min(
                    policy.update_every, silence - policy.update_every
                ) * rng.uniform(0, 0.9)
        else:
            reported = _ago(rng, now, timedelta(days=40), timedelta(days=3 * 365))
            triaged_at = reported + timedelta(hours=rng.uniform(0.5, 24))
            resolved_at = reported + timedelta(days=rng.uniform(5, 30))
            closed_at = resolved_at + timedelta(days=3) if status == "closed" else None
            last_activity = closed_at or resolved_at
        doe_owner = rng.choice(owners["DOE"]) if triaged else None
        meti_owner = rng.choice(owners["METI"]) if triaged else None
        events = rng.randint(4, 16)
        key = incidents.format_key(number)
        category = rng.choice(CATEGORIES)
        world.incidents.append(SeedIncident(incident_id, severity, status, doe_owner, meti_owner))
        rows.append(
            (
                incident_id,
                number,
                key,
                f"{category.replace('_', ' ')} #{number}",
                "Reported disruption; alternative sources are being contacted.",
                category,
                json.dumps(rng.sample(SECTORS, rng.randint(1, 3))),
                json.dumps({"US": rng.randint(10, 180), "JP": rng.randint(10, 180)}),
                "[]",
                _pick(rng, TLP_WEIGHTS),
                severity,
                status,
                reporter.id,
                world.ministry_ids[reporter.ministry],
                doe_owner,
                meti_owner,
                1 if resolved_at else 0,
                reported,
                triaged_at,
                resolved_at,
                closed_at,
                rng.randint(1, 12),
                events,
                hashlib.sha256(f"{incident_id}:{events}".encode()).hexdigest(),
                reported,
                last_activity,
                triage_level,
                last_activity,
                stale_reminded_at,
                stale_reminders,
            )
        )
        if triaged and rng.random() < 0.3:
            participants.extend(
                (incident_id, u.id, triaged_at, doe_owner)
                for u in rng.sample(world.users, rng.randint(1, 3))
            )
    return rows, participants


def _action(
    world: World,
    incident: SeedIncident,
    status: str,
    due_at: datetime | None,
    created_at: datetime,
    level: int = 0,
) -> Row:
    rng = world.rng
    ministry = _pick(rng, {"DOE": 45, "METI": 40, "JOINT": 15})
    kind = rng.choice(KINDS)
    assignee: uuid.UUID | None = rng.choice(world.assignable(ministry)).id
    if status == "proposed" and rng.random() < 0.3:
        assignee = None
    creator = incident.doe_owner_id or world.users[0].id
    approved_at = None if status in ("proposed", "rejected") else created_at + timedelta(hours=6)
    completed_at = outcome = closing_reason = blocked_reason = None
    if status == "completed":
        assert due_at is not None
        completed_at = due_at - timedelta(days=rng.uniform(-3, 10))
        outcome = "Done: supply secured through the agreed channel."
    elif status in ("cancelled", "rejected"):
        closing_reason = "Superseded by a joint procurement."
    elif status == "blocked":
        blocked_reason = "Waiting for the export licence decision."
    updated_at = completed_at or approved_at or created_at
    return (
        _uuid(rng),
        incident.id,
        f"{kind.replace('_', ' ').capitalize()} ({ministry})",
        "Coordinate the response with suppliers and the other ministry.",
        kind,
        ministry,
        assignee,
        _pick(rng, {"high": 25, "medium": 50, "low": 25}),
        due_at,
        status,
        level,
        1 if rng.random() < 0.05 else 0,
        blocked_reason,
        outcome,
        closing_reason,
        creator,
        approved_at,
        completed_at,
        rng.randint(1, 6),
        created_at,
        updated_at,
    )


def _future_open(world: World, working: Sequence[SeedIncident], n: int) -> Iterator[Row]:
    rng, now = world.rng, world.now
    for _ in range(n):
        status = _pick(rng, OPEN_STATUS_WEIGHTS)
        due: datetime | None = now + timedelta(hours=1) + timedelta(days=120) * rng.random()
        if status == "proposed" and rng.random() < 0.1:
            due = None
        created = _ago(rng, now, timedelta(hours=1), timedelta(days=90))
        yield _action(world, rng.choice(working), status, due, created)


def _overdue(
    world: World, working: Sequence[SeedIncident], n: int, escalated: bool
) -> Iterator[Row]:
    """Overdue actions spread over the bands that warrant level 1, 2 and 3."""
    rng, now = world.rng, world.now
    minute = timedelta(minutes=1)
    for _ in range(n):
        incident = rng.choice(working)
        policy = world.policy(incident.severity)
        level = _pick(rng, OVERDUE_LEVEL_WEIGHTS)
        low, high = {
            1: (minute, policy.level2_after - minute),
            2: (policy.level2_after + minute, policy.level3_after - minute),
            3: (policy.level3_after + minute, 2 * policy.level3_after),
        }[level]
        due = _ago(rng, now, low, high)
        assert sweeper.action_level(policy, due, now) == level
        world.overdue_by_level[level] += 1
        created = due - timedelta(days=rng.uniform(3, 30))
        status = _pick(rng, OVERDUE_STATUS_WEIGHTS)
        yield _action(world, incident, status, due, created, level if escalated else 0)


def _terminal(world: World, n: int) -> Iterator[Row]:
    rng, now = world.rng, world.now
    triaged = [i for i in world.incidents if i.status != "reported"]
    for _ in range(n):
        status = _pick(rng, TERMINAL_STATUS_WEIGHTS)
        due = _ago(rng, now, timedelta(days=1), timedelta(days=3 * 365))
        created = due - timedelta(days=rng.uniform(7, 60))
        level = _pick(rng, {0: 70, 1: 15, 2: 10, 3: 5})
        yield _action(world, rng.choice(triaged), status, due, created, level)


def working_incidents(world: World) -> list[SeedIncident]:
    return [i for i in world.incidents if i.status in WORKING]


async def _load_policies(conn: asyncpg.Connection) -> dict[str, Policy]:
    rows = await conn.fetch("SELECT * FROM escalation_policies")
    return {
        r["severity"]: Policy(
            r["severity"],
            timedelta(seconds=r["triage_within_seconds"]),
            timedelta(seconds=r["level2_after_seconds"]),
            timedelta(seconds=r["level3_after_seconds"]),
            timedelta(seconds=r["update_every_seconds"]),
        )
        for r in rows
    }


async def seed(url: str, shape: Shape, *, seed_value: int = 20261129) -> World:
    """Seed a freshly migrated database (see the module docstring) and ANALYZE it."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    conn = await asyncpg.connect(url)
    try:
        world = World(
            now=now,
            rng=random.Random(seed_value),
            policies=await _load_policies(conn),
            users=[],
            incidents=[],
            ministry_ids={
                r["code"]: r["id"] for r in await conn.fetch("SELECT code, id FROM ministries")
            },
        )
        rng = world.rng
        users = _users(shape, rng, world, now)
        rows, participants = _incidents(shape, rng, world)
        working = working_incidents(world)
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            await _copy(conn, "users", USER_COLUMNS, users)
            await _copy(conn, "incidents", INCIDENT_COLUMNS, rows)
            await _copy(
                conn,
                "incident_participants",
                ("incident_id", "user_id", "added_at", "added_by_id"),
                participants,
            )
            await conn.execute(EVENTS_SQL)
            await continue_incident_numbers(conn, shape.incidents)
            await _copy(conn, "actions", ACTION_COLUMNS, list(_terminal(world, shape.terminal)))
            await _copy(
                conn,
                "actions",
                ACTION_COLUMNS,
                list(_overdue(world, working, shape.overdue, shape.overdue_escalated)),
            )
            future = shape.open_actions - shape.overdue
            await _copy(conn, "actions", ACTION_COLUMNS, list(_future_open(world, working, future)))
        await conn.execute("VACUUM ANALYZE")
        world.counts = {
            table: int(await conn.fetchval(f'SELECT count(*) FROM "{table}"')) for table in COUNTED
        }
        world.counts["open actions"] = int(
            await conn.fetchval(
                "SELECT count(*) FROM actions "
                "WHERE status NOT IN ('completed', 'cancelled', 'rejected')"
            )
        )
    finally:
        await conn.close()
    world.seconds = time.perf_counter() - started
    return world


async def add_open_actions(url: str, world: World, n: int) -> float:
    """Add n open actions due in the future (nothing for the sweep to do), then ANALYZE."""
    started = time.perf_counter()
    rows = list(_future_open(world, working_incidents(world), n))
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            await _copy(conn, "actions", ACTION_COLUMNS, rows)
        await conn.execute("VACUUM ANALYZE actions")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def create_token(url: str, email: str) -> str:
    token = new_token()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, created_at) "
            "SELECT $1, id, 'bench', $2, $3, now() FROM users WHERE email = $4",
            uuid.uuid4(),
            hash_token(token),
            token[:8],
            email,
        )
    finally:
        await conn.close()
    return token


def describe(world: World) -> str:
    counts = ", ".join(f"{k} {v:,}" for k, v in world.counts.items())
    levels = ", ".join(f"level {k}: {v:,}" for k, v in sorted(world.overdue_by_level.items()))
    return f"{counts}; overdue warranting {levels}"


# --- resetting the escalations between runs ----------------------------------------------

SNAPSHOT_SQL = """
DROP TABLE IF EXISTS bench_incident_heads;
CREATE TABLE bench_incident_heads AS
SELECT id, event_count, last_event_hash, triage_level, last_activity_at, stale_reminded_at,
       stale_reminders, updated_at
FROM incidents;
ALTER TABLE bench_incident_heads ADD PRIMARY KEY (id);
"""

# Undo everything a sweep wrote. The timeline is append-only (a trigger refuses DELETE):
# replica mode skips triggers (and foreign-key checks) for this session's transaction.
RESET_SQL = """
SET LOCAL session_replication_role = replica;
DELETE FROM timeline_events t USING bench_incident_heads h
 WHERE t.incident_id = h.id AND t.seq > h.event_count;
UPDATE incidents i
   SET event_count = h.event_count, last_event_hash = h.last_event_hash,
       triage_level = h.triage_level, last_activity_at = h.last_activity_at,
       stale_reminded_at = h.stale_reminded_at, stale_reminders = h.stale_reminders,
       updated_at = h.updated_at
  FROM bench_incident_heads h
 WHERE i.id = h.id AND i.event_count <> h.event_count;
DELETE FROM escalations;
DELETE FROM notifications;
DELETE FROM outbox_events;
UPDATE actions SET escalation_level = 0, updated_at = created_at WHERE escalation_level > 0
   AND status NOT IN ('completed', 'cancelled', 'rejected');
"""


async def _snapshot(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SNAPSHOT_SQL)
    finally:
        await conn.close()


async def _reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(RESET_SQL)
        await conn.execute(
            "VACUUM ANALYZE actions, incidents, timeline_events, escalations, notifications, "
            "outbox_events"
        )
    finally:
        await conn.close()


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Runs:
    """Per run: wall time, this process's CPU and the PostgreSQL backend's CPU (ms)."""

    first: list[tuple[float, float, float]] = field(default_factory=list)
    again: list[tuple[float, float, float]] = field(default_factory=list)

    @staticmethod
    def describe(samples: list[tuple[float, float, float]]) -> str:
        return "; ".join(f"{w:.0f} ms (CPU {c:.0f} + PostgreSQL {b:.0f})" for w, c, b in samples)


def _backend_cpu_ms(pids: Sequence[int]) -> float:
    """User + system CPU of local PostgreSQL backends so far (Linux /proc), ms; 0 for one
    unknown."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
    return total


async def _backend_pids(db: Database, n: int) -> list[int]:
    """The backends of the pool's ``n`` connections (open at once, so each is its own)."""
    async with contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(db.engine.connect()) for _ in range(n)]
        return [int(await conn.scalar(text("SELECT pg_backend_pid()"))) for conn in conns]


async def _timed_sweep(
    db: Database, pids: Sequence[int], world: World
) -> tuple[sweeper.SweepReport, tuple[float, float, float]]:
    wall, cpu, backend = time.perf_counter(), time.process_time(), _backend_cpu_ms(pids)
    report = await sweeper.sweep(db, world.now)
    return report, (
        (time.perf_counter() - wall) * 1000,
        (time.process_time() - cpu) * 1000,
        _backend_cpu_ms(pids) - backend,
    )


def _check(report: sweeper.SweepReport, world: World) -> None:
    kinds = Counter(e.item_type for e in report.escalations)
    levels = Counter(e.level for e in report.escalations)
    if set(kinds) - {"action"} or len(report.escalations) != world.expected_escalations:
        raise RuntimeError(
            f"the sweep escalated {dict(kinds)} (levels {dict(levels)}); expected "
            f"{world.expected_escalations} action item-levels"
        )


async def _measure(url: str, world: World, runs: int) -> Runs:
    """``runs`` times: reset, one sweep (escalates the overdue), one sweep at the same now.

    One long-lived engine with a connection per sweep lane, as the scheduler holds them:
    their prepared statements (and the plans PostgreSQL caches for them) carry over from run
    to run. The collector is set up as in ``rrg serve`` and ``rrg worker``, where sweeps run.
    """
    heap.settle()
    result = Runs()
    lanes = sweeper.POSTGRESQL_LANES
    db = Database(url, pool_size=lanes, max_overflow=0, audit_key=audit_key())
    try:
        pids = await _backend_pids(db, lanes)
        for n in range(runs):
            if n:
                await _reset(url)
            report, took = await _timed_sweep(db, pids, world)
            result.first.append(took)
            _check(report, world)
            again, took = await _timed_sweep(db, pids, world)
            result.again.append(took)
            if again.escalations:
                raise RuntimeError(f"the second sweep escalated {len(again.escalations)} more")
    finally:
        await db.dispose()
    return result


# --- profiling and EXPLAIN -----------------------------------------------------------------

_PARAM = re.compile(r"\$\d+(?:::(?:TIMESTAMP WITH TIME ZONE|[A-Z]+(?:\(\d+\))?))?")
_PARAM_LIST = re.compile(r"\?(?:, \?)+")


def statement_shape(statement: str, width: int = 110) -> str:
    flat = _PARAM_LIST.sub("?…", _PARAM.sub("?", " ".join(statement.split())))
    return flat[:width]


@dataclass
class Profile:
    """Every statement an engine runs: count and time per shape, and the raw statements."""

    counts: Counter[str] = field(default_factory=Counter)
    ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    statements: list[tuple[str, Any]] = field(default_factory=list)

    def report(self, wall_ms: float, top: int = 12) -> list[str]:
        total = sum(self.ms.values())
        lines = [
            f"  {sum(self.counts.values())} statements, {total:.1f} ms waiting on the database "
            f"of {wall_ms:.1f} ms wall (the rest is Python: ORM, hashing, building rows)",
            f"  {'count':>6} {'total ms':>9} {'mean ms':>8}  statement",
        ]
        for shape, ms in sorted(self.ms.items(), key=lambda kv: -kv[1])[:top]:
            n = self.counts[shape]
            lines.append(f"  {n:>6} {ms:>9.1f} {ms / n:>8.3f}  {shape}")
        return lines


@contextmanager
def profiled(db: Database) -> Iterator[Profile]:
    profile = Profile()
    engine = db.engine.sync_engine

    def before(
        conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, _many: bool
    ) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())
        profile.statements.append((statement, params))

    def after(
        conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        took = (time.perf_counter() - conn.info["bench_started"].pop()) * 1000
        shape = statement_shape(statement)
        profile.counts[shape] += 1
        profile.ms[shape] += took

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield profile
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def claim_statement(profile: Profile) -> tuple[str, Any]:
    """The select of ``_claim_actions``, as the sweep sent it (SQL and parameters)."""
    for statement, params in profile.statements:
        flat = " ".join(statement.split())
        if "FROM actions JOIN incidents" in flat and "FOR UPDATE OF actions SKIP LOCKED" in flat:
            return statement, params
    raise RuntimeError("the sweep ran no action-claim query")


async def _profile_sweep(url: str, world: World, out: list[str]) -> tuple[str, Any]:
    """One sweep and one re-sweep under the statement profiler, in one lane (each lane sends
    the same statements; side by side their times would overlap); returns the claim query."""
    db = Database(url, pool_size=1, max_overflow=0, audit_key=audit_key())
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        for label in ("first sweep", "empty re-sweep"):
            with profiled(db) as profile:
                start = time.perf_counter()
                report = await sweeper.sweep(db, world.now, lanes=1)
                wall = (time.perf_counter() - start) * 1000
            if label == "first sweep":
                _check(report, world)
                claim = claim_statement(profile)
            out.append(f"{NAME}: statement profile, {label} ({len(report.escalations)} escalated):")
            out.extend(profile.report(wall))
    finally:
        await db.dispose()
    return claim


async def explain_claim(url: str, claim: tuple[str, Any], label: str, out: list[str]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) the claim, custom and generic plan, rolled back."""
    statement, params = claim
    db = Database(url, pool_size=1, max_overflow=0)
    try:
        async with db.engine.connect() as conn:
            result = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
            plan = "\n".join(str(r[0]) for r in result)
            await conn.rollback()
    finally:
        await db.dispose()
    out.append(f"-- {label}: EXPLAIN (ANALYZE, BUFFERS) of the action claim, custom plan:")
    out.append(plan)
    used = "USES" if CLAIM_INDEX in plan else "does NOT use"
    summary = f"{label}, custom plan: {used} {CLAIM_INDEX}; {_summary(plan)}"
    out.append(f"-- {summary}")
    raw = await asyncpg.connect(url)
    transaction = raw.transaction()
    await transaction.start()
    try:
        await raw.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await raw.execute(f"PREPARE bench_claim AS {statement}")
        args = ", ".join(_literal(p) for p in params)
        rows = await raw.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_claim({args})")
        generic = "\n".join(str(r[0]) for r in rows)
    finally:
        await transaction.rollback()
        await raw.close()
    out.append(f"-- {label}: the same statement as a generic plan:")
    out.append(generic)
    used = "USES" if CLAIM_INDEX in generic else "does NOT use"
    out.append(f"-- {label}, generic plan: {used} {CLAIM_INDEX}; {_summary(generic)}")
    return summary


# --- the benchmark -------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"{NAME}: {message}", file=sys.stderr)


def _scale(url: str, world: World, label: str, out: list[str]) -> tuple[Runs, str, str]:
    """Measure at the current size; profile; EXPLAIN after and before a sweep. Leaves the
    database reset (the overdue actions at level 0)."""
    load = os.getloadavg()[0]
    runs = asyncio.run(_measure(url, world, RUNS))
    load = max(load, os.getloadavg()[0])
    _log(f"{label}: first sweep {Runs.describe(runs.first)}")
    _log(f"{label}: re-sweep {Runs.describe(runs.again)}")
    _log(f"{label}: 1-min load average up to {load:.1f} on {os.cpu_count()} CPUs while measuring")
    asyncio.run(_reset(url))
    claim = asyncio.run(_profile_sweep(url, world, out))
    after = asyncio.run(explain_claim(url, claim, f"{label}, after the sweep", out))
    asyncio.run(_reset(url))
    before = asyncio.run(explain_claim(url, claim, f"{label}, before the sweep", out))
    return runs, before, after


def _median(samples: list[tuple[float, float, float]], cpu: bool = False) -> float:
    return median([c + b if cpu else w for w, c, b in samples])


def run() -> list[Figure]:
    url = database_url("sweep")
    fresh_database(url)
    shape = QUICK_SHAPE if QUICK else Shape()
    world = asyncio.run(seed(url, shape))
    asyncio.run(_snapshot(url))
    _log(f"seeded in {world.seconds:.1f} s ({describe(world)})")
    _log(f"expected from the first sweep: {world.expected_escalations:,} action item-levels")
    out: list[str] = []
    small_label = f"{shape.open_actions // 1000:,}k open"
    small, small_before, small_after = _scale(url, world, small_label, out)
    extra = LARGE_OPEN - shape.open_actions
    large_label = f"{LARGE_OPEN // 1000:,}k open"
    added = asyncio.run(add_open_actions(url, world, extra))
    _log(f"added {extra:,} open actions (not yet due) in {added:.1f} s")
    large, large_before, large_after = _scale(url, world, large_label, out)
    print("\n".join(out), file=sys.stderr)
    for line in (small_before, small_after, large_before, large_after):
        _log(line)
    f200, fbig = _median(small.first), _median(large.first)
    c200, cbig = _median(small.first, cpu=True), _median(large.first, cpu=True)
    a200, abig = _median(small.again), _median(large.again)
    base = small_label
    return [
        Figure(NAME, f"sweep, {base} / 2,000 overdue (median of {RUNS})", f200, "ms"),
        Figure(NAME, f"sweep, {large_label} / same 2,000 overdue ({fbig / f200 - 1:+.0%})", fbig,
               "ms", f200, base),
        Figure(NAME, f"sweep CPU (client + PostgreSQL backend), {base}", c200, "ms"),
        Figure(NAME, f"sweep CPU, {large_label} ({cbig / c200 - 1:+.0%})", cbig, "ms", c200, base),
        Figure(NAME, f"empty re-sweep, {base}", a200, "ms"),
        Figure(NAME, f"empty re-sweep, {large_label}", abig, "ms", a200, base),
    ]  # fmt: skip
