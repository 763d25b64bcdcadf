"""Database access: the declarative base, the engine, and the unit of work.

One engine per process. A unit of work is one transaction that commits once at
its end or rolls back; services flush, only the unit of work commits.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiosqlite
from sqlalchemy import JSON, ColumnElement, DateTime, MetaData, Table, Uuid, event, inspect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, make_transient_to_detached
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_only

from app import caches  # noqa: F401 - its hooks announce writes to cached tables
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


class _InlineSQLite(aiosqlite.Connection):
    """An aiosqlite connection that runs its calls on the event loop's own thread.

    aiosqlite hands every call (cursor, execute, fetch, close...) to the connection's
    thread and back: a create made some 25 such hand-offs, each costing more than the
    SQLite work it carried (microseconds: the database is a local file, and in WAL mode
    readers never wait), and the ones inside a write turn held every other writer back.
    Only what may wait on another process still goes through the thread, so the event loop
    never sleeps in SQLite's busy handler: ``BEGIN IMMEDIATE`` is tried here without
    waiting, and only when another process holds the write lock (this process's writers
    queue in ``WriterQueue`` first) does it wait for it in the thread. The connection's
    PRAGMAs (once per connection) go through the thread as well, and so do large batches
    (a sweep's thousands of rows), during which the event loop keeps serving.
    """

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection or _is_large_batch(fn, args):
            return await self._in_thread(fn, *args, **kwargs)
        sql = args[0].lstrip()[:16].upper() if args and isinstance(args[0], str) else ""
        if sql.startswith("PRAGMA"):
            return await self._in_thread(fn, *args, **kwargs)
        if sql.startswith("BEGIN IMMEDIATE"):
            connection = self._connection
            connection.execute("PRAGMA busy_timeout = 0")
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
            finally:
                connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            return await self._in_thread(fn, *args, **kwargs)  # another process writes
        return fn(*args, **kwargs)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]


# An executemany of more rows than this runs in the connection's thread.
INLINE_BATCH_ROWS = 64


def _is_large_batch(fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    if getattr(fn, "__name__", "") != "executemany" or len(args) < 2:
        return False
    rows = args[1]
    return not hasattr(rows, "__len__") or len(rows) > INLINE_BATCH_ROWS


def _inline_sqlite(path: str) -> Callable[[], Awaitable[aiosqlite.Connection]]:
    """The engine's ``async_creator`` for the SQLite file at ``path``."""

    async def connect() -> aiosqlite.Connection:
        # The sqlite3 connection is used from the loop's thread and from its own.
        opened = _InlineSQLite(
            lambda: sqlite3.connect(path, check_same_thread=False), iter_chunk_size=64
        )
        return await opened

    return connect


class WriterQueue:
    """Writers to one SQLite database take turns in this process, in arrival order.

    SQLite allows one writer at a time; a second ``BEGIN IMMEDIATE`` waits in SQLite's busy
    handler, which sleeps and polls (ever longer sleeps), so under contention latency is
    set by the poll interval, not by the work. Here a writer first waits on an asyncio lock
    (woken the moment the previous writer's connection is returned to the pool, after its
    commit or rollback), so within one process the busy handler is never reached; it still
    guards against other processes. One lock per event loop (locks are bound to a loop).
    """

    HOLDS = "rrg_holds_write_turn"

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def take_turn(self, info: dict[Any, Any]) -> None:
        """Wait for this connection's turn (called in SQLAlchemy's greenlet, so it can
        await); a connection already holding it keeps it."""
        if info.get(self.HOLDS):
            return
        lock = self._lock()
        try:
            await_only(asyncio.wait_for(lock.acquire(), self.timeout_seconds))
        except TimeoutError:
            raise sqlite3.OperationalError(
                "database is locked (waited for the writer turn)"
            ) from None
        info[self.HOLDS] = lock

    def end_turn(self, info: dict[Any, Any]) -> None:
        lock = info.pop(self.HOLDS, None)
        if lock is not None:
            lock.release()


def _configure_sqlite(engine: AsyncEngine, writers: WriterQueue) -> None:
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
        # Writers take the write lock up front, so concurrent writers wait their turn
        # instead of failing on a lock upgrade; readers use a deferred BEGIN; a single read
        # none (the statement is its own transaction).
        options = conn.get_execution_options()
        if options.get(SINGLE_READ, False):
            return
        if options.get("rrg_readonly", False):
            conn.exec_driver_sql("BEGIN")
            return
        writers.take_turn(conn.info)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writers.end_turn(conn.info)
            raise

    # The turn ends when the connection goes back to the pool: after its commit or
    # rollback has completed, so the next writer's BEGIN IMMEDIATE finds the lock free.
    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        writers.end_turn(record.info)


# The execution option of a session that sends one read outside any transaction.
SINGLE_READ = "rrg_single_read"

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
        pool_size: int = 20,
        max_overflow: int = 10,
        audit_key: bytes | None = None,
    ) -> None:
        self.url = async_url(url)
        kwargs: dict[str, Any] = {"pool_pre_ping": False}
        if self.url.startswith("postgresql"):
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=60)
        if self.url.startswith("sqlite"):
            location = make_url(self.url)
            if location.database not in (None, "", ":memory:") and not location.query:
                kwargs["async_creator"] = _inline_sqlite(location.database)
        self.engine = create_async_engine(self.url, **kwargs)
        self.dialect: str = self.engine.dialect.name
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine, WriterQueue(SQLITE_BUSY_TIMEOUT_MS / 1000))
        info = {} if audit_key is None else {AUDIT_KEY_INFO: audit_key}
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False, info=info)
        self._reader = async_sessionmaker(
            self.engine.execution_options(rrg_readonly=True), expire_on_commit=False, info=info
        )
        # One statement needs no transaction around it: on PostgreSQL autocommit saves the
        # BEGIN and ROLLBACK round trips, on SQLite the BEGIN hook skips it.
        single: dict[str, Any] = {SINGLE_READ: True}
        if self.dialect == "postgresql":
            single["isolation_level"] = "AUTOCOMMIT"
        self._single_reader = async_sessionmaker(
            self.engine.execution_options(**single), expire_on_commit=False, info=info
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            audit_key=settings.audit_key_bytes(),
        )

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

    @asynccontextmanager
    async def single_read(self) -> AsyncIterator[AsyncSession]:
        """A session for exactly one read statement, sent outside any transaction (one
        statement always sees one consistent snapshot). Nothing it loads may be written."""
        async with self._single_reader() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def table_of(model: type[Base]) -> Table:
    """A model's Core table: bulk writes through it skip the ORM's per-row bookkeeping."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def row_of(instance: Base) -> dict[str, Any]:
    """A new instance's row as an INSERT writes it, by column: the values it was given,
    and each column's Python default for the others (set on the instance as well, so it
    holds every column it was written with)."""
    row: dict[str, Any] = {}
    for attribute in inspect(instance).mapper.column_attrs:
        name = attribute.key
        if name not in instance.__dict__:
            default = attribute.columns[0].default
            value = None
            if default is not None and default.is_scalar:
                value = default.arg
            elif default is not None and default.is_callable:
                value = default.arg(None)
            setattr(instance, name, value)
        row[attribute.columns[0].key] = instance.__dict__[name]
    return row


def adopt(session: AsyncSession, instance: Base, *children: Base) -> None:
    """Make instances whose rows were just inserted without the ORM persistent in the
    session, as loaded and unchanged, as a flush would have left them (``children``: the
    ones its relationships hold, adopted with it)."""
    for held in (*children, instance):
        make_transient_to_detached(held)
    session.add(instance)


class json_rows(FunctionElement[Any]):
    """An aggregate: each row's values as a JSON array, all in one JSON array (NULL or
    ``[]`` over no rows), so a statement can carry a few rows in one column."""

    type = JSON()
    inherit_cache = True
    name = "json_rows"

    def __init__(self, *columns: ColumnElement[Any]) -> None:
        super().__init__(*columns)


@compiles(json_rows, "postgresql")
def _json_rows_postgresql(element: json_rows, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_agg(json_build_array({compiler.process(element.clauses, **kw)}))"


@compiles(json_rows, "sqlite")
def _json_rows_sqlite(element: json_rows, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_group_array(json_array({compiler.process(element.clauses, **kw)}))"
