"""Helpers for escalation tests: a moveable clock, a team of people, incidents and actions
set up through the API, and readers of everything a sweep writes (SPEC §4)."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from app import clock
from app.actions.models import Action
from app.db import Database
from app.escalation.models import Escalation
from app.escalation.sweep import SweepReport
from app.incidents.models import Incident
from app.notifications.models import Notification
from app.outbox.models import OutboxEvent
from app.timeline.models import TimelineEvent
from tests.conftest import Actor, MakeActor
from tests.incidents.helpers import assign, create, move

Json = dict[str, Any]
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
HOUR, DAY, SECOND = timedelta(hours=1), timedelta(days=1), timedelta(seconds=1)
ESCALATION_TYPES = ("action.escalated", "incident.escalated")

# An escalated (item, level): item_type, item id, level.
Key = tuple[str, str, int]


class Clock:
    """The service clock, frozen at ``at`` until moved (nothing sleeps)."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at
        clock.set_source(lambda: self.at)

    def set(self, at: datetime) -> datetime:
        self.at = at
        return at

    def advance(self, delta: timedelta) -> datetime:
        self.at += delta
        return self.at


@dataclass
class Team:
    """The people escalations go to. Owners are responders (not leads), so each level's
    recipients are distinct sets; the co-chairs are viewers."""

    admin: Actor
    reporter: Actor
    doe_lead: Actor
    meti_lead: Actor
    doe_owner: Actor
    meti_owner: Actor
    assignee: Actor  # DOE responder
    meti_assignee: Actor  # METI responder
    doe_chair: Actor
    meti_chair: Actor

    @property
    def owners(self) -> set[uuid.UUID]:
        return {self.doe_owner.id, self.meti_owner.id}

    @property
    def chairs(self) -> set[uuid.UUID]:
        return {self.doe_chair.id, self.meti_chair.id}


async def make_team(make_actor: MakeActor) -> Team:
    return Team(
        admin=await make_actor("admin", "DOE"),
        reporter=await make_actor("responder", "DOE"),
        doe_lead=await make_actor("lead", "DOE"),
        meti_lead=await make_actor("lead", "METI"),
        doe_owner=await make_actor("responder", "DOE"),
        meti_owner=await make_actor("responder", "METI"),
        assignee=await make_actor("responder", "DOE"),
        meti_assignee=await make_actor("responder", "METI"),
        doe_chair=await make_actor("viewer", "DOE", co_chair=True),
        meti_chair=await make_actor("viewer", "METI", co_chair=True),
    )


async def open_incident(
    client: httpx.AsyncClient,
    team: Team,
    *,
    status: str = "triaged",
    severity: str | None = "SEV2",
    reporter: Actor | None = None,
    triager: Actor | None = None,
    **fields: Any,
) -> Json:
    """An incident reported now, then (unless ``status`` is watch/reported) given the two
    owners and triaged by ``triager``; ``responding`` also proposes an undated action."""
    reporter = reporter or team.reporter
    triager = triager or team.doe_lead
    body: Json = {"severity": severity, **fields}
    if status == "watch":
        body["status"] = "watch"
    incident = await create(client, reporter, **body)
    if status in ("watch", "reported"):
        return incident
    for ministry, owner in (("DOE", team.doe_owner), ("METI", team.meti_owner)):
        response = await assign(client, triager, incident, ministry, owner)
        assert response.status_code == 200, response.text
    triaged = await move(client, triager, incident, "triaged")
    assert triaged.status_code == 200, triaged.text
    if status == "responding":
        await propose(client, triager, triaged.json(), title="Open a second supply channel")
        responding = await move(client, triager, incident, "responding")
        assert responding.status_code == 200, responding.text
        return dict(responding.json())
    return dict(triaged.json())


