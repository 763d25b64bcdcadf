"""The in-app notifications inbox."""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth.models import User
from app.errors import NotFound
from app.incidents.models import Incident
from app.incidents.visibility import visible_to
from app.kit.pagination import Key, Order, paginate
from app.notifications.models import Notification


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


# Unread first, then newest first.
INBOX_ORDER = Order(
    "notifications",
    Key(Notification.read_at.is_not(None), "bool"),
    Key(Notification.created_at, "datetime", descending=True),
    Key(Notification.id, "uuid", descending=True),
)


async def inbox(
    session: AsyncSession, user: User, *, unread_only: bool, limit: int, cursor: str | None
) -> tuple[list[Notification], str | None]:
    """Unread first, then newest first."""
    query = select(Notification).where(*_mine(user))
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return await paginate(session, query, INBOX_ORDER, limit=limit, cursor=cursor)


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


async def unread_count(session: AsyncSession, user: User) -> int:
    """How many of the user's notifications (about what they may still see) are unread."""
    count = await session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(*_mine(user), Notification.read_at.is_(None))
    )
    return int(count or 0)
