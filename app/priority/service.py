"""Priority weights (admins of a co-lead ministry; every change recorded) and the
set-based recompute that stores each incident's score and breakdown.

When a recompute runs:
- an incident's own write paths: ``refresh_for_events``, called by ``app.events.emit_many``
  in the writing transaction, recomputes the incidents whose inputs an event changed
  (``PRIORITY_FIELDS``) and nothing else;
- a profile, a concern list or the weights: ``recompute_open`` recomputes the open
  incidents they move in the request when there are at most ``INLINE_LIMIT``, and otherwise
  queues a ``PriorityRecomputeJob`` that the worker works through in batches
  (``run_recompute_jobs``), so the request returns at once;
- time: the worker's ``rescore_by_time`` recomputes the scores whose time-to-effect
  component can still move.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app import clock
from app.auth import permissions
from app.auth.service import Principal
from app.caches import ProcessCache
from app.countries import CO_LEAD_COUNTRIES
from app.db import Database, table_of
from app.deps import check_preconditions
from app.errors import Forbidden, InvalidInput
from app.incidents.models import Incident, IncidentMineral
from app.incidents.states import OPEN_STATUSES
from app.kit.pagination import Key, Order, paginate
from app.kit.sql import constants
from app.priority.models import (
    WEIGHTS_NAME,
    PriorityRecomputeJob,
    PriorityWeights,
    PriorityWeightsChange,
)
from app.priority.score import (
    COMPONENTS,
    EFFECT_HORIZON_DAYS,
    Priority,
    Weights,
    inputs_for,
    priority,
)
from app.register.models import ConcernList
from app.register.queries import CurrentProfiles, current_profiles

logger = logging.getLogger("rrg.priority")

# Incidents read and written per round trip (well under every driver's parameter limit).
CHUNK = 1000
# The most open incidents a request recomputes itself; beyond, the worker does (in batches
# of CHUNK, one transaction each) and the request only queues the work.
INLINE_LIMIT = 500
# The incident fields the score reads (app.priority.score.inputs_for), as the timeline's
# incident.updated events name them.
PRIORITY_FIELDS = frozenset(
    {
        "severity",
        "supply_share_affected_pct",
        "days_of_cover",
        "affected_sectors",
        "effective_at",
        "minerals",
    }
)


def weights_of(row: PriorityWeights | None) -> Weights:
    if row is None:
        return Weights()
    return Weights(dict(row.components), dict(row.sectors), row.version)


async def weights_row(session: AsyncSession, *, lock: bool = False) -> PriorityWeights | None:
    return await session.get(PriorityWeights, WEIGHTS_NAME, with_for_update=lock)


_weights = table_of(PriorityWeights)
_concern_lists = table_of(ConcernList)


def _scalar(table: Any, column: str, key_column: str, key: str) -> Any:
    return select(table.c[column]).where(table.c[key_column] == key).scalar_subquery()


# Everything a score reads besides the incident and its minerals' profiles, in one round
# trip that always returns one row: the weights (NULL while never set) and each co-lead
# ministry's countries of concern (NULL while never set).
_settings_query = select(
    *(_scalar(_weights, c, "name", WEIGHTS_NAME).label(c) for c in ("components", "sectors")),
    _scalar(_weights, "version", "name", WEIGHTS_NAME).label("version"),
    *(
        _scalar(_concern_lists, "countries", "ministry_code", ministry).label(country)
        for country, ministry in CO_LEAD_COUNTRIES.items()
    ),
)


async def _read_settings(session: AsyncSession) -> tuple[Weights, dict[str, frozenset[str]]]:
    row = (await session.execute(_settings_query)).one()
    weights = (
        Weights()
        if row.version is None
        else Weights(dict(row.components), dict(row.sectors), row.version)
    )
    concern = {country: frozenset(row._mapping[country] or ()) for country in CO_LEAD_COUNTRIES}
    return weights, concern


_settings = ProcessCache(("priority_weights", "concern_lists"), _read_settings)


async def load_settings(session: AsyncSession) -> tuple[Weights, dict[str, frozenset[str]]]:
    """The weights and, per co-lead country, the countries of concern its ministry lists
    (as ``weights_row`` and ``app.register.queries.concern_by_country`` read them), in one
    query, kept by the process until either changes. Read-only: the value is shared."""
    return await _settings.get(session)


async def _read_all_profiles(session: AsyncSession) -> CurrentProfiles:
    profiles = await current_profiles(session)
    for profile in profiles.values():
        session.expunge(profile)  # shared between sessions: no session's rollback expires it
    return profiles


# Every current profile: the register is small and changes rarely.
_profiles = ProcessCache(("dependency_profiles",), _read_all_profiles)


def _as_dict(weights: Weights) -> dict[str, Any]:
    return {"components": dict(weights.components), "sectors": dict(weights.sectors)}


async def set_weights(
    session: AsyncSession, principal: Principal, new: Weights, if_match: str | None
) -> tuple[PriorityWeights, int]:
    """Replace the weights (If-Match: the version read), record the change and recompute
    every open incident. Returns the row and how many incidents were recomputed."""
    user = principal.user
    if not permissions.may_set_weights(user):
        raise Forbidden("Only admins of a co-lead ministry may change the priority weights")
    if sum(float(new.components[c]) for c in COMPONENTS) <= 0:
        raise InvalidInput("components", "at least one weight must be positive")
    row = await weights_row(session, lock=True)
    current = weights_of(row)
    check_preconditions(current.version, if_match)
    now = clock.now()
    if row is None:
        row = PriorityWeights(name=WEIGHTS_NAME, version=0)
        session.add(row)
    row.components, row.sectors = dict(new.components), dict(new.sectors)
    row.version = current.version + 1
    row.updated_at, row.updated_by_id = now, user.id
    session.add(
        PriorityWeightsChange(
            version=row.version,
            at=now,
            changed_by_id=user.id,
            before=_as_dict(current),
            after=_as_dict(new),
        )
    )
    await session.flush()
    return row, await recompute_open(session, reason="weights")


CHANGES_ORDER = Order("weight_changes", Key(PriorityWeightsChange.version, "int", descending=True))


async def weight_changes(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[PriorityWeightsChange], str | None]:
    """One page of the changes to the weights, newest first."""
    return await paginate(
        session, select(PriorityWeightsChange), CHANGES_ORDER, limit=limit, cursor=cursor
    )


def _open_on(minerals: Collection[str] | None) -> list[ColumnElement[bool]]:
    """Open incidents (on any of these minerals; None: all)."""
    where: list[ColumnElement[bool]] = [Incident.status.in_(constants(OPEN_STATUSES))]
    if minerals is not None:
        where.append(
            select(IncidentMineral.incident_id)
            .where(
                IncidentMineral.incident_id == Incident.id,
                IncidentMineral.mineral_code.in_(sorted(set(minerals))),
            )
            .exists()
        )
    return where


async def open_incident_ids(
    session: AsyncSession,
    minerals: Collection[str] | None = None,
    *,
    after: uuid.UUID | None = None,
    limit: int | None = None,
) -> list[uuid.UUID]:
    """Open incidents (on any of these minerals; None: all), in id order, after ``after``."""
    query = select(Incident.id).where(*_open_on(minerals))
    if after is not None:
        query = query.where(Incident.id > after)
    return list((await session.scalars(query.order_by(Incident.id).limit(limit))).all())


async def recompute_open(
    session: AsyncSession, minerals: Collection[str] | None = None, *, reason: str = "register"
) -> int:
    """Recompute the open incidents (on these minerals; None: all), here when they are few,
    else by queueing a job for the worker; returns how many are recomputed or queued."""
    ids = await open_incident_ids(session, minerals, limit=INLINE_LIMIT + 1)
    if len(ids) <= INLINE_LIMIT:
        return await recompute_priority(session, ids)
    session.add(
        PriorityRecomputeJob(
            reason=reason,
            minerals=sorted(set(minerals)) if minerals is not None else None,
            requested_at=clock.now(),
            recomputed=0,
        )
    )
    counted = await session.scalar(
        select(func.count()).select_from(Incident).where(*_open_on(minerals))
    )
    return int(counted or 0)


async def score_new(
    session: AsyncSession,
    *,
    severity: str | None,
    supply_share_pct: float | None,
    days_of_cover: dict[str, Any] | None,
    sectors: list[str] | None,
    effective_at: datetime | None,
    minerals: Collection[str],
    now: datetime,
) -> Priority:
    """The priority of an incident about to be written, from the values it is written with:
    its create stores the score in its own INSERT instead of reading it back to recompute."""
    weights, concern = await load_settings(session)
    codes = sorted(set(minerals))  # the order recompute_priority reads them in
    profiles = await _profiles.get(session)
    return priority(
        inputs_for(
            severity=severity,
            supply_share_pct=supply_share_pct,
            days_of_cover=days_of_cover or {},
            sectors=sectors or [],
            effective_at=effective_at,
            minerals=codes,
            profiles=profiles,
            concern=concern,
        ),
        weights,
        now,
    )


async def refresh_for_events(
    session: AsyncSession, events: Iterable[tuple[uuid.UUID, str, dict[str, Any]]]
) -> None:
    """Recompute, in the writing transaction, the incidents whose priority inputs these
    domain events (incident id, type, data) changed: a new incident not scored by its
    create (``score_new``), or an edit of a field the score reads. Every other event costs
    nothing."""
    changed = [
        incident_id
        for incident_id, type_, data in events
        if type_ == "incident.created"
        or (type_ == "incident.updated" and not PRIORITY_FIELDS.isdisjoint(data.get("after", ())))
    ]
    if changed:
        await recompute_priority(session, changed)


async def run_recompute_jobs(db: Database, *, batch: int = CHUNK) -> int:
    """Work through the queued recompute jobs, oldest first, one batch of incidents per
    transaction (a job row locked while its batch runs, so several workers share the
    queue); returns how many incidents were recomputed."""
    total = 0
    while True:
        async with db.unit_of_work() as session:
            job = await session.scalar(
                select(PriorityRecomputeJob)
                .where(PriorityRecomputeJob.finished_at.is_(None))
                .order_by(PriorityRecomputeJob.requested_at, PriorityRecomputeJob.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if job is None:
                return total
            ids = await open_incident_ids(session, job.minerals, after=job.after_id, limit=batch)
            done = await recompute_priority(session, ids)
            total += done
            job.recomputed += done
            if len(ids) < batch:
                job.finished_at = clock.now()
                logger.info(
                    "priority recompute (%s) finished: %d incidents", job.reason, job.recomputed
                )
            else:
                job.after_id = ids[-1]


async def rescore_by_time(db: Database, *, batch: int = CHUNK) -> int:
    """Recompute the open incidents whose time-to-effect component can still move: those
    taking effect within the horizon, and those that took effect since last computed (once
    past, the component stays at its maximum). One batch per transaction; returns how many."""
    total = 0
    after: uuid.UUID | None = None
    while True:
        now = clock.now()
        async with db.unit_of_work() as session:
            query = (
                select(Incident.id)
                .where(
                    Incident.status.in_(constants(OPEN_STATUSES)),
                    Incident.effective_at < now + timedelta(days=EFFECT_HORIZON_DAYS),
                    or_(
                        Incident.priority_computed_at.is_(None),
                        Incident.priority_computed_at < Incident.effective_at,
                    ),
                )
                .order_by(Incident.id)
                .limit(batch)
            )
            if after is not None:
                query = query.where(Incident.id > after)
            ids = list((await session.scalars(query)).all())
            total += await recompute_priority(session, ids, now=now)
        if len(ids) < batch:
            return total
        after = ids[-1]


async def recompute_priority(
    session: AsyncSession, incident_ids: Iterable[uuid.UUID], *, now: datetime | None = None
) -> int:
    """Recompute and store ``priority_score`` and ``priority_breakdown`` for these incidents,
    in the caller's transaction, in a fixed number of statements per thousand incidents.

    Call it after any input changes (incident fields, minerals, profiles, countries of
    concern, weights). It changes neither the incidents' version (ETag) nor ``updated_at``,
    and keeps incidents already loaded in the session in step. Rows are written in id
    order, so concurrent recomputes never deadlock.
    """
    ids = sorted(set(incident_ids))
    if not ids:
        return 0
    now = now or clock.now()
    weights, concern = await load_settings(session)
    incidents = table_of(Incident)
    statement = (
        update(incidents)
        .where(incidents.c.id == bindparam("b_id"))
        .values(
            priority_score=bindparam("b_score", type_=incidents.c.priority_score.type),
            priority_breakdown=bindparam("b_breakdown", type_=incidents.c.priority_breakdown.type),
            priority_computed_at=now,
            updated_at=incidents.c.updated_at,  # not an edit: leave the column's onupdate out
        )
    )
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        minerals: dict[uuid.UUID, list[str]] = defaultdict(list)
        for incident_id, code in await session.execute(
            select(IncidentMineral.incident_id, IncidentMineral.mineral_code)
            .where(IncidentMineral.incident_id.in_(chunk))
            .order_by(IncidentMineral.incident_id, IncidentMineral.mineral_code)
        ):
            minerals[incident_id].append(code)
        profiles = await current_profiles(
            session, {c for codes in minerals.values() for c in codes}
        )
        rows = await session.execute(
            select(
                Incident.id,
                Incident.severity,
                Incident.supply_share_affected_pct,
                Incident.days_of_cover,
                Incident.affected_sectors,
                Incident.effective_at,
            ).where(Incident.id.in_(chunk))
        )
        params = []
        for incident_id, severity, share, cover, sectors, effective_at in rows:
            result = priority(
                inputs_for(
                    severity=severity,
                    supply_share_pct=share,
                    days_of_cover=cover or {},
                    sectors=sectors or [],
                    effective_at=effective_at,
                    minerals=minerals[incident_id],
                    profiles=profiles,
                    concern=concern,
                ),
                weights,
                now,
            )
            params.append(
                {"b_id": incident_id, "b_score": result.score, "b_breakdown": result.as_json()}
            )
        params.sort(key=lambda p: p["b_id"])
        if params:
            await session.execute(statement, params)
            _sync_loaded(session, params, now)
    return len(ids)


def _sync_loaded(
    session: AsyncSession, params: list[dict[str, Any]], computed_at: datetime
) -> None:
    """Incidents already in the session get the stored values too (without becoming
    dirty: the database has them)."""
    stored = {p["b_id"]: p for p in params}
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, Incident) and (p := stored.get(loaded.id)) is not None:
            set_committed_value(loaded, "priority_score", p["b_score"])
            set_committed_value(loaded, "priority_breakdown", p["b_breakdown"])
            set_committed_value(loaded, "priority_computed_at", computed_at)
