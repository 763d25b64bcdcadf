from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, WithJsonSchema

from app.deps import AdminUser, CurrentUser, Session
from app.escalation import policies
from app.escalation.models import EscalationPolicy
from app.escalation.policies import LONGEST, MINUTE, Policy
from app.kit.pagination import Cursor, Limit
from app.schemas import InputModel, Page

router = APIRouter(prefix="/api/v1/escalation-policies", tags=["escalation"])

Severity = Literal["SEV1", "SEV2", "SEV3", "SEV4"]
_MIN, _MAX = int(MINUTE.total_seconds()), int(LONGEST.total_seconds())
# The rules themselves live in app.escalation.policies.violations; this documents them.
PolicyDuration = Annotated[
    timedelta,
    WithJsonSchema(
        {
            "description": (
                "A whole number of minutes, from one minute to one year: an ISO 8601 "
                "duration (PT1M … P365D; P1Y counts as 365 days) or a number of seconds "
                f"(a multiple of 60, {_MIN} … {_MAX})."
            ),
            "anyOf": [
                {"type": "string", "format": "duration", "examples": ["PT4H", "P5D"]},
                {"type": "integer", "minimum": _MIN, "maximum": _MAX, "multipleOf": _MIN},
            ],
        }
    ),
]


class PolicyOut(BaseModel):
    severity: Severity
    triage_within: timedelta
    level2_after: timedelta
    level3_after: timedelta
    update_every: timedelta
    updated_at: datetime | None


class PolicyIn(InputModel):
    """SPEC §4's durations for one severity. Each is whole minutes, one minute to one year;
    ``level3_after`` must be longer than ``level2_after``. A value breaking a rule is 422
    naming its field, and nothing changes."""

    triage_within: PolicyDuration
    level2_after: PolicyDuration
    level3_after: PolicyDuration
    update_every: PolicyDuration


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
async def list_escalation_policies(
    session: Session, _: CurrentUser, limit: Limit = 50, cursor: Cursor = None
) -> Page[PolicyOut]:
    rows, next_cursor = await policies.list_rows(session, limit=limit, cursor=cursor)
    return Page(items=[_out(r) for r in rows], next_cursor=next_cursor)


@router.put("/{severity}")
async def update_escalation_policy(
    severity: Severity, data: PolicyIn, session: Session, principal: AdminUser
) -> PolicyOut:
    """Change one severity's SLA durations (admins of DOE and METI; every change is
    recorded)."""
    row = await policies.update(session, principal, severity, Policy(severity, **data.model_dump()))
    return _out(row)
