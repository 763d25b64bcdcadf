"""How a dispatcher learns, within a second, that a commit queued deliveries: an in-process
signal after the commit, and on PostgreSQL a NOTIFY on ``rrg_events`` sent inside the
transaction (delivered to listeners only if it commits)."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

CHANNEL = "rrg_events"
NOTIFY_PAYLOAD = "webhooks"
_WAKE = "rrg.wake_dispatchers"
_NOTIFIED = "rrg.notified_dispatchers"

_lock = threading.Lock()
_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []


def subscribe(waiter: asyncio.Event) -> None:
    """Set ``waiter`` (on its loop) after every commit that queued deliveries."""
    with _lock:
        _waiters.append((asyncio.get_running_loop(), waiter))


def unsubscribe(waiter: asyncio.Event) -> None:
    with _lock:
        _waiters[:] = [(loop, w) for loop, w in _waiters if w is not waiter]


def wake() -> None:
    with _lock:
        waiters = list(_waiters)
    for loop, waiter in waiters:
        if not loop.is_closed():
            loop.call_soon_threadsafe(waiter.set)


async def deliveries_queued(session: AsyncSession) -> None:
    """Called in the transaction that wrote deliveries: wake the dispatchers once it commits."""
    session.info[_WAKE] = True
    if session.get_bind().dialect.name == "postgresql" and not session.info.get(_NOTIFIED):
        session.info[_NOTIFIED] = True
        await session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": NOTIFY_PAYLOAD},
        )


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    session.info.pop(_NOTIFIED, None)
    if session.info.pop(_WAKE, False):
        wake()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_NOTIFIED, None)
    session.info.pop(_WAKE, None)
