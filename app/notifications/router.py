from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from app.deps import CurrentUser, Session
from app.kit.pagination import Cursor, Limit
from app.notifications import service
from app.notifications.models import Notification
from app.schemas import Page

router = APIRouter(prefix="/api/v1/me/notifications", tags=["notifications"])


class NotificationOut(BaseModel):
    id: uuid.UUID
    incident_id: uuid.UUID | None
    type: str
    title: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class ReadAll(BaseModel):
    marked_read: int


def _out(note: Notification) -> NotificationOut:
    return NotificationOut.model_validate(note, from_attributes=True)


@router.get("")
async def list_notifications(
    session: Session,
    principal: CurrentUser,
    unread: bool = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[NotificationOut]:
    """Your notifications: unread first, newest first."""
    rows, next_cursor = await service.inbox(
        session, principal.user, unread_only=unread, limit=limit, cursor=cursor
    )
    return Page(items=[_out(n) for n in rows], next_cursor=next_cursor)


@router.post("/{notification_id}/read")
async def mark_notification_read(
    notification_id: uuid.UUID, session: Session, principal: CurrentUser
) -> NotificationOut:
    return _out(await service.mark_read(session, principal.user, notification_id))


@router.post("/read-all")
async def mark_all_notifications_read(session: Session, principal: CurrentUser) -> ReadAll:
    return ReadAll(marked_read=await service.mark_all_read(session, principal.user))
