"""Imports every model so the metadata is complete (for Alembic and tests)."""

from app.actions.models import Action, ActionApproval
from app.auth.models import ApiToken, User
from app.db import Base
from app.escalation.models import Escalation, EscalationPolicy, EscalationPolicyChange
from app.idempotency import IdempotencyKey
from app.incidents.models import (
    Counter,
    Incident,
    IncidentMineral,
    IncidentParticipant,
    IncidentSignoff,
)
from app.minerals.models import Mineral
from app.ministries.models import Ministry
from app.notifications.models import Notification
from app.outbox.models import OutboxEvent
from app.priority.models import PriorityRecomputeJob, PriorityWeights, PriorityWeightsChange
from app.register.models import ConcernList, ConcernListChange, DependencyProfile
from app.timeline.models import TimelineEvent
from app.web.models import SigninAttempt, WebSession
from app.webhooks.models import Attempt, Delivery, Subscription

metadata = Base.metadata

__all__ = [
    "Action",
    "ActionApproval",
    "ApiToken",
    "Attempt",
    "Base",
    "ConcernList",
    "ConcernListChange",
    "Counter",
    "Delivery",
    "DependencyProfile",
    "Escalation",
    "EscalationPolicy",
    "EscalationPolicyChange",
    "IdempotencyKey",
    "Incident",
    "IncidentMineral",
    "IncidentParticipant",
    "IncidentSignoff",
    "Mineral",
    "Ministry",
    "Notification",
    "OutboxEvent",
    "PriorityRecomputeJob",
    "PriorityWeights",
    "PriorityWeightsChange",
    "SigninAttempt",
    "Subscription",
    "TimelineEvent",
    "User",
    "WebSession",
    "metadata",
]
