"""Idempotency-Key on every creating POST (SPEC §8): one resource per key, the first
response replayed (with its ETag), scoped by the resolved resource, and a replay only
for a caller who may still see what it shows."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import select

from app.db import Database
from app.idempotency import IdempotencyKey
from tests.actions.helpers import drive, in_days, proposal, propose, triaged_room
from tests.conftest import Actor, MakeActor, assert_problem
from tests.incidents.helpers import assign, create, move, report

Json = dict[str, Any]


async def twice(
    client: httpx.AsyncClient, actor: Actor, path: str, body: Json, key: str
) -> tuple[httpx.Response, httpx.Response]:
    headers = {**actor.headers, "Idempotency-Key": key}
    first = await client.post(path, json=body, headers=headers)
    again = await client.post(path, json=body, headers=headers)
    assert first.status_code < 300, first.text
    assert "idempotent-replayed" not in first.headers
    assert again.headers.get("idempotent-replayed") == "true", again.text
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers.get("etag") == first.headers.get("etag")
    return first, again


async def listed(client: httpx.AsyncClient, actor: Actor, path: str) -> list[Json]:
    response = await client.get(path, params={"limit": 200}, headers=actor.headers)
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return items


async def test_every_creating_post_creates_once_and_replays_its_first_response(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    admin, lead = await make_actor("admin"), await make_actor("lead")
    responder = await make_actor("responder")

    first, _ = await twice(client, responder, "/api/v1/incidents", report(), "incident-1")
    incident = first.json()
    assert first.status_code == 201 and first.headers["etag"] == '"1"'
    assert len(await listed(client, responder, "/api/v1/incidents")) == 1

    base = f"/api/v1/incidents/{incident['id']}"
    action, _ = await twice(client, responder, f"{base}/actions", proposal(), "action-1")
    assert action.status_code == 201 and action.headers["etag"] == '"1"'
    assert len(await listed(client, responder, f"{base}/actions")) == 1

    comment, _ = await twice(client, responder, f"{base}/comments", {"body": "Seen."}, "c-1")
    assert comment.status_code == 201 and "etag" not in comment.headers
    assert len(await listed(client, responder, f"{base}/comments")) == 1

    joined, _ = await twice(
        client, lead, f"{base}/participants", {"user_id": str(admin.id)}, "participant-1"
    )
    assert joined.status_code == 200
    assert [p["id"] for p in joined.json()["participants"]] == [str(admin.id)]
    added = [
        e for e in await listed(client, lead, f"{base}/timeline") if "participant" in e["type"]
    ]
    assert len(added) == 1

    token, _ = await twice(client, responder, "/api/v1/tokens", {"name": "feed"}, "token-1")
    assert token.status_code == 201
    assert len(await listed(client, responder, "/api/v1/tokens")) == 2  # the test's own + one

    user_body = {"email": "new@doe.example.org", "display_name": "New", "ministry": "DOE"}
    user, _ = await twice(client, admin, "/api/v1/users", user_body, "user-1")
    assert user.status_code == 201
    emails = [u["email"] for u in await listed(client, admin, "/api/v1/users")]
    assert emails.count("new@doe.example.org") == 1


async def test_a_signoff_is_given_once_per_key(client: httpx.AsyncClient, make_actor: MakeActor):
    room = await triaged_room(client, make_actor)
    incident, lead = room.incident, room.doe_lead
    live = await propose(
        client,
        room.doe_responder,
        incident,
        assignee_id=str(room.doe_responder.id),
        due_at=in_days(2),
    )
    assert (await move(client, lead, incident, "responding")).status_code == 200
    await drive(client, room, live, "completed")
    resolved = await move(
        client, lead, incident, "resolved", resolution_summary="Stockpile covered the gap."
    )
    assert resolved.status_code == 200, resolved.text

    signed, _ = await twice(
        client, lead, f"/api/v1/incidents/{incident['id']}/signoffs", {}, "signoff-1"
    )
    assert signed.status_code == 201
    assert [s["ministry"] for s in signed.json()["signoffs"]] == ["DOE"]
    current = await client.get(f"/api/v1/incidents/{incident['id']}", headers=lead.headers)
    assert [s["ministry"] for s in current.json()["signoffs"]] == ["DOE"]


async def test_a_key_is_scoped_by_the_incident_not_by_how_the_path_names_it(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    responder = await make_actor("responder")
    incident = await create(client, responder)
    spellings = [incident["key"], incident["key"].lower(), incident["id"]]
    headers = {**responder.headers, "Idempotency-Key": "same-key"}

    actions = [
        await client.post(f"/api/v1/incidents/{s}/actions", json=proposal(), headers=headers)
        for s in spellings
    ]
    comments = [
        await client.post(f"/api/v1/incidents/{s}/comments", json={"body": "Hi"}, headers=headers)
        for s in spellings
    ]

    for made in (actions, comments):
        assert {r.status_code for r in made} == {201}
        assert len({r.json()["id"] for r in made}) == 1
        assert [r.headers.get("idempotent-replayed") for r in made] == [None, "true", "true"]
    base = f"/api/v1/incidents/{incident['id']}"
    assert len(await listed(client, responder, f"{base}/actions")) == 1
    assert len(await listed(client, responder, f"{base}/comments")) == 1
    # The same key on another incident is another scope: a new action there.
    other = await create(client, responder, title="Antimony export ban")
    there = await client.post(
        f"/api/v1/incidents/{other['key']}/actions", json=proposal(), headers=headers
    )
    assert there.status_code == 201 and "idempotent-replayed" not in there.headers


async def test_a_replay_is_refused_to_a_caller_who_can_no_longer_see_the_result(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter, lead = await make_actor("responder", "DOE"), await make_actor("lead", "DOE")
    outsider = await make_actor("responder", "METI")
    incident = await create(client, reporter)  # GREEN: everyone sees it
    base = f"/api/v1/incidents/{incident['id']}"
    keyed = {**outsider.headers, "Idempotency-Key": "comment-1"}
    first = await client.post(f"{base}/comments", json={"body": "From Tokyo"}, headers=keyed)
    assert first.status_code == 201, first.text

    # The lead becomes an owner (named), then marks the incident RED: only the named see it.
    assert (await assign(client, lead, incident, "DOE", lead)).status_code == 200
    etag = (await client.get(base, headers=lead.headers)).headers["etag"]
    red = await client.patch(base, json={"tlp": "RED"}, headers={**lead.headers, "If-Match": etag})
    assert red.status_code == 200, red.text

    replay = await client.post(f"{base}/comments", json={"body": "From Tokyo"}, headers=keyed)
    body = assert_problem(replay, 404)
    assert "From Tokyo" not in replay.text and body["type"] == "urn:rrg:problem:not-found"


async def test_a_replay_carries_the_etag_of_the_response_it_replays(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter = await make_actor("responder")
    keyed = {**reporter.headers, "Idempotency-Key": "incident-etag"}
    first = await client.post("/api/v1/incidents", json=report(), headers=keyed)
    assert first.status_code == 201 and first.headers["etag"] == '"1"'
    url = f"/api/v1/incidents/{first.json()['id']}"
    edited = await client.patch(
        url, json={"summary": "Updated"}, headers={**reporter.headers, "If-Match": '"1"'}
    )
    assert edited.status_code == 200 and edited.headers["etag"] == '"2"'

    replay = await client.post("/api/v1/incidents", json=report(), headers=keyed)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["etag"] == '"1"' and replay.json()["version"] == 1


async def test_a_replayed_token_is_the_same_secret_which_is_never_stored_in_clear(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    user = await make_actor("viewer")
    first, again = await twice(client, user, "/api/v1/tokens", {"name": "feed"}, "token-key")
    secret = first.json()["token"]
    assert again.json()["token"] == secret and secret.startswith("rrg_")
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["id"] == str(user.id)
    async with db.unit_of_work(readonly=True) as session:
        stored = (await session.scalars(select(IdempotencyKey))).all()
    assert len(stored) == 1 and stored[0].response_body is not None
    assert secret not in str(stored[0].response_body)
    assert stored[0].response_body["token"].startswith("sealed:")


async def test_a_sealed_replay_under_a_replaced_secret_key_is_a_conflict_not_a_500(
    app: Any, client: httpx.AsyncClient, make_actor: MakeActor
):
    user = await make_actor("viewer")
    keyed = {**user.headers, "Idempotency-Key": "token-rotated"}
    first = await client.post("/api/v1/tokens", json={"name": "feed"}, headers=keyed)
    assert first.status_code == 201, first.text
    app.state.settings = app.state.settings.model_copy(
        update={"secret_key": SecretStr("another-secret-key-after-rotation")}
    )
    replay = await client.post("/api/v1/tokens", json={"name": "feed"}, headers=keyed)
    assert "can no longer be replayed" in assert_problem(replay, 409)["detail"]
    assert len(await listed(client, user, "/api/v1/tokens")) == 2
