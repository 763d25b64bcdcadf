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

Whatever the data, a sweep ends and one bad item or severity cannot hold up the rest:
- each severity is held to its own policy (a stored policy that breaks the rules gives way
  to SPEC §4's defaults, see app.escalation.policies); a severity whose thresholds cannot
  even be computed is left out of the sweep;
- within a kind of item, an item is escalated at most once a sweep: an item claimed again,
  or claimed with nothing to raise, is excluded from later claims, so every claim either
  escalates something new or ends the kind;
- a batch that fails is retried one item at a time; an item that fails alone is logged,
  counted and excluded, and a kind whose claim fails is logged, counted and left until the
  next sweep. The failures are in the report and counted in ``rrg_sweep_failures_total``.
One claim covers every severity (an OR of each severity's thresholds): a claim narrowed to
one severity lets PostgreSQL start from the incidents of that severity instead of the
partial index of escalatable actions, whatever the overdue work.

On PostgreSQL a sweep runs in lanes side by side (``POSTGRESQL_LANES``, one connection
each): each lane claims and escalates only the items of the incidents that hash to it, so
two lanes never wait on one incident's chain head, and while one lane waits on the
database the other's Python work runs. The claims, conditional updates and ledger keep
escalation exactly-once across lanes as across sweepers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    ColumnElement,
    Integer,
    Text,
    and_,
    cast,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from app import clock
from app.actions.models import Action, is_open
from app.actions.vocabulary import ministries_of
from app.auth.models import User
from app.auth.permissions import may_triage
from app.db import Database, table_of
from app.escalation import policies as policy_store
from app.escalation.models import Escalation
from app.escalation.policies import FALLBACK_SEVERITY, Policy
from app.events import Event, emit_many
from app.incidents.models import Incident, IncidentParticipant
from app.incidents.states import INCIDENT_LIFECYCLE
from app.incidents.visibility import visible_pairs
from app.kit import bulk
from app.kit.sql import constant, constants
from app.metrics import SWEEP_FAILURES
from app.ministries.models import CO_LEAD_CODES, Ministry
from app.models_base import new_id
from app.notifications.service import NewNotice, notify_many
from app.schemas import PlainJSON, json_safe
from app.timeline.service import SYSTEM

logger = logging.getLogger("rrg.escalation")

BATCH_SIZE = 2000
# On PostgreSQL a sweep escalates in two lanes side by side, each its own transaction over
# its own incidents: while one waits on the database, the other's Python work runs.
POSTGRESQL_LANES = 2
TOP_ACTION_LEVEL = 3
TOP_TRIAGE_LEVEL = 2
# A kind of item gives up for this sweep once this many of its items could not be escalated
# (the exclusion list travels with every claim).
MAX_SKIPPED = 1000
# What a RED incident's reporter is told when nobody named on it can triage it.
TRIAGER_NEEDED = (
    "Nobody named on this RED incident can triage it: add a lead of DOE or METI as a "
    "participant, or assign its owners."
)


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


@dataclass(frozen=True)
class SweepFailure:
    """Something the sweep could not do: a stored policy it could not use (kind
    ``policy``), one item (``item_id``), a severity's thresholds, or a whole kind of item
    (severity ``all``)."""

    kind: str  # policy | action | triage | stale
    severity: str
    item_id: uuid.UUID | None
    error: str

    def describe(self) -> str:
        what = f" item {self.item_id}" if self.item_id else ""
        return f"FAILED {self.kind} {self.severity}{what}: {self.error}"


@dataclass
class SweepReport:
    at: datetime
    dry_run: bool
    escalations: list[EscalationRecord] = field(default_factory=list)
    failures: list[SweepFailure] = field(default_factory=list)

    def failed(
        self, kind: str, severity: str, item_id: uuid.UUID | None, error: BaseException | str
    ) -> None:
        """Record (and log, and count) one failure; the sweep carries on."""
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        failure = SweepFailure(kind, severity, item_id, message)
        self.failures.append(failure)
        SWEEP_FAILURES.labels(kind, severity).inc()
        logger.error(
            "escalation sweep at %s: %s",
            self.at.isoformat(),
            failure.describe(),
            exc_info=None if isinstance(error, str) else error,
        )


@dataclass(frozen=True)
class Directory:
    """The people escalations go to, and each severity's policy, loaded once per sweep."""

    policies: dict[str, Policy]
    leads: dict[str, tuple[uuid.UUID, ...]]  # ministry code -> active leads
    co_chairs: tuple[uuid.UUID, ...]
    unusable_policies: dict[str, str] = field(default_factory=dict)

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
        .where(User.active, User.role == "lead", Ministry.code.in_(constants(CO_LEAD_CODES)))
        .order_by(User.email)
    )
    for user_id, code in rows:
        leads[code].append(user_id)
    co_chairs = (
        await session.scalars(
            select(User.id).where(User.active, User.co_chair).order_by(User.email)
        )
    ).all()
    loaded = await policy_store.load(session)
    return Directory(
        policies=loaded.policies,
        leads={code: tuple(ids) for code, ids in leads.items()},
        co_chairs=tuple(co_chairs),
        unusable_policies=loaded.unusable,
    )


def _incident_live() -> ColumnElement[bool]:
    """Not rejected or closed (constants inline, like ``is_open``)."""
    terminal = sorted(INCIDENT_LIFECYCLE.terminal)
    return Incident.status.not_in(constants(terminal))


def _pairs(result: Any) -> list[tuple[uuid.UUID, str]]:
    """A claim's (item id, severity) rows."""
    return [(item_id, str(severity)) for item_id, severity in result]


async def _advance(
    session: AsyncSession,
    counter: Column[int],
    moves: Iterable[tuple[uuid.UUID, int, int]],
    **also: Any,
) -> set[uuid.UUID]:
    """Raise each row's counter from the value read to its new value with conditional
    updates. Returns the rows that moved: a row another sweeper moved first is left to it.
    On PostgreSQL one statement (the moves as arrays), elsewhere one per (seen, new) pair."""
    table = counter.table
    moves = [(row_id, seen, new) for row_id, seen, new in moves if new > seen]  # only up
    if not moves:
        return set()
    if bulk.is_postgresql(session):
        ids, seen, new = zip(*moves, strict=True)
        wanted = (
            func.unnest(
                literal(list(ids), ARRAY(table.c.id.type)),
                literal(list(seen), ARRAY(Integer)),
                literal(list(new), ARRAY(Integer)),
            )
            .table_valued("id", "seen", "new")
            .render_derived(with_types=False)
        )
        result = await session.execute(
            update(table)
            .where(table.c.id == wanted.c.id, counter == wanted.c.seen)
            .values({counter.name: wanted.c.new, **also})
            .returning(table.c.id)
        )
        return set(result.scalars())
    groups: dict[tuple[int, int], list[uuid.UUID]] = defaultdict(list)
    for row_id, seen_level, new_level in moves:
        groups[(seen_level, new_level)].append(row_id)
    moved: set[uuid.UUID] = set()
    for (seen_level, new_level), group in sorted(groups.items()):
        result = await session.execute(
            update(table)
            .where(table.c.id.in_(group), counter == seen_level)
            .values({counter.name: new_level, **also})
            .returning(table.c.id)
        )
        moved.update(result.scalars())
    return moved


@dataclass(frozen=True)
class Claim:
    """What a claim may return: items due under their severity's policy (``due``: the
    severities in ``policies``), at most ``limit``, none of ``excluded``, only ``only``
    when given."""

    policies: dict[str, Policy]
    due: ColumnElement[bool]
    now: datetime
    limit: int
    excluded: frozenset[uuid.UUID] = frozenset()
    only: uuid.UUID | None = None
    # This claim's lane of ``lanes``: the items of the incidents that hash to it.
    lane: int = 0
    lanes: int = 1

    def narrow(self, id_column: Any, incident_column: Any) -> list[ColumnElement[bool]]:
        where = []
        if self.excluded:
            where.append(id_column.not_in(sorted(self.excluded)))
        if self.only is not None:
            where.append(id_column == self.only)
        if self.lanes > 1:
            where.append(_in_lane(incident_column, self.lane, self.lanes))
        return where


def _lane_of(incident_id: Any, lanes: int) -> ColumnElement[int]:
    """Which of ``lanes`` an incident's items are escalated in (PostgreSQL): a hash of its
    id, so lanes running side by side never append to one incident's timeline (each would
    wait for the other's chain head)."""
    hashed = cast(func.hashtext(cast(incident_id, Text)), BigInteger)
    return func.abs(hashed) % constant(lanes)


def _in_lane(incident_id: Any, lane: int, lanes: int) -> ColumnElement[bool]:
    """``_lane_of(incident_id) = lane``, written as ``(… + lanes - lane) % lanes < 1``:
    PostgreSQL guesses that an equality on an expression keeps 0.5% of the rows (a third
    for an inequality), and at 0.5% the claim's generic plan walks every due action in
    due_at order instead of the partial index of escalatable ones."""
    shifted = _lane_of(incident_id, lanes) + constant(lanes - lane)
    return shifted % constant(lanes) < constant(1)


def _severity() -> Any:
    return func.coalesce(Incident.severity, FALLBACK_SEVERITY)


# --- actions ------------------------------------------------------------------------------


def action_level(policy: Policy, due_at: datetime, now: datetime) -> int:
    """The level an open action's lateness warrants (0 when not yet due)."""
    if due_at <= now - policy.level3_after:
        return 3
    if due_at <= now - policy.level2_after:
        return 2
    return 1 if due_at <= now else 0


def _action_due(p: Policy, now: datetime) -> ColumnElement[bool]:
    return or_(
        Action.escalation_level < 1,
        and_(Action.escalation_level < 2, Action.due_at <= now - p.level2_after),
        and_(Action.escalation_level < 3, Action.due_at <= now - p.level3_after),
    )


async def _claim_actions(session: AsyncSession, claim: Claim) -> list[tuple[uuid.UUID, str]]:
    return _pairs(
        await session.execute(
            select(Action.id, _severity())
            .join(Incident, Incident.id == Action.incident_id)
            # The same predicate as the partial index ix_actions_escalatable_due_at, with its
            # constants inline: as bind parameters, the generic plan PostgreSQL switches a
            # prepared statement to after five runs cannot use the index and reads every
            # past-due action, terminal ones included.
            .where(
                is_open(),
                Action.escalation_level < constant(TOP_ACTION_LEVEL),
                Action.due_at <= claim.now,
                claim.due,
                _incident_live(),  # actions of rejected or closed incidents never escalate
                *claim.narrow(Action.id, Action.incident_id),
            )
            .order_by(Action.due_at, Action.id)
            .limit(claim.limit)
            .with_for_update(of=Action, skip_locked=True)
        )
    )


async def _escalate_actions(
    session: AsyncSession, directory: Directory, claim: Claim, ids: Sequence[uuid.UUID]
) -> tuple[list[Pending], set[uuid.UUID]]:
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
                _severity().label("severity"),
                Incident.doe_owner_id,
                Incident.meti_owner_id,
            )
            .join(Incident, Incident.id == Action.incident_id)
            .where(bulk.among(session, Action.id, ids))
            .order_by(Action.due_at, Action.id)
        )
    ).all()
    rows = [row for row in rows if row.severity in claim.policies]
    warranted = {
        row.id: action_level(claim.policies[row.severity], row.due_at, claim.now) for row in rows
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
    return pending, moved


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


def _triage_due(p: Policy, now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(Incident.triage_level < 1, Incident.reported_at <= now - p.triage_within),
        and_(Incident.triage_level < 2, Incident.reported_at <= now - 2 * p.triage_within),
    )


async def _claim_triage(session: AsyncSession, claim: Claim) -> list[tuple[uuid.UUID, str]]:
    return _pairs(
        await session.execute(
            select(Incident.id, _severity())
            .where(
                Incident.status == "reported",
                Incident.triage_level < TOP_TRIAGE_LEVEL,
                claim.due,
                *claim.narrow(Incident.id, Incident.id),
            )
            .order_by(Incident.reported_at, Incident.id)
            .limit(claim.limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
    )


async def _escalate_triage(
    session: AsyncSession, directory: Directory, claim: Claim, ids: Sequence[uuid.UUID]
) -> tuple[list[Pending], set[uuid.UUID]]:
    rows = (
        await session.execute(
            select(
                Incident.id,
                Incident.key,
                Incident.title,
                Incident.tlp,
                Incident.reporter_id,
                Incident.reported_at,
                Incident.triage_level,
                _severity().label("severity"),
            )
            .where(bulk.among(session, Incident.id, ids))
            .order_by(Incident.reported_at, Incident.id)
        )
    ).all()
    rows = [row for row in rows if row.severity in claim.policies]
    warranted = {
        row.id: triage_level(claim.policies[row.severity], row.reported_at, claim.now)
        for row in rows
    }
    moved = await _advance(
        session,
        table_of(Incident).c.triage_level,
        ((row.id, row.triage_level, warranted[row.id]) for row in rows),
    )
    stranded = await _without_triager(
        session, [row.id for row in rows if row.id in moved and row.tlp == "RED"]
    )
    pending: list[Pending] = []
    for row in rows:
        if row.id not in moved:
            continue
        for level in range(row.triage_level + 1, warranted[row.id] + 1):
            candidates = directory.leads_of(CO_LEAD_CODES) if level == 1 else directory.co_chairs
            data: dict[str, Any] = {
                "reason": "triage_overdue",
                "level": level,
                "reported_at": row.reported_at,
            }
            if row.id in stranded:
                # Nobody who may see it can triage it: its reporter is told what is needed.
                candidates = (*candidates, row.reporter_id)
                data["needed"] = TRIAGER_NEEDED
            pending.append(
                Pending(
                    item_type="triage",
                    item_id=row.id,
                    round=0,
                    level=level,
                    incident_id=row.id,
                    incident_key=row.key,
                    title=row.title,
                    candidates=candidates,
                    event_type="incident.escalated",
                    data=data,
                )
            )
    return pending, moved


async def _without_triager(
    session: AsyncSession, incident_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Of these (RED) incidents, those none of whose named people (reporter, owners,
    participants: the only people who may see a RED incident) is an active user who may
    triage it."""
    if not incident_ids:
        return set()
    incidents = (await session.scalars(select(Incident).where(Incident.id.in_(incident_ids)))).all()
    named: dict[uuid.UUID, set[uuid.UUID]] = {
        i.id: {u for u in (i.reporter_id, i.doe_owner_id, i.meti_owner_id) if u is not None}
        for i in incidents
    }
    participants = await session.execute(
        select(IncidentParticipant.incident_id, IncidentParticipant.user_id).where(
            IncidentParticipant.incident_id.in_(incident_ids)
        )
    )
    for incident_id, user_id in participants:
        named[incident_id].add(user_id)
    everyone = set().union(*named.values())
    users = {
        u.id: u
        for u in await session.scalars(
            select(User)
            .options(joinedload(User.ministry))
            .where(User.id.in_(everyone), User.active)
        )
    }
    return {
        i.id
        for i in incidents
        if not any(uid in users and may_triage(users[uid], i) for uid in named[i.id])
    }


def _stale_due(p: Policy, now: datetime) -> ColumnElement[bool]:
    return and_(
        Incident.last_activity_at <= now - p.update_every,
        or_(
            Incident.stale_reminded_at.is_(None),
            Incident.stale_reminded_at <= now - p.update_every,
        ),
    )


async def _claim_stale(session: AsyncSession, claim: Claim) -> list[tuple[uuid.UUID, str]]:
    return _pairs(
        await session.execute(
            select(Incident.id, _severity())
            .where(
                Incident.status == "responding",
                claim.due,
                *claim.narrow(Incident.id, Incident.id),
            )
            .order_by(Incident.last_activity_at, Incident.id)
            .limit(claim.limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
    )


async def _escalate_stale(
    session: AsyncSession, directory: Directory, claim: Claim, ids: Sequence[uuid.UUID]
) -> tuple[list[Pending], set[uuid.UUID]]:
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
                _severity().label("severity"),
            )
            .where(bulk.among(session, Incident.id, ids))
            .order_by(Incident.last_activity_at, Incident.id)
        )
    ).all()
    rows = [row for row in rows if row.severity in claim.policies]
    moved = await _advance(
        session,
        table_of(Incident).c.stale_reminders,
        ((row.id, row.stale_reminders, row.stale_reminders + 1) for row in rows),
        stale_reminded_at=claim.now,
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
    return pending, moved


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
        rows = await session.execute(
            select(User.id, User.email).where(bulk.among(session, User.id, sorted(ids)))
        )
        emails = {uid: email for uid, email in rows}
    return visible, emails


async def _write(
    session: AsyncSession, pending: Sequence[Pending], now: datetime
) -> list[EscalationRecord]:
    if not pending:
        return []
    visible, emails = await _visible_recipients(session, pending)
    records: list[EscalationRecord] = []
    ledger: list[dict[str, Any]] = []
    notices: list[NewNotice] = []
    events: list[Event] = []
    for p in pending:
        recipients = list(
            dict.fromkeys(
                uid for uid in p.candidates if uid is not None and (uid, p.incident_id) in visible
            )
        )
        # Ids and times as the stored JSON holds them, converted once for the ledger, the
        # timeline, the outbox and the notices (each would otherwise convert them again).
        told = [str(uid) for uid in recipients]
        facts = json_safe(p.data)
        ledger.append(
            {
                "id": new_id(),
                "item_type": p.item_type,
                "item_id": p.item_id,
                "round": p.round,
                "level": p.level,
                "incident_id": p.incident_id,
                "at": now,
                "recipients": told,
            }
        )
        data = PlainJSON(facts, recipients=told)
        events.append(Event(p.incident_id, SYSTEM, p.event_type, data, now, p.incident_key))
        # The same for every recipient (built once); who else was told stays on the timeline.
        payload = facts | {"incident_key": p.incident_key, "item_type": p.item_type}
        notices.append(NewNotice(recipients, p.incident_id, p.event_type, _title(p), payload, now))
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
    # The notifications first: their insert is a batch's longest statement, and while it
    # runs, the other lane's Python work does (sent last, both lanes waited on it together).
    await notify_many(session, notices)
    await bulk.insert_rows(session, table_of(Escalation), ledger)
    await emit_many(session, events)
    await BEFORE_COMMIT(session)
    return records


def _title(p: Pending) -> str:
    if p.item_type == "action":
        return f"{p.incident_key}: action “{p.title}” is overdue (level {p.level})"
    if p.item_type == "triage" and "needed" in p.data:
        return f"{p.incident_key}: still awaiting triage (level {p.level}). {p.data['needed']}"
    if p.item_type == "triage":
        return f"{p.incident_key}: still awaiting triage (level {p.level})"
    return f"{p.incident_key}: no update for a while — please post one (reminder {p.level})"


async def _no_hook(session: AsyncSession) -> None:
    return None


# Tests replace this to simulate a crash after everything is written but before commit.
BEFORE_COMMIT: Callable[[AsyncSession], Awaitable[None]] = _no_hook


@dataclass(frozen=True)
class Phase:
    """One kind of escalation: when an item is due under one severity's policy, which
    items are due (claimed and locked: ids and severities), and what escalating the
    claimed ones writes (returns the escalations and the items moved)."""

    kind: str
    due: Callable[[Policy, datetime], ColumnElement[bool]]
    claim: Callable[[AsyncSession, Claim], Awaitable[list[tuple[uuid.UUID, str]]]]
    escalate: Callable[
        [AsyncSession, Directory, Claim, Sequence[uuid.UUID]],
        Awaitable[tuple[list[Pending], set[uuid.UUID]]],
    ]

    def claim_for(
        self, policies: dict[str, Policy], now: datetime, limit: int, report: SweepReport
    ) -> Claim | None:
        """The claim over every severity whose thresholds can be computed at ``now`` (the
        others are reported); None when none can."""
        due: dict[str, ColumnElement[bool]] = {}
        for severity, policy in policies.items():
            try:
                due[severity] = and_(_severity() == severity, self.due(policy, now))
            except (OverflowError, ValueError) as exc:  # a threshold before year 1
                report.failed(self.kind, severity, None, exc)
        if not due:
            return None
        return Claim({s: policies[s] for s in due}, or_(*due.values()), now, limit)


PHASES = (
    Phase("triage", _triage_due, _claim_triage, _escalate_triage),
    Phase("action", _action_due, _claim_actions, _escalate_actions),
    Phase("stale", _stale_due, _claim_stale, _escalate_stale),
)
ALL = "all"  # the severity of a failure that stopped a whole kind of item


@dataclass(frozen=True)
class _Step:
    """What one attempt claimed, escalated (the records) and moved."""

    claimed: list[uuid.UUID]
    records: list[EscalationRecord]
    moved: set[uuid.UUID]


class _ClaimFailed(Exception):
    """The claim query itself failed: this kind of item cannot go on in this sweep."""


@dataclass
class _Kind:
    """One kind of item in a sweep, with what it has done so far."""

    db: Database
    phase: Phase
    directory: Directory
    claim: Claim
    report: SweepReport
    dry_session: AsyncSession | None  # a dry run's one transaction (attempts are savepoints)
    done: set[uuid.UUID] = field(default_factory=set)  # escalated in this sweep
    skipped: set[uuid.UUID] = field(default_factory=set)  # never to be claimed again
    batch: list[uuid.UUID] = field(default_factory=list)  # what the last attempt claimed
    severity_of: dict[uuid.UUID, str] = field(default_factory=dict)  # of claimed items

    @asynccontextmanager
    async def attempt(self) -> AsyncIterator[AsyncSession]:
        """One all-or-nothing try: a transaction (a savepoint in a dry run)."""
        if self.dry_session is None:
            async with self.db.unit_of_work() as session:
                yield session
        else:
            async with self.dry_session.begin_nested():
                yield self.dry_session

    async def step(self, session: AsyncSession, only: uuid.UUID | None = None) -> _Step:
        """Claim a batch (or the one item), escalate what is new, write it."""
        claim = replace(
            self.claim,
            limit=1 if only else self.claim.limit,
            excluded=frozenset(self.skipped),
            only=only,
        )
        try:
            claimed = await self.phase.claim(session, claim)
        except Exception as exc:
            raise _ClaimFailed(str(exc)) from exc
        self.severity_of.update(claimed)
        ids = self.batch = [item_id for item_id, _ in claimed]
        fresh = [i for i in ids if i not in self.done]
        if not fresh:
            return _Step(ids, [], set())
        pending, moved = await self.phase.escalate(session, self.directory, claim, fresh)
        records = await _write(session, pending, claim.now)
        return _Step(ids, records, moved)

    def apply(self, step: _Step) -> None:
        self.report.escalations.extend(step.records)
        self.done |= step.moved
        # Claimed again, or with nothing to raise: not to be claimed again this sweep.
        self.skipped |= set(step.claimed) - step.moved

    async def run(self) -> None:
        while len(self.skipped) <= MAX_SKIPPED:
            self.batch = []
            try:
                async with self.attempt() as session:
                    step = await self.step(session)
            except _ClaimFailed as exc:
                self._failed(None, exc.__cause__ or exc)
                return
            except Exception as exc:
                if not self.batch:
                    self._failed(None, exc)
                    return
                # Something in the batch fails: find it by going one item at a time.
                if not await self._one_by_one(self.batch):
                    return
                continue
            self.apply(step)
            # A claim short of its limit took every due item not locked by another
            # sweeper (whose items are its own): claiming again would find nothing.
            if len(step.claimed) < self.claim.limit:
                return
        self._failed(None, f"gave up after {MAX_SKIPPED} items could not be escalated")

    async def _one_by_one(self, ids: Sequence[uuid.UUID]) -> bool:
        """Each item in its own attempt; one that fails is recorded and skipped. False when
        a claim failed (this kind of item cannot go on)."""
        for item in ids:
            try:
                async with self.attempt() as session:
                    step = await self.step(session, only=item)
            except _ClaimFailed as exc:
                self._failed(None, exc.__cause__ or exc)
                return False
            except Exception as exc:
                self._failed(item, exc)
                self.skipped.add(item)
                continue
            self.apply(step)
        return True

    def _failed(self, item: uuid.UUID | None, error: BaseException | str) -> None:
        severity = ALL if item is None else self.severity_of.get(item, ALL)
        self.report.failed(self.phase.kind, severity, item, error)


async def sweep(
    db: Database,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    lanes: int | None = None,
) -> SweepReport:
    """Escalate everything overdue at ``now`` (default: the clock), on PostgreSQL in
    ``lanes`` (default ``POSTGRESQL_LANES``) transactions side by side. A dry run decides the
    same escalations in one transaction and rolls it back. What fails for an item, a
    severity or a kind of item is reported in ``SweepReport.failures`` (and logged and
    counted), not raised; a database that cannot even load the directory still raises."""
    now = now or clock.now()
    report = SweepReport(at=now, dry_run=dry_run)
    async with db.unit_of_work(readonly=True) as session:
        directory = await load_directory(session)
    for severity, problem in directory.unusable_policies.items():
        report.failed("policy", severity, None, f"{problem}; SPEC §4 defaults apply")

    # A dry run is one transaction; SQLite has one writer at a time.
    if dry_run or db.dialect != "postgresql":
        lanes = 1
    elif lanes is None:
        lanes = POSTGRESQL_LANES

    async def run_kinds(dry_session: AsyncSession | None) -> None:
        for phase in PHASES:
            claim = phase.claim_for(directory.policies, now, batch_size, report)
            if claim is not None:
                await asyncio.gather(
                    *(
                        _Kind(db, phase, directory, lane, report, dry_session).run()
                        for lane in (replace(claim, lane=n, lanes=lanes) for n in range(lanes))
                    )
                )

    if dry_run:
        async with db.unit_of_work(commit=False) as session:
            await run_kinds(session)
    else:
        await run_kinds(None)
    if report.escalations:
        logger.info(
            "sweep at %s escalated %d item-levels", now.isoformat(), len(report.escalations)
        )
    return report
