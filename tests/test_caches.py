"""Process caches (``app.caches``): kept until a committed change to their tables, here at
commit and in other processes through the commit's notification; never served on PostgreSQL
while nobody listens; never across the reader's own uncommitted change."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.caches import ProcessCache
from app.db import Database
from app.ministries.models import Ministry
from app.signals import CHANNEL, TABLES_PAYLOAD
from app.webhooks.models import Subscription
from tests.conftest import QueryCounter


class Reads:
    """A cache of the number of active subscriptions, counting its database reads."""

    def __init__(self) -> None:
        self.count = 0
        self.cache = ProcessCache(("webhook_subscriptions",), self._load)

    async def _load(self, session: AsyncSession) -> int:
        self.count += 1
        rows = await session.scalars(select(Subscription.id).where(Subscription.active))
        return len(rows.all())


async def _subscription(session: AsyncSession, *, active: bool = True) -> Subscription:
    ministry = (await session.scalars(select(Ministry).where(Ministry.code == "DOE"))).one()
    now = clock.now()
    row = Subscription(
        ministry_id=ministry.id,
        url=f"https://hooks.example/{uuid.uuid4()}",
        secret_ciphertext="x",
        active=active,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


def _echo_heard(cache: ProcessCache[int], drops: int, backend: str) -> Awaitable[None]:
    """Something to await until ``cache`` has been dropped ``drops`` times from now, counting on
    PostgreSQL the echo of this process's own commit: heard through the listener a moment
    later, it would otherwise drop a value read after the commit."""
    target = cache._generation + (drops if backend == "postgresql" else drops - 1)

    async def heard() -> None:
        deadline = time.monotonic() + 5
        while cache._generation < target:
            assert time.monotonic() < deadline, "the commit's notification was not heard"
            await asyncio.sleep(0.01)

    return heard()


async def test_kept_until_a_committed_change_then_read_again(
    db: Database, listening: None, backend: str
) -> None:
    reads = Reads()
    async with db.single_read() as session:
        assert await reads.cache.get(session) == 0
        assert await reads.cache.get(session) == 0
    assert reads.count == 1
    async with db.unit_of_work() as session:
        await _subscription(session)
        # This transaction wrote the table: it reads past the cache, and sees its own row.
        assert await reads.cache.get(session) == 1
        assert reads.count == 2
        echo = _echo_heard(reads.cache, 2, backend)  # the drop at commit, and its echo
    await echo
    async with db.single_read() as session:
        assert await reads.cache.get(session) == 1  # dropped at the commit, read again
        assert await reads.cache.get(session) == 1
    assert reads.count == 3


async def test_a_rolled_back_change_leaves_the_cache(db: Database, listening: None) -> None:
    reads = Reads()
    async with db.single_read() as session:
        assert await reads.cache.get(session) == 0

    async def write_then_fail() -> None:
        async with db.unit_of_work() as session:
            await _subscription(session)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await write_then_fail()
    async with db.single_read() as session:
        assert await reads.cache.get(session) == 0
    assert reads.count == 1


async def test_a_value_read_across_a_commit_is_not_kept(db: Database, listening: None) -> None:
    reads = Reads()
    real_load = reads._load

    async def slow_load(session: AsyncSession) -> int:
        value = await real_load(session)
        async with db.unit_of_work() as writer:  # commits while the value is on its way
            await _subscription(writer)
        return value

    reads.cache._load = slow_load
    async with db.single_read() as session:
        assert await reads.cache.get(session) == 0
    reads.cache._load = real_load
    async with db.single_read() as session:
        assert await reads.cache.get(session) == 1
    assert reads.count == 2


@pytest.mark.postgresql_only
async def test_a_change_committed_elsewhere_is_heard(
    db: Database, listening: None, database_url: str
) -> None:
    reads = Reads()
    async with db.single_read() as session:
        assert await reads.cache.get(session) == 0
    # Another process: a plain connection, its change and its notification in one commit.
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction():
            await other.execute("UPDATE webhook_subscriptions SET active = false")  # none yet
            await other.execute(
                "SELECT pg_notify($1, $2)", CHANNEL, TABLES_PAYLOAD + "webhook_subscriptions"
            )
    finally:
        await other.close()
    deadline = time.monotonic() + 5
    while reads.cache._value is not None:
        assert time.monotonic() < deadline, "the notification was not heard"
        await asyncio.sleep(0.01)
    async with db.single_read() as session:
        assert await reads.cache.get(session) == 0
    assert reads.count == 2


@pytest.mark.postgresql_only
async def test_not_served_on_postgresql_while_nobody_listens(
    db: Database, count_queries: Callable[[], QueryCounter]
) -> None:
    reads = Reads()
    counter = count_queries()
    for _ in range(3):
        async with db.single_read() as session:
            assert await reads.cache.get(session) == 0
    assert reads.count == 3
    assert len(counter.queries) == 3


async def test_cached_tables_named_in_the_notification(db: Database, backend: str) -> None:
    sent: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, params: object, *_: object) -> None:
        if "pg_notify" in statement:
            sent.append(repr(params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    try:
        async with db.unit_of_work() as session:
            await _subscription(session)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", note)
    if backend == "postgresql":
        assert len(sent) == 1 and repr(TABLES_PAYLOAD + "webhook_subscriptions") in sent[0]
    else:
        assert sent == []
