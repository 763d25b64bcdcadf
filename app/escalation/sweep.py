"""The escalation sweep (SPEC §4): one pass that escalates whatever is overdue.

Exactly once, by construction:
- candidates are claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (several sweepers
  share the work instead of repeating it; SQLite's writer lock serialises sweeps);
- each level change is a conditional update from the level that was read, and only the
  rows it returns are escalated;
- the ledger's unique (item, round, level) constraint refuses any second escalation;
- level change, ledger row, timeline events, notifications and outbox events of a batch
  commit in one transaction, or none of them do.
Candidate queries touch only items already past their next threshold (partial indexes),
so a sweep's cost grows with the overdue work, not with the tables.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Column, and_, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.actions.models import Action, is_open
from app.actions.vocabulary import ministries_of
from app.auth.models import User
from app.db import Database, table_of
from app.escalation import policies as policy_store
from app.escalation.models import Escalation
from app.escalation.policies import FALLBACK_SEVERITY, Policy
from app.events import Event, emit_many
from app.incidents.models import Incident
from app.incidents.visibility import visible_pairs
from app.ministries.models import CO_LEAD_CODES, Ministry
from app.notifications.models import Notification
from app.schemas import json_safe
from app.timeline.service import SYSTEM

logger = logging.getLogger("rrg.escalation")

BATCH_SIZE = 500
TOP_ACTION_LEVEL = 3
TOP_TRIAGE_LEVEL = 2


@dataclass(frozen=True)
class EscalationRecord:
    """One (item, level) escalated (or, in a dry run, that would be)."""

    item_type: str  # action | triage | stale
    item_id: uuid.UUID
    incident_id: uuid.UUID
    incident_key: str
    title: str
    level: int
    recipients: tuple[str, ...]  # e-mail addresses, after the visibility filter

    def describe(self) -> str:
        who = ", ".join(self.recipients) or "nobody who may see it"
        return f"{self.incident_key} {self.item_type} {self.title!r} level {self.level} -> {who}"


@dataclass
class SweepReport:
    at: datetime
    dry_run: bool
    escalations: list[EscalationRecord] = field(default_factory=list)


@dataclass(frozen=True)
class Directory:
    """The people escalations go to, loaded once per sweep."""

    policies: dict[str, Policy]
    leads: dict[str, tuple[uuid.UUID, ...]]  # ministry code -> active leads
    co_chairs: tuple[uuid.UUID, ...]

    def policy(self, severity: str | None) -> Policy:
        return self.policies[severity or FALLBACK_SEVERITY]

    def leads_of(self, ministries: Sequence[str]) -> tuple[uuid.UUID, ...]:
        return tuple(uid for code in ministries for uid in self.leads.get(code, ()))


@dataclass(frozen=True)
class Pending:
    """An escalation decided for a claimed item, before recipients are filtered."""

    item_type: str
    item_id: uuid.UUID
    round: int
    level: int
    incident_id: uuid.UUID
    incident_key: str
    title: str
    candidates: tuple[uuid.UUID | None, ...]
    event_type: str
    data: dict[str, Any]


async def load_directory(session: AsyncSession) -> Directory:
    leads: dict[str, list[uuid.UUID]] = defaultdict(list)
    rows = await session.execute(
        select(User.id, Ministry.code)
        .join(Ministry, Ministry.id == User.ministry_id)
        .where(User.active, User.role == "lead", Ministry.code.in_(CO_LEAD_CODES))
        .order_by(User.email)
    )
    for user_id, code in rows:
        leads[code].append(user_id)
    co_chairs = (
        await session.scalars(
            select(User.id).where(User.active, User.co_chair).order_by(User.email)
        )
    ).all()
    return Directory(
        policies=await policy_store.load(session),
        leads={code: tuple(ids) for code, ids in leads.items()},
        co_chairs=tuple(co_chairs),
    )


def _severity() -> Any:
    return func.coalesce(Incident.severity, FALLBACK_SEVERITY)


async def _advance(
    session: AsyncSession,
    counter: Column[int],
    moves: Iterable[tuple[uuid.UUID, int, int]],
    **also: Any,
) -> set[uuid.UUID]:
    """Raise each row's counter from the value read to its new value with conditional
    updates, one per (seen, new) pair. Returns the rows that moved: a row another sweeper
    moved first is left to it."""
    table = counter.table
    groups: dict[tuple[int, int], list[uuid.UUID]] = defaultdict(list)
    for row_id, seen, new in moves:
        if new > seen:  # counters only go up
            groups[(seen, new)].append(row_id)
    moved: set[uuid.UUID] = set()
    for (seen, new), ids in sorted(groups.items()):
        result = await session.execute(
            update(table)
            .where(table.c.id.in_(ids), counter == seen)
            .values({counter.name: new, **also})
            .returning(table.c.id)
        )
        moved.update(result.scalars())
    return moved


# --- actions ------------------------------------------------------------------------------


def action_level(policy: Policy, due_at: datetime, now: datetime) -> int:
    """The level an open action's lateness warrants (0 when not yet due)."""
    if due_at <= now - policy.level3_after:
        return 3
    if due_at <= now - policy.level2_after:
        return 2
    return 1 if due_at <= now else 0


