from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.deps import (
    CurrentUser,
    IfMatch,
    IfMatchRequired,
    Limit,
    Session,
    etag,
    optional_version,
    required_version,
)
from app.errors import problem_responses
from app.idempotency import Idempotent
from app.incidents import service
from app.incidents.presenters import event_out, present_incidents, user_refs
from app.incidents.schemas import (
    CommentCreate,
    IncidentCreate,
    IncidentCreated,
    IncidentOut,
    IncidentRef,
    IncidentUpdate,
    OwnerAssignment,
    ParticipantAdd,
    SignoffCreate,
    TimelineEventOut,
    TransitionRequest,
    user_ref,
)
from app.incidents.service import IncidentFilters, SortKey
from app.incidents.vocabulary import Category, Severity, Status, Tlp
from app.kit.pagination import Cursor
from app.kit.types import Timestamp
from app.schemas import Page
from app.timeline import service as timeline
from app.timeline.models import TimelineEvent

router = APIRouter(prefix="/api/v1", tags=["incidents"])
CONFLICT = problem_responses({409: "The incident's state does not allow this"})
TRANSITION_REFUSED = problem_responses(
    {409: "The move is not allowed now; `unmet` lists every unmet guard"}
)
COMMENT_EVENT = "comment.created"
M = TypeVar("M", bound=BaseModel)


async def _out(
    session: Session, incident: Any, response: Response | None = None, principal: Any = None
) -> IncidentOut:
    if response is not None:
        response.headers["ETag"] = etag(incident.version)
    known = [principal.user] if principal is not None else []
    return (await present_incidents(session, [incident], known=known))[0]


async def _once_on_incident(
    idempotency: Idempotent,
    session: Session,
    response: Response,
    principal: CurrentUser,
    id_or_key: str,
    *,
    scope: str,
    produce: Callable[[], Awaitable[M]],
    incident_field: str = "id",
    status: int = 201,
) -> M | JSONResponse:
    """An Idempotency-Key'd write on one incident: the key's scope is the incident (by id or
    key alike), and a replay answers only while the caller can still see that incident."""
    return await idempotency.respond(
        session,
        response,
        scope=scope,
        within=lambda reader: service.get_visible(reader, principal.user, id_or_key, details=False),
        produce=produce,
        recheck=lambda body: service.get_visible(
            session, principal.user, body[incident_field], details=False
        ),
        status=status,
    )


@router.get("/incidents")
async def list_incidents(
    session: Session,
    principal: CurrentUser,
    status: Annotated[list[Status] | None, Query()] = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    mineral: Annotated[list[str] | None, Query()] = None,
    category: Annotated[list[Category] | None, Query()] = None,
    tlp: Annotated[list[Tlp] | None, Query()] = None,
    owner: uuid.UUID | None = None,
    ministry: str | None = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Text in key, title or summary")
    ] = None,
    reported_after: Annotated[
        Timestamp | None, Query(description="Reported at or after this time")
    ] = None,
    reported_before: Annotated[
        Timestamp | None, Query(description="Reported before this time")
    ] = None,
    sort: Annotated[
        SortKey,
        Query(
            description="Sort key, `-` for descending; ties broken by id in the same "
            "direction. `-priority` lists the highest `priority_score` first (keyset-"
            "paginated on the score's index, like every other order)"
        ),
    ] = "-reported_at",
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[IncidentOut]:
    filters = IncidentFilters(
        status=list(status or []),
        severity=list(severity or []),
        mineral=list(mineral or []),
        category=list(category or []),
        tlp=list(tlp or []),
        owner=owner,
        ministry=ministry,
        q=q,
        reported_after=reported_after,
        reported_before=reported_before,
    )
    rows, next_cursor = await service.list_visible(
        session, principal.user, filters, sort=sort, limit=limit, cursor=cursor
    )
    return Page(items=await present_incidents(session, rows), next_cursor=next_cursor)


@router.post("/incidents", status_code=201)
async def create_incident(
    data: IncidentCreate,
    session: Session,
    principal: CurrentUser,
    response: Response,
    idempotency: Idempotent,
) -> IncidentCreated:
    async def produce() -> IncidentCreated:
        created = await service.create(session, principal, data)
        # The presented incident is validated already: added to, not validated again.
        return IncidentCreated.model_construct(
            **dict(await _out(session, created.incident, principal=principal)),
            possible_duplicates=[
                IncidentRef(id=d.id, key=d.key, title=d.title, status=d.status)
                for d in created.possible_duplicates
            ],
        )

    return await idempotency.respond(  # type: ignore[return-value]
        session,
        response,
        scope="incidents",
        produce=produce,
        recheck=lambda body: service.get_visible(session, principal.user, body["id"]),
    )


@router.get("/incidents/{id_or_key}")
async def get_incident(
    id_or_key: str, session: Session, principal: CurrentUser, response: Response
) -> IncidentOut:
    incident = await service.get_visible(session, principal.user, id_or_key, details=False)
    return await _out(session, incident, response, principal)


@router.patch("/incidents/{id_or_key}", responses=CONFLICT)
async def update_incident(
    id_or_key: str,
    data: IncidentUpdate,
    session: Session,
    principal: CurrentUser,
    response: Response,
    if_match: IfMatchRequired,
) -> IncidentOut:
    incident = await service.get_visible(session, principal.user, id_or_key)
    expected = required_version(if_match, incident.version)
    incident = await service.update_fields(session, principal, incident, expected, data)
    return await _out(session, incident, response, principal)


