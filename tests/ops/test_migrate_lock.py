"""`rrg migrate` from several replicas at once: one upgrades, the others wait for it and
find the schema at head (a PostgreSQL advisory lock)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from app.db import Database
from app.migrate import MIGRATION_LOCK_ID
from app.revisions import head_revision
from tests.conftest import POSTGRES_URL
from tests.ops.helpers import drop_database, recreate_database, run_rrg_cli, scratch_database_name

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL")


async def test_concurrent_migrations_of_a_fresh_database_all_succeed_once():
    name = scratch_database_name("migrate_race")
    url = await recreate_database(name)
    try:
        results = await asyncio.gather(*(run_rrg_cli(url, "migrate") for _ in range(4)))
        for result in results:
            assert result.returncode == 0, result.stderr
            assert f"database at {head_revision()}" in result.stdout
        db = Database(url)
        try:
            async with db.engine.connect() as conn:
                versions = await conn.execute(text("SELECT version_num FROM alembic_version"))
                assert versions.scalars().all() == [head_revision()]
                # Seeded reference data went in once.
                codes = await conn.execute(text("SELECT code FROM ministries ORDER BY code"))
                assert codes.scalars().all() == ["DOE", "METI"]
                # And no migrator still holds the lock.
                held = await conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND ((classid::bigint << 32) | objid::bigint) = :key"
                    ),
                    {"key": MIGRATION_LOCK_ID},
                )
                assert held == 0
        finally:
            await db.dispose()
    finally:
        await drop_database(name)


async def test_a_migration_waits_while_another_holds_the_lock():
    name = scratch_database_name("migrate_wait")
    url = await recreate_database(name)
    holder = Database(url)
    try:
        async with holder.engine.connect() as conn:
            await conn.execute(text(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})"))
            await conn.commit()
            waiting = asyncio.create_task(run_rrg_cli(url, "migrate"))
            await asyncio.sleep(3)
            assert not waiting.done()  # blocked on the lock, not racing
            tables = await conn.scalar(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            )
            assert tables == 0
            await conn.execute(text(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"))
            await conn.commit()
        result = await asyncio.wait_for(waiting, 120)
        assert result.returncode == 0, result.stderr
    finally:
        await holder.dispose()
        await drop_database(name)