async def propose(client: httpx.AsyncClient, actor: Actor, incident: Json, **fields: Any) -> Json:
    body: Json = {
        "title": "Release gallium from the national stockpile",
        "kind": "stockpile_release",
        "owning_ministry": "DOE",
        "priority": "high",
        **fields,
    }
    response = await client.post(
        f"/api/v1/incidents/{incident['id']}/actions", json=body, headers=actor.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def approved_action(
    client: httpx.AsyncClient,
    team: Team,
    incident: Json,
    *,
    due_at: datetime,
    owning_ministry: str = "DOE",
    assignee: Actor | None = None,
    approvers: list[Actor] | None = None,
    title: str = "Release gallium from the national stockpile",
) -> Json:
    """An action proposed and approved (by the owning ministry's leads), due at ``due_at``."""
    if assignee is None:
        assignee = team.meti_assignee if owning_ministry == "METI" else team.assignee
    if approvers is None:
        approvers = {
            "DOE": [team.doe_lead],
            "METI": [team.meti_lead],
            "JOINT": [team.doe_lead, team.meti_lead],
        }[owning_ministry]
    action = await propose(
        client,
        approvers[0],
        incident,
        title=title,
        owning_ministry=owning_ministry,
        assignee_id=str(assignee.id),
        due_at=due_at.isoformat(),
    )
    for lead in approvers:
        response = await client.post(
            f"/api/v1/actions/{action['id']}/approvals", headers=lead.headers
        )
        assert response.status_code == 201, response.text
    body = dict(response.json())
    assert body["status"] == "approved"
    return body


async def act(client: httpx.AsyncClient, actor: Actor, action: Json, to: str, **extra: Any) -> Json:
    current = await client.get(f"/api/v1/actions/{action['id']}", headers=actor.headers)
    response = await client.post(
        f"/api/v1/actions/{action['id']}/transitions",
        json={"to": to, **extra},
        headers={**actor.headers, "If-Match": current.headers["etag"]},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def get_action(client: httpx.AsyncClient, actor: Actor, action: Json) -> Json:
    response = await client.get(f"/api/v1/actions/{action['id']}", headers=actor.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def comment(client: httpx.AsyncClient, actor: Actor, incident: Json, body: str) -> None:
    response = await client.post(
        f"/api/v1/incidents/{incident['id']}/comments", json={"body": body}, headers=actor.headers
    )
    assert response.status_code == 201, response.text


# --- what a sweep reported, and what it wrote ------------------------------------------------


def reported(report: SweepReport) -> list[tuple[str, str, int, frozenset[str]]]:
    """(item_type, item id, level, recipient e-mails) of each escalation, in report order."""
    return [
        (r.item_type, str(r.item_id), r.level, frozenset(r.recipients)) for r in report.escalations
    ]


def keys(report: SweepReport) -> list[Key]:
    return [(r.item_type, str(r.item_id), r.level) for r in report.escalations]


@dataclass
class Trail:
    """Everything escalations wrote, read straight from the database."""

    ledger: list[Escalation]
    events: list[TimelineEvent]  # escalation events, by (incident, seq)
    notifications: list[Notification]
    outbox: list[OutboxEvent]

    def ledger_keys(self) -> Counter[Key]:
        return Counter((e.item_type, str(e.item_id), e.level) for e in self.ledger)

    def rounds(self, item_id: str) -> list[tuple[int, int]]:
        """(round, level) of an item's ledger rows, in order."""
        return sorted((e.round, e.level) for e in self.ledger if str(e.item_id) == item_id)

    def notified(self, item: str, level: int) -> set[uuid.UUID]:
        return {
            n.user_id
            for n in self.notifications
            if _item_of(n.data, n.incident_id) == item and _level_of(n.data) == level
        }

    def levels_in_timeline(self, item: str) -> list[int]:
        return [_level_of(e.data) for e in self.events if _item_of(e.data, e.incident_id) == item]


def _item_of(data: dict[str, Any], incident_id: uuid.UUID | None = None) -> str:
    if "action_id" in data:
        return str(data["action_id"])
    return str(incident_id if incident_id is not None else data["incident_id"])


def _level_of(data: dict[str, Any]) -> int:
    return int(data["level"] if "level" in data else data["reminder"])


def _kind_of(data: dict[str, Any]) -> str:
    if "action_id" in data:
        return "action"
    return "triage" if data.get("reason") == "triage_overdue" else "stale"


async def trail(db: Database) -> Trail:
    async with db.unit_of_work(readonly=True) as session:
        ledger = (
            await session.scalars(
                select(Escalation).order_by(Escalation.at, Escalation.item_id, Escalation.level)
            )
        ).all()
        events = (
            await session.scalars(
                select(TimelineEvent)
                .where(TimelineEvent.type.in_(ESCALATION_TYPES))
                .order_by(TimelineEvent.incident_id, TimelineEvent.seq)
            )
        ).all()
        notes = (await session.scalars(select(Notification))).all()
        outbox = (
            await session.scalars(select(OutboxEvent).where(OutboxEvent.type.in_(ESCALATION_TYPES)))
        ).all()
    return Trail(list(ledger), list(events), list(notes), list(outbox))


async def consistent_trail(db: Database) -> Trail:
    """The trail, checked: each ledger row has exactly one timeline event and one outbox
    event, and a notification for each of its (filtered) recipients, nothing more."""
    found = await trail(db)
    ledger = found.ledger_keys()
    timeline = Counter(
        (_kind_of(e.data), _item_of(e.data, e.incident_id), _level_of(e.data)) for e in found.events
    )
    outbox = Counter(
        (_kind_of(o.payload), _item_of(o.payload), _level_of(o.payload)) for o in found.outbox
    )
    assert timeline == ledger
    assert outbox == ledger
    expected_notes = Counter(
        (uid, (e.item_type, str(e.item_id), e.level)) for e in found.ledger for uid in e.recipients
    )
    notes = Counter(
        (
            str(n.user_id),
            (n.data["item_type"], _item_of(n.data, n.incident_id), _level_of(n.data)),
        )
        for n in found.notifications
    )
    assert notes == expected_notes
    recipients: dict[Key, list[list[str]]] = {}
    for e in found.ledger:
        recipients.setdefault((e.item_type, str(e.item_id), e.level), []).append(
            sorted(e.recipients)
        )
    for event in found.events:
        assert event.actor_kind == "system"
        key = (_kind_of(event.data), _item_of(event.data, event.incident_id), _level_of(event.data))
        assert sorted(event.data["recipients"]) in recipients[key]
    return found


async def state(db: Database) -> dict[str, Any]:
    """Everything a sweep may change: row counts and each item's escalation state."""
    async with db.unit_of_work(readonly=True) as session:
        counts = {
            model.__tablename__: await session.scalar(select(func.count()).select_from(model))
            for model in (Escalation, TimelineEvent, Notification, OutboxEvent)
        }
        actions = (
            await session.execute(
                select(Action.id, Action.escalation_level, Action.ladder_round).order_by(Action.id)
            )
        ).all()
        incidents = (
            await session.execute(
                select(
                    Incident.id,
                    Incident.triage_level,
                    Incident.stale_reminders,
                    Incident.stale_reminded_at,
                    Incident.event_count,
                    Incident.last_event_hash,
                ).order_by(Incident.id)
            )
        ).all()
    return {
        "counts": counts,
        "actions": [tuple(r) for r in actions],
        "incidents": [tuple(r) for r in incidents],
    }


async def action_state(db: Database, action_id: str) -> tuple[int, int]:
    """(escalation_level, ladder_round) of an action."""
    async with db.unit_of_work(readonly=True) as session:
        row = (
            await session.execute(
                select(Action.escalation_level, Action.ladder_round).where(
                    Action.id == uuid.UUID(action_id)
                )
            )
        ).one()
    return int(row[0]), int(row[1])


async def triage_level(db: Database, incident_id: str) -> int:
    async with db.unit_of_work(readonly=True) as session:
        level = await session.scalar(
            select(Incident.triage_level).where(Incident.id == uuid.UUID(incident_id))
        )
    return int(level or 0)
