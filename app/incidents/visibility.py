"""TLP visibility (SPEC §6), applied in the query layer.

``visible_to(user)`` is the one rule: every read path (lists, counts, filters, search,
detail, timeline, comments, actions, notifications) filters incidents with it, so an
incident a user may not see answers 404 everywhere.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, false, or_
from sqlalchemy.orm import aliased

from app.auth.models import User
from app.incidents.models import Incident, IncidentParticipant


def named_on(user: User) -> ColumnElement[bool]:
    """The user is one of the incident's named people: reporter, owner, participant, or
    assignee of one of its actions."""
    from app.actions.models import Action

    # An alias, so the subquery correlates only to the incident even inside queries that
    # already select from actions (the action detail and the queue).
    assigned = aliased(Action)
    return or_(
        Incident.reporter_id == user.id,
        Incident.doe_owner_id == user.id,
        Incident.meti_owner_id == user.id,
        exists().where(
            IncidentParticipant.incident_id == Incident.id,
            IncidentParticipant.user_id == user.id,
        ),
        exists().where(assigned.incident_id == Incident.id, assigned.assignee_id == user.id),
    )


def visible_to(user: User) -> ColumnElement[bool]:
    if not user.active:
        return false()
    named = named_on(user)
    # AMBER is for the co-lead ministries, not partners (unless they are named on it).
    open_markings: tuple[str, ...] = ("CLEAR", "GREEN", "AMBER")
    named_markings: tuple[str, ...] = ("AMBER+STRICT", "RED")
    if not user.ministry.is_co_lead:
        open_markings, named_markings = ("CLEAR", "GREEN"), ("AMBER", "AMBER+STRICT", "RED")
    return or_(
        Incident.tlp.in_(open_markings),
        and_(Incident.tlp == "AMBER+STRICT", Incident.reporter_ministry_id == user.ministry_id),
        # Named people (reporter, owners, participants, assignees) see what they are on.
        and_(Incident.tlp.in_(named_markings), named),
    )
