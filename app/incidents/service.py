"""Shortage incidents: create, read (always through TLP visibility), change, move."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Select,
    Update,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy import Sequence as SqlSequence
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import flag_modified

from app import clock
from app.auth.models import User
from app.auth.permissions import (
    may_edit_incident,
    may_name_participants,
    may_triage,
    require,
)
from app.auth.roles import at_least
from app.auth.service import Principal
from app.db import adopt, json_rows, row_of, table_of
from app.errors import AppError, Conflict, InvalidInput, NotFound
from app.events import Event, emit, emit_many
from app.incidents import states
from app.incidents.actions_hook import action_counts, assignees_out_of_sight, cancel_open_actions
from app.incidents.models import (
    Counter,
    Incident,
    IncidentMineral,
    IncidentParticipant,
    IncidentSignoff,
)
from app.incidents.presenters import current_signoffs
from app.incidents.schemas import (
    TRIAGE_FIELDS,
    IncidentCreate,
    IncidentUpdate,
    TransitionRequest,
)
from app.incidents.states import INCIDENT_LIFECYCLE, IncidentFacts
from app.incidents.visibility import visible_to
from app.kit import bulk
from app.kit.pagination import Key, Kind, Order, paginate
from app.kit.sql import constants
from app.minerals.models import Mineral
from app.ministries.models import CO_LEAD_CODES, Ministry
from app.models_base import apply_changes, check_version, new_id, requested_changes
from app.priority import service as priority
from app.timeline import service as timeline
from app.timeline.models import TimelineEvent
from app.timeline.service import Actor, NewEvent

KEY_COUNTER = "incident_key"
DUPLICATE_WINDOW = timedelta(days=14)
OWNER_COLUMNS = {"DOE": "doe_owner_id", "METI": "meti_owner_id"}


def format_key(number: int) -> str:
    return f"RRG-{number:04d}"


def _details() -> list[Any]:
    """What the write paths read from an incident besides its columns, joined to it in the
    same statement (a few rows: its minerals times its participants)."""
    return [joinedload(Incident.mineral_links), joinedload(Incident.participant_links)]


# --- reading ----------------------------------------------------------------------------


def _id_or_key(id_or_key: str) -> ColumnElement[bool]:
    try:
        return Incident.id == uuid.UUID(id_or_key)
    except ValueError:
        return Incident.key == id_or_key.upper()


async def get_visible(
    session: AsyncSession,
    user: User,
    id_or_key: str | uuid.UUID,
    *,
    details: bool = True,
    lock: bool = False,
) -> Incident:
    """The incident if the user may see it; 404 otherwise (as if it did not exist).
    ``lock``: its row is locked for this transaction (FOR NO KEY UPDATE, as a timeline
    append locks it), so what is read stays current until the commit."""
    where = Incident.id == id_or_key if isinstance(id_or_key, uuid.UUID) else _id_or_key(id_or_key)
    query = select(Incident).where(where, visible_to(user))
    if details:
        query = query.options(*_details())
    if lock:
        query = query.with_for_update(key_share=True, of=Incident)
    result = await session.execute(query.execution_options(populate_existing=True))
    # Every joined row is read (unique() folds them into one incident with its collections).
    incident = result.unique().scalar_one_or_none()
    if incident is None:
        raise NotFound("No such incident")
    return incident


SortKey = Literal[
    "reported_at",
    "-reported_at",
    "updated_at",
    "-updated_at",
    "key",
    "-key",
    "severity",
    "-severity",
    "priority",
    "-priority",
]
_SORT_KEYS: dict[str, tuple[Any, Kind]] = {
    "reported_at": (Incident.reported_at, "datetime"),
    "updated_at": (Incident.updated_at, "datetime"),
    "key": (Incident.number, "int"),
    # Unset severity sorts after SEV4.
    "severity": (func.coalesce(Incident.severity, "SEV9"), "str"),
    "priority": (Incident.priority_score, "float"),
}


def _order(sort: str) -> Order:
    """The sort key, ties broken by id in the same direction (one range on the (key, id)
    index)."""
    expr, kind = _SORT_KEYS[sort.lstrip("-")]
    descending = sort.startswith("-")
    return Order(
        f"incidents:{sort}", Key(expr, kind, descending), Key(Incident.id, "uuid", descending)
    )


INCIDENT_ORDERS = {sort: _order(sort) for sort in get_args(SortKey)}


@dataclass
class IncidentFilters:
    status: list[str] = field(default_factory=list)
    severity: list[str] = field(default_factory=list)
    mineral: list[str] = field(default_factory=list)
    category: list[str] = field(default_factory=list)
    tlp: list[str] = field(default_factory=list)
    owner: uuid.UUID | None = None
    ministry: str | None = None
    q: str | None = None
    reported_after: datetime | None = None
    reported_before: datetime | None = None


def _filtered(user: User, f: IncidentFilters) -> Select[Incident]:
    query = select(Incident).where(visible_to(user))
    if f.status:
        query = query.where(Incident.status.in_(f.status))
    if f.severity:
        query = query.where(Incident.severity.in_(f.severity))
    if f.category:
        query = query.where(Incident.category.in_(f.category))
    if f.tlp:
        query = query.where(Incident.tlp.in_(f.tlp))
    if f.mineral:
        query = query.where(
            select(IncidentMineral.incident_id)
            .where(
                IncidentMineral.incident_id == Incident.id,
                IncidentMineral.mineral_code.in_(f.mineral),
            )
            .exists()
        )
    if f.owner is not None:
        query = query.where(
            or_(Incident.doe_owner_id == f.owner, Incident.meti_owner_id == f.owner)
        )
    if f.ministry:
        query = query.where(
            Incident.reporter_ministry_id
            == select(Ministry.id).where(Ministry.code == f.ministry.upper()).scalar_subquery()
        )
    if f.q:
        needle = f.q.strip().lower()
        query = query.where(
            or_(
                func.lower(Incident.key).contains(needle, autoescape=True),
                func.lower(Incident.title).contains(needle, autoescape=True),
                func.lower(Incident.summary).contains(needle, autoescape=True),
            )
        )
    if f.reported_after is not None:
        query = query.where(Incident.reported_at >= f.reported_after)
    if f.reported_before is not None:
        query = query.where(Incident.reported_at < f.reported_before)
    return query


def visible_query(user: User, filters: IncidentFilters) -> Select[Incident]:
    """The incidents the user may see that match the filters (unordered), for views that
    choose their own columns and order (the web board)."""
    return _filtered(user, filters)


async def list_visible(
    session: AsyncSession,
    user: User,
    filters: IncidentFilters,
    *,
    sort: str = "-reported_at",
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[Sequence[Incident], str | None]:
    """One page of the incidents the user may see, keyset-paginated on (sort key, id)."""
    return await paginate(
        session, _filtered(user, filters), INCIDENT_ORDERS[sort], limit=limit, cursor=cursor
    )


_incidents = table_of(Incident)
_incident_minerals = table_of(IncidentMineral)


# The duplicate hint reads four columns over the (category, reported_at) index; the
# incident's own values travel as bound parameters, so every create shares one statement.
def _duplicates_query(*, postgresql: bool) -> Select[Any]:
    return (
        select(_incidents.c.id, _incidents.c.key, _incidents.c.title, _incidents.c.status)
        .where(
            _incidents.c.status.in_(constants(states.OPEN_STATUSES)),
            _incidents.c.category == bindparam("category"),
            _incidents.c.reported_at >= bindparam("since"),
            _incidents.c.id != bindparam("incident_id"),
            exists().where(
                _incident_minerals.c.incident_id == _incidents.c.id,
                bulk.among_bound(
                    _incident_minerals.c.mineral_code, "minerals", postgresql=postgresql
                ),
            ),
        )
        .order_by(_incidents.c.reported_at.desc())
        .limit(10)
    )


@dataclass(frozen=True)
class DuplicateHint:
    id: uuid.UUID
    key: str
    title: str
    status: str


def _hints_of(visible: ColumnElement[bool], *, postgresql: bool) -> ScalarSelect[Any]:
    """The duplicate hint a user sees (``visible``: their visibility rule), as one JSON
    value: [id, key, title, status, rank] per incident (rank 1 the newest), for a statement
    that has other work to do."""
    hinted = (
        _duplicates_query(postgresql=postgresql)
        .where(visible)
        .add_columns(func.row_number().over(order_by=_incidents.c.reported_at.desc()))
        .subquery()
    )
    return select(json_rows(*hinted.c)).scalar_subquery()


def _hints(value: list[list[Any]] | None) -> list[DuplicateHint]:
    ranked = sorted(value or [], key=lambda row: row[4])
    return [DuplicateHint(uuid.UUID(i), key, title, status) for i, key, title, status, _ in ranked]


# --- writing ----------------------------------------------------------------------------


async def _check_minerals(session: AsyncSession, codes: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(codes))
    known = set((await session.scalars(select(Mineral.code).where(Mineral.code.in_(wanted)))).all())
    _refuse_unknown(wanted, known)
    return wanted


def _refuse_unknown(wanted: Sequence[str], known: set[str]) -> None:
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise InvalidInput("minerals", f"unknown mineral codes: {', '.join(unknown)}")


_counters = table_of(Counter)
_minerals = table_of(Mineral)


# PostgreSQL numbers incidents from this sequence (no lock: concurrent creates run side by
# side); SQLite from the ``incident_key`` counter row, since its single writer takes creates
# one at a time anyway.
_INCIDENT_NUMBERS = SqlSequence("incident_numbers")


@lru_cache(maxsize=4096)
def _numbering(visible: ColumnElement[bool], *, postgresql: bool) -> Select[Any] | Update:
    """The next incident number, how many of the wanted mineral codes exist, and the
    duplicate hint of a user whose visibility rule is ``visible``, in one statement: built
    once per rule (``visible_to`` keeps one per user), so a create spends nothing on
    building or keying it."""
    known = (
        select(func.count())
        .select_from(_minerals)
        .where(bulk.among_bound(_minerals.c.code, "codes", postgresql=postgresql))
        .scalar_subquery()
    )
    hints = _hints_of(visible, postgresql=postgresql)
    if postgresql:
        # A number is drawn only once every code is known, so a refused create uses none.
        counted = select(known.label("known")).cte("counted")
        drawn = case((counted.c.known == bindparam("wanted"), _INCIDENT_NUMBERS.next_value()))
        return select(drawn, counted.c.known, hints).select_from(counted)
    return (
        update(_counters)
        .where(_counters.c.name == KEY_COUNTER)
        .values(value=_counters.c.value + 1)
        .returning(_counters.c.value, known, hints)
    )


async def _next_number(
    session: AsyncSession, user: User, minerals: Sequence[str], hint: dict[str, Any]
) -> tuple[int, list[DuplicateHint]]:
    """The next incident number, once every mineral code is known (else 422), and in the
    same round trip the duplicate hint (``hint``: its parameters). Numbers are unique and
    increasing. On SQLite the counter is rolled back with a failed create, so keys have no
    gaps; on PostgreSQL a create that fails after drawing its number (a lost connection, a
    server error; never a refused input) leaves that number unused."""
    statement = _numbering(visible_to(user), postgresql=bulk.is_postgresql(session))
    parameters = {"codes": list(minerals), "wanted": len(minerals), **hint}
    row = (await session.execute(statement, parameters)).one_or_none()
    assert row is not None, "the incident key counter is seeded by migration"
    number, known, hints = row
    if known != len(minerals):
        await _check_minerals(session, minerals)  # names the unknown codes
    return int(number), _hints(hints)


def _impact_values(data: IncidentCreate | IncidentUpdate, fields: set[str]) -> dict[str, Any]:
    dumped = data.model_dump(mode="json", include=fields)
    python = data.model_dump(include=fields)
    # Keep datetimes as datetimes, JSON-ish structures as plain JSON.
    return {k: python[k] if k == "effective_at" else dumped[k] for k in fields}


_CREATE_FIELDS = frozenset(IncidentCreate.model_fields) - {"minerals", "status"}


@dataclass(frozen=True)
class Created:
    incident: Incident
    # Open incidents the reporter sees, on an overlapping mineral and the same category,
    # reported in the window before this one (newest first): a hint, never a block.
    possible_duplicates: list[DuplicateHint]


async def create(session: AsyncSession, principal: Principal, data: IncidentCreate) -> Created:
    """Report an incident in one INSERT that already holds what a create would otherwise
    write back: its priority and its timeline head (the first event is hashed first)."""
    user = principal.user
    require(at_least(user.role, "responder"), "Reporting incidents needs the responder role")
    minerals = list(dict.fromkeys(data.minerals))
    now = clock.now()
    values = _impact_values(data, set(_CREATE_FIELDS))
    score = await priority.score_new(
        session,
        severity=values["severity"],
        supply_share_pct=values["supply_share_affected_pct"],
        days_of_cover=values["days_of_cover"],
        sectors=values["affected_sectors"],
        effective_at=values["effective_at"],
        minerals=minerals,
        now=now,
    )
    incident_id = new_id()
    number, hints = await _next_number(
        session,
        user,
        minerals,
        {
            "category": values["category"],
            "since": now - DUPLICATE_WINDOW,
            "incident_id": incident_id,
            "minerals": minerals,
        },
    )
    key = format_key(number)
    actor = Actor.of(principal)
    opened = timeline.opening_event(
        session,
        NewEvent(
            incident_id,
            actor,
            "incident.created",
            {"key": key, "status": data.status, **data.model_dump(mode="json")},
            now,
            new_chain=True,
        ),
    )
    incident = Incident(
        id=incident_id,
        number=number,
        key=key,
        status=data.status,
        reporter_id=user.id,
        reporter_ministry_id=user.ministry_id,
        reported_at=now,
        last_activity_at=opened.at,
        created_at=now,
        updated_at=now,
        event_count=opened.seq,
        last_event_hash=opened.hash,
        priority_score=score.score,
        priority_breakdown=score.as_json(),
        priority_computed_at=now,
        mineral_links=(
            links := [IncidentMineral(incident_id=incident_id, mineral_code=c) for c in minerals]
        ),
        participant_links=[],
        **values,
    )
    # The incident, its minerals, its first event and its outbox rows travel together.
    async with bulk.one_statement(session):
        await bulk.insert_rows(session, _incidents, [row_of(incident)])
        await bulk.insert_rows(session, _incident_minerals, [row_of(link) for link in links])
        await emit_many(
            session,
            [
                Event(
                    incident_id,
                    actor,
                    opened.type,
                    opened.data,
                    now,
                    key,
                    incident,
                    new_chain=True,
                    opened=opened,
                    scored=True,
                )
            ],
        )
    # Not read back: the reporter is named on it, so sees it, and the session holds every
    # column as written (the timeline head and the priority included).
    adopt(session, incident, *links)
    return Created(incident, hints)


async def update_fields(
    session: AsyncSession,
    principal: Principal,
    incident: Incident,
    expected: int,
    data: IncidentUpdate,
) -> Incident:
    user = principal.user
    require(
        may_edit_incident(user, incident),
        "Only the reporter, the owners and leads may edit an incident",
    )
    check_version(incident, expected)
    require_open(incident)
    changes = requested_changes(data)
    triage = TRIAGE_FIELDS & changes.keys()
    if triage:
        require(
            may_triage(user, incident),
            f"Only leads and owners may change {', '.join(sorted(triage))}",
        )
    codes = (
        await _check_minerals(session, changes.pop("minerals")) if "minerals" in changes else None
    )
    before, after = apply_changes(incident, _impact_values(data, set(changes)))
    if codes is not None and codes != incident.minerals:
        before["minerals"], after["minerals"] = incident.minerals, codes
        incident.mineral_links = [IncidentMineral(mineral_code=c) for c in codes]
    if not after:
        return incident  # nothing changed: no new version, no event
    incident.updated_at = clock.now()
    await session.flush()  # conditional on the version: a concurrent change makes this 412
    if "tlp" in after:
        await _keep_in_sight_of(user, session, incident, "tlp")
        await _keep_assignees_in_sight(
            session, incident, lambda names: InvalidInput("tlp", _out_of_sight(names))
        )
    await emit(
        session,
        incident,
        Actor.of(principal),
        "incident.updated",
        {"before": before, "after": after},
    )
    return await get_visible(session, user, incident.id)


async def facts(
    session: AsyncSession, user: User, incident: Incident, request: TransitionRequest | None
) -> IncidentFacts:
    """The snapshot the lifecycle guards read."""
    live, open_ = await action_counts(session, incident.id)
    duplicate_ok = True
    if request is not None and request.duplicate_of:
        try:
            other = await get_visible(session, user, request.duplicate_of, details=False)
            duplicate_ok = other.id != incident.id
        except NotFound:
            duplicate_ok = False
    signed = await current_signoffs(session, [incident])
    ministries = {s.ministry_code for s in signed[incident.id]}
    return IncidentFacts(
        severity=incident.severity,
        has_doe_owner=incident.doe_owner_id is not None,
        has_meti_owner=incident.meti_owner_id is not None,
        live_actions=live,
        open_actions=open_,
        reason=request.reason if request else None,
        resolution_summary=(request.resolution_summary if request else None) or None,
        duplicate_of_valid=duplicate_ok,
        doe_signed_off="DOE" in ministries,
        meti_signed_off="METI" in ministries,
    )


async def transition(
    session: AsyncSession,
    principal: Principal,
    incident: Incident,
    expected: int,
    request: TransitionRequest,
    *,
    locked: bool = False,
) -> Incident:
    """Move the incident (``locked``: it was read with ``get_visible(lock=True)`` in this
    transaction, so its timeline head is current and is written with the move itself)."""
    user = principal.user
    require(may_triage(user, incident), "Only leads, admins and the incident's owners may move it")
    check_version(incident, expected)
    source, target = incident.status, request.to
    INCIDENT_LIFECYCLE.check(source, target, await facts(session, user, incident, request))
    # Every query comes before the incident changes: a query after it would autoflush the
    # change early and bump the version twice for one transition.
    duplicate = (
        await get_visible(session, user, request.duplicate_of, details=False)
        if target == "rejected" and request.duplicate_of
        else None
    )
    now = clock.now()
    data: dict[str, Any] = {"from": source, "to": target}
    if request.reason:
        data["reason"] = request.reason
    actor = Actor.of(principal)
    cancelled = (
        await _cancel_actions(session, incident, actor, data, now)
        if target in INCIDENT_LIFECYCLE.terminal
        else []
    )
    incident.status = target
    incident.updated_at = now
    if source == "watch" and target == "reported":
        incident.reported_at = now  # the triage clock starts when it is declared
    elif target == "triaged":
        incident.triaged_at = now
    elif target == "rejected":
        incident.rejection_reason = request.reason
        if duplicate is not None:
            incident.duplicate_of_id = duplicate.id
            data["duplicate_of"] = duplicate.key
    elif target == "resolved":
        incident.resolved_at = now
        incident.resolution_summary = request.resolution_summary
        incident.resolution_round += 1  # earlier sign-offs no longer count
        data["resolution_summary"] = request.resolution_summary
    elif target == "closed":
        incident.closed_at = now
    elif source == "resolved" and target == "responding":
        incident.resolved_at = None  # reopened: sign-offs of the old resolution are void
        incident.resolution_round += 1
        data["reopened"] = True
    if not locked:
        await session.flush()
    events = [
        Event(
            incident.id,
            actor,
            "incident.status_changed",
            data,
            now,
            incident.key,
            incident,
            head_in_row=locked,
        ),
        *cancelled,
    ]
    await emit_many(session, events)
    # Not read back: a move changes nothing visibility reads, and the session holds every
    # column as written (the version and timeline head included).
    return incident


async def _cancel_actions(
    session: AsyncSession,
    incident: Incident,
    actor: Actor,
    change: dict[str, Any],
    now: datetime,
) -> list[Event]:
    """An ended incident's open actions are cancelled (nobody works on, or is reminded of,
    the actions of a rejected or closed incident), each change on the timeline."""
    reason = f"The incident was {change['to']}" + (
        f": {change['reason']}" if change.get("reason") else ""
    )
    cancelled = await cancel_open_actions(session, incident.id, reason, now)
    return [
        Event(
            incident.id,
            actor,
            "action.status_changed",
            {"action_id": action_id, "from": source, "to": "cancelled", "note": reason},
            now,
            incident.key,
        )
        for action_id, source in cancelled
    ]


def _out_of_sight(names: Sequence[str]) -> str:
    return (
        f"{', '.join(names)} would no longer see the incident but are assigned open actions "
        "on it: name them as participants or reassign those actions first"
    )


async def _keep_assignees_in_sight(
    session: AsyncSession, incident: Incident, refusal: Callable[[list[str]], AppError]
) -> None:
    """Refuse a change (already flushed, so the whole request rolls back) that would leave
    an assignee of an open action unable to see the incident."""
    names = await assignees_out_of_sight(session, incident.id)
    if names:
        raise refusal(names)


async def _keep_in_sight_of(
    user: User, session: AsyncSession, incident: Incident, field: str
) -> None:
    """Refuse a change (already flushed, so the whole request rolls back) after which the
    user making it could no longer see the incident: a 422 naming the field, not a 404."""
    still = await session.scalar(
        select(Incident.id).where(Incident.id == incident.id, visible_to(user))
    )
    if still is None:
        raise InvalidInput(
            field,
            "you would no longer see the incident after this change: name yourself as a "
            "participant first",
        )


async def _active_user(session: AsyncSession, user_id: uuid.UUID, field: str) -> User:
    user = await session.get(User, user_id)
    if user is None or not user.active:
        raise InvalidInput(field, "no such active user")
    return user


def _new_version(incident: Incident, now: datetime) -> None:
    """A change held in another table (participants, sign-offs) still changes the incident:
    its row is updated even if ``updated_at`` is unchanged, so its version (ETag) moves."""
    incident.updated_at = now
    flag_modified(incident, "updated_at")


def require_open(incident: Incident) -> None:
    if incident.status in INCIDENT_LIFECYCLE.terminal:
        raise Conflict(f"The incident is {incident.status}")


async def assign_owner(
    session: AsyncSession,
    principal: Principal,
    incident: Incident,
    ministry: str,
    user_id: uuid.UUID,
    expected: int | None,
) -> Incident:
    actor = principal.user
    ministry = ministry.upper()
    if ministry not in CO_LEAD_CODES:
        raise NotFound(f"Owners are per co-lead ministry: {', '.join(CO_LEAD_CODES)}")
    require(
        may_triage(actor, incident),
        "Only leads, admins and the incident's owners may assign owners",
    )
    if expected is not None:
        check_version(incident, expected)
    require_open(incident)
    owner = await _active_user(session, user_id, "user_id")
    if owner.ministry.code != ministry:
        raise InvalidInput("user_id", f"the {ministry} owner must be a user of {ministry}")
    if not at_least(owner.role, "responder"):
        raise InvalidInput("user_id", "an owner must be a responder or above; viewers cannot own")
    column = OWNER_COLUMNS[ministry]
    previous = getattr(incident, column)
    if previous == owner.id:
        return incident
    setattr(incident, column, owner.id)
    incident.updated_at = clock.now()
    await session.flush()
    if previous is not None:
        await _keep_in_sight_of(actor, session, incident, "user_id")
        await _keep_assignees_in_sight(
            session, incident, lambda names: Conflict(_out_of_sight(names))
        )
    await emit(
        session,
        incident,
        Actor.of(principal),
        "incident.owner_assigned",
        {"ministry": ministry, "before": previous, "after": owner.id},
    )
    return await get_visible(session, actor, incident.id)


async def add_participant(
    session: AsyncSession, principal: Principal, incident: Incident, user_id: uuid.UUID
) -> Incident:
    actor = principal.user
    require(
        may_name_participants(actor, incident),
        "Only the incident's owners, leads and its reporter may add participants",
    )
    require_open(incident)
    user = await _active_user(session, user_id, "user_id")
    if any(link.user_id == user.id for link in incident.participant_links):
        return incident
    now = clock.now()
    incident.participant_links.append(
        IncidentParticipant(
            incident_id=incident.id, user_id=user.id, added_at=now, added_by_id=actor.id
        )
    )
    _new_version(incident, now)  # who may see it changed
    await session.flush()
    await emit(
        session,
        incident,
        Actor.of(principal),
        "incident.participant_added",
        {"user_id": user.id},
    )
    return await get_visible(session, actor, incident.id)


async def remove_participant(
    session: AsyncSession, principal: Principal, incident: Incident, user_id: uuid.UUID
) -> None:
    """Take someone off the incident: unless named otherwise (reporter, owner) or allowed by
    the marking, they no longer see it. Allowed on ended incidents too: narrowing who sees
    an incident is always safe."""
    actor = principal.user
    require(
        may_name_participants(actor, incident),
        "Only the incident's owners, leads and its reporter may remove participants",
    )
    link = next((p for p in incident.participant_links if p.user_id == user_id), None)
    if link is None:
        raise NotFound("That user is not a participant of this incident")
    incident.participant_links.remove(link)
    _new_version(incident, clock.now())
    await session.flush()
    await _keep_assignees_in_sight(session, incident, lambda names: Conflict(_out_of_sight(names)))
    await emit(
        session,
        incident,
        Actor.of(principal),
        "incident.participant_removed",
        {"user_id": user_id},
    )


async def add_comment(
    session: AsyncSession, principal: Principal, incident: Incident, body: str
) -> TimelineEvent:
    require(at_least(principal.user.role, "responder"), "Commenting needs the responder role")
    return await emit(session, incident, Actor.of(principal), "comment.created", {"body": body})


async def sign_off(
    session: AsyncSession, principal: Principal, incident: Incident, note: str | None
) -> Incident:
    """A DOE or METI lead (or that ministry's owner) signs off the current resolution."""
    user = principal.user
    ministry = user.ministry.code
    owner_of = [m for m, col in OWNER_COLUMNS.items() if getattr(incident, col) == user.id]
    eligible = ministry in CO_LEAD_CODES and (at_least(user.role, "lead") or ministry in owner_of)
    require(eligible, "Only a lead or owner of DOE or METI may sign off")
    if incident.status != "resolved":
        raise Conflict("Only a resolved incident can be signed off")
    signed = await current_signoffs(session, [incident])
    if any(s.ministry_code == ministry for s in signed[incident.id]):
        raise Conflict(f"{ministry} has already signed off this resolution")
    now = clock.now()
    session.add(
        IncidentSignoff(
            incident_id=incident.id,
            resolution_round=incident.resolution_round,
            ministry_code=ministry,
            user_id=user.id,
            at=now,
            note=note,
        )
    )
    _new_version(incident, now)  # what closing needs changed
    await session.flush()
    await emit(
        session,
        incident,
        Actor.of(principal),
        "incident.signed_off",
        {"ministry": ministry, "resolution_round": incident.resolution_round, "note": note},
    )
    return incident
