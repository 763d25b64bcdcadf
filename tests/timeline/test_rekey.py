"""Re-keying the timeline (``rrg audit rekey``): every chain re-hashed under a new audit key,
breaks kept where they were, a wrong old key changing nothing, and on PostgreSQL the
append-only trigger's one controlled exception."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from app.db import Database
from app.timeline import rekey
from app.timeline.models import TimelineEvent
from app.timeline.service import SYSTEM, BrokenLink, NewEvent, record_many, verify
from tests.conftest import TEST_AUDIT_KEY, MakeActor, run_rrg
from tests.timeline.test_audit import build_chains, rewrite, tamper

OLD_KEY = TEST_AUDIT_KEY.encode()
NEW = "the new audit key, long enough for production use"
NEW_KEY = NEW.encode()
ALTERED = "its content does not match its hash (altered)"


async def verify_under(database_url: str, key: bytes) -> list[BrokenLink]:
    other = Database(database_url, audit_key=key)
    try:
        async with other.unit_of_work(readonly=True) as session:
            return await verify(session)
    finally:
        await other.dispose()


async def stored(db: Database) -> dict[uuid.UUID, tuple[Any, ...]]:
    """Every event's row: content columns, then prev_hash and hash."""
    async with db.unit_of_work(readonly=True) as session:
        events = await session.scalars(select(TimelineEvent))
        return {
            e.id: (e.incident_id, e.seq, e.at, e.actor_kind, e.type, e.data, e.prev_hash, e.hash)
            for e in events
        }


async def rekey_command(database_url: str, **env: str) -> Any:
    return await run_rrg(
        database_url,
        "audit",
        "rekey",
        "--ignore-other-sessions",
        **{"RRG_NEW_AUDIT_KEY": NEW, **env},
    )


