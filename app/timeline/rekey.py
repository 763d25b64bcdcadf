"""Re-keying the timeline: every chain re-hashed under a new audit key (``rrg audit rekey``).

Each chain is first checked under the old key; only what verifies is re-hashed, and the
incident's head moves to the new hash only when the whole chain verified. A chain already
broken keeps its break where it was: its intact prefix is re-keyed, the rest is left alone,
so ``rrg audit verify`` under the new key names the same first broken link instead of the
re-keying laundering it. A wrong old key therefore changes nothing (every chain breaks at
its first event).

Incidents are re-keyed in batches, each in its own transaction that locks the batch's
chain heads; a chain that already verifies under the new key is skipped, so an interrupted
run is resumed by running it again. Processes still writing under the old key would append
events the new key cannot verify, so every API replica and worker must be stopped first; on
PostgreSQL the command refuses while other sessions are connected to the database.

On PostgreSQL the append-only trigger refuses every UPDATE except in a transaction that sets
``rrg.timeline_rekey`` (as this module does, with SET LOCAL), and even then only ``prev_hash``
and ``hash`` may change (migration ``a6ac42b2a43f``).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, table_of
from app.incidents.models import Incident
from app.timeline.models import TimelineEvent
from app.timeline.service import GENESIS, BrokenLink, ChainWalk, keyed_hash, message_of

BATCH_INCIDENTS = 500
_FINGERPRINT_LABEL = b"rrg/audit-key-fingerprint/v1"


def fingerprint(key: bytes) -> str:
    """A short, non-secret name for a key (for logs and operator output)."""
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:12]


@dataclass
class RekeyReport:
    chains_rekeyed: int = 0
    events_rekeyed: int = 0
    chains_already_new: int = 0
    broken: list[BrokenLink] = field(default_factory=list)


class OtherSessions(Exception):
    """Other sessions are connected to the database: writers may still be running."""

    def __init__(self, sessions: Sequence[str]) -> None:
        super().__init__(", ".join(sessions))
        self.sessions = list(sessions)


async def other_sessions(db: Database) -> list[str]:
    """Client sessions on this PostgreSQL database other than our own (empty on SQLite)."""
    if db.dialect != "postgresql":
        return []
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT pid, application_name, client_addr, state FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
        )
        return [
            f"pid {r.pid} {r.application_name or '-'} from {r.client_addr or 'local'} ({r.state})"
            for r in rows
        ]


async def rekey(
    db: Database,
    old_key: bytes,
    new_key: bytes,
    *,
    batch: int = BATCH_INCIDENTS,
    progress: Callable[[RekeyReport], None] | None = None,
) -> RekeyReport:
    """Re-hash every chain from ``old_key`` to ``new_key`` (see the module docstring)."""
    if not old_key or not new_key or old_key == new_key:
        raise ValueError("the old and new audit keys must both be set and differ")
    report = RekeyReport()
    after: uuid.UUID | None = None
    while True:
        async with db.unit_of_work() as session:
            heads_query = (
                select(Incident.id, Incident.key, Incident.event_count, Incident.last_event_hash)
                .order_by(Incident.id)
                .limit(batch)
                .with_for_update()
            )
            if after is not None:
                heads_query = heads_query.where(Incident.id > after)
            heads = (await session.execute(heads_query)).all()
            if not heads:
                return report
            after = heads[-1].id
            await _rekey_batch(session, heads, old_key, new_key, report)
        if progress is not None:
            progress(report)


async def _rekey_batch(
    session: AsyncSession,
    heads: Sequence[tuple[uuid.UUID, str, int, str]],
    old_key: bytes,
    new_key: bytes,
    report: RekeyReport,
) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # The trigger's one exception (hashes only), for this transaction alone.
        await session.execute(text("SELECT set_config('rrg.timeline_rekey', 'on', true)"))
    chains: dict[uuid.UUID, list[TimelineEvent]] = {head[0]: [] for head in heads}
    events = await session.scalars(
        select(TimelineEvent)
        .where(TimelineEvent.incident_id.in_(list(chains)))
        .order_by(TimelineEvent.incident_id, TimelineEvent.seq)
    )
    for event in events:
        chains[event.incident_id].append(event)
    event_rows: list[dict[str, object]] = []
    head_rows: list[dict[str, object]] = []
    for incident_id, key, count, head_hash in heads:
        chain = chains[incident_id]
        if not chain and not count:
            continue  # no events yet: nothing to re-key
        under_new = _first_break(chain, new_key, count, head_hash)
        if under_new is None:
            report.chains_already_new += 1
            continue
        if under_new[0] > 1:  # broken, and re-keyed up to its break by an earlier run
            report.broken.append(BrokenLink(key, *under_new))
            continue
        problem = _first_break(chain, old_key, count, head_hash)
        # The events before the first broken link verified under the old key.
        intact = chain if problem is None else [e for e in chain if e.seq < problem[0]]
        prev = GENESIS
        for event in intact:
            rehashed = keyed_hash(new_key, message_of(event, prev_hash=prev))
            event_rows.append({"b_id": event.id, "b_prev": prev, "b_hash": rehashed})
            prev = rehashed
        report.events_rekeyed += len(intact)
        if problem is None:
            if count:
                head_rows.append({"b_id": incident_id, "b_hash": prev})
            report.chains_rekeyed += 1
        else:
            report.broken.append(BrokenLink(key, *problem))
    events_table, incidents_table = table_of(TimelineEvent), table_of(Incident)
    if event_rows:
        await session.execute(
            update(events_table)
            .where(events_table.c.id == bindparam("b_id"))
            .values(prev_hash=bindparam("b_prev"), hash=bindparam("b_hash")),
            event_rows,
        )
    if head_rows:
        await session.execute(
            update(incidents_table)
            .where(incidents_table.c.id == bindparam("b_id"))
            .values(last_event_hash=bindparam("b_hash")),
            head_rows,
        )


def _first_break(
    chain: Sequence[TimelineEvent], key: bytes, count: int, head_hash: str
) -> tuple[int, str] | None:
    walk = ChainWalk(key)
    for event in chain:
        problem = walk.step(event)
        if problem is not None:
            return problem
    return walk.end(count, head_hash)
