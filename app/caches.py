"""Values read from the database and kept in this process until the tables they come from
change: what nearly every request reads and what changes rarely (the callers' API tokens,
``app.auth.cache``; the priority's weights and register; the active webhook subscriptions).

A cache names the tables its value is read from. A transaction that writes one of them
through a session (a flush, or an INSERT, UPDATE or DELETE statement) announces it
(``app.signals``), and when it commits every cache reading that table is dropped: in this
process at once, in the others through the commit's notification (``tables:`` payload, heard
by the live-update listener, ``app.web.live``).

- On PostgreSQL, where other processes write, a cache serves only while that listener is
  connected; otherwise every read goes to the database.
- A transaction that has itself written one of a cache's tables reads past the cache (its
  own change is not committed, so the cache cannot hold it).
- A value read while a change to its tables committed is not kept (it may predate it).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, Protocol, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session

from app import signals

T = TypeVar("T")

# The longest a value is kept even when no change is heard: how long a change written
# outside the service (by hand, or by another process on SQLite) may go unseen.
MAX_AGE_SECONDS = 5.0


class Watcher(Protocol):
    """Something kept in this process from ``tables``: ``drop`` forgets it."""

    tables: frozenset[str]

    def drop(self) -> None: ...


# Every table a process cache reads from. Stated here, not gathered from the caches, so that
# any process that writes them announces it, whichever caches it has imported (``app.db``
# imports this module).
CACHED_TABLES = frozenset(
    {
        "users",
        "api_tokens",
        "ministries",
        "priority_weights",
        "concern_lists",
        "dependency_profiles",
        "webhook_subscriptions",
    }
)


def watch(watcher: Watcher) -> None:
    """Drop ``watcher`` at each committed change to its tables, and whenever this process
    starts or stops hearing other processes' commits."""
    assert watcher.tables <= CACHED_TABLES, "add its tables to CACHED_TABLES"
    _watchers.append(watcher)


def serving(dialect: str) -> bool:
    """Whether a cache may serve for a database of this dialect: on PostgreSQL only while
    changes committed by other processes are heard."""
    return _listening > 0 or dialect != "postgresql"


class ProcessCache(Generic[T]):
    """One value, read by ``load`` and kept until a committed change to ``tables``."""

    def __init__(self, tables: Iterable[str], load: Callable[[AsyncSession], Awaitable[T]]) -> None:
        self.tables = frozenset(tables)
        self._load = load
        self._value: tuple[float, T] | None = None
        self._generation = 0
        watch(self)

    async def get(self, session: AsyncSession) -> T:
        dialect = session.get_bind().dialect.name
        if not serving(dialect) or _written_here(session) & self.tables:
            return await self._load(session)
        held = self._value
        if held is not None and time.monotonic() - held[0] <= MAX_AGE_SECONDS:
            return held[1]
        generation, read_at = self._generation, time.monotonic()
        value = await self._load(session)
        if generation == self._generation:  # no change to its tables committed meanwhile
            self._value = (read_at, value)
        return value

    def drop(self) -> None:
        self._generation += 1
        self._value = None


_watchers: list[Watcher] = []
_listening = 0  # connected listeners of other processes' commits


def _written_here(session: AsyncSession) -> set[str]:
    """The tables this transaction has written, flushed or not yet."""
    return _tables_of(session.sync_session) | signals.announced_tables(session)


def _tables_of(session: Session) -> set[str]:
    """The tables of the session's changes not flushed yet."""
    rows = itertools.chain(session.new, session.dirty, session.deleted)
    return {getattr(type(row), "__tablename__", "") for row in rows}


def changed(tables: Iterable[str]) -> None:
    """Drop every cache reading one of these tables."""
    written = frozenset(tables)
    for watcher in _watchers:
        if watcher.tables & written:
            watcher.drop()


def drop_all() -> None:
    for watcher in _watchers:
        watcher.drop()


def listening_started() -> None:
    """A listener now hears other processes' commits (PostgreSQL): caches may serve."""
    global _listening
    drop_all()  # what committed while nobody listened was not heard
    _listening += 1


def listening_stopped() -> None:
    global _listening
    _listening = max(0, _listening - 1)
    drop_all()


@event.listens_for(Session, "before_flush")
def _announce_flushed_tables(session: Session, _context: object, _instances: object) -> None:
    if watched := CACHED_TABLES.intersection(_tables_of(session)):
        signals.announce(session, tables=watched)


@event.listens_for(Session, "do_orm_execute")
def _announce_written_tables(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        name = getattr(getattr(state.statement, "table", None), "name", None)
        if name in CACHED_TABLES:
            signals.announce(state.session, tables={name})


def _after_commit(committed: signals.Committed) -> None:
    if committed.tables:
        changed(committed.tables)


signals.on_commit(_after_commit)
