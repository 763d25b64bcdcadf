from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.incidents.vocabulary import Severity, Status, Tlp
from app.vulnerabilities.schemas import VulnerabilityOut

Language = Literal["en", "ja"]


class SitrepReader(BaseModel):
    display_name: str | None = Field(description="Null for the co-lead view (no one person)")
    ministry: str | None
    view: Literal["user", "co_lead"]


class SitrepIncident(BaseModel):
    key: str
    title: str
    status: Status
    severity: Severity | None
    priority_score: float
    tlp: Tlp
    minerals: list[str]
    reported_at: datetime


class SeverityCount(BaseModel):
    severity: Severity | None
    open: int
    new: int


class SitrepStatusChange(BaseModel):
    at: datetime
    key: str
    title: str
    tlp: Tlp
    from_status: Status
    to_status: Status


class SitrepEscalation(BaseModel):
    at: datetime
    key: str
    title: str
    tlp: Tlp
    kind: Literal["action", "triage", "stale"]
    level: int
    action_title: str | None


class SitrepOverdueAction(BaseModel):
    key: str
    title: str
    tlp: Tlp
    status: str
    due_at: datetime
    overdue_hours: float
    escalation_level: int


class SitrepMinistryOverdue(BaseModel):
    ministry: str
    count: int
    actions: list[SitrepOverdueAction]


class Sitrep(BaseModel):
    lang: Language
    tlp: Tlp = Field(description="The report's own marking: the highest of what it mentions")
    at: datetime
    window_start: datetime
    reader: SitrepReader
    by_severity: list[SeverityCount]
    new_incidents: list[SitrepIncident]
    open_incidents: list[SitrepIncident] = Field(
        description="By severity (SEV1 first), then priority (highest first)"
    )
    open_incident_count: int
    status_changes: list[SitrepStatusChange]
    escalations: list[SitrepEscalation]
    overdue_actions: list[SitrepMinistryOverdue]
    top_vulnerabilities: list[VulnerabilityOut]
