"""Priority weights (admins of a co-lead ministry; every change recorded) and the
set-based recompute that stores each incident's score and breakdown."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app import clock
from app.auth.models import User
from app.auth.service import Principal
from app.db import table_of
from app.deps import check_preconditions
from app.errors import Forbidden, InvalidInput
from app.incidents.models import Incident, IncidentMineral
from app.incidents.states import OPEN_STATUSES
from app.kit.pagination import Key, Order, paginate
from app.priority.models import WEIGHTS_NAME, PriorityWeights, PriorityWeightsChange
from app.priority.score import COMPONENTS, Weights, inputs_for, priority
from app.register.queries import concern_by_country, current_profiles

# Incidents read and written per round trip (well under every driver's parameter limit).
CHUNK = 1000


def may_set_weights(user: User) -> bool:
    """Admins of a co-lead ministry (SPEC §1)."""
    return user.role == "admin" and user.ministry.is_co_lead


def weights_of(row: PriorityWeights | None) -> Weights:
    if row is None:
        return Weights()
    return Weights(dict(row.components), dict(row.sectors), row.version)


async def weights_row(session: AsyncSession, *, lock: bool = False) -> PriorityWeights | None:
    return await session.get(PriorityWeights, WEIGHTS_NAME, with_for_update=lock)


async def load_weights(session: AsyncSession) -> Weights:
    return weights_of(await weights_row(session))


def _as_dict(weights: Weights) -> dict[str, Any]:
    return {"components": dict(weights.components), "sectors": dict(weights.sectors)}


async def set_weights(
    session: AsyncSession, principal: Principal, new: Weights, if_match: str | None
) -> tuple[PriorityWeights, int]:
    """Replace the weights (If-Match: the version read), record the change and recompute
    every open incident. Returns the row and how many incidents were recomputed."""
    user = principal.user
    if not may_set_weights(user):
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
    return row, await recompute_open(session)


CHANGES_ORDER = Order("weight_changes", Key(PriorityWeightsChange.version, "int", descending=True))


async def weight_changes(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[PriorityWeightsChange], str | None]:
    """One page of the changes to the weights, newest first."""
    return await paginate(
        session, select(PriorityWeightsChange), CHANGES_ORDER, limit=limit, cursor=cursor
    )


async def open_incident_ids(
    session: AsyncSession, minerals: Collection[str] | None = None
) -> list[uuid.UUID]:
    """Open incidents (on any of these minerals; None: all), in id order."""
    query = select(Incident.id).where(Incident.status.in_(OPEN_STATUSES))
    if minerals is not None:
        query = query.where(
            select(IncidentMineral.incident_id)
            .where(
                IncidentMineral.incident_id == Incident.id,
                IncidentMineral.mineral_code.in_(sorted(set(minerals))),
            )
            .exists()
        )
    return list((await session.scalars(query.order_by(Incident.id))).all())


async def recompute_open(session: AsyncSession, minerals: Collection[str] | None = None) -> int:
    """Recompute the open incidents (on these minerals; None: all); returns how many."""
    return await recompute_priority(session, await open_incident_ids(session, minerals))


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
    weights = await load_weights(session)
    concern = await concern_by_country(session)
    incidents = table_of(Incident)
    statement = (
        update(incidents)
        .where(incidents.c.id == bindparam("b_id"))
        .values(
            priority_score=bindparam("b_score", type_=incidents.c.priority_score.type),
            priority_breakdown=bindparam("b_breakdown", type_=incidents.c.priority_breakdown.type),
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
            _sync_loaded(session, params)
    return len(ids)


def _sync_loaded(session: AsyncSession, params: list[dict[str, Any]]) -> None:
    """Incidents already in the session get the stored values too (without becoming
    dirty: the database has them)."""
    stored = {p["b_id"]: p for p in params}
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, Incident) and (p := stored.get(loaded.id)) is not None:
            set_committed_value(loaded, "priority_score", p["b_score"])
            set_committed_value(loaded, "priority_breakdown", p["b_breakdown"])
