"""The tamper-evident timeline: append, page, verify.

Each event stores the hash of its predecessor in its incident's chain and its own keyed
hash: HMAC-SHA256, under the audit key (RRG_AUDIT_KEY, never in the database), of the
predecessor hash, a newline and the event's canonical JSON content. Altering any stored
event breaks the chain from that event on, and without the key nobody can recompute a
chain that verifies; ``verify`` names the first broken link.

The key travels with the session (``Database(audit_key=...)`` puts it in ``Session.info``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from app import clock
from app.auth.service import Principal
from app.db import AUDIT_KEY_INFO, table_of
from app.incidents.models import Incident
from app.kit import bulk
from app.kit.pagination import Key, Order, paginate
from app.models_base import new_id
from app.schemas import json_safe
from app.timeline.models import TimelineEvent

GENESIS = "0" * 64
_EVENT_COLUMNS = [c.key for c in TimelineEvent.__table__.columns]


@dataclass(frozen=True)
class Actor:
    """Who made a change: a user (through a token or a session) or the system."""

    kind: str  # user | token | system
    user_id: uuid.UUID | None = None
    token_id: uuid.UUID | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        if principal.token_id is not None:
            return cls("token", principal.user.id, principal.token_id)
        return cls("user", principal.user.id)


SYSTEM = Actor("system")


def chain_message(
    *,
    prev_hash: str,
    incident_id: uuid.UUID,
    seq: int,
    at: datetime,
    actor_kind: str,
    actor_user_id: uuid.UUID | None,
    actor_token_id: uuid.UUID | None,
    type_: str,
    data: dict[str, Any],
) -> bytes:
    """What an event's hash covers: its predecessor's hash and its canonical content."""
    content = json.dumps(
        {
            "incident_id": str(incident_id),
            "seq": seq,
            "at": at.isoformat(),
            "actor_kind": actor_kind,
            "actor_user_id": str(actor_user_id) if actor_user_id else None,
            "actor_token_id": str(actor_token_id) if actor_token_id else None,
            "type": type_,
            "data": data,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return f"{prev_hash}\n{content}".encode()


def keyed_hash(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event as appended: the row written, without an ORM object (a sweep appends
    thousands at a time, and building mapped instances would cost more than the insert)."""

    id: uuid.UUID
    incident_id: uuid.UUID
    seq: int
    at: datetime
    actor_kind: str
    actor_user_id: uuid.UUID | None
    actor_token_id: uuid.UUID | None
    type: str
    data: dict[str, Any]
    prev_hash: str
    hash: str = ""

    def model(self) -> TimelineEvent:
        """The event as a (transient) mapped instance, for presenting it."""
        return TimelineEvent(**{c: getattr(self, c) for c in _EVENT_COLUMNS})


def message_of(event: TimelineEvent | Recorded, *, prev_hash: str | None = None) -> bytes:
    """What ``event``'s hash covers (linked to ``prev_hash`` instead of its own, if given)."""
    return chain_message(
        prev_hash=event.prev_hash if prev_hash is None else prev_hash,
        incident_id=event.incident_id,
        seq=event.seq,
        at=event.at,
        actor_kind=event.actor_kind,
        actor_user_id=event.actor_user_id,
        actor_token_id=event.actor_token_id,
        type_=event.type,
        data=event.data,
    )


def audit_key(session: AsyncSession) -> bytes:
    """The audit key the session's Database was built with."""
    key = session.info.get(AUDIT_KEY_INFO)
    if not isinstance(key, bytes) or not key:
        raise RuntimeError(
            "this session carries no audit key: build the Database with audit_key "
            "(Database.from_settings does)"
        )
    return key


@dataclass(frozen=True)
class NewEvent:
    incident_id: uuid.UUID
    actor: Actor
    type: str
    data: dict[str, Any]
    at: datetime | None = None
    # The incident was created in this transaction (see app.events.Event.new_chain).
    new_chain: bool = False
    # The event already computed by ``opening_event``, its head written with the incident.
    opened: Recorded | None = None
    # The incident, read locked (FOR NO KEY UPDATE) in this transaction and changed, not
    # yet flushed: its head is read from it and set on it, so the incident's own versioned
    # UPDATE writes it (see app.events.Event.head_in_row).
    holder: Incident | None = None


