"""Concurrency: real requests raced with asyncio.gather on SQLite and PostgreSQL.

Optimistic locking (If-Match) must let exactly one of several writers of the same version
through; Idempotency-Key must create at most one incident per key and user however many
copies of the request arrive at once; incident keys must stay unique and gap-free under load.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from app import clock
from app.db import Database
from app.idempotency import IdempotencyKey
from app.incidents.models import Incident
from app.worker import purge_idempotency_keys
from tests.conftest import Actor, MakeActor, QueryCounter, assert_problem
from tests.incidents.helpers import create, report

INCIDENTS = "/api/v1/incidents"


async def _count(db: Database, model: type[Any]) -> int:
    async with db.unit_of_work(readonly=True) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _events(
    client: httpx.AsyncClient, actor: Actor, incident_id: str
) -> list[dict[str, Any]]:
    response = await client.get(f"{INCIDENTS}/{incident_id}/timeline", headers=actor.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


async def test_concurrent_patches_with_one_etag_let_exactly_one_through(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter = await make_actor("responder")
    incident = await create(client, reporter)
    url = f"{INCIDENTS}/{incident['id']}"
    headers = {**reporter.headers, "If-Match": '"1"'}
    titles = [f"Racing title {n:02d}" for n in range(50)]

    responses = await asyncio.gather(
        *(client.patch(url, json={"title": t}, headers=headers) for t in titles)
    )

    assert _statuses(responses) == {200: 1, 412: 49}, [r.text for r in responses]
    (winner_index,) = [i for i, r in enumerate(responses) if r.status_code == 200]
    winner = responses[winner_index]
    assert winner.headers["etag"] == '"2"'
    assert winner.json()["title"] == titles[winner_index]
    assert winner.json()["version"] == 2
    for loser in responses:
        if loser.status_code == 412:
            assert_problem(loser, 412)
    current = await client.get(url, headers=reporter.headers)
    assert current.headers["etag"] == '"2"'
    assert current.json()["version"] == 2
    assert current.json()["title"] == titles[winner_index]
    events = await _events(client, reporter, incident["id"])
    assert [e["type"] for e in events] == ["incident.created", "incident.updated"]
    assert events[1]["data"] == {
        "before": {"title": incident["title"]},
        "after": {"title": titles[winner_index]},
    }
    assert [e["seq"] for e in events] == [1, 2]
    assert events[1]["prev_hash"] == events[0]["hash"]


async def test_concurrent_transitions_with_one_etag_let_exactly_one_through(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    reporter, lead = await make_actor("responder"), await make_actor("lead", "DOE")
    incident = await create(client, reporter)
    url = f"{INCIDENTS}/{incident['id']}"
    headers = {**lead.headers, "If-Match": '"1"'}
    reasons = [f"Not a shortage (reviewer {n})" for n in range(10)]

    responses = await asyncio.gather(
        *(
            client.post(f"{url}/transitions", json={"to": "rejected", "reason": r}, headers=headers)
            for r in reasons
        )
    )

    assert _statuses(responses) == {200: 1, 412: 9}, [r.text for r in responses]
    (winner_index,) = [i for i, r in enumerate(responses) if r.status_code == 200]
    for loser in responses:
        if loser.status_code == 412:
            assert_problem(loser, 412)
    current = (await client.get(url, headers=lead.headers)).json()
    assert current["status"] == "rejected" and current["version"] == 2
    changes = [
        e for e in await _events(client, lead, incident["id"]) if e["type"] != "incident.created"
    ]
    assert [e["type"] for e in changes] == ["incident.status_changed"]
    assert changes[0]["data"] == {
        "from": "reported",
        "to": "rejected",
        "reason": reasons[winner_index],
    }


async def test_concurrent_creates_with_one_idempotency_key_create_one_incident(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    reporter, colleague = await make_actor("responder"), await make_actor("responder")
    body = report(title="Germanium export ban")
    keyed = {**reporter.headers, "Idempotency-Key": "create-germanium-1"}

    responses = await asyncio.gather(
        *(client.post(INCIDENTS, json=body, headers=keyed) for _ in range(20))
    )

    assert set(_statuses(responses)) <= {201, 409}, [r.text for r in responses]
    created = [r for r in responses if r.status_code == 201]
    assert created, "at least one request must create the incident"
    originals = [r for r in created if "idempotent-replayed" not in r.headers]
    assert len(originals) == 1, [dict(r.headers) for r in created]
    original = originals[0].json()
    for response in created:
        if response is not originals[0]:
            assert response.headers["idempotent-replayed"] == "true"
            assert response.json() == original
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409)
    assert await _count(db, Incident) == 1
    assert await _count(db, IdempotencyKey) == 1

    # A later retry replays; another body under the same key is refused.
    retry = await client.post(INCIDENTS, json=body, headers=keyed)
    assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"
    assert retry.json()["id"] == original["id"] and retry.json()["key"] == original["key"]
    other_body = await client.post(INCIDENTS, json=report(title="Another"), headers=keyed)
    assert assert_problem(other_body, 422)["errors"][0]["field"] == "Idempotency-Key"
    assert await _count(db, Incident) == 1

    # Keys are per user: a colleague's identical request is a new incident.
    theirs = await client.post(
        INCIDENTS, json=body, headers={**colleague.headers, "Idempotency-Key": "create-germanium-1"}
    )
    assert theirs.status_code == 201, theirs.text
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != original["id"]
    assert theirs.json()["reporter"]["id"] == str(colleague.id)
    assert await _count(db, Incident) == 2


async def test_failed_keyed_create_releases_its_reservation(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    db: Database,
    count_queries: Callable[[], QueryCounter],
):
    reporter = await make_actor("responder")
    keyed = {**reporter.headers, "Idempotency-Key": "bad-mineral"}
    bad = report(minerals=["Ga", "Xx"])  # well-formed: only the service knows Xx is unknown

    counter = count_queries()
    failed = await client.post(INCIDENTS, json=bad, headers=keyed)

    body = assert_problem(failed, 422)
    assert body["errors"] == [
        {"location": "body", "field": "minerals", "reason": "unknown mineral codes: Xx"}
    ]
    # The failure came from the service, after the key was reserved and committed...
    assert counter.statements is not None
    statements = [s.lstrip().upper() for s in counter.statements]
    reserved = next(
        i for i, s in enumerate(statements) if s.startswith("INSERT INTO IDEMPOTENCY_KEYS")
    )
    checked = next(i for i, s in enumerate(statements) if "FROM MINERALS" in s)
    released = next(
        i for i, s in enumerate(statements) if s.startswith("DELETE FROM IDEMPOTENCY_KEYS")
    )
    assert reserved < checked < released
    # ...and the reservation was given back, with nothing else left behind.
    assert await _count(db, IdempotencyKey) == 0
    assert await _count(db, Incident) == 0

    # So the same request is evaluated afresh (not a stored 422, not "in flight")...
    again = await client.post(INCIDENTS, json=bad, headers=keyed)
    assert_problem(again, 422)
    assert "idempotent-replayed" not in again.headers
    assert await _count(db, IdempotencyKey) == 0
    # ...and the key is free for the corrected request, which is then what it replays.
    fixed = await client.post(INCIDENTS, json=report(minerals=["Ga"]), headers=keyed)
    assert fixed.status_code == 201, fixed.text
    replay = await client.post(INCIDENTS, json=report(minerals=["Ga"]), headers=keyed)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == fixed.json()["id"]
    assert await _count(db, IdempotencyKey) == 1
    assert await _count(db, Incident) == 1


async def test_concurrent_creates_get_gap_free_unique_keys(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    reporters = [await make_actor("responder", ministry) for ministry in ("DOE", "METI")]
    for reporter in reporters:  # a used token: the race is on the key counter, not on tokens
        assert (await client.get("/api/v1/me", headers=reporter.headers)).status_code == 200

    responses = await asyncio.gather(
        *(
            client.post(
                INCIDENTS, json=report(title=f"Report {n}"), headers=reporters[n % 2].headers
            )
            for n in range(200)
        )
    )

    assert _statuses(responses) == {201: 200}, [r.text for r in responses if r.status_code != 201]
    bodies = [r.json() for r in responses]
    assert len({b["id"] for b in bodies}) == 200
    assert sorted(b["key"] for b in bodies) == [f"RRG-{n:04d}" for n in range(1, 201)]
    assert {b["title"] for b in bodies} == {f"Report {n}" for n in range(200)}
    async with db.unit_of_work(readonly=True) as session:
        stored = (await session.scalars(select(Incident.key).order_by(Incident.number))).all()
    assert stored == [f"RRG-{n:04d}" for n in range(1, 201)]
    # The next number follows the last one given.
    after = await client.post(INCIDENTS, json=report(), headers=reporters[0].headers)
    assert after.json()["key"] == "RRG-0201"


async def test_a_refused_create_uses_no_number(client: httpx.AsyncClient, make_actor: MakeActor):
    reporter = await make_actor("responder")
    refused = await client.post(
        INCIDENTS, json=report(minerals=["Ga", "Zz"]), headers=reporter.headers
    )
    assert_problem(refused, 422)
    created = await client.post(INCIDENTS, json=report(), headers=reporter.headers)
    assert created.json()["key"] == "RRG-0001"


async def test_the_periodic_job_purges_keys_older_than_a_day(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    reporter = await make_actor("responder")
    start = datetime.now(UTC)
    clock.set_source(lambda: start)
    for key in ("old-1", "old-2"):
        created = await client.post(
            "/api/v1/incidents",
            json=report(title=key),
            headers={**reporter.headers, "Idempotency-Key": key},
        )
        assert created.status_code == 201
    clock.set_source(lambda: start + timedelta(hours=23))
    fresh = await client.post(
        "/api/v1/incidents",
        json=report(title="fresh"),
        headers={**reporter.headers, "Idempotency-Key": "fresh"},
    )
    assert fresh.status_code == 201
    clock.set_source(lambda: start + timedelta(hours=25))
    await purge_idempotency_keys(db)
    async with db.unit_of_work(readonly=True) as session:
        kept = (await session.scalars(select(IdempotencyKey.key))).all()
        incidents = await session.scalar(select(func.count()).select_from(Incident))
    assert kept == ["fresh"]
    assert incidents == 3
