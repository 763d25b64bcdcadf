"""Domain events in one place (app/events.py): every committed change writes its timeline
event and, for the webhook event types of SPEC §7, its outbox row, and signals once after
the commit (in process, and by NOTIFY on PostgreSQL); a rolled-back change leaves no
timeline event, no outbox row and no signal.

The mapping checked here is written out from SPEC §7 independently of the app's table.
"""

from __future__ import annotations

import asyncio
import enum
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from asyncpg.pgproto.pgproto import UUID as DriverUUID
from sqlalchemy import select

from app import schemas, signals
from app.auth.service import Principal
from app.db import Database
from app.escalation.sweep import sweep
from app.incidents import service as incidents
from app.incidents.models import Incident
from app.outbox.models import OutboxEvent
from app.schemas import json_safe, json_text
from app.signals import Committed
from app.timeline.models import TimelineEvent
from tests.actions.helpers import in_days, proposal
from tests.conftest import POSTGRES_URL, Actor, MakeActor, assert_problem
from tests.escalation.helpers import T0, Clock
from tests.incidents.helpers import create, report

Json = dict[str, Any]

# SPEC §7: the event types ministries subscribe to. The webhook.* ones are about
# deliveries, not domain changes; every other one must come from some change.
SPEC_EVENT_TYPES = {
    "incident.reported",
    "incident.updated",
    "incident.status_changed",
    "incident.owner_assigned",
    "incident.signed_off",
    "incident.escalated",
    "action.created",
    "action.status_changed",
    "action.escalated",
    "comment.created",
    "webhook.test",
    "webhook.endpoint_disabled",
}
DOMAIN_EVENT_TYPES = {t for t in SPEC_EVENT_TYPES if not t.startswith("webhook.")}
# Timeline types that are not webhook events (who is named, approvals, action edits).
TIMELINE_ONLY = {
    "incident.participant_added",
    "incident.participant_removed",
    "action.approved",
    "action.approvals_voided",
    "action.updated",
}


def published_as(event: TimelineEvent) -> list[str]:
    """The webhook event types a timeline event must produce (SPEC §7)."""
    if event.type in TIMELINE_ONLY:
        return []
    if event.type == "incident.created":  # reported now, or only watched
        return ["incident.reported"] if event.data["status"] == "reported" else []
    if event.type == "incident.status_changed" and event.data["from"] == "watch":
        # Declaring a watched incident reports it.
        return ["incident.status_changed"] + (
            ["incident.reported"] if event.data["to"] == "reported" else []
        )
    assert event.type in DOMAIN_EVENT_TYPES, event.type
    return [event.type]


