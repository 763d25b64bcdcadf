from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from app.db import Database
from app.migrate import alembic_config, downgrade, upgrade
from app.models import metadata
from app.revisions import current_revision, head_revision, known_revisions
from tests.conftest import MakeActor
from tests.incidents.helpers import create, report

# The migration that moved incident numbers to a sequence on PostgreSQL.
SEQUENCE_REVISION = "5c1e0b7d9a24"


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "render_as_batch": connection.dialect.name == "sqlite"},
    )
    return list(compare_metadata(context, metadata))


# SQLite cannot reflect expression indexes (ix_users_directory), so it cannot compare them;
# PostgreSQL does, and tests/auth/test_directory.py sees the index in both query plans.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
async def test_models_and_migrations_agree(db: Database):
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == [], f"models differ from migrations: {diff}"


async def test_database_is_at_head_and_has_every_table(db: Database):
    async with db.engine.connect() as conn:
        assert await conn.run_sync(current_revision) == head_revision()
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert set(metadata.tables) <= tables


def test_revisions_read_without_alembic_match_alembics_own():
    scripts = ScriptDirectory.from_config(alembic_config(""))
    assert head_revision() == scripts.get_current_head()
    assert known_revisions() == {r.revision for r in scripts.walk_revisions()}


def test_a_server_process_does_not_load_alembic():
    """The API reads revision ids itself (``app.revisions``): Alembic and its templating
    would add about 10 MB to every server's resident memory (P5)."""
    probe = "import sys, app.main; print(sorted(m for m in sys.modules if m.startswith('alembic')))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


async def test_a_database_before_its_first_migration_has_no_revision(tmp_path: Any):
    empty = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        async with empty.engine.connect() as conn:
            assert await conn.run_sync(current_revision) is None
    finally:
        await empty.dispose()


async def test_incident_numbers_continue_across_the_sequence_migration(
    client: httpx.AsyncClient, make_actor: MakeActor, db: Database, database_url: str
):
    """On PostgreSQL the numbers moved from the counter row to a sequence: downgrading
    puts the last number given back in the counter, upgrading starts the sequence after it
    (on SQLite the counter stays, and both steps leave it as it is)."""
    reporter = await make_actor("responder")
    for _ in range(3):
        await create(client, reporter)
    scripts = ScriptDirectory.from_config(alembic_config(database_url))
    previous = scripts.get_revision(SEQUENCE_REVISION).down_revision
    assert isinstance(previous, str)
    try:
        await asyncio.to_thread(downgrade, database_url, previous)
        async with db.engine.connect() as conn:
            counter = await conn.scalar(
                text("SELECT value FROM counters WHERE name = 'incident_key'")
            )
        assert counter == 3
    finally:
        await asyncio.to_thread(upgrade, database_url)
    created = await client.post("/api/v1/incidents", json=report(), headers=reporter.headers)
    assert created.json()["key"] == "RRG-0004"
