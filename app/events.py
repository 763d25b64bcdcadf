"""Domain events in one place.

Every change to an incident (its fields, status, people, sign-offs, comments, actions and
escalations) is announced through ``emit``/``emit_many``, in the transaction that made it:

- the hash-chained timeline event is appended (``app.timeline``);
- an outbox row is written for each webhook event type (SPEC §7) the change maps to
  (``WEBHOOK_TYPES``), for the dispatcher to deliver (``app.outbox``);
- the priority of incidents whose score inputs changed is recomputed (``app.priority``);
- the changed incidents are announced (``app.signals``): once the transaction commits,
  callbacks in this process run and other processes get a NOTIFY (never after a rollback).

No write path appends to the timeline or the outbox any other way.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import signals
from app.incidents.models import Incident
from app.kit import bulk
from app.outbox import service as outbox
from app.outbox.service import NewOutboxEvent
from app.priority.service import refresh_for_events
from app.timeline import service as timeline
from app.timeline.models import TimelineEvent
from app.timeline.service import Actor, NewEvent, Recorded

logger = logging.getLogger("rrg.events")

# Timeline event type -> the webhook event type (SPEC §7) it is published as. Types not
# listed (participant changes, action approvals and edits, voided approvals) stay on the
# timeline only. Two are decided by their data, in ``webhook_types``: an incident created
# in ``reported`` is ``incident.reported`` (one created in ``watch`` is not yet reported),
# and declaring a watch incident (watch -> reported) is also ``incident.reported``.
WEBHOOK_TYPES: dict[str, str] = {
    "incident.updated": "incident.updated",
    "incident.status_changed": "incident.status_changed",
    "incident.owner_assigned": "incident.owner_assigned",
    "incident.signed_off": "incident.signed_off",
    "incident.escalated": "incident.escalated",
    "action.created": "action.created",
    "action.status_changed": "action.status_changed",
    "action.escalated": "action.escalated",
    "comment.created": "comment.created",
}
REPORTED = "incident.reported"


def webhook_types(type_: str, data: dict[str, Any]) -> tuple[str, ...]:
    """The webhook event types a timeline event of this type and data is published as."""
    if type_ == "incident.created":
        return (REPORTED,) if data.get("status") == "reported" else ()
    mapped = WEBHOOK_TYPES.get(type_)
    if mapped is None:
        return ()
    if type_ == "incident.status_changed" and (data.get("from"), data.get("to")) == (
        "watch",
        "reported",
    ):
        return (mapped, REPORTED)
    return (mapped,)


@dataclass(frozen=True)
class Event:
    """One domain event: what happened to which incident, by whom (``at`` defaults to the
    clock; ``incident_key`` is looked up when not given)."""

    incident_id: uuid.UUID
    actor: Actor
    type: str
    data: dict[str, Any]
    at: datetime | None = None
    incident_key: str | None = None
    # The incident itself when the caller holds it (flushed, so its columns are current):
    # its outbox snapshot is then taken from it rather than read back.
    incident: Incident | None = None
    # The incident was created in this transaction: its chain is empty and no other
    # transaction can see it, so there is no head to lock and read.
    new_chain: bool = False
    # The chain's first event, computed before the incident was inserted with its head
    # (``timeline.opening_event``): appended as it is, with no head to write.
    opened: Recorded | None = None
    # ``incident`` was read locked (FOR NO KEY UPDATE) in this transaction and carries an
    # unflushed change that bumps its version: its chain head is current in memory, and is
    # written by that same UPDATE (no head query, no head UPDATE).
    head_in_row: bool = False
    # The incident's priority was computed from the values it was written with
    # (``priority.score_new``): not recomputed here.
    scored: bool = False


async def emit(
    session: AsyncSession,
    incident: Incident | uuid.UUID,
    actor: Actor,
    type_: str,
    data: dict[str, Any],
    *,
    at: datetime | None = None,
    new_chain: bool = False,
) -> TimelineEvent:
    """Announce one change to an incident, in the caller's transaction (``new_chain``: the
    incident was created in it, see ``Event``)."""
    if isinstance(incident, Incident):
        new = Event(incident.id, actor, type_, data, at, incident.key, incident, new_chain)
    else:
        new = Event(incident, actor, type_, data, at)
    return (await emit_many(session, [new]))[0].model()


async def emit_many(session: AsyncSession, events: Sequence[Event]) -> list[Recorded]:
    """Announce changes (in order), in the caller's transaction, in bulk: one timeline
    append, one outbox insert and one NOTIFY statement whatever the number of events."""
    if not events:
        return []
    # The timeline, outbox and delivery rows travel together (one statement on PostgreSQL).
    async with bulk.one_statement(session):
        return await _emit_many(session, events)


async def _emit_many(session: AsyncSession, events: Sequence[Event]) -> list[Recorded]:
    recorded = await timeline.record_many(
        session,
        [
            NewEvent(
                e.incident_id,
                e.actor,
                e.type,
                e.data,
                e.at,
                e.new_chain,
                e.opened,
                e.incident if e.head_in_row else None,
            )
            for e in events
        ],
    )
    published = [
        (e, stored, types)
        for e, stored in zip(events, recorded, strict=True)
        if (types := webhook_types(e.type, e.data))
    ]
    keys = await _keys(session, [e for e, _, _ in published])
    by_time: dict[datetime, list[NewOutboxEvent]] = defaultdict(list)
    for e, stored, types in published:
        payload = {
            "incident_id": str(e.incident_id),
            "incident_key": keys[e.incident_id],
            **stored.data,
        }
        by_time[stored.at].extend(NewOutboxEvent(t, e.incident_id, payload) for t in types)
    held = {e.incident_id: e.incident for e in events if e.incident is not None}
    for at, rows in by_time.items():
        await outbox.emit_many(session, rows, at=at, held=held)
    await refresh_for_events(
        session, ((e.incident_id, e.type, e.data) for e in events if not e.scored)
    )
    signals.announce(
        session,
        incident_ids=(e.incident_id for e in events),
        webhook_events=sum(len(rows) for rows in by_time.values()),
    )
    return recorded


async def _keys(session: AsyncSession, events: Sequence[Event]) -> dict[uuid.UUID, str]:
    keys = {e.incident_id: e.incident_key for e in events if e.incident_key is not None}
    missing = {e.incident_id for e in events} - keys.keys()
    if missing:
        rows = await session.execute(
            select(Incident.id, Incident.key).where(Incident.id.in_(missing))
        )
        keys.update({incident_id: key for incident_id, key in rows})
    return keys