@dataclass
class Recorder:
    """What the database and the after-commit hook saw since the last look."""

    db: Database
    signals: list[Committed] = field(default_factory=list)
    seen_events: set[uuid.UUID] = field(default_factory=set)
    seen_outbox: set[uuid.UUID] = field(default_factory=set)
    published: Counter[str] = field(default_factory=Counter)

    async def new_rows(self) -> tuple[list[TimelineEvent], list[OutboxEvent]]:
        async with self.db.unit_of_work(readonly=True) as session:
            timeline = (
                await session.scalars(
                    select(TimelineEvent).order_by(TimelineEvent.incident_id, TimelineEvent.seq)
                )
            ).all()
            outbox = (await session.scalars(select(OutboxEvent))).all()
        new_events = [e for e in timeline if e.id not in self.seen_events]
        new_outbox = [o for o in outbox if o.id not in self.seen_outbox]
        self.seen_events |= {e.id for e in new_events}
        self.seen_outbox |= {o.id for o in new_outbox}
        return new_events, new_outbox

    async def committed(self, step: str, commits: int = 1) -> list[TimelineEvent]:
        """The step wrote timeline events and exactly their outbox rows, and signalled once
        per committing transaction, naming its incidents."""
        new_events, new_outbox = await self.new_rows()
        assert new_events, f"{step}: no timeline event"
        expected = Counter((t, e.incident_id) for e in new_events for t in published_as(e))
        assert Counter((o.type, o.incident_id) for o in new_outbox) == expected, step
        keys = await self.keys({e.incident_id for e in new_events})
        for row in new_outbox:
            assert row.payload["incident_id"] == str(row.incident_id), step
            assert row.payload["incident_key"] == keys[row.incident_id], step
            data = {
                k: v for k, v in row.payload.items() if k not in ("incident_id", "incident_key")
            }
            sources = [e for e in new_events if e.incident_id == row.incident_id]
            assert any(e.data == data for e in sources), (step, row.payload)
            self.published[row.type] += 1
        assert len(self.signals) == commits, (step, self.signals)
        assert set().union(*(s.incident_ids for s in self.signals)) == {
            e.incident_id for e in new_events
        }, step
        assert sum(s.webhook_events for s in self.signals) == len(new_outbox), step
        self.signals.clear()
        return new_events

    async def nothing(self, step: str) -> None:
        new_events, new_outbox = await self.new_rows()
        assert (new_events, new_outbox, self.signals) == ([], [], []), step

    async def keys(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
        async with self.db.unit_of_work(readonly=True) as session:
            rows = await session.execute(
                select(Incident.id, Incident.key).where(Incident.id.in_(ids))
            )
            return {i: k for i, k in rows}


@pytest.fixture
def recorder(db: Database) -> Iterator[Recorder]:
    found = Recorder(db)

    def record(committed: Committed) -> None:
        # Commits that only changed cached tables (people, tokens) are not incident events.
        if committed.incident_ids or committed.webhook_events or committed.deliveries:
            found.signals.append(committed)

    unregister = signals.on_commit(record)
    try:
        yield found
    finally:
        unregister()


@dataclass
class Api:
    client: httpx.AsyncClient

    async def call(self, method: str, url: str, actor: Actor, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, f"/api/v1{url}", headers=actor.headers, **kwargs)

    async def etag(self, url: str, actor: Actor) -> str:
        response = await self.call("GET", url, actor)
        assert response.status_code == 200, response.text
        return response.headers["etag"]

    async def changed(
        self, method: str, url: str, actor: Actor, json: Any = None, *, of: str | None = None
    ) -> Json:
        """A change with the current ETag of what it changes (``of``, or the resource
        whose transitions these are)."""
        resource = of or url.removesuffix("/transitions")
        headers = {**actor.headers, "If-Match": await self.etag(resource, actor)}
        response = await self.client.request(method, f"/api/v1{url}", json=json, headers=headers)
        assert response.status_code == 200, response.text
        return dict(response.json())


async def test_every_change_publishes_its_events_and_every_webhook_type_is_produced(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, recorder: Recorder
):
    clock = Clock(T0)
    api = Api(client)
    reporter, viewer = await make_actor("responder", "DOE"), await make_actor("viewer", "DOE")
    doe_lead, meti_lead = await make_actor("lead", "DOE"), await make_actor("lead", "METI")
    worker = await make_actor("responder", "METI")
    await recorder.nothing("people and tokens are not incident events")

    incident = await create(client, reporter, title="Gallium licence regime")
    i = f"/incidents/{incident['id']}"
    await recorder.committed("report")
    watched = await create(client, reporter, status="watch", title="Germanium price watch")
    w = f"/incidents/{watched['id']}"
    await recorder.committed("watch")
    await api.changed("POST", f"{w}/transitions", doe_lead, {"to": "reported"})
    await recorder.committed("declare")
    await api.changed("PATCH", i, doe_lead, {"severity": "SEV2", "title": "Gallium licences"})
    await recorder.committed("edit")
    for ministry, owner in (("DOE", doe_lead), ("METI", meti_lead)):
        await api.changed(
            "PUT", f"{i}/owners/{ministry}", doe_lead, {"user_id": str(owner.id)}, of=i
        )
        await recorder.committed(f"{ministry} owner")
    response = await api.call(
        "POST", f"{i}/participants", doe_lead, json={"user_id": str(viewer.id)}
    )
    assert response.status_code == 200, response.text
    await recorder.committed("participant added")
    response = await api.call("DELETE", f"{i}/participants/{viewer.id}", doe_lead)
    assert response.status_code == 204, response.text
    await recorder.committed("participant removed")
    response = await api.call("POST", f"{i}/comments", worker, json={"body": "METI is checking."})
    assert response.status_code == 201, response.text
    await recorder.committed("comment")
    await api.changed("POST", f"{i}/transitions", doe_lead, {"to": "triaged"})
    await recorder.committed("triage")

    # Refused requests (403, 409, 412, 422) publish nothing and signal nothing.
    response = await api.call("POST", f"{i}/comments", viewer, json={"body": "no"})
    assert_problem(response, 403)
    response = await api.call("POST", f"{i}/transitions", doe_lead, json={"to": "closed"})
    assert_problem(response, 428)
    stale = {**doe_lead.headers, "If-Match": '"1"'}
    assert_problem(await client.patch(f"/api/v1{i}", json={"title": "x"}, headers=stale), 412)
    body = proposal(owning_ministry="METI", assignee_id=str(viewer.id))
    assert_problem(await api.call("POST", f"{i}/actions", doe_lead, json=body), 422)
    await recorder.nothing("refused requests")

    joint = proposal(owning_ministry="JOINT", assignee_id=str(worker.id), due_at=in_days(2))
    response = await api.call("POST", f"{i}/actions", doe_lead, json=joint)
    assert response.status_code == 201, response.text
    action = f"/actions/{response.json()['id']}"
    await recorder.committed("action proposed")
    response = await api.call("POST", f"{action}/approvals", doe_lead)
    assert response.status_code == 201, response.text
    await recorder.committed("half approved")
    await api.changed("PATCH", action, doe_lead, {"title": "Joint purchase"})
    types = [e.type for e in await recorder.committed("approval voided")]
    assert types == ["action.updated", "action.approvals_voided"]
    for lead in (doe_lead, meti_lead):
        response = await api.call("POST", f"{action}/approvals", lead)
        assert response.status_code == 201, response.text
        await recorder.committed(f"approved by {lead.user.ministry.code}")
    await api.changed("POST", f"{i}/transitions", doe_lead, {"to": "responding"})
    await recorder.committed("responding")
    await api.changed("POST", f"{action}/transitions", worker, {"to": "in_progress"})
    await recorder.committed("started")
    await api.changed(
        "POST", f"{action}/transitions", worker, {"to": "completed", "outcome": "Done"}
    )
    await recorder.committed("completed")
    await api.changed(
        "POST", f"{i}/transitions", doe_lead, {"to": "resolved", "resolution_summary": "OK"}
    )
    await recorder.committed("resolved")
    for lead in (doe_lead, meti_lead):
        response = await api.call("POST", f"{i}/signoffs", lead, json={})
        assert response.status_code == 201, response.text
        await recorder.committed(f"signed off by {lead.user.ministry.code}")
    await api.changed("POST", f"{i}/transitions", doe_lead, {"to": "closed"})
    await recorder.committed("closed")

    # The declared incident: an approved action, then the clock passes the triage window
    # and the due time; each sweep batch is its own transaction and signal.
    for ministry, owner in (("DOE", doe_lead), ("METI", meti_lead)):
        await api.changed(
            "PUT", f"{w}/owners/{ministry}", doe_lead, {"user_id": str(owner.id)}, of=w
        )
    body = proposal(owning_ministry="METI", assignee_id=str(worker.id), due_at=in_days(1))
    response = await api.call("POST", f"{w}/actions", meti_lead, json=body)
    assert response.status_code == 201, response.text
    late = f"/actions/{response.json()['id']}"
    response = await api.call("POST", f"{late}/approvals", meti_lead)
    assert response.status_code == 201, response.text
    await recorder.new_rows()
    recorder.signals.clear()
    clock.set(T0 + timedelta(days=30))
    report_ = await sweep(db)
    assert {e.item_type for e in report_.escalations} == {"triage", "action"}
    escalated = await recorder.committed("sweep", commits=2)
    assert {e.type for e in escalated} == {"incident.escalated", "action.escalated"}
    assert (await sweep(db)).escalations == []
    await recorder.nothing("a second sweep at the same time")

    # Rejecting cancels the open action: the rejection and the cancellation, in one commit.
    clock.set(T0 + timedelta(days=31))
    response = await api.call(
        "POST", f"{w}/actions", meti_lead, json=proposal(owning_ministry="METI")
    )
    assert response.status_code == 201, response.text
    await recorder.committed("another action")
    await api.changed("POST", f"{w}/transitions", doe_lead, {"to": "rejected", "reason": "Moot"})
    types = [e.type for e in await recorder.committed("rejected")]
    assert types == ["incident.status_changed", "action.status_changed", "action.status_changed"]

    assert set(recorder.published) == DOMAIN_EVENT_TYPES, recorder.published


# --- rolled back: nothing ---------------------------------------------------------------------


@dataclass
class Listener:
    """Another process's view: the NOTIFY payloads on rrg_events."""

    connection: asyncpg.Connection
    queue: asyncio.Queue[str]

    async def next(self) -> str:
        return await asyncio.wait_for(self.queue.get(), 5)

    async def empty(self) -> bool:
        await self.connection.fetchval("SELECT 1")  # whatever was sent before is read
        return self.queue.empty()


@pytest.fixture
async def listener(backend: str) -> AsyncIterator[Listener | None]:
    if backend != "postgresql":
        yield None
        return
    queue: asyncio.Queue[str] = asyncio.Queue()
    connection = await asyncpg.connect(POSTGRES_URL)

    def heard(*args: Any) -> None:
        if signals.tables_of(str(args[3])) is None:  # cache drops are not incident events
            queue.put_nowait(str(args[3]))

    await connection.add_listener(signals.CHANNEL, heard)
    try:
        yield Listener(connection, queue)
    finally:
        await connection.close()


def principal_of(actor: Actor) -> Principal:
    return Principal(user=actor.user, token_id=None)


async def comment_in(db: Database, actor: Actor, incident: Json, body: str, **uow: Any) -> None:
    async with db.unit_of_work(**uow) as session:
        found = await incidents.get_visible(session, actor.user, incident["id"])
        await incidents.add_comment(session, principal_of(actor), found, body)


async def test_rolled_back_changes_emit_nothing(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    db: Database,
    recorder: Recorder,
    listener: Listener | None,
):
    reporter = await make_actor("responder", "DOE")
    incident = await create(client, reporter, severity="SEV1")
    await recorder.committed("report")
    if listener is not None:
        assert await listener.next() == incident["id"]

    # An exception after the event was emitted, a unit of work that never commits, and a
    # dry-run sweep (which decides escalations in a transaction and rolls it back).
    async def fail_after_emitting() -> None:
        async with db.unit_of_work() as session:
            found = await incidents.get_visible(session, reporter.user, incident["id"])
            await incidents.add_comment(session, principal_of(reporter), found, "lost")
            assert len((await recorder.new_rows())[0]) == 0  # not visible outside, yet
            raise RuntimeError("the request failed after emitting")

    with pytest.raises(RuntimeError):
        await fail_after_emitting()
    await comment_in(db, reporter, incident, "also lost", commit=False)
    # A session that rolls back and then commits: only the committed transaction counts.
    async with db.unit_of_work() as session:
        found = await incidents.get_visible(session, reporter.user, incident["id"])
        await incidents.add_comment(session, principal_of(reporter), found, "rolled back")
        await session.rollback()
        await session.execute(select(1))
    Clock(T0 + timedelta(days=400))
    dry = await sweep(db, dry_run=True)
    assert [e.item_type for e in dry.escalations] == ["triage", "triage"]
    await recorder.nothing("rolled back")

    # Nothing was announced to other processes either: the next notification is the next
    # committed change's (notifications arrive in commit order).
    await comment_in(db, reporter, incident, "kept")
    await recorder.committed("kept")
    if listener is not None:
        assert await listener.next() == incident["id"]
        assert await listener.empty()


async def test_the_signal_waits_for_the_outermost_commit(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    db: Database,
    recorder: Recorder,
    listener: Listener | None,
):
    reporter = await make_actor("responder", "DOE")
    incident = await create(client, reporter)
    await recorder.committed("report")
    if listener is not None:
        await listener.next()

    async def emitted_then(inner: Callable[[Any], Awaitable[None]]) -> None:
        async with db.unit_of_work() as session:
            found = await incidents.get_visible(session, reporter.user, incident["id"])
            await incidents.add_comment(session, principal_of(reporter), found, "note")
            await inner(session)
            # Neither a released savepoint nor the statements so far have signalled.
            assert recorder.signals == []
            if listener is not None:
                assert await listener.empty()

    async def savepoint(session: Any) -> None:
        async with session.begin_nested():
            await session.execute(select(1))

    await emitted_then(savepoint)
    await recorder.committed("committed after a savepoint")
    if listener is not None:
        assert await listener.next() == incident["id"]


async def test_a_failing_listener_does_not_undo_the_change(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, recorder: Recorder
):
    def broken(_: Committed) -> None:
        raise RuntimeError("listener bug")

    unregister = signals.on_commit(broken)
    try:
        reporter = await make_actor("responder", "DOE")
        response = await client.post("/api/v1/incidents", json=report(), headers=reporter.headers)
        assert response.status_code == 201, response.text
    finally:
        unregister()
    await recorder.committed("report")  # written, and the other listener still ran


@pytest.mark.postgresql_only
async def test_a_notify_carried_by_a_write_is_completed_at_commit(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    db: Database,
    listener: Listener | None,
):
    """The writes' statement carries the NOTIFY of what was announced so far; the commit
    sends what was announced after it. Inside a savepoint nothing is carried: a savepoint
    rolled back would drop what it carried."""
    assert listener is not None
    reporter = await make_actor("responder", "DOE")
    first, second = [await create(client, reporter) for _ in range(2)]
    for _ in range(2):
        await listener.next()

    async def comment(session: Any, incident: Json) -> None:
        found = await incidents.get_visible(session, reporter.user, incident["id"])
        await incidents.add_comment(session, principal_of(reporter), found, "note")

    async with db.unit_of_work() as session:
        await comment(session, first)  # carried by its writes' statement
        async with session.begin_nested():
            await comment(session, second)  # announced, sent at the commit
        assert await listener.empty()  # nothing is delivered before the commit
    heard = {await listener.next(), await listener.next()}
    assert heard == {first["id"], second["id"]}
    assert await listener.empty()


class _Status(enum.StrEnum):
    OPEN = "open"


@pytest.mark.parametrize(
    "data",
    [
        {"action_id": uuid.UUID(int=7), "level": 2, "due_at": datetime(2026, 1, 1, tzinfo=UTC)},
        {"action_id": DriverUUID(str(uuid.UUID(int=7)))},  # as PostgreSQL's driver reads it
        {"nested": ({"a": [1, 2.5, None, True]}, "x"), "big": 10**30, "inf": float("inf")},
        {"when": date(2026, 1, 2), "amount": Decimal("1.20")},  # the JSON round trip
        {"numbered": {1: "one"}},  # a key that is not a string: the round trip
        {"status": _Status.OPEN},  # a str enum: the round trip
    ],
)
def test_json_safe_gives_what_a_json_column_gives_back(data: dict[str, Any]):
    """Common shapes are converted directly; the result must be what the JSON round trip
    gives, to the type."""
    expected = json.loads(json_text(data))  # the round trip through JSON text
    safe = json_safe(data)
    assert safe == expected
    assert json.dumps(safe) == json.dumps(expected)  # the same types too (lists, not tuples)
    assert json_safe(safe) is safe  # already plain: not converted again


def test_json_safe_converts_ids_read_from_the_database_directly(monkeypatch: pytest.MonkeyPatch):
    """Ids as the PostgreSQL driver returns them (a subclass of uuid.UUID) are converted
    without the JSON round trip, which a sweep would pay for every escalation."""

    def no_round_trip(data: dict[str, Any]) -> str:
        raise AssertionError(f"{data} made the JSON round trip")

    monkeypatch.setattr(schemas, "json_text", no_round_trip)
    read = DriverUUID(str(uuid.UUID(int=7)))
    assert json_safe({"action_id": read, "ids": [read]}) == {
        "action_id": str(uuid.UUID(int=7)),
        "ids": [str(uuid.UUID(int=7))],
    }
