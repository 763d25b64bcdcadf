"""Live updates: the bus, and the stream of a real server (SPEC §9, §6)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from app.db import Database
from app.web.live import LiveBus
from tests.conftest import Actor, MakeActor
from tests.web.conftest import PASSWORD, csrf_of, report
from tests.web.live import sse_clients_reach

NEW_INCIDENT = {"title": "Live", "minerals": ["Ga"], "category": "export_control"}


def test_the_bus_resumes_from_a_known_event_and_resets_otherwise():
    bus = LiveBus(keep=3)
    a, b, c, d = (uuid.uuid4() for _ in range(4))
    assert bus.position(None) == 0
    bus.publish([a, b])
    first = bus.event_id(1)
    assert bus.since(bus.position(first)) == [(2, b)]
    bus.publish([c, d])  # a is forgotten (keeps 3)
    assert bus.position(first) == 1 and bus.since(1) == [(2, b), (3, c), (4, d)]
    assert bus.position(bus.event_id(0)) is None  # older than what is kept: reset
    assert bus.position("another-process-3") is None
    assert bus.position(bus.event_id(9)) is None  # from the future
    assert bus.since(4) == []


async def _web_client(base: str, actor: Actor) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=60))
    page = await client.get("/signin")
    signed = await client.post(
        "/signin",
        data={"email": actor.user.email, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
    )
    assert signed.status_code == 303
    return client


async def _events(
    client: httpx.AsyncClient,
    opened: asyncio.Event,
    headers: dict[str, str] | None = None,
    path: str = "/events",
) -> AsyncIterator[dict[str, str]]:
    async with client.stream("GET", path, headers=headers or {}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        opened.set()
        event: dict[str, str] = {}
        async for line in response.aiter_lines():
            if not line:
                if "event" in event:
                    yield event
                event = {}
            elif not line.startswith(":") and ":" in line:
                name, _, value = line.partition(":")
                event[name] = value.strip()


class Watch:
    """Reads a user's stream in the background, keeping every event it receives."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        headers: dict[str, str] | None = None,
        path: str = "/events",
    ) -> None:
        self.opened = asyncio.Event()
        self.seen: list[dict[str, str]] = []
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._read(client, headers, path))

    async def _read(
        self, client: httpx.AsyncClient, headers: dict[str, str] | None, path: str
    ) -> None:
        async for event in _events(client, self.opened, headers, path):
            self.seen.append(event)
            self.arrived.set()

    async def events_until(self, incident_id: str) -> list[dict[str, str]]:
        """Every event up to and including the one about ``incident_id``."""

        async def wait() -> list[dict[str, str]]:
            while True:
                for n, event in enumerate(self.seen):
                    if (
                        event["event"] == "incident"
                        and json.loads(event["data"])["id"] == incident_id
                    ):
                        return self.seen[: n + 1]
                self.arrived.clear()
                await self.arrived.wait()

        try:
            return await asyncio.wait_for(wait(), 20)
        finally:
            self.task.cancel()


def ids_of(events: list[dict[str, str]]) -> list[str]:
    return [json.loads(e["data"])["id"] for e in events if e["event"] == "incident"]


async def _create(base: str, actor: Actor, **fields: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base, headers=actor.headers) as api:
        response = await api.post("/api/v1/incidents", json={**NEW_INCIDENT, **fields})
        assert response.status_code == 201, response.text
        body: dict[str, str] = response.json()
        return body


async def test_a_red_incident_never_reaches_the_stream_of_someone_not_named(
    live_server: str, make_actor: MakeActor, db: object
):
    reporter = await make_actor("responder", "DOE", password=PASSWORD)
    outsider = await make_actor("lead", "METI", password=PASSWORD)
    clients = [await _web_client(live_server, a) for a in (reporter, outsider)]
    try:
        mine, theirs = Watch(clients[0]), Watch(clients[1])
        await asyncio.wait_for(asyncio.gather(mine.opened.wait(), theirs.opened.wait()), 10)
        red = await _create(live_server, reporter, title="Red one", tlp="RED")
        green = await _create(live_server, reporter, title="Green one", tlp="GREEN")
        # The outsider's stream: the green incident, and never the red one before it.
        assert ids_of(await theirs.events_until(green["id"])) == [green["id"]]
        # The reporter, named on it, sees both, in order.
        assert ids_of(await mine.events_until(green["id"])) == [red["id"], green["id"]]
    finally:
        for client in clients:
            await client.aclose()


