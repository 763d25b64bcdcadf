"""Escalation that no policy or data can break (SPEC §4): policy rules through the API, sweeps
that end and remind each item at most once a sweep (policies at their limits, hostile values
written straight into the database), failures isolated to their item or severity, actions of
rejected or closed incidents left alone (and the claim still served by its partial index),
and RED incidents nobody named can triage escalated to their reporter."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event, insert, literal_column, select, text, update

from app.actions.models import Action
from app.db import Database, table_of
from app.escalation import policies as policy_store
from app.escalation.models import EscalationPolicy, EscalationPolicyChange
from app.escalation.policies import Loaded, Policy
from app.escalation.sweep import TRIAGER_NEEDED, SweepReport, sweep
from app.incidents.models import Incident
from app.timeline.models import TimelineEvent
from tests.conftest import MakeActor, assert_problem, run_rrg
from tests.escalation.helpers import (
    DAY,
    HOUR,
    T0,
    Clock,
    Team,
    action_state,
    approved_action,
    consistent_trail,
    keys,
    open_incident,
    reported,
)

POLICIES = "/api/v1/escalation-policies"
FIELDS = ("triage_within", "level2_after", "level3_after", "update_every")
MINUTE = timedelta(minutes=1)
DEFAULTS = {
    "SEV1": ("PT1H", "PT2H", "PT6H", "PT12H"),
    "SEV2": ("PT4H", "PT8H", "P1D", "P1D"),
    "SEV3": ("P1D", "P2D", "P5D", "P3D"),
    "SEV4": ("P3D", "P5D", "P10D", "P7D"),
}


def failure_totals() -> Counter[tuple[str, str]]:
    """This process's sweep failures by (kind, severity), as /metrics exposes them."""
    totals: Counter[tuple[str, str]] = Counter()
    for family in REGISTRY.collect():
        if family.name == "rrg_sweep_failures":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = (sample.labels["kind"], sample.labels["severity"])
                    totals[key] = int(sample.value)
    return totals


def policy(*values: Any) -> dict[str, Any]:
    return dict(zip(FIELDS, values, strict=True))


async def swept(db: Database, at: datetime, **options: Any) -> SweepReport:
    """One sweep, which must end (a sweep that loops fails the test instead of hanging it)."""
    return await asyncio.wait_for(sweep(db, at, **options), timeout=120)


async def as_dba(db: Database, *statements: Any) -> None:
    """Write straight into the database, past every API check."""
    async with db.engine.begin() as conn:
        for statement in statements:
            await conn.execute(statement)


def stored_policy(severity: str, **seconds: int) -> Any:
    table = table_of(EscalationPolicy)
    return (
        update(table)
        .where(table.c.severity == severity)
        .values({f"{name}_seconds": value for name, value in seconds.items()})
    )


def failures_of(report: SweepReport) -> set[tuple[str, str, str | None]]:
    return {
        (f.kind, f.severity, None if f.item_id is None else str(f.item_id)) for f in report.failures
    }


# --- policy rules through the API ----------------------------------------------------------------


