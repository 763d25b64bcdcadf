"""Alembic environment: async engines, batch mode on SQLite, the models' metadata."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from app.db import Database
from app.migrate import MIGRATION_LOCK_ID
from app.models import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    db = Database(url)
    try:
        async with db.engine.connect() as connection:
            # One migrator at a time: replicas started together each run `rrg migrate`; the
            # ones that wait find the schema at head when the lock is theirs (Alembic reads
            # the current revision only after this).
            locked = connection.dialect.name == "postgresql"
            if locked:
                await connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
                await connection.commit()
            try:
                await connection.run_sync(_run)
                await connection.commit()
            finally:
                if locked:
                    await connection.rollback()
                    await connection.exec_driver_sql(
                        f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"
                    )
                    await connection.commit()
    finally:
        await db.dispose()


url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
if not url:
    from app.config import get_settings

    url = get_settings().database_url
asyncio.run(_run_async(url))
