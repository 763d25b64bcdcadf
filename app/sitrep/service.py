"""The situation report's facts, gathered within the reader's visibility.

Every incident-derived fact (counts, lists, status changes, escalations, overdue actions,
the incidents attached to vulnerabilities) is read through ``visible_to(reader)``, so a
report never mentions what its reader may not see. ``at`` ends the 24-hour window and is
the overdue cut-off; incidents are those reported by then, in their current state.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.actions.models import Action, is_open
from app.auth.models import User
from app.escalation.models import Escalation
from app.incidents.models import Incident, IncidentMineral
from app.incidents.states import OPEN_STATUSES
from app.incidents.visibility import visible_to
from app.incidents.vocabulary import SEVERITIES, TLP_MARKINGS
from app.kit.sql import constants
from app.ministries.models import Ministry
from app.sitrep.schemas import (
    Language,
    SeverityCount,
    Sitrep,
    SitrepEscalation,
    SitrepIncident,
    SitrepMinistryOverdue,
    SitrepOverdueAction,
    SitrepReader,
    SitrepStatusChange,
)
from app.timeline.models import TimelineEvent
from app.vulnerabilities.service import ranking

WINDOW = timedelta(hours=24)
OPEN_LISTED = 50  # open incidents listed (all are counted)
OVERDUE_LISTED = 20  # overdue actions listed per ministry (all are counted)
TOP_VULNERABILITIES = 5
OVERDUE_ORDER = ("DOE", "METI", "JOINT")
STATUS_CHANGED = "incident.status_changed"
# Unset severity sorts after SEV4 (as on the incident list).
_SEVERITY_ORDER = func.coalesce(Incident.severity, "SEV9")


def co_lead_reader() -> User:
    """The co-lead view: what every user of a co-lead ministry sees whoever they are
    (CLEAR, GREEN and AMBER incidents; never AMBER+STRICT or RED, which depend on who is
    asking). A transient user, never stored."""
    return User(
        id=uuid.UUID(int=0),
        display_name="",
        ministry_id=None,
        ministry=Ministry(code="", kind="co_lead"),
        role="viewer",
        active=True,
    )


async def _minerals(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    out: dict[uuid.UUID, list[str]] = defaultdict(list)
    if ids:
        for incident_id, code in await session.execute(
            select(IncidentMineral.incident_id, IncidentMineral.mineral_code)
            .where(IncidentMineral.incident_id.in_(ids))
            .order_by(IncidentMineral.mineral_code)
        ):
            out[incident_id].append(code)
    return out


def _brief(incident: Incident, minerals: dict[uuid.UUID, list[str]]) -> SitrepIncident:
    return SitrepIncident(
        key=incident.key,
        title=incident.title,
        status=incident.status,
        severity=incident.severity,
        priority_score=incident.priority_score,
        tlp=incident.tlp,
        minerals=minerals[incident.id],
        reported_at=incident.reported_at,
    )


async def build(
    session: AsyncSession, reader: User, at: datetime, lang: Language, *, co_lead_view: bool
) -> Sitrep:
    start = at - WINDOW
    seen = visible_to(reader)
    open_query = select(Incident).where(
        seen, Incident.status.in_(constants(OPEN_STATUSES)), Incident.reported_at <= at
    )
    open_rows = (
        await session.scalars(
            open_query.order_by(
                _SEVERITY_ORDER, Incident.priority_score.desc(), Incident.number
            ).limit(OPEN_LISTED)
        )
    ).all()
    new_rows = (
        await session.scalars(
            select(Incident)
            .where(seen, Incident.reported_at > start, Incident.reported_at <= at)
            .order_by(Incident.reported_at, Incident.number)
        )
    ).all()
    open_counts = {
        severity: int(n)
        for severity, n in await session.execute(
            select(Incident.severity, func.count())
            .where(seen, Incident.status.in_(constants(OPEN_STATUSES)), Incident.reported_at <= at)
            .group_by(Incident.severity)
        )
    }
    new_counts: dict[str | None, int] = defaultdict(int)
    for incident in new_rows:
        new_counts[incident.severity] += 1
    minerals = await _minerals(session, [i.id for i in (*open_rows, *new_rows)])

    changes = await session.execute(
        select(TimelineEvent.at, TimelineEvent.data, Incident.key, Incident.title, Incident.tlp)
        .join(Incident, Incident.id == TimelineEvent.incident_id)
        .where(
            seen,
            TimelineEvent.type == STATUS_CHANGED,
            TimelineEvent.at > start,
            TimelineEvent.at <= at,
        )
        .order_by(TimelineEvent.at, Incident.number, TimelineEvent.seq)
    )
    escalations = await session.execute(
        select(
            Escalation.at,
            Escalation.item_type,
            Escalation.level,
            Incident.key,
            Incident.title,
            Incident.tlp,
            Action.title,
        )
        .join(Incident, Incident.id == Escalation.incident_id)
        .outerjoin(Action, (Action.id == Escalation.item_id) & (Escalation.item_type == "action"))
        .where(seen, Escalation.at > start, Escalation.at <= at)
        # Items escalated in one sweep share a time: their titles, then ids, keep the order stable.
        .order_by(
            Escalation.at,
            Incident.number,
            Escalation.level,
            Escalation.item_type,
            Action.title,
            Escalation.item_id,
        )
    )
    overdue = await session.execute(
        select(Action, Incident.key, Incident.tlp)
        .join(Incident, Incident.id == Action.incident_id)
        .where(seen, is_open(), Action.due_at < at)
        .order_by(Action.due_at, Incident.number, Action.id)
    )
    by_ministry: dict[str, list[SitrepOverdueAction]] = defaultdict(list)
    for action, key, tlp in overdue:
        assert action.due_at is not None
        by_ministry[action.owning_ministry].append(
            SitrepOverdueAction(
                key=key,
                tlp=tlp,
                title=action.title,
                status=action.status,
                due_at=action.due_at,
                overdue_hours=round((at - action.due_at).total_seconds() / 3600, 1),
                escalation_level=action.escalation_level,
            )
        )
    vulnerabilities = await ranking(session, reader, limit=TOP_VULNERABILITIES)
    status_changes = [
        SitrepStatusChange(
            at=when,
            key=key,
            title=title,
            tlp=tlp,
            from_status=data["from"],
            to_status=data["to"],
        )
        for when, data, key, title, tlp in changes
    ]
    escalated = [
        SitrepEscalation(
            at=when,
            key=key,
            title=title,
            tlp=tlp,
            kind=kind,
            level=level,
            action_title=action_title,
        )
        for when, kind, level, key, title, tlp, action_title in escalations
    ]
    mentioned = [
        *(i.tlp for i in (*open_rows, *new_rows)),
        *(c.tlp for c in status_changes),
        *(e.tlp for e in escalated),
        *(a.tlp for group in by_ministry.values() for a in group[:OVERDUE_LISTED]),
        *(i.tlp for v in vulnerabilities.items for i in v.open_incidents),
    ]
    return Sitrep(
        lang=lang,
        tlp=max(mentioned, key=TLP_MARKINGS.index, default="CLEAR"),
        at=at,
        window_start=start,
        reader=SitrepReader(
            display_name=None if co_lead_view else reader.display_name,
            ministry=None if co_lead_view else reader.ministry.code,
            view="co_lead" if co_lead_view else "user",
        ),
        by_severity=[
            SeverityCount(severity=s, open=open_counts.get(s, 0), new=new_counts.get(s, 0))
            for s in (*SEVERITIES, None)
        ],
        new_incidents=[_brief(i, minerals) for i in new_rows],
        open_incidents=[_brief(i, minerals) for i in open_rows],
        open_incident_count=sum(open_counts.values()),
        status_changes=status_changes,
        escalations=escalated,
        overdue_actions=[
            SitrepMinistryOverdue(
                ministry=m, count=len(by_ministry[m]), actions=by_ministry[m][:OVERDUE_LISTED]
            )
            for m in OVERDUE_ORDER
        ],
        top_vulnerabilities=vulnerabilities.items,
    )
