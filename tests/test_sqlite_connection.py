"""SQLite connections run their calls on the event loop's thread (app.db._InlineSQLite),
except what may wait on another process: that waits in the connection's thread, and the
event loop keeps serving meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app import db as db_module
from app.db import SQLITE_BUSY_TIMEOUT_MS, Database


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[tuple[Database, Path]]:
    path = tmp_path / "inline.db"
    database = Database(f"sqlite:///{path}")
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    yield database, path
    await database.dispose()


@pytest.fixture
def hand_offs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The calls handed to a connection's thread (their SQL, or the function's name)."""
    seen: list[str] = []
    original = db_module._InlineSQLite._in_thread

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(args[0] if args and isinstance(args[0], str) else fn.__name__)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(db_module._InlineSQLite, "_in_thread", counted)
    return seen


async def test_a_write_hands_nothing_to_the_thread_when_nobody_else_writes(
    database: tuple[Database, Path], hand_offs: list[str]
):
    db, _ = database
    async with db.engine.begin() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, db_module._InlineSQLite)
        await conn.exec_driver_sql("INSERT INTO t (n) VALUES (1), (2)")
        total = (await conn.exec_driver_sql("SELECT sum(n) FROM t")).scalar()
    assert total == 3
    assert hand_offs == []


async def test_a_large_batch_runs_in_the_thread_and_a_small_one_here(
    database: tuple[Database, Path], hand_offs: list[str]
):
    db, _ = database
    small = [{"n": n} for n in range(db_module.INLINE_BATCH_ROWS)]
    large = [{"n": n} for n in range(1000, 1000 + db_module.INLINE_BATCH_ROWS + 1)]
    async with db.engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (n) VALUES (:n)"), small)
        assert hand_offs == []
        await conn.execute(text("INSERT INTO t (n) VALUES (:n)"), large)
    assert hand_offs == ["INSERT INTO t (n) VALUES (?)"]
    async with db.engine.connect() as conn:
        count = (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar()
    assert count == len(small) + len(large)


async def test_a_write_waits_for_another_processs_lock_without_blocking_the_loop(
    database: tuple[Database, Path], hand_offs: list[str]
):
    db, path = database
    other = sqlite3.connect(path, isolation_level=None)  # as another process would
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def write() -> int:
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("INSERT INTO t (n) VALUES (7)")
            return int((await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one())

    ticker = asyncio.create_task(tick())
    writing = asyncio.create_task(write())
    try:
        await asyncio.sleep(0.3)
        assert not writing.done()  # waiting for the other writer's lock...
        assert ticks >= 10  # ...while the event loop keeps running
        other.execute("COMMIT")
        busy_timeout = await asyncio.wait_for(writing, 10)
    finally:
        ticker.cancel()
        other.close()
    assert hand_offs[0] == "BEGIN IMMEDIATE"  # the wait happened in the thread
    assert busy_timeout == SQLITE_BUSY_TIMEOUT_MS  # restored after the attempt here
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT n FROM t")).scalars().all() == [7]


async def test_an_error_raised_on_the_loop_thread_leaves_the_connection_usable(
    database: tuple[Database, Path],
):
    db, _ = database
    with pytest.raises(Exception, match="UNIQUE constraint failed"):
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("INSERT INTO t (n) VALUES (1), (1)")
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql("INSERT INTO t (n) VALUES (1)")
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar() == 1