async def _claim_actions(
    session: AsyncSession, directory: Directory, now: datetime, limit: int
) -> list[Pending]:
    due = [
        and_(
            _severity() == severity,
            or_(
                Action.escalation_level < 1,
                and_(Action.escalation_level < 2, Action.due_at <= now - p.level2_after),
                and_(Action.escalation_level < 3, Action.due_at <= now - p.level3_after),
            ),
        )
        for severity, p in directory.policies.items()
    ]
    rows = (
        await session.execute(
            select(
                Action.id,
                Action.escalation_level,
                Action.ladder_round,
                Action.due_at,
                Action.title,
                Action.owning_ministry,
                Action.assignee_id,
                Incident.id.label("incident_id"),
                Incident.key,
                Incident.severity,
                Incident.doe_owner_id,
                Incident.meti_owner_id,
            )
            .join(Incident, Incident.id == Action.incident_id)
            # The same predicate as the partial index ix_actions_escalatable_due_at, with its
            # constants inline: as bind parameters, the generic plan PostgreSQL switches a
            # prepared statement to after five runs cannot use the index and reads every
            # past-due action, terminal ones included.
            .where(
                is_open(),
                Action.escalation_level < literal(TOP_ACTION_LEVEL, literal_execute=True),
                Action.due_at <= now,
                or_(*due),
            )
            .order_by(Action.due_at, Action.id)
            .limit(limit)
            .with_for_update(of=Action, skip_locked=True)
        )
    ).all()
    warranted = {
        row.id: action_level(directory.policy(row.severity), row.due_at, now) for row in rows
    }
    moved = await _advance(
        session,
        table_of(Action).c.escalation_level,
        ((row.id, row.escalation_level, warranted[row.id]) for row in rows),
    )
    pending: list[Pending] = []
    for row in rows:
        if row.id in moved:
            for level in range(row.escalation_level + 1, warranted[row.id] + 1):
                pending.append(
                    Pending(
                        item_type="action",
                        item_id=row.id,
                        round=row.ladder_round,
                        level=level,
                        incident_id=row.incident_id,
                        incident_key=row.key,
                        title=row.title,
                        candidates=_action_recipients(directory, row, level),
                        event_type="action.escalated",
                        data={
                            "action_id": row.id,
                            "level": level,
                            "due_at": row.due_at,
                            "owning_ministry": row.owning_ministry,
                        },
                    )
                )
    return pending


def _action_recipients(directory: Directory, row: Any, level: int) -> tuple[uuid.UUID | None, ...]:
    if level == 1:
        return (row.assignee_id, row.doe_owner_id, row.meti_owner_id)
    if level == 2:
        return directory.leads_of(ministries_of(row.owning_ministry))
    return directory.co_chairs


