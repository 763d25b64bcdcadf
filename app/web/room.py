"""The incident room (``/incidents/{key}``): every field, owners and participants, the
moves the reader may make now (the rest disabled with the unmet guards, read from the same
lifecycle table the API enforces), actions with their buttons, sign-offs, the timeline and
comments. Every change goes through the same service function as the API."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.actions import service as actions
from app.actions.models import Action
from app.actions.schemas import ActionCreate, ActionTransitionRequest
from app.actions.states import ACTION_LIFECYCLE, APPROVALS
from app.actions.vocabulary import KINDS, OWNING_MINISTRIES, PRIORITIES
from app.auth import service as auth_service
from app.auth.models import User
from app.auth.permissions import may_name_participants, may_triage
from app.auth.roles import at_least
from app.deps import get_database
from app.errors import AppError, NotFound
from app.incidents import service as incidents
from app.incidents.models import Incident
from app.incidents.presenters import event_out, present_incidents, user_refs
from app.incidents.schemas import TransitionRequest
from app.incidents.states import INCIDENT_LIFECYCLE, TAKES_ACTIONS
from app.lifecycle import Guard
from app.ministries.models import CO_LEAD_CODES
from app.timeline import service as timeline
from app.web.forms import GENERAL, errors_of, local_time, optional, status_of
from app.web.security import WebPrincipal, WebUser
from app.web.templating import NO_STORE, gettext_for, language_of, render

router = APIRouter()
# Guards met by what the form asks for (a reason, a summary), not by the state of things:
# shown as fields of the move, never as why it is disabled.
INPUT_GUARDS = frozenset(
    {"reason_required", "resolution_summary_required", "duplicate_of_invalid", "outcome_required"}
)
OWNER_ROLES = ("responder", "lead", "admin")
TIMELINE_LIMIT = 200
ACTIONS_LIMIT = 200
PEOPLE_LIMIT = 100


@dataclass
class Move:
    """A button: a move and whether the reader may make it now, or what stands in the way."""

    target: str
    allowed: bool
    blockers: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # reason, resolution_summary, outcome


def _move(target: str, who_ok: bool, who_message: str, unmet: list[Any]) -> Move:
    blockers = [g.message for g in unmet if g.code not in INPUT_GUARDS]
    if not who_ok:
        blockers.insert(0, who_message)
    inputs = [g.code.removesuffix("_required") for g in unmet if g.code in INPUT_GUARDS]
    return Move(target, not blockers, blockers, [i for i in inputs if i != "duplicate_of_invalid"])


def _inputs_of(guards: tuple[Guard[Any], ...]) -> list[str]:
    return [
        g.code.removesuffix("_required")
        for g in guards
        if g.code in INPUT_GUARDS and g.code != "duplicate_of_invalid"
    ]


async def incident_moves(session: AsyncSession, user: User, incident: Incident) -> list[Move]:
    facts = await incidents.facts(session, user, incident, None)
    may = may_triage(user, incident)
    moves = []
    for target in INCIDENT_LIFECYCLE.targets(incident.status):
        unmet = INCIDENT_LIFECYCLE.unmet(incident.status, target, facts)
        move = _move(target, may, "only leads, admins and the incident's owners may move it", unmet)
        edge = INCIDENT_LIFECYCLE.edge(incident.status, target)
        assert edge is not None
        move.inputs = _inputs_of(edge.guards)
        moves.append(move)
    return moves


def action_moves(user: User, action: Action) -> list[Move]:
    if action.incident.status in INCIDENT_LIFECYCLE.terminal:
        return []
    facts = actions.facts(user, action)
    moves = []
    for target in ACTION_LIFECYCLE.targets(action.status):
        edge = ACTION_LIFECYCLE.edge(action.status, target)
        assert edge is not None
        unmet = ACTION_LIFECYCLE.unmet(action.status, target, facts)
        if target == "approved":
            # One approval per ministry: the move happens once every ministry approved.
            unmet = [g for g in unmet if g is not APPROVALS]
            mine = user.ministry.code
            if any(a.ministry_code == mine for a in action.approvals):
                unmet.append(Guard("approved_already", f"{mine} has approved it", lambda _: False))
        who_ok = edge.who is None or edge.who.holds(facts)
        who_message = edge.who.message if edge.who is not None else ""
        move = _move(target, who_ok, who_message, unmet)
        move.inputs = _inputs_of(edge.guards)
        moves.append(move)
    return moves


async def _people(
    session: AsyncSession, user: User, ministry: str | None, roles: tuple[str, ...]
) -> list[User]:
    """The first people of the directory (the same query as GET /api/v1/directory)."""
    found, _ = await auth_service.directory(
        session, user, q=None, ministry=ministry, roles=roles, limit=PEOPLE_LIMIT, cursor=None
    )
    return found


async def room_context(session: AsyncSession, web: WebPrincipal, key: str) -> dict[str, Any]:
    user = web.user
    incident = await incidents.get_visible(session, user, key)
    shown = (await present_incidents(session, [incident]))[0]
    action_rows, _ = await actions.for_incident(session, incident, limit=ACTIONS_LIMIT, cursor=None)
    events, _ = await timeline.page(
        session, incident.id, limit=TIMELINE_LIMIT, cursor=None, types=None
    )
    refs = await user_refs(session, (e.actor_user_id for e in events))
    triage = may_triage(user, incident)
    open_ = incident.status not in INCIDENT_LIFECYCLE.terminal
    owners = (
        {m: await _people(session, user, m, OWNER_ROLES) for m in CO_LEAD_CODES}
        if triage and open_
        else {}
    )
    names_people = may_name_participants(user, incident) and open_
    proposes = at_least(user.role, "responder") and incident.status in TAKES_ACTIONS
    signed = {s.ministry for s in shown.signoffs}
    ministry = user.ministry.code
    return {
        "incident": shown,
        "row": incident,
        "moves": await incident_moves(session, user, incident),
        "actions": [(a, action_moves(user, a), actions.is_overdue(a)) for a in action_rows],
        "events": [event_out(e, refs) for e in reversed(events)],
        "may_triage": triage and open_,
        "owner_choices": owners,
        "may_name_participants": names_people,
        "participant_choices": await _people(session, user, None, ()) if names_people else [],
        "assignee_choices": await _people(session, user, None, OWNER_ROLES) if proposes else [],
        "may_propose": proposes,
        "may_comment": at_least(user.role, "responder"),
        "may_sign_off": incident.status == "resolved"
        and ministry in CO_LEAD_CODES
        and ministry not in signed
        and (
            at_least(user.role, "lead")
            or getattr(incident, incidents.OWNER_COLUMNS[ministry]) == user.id
        ),
        "kinds": KINDS,
        "owning_ministries": OWNING_MINISTRIES,
        "priorities": PRIORITIES,
        "co_leads": CO_LEAD_CODES,
    }


async def room_page(
    request: Request,
    web: WebPrincipal,
    key: str,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
    template: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    async with get_database(request).unit_of_work(readonly=True) as session:
        context = await room_context(session, web, key)
    context.update(errors=errors or {}, values=values or {})
    if template is None:
        template = "fragments/room.html" if request.headers.get("hx-request") else "room.html"
    return await render(request, template, web, context, status_code=status_code, headers=headers)


@router.get("/incidents/{key}")
async def room(request: Request, web: WebUser, key: str) -> Response:
    return await room_page(request, web, key)


@router.get("/incidents/{key}/parts")
async def room_parts(request: Request, web: WebUser, key: str) -> Response:
    """Every part of the room, each to be swapped in by its id (htmx out-of-band), for a
    live refresh when the incident changed. Visibility is checked again here: an incident
    the reader may no longer see is 404, and nothing of it is sent."""
    return await room_page(
        request, web, key, template="fragments/room_parts.html", headers=NO_STORE
    )


Change = Callable[[AsyncSession, Incident], Awaitable[Any]]


async def _change(
    request: Request,
    web: WebPrincipal,
    key: str,
    form: str,
    change: Change,
    *,
    values: dict[str, Any] | None = None,
) -> Response:
    """Run one change in one transaction; a refusal re-renders the room with the errors
    next to the form's fields (and nothing written); success goes back to the room."""
    try:
        async with get_database(request).unit_of_work() as session:
            incident = await incidents.get_visible(session, web.user, key)
            await change(session, incident)
    except NotFound:
        raise
    except (AppError, ValidationError) as exc:
        _ = gettext_for(language_of(request, web))
        messages = {name: _(text) for name, text in errors_of(exc).items()}
        return await room_page(
            request, web, key, errors={form: messages}, values=values, status_code=status_of(exc)
        )
    return RedirectResponse(f"/incidents/{key}#{form}", status_code=303)