async def test_policy_durations_are_whole_minutes_from_one_minute_to_one_year(
    client: httpx.AsyncClient, db: Database, team: Team
):
    admin = team.admin.headers
    refused: list[tuple[dict[str, Any], list[str]]] = [
        (policy("PT59S", "PT2H", "PT6H", "PT12H"), ["triage_within"]),
        (policy(90, "PT2H", "PT6H", "PT12H"), ["triage_within"]),  # seconds, not whole minutes
        (policy("PT1H", 7200.5, "PT6H", "PT12H"), ["level2_after"]),
        # Later than level 2 by half a second, but not in whole minutes as stored.
        (policy("PT1H", "PT2H", "PT2H0.5S", "PT12H"), ["level3_after"]),
        (policy("P366D", "PT2H", "PT6H", "PT12H"), ["triage_within"]),
        (policy("PT1H", "PT2H", "P1YT1M", "PT12H"), ["level3_after"]),
        (policy("PT1H", "PT2H", "PT6H", 31_536_060), ["update_every"]),
        (policy("PT1H", "PT2H", "PT2H", "PT12H"), ["level3_after"]),  # not after level 2
        # Every field at fault is named in one answer.
        (policy("PT0S", "-PT1M", "PT6H", "P2Y"), ["triage_within", "level2_after", "update_every"]),
    ]
    for body, fields in refused:
        response = await client.put(f"{POLICIES}/SEV1", json=body, headers=admin)
        problem = assert_problem(response, 422)
        assert [e["field"] for e in problem["errors"]] == fields, (body, problem)
        assert all(e["location"] == "body" and e["reason"] for e in problem["errors"])
    async with db.unit_of_work(readonly=True) as session:
        assert (await session.scalars(select(EscalationPolicyChange))).all() == []
    listed = (await client.get(POLICIES, headers=admin)).json()["items"]
    assert {p["severity"]: tuple(p[f] for f in FIELDS) for p in listed} == DEFAULTS

    # The limits themselves are accepted, as ISO 8601 durations or seconds.
    shortest = await client.put(
        f"{POLICIES}/SEV1", json=policy("PT1M", 60, "PT2M", "PT1M"), headers=admin
    )
    assert shortest.status_code == 200, shortest.text
    assert tuple(shortest.json()[f] for f in FIELDS) == ("PT1M", "PT1M", "PT2M", "PT1M")
    longest = await client.put(
        f"{POLICIES}/SEV4", json=policy("P1Y", "P364DT23H59M", 31_536_000, "P365D"), headers=admin
    )
    assert longest.status_code == 200, longest.text
    assert tuple(longest.json()[f] for f in FIELDS) == ("P1Y", "P364DT23H59M", "P1Y", "P1Y")


# --- sweeps end, and remind each item at most once a sweep ---------------------------------------


