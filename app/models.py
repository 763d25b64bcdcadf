"""Imports every model so the metadata is complete (for Alembic and tests)."""

from app.actions.models import Action, ActionApproval
from app.auth.models import ApiToken, User
from app.db import Base
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
from app.timeline.models import TimelineEvent

metadata = Base.metadata

__all__ = [
    "Action",
    "ActionApproval",
    "ApiToken",
    "Base",
    "Counter",
    "IdempotencyKey",
    "Incident",
    "IncidentMineral",
    "IncidentParticipant",
    "IncidentSignoff",
    "Mineral",
    "Ministry",
    "TimelineEvent",
    "User",
    "metadata",
]