def _version(value: str) -> int:
    return int(value) if value.isdigit() else 0


@router.post("/incidents/{key}/transition")
async def move_incident(
    request: Request,
    web: WebUser,
    key: str,
    to: Annotated[str, Form(max_length=32)],
    version: Annotated[str, Form(max_length=12)],
    reason: Annotated[str | None, Form(max_length=5000)] = None,
    resolution_summary: Annotated[str | None, Form(max_length=20_000)] = None,
    duplicate_of: Annotated[str | None, Form(max_length=64)] = None,
) -> Response:
    async def change(session: AsyncSession, incident: Incident) -> None:
        data = TransitionRequest.model_validate(
            {
                "to": to,
                "reason": optional(reason),
                "resolution_summary": optional(resolution_summary),
                "duplicate_of": optional(duplicate_of),
            }
        )
        await incidents.transition(session, web.principal, incident, _version(version), data)

    return await _change(
        request,
        web,
        key,
        f"move-{to}",
        change,
        values={"reason": reason or "", "resolution_summary": resolution_summary or ""},
    )


def _uuid(value: str, field_name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        from app.errors import InvalidInput

        raise InvalidInput(field_name, "pick someone from the list") from None


@router.post("/incidents/{key}/owners")
async def assign_owner(
    request: Request,
    web: WebUser,
    key: str,
    ministry: Annotated[str, Form(max_length=16)],
    user_id: Annotated[str, Form(max_length=64)],
) -> Response:
    async def change(session: AsyncSession, incident: Incident) -> None:
        await incidents.assign_owner(
            session, web.principal, incident, ministry, _uuid(user_id, "user_id"), None
        )

    return await _change(request, web, key, f"owner-{ministry.upper()}", change)


@router.post("/incidents/{key}/participants")
async def add_participant(
    request: Request, web: WebUser, key: str, user_id: Annotated[str, Form(max_length=64)]
) -> Response:
    async def change(session: AsyncSession, incident: Incident) -> None:
        await incidents.add_participant(session, web.principal, incident, _uuid(user_id, "user_id"))

    return await _change(request, web, key, "participants", change)


@router.post("/incidents/{key}/participants/{user_id}/remove")
async def remove_participant(
    request: Request, web: WebUser, key: str, user_id: uuid.UUID
) -> Response:
    async def change(session: AsyncSession, incident: Incident) -> None:
        await incidents.remove_participant(session, web.principal, incident, user_id)

    return await _change(request, web, key, "participants", change)


@router.post("/incidents/{key}/signoff")
async def sign_off(
    request: Request,
    web: WebUser,
    key: str,
    note: Annotated[str | None, Form(max_length=5000)] = None,
) -> Response:
    async def change(session: AsyncSession, incident: Incident) -> None:
        await incidents.sign_off(session, web.principal, incident, optional(note))

    return await _change(request, web, key, "signoffs", change)


@router.post("/incidents/{key}/comments")
async def comment(
    request: Request, web: WebUser, key: str, body: Annotated[str, Form(max_length=20_000)] = ""
) -> Response:
    async def change(session: AsyncSession, incident: Incident) -> None:
        from app.incidents.schemas import CommentCreate

        data = CommentCreate.model_validate({"body": body})
        await incidents.add_comment(session, web.principal, incident, data.body)

    return await _change(request, web, key, "comment", change, values={"body": body})


@router.post("/incidents/{key}/actions")
async def propose_action(
    request: Request,
    web: WebUser,
    key: str,
    title: Annotated[str, Form(max_length=300)] = "",
    description: Annotated[str, Form(max_length=20_000)] = "",
    kind: Annotated[str, Form(max_length=32)] = "",
    owning_ministry: Annotated[str, Form(max_length=8)] = "",
    assignee_id: Annotated[str | None, Form(max_length=64)] = None,
    priority: Annotated[str, Form(max_length=8)] = "medium",
    due_at: Annotated[str | None, Form(max_length=40)] = None,
) -> Response:
    form = {
        "title": title,
        "description": description,
        "kind": kind,
        "owning_ministry": owning_ministry,
        "assignee_id": optional(assignee_id),
        "priority": priority,
        "due_at": local_time(due_at, web.user.timezone),
    }

    async def change(session: AsyncSession, incident: Incident) -> None:
        data = ActionCreate.model_validate(form)
        await actions.create(session, web.principal, incident, data)

    values = {**form, "due_at": due_at or ""}
    return await _change(request, web, key, "new-action", change, values=values)


async def _action_change(
    request: Request,
    web: WebPrincipal,
    action_id: uuid.UUID,
    change: Callable[[AsyncSession, Action], Awaitable[Any]],
) -> Response:
    async with get_database(request).unit_of_work(readonly=True) as session:
        key = (await actions.get_visible(session, web.user, action_id)).incident.key

    async def on_incident(session: AsyncSession, _incident: Incident) -> None:
        await change(session, await actions.get_visible(session, web.user, action_id))

    return await _change(request, web, key, f"action-{action_id}", on_incident)


@router.post("/actions/{action_id}/transition")
async def move_action(
    request: Request,
    web: WebUser,
    action_id: uuid.UUID,
    to: Annotated[str, Form(max_length=32)],
    version: Annotated[str, Form(max_length=12)],
    reason: Annotated[str | None, Form(max_length=20_000)] = None,
    outcome: Annotated[str | None, Form(max_length=20_000)] = None,
) -> Response:
    async def change(session: AsyncSession, action: Action) -> None:
        if to == "approved":
            await actions.approve(session, web.principal, action, _version(version))
            return
        data = ActionTransitionRequest.model_validate(
            {"to": to, "reason": optional(reason), "outcome": optional(outcome)}
        )
        await actions.transition(session, web.principal, action, _version(version), data)

    return await _action_change(request, web, action_id, change)


__all__ = ["GENERAL", "router"]
