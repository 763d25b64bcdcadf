from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from app.actions.vocabulary import ActionStatus, Kind, OwningMinistry, Priority
from app.incidents.schemas import UserRef
from app.kit.types import Timestamp
from app.schemas import InputModel

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Text = Annotated[str, StringConstraints(max_length=20_000)]


class ActionCreate(InputModel):
    title: Title
    description: Text = ""
    kind: Kind
    owning_ministry: OwningMinistry
    assignee_id: uuid.UUID | None = None
    priority: Priority = "medium"
    due_at: Timestamp | None = None


# Fields that may not be cleared with null.
REQUIRED_FIELDS = frozenset({"title", "description", "kind", "owning_ministry", "priority"})


class ActionUpdate(InputModel):
    not_nullable = REQUIRED_FIELDS

    title: Title | None = None
    description: Text | None = None
    kind: Kind | None = None
    owning_ministry: OwningMinistry | None = None
    assignee_id: uuid.UUID | None = None
    priority: Priority | None = None
    due_at: Timestamp | None = None


# What an approval approves: changing any of these voids the approvals of a proposed action.
MATERIAL_FIELDS = frozenset(
    {"title", "description", "kind", "owning_ministry", "assignee_id", "due_at"}
)


class ActionTransitionRequest(InputModel):
    to: ActionStatus
    reason: Text | None = None
    outcome: Text | None = None


class ApprovalOut(BaseModel):
    ministry: str
    user: UserRef
    at: datetime


class ActionOut(BaseModel):
    id: uuid.UUID
    incident_id: uuid.UUID
    incident_key: str
    title: str
    description: str
    kind: Kind
    owning_ministry: OwningMinistry
    assignee: UserRef | None
    priority: Priority
    due_at: datetime | None
    overdue: bool = Field(description="Not finished and past its due time")
    status: ActionStatus
    escalation_level: int
    blocked_reason: str | None
    outcome: str | None
    closing_reason: str | None
    approvals: list[ApprovalOut]
    approvals_required: list[str] = Field(description="Ministries whose approval is needed")
    created_by: UserRef
    approved_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
