"""The triage board (``/``): open incidents by status, most severe and most urgent first,
filters in the URL, and the live stream that refreshes it."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import ColumnElement, case, extract, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock, metrics
from app.actions.models import Action, is_open
from app.auth.models import User
from app.deps import get_database
from app.errors import InvalidInput
from app.escalation import policies
from app.escalation.policies import FALLBACK_SEVERITY
from app.incidents import service as incidents
from app.incidents.models import Incident
from app.incidents.presenters import present_incidents
from app.incidents.schemas import IncidentOut
from app.incidents.states import OPEN_STATUSES
from app.incidents.visibility import visible_to
from app.incidents.vocabulary import SEVERITIES, TLP_MARKINGS
from app.minerals.models import Mineral
from app.ministries.models import Ministry
from app.ministries.schemas import CODE_PATTERN
from app.web.live import LiveBus
from app.web.security import WebUser
from app.web.templating import NO_STORE, render

router = APIRouter()
PER_STATUS = 25  # cards shown per status column (the column header counts all)
KEEPALIVE_SECONDS = 15.0
NO_DEADLINE = 1e12  # seconds since 1970, after every deadline: cards without one sort last


@dataclass
class BoardFilters:
    mineral: list[str] = field(default_factory=list)
    severity: list[str] = field(default_factory=list)
    tlp: list[str] = field(default_factory=list)
    ministry: str | None = None
    owner: uuid.UUID | None = None
    overdue: bool = False

    def incident_filters(self) -> incidents.IncidentFilters:
        return incidents.IncidentFilters(
            status=list(OPEN_STATUSES),
            severity=self.severity,
            mineral=self.mineral,
            tlp=self.tlp,
            ministry=self.ministry,
            owner=self.owner,
        )

    def query_string(self) -> str:
        pairs: list[tuple[str, str]] = [
            *(("mineral", m) for m in self.mineral),
            *(("severity", s) for s in self.severity),
            *(("tlp", t) for t in self.tlp),
        ]
        if self.ministry:
            pairs.append(("ministry", self.ministry))
        if self.owner:
            pairs.append(("owner", str(self.owner)))
        if self.overdue:
            pairs.append(("overdue", "1"))
        return urlencode(pairs)


@dataclass
class Card:
    incident: IncidentOut
    deadline: datetime | None  # the nearest SLA deadline (triage, update, action due)
    deadline_kind: str | None
    overdue: bool
    level: int  # the highest escalation level (triage or any open action)


@dataclass
class Board:
    columns: list[tuple[str, list[Card], int]]  # status, cards shown, how many in all
    total: int


def _epoch(dialect: str, column: Any) -> ColumnElement[Any]:
    """Seconds since 1970 of a stored time, to compare deadlines in SQL on both databases
    (SQLite keeps naive UTC text, which ``julianday`` reads)."""
    if dialect == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return cast(ColumnElement[Any], extract("epoch", column))


def _earliest(*values: ColumnElement[Any]) -> ColumnElement[Any]:
    """The least of the values that are not NULL (NULL if all are): ``LEAST`` skips NULLs
    on PostgreSQL but SQLite's ``min`` does not, so it is spelled out."""
    first, *rest = values
    for value in rest:
        first = case(
            (first.is_(None), value),
            (value.is_(None), first),
            (first <= value, first),
            else_=value,
        )
    return first


def _per_severity(values: dict[str, int], severity: ColumnElement[Any]) -> ColumnElement[Any]:
    return case(*((severity == s, literal(v)) for s, v in values.items()), else_=None)


def _deadline(row: Any, policy: policies.Policy) -> tuple[datetime | None, str | None]:
    """The nearest SLA deadline of a card and its kind (triage, update, action due): the
    same rule the SQL ordering follows, for the cards shown."""
    deadlines: list[tuple[datetime, str]] = []
    if row.status == "reported":
        deadlines.append((row.reported_at + policy.triage_within, "triage"))
    if row.status == "responding":
        since = row.last_activity_at or row.reported_at
        deadlines.append((since + policy.update_every, "update"))
    if row.next_due is not None:
        deadlines.append((row.next_due, "action"))
    return min(deadlines) if deadlines else (None, None)


