"""Response actions: propose, approve (JOINT needs both co-leads), work, and the queue."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload

from app import clock
from app.actions.models import Action, ActionApproval, is_open
from app.actions.schemas import (
    MATERIAL_FIELDS,
    ActionCreate,
    ActionTransitionRequest,
    ActionUpdate,
)
from app.actions.states import ACTION_LIFECYCLE, APPROVALS, TERMINAL, ActionFacts
from app.actions.vocabulary import ministries_of
from app.auth.models import User
from app.auth.permissions import is_owner, leads_owning_ministry, may_edit_action, require
from app.auth.roles import at_least
from app.auth.service import Principal
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, TransitionRefused
from app.events import Event, emit, emit_many
from app.incidents.models import Incident
from app.incidents.states import INCIDENT_LIFECYCLE, TAKES_ACTIONS
from app.incidents.visibility import visible_pairs, visible_to
from app.kit.pagination import Key, Order, paginate
from app.lifecycle import describe
from app.models_base import apply_changes, check_version, requested_changes
from app.timeline.service import Actor


def approvals_required(action: Action) -> tuple[str, ...]:
    return ministries_of(action.owning_ministry)


def is_overdue(action: Action, now: datetime | None = None) -> bool:
    return (
        action.status not in TERMINAL
        and action.due_at is not None
        and action.due_at <= (now or clock.now())
    )


def _details() -> list[Any]:
    return [
        joinedload(Action.incident),
        joinedload(Action.assignee),
        joinedload(Action.created_by),
        selectinload(Action.approvals).joinedload(ActionApproval.user),
    ]


async def get_visible(session: AsyncSession, user: User, action_id: uuid.UUID) -> Action:
    """The action if the user may see its incident; 404 otherwise."""
    action = await session.scalar(
        select(Action)
        .join(Incident, Incident.id == Action.incident_id)
        .where(Action.id == action_id, visible_to(user))
        .options(*_details())
        .execution_options(populate_existing=True)
    )
    if action is None:
        raise NotFound("No such action")
    return action


async def _check_assignee(
    session: AsyncSession, assignee_id: uuid.UUID | None, owning_ministry: str, incident: Incident
) -> User | None:
    if assignee_id is None:
        return None
    user = await session.get(User, assignee_id)
    if user is None or not user.active:
        raise InvalidInput("assignee_id", "no such active user")
    allowed = ministries_of(owning_ministry)
    if user.ministry.code not in allowed:
        raise InvalidInput("assignee_id", f"the assignee must belong to {' or '.join(allowed)}")
    if not at_least(user.role, "responder"):
        raise InvalidInput("assignee_id", "viewers cannot be assigned work; pick a responder")
    # Assigning never widens who sees the incident (SPEC §3, §6).
    if not await visible_pairs(session, [(user.id, incident.id)]):
        raise InvalidInput(
            "assignee_id",
            "the assignee cannot see this incident; name them as a participant first",
        )
    return user


def _require_workable_incident(incident: Incident) -> None:
    if incident.status in INCIDENT_LIFECYCLE.terminal:
        raise TransitionRefused(
            f"The incident is {incident.status}; its actions can no longer change",
            [{"code": "incident_closed", "message": f"the incident is {incident.status}"}],
        )


def _require_accepting_actions(incident: Incident) -> None:
    _require_workable_incident(incident)
    if incident.status not in TAKES_ACTIONS:
        raise TransitionRefused(
            f"The incident is {incident.status}; actions are proposed while it is "
            f"{', '.join(TAKES_ACTIONS)}",
            [
                {
                    "code": "incident_not_taking_actions",
                    "message": f"the incident is {incident.status}",
                }
            ],
        )


def _require_future(due_at: datetime | None) -> None:
    if due_at is not None and due_at <= clock.now():
        raise InvalidInput("due_at", "must be in the future")


async def create(
    session: AsyncSession, principal: Principal, incident: Incident, data: ActionCreate
) -> Action:
    user = principal.user
    require(at_least(user.role, "responder"), "Proposing actions needs the responder role")
    _require_accepting_actions(incident)
    _require_future(data.due_at)
    await _check_assignee(session, data.assignee_id, data.owning_ministry, incident)
    now = clock.now()
    action = Action(
        incident_id=incident.id,
        created_by_id=user.id,
        status="proposed",
        created_at=now,
        updated_at=now,
        approvals=[],
        **data.model_dump(),
    )
    session.add(action)
    await session.flush()
    await emit(
        session,
        incident,
        Actor.of(principal),
        "action.created",
        {"action_id": action.id, **data.model_dump(mode="json")},
        at=now,
    )
    return await get_visible(session, user, action.id)


async def update(
    session: AsyncSession,
    principal: Principal,
    action: Action,
    expected: int,
    data: ActionUpdate,
) -> Action:
    user = principal.user
    require(
        may_edit_action(user, action),
        "Only leads of the owning ministry, incident owners "
        "and (while proposed) the proposer may edit an action",
    )
    check_version(action, expected)
    _require_workable_incident(action.incident)
    if action.status in TERMINAL:
        raise Conflict(f"The action is {action.status}")
    changes = requested_changes(data)
    if action.status != "proposed":
        if "owning_ministry" in changes:
            raise InvalidInput("owning_ministry", "can only change while the action is proposed")
        # What was approved keeps a due time and an assignee: changeable, not clearable.
        for name in ("due_at", "assignee_id"):
            if name in changes and changes[name] is None:
                raise InvalidInput(name, "an approved action keeps it: change it, don't clear it")
    ministry = changes.get("owning_ministry", action.owning_ministry)
    if "assignee_id" in changes or "owning_ministry" in changes:
        await _check_assignee(
            session, changes.get("assignee_id", action.assignee_id), ministry, action.incident
        )
    if changes.get("due_at") != action.due_at:
        _require_future(changes.get("due_at"))
    before, after = apply_changes(action, changes)
    if not after:
        return action
    if "due_at" in after:
        # A new due time restarts the escalation ladder from the new deadline.
        action.escalation_level = 0
        action.ladder_round += 1
    action.updated_at = clock.now()
    actor = Actor.of(principal)
    events = [
        Event(
            action.incident_id,
            actor,
            "action.updated",
            {"action_id": action.id, "before": before, "after": after},
            incident_key=action.incident.key,
        )
    ]
    material = sorted(MATERIAL_FIELDS & after.keys())
    if action.status == "proposed" and action.approvals and material:
        # An approval is of what was proposed: a material edit voids those already given.
        events.append(
            Event(
                action.incident_id,
                actor,
                "action.approvals_voided",
                {
                    "action_id": action.id,
                    "ministries": [a.ministry_code for a in action.approvals],
                    "fields": material,
                },
                incident_key=action.incident.key,
            )
        )
        action.approvals.clear()
    await session.flush()
    await emit_many(session, events)
    return await get_visible(session, user, action.id)


def facts(
    user: User, action: Action, request: ActionTransitionRequest | None = None
) -> ActionFacts:
    present = {a.ministry_code for a in action.approvals}
    return ActionFacts(
        has_due_at=action.due_at is not None,
        has_assignee=action.assignee_id is not None,
        approvals_missing=tuple(m for m in approvals_required(action) if m not in present),
        reason=request.reason if request else None,
        outcome=request.outcome if request else None,
        actor_is_assignee=action.assignee_id == user.id,
        actor_leads_owning_ministry=leads_owning_ministry(user, action),
        actor_owns_incident=is_owner(user, action.incident),
    )


async def approve(
    session: AsyncSession, principal: Principal, action: Action, expected: int | None = None
) -> Action:
    """Record the caller's ministry's approval; the action becomes approved once every
    required ministry has approved (one for DOE/METI actions, both for JOINT)."""
    user = principal.user
    if expected is not None:
        check_version(action, expected)
    _require_workable_incident(action.incident)
    if action.status != "proposed":
        raise TransitionRefused(
            "Only a proposed action can be approved",
            [{"code": "not_proposed", "message": f"the action is {action.status}"}],
        )
    ministry = user.ministry.code
    if not leads_owning_ministry(user, action):
        raise Forbidden(
            f"Only a lead of {' or '.join(approvals_required(action))} may approve this action"
        )
    if any(a.ministry_code == ministry for a in action.approvals):
        raise Conflict(f"{ministry} has already approved this action")
    now = clock.now()
    current = facts(user, action)
    unmet = [
        g for g in ACTION_LIFECYCLE.unmet("proposed", "approved", current) if g is not APPROVALS
    ]
    if unmet:
        raise TransitionRefused("The action cannot be approved yet", describe(unmet))
    assert action.due_at is not None
    if action.due_at <= now:
        raise InvalidInput("due_at", "is in the past; set a new due time before approving")
    action.approvals.append(
        ActionApproval(action_id=action.id, ministry_code=ministry, user_id=user.id, at=now)
    )
    action.updated_at = now
    missing = [
        m
        for m in approvals_required(action)
        if m not in {a.ministry_code for a in action.approvals}
    ]
    data: dict[str, Any] = {"action_id": action.id, "ministry": ministry}
    if not missing:
        ACTION_LIFECYCLE.check("proposed", "approved", facts(user, action))
        action.status, action.approved_at = "approved", now
    await session.flush()
    await emit(session, action.incident, Actor.of(principal), "action.approved", data)
    if not missing:
        await _record_status(session, principal, action, "proposed", "approved", None)
    return await get_visible(session, user, action.id)


async def _record_status(
    session: AsyncSession,
    principal: Principal,
    action: Action,
    source: str,
    target: str,
    note: str | None,
) -> None:
    data: dict[str, Any] = {"action_id": action.id, "from": source, "to": target}
    if note:
        data["note"] = note
    await emit(session, action.incident, Actor.of(principal), "action.status_changed", data)


async def transition(
    session: AsyncSession,
    principal: Principal,
    action: Action,
    expected: int,
    request: ActionTransitionRequest,
) -> Action:
    if request.to == "approved":
        return await approve(session, principal, action, expected)
    user = principal.user
    check_version(action, expected)
    _require_workable_incident(action.incident)
    source, target = action.status, request.to
    ACTION_LIFECYCLE.check(source, target, facts(user, action, request))
    now = clock.now()
    action.status, action.updated_at = target, now
    note: str | None = None
    if target == "blocked":
        action.blocked_reason = note = request.reason
    elif source == "blocked":
        action.blocked_reason = None
    if target == "completed":
        action.outcome, action.completed_at = request.outcome, now
        note = request.outcome
    elif target in ("rejected", "cancelled"):
        action.closing_reason = note = request.reason
    await session.flush()
    await _record_status(session, principal, action, source, target, note)
    return await get_visible(session, user, action.id)


# --- the queue ----------------------------------------------------------------------------


@dataclass
class QueueFilters:
    assignee: uuid.UUID | None = None
    ministry: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    overdue: bool = False
    due_before: datetime | None = None
    incident_id: uuid.UUID | None = None


# Soonest due first, undated last.
QUEUE_ORDER = Order(
    "actions:due_at", Key(Action.due_at, "datetime", nullable=True), Key(Action.id, "uuid")
)
INCIDENT_ACTIONS_ORDER = Order(
    "incident-actions", Key(Action.created_at, "datetime"), Key(Action.id, "uuid")
)


async def queue(
    session: AsyncSession,
    user: User,
    filters: QueueFilters,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[Sequence[Action], str | None]:
    """Actions across the incidents the user may see, soonest due first."""
    query = select(Action).join(Incident, Incident.id == Action.incident_id).where(visible_to(user))
    if filters.assignee is not None:
        query = query.where(Action.assignee_id == filters.assignee)
    if filters.ministry:
        query = query.where(Action.owning_ministry.in_(filters.ministry))
    if filters.status:
        query = query.where(Action.status.in_(filters.status))
    if filters.overdue:
        query = query.where(is_open(), Action.due_at <= clock.now())
    if filters.due_before is not None:
        query = query.where(Action.due_at < filters.due_before)
    if filters.incident_id is not None:
        query = query.where(Action.incident_id == filters.incident_id)
    return await paginate(
        session, query.options(*_details()), QUEUE_ORDER, limit=limit, cursor=cursor
    )


async def for_incident(
    session: AsyncSession, incident: Incident, *, limit: int, cursor: str | None
) -> tuple[list[Action], str | None]:
    """An incident's actions, oldest first."""
    query = select(Action).where(Action.incident_id == incident.id).options(*_details())
    return await paginate(session, query, INCIDENT_ACTIONS_ORDER, limit=limit, cursor=cursor)
