from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from app.db import Database
from app.migrate import current_revision, head_revision
from app.models import metadata


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
