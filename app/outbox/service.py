"""Writing to the transactional outbox (delivery to webhooks is a separate dispatcher)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.db import table_of
from app.outbox.models import OutboxEvent


@dataclass(frozen=True)
class NewOutboxEvent:
    type: str
    incident_id: uuid.UUID | None
    payload: dict[str, Any]


async def emit_many(
    session: AsyncSession, events: Sequence[NewOutboxEvent], *, at: datetime | None = None
) -> None:
    """Queue events in the caller's transaction: they exist iff the change commits."""
    if not events:
        return
    when = at or clock.now()
    await session.execute(
        insert(table_of(OutboxEvent)),
        [
            {
                "id": uuid.uuid4(),
                "type": e.type,
                "incident_id": e.incident_id,
                "payload": e.payload,
                "created_at": when,
            }
            for e in events
        ],
    )