def opening_event(session: AsyncSession, new: NewEvent) -> Recorded:
    """The first event of the chain of an incident not yet inserted (seq 1 after the
    genesis hash), computed without a query: its creator writes the head (``event_count``
    1, ``last_event_hash``, ``last_activity_at``) in the incident's own INSERT, then appends
    it with ``record_many`` as ``NewEvent.opened``, which writes no head for it."""
    return _hashed(audit_key(session), new, 0, GENESIS, new.at or clock.now())


def _hashed(secret: bytes, new: NewEvent, seq: int, prev_hash: str, at: datetime) -> Recorded:
    """The event following ``seq``/``prev_hash`` in its chain, with its keyed hash."""
    event = Recorded(
        id=new_id(),
        incident_id=new.incident_id,
        seq=seq + 1,
        at=at,
        actor_kind=new.actor.kind,
        actor_user_id=new.actor.user_id,
        actor_token_id=new.actor.token_id,
        type=new.type,
        data=json_safe(new.data),
        prev_hash=prev_hash,
    )
    return replace(event, hash=keyed_hash(secret, message_of(event)))


async def record_many(session: AsyncSession, new_events: Sequence[NewEvent]) -> list[Recorded]:
    """Append events (in order) to their incidents' chains, in the caller's transaction
    (write paths call ``app.events.emit``, which calls this).

    The chain heads are locked first, in id order, so concurrent appends to one incident
    are serialised and appends to many never deadlock. The lock is FOR NO KEY UPDATE (on
    PostgreSQL): it must not conflict with the FOR KEY SHARE locks that foreign-key checks
    take when a transaction has already inserted rows referencing the incident (ledger,
    notifications, actions...), or two such transactions deadlock on each other's heads.
    """
    if not new_events:
        return []
    ids = sorted({e.incident_id for e in new_events})
    heads: dict[uuid.UUID, tuple[int, str]] = {
        e.incident_id: (0, GENESIS) for e in new_events if e.new_chain or e.opened is not None
    }
    held: dict[uuid.UUID, Incident] = {}
    for e in new_events:
        if e.holder is not None and e.incident_id not in heads:
            held[e.incident_id] = e.holder
            heads[e.incident_id] = (e.holder.event_count, e.holder.last_event_hash or GENESIS)
    existing = [i for i in ids if i not in heads]
    if existing:
        heads.update(
            (row.id, (row.event_count, row.last_event_hash or GENESIS))
            for row in (
                await session.execute(
                    _heads_query.where(bulk.among(session, _incidents.c.id, existing)),
                )
            ).all()
        )
    secret = audit_key(session)
    now = clock.now()
    active: dict[uuid.UUID, datetime] = {}
    # Chains whose head is already written (an opened chain with no event after it).
    head_written: set[uuid.UUID] = set()
    events: list[Recorded] = []
    for new in new_events:
        if new.opened is not None:
            event = new.opened
            head_written.add(new.incident_id)
        else:
            seq, prev_hash = heads[new.incident_id]
            event = _hashed(secret, new, seq, prev_hash, new.at or now)
            head_written.discard(new.incident_id)
            if new.actor.kind != "system":
                active[new.incident_id] = event.at
        heads[new.incident_id] = (event.seq, event.hash)
        events.append(event)
    # Set before any statement below, whose autoflush would otherwise write the incident's
    # change first and the head in a second versioned UPDATE.
    for incident_id, holder in held.items():
        holder.event_count, holder.last_event_hash = heads[incident_id]
        if incident_id in active:
            holder.last_activity_at = active[incident_id]
    # A bulk insert (no unit-of-work bookkeeping): sweeps append thousands at a time.
    await bulk.insert_rows(
        session,
        table_of(TimelineEvent),
        [{c: getattr(e, c) for c in _EVENT_COLUMNS} for e in events],
    )
    # One statement per shape: the heads, and the heads plus people's activity.
    for with_activity in (False, True):
        rows = [
            {
                "id": incident_id,
                "event_count": heads[incident_id][0],
                "last_event_hash": heads[incident_id][1],
                "updated_at": now,
                **({"last_activity_at": active[incident_id]} if with_activity else {}),
            }
            for incident_id in ids
            if (incident_id in active) == with_activity
            and incident_id not in head_written
            and incident_id not in held
        ]
        if rows:
            await bulk.update_rows(session, _incidents, "id", rows)
            _refresh_held(session, rows)
    await session.flush()
    return events


