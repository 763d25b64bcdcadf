"""Escalation policies: one per severity, admin-editable, every change recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth.permissions import manages_escalation_policies, require
from app.auth.service import Principal
from app.errors import InvalidInput, NotFound
from app.escalation.models import EscalationPolicy, EscalationPolicyChange
from app.kit.pagination import Key, Order, paginate

# Incidents without a severity yet are held to the SEV3 ("normal") policy.
FALLBACK_SEVERITY = "SEV3"
FIELDS = ("triage_within", "level2_after", "level3_after", "update_every")


@dataclass(frozen=True)
class Policy:
    severity: str
    triage_within: timedelta
    level2_after: timedelta
    level3_after: timedelta
    update_every: timedelta

    @classmethod
    def of(cls, row: EscalationPolicy) -> Policy:
        return cls(
            row.severity,
            timedelta(seconds=row.triage_within_seconds),
            timedelta(seconds=row.level2_after_seconds),
            timedelta(seconds=row.level3_after_seconds),
            timedelta(seconds=row.update_every_seconds),
        )

    def as_dict(self) -> dict[str, int]:
        return {f: int(getattr(self, f).total_seconds()) for f in FIELDS}


async def load(session: AsyncSession) -> dict[str, Policy]:
    rows = (await session.scalars(select(EscalationPolicy))).all()
    return {row.severity: Policy.of(row) for row in rows}


POLICIES_ORDER = Order("escalation-policies", Key(EscalationPolicy.severity, "str"))


async def list_rows(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[EscalationPolicy], str | None]:
    return await paginate(
        session, select(EscalationPolicy), POLICIES_ORDER, limit=limit, cursor=cursor
    )


def validate(new: Policy) -> None:
    for name in FIELDS:
        if getattr(new, name) <= timedelta(0):
            raise InvalidInput(name, "must be a positive duration")
    if new.level3_after <= new.level2_after:
        raise InvalidInput("level3_after", "must be later than level2_after")


async def update(
    session: AsyncSession, principal: Principal, severity: str, new: Policy
) -> EscalationPolicy:
    require(
        manages_escalation_policies(principal.user),
        "Only admins of DOE and METI change escalation policies",
    )
    row = await session.get(EscalationPolicy, severity, with_for_update=True)
    if row is None:
        raise NotFound(f"No policy for {severity}")
    validate(new)
    before = Policy.of(row).as_dict()
    after = new.as_dict()
    row.triage_within_seconds = after["triage_within"]
    row.level2_after_seconds = after["level2_after"]
    row.level3_after_seconds = after["level3_after"]
    row.update_every_seconds = after["update_every"]
    now = clock.now()
    row.updated_at, row.updated_by_id = now, principal.user.id
    session.add(
        EscalationPolicyChange(
            severity=severity, changed_by_id=principal.user.id, at=now, before=before, after=after
        )
    )
    await session.flush()
    return row


async def changes(session: AsyncSession, severity: str) -> Sequence[EscalationPolicyChange]:
    return (
        await session.scalars(
            select(EscalationPolicyChange)
            .where(EscalationPolicyChange.severity == severity)
            .order_by(EscalationPolicyChange.at)
        )
    ).all()
