"""ORM incidents and timeline events → API shapes (shared by the API and the web client)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.incidents.models import Incident, IncidentMineral, IncidentParticipant, IncidentSignoff
from app.incidents.schemas import (
    ActorOut,
    IncidentOut,
    Owners,
    SignoffOut,
    TimelineEventOut,
    UserRef,
)
from app.ministries.models import Ministry
from app.timeline.models import TimelineEvent

_COMPOSED = {"minerals", "reporter", "owners", "participants", "signoffs", "duplicate_of"}
_PLAIN_FIELDS = [name for name in IncidentOut.model_fields if name not in _COMPOSED]


async def user_refs(
    session: AsyncSession, ids: Iterable[uuid.UUID | None]
) -> dict[uuid.UUID, UserRef]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(
        select(User.id, User.display_name, User.email, Ministry.code)
        .join(Ministry, Ministry.id == User.ministry_id)
        .where(User.id.in_(wanted))
    )
    return {
        uid: UserRef(id=uid, display_name=name, email=email, ministry=code)
        for uid, name, email, code in rows
    }


async def present_incidents(
    session: AsyncSession, incidents: Sequence[Incident]
) -> list[IncidentOut]:
    """API shapes for a page of incidents in a fixed number of queries (plain rows, no
    per-incident loading): minerals, participants, the people named, current sign-offs."""
    if not incidents:
        return []
    ids = [i.id for i in incidents]
    minerals: dict[uuid.UUID, list[str]] = defaultdict(list)
    for incident_id, code in await session.execute(
        select(IncidentMineral.incident_id, IncidentMineral.mineral_code)
        .where(IncidentMineral.incident_id.in_(ids))
        .order_by(IncidentMineral.mineral_code)
    ):
        minerals[incident_id].append(code)
    participants: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for incident_id, user_id in await session.execute(
        select(IncidentParticipant.incident_id, IncidentParticipant.user_id)
        .where(IncidentParticipant.incident_id.in_(ids))
        .order_by(IncidentParticipant.added_at)
    ):
        participants[incident_id].append(user_id)
    signoffs = await current_signoffs(session, incidents)
    refs = await user_refs(
        session,
        [
            *(uid for i in incidents for uid in (i.reporter_id, i.doe_owner_id, i.meti_owner_id)),
            *(uid for people in participants.values() for uid in people),
            *(s.user_id for rows in signoffs.values() for s in rows),
        ],
    )
    return [
        IncidentOut(
            **{name: getattr(i, name) for name in _PLAIN_FIELDS},
            minerals=minerals[i.id],
            duplicate_of=i.duplicate_of_id,
            reporter=refs[i.reporter_id],
            owners=Owners(
                DOE=refs[i.doe_owner_id] if i.doe_owner_id else None,
                METI=refs[i.meti_owner_id] if i.meti_owner_id else None,
            ),
            participants=[refs[uid] for uid in participants[i.id]],
            signoffs=[
                SignoffOut(ministry=s.ministry_code, user=refs[s.user_id], at=s.at, note=s.note)
                for s in signoffs[i.id]
            ],
        )
        for i in incidents
    ]


async def current_signoffs(
    session: AsyncSession, incidents: Sequence[Incident]
) -> dict[uuid.UUID, list[IncidentSignoff]]:
    """Sign-offs of each incident's current resolution, in one query."""
    out: dict[uuid.UUID, list[IncidentSignoff]] = {i.id: [] for i in incidents}
    rounds = {i.id: i.resolution_round for i in incidents if i.resolution_round > 0}
    if not rounds:
        return out
    rows = await session.scalars(
        select(IncidentSignoff)
        .where(IncidentSignoff.incident_id.in_(list(rounds)))
        .order_by(IncidentSignoff.at)
    )
    for signoff in rows:
        if rounds[signoff.incident_id] == signoff.resolution_round:
            out[signoff.incident_id].append(signoff)
    return out


def event_out(event: TimelineEvent, refs: dict[uuid.UUID, UserRef]) -> TimelineEventOut:
    return TimelineEventOut(
        id=event.id,
        incident_id=event.incident_id,
        seq=event.seq,
        at=event.at,
        actor=ActorOut(
            kind=event.actor_kind,
            user=refs.get(event.actor_user_id) if event.actor_user_id else None,
            token_id=event.actor_token_id,
        ),
        type=event.type,
        data=event.data,
        prev_hash=event.prev_hash,
        hash=event.hash,
    )
