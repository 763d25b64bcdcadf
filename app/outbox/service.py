"""Writing to the transactional outbox. Each event keeps a snapshot of its incident
(severity, TLP, status, key, title) for filtering and redaction, and its webhook deliveries
are written with it, in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock, signals
from app.db import table_of
from app.incidents.models import Incident
from app.kit import bulk
from app.models_base import new_id
from app.outbox.models import OutboxEvent
from app.webhooks import fanout
from app.webhooks.payloads import PAYLOADS, check_payload


@dataclass(frozen=True)
class NewOutboxEvent:
    type: str
    incident_id: uuid.UUID | None
    payload: dict[str, Any]
    # For webhook.* events: the ministry whose subscriptions get it, or the one subscription.
    ministry_id: uuid.UUID | None = None
    subscription_id: uuid.UUID | None = None


_SNAPSHOT_COLUMNS = ("key", "title", "severity", "tlp", "status", "reporter_ministry_id")
_snapshot_query = select(
    *(getattr(table_of(Incident).c, name) for name in ("id", *_SNAPSHOT_COLUMNS))
)


def _held_snapshot(incident: Incident) -> Incident | None:
    """The incident as held in memory, when every snapshot column is loaded (an expired
    column would need a query to read)."""
    unloaded = inspect(incident).unloaded
    return None if unloaded.intersection(_SNAPSHOT_COLUMNS) else incident


async def emit_many(
    session: AsyncSession,
    events: Sequence[NewOutboxEvent],
    *,
    at: datetime | None = None,
    held: Mapping[uuid.UUID, Incident] | None = None,
) -> list[uuid.UUID]:
    """Queue events and their deliveries in the caller's transaction: they exist iff the
    change commits. At most three statements per batch, whatever its size. Returns the
    events' ids. ``held``: incidents the caller holds, flushed; their snapshots are read
    from memory."""
    if not events:
        return []
    when = at or clock.now()
    ids = {e.incident_id for e in events if e.incident_id is not None}
    snapshots: dict[uuid.UUID, Any] = {}
    for incident_id, incident in (held or {}).items():
        if incident_id in ids and (snapshot := _held_snapshot(incident)) is not None:
            snapshots[incident_id] = snapshot
    missing = ids - snapshots.keys()
    if missing:
        rows = await session.execute(
            _snapshot_query.where(bulk.among(session, table_of(Incident).c.id, sorted(missing)))
        )
        snapshots.update({row.id: row for row in rows})
    values: list[dict[str, Any]] = []
    for e in events:
        if e.type not in PAYLOADS:
            raise ValueError(f"{e.type!r} is not a webhook event type")
        check_payload(e.type, e.payload, e.incident_id is not None)
        snap = snapshots.get(e.incident_id) if e.incident_id is not None else None
        values.append(
            {
                "id": new_id(),
                "type": e.type,
                "incident_id": e.incident_id,
                "payload": e.payload,
                "created_at": when,
                "incident_key": snap.key if snap else None,
                "incident_title": snap.title if snap else None,
                "severity": snap.severity if snap else None,
                "tlp": snap.tlp if snap else None,
                "status": snap.status if snap else None,
                "reporter_ministry_id": snap.reporter_ministry_id if snap else None,
                "ministry_id": e.ministry_id,
                "subscription_id": e.subscription_id,
            }
        )
    await bulk.insert_rows(session, table_of(OutboxEvent), values)
    signals.announce(session, deliveries=await fanout.queue_deliveries(session, values))
    return [e["id"] for e in values]
