"""Who may do what (SPEC §1): the permission predicates the services share.

Refusals follow one rule everywhere: what the caller may not see answers 404, as if it did
not exist; what they may see but not change answers 403. Users are seen by everyone in the
directory while active, and by the admins who manage them always; a token is seen only by
its owner and the admins who manage its owner.
"""

from __future__ import annotations

from app.auth.models import User
from app.auth.roles import rank
from app.errors import Forbidden
from app.ministries.models import Ministry


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
