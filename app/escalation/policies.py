"""Escalation policies: one per severity, admin-editable, every change recorded.

The rules a policy must keep (``violations``) are checked when an admin changes one and
again when the sweep loads them, since the table can be written by other means: a stored
policy that breaks them is reported and the sweep holds that severity to SPEC §4's
defaults instead, so no policy value can stop or loop escalation.
"""

from __future__ import annotations

import logging
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
from app.incidents.vocabulary import SEVERITIES
from app.kit.pagination import Key, Order, paginate

logger = logging.getLogger("rrg.escalation")

# Incidents without a severity yet are held to the SEV3 ("normal") policy.
FALLBACK_SEVERITY = "SEV3"
FIELDS = ("triage_within", "level2_after", "level3_after", "update_every")
MINUTE = timedelta(minutes=1)
LONGEST = timedelta(days=365)  # one year (ISO 8601 P1Y reads as 365 days)


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
        """The values as stored: whole seconds."""
        return {f: int(getattr(self, f).total_seconds()) for f in FIELDS}


def _spec(severity: str, *hours: int) -> Policy:
    return Policy(severity, *(timedelta(hours=h) for h in hours))


# SPEC §4 (the migration seeds these): what a severity is held to while its stored policy
# breaks the rules.
SPEC_DEFAULTS = {
    p.severity: p
    for p in (
        _spec("SEV1", 1, 2, 6, 12),
        _spec("SEV2", 4, 8, 24, 24),
        _spec("SEV3", 24, 48, 5 * 24, 3 * 24),
        _spec("SEV4", 72, 5 * 24, 10 * 24, 7 * 24),
    )
}


def violations(policy: Policy) -> list[tuple[str, str]]:
    """Every rule the policy breaks, as (field, reason): durations are whole minutes from
    one minute to one year, and level 3 comes after level 2 (on the values as stored)."""
    problems: list[tuple[str, str]] = []
    for name in FIELDS:
        value: timedelta = getattr(policy, name)
        if value % MINUTE:
            problems.append((name, "must be a whole number of minutes"))
        elif not MINUTE <= value <= LONGEST:
            problems.append((name, "must be at least one minute and at most one year"))
    if not problems:
        stored = policy.as_dict()
        if stored["level3_after"] <= stored["level2_after"]:
            problems.append(("level3_after", "must be longer than level2_after"))
    return problems


@dataclass(frozen=True)
class Loaded:
    """The policies the sweep holds each severity to, and the stored ones it could not use."""

    policies: dict[str, Policy]
    unusable: dict[str, str]  # severity -> why its stored policy was not used


async def load(session: AsyncSession) -> Loaded:
    """Every severity's policy as stored, or SPEC §4's default where the stored one is
    missing, unreadable or breaks the rules (each such severity logged and reported)."""
    rows = (await session.scalars(select(EscalationPolicy))).all()
    stored = {row.severity: row for row in rows}
    policies: dict[str, Policy] = {}
    unusable: dict[str, str] = {}
    for severity in SEVERITIES:
        row = stored.get(severity)
        problem = "no stored policy"
        if row is not None:
            try:
                policy = Policy.of(row)
                problem = "; ".join(f"{f}: {r}" for f, r in violations(policy))
            except (TypeError, ValueError, OverflowError) as exc:  # what no API could store
                problem = f"unreadable values ({exc})"
        if problem:
            unusable[severity] = problem
            policies[severity] = SPEC_DEFAULTS[severity]
            logger.error(
                "escalation policy %s is unusable (%s); SPEC defaults apply", severity, problem
            )
        else:
            policies[severity] = policy
    return Loaded(policies, unusable)


POLICIES_ORDER = Order("escalation-policies", Key(EscalationPolicy.severity, "str"))


async def list_rows(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[EscalationPolicy], str | None]:
    return await paginate(
        session, select(EscalationPolicy), POLICIES_ORDER, limit=limit, cursor=cursor
    )


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
    problems = violations(new)
    if problems:
        raise InvalidInput.all_of(problems)
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
