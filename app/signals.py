"""What a commit tells the rest of the system, after it commits and never before.

A transaction announces what it did (``announce``: incidents changed, webhook events and
deliveries queued); nothing leaves the transaction until it commits:
- in this process, the callbacks registered with ``on_commit`` run once after the outermost
  commit of a transaction that announced anything (never after a rollback);
- across processes (PostgreSQL), ``NOTIFY rrg_events`` is sent just before the commit, or
  carried earlier by the transaction's writes (``notify_with``: the commit then sends only
  what was announced after them), with a payload per changed incident (live boards re-read
  those), ``tables:`` and the names of the cached tables written (``app.caches``: their
  caches are dropped), or ``webhooks`` when only deliveries were queued (dispatchers wake on
  any payload).
  PostgreSQL delivers it at commit and discards it on rollback.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ARRAY, Text, bindparam, event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

logger = logging.getLogger("rrg.signals")

CHANNEL = "rrg_events"
DELIVERIES_PAYLOAD = "webhooks"
TABLES_PAYLOAD = "tables:"  # then the table names, comma-separated
_PENDING = "rrg_signals_pending"


@dataclass(frozen=True)
class Committed:
    """What a committed transaction announced."""

    incident_ids: frozenset[uuid.UUID]
    webhook_events: int  # outbox rows written
    deliveries: int  # webhook deliveries queued (new or re-queued)
    tables: frozenset[str] = frozenset()  # cached tables written (``app.caches``)


@dataclass
class _Pending:
    incident_ids: set[uuid.UUID] = field(default_factory=set)
    webhook_events: int = 0
    deliveries: int = 0
    tables: set[str] = field(default_factory=set)
    # Payloads already sent with an earlier statement of the transaction (``notify_with``).
    sent: set[str] = field(default_factory=set)

    def payloads(self) -> list[str]:
        """The NOTIFY payloads for what was announced, not sent yet."""
        payloads = [str(i) for i in sorted(self.incident_ids)]
        if self.tables:
            payloads.append(TABLES_PAYLOAD + ",".join(sorted(self.tables)))
        if self.deliveries and not payloads:
            payloads.append(DELIVERIES_PAYLOAD)
        return [p for p in payloads if p not in self.sent]


def announce(
    session: AsyncSession | Session,
    *,
    incident_ids: Iterable[uuid.UUID] = (),
    webhook_events: int = 0,
    deliveries: int = 0,
    tables: Iterable[str] = (),
) -> None:
    """Record, in the caller's transaction, what to tell once it commits (no I/O here)."""
    pending: _Pending = session.info.setdefault(_PENDING, _Pending())
    pending.incident_ids.update(incident_ids)
    pending.webhook_events += webhook_events
    pending.deliveries += deliveries
    pending.tables.update(tables)


def announced_tables(session: AsyncSession | Session) -> frozenset[str]:
    """The cached tables the session's transaction has written so far."""
    pending: _Pending | None = session.info.get(_PENDING)
    return frozenset(pending.tables) if pending is not None else frozenset()


def tables_of(payload: str) -> frozenset[str] | None:
    """The tables a notification payload names (None: it names none)."""
    if not payload.startswith(TABLES_PAYLOAD):
        return None
    return frozenset(payload.removeprefix(TABLES_PAYLOAD).split(","))


CommitCallback = Callable[[Committed], None]
_callbacks: list[CommitCallback] = []


def on_commit(callback: CommitCallback) -> Callable[[], None]:
    """Call ``callback`` once after each committed transaction that announced something (in
    the committing task, right after the commit: it must not block; to do I/O, schedule it).
    Returns a function that unregisters it."""
    _callbacks.append(callback)

    def unregister() -> None:
        if callback in _callbacks:
            _callbacks.remove(callback)

    return unregister


# One statement for whatever was announced (sent at the commit, or carried by a write).
NOTIFY_SQL = "SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload"
_NOTIFY = text(NOTIFY_SQL).bindparams(
    bindparam("channel", CHANNEL), bindparam("payloads", type_=ARRAY(Text))
)


def notify_with(session: AsyncSession | Session) -> dict[str, Any] | None:
    """The parameters of ``NOTIFY_SQL`` for what the transaction has announced so far, for
    a statement that is about to be sent anyway to carry (PostgreSQL; a write that is
    likely the transaction's last): the commit then sends only what is announced after it,
    and often no statement at all. What a transaction notifies is still delivered at its
    commit and dropped by its rollback; a payload sent twice is delivered once."""
    if session.in_nested_transaction():
        return None  # a savepoint rolled back would drop them, yet they would count as sent
    pending: _Pending | None = session.info.get(_PENDING)
    if pending is None or not (payloads := pending.payloads()):
        return None
    pending.sent.update(payloads)
    return {"channel": CHANNEL, "payloads": payloads}


@event.listens_for(Session, "before_commit")
def _notify_other_processes(session: Session) -> None:
    if session.in_nested_transaction():
        return
    if session.get_bind().dialect.name != "postgresql":
        return
    # The commit's own flush comes after this hook: flushed first, what it announces (the
    # cached tables it writes) is in the notification too.
    session.flush()
    pending: _Pending | None = session.info.get(_PENDING)
    if pending is None:
        return
    if payloads := pending.payloads():
        session.execute(_NOTIFY, {"payloads": payloads})


@event.listens_for(Session, "after_commit")
def _tell_this_process(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the transaction may still roll back
    pending: _Pending | None = session.info.pop(_PENDING, None)
    if pending is None:
        return
    committed = Committed(
        frozenset(pending.incident_ids),
        pending.webhook_events,
        pending.deliveries,
        frozenset(pending.tables),
    )
    for callback in list(_callbacks):
        try:
            callback(committed)
        except Exception:  # the change is committed; a listener's failure must not undo it
            logger.exception("an on_commit callback failed")


@event.listens_for(Session, "after_transaction_end")
def _forget_after_rollback(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended without a commit having taken what it announced
    # (``after_commit`` pops it): it rolled back, so it announces nothing.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
