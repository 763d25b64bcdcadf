"""Values read from the database and kept in this process until the tables they come from
change: settings that nearly every write reads and that change rarely (the priority's
weights and register, the active webhook subscriptions).

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
from typing import Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session

from app import signals

T = TypeVar("T")

# The longest a value is kept even when no change is heard: how long a change written
# outside the service (by hand, or by another process on SQLite) may go unseen.
MAX_AGE_SECONDS = 5.0


class ProcessCache(Generic[T]):
    """One value, read by ``load`` and kept until a committed change to ``tables``."""

    def __init__(self, tables: Iterable[str], load: Callable[[AsyncSession], Awaitable[T]]) -> None:
        self.tables = frozenset(tables)
        self._load = load
        self._value: tuple[float, T] | None = None
        self._generation = 0
        _caches.append(self)  # type: ignore[arg-type]
        _watched.update(self.tables)

    async def get(self, session: AsyncSession) -> T:
        if not _serves(session) or _written_here(session) & self.tables:
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


_caches: list[ProcessCache[object]] = []
_watched: set[str] = set()  # every cache's tables
_listening = 0  # connected listeners of other processes' commits


def _serves(session: AsyncSession) -> bool:
    return _listening > 0 or session.get_bind().dialect.name != "postgresql"


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
    for cache in _caches:
        if cache.tables & written:
            cache.drop()


def drop_all() -> None:
    for cache in _caches:
        cache.drop()


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
    if watched := _watched.intersection(_tables_of(session)):
        signals.announce(session, tables=watched)


@event.listens_for(Session, "do_orm_execute")
def _announce_written_tables(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        name = getattr(getattr(state.statement, "table", None), "name", None)
        if name in _watched:
            signals.announce(state.session, tables={name})


def _after_commit(committed: signals.Committed) -> None:
    if committed.tables:
        changed(committed.tables)


signals.on_commit(_after_commit)
