from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.deps import AdminUser, CurrentUser, Session
from app.escalation import policies
from app.escalation.models import EscalationPolicy
from app.escalation.policies import Policy
from app.schemas import InputModel, Page

router = APIRouter(prefix="/api/v1/escalation-policies", tags=["escalation"])

Severity = Literal["SEV1", "SEV2", "SEV3", "SEV4"]
DURATION = "ISO 8601 duration (e.g. PT4H, P5D) or seconds; one minute to one year (365 days)"
# Bounds that keep every stored duration expressible and the sweep's arithmetic sane.
Duration = Annotated[
    timedelta,
    Field(description=DURATION, ge=timedelta(minutes=1), le=timedelta(days=365)),
]


class PolicyOut(BaseModel):
    severity: Severity
    triage_within: timedelta
    level2_after: timedelta
    level3_after: timedelta
    update_every: timedelta
    updated_at: datetime | None


class PolicyIn(InputModel):
    triage_within: Duration
    level2_after: Duration
    level3_after: Duration
    update_every: Duration


def _out(row: EscalationPolicy) -> PolicyOut:
    p = Policy.of(row)
    return PolicyOut(
        severity=row.severity,
        triage_within=p.triage_within,
        level2_after=p.level2_after,
        level3_after=p.level3_after,
        update_every=p.update_every,
        updated_at=row.updated_at,
    )


@router.get("")
async def list_escalation_policies(session: Session, _: CurrentUser) -> Page[PolicyOut]:
    return Page(items=[_out(r) for r in await policies.list_rows(session)], next_cursor=None)


@router.put("/{severity}")
async def update_escalation_policy(
    severity: Severity, data: PolicyIn, session: Session, principal: AdminUser
) -> PolicyOut:
    """Change one severity's SLA durations (admins; every change is recorded)."""
    row = await policies.update(session, principal, severity, Policy(severity, **data.model_dump()))
    return _out(row)
