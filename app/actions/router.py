from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app import clock
from app.actions import service
from app.actions.models import Action
from app.actions.schemas import (
    ActionCreate,
    ActionOut,
    ActionTransitionRequest,
    ActionUpdate,
    ApprovalOut,
)
from app.actions.service import QueueFilters
from app.actions.vocabulary import ActionStatus, OwningMinistry
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
from app.incidents import service as incidents
from app.incidents.schemas import user_ref
from app.kit.pagination import Cursor
from app.kit.types import Timestamp
from app.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["actions"])
ASSIGNEE_PATTERN = (
    r"^(me|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})$"
)
CONFLICT = problem_responses({409: "The action's state does not allow this"})
TRANSITION_REFUSED = problem_responses({409: "Not allowed now; `unmet` lists every unmet guard"})


def action_out(action: Action, now: datetime | None = None) -> ActionOut:
    return ActionOut(
        id=action.id,
        incident_id=action.incident_id,
        incident_key=action.incident.key,
        title=action.title,
        description=action.description,
        kind=action.kind,
        owning_ministry=action.owning_ministry,
        assignee=user_ref(action.assignee) if action.assignee else None,
        priority=action.priority,
        due_at=action.due_at,
        overdue=service.is_overdue(action, now),
        status=action.status,
        escalation_level=action.escalation_level,
        blocked_reason=action.blocked_reason,
        outcome=action.outcome,
        closing_reason=action.closing_reason,
        approvals=[
            ApprovalOut(ministry=a.ministry_code, user=user_ref(a.user), at=a.at)
            for a in action.approvals
        ],
        approvals_required=list(service.approvals_required(action)),
        created_by=user_ref(action.created_by),
        approved_at=action.approved_at,
        completed_at=action.completed_at,
        created_at=action.created_at,
        updated_at=action.updated_at,
        version=action.version,
    )


def _with_etag(action: Action, response: Response) -> ActionOut:
    response.headers["ETag"] = etag(action.version)
    return action_out(action)


@router.get("/incidents/{id_or_key}/actions")
async def list_incident_actions(
    id_or_key: str,
    session: Session,
    principal: CurrentUser,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ActionOut]:
    """The incident's actions, oldest first."""
    incident = await incidents.get_visible(session, principal.user, id_or_key, details=False)
    now = clock.now()
    rows, next_cursor = await service.for_incident(session, incident, limit=limit, cursor=cursor)
    return Page(items=[action_out(a, now) for a in rows], next_cursor=next_cursor)


@router.post(
    "/incidents/{id_or_key}/actions",
    status_code=201,
    responses=problem_responses({409: "The incident takes no new actions"}),
)
async def create_action(
    id_or_key: str,
    data: ActionCreate,
    session: Session,
    principal: CurrentUser,
    response: Response,
    idempotency: Idempotent,
) -> ActionOut:
    """Propose a response action on an incident."""

    async def produce() -> ActionOut:
        incident = await incidents.get_visible(session, principal.user, id_or_key, details=False)
        return action_out(await service.create(session, principal, incident, data))

    return await idempotency.respond(  # type: ignore[return-value]
        session,
        response,
        scope="actions",
        within=lambda reader: incidents.get_visible(
            reader, principal.user, id_or_key, details=False
        ),
        produce=produce,
        recheck=lambda body: service.get_visible(session, principal.user, uuid.UUID(body["id"])),
    )


@router.get(
    "/actions",
    responses=problem_responses({404: "The incident filter names no incident you may see"}),
)
async def list_actions(
    session: Session,
    principal: CurrentUser,
    assignee: Annotated[
        str | None, Query(description="`me` or a user id", pattern=ASSIGNEE_PATTERN)
    ] = None,
    ministry: Annotated[list[OwningMinistry] | None, Query()] = None,
    status: Annotated[list[ActionStatus] | None, Query()] = None,
    overdue: bool = False,
    due_before: Annotated[Timestamp | None, Query(description="Due before this time")] = None,
    incident: Annotated[str | None, Query(description="Incident id or key")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ActionOut]:
    """The action queue across the incidents you may see, soonest due first."""
    assignee_id: uuid.UUID | None = None
    if assignee == "me":
        assignee_id = principal.user.id
    elif assignee is not None:
        try:
            assignee_id = uuid.UUID(assignee)
        except ValueError:
            from app.errors import InvalidInput

            raise InvalidInput("assignee", "must be `me` or a user id", location="query") from None
    incident_id = None
    if incident is not None:
        incident_id = (
            await incidents.get_visible(session, principal.user, incident, details=False)
        ).id
    filters = QueueFilters(
        assignee=assignee_id,
        ministry=list(ministry or []),
        status=list(status or []),
        overdue=overdue,
        due_before=due_before,
        incident_id=incident_id,
    )
    now = clock.now()
    rows, next_cursor = await service.queue(
        session, principal.user, filters, limit=limit, cursor=cursor
    )
    return Page(items=[action_out(a, now) for a in rows], next_cursor=next_cursor)


@router.get("/actions/{action_id}")
async def get_action(
    action_id: uuid.UUID, session: Session, principal: CurrentUser, response: Response
) -> ActionOut:
    return _with_etag(await service.get_visible(session, principal.user, action_id), response)


@router.patch("/actions/{action_id}", responses=CONFLICT)
async def update_action(
    action_id: uuid.UUID,
    data: ActionUpdate,
    session: Session,
    principal: CurrentUser,
    response: Response,
    if_match: IfMatchRequired,
) -> ActionOut:
    action = await service.get_visible(session, principal.user, action_id)
    expected = required_version(if_match, action.version)
    action = await service.update(session, principal, action, expected, data)
    return _with_etag(action, response)


@router.post("/actions/{action_id}/transitions", responses=TRANSITION_REFUSED)
async def transition_action(
    action_id: uuid.UUID,
    data: ActionTransitionRequest,
    session: Session,
    principal: CurrentUser,
    response: Response,
    if_match: IfMatchRequired,
) -> ActionOut:
    """Move the action; 403 when you may not make this move, 409 listing unmet guards."""
    action = await service.get_visible(session, principal.user, action_id)
    expected = required_version(if_match, action.version)
    action = await service.transition(session, principal, action, expected, data)
    return _with_etag(action, response)


@router.post("/actions/{action_id}/approvals", status_code=201, responses=TRANSITION_REFUSED)
async def approve_action(
    action_id: uuid.UUID,
    session: Session,
    principal: CurrentUser,
    response: Response,
    if_match: IfMatch = None,
) -> ActionOut:
    """Approve for the caller's ministry (a lead of the owning ministry; JOINT needs both)."""
    action = await service.get_visible(session, principal.user, action_id)
    expected = optional_version(if_match, action.version)
    action = await service.approve(session, principal, action, expected)
    return _with_etag(action, response)
