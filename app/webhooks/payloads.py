"""What each webhook event carries: one Pydantic model per event type, built from the outbox
row (the emitter's payload plus the incident snapshot) and redacted per subscription. The
same models are published under OpenAPI 3.1 ``webhooks``.

Fields an emitter stores but no model declares are not sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.incidents.vocabulary import TLP_MARKINGS, Severity, Status, Tlp
from app.webhooks.vocabulary import EVENT_TYPES, DisabledReason


class Data(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class IncidentRef(BaseModel):
    """The incident as it was when the event happened."""

    id: uuid.UUID
    key: str
    title: str | None = None
    status: Status | None = None
    severity: Severity | None = None
    tlp: Tlp | None = None


class RedactedIncident(BaseModel):
    id: uuid.UUID
    key: str
    status: Status | None = None
    severity: Severity | None = None


class Redacted(BaseModel):
    """An event about an incident marked above the subscription's ``max_tlp`` (or above
    what its ministry may see, SPEC §6): only the incident's id, key, status and severity."""

    redacted: Literal[True] = True
    incident: RedactedIncident


class IncidentEvent(Data):
    incident: IncidentRef


class IncidentReported(IncidentEvent):
    category: str | None = None
    minerals: list[str] = Field(default_factory=list)
    summary: str | None = None
    origin_country: str | None = None
    affected_sectors: list[str] = Field(default_factory=list)


class IncidentUpdated(IncidentEvent):
    before: dict[str, Any] = Field(description="The changed fields, before")
    after: dict[str, Any] = Field(description="The changed fields, after")


class IncidentStatusChanged(IncidentEvent):
    from_: Status = Field(alias="from", serialization_alias="from")
    to: Status
    reason: str | None = None
    resolution_summary: str | None = None
    duplicate_of: str | None = Field(default=None, description="The key of the original")
    reopened: bool = False


class IncidentOwnerAssigned(IncidentEvent):
    ministry: str
    before: uuid.UUID | None = Field(default=None, description="The previous owner's user id")
    after: uuid.UUID = Field(description="The new owner's user id")


class IncidentSignedOff(IncidentEvent):
    ministry: str
    resolution_round: int
    note: str | None = None


class IncidentEscalated(IncidentEvent):
    reason: Literal["triage_overdue", "stale_update"]
    level: int | None = Field(default=None, description="Triage ladder level (triage_overdue)")
    reminder: int | None = Field(default=None, description="Reminder number (stale_update)")
    reported_at: datetime | None = None
    silent_since: datetime | None = None


class ActionCreated(IncidentEvent):
    action_id: uuid.UUID
    title: str | None = None
    kind: str | None = None
    owning_ministry: str | None = None
    priority: str | None = None
    due_at: datetime | None = None
    assignee_id: uuid.UUID | None = None


class ActionStatusChanged(IncidentEvent):
    action_id: uuid.UUID
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    note: str | None = None


class ActionEscalated(IncidentEvent):
    action_id: uuid.UUID
    level: int
    due_at: datetime
    owning_ministry: str


class CommentCreated(IncidentEvent):
    body: str


class WebhookTest(Data):
    subscription_id: uuid.UUID
    message: str


class EndpointDisabled(Data):
    subscription_id: uuid.UUID
    url: str
    reason: DisabledReason
    disabled_at: datetime
    failing_since: datetime | None = None


PAYLOADS: dict[str, type[Data]] = {
    "incident.reported": IncidentReported,
    "incident.updated": IncidentUpdated,
    "incident.status_changed": IncidentStatusChanged,
    "incident.owner_assigned": IncidentOwnerAssigned,
    "incident.signed_off": IncidentSignedOff,
    "incident.escalated": IncidentEscalated,
    "action.created": ActionCreated,
    "action.status_changed": ActionStatusChanged,
    "action.escalated": ActionEscalated,
    "comment.created": CommentCreated,
    "webhook.test": WebhookTest,
    "webhook.endpoint_disabled": EndpointDisabled,
}
assert tuple(PAYLOADS) == EVENT_TYPES


def _envelope(event_type: str, data: type[Data]) -> type[BaseModel]:
    name = "".join(part.title() for part in event_type.replace(".", "_").split("_")) + "Event"
    data_type: Any = data | Redacted if issubclass(data, IncidentEvent) else data
    model: type[BaseModel] = create_model(
        name,
        __doc__=f"The body of a `{event_type}` webhook.",
        type=(Literal[event_type], ...),  # type: ignore[arg-type]
        timestamp=(datetime, Field(description="When the event happened (UTC)")),
        data=(data_type, ...),
    )
    return model


# The request body of each event type, as published under OpenAPI `webhooks`.
ENVELOPES: dict[str, type[BaseModel]] = {t: _envelope(t, m) for t, m in PAYLOADS.items()}


@dataclass(frozen=True)
class Snapshot:
    """The incident an outbox event is about, as stored with the event."""

    incident_id: uuid.UUID
    key: str
    title: str | None
    status: str | None
    severity: str | None
    tlp: str
    reporter_ministry_id: uuid.UUID | None


def shown_in_full(
    snapshot: Snapshot, *, max_tlp: str, ministry_id: uuid.UUID, co_lead: bool
) -> bool:
    """Whether a subscription gets the full payload: the marking is at most its ``max_tlp``
    and its ministry may see such incidents (SPEC §6: AMBER the co-leads, AMBER+STRICT the
    reporter's ministry, RED named people only, never an organisation)."""
    if TLP_MARKINGS.index(snapshot.tlp) > TLP_MARKINGS.index(max_tlp):
        return False
    if snapshot.tlp in ("CLEAR", "GREEN"):
        return True
    if snapshot.tlp == "AMBER":
        return co_lead
    if snapshot.tlp == "AMBER+STRICT":
        return snapshot.reporter_ministry_id == ministry_id
    return False


def check_payload(event_type: str, payload: dict[str, Any], has_incident: bool) -> None:
    """Refuse, at emit time, a payload its event type's model would not accept."""
    model = PAYLOADS[event_type]
    if issubclass(model, IncidentEvent) != has_incident:
        raise ValueError(
            f"{event_type} events {'need' if not has_incident else 'take no'} incident"
        )
    ref = {"incident": {"id": uuid.UUID(int=0), "key": "RRG-0000"}} if has_incident else {}
    model.model_validate({**payload, **ref})


def build_data(
    event_type: str, payload: dict[str, Any], snapshot: Snapshot | None, *, full: bool
) -> dict[str, Any]:
    """The ``data`` of a webhook body, redacted unless ``full``."""
    if snapshot is not None and not full:
        redacted = RedactedIncident(
            id=snapshot.incident_id,
            key=snapshot.key,
            status=snapshot.status,
            severity=snapshot.severity,
        )
        return Redacted(incident=redacted).model_dump(mode="json")
    values = dict(payload)
    if snapshot is not None:
        values["incident"] = {
            "id": snapshot.incident_id,
            "key": snapshot.key,
            "title": snapshot.title,
            "status": snapshot.status,
            "severity": snapshot.severity,
            "tlp": snapshot.tlp,
        }
    return PAYLOADS[event_type].model_validate(values).model_dump(mode="json", by_alias=True)
