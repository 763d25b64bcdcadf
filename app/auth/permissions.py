"""Who may do what (SPEC §1): the permission predicates the services share, in one place.

Refusals follow one rule everywhere: what the caller may not see answers 404, as if it did
not exist; what they may see but not change answers 403. Users are seen by everyone in the
directory while active, and by the admins who manage them always; a token is seen only by
its owner and the admins who manage its owner. Who may *see* an incident is TLP visibility
(``app.incidents.visibility``); these predicates decide what a user may do with what they see.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, false, literal, or_, select
from sqlalchemy.orm import QueryableAttribute

from app.actions.vocabulary import ministries_of
from app.auth.models import User
from app.auth.roles import at_least, rank
from app.countries import ministry_of
from app.errors import Forbidden
from app.ministries.models import Ministry

if TYPE_CHECKING:
    from app.actions.models import Action
    from app.incidents.models import Incident


def require(allowed: bool, message: str) -> None:
    if not allowed:
        raise Forbidden(message)


def is_admin(user: User) -> bool:
    return user.role == "admin"


def is_co_lead_admin(user: User) -> bool:
    """Admins of DOE and METI: they also manage partner organisations, escalation policies
    and the co_chair flag."""
    return is_admin(user) and user.ministry.is_co_lead


def manages_ministry(actor: User, ministry: Ministry) -> bool:
    """An admin manages the users of their own ministry; a co-lead admin also those of
    every partner organisation."""
    if not is_admin(actor):
        return False
    return ministry.id == actor.ministry_id or (
        actor.ministry.is_co_lead and not ministry.is_co_lead
    )


def manages_user(actor: User, user: User) -> bool:
    return manages_ministry(actor, user.ministry)


def sees_user(actor: User, user: User) -> bool:
    """Active users are in everyone's directory; inactive ones only their admins see."""
    return user.active or manages_user(actor, user)


def manages_tokens_of(actor: User, user: User) -> bool:
    return actor.id == user.id or manages_user(actor, user)


def may_grant_role(actor: User, role: str) -> bool:
    """Nobody grants a role above their own."""
    return rank(role) <= rank(actor.role)


def manages_partners(actor: User) -> bool:
    return is_co_lead_admin(actor)


def manages_escalation_policies(actor: User) -> bool:
    return is_co_lead_admin(actor)


def may_set_co_chair(actor: User) -> bool:
    return is_co_lead_admin(actor)


def sees_emails(actor: User) -> bool:
    """Users of the co-lead ministries see colleagues' emails in the directory; partner
    users see names only."""
    return actor.ministry.is_co_lead


def is_lead_of(user: User, ministry_code: str) -> bool:
    """A lead (or admin) of this ministry."""
    return at_least(user.role, "lead") and user.ministry.code == ministry_code


# --- incidents --------------------------------------------------------------------------


def is_owner(user: User, incident: Incident) -> bool:
    return user.id in (incident.doe_owner_id, incident.meti_owner_id)


def may_triage(user: User, incident: Incident) -> bool:
    """Leads of a co-lead ministry, admins and the incident's owners."""
    if user.role == "admin" or is_owner(user, incident):
        return True
    return at_least(user.role, "lead") and user.ministry.is_co_lead


def may_edit_incident(user: User, incident: Incident) -> bool:
    """Those who triage it, and its reporter while a responder or above."""
    return may_triage(user, incident) or (
        user.id == incident.reporter_id and at_least(user.role, "responder")
    )


def may_name_participants(user: User, incident: Incident) -> bool:
    """The owners, leads (who got here, so may see it) and the reporter: on a RED
    incident nobody else may see it, so the source decides who shares its report."""
    return (
        is_owner(user, incident) or at_least(user.role, "lead") or user.id == incident.reporter_id
    )


# --- response actions -------------------------------------------------------------------


def leads_owning_ministry(user: User, action: Action) -> bool:
    """A lead (or admin) of the owning ministry; for JOINT, of either co-lead ministry."""
    return at_least(user.role, "lead") and user.ministry.code in ministries_of(
        action.owning_ministry
    )


def may_edit_action(user: User, action: Action) -> bool:
    """Leads of its owning ministry and the incident's owners; its proposer while it is
    still proposed."""
    if leads_owning_ministry(user, action) or is_owner(user, action.incident):
        return True
    return action.status == "proposed" and user.id == action.created_by_id


# --- the register and the priority weights ----------------------------------------------


def may_keep_profiles(user: User, country: str) -> bool:
    """Profiles of a country are kept by the leads of its ministry (US: DOE, JP: METI)."""
    return is_lead_of(user, ministry_of(country))


def may_keep_concern_list(user: User, ministry_code: str) -> bool:
    """A co-lead ministry's countries of concern are kept by its leads."""
    return is_lead_of(user, ministry_code)


def may_set_weights(user: User) -> bool:
    """The priority weights are set by admins of a co-lead ministry."""
    return is_co_lead_admin(user)


# --- webhook subscriptions --------------------------------------------------------------


def manages_webhooks(user: User) -> bool:
    """Leads and admins manage webhook subscriptions (which ones: ``manages_webhooks_of``)."""
    return user.active and at_least(user.role, "lead")


def manages_webhooks_of(user: User, ministry: Ministry) -> bool:
    """A ministry's leads and admins manage its own subscriptions; admins of a co-lead
    ministry also those of partner organisations."""
    if not manages_webhooks(user):
        return False
    return user.ministry_id == ministry.id or (
        is_co_lead_admin(user) and ministry.kind == "partner"
    )


def webhooks_managed_by(
    user: User, ministry_id: QueryableAttribute[uuid.UUID]
) -> ColumnElement[bool]:
    """``manages_webhooks_of`` in SQL, over the rows' ministry id column (for lists)."""
    if not manages_webhooks(user):
        return false()
    own = ministry_id == literal(user.ministry_id)
    if not is_co_lead_admin(user):
        return own
    partners = select(Ministry.id).where(Ministry.kind == "partner").scalar_subquery()
    return or_(own, ministry_id.in_(partners))