# --- incidents: triage overdue and stale updates ---------------------------------------------


def triage_level(policy: Policy, reported_at: datetime, now: datetime) -> int:
    if reported_at <= now - 2 * policy.triage_within:
        return 2
    return 1 if reported_at <= now - policy.triage_within else 0


async def _claim_triage(
    session: AsyncSession, directory: Directory, now: datetime, limit: int
) -> list[Pending]:
    due = [
        and_(
            _severity() == severity,
            or_(
                and_(Incident.triage_level < 1, Incident.reported_at <= now - p.triage_within),
                and_(Incident.triage_level < 2, Incident.reported_at <= now - 2 * p.triage_within),
            ),
        )
        for severity, p in directory.policies.items()
    ]
    rows = (
        await session.execute(
            select(
                Incident.id,
                Incident.key,
                Incident.title,
                Incident.severity,
                Incident.reported_at,
                Incident.triage_level,
            )
            .where(
                Incident.status == "reported", Incident.triage_level < TOP_TRIAGE_LEVEL, or_(*due)
            )
            .order_by(Incident.reported_at, Incident.id)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
    ).all()
    warranted = {
        row.id: triage_level(directory.policy(row.severity), row.reported_at, now) for row in rows
    }
    moved = await _advance(
        session,
        table_of(Incident).c.triage_level,
        ((row.id, row.triage_level, warranted[row.id]) for row in rows),
    )
    pending: list[Pending] = []
    for row in rows:
        if row.id not in moved:
            continue
        for level in range(row.triage_level + 1, warranted[row.id] + 1):
            pending.append(
                Pending(
                    item_type="triage",
                    item_id=row.id,
                    round=0,
                    level=level,
                    incident_id=row.id,
                    incident_key=row.key,
                    title=row.title,
                    candidates=directory.leads_of(CO_LEAD_CODES)
                    if level == 1
                    else directory.co_chairs,
                    event_type="incident.escalated",
                    data={
                        "reason": "triage_overdue",
                        "level": level,
                        "reported_at": row.reported_at,
                    },
                )
            )
    return pending


async def _claim_stale(
    session: AsyncSession, directory: Directory, now: datetime, limit: int
) -> list[Pending]:
    due = [
        and_(
            _severity() == severity,
            Incident.last_activity_at <= now - p.update_every,
            or_(
                Incident.stale_reminded_at.is_(None),
                Incident.stale_reminded_at <= now - p.update_every,
            ),
        )
        for severity, p in directory.policies.items()
    ]
    rows = (
        await session.execute(
            select(
                Incident.id,
                Incident.key,
                Incident.title,
                Incident.stale_reminders,
                Incident.last_activity_at,
                Incident.doe_owner_id,
                Incident.meti_owner_id,
            )
            .where(Incident.status == "responding", or_(*due))
            .order_by(Incident.last_activity_at, Incident.id)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
    ).all()
    moved = await _advance(
        session,
        table_of(Incident).c.stale_reminders,
        ((row.id, row.stale_reminders, row.stale_reminders + 1) for row in rows),
        stale_reminded_at=now,
    )
    pending: list[Pending] = []
    for row in rows:
        if row.id not in moved:
            continue
        number = row.stale_reminders + 1
        pending.append(
            Pending(
                item_type="stale",
                item_id=row.id,
                round=0,
                level=number,
                incident_id=row.id,
                incident_key=row.key,
                title=row.title,
                candidates=(row.doe_owner_id, row.meti_owner_id),
                event_type="incident.escalated",
                data={
                    "reason": "stale_update",
                    "reminder": number,
                    "silent_since": row.last_activity_at,
                },
            )
        )
    return pending


# --- writing an escalation batch ---------------------------------------------------------------


async def _visible_recipients(
    session: AsyncSession, pending: Sequence[Pending]
) -> tuple[set[tuple[uuid.UUID, uuid.UUID]], dict[uuid.UUID, str]]:
    """Which candidate recipients may see which incidents (the one TLP rule, one query),
    and the recipients' e-mail addresses for the report."""
    pairs = {(uid, p.incident_id) for p in pending for uid in p.candidates if uid is not None}
    visible = await visible_pairs(session, pairs)
    emails: dict[uuid.UUID, str] = {}
    ids = {uid for uid, _ in visible}
    if ids:
        rows = await session.execute(select(User.id, User.email).where(User.id.in_(ids)))
        emails = {uid: email for uid, email in rows}
    return visible, emails


async def _write(
    session: AsyncSession, pending: Sequence[Pending], now: datetime
) -> list[EscalationRecord]:
    if not pending:
        return []
    visible, emails = await _visible_recipients(session, pending)
    records: list[EscalationRecord] = []
    ledger, notifications, events = [], [], []
    for p in pending:
        recipients = list(
            dict.fromkeys(
                uid for uid in p.candidates if uid is not None and (uid, p.incident_id) in visible
            )
        )
        ledger.append(
            {
                "id": uuid.uuid4(),
                "item_type": p.item_type,
                "item_id": p.item_id,
                "round": p.round,
                "level": p.level,
                "incident_id": p.incident_id,
                "at": now,
                "recipients": [str(uid) for uid in recipients],
            }
        )
        data = {**p.data, "recipients": recipients}
        events.append(Event(p.incident_id, SYSTEM, p.event_type, data, now, p.incident_key))
        title = _title(p)
        # The same for every recipient (built once); who else was told stays on the timeline.
        payload = json_safe(p.data | {"incident_key": p.incident_key, "item_type": p.item_type})
        for uid in recipients:
            notifications.append(
                {
                    "id": uuid.uuid4(),
                    "user_id": uid,
                    "incident_id": p.incident_id,
                    "type": p.event_type,
                    "title": title,
                    "data": payload,
                    "created_at": now,
                }
            )
        records.append(
            EscalationRecord(
                p.item_type,
                p.item_id,
                p.incident_id,
                p.incident_key,
                p.title,
                p.level,
                tuple(emails[uid] for uid in recipients),
            )
        )
    await session.execute(insert(table_of(Escalation)), ledger)
    await emit_many(session, events)
    if notifications:
        await session.execute(insert(table_of(Notification)), notifications)
    await BEFORE_COMMIT(session)
    return records


def _title(p: Pending) -> str:
    if p.item_type == "action":
        return f"{p.incident_key}: action “{p.title}” is overdue (level {p.level})"
    if p.item_type == "triage":
        return f"{p.incident_key}: still awaiting triage (level {p.level})"
    return f"{p.incident_key}: no update for a while — please post one (reminder {p.level})"


async def _no_hook(session: AsyncSession) -> None:
    return None


# Tests replace this to simulate a crash after everything is written but before commit.
BEFORE_COMMIT: Callable[[AsyncSession], Awaitable[None]] = _no_hook

Claim = Callable[[AsyncSession, Directory, datetime, int], Awaitable[list[Pending]]]
PHASES: tuple[Claim, ...] = (_claim_triage, _claim_actions, _claim_stale)


async def sweep(
    db: Database,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> SweepReport:
    """Escalate everything overdue at ``now`` (default: the clock). A dry run decides the
    same escalations in one transaction and rolls it back."""
    now = now or clock.now()
    report = SweepReport(at=now, dry_run=dry_run)
    async with db.unit_of_work(readonly=True) as session:
        directory = await load_directory(session)
    if dry_run:
        async with db.unit_of_work(commit=False) as session:
            for claim in PHASES:
                while batch := await claim(session, directory, now, batch_size):
                    report.escalations.extend(await _write(session, batch, now))
        return report
    for claim in PHASES:
        while True:
            async with db.unit_of_work() as session:
                batch = await claim(session, directory, now, batch_size)
                report.escalations.extend(await _write(session, batch, now))
            if not batch:
                break
    if report.escalations:
        logger.info(
            "sweep at %s escalated %d item-levels", now.isoformat(), len(report.escalations)
        )
    return report
