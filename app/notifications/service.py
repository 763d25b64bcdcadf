"""The in-app notifications inbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth.models import User
from app.errors import InvalidInput, NotFound
from app.incidents.models import Incident
from app.incidents.visibility import visible_to
from app.notifications.models import Notification
from app.schemas import decode_cursor, encode_cursor


def _mine(user: User) -> list[ColumnElement[bool]]:
    # Notifications about incidents the user can no longer see are hidden too.
    return [
        Notification.user_id == user.id,
        or_(
            Notification.incident_id.is_(None),
            select(Incident.id)
            .where(Incident.id == Notification.incident_id, visible_to(user))
            .exists(),
        ),
    ]


async def inbox(
    session: AsyncSession, user: User, *, unread_only: bool, limit: int, cursor: str | None
) -> tuple[Sequence[Notification], str | None]:
    """Unread first, then newest first; keyset-paginated on (read?, created_at, id)."""
    query = select(Notification).where(*_mine(user))
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    is_read = Notification.read_at.is_not(None)
    if cursor:
        raw_read, raw_at, raw_id = decode_cursor(cursor, 3)
        try:
            from datetime import datetime

            at, last_id, was_read = (
                datetime.fromisoformat(raw_at),
                uuid.UUID(raw_id),
                bool(raw_read),
            )
        except (TypeError, ValueError):
            raise InvalidInput("cursor", "malformed cursor", location="query") from None
        same_group_after = and_(
            or_(
                Notification.created_at < at,
                and_(Notification.created_at == at, Notification.id < last_id),
            )
        )
        if was_read:
            query = query.where(is_read, same_group_after)
        else:
            query = query.where(or_(is_read, same_group_after))
    rows = (
        await session.scalars(
            query.order_by(is_read, Notification.created_at.desc(), Notification.id.desc()).limit(
                limit + 1
            )
        )
    ).all()
    page, more = rows[:limit], len(rows) > limit
    next_cursor = None
    if more:
        last = page[-1]
        next_cursor = encode_cursor(
            [last.read_at is not None, last.created_at.isoformat(), str(last.id)]
        )
    return page, next_cursor


async def mark_read(session: AsyncSession, user: User, notification_id: uuid.UUID) -> Notification:
    note = await session.scalar(
        select(Notification).where(Notification.id == notification_id, *_mine(user))
    )
    if not isinstance(note, Notification):
        raise NotFound("No such notification")
    if note.read_at is None:
        note.read_at = clock.now()
        await session.flush()
    return note


async def mark_all_read(session: AsyncSession, user: User) -> int:
    result = await session.execute(
        update(Notification)
        .where(*_mine(user), Notification.read_at.is_(None))
        .values(read_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