async def test_a_stream_resumes_after_the_last_event_it_saw(
    live_server: str, make_actor: MakeActor, db: object
):
    lead = await make_actor("lead", "DOE", password=PASSWORD)
    client = await _web_client(live_server, lead)
    try:
        first_watch = Watch(client)
        await asyncio.wait_for(first_watch.opened.wait(), 10)
        first = await _create(live_server, lead, title="Before the drop")
        seen = await first_watch.events_until(first["id"])
        last_id = seen[-1]["id"]
        # Disconnected: a change happens meanwhile.
        missed = await _create(live_server, lead, title="While away")
        resumed = Watch(client, {"Last-Event-ID": last_id})
        assert ids_of(await resumed.events_until(missed["id"])) == [missed["id"]]
        # An id this server cannot resume from: a reset (reload what you show).
        unknown = Watch(client, {"Last-Event-ID": "elsewhere-12"})
        await asyncio.wait_for(unknown.opened.wait(), 10)
        after = await _create(live_server, lead, title="After the reset")
        events = await unknown.events_until(after["id"])
        assert events[0]["event"] == "reset" and ids_of(events) == [after["id"]]
    finally:
        await client.aclose()


@pytest.mark.postgresql_only  # SQLite serves one process; LISTEN/NOTIFY is PostgreSQL's
async def test_changes_committed_by_another_process_arrive_through_listen(
    live_server: str, make_actor: MakeActor, db: Database
):
    lead = await make_actor("lead", "DOE", password=PASSWORD)
    client = await _web_client(live_server, lead)
    try:
        watch = Watch(client)
        await asyncio.wait_for(watch.opened.wait(), 10)
        elsewhere = await report(db, lead, title="Committed by another process")
        assert ids_of(await watch.events_until(str(elsewhere.id))) == [str(elsewhere.id)]
    finally:
        await client.aclose()


async def test_the_sse_clients_gauge_counts_connected_streams(
    live_server: str, make_actor: MakeActor, db: object
):
    admin = await make_actor("admin", "DOE")
    lead = await make_actor("lead", "DOE", password=PASSWORD)
    await sse_clients_reach(live_server, admin, 0)  # streams of earlier tests have ended
    clients = [await _web_client(live_server, lead) for _ in range(2)]
    watches = [Watch(client) for client in clients]
    try:
        await asyncio.wait_for(asyncio.gather(*(w.opened.wait() for w in watches)), 10)
        await sse_clients_reach(live_server, admin, 2)
        watches[0].task.cancel()
        await clients[0].aclose()
        await sse_clients_reach(live_server, admin, 1)
    finally:
        for watch in watches:
            watch.task.cancel()
        await asyncio.gather(*(w.task for w in watches), return_exceptions=True)
        for client in clients:
            await client.aclose()
    await sse_clients_reach(live_server, admin, 0)


async def test_a_room_losing_sight_of_its_incident_is_told_it_is_gone(
    live_server: str, make_actor: MakeActor, db: object
):
    reporter = await make_actor("responder", "DOE", password=PASSWORD)
    named = await make_actor("responder", "METI", password=PASSWORD)
    outsider = await make_actor("lead", "METI", password=PASSWORD)
    red = await _create(live_server, reporter, title="Red, shared", tlp="RED")
    async with httpx.AsyncClient(base_url=live_server, headers=reporter.headers) as api:
        added = await api.post(
            f"/api/v1/incidents/{red['id']}/participants", json={"user_id": str(named.id)}
        )
        assert added.status_code == 200, added.text
        clients = [await _web_client(live_server, a) for a in (named, outsider)]
        try:
            room = Watch(clients[0], path=f"/events?incident={red['id']}")
            # The outsider names an incident they never saw: their stream says nothing of it.
            guess = Watch(clients[1], path=f"/events?incident={red['id']}")
            await asyncio.wait_for(asyncio.gather(room.opened.wait(), guess.opened.wait()), 10)
            removed = await api.delete(f"/api/v1/incidents/{red['id']}/participants/{named.id}")
            assert removed.status_code == 204
            marker = await _create(live_server, reporter, title="After", tlp="GREEN")
            seen = await room.events_until(marker["id"])
            assert [e["event"] for e in seen] == ["gone", "incident"]
            assert json.loads(seen[0]["data"]) == {"id": red["id"]}
            theirs = await guess.events_until(marker["id"])
            assert [e["event"] for e in theirs] == ["incident"], theirs
            assert red["id"] not in json.dumps(theirs)
        finally:
            for client in clients:
                await client.aclose()
