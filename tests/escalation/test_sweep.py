"""The escalation sweep (SPEC §4): the action ladder, triage overdue, stale updates,
downtime, a crash before commit, dry runs and the ``rrg sweep`` command.

The clock is moved (or ``now`` is passed to the sweep); nothing sleeps. After each
scenario ``consistent_trail`` checks that every ledger row has exactly one timeline event,
one outbox event and one notification per recipient, and nothing else was written.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import Uuid, event, func, literal, select

from app.actions.models import Action
from app.db import Database, table_of
from app.escalation import sweep as sweep_module
from app.escalation.models import Escalation
from app.escalation.sweep import sweep
from app.notifications.models import Notification
from app.outbox.models import OutboxEvent
from app.timeline.models import TimelineEvent
from tests.conftest import Actor, run_rrg
from tests.escalation.helpers import (
    DAY,
    HOUR,
    SECOND,
    T0,
    Clock,
    Team,
    act,
    action_state,
    approved_action,
    comment,
    consistent_trail,
    get_action,
    keys,
    open_incident,
    reported,
    state,
    triage_level,
)
from tests.incidents.helpers import move


class Crash(BaseException):
    """The process dying mid-sweep (as a kill would): not a failure the sweep handles."""


def emails(*actors: Actor) -> frozenset[str]:
    return frozenset(a.user.email for a in actors)


def ids(*actors: Actor) -> set[uuid.UUID]:
    return {a.id for a in actors}


async def nothing_at(db: Database, *times: Any) -> None:
    for at in times:
        report = await sweep(db, at)
        assert report.escalations == [], (at, reported(report))


# --- the action ladder -------------------------------------------------------------------------


async def test_action_ladder_emits_each_level_once(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    incident = await open_incident(client, team)  # SEV2: level 2 after 8 h, level 3 after 24 h
    due = T0 + 2 * DAY
    action = await approved_action(client, team, incident, due_at=due)
    aid = action["id"]
    level1 = emails(team.assignee, team.doe_owner, team.meti_owner)

    await nothing_at(db, T0, due - SECOND)
    assert reported(await sweep(db, due)) == [("action", aid, 1, level1)]
    await nothing_at(db, due, due + 8 * HOUR - SECOND)
    assert await action_state(db, aid) == (1, 0)
    assert reported(await sweep(db, due + 8 * HOUR)) == [
        ("action", aid, 2, emails(team.doe_lead))  # DOE action: DOE leads only
    ]
    await nothing_at(db, due + 8 * HOUR, due + 24 * HOUR - SECOND)
    assert reported(await sweep(db, due + 24 * HOUR)) == [
        ("action", aid, 3, emails(team.doe_chair, team.meti_chair))
    ]
    await nothing_at(db, due + 24 * HOUR, due + 25 * HOUR, due + 365 * DAY)

    found = await consistent_trail(db)
    assert found.ledger_keys() == Counter({("action", aid, n): 1 for n in (1, 2, 3)})
    assert found.rounds(aid) == [(0, 1), (0, 2), (0, 3)]
    assert [e.at for e in found.ledger] == [due, due + 8 * HOUR, due + 24 * HOUR]
    assert found.levels_in_timeline(aid) == [1, 2, 3]
    assert found.notified(aid, 1) == ids(team.assignee, team.doe_owner, team.meti_owner)
    assert found.notified(aid, 2) == ids(team.doe_lead)
    assert found.notified(aid, 3) == team.chairs
    assert len(found.notifications) == 6 and len(found.outbox) == 3
    assert all(o.type == "action.escalated" for o in found.outbox)
    assert sorted(o.payload["level"] for o in found.outbox) == [1, 2, 3]
    assert {o.payload["action_id"] for o in found.outbox} == {aid}
    assert {o.payload["incident_key"] for o in found.outbox} == {incident["key"]}

    # The same through the API.
    frozen.set(due + 30 * HOUR)
    body = await get_action(client, team.doe_lead, action)
    assert body["escalation_level"] == 3 and body["overdue"] is True
    timeline = await client.get(
        f"/api/v1/incidents/{incident['id']}/timeline",
        params={"type": "action.escalated"},
        headers=team.doe_lead.headers,
    )
    assert timeline.status_code == 200, timeline.text
    events = timeline.json()["items"]
    assert [e["data"]["level"] for e in events] == [1, 2, 3]
    assert {e["data"]["action_id"] for e in events} == {aid}
    inbox = await client.get("/api/v1/me/notifications", headers=team.assignee.headers)
    assert [(n["type"], n["data"]["level"]) for n in inbox.json()["items"]] == [
        ("action.escalated", 1)
    ]
    assert incident["key"] in inbox.json()["items"][0]["title"]


@pytest.fixture
def one_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweeps on PostgreSQL in one lane, so a batch's statements can be counted (with two,
    each lane claims its own batches, and which lane an incident falls in is a hash)."""
    monkeypatch.setattr(sweep_module, "POSTGRESQL_LANES", 1)


