"""Database access: the declarative base, the engine, and the unit of work.

One engine per process. A unit of work is one transaction that commits once at
its end or rolls back; services flush, only the unit of work commits.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, Table, Uuid, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from app.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite busy timeout: concurrent writers queue for up to this long instead of failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC datetime is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, uuid.UUID: Uuid}


def async_url(url: str) -> str:
    """Map a plain database URL to the async driver the service uses."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (used by offline tools)."""
    url = async_url(url)
    return url.replace("+asyncpg", "+psycopg").replace("+aiosqlite", "")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take BEGIN out of the driver's hands so the "begin" hook below decides it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so concurrent writers wait on the busy
        # timeout instead of failing on a lock upgrade; readers use a deferred BEGIN.
        readonly = conn.get_execution_options().get("rrg_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


# Where a session carries the timeline's HMAC key (``Session.info``): the key travels with
# the Database that opened the session, never through module state.
AUDIT_KEY_INFO = "rrg_audit_key"


class Database:
    """The engine plus session factories for writing and read-only units of work.

    ``audit_key`` keys the timeline's hash chain (see app.timeline.service); a Database
    built without one can do anything but append to or verify a timeline.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 20,
        audit_key: bytes | None = None,
    ) -> None:
        self.url = async_url(url)
        kwargs: dict[str, Any] = {"pool_pre_ping": False}
        if self.url.startswith("postgresql"):
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=60)
        self.engine = create_async_engine(self.url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            _configure_sqlite(self.engine)
        info = {} if audit_key is None else {AUDIT_KEY_INFO: audit_key}
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False, info=info)
        self._reader = async_sessionmaker(
            self.engine.execution_options(rrg_readonly=True), expire_on_commit=False, info=info
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            audit_key=settings.audit_key_bytes(),
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def unit_of_work(
        self, *, readonly: bool = False, commit: bool = True
    ) -> AsyncIterator[AsyncSession]:
        """One transaction: commit when the block ends normally, roll back otherwise
        (``commit=False``: always roll back, e.g. for a dry run)."""
        factory = self._reader if readonly else self._writer
        async with factory() as session:
            try:
                yield session
                # A read-only unit of work just closes (its loaded objects stay usable).
                if readonly:
                    pass
                elif commit:
                    await session.commit()
                else:
                    await session.rollback()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()


def table_of(model: type[Base]) -> Table:
    """A model's Core table: bulk writes through it skip the ORM's per-row bookkeeping."""
    table = model.__table__
    assert isinstance(table, Table)
    return table
