"""The in-app notifications inbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth.models import User
from app.db import table_of
from app.errors import NotFound
from app.incidents.models import Incident
from app.incidents.visibility import visible_to
from app.kit import bulk
from app.kit.pagination import Key, Order, paginate
from app.models_base import new_id
from app.notifications.models import Notification
from app.schemas import json_safe, json_text


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


@dataclass(frozen=True)
class NewNotice:
    """One notice for several users: each gets a notification with this title and data
    (times and ids in ``data`` are stored as ISO 8601 and strings)."""

    recipients: Sequence[uuid.UUID]
    incident_id: uuid.UUID | None
    type: str
    title: str
    data: dict[str, Any]
    created_at: datetime


# The notices travel once each (their data as JSON text, encoded once), and the recipients as
# (user, notice number) pairs; the server joins the two and makes one row per recipient
# (thousands per sweep batch, one statement).
_FAN_OUT = text(
    "INSERT INTO notifications (id, user_id, incident_id, type, title, data, created_at) "
    "SELECT gen_random_uuid(), r.user_id, n.incident_id, n.type, n.title, "
    "n.data, n.created_at "
    "FROM unnest(CAST(:users AS UUID[]), CAST(:notice AS INTEGER[])) AS r(user_id, notice) "
    "JOIN unnest(CAST(:incident_ids AS UUID[]), CAST(:types AS TEXT[]), "
    "CAST(:titles AS TEXT[]), CAST(:data AS JSONB[]), CAST(:created AS TIMESTAMPTZ[])) "
    "WITH ORDINALITY AS n(incident_id, type, title, data, created_at, notice) "
    "ON n.notice = r.notice"
)


async def notify_many(session: AsyncSession, notices: Sequence[NewNotice]) -> int:
    """Write each notice's notifications in the caller's transaction, in one statement;
    returns how many."""
    notices = [n for n in notices if n.recipients]
    total = sum(len(n.recipients) for n in notices)
    if not total:
        return 0
    if not bulk.is_postgresql(session):
        await session.execute(
            insert(table_of(Notification)),
            [
                {
                    "id": new_id(),
                    "user_id": uid,
                    "incident_id": n.incident_id,
                    "type": n.type,
                    "title": n.title,
                    "data": data,
                    "created_at": n.created_at,
                }
                for n in notices
                for data in (json_safe(n.data),)  # converted once per notice
                for uid in n.recipients
            ],
        )
        return total
    users: list[uuid.UUID] = []
    numbers: list[int] = []
    for number, n in enumerate(notices, start=1):  # WITH ORDINALITY counts from 1
        users.extend(n.recipients)
        numbers.extend([number] * len(n.recipients))
    await session.execute(
        _FAN_OUT,
        {
            "incident_ids": [n.incident_id for n in notices],
            "types": [n.type for n in notices],
            "titles": [n.title for n in notices],
            "data": [json_text(n.data) for n in notices],
            "created": [n.created_at for n in notices],
            "users": users,
            "notice": numbers,
        },
    )
    return total