_incidents = table_of(Incident)
_heads_query = (
    select(_incidents.c.id, _incidents.c.event_count, _incidents.c.last_event_hash)
    .order_by(_incidents.c.id)
    .with_for_update(key_share=True)
)


def _refresh_held(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Incidents this session holds get the columns just written (as the database now has
    them), so callers present them without reading them back."""
    identity_map = session.sync_session.identity_map
    for row in rows:
        incident = identity_map.get(identity_key(Incident, row["id"]))
        if incident is None:
            continue
        for name, value in row.items():
            if name != "id":
                set_committed_value(incident, name, value)


TIMELINE_ORDER = Order("timeline", Key(TimelineEvent.seq, "int"))


async def page(
    session: AsyncSession,
    incident_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    types: Sequence[str] | None = None,
) -> tuple[list[TimelineEvent], str | None]:
    """One page of an incident's events, oldest first (optionally of some types only)."""
    query = select(TimelineEvent).where(TimelineEvent.incident_id == incident_id)
    if types:
        query = query.where(TimelineEvent.type.in_(types))
    return await paginate(session, query, TIMELINE_ORDER, limit=limit, cursor=cursor)


@dataclass(frozen=True)
class BrokenLink:
    incident_key: str
    seq: int
    reason: str


async def verify(session: AsyncSession, incident_key: str | None = None) -> list[BrokenLink]:
    """Recompute every chain (or one incident's); return the first broken link of each."""
    query = select(Incident.id, Incident.key, Incident.event_count, Incident.last_event_hash)
    if incident_key is not None:
        query = query.where(Incident.key == incident_key)
    secret = audit_key(session)
    broken: list[BrokenLink] = []
    for incident_id, key, count, head_hash in (
        await session.execute(query.order_by(Incident.number))
    ).all():
        problem = await _verify_chain(session, secret, incident_id, count, head_hash)
        if problem is not None:
            broken.append(BrokenLink(key, *problem))
    return broken


async def _verify_chain(
    session: AsyncSession, secret: bytes, incident_id: uuid.UUID, count: int, head_hash: str
) -> tuple[int, str] | None:
    walk = ChainWalk(secret)
    stream = await session.stream_scalars(
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident_id)
        .order_by(TimelineEvent.seq)
        .execution_options(yield_per=500)
    )
    async for event in stream:
        problem = walk.step(event)
        if problem is not None:
            return problem
    return walk.end(count, head_hash)


class ChainWalk:
    """Checks one incident's events, in seq order, under one key: ``step`` each event, then
    ``end`` with the incident's head; each returns the first broken link (seq, reason)."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.expected_prev, self.expected_seq = GENESIS, 1

    def step(self, event: TimelineEvent | Recorded) -> tuple[int, str] | None:
        if event.seq != self.expected_seq:
            return self.expected_seq, f"event {self.expected_seq} is missing"
        if event.prev_hash != self.expected_prev:
            return event.seq, "its predecessor hash does not match the previous event"
        if not hmac.compare_digest(keyed_hash(self.secret, message_of(event)), event.hash):
            return event.seq, "its content does not match its hash (altered)"
        self.expected_prev, self.expected_seq = event.hash, self.expected_seq + 1
        return None

    def end(self, count: int, head_hash: str) -> tuple[int, str] | None:
        if self.expected_seq - 1 != count or (count and self.expected_prev != head_hash):
            return self.expected_seq, "events are missing from the end of the chain"
        return None