@router.post("/incidents/{id_or_key}/transitions", responses=TRANSITION_REFUSED)
async def transition_incident(
    id_or_key: str,
    data: TransitionRequest,
    session: Session,
    principal: CurrentUser,
    response: Response,
    if_match: IfMatchRequired,
) -> IncidentOut:
    """Move the incident; a refusal (409) lists every unmet guard in ``unmet``."""
    incident = await service.get_visible(session, principal.user, id_or_key, lock=True)
    expected = required_version(if_match, incident.version)
    incident = await service.transition(session, principal, incident, expected, data, locked=True)
    return await _out(session, incident, response, principal)


@router.put("/incidents/{id_or_key}/owners/{ministry}", responses=CONFLICT)
async def assign_owner(
    id_or_key: str,
    ministry: str,
    data: OwnerAssignment,
    session: Session,
    principal: CurrentUser,
    response: Response,
    if_match: IfMatch = None,
) -> IncidentOut:
    """Name the DOE or METI owner (a user of that ministry). If-Match is optional here."""
    incident = await service.get_visible(session, principal.user, id_or_key)
    incident = await service.assign_owner(
        session,
        principal,
        incident,
        ministry,
        data.user_id,
        optional_version(if_match, incident.version),
    )
    return await _out(session, incident, response, principal)


@router.post("/incidents/{id_or_key}/participants", responses=CONFLICT)
async def add_participant(
    id_or_key: str,
    data: ParticipantAdd,
    session: Session,
    principal: CurrentUser,
    response: Response,
    idempotency: Idempotent,
) -> IncidentOut:
    async def produce() -> IncidentOut:
        incident = await service.get_visible(session, principal.user, id_or_key)
        incident = await service.add_participant(session, principal, incident, data.user_id)
        return await _out(session, incident)

    return await _once_on_incident(  # type: ignore[return-value]
        idempotency,
        session,
        response,
        principal,
        id_or_key,
        scope="participants",
        produce=produce,
        status=200,
    )


@router.delete("/incidents/{id_or_key}/participants/{user_id}", status_code=204, responses=CONFLICT)
async def remove_participant(
    id_or_key: str, user_id: uuid.UUID, session: Session, principal: CurrentUser
) -> Response:
    """Take a participant off the incident; unless the marking or another role on the
    incident lets them, they no longer see it."""
    incident = await service.get_visible(session, principal.user, id_or_key)
    await service.remove_participant(session, principal, incident, user_id)
    return Response(status_code=204)


@router.post("/incidents/{id_or_key}/signoffs", status_code=201, responses=CONFLICT)
async def sign_off_incident(
    id_or_key: str,
    data: SignoffCreate,
    session: Session,
    principal: CurrentUser,
    response: Response,
    idempotency: Idempotent,
) -> IncidentOut:
    """Sign off the current resolution for the caller's ministry (DOE or METI)."""

    async def produce() -> IncidentOut:
        incident = await service.get_visible(session, principal.user, id_or_key)
        await service.sign_off(session, principal, incident, data.note)
        return await _out(session, incident)

    return await _once_on_incident(  # type: ignore[return-value]
        idempotency, session, response, principal, id_or_key, scope="signoffs", produce=produce
    )


async def _events_page(
    session: Session,
    incident_id: uuid.UUID,
    *,
    cursor: str | None,
    limit: int,
    types: list[str] | None,
) -> Page[TimelineEventOut]:
    events, next_cursor = await timeline.page(
        session, incident_id, limit=limit, cursor=cursor, types=types
    )
    refs = await user_refs(session, (e.actor_user_id for e in events))
    return Page(items=[event_out(e, refs) for e in events], next_cursor=next_cursor)


@router.get("/incidents/{id_or_key}/timeline")
async def get_timeline(
    id_or_key: str,
    session: Session,
    principal: CurrentUser,
    type: Annotated[list[str] | None, Query(description="Only events of these types")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[TimelineEventOut]:
    """Every change to the incident, oldest first, hash-chained."""
    incident = await service.get_visible(session, principal.user, id_or_key, details=False)
    return await _events_page(session, incident.id, cursor=cursor, limit=limit, types=type)


@router.get("/incidents/{id_or_key}/comments")
async def list_comments(
    id_or_key: str,
    session: Session,
    principal: CurrentUser,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[TimelineEventOut]:
    incident = await service.get_visible(session, principal.user, id_or_key, details=False)
    return await _events_page(
        session, incident.id, cursor=cursor, limit=limit, types=[COMMENT_EVENT]
    )


@router.post("/incidents/{id_or_key}/comments", status_code=201)
async def add_comment(
    id_or_key: str,
    data: CommentCreate,
    session: Session,
    principal: CurrentUser,
    response: Response,
    idempotency: Idempotent,
) -> TimelineEventOut:
    async def produce() -> TimelineEventOut:
        incident = await service.get_visible(session, principal.user, id_or_key, details=False)
        event: TimelineEvent = await service.add_comment(session, principal, incident, data.body)
        return event_out(event, {principal.user.id: user_ref(principal.user)})

    return await _once_on_incident(  # type: ignore[return-value]
        idempotency,
        session,
        response,
        principal,
        id_or_key,
        scope="comments",
        produce=produce,
        incident_field="incident_id",
    )
