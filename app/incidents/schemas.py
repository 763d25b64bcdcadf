from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, WithJsonSchema

from app.auth.models import User
from app.incidents.vocabulary import Category, Sector, Severity, Status, Tlp
from app.kit.types import INT32_MAX, HttpUrl, NonNegativeInt32, Timestamp
from app.priority.breakdown import PriorityBreakdown
from app.schemas import InputModel

COUNTRY_CODE = r"^[A-Z]{2}$"
CountryCode = Annotated[str, StringConstraints(pattern=COUNTRY_CODE)]
# Days of cover per country: keys are country codes and nothing else.
DaysOfCover = Annotated[
    dict[CountryCode, NonNegativeInt32],
    WithJsonSchema(
        {
            "type": "object",
            "patternProperties": {
                COUNTRY_CODE: {"type": "integer", "minimum": 0, "maximum": INT32_MAX}
            },
            "additionalProperties": False,
            "description": "Days of cover per ISO 3166 alpha-2 country code",
        }
    ),
]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Summary = Annotated[str, StringConstraints(max_length=20_000)]
MineralCodes = Annotated[list[str], Field(min_length=1, max_length=30)]


class Source(InputModel):
    title: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    url: HttpUrl
    published_at: Timestamp | None = None


class SourceOut(BaseModel):
    title: str
    url: str
    published_at: datetime | None = None


class _ImpactFields(InputModel):
    origin_country: CountryCode | None = None
    affected_sectors: list[Sector] = Field(default_factory=list, max_length=8)
    estimated_shortfall_tonnes_per_month: float | None = Field(default=None, ge=0)
    supply_share_affected_pct: float | None = Field(default=None, ge=0, le=100)
    days_of_cover: DaysOfCover = Field(default_factory=dict)
    price_change_pct: float | None = None
    effective_at: Timestamp | None = None
    expected_duration_days: NonNegativeInt32 | None = None
    sources: list[Source] = Field(default_factory=list, max_length=50)


class IncidentCreate(_ImpactFields):
    title: Title
    summary: Summary = ""
    minerals: MineralCodes
    category: Category
    tlp: Tlp = "AMBER"
    severity: Severity | None = Field(default=None, description="Proposed; confirmed at triage")
    status: Literal["watch", "reported"] = "reported"


# Fields that may not be cleared with null.
REQUIRED_FIELDS = frozenset({"title", "summary", "minerals", "category", "tlp"})


class IncidentUpdate(InputModel):
    """Fields to change; omitted fields are left as they are, null clears optional ones."""

    not_nullable = REQUIRED_FIELDS

    title: Title | None = None
    summary: Summary | None = None
    minerals: MineralCodes | None = None
    category: Category | None = None
    tlp: Tlp | None = None
    severity: Severity | None = None
    origin_country: CountryCode | None = None
    affected_sectors: list[Sector] | None = None
    estimated_shortfall_tonnes_per_month: float | None = Field(default=None, ge=0)
    supply_share_affected_pct: float | None = Field(default=None, ge=0, le=100)
    days_of_cover: DaysOfCover | None = None
    price_change_pct: float | None = None
    effective_at: Timestamp | None = None
    expected_duration_days: NonNegativeInt32 | None = None
    sources: list[Source] | None = Field(default=None, max_length=50)


# Fields that only those who triage (leads, owners, admins) may change.
TRIAGE_FIELDS = frozenset({"severity", "tlp"})


class TransitionRequest(InputModel):
    to: Status
    reason: Annotated[str, StringConstraints(max_length=5000)] | None = None
    resolution_summary: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    duplicate_of: str | None = Field(default=None, description="Id or key of another incident")


class OwnerAssignment(InputModel):
    user_id: uuid.UUID


class ParticipantAdd(InputModel):
    user_id: uuid.UUID


class CommentCreate(InputModel):
    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]


class SignoffCreate(InputModel):
    note: Annotated[str, StringConstraints(max_length=5000)] | None = None


class UserRef(BaseModel):
    id: uuid.UUID
    display_name: str
    email: str
    ministry: str


class Owners(BaseModel):
    DOE: UserRef | None = None
    METI: UserRef | None = None


class SignoffOut(BaseModel):
    ministry: str
    user: UserRef
    at: datetime
    note: str | None


class IncidentRef(BaseModel):
    id: uuid.UUID
    key: str
    title: str
    status: Status


class IncidentOut(BaseModel):
    id: uuid.UUID
    key: str
    title: str
    summary: str
    minerals: list[str]
    category: Category
    origin_country: str | None
    affected_sectors: list[Sector]
    estimated_shortfall_tonnes_per_month: float | None
    supply_share_affected_pct: float | None
    days_of_cover: dict[str, int]
    price_change_pct: float | None
    effective_at: datetime | None
    expected_duration_days: int | None
    sources: list[SourceOut]
    tlp: Tlp
    severity: Severity | None
    status: Status
    reporter: UserRef
    owners: Owners
    participants: list[UserRef]
    signoffs: list[SignoffOut] = Field(description="Sign-offs of the current resolution")
    resolution_summary: str | None
    rejection_reason: str | None
    duplicate_of: uuid.UUID | None
    reported_at: datetime
    triaged_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
    priority_score: float = Field(
        description="0-100, from the inputs in priority_breakdown (0 until first computed)"
    )
    priority_breakdown: PriorityBreakdown | None = Field(
        description="Each component of the score: its input, normalised value, weight and "
        "contribution (null until first computed)"
    )


class IncidentCreated(IncidentOut):
    possible_duplicates: list[IncidentRef] = Field(
        description="Open incidents on an overlapping mineral and the same category "
        "reported in the last 14 days (a hint, never a block)"
    )


class ActorOut(BaseModel):
    kind: Literal["user", "token", "system"]
    user: UserRef | None = None
    token_id: uuid.UUID | None = None


class TimelineEventOut(BaseModel):
    id: uuid.UUID
    incident_id: uuid.UUID
    seq: int
    at: datetime
    actor: ActorOut
    type: str
    data: dict[str, object]
    prev_hash: str
    hash: str


def user_ref(user: User) -> UserRef:
    return UserRef(
        id=user.id, display_name=user.display_name, email=user.email, ministry=user.ministry.code
    )
