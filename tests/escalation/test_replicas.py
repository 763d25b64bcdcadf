"""Several replicas sweeping the same overdue work at once (SPEC §4): each (item, level) —
1,000 overdue actions, untriaged and silent incidents — is escalated exactly once, by
concurrent sweeps in one process (each on its own connection pool) and by separate OS
processes running ``rrg sweep``; the timeline hash chains stay intact.

PostgreSQL is the replicated deployment (``FOR UPDATE SKIP LOCKED`` claims and conditional
updates); SQLite runs the same scenarios too, serialised by its writer lock.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from app.actions.models import Action
from app.db import Database
from app.escalation.sweep import SweepReport, sweep
from app.incidents.models import Incident
from app.timeline import service as timeline
from tests.conftest import REPO_ROOT, TEST_AUDIT_KEY, rrg_env
from tests.escalation.helpers import DAY, HOUR, T0, Clock, Team, consistent_trail, keys

N_INCIDENTS, PER_INCIDENT = 20, 50  # 1,000 overdue actions
N_ACTIONS = N_INCIDENTS * PER_INCIDENT
N_UNTRIAGED = N_SILENT = 10  # SEV1 incidents left in reported, SEV2 responding ones gone quiet
TOTAL = 3 * N_ACTIONS + 2 * N_UNTRIAGED + N_SILENT
DUE = T0 + DAY
AT = DUE + 24 * HOUR  # SEV2: every action has crossed levels 1, 2 and 3
MINISTRIES = ("DOE", "METI", "JOINT")

pytestmark = pytest.mark.slow


class Seeded:
    def __init__(self) -> None:
        self.actions: list[uuid.UUID] = []
        self.untriaged: list[uuid.UUID] = []
        self.silent: list[uuid.UUID] = []

    def expected(self) -> Counter[tuple[str, str, int]]:
        return Counter(
            [("action", str(a), level) for a in self.actions for level in (1, 2, 3)]
            + [("triage", str(i), level) for i in self.untriaged for level in (1, 2)]
            + [("stale", str(i), 1) for i in self.silent]
        )


async def seed_overdue(db: Database, team: Team, start: datetime = T0) -> Seeded:
    """N_ACTIONS approved SEV2 actions due a day after ``start``, spread over N_INCIDENTS
    triaged incidents, plus untriaged and silent incidents reported at ``start`` (all
    inserted in bulk)."""
    seeded = Seeded()
    incidents: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    kinds = ["triaged"] * N_INCIDENTS + ["reported"] * N_UNTRIAGED + ["responding"] * N_SILENT
    for i, status in enumerate(kinds):
        incident_id = uuid.uuid4()
        if status == "reported":
            seeded.untriaged.append(incident_id)
        elif status == "responding":
            seeded.silent.append(incident_id)
        incidents.append(
            {
                "id": incident_id,
                "number": i + 1,
                "key": f"RRG-{i + 1:04d}",
                "title": f"Rare-earth magnet supply disruption {i + 1}",
                "summary": "",
                "category": "export_control",
                "affected_sectors": [],
                "days_of_cover": {},
                "sources": [],
                "tlp": "GREEN",
                "severity": "SEV1" if status == "reported" else "SEV2",
                "status": status,
                "reporter_id": team.reporter.id,
                "reporter_ministry_id": team.reporter.user.ministry_id,
                "doe_owner_id": team.doe_owner.id,
                "meti_owner_id": team.meti_owner.id,
                "reported_at": start,
                "triaged_at": None if status == "reported" else start,
                "last_activity_at": start,
                "created_at": start,
                "updated_at": start,
                "version": 1,
                "event_count": 0,
                "last_event_hash": "",
            }
        )
        for j in range(PER_INCIDENT if status == "triaged" else 0):
            ministry = MINISTRIES[j % 3]
            actions.append(
                {
                    "id": uuid.uuid4(),
                    "incident_id": incident_id,
                    "title": f"Action {i + 1}.{j + 1}",
                    "description": "",
                    "kind": "other",
                    "owning_ministry": ministry,
                    "assignee_id": (team.meti_assignee if ministry == "METI" else team.assignee).id,
                    "priority": "medium",
                    "due_at": start + DAY,
                    "status": "approved",
                    "escalation_level": 0,
                    "ladder_round": 0,
                    "created_by_id": team.doe_lead.id,
                    "approved_at": start,
                    "created_at": start,
                    "updated_at": start,
                    "version": 1,
                }
            )
    async with db.unit_of_work() as session:
        await session.execute(insert(Incident), incidents)
        await session.execute(insert(Action), actions)
    seeded.actions = [a["id"] for a in actions]
    return seeded


async def assert_each_level_once(db: Database, seeded: Seeded) -> None:
    found = await consistent_trail(db)
    assert found.ledger_keys() == seeded.expected()
    assert len(found.events) == len(found.outbox) == TOTAL
    for action_id in seeded.actions[:: PER_INCIDENT // 5]:  # a sample: levels in timeline order
        assert found.levels_in_timeline(str(action_id)) == [1, 2, 3]
    for incident_id in seeded.untriaged:
        assert found.levels_in_timeline(str(incident_id)) == [1, 2]
    async with db.unit_of_work(readonly=True) as session:
        levels = (
            await session.execute(
                select(Action.escalation_level, func.count()).group_by(Action.escalation_level)
            )
        ).all()
        assert [tuple(row) for row in levels] == [(3, N_ACTIONS)]
        # Every incident's hash chain is intact despite concurrent appenders.
        assert await timeline.verify(session) == []
    assert (await sweep(db, AT)).escalations == []


async def test_concurrent_sweeps_on_separate_pools_escalate_each_level_once(
    db: Database, frozen: Clock, team: Team, database_url: str
):
    seeded = await seed_overdue(db, team)
    replicas = [
        Database(database_url, pool_size=2, max_overflow=2, audit_key=TEST_AUDIT_KEY.encode())
        for _ in range(4)
    ]
    started = time.monotonic()
    try:
        reports: list[SweepReport] = await asyncio.gather(*(sweep(r, AT) for r in replicas))
    finally:
        for replica in replicas:
            await replica.dispose()
    elapsed = time.monotonic() - started
    emitted = [key for report in reports for key in keys(report)]
    assert len(emitted) == TOTAL
    assert len(set(emitted)) == len(emitted)  # no (item, level) reported twice
    await assert_each_level_once(db, seeded)
    print(f"4 sweepers: {[len(r.escalations) for r in reports]} item-levels in {elapsed:.1f}s")


SUMMARY = re.compile(r"^escalated (\d+) item-levels at ", re.MULTILINE)


async def rrg_sweep(database_url: str, at: datetime) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "sweep",
        "--at",
        at.isoformat(),
        cwd=REPO_ROOT,
        env=rrg_env(database_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_concurrent_sweep_processes_escalate_each_level_once(
    db: Database, frozen: Clock, team: Team, database_url: str
):
    seeded = await seed_overdue(db, team)
    results = await asyncio.gather(*(rrg_sweep(database_url, AT) for _ in range(3)))
    counts = []
    for returncode, out, err in results:
        assert returncode == 0, out + err
        match = SUMMARY.search(out)
        assert match, out
        counts.append(int(match.group(1)))
        # One line per escalation, then the summary.
        assert len(out.splitlines()) == counts[-1] + 1
    assert sum(counts) == TOTAL
    await assert_each_level_once(db, seeded)
    print(f"3 processes: {counts} item-levels")
