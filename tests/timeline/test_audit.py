"""The tamper-evident timeline (SPEC §5): chains built through the API, tampering, the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from pydantic import SecretStr
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

from app.config import DEFAULT_SECRET_KEY, Settings
from app.db import Database, table_of
from app.incidents.models import Incident
from app.migrate import alembic_config, downgrade, upgrade
from app.timeline.models import TimelineEvent
from app.timeline.service import GENESIS, BrokenLink, chain_message, keyed_hash, verify
from tests.conftest import TEST_AUDIT_KEY, Actor, MakeActor, run_rrg
from tests.incidents.helpers import assign, create

KEY = TEST_AUDIT_KEY.encode()
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


async def stored_chain(db: Database, incident: dict[str, Any]) -> list[TimelineEvent]:
    async with db.unit_of_work(readonly=True) as session:
        events = await session.scalars(
            select(TimelineEvent)
            .where(TimelineEvent.incident_id == uuid.UUID(incident["id"]))
            .order_by(TimelineEvent.seq)
        )
        return list(events)


def message_of(event: TimelineEvent, *, prev_hash: str | None = None, data: Any = None) -> bytes:
    """What the event's hash covers, optionally with another predecessor or data."""
    return chain_message(
        prev_hash=event.prev_hash if prev_hash is None else prev_hash,
        incident_id=event.incident_id,
        seq=event.seq,
        at=event.at,
        actor_kind=event.actor_kind,
        actor_user_id=event.actor_user_id,
        actor_token_id=event.actor_token_id,
        type_=event.type,
        data=event.data if data is None else data,
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


async def test_one_event_rehashed_even_with_the_key_breaks_the_next_link(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, backend: str
):
    chains = await build_chains(client, make_actor)
    event = (await stored_chain(db, chains.first))[4]
    assert event.seq == 5
    data = {"body": "Something nobody said"}
    rehashed = keyed_hash(KEY, message_of(event, data=data))
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


async def test_audit_verify_command(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    db: Database,
    backend: str,
    database_url: str,
):
    chains = await build_chains(client, make_actor)
    first_key, second_key = chains.keys
    clean = await run_rrg(database_url, "audit", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "2 incidents, 10 events checked, 0 broken" in clean.stdout
    one = await run_rrg(database_url, "audit", "verify", first_key.lower())
    assert one.returncode == 0, one.stdout + one.stderr
    assert "1 incidents, 8 events checked, 0 broken" in one.stdout
    unknown = await run_rrg(database_url, "audit", "verify", "RRG-9999")
    assert unknown.returncode == 2 and "RRG-9999" in unknown.stderr

    await tamper(db, backend, rewrite(chains.first, 2, data={}))
    expected = [f"BROKEN {first_key} at seq 2: its content does not match its hash (altered)"]
    for args in [(), (first_key,)]:
        broken = await run_rrg(database_url, "audit", "verify", *args)
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert [line for line in broken.stdout.splitlines() if "BROKEN" in line] == expected
    still_clean = await run_rrg(database_url, "audit", "verify", second_key)
    assert still_clean.returncode == 0, still_clean.stdout + still_clean.stderr
    assert "BROKEN" not in still_clean.stdout


# --- a keyed chain: what someone with database access alone cannot do -------------------------

Digest = Callable[[bytes], str]


def plain_sha256(message: bytes) -> str:
    """The chain's digest before it was keyed: anyone with the database can recompute it."""
    return hashlib.sha256(message).hexdigest()


# The best guess without the key: the key a default installation derives.
GUESSED_KEY = Settings(secret_key=SecretStr(DEFAULT_SECRET_KEY), audit_key=None).audit_key_bytes()
FORGERS: dict[str, Digest] = {
    "plain SHA-256": plain_sha256,
    "HMAC under a guessed key": lambda message: keyed_hash(GUESSED_KEY, message),
}


def first_break(events: list[TimelineEvent], digest: Digest) -> int | None:
    """Where a chain stops verifying under ``digest`` (None: it verifies throughout)."""
    prev = GENESIS
    for expected_seq, event in enumerate(events, start=1):
        if event.seq != expected_seq or event.prev_hash != prev:
            return expected_seq
        if digest(message_of(event)) != event.hash:
            return event.seq
        prev = event.hash
    return None


async def rechain(
    db: Database,
    backend: str,
    incident: dict[str, Any],
    digest: Digest,
    *,
    from_seq: int = 1,
    altered: dict[str, Any] | None = None,
) -> None:
    """What a database administrator can do: alter event ``from_seq`` (when ``altered`` is
    given), recompute its hash and every successor's with ``digest``, re-linking each to
    its predecessor, and move the incident's chain head to the new last hash."""
    events = await stored_chain(db, incident)
    prev = GENESIS if from_seq == 1 else events[from_seq - 2].hash
    for event in events[from_seq - 1 :]:
        data = altered if altered is not None and event.seq == from_seq else event.data
        new_hash = digest(message_of(event, prev_hash=prev, data=data))
        await tamper(
            db, backend, rewrite(incident, event.seq, prev_hash=prev, hash=new_hash, data=data)
        )
        prev = new_hash
    incidents = table_of(Incident)
    await tamper(
        db,
        backend,
        update(incidents)
        .where(incidents.c.id == uuid.UUID(incident["id"]))
        .values(last_event_hash=prev),
    )


@pytest.mark.parametrize("from_seq", [5, 1])
@pytest.mark.parametrize("forger", list(FORGERS))
async def test_a_database_rewrite_without_the_key_is_caught_and_named_by_audit_verify(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    db: Database,
    backend: str,
    database_url: str,
    forger: str,
    from_seq: int,
):
    chains = await build_chains(client, make_actor)
    first_key, second_key = chains.keys
    digest = FORGERS[forger]
    await rechain(
        db, backend, chains.first, digest, from_seq=from_seq, altered={"body": "Never said"}
    )
    forged = await stored_chain(db, chains.first)
    # The rewritten events are flawless by the forger's digest, linked to each other...
    assert all(digest(message_of(e)) == e.hash for e in forged[from_seq - 1 :])
    assert all(e.prev_hash == p.hash for p, e in pairwise(forged))
    assert forged[from_seq - 1].data == {"body": "Never said"}
    # ...the keyed chain does not, and names the first event rewritten.
    reason = "its content does not match its hash (altered)"
    assert await verify_now(db) == [BrokenLink(first_key, from_seq, reason)]
    result = await run_rrg(database_url, "audit", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert [line for line in result.stdout.splitlines() if "BROKEN" in line] == [
        f"BROKEN {first_key} at seq {from_seq}: {reason}"
    ]
    assert "2 incidents, 10 events checked, 1 broken chains" in result.stdout
    assert await verify_now(db, second_key) == []


async def test_verify_with_another_audit_key_fails_every_chain(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, database_url: str
):
    chains = await build_chains(client, make_actor)
    first_key, second_key = chains.keys
    assert await verify_now(db) == []
    other = Database(database_url, audit_key=b"another key, not the one the chains use")
    try:
        broken = await verify_now(other)
    finally:
        await other.dispose()
    altered = "its content does not match its hash (altered)"
    assert broken == [BrokenLink(first_key, 1, altered), BrokenLink(second_key, 1, altered)]

    result = await run_rrg(database_url, "audit", "verify", RRG_AUDIT_KEY="another key")
    assert result.returncode == 1, result.stdout + result.stderr
    assert [line for line in result.stdout.splitlines() if "BROKEN" in line] == [
        f"BROKEN {first_key} at seq 1: {altered}",
        f"BROKEN {second_key} at seq 1: {altered}",
    ]
    assert "is RRG_AUDIT_KEY the key these chains were written with?" in result.stderr
    # An empty key is refused rather than used.
    empty = await run_rrg(database_url, "audit", "verify", first_key, RRG_AUDIT_KEY="")
    assert empty.returncode == 1 and "RRG_AUDIT_KEY is empty" in empty.stderr
    clean = await run_rrg(database_url, "audit", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr


async def test_the_migration_rekeys_plain_sha256_chains_and_keeps_old_breaks(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    db: Database,
    backend: str,
    database_url: str,
):
    chains = await build_chains(client, make_actor)
    first_key, second_key = chains.keys
    third = await create(client, chains.lead, title="Antimony smelter fire", minerals=["Sb"])
    for n in range(3):
        await comment(client, chains.lead, third, f"Update {n}")
    # The chains as the previous revision wrote them (plain SHA-256), the third one
    # tampered with at event 3 before the upgrade.
    for incident in (chains.first, chains.second, third):
        await rechain(db, backend, incident, plain_sha256)
    await tamper(db, backend, rewrite(third, 3, data={"body": "Rewritten before the upgrade"}))
    legacy = {i["key"]: await stored_chain(db, i) for i in (chains.first, chains.second, third)}
    assert [first_break(events, plain_sha256) for events in legacy.values()] == [None, None, 3]

    keyed_revision = "cea00e19ebcc"
    scripts = ScriptDirectory.from_config(alembic_config(database_url))
    previous = scripts.get_revision(keyed_revision).down_revision
    assert isinstance(previous, str)
    try:
        await asyncio.to_thread(command.stamp, alembic_config(database_url), previous)
        await asyncio.to_thread(upgrade, database_url, keyed_revision, audit_key=KEY)
        moved = "its predecessor hash does not match the previous event"
        # Intact chains verify under the key; the old break is still named where it was.
        assert await verify_now(db) == [BrokenLink(third["key"], 3, moved)]
        for key in (first_key, second_key):
            events = await stored_chain(db, {"id": str(legacy[key][0].incident_id)})
            assert first_break(events, lambda m: keyed_hash(KEY, m)) is None
            assert first_break(events, plain_sha256) == 1
            assert [e.data for e in events] == [e.data for e in legacy[key]]
        # Events after the old break are left exactly as they were.
        rekeyed_third = await stored_chain(db, third)
        assert [e.hash for e in rekeyed_third[2:]] == [e.hash for e in legacy[third["key"]][2:]]

        # Downgrading restores the previous format, and upgrading again re-keys it.
        await asyncio.to_thread(downgrade, database_url, previous, audit_key=KEY)
        for events in legacy.values():
            restored = await stored_chain(db, {"id": str(events[0].incident_id)})
            assert [(e.prev_hash, e.hash) for e in restored] == [
                (e.prev_hash, e.hash) for e in events
            ]
    finally:
        # Only the chains were moved back and forth: the rest of the schema is at head.
        await asyncio.to_thread(upgrade, database_url, keyed_revision, audit_key=KEY)
        await asyncio.to_thread(command.stamp, alembic_config(database_url), "head")
    assert await verify_now(db) == [BrokenLink(third["key"], 3, moved)]
    result = await run_rrg(database_url, "audit", "verify", first_key)
    assert result.returncode == 0, result.stdout + result.stderr
