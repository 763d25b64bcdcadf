"""Who manages which webhook subscriptions (SPEC §1): a ministry's leads and admins manage
its own; admins of a co-lead ministry also manage those of partner organisations. The rule
in Python (one ministry) and in SQL (lists), side by side."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, false, literal, or_, select

from app.auth.models import User
from app.auth.roles import at_least
from app.ministries.models import Ministry
from app.webhooks.models import Subscription


def _co_lead_admin(user: User) -> bool:
    return user.role == "admin" and user.ministry.is_co_lead


def may_manage(user: User, ministry: Ministry) -> bool:
    if not (user.active and at_least(user.role, "lead")):
        return False
    return user.ministry_id == ministry.id or (_co_lead_admin(user) and ministry.kind == "partner")


def manageable_by(user: User) -> ColumnElement[bool]:
    """Subscriptions the user may manage (and so see)."""
    if not (user.active and at_least(user.role, "lead")):
        return false()
    own = Subscription.ministry_id == literal(user.ministry_id)
    if not _co_lead_admin(user):
        return own
    partners = select(Ministry.id).where(Ministry.kind == "partner").scalar_subquery()
    return or_(own, and_(Subscription.ministry_id.in_(partners)))
