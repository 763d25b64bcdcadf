"""API shapes for subscriptions and the delivery log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from app.incidents.vocabulary import Severity, Tlp
from app.kit.types import Timestamp, timestamp_schema
from app.schemas import InputModel
from app.webhooks.vocabulary import (
    AttemptOutcome,
    DeliveryStatus,
    DisabledReason,
    EventType,
)

Url = Annotated[
    str, Field(min_length=1, max_length=2048, examples=["https://hooks.example.gov/rrg"])
]


def _unique(types: list[EventType]) -> list[EventType]:
    return list(dict.fromkeys(types))


EventTypes = Annotated[
    list[EventType],
    AfterValidator(_unique),
    Field(description="The event types to receive; empty means all", max_length=32),
]


class SubscriptionCreate(InputModel):
    ministry: str | None = Field(
        default=None, description="The ministry's code (default: your own)", max_length=16
    )
    url: Url
    event_types: EventTypes = Field(default_factory=list)
    min_severity: Severity | None = Field(
        default=None,
        description="Only incidents at least this severe (SEV1 is the most severe); "
        "an incident without a severity counts as SEV3",
    )
    max_tlp: Tlp = Field(
        default="GREEN", description="Events about incidents marked above this are redacted"
    )
    description: str = Field(default="", max_length=1000)
    active: bool = True


class SubscriptionUpdate(InputModel):
    # min_severity may be cleared (null: every severity); the rest may not.
    not_nullable = frozenset({"url", "event_types", "max_tlp", "description", "active"})

    url: Url | None = None
    event_types: EventTypes | None = None
    min_severity: Severity | None = None
    max_tlp: Tlp | None = None
    description: str | None = Field(default=None, max_length=1000)
    active: bool | None = Field(
        default=None,
        description="false pauses the subscription (its pending deliveries fail; `recover` "
        "re-queues them); true re-enables a disabled one",
    )


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    ministry: str
    url: str
    event_types: list[EventType]
    min_severity: Severity | None
    max_tlp: Tlp
    description: str
    active: bool
    disabled_reason: DisabledReason | None = Field(
        description="Why the service disabled it: `gone` (the endpoint answered 410) or "
        "`failing` (every delivery failed for 5 days)"
    )
    disabled_at: datetime | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then deliveries are also signed with the previous secret"
    )
    created_at: datetime
    updated_at: datetime
    version: int


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="The signing secret (`whsec_...`), shown only this once")


class SecretRotated(BaseModel):
    secret: str = Field(description="The new signing secret, shown only this once")
    previous_secret_expires_at: datetime


class RecoverRequest(InputModel):
    since: Annotated[
        Timestamp, WithJsonSchema(timestamp_schema("Re-queue failed deliveries created since"))
    ]


class RecoverResult(BaseModel):
    requeued: int


class AttemptOut(BaseModel):
    number: int
    at: datetime
    outcome: AttemptOutcome
    status_code: int | None
    latency_ms: float | None
    error: str | None
    response_excerpt: str | None = Field(description="The first 4 KiB of the response body")


class DeliveryOut(BaseModel):
    id: uuid.UUID
    webhook_id: str = Field(description="The `webhook-id` header of every attempt")
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: EventType
    incident_id: uuid.UUID | None
    status: DeliveryStatus
    created_at: datetime
    next_attempt_at: datetime | None
    attempt_count: int
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    finished_at: datetime | None


class DeliveryDetail(DeliveryOut):
    attempts: list[AttemptOut]
