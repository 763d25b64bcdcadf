"""ORM incidents and timeline events → API shapes (shared by the API and the web client)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.auth.models import User
from app.incidents.models import Incident, IncidentSignoff
from app.incidents.schemas import (
    ActorOut,
    IncidentOut,
    Owners,
    SignoffOut,
    TimelineEventOut,
    user_ref,
)
from app.timeline.models import TimelineEvent


def incident_out(
    incident: Incident, signoffs: Sequence[tuple[IncidentSignoff, User]] = ()
) -> IncidentOut:
    plain: dict[str, Any] = {
        name: getattr(incident, name)
        for name in IncidentOut.model_fields
        if name not in {"reporter", "owners", "participants", "signoffs", "duplicate_of"}
    }
    return IncidentOut(
        **plain,
        duplicate_of=incident.duplicate_of_id,
        reporter=user_ref(incident.reporter),
        owners=Owners(
            DOE=user_ref(incident.doe_owner) if incident.doe_owner else None,
            METI=user_ref(incident.meti_owner) if incident.meti_owner else None,
        ),
        participants=[user_ref(link.user) for link in incident.participant_links],
        signoffs=[
            SignoffOut(ministry=s.ministry_code, user=user_ref(u), at=s.at, note=s.note)
            for s, u in signoffs
        ],
    )


def event_out(event: TimelineEvent, users: dict[Any, User]) -> TimelineEventOut:
    user = users.get(event.actor_user_id)
    return TimelineEventOut(
        id=event.id,
        incident_id=event.incident_id,
        seq=event.seq,
        at=event.at,
        actor=ActorOut(
            kind=event.actor_kind,
            user=user_ref(user) if user else None,
            token_id=event.actor_token_id,
        ),
        type=event.type,
        data=event.data,
        prev_hash=event.prev_hash,
        hash=event.hash,
    )
