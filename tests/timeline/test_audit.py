"""The tamper-evident timeline (SPEC §5): chains built through the API, tampering, the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

from app.db import Database
from app.incidents.models import Incident
from app.timeline.models import TimelineEvent
from app.timeline.service import GENESIS, BrokenLink, event_hash, verify
from tests.conftest import REPO_ROOT, Actor, MakeActor
from tests.incidents.helpers import assign, create

CHAIN_TYPES = [
    "incident.created",
    "incident.owner_assigned",
    "incident.owner_assigned",
    "incident.updated",
    "comment.created",
    "comment.created",
    "comment.created",
    "incident.participant_added",
]


@dataclass
class Chains:
    """A first incident with a long chain (``CHAIN_TYPES``), a second with two events.

    Keys are taken from the API: the key counter is reference data that survives
    between tests, so the first incident of a test is not necessarily RRG-0001.
    """

    first: dict[str, Any]
    second: dict[str, Any]
    lead: Actor

    @property
    def keys(self) -> tuple[str, str]:
        return self.first["key"], self.second["key"]


async def comment(client: httpx.AsyncClient, actor: Actor, incident: dict[str, Any], body: str):
    response = await client.post(
        f"/api/v1/incidents/{incident['id']}/comments", json={"body": body}, headers=actor.headers
    )
    assert response.status_code == 201, response.text


async def build_chains(client: httpx.AsyncClient, make_actor: MakeActor) -> Chains:
    reporter = await make_actor("responder")
    doe_lead, meti_lead = await make_actor("lead", "DOE"), await make_actor("lead", "METI")
    first = await create(client, reporter)
    assert (await assign(client, doe_lead, first, "DOE", doe_lead)).status_code == 200
    assert (await assign(client, doe_lead, first, "METI", meti_lead)).status_code == 200
    url = f"/api/v1/incidents/{first['id']}"
    etag = (await client.get(url, headers=doe_lead.headers)).headers["etag"]
    patched = await client.patch(
        url, json={"title": "Gallium and germanium"}, headers={**doe_lead.headers, "If-Match": etag}
    )
    assert patched.status_code == 200, patched.text
    for n in range(3):
        await comment(client, meti_lead, first, f"Comment {n}: 日本語も")
    added = await client.post(
        f"{url}/participants", json={"user_id": str(reporter.id)}, headers=doe_lead.headers
    )
    assert added.status_code == 200, added.text
    second = await create(client, reporter, title="Cobalt mine flooded", minerals=["Co"])
    await comment(client, reporter, second, "Second chain")
    return Chains(first, second, doe_lead)


async def timeline(
    client: httpx.AsyncClient, actor: Actor, incident: dict[str, Any], **params: Any
) -> dict[str, Any]:
    response = await client.get(
        f"/api/v1/incidents/{incident['id']}/timeline", params=params, headers=actor.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def verify_now(db: Database, key: str | None = None) -> list[BrokenLink]:
    async with db.unit_of_work(readonly=True) as session:
        return await verify(session, key)


async def tamper(db: Database, backend: str, statement: Executable) -> None:
    """Run a statement the append-only trigger would refuse, bypassing it (PostgreSQL)."""
    async with db.engine.begin() as conn:
        if backend == "postgresql":
            # Triggers do not fire for a replica; LOCAL keeps this to the transaction.
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
        result = await conn.execute(statement)
        assert result.rowcount == 1  # type: ignore[attr-defined]


def rewrite(incident: dict[str, Any], seq: int, **values: Any) -> Executable:
    return (
        update(TimelineEvent)
        .where(TimelineEvent.incident_id == uuid.UUID(incident["id"]), TimelineEvent.seq == seq)
        .values(**values)
    )


def remove(incident: dict[str, Any], seq: int) -> Executable:
    return delete(TimelineEvent).where(
        TimelineEvent.incident_id == uuid.UUID(incident["id"]), TimelineEvent.seq == seq
    )


async def test_chain_built_through_the_api_links_and_verifies(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    chains = await build_chains(client, make_actor)
    first_key, second_key = chains.keys
    assert first_key != second_key
    events = (await timeline(client, chains.lead, chains.first))["items"]
    assert [e["type"] for e in events] == CHAIN_TYPES
    assert [e["seq"] for e in events] == list(range(1, len(CHAIN_TYPES) + 1))
    assert events[0]["prev_hash"] == GENESIS
    for previous, event in pairwise(events):
        assert event["prev_hash"] == previous["hash"]
    hashes = [e["hash"] for e in events]
    assert len(set(hashes)) == len(hashes) and all(len(h) == 64 for h in hashes)
    # The second incident has its own chain, starting from the genesis hash again.
    other = (await timeline(client, chains.lead, chains.second))["items"]
    assert [e["seq"] for e in other] == [1, 2] and other[0]["prev_hash"] == GENESIS
    assert other[1]["prev_hash"] == other[0]["hash"]
    # The incident row holds the chain head.
    async with db.unit_of_work(readonly=True) as session:
        head = await session.scalar(select(Incident).where(Incident.key == first_key))
        assert head is not None
        assert (head.event_count, head.last_event_hash) == (len(events), events[-1]["hash"])
    assert await verify_now(db) == []
    assert await verify_now(db, first_key) == []


async def test_timeline_pages_in_order_without_gaps_or_repeats(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    chains = await build_chains(client, make_actor)
    everything = (await timeline(client, chains.lead, chains.first))["items"]
    assert len(everything) == 8
    seen: list[int] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = await timeline(client, chains.lead, chains.first, **params)
        sizes.append(len(body["items"]))
        seen += [e["seq"] for e in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(sizes) < 10, "the cursor never ran out"
    assert sizes == [3, 3, 2]
    assert seen == [e["seq"] for e in everything] == list(range(1, 9))
    # A page that ends exactly at the last event has no next cursor.
    exact = await timeline(client, chains.lead, chains.first, limit=8)
    assert len(exact["items"]) == 8 and exact["next_cursor"] is None
    comments = await timeline(client, chains.lead, chains.first, type="comment.created", limit=2)
    assert [e["seq"] for e in comments["items"]] == [5, 6] and comments["next_cursor"]
    rest = await timeline(
        client, chains.lead, chains.first, type="comment.created", cursor=comments["next_cursor"]
    )
    assert [e["seq"] for e in rest["items"]] == [7] and rest["next_cursor"] is None


async def test_altered_event_is_the_first_broken_link(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, backend: str
):
    chains = await build_chains(client, make_actor)
    first_key, second_key = chains.keys
    forged = rewrite(chains.first, 2, data={"ministry": "DOE", "before": None, "after": None})
    if backend == "postgresql":
        for refused in (forged, remove(chains.first, 2)):
            with pytest.raises(DBAPIError, match="append-only"):
                async with db.engine.begin() as conn:
                    await conn.execute(refused)
        assert await verify_now(db) == []  # nothing changed
    await tamper(db, backend, forged)
    broken = await verify_now(db)
    assert broken == [BrokenLink(first_key, 2, "its content does not match its hash (altered)")]
    assert await verify_now(db, first_key) == broken
    assert await verify_now(db, second_key) == []


async def test_altered_event_with_a_recomputed_hash_breaks_the_next_link(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, backend: str
):
    chains = await build_chains(client, make_actor)
    async with db.unit_of_work(readonly=True) as session:
        event = await session.scalar(
            select(TimelineEvent).where(
                TimelineEvent.incident_id == uuid.UUID(chains.first["id"]), TimelineEvent.seq == 5
            )
        )
        assert event is not None
    data = {"body": "Something nobody said"}
    rehashed = event_hash(
        prev_hash=event.prev_hash,
        incident_id=event.incident_id,
        seq=event.seq,
        at=event.at,
        actor_kind=event.actor_kind,
        actor_user_id=event.actor_user_id,
        actor_token_id=event.actor_token_id,
        type_=event.type,
        data=data,
    )
    await tamper(db, backend, rewrite(chains.first, 5, data=data, hash=rehashed))
    assert await verify_now(db) == [
        BrokenLink(chains.keys[0], 6, "its predecessor hash does not match the previous event")
    ]


async def test_deleted_events_are_detected(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, backend: str
):
    chains = await build_chains(client, make_actor)
    first_key, second_key = chains.keys
    await tamper(db, backend, remove(chains.first, 8))  # the last event
    await tamper(db, backend, remove(chains.second, 1))  # the first event
    assert await verify_now(db) == [
        BrokenLink(first_key, 8, "events are missing from the end of the chain"),
        BrokenLink(second_key, 1, "event 1 is missing"),
    ]


# The command line, run against the test database in a subprocess.


async def rrg(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RRG_DATABASE_URL": database_url, "PYTHONPATH": str(REPO_ROOT)}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_audit_verify_command(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    db: Database,
    backend: str,
    database_url: str,
):
    chains = await build_chains(client, make_actor)
    first_key, second_key = chains.keys
    clean = await rrg(database_url, "audit", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "2 incidents, 10 events checked, 0 broken" in clean.stdout
    one = await rrg(database_url, "audit", "verify", first_key.lower())
    assert one.returncode == 0, one.stdout + one.stderr
    assert "1 incidents, 8 events checked, 0 broken" in one.stdout
    unknown = await rrg(database_url, "audit", "verify", "RRG-9999")
    assert unknown.returncode == 2 and "RRG-9999" in unknown.stderr

    await tamper(db, backend, rewrite(chains.first, 2, data={}))
    expected = [f"BROKEN {first_key} at seq 2: its content does not match its hash (altered)"]
    for args in [(), (first_key,)]:
        broken = await rrg(database_url, "audit", "verify", *args)
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert [line for line in broken.stdout.splitlines() if "BROKEN" in line] == expected
    still_clean = await rrg(database_url, "audit", "verify", second_key)
    assert still_clean.returncode == 0, still_clean.stdout + still_clean.stderr
    assert "BROKEN" not in still_clean.stdout
