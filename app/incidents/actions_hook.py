"""How many response actions an incident has, for the incident lifecycle guards."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.actions.models import Action
from app.actions.states import LIVE, OPEN


async def action_counts(session: AsyncSession, incident_id: uuid.UUID) -> tuple[int, int]:
    """(live, open): actions not rejected or cancelled, and actions not yet finished."""
    row = (
        await session.execute(
            select(
                func.count().filter(Action.status.in_(LIVE)),
                func.count().filter(Action.status.in_(OPEN)),
            ).where(Action.incident_id == incident_id)
        )
    ).one()
    return int(row[0]), int(row[1])
