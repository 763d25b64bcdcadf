"""Waking the dispatchers of this process within a second of a commit that queued
deliveries (other processes wake on PostgreSQL's NOTIFY, see ``app.signals``)."""

from __future__ import annotations

import asyncio
import threading

from app import signals

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


def _wake_after_deliveries(committed: signals.Committed) -> None:
    if committed.deliveries:
        wake()


signals.on_commit(_wake_after_deliveries)