async def load_board(session: AsyncSession, user: User, filters: BoardFilters) -> Board:
    """The board in a fixed number of queries, whatever the number of incidents: the
    database ranks the matching incidents per status column (severity, then the nearest
    SLA deadline) and counts them, and sends only the cards shown; then those cards."""
    now = clock.now()
    loaded = await policies.load(session)
    dialect = session.get_bind().dialect.name
    open_actions = (
        select(
            Action.incident_id.label("incident_id"),
            func.min(Action.due_at).label("next_due"),
            func.max(Action.escalation_level).label("action_level"),
        )
        .where(is_open())
        .group_by(Action.incident_id)
        .subquery()
    )
    severity = func.coalesce(Incident.severity, FALLBACK_SEVERITY)
    seconds = {
        f: {s: int(getattr(p, f).total_seconds()) for s, p in loaded.policies.items()}
        for f in ("triage_within", "update_every")
    }
    triage_due = case(
        (
            Incident.status == "reported",
            _epoch(dialect, Incident.reported_at)
            + _per_severity(seconds["triage_within"], severity),
        ),
        else_=None,
    )
    update_due = case(
        (
            Incident.status == "responding",
            _epoch(dialect, func.coalesce(Incident.last_activity_at, Incident.reported_at))
            + _per_severity(seconds["update_every"], severity),
        ),
        else_=None,
    )
    deadline = _earliest(triage_due, update_due, _epoch(dialect, open_actions.c.next_due))
    severity_rank = case(
        *((Incident.severity == s, literal(n)) for n, s in enumerate(SEVERITIES)),
        else_=literal(len(SEVERITIES)),
    )
    column = (Incident.status,)
    query = (
        incidents.visible_query(user, filters.incident_filters())
        .with_only_columns(
            Incident.number,
            Incident.status,
            Incident.severity,
            Incident.reported_at,
            Incident.last_activity_at,
            Incident.triage_level,
            open_actions.c.next_due,
            open_actions.c.action_level,
            func.row_number()
            .over(
                partition_by=column,
                order_by=(
                    severity_rank,
                    func.coalesce(deadline, literal(NO_DEADLINE)),
                    Incident.number,
                ),
            )
            .label("place"),
            func.count().over(partition_by=column).label("in_column"),
        )
        .outerjoin(open_actions, open_actions.c.incident_id == Incident.id)
    )
    if filters.overdue:
        query = query.where(deadline <= literal(now.timestamp()))
    ranked = query.subquery()
    rows = (
        await session.execute(
            select(ranked).where(ranked.c.place <= PER_STATUS).order_by(ranked.c.place)
        )
    ).all()
    counts = {s: 0 for s in OPEN_STATUSES}
    shown: dict[int, Any] = {}
    for row in rows:
        counts[row.status] = row.in_column
        shown[row.number] = row
    cards: dict[int, Card] = {}
    if shown:
        found = (
            await session.scalars(select(Incident).where(Incident.number.in_(list(shown))))
        ).all()
        numbers = {i.id: i.number for i in found}
        for out in await present_incidents(session, found):
            row = shown[numbers[out.id]]
            policy = loaded.policies[row.severity or FALLBACK_SEVERITY]
            due, kind = _deadline(row, policy)
            level = max(row.triage_level or 0, row.action_level or 0)
            overdue = due is not None and due <= now
            cards[row.number] = Card(out, due, kind, overdue, level)
    columns = [
        (status, [cards[r.number] for r in rows if r.status == status], counts[status])
        for status in OPEN_STATUSES
    ]
    return Board(columns, sum(counts.values()))


async def _choices(session: AsyncSession) -> dict[str, list[tuple[str, str]]]:
    minerals = await session.execute(select(Mineral.code, Mineral.name_en).order_by(Mineral.code))
    ministries = await session.execute(select(Ministry.code, Ministry.name).order_by(Ministry.code))
    return {
        "minerals": [(c, n) for c, n in minerals],
        "ministries": [(c, n) for c, n in ministries],
    }


OVERDUE_VALUES = {"": False, "0": False, "false": False, "off": False}
OVERDUE_VALUES |= {"1": True, "true": True, "on": True}
MINERAL_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,15}$")  # as stored (16 characters)


def _filters(
    mineral: list[str] | None,
    severity: list[str] | None,
    tlp: list[str] | None,
    ministry: str | None,
    owner: str | None,
    overdue: str | None,
) -> BoardFilters:
    """The filters in the URL; a value no filter could take is refused (422, naming the
    parameter), like the API's list, instead of being dropped unseen. Empty values are the
    form's "any"."""
    problems: list[tuple[str, str]] = []
    minerals = [m for m in mineral or [] if m]
    if len(minerals) > 30 or not all(MINERAL_CODE.match(m) for m in minerals):
        problems.append(("mineral", "is not one of the allowed values"))
    severities = [s for s in severity or [] if s]
    if not set(severities) <= set(SEVERITIES):
        problems.append(("severity", "is not one of the allowed values"))
    markings = [t for t in tlp or [] if t]
    if not set(markings) <= set(TLP_MARKINGS):
        problems.append(("tlp", "is not one of the allowed values"))
    if ministry and not re.match(CODE_PATTERN, ministry):
        problems.append(("ministry", "is not one of the allowed values"))
    owner_id = None
    if owner:
        try:
            owner_id = uuid.UUID(owner)
        except ValueError:
            problems.append(("owner", "is not a valid id"))
    if (overdue or "") not in OVERDUE_VALUES:
        problems.append(("overdue", "must be true or false"))
    if problems:
        raise InvalidInput.all_of(problems, location="query")
    return BoardFilters(
        mineral=minerals,
        severity=severities,
        tlp=markings,
        ministry=ministry or None,
        owner=owner_id,
        overdue=OVERDUE_VALUES[overdue or ""],
    )