async def test_rekey_rehashes_every_chain_and_verify_follows_the_new_key(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, database_url: str
):
    chains = await build_chains(client, make_actor)
    first_key, second_key = chains.keys
    before = await stored(db)

    result = await rekey_command(database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    fingerprints = f"key {rekey.fingerprint(OLD_KEY)} -> {rekey.fingerprint(NEW_KEY)}"
    assert (
        f"{fingerprints}: 2 chains (10 events) re-keyed, 0 already under the new key, 0 broken"
        in result.stdout
    )
    assert TEST_AUDIT_KEY not in result.stdout + result.stderr
    assert NEW not in result.stdout + result.stderr

    # Content untouched; every hash changed.
    after = await stored(db)
    assert after.keys() == before.keys()
    for event_id, row in after.items():
        assert row[:6] == before[event_id][:6]
        assert row[7] != before[event_id][7]

    assert await verify_under(database_url, NEW_KEY) == []
    assert await verify_under(database_url, OLD_KEY) == [
        BrokenLink(first_key, 1, ALTERED),
        BrokenLink(second_key, 1, ALTERED),
    ]
    new_verify = await run_rrg(database_url, "audit", "verify", RRG_AUDIT_KEY=NEW)
    assert new_verify.returncode == 0, new_verify.stdout + new_verify.stderr
    old_verify = await run_rrg(database_url, "audit", "verify")
    assert old_verify.returncode == 1
    assert "2 broken chains" in old_verify.stdout

    # Run again (as after an interruption): nothing left to do.
    again = await rekey_command(database_url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 chains (0 events) re-keyed, 2 already under the new key, 0 broken" in again.stdout
    assert await stored(db) == after

    # Processes restarted with the new key append to the re-keyed chains.
    restarted = Database(database_url, audit_key=NEW_KEY)
    try:
        async with restarted.unit_of_work() as session:
            await record_many(
                session,
                [
                    NewEvent(uuid.UUID(chains.first["id"]), SYSTEM, "comment.created", {"n": 1}),
                    NewEvent(uuid.UUID(chains.second["id"]), SYSTEM, "comment.created", {"n": 2}),
                ],
            )
    finally:
        await restarted.dispose()
    assert await verify_under(database_url, NEW_KEY) == []


async def test_rekey_in_batches_of_one_incident_resumes_where_it_stopped(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, database_url: str
):
    await build_chains(client, make_actor)
    seen: list[int] = []

    class Interrupted(Exception):
        pass

    def stop_after_first_batch(report: rekey.RekeyReport) -> None:
        seen.append(report.chains_rekeyed)
        raise Interrupted

    with pytest.raises(Interrupted):
        await rekey.rekey(db, OLD_KEY, NEW_KEY, batch=1, progress=stop_after_first_batch)
    assert seen == [1]  # the first batch committed before the interruption
    half = await verify_under(database_url, NEW_KEY)
    assert len(half) == 1 and half[0].seq == 1

    report = await rekey.rekey(db, OLD_KEY, NEW_KEY, batch=1)
    assert (report.chains_rekeyed, report.chains_already_new, report.broken) == (1, 1, [])
    assert await verify_under(database_url, NEW_KEY) == []


async def test_rekey_keeps_a_break_where_it_was(
    client: httpx.AsyncClient,
    make_actor: MakeActor,
    db: Database,
    backend: str,
    database_url: str,
):
    chains = await build_chains(client, make_actor)
    first_key, _ = chains.keys
    await tamper(db, backend, rewrite(chains.first, 5, data={"title": "forged"}))
    before = await stored(db)

    result = await rekey_command(database_url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"BROKEN {first_key} at seq 5: {ALTERED} (left as it was)" in result.stdout
    # The first chain's 4 intact events and the second chain's 2.
    assert "1 chains (6 events) re-keyed, 0 already under the new key, 1 broken" in result.stdout

    # Under the new key the break is still at event 5, and events 5-8 are as they were.
    assert await verify_under(database_url, NEW_KEY) == [
        BrokenLink(first_key, 5, "its predecessor hash does not match the previous event")
    ]
    after = await stored(db)
    first = uuid.UUID(chains.first["id"])
    for event_id, row in after.items():
        if row[0] == first and row[1] >= 5:
            assert row == before[event_id]

    # A second run changes nothing and names the same break.
    again = await rekey_command(database_url)
    assert again.returncode == 1
    assert f"BROKEN {first_key} at seq 5: " in again.stdout
    assert "0 chains (0 events) re-keyed, 1 already under the new key, 1 broken" in again.stdout
    assert await stored(db) == after


async def test_rekey_with_a_wrong_old_key_changes_nothing(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, database_url: str
):
    chains = await build_chains(client, make_actor)
    first_key, second_key = chains.keys
    before = await stored(db)
    result = await rekey_command(database_url, RRG_AUDIT_KEY="not the key these chains use")
    assert result.returncode == 1
    assert "0 chains (0 events) re-keyed, 0 already under the new key, 2 broken" in result.stdout
    assert f"BROKEN {first_key} at seq 1" in result.stdout
    assert f"BROKEN {second_key} at seq 1" in result.stdout
    assert await stored(db) == before
    assert await verify_under(database_url, OLD_KEY) == []


async def test_rekey_refuses_a_missing_equal_or_weak_new_key(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, database_url: str
):
    await build_chains(client, make_actor)
    before = await stored(db)
    missing = await run_rrg(database_url, "audit", "rekey", "--ignore-other-sessions")
    assert missing.returncode == 1 and "Set RRG_NEW_AUDIT_KEY" in missing.stderr
    same = await rekey_command(database_url, RRG_NEW_AUDIT_KEY=TEST_AUDIT_KEY)
    assert same.returncode == 1 and "is the key in use" in same.stderr
    production = {
        "RRG_ENV": "production",
        "RRG_SECRET_KEY": "a production session secret of enough length",
        "RRG_AUDIT_KEY": TEST_AUDIT_KEY + " padded to thirty-two characters",
    }
    weak = await rekey_command(database_url, **production, RRG_NEW_AUDIT_KEY="short")
    assert weak.returncode == 1 and "RRG_AUDIT_KEY must be set" in weak.stderr
    assert await stored(db) == before


@pytest.mark.postgresql_only
async def test_rekey_refuses_while_other_sessions_are_connected(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, database_url: str
):
    await build_chains(client, make_actor)
    before = await stored(db)
    async with db.engine.connect() as held:  # another process's connection, as a replica's
        await held.execute(text("SELECT 1"))
        result = await run_rrg(database_url, "audit", "rekey", RRG_NEW_AUDIT_KEY=NEW)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Other sessions are connected to the database" in result.stderr
    assert await stored(db) == before


@pytest.mark.postgresql_only
async def test_the_trigger_lets_a_rekey_change_hashes_and_nothing_else(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database
):
    chains = await build_chains(client, make_actor)
    events = TimelineEvent.__table__
    first = uuid.UUID(chains.first["id"])
    one = (events.c.incident_id == first) & (events.c.seq == 2)
    flag = text("SELECT set_config('rrg.timeline_rekey', 'on', true)")

    async def attempt(*statements: Any) -> None:
        async with db.engine.begin() as conn:
            for statement in statements:
                await conn.execute(statement)

    refused = [
        (update(events).where(one).values(hash="0" * 64),),  # no flag
        (flag, update(events).where(one).values(data={"forged": True})),
        (flag, update(events).where(one).values(seq=99)),
        (flag, update(events).where(one).values(hash="0" * 64, type="comment.created")),
        (flag, delete(events).where(one)),
    ]
    for statements in refused:
        with pytest.raises(DBAPIError, match="append-only"):
            await attempt(*statements)
    # The flag is transaction-local: the next transaction is refused again.
    await attempt(flag, update(events).where(one).values(hash="1" * 64))
    with pytest.raises(DBAPIError, match="append-only"):
        await attempt(update(events).where(one).values(hash="2" * 64))
    async with db.engine.connect() as conn:
        assert await conn.scalar(select(events.c.hash).where(one)) == "1" * 64
