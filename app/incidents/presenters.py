"""ORM incidents and timeline events → API shapes (shared by the API and the web client)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.db import table_of
from app.incidents.models import Incident, IncidentMineral, IncidentParticipant, IncidentSignoff
from app.incidents.schemas import (
    ActorOut,
    IncidentOut,
    Owners,
    SignoffOut,
    TimelineEventOut,
    UserRef,
    user_ref,
)
from app.ministries.models import Ministry
from app.timeline.models import TimelineEvent

_COMPOSED = {"minerals", "reporter", "owners", "participants", "signoffs", "duplicate_of"}
_PLAIN_FIELDS = [name for name in IncidentOut.model_fields if name not in _COMPOSED]


_users = table_of(User)
_ministries = table_of(Ministry)
_user_refs_query = select(
    _users.c.id, _users.c.display_name, _users.c.email, _ministries.c.code
).join(_ministries, _ministries.c.id == _users.c.ministry_id)
_minerals = table_of(IncidentMineral)
_minerals_query = select(_minerals.c.incident_id, _minerals.c.mineral_code).order_by(
    _minerals.c.mineral_code
)
_participants = table_of(IncidentParticipant)
_participants_query = select(_participants.c.incident_id, _participants.c.user_id).order_by(
    _participants.c.added_at
)


async def user_refs(
    session: AsyncSession, ids: Iterable[uuid.UUID | None], *, known: Iterable[User] = ()
) -> dict[uuid.UUID, UserRef]:
    """References to these users; ``known`` ones (loaded with their ministry) are not read."""
    wanted = {i for i in ids if i is not None}
    refs = {u.id: user_ref(u) for u in known if u.id in wanted}
    wanted -= refs.keys()
    if wanted:
        rows = await session.execute(_user_refs_query.where(_users.c.id.in_(wanted)))
        refs.update(
            (uid, UserRef(id=uid, display_name=name, email=email, ministry=code))
            for uid, name, email, code in rows
        )
    return refs


def _loaded(incident: Incident, relationship: str) -> bool:
    return relationship not in inspect(incident).unloaded


async def present_incidents(
    session: AsyncSession, incidents: Sequence[Incident], *, known: Iterable[User] = ()
) -> list[IncidentOut]:
    """API shapes for a page of incidents in a fixed number of queries (plain rows, no
    per-incident loading): minerals, participants, the people named, current sign-offs.
    What is already loaded (the incidents' mineral and participant links, ``known`` users
    such as the caller) is used as it is."""
    if not incidents:
        return []
    minerals: dict[uuid.UUID, list[str]] = defaultdict(list)
    participants: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    unloaded_minerals = []
    unloaded_participants = []
    for i in incidents:
        if _loaded(i, "mineral_links"):
            minerals[i.id] = sorted(link.mineral_code for link in i.mineral_links)
        else:
            unloaded_minerals.append(i.id)
        if _loaded(i, "participant_links"):
            links = sorted(i.participant_links, key=lambda link: link.added_at)
            participants[i.id] = [link.user_id for link in links]
        else:
            unloaded_participants.append(i.id)
    if unloaded_minerals:
        for incident_id, code in await session.execute(
            _minerals_query.where(_minerals.c.incident_id.in_(unloaded_minerals))
        ):
            minerals[incident_id].append(code)
    if unloaded_participants:
        for incident_id, user_id in await session.execute(
            _participants_query.where(_participants.c.incident_id.in_(unloaded_participants))
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
        known=known,
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