async def test_a_sweep_batch_costs_the_same_statements_whatever_its_size(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team, one_lane: None
):
    """Everything a batch writes is set-based: escalating four actions on two incidents
    takes exactly the statements that escalating one does. On PostgreSQL an executemany
    counts once per row (the server runs the statement for each); SQLite runs it in
    process."""
    due = T0 + DAY
    per_row = db.engine.dialect.name == "postgresql"

    async def statements_of_sweep(at: Any) -> tuple[int, int]:
        seen: list[str] = []

        def count(_c: Any, _k: Any, statement: str, params: Any, _x: Any, many: bool) -> None:
            seen.extend([statement] * (len(params) if many and per_row else 1))

        engine = db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            report = await sweep(db, at)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(report.escalations), len(seen)

    first = await open_incident(client, team)
    await approved_action(client, team, first, due_at=due)
    one = await statements_of_sweep(due)
    second = await open_incident(client, team)
    later = due + HOUR
    for incident in (first, first, second, second):
        await approved_action(client, team, incident, due_at=later)
    four = await statements_of_sweep(later)
    assert (one[0], four[0]) == (1, 4)
    assert four[1] == one[1]
    found = await consistent_trail(db)
    assert len(found.notifications) == 5 * 3  # assignee and both owners, each time


# The statements of a sweep that escalates actions in one batch: the directory (leads,
# co-chairs, policies); the triage claim; the action claim and the claimed rows (read apart,
# so an item that cannot be read fails alone); the level update; the recipients' visibility
# and addresses; the ledger; the timeline (heads, events, new heads); the outbox (snapshots,
# events); the notifications; the stale claim (the action claim took fewer than its limit,
# so there is nothing left to claim again). The subscriptions come from the process cache (a
# server's sweep, ``listening``); on PostgreSQL a small batch's timeline and outbox events
# travel in one statement, which also carries the NOTIFY.
SWEEP_BATCH = {"sqlite": 17, "postgresql": 16}
NOTIFIES = {"sqlite": 0, "postgresql": 1}


async def test_a_sweep_batch_sends_a_fixed_budget_of_statements(
    client: httpx.AsyncClient,
    db: Database,
    frozen: Clock,
    team: Team,
    count_queries: Any,
    backend: str,
    listening: None,
    one_lane: None,
):
    """A statement added to the sweep (a reload, a per-item query) fails here; lower the
    budget when a statement goes away."""
    due = T0 + DAY
    for _ in range(3):
        await approved_action(client, team, await open_incident(client, team), due_at=due)
    counter = count_queries()
    report = await sweep(db, due)
    assert len(report.escalations) == 3
    assert len(counter.queries) == SWEEP_BATCH[backend], counter.queries
    assert sum("pg_notify" in q for q in counter.queries) == NOTIFIES[backend]


