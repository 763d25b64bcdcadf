"""My actions, the notifications inbox, and the directory picker fragment."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.actions import service as actions
from app.actions.states import OPEN
from app.auth import service as auth_service
from app.auth.roles import ROLES
from app.deps import get_database
from app.incidents.models import Incident
from app.incidents.visibility import visible_to
from app.notifications import service as notifications
from app.web.security import WebPrincipal, WebUser
from app.web.templating import render

router = APIRouter()
PAGE = 100


@router.get("/actions/mine")
async def my_actions(request: Request, web: WebUser) -> Response:
    async with get_database(request).unit_of_work(readonly=True) as session:
        rows, _ = await actions.queue(
            session,
            web.user,
            actions.QueueFilters(assignee=web.user.id, status=list(OPEN)),
            limit=PAGE,
        )
    return await render(
        request,
        "my_actions.html",
        web,
        {"actions": [(a, actions.is_overdue(a)) for a in rows]},
    )


@router.get("/notifications")
async def inbox(request: Request, web: WebUser, unread: bool = False) -> Response:
    async with get_database(request).unit_of_work(readonly=True) as session:
        rows, _ = await notifications.inbox(
            session, web.user, unread_only=unread, limit=PAGE, cursor=None
        )
        keys = await _incident_keys(session, web, [n.incident_id for n in rows])
    return await render(
        request, "notifications.html", web, {"notes": rows, "keys": keys, "unread_only": unread}
    )


async def _incident_keys(
    session: AsyncSession, web: WebPrincipal, ids: list[uuid.UUID | None]
) -> dict[uuid.UUID, str]:
    """The keys of the incidents the notifications are about (those still visible)."""
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    rows = await session.execute(
        select(Incident.id, Incident.key).where(Incident.id.in_(wanted), visible_to(web.user))
    )
    return {incident_id: key for incident_id, key in rows}


@router.post("/notifications/{notification_id}/read")
async def read_one(request: Request, web: WebUser, notification_id: uuid.UUID) -> Response:
    async with get_database(request).unit_of_work() as session:
        await notifications.mark_read(session, web.user, notification_id)
    return RedirectResponse("/notifications", status_code=303)


@router.post("/notifications/read-all")
async def read_all(request: Request, web: WebUser) -> Response:
    async with get_database(request).unit_of_work() as session:
        await notifications.mark_all_read(session, web.user)
    return RedirectResponse("/notifications", status_code=303)


@router.get("/directory/options")
async def directory_options(
    request: Request,
    web: WebUser,
    q: Annotated[str | None, Query(max_length=200)] = None,
    ministry: Annotated[str | None, Query(max_length=16)] = None,
    role: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """<option>s of the people matching ``q`` (the directory's query and rules)."""
    async with get_database(request).unit_of_work(readonly=True) as session:
        people, _ = await auth_service.directory(
            session,
            web.user,
            q=q,
            ministry=ministry or None,
            roles=[r for r in role or [] if r in ROLES],
            limit=PAGE,
            cursor=None,
        )
    return await render(request, "fragments/people_options.html", web, {"people": people})