async def test_sweeps_end_and_remind_once_a_sweep_with_policies_at_their_limits(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    shortest = policy("PT1M", "PT1M", "PT2M", "PT1M")
    response = await client.put(f"{POLICIES}/SEV2", json=shortest, headers=team.admin.headers)
    assert response.status_code == 200, response.text
    untriaged = await open_incident(client, team, status="reported")
    silent = await open_incident(client, team, status="responding")
    incident = await open_incident(client, team)
    due = T0 + HOUR
    action = await approved_action(client, team, incident, due_at=due)

    assert keys(await swept(db, T0 + MINUTE)) == [
        ("triage", untriaged["id"], 1),
        ("stale", silent["id"], 1),
    ]
    assert keys(await swept(db, T0 + 2 * MINUTE)) == [
        ("triage", untriaged["id"], 2),
        ("stale", silent["id"], 2),
    ]
    # A sweep a minute later reminds once more; a second sweep at the same time, never.
    assert keys(await swept(db, T0 + 3 * MINUTE)) == [("stale", silent["id"], 3)]
    assert keys(await swept(db, T0 + 3 * MINUTE)) == []
    assert keys(await swept(db, due + 2 * MINUTE)) == [
        ("action", action["id"], n) for n in (1, 2, 3)
    ] + [("stale", silent["id"], 4)]
    # A year of downtime: one reminder, still at most once a sweep.
    assert keys(await swept(db, T0 + 365 * DAY)) == [("stale", silent["id"], 5)]

    # The longest policy: nothing until a year has passed, then each level once.
    longest = policy("P365D", "P364D", "P365D", "P365D")
    response = await client.put(f"{POLICIES}/SEV3", json=longest, headers=team.admin.headers)
    assert response.status_code == 200, response.text
    frozen.set(T0 + 365 * DAY)
    slow = await open_incident(client, team, status="reported", severity="SEV3")
    start = frozen.at
    assert keys(await swept(db, start + 365 * DAY - MINUTE)) == [("stale", silent["id"], 6)]
    assert keys(await swept(db, start + 365 * DAY)) == [
        ("triage", slow["id"], 1),
        ("stale", silent["id"], 7),
    ]
    assert keys(await swept(db, start + 730 * DAY)) == [
        ("triage", slow["id"], 2),
        ("stale", silent["id"], 8),
    ]
    found = await consistent_trail(db)
    assert set(found.ledger_keys().values()) == {1}
    assert found.levels_in_timeline(silent["id"]) == [1, 2, 3, 4, 5, 6, 7, 8]


async def test_hostile_policies_in_the_database_give_way_to_the_spec_defaults(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team, database_url: str
):
    silent = await open_incident(client, team, status="responding")  # SEV2
    untriaged = await open_incident(client, team, status="reported", severity="SEV1")
    sev3 = await open_incident(client, team, severity="SEV3")
    action = await approved_action(client, team, sev3, due_at=T0 + HOUR)
    sev4 = await open_incident(client, team, severity="SEV4")
    late = await approved_action(client, team, sev4, due_at=T0 + HOUR)
    # What no API accepts: a stale interval of zero (a sweep used to remind forever), negative
    # durations, level 3 before level 2, and durations beyond a year.
    await as_dba(
        db,
        stored_policy("SEV2", update_every=0, triage_within=0),
        stored_policy("SEV1", triage_within=-3600, level2_after=-3600, level3_after=-60),
        stored_policy("SEV3", level2_after=48 * 3600, level3_after=3600),
        stored_policy("SEV4", level2_after=2_147_483_000, level3_after=2_147_483_647),
    )
    totals = failure_totals()
    at = T0 + 2 * DAY
    report = await swept(db, at)
    assert failures_of(report) == {("policy", s, None) for s in ("SEV1", "SEV2", "SEV3", "SEV4")}
    errors = {f.severity: f.error for f in report.failures}
    assert "update_every" in errors["SEV2"] and "level3_after" in errors["SEV3"]
    assert all("SPEC §4 defaults apply" in e for e in errors.values())
    for severity in ("SEV1", "SEV2", "SEV3", "SEV4"):
        assert failure_totals()[("policy", severity)] == totals[("policy", severity)] + 1
    # Each item escalated as SPEC §4's defaults say, once: SEV1 triage (1 h) at both levels;
    # the SEV3 action 47 h late is level 1 (level 2 after 48 h); the SEV4 action level 1
    # (level 2 after 5 days); the SEV2 incident reminded once (every 24 h), not forever.
    assert sorted(keys(report)) == sorted(
        [
            ("triage", untriaged["id"], 1),
            ("triage", untriaged["id"], 2),
            ("action", action["id"], 1),
            ("action", late["id"], 1),
            ("stale", silent["id"], 1),
        ]
    )
    again = await swept(db, at)
    assert again.escalations == [] and len(again.failures) == 4
    assert set((await consistent_trail(db)).ledger_keys().values()) == {1}

    # The command line says so too, and exits 1.
    result = await run_rrg(database_url, "sweep", "--at", (at + DAY).isoformat())
    assert result.returncode == 1, result.stdout + result.stderr
    # A day later: the second daily reminder, and the SEV3 action 71 h late reaches level 2.
    assert f"escalated 2 item-levels at {(at + DAY).isoformat()}" in result.stdout
    failed = [line for line in result.stderr.splitlines() if line.startswith("FAILED")]
    assert sorted(line.split(":")[0] for line in failed) == [
        f"FAILED policy {s}" for s in ("SEV1", "SEV2", "SEV3", "SEV4")
    ]


async def test_a_zero_stale_interval_past_every_check_still_reminds_once_a_sweep(
    client: httpx.AsyncClient,
    db: Database,
    frozen: Clock,
    team: Team,
    monkeypatch: pytest.MonkeyPatch,
):
    """The sweep's own guard, without the policy check in front of it: with an interval of
    zero a reminded incident stays due, and used to be claimed again forever."""
    silent = await open_incident(client, team, status="responding")
    other = await open_incident(client, team, status="responding")
    real_load = policy_store.load

    async def zero_interval(session: Any) -> Loaded:
        real = await real_load(session)
        sev2 = real.policies["SEV2"]
        zero = Policy("SEV2", sev2.triage_within, sev2.level2_after, sev2.level3_after, 0 * MINUTE)
        return Loaded({**real.policies, "SEV2": zero}, {})

    monkeypatch.setattr(policy_store, "load", zero_interval)
    for n in (1, 2):
        report = await swept(db, T0 + n * MINUTE, batch_size=1)
        expected = [("stale", silent["id"], n), ("stale", other["id"], n)]
        assert sorted(keys(report)) == sorted(expected)
        assert report.failures == []
    assert set((await consistent_trail(db)).ledger_keys().values()) == {1}


# --- one failure stops nothing else --------------------------------------------------------------


def undecodable_time(backend: str) -> Any:
    """A time the database holds but the service cannot read back."""
    return literal_column("'0044-03-15 BC'" if backend == "postgresql" else "'0044-03-15 garbage'")


async def test_an_item_that_cannot_be_escalated_is_logged_counted_and_the_rest_escalate_once(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team, backend: str
):
    due = T0 + DAY
    sev2 = await open_incident(client, team)
    a, b, c = [
        (await approved_action(client, team, sev2, due_at=due, title=f"Action {n}"))["id"]
        for n in "abc"
    ]
    sev3 = await open_incident(client, team, severity="SEV3")
    d, e = [
        (await approved_action(client, team, sev3, due_at=due, title=f"Action {n}"))["id"]
        for n in "de"
    ]
    untriaged = await open_incident(client, team, status="reported", severity="SEV1")
    first = await swept(db, due)
    assert sorted(keys(first)) == sorted(
        [("action", x, 1) for x in (a, b, c, d, e)]
        + [("triage", untriaged["id"], 1), ("triage", untriaged["id"], 2)]
    )
    actions = table_of(Action)
    await as_dba(
        db,
        # Level reset under an escalated action: its level 1 is in the ledger already, so
        # escalating it again is refused by the ledger's unique key.
        update(actions).where(actions.c.id == uuid.UUID(b)).values(escalation_level=0),
        # A due time the service cannot read.
        update(actions)
        .where(actions.c.id == uuid.UUID(d))
        .values(due_at=undecodable_time(backend)),
    )
    totals = failure_totals()
    at = due + 2 * DAY
    report = await swept(db, at, batch_size=2)
    assert sorted(keys(report)) == sorted(
        [("action", x, n) for x in (a, c) for n in (2, 3)] + [("action", e, 2)]
    )
    assert failures_of(report) == {("action", "SEV2", b), ("action", "SEV3", d)}
    assert failure_totals()[("action", "SEV2")] == totals[("action", "SEV2")] + 1
    assert failure_totals()[("action", "SEV3")] == totals[("action", "SEV3")] + 1
    assert await action_state(db, b) == (0, 0)  # nothing half-written
    assert await action_state(db, d) == (1, 0)

    # Every later sweep reports them again and does nothing twice.
    again = await swept(db, at)
    assert again.escalations == []
    assert failures_of(again) == {("action", "SEV2", b), ("action", "SEV3", d)}
    found = await consistent_trail(db)
    assert set(found.ledger_keys().values()) == {1}
    assert found.ledger_keys()[("action", a, 3)] == found.ledger_keys()[("action", e, 2)] == 1


async def test_severities_whose_thresholds_cannot_be_computed_fail_alone(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    """A sweep as if at 2 January of year 1 (``rrg sweep --at 0001-01-02T00:00:00Z``): the
    thresholds of SEV3 and SEV4 fall before year 1, so those severities are left out of
    every kind of item; the SEV1 action due twelve hours earlier still escalates."""
    incident = await open_incident(client, team, severity="SEV1")
    action = await approved_action(client, team, incident, due_at=T0 + DAY)
    actions = table_of(Action)
    await as_dba(
        db,
        update(actions)
        .where(actions.c.id == uuid.UUID(action["id"]))
        .values(due_at=datetime(1, 1, 1, 12, tzinfo=UTC)),
    )
    report = await swept(db, datetime(1, 1, 2, tzinfo=UTC))
    assert keys(report) == [("action", action["id"], n) for n in (1, 2, 3)]
    assert failures_of(report) == {
        (kind, severity, None)
        for kind in ("triage", "action", "stale")
        for severity in ("SEV3", "SEV4")
    }
    assert all("OverflowError" in f.error for f in report.failures)


# --- actions of rejected or closed incidents -----------------------------------------------------


async def test_actions_of_rejected_or_closed_incidents_never_escalate(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    due = T0 + DAY
    live = await open_incident(client, team)
    kept = await approved_action(client, team, live, due_at=due)
    ended: list[str] = []
    for status in ("rejected", "closed"):
        incident = await open_incident(client, team)
        ended.append((await approved_action(client, team, incident, due_at=due))["id"])
        incidents = table_of(Incident)
        # Left open by an older release or written by hand: the sweep must still skip them.
        await as_dba(
            db,
            update(incidents)
            .where(incidents.c.id == uuid.UUID(incident["id"]))
            .values(status=status),
        )
    report = await swept(db, due + 30 * DAY)
    assert keys(report) == [("action", kept["id"], n) for n in (1, 2, 3)]
    for action_id in ended:
        assert await action_state(db, action_id) == (0, 0)


@pytest.mark.slow
@pytest.mark.postgresql_only  # reads PostgreSQL's EXPLAIN
async def test_the_action_claim_is_served_by_its_partial_index(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    incident = await open_incident(client, team)
    await approved_action(client, team, incident, due_at=T0 + DAY)
    # History the claim must not read: open actions already at the top level, and
    # finished ones, all long overdue.
    rows = [
        {
            "id": uuid.uuid4(),
            "incident_id": uuid.UUID(incident["id"]),
            "title": f"History {n}",
            "description": "",
            "kind": "other",
            "owning_ministry": "DOE",
            "priority": "medium",
            "due_at": T0 - n * MINUTE,
            "status": "in_progress" if n % 2 else "completed",
            "escalation_level": 3,
            "ladder_round": 0,
            "created_by_id": team.doe_lead.id,
            "created_at": T0,
            "updated_at": T0,
            "version": 1,
        }
        for n in range(1, 5001)
    ]
    async with db.engine.begin() as conn:
        await conn.execute(insert(table_of(Action)), rows)
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("ANALYZE actions"))
        await conn.execute(text("ANALYZE incidents"))

    claims: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if "FOR UPDATE OF actions SKIP LOCKED" in statement:
            claims.append((statement, params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        report = await swept(db, T0 + 30 * DAY)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    assert len(report.escalations) == 3 and claims
    statement, params = claims[0]
    assert "incidents.status NOT IN ('closed', 'rejected')" in " ".join(statement.split())
    async with db.engine.connect() as conn:
        # Whatever the planner's estimates, a sequential scan must not be its only way in.
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        custom = "\n".join(
            str(r[0]) for r in await conn.exec_driver_sql("EXPLAIN " + statement, params)
        )
        # The plan a long-lived prepared statement may switch to after five runs.
        await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.exec_driver_sql(f"PREPARE rrg_claim AS {statement}")
        try:
            args = ", ".join(_sql_literal(p) for p in params)
            generic = "\n".join(
                str(r[0]) for r in await conn.exec_driver_sql(f"EXPLAIN EXECUTE rrg_claim({args})")
            )
        finally:
            await conn.exec_driver_sql("DEALLOCATE rrg_claim")
        await conn.rollback()
    for plan in (custom, generic):
        assert "ix_actions_escalatable_due_at" in plan, plan
        assert "Seq Scan on actions" not in plan, plan


def _sql_literal(value: Any) -> str:
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


# --- RED incidents nobody named can triage -------------------------------------------------------


async def test_a_red_incident_nobody_named_can_triage_escalates_to_its_reporter(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team, make_actor: MakeActor
):
    reporter = team.reporter  # a DOE responder: may see it, may not triage it

    async def red(title: str, participant: Any = None) -> dict[str, Any]:
        incident = await open_incident(
            client, team, status="reported", severity="SEV1", tlp="RED", title=title
        )
        if participant is not None:
            added = await client.post(
                f"/api/v1/incidents/{incident['id']}/participants",
                json={"user_id": str(participant.id)},
                headers=reporter.headers,
            )
            assert added.status_code == 200, added.text
        return incident

    alone = await red("Terbium licence, reporter alone")
    with_lead = await red("Terbium licence, a METI lead named", team.meti_lead)
    with_chair = await red("Terbium licence, a co-chair named", team.doe_chair)
    named_lead = await make_actor("lead", "DOE")
    deactivated = await red("Terbium licence, named lead deactivated", named_lead)
    gone = await client.patch(
        f"/api/v1/users/{named_lead.id}", json={"active": False}, headers=team.admin.headers
    )
    assert gone.status_code == 200, gone.text

    def mail(*actors: Any) -> frozenset[str]:
        return frozenset(a.user.email for a in actors)

    level1 = await swept(db, T0 + HOUR)
    assert sorted(reported(level1)) == sorted(
        [
            ("triage", alone["id"], 1, mail(reporter)),
            ("triage", with_lead["id"], 1, mail(team.meti_lead)),
            ("triage", with_chair["id"], 1, mail(reporter)),
            ("triage", deactivated["id"], 1, mail(reporter)),
        ]
    )
    level2 = await swept(db, T0 + 2 * HOUR)
    assert sorted(reported(level2)) == sorted(
        [
            ("triage", alone["id"], 2, mail(reporter)),
            ("triage", with_lead["id"], 2, frozenset()),  # the co-chairs may not see it
            ("triage", with_chair["id"], 2, mail(team.doe_chair, reporter)),
            ("triage", deactivated["id"], 2, mail(reporter)),
        ]
    )
    found = await consistent_trail(db)
    needed = {e.incident_id: e.data.get("needed") for e in found.events if e.data["level"] == 1}
    assert needed == {
        uuid.UUID(alone["id"]): TRIAGER_NEEDED,
        uuid.UUID(with_lead["id"]): None,
        uuid.UUID(with_chair["id"]): TRIAGER_NEEDED,
        uuid.UUID(deactivated["id"]): TRIAGER_NEEDED,
    }
    # What the reporter reads: what is needed, in the notice itself.
    inbox = await client.get("/api/v1/me/notifications", headers=reporter.headers)
    assert inbox.status_code == 200, inbox.text
    notes = [n for n in inbox.json()["items"] if n["data"]["incident_key"] == alone["key"]]
    assert sorted(n["data"]["level"] for n in notes) == [1, 2]
    for note in notes:
        assert note["data"]["needed"] == TRIAGER_NEEDED
        assert "add a lead of DOE or METI as a participant" in note["title"]
    # The timeline says who was told.
    async with db.unit_of_work(readonly=True) as session:
        told = await session.scalars(
            select(TimelineEvent.data)
            .where(
                TimelineEvent.incident_id == uuid.UUID(alone["id"]),
                TimelineEvent.type == "incident.escalated",
            )
            .order_by(TimelineEvent.seq)
        )
        assert [d["recipients"] for d in told] == [[str(reporter.id)]] * 2