@pytest.mark.postgresql_only
async def test_lanes_share_out_the_incidents_and_every_item_is_escalated_once(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    """On PostgreSQL a sweep runs two lanes side by side: each claims the items of its own
    incidents (an incident's actions never split between lanes, which would make one lane
    wait on the other's chain head), and together they claim everything due."""
    due = T0 + DAY
    by_incident: dict[str, set[str]] = {}
    for _ in range(8):
        incident = await open_incident(client, team)
        by_incident[incident["id"]] = {
            (await approved_action(client, team, incident, due_at=due))["id"] for _ in range(2)
        }
    async with db.unit_of_work(readonly=True) as session:
        directory = await sweep_module.load_directory(session)
    phase = next(p for p in sweep_module.PHASES if p.kind == "action")
    claim = phase.claim_for(directory.policies, due, 100, sweep_module.SweepReport(due, True))
    assert claim is not None
    lanes = sweep_module.POSTGRESQL_LANES
    claimed: list[set[str]] = []
    for lane in range(lanes):
        async with db.unit_of_work(commit=False) as session:
            pairs = await phase.claim(session, replace(claim, lane=lane, lanes=lanes))
        claimed.append({str(item_id) for item_id, _ in pairs})
    everything = set().union(*by_incident.values())
    assert sum(len(c) for c in claimed) == len(everything) == 16
    assert set().union(*claimed) == everything
    for actions in by_incident.values():
        assert sum(1 for c in claimed if actions <= c) == 1, claimed
    # The hash spreads incidents over every lane (fixed ids, so this cannot flake).
    async with db.unit_of_work(readonly=True) as session:
        spread = {
            await session.scalar(
                select(sweep_module._lane_of(literal(uuid.UUID(int=n), Uuid), lanes))
            )
            for n in range(16)
        }
    assert spread == set(range(lanes))

    report = await sweep(db, due)
    assert sorted(str(item) for _, item, _ in keys(report)) == sorted(everything)
    found = await consistent_trail(db)
    assert len(found.ledger) == 16


async def test_joint_action_level_2_goes_to_the_leads_of_both_ministries(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    incident = await open_incident(client, team)
    due = T0 + DAY
    joint = await approved_action(
        client, team, incident, due_at=due, owning_ministry="JOINT", assignee=team.meti_assignee
    )
    meti = await approved_action(client, team, incident, due_at=due, owning_ministry="METI")
    report = await sweep(db, due + 8 * HOUR)
    assert sorted(reported(report)) == sorted(
        [
            ("action", joint["id"], 1, emails(team.meti_assignee, team.doe_owner, team.meti_owner)),
            ("action", joint["id"], 2, emails(team.doe_lead, team.meti_lead)),
            ("action", meti["id"], 1, emails(team.meti_assignee, team.doe_owner, team.meti_owner)),
            ("action", meti["id"], 2, emails(team.meti_lead)),
        ]
    )
    found = await consistent_trail(db)
    assert found.notified(joint["id"], 2) == ids(team.doe_lead, team.meti_lead)
    assert found.notified(meti["id"], 2) == ids(team.meti_lead)


async def test_finished_actions_never_escalate(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    incident = await open_incident(client, team)
    due = T0 + DAY
    lead = team.doe_lead
    done = await approved_action(client, team, incident, due_at=due, title="Done early")
    await act(client, lead, done, "in_progress")
    await act(client, lead, done, "completed", outcome="Released 20 t.")
    cancelled = await approved_action(client, team, incident, due_at=due, title="Cancelled")
    await act(client, lead, cancelled, "cancelled", reason="Superseded.")
    late_done = await approved_action(client, team, incident, due_at=due, title="Done late")
    blocked = await approved_action(client, team, incident, due_at=due, title="Blocked")
    await act(client, lead, blocked, "in_progress")
    await act(client, lead, blocked, "blocked", reason="Waiting on customs.")

    # At the due time the two open ones escalate; then one of them is completed.
    first = await sweep(db, due)
    assert sorted(keys(first)) == sorted(
        [("action", late_done["id"], 1), ("action", blocked["id"], 1)]
    )
    frozen.set(due + HOUR)
    await act(client, lead, late_done, "in_progress")
    await act(client, lead, late_done, "completed", outcome="Released, late.")

    later = await sweep(db, due + 365 * DAY)
    assert keys(later) == [("action", blocked["id"], 2), ("action", blocked["id"], 3)]
    await nothing_at(db, due + 400 * DAY)
    assert await action_state(db, done["id"]) == (0, 0)
    assert await action_state(db, cancelled["id"]) == (0, 0)
    assert await action_state(db, late_done["id"]) == (1, 0)
    found = await consistent_trail(db)
    assert found.ledger_keys() == Counter(
        [("action", late_done["id"], 1)] + [("action", blocked["id"], n) for n in (1, 2, 3)]
    )


async def test_a_new_due_time_restarts_the_ladder(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    incident = await open_incident(client, team)
    due = T0 + DAY
    action = await approved_action(client, team, incident, due_at=due)
    aid, url = action["id"], f"/api/v1/actions/{action['id']}"
    assert keys(await sweep(db, due + 8 * HOUR)) == [("action", aid, 1), ("action", aid, 2)]

    async def patch(changes: dict[str, Any]) -> dict[str, Any]:
        etag = (await client.get(url, headers=team.doe_lead.headers)).headers["etag"]
        response = await client.patch(
            url, json=changes, headers={**team.doe_lead.headers, "If-Match": etag}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    # Another change leaves the ladder where it is.
    frozen.set(due + 9 * HOUR)
    assert (await patch({"priority": "medium"}))["escalation_level"] == 2
    assert await action_state(db, aid) == (2, 0)

    # A new due time restarts it from the new deadline, as round 1.
    new_due = frozen.at + DAY
    body = await patch({"due_at": new_due.isoformat()})
    assert body["escalation_level"] == 0 and body["overdue"] is False
    assert await action_state(db, aid) == (0, 1)
    await nothing_at(db, frozen.at, due + 24 * HOUR, new_due - SECOND)
    assert keys(await sweep(db, new_due)) == [("action", aid, 1)]
    await nothing_at(db, new_due, new_due + 8 * HOUR - SECOND)
    assert keys(await sweep(db, new_due + 24 * HOUR)) == [("action", aid, 2), ("action", aid, 3)]
    await nothing_at(db, new_due + 24 * HOUR, new_due + 90 * DAY)

    assert await action_state(db, aid) == (3, 1)
    found = await consistent_trail(db)
    assert found.rounds(aid) == [(0, 1), (0, 2), (1, 1), (1, 2), (1, 3)]
    assert found.levels_in_timeline(aid) == [1, 2, 1, 2, 3]
    assert found.notified(aid, 1) == ids(team.assignee, team.doe_owner, team.meti_owner)
    assert Counter(n.user_id for n in found.notifications)[team.assignee.id] == 2
    assert len(found.outbox) == 5


# --- incidents: triage overdue and stale updates -------------------------------------------------


async def test_triage_overdue_goes_to_both_ministries_leads_then_the_co_chairs(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    sev1 = await open_incident(client, team, status="reported", severity="SEV1")  # within 1 h
    unrated = await open_incident(client, team, status="reported", severity=None)  # SEV3: 24 h
    triaged = await open_incident(client, team, severity="SEV1")
    watched = await open_incident(client, team, status="watch", severity="SEV1")
    leads = emails(team.doe_lead, team.meti_lead)
    chairs = emails(team.doe_chair, team.meti_chair)

    await nothing_at(db, T0, T0 + HOUR - SECOND)
    assert reported(await sweep(db, T0 + HOUR)) == [("triage", sev1["id"], 1, leads)]
    await nothing_at(db, T0 + HOUR, T0 + 2 * HOUR - SECOND)
    assert reported(await sweep(db, T0 + 2 * HOUR)) == [("triage", sev1["id"], 2, chairs)]
    await nothing_at(db, T0 + 2 * HOUR, T0 + 24 * HOUR - SECOND)
    assert reported(await sweep(db, T0 + 24 * HOUR)) == [("triage", unrated["id"], 1, leads)]
    assert reported(await sweep(db, T0 + 48 * HOUR)) == [("triage", unrated["id"], 2, chairs)]
    await nothing_at(db, T0 + 48 * HOUR, T0 + 365 * DAY)

    assert await triage_level(db, sev1["id"]) == 2
    assert await triage_level(db, triaged["id"]) == 0
    assert await triage_level(db, watched["id"]) == 0
    found = await consistent_trail(db)
    assert found.levels_in_timeline(sev1["id"]) == [1, 2]
    assert {e.type for e in found.events} == {"incident.escalated"}
    assert {e.data["reason"] for e in found.events} == {"triage_overdue"}
    assert found.notified(sev1["id"], 1) == ids(team.doe_lead, team.meti_lead)
    assert found.notified(sev1["id"], 2) == team.chairs
    assert {o.type for o in found.outbox} == {"incident.escalated"}

    # Triaging it late stops nothing that was already sent, and starts nothing new.
    frozen.set(T0 + 366 * DAY)
    for ministry, owner in (("DOE", team.doe_owner), ("METI", team.meti_owner)):
        response = await client.put(
            f"/api/v1/incidents/{sev1['id']}/owners/{ministry}",
            json={"user_id": str(owner.id)},
            headers=team.doe_lead.headers,
        )
        assert response.status_code == 200, response.text
    assert (await move(client, team.doe_lead, sev1, "triaged")).status_code == 200
    await nothing_at(db, T0 + 400 * DAY)


async def test_stale_update_reminds_the_owners_once_per_interval(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    incident = await open_incident(client, team, status="responding")  # SEV2: every 24 h
    quiet = await open_incident(client, team, status="responding")
    assert (await move(client, team.doe_lead, quiet, "monitoring")).status_code == 200
    iid, owners = incident["id"], emails(team.doe_owner, team.meti_owner)

    await nothing_at(db, T0 + 24 * HOUR - SECOND)
    assert reported(await sweep(db, T0 + 24 * HOUR)) == [("stale", iid, 1, owners)]
    await nothing_at(db, T0 + 24 * HOUR, T0 + 30 * HOUR, T0 + 48 * HOUR - SECOND)
    assert reported(await sweep(db, T0 + 48 * HOUR)) == [("stale", iid, 2, owners)]
    await nothing_at(db, T0 + 48 * HOUR)

    # A person's comment resets the silence: the next reminder is due 24 h after it
    # (the system's own escalation events do not count as activity).
    frozen.set(T0 + 50 * HOUR)
    await comment(client, team.doe_owner, incident, "Customs cleared the first shipment.")
    await nothing_at(db, T0 + 72 * HOUR, T0 + 74 * HOUR - SECOND)
    assert reported(await sweep(db, T0 + 74 * HOUR)) == [("stale", iid, 3, owners)]
    await nothing_at(db, T0 + 74 * HOUR, T0 + 98 * HOUR - SECOND)

    found = await consistent_trail(db)
    assert found.ledger_keys() == Counter({("stale", iid, n): 1 for n in (1, 2, 3)})
    assert [e.data["reason"] for e in found.events] == ["stale_update"] * 3
    assert [e.data["reminder"] for e in found.events] == [1, 2, 3]
    assert found.notified(iid, 3) == team.owners


# --- downtime ------------------------------------------------------------------------------------


async def test_after_downtime_one_sweep_brings_everything_to_its_level_in_order(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    sev2 = await open_incident(client, team)
    sev3 = await open_incident(client, team, severity="SEV3", title="Cobalt refinery outage")
    back = T0 + 10 * DAY  # when the service comes back

    async def due(incident: dict[str, Any], at: Any, title: str) -> str:
        return str((await approved_action(client, team, incident, due_at=at, title=title))["id"])

    half_way = await due(sev2, T0 + DAY, "escalated before the outage")
    assert keys(await sweep(db, T0 + DAY)) == [("action", half_way, 1)]
    very_late = await due(sev2, T0 + HOUR, "very late")  # 10 days late → level 3
    ten_hours = await due(sev2, back - 10 * HOUR, "ten hours late")  # → level 2
    one_hour = await due(sev2, back - HOUR, "one hour late")  # → level 1
    not_yet = await due(sev2, back + HOUR, "not yet due")  # → 0
    sev3_late = await due(sev3, back - 3 * DAY, "three days late, SEV3")  # 48 h < 3 d < 5 d → 2
    untriaged = await open_incident(client, team, status="reported", severity="SEV1")
    unrated = await open_incident(client, team, status="reported", severity=None)
    silent = await open_incident(client, team, status="responding")

    before = await consistent_trail(db)
    frozen.set(back)
    report = await sweep(db, back, batch_size=2)  # small batches: the loop must carry on
    expected = {
        ("action", very_late): [1, 2, 3],
        ("action", ten_hours): [1, 2],
        ("action", one_hour): [1],
        ("action", sev3_late): [1, 2],
        ("action", half_way): [2, 3],
        ("triage", untriaged["id"]): [1, 2],
        ("triage", unrated["id"]): [1, 2],
        ("stale", silent["id"]): [1],  # at most once per interval
    }
    got: dict[tuple[str, str], list[int]] = {}
    for kind, item, level in keys(report):
        got.setdefault((kind, item), []).append(level)
    assert got == expected
    await nothing_at(db, back, back + HOUR - SECOND)

    levels = {
        very_late: 3,
        ten_hours: 2,
        one_hour: 1,
        not_yet: 0,
        sev3_late: 2,
        half_way: 3,
    }
    for action_id, level in levels.items():
        assert (await action_state(db, action_id))[0] == level, action_id
    assert await triage_level(db, untriaged["id"]) == 2
    found = await consistent_trail(db)
    assert len(found.ledger) == len(before.ledger) + sum(len(v) for v in expected.values())
    assert set(found.ledger_keys().values()) == {1}
    for (_kind, item), levels_emitted in expected.items():
        # Each crossed level once, in increasing order along the incident's timeline.
        earlier = [1] if item == half_way else []
        assert found.levels_in_timeline(item) == earlier + levels_emitted, item
    assert {e.at for e in found.ledger} == {T0 + DAY, back}


async def test_levels_move_only_from_the_level_read(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    """The conditional update behind exactly-once: rows moving from different levels to
    different levels in one call, and a row another sweeper moved after it was read is
    left to it."""
    incident = await open_incident(client, team)
    actions = [
        (await approved_action(client, team, incident, due_at=T0 + DAY, title=f"a{n}"))["id"]
        for n in range(3)
    ]
    ids = [uuid.UUID(a) for a in actions]
    async with db.unit_of_work() as session:
        moved = await sweep_module._advance(
            session,
            table_of(Action).c.escalation_level,
            [(ids[0], 0, 3), (ids[1], 0, 1), (ids[2], 1, 2), (ids[0], 0, 0)],
        )
    assert moved == {ids[0], ids[1]}  # ids[2] was read at level 1 but is at 0
    assert [(await action_state(db, a))[0] for a in actions] == [3, 1, 0]


# --- a crash, a dry run, and the command line -----------------------------------------------------


async def test_a_crash_before_commit_leaves_no_trace(
    client: httpx.AsyncClient,
    db: Database,
    frozen: Clock,
    team: Team,
    monkeypatch: pytest.MonkeyPatch,
):
    incident = await open_incident(client, team)
    due = T0 + DAY
    action = await approved_action(client, team, incident, due_at=due)
    at = due + 2 * DAY
    before = await state(db)
    written: dict[str, Any] = {}

    async def power_cut(session: Any) -> None:
        # Everything is written in the transaction by now...
        written["ledger"] = await session.scalar(select(func.count()).select_from(Escalation))
        written["events"] = await session.scalar(
            select(func.count())
            .select_from(TimelineEvent)
            .where(TimelineEvent.type == "action.escalated")
        )
        written["notifications"] = await session.scalar(
            select(func.count()).select_from(Notification)
        )
        written["outbox"] = await session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.type == "action.escalated")
        )
        raise Crash("power cut")  # ...and the commit never happens

    monkeypatch.setattr(sweep_module, "BEFORE_COMMIT", power_cut)
    with pytest.raises(Crash, match="power cut"):
        await sweep(db, at)
    assert written == {"ledger": 3, "events": 3, "notifications": 6, "outbox": 3}
    assert await state(db) == before
    assert await action_state(db, action["id"]) == (0, 0)
    found = await consistent_trail(db)
    assert found.ledger == found.events == found.notifications == found.outbox == []

    monkeypatch.undo()
    assert keys(await sweep(db, at)) == [("action", action["id"], n) for n in (1, 2, 3)]
    await nothing_at(db, at, at + DAY)
    found = await consistent_trail(db)
    assert found.ledger_keys() == Counter({("action", action["id"], n): 1 for n in (1, 2, 3)})


async def test_a_crash_mid_sweep_keeps_committed_batches_and_the_next_sweep_finishes(
    client: httpx.AsyncClient,
    db: Database,
    frozen: Clock,
    team: Team,
    monkeypatch: pytest.MonkeyPatch,
):
    untriaged = await open_incident(client, team, status="reported", severity="SEV1")
    incident = await open_incident(client, team)
    action = await approved_action(client, team, incident, due_at=T0 + HOUR)
    at = T0 + 2 * DAY
    calls = 0

    async def crash_on_second_batch(session: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Crash("killed")

    monkeypatch.setattr(sweep_module, "BEFORE_COMMIT", crash_on_second_batch)
    with pytest.raises(Crash, match="killed"):
        await sweep(db, at)
    found = await consistent_trail(db)  # the triage batch committed, the action batch did not
    assert found.ledger_keys() == Counter({("triage", untriaged["id"], n): 1 for n in (1, 2)})
    assert await action_state(db, action["id"]) == (0, 0)

    monkeypatch.undo()
    assert keys(await sweep(db, at)) == [("action", action["id"], n) for n in (1, 2, 3)]
    found = await consistent_trail(db)
    assert sum(found.ledger_keys().values()) == 5
    assert set(found.ledger_keys().values()) == {1}


async def overdue_mix(client: httpx.AsyncClient, team: Team) -> list[str]:
    """Triage-overdue, overdue-action and stale work for the dry-run tests; the ids."""
    untriaged = await open_incident(client, team, status="reported", severity="SEV1")
    incident = await open_incident(client, team, status="responding")
    action = await approved_action(client, team, incident, due_at=T0 + DAY)
    joint = await approved_action(
        client, team, incident, due_at=T0 + 2 * DAY, owning_ministry="JOINT"
    )
    return [untriaged["id"], incident["id"], action["id"], joint["id"]]


async def test_dry_run_reports_what_a_sweep_would_do_and_changes_nothing(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team
):
    await overdue_mix(client, team)
    at = T0 + 3 * DAY
    before = await state(db)
    dry = await sweep(db, at, dry_run=True)
    assert dry.dry_run is True and len(dry.escalations) == 2 + 1 + 3 + 3
    assert await state(db) == before
    assert reported(await sweep(db, at, dry_run=True)) == reported(dry)  # still nothing done
    real = await sweep(db, at)
    assert real.dry_run is False
    assert sorted(reported(real)) == sorted(reported(dry))
    assert (await sweep(db, at, dry_run=True)).escalations == []
    assert sum((await consistent_trail(db)).ledger_keys().values()) == 9


@pytest.mark.slow
async def test_sweep_command(
    client: httpx.AsyncClient, db: Database, frozen: Clock, team: Team, database_url: str
):
    untriaged_id, incident_id, action_id, joint_id = await overdue_mix(client, team)
    at = (T0 + 3 * DAY).isoformat()
    before = await state(db)
    expected = await sweep(db, T0 + 3 * DAY, dry_run=True)
    lines = sorted(r.describe() for r in expected.escalations)

    dry = await run_rrg(database_url, "sweep", "--at", at, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    *printed, summary = dry.stdout.splitlines()
    assert summary == f"would escalate 9 item-levels at {at}"
    assert sorted(printed) == lines
    assert any(
        "level 3 ->" in line and "action" in line and team.doe_chair.user.email in line
        for line in printed
    )
    assert await state(db) == before

    real = await run_rrg(database_url, "sweep", "--at", at)
    assert real.returncode == 0, real.stdout + real.stderr
    *printed, summary = real.stdout.splitlines()
    assert summary == f"escalated 9 item-levels at {at}"
    assert sorted(printed) == lines
    assert await action_state(db, action_id) == (3, 0)
    assert await action_state(db, joint_id) == (3, 0)
    assert await triage_level(db, untriaged_id) == 2
    found = await consistent_trail(db)
    assert sum(found.ledger_keys().values()) == 9
    assert found.ledger_keys()[("stale", incident_id, 1)] == 1
