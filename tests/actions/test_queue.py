"""The action queue (GET /api/v1/actions): filters, order, cursor pagination and the
overdue rule, each checked against a brute-force oracle over random rows inserted
through the ORM; and a query count independent of the page size."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app import clock
from app.actions.models import Action, ActionApproval
from app.actions.states import STATUSES, TERMINAL
from app.db import Database
from tests.actions.helpers import Json, iso
from tests.conftest import Actor, MakeActor, QueryCounter, assert_problem
from tests.incidents.helpers import create

NOW = datetime(2031, 5, 14, 12, 0, tzinfo=UTC)
ROWS = 60
MINISTRIES = ("DOE", "METI", "JOINT")


@dataclass(frozen=True)
class Row:
    id: uuid.UUID
    incident: str  # the incident's name in World.incidents
    ministry: str
    assignee: uuid.UUID | None
    status: str
    due_at: datetime | None


def is_overdue(row: Row, now: datetime) -> bool:
    """SPEC §3, literally."""
    return row.status not in TERMINAL and row.due_at is not None and row.due_at <= now


def approved_by(row: Row) -> tuple[str, ...]:
    """Approvals consistent with the status: every required one once approved, and DOE's
    alone on some proposed JOINT actions."""
    required = ("DOE", "METI") if row.ministry == "JOINT" else (row.ministry,)
    if row.status in ("proposed", "rejected"):
        return ("DOE",) if row.ministry == "JOINT" and row.id.int % 2 else ()
    if row.status == "cancelled" and row.id.int % 2:
        return ()
    return required


def queue_order(row: Row) -> tuple[bool, datetime, uuid.UUID]:
    return (row.due_at is None, row.due_at or NOW, row.id)


@dataclass
class World:
    me: Actor  # a DOE responder: sees GREEN, AMBER and the RED incident they are on
    meti_viewer: Actor  # sees GREEN and AMBER only
    incidents: dict[str, Json]
    rows: list[Row]

    def visible(self, actor: Actor) -> list[Row]:
        # Being assigned an action names nobody: ``me`` sees red_mine as a participant.
        allowed = {"green", "amber"} | ({"red_mine"} if actor.id == self.me.id else set())
        return [r for r in self.rows if r.incident in allowed]


async def build_world(
    client: httpx.AsyncClient, db: Database, make_actor: MakeActor, size: int = ROWS
) -> World:
    clock.set_source(lambda: NOW)
    me = await make_actor("responder", "DOE")
    doe_other = await make_actor("responder", "DOE")
    meti_a, meti_b = await make_actor("responder", "METI"), await make_actor("responder", "METI")
    meti_viewer = await make_actor("viewer", "METI")
    reporter, stranger = await make_actor("responder", "DOE"), await make_actor("responder", "METI")
    leads = {"DOE": await make_actor("lead", "DOE"), "METI": await make_actor("lead", "METI")}
    incidents = {
        "green": await create(client, reporter, title="Queue green"),
        "amber": await create(client, reporter, title="Queue amber", tlp="AMBER"),
        "red_hidden": await create(client, stranger, title="Queue red hidden", tlp="RED"),
        "red_mine": await create(client, stranger, title="Queue red mine", tlp="RED"),
    }
    named = await client.post(
        f"/api/v1/incidents/{incidents['red_mine']['id']}/participants",
        json={"user_id": str(me.id)},
        headers=stranger.headers,
    )
    assert named.status_code == 200, named.text
    pools = {
        "DOE": [me.id, doe_other.id],
        "METI": [meti_a.id, meti_b.id],
        "JOINT": [me.id, doe_other.id, meti_a.id, meti_b.id],
    }
    rng = random.Random(20310514)
    # Due times on a 6-hour grid over ±3 days (so many rows tie and the id decides), the
    # exact "now" among them, and some with no due time at all.
    offsets = [timedelta(hours=6 * k) for k in range(-12, 13)]
    rows: list[Row] = []
    for n in range(size):
        name = rng.choice(list(incidents))
        ministry = rng.choice(MINISTRIES)
        assignee = rng.choice([None, *pools[ministry]])
        if name == "red_hidden" and assignee == me.id:
            assignee = None
        if n == 0:  # an action of red_mine assigned to me
            name, ministry, assignee = "red_mine", "DOE", me.id
        due = None if rng.random() < 0.15 else NOW + rng.choice(offsets)
        status = rng.choice(STATUSES)
        if n in (1, 2):  # open rows due exactly at instants the tests probe
            name, status, due = "green", "in_progress", NOW + timedelta(days=n - 1)
        rows.append(Row(uuid.uuid4(), name, ministry, assignee, status, due))

    def approvals(row: Row) -> list[ActionApproval]:
        return [
            ActionApproval(ministry_code=m, user_id=leads[m].id, at=NOW - timedelta(days=4))
            for m in approved_by(row)
        ]

    async with db.unit_of_work() as session:
        session.add_all(
            Action(
                id=row.id,
                incident_id=uuid.UUID(incidents[row.incident]["id"]),
                title=f"Queue action {n}",
                kind="other",
                owning_ministry=row.ministry,
                assignee_id=row.assignee,
                status=row.status,
                due_at=row.due_at,
                created_by_id=reporter.id,
                created_at=NOW,
                updated_at=NOW,
                approvals=approvals(row),
            )
            for n, row in enumerate(rows)
        )
    return World(me, meti_viewer, incidents, rows)


async def walk(
    client: httpx.AsyncClient, actor: Actor, params: list[tuple[str, Any]], limit: int
) -> list[Json]:
    """Every page of the queue, following next_cursor; each row must appear once."""
    items: list[Json] = []
    cursor: str | None = None
    for _ in range(500):
        page_params = [*params, ("limit", limit), *([("cursor", cursor)] if cursor else [])]
        response = await client.get("/api/v1/actions", params=page_params, headers=actor.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == limit  # only a full page has a next one
    else:
        raise AssertionError("the cursor never ran out")
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)), "a row came back twice"
    return items


def expect(rows: list[Row]) -> list[str]:
    return [str(r.id) for r in sorted(rows, key=queue_order)]


async def test_filters_and_order_match_the_oracle(
    client: httpx.AsyncClient, db: Database, make_actor: MakeActor
):
    world = await build_world(client, db, make_actor)
    mine = world.visible(world.me)
    assert {r.incident for r in mine} == {"green", "amber", "red_mine"}
    green, red_mine = world.incidents["green"], world.incidents["red_mine"]
    soon = NOW + timedelta(days=1)
    cases: list[tuple[list[tuple[str, Any]], list[Row]]] = [
        ([], mine),
        ([("assignee", "me")], [r for r in mine if r.assignee == world.me.id]),
        ([("ministry", "DOE")], [r for r in mine if r.ministry == "DOE"]),
        (
            [("ministry", "METI"), ("ministry", "JOINT")],
            [r for r in mine if r.ministry in ("METI", "JOINT")],
        ),
        (
            [("status", "in_progress"), ("status", "blocked")],
            [r for r in mine if r.status in ("in_progress", "blocked")],
        ),
        ([("overdue", "true")], [r for r in mine if is_overdue(r, NOW)]),
        ([("overdue", "false")], mine),
        (
            [("overdue", "true"), ("ministry", "METI")],
            [r for r in mine if is_overdue(r, NOW) and r.ministry == "METI"],
        ),
        ([("due_before", iso(NOW))], [r for r in mine if r.due_at and r.due_at < NOW]),
        (
            [("due_before", iso(soon)), ("status", "proposed")],
            [r for r in mine if r.due_at and r.due_at < soon and r.status == "proposed"],
        ),
        ([("incident", green["id"])], [r for r in mine if r.incident == "green"]),
        ([("incident", green["key"].lower())], [r for r in mine if r.incident == "green"]),
        (
            [("incident", red_mine["key"]), ("assignee", "me")],
            [r for r in mine if r.incident == "red_mine" and r.assignee == world.me.id],
        ),
        (
            [("assignee", str(world.me.id)), ("overdue", "true")],
            [r for r in mine if r.assignee == world.me.id and is_overdue(r, NOW)],
        ),
    ]
    for params, rows in cases:
        items = await walk(client, world.me, params, limit=200)
        assert [i["id"] for i in items] == expect(rows), params
        assert rows, params  # every case selects something
        by_id = {str(r.id): r for r in rows}
        for item in items:
            row = by_id[item["id"]]
            assert item["overdue"] is is_overdue(row, NOW), item
            assert item["status"] == row.status and item["owning_ministry"] == row.ministry
            assert item["incident_key"] == world.incidents[row.incident]["key"]
            assert [a["ministry"] for a in item["approvals"]] == list(approved_by(row))
            assert (item["assignee"] or {}).get("id") == (row.assignee and str(row.assignee))
    # A partner-free METI viewer sees neither RED incident.
    theirs = await walk(client, world.meti_viewer, [], limit=200)
    assert [i["id"] for i in theirs] == expect(world.visible(world.meti_viewer))
    # An incident the caller may not see is 404 as a filter, too; bad values are 422.
    hidden = world.incidents["red_hidden"]
    for value in (hidden["id"], hidden["key"]):
        response = await client.get(
            "/api/v1/actions", params={"incident": value}, headers=world.me.headers
        )
        assert_problem(response, 404)
    for bad in ({"assignee": "someone"}, {"ministry": "NASA"}, {"status": "done"}, {"limit": 0}):
        response = await client.get("/api/v1/actions", params=bad, headers=world.me.headers)
        assert_problem(response, 422)


async def test_cursor_pagination_walks_every_row_once(
    client: httpx.AsyncClient, db: Database, make_actor: MakeActor
):
    world = await build_world(client, db, make_actor)
    everything = expect(world.visible(world.me))
    assert any(r.due_at is None for r in world.visible(world.me))
    for limit in (7, 50):
        items = await walk(client, world.me, [], limit=limit)
        assert [i["id"] for i in items] == everything, limit
    # One row a page, over a filtered part of the queue (with ties and a null due time).
    doe = [r for r in world.visible(world.me) if r.ministry == "DOE"]
    assert any(r.due_at is None for r in doe) and len({r.due_at for r in doe}) < len(doe)
    items = await walk(client, world.me, [("ministry", "DOE")], limit=1)
    assert [i["id"] for i in items] == expect(doe)
    open_rows = [r for r in world.visible(world.me) if r.status not in TERMINAL]
    statuses = [("status", s) for s in STATUSES if s not in TERMINAL]
    items = await walk(client, world.me, statuses, limit=4)
    assert [i["id"] for i in items] == expect(open_rows)
    # A mangled cursor is a 422, not a 500.
    response = await client.get(
        "/api/v1/actions", params={"cursor": "not-a-cursor"}, headers=world.me.headers
    )
    assert_problem(response, 422)


async def test_overdue_agrees_with_brute_force_as_the_clock_moves(
    client: httpx.AsyncClient, db: Database, make_actor: MakeActor
):
    world = await build_world(client, db, make_actor)
    mine = world.visible(world.me)
    # The boundary is in the data: open rows due exactly at a probed instant (due_at <= now).
    assert any(r.due_at == NOW and r.status not in TERMINAL for r in mine)
    counts = []
    for shift in (-4, -1, 0, 0.5, 1, 3.25, 4):
        now = NOW + timedelta(days=shift)
        clock.set_source(lambda now=now: now)
        expected = [r for r in mine if is_overdue(r, now)]
        items = await walk(client, world.me, [("overdue", "true")], limit=200)
        assert [i["id"] for i in items] == expect(expected), shift
        assert all(i["overdue"] is True for i in items)
        # The flag on every row of the unfiltered queue agrees too.
        flags = {i["id"]: i["overdue"] for i in await walk(client, world.me, [], limit=200)}
        assert flags == {str(r.id): is_overdue(r, now) for r in mine}, shift
        counts.append(len(expected))
    # The clock sweeps from before every due time to after all of them.
    assert counts[0] == 0 and counts == sorted(counts) and counts[-1] > counts[2] > 0


async def test_queue_query_count_does_not_grow_with_the_page(
    client: httpx.AsyncClient,
    db: Database,
    make_actor: MakeActor,
    count_queries: Any,
):
    world = await build_world(client, db, make_actor, size=90)
    assert len(world.visible(world.me)) > 50
    assert any(r.ministry == "JOINT" and r.status == "completed" for r in world.visible(world.me))
    # Warm up: the first request also stamps the token's last_used_at.
    assert (await client.get("/api/v1/actions", headers=world.me.headers)).status_code == 200
    counts: dict[int, int] = {}
    statements: dict[int, list[str]] = {}
    for limit in (1, 10, 50):
        counter: QueryCounter = count_queries()
        response = await client.get(
            "/api/v1/actions", params={"limit": limit}, headers=world.me.headers
        )
        assert response.status_code == 200 and len(response.json()["items"]) == limit
        counts[limit], statements[limit] = counter.count, list(counter.statements or [])
    # Token lookup, the page (incident, assignee, proposer joined), the approvals with
    # their users (one IN query); SQLite adds its BEGINs: 3 on PostgreSQL, 5 on SQLite.
    assert counts[1] == counts[10] == counts[50], (counts, statements)
    assert counts[50] <= 6, (counts, statements[50])
