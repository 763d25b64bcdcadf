"""What the incident side needs to know about, and do to, an incident's response actions:
counts for the lifecycle guards, the assignees who must keep sight of the incident, and
the cancellation of open actions when the incident ends."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.actions.models import Action, is_open
from app.actions.states import LIVE, OPEN
from app.auth.models import User
from app.db import table_of
from app.incidents.visibility import visible_pairs
from app.kit.sql import constants


async def action_counts(session: AsyncSession, incident_id: uuid.UUID) -> tuple[int, int]:
    """(live, open): actions not rejected or cancelled, and actions not yet finished."""
    row = (
        await session.execute(
            select(
                func.count().filter(Action.status.in_(constants(LIVE))),
                func.count().filter(Action.status.in_(constants(OPEN))),
            ).where(Action.incident_id == incident_id)
        )
    ).one()
    return int(row[0]), int(row[1])


async def assignees_out_of_sight(session: AsyncSession, incident_id: uuid.UUID) -> list[str]:
    """Display names of the assignees of the incident's open actions who may not see it
    (as it stands in this transaction): a change that produces any must be refused, or
    they would be left with work on an incident they cannot open."""
    rows = (
        await session.execute(
            select(User.id, User.display_name)
            .join(Action, Action.assignee_id == User.id)
            .where(Action.incident_id == incident_id, is_open())
            .distinct()
        )
    ).all()
    seeing = await visible_pairs(session, [(uid, incident_id) for uid, _ in rows])
    return sorted(name for uid, name in rows if (uid, incident_id) not in seeing)


async def cancel_open_actions(
    session: AsyncSession, incident_id: uuid.UUID, reason: str, now: datetime
) -> list[tuple[uuid.UUID, str]]:
    """Cancel every open action of the incident (each gets a new version, as any status
    change does); returns (action id, previous status) of each, oldest first."""
    rows = (
        await session.execute(
            select(Action.id, Action.status)
            .where(Action.incident_id == incident_id, is_open())
            .order_by(Action.created_at, Action.id)
            .with_for_update()
        )
    ).all()
    if rows:
        table = table_of(Action)
        await session.execute(
            update(table)
            .where(table.c.id.in_([r.id for r in rows]))
            .values(
                status="cancelled",
                closing_reason=reason,
                updated_at=now,
                version=table.c.version + 1,
            )
        )
    return [(r.id, r.status) for r in rows]