@router.get("/")
async def board_page(
    request: Request,
    web: WebUser,
    mineral: Annotated[list[str] | None, Query()] = None,
    severity: Annotated[list[str] | None, Query()] = None,
    tlp: Annotated[list[str] | None, Query()] = None,
    ministry: str | None = None,
    owner: str | None = None,
    overdue: str | None = None,
) -> Response:
    filters = _filters(mineral, severity, tlp, ministry, owner, overdue)
    async with get_database(request).unit_of_work(readonly=True) as session:
        board = await load_board(session, web.user, filters)
        choices = await _choices(session)
    template = "fragments/board.html" if request.headers.get("hx-request") else "board.html"
    return await render(
        request,
        template,
        web,
        {
            "board": board,
            "filters": filters,
            "query": filters.query_string(),
            "severities": SEVERITIES,
            "tlps": TLP_MARKINGS,
            **choices,
        },
    )


# --- the live stream ------------------------------------------------------------------------


def bus_of(request: Request) -> LiveBus:
    bus: LiveBus = request.app.state.live_bus
    return bus


async def visible_ids(
    session: AsyncSession, user_id: uuid.UUID, incident_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, str]] | None:
    """Which of these incidents the user may see now (key, status); None when the user is
    no longer active (the stream ends)."""
    user = await session.get(User, user_id, populate_existing=True)
    if user is None or not user.active:
        return None
    rows = await session.execute(
        select(Incident.id, Incident.key, Incident.status).where(
            Incident.id.in_(incident_ids), visible_to(user)
        )
    )
    return {i: (key, status) for i, key, status in rows}


def sse(event: str, data: dict[str, str], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n"


async def stream_changes(
    request: Request,
    bus: LiveBus,
    user_id: uuid.UUID,
    last_event_id: str | None,
    watched: uuid.UUID | None = None,
) -> AsyncIterator[str]:
    """Server-sent events: ``incident`` for each change to an incident the user may see
    (checked per event, at the time it is sent), ``reset`` when a resume is impossible,
    and ``gone`` when the incident an open room watches changes out of the user's sight
    (only if they could see it when the stream opened: it tells nothing they did not know)."""
    db = get_database(request)
    waiter = bus.waiter()
    try:
        with metrics.sse_client():  # counted while connected, however it ends
            if watched is not None:
                async with db.unit_of_work(readonly=True) as session:
                    seen = await visible_ids(session, user_id, [watched])
                watched = watched if seen else None
            yield "retry: 3000\n\n"
            position = bus.position(last_event_id)
            if position is None:
                yield sse("reset", {}, bus.event_id(bus.sequence))
                position = bus.sequence
            while True:
                waiter.clear()
                changes = bus.since(position)
                if changes is None:
                    yield sse("reset", {}, bus.event_id(bus.sequence))
                    position = bus.sequence
                    continue
                if changes:
                    async with db.unit_of_work(readonly=True) as session:
                        visible = await visible_ids(session, user_id, [i for _, i in changes])
                    if visible is None:
                        return
                    for sequence, incident_id in changes:
                        if incident_id in visible:
                            key, status = visible[incident_id]
                            yield sse(
                                "incident",
                                {"id": str(incident_id), "key": key, "status": status},
                                bus.event_id(sequence),
                            )
                        elif incident_id == watched:
                            yield sse("gone", {"id": str(watched)}, bus.event_id(sequence))
                            watched = None
                    position = changes[-1][0]
                    continue
                if await request.is_disconnected():
                    return
                try:
                    await asyncio.wait_for(waiter.wait(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
    finally:
        bus.forget(waiter)


@router.get("/events")
async def events(
    request: Request,
    web: WebUser,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
    incident: Annotated[uuid.UUID | None, Query(description="The incident a room shows")] = None,
) -> StreamingResponse:
    return StreamingResponse(
        stream_changes(request, bus_of(request), web.user.id, last_event_id, incident),
        media_type="text/event-stream",
        headers={**NO_STORE, "X-Accel-Buffering": "no"},
    )
