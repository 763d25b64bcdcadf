"""Helpers for response-action tests: a valid proposal and shortcuts through the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from app import clock
from tests.conftest import Actor, MakeActor
from tests.incidents.helpers import assign, create, move

Json = dict[str, Any]


def iso(at: datetime) -> str:
    return at.isoformat()


def in_days(days: float) -> str:
    """A due time ``days`` from the service clock's now, as the API takes it."""
    return iso(clock.now() + timedelta(days=days))


def proposal(**overrides: Any) -> Json:
    body: Json = {
        "title": "Release gallium from the national stockpile",
        "description": "Draw down 20 t over four weeks to cover the licensing gap.",
        "kind": "stockpile_release",
        "owning_ministry": "DOE",
        "priority": "high",
    }
    body.update(overrides)
    return body


async def propose(
    client: httpx.AsyncClient, actor: Actor, incident: Json, **overrides: Any
) -> Json:
    response = await client.post(
        f"/api/v1/incidents/{incident['id']}/actions",
        json=proposal(**overrides),
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == f'"{response.json()["version"]}"'
    body: Json = response.json()
    return body


async def fetch(client: httpx.AsyncClient, actor: Actor, action: Json) -> httpx.Response:
    return await client.get(f"/api/v1/actions/{action['id']}", headers=actor.headers)


async def current(client: httpx.AsyncClient, actor: Actor, action: Json) -> Json:
    response = await fetch(client, actor, action)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def act(
    client: httpx.AsyncClient, actor: Actor, action: Json, to: str, **extra: Any
) -> httpx.Response:
    """Transition with the action's current ETag (fetched first, by the same actor)."""
    etag = (await fetch(client, actor, action)).headers.get("etag", '"0"')
    return await client.post(
        f"/api/v1/actions/{action['id']}/transitions",
        json={"to": to, **extra},
        headers={**actor.headers, "If-Match": etag},
    )


async def approve(client: httpx.AsyncClient, actor: Actor, action: Json) -> httpx.Response:
    return await client.post(f"/api/v1/actions/{action['id']}/approvals", headers=actor.headers)


async def patch(
    client: httpx.AsyncClient, actor: Actor, action: Json, changes: Json
) -> httpx.Response:
    etag = (await fetch(client, actor, action)).headers.get("etag", '"0"')
    return await client.patch(
        f"/api/v1/actions/{action['id']}",
        json=changes,
        headers={**actor.headers, "If-Match": etag},
    )


async def events(
    client: httpx.AsyncClient, actor: Actor, incident: Json, prefix: str = "action."
) -> list[Json]:
    """The incident's timeline events whose type starts with ``prefix``, oldest first."""
    response = await client.get(
        f"/api/v1/incidents/{incident['id']}/timeline",
        params={"limit": 200},
        headers=actor.headers,
    )
    assert response.status_code == 200, response.text
    return [e for e in response.json()["items"] if e["type"].startswith(prefix)]


async def state(client: httpx.AsyncClient, actor: Actor, incident: Json) -> Json:
    """Everything a refused request must leave untouched: the incident, its actions and
    its whole timeline (read by ``actor``, who must see the incident)."""
    base = f"/api/v1/incidents/{incident['id']}"
    detail = await client.get(base, headers=actor.headers)
    actions = await client.get(f"{base}/actions", headers=actor.headers)
    timeline = await client.get(f"{base}/timeline", params={"limit": 200}, headers=actor.headers)
    for response in (detail, actions, timeline):
        assert response.status_code == 200, response.text
    return {"incident": detail.json(), "actions": actions.json(), "timeline": timeline.json()}


@dataclass
class Room:
    """A GREEN incident triaged with a DOE and a METI owner, plus people to work it."""

    incident: Json
    reporter: Actor
    doe_lead: Actor
    meti_lead: Actor
    doe_responder: Actor
    meti_responder: Actor


async def triaged_room(
    client: httpx.AsyncClient, make_actor: MakeActor, *, status: str = "triaged", **incident: Any
) -> Room:
    """An incident in ``reported`` or ``triaged`` (owners: the two leads; severity SEV2)."""
    reporter = await make_actor("responder", "DOE")
    doe_lead, meti_lead = await make_actor("lead", "DOE"), await make_actor("lead", "METI")
    doe_responder = await make_actor("responder", "DOE")
    meti_responder = await make_actor("responder", "METI")
    created = await create(client, reporter, **incident)
    room = Room(created, reporter, doe_lead, meti_lead, doe_responder, meti_responder)
    if status == "reported":
        return room
    assert (await assign(client, doe_lead, created, "DOE", doe_lead)).status_code == 200
    assert (await assign(client, doe_lead, created, "METI", meti_lead)).status_code == 200
    url = f"/api/v1/incidents/{created['id']}"
    etag = (await client.get(url, headers=doe_lead.headers)).headers["etag"]
    patched = await client.patch(
        url, json={"severity": "SEV2"}, headers={**doe_lead.headers, "If-Match": etag}
    )
    assert patched.status_code == 200, patched.text
    triaged = await move(client, doe_lead, created, "triaged")
    assert triaged.status_code == 200, triaged.text
    room.incident = triaged.json()
    return room


async def drive(client: httpx.AsyncClient, room: Room, action: Json, to: str) -> Json:
    """Walk an action (assigned, with a future due time) forward by the owning leads:
    proposed → approved → in_progress → ``to`` (completed / blocked), asserting each step."""
    leads = {"DOE": [room.doe_lead], "METI": [room.meti_lead]}
    approvers = leads.get(action["owning_ministry"], [room.doe_lead, room.meti_lead])
    for lead in approvers:
        response = await approve(client, lead, action)
        assert response.status_code == 201, response.text
    steps = {"approved": [], "in_progress": ["in_progress"]}
    path = steps.get(to, ["in_progress", to])
    body: Json = response.json()
    for target in path:
        extra = {"outcome": "Done."} if target == "completed" else {}
        if target == "blocked":
            extra = {"reason": "Waiting on customs."}
        moved = await act(client, approvers[0], action, target, **extra)
        assert moved.status_code == 200, moved.text
        body = moved.json()
    assert body["status"] == to
    return body
